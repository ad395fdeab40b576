//! The BitTorrent engine with real processes: a seed and leechers, resume, a corrupt peer
//! banned, and a real client (aria2c) seeding to our peer.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use bytes::BytesMut;
use testbed::metainfo::Torrent;
use testbed::wire::{Decoder, Handshake, Message};

use crate::common::*;

const NO_TRACKER: &str = "http://127.0.0.1:9/announce";

#[test]
fn seed_and_three_leechers_end_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(3 << 20, 1);
    let (file, torrent) = make_swarm_file(dir.path(), "movie.bin", &data, NO_TRACKER, 32768);
    let t = torrent.to_str().unwrap();
    let (_seed, seed_addr) = start_peer(
        "seed",
        &[
            t,
            "--data",
            file.to_str().unwrap(),
            "--seed",
            "--tracker",
            "",
        ],
    );
    let seed_addr = seed_addr.to_string();
    let mut leechers = Vec::new();
    let mut addrs = vec![seed_addr.clone()];
    for i in 0..3 {
        let out = dir.path().join(format!("dl{i}/movie.bin"));
        let mut args = vec![
            t.to_string(),
            "--data".into(),
            out.to_str().unwrap().into(),
            "--tracker".into(),
            "".into(),
            "--exit-on-complete".into(),
        ];
        for a in &addrs {
            args.push("--peer".into());
            args.push(a.clone());
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let (p, addr) = start_peer(&format!("leecher{i}"), &argv);
        addrs.push(addr.to_string());
        leechers.push((p, out));
    }
    for (p, out) in &mut leechers {
        let status = p
            .wait_timeout(Duration::from_secs(60))
            .expect("leecher finishes within 60 s");
        assert!(status.success(), "{}: {status}", p.name);
        assert!(read(out) == data, "{} is byte-identical", p.name);
    }
    assert_eq!(read(&file), data, "the seed's file is untouched");
}

#[test]
fn resume_keeps_good_pieces_and_refetches_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(1 << 20, 2);
    let (file, torrent) = make_swarm_file(dir.path(), "f.bin", &data, NO_TRACKER, 16384);
    let t = torrent.to_str().unwrap();
    // Pieces 0..32 good, 32..48 corrupt, the rest missing (zeros).
    let mut partial = vec![0u8; data.len()];
    partial[..32 * 16384].copy_from_slice(&data[..32 * 16384]);
    for b in &mut partial[32 * 16384..48 * 16384] {
        *b = 0xAA;
    }
    let out = dir.path().join("dl.bin");
    std::fs::write(&out, &partial).unwrap();
    let log = dir.path().join("leech.log");
    let (_seed, seed_addr) = start_peer(
        "seed",
        &[
            t,
            "--data",
            file.to_str().unwrap(),
            "--seed",
            "--tracker",
            "",
        ],
    );
    let (mut leech, _) = start_peer(
        "leecher",
        &[
            t,
            "--data",
            out.to_str().unwrap(),
            "--tracker",
            "",
            "--peer",
            &seed_addr.to_string(),
            "--exit-on-complete",
            "--log",
            log.to_str().unwrap(),
        ],
    );
    let status = leech
        .wait_timeout(Duration::from_secs(60))
        .expect("leecher finishes");
    assert!(status.success());
    assert!(read(&out) == data);
    let log = String::from_utf8_lossy(&read(&log)).to_string();
    assert!(
        log.contains("pieces=32"),
        "resume found exactly the 32 good pieces: {log}"
    );
}

/// A hostile seed: claims every piece and answers each request with garbage.
fn corrupt_seed(listener: TcpListener, torrent: Torrent) {
    for stream in listener.incoming().take(4) {
        let Ok(mut s) = stream else { continue };
        let torrent = torrent.clone();
        std::thread::spawn(move || {
            let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
            let mut out = BytesMut::new();
            Handshake::new(torrent.info_hash.0, *b"-XX0000-corruptcorru").encode(&mut out);
            let bf = testbed::wire::Bitfield::full(torrent.num_pieces());
            Message::Bitfield(bf.as_bytes().to_vec().into()).encode(&mut out);
            Message::Unchoke.encode(&mut out);
            if s.write_all(&out).is_err() {
                return;
            }
            let mut buf = BytesMut::new();
            let mut chunk = [0u8; 4096];
            while buf.len() < 68 {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = buf.split_to(68);
            let dec = Decoder::for_pieces(torrent.num_pieces());
            loop {
                while let Ok(Some(m)) = dec.decode(&mut buf) {
                    if let Message::Request(r) = m {
                        let mut o = BytesMut::new();
                        Message::Piece {
                            index: r.index,
                            begin: r.begin,
                            data: vec![0x5A; r.length as usize].into(),
                        }
                        .encode(&mut o);
                        if s.write_all(&o).is_err() {
                            return;
                        }
                    }
                }
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        });
    }
}

#[test]
fn peer_sending_corrupt_pieces_is_banned_and_download_completes() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(512 << 10, 3);
    let (file, torrent) = make_swarm_file(dir.path(), "f.bin", &data, NO_TRACKER, 16384);
    let t = Torrent::from_file(&torrent).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let bad_addr = listener.local_addr().unwrap();
    std::thread::spawn(move || corrupt_seed(listener, t));

    let out = dir.path().join("dl.bin");
    let log = dir.path().join("leech.log");
    let tp = torrent.to_str().unwrap();
    let (mut leech, _) = start_peer(
        "leecher",
        &[
            tp,
            "--data",
            out.to_str().unwrap(),
            "--tracker",
            "",
            "--peer",
            &bad_addr.to_string(),
            "--ban-after",
            "2",
            "--exit-on-complete",
            "--log",
            log.to_str().unwrap(),
        ],
    );
    wait_until(
        "the corrupt peer is banned",
        Duration::from_secs(30),
        || String::from_utf8_lossy(&read(&log)).contains("banned after 2 bad pieces"),
    );
    assert!(
        leech.child.try_wait().unwrap().is_none(),
        "the leecher stays up after banning"
    );
    let log_text = String::from_utf8_lossy(&read(&log)).to_string();
    assert!(
        log_text.contains("disconnected: banned: sent corrupt data"),
        "{log_text}"
    );

    // An honest seed joins; the leecher (still up) completes from it with a correct file.
    // The leecher learns of the seed because the seed dials it.
    let leech_port = String::from_utf8_lossy(&read(&log))
        .lines()
        .find_map(|l| {
            l.split("addr=")
                .nth(1)
                .map(|a| a.split_whitespace().next().unwrap().to_string())
        })
        .expect("leecher logs its address");
    let (_seed, _) = start_peer(
        "seed",
        &[
            tp,
            "--data",
            file.to_str().unwrap(),
            "--seed",
            "--tracker",
            "",
            "--peer",
            &leech_port,
        ],
    );
    let status = leech
        .wait_timeout(Duration::from_secs(60))
        .expect("leecher completes");
    assert!(status.success());
    assert!(read(&out) == data);
}

#[test]
fn interop_our_peer_downloads_from_aria2c() {
    if !have_tool("aria2c") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = content(2 << 20, 4);
    let seed_dir = dir.path().join("seed");
    std::fs::create_dir_all(&seed_dir).unwrap();
    let (_file, torrent) = make_swarm_file(&seed_dir, "f.bin", &data, NO_TRACKER, 32768);
    let port = free_port();
    let _aria = Proc::spawn(
        "aria2c",
        Command::new("aria2c")
            .arg("--check-integrity=true")
            .arg("--seed-ratio=0.0")
            .arg(format!("--listen-port={port}"))
            .arg(format!("--dir={}", seed_dir.display()))
            .args([
                "--enable-dht=false",
                "--enable-dht6=false",
                "--bt-enable-lpd=false",
                "--enable-peer-exchange=false",
                "--quiet=true",
                "--console-log-level=error",
            ])
            .arg(&torrent)
            .stdout(std::process::Stdio::null()),
    );
    // aria2c listens once it has checked its copy.
    wait_until("aria2c listens", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // aria2c logs nothing we asked for (--quiet); its exit is what we would see.
    let aria_log = dir.path().join("aria2c.log");
    leech_from("aria2c", &torrent, port, &data, dir.path(), &aria_log);
    crate::interop::record(
        &crate::interop::version("aria2c", "--version"),
        "seeds to our peer (our torrent)",
        "ok, byte-identical",
    );
}
