//! The plan of a simulation (`run/shadow/plan.json`): what the processes inside need to know,
//! written by the runner outside before Shadow starts; and the record my client's launcher
//! writes back.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::lab::config::{Addresses, Config};
use crate::lab::netns;
use crate::lab::rundir::RunDir;
use crate::lab::supervisor;
use crate::lab::world::{SwarmFiles, World};
use crate::metainfo::Torrent;
use crate::util::Exit;

/// When the world's clients start, simulated seconds: the services are up at 0.
pub const WORLD_AT: f64 = 1.0;
/// When my client starts (plus `my_client.start_after`): the world has announced.
pub const MY_CLIENT_AT: f64 = 2.0;

/// What the processes inside the simulation need to know: `run/shadow/plan.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// The run's config, its seed drawn if it had none.
    pub config: Config,
    pub run_id: String,
    /// The services' port.
    pub port: u16,
    /// Each swarm's torrent and file.
    pub swarms: Vec<(PathBuf, PathBuf)>,
    pub my: MyPlan,
}

/// My client in the simulation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MyPlan {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The environment it would have in the real engine: the caller's and `TESTBED_*`.
    pub env: Vec<(String, String)>,
    /// Its output.
    pub log: PathBuf,
    /// Where its launcher writes a [`MyRecord`].
    pub record: PathBuf,
    /// Simulated seconds it may run before it is ended.
    pub run_for: f64,
}

/// How my client went, written by its launcher inside the simulation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MyRecord {
    /// Unix time (simulated) when it was started: its clock's zero for the referee.
    pub started_unix: f64,
    pub ended_unix: Option<f64>,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Still running at the movie's end and the grace after it: ended by its launcher.
    #[serde(default)]
    pub ended_by_lab: bool,
    /// Why it could not start.
    pub error: Option<String>,
}

impl MyRecord {
    pub fn exit(&self) -> Option<Exit> {
        match (self.code, self.signal) {
            (Some(c), _) => Some(Exit::Code(c)),
            (None, Some(s)) => Some(Exit::Signal(s)),
            _ => None,
        }
    }
}

impl Plan {
    pub fn read(path: &Path) -> anyhow::Result<Plan> {
        crate::util::fs::read_json(path)
            .with_context(|| format!("{}: not a plan of a Shadow run", path.display()))
    }

    /// The run folder.
    pub fn run_dir(&self) -> RunDir {
        RunDir::new(&self.config.run_dir)
    }

    /// Where the VoD server logs every range it sends.
    pub fn vod_log(&self) -> PathBuf {
        self.run_dir().shadow().join("vod.jsonl")
    }

    /// Where a slot writes its state as it changes.
    pub fn slot_file(&self, k: usize) -> PathBuf {
        self.run_dir()
            .shadow()
            .join("slots")
            .join(format!("{k}.json"))
    }

    /// Where the services write the tracker's status when they stop.
    pub fn tracker_status(&self) -> PathBuf {
        self.run_dir().shadow().join("tracker.json")
    }

    /// The swarms, their torrents read back.
    pub fn swarm_files(&self) -> anyhow::Result<Vec<SwarmFiles>> {
        self.swarms
            .iter()
            .map(|(t, f)| {
                Ok(SwarmFiles {
                    torrent: Arc::new(Torrent::from_file(t)?),
                    torrent_path: t.clone(),
                    fresh: f.clone(),
                })
            })
            .collect()
    }

    /// The announce URL (the services' host).
    pub fn tracker_url(&self) -> String {
        format!("http://{}:{}/announce", netns::TRACKER, self.port)
    }

    /// The world, laid out as the outside laid it out (the same seed, the same draws).
    pub fn world(&self) -> anyhow::Result<World> {
        let network = self
            .config
            .network
            .as_ref()
            .map(|n| (n.clone(), n.seed.or(self.config.seed).unwrap_or(0)));
        supervisor::new_world(
            &self.config,
            &self.run_dir(),
            &self.run_id,
            (Addresses::Namespace, network),
            self.swarm_files()?,
            self.tracker_url(),
        )
    }

    /// Simulated seconds from my client's start to the end of the simulation.
    pub fn stop_time(&self) -> f64 {
        MY_CLIENT_AT + self.config.my_client.start_after + self.my.run_for + 1.0
    }
}
