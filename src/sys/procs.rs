//! The process tree: starting children so that they cannot outlive the testbed, and finding
//! and ending every one of them on stop.
//!
//! Four layers, because each alone has a known hole:
//!
//! 1. **cgroup v2** (where the machine lets us make one): the supervisor moves itself into
//!    `testbed-<run id>`; every descendant inherits it whatever it does with sessions or groups,
//!    and `cgroup.kill` ends them all at once. This is the kernel's guarantee.
//! 2. **PR_SET_PDEATHSIG = SIGKILL** on direct children, set from one [`Spawner`] thread that lives
//!    as long as the supervisor (the signal fires when the *thread* that forked exits), with a
//!    `getppid()` re-check in case the parent died before `prctl` ran.
//! 3. **The run id** in every child's environment (`TESTBED_RUN_ID`), found by scanning
//!    `/proc/*/environ`: catches a daemon that left the session, with or without the cgroup.
//! 4. **The session**: a detached supervisor is a session leader, so processes of its session
//!    are its descendants unless they called `setsid` (then 1 or 3 find them).
//!
//! The supervisor is also a child subreaper, so orphaned grandchildren are re-parented to it
//! and reaped by the [`reaper`] thread instead of lingering as zombies. A pid saved in a file is
//! checked against its start time (`/proc/PID/stat`) before it is signalled.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::util::Exit;

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

/// Why the run has no cgroup of its own.
#[derive(Debug, thiserror::Error)]
pub enum NoCgroup {
    #[error("no cgroup v2 mount")]
    NoMount,
    #[error("{}: {err}", path.display())]
    Create { path: PathBuf, err: std::io::Error },
    #[error("cgroup.kill not supported (kernel older than 5.14)")]
    NoKill,
    #[error("cannot join {}: {err}", path.display())]
    Join { path: PathBuf, err: std::io::Error },
}

/// A cgroup v2 of the run, when the machine allows one.
#[derive(Debug, Clone)]
pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    /// The cgroup v2 mount point, if any.
    fn mount() -> Option<PathBuf> {
        let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
        mounts
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.len() > 2 && f[2] == "cgroup2")
            .map(|f| PathBuf::from(f[1]))
    }

    /// Our own cgroup v2, relative to the mount (the `0::` line of `/proc/self/cgroup`).
    fn own() -> Option<PathBuf> {
        let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(|p| PathBuf::from(p.trim().trim_start_matches('/')))
    }

    /// Make `testbed-<run id>` and move `pid` into it. `Err` says why not (the run goes on
    /// without: the scan still finds everything that keeps the marker).
    ///
    /// It is made inside the cgroup we were started in (a Slurm job's step, a systemd unit),
    /// so that whoever manages that one still counts the run and ends it with the job; at the
    /// mount's root only when that cgroup takes no child (it holds processes and gives its
    /// children controllers, which cgroup v2 forbids).
    pub fn create(run_id: &str, pid: i32) -> Result<Cgroup, NoCgroup> {
        let mount = Cgroup::mount().ok_or(NoCgroup::NoMount)?;
        let mut parents = vec![mount.clone()];
        if let Some(own) = Cgroup::own().filter(|p| !p.as_os_str().is_empty()) {
            parents.insert(0, mount.join(own));
        }
        let mut why = NoCgroup::NoMount;
        for parent in parents {
            match Cgroup::create_in(&parent, run_id, pid) {
                Ok(cg) => return Ok(cg),
                Err(e) => why = e,
            }
        }
        Err(why)
    }

    fn create_in(parent: &std::path::Path, run_id: &str, pid: i32) -> Result<Cgroup, NoCgroup> {
        let path = parent.join(format!("testbed-{run_id}"));
        std::fs::create_dir(&path).map_err(|err| NoCgroup::Create {
            path: path.clone(),
            err,
        })?;
        let cg = Cgroup { path };
        if !cg.path.join("cgroup.kill").exists() {
            cg.remove();
            return Err(NoCgroup::NoKill);
        }
        std::fs::write(cg.path.join("cgroup.procs"), pid.to_string()).map_err(|e| {
            cg.remove();
            NoCgroup::Join {
                path: cg.path.clone(),
                err: e,
            }
        })?;
        Ok(cg)
    }

    pub fn procs(&self) -> Vec<i32> {
        std::fs::read_to_string(self.path.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// SIGKILL every process in the cgroup (the kernel does it, atomically).
    pub fn kill(&self) {
        let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
    }

    pub fn remove(&self) {
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct SpawnRequest {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    /// stdout and stderr go here (appended).
    pub log: PathBuf,
    pub cwd: Option<PathBuf>,
    /// The child is `testbed` itself, which arms its own death signal at start
    /// ([`child_start`]), so it is started by `posix_spawn` (vfork) instead of a
    /// fork with a hook before exec: forking the supervisor copies its page tables, and at
    /// 500 world clients the fork-and-hook path held the start back.
    pub arms_itself: bool,
}

/// Set in a child's environment by the [`Spawner`] to the supervisor's pid, for a child that
/// arms its own death signal.
pub const PARENT_VAR: &str = "TESTBED_PARENT_PID";
/// The log file such a child opens for its stdout and stderr.
pub const LOG_VAR: &str = "TESTBED_CHILD_LOG";
/// A child's exit code when it could not open its log.
pub const EXIT_NO_LOG: i32 = 70;

/// The spawner thread's nice value (see [`Spawner::new`]).
const SPAWNER_NICE: i32 = -10;

/// Back to the nice value of process `pid` (the supervisor), from the spawner's.
fn nice_as(pid: i32) {
    // SAFETY: plain syscalls on numbers; async-signal-safe, so also fit for a pre-exec hook.
    unsafe {
        *nix::libc::__errno_location() = 0;
        let n = nix::libc::getpriority(nix::libc::PRIO_PROCESS, pid as nix::libc::id_t);
        if *nix::libc::__errno_location() == 0 {
            nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, n);
        }
    }
}

/// In a `testbed` started by the [`Spawner`]: send stdout and stderr to the log it names, die
/// with the thread that started us (SIGKILL), exit at once if the supervisor is already gone
/// (we were adopted before arming it), and drop the spawner's priority. Call first thing,
/// before any thread. Does nothing outside a run.
pub fn child_start() {
    if let Some(log) = std::env::var_os(LOG_VAR) {
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
        {
            Ok(f) => {
                use std::os::fd::AsRawFd;
                // SAFETY: dup2 onto the standard descriptors; `f` stays open until then.
                unsafe {
                    nix::libc::dup2(f.as_raw_fd(), 1);
                    nix::libc::dup2(f.as_raw_fd(), 2);
                }
            }
            // stderr is /dev/null: the supervisor logs the exit code.
            Err(_) => std::process::exit(EXIT_NO_LOG),
        }
    }
    let Some(parent) = std::env::var(PARENT_VAR)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if nix::unistd::getppid().as_raw() != parent {
        std::process::exit(1);
    }
    nice_as(parent);
}

type SpawnJob = (SpawnRequest, oneshot::Sender<std::io::Result<i32>>);

/// Starts children from long-lived threads, so that their PR_SET_PDEATHSIG stays armed as long
/// as the supervisor lives. Two of them: a child is started when the one before it is still
/// being exec'd.
#[derive(Clone)]
pub struct Spawner {
    tx: mpsc::Sender<SpawnJob>,
}

/// Threads that start children.
const SPAWNER_THREADS: usize = 2;

impl Spawner {
    pub fn new(run_id: &str) -> Spawner {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..SPAWNER_THREADS {
            let (rx, run_id) = (rx.clone(), run_id.to_string());
            std::thread::Builder::new()
                .name(format!("spawner-{i}"))
                .spawn(move || {
                    // Ahead of the clients it starts (root only; elsewhere it stays as it is):
                    // a child between fork and exec runs at this thread's priority, and at 500
                    // clients each waited its turn behind the hundreds already running. Each
                    // child goes back to the supervisor's own priority first thing.
                    // SAFETY: setpriority on this thread's id, no memory involved.
                    unsafe {
                        nix::libc::setpriority(
                            nix::libc::PRIO_PROCESS,
                            nix::libc::gettid() as nix::libc::id_t,
                            SPAWNER_NICE,
                        );
                    }
                    loop {
                        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok((req, reply)) = job else { return };
                        let _ = reply.send(spawn_now(&req, &run_id));
                    }
                })
                .expect("spawner thread");
        }
        Spawner { tx }
    }

    fn submit(
        &self,
        req: SpawnRequest,
    ) -> std::io::Result<oneshot::Receiver<std::io::Result<i32>>> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((req, tx))
            .map_err(|_| std::io::Error::other("spawner thread gone"))?;
        Ok(rx)
    }

    /// Start a child and wait for its pid, from a blocking context (never on the async
    /// runtime: see [`Self::spawn_async`]). The child is reaped by the [`reaper`].
    pub fn spawn(&self, req: SpawnRequest) -> std::io::Result<i32> {
        self.submit(req)?
            .blocking_recv()
            .map_err(|_| std::io::Error::other("spawner thread gone"))?
    }

    /// [`Self::spawn`] for async code: the runtime's thread is not held while the spawner forks.
    pub async fn spawn_async(&self, req: SpawnRequest) -> std::io::Result<i32> {
        self.submit(req)?
            .await
            .map_err(|_| std::io::Error::other("spawner thread gone"))?
    }
}

fn spawn_now(req: &SpawnRequest, run_id: &str) -> std::io::Result<i32> {
    let parent = std::process::id() as i32;
    let mut cmd = Command::new(&req.program);
    cmd.args(&req.args)
        .env(RUN_ID_VAR, run_id)
        .envs(req.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    if let Some(d) = &req.cwd {
        cmd.current_dir(d);
    }
    if req.arms_itself {
        // The child opens its own log (creating a file in a folder of hundreds took the
        // spawner 4 ms a client at 500), and nothing runs between fork and exec.
        cmd.env(PARENT_VAR, parent.to_string())
            .env(LOG_VAR, &req.log)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn()?;
        let pid = child.id() as i32;
        std::mem::forget(child);
        return Ok(pid);
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&req.log)?;
    cmd.stdout(log.try_clone()?).stderr(log);
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            if nix::unistd::getppid().as_raw() != parent {
                // The supervisor died before prctl ran: the signal would never come.
                nix::libc::_exit(1);
            }
            nice_as(parent);
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pid = child.id() as i32;
    // Not waited on here: the reaper thread reaps every child and grandchild.
    std::mem::forget(child);
    Ok(pid)
}

/// Exits the reaper may queue before it waits for the supervisor to take them: more than the
/// largest world (2000 clients) plus my client, so a whole world ending at once never blocks
/// it, yet bounded.
pub const REAPER_QUEUE: usize = 4096;

/// Reap every child (and, as subreaper, every orphaned descendant), reporting `(pid, exit)`
/// while the receiver lives (after it is dropped, the reaper goes on reaping).
pub fn reaper(tx: tokio::sync::mpsc::Sender<(i32, Exit)>) {
    use nix::sys::wait::{waitpid, WaitStatus};
    std::thread::Builder::new()
        .name("reaper".into())
        .spawn(move || loop {
            match waitpid(Pid::from_raw(-1), None) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    let _ = tx.blocking_send((pid.as_raw(), Exit::Code(code)));
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    let _ = tx.blocking_send((pid.as_raw(), Exit::Signal(sig as i32)));
                }
                Ok(_) => {}
                Err(nix::errno::Errno::ECHILD) => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        })
        .expect("reaper thread");
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
