//! The set of pieces a peer has, in the wire's layout: piece 0 is the high bit of byte 0.

/// A fixed-length bit set of pieces.
#[derive(Clone, PartialEq, Eq)]
pub struct Bitfield {
    bits: Vec<u8>,
    len: u32,
    ones: u32,
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{})", self.ones, self.len)
    }
}

impl Bitfield {
    pub fn new(len: u32) -> Self {
        Bitfield {
            bits: vec![0; (len as usize).div_ceil(8)],
            len,
            ones: 0,
        }
    }

    pub fn full(len: u32) -> Self {
        let mut b = Bitfield::new(len);
        for i in 0..len {
            b.set(i);
        }
        b
    }

    /// Read a bitfield message's payload for a torrent of `len` pieces. The byte count must be
    /// exact and the spare bits at the end zero (BEP 3), or it is refused.
    pub fn from_wire(payload: &[u8], len: u32) -> Option<Self> {
        if payload.len() != (len as usize).div_ceil(8) {
            return None;
        }
        let spare = (8 - len % 8) % 8;
        if spare > 0
            && payload
                .last()
                .is_some_and(|b| b & ((1u8 << spare) - 1) != 0)
        {
            return None;
        }
        let ones = payload.iter().map(|b| b.count_ones()).sum();
        Some(Bitfield {
            bits: payload.to_vec(),
            len,
            ones,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }
    pub fn len(&self) -> u32 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// How many pieces are set.
    pub fn count(&self) -> u32 {
        self.ones
    }
    pub fn is_complete(&self) -> bool {
        self.ones == self.len
    }
    pub fn get(&self, i: u32) -> bool {
        i < self.len && self.bits[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }
    /// Set bit `i`; returns whether it was newly set. Out of range is ignored.
    pub fn set(&mut self, i: u32) -> bool {
        if i >= self.len || self.get(i) {
            return false;
        }
        self.bits[(i / 8) as usize] |= 0x80 >> (i % 8);
        self.ones += 1;
        true
    }
    pub fn clear(&mut self, i: u32) {
        if self.get(i) {
            self.bits[(i / 8) as usize] &= !(0x80 >> (i % 8));
            self.ones -= 1;
        }
    }
    /// Indices of the set bits, ascending.
    pub fn iter_ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.bits.iter().enumerate().flat_map(move |(byte, &b)| {
            (0..8u32)
                .filter(move |bit| b & (0x80 >> bit) != 0)
                .map(move |bit| byte as u32 * 8 + bit)
        })
    }
    /// Whether `other` has any piece that `self` lacks.
    pub fn lacks_any_of(&self, other: &Bitfield) -> bool {
        self.bits
            .iter()
            .zip(&other.bits)
            .any(|(mine, theirs)| theirs & !mine != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_layout_high_bit_first() {
        let mut b = Bitfield::new(10);
        assert!(b.set(0));
        assert!(!b.set(0));
        b.set(9);
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(b.count(), 2);
        assert_eq!(b.iter_ones().collect::<Vec<_>>(), vec![0, 9]);
        b.clear(0);
        assert_eq!(b.count(), 1);
    }

    #[test]
    fn from_wire_checks_length_and_spare_bits() {
        assert!(Bitfield::from_wire(&[0xff, 0xc0], 10).is_some());
        assert!(Bitfield::from_wire(&[0xff, 0xe0], 10).is_none());
        assert!(Bitfield::from_wire(&[0xff], 10).is_none());
        assert!(Bitfield::from_wire(&[0xff, 0xc0], 10)
            .unwrap()
            .is_complete());
    }

    #[test]
    fn lacks_any_of() {
        let mut a = Bitfield::new(9);
        let mut b = Bitfield::new(9);
        b.set(8);
        assert!(a.lacks_any_of(&b));
        a.set(8);
        assert!(!a.lacks_any_of(&b));
    }
}
