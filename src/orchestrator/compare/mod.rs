//! `testbed compare`: is policy (or client) A better than B? Every entrant (a built-in policy
//! of `vod-client`, or any my-client command line) runs on every seed of the world, `repeat`
//! times, paired (the same seeds give the same worlds) and interleaved (the order of the
//! entrants turns from one seed to the next, so that the machine's drift spreads over all of
//! them), one experiment at a time (`--jobs N`: N together, each in its own run folder,
//! tracker port and network namespace; the tables then say so, since experiments that share
//! the CPU are noisier). Each run is a `testbed run` of its own; its row goes to
//! `OUT/runs.csv` as it ends, so the same command again skips what is done, and Ctrl-C (or
//! SIGTERM) loses at most the runs under way: they are told to stop, and each `testbed run`
//! ends its world itself before `compare` exits.
//!
//! Then, in `OUT`: `compare.md` (per entrant: mean, median, sd and a 95 % bootstrap interval of
//! the penalty's share of the file; per pair: the paired difference with its interval, a
//! verdict only where the interval excludes 0, and how many pairs would settle that
//! difference nine times in ten, so that a user can tell a close call from a level one and
//! plan the next compare), `summary.json`, and `compare.svg` (each run a dot, each interval a
//! bar).
//!
//! The parts: [`runs`] (the `runs.csv` format), [`exec`] (the runs, here), [`lock`] (one
//! compare a folder), [`pool`] (`--from`), [`verdict`] (the statistics) and [`report`]
//! (compare.md, summary.json, compare.svg).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::policy::Policy;
use crate::util::fs::write_durable;

mod exec;
mod lock;
mod pool;
mod report;
mod runs;
#[cfg(test)]
mod tests;
mod verdict;

use exec::run_here;
pub(in crate::orchestrator) use exec::{one_run, record, Live, Placement, Progress};
use lock::hold_folder;
pub use pool::pool;
use report::write_outputs;
pub use runs::Run;
use runs::{drop_cut_row, scan_runs, Rows, HEADER};
pub(in crate::orchestrator) use runs::{has_run, parse_run, RunsFile};

/// One contestant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Entrant {
    /// `vod-client --policy P`.
    Policy(Policy),
    /// A my-client command line, run by `sh -c` (placeholders and `TESTBED_*` as in `start`).
    Client(Line),
    /// The same, with the VoD server in my client's torrent as a BEP 19 web seed
    /// (`my_client.web_seed: true`): for a client that fetches from web seeds on its own.
    #[serde(rename = "web-seed-client")]
    WebSeedClient(Line),
}

/// A my-client command line, and the short name the user gave it (`--name`), if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "LineForm")]
pub struct Line {
    pub cmd: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A line as a Slurm plan holds it: a plain string in plans written before `--name`, which an
/// array still queued across a rebuild reads with the new `testbed`.
#[derive(Deserialize)]
#[serde(untagged)]
enum LineForm {
    Cmd(String),
    Named { cmd: String, name: Option<String> },
}

impl From<LineForm> for Line {
    fn from(f: LineForm) -> Line {
        match f {
            LineForm::Cmd(cmd) => Line { cmd, name: None },
            LineForm::Named { cmd, name } => Line { cmd, name },
        }
    }
}

/// An unnamed line, for the tests' entrants.
#[cfg(test)]
impl From<&str> for Line {
    fn from(cmd: &str) -> Line {
        Line {
            cmd: cmd.into(),
            name: None,
        }
    }
}

impl Entrant {
    /// Its name in the tables, and the key `runs.csv` resumes by: a policy's name, the name
    /// given with `--name`, or else the command line itself.
    pub fn name(&self) -> String {
        match self {
            Entrant::Policy(p) => p.to_string(),
            Entrant::Client(l) => l.name.clone().unwrap_or_else(|| l.cmd.clone()),
            Entrant::WebSeedClient(l) => l
                .name
                .clone()
                .unwrap_or_else(|| format!("{} [web seed]", l.cmd)),
        }
    }

    /// A client entrant's command line, and whether it runs with the web seed.
    fn line(&self) -> Option<(&Line, bool)> {
        match self {
            Entrant::Client(l) => Some((l, false)),
            Entrant::WebSeedClient(l) => Some((l, true)),
            Entrant::Policy(_) => None,
        }
    }
}

/// The entrants of the command line: the policies, the `--client` lines, then the
/// `--web-seed-client` lines, the lines named by `names` in that order (hyperfine's
/// `--command-name`). One line if there are more names than lines, or a name is empty or
/// taken twice (two entrants of one name would share their rows in `runs.csv`).
pub fn entrants(
    policies: Vec<Policy>,
    clients: Vec<String>,
    web_seed_clients: Vec<String>,
    names: Vec<String>,
) -> anyhow::Result<Vec<Entrant>> {
    let lines = clients.len() + web_seed_clients.len();
    if names.len() > lines {
        anyhow::bail!(
            "--name: {} names for {lines} --client/--web-seed-client entrants; each --name names one of them, in order",
            names.len()
        );
    }
    let mut names = names.into_iter();
    let mut line = |cmd: String| Line {
        cmd,
        name: names.next(),
    };
    let mut out: Vec<Entrant> = policies.into_iter().map(Entrant::Policy).collect();
    out.extend(clients.into_iter().map(|c| Entrant::Client(line(c))));
    out.extend(
        web_seed_clients
            .into_iter()
            .map(|c| Entrant::WebSeedClient(line(c))),
    );
    let mut seen = std::collections::BTreeSet::new();
    for e in &out {
        let name = e.name();
        if name.trim().is_empty() {
            anyhow::bail!("an entrant's name is empty (an empty --client line, or --name '')");
        }
        if name.contains(['\n', '\r']) {
            anyhow::bail!(
                "{name:?}: an entrant's name has a line break, and runs.csv keeps a run a line; give it a --name"
            );
        }
        if e.line().is_some() && <Policy as clap::ValueEnum>::from_str(&name, false).is_ok() {
            anyhow::bail!(
                "{name:?}: a client entrant named like a built-in policy would be read back as that policy (--from, the tables); give it another --name"
            );
        }
        if !seen.insert(name.clone()) {
            anyhow::bail!(
                "two entrants are named {name:?}: their runs would share one key in runs.csv; leave one out or --name them apart"
            );
        }
    }
    Ok(out)
}

/// What to compare.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The scenario; `--run-dir` and `--port`, if given, are the runs' (with `--jobs`, run
    /// folders `DIR-K` and any free port).
    pub config: super::config::Source,
    pub seeds: std::ops::RangeInclusive<u64>,
    pub repeat: u32,
    pub entrants: Vec<Entrant>,
    pub out: PathBuf,
    /// Experiments run together (1: one at a time).
    pub jobs: usize,
    /// Run as one Slurm job array instead of here.
    pub slurm: Option<super::slurm::Slurm>,
    /// (`--from`) The finished compares whose runs these are, with how many each gave: a
    /// pooled comparison runs nothing.
    pub pooled_from: Vec<(PathBuf, usize)>,
    /// The SHA-1 of the config's bytes, written to summary.json so that `--from` pools only
    /// runs of one scenario (by content: the same path may have been edited between two
    /// compares). `None`: unknown.
    pub config_sha1: Option<String>,
}

/// The SHA-1 (hex) of a file's bytes; `None` if it cannot be read.
pub fn file_sha1(path: &Path) -> Option<String> {
    use sha1::Digest;
    let bytes = std::fs::read(path).ok()?;
    Some(crate::util::hex(&sha1::Sha1::digest(&bytes)))
}

/// The order of the runs: seed by seed, repeat by repeat, the entrants turned by one each time.
pub fn schedule(c: &Comparison) -> Vec<(Entrant, u64, u32)> {
    let mut out = Vec::new();
    let n = c.entrants.len().max(1);
    let mut turn = 0;
    for seed in c.seeds.clone() {
        for r in 0..c.repeat {
            for k in 0..c.entrants.len() {
                out.push((c.entrants[(k + turn) % n].clone(), seed, r));
            }
            turn += 1;
        }
    }
    out
}

/// Run what is not in `OUT/runs.csv` yet, then write the verdicts.
pub fn compare(c: &Comparison) -> anyhow::Result<()> {
    if c.entrants.len() < 2 {
        anyhow::bail!("compare needs at least two entrants (--policy P, --client 'CMD' or --web-seed-client 'CMD')");
    }
    let path = &c.config.path;
    let base: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?,
    )
    .with_context(|| format!("{}", path.display()))?;
    c.config.load()?;
    if c.jobs > 1 && c.config.port.is_some_and(|p| p != 0) {
        anyhow::bail!(
            "--port {}: one port cannot serve {} testbeds side by side; leave it out or give 0",
            c.config.port.unwrap_or(0),
            c.jobs
        );
    }
    std::fs::create_dir_all(&c.out).with_context(|| format!("{}", c.out.display()))?;
    let _held = hold_folder(&c.out)?;
    let csv = c.out.join("runs.csv");
    let Rows { runs, cut, current } = scan_runs(&csv)?;
    let plan = schedule(c);
    let todo: Vec<_> = plan
        .iter()
        .filter(|(e, s, r)| !has_run(&runs, &e.name(), *s, *r))
        .cloned()
        .collect();
    if let Some(k) = cut {
        let kept = drop_cut_row(&csv)?;
        crate::util::outln!(
            "compare: {}: line {k} was cut short (a compare stopped while writing it) and is dropped (kept in {}); its run counts as not run",
            csv.display(),
            kept.display()
        );
    }
    // A new folder gets its header now; a file from before a column is upgraded by the first
    // row this compare appends, not now: a compare that fails before it leaves the file
    // readable by the build that wrote it.
    let new = !csv.exists();
    if new {
        write_durable(&csv, format!("{HEADER}\n").as_bytes())?;
    }
    let csv = RunsFile {
        path: csv,
        ready: (current || new).into(),
    };
    if todo.len() < plan.len() {
        crate::util::outln!(
            "compare: {} of {} runs already in {}; {}",
            plan.len() - todo.len(),
            plan.len(),
            csv.path.display(),
            match todo.len() {
                0 => "nothing left to run, only the tables to write".to_string(),
                n => format!("running the other {n}"),
            }
        );
    }
    let (runs, stopped) = match &c.slurm {
        _ if todo.is_empty() => (runs, false),
        Some(slurm) => super::slurm::run_array(c, slurm, &csv, runs, &todo)?,
        None => run_here(c, &base, &csv, runs, &todo)?,
    };
    if stopped {
        write_outputs(c, &runs)?;
        anyhow::bail!(
            "compare: stopped; {} runs kept in {} (the same command resumes)",
            runs.len(),
            csv.path.display()
        );
    }
    write_outputs(c, &runs)
}

/// `--seeds A..B` (or one number).
pub fn parse_seeds(s: &str) -> Result<std::ops::RangeInclusive<u64>, String> {
    let bad = || format!("--seeds {s}: expected A..B or one number");
    match s.split_once("..") {
        Some((a, b)) => {
            let (a, b): (u64, u64) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            if a > b {
                return Err(bad());
            }
            Ok(a..=b)
        }
        None => {
            let a: u64 = s.trim().parse().map_err(|_| bad())?;
            Ok(a..=a)
        }
    }
}
