//! The process tree: finding and ending every process of a run on stop (starting them so that
//! they cannot outlive it is [`super::spawn`]; the run's cgroup is [`super::cgroup`]).
//!
//! Four layers, because each alone has a known hole:
//!
//! 1. **cgroup v2** (where the machine lets us make one): the supervisor moves itself into
//!    `testbed-<run id>`; every descendant inherits it whatever it does with sessions or groups,
//!    and `cgroup.kill` ends them all at once. This is the kernel's guarantee.
//! 2. **PR_SET_PDEATHSIG = SIGKILL** on direct children, set from one
//!    [`super::spawn::Spawner`] thread that lives as long as the supervisor (the signal fires
//!    when the *thread* that forked exits), with a `getppid()` re-check in case the parent died
//!    before `prctl` ran.
//! 3. **The run id** in every child's environment (`TESTBED_RUN_ID`), found by scanning
//!    `/proc/*/environ`: catches a daemon that left the session, with or without the cgroup.
//! 4. **The session**: a detached supervisor is a session leader, so processes of its session
//!    are its descendants unless they called `setsid` (then 1 or 3 find them).
//!
//! The supervisor is also a child subreaper, so orphaned grandchildren are re-parented to it
//! and reaped by the [`super::spawn::reaper`] thread instead of lingering as zombies. A pid
//! saved in a file is checked against its start time (`/proc/PID/stat`) before it is signalled.

use std::fs::File;
use std::io::Read;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::cgroup::Cgroup;

/// Environment variable that marks every process of a run.
pub const RUN_ID_VAR: &str = "TESTBED_RUN_ID";

/// Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat).
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Session id of a process (field 6 of /proc/PID/stat).
pub fn session_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(3)?.parse().ok()
}

/// Whether `pid` is alive (not a zombie) and is the process that started at `start`.
pub fn is_same_process(pid: i32, start: u64) -> bool {
    start_time(pid) == Some(start) && !is_zombie(pid)
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .unwrap_or(true)
}

fn environ_has(pid: i32, needle: &[u8]) -> bool {
    let mut buf = Vec::new();
    File::open(format!("/proc/{pid}/environ"))
        .and_then(|mut f| f.read_to_end(&mut buf))
        .map(|_| buf.split(|&b| b == 0).any(|kv| kv == needle))
        .unwrap_or(false)
}

/// Every live process of run `run_id`: carrying the marker, or (when `sid` is given) in that
/// session. This process is left out.
pub fn scan(run_id: &str, sid: Option<i32>) -> Vec<i32> {
    let me = std::process::id() as i32;
    let needle = format!("{RUN_ID_VAR}={run_id}").into_bytes();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me && !is_zombie(pid))
        .filter(|&pid| environ_has(pid, &needle) || (sid.is_some() && session_of(pid) == sid))
        .collect()
}

/// Send `sig` to each pid, ignoring the ones already gone.
pub fn signal_all(pids: &[i32], sig: Signal) {
    for &p in pids {
        let _ = kill(Pid::from_raw(p), sig);
    }
}

/// End every process of a run: SIGTERM, then SIGKILL to what is left after `grace`, until none
/// remains or `deadline` passes. Returns the pids still alive at the deadline (none, normally).
pub fn end_all(
    run_id: &str,
    sid: Option<i32>,
    cgroup: Option<&Cgroup>,
    grace: Duration,
    deadline: Instant,
) -> Vec<i32> {
    let find = || {
        let mut pids = scan(run_id, sid);
        if let Some(cg) = cgroup {
            let me = std::process::id() as i32;
            let extra: Vec<i32> = cg
                .procs()
                .into_iter()
                .filter(|&p| p != me && !pids.contains(&p))
                .collect();
            pids.extend(extra);
        }
        pids
    };
    let term_until = Instant::now() + grace;
    signal_all(&find(), Signal::SIGTERM);
    loop {
        let left = find();
        if left.is_empty() {
            return left;
        }
        if Instant::now() >= deadline {
            return left;
        }
        if Instant::now() >= term_until {
            if let Some(cg) = cgroup {
                if !cg.procs().contains(&(std::process::id() as i32)) {
                    cg.kill();
                }
            }
            signal_all(&left, Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The machine's CPU time so far, all cores, in clock ticks: `(idle, total)` from
/// `/proc/stat` (idle counts iowait too). Two readings give how busy the machine was between.
pub fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    // guest time is counted in user already.
    let total = v.iter().take(8).sum();
    Some((idle, total))
}

/// The share of the machine's CPU time that was busy between two [`cpu_times`] readings.
pub fn busy_between(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let total = after.1.checked_sub(before.1)?;
    let idle = after.0.checked_sub(before.0)?;
    (total > 0).then(|| 1.0 - idle as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_of_this_process() {
        let me = std::process::id() as i32;
        assert!(start_time(me).is_some());
        assert!(is_same_process(me, start_time(me).unwrap()));
        assert!(!is_same_process(me, start_time(me).unwrap() + 1));
        assert!(session_of(me).is_some());
        assert_eq!(start_time(i32::MAX), None);
    }
}
