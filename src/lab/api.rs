//! The supervisor's state as others read it: the run's [`Phase`] (in `run/state.json` for
//! `testbed start`, which waits on it), my client's [`MyClient`] record, and the whole
//! [`WorldStatus`] served at `/api/world` and read back by `testbed status`. Every type here is
//! Serialize + Deserialize, so a field renamed on one side fails to compile or to parse on the
//! other instead of printing "?".

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::config::Addresses;
use super::rundir::RunDir;
use super::world::Slot;
use crate::vod::server::Served;

/// Where a supervised run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Making torrents, starting the tracker, the world and my client.
    Starting,
    /// Every world client has announced.
    Ready,
    /// Ending every process of the run.
    Stopping,
    /// Ended cleanly.
    Stopped,
    /// Could not start (the reason is in [`StartState::error`]).
    Failed,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Starting => "starting",
            Phase::Ready => "ready",
            Phase::Stopping => "stopping",
            Phase::Stopped => "stopped",
            Phase::Failed => "failed",
        })
    }
}

/// My client's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum MyClientState {
    /// The run has no my client.
    #[default]
    #[serde(rename = "none")]
    None,
    #[serde(rename = "not started")]
    NotStarted,
    #[serde(rename = "running")]
    Running,
    #[serde(rename = "exited")]
    Exited,
}

impl MyClientState {
    /// The state as the page and `testbed status` print it.
    pub fn as_str(self) -> &'static str {
        match self {
            MyClientState::None => "none",
            MyClientState::NotStarted => "not started",
            MyClientState::Running => "running",
            MyClientState::Exited => "exited",
        }
    }
}

/// My client as the supervisor tracks it.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct MyClient {
    pub command: Vec<String>,
    pub pid: Option<i32>,
    pub state: MyClientState,
    /// How it ended ("exit code 0", "killed by signal 9").
    pub exit: Option<String>,
    /// Seconds after the supervisor started.
    pub started_secs: Option<f64>,
    /// Unix time when it was started: the zero of its clock (deadlines, the referee).
    #[serde(default)]
    pub started_unix: Option<f64>,
    pub ended_secs: Option<f64>,
    pub log: PathBuf,
}

/// URLs and paths a client needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    pub pid: i32,
    pub base_url: String,
    pub tracker_url: String,
    pub status_url: String,
    pub vod_url: String,
    pub torrent: PathBuf,
    pub saveas: PathBuf,
    pub report: PathBuf,
    pub torrents: Vec<TorrentInfo>,
    /// How world clients are addressed in this run.
    pub addresses: Addresses,
    /// My client's emulated link (a run with `network:`).
    #[serde(default)]
    pub my_link: Option<crate::netem::Link>,
    /// The info hash of my client's torrent (hex).
    #[serde(default)]
    pub my_info_hash: String,
}

impl RunInfo {
    /// The torrent my client gets (its swarm's: with a web seed, my client's own copy of it
    /// is at `torrent`, the same info hash).
    pub fn my_torrent(&self) -> Option<&TorrentInfo> {
        self.torrents
            .iter()
            .find(|t| t.info_hash == self.my_info_hash)
    }
}

/// One swarm's torrent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TorrentInfo {
    pub name: String,
    pub path: PathBuf,
    pub info_hash: String,
    pub size: u64,
    pub pieces: u32,
    pub piece_length: u32,
}

/// `/api/world`: the run, every process, the downloads on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorldStatus {
    pub phase: Phase,
    pub uptime_secs: f64,
    pub run: RunInfo,
    pub world: Vec<Slot>,
    pub my_client: MyClient,
    /// (path, bytes) of every file under `run/downloads`.
    pub downloads: Vec<(String, u64)>,
    /// Bytes the VoD server sent, per client.
    pub vod_served: BTreeMap<String, Served>,
}

/// `testbed status --json`: the supervisor's state and the tracker's, while a testbed runs;
/// after a Shadow simulation, its end (`running: false`, in `run/finished.json`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Running {
    pub running: bool,
    pub pid: i32,
    pub world: WorldStatus,
    pub tracker: crate::tracker::status::Status,
}

/// `run/state.json`: what `testbed start` waits on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartState {
    pub phase: Phase,
    pub error: Option<String>,
    /// World clients that announced.
    pub world: usize,
    /// Slots given up after crashing.
    #[serde(default)]
    pub failed: usize,
    /// The tracker's port (the one the system chose for `--port 0`) and the base URL of the
    /// tracker, status page and VoD server, once known.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub url: Option<String>,
}

impl StartState {
    pub fn read(rd: &RunDir) -> Option<StartState> {
        crate::util::fs::read_json(&rd.state_file())
    }

    /// Write it (best effort: a start that cannot write its state fails on its own).
    pub fn write(rd: &RunDir, phase: Phase, error: Option<String>, world: usize, failed: usize) {
        // From the pid file, which the supervisor writes as soon as its port is bound.
        let pid = rd.read_pid();
        let s = StartState {
            phase,
            error,
            world,
            failed,
            port: pid.as_ref().map(|p| p.port),
            url: pid.map(|p| p.url),
        };
        if let Ok(json) = serde_json::to_vec(&s) {
            let _ = crate::util::fs::write_atomic(&rd.state_file(), &json);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_keep_their_names_on_the_wire() {
        let s = serde_json::to_string(&[
            MyClientState::None,
            MyClientState::NotStarted,
            MyClientState::Running,
            MyClientState::Exited,
        ])
        .unwrap();
        assert_eq!(s, r#"["none","not started","running","exited"]"#);
        let p: Vec<Phase> = serde_json::from_str(r#"["starting","ready","stopping"]"#).unwrap();
        assert_eq!(p, [Phase::Starting, Phase::Ready, Phase::Stopping]);
        assert_eq!(Phase::Ready.to_string(), "ready");
        assert!(serde_json::from_str::<Phase>(r#""readY""#).is_err());
    }
}
