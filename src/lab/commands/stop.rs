//! `testbed stop`: end everything of the run dir's testbed within 5 s, idempotent. The
//! supervisor (checked by its pid's start time) gets SIGTERM and 4 s to end its run itself;
//! then every process of the run that is left, found by cgroup, run-id marker and session, gets
//! SIGTERM and, 300 ms later, SIGKILL; so does anything left in the lab's network namespace,
//! which then ends. This works the same when the supervisor was SIGKILLed. It returns once the
//! run dir's lock is free too, so that a `start` may follow at once.

use std::time::{Duration, Instant};

use crate::lab::config::Source;
use crate::lab::netns;
use crate::lab::rundir::RunDir;
use crate::sys::procs;

/// `testbed stop`. With `verbose`, says what it did (or that nothing ran).
pub fn stop(source: &Source, verbose: bool) -> anyhow::Result<()> {
    let cfg = source.load()?;
    let rd = RunDir::new(&cfg.run_dir);
    let deadline = Instant::now() + Duration::from_secs(5);
    let Some(info) = rd.read_pid() else {
        if verbose {
            crate::util::outln!("nothing running in {}", rd.root.display());
        }
        return Ok(());
    };
    let alive = procs::is_same_process(info.pid, info.start_time);
    if alive {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(info.pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        let wait_until = Instant::now() + Duration::from_secs(4);
        while procs::is_same_process(info.pid, info.start_time) && Instant::now() < wait_until {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let cgroup = info
        .cgroup
        .clone()
        .map(|path| crate::sys::cgroup::Cgroup { path });
    let left = procs::end_all(
        &info.run_id,
        info.sid,
        cgroup.as_ref(),
        Duration::from_millis(300),
        deadline,
    );
    if let Some(cg) = &cgroup {
        cg.remove();
    }
    // The lab's network namespace ends with the last process inside it: whatever entered it
    // (a debugging shell with nsenter, say) is ended too. Only when the supervisor was alive
    // as we began: it held the namespace until a moment ago, so the inode is still the lab's.
    // (After a SIGKILLed supervisor the namespace went with its children, and the number may
    // since belong to someone else's namespace.)
    let mut left = left;
    if let (Some(ns), true) = (info.netns, alive) {
        let me = std::process::id() as i32;
        let mut signalled = false;
        loop {
            let inside: Vec<i32> = netns::members(ns)
                .into_iter()
                .filter(|&p| p != me)
                .collect();
            if inside.is_empty() || (signalled && Instant::now() >= deadline) {
                for p in inside {
                    if !left.contains(&p) {
                        left.push(p);
                    }
                }
                break;
            }
            procs::signal_all(&inside, nix::sys::signal::Signal::SIGKILL);
            signalled = true;
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if !left.is_empty() {
        anyhow::bail!("processes {left:?} of run {} survived SIGKILL", info.run_id);
    }
    // A killed process lets go of its memory (its marker can no longer be read, so it is not
    // found above) a moment before its files: wait for the run dir's lock as well, so that a
    // `start` right after `stop` finds it free (a test that started again at once after
    // SIGKILLing the supervisor and stopping was once told a testbed was still running).
    let lock_deadline = deadline + Duration::from_secs(2);
    while rd.is_locked() {
        if Instant::now() >= lock_deadline {
            anyhow::bail!(
                "{}: still locked after every process of run {} ended",
                rd.lock_file().display(),
                info.run_id
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_file(rd.pid_file());
    if verbose {
        crate::util::outln!(
            "stopped testbed {} (supervisor {})",
            info.run_id,
            if alive {
                "ended"
            } else {
                "was already gone; its processes were swept"
            }
        );
    }
    Ok(())
}
