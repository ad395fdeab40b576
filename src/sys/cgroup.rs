//! The run's cgroup v2, where the machine lets us make one: the supervisor moves itself into
//! `testbed-<run id>`, every descendant inherits it whatever it does with sessions or groups,
//! and `cgroup.kill` ends them all at once (the first of the four ways [`super::procs`] finds
//! a run's processes).

use std::path::PathBuf;

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
