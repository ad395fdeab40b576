//! `vod-client`, the default "my client" (the counterpart of BitTornado's
//! `btdownloadheadless.py` template): the engine's [`Peer`] with a VoD picker, plus a playback
//! clock. At each piece's deadline a piece not complete and verified is completed from the VoD
//! server: only its blocks (16 KiB) not yet received from peers are fetched (the whole piece
//! again if the result fails its check), then it is verified, written and counted. It keeps
//! seeding under its upload cap while it plays, writes its report every second (atomically),
//! and exits when playback ends (or after `--linger` seconds more of seeding).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

use super::{Model, PieceDetail, Report, Source};
use crate::metainfo::Torrent;
use crate::orchestrator::rundir::write_atomic;
use crate::peer::{self, ExitMode, Peer, PeerConfig};
use crate::policy::{self, tit_for_tat::TitForTat, window_choker::WindowChoker, Choker};

/// The old template's flags are kept (underscores and all); `--security` is accepted and ignored.
#[derive(Parser, Debug)]
#[command(
    name = "vod-client",
    version,
    about = "Play a torrent while downloading it; fetch late pieces from the VoD server"
)]
pub struct Args {
    pub torrent: PathBuf,
    /// Where to save the file (default: its name in the current folder)
    #[arg(long)]
    pub saveas: Option<PathBuf>,
    /// Upload cap, KB/s (1 KB = 1024 B); 0 = none
    #[arg(
        long = "max_upload_rate",
        alias = "max-upload-rate",
        default_value_t = 20.0
    )]
    pub max_upload_rate: f64,
    /// Upload slots, the optimistic one included (BitTornado's `--max_uploads`; default 3 for
    /// the deadline policy, 4 otherwise)
    #[arg(long = "max_uploads", alias = "max-uploads")]
    pub max_uploads: Option<usize>,
    /// Accepted for compatibility with the old template; no effect
    #[arg(long)]
    pub security: Option<String>,
    /// Playback rate R, KB/s
    #[arg(long, default_value_t = 60.0)]
    pub rate: f64,
    /// Startup delay D, seconds
    #[arg(long, default_value_t = 6.0)]
    pub delay: f64,
    /// Prefetch P, seconds
    #[arg(long, default_value_t = 2.0)]
    pub prefetch: f64,
    /// VoD server URL for this torrent (e.g. http://127.0.0.1:6970/vod/HASH); none: late pieces are just late
    #[arg(long = "vod-server", alias = "vod_server")]
    pub vod_server: Option<String>,
    /// Report file (JSON), rewritten every second
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Piece picker: deadline, rarest, sequential
    #[arg(long, default_value = "deadline")]
    pub policy: String,
    /// Seed this many seconds after playback ends, then exit
    #[arg(long, default_value_t = 0.0)]
    pub linger: f64,
    /// Name given to the VoD server (default: our peer id)
    #[arg(long)]
    pub client_id: Option<String>,
    /// Announce URL instead of the torrent's
    #[arg(long)]
    pub tracker: Option<String>,
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Log file (default: stderr, warnings only; RUST_LOG overrides)
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Seed of the policy's random choices
    #[arg(long)]
    pub rng_seed: Option<u64>,
}

/// Run the client to the end of playback. Returns the final report.
pub fn main_with(a: Args) -> anyhow::Result<Report> {
    let t0 = Instant::now();
    check(&a)?;
    crate::cli::init_logging(a.log.as_deref(), "warn")?;
    let torrent = Arc::new(Torrent::from_file(&a.torrent)?);
    if torrent.multi_file {
        anyhow::bail!(
            "{}: a multi-file torrent cannot be played",
            a.torrent.display()
        );
    }
    let seed = a.rng_seed.unwrap_or_else(rand::random);
    let picker = policy::picker_by_name(&a.policy, seed).with_context(|| {
        format!(
            "--policy {}: unknown (known: {})",
            a.policy,
            policy::PICKERS.join(", ")
        )
    })?;
    let model = Model::new(
        a.rate,
        a.delay,
        a.prefetch,
        torrent.total_length,
        torrent.piece_length,
    );
    let saveas = a
        .saveas
        .clone()
        .unwrap_or_else(|| PathBuf::from(&torrent.name));
    // The deadline policy spends our uploads on the peers that hold the playback window, in
    // three slots: a third of our cap beats what a world client's other uploaders give it (a
    // quarter of theirs), so it keeps serving us (see policy/window_choker.rs). The others
    // keep BitTornado's choker and its four slots, so that they compare pickers alone.
    let choker: Box<dyn Choker> = if a.policy == "deadline" {
        Box::new(WindowChoker::new(a.max_uploads.unwrap_or(3), seed ^ 0x5eed))
    } else {
        Box::new(TitForTat::new(a.max_uploads.unwrap_or(4), seed ^ 0x5eed))
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let cfg = PeerConfig {
            torrent: torrent.clone(),
            data: saveas,
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
            picker,
            choker,
            timeouts: Default::default(),
            max_announce_interval: Duration::from_secs(30),
            playback: Some((t0, model.playback())),
            status_file: None,
        };
        let mut pieces_rx;
        let p = {
            let p = Peer::start(cfg).await?;
            pieces_rx = p.session.pieces_tx.subscribe();
            p
        };
        let session = p.session.clone();
        let client_id = a
            .client_id
            .clone()
            .unwrap_or_else(|| String::from_utf8_lossy(&session.peer_id).into_owned());
        if a.vod_server.is_none() {
            tracing::warn!("no --vod-server: pieces late at their deadline stay missing");
        }

        let report = Arc::new(Mutex::new(new_report(&a, &torrent, &model)));
        // Pieces on disk at start count as arrived at 0.
        {
            let have = session.have();
            let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
            for i in have.iter_ones() {
                r.pieces_detail[i as usize].arrived = Some(t0.elapsed().as_secs_f64());
                r.pieces_detail[i as usize].source = Some(Source::Peer);
            }
        }
        // Arrivals from peers.
        let arrivals = {
            let report = report.clone();
            let torrent = torrent.clone();
            tokio::spawn(async move {
                while let Ok(i) = pieces_rx.recv().await {
                    let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
                    let d = &mut r.pieces_detail[i as usize];
                    if d.arrived.is_none() {
                        d.arrived = Some(t0.elapsed().as_secs_f64());
                        d.source = Some(Source::Peer);
                        r.bytes_from_peers += torrent.piece_len(i) as u64;
                    }
                }
            })
        };
        // The report on disk, every second.
        let writer = a.report.clone().map(|path| {
            let report = report.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    write_report(&report, &path, &model, t0);
                }
            })
        });

        // Playback: at each deadline, fetch what peers did not deliver.
        let http = reqwest::Client::builder().no_proxy().build()?;
        let playback = async {
            for i in 0..torrent.num_pieces() {
                tokio::time::sleep_until((t0 + Duration::from_secs_f64(model.deadline(i))).into())
                    .await;
                let Some(url) = &a.vod_server else { continue };
                // A piece whose last block just came is being checked: its outcome first.
                let wait_until = tokio::time::Instant::now() + Duration::from_secs(2);
                while session.checking(i) && tokio::time::Instant::now() < wait_until {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                // Only the blocks not held yet; the whole piece again if that does not verify.
                let mut ranges = session.missing_ranges(i);
                let mut whole = false;
                while !ranges.is_empty() {
                    let fetched = fetch_ranges(&http, url, &client_id, &torrent, i, &ranges).await;
                    let got = match fetched {
                        Ok(got) => got,
                        Err(e) => {
                            tracing::error!(piece = i, "VoD server fetch failed: {e:#}");
                            break;
                        }
                    };
                    {
                        // Booked before the insert: the insert announces the piece, and the
                        // arrivals task must not take it for a peer's.
                        let n: u64 = got.iter().map(|(_, d)| d.len() as u64).sum();
                        let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
                        r.bytes_from_server += n;
                        r.penalty += n;
                        // A piece that arrived from a peer while we fetched keeps its peer
                        // arrival; the server's bytes are counted all the same.
                        if r.pieces_detail[i as usize].arrived.is_none() {
                            r.pieces_from_server += 1;
                            let d = &mut r.pieces_detail[i as usize];
                            d.arrived = Some(t0.elapsed().as_secs_f64());
                            d.source = Some(Source::Server);
                        }
                    }
                    let parts: Vec<(u32, &[u8])> =
                        got.iter().map(|(b, d)| (*b, d.as_slice())).collect();
                    match session.insert_blocks(i, &parts) {
                        Ok(true) => break,
                        Ok(false) | Err(_) if !whole => {
                            // A peer's block failed the check with ours: fetch it all.
                            whole = true;
                            ranges = vec![(0, torrent.piece_len(i))];
                        }
                        Ok(false) => {
                            tracing::error!(piece = i, "server piece did not verify");
                            break;
                        }
                        Err(e) => {
                            tracing::error!(piece = i, "server piece rejected: {e:#}");
                            break;
                        }
                    }
                }
            }
            tokio::time::sleep_until((t0 + Duration::from_secs_f64(model.end())).into()).await;
        };
        tokio::select! {
            _ = playback => {}
            s = peer::shutdown_signal() => tracing::warn!("{s} during playback"),
        }
        {
            let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
            r.finished_at = Some(t0.elapsed().as_secs_f64());
        }
        if let Some(path) = &a.report {
            write_report(&report, path, &model, t0);
        }
        if a.linger > 0.0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(a.linger)) => {}
                _ = peer::shutdown_signal() => {}
            }
        }
        if let Some(w) = writer {
            w.abort();
        }
        arrivals.abort();
        p.stop().await;
        let r = report.lock().unwrap_or_else(|p| p.into_inner()).clone();
        anyhow::Ok(r)
    })
}

/// The numbers on the command line make sense (one line naming the flag if not).
fn check(a: &Args) -> anyhow::Result<()> {
    for (name, v) in [
        ("--rate", a.rate),
        ("--delay", a.delay),
        ("--prefetch", a.prefetch),
        ("--linger", a.linger),
        ("--max_upload_rate", a.max_upload_rate),
    ] {
        if !v.is_finite() || v < 0.0 {
            anyhow::bail!("{name} {v}: must be a non-negative number");
        }
    }
    if a.rate <= 0.0 {
        anyhow::bail!("--rate must be positive");
    }
    if a.max_uploads == Some(0) {
        anyhow::bail!("--max_uploads 0: must be at least 1");
    }
    Ok(())
}

fn new_report(a: &Args, t: &Torrent, m: &Model) -> Report {
    Report {
        torrent: t.name.clone(),
        size: t.total_length,
        piece_length: t.piece_length,
        pieces: t.num_pieces(),
        rate: a.rate,
        delay: a.delay,
        prefetch: a.prefetch,
        policy: a.policy.clone(),
        bytes_from_peers: 0,
        bytes_from_server: 0,
        pieces_from_server: 0,
        penalty: 0,
        elapsed: 0.0,
        position: 0,
        finished_at: None,
        pieces_detail: (0..t.num_pieces())
            .map(|i| PieceDetail {
                index: i,
                deadline: (m.deadline(i) * 1000.0).round() / 1000.0,
                arrived: None,
                source: None,
            })
            .collect(),
    }
}

fn write_report(report: &Mutex<Report>, path: &std::path::Path, m: &Model, t0: Instant) {
    let json = {
        let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
        r.elapsed = t0.elapsed().as_secs_f64();
        r.position = m.needed(r.elapsed);
        serde_json::to_vec_pretty(&*r)
    };
    if let Ok(j) = json {
        if let Err(e) = write_atomic(path, &j) {
            tracing::error!("report: {e:#}");
        }
    }
}

/// GET byte ranges `(begin, length)` of piece `i` from the VoD server, one request each.
async fn fetch_ranges(
    http: &reqwest::Client,
    url: &str,
    client: &str,
    t: &Torrent,
    i: u32,
    ranges: &[(u32, u32)],
) -> anyhow::Result<Vec<(u32, Vec<u8>)>> {
    let mut out = Vec::with_capacity(ranges.len());
    for &(begin, len) in ranges {
        let start = t.piece_offset(i) + begin as u64;
        let data = fetch_range(http, url, client, start, len).await?;
        out.push((begin, data));
    }
    Ok(out)
}

/// GET `len` bytes at `start` of the torrent's file from the VoD server.
async fn fetch_range(
    http: &reqwest::Client,
    url: &str,
    client: &str,
    start: u64,
    len: u32,
) -> anyhow::Result<Vec<u8>> {
    let end = start + len as u64 - 1;
    let sep = if url.contains('?') { '&' } else { '?' };
    let client_q =
        percent_encoding::utf8_percent_encode(client, percent_encoding::NON_ALPHANUMERIC);
    let mut last = None;
    for attempt in 0..3 {
        let r = http
            .get(format!("{url}{sep}client={client_q}"))
            .header("Range", format!("bytes={start}-{end}"))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().is_success() => {
                let body = resp.bytes().await?;
                if body.len() != len as usize {
                    anyhow::bail!("asked for {len} bytes at {start}, got {}", body.len());
                }
                return Ok(body.to_vec());
            }
            Ok(resp) => last = Some(anyhow::anyhow!("HTTP {}", resp.status())),
            Err(e) => last = Some(e.into()),
        }
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no answer")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["vod-client"];
        v.extend_from_slice(extra);
        v.push("movie.torrent");
        Args::parse_from(v)
    }

    #[test]
    fn old_flags_parse_and_bad_numbers_are_named() {
        let a = args(&["--max_uploads", "2", "--security", "1", "--rate", "5"]);
        assert_eq!((a.max_uploads, a.rate), (Some(2), 5.0));
        assert!(check(&a).is_ok());
        assert_eq!(args(&[]).max_uploads, None, "the policy chooses");
        for (flag, v, says) in [
            ("--max_uploads", "0", "--max_uploads 0"),
            ("--rate", "0", "--rate"),
            ("--delay", "-1", "--delay -1"),
            ("--prefetch", "NaN", "--prefetch NaN"),
        ] {
            let e = check(&args(&[&format!("{flag}={v}")]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{flag} {v}: {e}");
        }
    }
}
