//! Many runs: `testbed compare`. Is policy (or client) A better than B? Every entrant (a built-in policy
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
//! the penalty's share of the file; per pair: the paired difference with its interval, one of
//! three verdicts ("A better", "equivalent within ±δ", "inconclusive"), and how many pairs would settle that
//! difference nine times in ten, so that a user can tell a close call from a level one and
//! plan the next compare), `summary.json`, and `compare.svg` (each run a dot, each interval a
//! bar).
//!
//! The parts, each using only those listed before it: [`entrant`] (who runs), [`runs`] (the
//! `runs.csv` format), [`lock`] (one compare a folder), [`plan`] (what a compare is asked, and
//! the order of its runs), [`verdict`] (the statistics), [`exec`] (where the runs execute:
//! [`exec::local`] or [`exec::slurm`]), [`summary`] (`summary.json`, typed for writer and reader), [`report`] (compare.md,
//! summary.json, compare.svg),
//! [`pool`] (`--from`), [`power`] (`--plan`: seeds for a planned power), [`compare`] (the
//! driver) and [`sequential`] (`--until-settled`: batches of seeds, anytime-valid verdicts).

pub mod compare;
pub mod entrant;
pub mod exec;
pub mod lock;
pub mod plan;
pub mod pool;
pub mod power;
pub mod report;
pub mod runs;
pub mod sequential;
pub mod summary;
#[cfg(test)]
mod tests;
pub mod verdict;

pub use compare::compare;
pub use entrant::entrants;
pub use plan::{file_sha1, parse_seeds, Comparison, Slurm};
pub use pool::pool;
