//! `testbed compare --slurm`: the runs of a compare as one Slurm job array, one task per run.
//! Slurm schedules; the lab writes no scheduler.
//!
//! The compare writes its plan (`OUT/slurm/plan.json`: the scenario and, per task, the entrant,
//! seed and repeat) and submits `sbatch --array=0-(N-1)` of `testbed slurm-task --plan ...`.
//! Each task is an isolated testbed on whatever node Slurm gives it: its own run folder
//! (`OUT/slurm/run-K`, or `DIR-K` with `--run-dir DIR`, e.g. on a node-local disk), any free
//! tracker port, its own network namespace and cgroup (made
//! inside the job's, so that the end of the job ends it too). A task writes its row to
//! `OUT/slurm/rows/K.csv` when its run ends; the compare, waiting on `squeue`, moves each row
//! into `OUT/runs.csv` as it appears, so the outputs and the resuming are a local compare's:
//! the same command again submits only what `runs.csv` lacks, and attaches to its earlier array
//! if that one is still queued or running. Ctrl-C cancels the array (`scancel`) and keeps every
//! finished row.
//!
//! Everything sits on a filesystem the nodes share: the `testbed` binary, the config, the
//! fresh files and `OUT`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{one_run, record, Live, Progress, Slot};
use crate::experiment::entrant::Entrant;
use crate::experiment::plan::{Comparison, Slurm};
use crate::experiment::runs::{has_run, read_runs, whole_file, Placement, Run, RunsFile};
use crate::util::fs::write_atomic;

/// What the tasks of one array run (`OUT/slurm/plan.json`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Plan {
    /// The scenario, absolute.
    pub config: PathBuf,
    /// `OUT/slurm`, absolute.
    pub dir: PathBuf,
    /// `--run-dir DIR`: task K runs in `DIR-K` on its node (a node-local disk spares the
    /// shared filesystem the world's downloads); default `OUT/slurm/run-K`.
    #[serde(default)]
    pub run_base: Option<PathBuf>,
    /// `--engine`, instead of the scenario's.
    #[serde(default)]
    pub engine: Option<crate::lab::config::Engine>,
    pub tasks: Vec<Task>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    pub entrant: Entrant,
    pub seed: u64,
    pub repeat: u32,
}

/// Seconds between two looks at the queue.
const POLL: Duration = Duration::from_secs(2);

/// Run `todo` as Slurm array tasks: every row made, and whether the compare was stopped.
pub(in crate::experiment) fn run_array(
    c: &Comparison,
    slurm: &Slurm,
    csv: &RunsFile,
    mut runs: Vec<Run>,
    todo: &[(Entrant, u64, u32)],
) -> anyhow::Result<(Vec<Run>, bool)> {
    let dir = std::path::absolute(c.out.join("slurm"))?;
    std::fs::create_dir_all(dir.join("rows"))
        .and_then(|()| std::fs::create_dir_all(dir.join("logs")))
        .with_context(|| format!("{}", dir.display()))?;
    let live = Arc::new(Live::new()?);
    let _signals = live.clone().forward_signals()?;
    let progress = Progress {
        already: runs.len(),
        todo: todo.len(),
        t0: Instant::now(),
    };
    // An array of an earlier compare that is still queued or running: wait for it first.
    if let Some(job) = std::fs::read_to_string(dir.join("job"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|j| !j.is_empty())
    {
        if queued(&job)?.is_some_and(|q| q.total() > 0) {
            crate::util::outln!("compare: attaching to Slurm job {job}, still queued or running");
            if wait(c, &job, &dir, csv, &mut runs, &live, progress)? {
                return Ok((runs, true));
            }
        }
    }
    gather(c, &dir, csv, &mut runs, progress)?;
    let left: Vec<Task> = todo
        .iter()
        .filter(|(e, s, r)| !has_run(&runs, &e.name(), *s, *r))
        .map(|(entrant, seed, repeat)| Task {
            entrant: entrant.clone(),
            seed: *seed,
            repeat: *repeat,
        })
        .collect();
    if left.is_empty() {
        return Ok((runs, false));
    }
    let plan = Plan {
        config: std::path::absolute(&c.config.path)?,
        dir: dir.clone(),
        run_base: c
            .config
            .run_dir
            .clone()
            .map(std::path::absolute)
            .transpose()?,
        engine: c.config.engine,
        tasks: left,
    };
    // A rebuild since the compare began would be what the tasks start.
    live.same_build()?;
    let job = submit(slurm, &plan, &live.exe.0)?;
    crate::util::outln!(
        "compare: Slurm job {job}: {} runs as array tasks 0-{} (logs in {})",
        plan.tasks.len(),
        plan.tasks.len() - 1,
        dir.join("logs").display()
    );
    let stopped = wait(c, &job, &dir, csv, &mut runs, &live, progress)?;
    if stopped {
        return Ok((runs, true));
    }
    let failed = tasks_without_a_row(&plan, &dir, &runs);
    if !failed.is_empty() {
        anyhow::bail!(
            "compare --slurm: {} of {} runs left no row: {}",
            failed.len(),
            plan.tasks.len(),
            failed.join("; ")
        );
    }
    Ok((runs, false))
}

/// Each task of `plan` that left no row in `runs`, with the last line of its log.
fn tasks_without_a_row(plan: &Plan, dir: &Path, runs: &[Run]) -> Vec<String> {
    plan.tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| !has_run(runs, &t.entrant.name(), t.seed, t.repeat))
        .map(|(k, t)| {
            let log = dir.join("logs").join(format!("{k}.log"));
            let last = std::fs::read_to_string(&log)
                .ok()
                .and_then(|s| {
                    s.lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "no log".into());
            format!(
                "{} on seed {} (task {k}, {}: {last})",
                t.entrant.name(),
                t.seed,
                log.display()
            )
        })
        .collect()
}

/// Writes the plan and the batch script, submits the array; its job id.
fn submit(slurm: &Slurm, plan: &Plan, exe: &Path) -> anyhow::Result<String> {
    let plan_path = plan.dir.join("plan.json");
    write_atomic(&plan_path, serde_json::to_string_pretty(plan)?.as_bytes())?;
    // Rows and logs of an earlier array belong to its plan, not this one.
    for sub in ["rows", "logs"] {
        let d = plan.dir.join(sub);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).with_context(|| format!("{}", d.display()))?;
    }
    let script = plan.dir.join("array.sh");
    write_atomic(
        &script,
        format!(
            "#!/bin/sh\n# One run of a testbed compare per array task (written by testbed compare --slurm).\nexec {} slurm-task --plan {}\n",
            shell_quote(&exe.to_string_lossy()),
            shell_quote(&plan_path.to_string_lossy())
        )
        .as_bytes(),
    )?;
    let mut cmd = Command::new("sbatch");
    cmd.arg("--parsable")
        .arg(format!("--array=0-{}", plan.tasks.len() - 1))
        .arg("--job-name=testbed-compare")
        .arg(format!(
            "--output={}",
            plan.dir.join("logs/%a.log").display()
        ))
        .arg(format!("--chdir={}", std::env::current_dir()?.display()));
    if let Some(p) = &slurm.partition {
        cmd.arg(format!("--partition={p}"));
    }
    if let Some(t) = &slurm.time {
        cmd.arg(format!("--time={t}"));
    }
    cmd.args(&slurm.sbatch_args).arg(&script);
    let out = cmd
        .output()
        .context("cannot run sbatch: is Slurm installed here (and SLURM_CONF set, if needed)?")?;
    if !out.status.success() {
        anyhow::bail!(
            "sbatch refused the array: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // `--parsable`: "JOBID" or "JOBID;CLUSTER".
    let text = String::from_utf8_lossy(&out.stdout);
    let job = text.trim().split(';').next().unwrap_or("").to_string();
    if job.is_empty() || !job.chars().all(|ch| ch.is_ascii_digit()) {
        anyhow::bail!("sbatch printed no job id: {:?}", text.trim());
    }
    write_atomic(&plan.dir.join("job"), format!("{job}\n").as_bytes())?;
    Ok(job)
}

/// What `squeue` says of an array's tasks.
#[derive(Debug, Default, PartialEq)]
struct Queued {
    pending: usize,
    running: usize,
    other: usize,
}

impl Queued {
    fn total(&self) -> usize {
        self.pending + self.running + self.other
    }

    /// From `squeue -h -r -o %T` output: one state per task.
    fn parse(text: &str) -> Queued {
        let mut q = Queued::default();
        for state in text.split_whitespace() {
            match state {
                "PENDING" => q.pending += 1,
                "RUNNING" | "COMPLETING" | "CONFIGURING" => q.running += 1,
                _ => q.other += 1,
            }
        }
        q
    }
}

/// The tasks of `job` still in the queue; `None` when Slurm no longer knows the job (it ended
/// and was purged).
fn queued(job: &str) -> anyhow::Result<Option<Queued>> {
    let out = Command::new("squeue")
        .args(["-h", "-r", "-o", "%T", "-j", job])
        .output()
        .context("cannot run squeue")?;
    if out.status.success() {
        return Ok(Some(Queued::parse(&String::from_utf8_lossy(&out.stdout))));
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("Invalid job id") {
        return Ok(None);
    }
    anyhow::bail!("squeue -j {job}: {}", err.trim())
}

/// Waits until `job` has left the queue, moving rows into `runs.csv` as they come. `true` when
/// the compare was stopped (the array is then cancelled).
fn wait(
    c: &Comparison,
    job: &str,
    dir: &Path,
    csv: &RunsFile,
    runs: &mut Vec<Run>,
    live: &Live,
    progress: Progress,
) -> anyhow::Result<bool> {
    let mut failures = 0;
    let mut last = String::new();
    let mut rebuilt = None;
    // Once the queue is empty: the error of a rebuild, else done.
    let ended = |rebuilt: Option<anyhow::Error>| rebuilt.map_or(Ok(false), Err);
    loop {
        gather(c, dir, csv, runs, progress)?;
        if live.stopping() {
            cancel(job);
            gather(c, dir, csv, runs, progress)?;
            return Ok(true);
        }
        // The tasks still pending would start the new build: they are cancelled, as a compare
        // on this machine stops before its next run; the running ones started the old build,
        // and their rows are gathered when they end.
        if rebuilt.is_none() {
            if let Err(e) = live.same_build() {
                crate::util::outln!(
                    "compare: {e:#}; cancelling the pending tasks of Slurm job {job}, keeping the running ones"
                );
                let _ = Command::new("scancel")
                    .args(["--state=PENDING", job])
                    .status();
                rebuilt = Some(e);
            }
        }
        match queued(job) {
            Ok(None) => return ended(rebuilt),
            Ok(Some(q)) if q.total() == 0 => return ended(rebuilt),
            Ok(Some(q)) => {
                failures = 0;
                let line = format!(
                    "compare: Slurm job {job}: {} running, {} pending",
                    q.running, q.pending
                );
                if line != last {
                    crate::util::outln!("{line}");
                    last = line;
                }
            }
            // A controller that does not answer for a while (restarting, busy) is waited for.
            Err(e) => {
                failures += 1;
                if failures >= 30 {
                    return Err(e.context(format!("compare: lost track of Slurm job {job}")));
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

/// `scancel` the array and wait (at most a minute) until it has left the queue: each task's
/// `testbed run` gets SIGTERM and ends its world.
fn cancel(job: &str) {
    eprintln!("compare: cancelling Slurm job {job}");
    let _ = Command::new("scancel").arg(job).status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match queued(job) {
            Ok(Some(q)) if q.total() > 0 => std::thread::sleep(POLL / 4),
            _ => return,
        }
    }
    eprintln!("compare: Slurm job {job} is still in the queue after a minute of scancel");
}

/// Moves the rows the tasks wrote into `runs.csv` (skipping any it has already).
fn gather(
    c: &Comparison,
    dir: &Path,
    csv: &RunsFile,
    runs: &mut Vec<Run>,
    progress: Progress,
) -> anyhow::Result<()> {
    let rows = dir.join("rows");
    let Ok(entries) = std::fs::read_dir(&rows) else {
        return Ok(());
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    for f in files {
        let [run] = <[Run; 1]>::try_from(read_runs(&f)?)
            .map_err(|rows| anyhow::anyhow!("{}: {} rows, not one", f.display(), rows.len()))?;
        if !has_run(runs, &run.entrant, run.seed, run.repeat) {
            record(c, csv, runs, run, progress)?;
        }
        let _ = std::fs::remove_file(&f);
    }
    Ok(())
}

/// `testbed slurm-task`: task `index` (default: `$SLURM_ARRAY_TASK_ID`) of a plan.
pub fn task(plan_path: &Path, index: Option<usize>) -> anyhow::Result<()> {
    let index = match index {
        Some(k) => k,
        None => std::env::var("SLURM_ARRAY_TASK_ID")
            .ok()
            .and_then(|v| v.parse().ok())
            .context("slurm-task: no --index and no SLURM_ARRAY_TASK_ID (not an array task)")?,
    };
    let plan: Plan = crate::util::fs::read_json(plan_path)
        .with_context(|| format!("{}: missing, or not a compare plan", plan_path.display()))?;
    let t = plan.tasks.get(index).with_context(|| {
        format!(
            "{}: no task {index} ({} tasks)",
            plan_path.display(),
            plan.tasks.len()
        )
    })?;
    let mut base: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(&plan.config)
            .with_context(|| format!("{}", plan.config.display()))?,
    )
    .with_context(|| format!("{}", plan.config.display()))?;
    if let Some(e) = plan.engine {
        base["engine"] = e.to_string().into();
    }
    let live = Arc::new(Live::new()?);
    let _signals = live.clone().forward_signals()?;
    let run_dir = match &plan.run_base {
        Some(base) => {
            let mut d = base.clone().into_os_string();
            d.push(format!("-{index}"));
            PathBuf::from(d)
        }
        None => plan.dir.join(format!("run-{index}")),
    };
    let place = Slot {
        run_dir,
        config: plan.dir.join(format!("config-{index}.yaml")),
        port: Some(0),
        placement: Placement::Slurm,
        jobs: 1,
    };
    crate::util::outln!(
        "slurm-task {index}: {} on seed {} (repeat {}) in {}",
        t.entrant.name(),
        t.seed,
        t.repeat,
        place.run_dir.display()
    );
    let Some(run) = one_run(&base, &place, &live, &t.entrant, t.seed, t.repeat)? else {
        anyhow::bail!("slurm-task {index}: stopped before its run ended");
    };
    write_atomic(
        &plan.dir.join("rows").join(format!("{index}.csv")),
        whole_file(std::slice::from_ref(&run)).as_bytes(),
    )?;
    crate::util::outln!("slurm-task {index}: share {:.1} %", run.share * 100.0);
    Ok(())
}

/// `s` as one word for `sh`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_states_are_counted() {
        let q = Queued::parse("RUNNING\nPENDING\nPENDING\nCOMPLETING\n");
        assert_eq!(
            q,
            Queued {
                pending: 2,
                running: 2,
                other: 0
            }
        );
        assert_eq!(Queued::parse("").total(), 0);
    }

    #[test]
    fn quoting_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("/a b/it's"), "'/a b/it'\\''s'");
    }

    #[test]
    fn a_plan_reads_back() {
        let plan = Plan {
            config: "/c.yaml".into(),
            dir: "/o/slurm".into(),
            run_base: None,
            engine: None,
            tasks: vec![
                Task {
                    entrant: Entrant::Policy(crate::policy::Policy::Deadline),
                    seed: 42,
                    repeat: 0,
                },
                Task {
                    entrant: Entrant::Client("examples/aria2_stream.sh geom".into()),
                    seed: 43,
                    repeat: 1,
                },
                Task {
                    entrant: Entrant::WebSeedClient("examples/aria2_stream.sh".into()),
                    seed: 43,
                    repeat: 0,
                },
            ],
        };
        let text = serde_json::to_string(&plan).unwrap();
        let back: Plan = serde_json::from_str(&text).unwrap();
        assert_eq!(back.tasks[1].entrant, plan.tasks[1].entrant);
        assert_eq!(back.tasks[2].entrant, plan.tasks[2].entrant);
        assert_eq!(back.tasks[0].entrant.name(), "deadline");
        assert_eq!(
            back.tasks[2].entrant.name(),
            "examples/aria2_stream.sh [web seed]"
        );
        // A named line keeps its name; a plan from before --name (a line as a plain string)
        // still reads.
        let named = Entrant::Client(crate::experiment::entrant::Line {
            cmd: "x.sh".into(),
            name: Some("x".into()),
        });
        let back: Entrant = serde_json::from_str(&serde_json::to_string(&named).unwrap()).unwrap();
        assert_eq!(back.name(), "x");
        let old: Entrant = serde_json::from_str(r#"{"client":"x.sh {torrent}"}"#).unwrap();
        assert_eq!(old.name(), "x.sh {torrent}");
    }
}
