//! The orchestrator: `testbed start | stop | status | run`, the counterpart of
//! `run_all_vod.sh start [my-client] | stop`.
//!
//! `testbed start` checks the config, then re-executes itself detached (`testbed supervise`,
//! a new session, output in `run/supervisor.log`) and waits until the supervisor says the world
//! is up. The supervisor:
//!
//! 1. takes the run dir's lock (one testbed per run dir; a dead supervisor's lock is gone with
//!    it, so a stale pid file never blocks), resets `run/`, writes `run/testbed.pid`;
//! 2. makes itself a child subreaper and, where it can, moves into a cgroup of its own
//!    ([`procs`]);
//! 3. makes a torrent per file of `fresh-files/` in `run/torrents/`, and serves the tracker,
//!    status page and `/api/world` in-process;
//! 4. starts the [`world`] and my client (exec'd directly with the [`template`]d args and the
//!    `TESTBED_*` variables), and reports ready once every world client has announced;
//! 5. replaces world clients as they complete or crash, until SIGTERM/SIGINT (or, under
//!    `testbed run`, until my client exits); then ends every process of the run
//!    ([`procs::end_all`]) while the tracker still answers their `stopped` announces.
//!
//! `testbed stop` signals the supervisor (checking the pid's start time), waits for it, then
//! sweeps: cgroup, run-id marker and session, SIGTERM then SIGKILL, within 5 seconds. It works
//! the same when the supervisor was SIGKILLed.

pub mod config;
pub mod page;
pub mod procs;
pub mod rundir;
pub mod template;
pub mod world;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::metainfo::{self, Torrent};
use crate::tracker::{self, Tracker, TrackerConfig};
use config::Config;
use procs::{Exit, SpawnRequest, Spawner};
use rundir::{PidInfo, RunDir};
use world::{SwarmFiles, World};

/// How the supervisor was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Until stopped.
    Start,
    /// Until my client exits; then print the result and stop.
    Run,
}

/// My client as the supervisor tracks it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct MyClient {
    pub command: Vec<String>,
    pub pid: Option<i32>,
    pub state: String,
    pub exit: Option<String>,
    pub started_secs: Option<f64>,
    pub ended_secs: Option<f64>,
    pub log: PathBuf,
}

/// URLs and paths a client needs.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub run_id: String,
    pub pid: i32,
    pub base_url: String,
    pub tracker_url: String,
    pub status_url: String,
    pub vod_url: String,
    pub torrent: PathBuf,
    pub saveas: PathBuf,
    pub report: PathBuf,
    pub torrents: Vec<TorrentInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TorrentInfo {
    pub name: String,
    pub path: PathBuf,
    pub info_hash: String,
    pub size: u64,
    pub pieces: u32,
    pub piece_length: u32,
}

/// What a supervised run ended with.
#[derive(Debug)]
pub struct Outcome {
    pub my_exit: Option<Exit>,
    /// The VoD server's count per client: the penalty.
    pub served: BTreeMap<String, crate::vod::server::Served>,
    /// Size of my client's file.
    pub my_size: u64,
    /// The run's id (every process it started carried it as `TESTBED_RUN_ID`).
    pub run_id: String,
}

/// The supervisor's shared state, served at `/api/world`.
pub struct Orchestrator {
    pub vod: Arc<crate::vod::server::VodServer>,
    pub info: RunInfo,
    pub world: Arc<World>,
    pub tracker: Arc<Tracker>,
    pub my: Mutex<MyClient>,
    pub phase: Mutex<String>,
    pub started: Instant,
    pub downloads: PathBuf,
}

/// `/api/world`: the run, every process, the downloads on disk.
#[derive(Debug, Serialize)]
pub struct WorldStatus {
    pub phase: String,
    pub uptime_secs: f64,
    pub run: RunInfo,
    pub world: Vec<world::Slot>,
    pub my_client: MyClient,
    pub downloads: Vec<(String, u64)>,
    /// Bytes the VoD server sent, per client.
    pub vod_served: BTreeMap<String, crate::vod::server::Served>,
}

impl Orchestrator {
    pub fn snapshot(&self) -> WorldStatus {
        let mut downloads = Vec::new();
        walk_files(&self.downloads, &mut downloads);
        downloads.sort();
        WorldStatus {
            phase: self.phase.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            uptime_secs: self.started.elapsed().as_secs_f64(),
            run: self.info.clone(),
            world: self
                .world
                .slots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            my_client: self.my.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            downloads,
            vod_served: self.vod.served(),
        }
    }
}

fn walk_files(dir: &Path, out: &mut Vec<(String, u64)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        match e.metadata() {
            Ok(m) if m.is_dir() => walk_files(&p, out),
            Ok(m) => out.push((p.display().to_string(), m.len())),
            Err(_) => {}
        }
    }
}

fn new_run_id() -> String {
    metainfo::hex(&rand::random::<[u8; 6]>())
}

/// The files of fresh-files that become swarms: regular, non-hidden files, sorted by name.
pub fn fresh_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).with_context(|| format!("fresh_files {}", dir.display()))?;
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    files.sort();
    if files.is_empty() {
        anyhow::bail!("fresh_files {}: no files to share", dir.display());
    }
    Ok(files)
}

/// Host that clients use to reach the tracker: the public host, else the bind address (with
/// 0.0.0.0 meaning this host).
fn reach_host(cfg: &Config) -> String {
    match (&cfg.tracker.public_host, cfg.tracker.bind) {
        (Some(h), _) => h.clone(),
        (None, ip) if ip.is_unspecified() => "127.0.0.1".into(),
        (None, IpAddr::V6(ip)) => format!("[{ip}]"),
        (None, ip) => ip.to_string(),
    }
}

/// `testbed start`: detach a supervisor and wait for it to report ready.
pub fn start(config_path: &Path, my_client: &[String]) -> anyhow::Result<()> {
    let cfg = Config::load(config_path)?;
    let rd = RunDir::new(&cfg.run_dir);
    if rd.is_locked() {
        drop(rd.lock()?); // the error says who runs
    }
    check_my_client(my_client)?;
    fresh_files(&cfg.fresh_files)?;
    std::fs::create_dir_all(&rd.root).with_context(|| format!("{}", rd.root.display()))?;
    let _ = std::fs::remove_file(rd.state_file());
    let log_path = rd.root.join("supervisor.log");
    let log =
        std::fs::File::create(&log_path).with_context(|| format!("{}", log_path.display()))?;
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("supervise")
        .arg("--config")
        .arg(config_path)
        .arg("--")
        .args(my_client);
    cmd.env(procs::RUN_ID_VAR, new_run_id())
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().context("cannot start the supervisor")?;
    let deadline = Instant::now()
        + Duration::from_secs(60)
        + Duration::from_millis(100 * (cfg.world.clients + cfg.world.seeds) as u64);
    loop {
        if let Some(state) = read_state(&rd) {
            match state.phase.as_str() {
                "ready" => {
                    let info = rd.read_pid();
                    let url = info.map(|i| i.url).unwrap_or_default();
                    println!("testbed running: status page {url}/");
                    println!(
                        "  {} world clients announced; logs in {}",
                        state.world,
                        rd.logs().display()
                    );
                    println!("  `testbed status` for details, `testbed stop` to end it");
                    if state.failed > 0 {
                        eprintln!("testbed: warning: {} world client slot(s) crashed repeatedly and were given up; see {}", state.failed, rd.logs().display());
                    }
                    return Ok(());
                }
                "failed" => anyhow::bail!(
                    "{}",
                    state.error.unwrap_or_else(|| "supervisor failed".into())
                ),
                _ => {}
            }
        }
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let last = log
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("(no output)");
            anyhow::bail!(
                "supervisor exited ({status}): {}",
                last.trim_start_matches("testbed: error: ")
            );
        }
        if Instant::now() > deadline {
            let _ = stop(config_path, false);
            anyhow::bail!(
                "the world did not come up in time; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn check_my_client(my_client: &[String]) -> anyhow::Result<()> {
    if let Some(prog) = my_client.first() {
        let p = Path::new(prog);
        let found = if p.components().count() > 1 {
            p.is_file()
        } else {
            std::env::var_os("PATH")
                .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(p).is_file()))
        };
        if !found {
            anyhow::bail!("my client {prog}: no such executable");
        }
    }
    Ok(())
}

#[derive(Debug, Serialize, serde::Deserialize)]
struct State {
    phase: String,
    error: Option<String>,
    world: usize,
    #[serde(default)]
    failed: usize,
}

fn read_state(rd: &RunDir) -> Option<State> {
    serde_json::from_slice(&std::fs::read(rd.state_file()).ok()?).ok()
}

fn write_state(rd: &RunDir, phase: &str, error: Option<String>, world: usize, failed: usize) {
    let s = State {
        phase: phase.into(),
        error,
        world,
        failed,
    };
    let _ = rundir::write_atomic(
        &rd.state_file(),
        &serde_json::to_vec(&s).unwrap_or_default(),
    );
}

/// `testbed stop`: end everything of the run dir's testbed within 5 s. Idempotent.
pub fn stop(config_path: &Path, verbose: bool) -> anyhow::Result<()> {
    let cfg = Config::load(config_path)?;
    let rd = RunDir::new(&cfg.run_dir);
    let deadline = Instant::now() + Duration::from_secs(5);
    let Some(info) = rd.read_pid() else {
        if verbose {
            println!("nothing running in {}", rd.root.display());
        }
        return Ok(());
    };
    let alive = procs::is_same_process(info.pid, info.start_time);
    if alive {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(info.pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        let wait_until = Instant::now() + Duration::from_secs(4);
        while procs::is_same_process(info.pid, info.start_time) && Instant::now() < wait_until {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let cgroup = info.cgroup.clone().map(|path| procs::Cgroup { path });
    let left = procs::end_all(
        &info.run_id,
        info.sid,
        cgroup.as_ref(),
        Duration::from_millis(300),
        deadline,
    );
    if let Some(cg) = &cgroup {
        cg.remove();
    }
    if !left.is_empty() {
        anyhow::bail!("processes {left:?} of run {} survived SIGKILL", info.run_id);
    }
    let _ = std::fs::remove_file(rd.pid_file());
    if verbose {
        println!(
            "stopped testbed {} (supervisor {})",
            info.run_id,
            if alive {
                "ended"
            } else {
                "was already gone; its processes were swept"
            }
        );
    }
    Ok(())
}

/// `testbed status`: what runs, where, and the URLs a client needs. Returns false when nothing runs.
pub fn status(config_path: &Path, json: bool) -> anyhow::Result<bool> {
    let cfg = Config::load(config_path)?;
    let rd = RunDir::new(&cfg.run_dir);
    let info = rd
        .read_pid()
        .filter(|i| procs::is_same_process(i.pid, i.start_time));
    let Some(info) = info else {
        if json {
            println!("{{\"running\":false}}");
        } else {
            println!("not running ({})", rd.root.display());
        }
        return Ok(false);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = format!("{}/api/world", info.url);
    let body = rt.block_on(async {
        let c = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()?;
        let w = c.get(&url).send().await?.text().await?;
        let t = c
            .get(format!("{}/api/status", info.url))
            .send()
            .await?
            .text()
            .await?;
        anyhow::Ok((w, t))
    });
    let (world, trk) = body
        .with_context(|| format!("supervisor pid {} runs but {url} does not answer", info.pid))?;
    let w: serde_json::Value = serde_json::from_str(&world)?;
    let t: serde_json::Value = serde_json::from_str(&trk)?;
    if json {
        println!(
            "{}",
            serde_json::json!({"running": true, "pid": info.pid, "world": w, "tracker": t})
        );
        return Ok(true);
    }
    print!("{}", render_status(&info, &w, &t));
    Ok(true)
}

fn render_status(info: &PidInfo, w: &serde_json::Value, t: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let run = &w["run"];
    let _ = writeln!(
        s,
        "testbed running: supervisor pid {}, run {}, up {:.0} s, {}",
        info.pid,
        info.run_id,
        w["uptime_secs"].as_f64().unwrap_or(0.0),
        w["phase"].as_str().unwrap_or("?")
    );
    for (k, v) in [
        ("status page", "status_url"),
        ("tracker", "tracker_url"),
        ("VoD server", "vod_url"),
        ("my torrent", "torrent"),
        ("my saveas", "saveas"),
    ] {
        let _ = writeln!(s, "  {k:<12} {}", run[v].as_str().unwrap_or("?"));
    }
    // Peer figures from the tracker, by peer id.
    let mut peers: BTreeMap<String, &serde_json::Value> = BTreeMap::new();
    for sw in t["swarms"].as_array().into_iter().flatten() {
        for p in sw["peers"].as_array().into_iter().flatten() {
            peers.insert(p["peer_id"].as_str().unwrap_or("").to_string(), p);
        }
    }
    let _ = writeln!(
        s,
        "\n  {:<6} {:>4} {:>4} {:>7} {:<8} {:<20} {:>8} {:>9} {:>9}",
        "ROLE", "SLOT", "GEN", "PID", "STATE", "PEER ID", "PROGRESS", "UP KB/s", "DOWN KB/s"
    );
    let pct = |p: Option<&&serde_json::Value>, k: &str| p.and_then(|p| p[k].as_f64());
    for slot in w["world"].as_array().into_iter().flatten() {
        let id = slot["peer_id"].as_str().unwrap_or("");
        let p = peers.get(id);
        let _ = writeln!(
            s,
            "  {:<6} {:>4} {:>4} {:>7} {:<8} {:<20} {:>7.0}% {:>9.1} {:>9.1}",
            slot["role"].as_str().unwrap_or("?"),
            slot["index"].as_i64().unwrap_or(-1),
            slot["generation"].as_i64().unwrap_or(-1),
            slot["pid"]
                .as_i64()
                .map(|p| p.to_string())
                .unwrap_or("-".into()),
            slot["state"].as_str().unwrap_or("?"),
            id,
            pct(p, "progress").unwrap_or(0.0) * 100.0,
            pct(p, "up_rate").unwrap_or(0.0) / 1024.0,
            pct(p, "down_rate").unwrap_or(0.0) / 1024.0
        );
    }
    let my = &w["my_client"];
    let _ = writeln!(
        s,
        "  {:<6} {:>4} {:>4} {:>7} {:<8} {}",
        "my",
        "-",
        "-",
        my["pid"]
            .as_i64()
            .map(|p| p.to_string())
            .unwrap_or("-".into()),
        my["state"].as_str().unwrap_or("none"),
        my["exit"].as_str().unwrap_or("")
    );
    let _ = writeln!(s, "\n  downloads on disk:");
    for d in w["downloads"].as_array().into_iter().flatten() {
        let _ = writeln!(s, "  {:>12}  {}", d[1], d[0].as_str().unwrap_or(""));
    }
    s
}

/// The supervisor: run the testbed in this process until stopped (or, under `Mode::Run`, until my
/// client exits; its exit status is returned).
pub fn supervise(
    config_path: &Path,
    my_client: Vec<String>,
    mode: Mode,
) -> anyhow::Result<Outcome> {
    let cfg = Config::load(config_path)?;
    let rd = RunDir::new(&cfg.run_dir);
    let _lock = rd.lock()?;
    rd.reset()?;
    crate::cli::init_logging(Some(&rd.logs().join("tracker.log")), "info")?;
    let run_id = std::env::var(procs::RUN_ID_VAR).unwrap_or_else(|_| new_run_id());
    let me = std::process::id() as i32;
    let sid = (nix::unistd::getsid(None).ok().map(|s| s.as_raw()) == Some(me)).then_some(me);
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let cgroup = match procs::Cgroup::create(&run_id, me) {
        Ok(cg) => Some(cg),
        Err(e) => {
            eprintln!(
                "testbed: no cgroup for this run ({e}); relying on the run-id marker and session"
            );
            None
        }
    };
    let host = reach_host(&cfg);
    let base_url = format!("http://{host}:{}", cfg.tracker.port);
    rd.write_pid(&PidInfo {
        pid: me,
        start_time: procs::start_time(me).unwrap_or(0),
        run_id: run_id.clone(),
        sid,
        cgroup: cgroup.as_ref().map(|c| c.path.clone()),
        url: base_url.clone(),
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(run_supervisor(
        &cfg,
        &rd,
        run_id.clone(),
        sid,
        base_url,
        my_client,
        mode,
    ));
    if let Err(e) = &result {
        write_state(&rd, "failed", Some(format!("{e:#}")), 0, 0);
    }
    // Whatever happened, nothing of the run outlives the supervisor.
    let left = procs::end_all(
        &run_id,
        sid,
        None,
        Duration::from_millis(1500),
        Instant::now() + Duration::from_secs(4),
    );
    if !left.is_empty() {
        eprintln!("testbed: processes {left:?} survived");
    }
    rt.shutdown_timeout(Duration::from_millis(500));
    if let Some(cg) = &cgroup {
        // We are inside it: leave it before removing it.
        if let Some(parent) = cg.path.parent() {
            let _ = std::fs::write(parent.join("cgroup.procs"), me.to_string());
        }
        cg.remove();
    }
    let _ = std::fs::remove_file(rd.pid_file());
    if result.is_ok() {
        write_state(&rd, "stopped", None, 0, 0);
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn run_supervisor(
    cfg: &Config,
    rd: &RunDir,
    run_id: String,
    sid: Option<i32>,
    base_url: String,
    my_client: Vec<String>,
    mode: Mode,
) -> anyhow::Result<Outcome> {
    write_state(rd, "starting", None, 0, 0);
    // Torrents for every file of fresh-files.
    let files = fresh_files(&cfg.fresh_files)?;
    let announce = format!("{base_url}/announce");
    let mut swarms = Vec::new();
    for f in &files {
        let bytes = metainfo::make_torrent(f, &announce, cfg.torrents.piece_length)?;
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = rd.torrents().join(format!("{name}.torrent"));
        std::fs::write(&path, &bytes).with_context(|| format!("{}", path.display()))?;
        swarms.push(SwarmFiles {
            torrent: Arc::new(Torrent::from_bytes(&bytes)?),
            torrent_path: path,
            fresh: f.clone(),
        });
    }
    let mine = match &cfg.torrents.my_torrent {
        Some(n) => swarms
            .iter()
            .position(|s| &s.torrent.name == n)
            .with_context(|| {
                format!(
                    "torrents.my_torrent: {n} is not in {}",
                    cfg.fresh_files.display()
                )
            })?,
        None => (0..swarms.len())
            .max_by_key(|&i| swarms[i].torrent.total_length)
            .unwrap_or(0),
    };

    // The tracker (and status page), in-process.
    let public_ip = cfg
        .tracker
        .public_host
        .as_ref()
        .and_then(|h| h.parse().ok());
    let trk = Tracker::new(TrackerConfig {
        interval: Duration::from_secs(cfg.tracker.interval),
        min_interval: Duration::from_secs(cfg.tracker.interval.div_ceil(2)),
        public_ip,
        ..Default::default()
    });
    for s in &swarms {
        trk.register(&s.torrent);
    }
    let listener = tracker::bind(SocketAddr::new(cfg.tracker.bind, cfg.tracker.port)).await?;

    let my_sw = &swarms[mine];
    let info = RunInfo {
        run_id: run_id.clone(),
        pid: std::process::id() as i32,
        base_url: base_url.clone(),
        tracker_url: announce.clone(),
        status_url: format!("{base_url}/"),
        vod_url: format!("{base_url}/vod/{}", my_sw.torrent.info_hash),
        torrent: std::path::absolute(&my_sw.torrent_path)?,
        saveas: std::path::absolute(rd.downloads().join("my-client").join(&my_sw.torrent.name))?,
        report: std::path::absolute(rd.reports().join("my-client.json"))?,
        torrents: swarms
            .iter()
            .map(|s| TorrentInfo {
                name: s.torrent.name.clone(),
                path: s.torrent_path.clone(),
                info_hash: s.torrent.info_hash.hex(),
                size: s.torrent.total_length,
                pieces: s.torrent.num_pieces(),
                piece_length: s.torrent.piece_length,
            })
            .collect(),
    };
    let world = Arc::new(World {
        cfg: cfg.world.clone(),
        seed: cfg.seed.unwrap_or_else(rand::random),
        swarms,
        slots: Mutex::new(Vec::new()),
        spawner: Spawner::new(&run_id),
        testbed_exe: match &cfg.world.command {
            Some(c) => c.clone(),
            None => std::env::current_exe()?,
        },
        downloads: rd.downloads(),
        logs: rd.logs(),
        status: rd.status(),
        tracker_url: announce.clone(),
        interval: cfg.tracker.interval,
        stopping: Default::default(),
    });
    world.layout();
    let vod = crate::vod::server::VodServer::new(world.swarms.iter().map(|s| {
        (
            s.torrent.info_hash.hex(),
            s.fresh.clone(),
            s.torrent.total_length,
        )
    }));
    {
        let vod = vod.clone();
        trk.extra.write().unwrap_or_else(|p| p.into_inner()).push((
            "vod",
            Box::new(move || serde_json::to_value(vod.served()).unwrap_or_default()),
        ));
    }
    let orch = Arc::new(Orchestrator {
        vod: vod.clone(),
        info: info.clone(),
        world: world.clone(),
        tracker: trk.clone(),
        my: Mutex::new(MyClient {
            state: if my_client.is_empty() {
                "none"
            } else {
                "not started"
            }
            .into(),
            command: my_client.clone(),
            ..Default::default()
        }),
        phase: Mutex::new("starting".into()),
        started: Instant::now(),
        downloads: rd.downloads(),
    });
    let app = tracker::api_router(trk.clone()).merge(
        axum::Router::new()
            .route("/", axum::routing::get(page::handler))
            .route("/api/world", axum::routing::get(api_world))
            .with_state(orch.clone())
            .merge(crate::vod::server::router(vod.clone())),
    );
    let shutdown = Arc::new(tokio::sync::Notify::new());
    let server = {
        let shutdown = shutdown.clone();
        let trk = trk.clone();
        tokio::spawn(async move {
            tracker::serve(trk, listener, app, async move { shutdown.notified().await }).await
        })
    };

    // Children.
    let (exit_tx, mut exits) = tokio::sync::mpsc::unbounded_channel();
    procs::reaper(exit_tx);
    let n = world.slots.lock().unwrap_or_else(|p| p.into_inner()).len();
    {
        let world = world.clone();
        tokio::task::spawn_blocking(move || {
            (0..n).try_for_each(|k| world.start_slot(k).map(|_| ()))
        })
        .await??;
    }
    let my_pid = if my_client.is_empty() {
        None
    } else {
        Some(start_my_client(
            cfg,
            rd,
            &info,
            &world.spawner,
            &my_client,
            &orch,
        )?)
    };

    // Ready once every world client has announced (or been given up after crashing).
    let ready_by = Instant::now() + Duration::from_secs(30) + Duration::from_millis(50 * n as u64);
    let ids = loop {
        let ids = world.peer_ids();
        let announced = trk.with_swarms(|s| {
            ids.iter()
                .filter(|id| {
                    s.values()
                        .any(|sw| sw.peers().iter().any(|p| &p.peer_id == *id))
                })
                .count()
        });
        if announced >= ids.len() {
            break ids;
        }
        if Instant::now() > ready_by {
            anyhow::bail!(
                "only {announced} of {} world clients announced within the deadline; see {}",
                ids.len(),
                rd.logs().display()
            );
        }
        // Crashes are handled meanwhile (restarts with backoff, giving up).
        while let Ok((pid, exit)) = exits.try_recv() {
            handle_exit(&world, &orch, my_pid, pid, exit);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let failed = n - ids.len();
    if failed > 0 {
        tracing::error!("{failed} world client slot(s) crashed repeatedly and were given up");
    }
    *orch.phase.lock().unwrap_or_else(|p| p.into_inner()) = "ready".into();
    write_state(rd, "ready", None, ids.len(), failed);
    tracing::info!("ready: {} world clients announced", ids.len());

    let mut my_exit = None;
    let signal = crate::peer::shutdown_signal();
    tokio::pin!(signal);
    let mut progress = tokio::time::interval(Duration::from_secs(1));
    let show_progress = mode == Mode::Run && std::io::IsTerminal::is_terminal(&std::io::stderr());
    loop {
        tokio::select! {
            _ = progress.tick(), if show_progress => {
                eprint!("\r{}\x1b[K", progress_line(&info, &vod));
            }
            Some((pid, exit)) = exits.recv() => {
                if handle_exit(&world, &orch, my_pid, pid, exit) {
                    my_exit = Some(exit);
                    if mode == Mode::Run { break; }
                }
            }
            s = &mut signal => { tracing::info!("{s}: stopping"); break; }
        }
    }
    *orch.phase.lock().unwrap_or_else(|p| p.into_inner()) = "stopping".into();
    world.stopping.store(true, Ordering::Relaxed);
    // End the children while the tracker still answers their `stopped` announces.
    let rid = run_id.clone();
    tokio::task::spawn_blocking(move || {
        procs::end_all(
            &rid,
            sid,
            None,
            Duration::from_millis(1500),
            Instant::now() + Duration::from_secs(3),
        )
    })
    .await?;
    shutdown.notify_one();
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    if show_progress {
        eprintln!();
    }
    Ok(Outcome {
        my_exit,
        served: vod.served(),
        my_size: my_size_of(&info),
        run_id: info.run_id.clone(),
    })
}

fn my_size_of(info: &RunInfo) -> u64 {
    let hash = info.vod_url.rsplit('/').next().unwrap_or("");
    info.torrents
        .iter()
        .find(|t| t.info_hash == hash)
        .map_or(0, |t| t.size)
}

/// One line for the terminal under `testbed run`: playback position, bytes from peers, server bytes.
fn progress_line(info: &RunInfo, vod: &crate::vod::server::VodServer) -> String {
    let r: Option<crate::vod::Report> = std::fs::read(&info.report)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let kib = |b: u64| b as f64 / 1024.0;
    match r {
        Some(r) => format!(
            "t={:.0}s  playback {:.0}/{:.0} KiB  from peers {:.0} KiB  from server {:.0} KiB ({} pieces)",
            r.elapsed,
            kib(r.position),
            kib(r.size),
            kib(r.bytes_from_peers),
            kib(vod.total_bytes()),
            r.pieces_from_server
        ),
        None => format!("waiting for my client's report; from server {:.0} KiB", kib(vod.total_bytes())),
    }
}

/// A child ended: record my client's end (returns true), or replace a world client.
fn handle_exit(
    world: &Arc<World>,
    orch: &Orchestrator,
    my_pid: Option<i32>,
    pid: i32,
    exit: Exit,
) -> bool {
    if Some(pid) == my_pid {
        tracing::info!("my client (pid {pid}) ended: {exit}");
        let mut m = orch.my.lock().unwrap_or_else(|p| p.into_inner());
        m.state = "exited".into();
        m.exit = Some(exit.to_string());
        m.ended_secs = Some(orch.started.elapsed().as_secs_f64());
        return true;
    }
    if let Some((k, delay)) = world.on_exit(pid, exit) {
        let world = world.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if world.stopping.load(Ordering::Relaxed) {
                return;
            }
            let w = world.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || w.start_slot(k)).await {
                tracing::error!(slot = k, "cannot restart world client: {e:#}");
            }
        });
    }
    false
}

fn start_my_client(
    cfg: &Config,
    rd: &RunDir,
    info: &RunInfo,
    spawner: &Spawner,
    my_client: &[String],
    orch: &Orchestrator,
) -> anyhow::Result<i32> {
    let m = &cfg.my_client;
    if let Some(dir) = info.saveas.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut values: BTreeMap<&str, String> = BTreeMap::new();
    values.insert("torrent", info.torrent.display().to_string());
    values.insert("saveas", info.saveas.display().to_string());
    values.insert("tracker", info.tracker_url.clone());
    values.insert("vod_url", info.vod_url.clone());
    values.insert("rate", m.rate.to_string());
    values.insert("delay", m.delay.to_string());
    values.insert("prefetch", m.prefetch.to_string());
    values.insert("max_upload_rate", m.max_upload_rate.to_string());
    values.insert("report", info.report.display().to_string());
    let args: Vec<String> = if my_client.len() > 1 {
        my_client[1..]
            .iter()
            .map(|a| template::fill(a, &values))
            .collect()
    } else {
        template::render(&m.args, &values)
    };
    let env = values
        .iter()
        .map(|(k, v)| (format!("TESTBED_{}", k.to_uppercase()), v.clone()))
        .collect();
    let log = rd.logs().join("my-client.log");
    let pid = spawner.spawn(SpawnRequest {
        program: PathBuf::from(&my_client[0]),
        args: args.iter().map(Into::into).collect(),
        env,
        log: log.clone(),
        cwd: None,
    })?;
    tracing::info!(
        "my client started (pid {pid}): {} {}",
        my_client[0],
        args.join(" ")
    );
    let mut st = orch.my.lock().unwrap_or_else(|p| p.into_inner());
    *st = MyClient {
        command: std::iter::once(my_client[0].clone()).chain(args).collect(),
        pid: Some(pid),
        state: "running".into(),
        exit: None,
        started_secs: Some(orch.started.elapsed().as_secs_f64()),
        ended_secs: None,
        log,
    };
    Ok(pid)
}

async fn api_world(
    axum::extract::State(o): axum::extract::State<Arc<Orchestrator>>,
) -> axum::Json<WorldStatus> {
    axum::Json(o.snapshot())
}
