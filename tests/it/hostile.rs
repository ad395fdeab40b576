//! Hostile peers against our seed, with a scripted raw TCP peer: wrong info hash, handshake
//! garbage, a message over the length limit, requests beyond a piece or of huge length, a request
//! flood, and a peer that never says anything. Each is cut off with its reason logged (the
//! flood is served within its bounded queue), and the seed serves an honest leecher all along.
//! (Piece data that fails its hash, and the ban that follows, is in engine.rs.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::*;

const PIECE: u32 = 16384;

fn handshake(info_hash: &[u8; 20], peer_id: &[u8; 20]) -> Vec<u8> {
    let mut h = vec![19u8];
    h.extend_from_slice(b"BitTorrent protocol");
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(info_hash);
    h.extend_from_slice(peer_id);
    h
}

fn msg(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut m = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    m.push(id);
    m.extend_from_slice(payload);
    m
}

fn request(index: u32, begin: u32, len: u32) -> Vec<u8> {
    let mut p = index.to_be_bytes().to_vec();
    p.extend_from_slice(&begin.to_be_bytes());
    p.extend_from_slice(&len.to_be_bytes());
    msg(6, &p)
}

/// Send `bytes`, then read until the seed closes the connection; panics if it stays open
/// longer than `within`.
fn cut_off(addr: SocketAddr, bytes: &[u8], within: Duration, what: &str) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(bytes).unwrap();
    let end = Instant::now() + within;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
        assert!(
            Instant::now() < end,
            "{what}: still connected after {within:?}"
        );
    }
}

#[test]
fn hostile_peers_are_cut_off_and_the_seed_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(32 * PIECE as usize, 8);
    let (file, torrent) = make_swarm_file(dir.path(), "h.bin", &data, "", PIECE);
    let t = testbed::metainfo::Torrent::from_file(&torrent).unwrap();
    let ih = t.info_hash.0;
    let log = dir.path().join("seed.log");
    let (_seed, addr) = start_peer(
        "seed",
        &[
            torrent.to_str().unwrap(),
            "--data",
            file.to_str().unwrap(),
            "--seed",
            "--tracker",
            "",
            "--log",
            log.to_str().unwrap(),
        ],
    );
    let addr: SocketAddr = format!("127.0.0.1:{}", addr.port()).parse().unwrap();
    let hs = |id: &[u8; 20]| handshake(&ih, id);

    // A silent peer: connects and never speaks. It holds its slot only until the handshake
    // timeout (10 s); meanwhile everything else goes on.
    let silent = std::thread::spawn(move || {
        cut_off(addr, b"", Duration::from_secs(15), "a silent peer");
    });

    let quick = Duration::from_secs(5);
    cut_off(
        addr,
        &handshake(&[7; 20], b"-XX0000-wronghash000"),
        quick,
        "wrong info hash",
    );
    cut_off(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        quick,
        "handshake garbage",
    );
    let mut too_long = hs(b"-XX0000-toolong00000");
    too_long.extend_from_slice(&(64u32 << 20).to_be_bytes());
    too_long.push(7);
    cut_off(addr, &too_long, quick, "a 64 MiB message");
    let mut beyond = hs(b"-XX0000-beyond000000");
    beyond.extend(msg(2, &[]));
    beyond.extend(request(3, PIECE - 100, 200));
    cut_off(addr, &beyond, quick, "a request past the piece's end");
    let mut huge = hs(b"-XX0000-hugerequest0");
    huge.extend(msg(2, &[]));
    huge.extend(request(0, 0, 1 << 30));
    cut_off(addr, &huge, quick, "a 1 GiB request");
    let mut no_piece = hs(b"-XX0000-nosuchpiece0");
    no_piece.extend(request(10_000, 0, PIECE));
    cut_off(addr, &no_piece, quick, "a request for piece 10000 of 32");

    // A flood: 100,000 requests (1.7 MB) as fast as the socket takes them, never reading what
    // comes back. The seed queues a bounded number and stays responsive.
    let flood = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut out = handshake(&ih, b"-XX0000-flood0000000");
        out.extend(msg(2, &[]));
        for k in 0..100_000u32 {
            out.extend(request(k % 32, 0, PIECE));
        }
        // The seed may stop reading (or cut us off): either is fine, as long as it lives.
        let _ = s.write_all(&out);
        std::thread::sleep(Duration::from_secs(2));
    });

    // Meanwhile an honest leecher gets the whole file.
    leech_from("our seed", &torrent, addr.port(), &data, dir.path(), &log);
    flood.join().unwrap();
    silent.join().unwrap();

    // Every cut-off is in the seed's log with its reason.
    let text = String::from_utf8_lossy(&read(&log)).to_string();
    for reason in [
        "wrong info hash",
        "handshake",
        "protocol error",
        "bad request",
    ] {
        assert!(
            text.contains(reason),
            "no {reason:?} in the seed's log:\n{text}"
        );
    }
    // And the seed is still up, taking connections.
    assert!(TcpStream::connect(addr).is_ok(), "the seed still listens");
}
