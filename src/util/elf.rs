//! Just enough of ELF to tell a statically linked program from a dynamically linked one.

/// For the first bytes of a file (its headers, say 64 KiB): `Some(true)` for an ELF program
/// without an interpreter (statically linked, static-pie included), `Some(false)` for one
/// with (`PT_INTERP`: dynamically linked), `None` for anything else or headers cut short.
pub fn is_static(head: &[u8]) -> Option<bool> {
    if head.get(..4)? != b"\x7fELF" {
        return None;
    }
    let wide = match head.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let big = *head.get(5)? == 2;
    let uint = |at: usize, n: usize| -> Option<u64> {
        let b = head.get(at..at + n)?;
        let mut v = 0u64;
        for k in 0..n {
            let byte = if big { b[k] } else { b[n - 1 - k] };
            v = v << 8 | byte as u64;
        }
        Some(v)
    };
    let (phoff, phentsize, phnum) = if wide {
        (uint(0x20, 8)?, uint(0x36, 2)?, uint(0x38, 2)?)
    } else {
        (uint(0x1c, 4)?, uint(0x2a, 2)?, uint(0x2c, 2)?)
    };
    const PT_INTERP: u64 = 3;
    for i in 0..phnum {
        let at = usize::try_from(phoff + i * phentsize).ok()?;
        if uint(at, 4)? == PT_INTERP {
            return Some(false);
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(path: &str) -> Vec<u8> {
        let mut b = std::fs::read(path).unwrap();
        b.truncate(64 << 10);
        b
    }

    #[test]
    fn tells_static_from_dynamic() {
        // This test binary is dynamically linked; sh is too, on any machine the lab runs on.
        let me = std::env::current_exe().unwrap();
        assert_eq!(is_static(&head(me.to_str().unwrap())), Some(false));
        assert_eq!(is_static(&head("/bin/sh")), Some(false));
        assert_eq!(is_static(b"#!/bin/sh\necho"), None);
        assert_eq!(is_static(b"\x7fELF"), None);
        // A 64-bit little-endian header with one program header, PT_LOAD only: static.
        let mut h = vec![0u8; 0x40 + 0x38];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[0x20] = 0x40;
        h[0x36] = 0x38;
        h[0x38] = 1;
        h[0x40] = 1;
        assert_eq!(is_static(&h), Some(true));
        h[0x40] = 3;
        assert_eq!(is_static(&h), Some(false));
    }
}
