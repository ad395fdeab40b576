//! The status page's view model: what the page shows, gathered from the supervisor's state,
//! the tracker's swarms and the files the run writes (each world client's live status, my
//! client's VoD report, the referee's records), before anything is rendered. [`super::page`]
//! only turns a [`Live`] into HTML.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::lab::api::{MyClient, MyClientState, Phase, WorldStatus};
use crate::lab::world::{Role, Slot, SlotState};
use crate::lab::Orchestrator;
use crate::peer::live::LiveStatus;
use crate::tracker::status::{PeerStatus, SwarmStatus};
use crate::util::html::printable_id;
use crate::vod::server::Served;
use crate::vod::Report;

/// Rows of a swarm's table in the page's default view. A person reads a few dozen rows; a
/// browser that re-parses 500 every second spent over 100 ms doing it (make bench). The rest
/// are a click away (`/?all=1`), and every client is in `/api/world`.
pub const SHOWN_ROWS: usize = 100;

/// The part of the page that changes: the run, my client, the swarms.
pub struct Live {
    pub phase: Phase,
    pub uptime_secs: f64,
    pub run_id: String,
    /// Served by a testbed (links to its JSON); false for a finished simulation's file.
    pub served: bool,
    pub my: My,
    pub swarms: Vec<Swarm>,
}

/// My client's part.
pub struct My {
    pub state: MyClientState,
    pub command: String,
    pub pid: Option<i32>,
    pub exit: Option<String>,
    pub penalty: Penalty,
    /// The client's own VoD report, or else the referee's view in its shape.
    pub report: Option<Report>,
}

/// What my client has paid so far.
pub enum Penalty {
    /// Bytes the VoD server sent it.
    Server { bytes: u64, percent: f64 },
    /// A client that has not called the server is scored by the referee: the bytes of the
    /// pieces late so far (due by now and not delivered by their deadline).
    Referee {
        bytes: u64,
        percent: f64,
        world_peers: u32,
    },
}

/// One swarm: its counts, its heat strip and its clients' rows.
pub struct Swarm {
    pub info_hash: String,
    /// The torrent's name, as the tracker knows it.
    pub name: Option<String>,
    /// The torrent's size in bytes, as the tracker knows it.
    pub size: Option<u64>,
    pub seeds: usize,
    pub leechers: usize,
    pub completed: u64,
    pub uploaded: u64,
    /// Bytes a second, every client's upload together.
    pub up_rate: f64,
    /// Per piece, the clients holding it (empty: the swarm's torrent is not the lab's).
    pub holders: Vec<u32>,
    /// Every client, my client first, then seeds, the world, and the rest.
    pub rows: Vec<Row>,
    /// How many of `rows` the page shows.
    pub shown: usize,
}

/// One client of a swarm.
pub struct Row {
    pub role: &'static str,
    pub class: &'static str,
    pub peer_id: String,
    pub addr: String,
    /// The emulated link (a run with `network:`).
    pub link: Option<String>,
    pub state: String,
    /// Share of the pieces, 0 to 1.
    pub progress: Option<f64>,
    pub up_rate: Option<f64>,
    pub down_rate: Option<f64>,
    pub uploaded: Option<u64>,
    pub last_seen: Option<f64>,
    pub reincarnations: Option<u32>,
}

impl Live {
    /// The page's state now; `all`: every client's row, not only the first [`SHOWN_ROWS`].
    pub fn gather(o: &Orchestrator, all: bool) -> Live {
        let w = o.snapshot();
        let my = My::gather(o, &w);
        let slots = slots_by_hash(o, &w.world);
        let my_hash = w.run.my_torrent().map(|t| t.info_hash.clone());
        let swarms = o
            .tracker
            .status()
            .swarms
            .iter()
            .map(|sw| {
                let mine = my_hash.as_deref() == Some(sw.info_hash.as_str());
                let report = my.report.as_ref().filter(|_| mine);
                let others = Others {
                    my_running: mine && w.my_client.state == MyClientState::Running,
                    served: &w.vod_served,
                };
                let slots = slots.get(&sw.info_hash).map_or(&[][..], Vec::as_slice);
                Swarm::gather(o, sw, slots, report, others, all)
            })
            .collect();
        Live {
            phase: w.phase,
            uptime_secs: w.uptime_secs,
            run_id: w.run.run_id.clone(),
            served: true,
            my,
            swarms,
        }
    }
}

/// The world's slots of each swarm, by info hash.
fn slots_by_hash<'a>(o: &Orchestrator, world: &'a [Slot]) -> HashMap<String, Vec<&'a Slot>> {
    let mut m: HashMap<String, Vec<&Slot>> = HashMap::new();
    for s in world {
        if let Some(sw) = o.world.swarms.get(s.swarm) {
            m.entry(sw.torrent.info_hash.hex()).or_default().push(s);
        }
    }
    m
}

impl My {
    fn gather(o: &Orchestrator, w: &WorldStatus) -> My {
        let served: u64 = w.vod_served.values().map(|s| s.bytes).sum();
        let own_report = Report::read(&w.run.report);
        // What the referee saw (any client that started has that), on my client's clock:
        // read only when the page needs it, for a client that writes no report or never
        // called the server (it reads every world client's record).
        let referee = (own_report.is_none() || served == 0)
            .then(|| o.verdict())
            .flatten()
            .and_then(|v| {
                let t = w.run.my_torrent()?;
                let model = o.my_model()?;
                let elapsed = w.uptime_secs - w.my_client.started_secs?;
                Some((v, model, t.name.clone(), elapsed))
            });
        let report = own_report.or_else(|| {
            let (v, model, name, elapsed) = referee.as_ref()?;
            Some(v.as_report(name, model, *elapsed, served))
        });
        let size = w.run.my_torrent().map_or(0, |t| t.size);
        let percent = |b: u64| match size {
            0 => 0.0,
            size => b as f64 * 100.0 / size as f64,
        };
        let penalty = match &referee {
            Some((v, model, _, elapsed)) if served == 0 => {
                let bytes = v
                    .pieces
                    .iter()
                    .filter(|p| p.late && p.deadline <= *elapsed)
                    .map(|p| {
                        let start = p.index as u64 * model.piece_length as u64;
                        (model.size - start).min(model.piece_length as u64)
                    })
                    .sum();
                Penalty::Referee {
                    bytes,
                    percent: percent(bytes),
                    world_peers: v.world_peers_connected,
                }
            }
            _ => Penalty::Server {
                bytes: served,
                percent: percent(served),
            },
        };
        let MyClient {
            command,
            pid,
            state,
            exit,
            ..
        } = &w.my_client;
        My {
            state: *state,
            command: command.join(" "),
            pid: *pid,
            exit: exit.clone(),
            penalty,
            report,
        }
    }
}

/// What tells my client from a peer from outside the world among the clients the tracker
/// knows and the world does not.
#[derive(Clone, Copy)]
struct Others<'a> {
    /// My client runs, in this swarm.
    my_running: bool,
    /// Bytes the VoD server sent, per peer id.
    served: &'a BTreeMap<String, Served>,
}

impl Swarm {
    fn gather(
        o: &Orchestrator,
        sw: &SwarmStatus,
        slots: &[&Slot],
        report: Option<&Report>,
        others: Others,
        all: bool,
    ) -> Swarm {
        let pieces = o
            .world
            .swarms
            .iter()
            .find(|s| s.torrent.info_hash.hex() == sw.info_hash)
            .map(|s| s.torrent.num_pieces());
        let by_id: HashMap<&str, &PeerStatus> =
            sw.peers.iter().map(|p| (p.peer_id.as_str(), p)).collect();
        let mut holders: Vec<u32> = vec![0; pieces.unwrap_or(0) as usize];
        let mut rows: Vec<Row> = slots
            .iter()
            .map(|s| world_row(o, s, &by_id, pieces, &mut holders))
            .collect();
        let in_world: HashSet<String> = rows.iter().map(|r| r.peer_id.clone()).collect();
        rows.extend(
            sw.peers
                .iter()
                .filter(|p| !in_world.contains(&p.peer_id))
                .map(|p| other_row(o, p, others)),
        );
        for d in report.iter().flat_map(|r| &r.pieces_detail) {
            if let Some(c) = holders
                .get_mut(d.index as usize)
                .filter(|_| d.arrived.is_some())
            {
                *c += 1;
            }
        }
        rows.sort_by_key(|r| match r.role {
            "my client" => 0,
            "seed" => 1,
            "world" => 2,
            _ => 3,
        });
        Swarm {
            info_hash: sw.info_hash.clone(),
            name: sw.name.clone(),
            size: sw.size,
            seeds: sw.seeds,
            leechers: sw.leechers,
            completed: sw.completed,
            uploaded: rows.iter().filter_map(|r| r.uploaded).sum(),
            up_rate: rows.iter().filter_map(|r| r.up_rate).sum(),
            holders,
            shown: if all {
                rows.len()
            } else {
                rows.len().min(SHOWN_ROWS)
            },
            rows,
        }
    }
}

/// A world client's row, from its slot, its live status file and the tracker; the pieces it
/// holds are counted into `holders`.
fn world_row(
    o: &Orchestrator,
    s: &Slot,
    by_id: &HashMap<&str, &PeerStatus>,
    pieces: Option<u32>,
    holders: &mut [u32],
) -> Row {
    let id = printable_id(&s.peer_id);
    let tp = by_id.get(id.as_str()).copied();
    let live = (s.state == SlotState::Running)
        .then(|| LiveStatus::read(&o.world.status_file(s.swarm, s.index)))
        .flatten();
    if let (Some(l), Some(n)) = (&live, pieces) {
        for i in l.bitfield(n).iter().flat_map(|b| b.iter_ones()) {
            holders[i as usize] += 1;
        }
    }
    let seed = s.role == Role::Seed;
    Row {
        role: if seed { "seed" } else { "world" },
        class: if seed { "role-seed" } else { "role-world" },
        peer_id: id,
        addr: s.addr.to_string(),
        link: s.link.map(|l| l.describe()),
        state: s.state.as_str().to_string(),
        progress: match (&live, pieces) {
            (Some(l), Some(n)) if n > 0 => Some(l.pieces_held as f64 / n as f64),
            _ => tp.and_then(|p| p.progress),
        },
        up_rate: live.as_ref().map(|l| l.up_rate),
        down_rate: live.as_ref().map(|l| l.down_rate),
        uploaded: live.as_ref().map(|l| l.uploaded).or(tp.map(|p| p.uploaded)),
        last_seen: tp.map(|p| p.last_seen_secs),
        reincarnations: Some(s.reincarnations),
    }
}

/// The row of a client the tracker knows and the world does not: my client, or a peer from
/// outside the world.
fn other_row(o: &Orchestrator, p: &PeerStatus, others: Others) -> Row {
    let is_my = others.my_running || others.served.contains_key(&p.peer_id);
    Row {
        role: if is_my { "my client" } else { "other" },
        class: if is_my { "role-my" } else { "role-other" },
        peer_id: p.peer_id.clone(),
        addr: p.ip.clone(),
        link: o.info.my_link.filter(|_| is_my).map(|l| l.describe()),
        state: "running".into(),
        progress: p.progress,
        up_rate: Some(p.up_rate),
        down_rate: Some(p.down_rate),
        uploaded: Some(p.uploaded),
        last_seen: Some(p.last_seen_secs),
        reincarnations: None,
    }
}
