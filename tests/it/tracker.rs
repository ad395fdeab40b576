//! The tracker over real HTTP: announce and scrape round trips, events, expiry, many peers on
//! one IP, every bad request answered with a failure reason, the status views, and real clients
//! (our peer, aria2c) using it.

use std::process::Command;
use std::time::Duration;

use testbed::announce::request::parse_response;
use testbed::bencode::{self, Value};

use crate::common::*;

fn enc(b: &[u8]) -> String {
    b.iter().map(|x| format!("%{x:02X}")).collect()
}

fn announce_q(ih: &[u8; 20], id: &str, port: u16, left: u64, extra: &str) -> String {
    format!(
        "/announce?info_hash={}&peer_id={}&port={port}&uploaded=0&downloaded=0&left={left}{extra}",
        enc(ih),
        enc(id.as_bytes())
    )
}

fn pid(i: usize) -> String {
    format!("-TT0000-{i:012}")
}

fn scrape_counts(port: u16, ih: &[u8; 20]) -> (i64, i64, i64) {
    let (_, body) = http_get(port, &format!("/scrape?info_hash={}", enc(ih))).unwrap();
    let v = bencode::decode(&body).unwrap();
    let f = v
        .get("files")
        .and_then(|f| f.as_dict())
        .and_then(|d| d.get(&ih.to_vec()).cloned());
    let g = |k: &str| {
        f.as_ref()
            .and_then(|f| f.get(k))
            .and_then(Value::as_int)
            .unwrap_or(-1)
    };
    (g("complete"), g("incomplete"), g("downloaded"))
}

#[test]
fn announce_scrape_events_and_200_peers_on_one_ip() {
    let (_t, port) = start_tracker(&[]);
    let ih = [7u8; 20];
    for i in 0..200 {
        let (code, body) = http_get(
            port,
            &announce_q(&ih, &pid(i), 10000 + i as u16, 100, "&event=started"),
        )
        .unwrap();
        assert_eq!(code, 200);
        assert!(parse_response(&body).is_ok());
    }
    // Compact: all 199 others, each with its own port.
    let (_, body) = http_get(port, &announce_q(&ih, &pid(0), 10000, 100, "&numwant=200")).unwrap();
    let r = parse_response(&body).unwrap();
    assert_eq!(r.peers.len(), 199);
    let ports: std::collections::HashSet<u16> = r.peers.iter().map(|p| p.port()).collect();
    assert_eq!(ports.len(), 199);
    assert!(!ports.contains(&10000), "not given itself");
    assert_eq!(r.interval, Duration::from_secs(10));
    assert_eq!(r.incomplete, Some(200));
    // Dictionary form, with and without peer ids; default numwant 50.
    let (_, body) = http_get(port, &announce_q(&ih, &pid(1), 10001, 100, "&compact=0")).unwrap();
    let v = bencode::decode(&body).unwrap();
    let list = v.get("peers").unwrap().as_list().unwrap();
    assert_eq!(list.len(), 50);
    assert_eq!(
        list[0].get("peer id").unwrap().as_bytes().unwrap().len(),
        20
    );
    let (_, body) = http_get(
        port,
        &announce_q(&ih, &pid(1), 10001, 100, "&compact=0&no_peer_id=1"),
    )
    .unwrap();
    assert!(bencode::decode(&body)
        .unwrap()
        .get("peers")
        .unwrap()
        .as_list()
        .unwrap()[0]
        .get("peer id")
        .is_none());

    // Events: one completes, one stops.
    assert_eq!(scrape_counts(port, &ih), (0, 200, 0));
    http_get(
        port,
        &announce_q(&ih, &pid(5), 10005, 0, "&event=completed"),
    )
    .unwrap();
    http_get(
        port,
        &announce_q(&ih, &pid(6), 10006, 100, "&event=stopped"),
    )
    .unwrap();
    assert_eq!(scrape_counts(port, &ih), (1, 198, 1));
    // Scrape of everything lists the swarm too.
    let (_, all) = http_get(port, "/scrape").unwrap();
    assert!(bencode::decode(&all)
        .unwrap()
        .get("files")
        .unwrap()
        .as_dict()
        .unwrap()
        .contains_key(&ih.to_vec()));

    // The status views show it.
    let (code, json) = http_get(port, "/api/status").unwrap();
    assert_eq!(code, 200);
    let j: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(j["swarms"][0]["peers"].as_array().unwrap().len(), 199);
    assert_eq!(j["swarms"][0]["seeds"], 1);
    let (_, html) = http_get(port, "/").unwrap();
    let html = String::from_utf8_lossy(&html);
    assert!(html.contains(&pid(5)) && html.contains("<table"), "{html}");
    let (_, m) = http_get(port, "/metrics").unwrap();
    let m = String::from_utf8_lossy(&m);
    assert!(
        m.contains("tracker_peers 199") && m.contains("tracker_swarms 1"),
        "{m}"
    );
}

#[test]
fn every_bad_request_gets_a_failure_reason_and_the_tracker_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let (_f, torrent) =
        make_swarm_file(dir.path(), "a.bin", &content(40000, 9), "http://x/a", 16384);
    let (_t, port) = start_tracker(&["--allow", torrent.to_str().unwrap()]);
    let ih = testbed::metainfo::Torrent::from_file(&torrent)
        .unwrap()
        .info_hash
        .0;
    let good = announce_q(&ih, &pid(1), 7000, 1, "");
    let (_, body) = http_get(port, &good).unwrap();
    assert!(
        parse_response(&body).is_ok(),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let long = format!("{good}&pad={}", "x".repeat(5000));
    let cases: Vec<(String, &str)> = vec![
        (
            format!("/announce?peer_id={}&port=1", enc(pid(1).as_bytes())),
            "missing info_hash",
        ),
        (
            announce_q(&ih, &pid(1), 7000, 1, "").replace(&enc(&ih), "abc"),
            "info_hash must be 20 bytes",
        ),
        (
            format!("/announce?info_hash={}&port=1", enc(&ih)),
            "missing peer_id",
        ),
        (
            announce_q(&ih, &pid(1), 7000, 1, "").replace("port=7000", "port=0"),
            "invalid port",
        ),
        (
            announce_q(&ih, &pid(1), 7000, 1, "").replace("port=7000", "port=99999"),
            "invalid port",
        ),
        (
            announce_q(&[3; 20], &pid(1), 7000, 1, ""),
            "unknown torrent",
        ),
        (long, "query longer than"),
        (
            "/scrape?info_hash=short".to_string(),
            "info_hash must be 20 bytes",
        ),
    ];
    for (q, want) in cases {
        let (code, body) = http_get(port, &q).unwrap();
        assert_eq!(code, 200, "{q}");
        let err = parse_response(&body).unwrap_err();
        assert!(err.to_string().contains(want), "{q}: {err}");
    }
    let (_, body) = http_get(port, &good).unwrap();
    assert!(parse_response(&body).is_ok(), "still up and answering");
}

#[test]
fn silent_peers_expire_after_the_peer_timeout() {
    let (_t, port) = start_tracker(&["--interval", "1", "--peer-timeout", "2"]);
    let ih = [8u8; 20];
    http_get(port, &announce_q(&ih, &pid(1), 7001, 1, "&event=started")).unwrap();
    assert_eq!(scrape_counts(port, &ih).1, 1);
    wait_until(
        "the silent peer is dropped",
        Duration::from_secs(10),
        || scrape_counts(port, &ih) == (-1, -1, -1),
    );
}

#[test]
fn port_in_use_is_one_clear_line() {
    let (_t, port) = start_tracker(&[]);
    let out = Command::new(testbed_bin())
        .args(["tracker", "--port", &port.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("port {port}")) && err.contains("already in use"),
        "{err}"
    );
}

#[test]
fn our_peers_find_each_other_through_our_tracker() {
    let (_t, port) = start_tracker(&[]);
    let dir = tempfile::tempdir().unwrap();
    let data = content(1 << 20, 5);
    let (file, torrent) = make_swarm_file(
        dir.path(),
        "m.bin",
        &data,
        &format!("http://127.0.0.1:{port}/announce"),
        16384,
    );
    let t = torrent.to_str().unwrap();
    let (_seed, _) = start_peer("seed", &[t, "--data", file.to_str().unwrap(), "--seed"]);
    let out = dir.path().join("dl.bin");
    let log = dir.path().join("leech.log");
    let (mut leech, _) = start_peer(
        "leecher",
        &[
            t,
            "--data",
            out.to_str().unwrap(),
            "--exit-on-complete",
            "--log",
            log.to_str().unwrap(),
        ],
    );
    let status = leech
        .wait_timeout(Duration::from_secs(60))
        .expect("completes via tracker");
    assert!(status.success());
    assert!(read(&out) == data);
    // The leecher announced completed, then stopped: the tracker counted it.
    let ih = testbed::metainfo::Torrent::from_file(&torrent)
        .unwrap()
        .info_hash
        .0;
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while scrape_counts(port, &ih).2 != 1 {
        assert!(
            std::time::Instant::now() < end,
            "the tracker did not count the completed download ({:?}); the leecher's log:\n{}",
            scrape_counts(port, &ih),
            String::from_utf8_lossy(&read(&log))
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn interop_aria2c_downloads_from_our_seed_through_our_tracker() {
    if !have_tool("aria2c") {
        return;
    }
    let (_t, port) = start_tracker(&[]);
    let dir = tempfile::tempdir().unwrap();
    let data = content(2 << 20, 6);
    let (file, torrent) = make_swarm_file(
        dir.path(),
        "m.bin",
        &data,
        &format!("http://127.0.0.1:{port}/announce"),
        32768,
    );
    let seed_log = dir.path().join("seed.log");
    let (_seed, _) = start_peer(
        "seed",
        &[
            torrent.to_str().unwrap(),
            "--data",
            file.to_str().unwrap(),
            "--seed",
            "--log",
            seed_log.to_str().unwrap(),
        ],
    );
    let out_dir = dir.path().join("aria");
    let mut aria = Proc::spawn("aria2c", &mut aria2c_leecher(&torrent, &out_dir));
    let status = aria.wait_timeout(Duration::from_secs(60));
    let log = String::from_utf8_lossy(&read(&seed_log)).to_string();
    assert!(
        matches!(status, Some(s) if s.success()),
        "aria2c did not finish ({status:?}); our seed's log:\n{log}"
    );
    assert!(
        read(&out_dir.join("m.bin")) == data,
        "aria2c's copy is byte-identical"
    );
    crate::interop::record(
        &crate::interop::version("aria2c", "--version"),
        "downloads from our seed through our tracker",
        "ok, byte-identical",
    );
}

#[test]
fn slow_clients_are_cut_off_and_bogus_hashes_are_bounded() {
    use std::io::Read;
    // At most 40 connections, 1 s of silence allowed.
    let (_t, port) = start_tracker(&["--max-connections", "40", "--idle-timeout", "1"]);
    // 60 clients connect and send half a request line, then nothing.
    let slow: Vec<std::net::TcpStream> = (0..60)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let _ = std::io::Write::write_all(&mut s, b"GET /announce?info_hash=");
            s
        })
        .collect();
    // An honest announce still gets its answer (the slow ones are cut after 1 s).
    // (http_get gives up after 10 s without an answer: that is the deadline.)
    let (code, body) = http_get(port, &announce_q(&[5; 20], &pid(1), 7002, 1, "")).unwrap();
    assert_eq!(code, 200);
    assert!(parse_response(&body).is_ok());
    // Every slow connection is closed by the tracker.
    for mut s in slow {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 256];
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    break false
                }
                Err(_) => break true,
            }
        };
        assert!(closed, "a slow client still connected after 10 s");
    }

    // 10,000 distinct bogus info hashes fill the swarm table up to its limit, no further.
    let (_t2, port2) = start_tracker(&[]);
    let mut refused = 0;
    for i in 0..10_050u32 {
        let mut ih = [0u8; 20];
        ih[..4].copy_from_slice(&i.to_be_bytes());
        let (_, body) = http_get(port2, &announce_q(&ih, &pid(2), 7003, 1, "")).unwrap();
        if let Err(e) = parse_response(&body) {
            assert!(e.to_string().contains("too many swarms"), "{e}");
            refused += 1;
        }
    }
    assert_eq!(refused, 50, "the 10,000-swarm limit holds");
    let (_, m) = http_get(port2, "/metrics").unwrap();
    assert!(
        String::from_utf8_lossy(&m).contains("tracker_swarms 10000"),
        "{}",
        String::from_utf8_lossy(&m)
    );
}

/// Reads one HTTP/1.1 response (headers and a Content-Length body) from a kept-alive stream.
fn read_response(r: &mut impl std::io::BufRead) -> u16 {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let code = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut len = 0usize;
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    code
}

#[test]
fn the_access_log_has_every_request_when_the_tracker_stops() {
    use std::io::{BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let (mut t, port) = start_tracker(&["--log", log.to_str().unwrap()]);
    let ih = [5u8; 20];
    // Four kept-alive connections as fast as the tracker answers, so that lines are still
    // queued for the log's writer when the tracker is told to stop.
    let (conns, each) = (4, 2500);
    let clients: Vec<_> = (0..conns)
        .map(|c| {
            std::thread::spawn(move || {
                let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                s.set_nodelay(true).unwrap();
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                for i in 0..each {
                    let q = announce_q(&ih, &pid(c * each + i), 7000, 1, "&compact=1");
                    let req = format!("GET {q} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
                    w.write_all(req.as_bytes()).unwrap();
                    assert_eq!(read_response(&mut r), 200);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    t.signal(nix::sys::signal::Signal::SIGTERM);
    let status = t
        .wait_timeout(Duration::from_secs(10))
        .expect("the tracker stops on SIGTERM");
    assert!(status.success(), "{status:?}");
    let text = String::from_utf8_lossy(&read(&log)).into_owned();
    let lines = text
        .lines()
        .filter(|l| l.contains(" GET /announce "))
        .count();
    assert_eq!(
        lines,
        conns * each,
        "access log lines for {} announces",
        conns * each
    );
    // One line per request, each naming its peer.
    assert!(text.contains(&pid(0)) && text.contains(&pid(conns * each - 1)));
}
