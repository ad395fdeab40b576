//! What a compare is asked: the scenario, the seeds and repeats, the entrants, where it writes
//! and where it runs (here, `--jobs` at a time, or as a Slurm array), and the order of its
//! runs ([`schedule`]): seed by seed, the entrants turned by one each time, so that the
//! machine's drift spreads over all of them.

use std::path::{Path, PathBuf};

use super::entrant::Entrant;

/// What to compare.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The scenario; `--run-dir` and `--port`, if given, are the runs' (with `--jobs`, run
    /// folders `DIR-K` and any free port).
    pub config: crate::lab::config::Source,
    pub seeds: std::ops::RangeInclusive<u64>,
    pub repeat: u32,
    pub entrants: Vec<Entrant>,
    pub out: PathBuf,
    /// Experiments run together (1: one at a time).
    pub jobs: usize,
    /// Run as one Slurm job array instead of here.
    pub slurm: Option<Slurm>,
    /// (`--from`) The finished compares whose runs these are, with how many each gave: a
    /// pooled comparison runs nothing.
    pub pooled_from: Vec<(PathBuf, usize)>,
    /// The SHA-1 of the config's bytes, written to summary.json so that `--from` pools only
    /// runs of one scenario (by content: the same path may have been edited between two
    /// compares). `None`: unknown.
    pub config_sha1: Option<String>,
    /// The equivalence margin δ, a share of the file (`--margin` points / 100).
    pub margin: f64,
    /// Keep the real-engine runs whose machine was over [`super::runs::BUSY`] busy (left out
    /// by default).
    pub keep_busy: bool,
}

/// `--margin`'s default: 2 points. Reruns of one world spread by 2 to 4 points (sd) on the
/// standard experiment: two policies within 2 points differ by less than the lab's own noise.
pub const DEFAULT_MARGIN: f64 = 0.02;

/// How to submit a compare as a Slurm job array (`compare --slurm`).
#[derive(Debug, Clone, Default)]
pub struct Slurm {
    pub partition: Option<String>,
    /// `--time` of each task (Slurm's formats, e.g. `10:00`).
    pub time: Option<String>,
    /// More `sbatch` arguments, as given.
    pub sbatch_args: Vec<String>,
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
