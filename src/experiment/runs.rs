//! `runs.csv`: one row per run, appended as each run ends, so that the same compare command
//! resumes where it stopped.
//!
//! The file is read and written by column name through the `csv` crate ([`Record`] is its
//! schema). Today's rows carry the format's version in their last column, `format` =
//! [`FORMAT`]; a file from before that column (the header is then a prefix of today's, and
//! the columns a build did not write read as empty) is format 1 and still reads. Runs are
//! appended one by one, so a compare stopped mid-write leaves a last row cut short: a row is
//! whole when it ends its line, or when its last field is the version (which the writer puts
//! last), and a cut one is told from a whole one, reported, and never trusted.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::util::fs::write_durable;

/// The version of the `runs.csv` format this build writes; 1 is any file from before the
/// `format` column.
pub const FORMAT: u32 = 2;

/// One run, as the compare and its report use it.
#[derive(Debug, Clone, PartialEq)]
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
    /// Which executor ran it.
    pub placement: Placement,
    /// Experiments the compare ran together on this machine (`--jobs`) when this one ran; 1
    /// on Slurm, where the scheduler decided what shared its node.
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
    /// The engine that ran it: `real` or `shadow` (`real` in a row from before the column).
    pub engine: String,
    /// How busy the machine that ran it was, over the run: the share of all its cores' time
    /// not idle, the lab's own processes included (`None`: not measured).
    pub cpu_busy: Option<f64>,
}

/// A run of the real engine whose machine was busier than this ([`Run::cpu_busy`]) is
/// flagged, and left out of the tables unless `--keep-busy`. Declared before any compare
/// looked at it: the standard experiment keeps a 2-core machine 30 to 60 % busy one at a time.
pub const BUSY: f64 = 0.9;

impl Run {
    /// Flagged busy: a real-engine run on a machine over [`BUSY`] (a simulation's timing is
    /// the simulator's, whatever the machine does).
    pub fn busy(&self) -> bool {
        self.engine != "shadow" && self.cpu_busy.is_some_and(|b| b > BUSY)
    }
}

/// Where a run executed: the `placement` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// On the machine of the compare ([`crate::experiment::exec::local`]).
    #[default]
    Local,
    /// As a Slurm array task ([`crate::experiment::exec::slurm`]).
    Slurm,
}

/// A row of `runs.csv` as it is on disk: its columns, by name, in the order written.
/// Columns added after the first form are optional, so older files read.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    entrant: String,
    seed: u64,
    repeat: u32,
    share: f64,
    penalty_bytes: u64,
    penalty_source: String,
    late_pieces: u64,
    my_client_exit: String,
    seconds: f64,
    startup_pieces: u64,
    /// Format 1 had no placement: there `jobs` 0 meant a Slurm task.
    #[serde(default)]
    placement: Option<Placement>,
    #[serde(default)]
    jobs: Option<usize>,
    #[serde(default)]
    first_piece_at: Option<f64>,
    #[serde(default)]
    upload_peak_kbps: Option<f64>,
    /// 0 or 1.
    #[serde(default)]
    upload_over_cap: Option<u8>,
    #[serde(default)]
    world_share: Option<f64>,
    #[serde(default)]
    wasted_share: Option<f64>,
    #[serde(default)]
    build: String,
    #[serde(default)]
    engine: Option<String>,
    #[serde(default)]
    cpu_busy: Option<f64>,
    /// Last, so that a row whose last field is the version is known to be whole.
    #[serde(default)]
    format: Option<u32>,
}

/// Today's header: [`Record`]'s columns.
pub(super) const HEADER: &str = "entrant,seed,repeat,share,penalty_bytes,penalty_source,late_pieces,my_client_exit,seconds,startup_pieces,placement,jobs,first_piece_at,upload_peak_kbps,upload_over_cap,world_share,wasted_share,build,engine,cpu_busy,format";

/// The columns every form of the file has.
const REQUIRED: usize = 10;

/// `x` to `places` decimals, as the file keeps it.
fn round(x: f64, places: i32) -> f64 {
    let k = 10f64.powi(places);
    (x * k).round() / k
}

impl From<&Run> for Record {
    fn from(r: &Run) -> Record {
        Record {
            entrant: r.entrant.clone(),
            seed: r.seed,
            repeat: r.repeat,
            share: round(r.share, 6),
            penalty_bytes: r.penalty_bytes,
            penalty_source: r.penalty_source.clone(),
            late_pieces: r.late_pieces,
            my_client_exit: r.my_client_exit.clone(),
            seconds: round(r.seconds, 1),
            startup_pieces: r.startup_pieces,
            placement: Some(r.placement),
            jobs: Some(r.jobs),
            first_piece_at: r.first_piece_at.map(|t| round(t, 2)),
            upload_peak_kbps: r.upload_peak.map(|x| round(x, 1)),
            upload_over_cap: Some(r.upload_over_cap as u8),
            world_share: r.world_share.map(|x| round(x, 6)),
            wasted_share: r.wasted_share.map(|x| round(x, 6)),
            build: r.build.clone(),
            engine: Some(r.engine.clone()),
            cpu_busy: r.cpu_busy.map(|x| round(x, 3)),
            format: Some(FORMAT),
        }
    }
}

impl From<Record> for Run {
    fn from(r: Record) -> Run {
        let legacy_slurm = r.placement.is_none() && r.jobs == Some(0);
        Run {
            entrant: r.entrant,
            seed: r.seed,
            repeat: r.repeat,
            share: r.share,
            penalty_bytes: r.penalty_bytes,
            penalty_source: r.penalty_source,
            late_pieces: r.late_pieces,
            my_client_exit: r.my_client_exit,
            seconds: r.seconds,
            startup_pieces: r.startup_pieces,
            placement: match legacy_slurm {
                true => Placement::Slurm,
                false => r.placement.unwrap_or_default(),
            },
            jobs: r.jobs.filter(|&j| j > 0).unwrap_or(1),
            first_piece_at: r.first_piece_at,
            upload_peak: r.upload_peak_kbps,
            upload_over_cap: r.upload_over_cap == Some(1),
            world_share: r.world_share,
            wasted_share: r.wasted_share,
            build: r.build,
            engine: r.engine.unwrap_or_else(|| "real".into()),
            cpu_busy: r.cpu_busy,
        }
    }
}

impl Run {
    /// The row's line in today's format, with its end of line.
    pub(in crate::experiment) fn csv(&self) -> String {
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        w.serialize(Record::from(self))
            .and_then(|()| w.flush().map_err(csv::Error::from))
            .expect("a Record always serializes");
        String::from_utf8(w.into_inner().expect("flushed")).expect("UTF-8 fields")
    }
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
pub(in crate::experiment) struct Rows {
    pub runs: Vec<Run>,
    /// The line of a last row cut short: its compare stopped while appending it.
    pub cut: Option<usize>,
    /// Today's header and rows, each ending its line: a compare may append to it as it is.
    pub current: bool,
}

/// Reads a `runs.csv` (see the module's doc). The last row, if it is cut short and has no
/// end of line, is reported in [`Rows::cut`] rather than refused; any other row that is not
/// a run is an error naming its line and why.
pub(in crate::experiment) fn scan_runs(path: &Path) -> anyhow::Result<Rows> {
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
    let at = |line: u64| format!("{}: line {line}", path.display());
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = reader
        .headers()
        .map_err(|e| anyhow::anyhow!("{}: {e}", at(1)))?
        .clone();
    check_header(&header).map_err(|why| anyhow::anyhow!("{}: {why}", at(1)))?;
    let versioned = header.iter().next_back() == Some("format");
    let version = FORMAT.to_string();
    let mut records = reader.records().peekable();
    let (mut runs, mut cut) = (Vec::new(), None);
    while let Some(record) = records.next() {
        let record = record.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let line = record.position().map_or(0, |p| p.line());
        let unended = records.peek().is_none() && !text.ends_with('\n');
        let columns = match versioned {
            true => Some(header.clone()).filter(|h| h.len() == record.len()),
            false => format1_columns(record.len()),
        };
        // Only the version as the last field says a row with no end of line is whole.
        let whole =
            !unended || (versioned && record.get(header.len() - 1) == Some(version.as_str()));
        let columns = match columns {
            Some(columns) if whole => columns,
            _ if unended => {
                cut = Some(line as usize);
                break;
            }
            _ => anyhow::bail!(
                "{}: not a run row ({} fields; {})",
                at(line),
                record.len(),
                match versioned {
                    true => format!("the header has {}", header.len()),
                    false => "a row of format 1 has 10 to 12, 14, 15 or 17".into(),
                }
            ),
        };
        let row: Record = record
            .deserialize(Some(&columns))
            .map_err(|e| anyhow::anyhow!("{}: not a run row ({})", at(line), why(&e, &columns)))?;
        if let Some(v) = row.format.filter(|&v| v > FORMAT) {
            anyhow::bail!(
                "{}: a row of format {v}, written by a newer testbed (this one reads 1 to {FORMAT})",
                at(line)
            );
        }
        runs.push(Run::from(row));
    }
    let current = header.iter().eq(HEADER.split(',')) && text.ends_with('\n') && cut.is_none();
    Ok(Rows { runs, cut, current })
}

/// The columns of format 1, in the order it wrote them (before `placement` and `format`).
pub const FORMAT1_COLUMNS: [&str; 17] = [
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
    "world_share",
    "wasted_share",
    "build",
];

/// The columns of a row of format 1, told by its count: that format had no version, and a
/// compare appended rows of its own build to a file an older build had begun, so one file
/// may hold rows of several counts (ten: before `--jobs`; eleven: before `first_piece_at`;
/// twelve: before the upload columns; fourteen: before the build; fifteen: before the
/// world's and the wasted shares).
fn format1_columns(n: usize) -> Option<csv::StringRecord> {
    match n {
        10..=12 | 14 | 17 => Some(FORMAT1_COLUMNS[..n].iter().copied().collect()),
        15 => Some(
            FORMAT1_COLUMNS[..14]
                .iter()
                .copied()
                .chain(["build"])
                .collect(),
        ),
        _ => None,
    }
}

/// Whether `header` is one this build reads: the first columns of every form, and no column
/// it does not know (a newer testbed's).
fn check_header(header: &csv::StringRecord) -> Result<(), String> {
    let known: Vec<&str> = HEADER.split(',').collect();
    if let Some(c) = header.iter().find(|c| !known.contains(c)) {
        return Err(format!(
            "column `{c}` is not one this testbed knows (written by a newer one? this one reads \
             runs.csv format 1 to {FORMAT})"
        ));
    }
    match known[..REQUIRED]
        .iter()
        .find(|c| !header.iter().any(|h| h == **c))
    {
        Some(c) => Err(format!("no `{c}` column: not a runs.csv header")),
        None => Ok(()),
    }
}

/// A field that does not read, in a user's words: its column and what it holds.
fn why(e: &csv::Error, header: &csv::StringRecord) -> String {
    match e.kind() {
        csv::ErrorKind::Deserialize { err, .. } => match err.field() {
            Some(k) => format!(
                "column {}: {}",
                header.get(k as usize).unwrap_or("?"),
                err.kind()
            ),
            None => err.kind().to_string(),
        },
        _ => e.to_string(),
    }
}

/// Drops the last line of `path`, cut short by a compare stopped while writing it (see
/// [`scan_runs`]): the file then ends at the end of its last whole line. The line is kept,
/// with its end of line, at the end of `path` + `.cut` ([`CUT`]): under an older header a whole
/// row whose end of line an editor took away cannot be told from a cut one, and nothing a
/// user wrote is thrown away.
pub(super) fn drop_cut_row(path: &Path) -> anyhow::Result<PathBuf> {
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
pub(super) const CUT: &str = "runs.csv.cut";

/// The `runs.csv` a compare appends its rows to.
pub(in crate::experiment) struct RunsFile {
    pub path: PathBuf,
    /// Whether rows can be appended to it as it is (today's header, every line ended);
    /// else the first row rewrites it, the rows it had under today's header, then that row.
    pub(super) ready: AtomicBool,
}

impl RunsFile {
    /// Writes the last of `done` (every row of the file: those it had, then those this
    /// compare made) to the file: appended, or, the first time into a file of an older
    /// form, the whole file again in today's.
    pub(in crate::experiment) fn append(&self, done: &[Run]) -> anyhow::Result<()> {
        let path = &self.path;
        let Some(run) = done.last() else {
            return Ok(());
        };
        if self.ready.load(SeqCst) {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .with_context(|| format!("{}", path.display()))?;
            std::io::Write::write_all(&mut f, run.csv().as_bytes())
                .with_context(|| format!("{}", path.display()))?;
        } else {
            write_durable(path, whole_file(done).as_bytes())?;
            self.ready.store(true, SeqCst);
        }
        Ok(())
    }
}

/// A `runs.csv` of `runs` in today's format.
pub(in crate::experiment) fn whole_file(runs: &[Run]) -> String {
    std::iter::once(format!("{HEADER}\n"))
        .chain(runs.iter().map(Run::csv))
        .collect()
}

/// Whether `runs` has the row of `entrant` on `seed`, repeat `repeat`.
pub(in crate::experiment) fn has_run(runs: &[Run], entrant: &str, seed: u64, repeat: u32) -> bool {
    runs.iter()
        .any(|x| x.entrant == entrant && x.seed == seed && x.repeat == repeat)
}
