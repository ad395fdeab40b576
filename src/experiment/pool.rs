//! `testbed compare --from DIR...`: finished compares read as one, running nothing. Pooling
//! is where runs are most easily counted twice or mixed across worlds, so most of this file
//! refuses: a folder given twice, a copy of a compare, a pooled folder beside its sources,
//! two configs, one name for two command lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::entrant::{Entrant, Line};
use super::lock::{folder_in_use, hold_folder, in_use};
use super::plan::Comparison;
use super::report::write_outputs;
use super::runs::{read_runs, scan_runs, whole_file, Run};
use super::summary::Summary;
use crate::policy::Policy;
use crate::util::fs::write_durable;

/// `testbed compare --from DIR...`: the runs of finished compares, read together and written
/// as one comparison in `out`, running nothing. A folder's runs of a seed count as more runs
/// of that seed (its repeats are numbered after the folders before it), so a seed run in two
/// compares is one seed run twice, and the intervals resample it whole. The entrants are those
/// of `entrants`' names (a `--client` is picked by its name in the folders' tables), else every
/// entrant the folders name, in the order they first appear.
/// Folders whose compares ran different configs are refused: their runs are not of one
/// world. Runs of several builds are named in the tables (runs.csv records each run's build).
pub fn pool(
    from: &[PathBuf],
    entrants: Vec<Entrant>,
    out: &Path,
    margin: f64,
) -> anyhow::Result<()> {
    if folder_in_use(out) {
        return Err(in_use(out));
    }
    let mut pooled = Pooled::default();
    for (k, dir) in from.iter().enumerate() {
        check_folder(&from[..k], dir, out)?;
        pooled.add(from, dir)?;
    }
    let entrants = pooled.entrants(entrants)?;
    let Pooled {
        runs,
        counts,
        config,
        ..
    } = pooled;
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
    write_durable(&out.join("runs.csv"), whole_file(&runs).as_bytes())?;
    let c = Comparison {
        config: crate::lab::config::Source::file(
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
        margin,
        keep_busy: false,
    };
    write_outputs(&c, &runs)
}

/// Whether `a` and `b` are one folder.
fn same(a: &Path, b: &Path) -> bool {
    std::fs::canonicalize(a)
        .ok()
        .is_some_and(|a| std::fs::canonicalize(b).ok() == Some(a))
}

/// Refuses a folder given twice (`before`: the folders given before it), the `--out` itself,
/// or a folder that is not a compare's.
fn check_folder(before: &[PathBuf], dir: &Path, out: &Path) -> anyhow::Result<()> {
    if before.iter().any(|d| same(d, dir)) {
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
    if !dir.join("runs.csv").is_file() {
        anyhow::bail!(
            "--from {}: no runs.csv there (is it a compare's --out?)",
            dir.display()
        );
    }
    Ok(())
}

/// What the folders read so far hold together.
#[derive(Default)]
struct Pooled {
    runs: Vec<Run>,
    /// Each folder with its number of runs.
    counts: Vec<(PathBuf, usize)>,
    /// Each entrant's command line, with the first folder that named it.
    commands: BTreeMap<String, (PathBuf, String)>,
    /// The first folder that named its config, with the config's path and digest.
    config: Option<(PathBuf, PathBuf, Option<String>)>,
    /// Every run seen so far, but for its repeat number: a copy of a compare, or a pooled
    /// folder beside one of its own sources, holds the same runs again.
    seen: BTreeMap<String, PathBuf>,
    /// The entrants in the order the folders' tables gave them.
    table_order: Vec<String>,
}

impl Pooled {
    /// Adds the runs of `dir`, one of `from`, after checking that they pool with those before.
    fn add(&mut self, from: &[PathBuf], dir: &Path) -> anyhow::Result<()> {
        let mut mine = folder_runs(dir)?;
        self.refuse_seen_runs(dir, &mine)?;
        let summary =
            Summary::read(dir).map_err(|e| anyhow::anyhow!("--from {}: {e}", dir.display()))?;
        self.refuse_another_config(dir, summary.as_ref())?;
        let summary = summary.unwrap_or_default();
        self.table_order
            .extend(summary.entrants.iter().map(|e| e.entrant.clone()));
        for source in summary.pooled_from.iter().map(|s| &s.out) {
            if let Some(other) = from.iter().find(|d| same(d, source)) {
                anyhow::bail!(
                    "--from {} and {}: the first is pooled from the second already, whose runs would count twice",
                    dir.display(),
                    other.display()
                );
            }
        }
        for (name, cmd) in &summary.commands {
            match self.commands.get(name) {
                None => {
                    self.commands
                        .insert(name.clone(), (dir.to_path_buf(), cmd.to_string()));
                }
                Some((first, c)) if c != cmd => anyhow::bail!(
                    "--from {} and {}: the entrant {name:?} ran {c:?} in one and {cmd:?} in the other; pool one command line under one name",
                    first.display(),
                    dir.display()
                ),
                Some(_) => {}
            }
        }
        let offset = self.runs.iter().map(|r| r.repeat + 1).max().unwrap_or(0);
        for r in &mut mine {
            r.repeat += offset;
        }
        self.counts.push((dir.to_path_buf(), mine.len()));
        self.runs.extend(mine);
        Ok(())
    }

    /// Two runs alike in every column (to a tenth of a second) are one run seen twice; one
    /// such pair could be chance, two cannot.
    fn refuse_seen_runs(&mut self, dir: &Path, mine: &[Run]) -> anyhow::Result<()> {
        let key = |r: &Run| {
            Run {
                repeat: 0,
                ..r.clone()
            }
            .csv()
        };
        let twice: Vec<(&Run, &PathBuf)> = mine
            .iter()
            .filter_map(|r| self.seen.get(&key(r)).map(|first| (r, first)))
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
        for r in mine {
            self.seen.insert(key(r), dir.to_path_buf());
        }
        Ok(())
    }

    /// Refuses a folder whose compare ran another config than the first that named one.
    fn refuse_another_config(
        &mut self,
        dir: &Path,
        summary: Option<&Summary>,
    ) -> anyhow::Result<()> {
        let path = summary
            .map(|j| j.config.clone())
            .filter(|p| !p.as_os_str().is_empty());
        let digest = summary.and_then(|j| j.config_sha1.clone());
        let Some(path) = path else { return Ok(()) };
        let Some((first, p, d)) = &self.config else {
            self.config = Some((dir.to_path_buf(), path, digest));
            return Ok(());
        };
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
        Ok(())
    }

    /// The entrants by the names the folders' tables give them (`asked`'s names, else every
    /// one the folders name): a policy, or a client line with the command the folders
    /// recorded for it. The runs of other entrants are left out.
    fn entrants(&mut self, asked: Vec<Entrant>) -> anyhow::Result<Vec<Entrant>> {
        let mut names: Vec<String> = asked.iter().map(Entrant::name).collect();
        if names.is_empty() {
            // In the order the folders' tables gave them (runs.csv is in the order runs
            // ended), then any entrant only runs.csv names.
            for name in self
                .table_order
                .iter()
                .chain(self.runs.iter().map(|r| &r.entrant))
            {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
        let entrants: Vec<Entrant> = names.into_iter().map(|n| self.entrant(n)).collect();
        let names: BTreeSet<String> = entrants.iter().map(Entrant::name).collect();
        self.runs.retain(|r| names.contains(&r.entrant));
        if entrants.len() < 2 {
            anyhow::bail!(
                "--from: the folders name {} entrant(s); a comparison needs two",
                entrants.len()
            );
        }
        for e in &entrants {
            if !self.runs.iter().any(|r| r.entrant == e.name()) {
                anyhow::bail!("--from: no folder has a run of {:?}", e.name());
            }
        }
        Ok(entrants)
    }

    /// The entrant the folders call `name`.
    fn entrant(&self, name: String) -> Entrant {
        match <Policy as clap::ValueEnum>::from_str(&name, false) {
            Ok(p) => Entrant::Policy(p),
            Err(_) => Entrant::Client(match self.commands.get(&name).map(|(_, c)| c) {
                Some(cmd) if *cmd != name => Line {
                    cmd: cmd.clone(),
                    name: Some(name),
                },
                _ => Line {
                    cmd: name,
                    name: None,
                },
            }),
        }
    }
}

/// The runs of `dir`. A compare still running there may be writing its next row: the rows
/// before it are whole, and are pooled.
fn folder_runs(dir: &Path) -> anyhow::Result<Vec<Run>> {
    let csv = dir.join("runs.csv");
    if !folder_in_use(dir) {
        return read_runs(&csv);
    }
    let runs = scan_runs(&csv)?.runs;
    crate::util::outln!(
        "compare: --from {}: a compare is still running there; its {} runs so far are pooled",
        dir.display(),
        runs.len()
    );
    Ok(runs)
}

/// Refuse an `--out` that holds a compare's own runs (a pooled folder's tables can be made
/// again from its sources, a compare's runs cannot): the default `run/compare` is often one.
fn refuse_to_replace_a_compare(out: &Path) -> anyhow::Result<()> {
    if !out.join("runs.csv").exists() {
        return Ok(());
    }
    let pooled = Summary::read(out)
        .ok()
        .flatten()
        .is_some_and(|s| !s.pooled_from.is_empty());
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
