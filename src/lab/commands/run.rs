//! `testbed run`: the experiment end to end in this process. My client defaults to
//! `vod-client` beside this binary with the config's argument template (`--policy P` picks
//! its policy); a supervisor runs until my client exits; then the run is scored
//! ([`crate::vod::score`]), the score printed, and `run/summary.json`, `run/report.svg` and
//! `run/report.csv` written. Under `engine: shadow` the run is one simulation
//! ([`crate::lab::shadow`]), scored the same way.

use std::path::Path;

use crate::lab::config::{Config, Engine};
use crate::lab::rundir::RunDir;
use crate::lab::Mode;
use crate::policy::Policy;
use crate::util::fs::write_atomic;
use crate::vod::{chart, score, Report};

/// What `testbed run` runs.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub config: crate::lab::config::Source,
    /// A policy for the default vod-client.
    pub policy: Option<Policy>,
    /// My client and its arguments; empty: vod-client.
    pub my_client: Vec<String>,
}

/// My client's command line: the given one, or vod-client beside this binary; with a policy,
/// the config's template and `--policy P` are added to a bare command.
pub fn my_command(
    cfg: &Config,
    my: &[String],
    policy: Option<Policy>,
) -> anyhow::Result<Vec<String>> {
    let mut my = my.to_vec();
    let template = || cfg.my_client.args.split_whitespace().map(String::from);
    if my.is_empty() {
        let exe = std::env::current_exe()?.with_file_name("vod-client");
        if !exe.is_file() {
            anyhow::bail!(
                "{}: not built (cargo build --release builds it)",
                exe.display()
            );
        }
        my.push(exe.display().to_string());
        my.extend(template());
    }
    if let Some(p) = policy {
        if my.len() == 1 {
            my.extend(template());
        }
        my.extend(["--policy".to_string(), p.to_string()]);
    }
    Ok(my)
}

/// `testbed run`. Errors when my client did not end cleanly or its report disagrees with the
/// server (after printing the score all the same).
pub fn run(e: Experiment) -> anyhow::Result<()> {
    let cfg = e.config.load()?;
    let my = my_command(&cfg, &e.my_client, e.policy)?;
    let started = std::time::Instant::now();
    let outcome = match cfg.engine {
        Engine::Real => crate::lab::supervise(&e.config, my, Mode::Run)?,
        Engine::Shadow => crate::lab::shadow::run(&e.config, my)?,
    };
    let rd = RunDir::new(&cfg.run_dir);
    let report = rd.reports().join("my-client.json");
    let scored = score::score(&outcome, &report, started.elapsed().as_secs_f64());
    let path = cfg.run_dir.join("summary.json");
    write_atomic(
        &path,
        serde_json::to_string_pretty(&scored.summary)?.as_bytes(),
    )?;
    crate::util::outln!("{}", scored.text);
    crate::util::outln!("summary: {}", path.display());
    if let Some(v) = &outcome.referee {
        let csv = cfg.run_dir.join("referee.csv");
        write_atomic(&csv, crate::vod::referee::csv(v).as_bytes())?;
        crate::util::outln!("referee: {}", csv.display());
    }
    write_timeline(&cfg.run_dir, &report)?;
    match scored.problem {
        Some(p) => anyhow::bail!("{p}"),
        None => Ok(()),
    }
}

/// The timeline, to look at without a server: `report.svg` and its data, `report.csv`.
fn write_timeline(run_dir: &Path, report: &Path) -> anyhow::Result<()> {
    if let Some(r) = Report::read(report) {
        let svg = run_dir.join("report.svg");
        write_atomic(&svg, chart::svg(&r, None).as_bytes())?;
        let csv = run_dir.join("report.csv");
        write_atomic(&csv, chart::csv(&r).as_bytes())?;
        crate::util::outln!("timeline: {} ({})", svg.display(), csv.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_completes_a_bare_client_with_the_template() {
        let cfg = Config::default();
        let given = vec!["/bin/client".to_string(), "--x".to_string()];
        assert_eq!(my_command(&cfg, &given, None).unwrap(), given);
        let bare = my_command(&cfg, &["/bin/client".into()], Some(Policy::Sequential)).unwrap();
        assert_eq!(bare[0], "/bin/client");
        assert!(bare.len() > 3, "the template's args: {bare:?}");
        assert_eq!(&bare[bare.len() - 2..], ["--policy", "sequential"]);
        let full = my_command(&cfg, &given, Some(Policy::Deadline)).unwrap();
        assert_eq!(full, ["/bin/client", "--x", "--policy", "deadline"]);
    }
}
