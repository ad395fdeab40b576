//! The run directory (`run/` by default): what lives where, the lock that makes one testbed per
//! run dir, and the pid file that lets `testbed stop` find a testbed whose supervisor is gone.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::util::fs::write_atomic;

pub struct RunDir {
    pub root: PathBuf,
}

/// What `testbed stop` and `testbed status` need to know of a running testbed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PidInfo {
    pub pid: i32,
    /// Start time of `pid` (clock ticks since boot), so a reused pid is never signalled.
    pub start_time: u64,
    pub run_id: String,
    /// The supervisor's session, when it leads one (a detached start).
    pub sid: Option<i32>,
    pub cgroup: Option<PathBuf>,
    /// Base URL of the tracker and status page, as this host reaches it.
    pub url: String,
    /// The tracker's port (the system's choice under `--port 0`).
    #[serde(default)]
    pub port: u16,
    /// The inode of the lab's network namespace, when the run has one.
    #[serde(default)]
    pub netns: Option<u64>,
}

impl RunDir {
    pub fn new(root: &Path) -> RunDir {
        RunDir {
            root: root.to_path_buf(),
        }
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn torrents(&self) -> PathBuf {
        self.root.join("torrents")
    }
    pub fn downloads(&self) -> PathBuf {
        self.root.join("downloads")
    }
    pub fn reports(&self) -> PathBuf {
        self.root.join("reports")
    }
    /// World clients' referee records (`testbed peer --referee`), one file per client.
    pub fn referee(&self) -> PathBuf {
        self.root.join("referee")
    }
    /// World clients' live status files (`testbed peer --status-file`).
    pub fn status(&self) -> PathBuf {
        self.root.join("status")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("testbed.pid")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("testbed.lock")
    }
    /// A Shadow run's own files: its plan and config, Shadow's log and data, the VoD server's
    /// log, the slots' and my client's records (see `lab::shadow`).
    pub fn shadow(&self) -> PathBuf {
        self.root.join("shadow")
    }

    /// A finished Shadow simulation's state ([`super::api::Running`]), for `testbed status`.
    pub fn finished(&self) -> PathBuf {
        self.root.join("finished.json")
    }

    /// A finished Shadow simulation's status page, a file.
    pub fn finished_page(&self) -> PathBuf {
        self.root.join("status.html")
    }

    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// Take the run dir's lock for as long as the returned value lives. The kernel drops it when
    /// the holder dies, so a stale pid file never blocks a new start.
    pub fn lock(&self) -> anyhow::Result<Flock<File>> {
        std::fs::create_dir_all(&self.root)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.root.display()))?;
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.lock_file())
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.lock_file().display()))?;
        Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|_| {
            let who = self
                .read_pid()
                .map(|p| format!(" (supervisor pid {})", p.pid))
                .unwrap_or_default();
            anyhow::anyhow!(
                "a testbed is already running in {}{who}; run `testbed stop` first",
                self.root.display()
            )
        })
    }

    /// Whether some process holds the lock (a testbed runs).
    pub fn is_locked(&self) -> bool {
        match File::options().write(true).open(self.lock_file()) {
            Ok(f) => Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err(),
            Err(_) => false,
        }
    }

    pub fn read_pid(&self) -> Option<PidInfo> {
        serde_json::from_slice(&std::fs::read(self.pid_file()).ok()?).ok()
    }

    pub fn write_pid(&self, p: &PidInfo) -> anyhow::Result<()> {
        Ok(write_atomic(
            &self.pid_file(),
            &serde_json::to_vec_pretty(p)?,
        )?)
    }

    /// Empty the runtime folders of a previous run (never anything outside the run dir).
    pub fn reset(&self) -> anyhow::Result<()> {
        for d in [
            self.logs(),
            self.torrents(),
            self.downloads(),
            self.reports(),
            self.status(),
            self.referee(),
        ] {
            if d.exists() {
                std::fs::remove_dir_all(&d).map_err(|e| anyhow::anyhow!("{}: {e}", d.display()))?;
            }
            std::fs::create_dir_all(&d).map_err(|e| anyhow::anyhow!("{}: {e}", d.display()))?;
        }
        // A Shadow run's folder (lab::shadow), made again by the next.
        let shadow = self.shadow();
        if shadow.exists() {
            std::fs::remove_dir_all(&shadow)
                .map_err(|e| anyhow::anyhow!("{}: {e}", shadow.display()))?;
        }
        for f in [
            "summary.json",
            "state.json",
            "report.svg",
            "report.csv",
            "referee.csv",
            "finished.json",
            "status.html",
        ] {
            let _ = std::fs::remove_file(self.root.join(f));
        }
        Ok(())
    }
}
