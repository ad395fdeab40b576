//! The Shadow engine (`engine: shadow`, `--engine shadow`): the lab's own binaries and my
//! client, unmodified, under Shadow 3.3 (a discrete-event network simulator: a simulated
//! network and clock, every host its own address, computation taking no time). The same config
//! and seed give the same run, byte for byte, faster than real time.
//!
//! [`run`] does what the real engine's supervisor does, as one simulation:
//!
//! 1. the run folder, the torrents, the world's layout and my client's command line, made by
//!    the same functions as the real engine's ([`super::supervisor`]);
//! 2. `run/shadow/plan.json` (a [`Plan`]: what the processes inside need to know) and
//!    `run/shadow/shadow.yaml` ([`hosts`]): a host for the services (the tracker and the VoD
//!    server, 10.77.0.1), one for my client (10.77.0.2), one per world slot (its namespace
//!    address, 10.77.x.y), on a graph made from `network:` (without it, a LAN);
//! 3. Shadow, watched: a simulation whose clock stops moving (a busy loop), or that runs slower
//!    than real time, is ended and reported; Ctrl-C and `testbed stop` end it with everything
//!    it runs;
//! 4. the outcome, from what the processes left in `run/`: the VoD server's log of every range
//!    it sent, my client's record (start, end, exit), the world's referee records. The caller
//!    scores it as the real engine's.
//!
//! Inside the simulation ([`inside`]) the parts that the supervisor does outside in the real
//! engine run as processes of `testbed sim`: the services, a world slot that reincarnates its
//! client, my client's launcher.
//!
//! Every process runs on simulated time: the clock starts at 2000-01-01 00:00:00 UTC, and the
//! records and the VoD server's log carry that clock.

pub mod finished;
pub mod hosts;
pub mod inside;
pub mod plan;

pub use plan::{MyPlan, MyRecord, Plan};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::api::{Phase, RunInfo, StartState};
use super::config::{Addresses, Config, Source};
use super::netns;
use super::rundir::{PidInfo, RunDir};
use super::supervisor::{self, Urls};
use super::world::SwarmFiles;
use crate::sys::procs;
use crate::vod::score::Outcome;

/// Where `make deps` installs Shadow.
pub const DEFAULT_SHADOW: &str = "/opt/shadow/bin/shadow";

/// How long my client may run past the last deadline of its movie before it is ended.
const GRACE: f64 = 10.0;
/// A simulation whose clock has not moved for this long is stalled (`$TESTBED_SHADOW_STALL`
/// seconds, to wait more or less).
fn stall_limit() -> Duration {
    std::env::var("TESTBED_SHADOW_STALL")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(30), Duration::from_secs_f64)
}

/// The Shadow to run: `$TESTBED_SHADOW`, else [`DEFAULT_SHADOW`], else `shadow` on the PATH.
pub fn shadow_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("TESTBED_SHADOW") {
        let p = PathBuf::from(p);
        return match p.is_file() {
            true => Ok(p),
            false => anyhow::bail!(
                "engine: shadow: TESTBED_SHADOW={} is not a file (`make deps` builds Shadow \
                 into {DEFAULT_SHADOW})",
                p.display()
            ),
        };
    }
    let default = PathBuf::from(DEFAULT_SHADOW);
    if default.is_file() {
        return Ok(default);
    }
    crate::util::which("shadow").ok_or_else(|| {
        anyhow::anyhow!(
            "engine: shadow needs Shadow 3.3, which is not installed (not at {DEFAULT_SHADOW}, \
             $TESTBED_SHADOW or on the PATH): `make deps` builds it (see docs/shadow.md)"
        )
    })
}

/// What the Shadow engine cannot do of a config (an error naming the key), and what it does
/// differently (warnings, one line each).
pub fn check_config(cfg: &Config) -> anyhow::Result<Vec<String>> {
    if cfg.world.command.is_some() {
        anyhow::bail!(
            "world.command: the Shadow engine runs the world's clients in its own slot \
             processes; leave out world.command, or use engine: real"
        );
    }
    if cfg.world.shard.count > 1 {
        anyhow::bail!(
            "--shard: a simulation holds the whole world on one machine; leave out --shard, or \
             use engine: real"
        );
    }
    if !matches!(cfg.addresses, Addresses::Auto | Addresses::Namespace) {
        anyhow::bail!(
            "addresses: {}: under the Shadow engine every host has a simulated address of its \
             own (10.77.x.y); leave out addresses",
            cfg.addresses
        );
    }
    let mut warnings = Vec::new();
    if let Some(n) = &cfg.network {
        if n.jitter_ms != crate::util::range::Range::Fixed(0.0) {
            warnings.push(
                "network.jitter_ms: Shadow has no jitter; the simulated links have none".into(),
            );
        }
    }
    Ok(warnings)
}

/// `testbed run` under Shadow: the whole experiment as one simulation. Returns what the run
/// ended with, as the real engine's supervisor does.
pub fn run(source: &Source, my_client: Vec<String>) -> anyhow::Result<Outcome> {
    let mut cfg = source.load()?;
    for w in check_config(&cfg)? {
        eprintln!("testbed: warning: {w}");
    }
    let shadow = shadow_binary()?;
    inside::check_runnable(&my_client[0])?;
    let rd = RunDir::new(&cfg.run_dir);
    let _lock = rd.lock()?;
    rd.reset()?;
    let dir = rd.shadow();
    std::fs::create_dir_all(dir.join("slots"))?;
    crate::util::rt::init_logging(Some(&rd.logs().join("engine.log")), "info")?;
    let run_id =
        std::env::var(procs::RUN_ID_VAR).unwrap_or_else(|_| super::commands::start::new_run_id());
    cfg.seed = Some(cfg.seed.unwrap_or_else(rand::random));
    let port = match cfg.tracker.port {
        0 => 6970,
        p => p,
    };
    let lab = format!("http://{}:{port}", netns::TRACKER);
    let urls = Urls {
        run_id: run_id.clone(),
        base: lab.clone(),
        announce: format!("{lab}/announce"),
        lab,
    };
    let swarms = supervisor::make_torrents(&cfg, &rd, &urls.announce)?;
    let mine = supervisor::my_swarm(&cfg, &swarms)?;
    let my_link = cfg.network.as_ref().map(|n| n.my_client);
    let info = supervisor::run_info(
        &cfg,
        &rd,
        &urls,
        (Addresses::Namespace, my_link),
        &swarms,
        mine,
    )?;
    if let Some(dir) = info.saveas.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let plan = make_plan(&cfg, &rd, &run_id, port, &swarms, &info, &my_client)?;
    let plan_path = dir.join("plan.json");
    crate::util::fs::write_atomic(&plan_path, &serde_json::to_vec_pretty(&plan)?)?;
    let world = plan.world()?;
    let yaml = hosts::shadow_config(&plan, &plan_path, &world)?;
    let config_path = dir.join("shadow.yaml");
    crate::util::fs::write_atomic(&config_path, yaml.as_bytes())?;
    let me = std::process::id() as i32;
    rd.write_pid(&PidInfo {
        pid: me,
        start_time: procs::start_time(me).unwrap_or(0),
        run_id: run_id.clone(),
        sid: None,
        cgroup: None,
        url: urls.base.clone(),
        port,
        netns: None,
    })?;
    StartState::write(&rd, Phase::Starting, None, 0, 0);
    let simulated = plan.stop_time();
    tracing::info!(
        "simulating {simulated:.0} s: {} world clients, my client {}",
        world.slots.lock().map(|s| s.len()).unwrap_or(0),
        my_client.join(" ")
    );
    let ended = simulate(&shadow, &dir, &config_path, &run_id, simulated);
    let _ = std::fs::remove_file(rd.pid_file());
    let phase = if ended.is_ok() {
        Phase::Stopped
    } else {
        Phase::Failed
    };
    StartState::write(
        &rd,
        phase,
        ended.as_ref().err().map(|e| format!("{e:#}")),
        0,
        0,
    );
    ended?;
    // The run's end, as a supervisor would hold it: the page and status show it, and the
    // referee judges from it as from a live run.
    let lab = finished::lab(&plan, info, world)?;
    finished::write(&plan, &lab)?;
    let record: Option<MyRecord> = crate::util::fs::read_json(&plan.my.record);
    Ok(Outcome {
        engine: "shadow",
        my_exit: record.as_ref().and_then(MyRecord::exit),
        served: lab.vod.served(),
        my_size: lab.info.my_torrent().map_or(0, |t| t.size),
        run_id,
        referee: lab.verdict(),
    })
}

/// The plan of a run: its config, where my client's launcher finds its command and writes
/// its record, and how long it may run (the movie's last deadline and a grace).
fn make_plan(
    cfg: &Config,
    rd: &RunDir,
    run_id: &str,
    port: u16,
    swarms: &[SwarmFiles],
    info: &RunInfo,
    my_client: &[String],
) -> anyhow::Result<Plan> {
    let (args, testbed_env) = supervisor::my_invocation(cfg, info, my_client);
    // The caller's environment, as a real run's my client inherits it.
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k != "LD_PRELOAD" && !k.starts_with("TESTBED_"))
        .collect();
    env.extend(testbed_env);
    env.push((procs::RUN_ID_VAR.into(), run_id.into()));
    let size = info.my_torrent().map_or(0, |t| t.size) as f64;
    let m = &cfg.my_client;
    let movie = m.delay - m.prefetch + size / (m.rate * crate::vod::KB);
    Ok(Plan {
        config: cfg.clone(),
        run_id: run_id.to_string(),
        port,
        swarms: swarms
            .iter()
            .map(|s| {
                Ok((
                    std::path::absolute(&s.torrent_path)?,
                    std::path::absolute(&s.fresh)?,
                ))
            })
            .collect::<std::io::Result<_>>()?,
        my: MyPlan {
            program: crate::util::which(&my_client[0])
                .unwrap_or_else(|| PathBuf::from(&my_client[0])),
            args,
            env,
            log: std::path::absolute(rd.logs().join("my-client.log"))?,
            record: std::path::absolute(rd.shadow().join("my-client.json"))?,
            run_for: (movie + GRACE).ceil(),
        },
    })
}

/// Runs Shadow on `config` in `dir` until it ends, the simulation stalls or runs slower than
/// real time, or a signal comes (Ctrl-C, `testbed stop`). Its log is `dir/shadow.log`.
fn simulate(
    shadow: &Path,
    dir: &Path,
    config: &Path,
    run_id: &str,
    simulated: f64,
) -> anyhow::Result<()> {
    let log_path = dir.join("shadow.log");
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = std::process::Command::new(shadow);
    cmd.arg("--parallelism")
        .arg(parallelism().to_string())
        .arg("--progress")
        .arg("false")
        .arg(config)
        .current_dir(dir)
        .env(procs::RUN_ID_VAR, run_id)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    crate::sys::spawn::die_with_parent(&mut cmd);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", shadow.display()))?;
    let pid = child.id() as i32;
    let began = Instant::now();
    let limit = began + Duration::from_secs_f64(simulated) + Duration::from_secs(60);
    let stop = crate::util::signal::StopFlag::install()?;
    let mut clock = Clock::default();
    let stall = stall_limit();
    let why = loop {
        if let Some(status) = child.try_wait()? {
            break match status.success() {
                true => None,
                false => Some(format!(
                    "Shadow ended with {status}: {}",
                    last_errors(&log_path)
                )),
            };
        }
        if let Some(s) = stop.get() {
            break Some(format!("{s}: the simulation was stopped"));
        }
        let at = clock.read(&log_path);
        if clock.still_for() > stall {
            break Some(format!(
                "the simulation stalled at {at:.0} s of simulated time: its clock has not moved \
                 for {} s of wall time (a process that loops without waiting, such as a busy \
                 loop, never lets simulated time pass; see docs/shadow.md)",
                stall.as_secs_f64()
            ));
        }
        if Instant::now() > limit {
            break Some(format!(
                "the simulation ran slower than real time ({at:.0} of {simulated:.0} simulated \
                 seconds in {:.0} s) and was ended",
                began.elapsed().as_secs_f64()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if why.is_some() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
    }
    // Shadow's processes die with it; sweep whatever did not.
    let left = procs::end_all(
        run_id,
        None,
        None,
        Duration::from_millis(500),
        Instant::now() + Duration::from_secs(3),
    );
    if !left.is_empty() {
        eprintln!("testbed: processes {left:?} survived the simulation");
    }
    match why {
        None => Ok(()),
        Some(w) => anyhow::bail!("{w}; Shadow's log: {}", log_path.display()),
    }
}

/// Shadow's threads: `$TESTBED_SHADOW_THREADS`, else this machine's cores (at most 4).
fn parallelism() -> usize {
    std::env::var("TESTBED_SHADOW_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(4)
        })
}

/// The simulation's clock as Shadow's log tells it (its heartbeat lines name the simulated
/// time), and since when it has not moved.
#[derive(Default)]
struct Clock {
    /// Bytes of the log read.
    read: u64,
    /// Simulated seconds.
    at: f64,
    moved: Option<Instant>,
}

impl Clock {
    /// Reads what the log added; returns the simulated time.
    fn read(&mut self, log: &Path) -> f64 {
        use std::io::{Read, Seek};
        let moved = self.moved.get_or_insert_with(Instant::now);
        let Ok(mut f) = std::fs::File::open(log) else {
            return self.at;
        };
        let mut text = String::new();
        if f.seek(std::io::SeekFrom::Start(self.read)).is_ok()
            && f.read_to_string(&mut text).is_ok()
        {
            // Only whole lines.
            let whole = text.rfind('\n').map_or(0, |i| i + 1);
            self.read += whole as u64;
            for line in text[..whole].lines() {
                if let Some(ns) = line
                    .split("at simtime ")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    let at = ns as f64 / 1e9;
                    if at > self.at {
                        self.at = at;
                        *moved = Instant::now();
                    }
                }
            }
        }
        self.at
    }

    fn still_for(&self) -> Duration {
        self.moved.map_or(Duration::ZERO, |m| m.elapsed())
    }
}

/// The first error of Shadow's log, with its causes, on one line.
fn last_errors(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("[ERROR]"))
        .map(|l| l.split("] ").last().unwrap_or(l).trim())
        .take_while(|m| *m != "Stack backtrace:")
        .filter(|m| !m.is_empty() && *m != "Caused by:")
        .take(4)
        .collect();
    match errors.is_empty() {
        true => "no error in its log".into(),
        false => errors.join(": "),
    }
}
