//! `vod-client`, the default "my client" (the counterpart of BitTornado's
//! `btdownloadheadless.py` template): the engine's [`Peer`] with a VoD policy, plus a playback
//! clock. At each piece's deadline a piece not complete and verified is completed from the VoD
//! server: only its blocks (16 KiB) not yet received from peers are fetched (the whole piece
//! again if the result fails its check), then it is verified, written and counted. Each such
//! fetch is a task of its own, so one slow answer never pushes back a later deadline. It keeps
//! seeding under its upload cap while it plays, writes its report every second (atomically),
//! and exits when playback ends (or after `--linger` seconds more of seeding).
//!
//! * [`args`]: the command line (the old template's flags);
//! * [`book`]: the report's bookkeeping;
//! * [`fetch`]: the VoD server's client and the completion of a late piece;
//! * this file: the playback clock, start and shutdown.

pub mod args;
pub(crate) mod book;
pub(crate) mod fetch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

pub use args::Args;
use book::Book;
use fetch::VodServer;

use super::{Model, Report};
use crate::metainfo::Torrent;
use crate::peer::{self, ExitMode, Peer, PeerConfig};

/// Run the client to the end of playback. Returns the final report.
pub fn main_with(a: Args) -> anyhow::Result<Report> {
    let t0 = Instant::now();
    a.check()?;
    crate::util::rt::init_logging(a.log.as_deref(), "warn")?;
    let torrent = Arc::new(Torrent::from_file(&a.torrent)?);
    if torrent.multi_file {
        anyhow::bail!(
            "{}: a multi-file torrent cannot be played",
            a.torrent.display()
        );
    }
    let seed = a.rng_seed.unwrap_or_else(rand::random);
    let model = Model::new(
        a.rate,
        a.delay,
        a.prefetch,
        torrent.total_length,
        torrent.piece_length,
    );
    let cfg = PeerConfig {
        torrent: torrent.clone(),
        data: a
            .saveas
            .clone()
            .unwrap_or_else(|| PathBuf::from(&torrent.name)),
        seed: false,
        bind: a.bind,
        port: a.port,
        peer_id: peer::new_peer_id(),
        max_upload_rate: a.max_upload_rate,
        max_download_rate: 0.0,
        limits: Default::default(),
        tracker: a.tracker.clone(),
        peers: Vec::new(),
        exit: ExitMode::Never,
        picker: a.policy.picker(seed),
        choker: a.choker.unwrap_or(a.policy.default_choker()).build(
            a.max_uploads.unwrap_or(a.policy.default_upload_slots()),
            seed,
            a.max_upload_rate * 1024.0,
            0.0,
        ),
        first_rechoke: Duration::ZERO,
        timeouts: Default::default(),
        max_announce_interval: Duration::from_secs(30),
        playback: Some((t0, model.playback())),
        status_file: None,
        referee: None,
    };
    crate::util::rt::runtime(2)?.block_on(play(a, cfg, model, t0))
}

/// Start the peer, play to the end (fetching late pieces), then stop.
async fn play(a: Args, cfg: PeerConfig, model: Model, t0: Instant) -> anyhow::Result<Report> {
    let torrent = cfg.torrent.clone();
    let p = Peer::start(cfg).await?;
    let mut arrived = p.session.pieces_tx.subscribe();
    let session = p.session.clone();
    let server = match &a.vod_server {
        Some(url) => {
            let id = a
                .client_id
                .clone()
                .unwrap_or_else(|| String::from_utf8_lossy(&session.peer_id).into_owned());
            Some(VodServer::new(url, &id)?)
        }
        None => {
            tracing::warn!("no --vod-server: pieces late at their deadline stay missing");
            None
        }
    };
    let book = Arc::new(Book::new(&torrent, model, a.policy, t0));
    book.held_at_start(session.have().iter_ones());
    let mut tasks = JoinSet::new();
    // Arrivals from peers.
    {
        let (book, torrent) = (book.clone(), torrent.clone());
        tasks.spawn(async move {
            while let Ok(i) = arrived.recv().await {
                book.got_from_peers(i, torrent.piece_len(i) as u64);
            }
        });
    }
    // The report on disk, every second.
    if let Some(path) = a.report.clone() {
        let book = book.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                book.write(&path);
            }
        });
    }
    let at = |secs: f64| tokio::time::Instant::from(t0 + Duration::from_secs_f64(secs));
    // Playback: at each deadline, a task completes the piece from the server if peers did not.
    let playback = async {
        let mut fetches = JoinSet::new();
        for i in 0..torrent.num_pieces() {
            tokio::time::sleep_until(at(model.deadline(i))).await;
            while fetches.try_join_next().is_some() {}
            if let Some(server) = &server {
                fetches.spawn(fetch::complete_late_piece(
                    session.clone(),
                    server.clone(),
                    book.clone(),
                    torrent.clone(),
                    i,
                ));
            }
        }
        tokio::time::sleep_until(at(model.end())).await;
        while fetches.join_next().await.is_some() {}
    };
    tokio::select! {
        _ = playback => {}
        s = crate::util::rt::shutdown_signal() => tracing::warn!("{s} during playback"),
    }
    book.finish();
    if let Some(path) = &a.report {
        book.write(path);
    }
    if a.linger > 0.0 {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(a.linger)) => {}
            _ = crate::util::rt::shutdown_signal() => {}
        }
    }
    tasks.abort_all();
    p.stop().await;
    Ok(book.snapshot())
}
