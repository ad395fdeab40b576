//! `make bench`: the lab's speed and scale figures beside their anchors, measured in one run on
//! this machine, written to `run/bench.json` and to the generated table in BENCHMARKS.md.
//!
//! Sections, each bounded in time and on loopback only:
//! * `sha1`: piece hashing, the sha1 crate against the machine's openssl.
//! * `tracker`: our tracker as the lab runs it (access log on, into a file) and with the log
//!   off, against aquatic_http (the strongest open HTTP tracker) and opentracker under the same
//!   wrk load (one torrent, 5000 peer ids, numwant=50, compact); three rounds in turn.
//! * `wire`: one torrent (1 GiB) from a seed process to a leecher process, ours against
//!   libtorrent (TCP only), every piece hash-checked, the result compared byte for byte.
//! * `cap`: upload-cap accuracy, measured by a raw wire leecher in this harness.
//! * `scale`: worlds of 200 and 500 clients: start, stop, memory and idle CPU, and the status
//!   page with that many clients: server render and a refresh in headless Chromium.
//! * `netem`: the cost of network emulation: a world of 500 clients downloading through the
//!   link stage (configs/network.yaml's profile) against the same world without it: time until
//!   every client completes, the CPU of all processes, and the stage thread's own.
//! * `vod`: `testbed compare` of the three policies on `configs/default.yaml`,
//!   `configs/scarce.yaml` and `configs/network.yaml`, five seeds each, one experiment at a time: mean server share with its
//!   95 % interval, and the paired verdict of deadline against sequential. About an hour, so it
//!   runs only when named: `make bench BENCH=vod` (`VOD_SEEDS=N`, `VOD_SECS=S` for a prefix of
//!   the movie).
//! * `clients`: the league table (issue 18): every installable real client's streaming mode
//!   (its wrapper in examples/) and our three policies, one `testbed compare` on the standard
//!   experiment's first 60 s (`CLIENTS_SECS=S`, 0 for the whole movie), five seeds
//!   (`CLIENTS_SEEDS=N`); rows here, the table in BENCHMARKS.md and the README, every run's
//!   dots in benches/clients.svg. Long (about 65 minutes): `make bench BENCH=clients`.
//!
//! `QUICK=1` shortens every section (under 3 minutes); `BENCH=tracker,cap` runs only those.
//! Run through `make bench`, which installs the anchors first.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::BytesMut;
use rand::{RngCore, SeedableRng};
use serde::Serialize;

#[allow(dead_code)] // the page test takes screenshots; the bench only times
#[path = "../tests/it/webdriver.rs"]
mod webdriver;

// Processes, ports, HTTP and scenarios, shared with the integration tests.
#[path = "../tests/it/support.rs"]
mod support;

use support::{free_port, wait_for, Proc, Scenario};

use testbed::metainfo::Torrent;
use testbed::wire::{BlockRef, Decoder, Handshake, Message, BLOCK_SIZE};

const TESTBED: &str = env!("CARGO_BIN_EXE_testbed");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const MIB: u64 = 1024 * 1024;

#[derive(Debug, Serialize, Clone)]
struct Figure {
    section: &'static str,
    name: String,
    value: f64,
    unit: &'static str,
    /// The anchor's figure for the same measure, when there is one.
    anchor: Option<f64>,
    anchor_name: Option<&'static str>,
    /// value / anchor (for figures where more is better) or anchor / value (less is better).
    ratio: Option<f64>,
    target: Option<String>,
    pass: Option<bool>,
}

/// The sections, in the order they run and are tabled.
const SECTIONS: [&str; 8] = [
    "sha1", "tracker", "wire", "cap", "scale", "netem", "vod", "clients",
];

struct Bench {
    quick: bool,
    /// Only some sections were asked for (BENCH=...).
    partial: bool,
    /// BENCH=... named the sections.
    named: bool,
    sections_run: Vec<&'static str>,
    /// Sections that stopped with an error (or were stopped): BENCHMARKS.md keeps their rows
    /// from their last complete run, and says so.
    failed: Vec<&'static str>,
    dir: PathBuf,
    figures: Vec<Figure>,
    errors: Vec<String>,
}

impl Bench {
    fn add(&mut self, section: &'static str, name: &str, value: f64, unit: &'static str) -> usize {
        println!("  {name}: {value:.3} {unit}");
        self.figures.push(Figure {
            section,
            name: name.to_string(),
            value,
            unit,
            anchor: None,
            anchor_name: None,
            ratio: None,
            target: None,
            pass: None,
        });
        self.figures.len() - 1
    }

    fn anchor(&mut self, i: usize, name: &'static str, anchor: f64, more_is_better: bool) {
        let f = &mut self.figures[i];
        f.anchor = Some(anchor);
        f.anchor_name = Some(name);
        f.ratio = Some(if more_is_better {
            f.value / anchor
        } else {
            anchor / f.value
        });
        println!(
            "    {name}: {anchor:.3} {} (ratio {:.2})",
            f.unit,
            f.ratio.unwrap()
        );
    }

    /// [`Self::anchor`] (more is better) with the target of at least `min` times the anchor.
    fn at_least(&mut self, i: usize, name: &'static str, anchor: f64, min: f64) {
        self.anchor(i, name, anchor, true);
        let r = self.figures[i].ratio.unwrap_or(0.0);
        self.target(i, &format!(">= {min}x {name}"), r >= min);
    }

    fn target(&mut self, i: usize, target: &str, pass: bool) {
        let f = &mut self.figures[i];
        f.target = Some(target.to_string());
        f.pass = Some(pass);
        println!(
            "    target {target}: {}",
            if pass { "pass" } else { "MISS" }
        );
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` builds and runs bench targets too: there it checks how a
        // run's rows are merged into BENCHMARKS.md, and measures nothing.
        check_merge();
        println!("lab bench: table merge checked; run the bench with `make bench`");
        return;
    }
    let quick = std::env::var("QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let only: Option<Vec<String>> = std::env::var("BENCH")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| s.split(',').map(str::to_string).collect());
    let dir = Path::new(ROOT).join("run/bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create run/bench");
    let mut b = Bench {
        quick,
        partial: only.is_some(),
        named: only.is_some(),
        sections_run: Vec::new(),
        failed: Vec::new(),
        dir,
        figures: Vec::new(),
        errors: Vec::new(),
    };
    let started = Instant::now();
    type Section = fn(&mut Bench) -> Result<()>;
    /// Sections left out of a plain `make bench` (which stays under 15 minutes): the VoD
    /// comparison and the league table are hours of experiments one at a time; `make bench
    /// BENCH=vod` (or `clients`) runs them.
    const LONG: [&str; 2] = ["vod", "clients"];
    let sections: [(&str, Section); 8] = [
        ("sha1", sha1),
        ("tracker", tracker),
        ("wire", wire),
        ("cap", cap),
        ("scale", scale),
        ("netem", netem),
        ("vod", vod),
        ("clients", clients),
    ];
    for (name, run) in sections {
        let named = only.as_ref().map(|o| o.iter().any(|s| s == name));
        // A long section runs only when named: its rows in BENCHMARKS.md are kept otherwise.
        if named == Some(false) || (named.is_none() && LONG.contains(&name)) {
            b.partial |= named.is_none();
            continue;
        }
        println!("== {name}");
        b.sections_run.push(name);
        let t = Instant::now();
        if let Err(e) = run(&mut b) {
            println!("  {name} failed: {e:#}");
            b.errors.push(format!("{name}: {e:#}"));
            b.failed.push(name);
        }
        println!("  ({:.0} s)", t.elapsed().as_secs_f64());
    }
    let total = started.elapsed().as_secs_f64();
    if let Err(e) = write_results(&b, total) {
        eprintln!("lab bench: writing results: {e:#}");
        std::process::exit(1);
    }
    println!("== {total:.0} s in all; run/bench.json written");
    if !b.errors.is_empty() {
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Processes and waiting

fn spawn(cmd: &mut Command) -> Result<Proc> {
    let name = format!("{:?}", cmd.get_program());
    Ok(Proc::start(&name, cmd.stdin(Stdio::null()))?)
}

fn wait_until(what: &str, timeout: Duration, f: impl FnMut() -> bool) -> Result<()> {
    wait_for(what, timeout, f).map_err(anyhow::Error::msg)
}

/// Wait for a process to exit, killing it at the deadline.
fn wait_exit(p: &mut Proc, what: &str, timeout: Duration) -> Result<std::process::ExitStatus> {
    match p.wait_timeout(timeout) {
        Some(st) => Ok(st),
        None => {
            let _ = p.child.kill();
            bail!("{what} did not finish within {timeout:?}")
        }
    }
}

fn wait_port(port: u16, timeout: Duration) -> Result<()> {
    wait_until(&format!("port {port}"), timeout, || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
}

/// The body of a GET that answered 200.
fn http_get(port: u16, path: &str) -> Result<String> {
    let (code, body) = support::http_get(port, path)?;
    if code != 200 {
        bail!("HTTP {code} from :{port}{path}");
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// CPU seconds (user + system) of children reaped so far.
fn children_cpu() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    let r = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(r.user_time()) + t(r.system_time())
}

/// CPU seconds (user + system) a live process has used, from /proc.
fn proc_cpu(pid: i32) -> f64 {
    proc_cpu_at(&format!("/proc/{pid}/stat"))
}

/// User + system CPU seconds from a `stat` file of /proc (a process's or a thread's).
fn proc_cpu_at(path: &str) -> f64 {
    let Ok(s) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    let Some((_, rest)) = s.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / clock_ticks()
}

/// /proc's clock ticks per second (USER_HZ, 100 on every Linux architecture the lab runs on).
fn clock_ticks() -> f64 {
    100.0
}

/// Resident memory of a live process in bytes.
fn proc_rss(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Alive and not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn random_file(path: &Path, size: u64, seed: u64) -> Result<()> {
    std::fs::create_dir_all(path.parent().unwrap())?;
    let mut f = std::io::BufWriter::with_capacity(4 * MIB as usize, std::fs::File::create(path)?);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut buf = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        let n = left.min(MIB) as usize;
        rng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

fn make_torrent(file: &Path, out: &Path, piece_length: u32) -> Result<Torrent> {
    let st = Command::new(TESTBED)
        .args(["make-torrent", "--announce", "http://127.0.0.1:9/announce"])
        .arg("--piece-length")
        .arg(piece_length.to_string())
        .arg("-o")
        .arg(out)
        .arg(file)
        .stdout(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("testbed make-torrent {} failed", file.display());
    }
    Torrent::from_file(out)
}

fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 4 * MIB as usize], vec![0u8; 4 * MIB as usize]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// Lines a child prints, readable with a timeout.
fn lines_of(p: &mut Proc) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = p.child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

// ---------------------------------------------------------------------------------------------
// SHA-1 of pieces: the sha1 crate (SHA-NI when the CPU has it) vs the machine's openssl

fn sha1(b: &mut Bench) -> Result<()> {
    let secs = if b.quick { 1.0 } else { 3.0 };
    let piece = vec![0x5au8; 256 * 1024];
    let t = Instant::now();
    let mut bytes = 0u64;
    let mut acc = 0u8;
    while t.elapsed().as_secs_f64() < secs {
        for _ in 0..16 {
            acc ^= testbed::metainfo::Sha1Hash::of(std::hint::black_box(&piece)).0[0];
            bytes += piece.len() as u64;
        }
    }
    std::hint::black_box(acc);
    let ours = bytes as f64 / t.elapsed().as_secs_f64() / MIB as f64;
    let out = Command::new("openssl")
        .args(["speed", "-evp", "sha1", "-bytes", "262144", "-seconds"])
        .arg(format!("{}", secs as u32))
        .stderr(Stdio::null())
        .output()
        .context("running openssl speed")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The last line: "sha1  1677887.09k" (thousands of bytes per second).
    let k: f64 = text
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.trim_end_matches('k').parse().ok())
        .ok_or_else(|| anyhow!("could not read openssl speed's output: {text}"))?;
    let i = b.add("sha1", "SHA-1 of 256 KiB pieces, one core", ours, "MiB/s");
    b.anchor(i, "openssl speed", k * 1000.0 / MIB as f64, true);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Tracker: ours (access log on and off) vs aquatic_http and opentracker under wrk

const ANNOUNCE_LUA: &str = r#"
-- One torrent, 5000 distinct peers (peer id and port vary), numwant=50, compact.
local n = 0
local hash = string.rep("%AB", 20)
request = function()
  n = n + 1
  local id = n % 5000
  local path = "/announce?info_hash=" .. hash ..
    "&peer_id=-BN0001-" .. string.format("%012d", id) ..
    "&port=" .. (10000 + id) ..
    "&uploaded=0&downloaded=0&left=1000&compact=1&numwant=50&event=started"
  return wrk.format("GET", path)
end
"#;

struct WrkResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn wrk(port: u16, secs: u32, script: &Path) -> Result<WrkResult> {
    let out = Command::new("wrk")
        .args(["-t1", "-c64", &format!("-d{secs}s"), "--latency", "-s"])
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}/announce"))
        .output()
        .context("running wrk (make bench installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let field = |key: &str| -> Option<&str> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key).map(str::trim))
    };
    let ms = |v: &str| -> Option<f64> {
        let v = v.split_whitespace().next()?;
        let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
        let x: f64 = num.parse().ok()?;
        Some(match unit {
            "us" => x / 1000.0,
            "ms" => x,
            "s" => x * 1000.0,
            "m" => x * 60000.0,
            _ => return None,
        })
    };
    let parse = || -> Option<WrkResult> {
        Some(WrkResult {
            rps: field("Requests/sec:")?.parse().ok()?,
            p50_ms: ms(field("50%")?)?,
            p99_ms: ms(field("99%")?)?,
            errors: field("Non-2xx or 3xx responses:")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        })
    };
    parse().ok_or_else(|| anyhow!("could not read wrk's output:\n{text}"))
}

/// One announce as wrk sends it must get peers back, not a failure reason.
fn check_announce(port: u16, who: &str) -> Result<()> {
    let hash = "%AB".repeat(20);
    let body = http_get(
        port,
        &format!(
            "/announce?info_hash={hash}&peer_id=-BN0001-999999999999&port=9999\
             &uploaded=0&downloaded=0&left=1000&compact=1&numwant=50"
        ),
    )?;
    if body.contains("failure reason") || !body.contains("5:peers300:") {
        bail!("{who} did not answer an announce with 50 peers: {body:.200}");
    }
    Ok(())
}

/// aquatic_http as `make bench` installs it (tests/install-deps.sh), else from PATH.
fn aquatic_http() -> PathBuf {
    let opt = PathBuf::from("/opt/aquatic/bin/aquatic_http");
    if opt.exists() {
        opt
    } else {
        PathBuf::from("aquatic_http")
    }
}

/// One tracker under wrk: started by `start` on `port`, loaded, checked, ended.
fn load_tracker(
    who: &str,
    port: u16,
    secs: u32,
    script: &Path,
    start: &mut Command,
) -> Result<WrkResult> {
    let _t = spawn(start.stdout(Stdio::null()).stderr(Stdio::null()))
        .with_context(|| format!("{who} (make bench installs it)"))?;
    wait_port(port, Duration::from_secs(10))?;
    let r = wrk(port, secs, script)?;
    check_announce(port, who)?;
    if r.errors > 0 {
        bail!("{who} answered {} requests with errors", r.errors);
    }
    Ok(r)
}

fn tracker(b: &mut Bench) -> Result<()> {
    let secs = if b.quick { 3 } else { 10 };
    let rounds = if b.quick { 1 } else { 3 };
    let dir = b.dir.join("tracker");
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("announce.lua");
    std::fs::write(&script, ANNOUNCE_LUA)?;
    let whitelist = dir.join("whitelist");
    std::fs::write(&whitelist, format!("{}\n", "ab".repeat(20)))?;
    let aquatic_conf = dir.join("aquatic.toml");

    // Ours as the lab runs it (the access log on, into a file), ours with the log off, and
    // aquatic_http with its default config, in turn, `rounds` times: the median round of each.
    // The log is deleted after each run (some 10^6 lines).
    let (mut on, mut off, mut aq) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let log = dir.join("access.log");
        let port = free_port();
        on.push(load_tracker(
            "our tracker",
            port,
            secs,
            &script,
            Command::new(TESTBED)
                .args(["tracker", "--port", &port.to_string(), "--log"])
                .arg(&log),
        )?);
        let lines = std::fs::read(&log).map(|t| t.iter().filter(|&&c| c == b'\n').count());
        let _ = std::fs::remove_file(&log);
        if lines.unwrap_or(0) == 0 {
            bail!("our tracker wrote no access log");
        }
        let port = free_port();
        off.push(load_tracker(
            "our tracker",
            port,
            secs,
            &script,
            Command::new(TESTBED)
                .args(["tracker", "--port", &port.to_string()])
                .env("RUST_LOG", "warn"),
        )?);
        let port = free_port();
        let conf = Command::new(aquatic_http())
            .arg("-p")
            .output()
            .context("aquatic_http (make bench installs it)")?;
        let conf = String::from_utf8_lossy(&conf.stdout).replace(
            "address = \"0.0.0.0:3000\"",
            &format!("address = \"127.0.0.1:{port}\""),
        );
        std::fs::write(&aquatic_conf, conf)?;
        aq.push(load_tracker(
            "aquatic_http",
            port,
            secs,
            &script,
            Command::new(aquatic_http()).arg("-c").arg(&aquatic_conf),
        )?);
    }
    let port = free_port();
    let ot = load_tracker(
        "opentracker",
        port,
        secs,
        &script,
        Command::new("opentracker")
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-P", &port.to_string(), "-w"])
            .arg(&whitelist),
    )?;
    let median_round = |v: &mut Vec<WrkResult>| -> WrkResult {
        let all: Vec<String> = v.iter().map(|r| format!("{:.0}", r.rps)).collect();
        v.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        let m = &v[v.len() / 2];
        println!("  rounds (req/s): {}", all.join(", "));
        WrkResult {
            rps: m.rps,
            p50_ms: m.p50_ms,
            p99_ms: m.p99_ms,
            errors: 0,
        }
    };
    let rounds_of = |v: &[WrkResult]| -> String {
        let mut r: Vec<f64> = v.iter().map(|r| r.rps / 1000.0).collect();
        r.sort_by(f64::total_cmp);
        r.iter()
            .map(|x| format!("{x:.1}k"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (on_all, off_all, aq_all) = (rounds_of(&on), rounds_of(&off), rounds_of(&aq));
    let (on, off, aq) = (
        median_round(&mut on),
        median_round(&mut off),
        median_round(&mut aq),
    );
    let median = if rounds > 1 { "median of " } else { "" };

    let i = b.add(
        "tracker",
        &format!(
            "announces/s, access log on as in the lab ({median}{rounds}: {on_all}; aquatic_http {aq_all})"
        ),
        on.rps,
        "req/s",
    );
    b.at_least(i, "aquatic_http", aq.rps, 1.2);
    let i = b.add(
        "tracker",
        "announces/s, access log on as in the lab",
        on.rps,
        "req/s",
    );
    b.at_least(i, "opentracker", ot.rps, 1.5);
    let i = b.add(
        "tracker",
        &format!("announces/s, access log off ({median}{rounds}: {off_all})"),
        off.rps,
        "req/s",
    );
    b.anchor(i, "aquatic_http", aq.rps, true);
    let i = b.add("tracker", "announce latency p50, log on", on.p50_ms, "ms");
    b.anchor(i, "aquatic_http", aq.p50_ms, false);
    let i = b.add("tracker", "announce latency p99, log on", on.p99_ms, "ms");
    b.anchor(i, "aquatic_http", aq.p99_ms, false);
    b.target(i, "<= aquatic_http's", on.p99_ms <= aq.p99_ms);
    let i = b.add("tracker", "announce latency p99, log on", on.p99_ms, "ms");
    b.anchor(i, "opentracker", ot.p99_ms, false);
    let i = b.add("tracker", "announce latency p99, log off", off.p99_ms, "ms");
    b.anchor(i, "aquatic_http", aq.p99_ms, false);
    b.target(i, "<= 2 ms", off.p99_ms <= 2.0);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Peer wire: one file seed -> leecher, ours vs libtorrent

fn wire(b: &mut Bench) -> Result<()> {
    let size = if b.quick { 256 * MIB } else { 1024 * MIB };
    let dir = b.dir.join("wire");
    let src = dir.join("src/blob.bin");
    random_file(&src, size, 7)?;
    let torrent = dir.join("blob.torrent");
    make_torrent(&src, &torrent, 1024 * 1024)?;
    let gb = size as f64 / (1024.0 * MIB as f64);
    let mb = size as f64 / MIB as f64;
    let timeout = Duration::from_secs(if b.quick { 120 } else { 300 });

    // On a virtual machine the first write to a page of guest memory costs a fault in the
    // host: `dd` of 1 GiB into a new file ran at 0.5 GB/s the first time here and 4 GB/s once
    // the memory had been used and freed. Whichever client wrote first would pay it alone, so
    // both run on memory that has been touched: a throw-away file of twice the size first, then
    // the two clients in turn, three rounds, each download deleted before the next run.
    let warm = dir.join("warm.bin");
    random_file(&warm, 2 * size, 1)?;
    std::fs::remove_file(&warm)?;
    let rounds = 3;
    let (mut ours, mut lt) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        ours.push(ours_transfer(&dir, &src, &torrent, timeout)?);
        lt.push(lt_transfer(&dir, &src, &torrent, timeout)?);
    }
    let _ = std::fs::remove_dir_all(&dir);
    // The median round of each (by time; its CPU with it).
    let median = |v: &mut Vec<(f64, f64)>| {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v[v.len() / 2]
    };
    let rates = |v: &[(f64, f64)]| {
        v.iter()
            .map(|(s, _)| format!("{:.0}", mb / s))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let name = format!(
        "{:.0} MiB seed->leecher (median of {rounds}; ours {} MB/s, libtorrent {})",
        mb,
        rates(&ours),
        rates(&lt)
    );
    let (ours_secs, ours_cpu) = median(&mut ours);
    let (lt_secs, lt_cpu) = median(&mut lt);
    let i = b.add("wire", &name, mb / ours_secs, "MB/s");
    b.at_least(i, "libtorrent", mb / lt_secs, 2.0);
    let i = b.add(
        "wire",
        "CPU per GiB moved (both ends, seed start-up excluded)",
        ours_cpu / gb,
        "s",
    );
    b.anchor(i, "libtorrent", lt_cpu / gb, false);
    Ok(())
}

/// Our seed and leecher: seconds from starting the leecher to its exit with every piece
/// checked, and CPU of both processes (less the seed's start-up check). The copy is compared
/// with the source, then deleted.
fn ours_transfer(dir: &Path, src: &Path, torrent: &Path, timeout: Duration) -> Result<(f64, f64)> {
    let port = free_port();
    let out = dir.join("ours/blob.bin");
    std::fs::create_dir_all(out.parent().unwrap())?;
    let cpu0 = children_cpu();
    let seed = our_seed(port, src, torrent, &[])?;
    wait_port(port, Duration::from_secs(60))?;
    // Our seed checks its copy at start (libtorrent's, in seed mode, does not): that CPU is not
    // part of moving the data.
    let seed_start_cpu = proc_cpu(seed.pid());
    timed_leech(
        seed,
        cpu0 + seed_start_cpu,
        Command::new(TESTBED)
            .args(["peer", "--exit-on-complete", "--tracker", ""])
            .args(["--peer", &format!("127.0.0.1:{port}")])
            .arg("--data")
            .arg(&out)
            .arg(torrent)
            .stdout(Stdio::null()),
        "our leecher",
        timeout,
        src,
        &out,
    )
}

/// `testbed peer --seed` of `src` on `port`, no tracker, with `extra` flags.
fn our_seed(port: u16, src: &Path, torrent: &Path, extra: &[&str]) -> Result<Proc> {
    spawn(
        Command::new(TESTBED)
            .args([
                "peer",
                "--seed",
                "--tracker",
                "",
                "--port",
                &port.to_string(),
            ])
            .args(extra)
            .arg("--data")
            .arg(src)
            .arg(torrent)
            .stdout(Stdio::null()),
    )
}

/// Start the leecher, wait for its exit, stop the seed; then the seconds the leecher took and
/// the CPU of both since `cpu_before` (their start-up excluded by the caller). The download is
/// compared with `src`, then deleted.
fn timed_leech(
    seed: Proc,
    cpu_before: f64,
    leech: &mut Command,
    what: &str,
    timeout: Duration,
    src: &Path,
    out: &Path,
) -> Result<(f64, f64)> {
    let t = Instant::now();
    let mut leech = spawn(leech)?;
    let st = wait_exit(&mut leech, what, timeout)?;
    let secs = t.elapsed().as_secs_f64();
    if !st.success() {
        bail!("{what} exited with {st}");
    }
    drop(seed);
    drop(leech);
    let cpu = children_cpu() - cpu_before;
    if !same_content(src, out)? {
        bail!("{what}'s file differs from the seed's");
    }
    std::fs::remove_file(out)?;
    Ok((secs, cpu))
}

/// The same with libtorrent (`benches/lt_transfer.py`, TCP only).
fn lt_transfer(dir: &Path, src: &Path, torrent: &Path, timeout: Duration) -> Result<(f64, f64)> {
    let script = Path::new(ROOT).join("benches/lt_transfer.py");
    let port = free_port();
    let lt_dir = dir.join("lt");
    std::fs::create_dir_all(&lt_dir)?;
    let cpu0 = children_cpu();
    let mut seed = spawn(
        Command::new("/usr/bin/python3")
            .arg(&script)
            .arg("seed")
            .arg(torrent)
            .arg(src.parent().unwrap())
            .arg(port.to_string())
            .stdout(Stdio::piped()),
    )?;
    let lines = lines_of(&mut seed);
    match lines.recv_timeout(Duration::from_secs(60)) {
        Ok(l) if l == "ready" => {}
        other => bail!("libtorrent seed did not get ready: {other:?} (python3-libtorrent?)"),
    }
    let seed_start_cpu = proc_cpu(seed.pid());
    timed_leech(
        seed,
        cpu0 + seed_start_cpu,
        Command::new("/usr/bin/python3")
            .arg(&script)
            .arg("leech")
            .arg(torrent)
            .arg(&lt_dir)
            .arg(port.to_string())
            .stdout(Stdio::null()),
        "libtorrent's leecher",
        timeout,
        src,
        &lt_dir.join("blob.bin"),
    )
}

// ---------------------------------------------------------------------------------------------
// Upload-cap accuracy: a raw wire leecher against a capped seed

fn cap(b: &mut Bench) -> Result<()> {
    let dir = b.dir.join("cap");
    let src = dir.join("blob.bin");
    random_file(&src, 16 * MIB, 9)?;
    let torrent_path = dir.join("blob.torrent");
    let torrent = make_torrent(&src, &torrent_path, 256 * 1024)?;
    let (warm, span) = if b.quick { (1.0, 5.0) } else { (2.0, 10.0) };
    let caps = [20.0, 70.0, 500.0];
    let mut seeds = Vec::new();
    let mut ports = Vec::new();
    for c in caps {
        let port = free_port();
        seeds.push(our_seed(
            port,
            &src,
            &torrent_path,
            &["--max-upload-rate", &c.to_string()],
        )?);
        ports.push(port);
    }
    for &p in &ports {
        wait_port(p, Duration::from_secs(30))?;
    }
    // The three leechers measure at once (each seed has its own cap).
    let results: Vec<Result<f64>> = std::thread::scope(|s| {
        let hs: Vec<_> = ports
            .iter()
            .map(|&p| {
                let t = &torrent;
                s.spawn(move || raw_download_rate(t, p, warm, span))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    drop(seeds);
    for (c, r) in caps.iter().zip(results) {
        let kbps = r? / 1024.0;
        let i = b.add(
            "cap",
            &format!("upload cap {c} KB/s, measured"),
            kbps,
            "KB/s",
        );
        let ratio = kbps / c;
        b.figures[i].ratio = Some(ratio);
        b.target(i, "within +-5% of the cap", (ratio - 1.0).abs() <= 0.05);
    }
    Ok(())
}

/// Download from the seed at `port` with a deep pipeline and return the bytes/s received
/// from `warm` to `warm + span` seconds after the unchoke.
fn raw_download_rate(t: &Torrent, port: u16, warm: f64, span: f64) -> Result<f64> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    s.set_nodelay(true)?;
    let mut out = BytesMut::new();
    Handshake::new(t.info_hash.0, *b"-BN0001-capmeasure01").encode(&mut out);
    Message::Interested.encode(&mut out);
    s.write_all(&out)?;
    out.clear();
    let mut inbuf = BytesMut::with_capacity(1 << 20);
    let dec = Decoder::for_pieces(t.num_pieces());
    let mut shaken = false;
    let mut unchoked_at: Option<Instant> = None;
    let mut next_block: u64 = 0;
    let blocks_per_piece = (t.piece_length / BLOCK_SIZE) as u64;
    let total_blocks = t.num_pieces() as u64 * blocks_per_piece;
    let mut outstanding = 0usize;
    let mut counted = 0u64;
    let start = Instant::now();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        if let Some(u) = unchoked_at {
            let e = u.elapsed().as_secs_f64();
            if e >= warm + span {
                return Ok(counted as f64 / span);
            }
            while outstanding < 64 {
                let k = next_block % total_blocks;
                next_block += 1;
                Message::Request(BlockRef {
                    index: (k / blocks_per_piece) as u32,
                    begin: (k % blocks_per_piece) as u32 * BLOCK_SIZE,
                    length: BLOCK_SIZE,
                })
                .encode(&mut out);
                outstanding += 1;
            }
            if !out.is_empty() {
                s.write_all(&out)?;
                out.clear();
            }
        } else if start.elapsed() > Duration::from_secs(30) {
            bail!("seed on port {port} never unchoked the measuring leecher");
        }
        match s.read(&mut buf) {
            Ok(0) => bail!("seed on port {port} closed the connection"),
            Ok(n) => inbuf.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
        if !shaken {
            if Handshake::parse(&mut inbuf)?.is_none() {
                continue;
            }
            shaken = true;
        }
        while let Some(m) = dec.decode(&mut inbuf)? {
            match m {
                Message::Unchoke if unchoked_at.is_none() => unchoked_at = Some(Instant::now()),
                Message::Piece { data, .. } => {
                    outstanding = outstanding.saturating_sub(1);
                    let e = unchoked_at.map_or(0.0, |u| u.elapsed().as_secs_f64());
                    if e >= warm && e < warm + span {
                        counted += data.len() as u64;
                    }
                }
                Message::Reject(_) => outstanding = outstanding.saturating_sub(1),
                Message::Choke => bail!("seed on port {port} choked the measuring leecher"),
                _ => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// World scale: start, stop, memory, idle CPU

/// `testbed start` of a world of `n` clients (2 seeds) on one random file of `size` bytes,
/// each client holding half of it, uploads capped at `upload_rate` KB/s, none leaving; `extra`
/// is more YAML.
fn start_world(
    dir: &Path,
    n: usize,
    size: usize,
    upload_rate: u32,
    extra: &str,
) -> Result<Scenario> {
    let mut blob = vec![0u8; size];
    rand::rngs::SmallRng::seed_from_u64(3).fill_bytes(&mut blob);
    let scenario = Scenario::in_dir(
        dir,
        &[("blob.bin", blob)],
        "bind: 127.0.0.1, interval: 30",
        &format!(
            "seed: 1\n\
             torrents: {{piece_length: 32768, my_torrent: blob.bin}}\n\
             world:\n  clients: {clients}\n  seeds: 2\n  start_fraction: 0.5\n  \
             upload_rate: {upload_rate}\n  max_connections: 30\n  linger: 600\n{extra}",
            clients = n - 2,
        ),
    )?;
    let st = scenario
        .command("start", &[])
        .stdout(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("testbed start failed ({st})");
    }
    Ok(scenario)
}

fn scale(b: &mut Bench) -> Result<()> {
    let sizes: &[usize] = if b.quick { &[200] } else { &[200, 500] };
    for &n in sizes {
        scale_one(b, n).with_context(|| format!("world of {n}"))?;
    }
    Ok(())
}

fn scale_one(b: &mut Bench, n: usize) -> Result<()> {
    let dir = b.dir.join(format!("scale-{n}"));
    let t0 = Instant::now();
    let scenario = start_world(&dir, n, 256 * 1024, 500, "")?;
    let port = scenario.port;
    let peers = || -> Result<(usize, usize)> {
        let v: serde_json::Value = serde_json::from_str(&http_get(port, "/api/status")?)?;
        let s = &v["swarms"][0];
        let total = s["peers"].as_array().map_or(0, |a| a.len());
        Ok((total, s["leechers"].as_u64().unwrap_or(u64::MAX) as usize))
    };
    wait_until(
        &format!("{n} clients announced"),
        Duration::from_secs(60),
        || peers().map(|(t, _)| t >= n).unwrap_or(false),
    )?;
    let announced = t0.elapsed().as_secs_f64();
    // Idle: every client complete and seeding (the file is small), nothing to do but keep up.
    wait_until("every client complete", Duration::from_secs(120), || {
        peers().map(|(_, l)| l == 0).unwrap_or(false)
    })?;
    let world: serde_json::Value = serde_json::from_str(&http_get(port, "/api/world")?)?;
    let pids: Vec<i32> = world["world"]
        .as_array()
        .ok_or_else(|| anyhow!("/api/world has no world"))?
        .iter()
        .filter_map(|s| s["pid"].as_i64().map(|p| p as i32))
        .collect();
    if pids.len() != n {
        bail!("{} of {n} world clients running", pids.len());
    }
    let sup = world["run"]["pid"].as_i64().map(|p| p as i32);
    let all: Vec<i32> = pids.iter().copied().chain(sup).collect();
    std::thread::sleep(Duration::from_secs(2));
    let idle_span = if b.quick { 3.0 } else { 5.0 };
    let c0: f64 = all.iter().map(|&p| proc_cpu(p)).sum();
    std::thread::sleep(Duration::from_secs_f64(idle_span));
    let c1: f64 = all.iter().map(|&p| proc_cpu(p)).sum();
    let rss: u64 = pids.iter().map(|&p| proc_rss(p)).sum::<u64>() / n as u64;
    if let Err(e) = page(b, n, port, &dir) {
        b.errors
            .push(format!("scale: page with {n} clients: {e:#}"));
    }

    let t = Instant::now();
    let st = scenario
        .command("stop", &[])
        .stdout(Stdio::null())
        .status()?;
    let stop = t.elapsed().as_secs_f64();
    if !st.success() {
        bail!("testbed stop failed ({st})");
    }
    let survivors = all.iter().filter(|&&p| alive(p)).count();

    let i = b.add(
        "scale",
        &format!("{n} clients: all announced after"),
        announced,
        "s",
    );
    if n >= 500 {
        b.target(i, "<= 5 s", announced <= 5.0);
    }
    let i = b.add("scale", &format!("{n} clients: testbed stop"), stop, "s");
    b.target(i, "<= 2 s, no survivor", stop <= 2.0 && survivors == 0);
    let i = b.add(
        "scale",
        &format!("{n} clients: RSS per client"),
        rss as f64 / MIB as f64,
        "MiB",
    );
    b.target(i, "< 8 MiB", (rss as f64) < 8.0 * MIB as f64);
    b.add(
        "scale",
        &format!("{n} clients: idle CPU, all processes"),
        (c1 - c0) / idle_span * 100.0,
        "% of a core",
    );
    if survivors > 0 {
        bail!("{survivors} processes survived testbed stop");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A world of `n` (500) clients downloading, without and then with the link stage: how much
/// longer until every client completes, and what the emulation costs in CPU.
fn netem(b: &mut Bench) -> Result<()> {
    let n = if b.quick { 100 } else { 500 };
    let mut off = None;
    for network in [false, true] {
        let (done, all_cpu, stage_cpu, idle, per_packet) =
            netem_one(b, n, network).with_context(|| {
                format!(
                    "{n} clients, network {}",
                    if network { "on" } else { "off" }
                )
            })?;
        let tag = if network {
            "realistic network"
        } else {
            "no network"
        };
        let i = b.add(
            "netem",
            &format!("{n} clients, {tag}: every client complete after"),
            done,
            "s",
        );
        if let Some(o) = off {
            b.anchor(i, "no network", o, false);
        }
        off.get_or_insert(done);
        b.add(
            "netem",
            &format!("{n} clients, {tag}: CPU of all processes while downloading"),
            all_cpu,
            "% of a core",
        );
        if network {
            let i = b.add(
                "netem",
                &format!("{n} clients: the link stage's thread while downloading"),
                stage_cpu,
                "% of a core",
            );
            b.target(i, "< 50 %", stage_cpu < 50.0);
            b.add(
                "netem",
                &format!("{n} clients: the link stage's thread, world idle"),
                idle,
                "% of a core",
            );
            if let Some(us) = per_packet {
                // The packet's delivery (the receiver's TCP) runs in the stage's write: work
                // that loopback does in the sender's thread without a stage.
                b.add(
                    "netem",
                    &format!("{n} clients: the link stage's CPU per packet, delivery included"),
                    us,
                    "µs",
                );
            }
        }
    }
    Ok(())
}

/// CPU seconds of the supervisor's thread named `name`.
fn thread_cpu(pid: i32, name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .filter_map(|t| t.file_name().to_str()?.parse::<i32>().ok())
        .map(|tid| proc_cpu_at(&format!("/proc/{pid}/task/{tid}/stat")))
        .sum()
}

/// (seconds until every client completes, CPU of all processes over that time and of the
/// stage's thread, both in % of a core; the stage's thread while the world is idle; its CPU
/// per packet delivered over the whole run, µs).
fn netem_one(b: &Bench, n: usize, network: bool) -> Result<(f64, f64, f64, f64, Option<f64>)> {
    let dir = b.dir.join(format!("netem-{n}-{network}"));
    let net = if network {
        "network:\n  rtt_ms: {min: 20, max: 200}\n  jitter_ms: 2\n  loss_percent: 0.5\n  \
         download_rate: {min: 256, max: 2048}\n"
    } else {
        ""
    };
    let t0 = Instant::now();
    let scenario = start_world(&dir, n, 1024 * 1024, 70, net)?;
    let port = scenario.port;
    let world: serde_json::Value = serde_json::from_str(&http_get(port, "/api/world")?)?;
    let sup = world["run"]["pid"]
        .as_i64()
        .ok_or_else(|| anyhow!("/api/world has no supervisor pid"))? as i32;
    let pids: Vec<i32> = world["world"]
        .as_array()
        .ok_or_else(|| anyhow!("/api/world has no world"))?
        .iter()
        .filter_map(|s| s["pid"].as_i64().map(|p| p as i32))
        .chain([sup])
        .collect();
    let cpu = || -> (f64, f64) {
        (
            pids.iter().map(|&p| proc_cpu(p)).sum(),
            thread_cpu(sup, "netem"),
        )
    };
    let (a0, s0) = cpu();
    let t1 = Instant::now();
    let leechers = || -> Result<usize> {
        let v: serde_json::Value = serde_json::from_str(&http_get(port, "/api/status")?)?;
        Ok(v["swarms"][0]["leechers"].as_u64().unwrap_or(u64::MAX) as usize)
    };
    let waited = wait_until("every client complete", Duration::from_secs(300), || {
        leechers().map(|l| l == 0).unwrap_or(false)
    });
    let done = t0.elapsed().as_secs_f64();
    let span = t1.elapsed().as_secs_f64();
    let (a1, s1) = cpu();
    std::thread::sleep(Duration::from_secs(5));
    let (_, s2) = cpu();
    let st = scenario
        .command("stop", &[])
        .stdout(Stdio::null())
        .status()?;
    waited?;
    if !st.success() {
        bail!("testbed stop failed ({st})");
    }
    if network && s1 - s0 <= 0.0 {
        bail!("no thread named netem in the supervisor: the stage did not run");
    }
    // The supervisor's count of packets through the stage, logged as it stops.
    let log = std::fs::read_to_string(dir.join("run/logs/tracker.log")).unwrap_or_default();
    let packets: Option<f64> = log
        .lines()
        .filter_map(|l| {
            l.split_once("netem: ")?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .next_back();
    let _ = std::fs::remove_dir_all(&dir);
    Ok((
        done,
        (a1 - a0) / span * 100.0,
        (s1 - s0) / span * 100.0,
        (s2 - s1) / 5.0 * 100.0,
        packets.map(|p| s2 / p * 1e6),
    ))
}

/// The status page with `n` clients: the server's render of the live part (what every poll
/// costs), then in headless Chromium the first load and a refresh (fetch, swap, layout), as the
/// page's own script times it.
fn page(b: &mut Bench, n: usize, port: u16, dir: &Path) -> Result<()> {
    // The default view lists a swarm's first 100 clients (the page's SHOWN_ROWS); `?all=1`
    // every one.
    let shown = n.min(100);
    let all = http_get(port, "/?part=live&all=1")?;
    let rows = all.matches("class=\"client role-").count();
    if rows < n {
        bail!("the page with all rows lists {rows} of {n} clients");
    }
    let mut server = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let body = http_get(port, "/?part=live")?;
        server.push(t.elapsed().as_secs_f64() * 1e3);
        let rows = body.matches("class=\"client role-").count();
        if rows < shown {
            bail!("the page lists {rows} of {shown} clients");
        }
    }
    server.sort_by(f64::total_cmp);
    let i = b.add(
        "scale",
        &format!("{n} clients: page live part, server (median of 20)"),
        server[server.len() / 2],
        "ms",
    );
    b.target(i, "< 200 ms", server[server.len() / 2] < 200.0);
    if !Path::new(webdriver::CHROMIUM).exists() {
        bail!(
            "no {}: install chromium chromium-driver",
            webdriver::CHROMIUM
        );
    }
    let browser = webdriver::Browser::start(free_port(), &dir.join("chromium-profile"))
        .map_err(|e| anyhow!(e))?;
    browser
        .goto(&format!("http://127.0.0.1:{port}/"))
        .map_err(|e| anyhow!(e))?;
    let load = browser
        .eval("const e = performance.getEntriesByType('navigation')[0]; return e.loadEventEnd - e.startTime;")
        .map_err(|e| anyhow!(e))?
        .as_f64()
        .ok_or_else(|| anyhow!("no navigation timing"))?;
    b.add(
        "scale",
        &format!("{n} clients: page first load, Chromium"),
        load,
        "ms",
    );
    refresh_row(
        b,
        &browser,
        shown,
        &format!("{n} clients: page refresh in Chromium"),
        100.0,
    )?;
    if n > shown {
        browser
            .goto(&format!("http://127.0.0.1:{port}/?all=1"))
            .map_err(|e| anyhow!(e))?;
        let label = format!("{n} clients: page refresh showing all rows");
        refresh_row(b, &browser, n, &label, 200.0)?;
    }
    Ok(())
}

/// The [`refreshes`] of the open page as a row `label`, its median and max under `limit` ms.
fn refresh_row(
    b: &mut Bench,
    browser: &webdriver::Browser,
    rows: usize,
    label: &str,
    limit: f64,
) -> Result<()> {
    let (median, max) = refreshes(browser, rows)?;
    let i = b.add(
        "scale",
        &format!("{label} (median of 10; max {max:.0} ms)"),
        median,
        "ms",
    );
    b.target(i, &format!("< {limit} ms"), median < limit && max < limit);
    Ok(())
}

/// Ten refreshes of the open page (fetch, swap, layout, as its script times them): the median
/// and the max, in ms. The page must show at least `rows` clients.
fn refreshes(browser: &webdriver::Browser, rows: usize) -> Result<(f64, f64)> {
    let v = browser
        .eval_async(
            "const done = arguments[arguments.length - 1];
             (async () => {
               const ms = [];
               for (let k = 0; k < 10; k++) {
                 await window.testbedRefresh();
                 ms.push(Number(document.getElementById('live').dataset.renderMs));
               }
               ms.sort((a, b) => a - b);
               done({median: ms[5], max: ms[9],
                     rows: document.querySelectorAll('table.clients tr.client').length});
             })();",
        )
        .map_err(|e| anyhow!(e))?;
    let median = v["median"]
        .as_f64()
        .ok_or_else(|| anyhow!("no timing: {v}"))?;
    let max = v["max"].as_f64().unwrap_or(f64::NAN);
    if (v["rows"].as_u64().unwrap_or(0) as usize) < rows {
        bail!("Chromium shows {} of {rows} clients", v["rows"]);
    }
    Ok((median, max))
}

fn vod(b: &mut Bench) -> Result<()> {
    // `testbed compare` on each scenario: the three policies on every seed, one experiment at a
    // time (side by side, two cores made the spread 8-13 points), CIs from its bootstrap.
    let (seeds, secs) = if b.quick {
        (1u64, 30u64)
    } else {
        (
            env_u64("VOD_SEEDS", VOD_SEEDS),
            env_u64("VOD_SECS", VOD_SECS),
        )
    };
    for scenario in ["default", "scarce", "network"] {
        vod_compare(b, scenario, seeds, secs)
            .with_context(|| format!("configs/{scenario}.yaml"))?;
        if b.quick {
            break;
        }
    }
    Ok(())
}

/// A whole number from the environment, or `default`.
fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seeds of the VoD comparison (`VOD_SEEDS=N` overrides): five, so that the section (two
/// scenarios x three policies x five seeds of about two minutes) takes about an hour.
const VOD_SEEDS: u64 = 5;
/// Seconds of the movie played (0: all of it; `VOD_SECS=S` overrides).
const VOD_SECS: u64 = 0;

/// `configs/{scenario}.yaml` in `dir`, on the movie or its first `secs` seconds: the scenario
/// and the size of what my client plays.
fn movie_scenario(dir: &Path, scenario: &str, secs: u64) -> Result<(Scenario, usize)> {
    let _ = std::fs::remove_dir_all(dir);
    let mut cfg: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(
        Path::new(ROOT).join(format!("configs/{scenario}.yaml")),
    )?)?;
    let movie = std::fs::read(Path::new(ROOT).join("fresh-files/movie.mp4"))?;
    let rate_kb = cfg["my_client"]["rate"].as_f64().unwrap_or(60.0);
    let (name, data) = if secs == 0 {
        ("movie.mp4".to_string(), movie)
    } else {
        let prefix = ((secs as f64 * rate_kb * 1024.0) as usize).min(movie.len());
        (format!("movie-{secs}s.mp4"), movie[..prefix].to_vec())
    };
    if !cfg["torrents"].is_mapping() {
        cfg["torrents"] = serde_yaml::Mapping::new().into();
    }
    cfg["torrents"]["my_torrent"] = name.clone().into();
    let size = data.len();
    Ok((
        Scenario::from_config(dir, &[(name.as_str(), data)], cfg)?,
        size,
    ))
}

/// Where a long section's `testbed compare` keeps its runs: in `run/bench-compare/`, which a
/// new `make bench` does not clear (it clears `run/bench/`), named by the section, the movie's length and the build (a digest of the
/// `testbed` and `vod-client` binaries), so that the same command after an interruption resumes
/// it (compare skips the runs in its runs.csv), and a new build starts over instead of mixing
/// its runs with an older one's.
fn compare_out(section: &str, secs: u64) -> Result<PathBuf> {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    for bin in [TESTBED, env!("CARGO_BIN_EXE_vod-client")] {
        h.update(std::fs::read(bin).with_context(|| bin.to_string())?);
    }
    let build: String = h.finalize()[..6]
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    let movie = if secs == 0 {
        "movie".to_string()
    } else {
        format!("{secs}s")
    };
    Ok(Path::new(ROOT)
        .join("run/bench-compare")
        .join(format!("{section}-{movie}-{build}")))
}

fn vod_compare(b: &mut Bench, scenario: &str, seeds: u64, secs: u64) -> Result<()> {
    let dir = b.dir.join(format!("vod-{scenario}"));
    let (s, size) = movie_scenario(&dir, scenario, secs)?;
    let last = 42 + seeds - 1;
    println!(
        "  configs/{scenario}.yaml, {} ({size} B), seeds 42..{last}, one experiment at a time",
        if secs == 0 {
            "the whole movie".to_string()
        } else {
            format!("the first {secs} s of the movie")
        }
    );
    let out = compare_out(&format!("vod-{scenario}"), secs)?;
    let mut p = spawn(
        s.command(
            "compare",
            &[
                "--seeds",
                &format!("42..{last}"),
                "--policy",
                "rarest",
                "--policy",
                "sequential",
                "--policy",
                "deadline",
                "--out",
                out.to_str().unwrap(),
            ],
        )
        .stdout(Stdio::null()),
    )?;
    let per_run = if secs == 0 { 400 } else { secs * 3 + 60 };
    let st = wait_exit(
        &mut p,
        "testbed compare",
        Duration::from_secs(per_run * seeds * 3),
    )?;
    if !st.success() {
        bail!("testbed compare exited with {st}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json"))?)?;
    let pct = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN) * 100.0;
    let mut mean = BTreeMap::new();
    for e in summary["entrants"].as_array().into_iter().flatten() {
        let p = e["entrant"].as_str().unwrap_or("?").to_string();
        let i = b.add(
            "vod",
            &format!(
                "{scenario}: server share, {p} (95 % CI {:.1}..{:.1}, sd {:.1}, runs: {})",
                pct(&e["ci95"][0]),
                pct(&e["ci95"][1]),
                pct(&e["sd"]),
                e["runs"]
            ),
            pct(&e["mean"]),
            "%",
        );
        mean.insert(p.clone(), (i, pct(&e["mean"])));
        // The referee's split: what the world sent and what my client wasted of it.
        if e["wasted_share"].is_f64() {
            b.add(
                "vod",
                &format!(
                    "{scenario}: wasted, {p} (of {:.1} % sent by the world{})",
                    pct(&e["world_share"]),
                    if e["wasted_sd"].is_f64() {
                        format!("; sd {:.1}", pct(&e["wasted_sd"]))
                    } else {
                        String::new()
                    }
                ),
                pct(&e["wasted_share"]),
                "%",
            );
        }
    }
    // A pair of `list` ("pairs": the share; "waste_pairs": the waste), whichever way round.
    let pair = |list: &str, a: &str, b: &str| {
        summary[list]
            .as_array()
            .into_iter()
            .flatten()
            .find(|q| (q["a"] == a && q["b"] == b) || (q["a"] == b && q["b"] == a))
            .cloned()
            .unwrap_or_default()
    };
    let (i, d) = mean["deadline"];
    let (_, r) = mean["rarest"];
    let best = mean.values().all(|&(_, m)| d <= m);
    // The paired differences are the verdicts; a row each, so the table shows them with their
    // intervals and not only the entrants' means.
    let vs_seq = pair("pairs", "deadline", "sequential");
    let rows = [
        ("", &vs_seq),
        ("", &pair("pairs", "deadline", "rarest")),
        ("wasted, ", &pair("waste_pairs", "deadline", "sequential")),
    ];
    for (what, q) in rows.into_iter().filter(|(_, q)| !q.is_null()) {
        b.add(
            "vod",
            &format!(
                "{scenario}: {what}{} − {}, paired over {} seeds (95 % CI {:.1}..{:.1}): {}",
                q["a"].as_str().unwrap_or("?"),
                q["b"].as_str().unwrap_or("?"),
                q["pairs"],
                pct(&q["ci95"][0]),
                pct(&q["ci95"][1]),
                q["verdict"].as_str().unwrap_or("?")
            ),
            pct(&q["mean_difference"]),
            "points",
        );
    }
    b.anchor(i, "rarest", r, false);
    b.target(
        i,
        "<= 0.3x rarest, best of three, CI against sequential excludes 0",
        d <= 0.3 * r && best && vs_seq["verdict"] == "deadline better",
    );
    // The compare folder stays (runs.csv, compare.md, the last run) until the next bench.
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Clients: the league table of streaming modes (issue 18)

/// A real client as my client: its wrapper in examples/, how to tell it is installed and its
/// version, its mode and how the lab scores it.
struct RealClient {
    name: &'static str,
    mode: &'static str,
    scoring: &'static str,
    /// The my-client command line (paths relative to the project root).
    cmd: &'static str,
    /// A shell command that succeeds when the client is installed.
    check: &'static str,
    /// A shell command printing its version.
    version: &'static str,
    /// It fetches from BEP 19 web seeds: a second row with the VoD server as one
    /// (`testbed compare --web-seed-client`), scored by the server's count.
    web_seed: bool,
}

const REAL_CLIENTS: &[RealClient] = &[
    RealClient {
        name: "libtorrent",
        mode: "time-critical pieces (set_piece_deadline)",
        scoring: "VoD server at the deadline",
        cmd: "examples/libtorrent_vod.py --mode time-critical",
        check: "/usr/bin/python3 -c 'import libtorrent'",
        version: "/usr/bin/python3 -c 'import libtorrent; print(libtorrent.__version__)'",
        web_seed: true,
    },
    RealClient {
        name: "libtorrent",
        mode: "sequential_download",
        scoring: "VoD server at the deadline",
        cmd: "examples/libtorrent_vod.py --mode sequential",
        check: "/usr/bin/python3 -c 'import libtorrent'",
        version: "/usr/bin/python3 -c 'import libtorrent; print(libtorrent.__version__)'",
        web_seed: false,
    },
    RealClient {
        name: "aria2",
        mode: "--stream-piece-selector=inorder",
        scoring: "referee (late bytes)",
        cmd: "examples/aria2_stream.sh inorder",
        check: "command -v aria2c",
        version: "aria2c --version | head -n1 | awk '{print $3}'",
        web_seed: true,
    },
    RealClient {
        name: "aria2",
        mode: "--stream-piece-selector=geom",
        scoring: "referee (late bytes)",
        cmd: "examples/aria2_stream.sh geom",
        check: "command -v aria2c",
        version: "aria2c --version | head -n1 | awk '{print $3}'",
        web_seed: false,
    },
    RealClient {
        name: "Transmission",
        mode: "none (plain client, the baseline)",
        scoring: "referee (late bytes)",
        cmd: "examples/transmission_plain.sh",
        check: "command -v transmission-cli",
        version: "transmission-cli --version 2>&1 | head -n1 | awk '{print $2}'",
        web_seed: true,
    },
    RealClient {
        name: "qBittorrent",
        mode: "sequential + first/last piece priority (Web API)",
        scoring: "referee (late bytes)",
        cmd: "examples/qbittorrent_stream.py",
        check: "command -v qbittorrent-nox",
        version: "qbittorrent-nox --version | awk '{print $2}' | tr -d v",
        web_seed: true,
    },
    RealClient {
        name: "WebTorrent",
        mode: "file stream read at the playback rate",
        scoring: "referee (late bytes)",
        cmd: "examples/webtorrent_stream.sh",
        check: "test -x /opt/webtorrent/node_modules/.bin/webtorrent",
        version: "node -p \"require('/opt/webtorrent/node_modules/webtorrent-cli/package.json').version\"",
        web_seed: true,
    },
    RealClient {
        name: "rqbit",
        mode: "HTTP stream read at the playback rate",
        scoring: "referee (late bytes)",
        cmd: "examples/rqbit_stream.sh",
        check: "test -x /opt/rqbit/bin/rqbit",
        version: "/opt/rqbit/bin/rqbit --version | awk '{print $2}'",
        web_seed: false,
    },
];

/// A row of the league table.
struct LeagueRow {
    /// Its name in the compare; `None` when not installed.
    entrant: Option<String>,
    client: String,
    version: String,
    mode: String,
    scoring: String,
    /// Why it has no figures.
    missing: Option<String>,
}

/// Seeds of the league table (`CLIENTS_SEEDS=N` overrides).
const CLIENTS_SEEDS: u64 = 5;
/// Seconds of the movie the league table plays (`CLIENTS_SECS=S` overrides; 0: all of it). Its
/// tables have always been of the first 60 s, where the start-up decides (about 65 minutes for
/// 16 entrants x 5 seeds); the whole movie would take about two and a half hours.
const CLIENTS_SECS: u64 = 60;

fn sh(cmd: &str) -> Option<String> {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .current_dir(ROOT)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Every installable real client and our three policies, on the standard experiment, as one
/// `testbed compare` (one experiment at a time), and the league table from it.
fn clients(b: &mut Bench) -> Result<()> {
    let (seeds, secs) = if b.quick {
        (1u64, 20u64)
    } else {
        (
            env_u64("CLIENTS_SEEDS", CLIENTS_SEEDS),
            env_u64("CLIENTS_SECS", CLIENTS_SECS),
        )
    };
    let dir = b.dir.join("clients");
    let (s, size) = movie_scenario(&dir, "default", secs)?;
    let mut rows: Vec<LeagueRow> = Vec::new();
    let mut args: Vec<String> = Vec::new();
    let ours = sh(&format!("{TESTBED} --version"))
        .unwrap_or_default()
        .replace("testbed ", "");
    for p in ["deadline", "sequential", "rarest"] {
        args.extend(["--policy".into(), p.into()]);
        rows.push(LeagueRow {
            entrant: Some(p.into()),
            client: format!("ours: vod-client `{p}`"),
            version: ours.clone(),
            mode: format!("policy `{p}`"),
            scoring: "VoD server at the deadline".into(),
            missing: None,
        });
    }
    for c in REAL_CLIENTS {
        let installed = sh(c.check).is_some();
        let version = if installed {
            sh(c.version).unwrap_or_else(|| "?".into())
        } else {
            String::new()
        };
        let line = format!("{ROOT}/{}", c.cmd);
        rows.push(LeagueRow {
            entrant: installed.then(|| line.clone()),
            client: c.name.into(),
            version,
            mode: c.mode.into(),
            scoring: c.scoring.into(),
            missing: (!installed).then(|| format!("not installed here (`{}` failed)", c.check)),
        });
        if installed {
            args.extend(["--client".into(), line.clone()]);
            if c.web_seed {
                rows.push(LeagueRow {
                    entrant: Some(format!("{line} [web seed]")),
                    client: c.name.into(),
                    version: rows.last().map(|r| r.version.clone()).unwrap_or_default(),
                    mode: c.mode.into(),
                    scoring: "VoD server as a BEP 19 web seed".into(),
                    missing: None,
                });
                args.extend(["--web-seed-client".into(), line]);
            }
        }
    }
    let last = 42 + seeds - 1;
    let entrants = rows.iter().filter(|r| r.entrant.is_some()).count();
    println!(
        "  configs/default.yaml, {size} B, seeds 42..{last}, {entrants} entrants, one experiment at a time"
    );
    let out = compare_out("clients", secs)?;
    let mut cmd_args: Vec<&str> = vec!["--seeds"];
    let seeds_arg = format!("42..{last}");
    cmd_args.push(&seeds_arg);
    cmd_args.extend(args.iter().map(String::as_str));
    let out_s = out.display().to_string();
    cmd_args.extend(["--out", &out_s]);
    let mut p = spawn(
        s.command("compare", &cmd_args)
            .current_dir(ROOT)
            .stdout(Stdio::null()),
    )?;
    let per_run = if secs == 0 { 400 } else { secs * 3 + 90 };
    let st = wait_exit(
        &mut p,
        "testbed compare",
        Duration::from_secs(per_run * seeds * entrants as u64),
    )?;
    if !st.success() {
        bail!("testbed compare exited with {st}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json"))?)?;
    let runs = std::fs::read_to_string(out.join("runs.csv"))?;
    let pct = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN) * 100.0;
    let stats = |name: &str| {
        summary["entrants"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["entrant"] == name)
            .cloned()
    };
    // Mean late pieces and first byte played per entrant, from runs.csv (quoted fields: a
    // client line has no comma, so a plain split is enough for these columns).
    let per_run = |name: &str, col: usize| -> Option<f64> {
        let v: Vec<f64> = runs
            .lines()
            .skip(1)
            .filter(|l| l.starts_with(&format!("{name},")))
            .filter_map(|l| l.split(',').nth(col)?.parse().ok())
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let mut table = String::from(
        "| client | version | mode | scored by | mean share (sd) | late pieces | first byte played | my upload, busiest 10 s |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let mut means: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    for LeagueRow {
        entrant,
        client,
        version,
        mode,
        scoring,
        missing,
    } in &rows
    {
        let Some(e) = entrant else {
            table.push_str(&format!(
                "| {client} |  | {mode} | {scoring} | {} |  |  |  |\n",
                missing.clone().unwrap_or_default()
            ));
            continue;
        };
        let Some(st) = stats(e) else { continue };
        let label = format!("{client} {version}, {mode}");
        let i = b.add(
            "clients",
            &format!(
                "{label}: share, {} (sd {:.1}, runs {})",
                scoring,
                pct(&st["sd"]),
                st["runs"]
            ),
            pct(&st["mean"]),
            "%",
        );
        means.insert(e.clone(), (i, pct(&st["mean"])));
        let fmt = |x: Option<f64>, unit: &str| x.map_or("-".into(), |v| format!("{v:.1}{unit}"));
        // The referee's measure of my client's upload (runs.csv columns 12 and 13): a client
        // above its cap buys the world's unchokes, and its row says so.
        let over = per_run(e, 13).map_or(0.0, |f| f * st["runs"].as_f64().unwrap_or(0.0));
        let upload = match over.round() as u64 {
            0 => fmt(per_run(e, 12), " KB/s"),
            k => format!(
                "{}, **above the cap in {k} runs**",
                fmt(per_run(e, 12), " KB/s")
            ),
        };
        table.push_str(&format!(
            "| {client} | {version} | {mode} | {scoring} | {:.1} % ({:.1}) | {} | {} | {upload} |\n",
            pct(&st["mean"]),
            pct(&st["sd"]),
            fmt(per_run(e, 6), ""),
            fmt(per_run(e, 11), " s"),
        ));
    }
    println!("{table}");
    // The target: deadline beats every real client, libtorrent's time-critical mode first.
    if let Some(&(i, d)) = means.get("deadline") {
        let tc = format!("{ROOT}/examples/libtorrent_vod.py --mode time-critical");
        if let Some(&(_, l)) = means.get(&tc) {
            b.anchor(i, "libtorrent time-critical", l, false);
        }
        let real: Vec<f64> = means
            .iter()
            .filter(|(k, _)| k.starts_with(ROOT))
            .map(|(_, &(_, m))| m)
            .collect();
        b.target(
            i,
            "beats every real client's share",
            !real.is_empty() && real.iter().all(|&m| d < m),
        );
    }
    if !b.quick {
        let note = format!(
            "Generated by `make bench BENCH=clients` on {}: configs/default.yaml ({}), seeds \
             42..{last}, one experiment at a time; my client's upload cap 60 KB/s, checked by the \
             referee (the last column); every run's dots: benches/clients.svg.\n\n",
            Command::new("date")
                .args(["-u", "+%Y-%m-%d"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default(),
            if secs == 0 {
                "the whole movie".to_string()
            } else {
                format!("its first {secs} s")
            }
        );
        for file in ["BENCHMARKS.md", "docs/clients.md"] {
            replace_between(
                &Path::new(ROOT).join(file),
                "<!-- clients:begin -->",
                "<!-- clients:end -->",
                &format!("{note}{table}"),
            )?;
        }
        std::fs::copy(
            out.join("compare.svg"),
            Path::new(ROOT).join("benches/clients.svg"),
        )?;
    }
    Ok(())
}

/// Replace what lies between the markers in `path` (which must have them).
fn replace_between(path: &Path, begin: &str, end: &str, body: &str) -> Result<()> {
    let old = std::fs::read_to_string(path)?;
    let (a, z) = match (old.find(begin), old.find(end)) {
        (Some(a), Some(z)) if a < z => (a, z),
        _ => bail!("{}: no {begin} .. {end} markers", path.display()),
    };
    std::fs::write(path, format!("{}{begin}\n{body}{}", &old[..a], &old[z..]))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Results

fn write_results(b: &Bench, total_secs: f64) -> Result<()> {
    let machine = machine();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let command = if b.quick {
        "make bench QUICK=1"
    } else {
        "make bench"
    };
    let json = serde_json::json!({
        "date": date,
        "machine": machine,
        "command": command,
        "quick": b.quick,
        "seconds": total_secs,
        "figures": b.figures,
        "errors": b.errors,
    });
    let run = Path::new(ROOT).join("run");
    std::fs::write(run.join("bench.json"), serde_json::to_string_pretty(&json)?)?;

    if b.quick {
        // Short measurements are for a quick look; the committed table is full runs only.
        println!("QUICK: BENCHMARKS.md left as it is");
        return Ok(());
    }
    let md = Path::new(ROOT).join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&md).unwrap_or_default();
    let new = merge_table(b, &old, &date, &machine, command, total_secs);
    std::fs::write(&md, new)?;
    Ok(())
}

/// Which rows a run keeps: a partial run keeps the sections it did not run, a failed section
/// keeps its rows from its last complete run, and a section that ran replaces its rows.
fn check_merge() {
    let old = "intro\n<!-- bench:begin -->\nGenerated by `make bench` on d0, m, in 1 s.\n\n\
               | section | figure | value | anchor | ratio | target | result |\n\
               |---|---|---|---|---|---|---|\n\
               | wire | old wire | 1 x | | | | |\n\
               | vod | old vod | 2 % | | | | |\n\
               | clients | old clients | 3 % | | | | |\n\
               <!-- bench:end -->\nrest\n";
    let figure = Figure {
        section: "vod",
        name: "new vod".into(),
        value: 9.0,
        unit: "%",
        anchor: None,
        anchor_name: None,
        ratio: None,
        target: None,
        pass: None,
    };
    let stopped = Bench {
        quick: false,
        partial: true,
        named: true,
        sections_run: vec!["vod"],
        failed: vec!["vod"],
        dir: PathBuf::new(),
        figures: vec![figure],
        errors: vec!["vod: compare stopped by a signal".into()],
    };
    let new = merge_table(&stopped, old, "d1", "m", "make bench", 5.0);
    for kept in [
        "| wire | old wire |",
        "| vod | old vod |",
        "| clients | old clients |",
    ] {
        assert!(
            new.contains(kept),
            "a stopped vod section lost {kept:?}:\n{new}"
        );
    }
    assert!(
        !new.contains("new vod"),
        "a stopped section's figures were tabled:\n{new}"
    );
    assert!(
        new.contains("Failed: vod: compare stopped by a signal"),
        "{new}"
    );
    assert!(
        new.contains("The rows of vod are from their last complete run."),
        "{new}"
    );
    assert!(new.starts_with("intro\n<!-- bench:begin -->\n"), "{new}");
    assert!(new.ends_with("<!-- bench:end -->\nrest\n"), "{new}");
    let measured = Bench {
        failed: Vec::new(),
        errors: Vec::new(),
        ..stopped
    };
    let new = merge_table(&measured, old, "d1", "m", "make bench", 5.0);
    assert!(new.contains("| vod | new vod | 9.00 % |"), "{new}");
    assert!(!new.contains("old vod") && !new.contains("Failed"), "{new}");
    assert!(new.contains("| wire | old wire |") && new.contains("| clients | old clients |"));
    assert!(
        new.contains("Re-measured: vod by `make bench BENCH=vod` on d1, m."),
        "{new}"
    );
}

/// BENCHMARKS.md with its generated table (between the bench markers) rewritten for this run.
fn merge_table(
    b: &Bench,
    old: &str,
    date: &str,
    machine: &str,
    command: &str,
    total_secs: f64,
) -> String {
    let (begin, end) = ("<!-- bench:begin -->", "<!-- bench:end -->");
    let old_table = match (old.find(begin), old.find(end)) {
        (Some(a), Some(z)) if a < z => &old[a + begin.len()..z],
        _ => "",
    };
    // Rows by section: this run's sections replace theirs; a partial run (BENCH=...) keeps
    // the other sections' rows from the table as it was, and a section that failed keeps its
    // rows from its last complete run (its figures from this run are in run/bench.json only),
    // so a stopped or broken run never turns measured rows into nothing.
    let mut rows: Vec<(String, String)> = Vec::new();
    let ran: Vec<&str> = b
        .sections_run
        .iter()
        .copied()
        .filter(|s| !b.failed.contains(s))
        .collect();
    for f in b.figures.iter().filter(|f| ran.contains(&f.section)) {
        let anchor = match (f.anchor, f.anchor_name) {
            (Some(a), Some(n)) => format!("{n}: {} {}", num(a), f.unit),
            _ => String::new(),
        };
        rows.push((
            f.section.to_string(),
            format!(
                "| {} | {} | {} {} | {} | {} | {} | {} |\n",
                f.section,
                f.name,
                num(f.value),
                f.unit,
                anchor,
                f.ratio.map(|r| format!("{r:.2}")).unwrap_or_default(),
                f.target.clone().unwrap_or_default(),
                match f.pass {
                    Some(true) => "pass",
                    Some(false) => "**miss**",
                    None => "",
                }
            ),
        ));
    }
    let mut notes: Vec<String> = Vec::new();
    let kept = |sec: &str| (b.partial && !ran.contains(&sec)) || b.failed.contains(&sec);
    for line in old_table.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() > 2 && SECTIONS.contains(&cells[1]) && kept(cells[1]) {
            rows.push((cells[1].to_string(), format!("{line}\n")));
        }
    }
    if b.partial {
        for line in old_table.lines() {
            if line.starts_with("Generated by") && b.named {
                notes.push(line.to_string());
            } else if let Some(rest) = line.strip_prefix("Re-measured: ") {
                // An earlier partial run's note stays only for sections it alone still stands
                // for (a note names its sections before " by ").
                let secs = rest.split(" by ").next().unwrap_or("");
                if secs.split(", ").any(|s| !ran.contains(&s)) {
                    notes.push(line.to_string());
                }
            }
        }
        if b.named {
            // A run that measured nothing (its sections failed) re-measured nothing.
            if !ran.is_empty() {
                notes.push(format!(
                    "Re-measured: {} by `make bench BENCH={}` on {date}, {machine}.",
                    ran.join(", "),
                    ran.join(",")
                ));
            }
        } else {
            notes.push(format!(
                "Generated by `{command}` on {date}, {machine}, in {total_secs:.0} s \
                 (every section but the long ones, whose rows are from their last run)."
            ));
        }
    } else {
        notes.push(format!(
            "Generated by `{command}` on {date}, {machine}, in {total_secs:.0} s."
        ));
    }
    rows.sort_by_key(|(sec, _)| SECTIONS.iter().position(|s| s == sec));
    let mut t = String::new();
    for n in &notes {
        t.push_str(n);
        t.push_str("\n\n");
    }
    t.push_str("| section | figure | value | anchor | ratio | target | result |\n");
    t.push_str("|---|---|---|---|---|---|---|\n");
    for (_, r) in &rows {
        t.push_str(r);
    }
    for e in &b.errors {
        t.push_str(&format!("\nFailed: {e}\n"));
    }
    if !b.failed.is_empty() {
        t.push_str(&format!(
            "\nThe rows of {} are from their last complete run.\n",
            b.failed.join(", ")
        ));
    }
    match (old.find(begin), old.find(end)) {
        (Some(a), Some(z)) if a < z => {
            format!("{}{begin}\n{t}{}", &old[..a], &old[z..])
        }
        _ => format!("# Benchmarks\n\n{begin}\n{t}{end}\n{old}"),
    }
}

fn num(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {kernel}")
}
