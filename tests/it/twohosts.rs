//! The lab across two hosts, as the course ran it ("my client not necessarily on the same
//! machine as the world"): two network namespaces this test makes, joined by a veth pair, stand
//! in for the two hosts. The testbed runs in one with `bind: 0.0.0.0` and a `public_host`;
//! `vod-client` runs in the other and must get the movie from the world's peers, not only from
//! the VoD server. Needs root and iproute2 (CI has both); the namespaces are deleted whatever
//! happens.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// Two namespaces `a` (10.200.0.1) and `b` (10.200.0.2) on one link; deleted on drop.
struct TwoHosts {
    a: String,
    b: String,
}

impl TwoHosts {
    fn make() -> TwoHosts {
        let tag = std::process::id();
        let h = TwoHosts {
            a: format!("tb-a-{tag}"),
            b: format!("tb-b-{tag}"),
        };
        let ip = |args: &[&str]| {
            let st = Command::new("ip").args(args).status().unwrap();
            assert!(st.success(), "ip {args:?}");
        };
        ip(&["netns", "add", &h.a]);
        ip(&["netns", "add", &h.b]);
        ip(&[
            "link", "add", "tbva", "netns", &h.a, "type", "veth", "peer", "name", "tbvb", "netns",
            &h.b,
        ]);
        for (ns, dev, addr) in [
            (&h.a, "tbva", "10.200.0.1/24"),
            (&h.b, "tbvb", "10.200.0.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        h
    }

    /// `cmd` run in namespace `ns`.
    fn exec(ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn my_client_on_another_host_gets_the_movie_from_the_world() {
    if !nix::unistd::geteuid().is_root() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("the two-host test needs root under CI");
        }
        eprintln!("SKIPPED: the two-host test makes network namespaces: it needs root");
        return;
    }
    if !have_tool("ip") {
        return;
    }
    let hosts = TwoHosts::make();
    let movie = content(600_000, 41);
    let lab = Scenario::new(
        &[("movie.bin", movie.clone())],
        "bind: 0.0.0.0, public_host: 10.200.0.1, interval: 2",
        "seed: 5\ntorrents: {piece_length: 16384}\n\
         world: {clients: 4, seeds: 1, upload_rate: 200, start_fraction: {min: 0.2, max: 0.6}, linger: 600}\n",
    );
    // The testbed on host A (`testbed stop` ends it from anywhere: Scenario's drop).
    let out = TwoHosts::exec(&hosts.a, testbed_bin())
        .args(["start", "--config"])
        .arg(&lab.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "testbed start in {}: {}",
        hosts.a,
        String::from_utf8_lossy(&out.stderr)
    );
    let status = TwoHosts::exec(&hosts.a, testbed_bin())
        .args(["status", "--config"])
        .arg(&lab.config)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(status.contains("addresses    shared"), "{status}");
    assert!(
        status.contains("http://10.200.0.1:"),
        "the URLs name the public host: {status}"
    );
    let torrent = lab.run_dir().join("torrents/movie.bin.torrent");
    let hash = status
        .lines()
        .find(|l| l.contains("VoD server"))
        .and_then(|l| l.rsplit('/').next())
        .unwrap()
        .trim()
        .to_string();
    // vod-client on host B, through the public host only.
    let saveas = lab.root().join("b/movie.bin");
    let report = lab.root().join("b/report.json");
    std::fs::create_dir_all(saveas.parent().unwrap()).unwrap();
    let mut client = Proc::spawn(
        "vod-client on host B",
        TwoHosts::exec(&hosts.b, env!("CARGO_BIN_EXE_vod-client"))
            .arg("--saveas")
            .arg(&saveas)
            .arg("--report")
            .arg(&report)
            .args(["--rate", "100", "--delay", "3", "--prefetch", "1"])
            .arg(format!(
                "--vod-server=http://10.200.0.1:{}/vod/{hash}",
                lab.port
            ))
            .arg(&torrent)
            .stdout(std::process::Stdio::null()),
    );
    let st = client
        .wait_timeout(Duration::from_secs(60))
        .expect("vod-client ends with playback");
    assert!(st.success(), "vod-client: {st}");
    assert!(read(&saveas) == movie, "the played file is byte-identical");
    let r: serde_json::Value = serde_json::from_slice(&read(&report)).unwrap();
    let from_peers = r["bytes_from_peers"].as_u64().unwrap();
    assert!(
        from_peers > 0,
        "my client on host B got nothing from the world's peers: {r}"
    );
    // The world clients saw it under host B's address.
    let logs = std::fs::read_dir(lab.run_dir().join("logs"))
        .unwrap()
        .flatten()
        .map(|e| String::from_utf8_lossy(&read(&e.path())).to_string())
        .collect::<String>();
    assert!(
        logs.contains("addr=10.200.0.2:"),
        "no world client met host B"
    );
}
