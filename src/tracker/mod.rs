//! The lab's HTTP tracker, the counterpart of BitTornado's `bttrack`, on port 6970 by default.
//!
//! Split by concern:
//!
//! * [`crate::announce::query`]: announce and scrape queries parsed from the raw query string
//!   (pure, shared with the protocol layer);
//! * [`swarm`]: swarms and peers in memory, what an announce does, bencoded answers (pure);
//! * [`access`]: the access log, one line per request, written in batches;
//! * [`status`]: the same state for people and tools: `/` (HTML), `/api/status` (JSON),
//!   `/metrics` (Prometheus text);
//! * [`http`]: the axum routes and the listener that serves them;
//! * this file: the [`Tracker`] (state behind one lock, config, counters).
//!
//! Bad requests get HTTP 200 with a bencoded `failure reason`, as clients expect. Peers that
//! stop, or are not heard from for two intervals (at least 330 s: libtorrent clients
//! re-announce only every 300 s), are dropped. Every request is logged in one
//! line ([`access`]).

pub mod access;
pub mod http;
pub mod listener;
pub mod status;
pub mod swarm;

pub use http::{api_router, bind_std, run_standalone, serve_on};

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::announce::query;
use crate::metainfo::Torrent;
use crate::util::Locked;
use swarm::{InfoHash, Swarm};

/// How the tracker behaves.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// The re-announce interval given to clients (short in a lab, so the status page is live).
    pub interval: Duration,
    pub min_interval: Duration,
    /// Track any info hash (true), or only registered torrents (an allow-list).
    pub allow_unknown: bool,
    /// Most swarms held at once (unknown hashes beyond it are refused).
    pub max_swarms: usize,
    /// Most peers per swarm.
    pub max_peers_per_swarm: usize,
    /// When set, loopback peer addresses are given as this IP to clients on other hosts.
    pub public_ip: Option<IpAddr>,
    /// Most HTTP connections at once (more wait in the kernel's backlog).
    pub max_connections: usize,
    /// A connection that sends nothing for this long while the server waits to read is closed
    /// (longer than the interval, so that keep-alive announcers keep theirs).
    pub idle_timeout: Duration,
    /// A peer not heard from for this long is dropped from its swarm (see
    /// [`TrackerConfig::peer_timeout_for`]).
    pub peer_timeout: Duration,
    /// Where the access log goes (`None`: nowhere).
    pub access_log: Option<access::AccessSink>,
}

impl TrackerConfig {
    /// Seconds libtorrent waits at least between two announces, whatever interval the tracker
    /// gives (its `min_announce_interval`, 300 s by default): qBittorrent, Deluge and every
    /// other libtorrent client re-announce this seldom in the lab too.
    pub const LIBTORRENT_MIN_ANNOUNCE: Duration = Duration::from_secs(300);

    /// How long a silent peer stays listed when the interval is `interval`: two intervals, but
    /// never less than libtorrent's own re-announce period and a margin. With two intervals
    /// alone (20 s in the lab), a libtorrent client vanished from the peer lists after its
    /// first announce, and the world clients started after that never learned of it.
    pub fn peer_timeout_for(interval: Duration) -> Duration {
        (interval * 2).max(Self::LIBTORRENT_MIN_ANNOUNCE + Duration::from_secs(30))
    }
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            interval: Duration::from_secs(10),
            min_interval: Duration::from_secs(5),
            allow_unknown: true,
            max_swarms: 10_000,
            max_peers_per_swarm: 10_000,
            public_ip: None,
            max_connections: 4096,
            idle_timeout: Duration::from_secs(30),
            peer_timeout: TrackerConfig::peer_timeout_for(Duration::from_secs(10)),
            access_log: None,
        }
    }
}

/// A torrent the tracker knows by name (the testbed's own, or `--allow`ed).
#[derive(Debug, Clone, serde::Serialize)]
pub struct KnownTorrent {
    pub name: String,
    pub size: u64,
    pub pieces: u32,
    pub piece_length: u32,
}

/// Request counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub announces: AtomicU64,
    pub scrapes: AtomicU64,
    pub failures: AtomicU64,
}

/// Why a request was refused: the text of the bencoded `failure reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Query(#[from] query::QueryError),
    #[error("unknown torrent (not on this tracker's allow-list)")]
    UnknownTorrent,
    #[error("too many swarms (limit {0})")]
    TooManySwarms(usize),
    #[error("swarm full (limit {0} peers)")]
    SwarmFull(usize),
}

/// The tracker's state.
pub struct Tracker {
    pub config: TrackerConfig,
    swarms: Mutex<HashMap<InfoHash, Swarm>>,
    known: RwLock<HashMap<InfoHash, KnownTorrent>>,
    pub metrics: Metrics,
    pub started: Instant,
    /// Extra sections of `/api/status` added by whoever embeds the tracker (the orchestrator's
    /// VoD counts), by name.
    extra: RwLock<Vec<(&'static str, StatusSection)>>,
    access: access::AccessLog,
}

/// A section of `/api/status` that the embedding program fills in.
pub type StatusSection = Box<dyn Fn() -> serde_json::Value + Send + Sync>;

impl Tracker {
    /// A tracker with no swarms yet; fails only if its access log cannot be opened.
    pub fn new(config: TrackerConfig) -> std::io::Result<Arc<Tracker>> {
        let access = match &config.access_log {
            Some(sink) => access::AccessLog::open(sink)?,
            None => access::AccessLog::off(),
        };
        Ok(Arc::new(Tracker {
            access,
            config,
            swarms: Mutex::new(HashMap::new()),
            known: RwLock::new(HashMap::new()),
            metrics: Metrics::default(),
            started: Instant::now(),
            extra: RwLock::new(Vec::new()),
        }))
    }

    /// Add a section `name` to `/api/status`, computed at each request.
    pub fn add_status_section(&self, name: &'static str, section: StatusSection) {
        self.extra
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((name, section));
    }

    /// Sections added with [`Self::add_status_section`], computed now.
    pub fn status_sections(&self) -> Vec<(&'static str, serde_json::Value)> {
        self.extra
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, f)| (*k, f()))
            .collect()
    }

    /// Make a torrent known (named on the status page; allowed when the allow-list is on).
    pub fn register(&self, t: &Torrent) {
        self.known
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                t.info_hash.0,
                KnownTorrent {
                    name: t.name.clone(),
                    size: t.total_length,
                    pieces: t.num_pieces(),
                    piece_length: t.piece_length,
                },
            );
    }

    pub fn known(&self) -> HashMap<InfoHash, KnownTorrent> {
        self.known.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn is_known(&self, h: &InfoHash) -> bool {
        self.known
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(h)
    }

    /// Run `f` on the swarms under the lock.
    pub fn with_swarms<R>(&self, f: impl FnOnce(&mut HashMap<InfoHash, Swarm>) -> R) -> R {
        f(&mut self.swarms.locked())
    }

    /// What an announce does: the peer listed (or dropped), and the bencoded answer.
    pub fn announce(
        &self,
        a: &crate::announce::Announce,
        from: SocketAddr,
    ) -> Result<Vec<u8>, Refusal> {
        if !self.config.allow_unknown && !self.is_known(&a.info_hash) {
            return Err(Refusal::UnknownTorrent);
        }
        // The lab trusts the source address; `ip=` is honoured only from loopback (a local
        // client announcing on behalf of another address of this host).
        let ip = match a.ip {
            Some(ip) if from.ip().is_loopback() => ip,
            _ => from.ip(),
        };
        let addr = SocketAddr::new(ip, a.port);
        let now = Instant::now();
        let public = self.config.public_ip.filter(|_| !from.ip().is_loopback());
        let map_ip = |ip: IpAddr| match public {
            Some(p) if ip.is_loopback() => p,
            _ => ip,
        };
        let mut out = Vec::with_capacity(64 + 6 * a.numwant);
        self.with_swarms(|swarms| {
            if !swarms.contains_key(&a.info_hash) && swarms.len() >= self.config.max_swarms {
                return Err(Refusal::TooManySwarms(self.config.max_swarms));
            }
            let s = swarms.entry(a.info_hash).or_default();
            if s.peers().len() >= self.config.max_peers_per_swarm
                && !s.peers().iter().any(|p| p.peer_id == a.peer_id)
            {
                return Err(Refusal::SwarmFull(self.config.max_peers_per_swarm));
            }
            s.announce(a, addr, now);
            let peers = if a.event == Some(crate::announce::Event::Stopped) {
                Vec::new()
            } else {
                s.select(&a.peer_id, a.numwant, a.left == 0)
            };
            swarm::encode_announce(
                s,
                &peers,
                self.config.interval,
                self.config.min_interval,
                a.compact,
                a.no_peer_id,
                map_ip,
                &mut out,
            );
            Ok(())
        })?;
        Ok(out)
    }

    /// Answer a scrape query.
    pub fn scrape(&self, raw: &str) -> Result<Vec<u8>, Refusal> {
        let hashes = query::parse_scrape(raw)?;
        Ok(self.with_swarms(|swarms| {
            if hashes.is_empty() {
                swarm::encode_scrape(swarms.iter())
            } else {
                swarm::encode_scrape(hashes.iter().filter_map(|h| swarms.get_key_value(h)))
            }
        }))
    }

    /// Drop peers silent for longer than the peer timeout, and empty swarms.
    pub fn expire(&self) -> usize {
        let cutoff = Instant::now().checked_sub(self.config.peer_timeout);
        let Some(cutoff) = cutoff else { return 0 };
        self.with_swarms(|swarms| {
            let n = swarms.values_mut().map(|s| s.expire(cutoff)).sum();
            swarms.retain(|_, s| !s.peers().is_empty());
            n
        })
    }
}
