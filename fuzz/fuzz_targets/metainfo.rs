//! Any bytes as a .torrent: refused with an error or accepted with sane numbers; never a panic,
//! and an accepted torrent never names a path that leaves its folder.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = testbed::metainfo::Torrent::from_bytes(data) {
        assert!(t.num_pieces() > 0);
        for f in &t.files {
            assert!(!f.path.is_absolute());
            assert!(f
                .path
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_))));
        }
        let last = t.num_pieces() - 1;
        let _ = (t.piece_len(last), t.piece_offset(last));
    }
});
