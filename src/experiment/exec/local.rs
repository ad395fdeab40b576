//! The runs on this machine: each a `testbed run` of its own, in its own run folder (and with
//! `--jobs`, its own port and namespace), its row appended to `runs.csv` as it ends.
//! SIGINT or SIGTERM stops the runs under way, each of which ends its world itself.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::util::Locked;

use super::{one_run, record, Live, Progress, Slot};
use crate::experiment::entrant::Entrant;
use crate::experiment::plan::Comparison;
use crate::experiment::runs::{Run, RunsFile};

/// The runs on this machine, `c.jobs` at a time: every row made, and whether the compare was
/// stopped (a signal) before the end.
pub(in crate::experiment) fn run_here(
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
                        let place = Slot::here(c, slot)?;
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
