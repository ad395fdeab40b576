//! One testbed: `testbed start | stop | status | run`, the counterpart of
//! `run_all_vod.sh start [my-client] | stop`. The rooms of the lab:
//!
//! * [`commands`]: one file per command. `start` checks the config, re-executes itself
//!   detached (`testbed supervise`, a new session, output in `run/supervisor.log`) and waits
//!   until `run/state.json` says the world is up ([`api::Phase::Ready`]); `stop` signals the
//!   supervisor (checking the pid's start time), waits for it, then sweeps the run's processes
//!   ([`crate::sys::procs::end_all`]) within 5 seconds, also when the supervisor was SIGKILLed;
//!   `status` reads `/api/world` and `/api/status` into their types and prints them; `run` is
//!   the experiment end to end: a supervisor in this process until my client exits, then the
//!   score ([`crate::vod::score`]), `run/summary.json` and the timeline;
//! * [`supervisor`]: the process that runs the testbed, as named steps: take the run dir's lock,
//!   make torrents, start the tracker and the VoD server, start the [`world`], start my client,
//!   wait until every world client has announced, run the event loop (replace world clients as
//!   they complete or crash), and shut down (end every process of the run while the tracker
//!   still answers their `stopped` announces);
//! * [`config`], [`template`]: the scenario and my client's arguments; [`rundir`]: what lives
//!   where in `run/`; [`netns`]: the lab's own network namespace;
//! * [`evidence`]: the referee's evidence (the world's records, the VoD server's log) turned
//!   into a verdict;
//! * [`api`]: the typed state the supervisor serves and the commands read; [`web`]: the status
//!   page that shows it;
//! * [`shadow`]: the other engine (`engine: shadow`): the same run as one Shadow simulation,
//!   the supervisor's work done by processes inside it.
//!
//! Many runs of a testbed are the `experiment` module's, a layer above: it reaches the lab only
//! through `testbed run` subprocesses and [`config::Source`].

pub mod api;
pub mod commands;
pub mod config;
pub mod evidence;
pub mod netns;
pub mod rundir;
pub mod shadow;
pub mod supervisor;
pub mod template;
pub mod web;
pub mod world;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;

use crate::tracker::Tracker;
use crate::util::Locked;
use api::{MyClient, Phase, RunInfo, WorldStatus};
use world::World;

pub use commands::{run, start, status, stop};
pub use supervisor::supervise;

/// How the supervisor was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Until stopped.
    Start,
    /// Until my client exits; then print the result and stop.
    Run,
    /// A world shard alone (`testbed world`): no my client, announcing to another testbed's
    /// tracker; until stopped.
    World,
}

/// The supervisor's shared state: what the status page and `/api/world` show.
pub struct Orchestrator {
    pub vod: Arc<crate::vod::server::VodServer>,
    pub info: RunInfo,
    pub world: Arc<World>,
    pub tracker: Arc<Tracker>,
    pub my: Mutex<MyClient>,
    pub phase: Mutex<Phase>,
    pub started: Instant,
    pub downloads: PathBuf,
    /// My client's rate, delay and prefetch (size and piece length come from its torrent).
    pub model: crate::vod::Model,
    /// The world's referee records.
    pub referee: PathBuf,
    /// My client's upload cap, bytes/s: the referee holds its uploads against it.
    pub my_upload_cap: f64,
}

impl Orchestrator {
    /// The state of a run of `cfg` in `rd`: its services (tracker, VoD server), its world and
    /// my client, begun at `started`, in `phase`.
    pub fn new(
        cfg: &config::Config,
        rd: &rundir::RunDir,
        info: RunInfo,
        world: Arc<World>,
        services: (Arc<Tracker>, Arc<crate::vod::server::VodServer>),
        my: MyClient,
        (phase, started): (Phase, Instant),
    ) -> Orchestrator {
        let m = &cfg.my_client;
        Orchestrator {
            tracker: services.0,
            vod: services.1,
            info,
            world,
            my: Mutex::new(my),
            phase: Mutex::new(phase),
            started,
            downloads: rd.downloads(),
            model: crate::vod::Model::new(m.rate, m.delay, m.prefetch, 0, 0),
            referee: rd.referee(),
            my_upload_cap: m.max_upload_rate * crate::vod::KB,
        }
    }

    /// Everything at once. Walks the downloads folder: call it off the async runtime.
    pub fn snapshot(&self) -> WorldStatus {
        let mut downloads = Vec::new();
        walk_files(&self.downloads, &mut downloads);
        downloads.sort();
        WorldStatus {
            phase: *self.phase.locked(),
            uptime_secs: self.started.elapsed().as_secs_f64(),
            run: self.info.clone(),
            world: self.world.slots.locked().clone(),
            my_client: self.my.locked().clone(),
            downloads,
            vod_served: self.vod.served(),
        }
    }

    pub fn set_phase(&self, p: Phase) {
        *self.phase.locked() = p;
    }

    /// My client's deadline model: the config's rate, delay and prefetch on its torrent.
    pub fn my_model(&self) -> Option<crate::vod::Model> {
        let t = self.info.my_torrent()?;
        Some(crate::vod::Model {
            size: t.size,
            piece_length: t.piece_length,
            ..self.model
        })
    }

    /// The referee's verdict on my client so far (final once the world has ended), from the
    /// world's records and the VoD server's log. `None` before my client starts. Reads files:
    /// call it off the async runtime.
    pub fn verdict(&self) -> Option<crate::vod::referee::Verdict> {
        let my_start = self.my.locked().started_unix?;
        let info = &self.info;
        let swarm = info
            .torrents
            .iter()
            .position(|t| t.info_hash == info.my_info_hash)?;
        let t = &info.torrents[swarm];
        let model = self.my_model()?;
        let my_ip: Option<std::net::IpAddr> = match info.addresses {
            config::Addresses::Namespace => Some(netns::MY_CLIENT.into()),
            config::Addresses::Loopback => Some([127, 0, 0, 1].into()),
            config::Addresses::Auto | config::Addresses::Shared => None,
        };
        Some(evidence::judge(&evidence::Case {
            dir: &self.referee,
            swarm,
            model,
            my_start,
            my_ip,
            sent: &self.vod.sent(&t.info_hash),
            upload_cap: self.my_upload_cap,
        }))
    }
}

fn walk_files(dir: &Path, out: &mut Vec<(String, u64)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        match e.metadata() {
            Ok(m) if m.is_dir() => walk_files(&p, out),
            Ok(m) => out.push((p.display().to_string(), m.len())),
            Err(_) => {}
        }
    }
}

/// The files of fresh-files that become swarms: regular, non-hidden files, sorted by name.
pub fn fresh_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).with_context(|| format!("fresh_files {}", dir.display()))?;
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    files.sort();
    if files.is_empty() {
        anyhow::bail!("fresh_files {}: no files to share", dir.display());
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_files_are_the_visible_regular_files_in_order() {
        let d = tempfile::tempdir().unwrap();
        assert!(fresh_files(d.path())
            .unwrap_err()
            .to_string()
            .contains("no files to share"));
        for f in ["b.mp4", "a.bin", ".hidden"] {
            std::fs::write(d.path().join(f), b"x").unwrap();
        }
        std::fs::create_dir(d.path().join("sub")).unwrap();
        let names: Vec<String> = fresh_files(d.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.bin", "b.mp4"]);
        assert!(fresh_files(&d.path().join("none"))
            .unwrap_err()
            .to_string()
            .contains("none"));
    }
}
