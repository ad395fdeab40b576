//! `summary.json`: a compare's figures for a script, and what `--from` reads back. One typed
//! struct for the writer ([`super::report`]) and the reader ([`super::pool`]), as the lab's
//! `api.rs` is for its state: a field renamed on one side fails to compile on the other.
//!
//! Every field has a default, so that a summary from an older build, which lacks the newer
//! fields, still reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::verdict::{EntrantStats, PairStats, Startup};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    /// The scenario's path, as the compare was given it.
    pub config: PathBuf,
    /// The SHA-1 of the scenario's bytes (`None`: unknown), so that `--from` pools only runs
    /// of one scenario.
    pub config_sha1: Option<String>,
    /// Per build (the first 12 hex digits of the SHA-1 of `testbed` and `vod-client`), its runs.
    pub builds: BTreeMap<String, usize>,
    /// Runs from before `runs.csv` recorded the build.
    pub runs_without_build: usize,
    /// The first and last seed.
    pub seeds: (u64, u64),
    pub repeat: u32,
    pub jobs: usize,
    /// Runs of the real engine with others on the machine (`--jobs`).
    pub runs_side_by_side: usize,
    pub runs_on_slurm: usize,
    /// Runs of the Shadow engine.
    #[serde(default)]
    pub runs_simulated: usize,
    /// Real-engine runs on a machine over 90 % busy: left out of every figure (unless
    /// `--keep-busy`, then counted here and kept).
    #[serde(default)]
    pub runs_busy: usize,
    #[serde(default)]
    pub busy_left_out: bool,
    /// The finished compares these runs were pooled from (`--from`), with their runs.
    pub pooled_from: Vec<PooledFrom>,
    /// What the intervals resample: "seeds" (each with all its runs) or "runs".
    pub intervals_resample: String,
    pub entrants: Vec<EntrantStats>,
    /// A client entrant's name and its command line.
    pub commands: BTreeMap<String, String>,
    pub pairs: Vec<PairStats>,
    pub waste_pairs: Vec<PairStats>,
    pub startup: Vec<Startup>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PooledFrom {
    pub out: PathBuf,
    pub runs: usize,
}

impl Summary {
    /// `DIR/summary.json`: `None` where there is none; an error naming the file where it does
    /// not parse.
    pub fn read(dir: &Path) -> anyhow::Result<Option<Summary>> {
        let path = dir.join("summary.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => anyhow::bail!("{}: {e}", path.display()),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}
