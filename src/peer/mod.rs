//! A BitTorrent peer: one torrent, its storage, its connections, its caps. It is what
//! `testbed peer` runs as a world client, and the engine under `vod-client`.
//!
//! The pieces, from the bottom up:
//!
//! * [`storage`]: the content on disk, positional reads and writes, resume by hash check;
//! * [`session`]: the shared state (pieces held, blocks under way, connections) and the
//!   decisions that span connections: which blocks to request (through the
//!   [`crate::policy::PiecePicker`]), verifying finished pieces, banning peers that send corrupt
//!   data, endgame;
//! * [`conn`]: one connection, a reader that speaks the [`crate::wire`] protocol and a writer
//!   that serves blocks under the upload cap;
//! * [`rate`]: rate measurement and governor token buckets (KB/s, 1 KB = 1024 B);
//! * [`tracker_client`]: HTTP announces.
//!
//! [`Peer::start`] ties them together: it binds the listening socket, announces, connects to
//! the peers it learns of, rechokes every 5 s and on events (through the [`crate::policy::Choker`]) and
//! [`Peer::run_until_exit`] runs until the exit condition (complete, linger elapsed, signal).

pub mod conn;
pub mod live;
pub mod rate;
pub mod referee;
pub mod session;
pub mod storage;
pub mod tracker_client;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use tokio::net::{TcpListener, TcpStream};

use crate::announce::{Announce, Event};
use crate::metainfo::Torrent;
use crate::policy::{Choker, PiecePicker};
use crate::wire::Bitfield;
use conn::Timeouts;
use rate::Limiter;
pub use session::Session;

/// When a peer stops on its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExitMode {
    /// Until a signal (SIGINT/SIGTERM).
    Never,
    /// As soon as every piece is held (after announcing `completed`).
    OnComplete,
    /// Seed this long after completing, then exit.
    Linger(Duration),
}

/// Everything a peer needs to start.
pub struct PeerConfig {
    pub torrent: Arc<Torrent>,
    /// The file (single-file torrent) or folder (multi-file) holding the content.
    pub data: PathBuf,
    /// The data must already be complete.
    pub seed: bool,
    pub bind: IpAddr,
    /// 0: any free port.
    pub port: u16,
    pub peer_id: [u8; 20],
    /// KB/s; 0 = no cap.
    pub max_upload_rate: f64,
    pub max_download_rate: f64,
    pub limits: session::Limits,

    /// Announce URL; `None` uses the torrent's. Empty string: no tracker.
    pub tracker: Option<String>,
    pub peers: Vec<SocketAddr>,
    pub exit: ExitMode,
    pub picker: Box<dyn PiecePicker>,
    pub choker: Box<dyn Choker>,
    /// How long after start the choker first decides: until then every connection stays
    /// choked. Zero is BitTornado's timing (a rechoke as each connection comes); a world born
    /// together waits until it has met everyone, so that whom it serves first (and so keeps
    /// serving) is its seeded choice among all of them, not whoever connected first.
    pub first_rechoke: Duration,
    pub timeouts: Timeouts,
    /// Seconds between announces at most (the tracker's interval is used when shorter).
    pub max_announce_interval: Duration,
    /// A VoD client's playback clock (its start and model), set before any connection opens.
    pub playback: Option<(std::time::Instant, crate::policy::Playback)>,
    /// Where to rewrite the live status every second (see [`live`]).
    pub status_file: Option<std::path::PathBuf>,
    /// Where to record what we give peers that are not world clients (see [`referee`]).
    pub referee: Option<std::path::PathBuf>,
}

/// A fresh Azureus-style peer id: `-TB0100-` and 12 random characters.
pub fn new_peer_id() -> [u8; 20] {
    let mut id = *b"-TB0100-000000000000";
    let mut rng = rand::rng();
    const CHARS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for b in &mut id[8..] {
        *b = CHARS[rng.random_range(0..CHARS.len())];
    }
    id
}

/// A running peer.
pub struct Peer {
    pub session: Arc<Session>,
    pub addr: SocketAddr,
    exit: ExitMode,
    tracker: Option<String>,
    client: reqwest::Client,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Set once the tracker has been told `completed` (or the copy was complete from the
    /// start): `stop` tells it first when the download ended just before the stop.
    completed_told: Arc<std::sync::atomic::AtomicBool>,
}

/// The torrent's storage and the pieces already in it, checked; a `--seed` must have every
/// piece.
async fn open_storage(cfg: &PeerConfig) -> anyhow::Result<(storage::Storage, Bitfield)> {
    let (torrent, data, seed) = (cfg.torrent.clone(), cfg.data.clone(), cfg.seed);
    let (storage, have) =
        tokio::task::spawn_blocking(move || storage::Storage::open(&torrent, &data, !seed))
            .await
            .context("storage check")??;
    if cfg.seed && !have.is_complete() {
        anyhow::bail!(
            "{}: --seed, but only {} of {} pieces match the torrent",
            cfg.data.display(),
            have.count(),
            have.len()
        );
    }
    Ok((storage, have))
}

/// Peers given by address are dialled at once (a seed too), and again every 5 s while we
/// lack pieces and are not connected to them: a client still checking its copy (as
/// Transmission does at start) turns connections away.
async fn dial_loop(s: Arc<Session>, peers: Vec<SocketAddr>, t: Timeouts) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut first = true;
    loop {
        tick.tick().await;
        if first || !s.is_complete() {
            for &p in &peers {
                connect(&s, p, t);
            }
        }
        first = false;
    }
}

impl Peer {
    /// Open storage (checking what is there), bind, and start announcing, accepting, connecting
    /// and choking.
    pub async fn start(cfg: PeerConfig) -> anyhow::Result<Peer> {
        let (storage, have) = open_storage(&cfg).await?;
        let listener = TcpListener::bind((cfg.bind, cfg.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", cfg.bind, cfg.port))?;
        let addr = listener.local_addr()?;
        let (up, down) = (
            Limiter::kbps(cfg.max_upload_rate),
            Limiter::kbps(cfg.max_download_rate),
        );
        let cap = |l: &Option<Limiter>| l.as_ref().map_or(0, |l| l.bytes_per_sec);
        tracing::info!(
            up = cap(&up),
            down = cap(&down),
            "caps in bytes/s (0: none)"
        );
        let session = Arc::new(Session::new(
            cfg.torrent.clone(),
            cfg.peer_id,
            storage,
            have,
            cfg.picker,
            session::Caps { up, down },
            cfg.limits,
        ));
        if let Some((start, p)) = cfg.playback {
            session.set_playback(start, p);
        }
        if let Some(path) = &cfg.referee {
            let _ = session.referee.set(referee::Log::open(path)?);
        }
        session.listen_port.store(addr.port(), Ordering::Relaxed);
        let local_ip = (!cfg.bind.is_unspecified()).then_some(cfg.bind);
        if let Some(ip) = local_ip {
            let _ = session.local_ip.set(ip);
        }
        tracing::info!(%addr, info_hash = %cfg.torrent.info_hash, pieces = session.have().count(), "peer started");

        let tracker = match cfg.tracker {
            Some(t) if t.is_empty() => None,
            Some(t) => Some(t),
            None => cfg.torrent.announce.clone(),
        };
        // Announces leave from our own address too, so the tracker hands that one out.
        let client = reqwest::Client::builder()
            .no_proxy()
            .local_address(local_ip)
            .build()?;
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(accept_loop(
            session.clone(),
            listener,
            cfg.timeouts,
        )));
        tasks.push(tokio::spawn(choke_loop(
            session.clone(),
            cfg.choker,
            cfg.first_rechoke,
        )));
        if let Some(path) = cfg.status_file {
            tasks.push(tokio::spawn(live::writer(session.clone(), path)));
        }
        if !cfg.peers.is_empty() {
            tasks.push(tokio::spawn(dial_loop(
                session.clone(),
                cfg.peers,
                cfg.timeouts,
            )));
        }
        let completed_told = Arc::new(std::sync::atomic::AtomicBool::new(session.is_complete()));
        if let Some(url) = tracker.clone() {
            tasks.push(tokio::spawn(announce_loop(
                session.clone(),
                client.clone(),
                url,
                cfg.timeouts,
                cfg.max_announce_interval,
                completed_told.clone(),
            )));
        }
        Ok(Peer {
            session,
            addr,
            exit: cfg.exit,
            tracker,
            client,
            tasks,
            completed_told,
        })
    }

    /// Run until the exit condition or SIGINT/SIGTERM, then announce `stopped` and end.
    pub async fn run_until_exit(self) -> anyhow::Result<()> {
        let mut complete = self.session.complete.subscribe();
        let done = async {
            match self.exit {
                ExitMode::Never => std::future::pending::<()>().await,
                ExitMode::OnComplete | ExitMode::Linger(_) => {
                    let _ = complete.wait_for(|c| *c).await;
                    let (direct, cached) = self.session.storage.lane_writes();
                    tracing::info!(
                        "complete; pieces written {direct} with O_DIRECT, {cached} through the page cache"
                    );
                    if let ExitMode::Linger(d) = self.exit {
                        tracing::info!("complete; lingering {d:?} as a seed");
                        tokio::time::sleep(d).await;
                    }
                }
            }
        };
        tokio::select! {
            _ = done => tracing::info!("exit condition reached"),
            s = crate::util::rt::shutdown_signal() => tracing::info!("{s}: stopping"),
        }
        self.stop().await;
        Ok(())
    }

    /// Stop: end every task and tell the tracker.
    pub async fn stop(self) {
        // A download that just ended has its `completed` announce in flight: let the announce
        // loop finish it (up to 2 s) rather than cut it off and not know whether it arrived.
        if self.tracker.is_some() && self.session.is_complete() {
            let end = tokio::time::Instant::now() + Duration::from_secs(2);
            while !self.completed_told.load(Ordering::Relaxed) && tokio::time::Instant::now() < end
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        for t in &self.tasks {
            t.abort();
        }
        if let Some(url) = &self.tracker {
            // The loop could not tell the tracker (it is down, or slow): try once more here.
            if self.session.is_complete() && !self.completed_told.load(Ordering::Relaxed) {
                let req = announce_request(&self.session, Some(Event::Completed));
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    tracker_client::announce(&self.client, url, &req),
                )
                .await;
            }
            let req = announce_request(&self.session, Some(Event::Stopped));
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                tracker_client::announce(&self.client, url, &req),
            )
            .await;
        }
        let conns: Vec<_> = self
            .session
            .lock()
            .conns
            .values()
            .map(|c| c.tx.clone())
            .collect();
        for c in conns {
            let _ = c.send(session::Cmd::Close("shutting down"));
        }
        let s = &self.session;
        tracing::info!(
            uploaded = s.uploaded.load(Ordering::Relaxed),
            downloaded = s.downloaded.load(Ordering::Relaxed),
            wasted = s.wasted.load(Ordering::Relaxed),
            hash_failures = s.hash_failures.load(Ordering::Relaxed),
            "stopped (bytes; wasted: received but not needed or failed their check)"
        );
    }
}

/// `testbed peer`: one peer as a process, on a runtime of `threads` workers (1: a
/// current-thread runtime, the light choice for world clients). Prints one machine-readable
/// line for whoever started it (tests, the lab): `listening ADDR peer_id ID`.
pub fn run_standalone(cfg: PeerConfig, threads: usize) -> anyhow::Result<()> {
    crate::util::rt::runtime(threads)?.block_on(async {
        let p = Peer::start(cfg).await?;
        crate::util::outln!(
            "listening {} peer_id {}",
            p.addr,
            String::from_utf8_lossy(&p.session.peer_id)
        );
        p.run_until_exit().await
    })
}

async fn accept_loop(session: Arc<Session>, listener: TcpListener, t: Timeouts) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                if session.num_conns() >= session.limits.max_connections {
                    tracing::debug!(%addr, "refused: connection limit");
                    continue;
                }
                tokio::spawn(conn::run(session.clone(), stream, addr, false, t));
            }
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Dial a peer unless we are already connected or dialling it.
pub fn connect(session: &Arc<Session>, addr: SocketAddr, t: Timeouts) {
    {
        let mut st = session.lock();
        let own = addr.port() == session.listen_port.load(Ordering::Relaxed)
            && (addr.ip().is_loopback() || session.local_ip.get() == Some(&addr.ip()));
        if own
            || st.conns.len() + st.connecting.len() >= session.limits.max_connections
            || st.conns.values().any(|c| c.addr == addr)
            || !st.connecting.insert(addr)
        {
            return;
        }
    }
    let session = session.clone();
    tokio::spawn(async move {
        let r =
            tokio::time::timeout(Duration::from_secs(5), dial(addr, session.local_ip.get())).await;
        session.lock().connecting.remove(&addr);
        match r {
            Ok(Ok(stream)) => conn::run(session, stream, addr, true, t).await,
            Ok(Err(e)) => tracing::debug!(%addr, "connect failed: {e}"),
            Err(_) => tracing::debug!(%addr, "connect timed out"),
        }
    });
}

/// A connection to `addr`, from `from` when given (a world client dials from its own address,
/// so that every peer sees it under that one).
async fn dial(addr: SocketAddr, from: Option<&IpAddr>) -> std::io::Result<TcpStream> {
    let Some(&ip) = from.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) else {
        return TcpStream::connect(addr).await;
    };
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(addr).await
}

fn announce_request(session: &Session, event: Option<Event>) -> Announce {
    Announce {
        info_hash: session.torrent.info_hash.0,
        peer_id: session.peer_id,
        port: session.listen_port.load(Ordering::Relaxed),
        uploaded: session.uploaded.load(Ordering::Relaxed),
        downloaded: session.downloaded.load(Ordering::Relaxed),
        left: session.left(),
        event,
        numwant: 50,
        compact: true,
        no_peer_id: false,
        ip: None,
    }
}

async fn announce_loop(
    session: Arc<Session>,
    client: reqwest::Client,
    url: String,
    t: Timeouts,
    max_interval: Duration,
    completed_told: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut event = Some(Event::Started);
    let mut announced_complete = session.is_complete();
    let mut complete = session.complete.subscribe();
    let mut backoff = Duration::from_secs(1);
    loop {
        let req = announce_request(&session, event);
        let wait = match tracker_client::announce(&client, &url, &req).await {
            Ok(resp) => {
                tracing::debug!(peers = resp.peers.len(), "announced {:?}", event);
                if event == Some(Event::Completed) {
                    completed_told.store(true, Ordering::Relaxed);
                }
                event = None;
                backoff = Duration::from_secs(1);
                for p in resp.peers {
                    connect(&session, p, t);
                }
                resp.interval.clamp(Duration::from_secs(1), max_interval)
            }
            Err(e) => {
                tracing::warn!("announce to {url} failed: {e:#}; retrying in {backoff:?}");
                let w = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                w
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            r = complete.wait_for(|c| *c), if !announced_complete => {
                if r.is_ok() {
                    announced_complete = true;
                    event = Some(Event::Completed);
                }
            }
        }
    }
}

async fn choke_loop(session: Arc<Session>, mut choker: Box<dyn Choker>, first: Duration) {
    // Events that come while we wait are not lost: a notification waits for the first rechoke.
    tokio::time::sleep(first).await;
    // BitTornado's timing: a round every 5 s (the choker rotates its optimistic unchoke every
    // sixth), and a rechoke at once when the session asks (a connection came or went, an
    // unchoked peer turned interested or not), and, for a choker that asks, when a choked peer
    // turns interested.
    let mut round: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let eager = choker.fills_free_slots_at_once();
    loop {
        tokio::select! {
            _ = tick.tick() => round += 1,
            _ = session.rechoke.notified() => {}
            _ = session.choked_interested.notified(), if eager => {
                // The others that the same `have` turned interested come within milliseconds:
                // choose among all of them, not the first message's sender.
                tokio::time::sleep(crate::policy::GATHER).await;
            }
        }
        let candidates = session.choke_candidates();
        let unchoke = choker.rechoke(&candidates, session.is_complete(), round);
        if tracing::enabled!(tracing::Level::DEBUG) {
            // Who competes for our slots and what each gives us: a trace of the world's
            // tit-for-tat (`conn` ids are named by the "registered" lines).
            let line: Vec<String> = candidates
                .iter()
                .filter(|c| c.interested)
                .map(|c| {
                    let on = if unchoke.contains(&c.id) { "+" } else { "" };
                    let on = if c.unchokes_us {
                        format!("{on}*")
                    } else {
                        on.to_string()
                    };
                    format!("{on}{}:{:.0}", c.id, c.download_rate / 1024.0)
                })
                .collect();
            tracing::debug!(round, interested = %line.join(" "), "rechoke");
        }
        let unchoke: Vec<_> = unchoke
            .into_iter()
            .map(|id| (id, choker.upload_cap(id)))
            .collect();
        session.apply_choke(&unchoke);
    }
}
