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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::policy::Policy;
use crate::util::fs::{write_atomic, write_durable};
use crate::util::html::esc;
use crate::util::stats;
use crate::util::Locked;

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

/// One row of `runs.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub entrant: String,
    pub seed: u64,
    pub repeat: u32,
    /// The penalty over the file's size.
    pub share: f64,
    pub penalty_bytes: u64,
    /// `server` or `referee`.
    pub penalty_source: String,
    /// The referee's late pieces.
    pub late_pieces: u64,
    pub my_client_exit: String,
    pub seconds: f64,
    /// Pieces the world completed for my client in its first 10 s (the start-up).
    pub startup_pieces: u64,
    /// Experiments the compare ran together (`--jobs`) when this one ran; 0: a Slurm array
    /// task (the scheduler decided what shared its node).
    pub jobs: usize,
    /// The referee's "first byte played": seconds until piece 0 was playable (`None`: never,
    /// or a row from before the column).
    pub first_piece_at: Option<f64>,
    /// The referee's measure of my client's upload over its busiest
    /// [`crate::vod::referee::UPLOAD_WINDOW`] seconds, KB/s, and whether that broke its cap
    /// (`None`: a row from before the column).
    pub upload_peak: Option<f64>,
    pub upload_over_cap: bool,
    /// The referee's bytes the world sent my client, and the bytes of those that saved no
    /// server byte (sent twice, or sent by the server too), each over the file's size: what
    /// the world sent, and what my client's requests wasted of it. For a client that
    /// completes the file from the world and the server, share = 1 − world + wasted.
    /// `None`: a row from before the columns.
    pub world_share: Option<f64>,
    pub wasted_share: Option<f64>,
    /// The build that ran it: the first 12 hex digits of the SHA-1 of the `testbed` binary
    /// followed by the `vod-client` beside it (empty: a row from before the column). Pooled
    /// runs of two builds are two worlds.
    pub build: String,
}

const HEADER: &str = "entrant,seed,repeat,share,penalty_bytes,penalty_source,late_pieces,my_client_exit,seconds,startup_pieces,jobs,first_piece_at,upload_peak_kbps,upload_over_cap,world_share,wasted_share,build";

impl Run {
    pub(super) fn csv(&self) -> String {
        format!(
            "{},{},{},{:.6},{},{},{},{},{:.1},{},{},{},{},{},{},{},{}\n",
            csv_field(&self.entrant),
            self.seed,
            self.repeat,
            self.share,
            self.penalty_bytes,
            self.penalty_source,
            self.late_pieces,
            csv_field(&self.my_client_exit),
            self.seconds,
            self.startup_pieces,
            self.jobs,
            self.first_piece_at
                .map_or(String::new(), |t| format!("{t:.2}")),
            self.upload_peak
                .map_or(String::new(), |r| format!("{r:.1}")),
            self.upload_over_cap as u8,
            self.world_share
                .map_or(String::new(), |x| format!("{x:.6}")),
            self.wasted_share
                .map_or(String::new(), |x| format!("{x:.6}")),
            csv_field(&self.build),
        )
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Split one CSV line (quotes as [`csv_field`] writes them).
fn csv_split(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut chars) =
        (Vec::new(), String::new(), false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// The rows of a `runs.csv` (none when it is missing; an error when it is there but cannot
/// be read, so that a compare never takes an unreadable file for no runs, or when its last
/// row was cut short, so that a pool never counts a run that was not written whole).
pub fn read_runs(path: &Path) -> anyhow::Result<Vec<Run>> {
    let rows = scan_runs(path)?;
    if let Some(k) = rows.cut {
        anyhow::bail!(
            "{}: line {k}: a row cut short (its compare stopped while writing it); the same \
             compare command again drops it, and runs that run again",
            path.display()
        );
    }
    Ok(rows.runs)
}

/// What a `runs.csv` holds.
pub(super) struct Rows {
    pub runs: Vec<Run>,
    /// The line of a last row cut short: its compare stopped while appending it.
    pub cut: Option<usize>,
    /// Today's header and rows, each ending its line: a compare may append to it as it is.
    pub current: bool,
}

/// Reads a `runs.csv`. Under today's header every row has every column and a build, so a row
/// cut at a comma is told from a row of an older build; the last row, if it is cut short and
/// has no end of line, is reported rather than refused (runs are appended one by one, and a
/// compare stopped mid-write leaves just that).
pub(super) fn scan_runs(path: &Path) -> anyhow::Result<Rows> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Rows {
                runs: Vec::new(),
                cut: None,
                current: false,
            })
        }
        Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
    };
    let lines: Vec<&str> = text.lines().collect();
    let today = lines.first() == Some(&HEADER);
    let columns = HEADER.split(',').count();
    let mut runs = Vec::new();
    let mut cut = None;
    for (k, line) in lines.iter().enumerate().skip(1) {
        let f = csv_split(line);
        let unended = k + 1 == lines.len() && !text.ends_with('\n');
        // A row of a pool may have no build (a pooled row from before the column), but only
        // a row with its end of line is known to end there.
        // Under an older header a row cut at a comma may still parse (ten to fourteen
        // fields): there only a row with its end of line is whole.
        let whole = match today {
            true => {
                f.len() == columns
                    && (is_build(&f[columns - 1]) || (f[columns - 1].is_empty() && !unended))
            }
            false => !unended,
        };
        match parse_fields(&f).filter(|_| whole) {
            Some(run) => runs.push(run),
            None if unended => cut = Some(k + 1),
            None => {
                let why = if f.len() > columns {
                    format!(
                        " ({} fields: written by a newer testbed? this one reads 10 to {columns})",
                        f.len()
                    )
                } else if today {
                    format!(" (under a header of {columns} columns, every row has {columns} fields, the last its build)")
                } else {
                    String::new()
                };
                anyhow::bail!("{}: line {}: not a run row{why}", path.display(), k + 1)
            }
        }
    }
    let current = today && text.ends_with('\n') && cut.is_none();
    Ok(Rows { runs, cut, current })
}

/// Drops the last line of `path`, cut short by a compare stopped while writing it (see
/// [`scan_runs`]): the file then ends at the end of its last whole line. The line is kept,
/// with its end of line, at the end of `path` + `.cut` ([`CUT`]): under an older header a whole
/// row whose end of line an editor took away cannot be told from a cut one, and nothing a
/// user wrote is thrown away.
fn drop_cut_row(path: &Path) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |k| k + 1);
    let kept = path.with_file_name(CUT);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&kept)
        .and_then(|mut f| f.write_all(&[&bytes[keep..], b"\n"].concat()))
        .with_context(|| format!("{}", kept.display()))?;
    write_durable(path, &bytes[..keep])?;
    Ok(kept)
}

/// Where [`drop_cut_row`] keeps the lines it drops, beside runs.csv.
const CUT: &str = "runs.csv.cut";

/// The `runs.csv` a compare appends its rows to.
pub(super) struct RunsFile {
    pub path: PathBuf,
    /// Whether rows can be appended to it as it is (today's header, every line ended);
    /// else the first row rewrites it, the rows it had under today's header, then that row.
    ready: std::sync::atomic::AtomicBool,
}

/// A build as [`Live`] records it: twelve lowercase hex digits.
fn is_build(b: &str) -> bool {
    b.len() == 12
        && b.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// One row of `runs.csv`; ten fields is a row from before `--jobs` (one at a time), eleven
/// one from before `first_piece_at`, twelve one from before the upload columns, fourteen one
/// from before the build, fifteen one from before the world's and the wasted shares.
pub(super) fn parse_run(line: &str) -> Option<Run> {
    parse_fields(&csv_split(line))
}

fn parse_fields(f: &[String]) -> Option<Run> {
    if !matches!(f.len(), 10..=12 | 14 | 15 | 17) {
        return None;
    }
    // The build is the last field from fifteen on; the two shares come before it.
    let share = |k: usize| -> Option<Option<f64>> {
        match (f.len() == 17).then(|| f[k].trim()) {
            None | Some("") => Some(None),
            Some(t) => Some(Some(t.parse().ok()?)),
        }
    };
    Some(Run {
        entrant: f[0].clone(),
        seed: f[1].parse().ok()?,
        repeat: f[2].parse().ok()?,
        share: f[3].parse().ok()?,
        penalty_bytes: f[4].parse().ok()?,
        penalty_source: f[5].clone(),
        late_pieces: f[6].parse().ok()?,
        my_client_exit: f[7].clone(),
        seconds: f[8].parse().ok()?,
        startup_pieces: f[9].parse().ok()?,
        jobs: f.get(10).map_or(Some(1), |j| j.parse().ok())?,
        first_piece_at: match f.get(11).map(|t| t.trim()) {
            None | Some("") => None,
            Some(t) => Some(t.parse().ok()?),
        },
        upload_peak: match f.get(12).map(|t| t.trim()) {
            None | Some("") => None,
            Some(t) => Some(t.parse().ok()?),
        },
        upload_over_cap: f.get(13).is_some_and(|t| t.trim() == "1"),
        world_share: share(14)?,
        wasted_share: share(15)?,
        build: match f.len() {
            15 | 17 => f[f.len() - 1].trim().to_string(),
            _ => String::new(),
        },
    })
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

/// Holds `dir` for this compare until the guard drops: an advisory lock on `dir/.lock`, which
/// the kernel lets go of however the process ends. A second compare with the same `--out`
/// would run the same runs again, and could lose rows when it rewrites runs.csv. An ordinary
/// file, not the folder itself: over NFS (a Slurm cluster's shared folders) `flock` becomes a
/// lock on a byte range, which the server keeps for every node, and that needs a file opened
/// for writing.
///
/// The folder itself is locked too where the file system allows it: the builds of 3dd77e1 to
/// 002597a locked only the folder, and one of them may still be running a compare in it when
/// a user rebuilds and resumes (the flow the README gives). A lock a pool's check holds for an
/// instant ([`folder_in_use`]) is waited out, for at most [`LOCK_WAIT`].
struct Held {
    _file: nix::fcntl::Flock<std::fs::File>,
    _folder: Option<nix::fcntl::Flock<std::fs::File>>,
}

fn hold_folder(dir: &Path) -> anyhow::Result<Held> {
    let path = dir.join(LOCK);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("{}", path.display()))?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let file = exclusive(f, deadline)
        .map_err(|e| anyhow::anyhow!("{}: cannot lock it: {e}", path.display()))?
        .ok_or_else(|| in_use(dir))?;
    // Where a folder cannot be locked (NFS) no older build could have locked it either.
    let folder = match std::fs::File::open(dir).map(|f| exclusive(f, deadline)) {
        Ok(Ok(None)) => return Err(in_use(dir)),
        Ok(Ok(held)) => held,
        _ => None,
    };
    Ok(Held {
        _file: file,
        _folder: folder,
    })
}

/// An exclusive lock on `f`, retried until `deadline` while another holds it; `None` if it is
/// still held then.
fn exclusive(
    mut f: std::fs::File,
    deadline: std::time::Instant,
) -> nix::Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    use nix::fcntl::{Flock, FlockArg};
    loop {
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(held) => return Ok(Some(held)),
            Err((back, nix::errno::Errno::EWOULDBLOCK)) => {
                if std::time::Instant::now() >= deadline {
                    return Ok(None);
                }
                f = back;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err((_, e)) => return Err(e),
        }
    }
}

/// The file a compare locks in its `--out` ([`hold_folder`]).
const LOCK: &str = ".lock";

/// How long [`hold_folder`] waits for a lock held by another: long enough for a pool's check
/// of the folder to let go, too short to wait for a compare.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

fn in_use(dir: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: another compare is using this folder; wait for it to end, or give another --out",
        dir.display()
    )
}

/// Whether a compare holds `dir` now (see [`hold_folder`]): its lock file, or the folder
/// itself (an older build's compare).
fn folder_in_use(dir: &Path) -> bool {
    use nix::fcntl::{Flock, FlockArg};
    let held = |f: std::fs::File| {
        matches!(
            Flock::lock(f, FlockArg::LockSharedNonblock),
            Err((_, nix::errno::Errno::EWOULDBLOCK))
        )
    };
    std::fs::File::open(dir.join(LOCK)).is_ok_and(held) || std::fs::File::open(dir).is_ok_and(held)
}

/// `testbed compare --from DIR...`: the runs of finished compares, read together and written
/// as one comparison in `out`, running nothing. A folder's runs of a seed count as more runs
/// of that seed (its repeats are numbered after the folders before it), so a seed run in two
/// compares is one seed run twice, and the intervals resample it whole. The entrants are those
/// of `entrants`' names (a `--client` is picked by its name in the folders' tables), else every
/// entrant the folders name, in the order they first appear.
/// Folders whose compares ran different configs are refused: their runs are not of one
/// world. Runs of several builds are named in the tables (runs.csv records each run's build).
pub fn pool(from: &[PathBuf], entrants: Vec<Entrant>, out: &Path) -> anyhow::Result<()> {
    if folder_in_use(out) {
        return Err(in_use(out));
    }
    let mut runs: Vec<Run> = Vec::new();
    let mut counts = Vec::new();
    let mut commands: BTreeMap<String, (PathBuf, String)> = BTreeMap::new();
    // The first folder that named its config, with the config's path and digest.
    let mut config: Option<(PathBuf, PathBuf, Option<String>)> = None;
    // Every run seen so far, but for its repeat number: a copy of a compare, or a pooled
    // folder beside one of its own sources, holds the same runs again.
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut table_order: Vec<String> = Vec::new();
    let same = |a: &Path, b: &Path| {
        std::fs::canonicalize(a)
            .ok()
            .is_some_and(|a| std::fs::canonicalize(b).ok() == Some(a))
    };
    for (k, dir) in from.iter().enumerate() {
        if from[..k].iter().any(|d| same(d, dir)) {
            anyhow::bail!(
                "--from {}: given twice; its runs would count twice as if run again",
                dir.display()
            );
        }
        if same(dir, out) {
            anyhow::bail!(
                "--from {}: it is also --out, and the pooled runs.csv would replace its own; give another --out",
                dir.display()
            );
        }
        let csv = dir.join("runs.csv");
        if !csv.is_file() {
            anyhow::bail!(
                "--from {}: no runs.csv there (is it a compare's --out?)",
                dir.display()
            );
        }
        // A compare still running there may be writing its next row: the rows before it are
        // whole, and are pooled.
        let running = folder_in_use(dir);
        let mut mine = match running {
            true => scan_runs(&csv)?.runs,
            false => read_runs(&csv)?,
        };
        if running {
            crate::util::outln!(
                "compare: --from {}: a compare is still running there; its {} runs so far are pooled",
                dir.display(),
                mine.len()
            );
        }
        // Two runs alike in every column (to a tenth of a second) are one run seen twice;
        // one such pair could be chance, two cannot.
        let twice: Vec<(&Run, PathBuf)> = mine
            .iter()
            .filter_map(|r| {
                let key = Run {
                    repeat: 0,
                    ..r.clone()
                }
                .csv();
                seen.get(&key).map(|first| (r, first.clone()))
            })
            .collect();
        if let Some((r, first)) = twice.first().filter(|_| twice.len() >= 2.min(mine.len())) {
            anyhow::bail!(
                "--from {} and {}: both hold the same runs ({} of them, such as {} on seed {}); a copy of a compare, or a pooled folder beside its sources, would count them twice",
                first.display(),
                dir.display(),
                twice.len(),
                r.entrant,
                r.seed
            );
        }
        for r in &mine {
            seen.insert(
                Run {
                    repeat: 0,
                    ..r.clone()
                }
                .csv(),
                dir.clone(),
            );
        }
        let summary: Option<serde_json::Value> = std::fs::read_to_string(dir.join("summary.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let path = summary
            .as_ref()
            .and_then(|j| j["config"].as_str())
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        let digest = summary
            .as_ref()
            .and_then(|j| j["config_sha1"].as_str())
            .map(str::to_string);
        if let Some(path) = path {
            match &config {
                None => config = Some((dir.clone(), path, digest)),
                Some((first, p, d)) => {
                    let differ = match (d, &digest) {
                        (Some(a), Some(b)) => a != b,
                        _ => *p != path && !same_text(p, &path),
                    };
                    if differ {
                        anyhow::bail!(
                            "--from {} and {}: their compares ran different configs ({} and {}{}); pool the runs of one scenario",
                            first.display(),
                            dir.display(),
                            p.display(),
                            path.display(),
                            if p == &path { ", edited in between" } else { "" }
                        );
                    }
                }
            }
        }
        if let Some(table) = summary.as_ref().and_then(|j| j["entrants"].as_array()) {
            table_order.extend(
                table
                    .iter()
                    .filter_map(|e| e["entrant"].as_str().map(str::to_string)),
            );
        }
        if let Some(sources) = summary.as_ref().and_then(|j| j["pooled_from"].as_array()) {
            for source in sources.iter().filter_map(|s| s["out"].as_str()) {
                if let Some(other) = from.iter().find(|d| same(d, Path::new(source))) {
                    anyhow::bail!(
                        "--from {} and {}: the first is pooled from the second already, whose runs would count twice",
                        dir.display(),
                        other.display()
                    );
                }
            }
        }
        if let Some(cmds) = summary.as_ref().and_then(|j| j["commands"].as_object()) {
            for (name, cmd) in cmds {
                let Some(cmd) = cmd.as_str() else { continue };
                match commands.get(name) {
                    None => {
                        commands.insert(name.clone(), (dir.clone(), cmd.to_string()));
                    }
                    Some((first, c)) if c != cmd => anyhow::bail!(
                        "--from {} and {}: the entrant {name:?} ran {c:?} in one and {cmd:?} in the other; pool one command line under one name",
                        first.display(),
                        dir.display()
                    ),
                    Some(_) => {}
                }
            }
        }
        let offset = runs.iter().map(|r| r.repeat + 1).max().unwrap_or(0);
        for r in &mut mine {
            r.repeat += offset;
        }
        counts.push((dir.clone(), mine.len()));
        runs.extend(mine);
    }
    // The entrants by the names the folders' tables give them: a policy, or a client line
    // with the command the folders recorded for it.
    let mut names: Vec<String> = entrants.iter().map(Entrant::name).collect();
    if names.is_empty() {
        // In the order the folders' tables gave them (runs.csv is in the order runs ended),
        // then any entrant only runs.csv names.
        for name in &table_order {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        for r in &runs {
            if !names.contains(&r.entrant) {
                names.push(r.entrant.clone());
            }
        }
    }
    let entrants: Vec<Entrant> = names
        .into_iter()
        .map(
            |name| match <Policy as clap::ValueEnum>::from_str(&name, false) {
                Ok(p) => Entrant::Policy(p),
                Err(_) => Entrant::Client(match commands.get(&name).map(|(_, c)| c) {
                    Some(cmd) if *cmd != name => Line {
                        cmd: cmd.clone(),
                        name: Some(name),
                    },
                    _ => Line {
                        cmd: name,
                        name: None,
                    },
                }),
            },
        )
        .collect();
    let names: BTreeSet<String> = entrants.iter().map(Entrant::name).collect();
    runs.retain(|r| names.contains(&r.entrant));
    if entrants.len() < 2 {
        anyhow::bail!(
            "--from: the folders name {} entrant(s); a comparison needs two",
            entrants.len()
        );
    }
    for e in &entrants {
        if !runs.iter().any(|r| r.entrant == e.name()) {
            anyhow::bail!("--from: no folder has a run of {:?}", e.name());
        }
    }
    let seed_range = runs.iter().map(|r| r.seed).min().unwrap_or(0)
        ..=runs.iter().map(|r| r.seed).max().unwrap_or(0);
    let mut per_seed: BTreeMap<(&str, u64), u32> = BTreeMap::new();
    for r in &runs {
        *per_seed.entry((r.entrant.as_str(), r.seed)).or_default() += 1;
    }
    let repeat = per_seed.values().copied().max().unwrap_or(1);
    refuse_to_replace_a_compare(out)?;
    std::fs::create_dir_all(out).with_context(|| format!("{}", out.display()))?;
    let _held = hold_folder(out)?;
    let text: String = std::iter::once(format!("{HEADER}\n"))
        .chain(runs.iter().map(Run::csv))
        .collect();
    write_durable(&out.join("runs.csv"), text.as_bytes())?;
    let c = Comparison {
        config: super::config::Source::file(
            config
                .as_ref()
                .map(|(_, p, _)| p.clone())
                .unwrap_or_default(),
        ),
        seeds: seed_range,
        repeat,
        entrants,
        out: out.to_path_buf(),
        jobs: 1,
        slurm: None,
        pooled_from: counts,
        config_sha1: config.and_then(|(_, _, d)| d),
    };
    write_outputs(&c, &runs)
}

/// Refuse an `--out` that holds a compare's own runs (a pooled folder's tables can be made
/// again from its sources, a compare's runs cannot): the default `run/compare` is often one.
fn refuse_to_replace_a_compare(out: &Path) -> anyhow::Result<()> {
    if !out.join("runs.csv").exists() {
        return Ok(());
    }
    let pooled = std::fs::read_to_string(out.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|j| j["pooled_from"].as_array().map(|a| !a.is_empty()))
        .unwrap_or(false);
    if !pooled {
        anyhow::bail!(
            "--out {}: it holds a compare's own runs.csv, which pooling would replace; give --from another --out",
            out.display()
        );
    }
    Ok(())
}

/// Whether two files hold the same bytes (two copies of one config).
fn same_text(a: &Path, b: &Path) -> bool {
    matches!((std::fs::read(a), std::fs::read(b)), (Ok(x), Ok(y)) if x == y)
}

/// Whether `runs` has the row of `entrant` on `seed`, repeat `repeat`.
pub(super) fn has_run(runs: &[Run], entrant: &str, seed: u64, repeat: u32) -> bool {
    runs.iter()
        .any(|x| x.entrant == entrant && x.seed == seed && x.repeat == repeat)
}

/// Appends `run` to `runs.csv` and prints the progress line.
/// `done` holds every row of the file: those it had, then those this compare appended.
pub(super) fn record(
    c: &Comparison,
    csv: &RunsFile,
    done: &mut Vec<Run>,
    run: Run,
    progress: Progress,
) -> anyhow::Result<()> {
    use std::sync::atomic::Ordering::SeqCst;
    let path = &csv.path;
    done.push(run);
    if csv.ready.load(SeqCst) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("{}", path.display()))?;
        std::io::Write::write_all(&mut f, done[done.len() - 1].csv().as_bytes())
            .with_context(|| format!("{}", path.display()))?;
    } else {
        let text: String = std::iter::once(format!("{HEADER}\n"))
            .chain(done.iter().map(Run::csv))
            .collect();
        write_durable(path, text.as_bytes())?;
        csv.ready.store(true, SeqCst);
    }
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
pub(super) struct Progress {
    /// Rows in `runs.csv` before this command.
    pub already: usize,
    /// Runs this command has to make.
    pub todo: usize,
    pub t0: Instant,
}

/// The runs on this machine, `c.jobs` at a time: every row made, and whether the compare was
/// stopped (a signal) before the end.
fn run_here(
    c: &Comparison,
    base: &serde_yaml::Value,
    csv: &RunsFile,
    runs: Vec<Run>,
    todo: &[(Entrant, u64, u32)],
) -> anyhow::Result<(Vec<Run>, bool)> {
    let jobs = c.jobs.clamp(1, todo.len().max(1));
    let queue = Mutex::new(todo.iter().cloned().collect::<VecDeque<_>>());
    let progress = Progress {
        already: runs.len(),
        todo: todo.len(),
        t0: Instant::now(),
    };
    let done = Mutex::new(runs);
    let live = Arc::new(Live::new()?);
    let _signals = live.clone().forward_signals()?;
    let outcome: anyhow::Result<()> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|slot| {
                let (queue, done, live) = (&queue, &done, &*live);
                scope.spawn(move || {
                    let r = (|| -> anyhow::Result<()> {
                        let place = Placement::here(c, slot)?;
                        while !live.stopping() {
                            let Some((entrant, seed, repeat)) = queue.locked().pop_front() else {
                                break;
                            };
                            let Some(run) = one_run(base, &place, live, &entrant, seed, repeat)?
                            else {
                                break;
                            };
                            record(c, csv, &mut done.locked(), run, progress)?;
                        }
                        Ok(())
                    })();
                    if r.is_err() {
                        // The other runs stop at once: a compare with a broken run is not trusted.
                        live.stop();
                    }
                    r
                })
            })
            .collect();
        let mut first_error = Ok(());
        for w in workers {
            let r = w
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a compare worker panicked")));
            if let Err(e) = r {
                live.stop();
                if first_error.is_ok() {
                    first_error = Err(e);
                }
            }
        }
        first_error
    });
    let runs = done.into_inner().unwrap_or_else(|p| p.into_inner());
    outcome?;
    Ok((runs, live.stopping()))
}

/// The `testbed run`s under way, told to stop when compare is.
pub(super) struct Live {
    pids: Mutex<Vec<u32>>,
    stop: std::sync::atomic::AtomicBool,
    /// This program, and what its file was when the compare began: every run uses that build.
    pub(super) exe: (PathBuf, Stamp),
    /// `vod-client` beside it (the built-in policies), and its file, if it is there.
    vod_client: Option<(PathBuf, Stamp)>,
    /// Their build, as runs.csv records it ([`Run::build`]).
    pub(super) build: String,
}

/// A file as `ls -l --time-style=full-iso -i` tells it: a binary rebuilt in place (`cp` over
/// it keeps the inode) changes its modification time, one replaced (`cargo build` writes a new
/// file) its inode.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Stamp {
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
    pub(super) fn new() -> anyhow::Result<Live> {
        Live::of(std::env::current_exe()?)
    }

    /// The build of the `testbed` at `path` and the `vod-client` beside it.
    fn of(path: PathBuf) -> anyhow::Result<Live> {
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
    pub(super) fn same_build(&self) -> anyhow::Result<()> {
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

    pub(super) fn stopping(&self) -> bool {
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

    /// SIGINT and SIGTERM stop the compare. A handler only raises a flag (all a handler may
    /// safely do); a thread watches it. Not a blocked mask and `sigwait`: a mask is inherited by
    /// the runs, which then could not be stopped; a handler is reset by `exec`.
    pub(super) fn forward_signals(self: Arc<Self>) -> anyhow::Result<std::thread::JoinHandle<()>> {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
        static SIGNALLED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
        extern "C" fn raise_flag(sig: i32) {
            SIGNALLED.store(sig, std::sync::atomic::Ordering::SeqCst);
        }
        let action = SigAction::new(
            SigHandler::Handler(raise_flag),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for sig in [Signal::SIGINT, Signal::SIGTERM] {
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            unsafe { sigaction(sig, &action) }?;
        }
        Ok(std::thread::spawn(move || loop {
            let sig = SIGNALLED.load(std::sync::atomic::Ordering::SeqCst);
            if sig != 0 {
                let name = Signal::try_from(sig).map_or("a signal", |s| s.as_str());
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
pub(super) struct Placement {
    pub run_dir: PathBuf,
    /// `{seed}` is replaced by the run's seed.
    pub config: PathBuf,
    pub port: Option<u16>,
    pub jobs: usize,
}

impl Placement {
    /// Job `slot` of a compare on this machine: `OUT/run` (or the `--run-dir`), and with
    /// `--jobs` `OUT/run-K` and any free port.
    fn here(c: &Comparison, slot: usize) -> anyhow::Result<Placement> {
        let run_base = c
            .config
            .run_dir
            .clone()
            .unwrap_or_else(|| c.out.join("run"));
        Ok(if c.jobs > 1 {
            let mut dir = run_base.into_os_string();
            dir.push(format!("-{slot}"));
            Placement {
                run_dir: std::path::absolute(PathBuf::from(dir))?,
                config: c.out.join(format!("config-seed-{{seed}}-job-{slot}.yaml")),
                port: Some(0),
                jobs: c.jobs,
            }
        } else {
            Placement {
                run_dir: std::path::absolute(run_base)?,
                config: c.out.join("config-seed-{seed}.yaml"),
                port: c.config.port,
                jobs: 1,
            }
        })
    }
}

/// One `testbed run` of `entrant` on `seed`, placed by `place`: its row, or `None` when the
/// compare was stopped meanwhile.
pub(super) fn one_run(
    base: &serde_yaml::Value,
    place: &Placement,
    live: &Live,
    entrant: &Entrant,
    seed: u64,
    repeat: u32,
) -> anyhow::Result<Option<Run>> {
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
    let run_dir = &place.run_dir;
    let path = PathBuf::from(place.config.to_string_lossy().replace(
        "{seed}",
        &format!("{seed}{}", if web_seed { "-web-seed" } else { "" }),
    ));
    cfg["run_dir"] = run_dir.display().to_string().into();
    if let Some(ff) = cfg.get("fresh_files").and_then(|v| v.as_str()) {
        // Relative to where the command runs, as in the user's config.
        cfg["fresh_files"] = std::path::absolute(ff)?.display().to_string().into();
    }
    write_atomic(&path, serde_yaml::to_string(&cfg)?.as_bytes())?;
    let mut cmd = std::process::Command::new(&live.exe.0);
    cmd.arg("run").arg("--config").arg(&path);
    match entrant {
        Entrant::Policy(p) => cmd.args(["--policy", p.name()]),
        Entrant::Client(line) | Entrant::WebSeedClient(line) => cmd.args(["sh", "-c", &line.cmd]),
    };
    let t = Instant::now();
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
    let summary: crate::vod::score::Summary =
        crate::util::fs::read_json(&run_dir.join("summary.json")).with_context(|| {
            format!(
                "{} on seed {seed}: testbed run left no summary ({}): {}",
                entrant.name(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
    let size = summary.size.max(1) as f64;
    let share = summary.penalty as f64 / size;
    Ok(Some(Run {
        entrant: entrant.name(),
        seed,
        repeat,
        share,
        penalty_bytes: summary.penalty,
        penalty_source: summary.penalty_source,
        late_pieces: summary.referee.as_ref().map_or(0, |r| r.late_pieces as u64),
        startup_pieces: summary
            .referee
            .as_ref()
            .map_or(0, |r| r.startup_pieces as u64),
        first_piece_at: summary.referee.as_ref().and_then(|r| r.first_piece_at),
        upload_peak: summary.referee.as_ref().map(|r| r.upload_peak / 1024.0),
        upload_over_cap: summary.referee.as_ref().is_some_and(|r| r.upload_over_cap),
        world_share: summary
            .referee
            .as_ref()
            .map(|r| r.bytes_from_world as f64 / size),
        wasted_share: summary
            .referee
            .as_ref()
            .and_then(|r| Some(r.wasted_bytes? as f64 / size)),
        my_client_exit: summary.my_client_exit.unwrap_or_else(|| "none".into()),
        seconds,
        jobs: place.jobs,
        build: live.build.clone(),
    }))
}

/// One entrant's figures.
#[derive(Debug, Clone, Serialize)]
pub struct EntrantStats {
    pub entrant: String,
    pub runs: usize,
    pub mean: f64,
    pub median: f64,
    pub sd: f64,
    pub ci95: (f64, f64),
    /// With reruns of a seed: the sd of a seed's runs about their own mean, pooled over the
    /// seeds ([`stats::pooled_within_sd`]): what reruns of one world differ by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_seed_sd: Option<f64>,
    /// The mean of the runs' `world_share` and `wasted_share`, and the sd of the latter, over
    /// the runs that have them (`None`: none has), and with reruns of a seed its same-seed sd
    /// (as `same_seed_sd`): the part of the share a picker decides, apart from the world's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub world_share: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasted_share: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasted_sd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasted_same_seed_sd: Option<f64>,
}

/// How much of an entrant's spread its runs' starts explain: the pieces the world delivered
/// in my client's first 10 s (`startup_pieces`, the referee's count) against the share.
#[derive(Debug, Clone, Serialize)]
pub struct Startup {
    pub entrant: String,
    /// Pearson's r over the entrant's runs.
    pub correlation: f64,
    /// With reruns of a seed: r within seeds, each run's pieces and share taken from its
    /// seed's means (over the seeds with two runs or more). Across seeds, a poor world gives
    /// both fewer pieces at the start and a higher share; within a seed, r is the start's own
    /// part in what reruns differ by. `None` without reruns, or where neither varies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within_seed_correlation: Option<f64>,
    /// The median of the runs' start-up pieces, and the mean share of the runs at or below it
    /// and of those above it (`None` where no run is above it).
    pub median_pieces: f64,
    pub mean_share_at_or_below: f64,
    pub mean_share_above: Option<f64>,
}

/// [`Startup`] of `entrant`'s runs; `None` under six runs (too few to say), or where its
/// start-up pieces or its shares do not vary.
fn startup(entrant: &str, runs: &[Run]) -> Option<Startup> {
    let mine: Vec<&Run> = runs.iter().filter(|r| r.entrant == entrant).collect();
    if mine.len() < 6 {
        return None;
    }
    let pieces: Vec<f64> = mine.iter().map(|r| r.startup_pieces as f64).collect();
    let shares: Vec<f64> = mine.iter().map(|r| r.share).collect();
    let correlation = stats::correlation(&pieces, &shares)?;
    let seeded = |f: fn(&Run) -> f64| by_seed(mine.iter().map(|r| (r.seed, f(r))).collect());
    let within_seed_correlation =
        stats::within_group_correlation(&seeded(|r| r.startup_pieces as f64), &seeded(|r| r.share));
    let median_pieces = stats::median(&pieces);
    let side = |low: bool| -> Vec<f64> {
        pieces
            .iter()
            .zip(&shares)
            .filter(|&(&p, _)| (p <= median_pieces) == low)
            .map(|(_, &s)| s)
            .collect()
    };
    let (low, high) = (side(true), side(false));
    Some(Startup {
        entrant: entrant.to_string(),
        correlation,
        within_seed_correlation,
        median_pieces,
        mean_share_at_or_below: stats::mean(&low),
        mean_share_above: (!high.is_empty()).then(|| stats::mean(&high)),
    })
}

/// One pair's paired difference (`a` − `b`, over the runs both made).
#[derive(Debug, Clone, Serialize)]
pub struct PairStats {
    pub a: String,
    pub b: String,
    pub pairs: usize,
    pub mean_difference: f64,
    pub ci95: (f64, f64),
    /// Which is better (lower penalty), or "not settled" when the interval holds 0.
    pub verdict: String,
    /// The sd of the paired differences.
    pub sd_difference: f64,
    /// Pairs a compare would need to settle this pair nine times in ten, if the difference
    /// and its spread are what these pairs show (`stats::pairs_for_90pct_power`): more than
    /// `pairs`, and the same compare run again may well give another verdict.
    pub pairs_for_90pct_power: Option<usize>,
    /// Where every seed of the pair has the same number of runs k > 1 (`--repeat k`): that
    /// k, and the seeds a compare at `--repeat k` would need for the same power, from the
    /// seeds' mean differences (whose spread is what repeats shrink).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs_per_seed: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seeds_for_90pct_power: Option<usize>,
}

const RESAMPLES: usize = 10_000;

fn table(c: &Comparison, runs: &[Run]) -> Vec<EntrantStats> {
    c.entrants
        .iter()
        .map(|e| {
            // The entrant's runs that have `f`, as (seed, value).
            let of = |f: fn(&Run) -> Option<f64>| -> Vec<(u64, f64)> {
                runs.iter()
                    .filter(|r| r.entrant == e.name())
                    .filter_map(|r| Some((r.seed, f(r)?)))
                    .collect()
            };
            let mine = of(|r| Some(r.share));
            let x: Vec<f64> = mine.iter().map(|&(_, v)| v).collect();
            let seeds = by_seed(mine);
            let world: Vec<f64> = of(|r| r.world_share).into_iter().map(|(_, v)| v).collect();
            let wasted_by_seed = by_seed(of(|r| r.wasted_share));
            let wasted: Vec<f64> = wasted_by_seed.concat();
            let mean = |v: &[f64]| (!v.is_empty()).then(|| stats::mean(v));
            EntrantStats {
                world_share: mean(&world),
                wasted_share: mean(&wasted),
                wasted_sd: (wasted.len() > 1).then(|| stats::sd(&wasted)),
                wasted_same_seed_sd: stats::pooled_within_sd(&wasted_by_seed),
                entrant: e.name(),
                runs: x.len(),
                mean: stats::mean(&x),
                median: stats::median(&x),
                sd: stats::sd(&x),
                ci95: stats::bootstrap_ci_by_group(&seeds, RESAMPLES, 1),
                same_seed_sd: stats::pooled_within_sd(&seeds),
            }
        })
        .filter(|s| s.runs > 0)
        .collect()
}

/// Values grouped by seed, in seed order: the runs of one seed (its repeats) share a world, and
/// are alike beyond chance (over the four standard ten-seed compares of deadline and sequential,
/// about 13 % of a paired difference's variance was its seed's), so the intervals resample
/// seeds, each with all its runs, not runs one by one. At `--repeat 1` each seed is a group of
/// one, and this is the plain bootstrap.
fn by_seed(values: Vec<(u64, f64)>) -> Vec<Vec<f64>> {
    let mut groups: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for (seed, v) in values {
        groups.entry(seed).or_default().push(v);
    }
    groups.into_values().collect()
}

fn pairs(c: &Comparison, runs: &[Run]) -> Vec<PairStats> {
    paired(c, runs, |r| Some(r.share))
}

/// The pairs of entrants, on `metric` (lower is better) over the runs that have it.
fn paired(c: &Comparison, runs: &[Run], metric: fn(&Run) -> Option<f64>) -> Vec<PairStats> {
    let by: BTreeMap<(String, u64, u32), f64> = runs
        .iter()
        .filter_map(|r| Some(((r.entrant.clone(), r.seed, r.repeat), metric(r)?)))
        .collect();
    let mut out = Vec::new();
    for (i, a) in c.entrants.iter().enumerate() {
        for b in &c.entrants[i + 1..] {
            let seeded: Vec<(u64, f64)> = by
                .iter()
                .filter(|((e, _, _), _)| *e == a.name())
                .filter_map(|((_, s, r), va)| by.get(&(b.name(), *s, *r)).map(|vb| (*s, va - vb)))
                .collect();
            if seeded.is_empty() {
                continue;
            }
            let d: Vec<f64> = seeded.iter().map(|&(_, v)| v).collect();
            let groups = by_seed(seeded);
            let k = groups[0].len();
            let runs_per_seed = (k > 1 && groups.iter().all(|g| g.len() == k)).then_some(k);
            let seed_means: Vec<f64> = groups.iter().map(|g| stats::mean(g)).collect();
            let ci = stats::bootstrap_ci_by_group(&groups, RESAMPLES, 2);
            let verdict = if d.len() >= 2 && ci.1 < 0.0 {
                format!("{} better", a.name())
            } else if d.len() >= 2 && ci.0 > 0.0 {
                format!("{} better", b.name())
            } else {
                "not settled".to_string()
            };
            out.push(PairStats {
                a: a.name(),
                b: b.name(),
                pairs: d.len(),
                mean_difference: stats::mean(&d),
                ci95: ci,
                verdict,
                sd_difference: stats::sd(&d),
                pairs_for_90pct_power: stats::pairs_for_90pct_power(&d),
                runs_per_seed,
                seeds_for_90pct_power: runs_per_seed
                    .and_then(|_| stats::pairs_for_90pct_power(&seed_means)),
            });
        }
    }
    out
}

fn write_outputs(c: &Comparison, runs: &[Run]) -> anyhow::Result<()> {
    let t = table(c, runs);
    let p = pairs(c, runs);
    let points = |x: f64| format!("{:.1} points", x * 100.0);
    let side_by_side = runs.iter().filter(|r| r.jobs > 1).count();
    let on_slurm = runs.iter().filter(|r| r.jobs == 0).count();
    let mut how = Vec::new();
    if side_by_side > 0 {
        how.push(format!(
            "{side_by_side} of the {} runs side by side (--jobs up to {}): experiments that share \
             the CPU are noisier than one at a time",
            runs.len(),
            runs.iter().map(|r| r.jobs).max().unwrap_or(1)
        ));
    }
    if on_slurm > 0 {
        how.push(format!(
            "{on_slurm} of the {} runs as Slurm array tasks (what shared a node was the \
             scheduler's choice)",
            runs.len()
        ));
    }
    let how = if how.is_empty() {
        "one experiment at a time".to_string()
    } else {
        how.join("; ")
    };
    let seeds: BTreeSet<u64> = runs.iter().map(|r| r.seed).collect();
    let pooled = if c.pooled_from.is_empty() {
        String::new()
    } else {
        let from: Vec<String> = c
            .pooled_from
            .iter()
            .map(|(d, n)| format!("{} ({n} runs)", md_code(&d.display().to_string())))
            .collect();
        format!(
            "Pooled from {}: nothing was run again; a folder's runs of a seed count as more runs \
             of that seed.\n\n",
            from.join(", ")
        )
    };
    // The builds runs.csv records, and the runs from before it recorded them.
    let mut builds: BTreeMap<&str, usize> = BTreeMap::new();
    for r in runs.iter().filter(|r| !r.build.is_empty()) {
        *builds.entry(r.build.as_str()).or_default() += 1;
    }
    let unknown = runs.iter().filter(|r| r.build.is_empty()).count();
    let plural = |n: usize| format!("{n} run{}", if n == 1 { "" } else { "s" });
    let builds_line = if builds.len() > 1 || (unknown > 0 && !builds.is_empty()) {
        let each: Vec<String> = builds
            .iter()
            .map(|(b, n)| format!("`{b}` ({})", plural(*n)))
            .collect();
        let old = if unknown > 0 {
            format!(
                "; {} from before runs.csv recorded the build",
                plural(unknown)
            )
        } else {
            String::new()
        };
        format!(
            "Builds that ran these runs (the first 12 hex digits of the SHA-1 of `testbed` and \
             the `vod-client` beside it): {}{old}. A build that changed the world's clients makes another \
             world; pool them only if it did not.\n\n",
            each.join(", ")
        )
    } else if unknown > 0 && !c.pooled_from.is_empty() {
        "These runs are from before runs.csv recorded the build: whether the folders ran one \
         build is not known. A build that changed the world's clients makes another world; \
         pool them only if it did not.\n\n"
            .to_string()
    } else {
        String::new()
    };
    let mut per_seed: BTreeMap<(&str, u64), usize> = BTreeMap::new();
    for r in runs {
        *per_seed.entry((r.entrant.as_str(), r.seed)).or_default() += 1;
    }
    let seed_again = per_seed.values().any(|&n| n > 1);
    let grouping = match (seed_again, seeds.len()) {
        (false, _) => String::new(),
        (true, 1) => " One seed: the intervals resample its runs, and speak for this one world \
                      only."
            .to_string(),
        (true, n) => format!(
            " Runs of one seed share its world, so the intervals resample the {n} seeds, each \
             with all its runs, not the runs one by one."
        ),
    };
    let mut md = format!(
        "# testbed compare\n\n{pooled}{builds_line}Penalty as a share of the file (lower is better), {how}.{grouping}\n\n\
         | entrant | runs | mean | median | sd | 95 % CI of the mean |\n|---|---|---|---|---|---|\n",
    );
    for s in &t {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} .. {} |",
            md_text(&s.entrant),
            s.runs,
            pct(s.mean),
            pct(s.median),
            pct(s.sd),
            pct(s.ci95.0),
            pct(s.ci95.1)
        );
    }
    let reruns: Vec<String> = t
        .iter()
        .filter_map(|s| {
            Some(format!(
                "{} {}",
                md_text(&s.entrant),
                points(s.same_seed_sd?)
            ))
        })
        .collect();
    if !reruns.is_empty() {
        let _ = writeln!(
            md,
            "\nSame-seed spread (the sd of a seed's runs about their own mean, pooled over the \
             seeds): {}. It is what reruns of one world differ by; the rest of an entrant's sd \
             is its seeds'.",
            reruns.join(", ")
        );
    }
    let start: Vec<Startup> = t.iter().filter_map(|s| startup(&s.entrant, runs)).collect();
    if !start.is_empty() {
        let each: Vec<String> = start
            .iter()
            .map(|s| {
                let split = match s.mean_share_above {
                    Some(above) => format!(
                        " (its runs with at most {:.0} such pieces, the median, paid {} on \
                         average, the others {})",
                        s.median_pieces,
                        pct(s.mean_share_at_or_below),
                        pct(above)
                    ),
                    None => String::new(),
                };
                let within = s
                    .within_seed_correlation
                    .map(|w| format!(", within seeds {w:.2}"))
                    .unwrap_or_default();
                format!(
                    "{} r = {:.2}{within}{split}",
                    md_text(&s.entrant),
                    s.correlation
                )
            })
            .collect();
        let _ = writeln!(
            md,
            "\nStart-up: the pieces the world delivered in my client's first 10 s \
             (`startup_pieces`) against the share, over each entrant's runs: {}. Where r is \
             strongly negative, a run's start decides much of its share, and only more runs \
             (seeds or `--repeat`) average it out. Within seeds (with reruns: each run against \
             its seed's means) r tells the start's own part from the seeds': a poor world gives \
             both fewer pieces at the start and a higher share.",
            each.join("; ")
        );
    }
    let waste_pairs = paired(c, runs, |r| r.wasted_share);
    if t.iter().any(|s| s.world_share.is_some()) {
        md.push_str(
            "\nWhere the penalty comes from (the referee's counts, as shares of the file; for a \
             client that completes the file, share = 100 % − sent by the world + wasted). What \
             the world sends is bounded by the world (which of its clients unchoke my client, \
             and for how long; my client's uploads buy some of it) and by what my client asks \
             of it before the server sends a piece at its deadline. What is wasted is my \
             client's: a block it asked of two peers, or one a peer delivered after the server \
             had sent it. Waste costs server bytes while the world sends less than my client \
             plays; a second copy from peers with bandwidth to spare costs nothing.\n\n\
             | entrant | sent by the world | wasted | sd of wasted | same-seed sd of wasted \
             |\n|---|---|---|---|---|\n",
        );
        let or_dash = |x: Option<f64>| x.map_or_else(|| "–".to_string(), pct);
        for s in &t {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                md_text(&s.entrant),
                or_dash(s.world_share),
                or_dash(s.wasted_share),
                or_dash(s.wasted_sd),
                or_dash(s.wasted_same_seed_sd)
            );
        }
        if !waste_pairs.is_empty() {
            md.push_str(
                "\n| wasted: A − B | pairs | mean difference | 95 % CI | verdict |\n\
                 |---|---|---|---|---|\n",
            );
            for q in &waste_pairs {
                let verdict = q
                    .verdict
                    .strip_suffix(" better")
                    .map_or_else(|| q.verdict.clone(), |n| format!("{n} wastes less"));
                let _ = writeln!(md, "{} {} |", pair_cells(q), md_text(&verdict));
            }
        }
    }
    for s in &t {
        let over: Vec<&Run> = runs
            .iter()
            .filter(|r| r.entrant == s.entrant && r.upload_over_cap)
            .collect();
        if let Some(peak) = over.iter().filter_map(|r| r.upload_peak).reduce(f64::max) {
            let _ = writeln!(
                md,
                "\n**{}** uploaded above its cap in {} of its {} runs (up to {peak:.0} KB/s over {window:.0} s, \
                 the world's count): uploads buy the world's unchokes, so those runs are not \
                 comparable with a capped client's.",
                md_text(&s.entrant),
                over.len(),
                s.runs,
                window = crate::vod::referee::UPLOAD_WINDOW,
            );
        }
    }
    let legend: Vec<String> = c
        .entrants
        .iter()
        .filter_map(|e| e.line())
        .filter_map(|(l, web_seed)| {
            let name = l.name.as_deref()?;
            Some(format!(
                "- **{}**: {}{}",
                md_text(name),
                md_code(&l.cmd),
                if web_seed {
                    ", with the VoD server as its web seed"
                } else {
                    ""
                }
            ))
        })
        .collect();
    if !legend.is_empty() {
        let _ = write!(md, "\nNamed entrants:\n\n{}\n", legend.join("\n"));
    }
    // With repeats, the seeds a compare at the same --repeat would need.
    let repeated = p.iter().any(|q| q.runs_per_seed.is_some());
    md.push_str(if repeated {
        "\n| A − B | pairs | mean difference | 95 % CI | verdict | pairs for 90 % power | seeds for 90 % power at its repeats |\n\
         |---|---|---|---|---|---|---|\n"
    } else {
        "\n| A − B | pairs | mean difference | 95 % CI | verdict | pairs for 90 % power |\n\
         |---|---|---|---|---|---|\n"
    });
    let or_dash = |n: Option<usize>| n.map_or_else(|| "–".to_string(), |n| n.to_string());
    for q in &p {
        let seeds = if repeated {
            match (q.runs_per_seed, q.seeds_for_90pct_power) {
                (Some(k), Some(n)) => format!(" {n} × {k} runs |"),
                _ => " – |".to_string(),
            }
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "{} {} | {} |{seeds}",
            pair_cells(q),
            md_text(&q.verdict),
            or_dash(q.pairs_for_90pct_power)
        );
    }
    if !p.is_empty() {
        md.push_str(
            "\nPairs for 90 % power: how many pairs (seeds, at --repeat 1) a compare needs to \
             settle that pair nine times in ten, if the difference and its spread are what \
             these pairs show (normal approximation; – where there are under three pairs, or \
             the difference is too close to 0 for any number). Where it is above the pairs \
             run, the same compare run again may well give another verdict. It is an estimate \
             for planning the next compare: fix its seeds before it runs, not by watching the \
             interval.\n",
        );
    }
    if repeated {
        md.push_str(
            "\nSeeds for 90 % power at its repeats: where each seed has the same number of \
             runs, how many seeds a compare with that many runs a seed needs, from the spread \
             of the seeds' mean differences (– where seeds have uneven runs, there are under three \
             seeds, or the difference is too close to 0 for any number). Repeats shrink only \
             the part of the spread that differs between a seed's runs; the seeds' own part \
             stays.\n",
        );
    }
    write_atomic(&c.out.join("compare.md"), md.as_bytes())?;
    let json = serde_json::json!({
        "config": c.config.path,
        "config_sha1": c.config_sha1,
        "builds": builds,
        "runs_without_build": unknown,
        "seeds": [c.seeds.start(), c.seeds.end()],
        "repeat": c.repeat,
        "jobs": c.jobs,
        "runs_side_by_side": side_by_side,
        "runs_on_slurm": on_slurm,
        "pooled_from": c.pooled_from.iter().map(|(d, n)| serde_json::json!({"out": d, "runs": n})).collect::<Vec<_>>(),
        "intervals_resample": if seed_again && seeds.len() > 1 { "seeds" } else { "runs" },
        "entrants": t,
        "commands": c
            .entrants
            .iter()
            .filter_map(|e| e.line().map(|(l, _)| (e.name(), l.cmd.clone())))
            .collect::<BTreeMap<_, _>>(),
        "pairs": p,
        "waste_pairs": waste_pairs,
        "startup": start,
    });
    write_atomic(
        &c.out.join("summary.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    write_atomic(&c.out.join("compare.svg"), svg(&t, runs).as_bytes())?;
    crate::util::out!("{md}");
    crate::util::outln!("compare: {}", c.out.display());
    Ok(())
}

/// A share as compare.md shows it: "12.3 %".
fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

/// A pair's first cells in compare.md: "| A − B | pairs | mean difference | low .. high |".
fn pair_cells(q: &PairStats) -> String {
    format!(
        "| {} − {} | {} | {} | {} .. {} |",
        md_text(&q.a),
        md_text(&q.b),
        q.pairs,
        pct(q.mean_difference),
        pct(q.ci95.0),
        pct(q.ci95.1)
    )
}

/// `s` as plain Markdown text (no emphasis, no table cell break).
fn md_text(s: &str) -> String {
    s.chars().fold(String::new(), |mut out, ch| {
        if matches!(ch, '\\' | '*' | '_' | '|' | '`') {
            out.push('\\');
        }
        out.push(ch);
        out
    })
}

/// `s` as a Markdown code span, exactly: fenced by one backtick more than its longest run of
/// them, with a space inside the fence where `s` begins or ends with one.
fn md_code(s: &str) -> String {
    let longest = s.split(|ch| ch != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// Each entrant a row: its runs as dots, its interval as a bar, its mean as a tick.
/// The label column is as wide as the longest entrant's name (about 6.5 px a character at
/// 11 px sans-serif, never under 220 px): a client line with a path was cut at the chart's
/// left edge.
fn svg(t: &[EntrantStats], runs: &[Run]) -> String {
    let longest = t
        .iter()
        .map(|e| e.entrant.chars().count())
        .max()
        .unwrap_or(0);
    let left = (16.0 + 6.5 * longest as f64).max(220.0);
    let (w, row) = (left + 500.0, 36.0);
    let h = 50.0 + row * t.len() as f64;
    let max = runs.iter().map(|r| r.share).fold(0.01f64, f64::max) * 1.05;
    let x = |v: f64| left + (v / max).clamp(0.0, 1.0) * (w - left - 20.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"compare\" viewBox=\"0 0 {w} {h}\" \
         width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\
         <rect width=\"{w}\" height=\"{h}\" fill=\"#fff\"/>"
    );
    for (k, e) in t.iter().enumerate() {
        let y = 42.0 + row * k as f64;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#333\">{}</text>\
             <line class=\"ci\" x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#27a\" stroke-width=\"4\"/>\
             <line class=\"mean\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#123\" stroke-width=\"2\"/>",
            left - 8.0,
            y + 4.0,
            esc(&e.entrant),
            x(e.ci95.0),
            x(e.ci95.1),
            x(e.mean),
            y - 9.0,
            x(e.mean),
            y + 9.0
        );
        for r in runs.iter().filter(|r| r.entrant == e.entrant) {
            let _ = write!(
                s,
                "<circle class=\"run\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#d33\" fill-opacity=\"0.6\"/>",
                x(r.share),
                y - 12.0
            );
        }
    }
    let _ = write!(
        s,
        "<text x=\"{left}\" y=\"14\" fill=\"#555\">penalty, share of the file (0 .. {:.1} %): \
         dots runs, bar 95 % CI, tick mean</text></svg>",
        max * 100.0
    );
    s
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A run's row, one at a time, without the referee's columns.
    fn row(entrant: &str, seed: u64, share: f64) -> Run {
        Run {
            entrant: entrant.into(),
            seed,
            repeat: 0,
            share,
            penalty_bytes: 10,
            penalty_source: "server".into(),
            late_pieces: 1,
            my_client_exit: "exit code 0".into(),
            seconds: 9.5,
            startup_pieces: 3,
            jobs: 1,
            first_piece_at: None,
            upload_peak: None,
            upload_over_cap: false,
            world_share: None,
            wasted_share: None,
            build: "0123456789ab".into(),
        }
    }

    /// The first `n` fields of a row of today's `runs.csv`: a row of an older build (ten to
    /// fourteen fields), or one cut short.
    fn first_fields(row: &str, n: usize) -> String {
        row.trim_end()
            .split(',')
            .take(n)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// deadline against sequential, written to `out`.
    fn deadline_vs_sequential(out: &Path) -> Comparison {
        Comparison {
            out: out.into(),
            ..cmp(vec![
                Entrant::Policy(Policy::Deadline),
                Entrant::Policy(Policy::Sequential),
            ])
        }
    }

    fn cmp(entrants: Vec<Entrant>) -> Comparison {
        Comparison {
            config: crate::orchestrator::config::Source::file("c.yaml"),
            seeds: 42..=43,
            repeat: 2,
            entrants,
            out: "o".into(),
            jobs: 1,
            slurm: None,
            pooled_from: Vec::new(),
            config_sha1: None,
        }
    }

    /// A long client line is shown whole: its label starts inside the chart.
    #[test]
    fn the_chart_makes_room_for_the_longest_entrant() {
        let name = "/home/someone/lab/examples/libtorrent_vod.py --mode time-critical [web seed]";
        let stats = |entrant: &str| EntrantStats {
            entrant: entrant.into(),
            runs: 1,
            mean: 0.1,
            median: 0.1,
            sd: 0.0,
            ci95: (0.1, 0.1),
            same_seed_sd: None,
            world_share: None,
            wasted_share: None,
            wasted_sd: None,
            wasted_same_seed_sd: None,
        };
        let chart = svg(&[stats("deadline"), stats(name)], &[]);
        let label_end: f64 = chart
            .split("<text x=\"")
            .nth(1)
            .and_then(|t| t.split('"').next())
            .unwrap()
            .parse()
            .unwrap();
        // End-anchored at label_end: at 6 px a character it must not start left of 0.
        assert!(
            label_end >= 6.0 * name.chars().count() as f64,
            "label ends at {label_end}"
        );
        // Short names keep the old layout.
        assert!(svg(&[stats("deadline")], &[]).contains("width=\"720\""));
    }

    #[test]
    fn runs_are_paired_and_interleaved() {
        let c = cmp(vec![
            Entrant::Policy(Policy::Rarest),
            Entrant::Policy(Policy::Deadline),
        ]);
        let s = schedule(&c);
        assert_eq!(s.len(), 8, "2 entrants x 2 seeds x 2 repeats");
        let names: Vec<String> = s.iter().map(|(e, _, _)| e.name()).collect();
        // The first entrant alternates, so neither always runs first.
        assert_eq!(names[0], "rarest");
        assert_eq!(names[2], "deadline");
        assert_eq!(names[4], "rarest");
        for e in ["rarest", "deadline"] {
            for seed in [42, 43] {
                assert_eq!(
                    s.iter()
                        .filter(|(x, sd, _)| x.name() == e && *sd == seed)
                        .count(),
                    2
                );
            }
        }
    }

    /// Two finished compares of the same seeds read as one: each seed twice, the entrants as
    /// asked, and what cannot be pooled refused with one line.
    #[test]
    fn pooled_folders_count_a_seed_twice_and_refuse_what_does_not_pool() {
        let d = tempfile::tempdir().unwrap();
        let folder = |name: &str, config: &str, offset: f64| {
            let dir = d.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let mut text = format!("{HEADER}\n");
            for seed in [42, 43] {
                for (e, share) in [("deadline", 0.05), ("sequential", 0.15), ("mine", 0.30)] {
                    text.push_str(&row(e, seed, share + offset).csv());
                }
            }
            std::fs::write(dir.join("runs.csv"), text).unwrap();
            let summary = serde_json::json!({
                "config": config,
                "commands": {"mine": "vod-client --choker tyrant {torrent}"},
            });
            std::fs::write(dir.join("summary.json"), summary.to_string()).unwrap();
            dir
        };
        let (a, b) = (folder("a", "x.yaml", 0.0), folder("b", "x.yaml", 0.01));
        let out = d.path().join("pooled");
        pool(&[a.clone(), b.clone()], Vec::new(), &out).unwrap();
        let runs = read_runs(&out.join("runs.csv")).unwrap();
        assert_eq!(runs.len(), 12);
        assert_eq!(
            runs.iter().filter(|r| r.repeat == 1).count(),
            6,
            "b's runs come after a's"
        );
        let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
        assert!(
            md.contains("(6 runs)") && md.contains("Pooled from"),
            "{md}"
        );
        assert!(md.contains("the intervals resample the 2 seeds"), "{md}");
        assert!(md.contains("| deadline − sequential | 4 |"), "{md}");
        assert!(
            md.contains("- **mine**: `vod-client --choker tyrant {torrent}`"),
            "the line the folders recorded: {md}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(json["pooled_from"][1]["runs"], 6);
        assert_eq!(json["config"], "x.yaml");
        // Two of the three, a client picked by its name in the tables.
        let two = vec![
            Entrant::Policy(Policy::Sequential),
            Entrant::Client("mine".into()),
        ];
        pool(&[a.clone(), b.clone()], two, &out).unwrap();
        let runs = read_runs(&out.join("runs.csv")).unwrap();
        assert_eq!(runs.len(), 8);
        assert!(runs.iter().all(|r| r.entrant != "deadline"));
        // What does not pool.
        let err = |from: &[PathBuf], out: &Path, entrants: Vec<Entrant>| {
            format!("{:#}", pool(from, entrants, out).unwrap_err())
        };
        let other = folder("c", "y.yaml", 0.02);
        let e = err(&[a.clone(), other], &out, Vec::new());
        assert!(e.contains("different configs (x.yaml and y.yaml)"), "{e}");
        let e = err(&[a.clone(), b.clone()], &a, Vec::new());
        assert!(e.contains("it is also --out"), "{e}");
        let e = err(&[a.clone(), d.path().join("a/../a")], &out, Vec::new());
        assert!(e.contains("given twice"), "{e}");
        let e = err(&[a.clone(), d.path().join("nowhere")], &out, Vec::new());
        assert!(e.contains("nowhere: no runs.csv there"), "{e}");
        let e = err(
            std::slice::from_ref(&a),
            &out,
            vec![
                Entrant::Policy(Policy::Rarest),
                Entrant::Client("mine".into()),
            ],
        );
        assert!(e.contains("no folder has a run of \"rarest\""), "{e}");
        // The sources are read, never written.
        assert_eq!(read_runs(&a.join("runs.csv")).unwrap().len(), 6);
    }

    /// Pooling never replaces a compare's own runs, never counts one run twice (a copy, or a
    /// pooled folder beside its source), and never pools two command lines, or two versions of
    /// one config, under one name.
    #[test]
    fn pooling_refuses_to_lose_or_double_count_runs() {
        let d = tempfile::tempdir().unwrap();
        let folder = |name: &str, summary: serde_json::Value, offset: f64| {
            let dir = d.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let mut text = format!("{HEADER}\n");
            for seed in [42, 43] {
                for (e, share) in [("deadline", 0.05), ("mine", 0.30)] {
                    text.push_str(&row(e, seed, share + offset).csv());
                }
            }
            std::fs::write(dir.join("runs.csv"), text).unwrap();
            std::fs::write(dir.join("summary.json"), summary.to_string()).unwrap();
            dir
        };
        let summary = |sha: &str, cmd: &str| serde_json::json!({"config": "x.yaml", "config_sha1": sha, "commands": {"mine": cmd}});
        let a = folder("a", summary("1111", "mine-client"), 0.0);
        let b = folder("b", summary("1111", "mine-client"), 0.01);
        let err = |from: &[PathBuf], out: &Path| {
            format!("{:#}", pool(from, Vec::new(), out).unwrap_err())
        };
        // A compare's own folder as --out (the default run/compare often is one).
        let own = folder("own", summary("1111", "mine-client"), 0.02);
        let before = std::fs::read(own.join("runs.csv")).unwrap();
        let e = err(&[a.clone(), b.clone()], &own);
        assert!(e.contains("holds a compare's own runs.csv"), "{e}");
        assert_eq!(
            std::fs::read(own.join("runs.csv")).unwrap(),
            before,
            "nothing lost"
        );
        // A pooled folder as --out is made again.
        let pooled = d.path().join("pooled");
        pool(&[a.clone(), b.clone()], Vec::new(), &pooled).unwrap();
        pool(&[a.clone(), b.clone()], Vec::new(), &pooled).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(pooled.join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(
            json["config_sha1"], "1111",
            "the sources' config digest is kept"
        );
        // The same runs twice: a copy, or the pool beside one of its sources.
        let copy = d.path().join("copy");
        std::fs::create_dir_all(&copy).unwrap();
        std::fs::copy(a.join("runs.csv"), copy.join("runs.csv")).unwrap();
        let e = err(&[a.clone(), copy.clone()], &d.path().join("p2"));
        assert!(e.contains("both hold the same runs (4 of them"), "{e}");
        let e = err(&[pooled.clone(), b.clone()], &d.path().join("p3"));
        assert!(e.contains("pooled from the second already"), "{e}");
        // One name, two command lines; one config path, edited between two compares.
        let other = folder("other", summary("1111", "another-client"), 0.03);
        let e = err(&[a.clone(), other], &d.path().join("p4"));
        assert!(
            e.contains("the entrant \"mine\" ran \"mine-client\" in one and \"another-client\""),
            "{e}"
        );
        let edited = folder("edited", summary("2222", "mine-client"), 0.04);
        let e = err(&[a.clone(), edited], &d.path().join("p5"));
        assert!(
            e.contains("different configs (x.yaml and x.yaml, edited in between)"),
            "{e}"
        );
        // A runs.csv that is there but cannot be read is an error, not "no runs".
        let broken = d.path().join("broken");
        std::fs::create_dir_all(&broken).unwrap();
        std::fs::write(broken.join("runs.csv"), [0xff, 0xfe, 0x00]).unwrap();
        let e = err(&[a.clone(), broken], &d.path().join("p6"));
        assert!(e.contains("broken/runs.csv"), "{e}");
        // A client named like a policy would come back from runs.csv as that policy.
        let e = entrants(
            Vec::new(),
            vec!["my-client".into()],
            Vec::new(),
            vec!["deadline".into()],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("named like a built-in policy"), "{e}");
    }

    /// Under today's header a row cut at a comma is told from a row of an older build: the
    /// last one, with no end of line, is a run to do again (and refused by a pool); one in the
    /// middle, or one with a column too many, is refused with the line and the reason.
    #[test]
    fn a_row_cut_short_is_told_from_an_older_row() {
        let d = tempfile::tempdir().unwrap();
        let csv = d.path().join("runs.csv");
        let whole = [
            row("deadline", 42, 0.05).csv(),
            row("sequential", 42, 0.1).csv(),
        ];
        let head_cut = |n: usize| first_fields(&whole[1], n);
        for n in [14, 12, 10] {
            std::fs::write(&csv, format!("{HEADER}\n{}{}", whole[0], head_cut(n))).unwrap();
            let rows = scan_runs(&csv).unwrap();
            assert_eq!(
                (rows.runs.len(), rows.cut, rows.current),
                (1, Some(3), false)
            );
            let e = read_runs(&csv).unwrap_err().to_string();
            assert!(e.contains("line 3: a row cut short"), "{e}");
        }
        // The whole row with no end of line reads, but is not ready to append to.
        std::fs::write(
            &csv,
            format!("{HEADER}\n{}{}", whole[0], whole[1].trim_end()),
        )
        .unwrap();
        let rows = scan_runs(&csv).unwrap();
        assert_eq!((rows.runs.len(), rows.cut, rows.current), (2, None, false));
        std::fs::write(&csv, format!("{HEADER}\n{}{}", whole[0], whole[1])).unwrap();
        assert!(scan_runs(&csv).unwrap().current);
        // The same cut in the middle of the file is an error.
        std::fs::write(&csv, format!("{HEADER}\n{}\n{}", head_cut(12), whole[0])).unwrap();
        let e = scan_runs(&csv).err().unwrap().to_string();
        assert!(
            e.contains("line 2: not a run row (under a header of 17 columns"),
            "{e}"
        );
        // A build cut short is a row cut short; so is a row cut just before its build, but a
        // row that ends its line with no build is a pooled row from before the column.
        let short_build = whole[1].trim_end().trim_end_matches("89ab");
        std::fs::write(&csv, format!("{HEADER}\n{}{short_build}", whole[0])).unwrap();
        assert_eq!(scan_runs(&csv).unwrap().cut, Some(3));
        let no_build = whole[1].trim_end().trim_end_matches("0123456789ab");
        std::fs::write(&csv, format!("{HEADER}\n{}{no_build}", whole[0])).unwrap();
        assert_eq!(scan_runs(&csv).unwrap().cut, Some(3));
        std::fs::write(&csv, format!("{HEADER}\n{no_build}\n{}", whole[0])).unwrap();
        let rows = scan_runs(&csv).unwrap();
        assert_eq!(
            (rows.runs[0].build.as_str(), rows.cut, rows.current),
            ("", None, true)
        );
        // A row of a newer build, with a column this one does not know.
        std::fs::write(
            &csv,
            format!("{HEADER}\n{},new\n{}", whole[0].trim_end(), whole[1]),
        )
        .unwrap();
        let e = scan_runs(&csv).err().unwrap().to_string();
        assert!(
            e.contains("line 2: not a run row (18 fields: written by a newer testbed?"),
            "{e}"
        );
        // Under an older header, the same twelve fields are a row of an older build.
        let old_header: Vec<&str> = HEADER.split(',').take(12).collect();
        std::fs::write(
            &csv,
            format!("{}\n{}\n", old_header.join(","), head_cut(12)),
        )
        .unwrap();
        let rows = scan_runs(&csv).unwrap();
        assert_eq!((rows.runs.len(), rows.cut, rows.current), (1, None, false));
        // ... but with no end of line they may be a longer row cut at a comma: cut short.
        std::fs::write(&csv, format!("{}\n{}", old_header.join(","), head_cut(12))).unwrap();
        let rows = scan_runs(&csv).unwrap();
        assert_eq!((rows.runs.len(), rows.cut), (0, Some(2)));
        let kept = drop_cut_row(&csv).unwrap();
        assert_eq!(
            std::fs::read_to_string(&csv).unwrap(),
            format!("{}\n", old_header.join(",")),
            "only the cut row dropped, the header as it was"
        );
        // The dropped line is kept beside it (it may be a whole row an editor left unended),
        // each drop after the one before.
        assert_eq!(kept, d.path().join(CUT));
        std::fs::write(&csv, format!("{}\n{}", old_header.join(","), head_cut(3))).unwrap();
        drop_cut_row(&csv).unwrap();
        assert_eq!(
            std::fs::read_to_string(&kept).unwrap(),
            format!("{}\n{}\n", head_cut(12), head_cut(3))
        );
    }

    /// The first row a compare records upgrades a file from before a column (every row it
    /// had, under today's header, then the new one); the rows after it are appended.
    #[test]
    fn the_first_row_recorded_upgrades_an_old_file() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("runs.csv");
        let c = deadline_vs_sequential(d.path());
        let old = format!("{}\n", first_fields(&row("deadline", 42, 0.05).csv(), 14));
        let old_header: Vec<&str> = HEADER.split(',').take(14).collect();
        std::fs::write(&path, format!("{}\n{old}", old_header.join(","))).unwrap();
        let Rows {
            mut runs, current, ..
        } = scan_runs(&path).unwrap();
        assert!(!current);
        let csv = RunsFile {
            path: path.clone(),
            ready: current.into(),
        };
        let progress = Progress {
            already: runs.len(),
            todo: 2,
            t0: Instant::now(),
        };
        for (e, share) in [("sequential", 0.1), ("deadline", 0.06)] {
            let new = Run {
                seed: 43,
                ..row(e, 43, share)
            };
            record(&c, &csv, &mut runs, new, progress).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!(
                "{HEADER}\n{},,,\n{}{}",
                old.trim_end(),
                row("sequential", 43, 0.1).csv(),
                row("deadline", 43, 0.06).csv()
            )
        );
        assert!(scan_runs(&path).unwrap().current);
    }

    /// A compare stops before its next run when `testbed` or `vod-client` is rebuilt under
    /// it: a new file in its place (as `cargo build` writes it), or the same file written over
    /// (as `cp` does), whether its length changes or only its modification time.
    #[test]
    fn a_rebuild_under_a_compare_is_seen() {
        let d = tempfile::tempdir().unwrap();
        let (testbed, vod) = (d.path().join("testbed"), d.path().join("vod-client"));
        let fresh = || {
            std::fs::write(&testbed, b"testbed build 1").unwrap();
            std::fs::write(&vod, b"vod-client build 1").unwrap();
            Live::of(testbed.clone()).unwrap()
        };
        let live = fresh();
        live.same_build().unwrap();
        assert_eq!(live.build.len(), 12);
        let replaced = |live: &Live, path: &Path| {
            let e = live.same_build().unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("{} was replaced", path.display())),
                "{e}"
            );
        };
        // A new file renamed over testbed.
        std::fs::write(d.path().join("new"), b"testbed build 1").unwrap();
        std::fs::rename(d.path().join("new"), &testbed).unwrap();
        replaced(&live, &testbed);
        // vod-client written over in place: a new length ...
        let live = fresh();
        std::fs::write(&vod, b"vod-client build 22").unwrap();
        replaced(&live, &vod);
        // ... or the same length and a new modification time.
        let live = fresh();
        let f = std::fs::OpenOptions::new().write(true).open(&vod).unwrap();
        std::io::Write::write_all(&mut &f, b"vod-client build 2").unwrap();
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        replaced(&live, &vod);
        // The build is of both files.
        let other = {
            std::fs::write(&vod, b"vod-client build 2").unwrap();
            Live::of(testbed.clone()).unwrap().build
        };
        assert_ne!(fresh().build, other);
    }

    /// One compare at a time in a folder: a second compare, or a pool into it, is refused
    /// while the first holds it, and the folder is free again once it lets go.
    #[test]
    fn one_compare_at_a_time_holds_a_folder() {
        let d = tempfile::tempdir().unwrap();
        let c = Comparison {
            config: crate::orchestrator::config::Source::file(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/default.yaml"),
            ),
            ..deadline_vs_sequential(d.path())
        };
        assert!(!folder_in_use(d.path()));
        let held = hold_folder(d.path()).unwrap();
        assert!(folder_in_use(d.path()));
        let e = compare(&c).unwrap_err().to_string();
        assert!(e.contains("another compare is using this folder"), "{e}");
        assert!(!d.path().join("runs.csv").exists(), "nothing written");
        let e = pool(&[], vec![], d.path()).unwrap_err().to_string();
        assert!(e.contains("another compare is using this folder"), "{e}");
        drop(held);
        assert!(!folder_in_use(d.path()));
        // A compare of a build before 7566ff7 locked the folder itself: seen, and refused.
        let older = nix::fcntl::Flock::lock(
            std::fs::File::open(d.path()).unwrap(),
            nix::fcntl::FlockArg::LockExclusiveNonblock,
        )
        .unwrap();
        assert!(folder_in_use(d.path()));
        let e = hold_folder(d.path()).err().unwrap().to_string();
        assert!(e.contains("another compare is using this folder"), "{e}");
        drop(older);
        assert!(!folder_in_use(d.path()));
        // Free: a compare with every run done takes it, and writes only its tables.
        let old_header: Vec<&str> = HEADER.split(',').take(14).collect();
        let mut text = format!("{}\n", old_header.join(","));
        for seed in 42..=43 {
            for r in 0..2 {
                for (e, share) in [("deadline", 0.05), ("sequential", 0.1)] {
                    let row = Run {
                        repeat: r,
                        ..row(e, seed, share)
                    }
                    .csv();
                    text.push_str(&format!("{}\n", first_fields(&row, 14)));
                }
            }
        }
        std::fs::write(d.path().join("runs.csv"), &text).unwrap();
        compare(&c).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("runs.csv")).unwrap(),
            text,
            "nothing to run: runs.csv as it was, readable by the build that wrote it"
        );
        assert!(d.path().join("compare.md").exists());
        // A row cut short there while a compare still holds the folder (it is writing it):
        // a pool takes the rows before it. Once the folder is free, a compare with nothing
        // to run drops the cut row, and the file is whole again.
        let cut = &text.lines().nth(1).unwrap()[..20];
        std::fs::write(d.path().join("runs.csv"), format!("{text}{cut}")).unwrap();
        let pooled = tempfile::tempdir().unwrap();
        let held = hold_folder(d.path()).unwrap();
        pool(&[d.path().into()], vec![], pooled.path()).unwrap();
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(pooled.path().join("summary.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(summary["pooled_from"][0]["runs"], 8);
        drop(held);
        let e = pool(&[d.path().into()], vec![], pooled.path()).unwrap_err();
        assert!(e.to_string().contains("line 10: a row cut short"), "{e}");
        compare(&c).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("runs.csv")).unwrap(),
            text
        );
        pool(&[d.path().into()], vec![], pooled.path()).unwrap();
    }

    /// With reruns, compare.md gives each entrant's same-seed spread; from six runs on, how
    /// the start-up pieces go with the share. Without reruns, or with a start that does not
    /// vary, neither line.
    #[test]
    fn the_tables_say_how_much_reruns_and_starts_spread_the_runs() {
        let d = tempfile::tempdir().unwrap();
        let c = deadline_vs_sequential(d.path());
        let md = |runs: &[Run]| {
            write_outputs(&c, runs).unwrap();
            std::fs::read_to_string(d.path().join("compare.md")).unwrap()
        };
        // Seed 42 far from seed 43; a bad start (4 pieces) costs 10 points.
        let mut runs = Vec::new();
        for (seed, base) in [(42, 0.02), (43, 0.2), (44, 0.08)] {
            for (r, pieces) in [(0, 30), (1, 4)] {
                for e in ["deadline", "sequential"] {
                    runs.push(Run {
                        repeat: r,
                        startup_pieces: pieces,
                        ..row(e, seed, base + if pieces < 10 { 0.1 } else { 0.0 })
                    });
                }
            }
        }
        let text = md(&runs);
        // Each seed's two runs are 0.1 apart: sd 0.0707 about their mean, pooled the same.
        // The sequential runs are the deadline runs': the second entrant's r is the same.
        assert!(
            text.contains("seeds): deadline 7.1 points, sequential 7.1 points."),
            "{text}"
        );
        let deadline = "deadline r = -0.56, within seeds -1.00 (its runs with at most 17 such pieces, the median, \
                        paid 20.0 % on average, the others 10.0 %)";
        assert!(
            text.contains("over each entrant's runs: ") && text.contains(deadline),
            "{text}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.path().join("summary.json")).unwrap())
                .unwrap();
        let r = json["startup"][1]["correlation"].as_f64().unwrap();
        assert!((-0.6..-0.5).contains(&r), "{r}");
        let within = json["startup"][1]["within_seed_correlation"]
            .as_f64()
            .unwrap();
        assert!((within + 1.0).abs() < 1e-9, "{within}");
        assert!(json["entrants"][0]["same_seed_sd"].as_f64().is_some());
        // One run a seed, one start for every run: neither line.
        let firsts: Vec<Run> = runs
            .iter()
            .filter(|r| r.repeat == 0)
            .cloned()
            .chain((45..48).map(|s| Run {
                startup_pieces: 30,
                ..row("deadline", s, 0.1)
            }))
            .collect();
        let text = md(&firsts);
        assert!(
            !text.contains("Same-seed spread") && !text.contains("Start-up:"),
            "{text}"
        );
    }

    /// The world's supply and my client's waste: a table of their means (a dash for an
    /// entrant with no such rows), a paired verdict on the waste, and neither without the
    /// columns.
    #[test]
    fn the_tables_split_the_penalty_into_supply_and_waste() {
        let d = tempfile::tempdir().unwrap();
        let c = deadline_vs_sequential(d.path());
        let mut runs = Vec::new();
        for seed in 42..48 {
            // The world sends both 95 % (plus the seed's 0..5 points); sequential wastes 3
            // points more than deadline, give or take 0.1.
            let world = 0.95 + (seed - 42) as f64 * 0.01;
            let jitter = if seed % 2 == 0 { 0.001 } else { -0.001 };
            for (e, wasted) in [("deadline", 0.01), ("sequential", 0.04 + jitter)] {
                runs.push(Run {
                    world_share: Some(world),
                    wasted_share: Some(wasted),
                    ..row(e, seed, 1.0 - world + wasted)
                });
            }
        }
        write_outputs(&c, &runs).unwrap();
        let md = std::fs::read_to_string(d.path().join("compare.md")).unwrap();
        assert!(md.contains("Where the penalty comes from"), "{md}");
        assert!(
            md.contains("| deadline | 97.5 % | 1.0 % | 0.0 % | – |"),
            "{md}"
        );
        assert!(
            md.contains("| sequential | 97.5 % | 4.0 % | 0.1 % | – |"),
            "{md}"
        );
        assert!(
            md.contains("| deadline − sequential | 6 | -3.0 % |")
                && md.contains("| deadline wastes less |"),
            "{md}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.path().join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(json["waste_pairs"][0]["verdict"], "deadline better");
        assert!((json["entrants"][1]["wasted_share"].as_f64().unwrap() - 0.04).abs() < 1e-9);
        // A rerun of every seed, deadline's waste 0.5 points above its first: a same-seed sd
        // of 0.5 / √2 points; sequential's the same both times.
        let rerun: Vec<Run> = runs
            .iter()
            .cloned()
            .chain(runs.iter().map(|r| {
                Run {
                    repeat: 1,
                    wasted_share: r
                        .wasted_share
                        .map(|w| w + if r.entrant == "deadline" { 0.005 } else { 0.0 }),
                    ..r.clone()
                }
            }))
            .collect();
        write_outputs(&c, &rerun).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.path().join("summary.json")).unwrap())
                .unwrap();
        let same = |k: usize| json["entrants"][k]["wasted_same_seed_sd"].as_f64().unwrap();
        assert!((same(0) - 0.005 / 2f64.sqrt()).abs() < 1e-9, "{}", same(0));
        assert!(same(1).abs() < 1e-9, "{}", same(1));
        let md = std::fs::read_to_string(d.path().join("compare.md")).unwrap();
        assert!(md.contains("| 0.4 % |\n"), "{md}");
        // An entrant whose rows are from before the columns gets dashes; with no such row at
        // all, no table.
        for r in runs.iter_mut().filter(|r| r.entrant == "sequential") {
            (r.world_share, r.wasted_share) = (None, None);
        }
        write_outputs(&c, &runs).unwrap();
        let md = std::fs::read_to_string(d.path().join("compare.md")).unwrap();
        assert!(md.contains("| sequential | – | – | – | – |"), "{md}");
        assert!(!md.contains("wasted: A − B"), "no pairs: {md}");
        for r in &mut runs {
            (r.world_share, r.wasted_share) = (None, None);
        }
        write_outputs(&c, &runs).unwrap();
        let md = std::fs::read_to_string(d.path().join("compare.md")).unwrap();
        assert!(!md.contains("Where the penalty comes from"), "{md}");
    }

    /// Runs of two builds are named in compare.md and summary.json (rows from before the
    /// column counted apart); runs of one build add no line, unless they are pooled and
    /// their build is not known.
    #[test]
    fn runs_of_two_builds_are_named_in_the_tables() {
        let d = tempfile::tempdir().unwrap();
        let c = deadline_vs_sequential(d.path());
        let mut runs = Vec::new();
        for seed in [42, 43] {
            runs.push(row("deadline", seed, 0.05));
            runs.push(row("sequential", seed, 0.15));
        }
        write_outputs(&c, &runs).unwrap();
        let md = std::fs::read_to_string(d.path().join("compare.md")).unwrap();
        assert!(!md.contains("Builds that"), "{md}");
        runs[3].build = "fedcba987654".into();
        runs[2].build = String::new();
        write_outputs(&c, &runs).unwrap();
        let md = std::fs::read_to_string(d.path().join("compare.md")).unwrap();
        assert!(
            md.contains("Builds that ran these runs")
                && md.contains("`0123456789ab` (2 runs), `fedcba987654` (1 run); 1 run from before runs.csv recorded the build."),
            "{md}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.path().join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(json["builds"]["0123456789ab"], 2);
        assert_eq!(json["builds"].as_object().unwrap().len(), 2, "{json}");
        assert_eq!(json["runs_without_build"], 1);
        // Runs of one unknown build: nothing to say of a compare, but a pool of such folders
        // cannot tell whether they ran one build.
        for r in &mut runs {
            r.build.clear();
        }
        write_outputs(&c, &runs).unwrap();
        let md = std::fs::read_to_string(d.path().join("compare.md")).unwrap();
        assert!(
            !md.contains("Builds that") && !md.contains("recorded the build"),
            "{md}"
        );
        let pooled = Comparison {
            pooled_from: vec![(d.path().join("a"), 2), (d.path().join("b"), 2)],
            ..c
        };
        write_outputs(&pooled, &runs).unwrap();
        let md = std::fs::read_to_string(d.path().join("compare.md")).unwrap();
        assert!(
            md.contains("from before runs.csv recorded the build: whether the folders ran one build is not known"),
            "{md}"
        );
    }

    /// Three runs of each of four seeds, where the runs of a seed agree and the seeds do not:
    /// twelve runs one by one would settle it, four seeds do not.
    #[test]
    fn the_runs_of_a_seed_are_resampled_together() {
        let d = tempfile::tempdir().unwrap();
        let c = Comparison {
            seeds: 42..=45,
            repeat: 3,
            ..deadline_vs_sequential(d.path())
        };
        let mut runs = Vec::new();
        for (seed, diff) in [(42, -0.10), (43, -0.10), (44, -0.10), (45, 0.05)] {
            for repeat in 0..3 {
                let jitter = repeat as f64 * 0.001;
                runs.push(Run {
                    repeat,
                    ..row("deadline", seed, 0.2 + diff + jitter)
                });
                runs.push(Run {
                    repeat,
                    ..row("sequential", seed, 0.2)
                });
            }
        }
        let d12: Vec<f64> = runs.chunks(2).map(|w| w[0].share - w[1].share).collect();
        let one_by_one = stats::bootstrap_ci(&d12, RESAMPLES, 2);
        assert!(one_by_one.1 < 0.0, "the runs alone: {one_by_one:?}");
        let p = pairs(&c, &runs);
        assert_eq!(p[0].pairs, 12);
        assert!(p[0].ci95.1 >= 0.0, "by seed: {:?}", p[0].ci95);
        assert_eq!(p[0].verdict, "not settled");
        write_outputs(&c, &runs).unwrap();
        let md = std::fs::read_to_string(d.path().join("compare.md")).unwrap();
        assert!(md.contains("the intervals resample the 4 seeds"), "{md}");
        let json = |d: &std::path::Path| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap()
        };
        assert_eq!(json(d.path())["intervals_resample"], "seeds");
        // Seeds for power at three runs a seed, from the seeds' means (-0.099 three times and
        // 0.051: mean -0.0615, sd 0.075, n = (3.2415 · 0.075 / 0.0615)² = 15.6).
        assert_eq!(
            (p[0].runs_per_seed, p[0].seeds_for_90pct_power),
            (Some(3), Some(16))
        );
        assert!(md.contains("| 16 × 3 runs |"), "{md}");
        assert_eq!(json(d.path())["pairs"][0]["seeds_for_90pct_power"], 16);
        // Uneven runs a seed: no figure.
        let uneven: Vec<Run> = runs
            .iter()
            .filter(|r| r.seed != 45 || r.repeat == 0)
            .cloned()
            .collect();
        assert_eq!(pairs(&c, &uneven)[0].seeds_for_90pct_power, None);
        // One run a seed: the plain bootstrap, and nothing to say about it.
        let firsts: Vec<Run> = runs.iter().filter(|r| r.repeat == 0).cloned().collect();
        write_outputs(&c, &firsts).unwrap();
        let md = std::fs::read_to_string(d.path().join("compare.md")).unwrap();
        assert!(!md.contains("resample"), "{md}");
        assert!(!md.contains("at its repeats"), "{md}");
        assert_eq!(json(d.path())["intervals_resample"], "runs");
        // One seed run again: its runs are all there is to resample, and it says so.
        let one: Vec<Run> = runs.iter().filter(|r| r.seed == 42).cloned().collect();
        assert_eq!(pairs(&c, &one)[0].verdict, "deadline better");
        write_outputs(&c, &one).unwrap();
        let md = std::fs::read_to_string(d.path().join("compare.md")).unwrap();
        assert!(
            md.contains("One seed: the intervals resample its runs"),
            "{md}"
        );
    }

    #[test]
    fn rows_round_trip_and_verdicts_need_an_interval_apart_from_zero() {
        let d = tempfile::tempdir().unwrap();
        let c = Comparison {
            out: d.path().into(),
            ..cmp(vec![
                Entrant::Policy(Policy::Sequential),
                Entrant::Client("my client, \"v2\"".into()),
            ])
        };
        let mut runs = Vec::new();
        for seed in 42..=47 {
            for (e, share) in [("sequential", 0.05), ("my client, \"v2\"", 0.30)] {
                runs.push(Run {
                    first_piece_at: (seed % 2 == 0).then_some(2.5),
                    upload_peak: Some(58.5),
                    upload_over_cap: seed == 47,
                    world_share: Some(0.9 + seed as f64 * 1e-3),
                    wasted_share: (seed != 43).then_some(0.02),
                    ..row(e, seed, share + seed as f64 * 0.001)
                });
            }
        }
        let csv = d.path().join("runs.csv");
        let text: String = std::iter::once(format!("{HEADER}\n"))
            .chain(runs.iter().map(Run::csv))
            .collect();
        std::fs::write(&csv, text).unwrap();
        let back = read_runs(&csv).unwrap();
        assert_eq!(back.len(), runs.len());
        assert_eq!(back[1].entrant, "my client, \"v2\"");
        assert!((back[1].share - runs[1].share).abs() < 1e-6);
        assert_eq!(back[0].first_piece_at, Some(2.5));
        assert_eq!(back[2].first_piece_at, None, "an empty field");
        assert_eq!(back[0].upload_peak, Some(58.5));
        assert!(!back[0].upload_over_cap && back[10].upload_over_cap);
        assert_eq!(back[0].build, "0123456789ab");
        assert_eq!(
            (back[0].world_share, back[0].wasted_share),
            (Some(0.942), Some(0.02))
        );
        assert_eq!(back[2].wasted_share, None, "an empty field");
        // Rows written before the byte counts, the build column, the upload columns, and
        // first_piece_at still read.
        let old_row = runs[0].csv();
        let fifteen = parse_run(&format!("{},0123456789ab", first_fields(&old_row, 14))).unwrap();
        assert_eq!(
            (
                fifteen.build.as_str(),
                fifteen.world_share,
                fifteen.upload_peak
            ),
            ("0123456789ab", None, Some(58.5))
        );
        let fourteen = parse_run(&first_fields(&old_row, 14)).unwrap();
        assert_eq!(
            (fourteen.build.as_str(), fourteen.upload_peak),
            ("", Some(58.5))
        );
        let twelve = parse_run(&first_fields(&old_row, 12)).unwrap();
        assert_eq!(
            (twelve.first_piece_at, twelve.upload_peak),
            (Some(2.5), None)
        );
        assert_eq!(
            parse_run(&first_fields(&old_row, 11))
                .unwrap()
                .first_piece_at,
            None
        );
        for torn in [13, 16] {
            assert!(
                parse_run(&first_fields(&old_row, torn)).is_none(),
                "{torn} fields: torn"
            );
        }
        let p = pairs(&c, &back);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].pairs, 6);
        assert_eq!(p[0].verdict, "sequential better");
        // Two runs each that overlap: not settled.
        let mixed: Vec<Run> = back
            .iter()
            .take(4)
            .cloned()
            .enumerate()
            .map(|(k, mut r)| {
                r.share = [0.1, 0.2, 0.2, 0.1][k];
                r
            })
            .collect();
        assert_eq!(pairs(&c, &mixed)[0].verdict, "not settled");
        write_outputs(&c, &back).unwrap();
        let md = std::fs::read_to_string(d.path().join("compare.md")).unwrap();
        assert!(
            md.contains("| sequential | 6 |") && md.contains("sequential better"),
            "{md}"
        );
        // The pairs differ by the same 25 points every seed: no spread, two pairs would do.
        assert_eq!(p[0].pairs_for_90pct_power, Some(2));
        assert!(md.contains("| sequential better | 2 |"), "{md}");
        assert!(md.contains("Pairs for 90 % power:"), "{md}");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.path().join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(json["pairs"][0]["pairs_for_90pct_power"], 2);
        assert!(
            md.contains("**sequential** uploaded above its cap in 1 of its 6 runs (up to 58 KB/s"),
            "{md}"
        );
        let svg = std::fs::read_to_string(d.path().join("compare.svg")).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        assert_eq!(
            doc.descendants()
                .filter(|n| n.has_tag_name("circle"))
                .count(),
            12
        );
        // A row from before --jobs (ten fields) reads as one at a time; with a row beside
        // another the tables say so.
        let old_header: Vec<&str> = HEADER.split(',').take(11).collect();
        std::fs::write(
            &csv,
            format!("{}\nsequential,42,0,0.05,10,server,1,exit code 0,9.5,3\nsequential,43,0,0.05,10,server,1,exit code 0,9.5,3,2\n", old_header.join(",")),
        )
        .unwrap();
        let mixed = read_runs(&csv).unwrap();
        assert_eq!((mixed[0].jobs, mixed[1].jobs), (1, 2));
        write_outputs(&c, &mixed).unwrap();
        let md = std::fs::read_to_string(d.path().join("compare.md")).unwrap();
        assert!(
            md.contains("1 of the 2 runs side by side (--jobs up to 2)"),
            "{md}"
        );
        std::fs::write(&csv, "head\nnot,a,row\n").unwrap();
        assert!(read_runs(&csv).unwrap_err().to_string().contains("line 2"));
    }

    /// A client line is shown in the tables as typed: Markdown in it neither splits a cell
    /// nor turns into emphasis; a pair that differs by chance gets a pairs-for-power figure.
    #[test]
    fn table_cells_show_lines_as_typed() {
        let d = tempfile::tempdir().unwrap();
        let line = "my_client --a *b* | c";
        let c = Comparison {
            out: d.path().into(),
            ..cmp(vec![
                Entrant::Policy(Policy::Deadline),
                Entrant::Client(line.into()),
            ])
        };
        let runs: Vec<Run> = [(0.10, 0.12), (0.20, 0.24), (0.15, 0.15), (0.30, 0.36)]
            .iter()
            .zip(42..)
            .flat_map(|(&(a, b), seed)| [row("deadline", seed, a), row(line, seed, b)])
            .collect();
        write_outputs(&c, &runs).unwrap();
        let md = std::fs::read_to_string(d.path().join("compare.md")).unwrap();
        let cell = r"my\_client --a \*b\* \| c";
        assert!(md.contains(&format!("| {cell} | 4 |")), "{md}");
        assert!(md.contains(&format!("| deadline − {cell} | 4 |")), "{md}");
        // Differences −2, −4, 0 and −6 points: mean −3, sd 2.58, so ((1.96 + 1.28) · 2.58 /
        // 3)² = 7.8: eight pairs for a verdict nine times in ten.
        let p = pairs(&c, &runs);
        assert_eq!(p[0].pairs_for_90pct_power, Some(8), "{p:?}");
        assert!(md.contains(" | 8 |\n"), "{md}");
    }

    /// `--name` names the command lines in order; a name is the resume key, so two entrants
    /// of one name are refused, and the legend under the tables says what each name ran.
    #[test]
    fn names_go_to_the_lines_in_order_and_must_be_apart() {
        let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let es = entrants(
            vec![Policy::Deadline],
            v(&[
                "vod-client --choker tyrant {torrent}",
                "my-client {torrent}",
            ]),
            v(&["aria2c {torrent}"]),
            v(&["tyrant", "mine", "ws"]),
        )
        .unwrap();
        let names: Vec<String> = es.iter().map(Entrant::name).collect();
        assert_eq!(names, ["deadline", "tyrant", "mine", "ws"]);
        let err = |p: Vec<Policy>, c: &[&str], n: &[&str]| {
            entrants(p, v(c), vec![], v(n)).unwrap_err().to_string()
        };
        assert!(err(vec![], &["a"], &["x", "y"]).contains("2 names for 1"));
        assert!(err(vec![Policy::Deadline], &["a"], &["deadline"]).contains("\"deadline\""));
        assert!(err(vec![], &["a", "a"], &[]).contains("two entrants"));
        assert!(err(vec![], &["a"], &[" "]).contains("empty"));
        assert!(err(vec![], &[" "], &[]).contains("empty --client line"));
        assert!(err(vec![], &["a"], &["x\ny"]).contains("line break"));
        assert!(err(vec![], &["a\nb"], &[]).contains("give it a --name"));
        assert!(entrants(vec![Policy::Rarest, Policy::Rarest], vec![], vec![], vec![]).is_err());

        let d = tempfile::tempdir().unwrap();
        let c = Comparison {
            out: d.path().into(),
            ..cmp(vec![es[0].clone(), es[1].clone(), es[3].clone()])
        };
        let runs = vec![
            row("deadline", 42, 0.1),
            row("tyrant", 42, 0.05),
            row("ws", 42, 0.2),
        ];
        write_outputs(&c, &runs).unwrap();
        let md = std::fs::read_to_string(d.path().join("compare.md")).unwrap();
        assert!(md.contains("| tyrant | 1 |"), "{md}");
        assert!(
            md.contains("- **tyrant**: `vod-client --choker tyrant {torrent}`\n"),
            "{md}"
        );
        assert!(
            md.contains("- **ws**: `aria2c {torrent}`, with the VoD server as its web seed"),
            "{md}"
        );
        let json = std::fs::read_to_string(d.path().join("summary.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            json["commands"]["tyrant"],
            "vod-client --choker tyrant {torrent}"
        );
        // A name or a line Markdown would read as markup is shown as typed.
        assert_eq!(md_text("a|b*c_"), "a\\|b\\*c\\_");
        assert_eq!(md_code("echo `date`"), "`` echo `date` ``");
        assert_eq!(md_code("`x`"), "`` `x` ``");
        assert_eq!(md_code("x"), "`x`");
    }

    #[test]
    fn seeds_parse() {
        assert_eq!(parse_seeds("42..51").unwrap(), 42..=51);
        assert_eq!(parse_seeds("7").unwrap(), 7..=7);
        assert!(parse_seeds("51..42").is_err());
        assert!(parse_seeds("x").unwrap_err().contains("--seeds x"));
    }
}
