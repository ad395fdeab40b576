//! `runs.csv`: one row per run, appended as each run ends, so that the same compare command
//! resumes where it stopped. The format has grown a column at a time (`--jobs`, the referee's
//! figures, the build, the world's and the wasted shares), and a row of every older form is
//! still read; under today's header a row is whole only with every column and its build, so a
//! row cut short by a stopped compare is told from an old one and dropped, not trusted.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::util::fs::write_durable;

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

pub(super) const HEADER: &str = "entrant,seed,repeat,share,penalty_bytes,penalty_source,late_pieces,my_client_exit,seconds,startup_pieces,jobs,first_piece_at,upload_peak_kbps,upload_over_cap,world_share,wasted_share,build";

impl Run {
    pub(in crate::experiment) fn csv(&self) -> String {
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

pub(super) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Split one CSV line (quotes as [`csv_field`] writes them).
pub(super) fn csv_split(line: &str) -> Vec<String> {
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
pub(in crate::experiment) struct Rows {
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
    pub(super) ready: std::sync::atomic::AtomicBool,
}

/// A build as [`Live`] records it: twelve lowercase hex digits.
pub(super) fn is_build(b: &str) -> bool {
    b.len() == 12
        && b.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// One row of `runs.csv`; ten fields is a row from before `--jobs` (one at a time), eleven
/// one from before `first_piece_at`, twelve one from before the upload columns, fourteen one
/// from before the build, fifteen one from before the world's and the wasted shares.
pub(in crate::experiment) fn parse_run(line: &str) -> Option<Run> {
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

/// Whether `runs` has the row of `entrant` on `seed`, repeat `repeat`.
pub(in crate::experiment) fn has_run(runs: &[Run], entrant: &str, seed: u64, repeat: u32) -> bool {
    runs.iter()
        .any(|x| x.entrant == entrant && x.seed == seed && x.repeat == repeat)
}
