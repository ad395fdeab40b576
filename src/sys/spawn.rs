//! Starting a run's children so that they cannot outlive it: one [`Spawner`] whose threads
//! live as long as the supervisor (PR_SET_PDEATHSIG fires when the thread that forked exits),
//! each child marked with the run id and niced below the spawner, and the [`reaper`] thread
//! that reaps every child and orphaned grandchild (the supervisor is a subreaper).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::sync::oneshot;

use super::procs::RUN_ID_VAR;
use crate::util::Exit;

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
/// being exec'd. They start with the first child: a process that only lays out a world (a
/// world slot under Shadow) starts none.
#[derive(Clone)]
pub struct Spawner {
    run_id: String,
    tx: std::sync::Arc<std::sync::OnceLock<mpsc::Sender<SpawnJob>>>,
}

/// Threads that start children.
const SPAWNER_THREADS: usize = 2;

impl Spawner {
    pub fn new(run_id: &str) -> Spawner {
        Spawner {
            run_id: run_id.to_string(),
            tx: Default::default(),
        }
    }

    /// The threads, started on first use.
    fn threads(&self) -> &mpsc::Sender<SpawnJob> {
        self.tx.get_or_init(|| Self::start_threads(&self.run_id))
    }

    fn start_threads(run_id: &str) -> mpsc::Sender<SpawnJob> {
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
        tx
    }

    fn submit(
        &self,
        req: SpawnRequest,
    ) -> std::io::Result<oneshot::Receiver<std::io::Result<i32>>> {
        let (tx, rx) = oneshot::channel();
        self.threads()
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

/// `cmd`'s process is killed when this thread ends (or this process dies).
pub fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id() as i32;
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            if nix::unistd::getppid().as_raw() != parent {
                nix::libc::_exit(1);
            }
            Ok(())
        });
    }
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
