//! The fuzzers' corpus (fuzz/corpus/TARGET/*) replayed through the same parsers on every
//! `make test`: an input that once crashed a parser, kept in the corpus, stays fixed.

use std::path::Path;

use bytes::BytesMut;

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "{} holds no inputs", dir.display());
    v
}

#[test]
fn fuzz_corpus_replays_without_panics() {
    for data in inputs("bencode") {
        if let Ok(v) = testbed::bencode::decode(&data) {
            assert!(testbed::bencode::decode(&v.encode()).ok() == Some(v));
        }
    }
    let mut torrents = 0;
    for data in inputs("metainfo") {
        if let Ok(t) = testbed::metainfo::Torrent::from_bytes(&data) {
            torrents += 1;
            assert!(t.files.iter().all(|f| !f.path.is_absolute()));
        }
    }
    assert!(torrents >= 2, "the seed torrents parse");
    let dec = testbed::wire::Decoder::for_pieces(1000);
    for data in inputs("wire") {
        let mut buf = BytesMut::from(&data[..]);
        let _ = testbed::wire::Handshake::parse(&mut buf);
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(_)) = dec.decode(&mut buf) {}
    }
    for data in inputs("announce") {
        let q = String::from_utf8_lossy(&data);
        let _ = testbed::announce::query::parse_announce(&q);
        let _ = testbed::announce::query::parse_scrape(&q);
    }
}
