//! Where a compare's runs execute: [`local`] (here, `--jobs` at a time) or [`slurm`] (one
//! job array). Both run the same thing, a `testbed run` per row ([`one_run`], placed by a
//! [`Slot`]), of the build that began the compare ([`Live`] stamps it and checks before
//! each run), and append its row to `runs.csv` as it ends ([`record`]).

pub mod local;
pub mod slurm;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;

use super::entrant::Entrant;
use super::plan::Comparison;
use super::runs::{Placement, Run, RunsFile};
use super::verdict::table;
use crate::util::fs::write_atomic;
use crate::util::Locked;
use crate::vod::score::Summary;

/// Appends `run` to `runs.csv` and prints the progress line.
/// `done` holds every row of the file: those it had, then those this compare appended.
pub(in crate::experiment) fn record(
    c: &Comparison,
    csv: &RunsFile,
    done: &mut Vec<Run>,
    run: Run,
    progress: Progress,
) -> anyhow::Result<()> {
    done.push(run);
    csv.append(done)?;
    let n = done.len() - progress.already;
    let eta = progress.t0.elapsed().as_secs_f64() / n as f64 * (progress.todo - n) as f64;
    let leader = table(c, done)
        .into_iter()
        .min_by(|a, b| a.mean.total_cmp(&b.mean))
        .map(|s| format!("{} at {:.1} %", s.entrant, s.mean * 100.0))
        .unwrap_or_default();
    crate::util::outln!(
        "compare: {n}/{} runs done, about {eta:.0} s to go; leader {leader}",
        progress.todo
    );
    Ok(())
}

/// What the progress line counts from.
#[derive(Clone, Copy)]
pub(in crate::experiment) struct Progress {
    /// Rows in `runs.csv` before this command.
    pub already: usize,
    /// Runs this command has to make.
    pub todo: usize,
    pub t0: Instant,
}
/// The `testbed run`s under way, told to stop when compare is.
pub(in crate::experiment) struct Live {
    pids: Mutex<Vec<u32>>,
    stop: std::sync::atomic::AtomicBool,
    /// This program, and what its file was when the compare began: every run uses that build.
    pub(in crate::experiment) exe: (PathBuf, Stamp),
    /// `vod-client` beside it (the built-in policies), and its file, if it is there.
    vod_client: Option<(PathBuf, Stamp)>,
    /// Their build, as runs.csv records it ([`Run::build`]).
    pub(in crate::experiment) build: String,
}

/// A file as `ls -l --time-style=full-iso -i` tells it: a binary rebuilt in place (`cp` over
/// it keeps the inode) changes its modification time, one replaced (`cargo build` writes a new
/// file) its inode.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(in crate::experiment) struct Stamp {
    inode: u64,
    len: u64,
    modified: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            inode: m.ino(),
            len: m.len(),
            modified: (m.mtime(), m.mtime_nsec()),
        }
    }
}

impl Live {
    pub(in crate::experiment) fn new() -> anyhow::Result<Live> {
        Live::of(std::env::current_exe()?)
    }

    /// The build of the `testbed` at `path` and the `vod-client` beside it.
    pub(super) fn of(path: PathBuf) -> anyhow::Result<Live> {
        use sha1::Digest;
        let mut digest = sha1::Sha1::new();
        // Each file's stamp and bytes from one open file, so that they are of one build even
        // if the binary is replaced meanwhile.
        let mut read = |path: &Path| -> anyhow::Result<Stamp> {
            let opened = || -> std::io::Result<(Stamp, Vec<u8>)> {
                let mut f = std::fs::File::open(path)?;
                let stamp = Stamp::of(&f.metadata()?);
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut bytes)?;
                Ok((stamp, bytes))
            };
            let (stamp, bytes) =
                opened().with_context(|| format!("{}: cannot read this build", path.display()))?;
            digest.update(&bytes);
            Ok(stamp)
        };
        let stamp = read(&path)?;
        let vod = path.with_file_name("vod-client");
        let vod_client = match vod.is_file() {
            true => Some((vod.clone(), read(&vod)?)),
            false => None,
        };
        let mut build = crate::util::hex(&digest.finalize());
        build.truncate(12);
        Ok(Live {
            pids: Mutex::default(),
            stop: Default::default(),
            exe: (path, stamp),
            vod_client,
            build,
        })
    }

    /// The build that began the compare is still the one installed (`testbed`, and the
    /// `vod-client` the policies run): a compare that mixed two builds (rebuilt meanwhile)
    /// would compare neither.
    pub(in crate::experiment) fn same_build(&self) -> anyhow::Result<()> {
        for (path, stamp) in std::iter::once(&self.exe).chain(&self.vod_client) {
            match std::fs::metadata(path) {
                Ok(m) if Stamp::of(&m) == *stamp => {}
                _ => anyhow::bail!(
                    "{} was replaced (rebuilt?) since this compare began; the runs so far are \
                     kept, and the same command resumes them with the new build",
                    path.display()
                ),
            }
        }
        Ok(())
    }

    pub(in crate::experiment) fn stopping(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// No new runs; the ones under way get SIGINT (they end their worlds and exit).
    fn stop(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for &pid in self.pids.locked().iter() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGINT,
            );
        }
    }

    /// SIGINT and SIGTERM stop the compare (see [`crate::util::signal::StopFlag`]): a thread
    /// watches the flag.
    pub(in crate::experiment) fn forward_signals(
        self: Arc<Self>,
    ) -> anyhow::Result<std::thread::JoinHandle<()>> {
        let flag = crate::util::signal::StopFlag::install()?;
        Ok(std::thread::spawn(move || loop {
            if let Some(name) = flag.get() {
                eprintln!("compare: {name}: stopping the runs under way");
                self.stop();
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }))
    }
}

/// Where a run happens: its run folder (reset by each run), the config file written for it,
/// its tracker port, and what its row says about runs side by side.
pub(in crate::experiment) struct Slot {
    pub run_dir: PathBuf,
    /// `{seed}` is replaced by the run's seed.
    pub config: PathBuf,
    pub port: Option<u16>,
    pub placement: Placement,
    pub jobs: usize,
}

impl Slot {
    /// Job `slot` of a compare on this machine: `OUT/run` (or the `--run-dir`), and with
    /// `--jobs` `OUT/run-K` and any free port.
    fn here(c: &Comparison, slot: usize) -> anyhow::Result<Slot> {
        let run_base = c
            .config
            .run_dir
            .clone()
            .unwrap_or_else(|| c.out.join("run"));
        Ok(if c.jobs > 1 {
            let mut dir = run_base.into_os_string();
            dir.push(format!("-{slot}"));
            Slot {
                run_dir: std::path::absolute(PathBuf::from(dir))?,
                config: c.out.join(format!("config-seed-{{seed}}-job-{slot}.yaml")),
                port: Some(0),
                placement: Placement::Local,
                jobs: c.jobs,
            }
        } else {
            Slot {
                run_dir: std::path::absolute(run_base)?,
                config: c.out.join("config-seed-{seed}.yaml"),
                port: c.config.port,
                placement: Placement::Local,
                jobs: 1,
            }
        })
    }
}

/// One `testbed run` of `entrant` on `seed`, placed by `place`: its row, or `None` when the
/// compare was stopped meanwhile.
pub(in crate::experiment) fn one_run(
    base: &serde_yaml::Value,
    place: &Slot,
    live: &Live,
    entrant: &Entrant,
    seed: u64,
    repeat: u32,
) -> anyhow::Result<Option<Run>> {
    let path = write_config(base, place, entrant, seed)?;
    let mut cmd = std::process::Command::new(&live.exe.0);
    cmd.arg("run").arg("--config").arg(&path);
    if place.jobs > 1 && std::env::var_os("TESTBED_SHADOW_THREADS").is_none() {
        // Runs side by side share the cores: a Shadow run takes its part of them.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        cmd.env(
            "TESTBED_SHADOW_THREADS",
            (cores / place.jobs).max(1).to_string(),
        );
    }
    match entrant {
        Entrant::Policy(p) => cmd.args(["--policy", p.name()]),
        Entrant::Client(line) | Entrant::WebSeedClient(line) => cmd.args(["sh", "-c", &line.cmd]),
    };
    let t = Instant::now();
    let cpu_before = crate::sys::procs::cpu_times();
    let child = {
        // Registered under the lock that `stop` takes: a run started after the signal is told
        // at once.
        let mut pids = live.pids.locked();
        if live.stopping() {
            return Ok(None);
        }
        live.same_build()?;
        let child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("cannot start testbed run")?;
        pids.push(child.id());
        child
    };
    let pid = child.id();
    let out = child.wait_with_output();
    live.pids.locked().retain(|&p| p != pid);
    let out = out.context("testbed run")?;
    if live.stopping() {
        return Ok(None);
    }
    let seconds = t.elapsed().as_secs_f64();
    let cpu_busy = cpu_before
        .zip(crate::sys::procs::cpu_times())
        .and_then(|(b, a)| crate::sys::procs::busy_between(b, a));
    let summary: Summary = crate::util::fs::read_json(&place.run_dir.join("summary.json"))
        .with_context(|| {
            format!(
                "{} on seed {seed}: testbed run left no summary ({}): {}",
                entrant.name(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
    Ok(Some(Run {
        seconds,
        cpu_busy,
        placement: place.placement,
        jobs: place.jobs,
        build: live.build.clone(),
        ..row(entrant.name(), seed, repeat, summary)
    }))
}

/// The config of one run: `base` with its seed, its port, its run folder, and for a web-seed
/// entrant the web seed; written where `place` says, its path returned.
fn write_config(
    base: &serde_yaml::Value,
    place: &Slot,
    entrant: &Entrant,
    seed: u64,
) -> anyhow::Result<PathBuf> {
    let mut cfg = base.clone();
    cfg["seed"] = seed.into();
    let web_seed = matches!(entrant, Entrant::WebSeedClient(_));
    if web_seed {
        if !cfg["my_client"].is_mapping() {
            cfg["my_client"] = serde_yaml::Mapping::new().into();
        }
        cfg["my_client"]["web_seed"] = true.into();
    }
    if !cfg["tracker"].is_mapping() {
        cfg["tracker"] = serde_yaml::Mapping::new().into();
    }
    if let Some(p) = place.port {
        cfg["tracker"]["port"] = p.into();
    }
    let path = PathBuf::from(place.config.to_string_lossy().replace(
        "{seed}",
        &format!("{seed}{}", if web_seed { "-web-seed" } else { "" }),
    ));
    cfg["run_dir"] = place.run_dir.display().to_string().into();
    if let Some(ff) = cfg.get("fresh_files").and_then(|v| v.as_str()) {
        // Relative to where the command runs, as in the user's config.
        cfg["fresh_files"] = std::path::absolute(ff)?.display().to_string().into();
    }
    write_atomic(&path, serde_yaml::to_string(&cfg)?.as_bytes())?;
    Ok(path)
}

/// A run's row from its `summary.json` (the fields of where and by what build it ran are
/// the caller's).
fn row(entrant: String, seed: u64, repeat: u32, summary: Summary) -> Run {
    let size = summary.size.max(1) as f64;
    let referee = summary.referee.as_ref();
    Run {
        entrant,
        seed,
        repeat,
        share: summary.penalty as f64 / size,
        penalty_bytes: summary.penalty,
        penalty_source: summary.penalty_source,
        late_pieces: referee.map_or(0, |r| r.late_pieces as u64),
        startup_pieces: referee.map_or(0, |r| r.startup_pieces as u64),
        first_piece_at: referee.and_then(|r| r.first_piece_at),
        upload_peak: referee.map(|r| r.upload_peak / 1024.0),
        upload_over_cap: referee.is_some_and(|r| r.upload_over_cap),
        world_share: referee.map(|r| r.bytes_from_world as f64 / size),
        wasted_share: referee.and_then(|r| Some(r.wasted_bytes? as f64 / size)),
        my_client_exit: summary.my_client_exit.unwrap_or_else(|| "none".into()),
        seconds: 0.0,
        placement: Placement::Local,
        jobs: 1,
        build: String::new(),
        engine: summary.engine.clone(),
        cpu_busy: None,
    }
}
