//! Helpers shared by the integration tests: child processes that are always killed, waiting on
//! a condition with a deadline, scratch content.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn testbed_bin() -> &'static str {
    env!("CARGO_BIN_EXE_testbed")
}

/// A child process killed (SIGKILL) and reaped when dropped, so a failing test leaves nothing.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc {
            child,
            name: name.to_string(),
        }
    }

    /// Wait for the process to exit on its own, up to `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `cond` every 20 ms until it holds or `timeout` passes; panics with `what` on timeout.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// A TCP port for a server that a test starts, which no other test of this run gets and no
/// other process is likely to take before the server binds it.
///
/// A port bound to 0 and released (the usual trick) comes from the kernel's ephemeral range,
/// where every client socket and every `--port 0` peer of a parallel test also takes its
/// ports: it can be taken before the server binds it. So ports are handed out below the
/// ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`), once each per process from a
/// counter, starting at a place drawn from the pid (two test processes rarely overlap), and
/// skipping any port that something already holds.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (base, span) = (10_000u32, low.saturating_sub(10_000).max(1000));
    let start = std::process::id() * 97 % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (base + (start + n) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below {low}");
}

/// A plain HTTP/1.0 GET on loopback: (status code, body).
pub fn http_get(port: u16, path_and_query: &str) -> std::io::Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    )?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, resp[split + 4..].to_vec()))
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

/// A testbed scenario in a temp dir: its own fresh-files, run dir and tracker port, and a
/// config made of those plus `yaml` (the world, my client, ...; `tracker` is given as the keys
/// to add to the port, e.g. `interval: 2`). Dropped, it runs `testbed stop`, whatever happened.
pub struct Scenario {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub port: u16,
}

impl Scenario {
    pub fn new(files: &[(&str, Vec<u8>)], tracker: &str, yaml: &str) -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh");
        std::fs::create_dir_all(&fresh).unwrap();
        for (name, data) in files {
            std::fs::write(fresh.join(name), data).unwrap();
        }
        let port = free_port();
        let config = dir.path().join("testbed.yaml");
        let sep = if tracker.is_empty() { "" } else { ", " };
        std::fs::write(
            &config,
            format!(
                "run_dir: {}\nfresh_files: {}\ntracker: {{port: {port}{sep}{tracker}}}\n{yaml}",
                dir.path().join("run").display(),
                fresh.display()
            ),
        )
        .unwrap();
        Scenario { dir, config, port }
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// The scenario's fresh-files.
    pub fn fresh_dir(&self) -> PathBuf {
        self.dir.path().join("fresh")
    }

    /// `testbed COMMAND --config CONFIG ARGS...`, waited for.
    pub fn testbed(&self, command: &str, args: &[&str]) -> std::process::Output {
        Command::new(testbed_bin())
            .arg(command)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    /// `testbed start`, which must succeed.
    pub fn start(&self, my_client: &[&str]) {
        let out = self.testbed("start", my_client);
        assert!(
            out.status.success(),
            "testbed start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        let _ = self.testbed("stop", &[]);
    }
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
