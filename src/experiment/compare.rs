//! `testbed compare`, the driver: run what `OUT/runs.csv` lacks (here or as a Slurm array),
//! holding the folder for as long as it runs, then write the verdicts.

use anyhow::Context;

use super::exec::{local::run_here, slurm::run_array};
use super::lock::hold_folder;
use super::plan::{schedule, Comparison};
use super::report::write_outputs;
use super::runs::{drop_cut_row, has_run, scan_runs, whole_file, Rows, RunsFile};
use crate::util::fs::write_durable;

/// Run what is not in `OUT/runs.csv` yet, then write the verdicts.
pub fn compare(c: &Comparison) -> anyhow::Result<()> {
    if c.entrants.len() < 2 {
        anyhow::bail!("compare needs at least two entrants (--policy P, --client 'CMD' or --web-seed-client 'CMD')");
    }
    let path = &c.config.path;
    let mut base: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?,
    )
    .with_context(|| format!("{}", path.display()))?;
    c.config.load()?;
    if let Some(e) = c.config.engine {
        // In every run's config: each run folder says what ran it.
        base["engine"] = e.to_string().into();
    }
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
        write_durable(&csv, whole_file(&[]).as_bytes())?;
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
        Some(slurm) => run_array(c, slurm, &csv, runs, &todo)?,
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
