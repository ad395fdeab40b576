//! `testbed start`: check what can be checked here (config, run dir, my client, fresh-files),
//! detach a supervisor (`testbed supervise` in a new session, output in `run/supervisor.log`)
//! and wait until it writes [`Phase::Ready`] (or fails, or exits) in `run/state.json`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::lab::api::{Phase, StartState};
use crate::lab::config::Source;
use crate::lab::rundir::RunDir;
use crate::sys::procs;

/// A new run id: 12 hex digits.
pub fn new_run_id() -> String {
    crate::util::hex(&rand::random::<[u8; 6]>())
}

/// `testbed start`: detach a supervisor and wait for it to report ready.
pub fn start(source: &Source, my_client: &[String]) -> anyhow::Result<()> {
    let cfg = source.load()?;
    cfg.refuse_live()?;
    let rd = RunDir::new(&cfg.run_dir);
    if rd.is_locked() {
        drop(rd.lock()?); // the error says who runs
    }
    check_my_client(my_client)?;
    crate::lab::fresh_files(&cfg.fresh_files)?;
    std::fs::create_dir_all(&rd.root).with_context(|| format!("{}", rd.root.display()))?;
    let _ = std::fs::remove_file(rd.state_file());
    let log_path = rd.root.join("supervisor.log");
    let log =
        std::fs::File::create(&log_path).with_context(|| format!("{}", log_path.display()))?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("supervise")
        .args(source.args())
        .arg("--")
        .args(my_client);
    cmd.env(procs::RUN_ID_VAR, new_run_id())
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().context("cannot start the supervisor")?;
    let deadline = Instant::now()
        + Duration::from_secs(60)
        + Duration::from_millis(100 * (cfg.world.clients + cfg.world.seeds) as u64);
    loop {
        match StartState::read(&rd) {
            Some(state) if state.phase == Phase::Ready => {
                print_ready(&rd, &state);
                return Ok(());
            }
            Some(state) if state.phase == Phase::Failed => anyhow::bail!(
                "{}",
                state.error.unwrap_or_else(|| "supervisor failed".into())
            ),
            _ => {}
        }
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let last = log
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("(no output)");
            anyhow::bail!(
                "supervisor exited ({status}): {}",
                last.trim_start_matches("testbed: error: ")
            );
        }
        if Instant::now() > deadline {
            let _ = crate::lab::commands::stop(source, false);
            anyhow::bail!(
                "the world did not come up in time; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn print_ready(rd: &RunDir, state: &StartState) {
    let url = rd.read_pid().map(|i| i.url).unwrap_or_default();
    crate::util::outln!("testbed running: status page {url}/");
    crate::util::outln!(
        "  {} world clients announced; logs in {}",
        state.world,
        rd.logs().display()
    );
    crate::util::outln!("  `testbed status` for details, `testbed stop` to end it");
    if state.failed > 0 {
        eprintln!(
            "testbed: warning: {} world client slot(s) crashed repeatedly and were given up; see {}",
            state.failed,
            rd.logs().display()
        );
    }
}

/// My client's program exists (a path, or a name on PATH).
pub fn check_my_client(my_client: &[String]) -> anyhow::Result<()> {
    if let Some(prog) = my_client.first() {
        let p = Path::new(prog);
        let found = if p.components().count() > 1 {
            p.is_file()
        } else {
            std::env::var_os("PATH")
                .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(p).is_file()))
        };
        if !found {
            anyhow::bail!("my client {prog}: no such executable");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn my_client_must_exist() {
        assert!(check_my_client(&[]).is_ok(), "no my client is fine");
        assert!(check_my_client(&["sh".into()]).is_ok(), "found on PATH");
        let e = check_my_client(&["./no/such/client".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "my client ./no/such/client: no such executable"
        );
        assert_eq!(new_run_id().len(), 12);
    }
}
