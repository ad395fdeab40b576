//! Helpers of the integration tests: scratch content, peers, trackers and real clients, on top
//! of what they share with the benchmarks ([`crate::support`]: processes, ports, scenarios).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use crate::support::*;

/// The command's stdout, after asserting it succeeded (its output in the message if not).
pub fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "exit {}: {}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// [`wait_for`] that fails the test on timeout.
pub fn wait_until(what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
    if let Err(e) = wait_for(what, timeout, cond) {
        panic!("{e}");
    }
}

/// A copy of this build's `testbed` and `vod-client` in a folder of their own, for a test that
/// rebuilds one of them under a running compare.
pub struct BuildCopy {
    pub dir: PathBuf,
}

impl BuildCopy {
    pub fn new(dir: PathBuf) -> BuildCopy {
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["testbed", "vod-client"] {
            let exe = Path::new(testbed_bin()).with_file_name(name);
            std::fs::copy(exe, dir.join(name)).unwrap();
        }
        BuildCopy { dir }
    }

    pub fn testbed(&self) -> PathBuf {
        self.dir.join("testbed")
    }

    /// "Rebuilds" `name`: a new file takes the program's name, as cargo's linker does.
    pub fn rebuild(&self, name: &str) {
        let new = self.dir.join(format!("{name}.new"));
        std::fs::copy(self.dir.join(name), &new).unwrap();
        std::fs::rename(new, self.dir.join(name)).unwrap();
    }
}

/// The rows of a `runs.csv`, each a map from column name to field: read by name, as a
/// script should.
pub fn runs_csv(path: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    csv::Reader::from_path(path)
        .and_then(|mut r| r.deserialize().collect())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The columns of `runs.csv` format 1 that a build from before the referee's split and the
/// build wrote, stated here as that build wrote them (not taken from the reader under test).
pub const FORMAT1_BEFORE_BUILD: [&str; 14] = [
    "entrant",
    "seed",
    "repeat",
    "share",
    "penalty_bytes",
    "penalty_source",
    "late_pieces",
    "my_client_exit",
    "seconds",
    "startup_pieces",
    "jobs",
    "first_piece_at",
    "upload_peak_kbps",
    "upload_over_cap",
];

/// The rows in a compare's `out/runs.csv` (0 before it has any).
pub fn runs_csv_rows(out: &Path) -> usize {
    std::fs::read_to_string(out.join("runs.csv"))
        .map(|t| t.lines().count().saturating_sub(1))
        .unwrap_or(0)
}

/// Deterministic pseudo-random content of `len` bytes.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Write `data` to `dir/name` and make a torrent for it announcing to `announce`.
pub fn make_swarm_file(
    dir: &Path,
    name: &str,
    data: &[u8],
    announce: &str,
    piece_length: u32,
) -> (PathBuf, PathBuf) {
    let file = dir.join(name);
    std::fs::write(&file, data).unwrap();
    let torrent = dir.join(format!("{name}.torrent"));
    let out = Command::new(testbed_bin())
        .args(["make-torrent"])
        .arg(&file)
        .args([
            "--announce",
            announce,
            "--piece-length",
            &piece_length.to_string(),
            "-o",
        ])
        .arg(&torrent)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make-torrent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (file, torrent)
}

/// Start `testbed peer` with `args`, wait for its `listening ADDR` line, return it and the address.
pub fn start_peer(name: &str, args: &[&str]) -> (Proc, std::net::SocketAddr) {
    let mut p = Proc::spawn(
        name,
        Command::new(testbed_bin())
            .arg("peer")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    let stdout = p.child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{name}: no `listening` line within 20 s"));
    let addr = line
        .split_whitespace()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{name}: unexpected first line {line:?}"));
    (p, addr)
}

/// Whether a program is on PATH. Under CI (`CI=true`) a missing one is a failure; elsewhere the
/// caller skips with a visible message.
pub fn have_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{tool} is not installed, and CI must run this test (make deps installs it)");
        }
        eprintln!("SKIPPED: {tool} is not installed (make deps installs it)");
    }
    found
}

pub fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_default()
}

/// `testbed tracker` on a free port, answering before this returns.
pub fn start_tracker(extra: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let p = Proc::spawn(
        "tracker",
        Command::new(testbed_bin())
            .args(["tracker", "--port", &port.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_until("the tracker answers", Duration::from_secs(20), || {
        http_get(port, "/metrics").is_ok()
    });
    (p, port)
}

/// Our peer (`testbed peer --exit-on-complete`, no tracker) downloads `torrent` from the client
/// `name` serving it on loopback `port`; asserts it completes within 60 s with `data`, byte for
/// byte, and prints both logs if not. Returns the seconds it took.
pub fn leech_from(
    name: &str,
    torrent: &Path,
    port: u16,
    data: &[u8],
    dir: &Path,
    client_log: &Path,
) -> f64 {
    let out = dir.join("ours.bin");
    let log = dir.join("ours.log");
    let t0 = Instant::now();
    let (mut leech, _) = start_peer(
        "our leecher",
        &[
            torrent.to_str().unwrap(),
            "--data",
            out.to_str().unwrap(),
            "--tracker",
            "",
            "--peer",
            &format!("127.0.0.1:{port}"),
            "--exit-on-complete",
            "--log",
            log.to_str().unwrap(),
        ],
    );
    let status = leech.wait_timeout(Duration::from_secs(60));
    assert!(
        matches!(status, Some(s) if s.success()),
        "our peer did not complete from {name}; our log:\n{}\n{name}'s log:\n{}",
        String::from_utf8_lossy(&read(&log)),
        String::from_utf8_lossy(&read(client_log)),
    );
    assert!(read(&out) == data, "our copy from {name} is byte-identical");
    t0.elapsed().as_secs_f64()
}

/// aria2c downloading `torrent` into `out_dir` and exiting when done (no DHT, LPD or PEX: only
/// the torrent's tracker), quiet but for warnings.
pub fn aria2c_leecher(torrent: &Path, out_dir: &Path) -> Command {
    let mut c = Command::new("aria2c");
    c.arg("--seed-time=0")
        .arg(format!("--listen-port={}", free_port()))
        .arg(format!("--dir={}", out_dir.display()))
        .args([
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--console-log-level=warn",
            "--summary-interval=0",
        ])
        .arg(torrent)
        .stdout(Stdio::null());
    c
}
