//! Rarest first, BitTornado's default: finish started pieces first, then take a piece that the
//! fewest connected peers have, breaking ties at random so that peers spread out.

use rand::{Rng, SeedableRng};

use super::{PeerView, PickView, PiecePicker, PieceStatus};

pub struct RarestFirst {
    rng: rand::rngs::SmallRng,
}

impl RarestFirst {
    pub fn new(seed: u64) -> Self {
        RarestFirst {
            rng: rand::rngs::SmallRng::seed_from_u64(seed),
        }
    }
}

impl PiecePicker for RarestFirst {
    fn name(&self) -> &'static str {
        "rarest"
    }

    fn next(&mut self, view: &PickView<'_>, peer: &PeerView<'_>) -> Option<u32> {
        let peer = peer.has;
        if let Some(p) = view.first_partial(peer) {
            return Some(p);
        }
        // Reservoir sampling among the rarest: one pass, uniform among ties.
        let mut best: Option<(u16, u32)> = None;
        let mut ties = 0u32;
        for i in peer.iter_ones() {
            if view.status.get(i as usize) != Some(&PieceStatus::Missing) {
                continue;
            }
            let a = view.availability[i as usize];
            match best {
                Some((b, _)) if a > b => {}
                Some((b, _)) if a == b => {
                    ties += 1;
                    if self.rng.random_range(0..ties) == 0 {
                        best = Some((a, i));
                    }
                }
                _ => {
                    best = Some((a, i));
                    ties = 1;
                }
            }
        }
        best.map(|(_, i)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Bitfield;
    use PieceStatus::*;

    #[test]
    fn picks_partial_first_then_rarest() {
        let status = [Missing, Missing, Partial, Missing, Have];
        let availability = [3, 1, 5, 1, 1];
        let peer = Bitfield::full(5);
        let mut p = RarestFirst::new(1);
        let view = PickView {
            status: &status,
            availability: &availability,
            partials: &[2],
            playback: None,
        };
        assert_eq!(p.next(&view, &PeerView::of(&peer)), Some(2));
        let status = [Missing, Missing, Requested, Missing, Have];
        let view = PickView {
            status: &status,
            availability: &availability,
            partials: &[2],
            playback: None,
        };
        // Pieces 1 and 3 are rarest (1 peer); both must come up over many picks, 0 never.
        let mut seen = [0; 5];
        for _ in 0..200 {
            seen[p.next(&view, &PeerView::of(&peer)).unwrap() as usize] += 1;
        }
        assert_eq!(seen[0], 0);
        assert!(seen[1] > 50 && seen[3] > 50, "{seen:?}");
    }

    #[test]
    fn only_what_the_peer_has() {
        let status = [Missing, Missing];
        let mut peer = Bitfield::new(2);
        let view = PickView {
            status: &status,
            availability: &[0, 9],
            partials: &[],
            playback: None,
        };
        let mut p = RarestFirst::new(1);
        assert_eq!(p.next(&view, &PeerView::of(&peer)), None);
        peer.set(1);
        assert_eq!(p.next(&view, &PeerView::of(&peer)), Some(1));
    }
}
