//! What the integration tests (tests/it) and the benchmarks (benches/lab.rs, which includes
//! this file) share: child processes that are always killed, ports, a plain HTTP GET, waiting on
//! a condition with a deadline, and a testbed [`Scenario`] that is always stopped. Nothing here
//! panics on a failure of the lab: callers decide (a test asserts, a bench reports).
#![allow(dead_code)] // each includer uses its part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

pub fn testbed_bin() -> &'static str {
    env!("CARGO_BIN_EXE_testbed")
}

/// A child process killed (SIGKILL) and reaped when dropped, so a failing test or bench
/// leaves nothing.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    /// Start `cmd` (stdin closed unless the caller set it).
    pub fn start(name: &str, cmd: &mut Command) -> std::io::Result<Proc> {
        let child = cmd.spawn().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("starting {name} ({:?}): {e}", cmd.get_program()),
            )
        })?;
        Ok(Proc {
            child,
            name: name.to_string(),
        })
    }

    /// [`Proc::start`] for tests: a program that cannot start fails the test.
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        Proc::start(name, cmd).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Wait for the process to exit on its own, up to `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Its exit status and what it wrote to its piped stdout and stderr, once it has exited
    /// (see [`Proc::wait_timeout`]).
    pub fn output(&mut self) -> std::process::Output {
        use std::io::Read;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        if let Some(o) = self.child.stdout.as_mut() {
            let _ = o.read_to_end(&mut stdout);
        }
        if let Some(e) = self.child.stderr.as_mut() {
            let _ = e.read_to_end(&mut stderr);
        }
        let status = self.child.wait().expect("a child to wait for");
        std::process::Output {
            status,
            stdout,
            stderr,
        }
    }

    /// Send `sig` to the process (it must still be there).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig)
            .unwrap_or_else(|e| panic!("{}: {sig}: {e}", self.name));
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `cond` every 20 ms until it holds (`Ok`) or `timeout` passes (`Err` naming `what`).
pub fn wait_for(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            return Err(format!("timed out after {timeout:?} waiting for: {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
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

/// A plain HTTP/1.0 GET on loopback: (status code, body). The body ends at its Content-Length
/// when there is one (aquatic_http keeps even an HTTP/1.0 connection open), else at the close.
pub fn http_get(port: u16, path_and_query: &str) -> std::io::Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = Vec::new();
    let mut chunk = [0u8; 16384];
    let (split, length) = loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::other("closed before the header's end"));
        }
        resp.extend_from_slice(&chunk[..n]);
        if let Some(split) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase();
            let length = head.lines().find_map(|l| {
                l.strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
            break (split, length);
        }
    };
    match length {
        Some(len) => {
            while resp.len() < split + 4 + len {
                let n = s.read(&mut chunk)?;
                if n == 0 {
                    break;
                }
                resp.extend_from_slice(&chunk[..n]);
            }
            resp.truncate(split + 4 + len);
        }
        None => {
            s.read_to_end(&mut resp)?;
        }
    }
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, resp[split + 4..].to_vec()))
}

/// A testbed scenario: a folder holding its fresh-files (`fresh/`), run dir (`run/`) and config
/// (`testbed.yaml`: those, a tracker port of its own, and the caller's YAML). Dropped, it runs
/// `testbed stop`, whatever happened; a scenario in a temp dir also deletes the folder.
pub struct Scenario {
    root: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub config: PathBuf,
    pub port: u16,
}

impl Scenario {
    /// In a new temp dir, with `files` as its fresh-files; `tracker` is YAML keys to add to the
    /// port (e.g. `interval: 2`), `yaml` the rest of the config (world, my client, ...).
    pub fn new(files: &[(&str, Vec<u8>)], tracker: &str, yaml: &str) -> Scenario {
        let tmp = tempfile::tempdir().expect("a temp dir");
        let mut s = Scenario::in_dir(tmp.path(), files, tracker, yaml).expect("scenario files");
        s._tmp = Some(tmp);
        s
    }

    /// In `root` (made if missing, kept after the scenario ends).
    pub fn in_dir(
        root: &Path,
        files: &[(&str, Vec<u8>)],
        tracker: &str,
        yaml: &str,
    ) -> std::io::Result<Scenario> {
        let fresh = root.join("fresh");
        std::fs::create_dir_all(&fresh)?;
        for (name, data) in files {
            std::fs::write(fresh.join(name), data)?;
        }
        let port = free_port();
        let config = root.join("testbed.yaml");
        let sep = if tracker.is_empty() { "" } else { ", " };
        std::fs::write(
            &config,
            format!(
                "run_dir: {}\nfresh_files: {}\ntracker: {{port: {port}{sep}{tracker}}}\n{yaml}",
                root.join("run").display(),
                fresh.display()
            ),
        )?;
        Ok(Scenario {
            root: root.to_path_buf(),
            _tmp: None,
            config,
            port,
        })
    }

    /// In `root` (made if missing, kept after the scenario ends), with `config` (a parsed
    /// testbed config, e.g. `configs/default.yaml`) whose run dir, fresh-files and tracker port
    /// are set to the scenario's.
    pub fn from_config(
        root: &Path,
        files: &[(&str, Vec<u8>)],
        mut config: serde_yaml::Value,
    ) -> std::io::Result<Scenario> {
        let s = Scenario::in_dir(root, files, "", "")?;
        config["run_dir"] = s.run_dir().display().to_string().into();
        config["fresh_files"] = s.fresh_dir().display().to_string().into();
        if !config["tracker"].is_mapping() {
            config["tracker"] = serde_yaml::Mapping::new().into();
        }
        config["tracker"]["port"] = u64::from(s.port).into();
        let text = serde_yaml::to_string(&config).map_err(std::io::Error::other)?;
        std::fs::write(&s.config, text)?;
        Ok(s)
    }

    /// The scenario's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    /// The scenario's fresh-files.
    pub fn fresh_dir(&self) -> PathBuf {
        self.root.join("fresh")
    }

    /// `testbed COMMAND --config CONFIG ARGS...`, waited for.
    pub fn testbed(&self, command: &str, args: &[&str]) -> Output {
        self.command(command, args)
            .output()
            .expect("the testbed binary runs")
    }

    /// The command line of [`Self::testbed`], to run as the caller likes.
    pub fn command(&self, command: &str, args: &[&str]) -> Command {
        let mut c = Command::new(testbed_bin());
        c.arg(command).arg("--config").arg(&self.config).args(args);
        c
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

/// `testbed stop --run-dir D` for each folder when dropped: testbeds a test starts beside its
/// scenario's own (`--run-dir`, `compare --jobs`) end even when the test fails.
pub struct StopRunDirs<'a>(pub &'a Scenario, pub Vec<PathBuf>);

impl Drop for StopRunDirs<'_> {
    fn drop(&mut self) {
        for d in &self.1 {
            let _ = self
                .0
                .testbed("stop", &["--run-dir", &d.display().to_string()]);
        }
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        let _ = self.testbed("stop", &[]);
    }
}

/// The pids of every process on this machine (one read of /proc; tests look for survivors).
pub fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .collect()
}

/// Live processes carrying `TESTBED_RUN_ID=run_id`.
pub fn marked(run_id: &str) -> Vec<i32> {
    let needle = format!("TESTBED_RUN_ID={run_id}").into_bytes();
    all_pids()
        .into_iter()
        .filter(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            env.split(|&b| b == 0).any(|kv| kv == needle)
        })
        .collect()
}

/// Processes whose command line mentions `needle`.
pub fn in_cmdline(needle: &str) -> Vec<(i32, String)> {
    all_pids()
        .into_iter()
        .filter_map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(needle).then_some((pid, cmd))
        })
        .collect()
}

/// Shadow as `make deps` installs it.
pub const SHADOW: &str = "/opt/shadow/bin/shadow";

/// Runs Shadow on `config` in `dir` with `parallelism` threads: its hosts' folders land in
/// `dir/shadow.data`, its own log in `dir/shadow.log`. `Ok(None)` if it has not ended within
/// `timeout` (it is then killed).
pub fn run_shadow(
    dir: &Path,
    config: &Path,
    parallelism: u32,
    timeout: Duration,
) -> std::io::Result<Option<ExitStatus>> {
    let log = std::fs::File::create(dir.join("shadow.log"))?;
    let mut shadow = Proc::start(
        "shadow",
        Command::new(SHADOW)
            .args([
                "--parallelism",
                &parallelism.to_string(),
                "--progress",
                "false",
            ])
            .arg(config)
            .current_dir(dir)
            .stdout(log.try_clone()?)
            .stderr(log),
    )?;
    Ok(shadow.wait_timeout(timeout))
}
