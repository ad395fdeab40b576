//! The `testbed` command line: one subcommand per job of the lab. Each subcommand parses its
//! flags with clap and hands over to the module that owns the work; errors come back as one
//! line on stderr and a non-zero exit.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::metainfo::{self, Torrent};
use crate::peer::{self, ExitMode, Peer, PeerConfig};
use crate::policy::{self, tit_for_tat::TitForTat};

#[derive(Parser, Debug)]
#[command(
    name = "testbed",
    version,
    about = "A lab for video-on-demand over BitTorrent"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a single-file .torrent (BEP 3) for FILE.
    MakeTorrent(MakeTorrentArgs),
    /// Run one BitTorrent client (what `testbed start` spawns as a world client).
    Peer(Box<PeerArgs>),
    /// Run the HTTP tracker and its status page alone.
    Tracker(TrackerArgs),
    /// Start the testbed: tracker, world, and MY_CLIENT if given; returns once the world is up.
    Start(StartArgs),
    /// Stop every process the testbed started (idempotent).
    Stop(ConfigArg),
    /// Show what runs: processes, progress, rates, downloads, URLs.
    Status(StatusArgs),
    /// Start, wait for my client to exit, print the result, stop.
    Run(RunArgs),
    /// (internal) The supervisor that `start` detaches.
    #[command(hide = true)]
    Supervise(StartArgs),
}

#[derive(Args, Debug)]
pub struct ConfigArg {
    /// The scenario
    #[arg(long, default_value = "configs/default.yaml")]
    pub config: PathBuf,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Stay attached; Ctrl-C stops everything
    #[arg(long)]
    pub foreground: bool,
    /// My client and its arguments (placeholders like {torrent} are filled in)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub my_client: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Piece picker of the default vod-client (deadline, rarest, sequential)
    #[arg(long)]
    pub policy: Option<String>,
    /// My client and its arguments (default: vod-client with the config's args template)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub my_client: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TrackerArgs {
    /// Address to listen on (0.0.0.0 to serve other hosts)
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    #[arg(long, default_value_t = 6970)]
    pub port: u16,
    /// Re-announce interval given to clients, seconds
    #[arg(long, default_value_t = 10)]
    pub interval: u64,
    /// Track only these torrents (repeatable); default: any info hash
    #[arg(long = "allow")]
    pub allow: Vec<PathBuf>,
    /// Give loopback peers to clients on other hosts as this address
    #[arg(long)]
    pub public_ip: Option<IpAddr>,
    /// Most HTTP connections at once; more wait in the kernel's backlog
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
    /// Seconds a connection may send nothing (while a request is awaited) before it is closed
    #[arg(long, default_value_t = 30.0)]
    pub idle_timeout: f64,
    /// Worker threads. One event loop serves some 75,000 announces/s on one core (make bench),
    /// far more than a lab needs; more threads mostly compete with the clients for cores
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

#[derive(Args, Debug)]
pub struct MakeTorrentArgs {
    pub file: PathBuf,
    /// Tracker announce URL, e.g. http://127.0.0.1:6970/announce
    #[arg(long)]
    pub announce: String,
    /// Piece length in bytes (default: about 1000-2000 pieces, 16 KiB to 4 MiB)
    #[arg(long)]
    pub piece_length: Option<u32>,
    /// Output file (default: FILE.torrent in the current folder)
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PeerArgs {
    pub torrent: PathBuf,
    /// The content: the file (single-file torrent) or folder (multi-file)
    #[arg(long)]
    pub data: PathBuf,
    /// The data is complete: refuse to start otherwise
    #[arg(long)]
    pub seed: bool,
    /// Upload cap in KB/s (1 KB = 1024 B); 0 = none
    #[arg(long, default_value_t = 0.0)]
    pub max_upload_rate: f64,
    /// Download cap in KB/s; 0 = none
    #[arg(long, default_value_t = 0.0)]
    pub max_download_rate: f64,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Port to listen on (0: any free port)
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Connect to this peer directly (repeatable)
    #[arg(long = "peer")]
    pub peers: Vec<SocketAddr>,
    /// Announce URL instead of the torrent's; "" for no tracker
    #[arg(long)]
    pub tracker: Option<String>,
    /// Exit once complete
    #[arg(long, conflicts_with = "linger")]
    pub exit_on_complete: bool,
    /// Seed this many seconds after completing, then exit
    #[arg(long)]
    pub linger: Option<f64>,
    /// Piece picker: rarest, sequential
    #[arg(long, default_value = "rarest")]
    pub policy: String,
    /// Upload slots (the optimistic unchoke included)
    #[arg(long, default_value_t = 4)]
    pub upload_slots: usize,
    /// Most connections
    #[arg(long, default_value_t = 60)]
    pub max_connections: usize,
    /// Hash failures before a peer is banned
    #[arg(long, default_value_t = 3)]
    pub ban_after: u32,
    /// Longest wait between announces, seconds
    #[arg(long, default_value_t = 60.0)]
    pub max_announce_interval: f64,
    /// Peer id (20 bytes); default: a fresh random one
    #[arg(long)]
    pub peer_id: Option<String>,
    /// Rewrite this JSON file every second with what the peer has and its rates
    #[arg(long)]
    pub status_file: Option<PathBuf>,
    /// Seed of the picker's and choker's random choices
    #[arg(long)]
    pub rng_seed: Option<u64>,
    /// Log file (default: stderr, filtered by RUST_LOG, warnings only)
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Worker threads (1: a single-threaded runtime, the light choice for world clients)
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// Set up tracing: to `file` at info level (RUST_LOG overrides), or to stderr at `default`.
pub fn init_logging(file: Option<&std::path::Path>, default: &str) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(if file.is_some() { "info" } else { default }));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match file {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("log file {}", p.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}

pub fn make_torrent(a: MakeTorrentArgs) -> anyhow::Result<()> {
    let size = std::fs::metadata(&a.file)
        .with_context(|| format!("{}", a.file.display()))?
        .len();
    let pl = a
        .piece_length
        .unwrap_or_else(|| metainfo::default_piece_length(size));
    let bytes = metainfo::make_torrent(&a.file, &a.announce, pl)?;
    let out = a.output.unwrap_or_else(|| {
        let name = a
            .file
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        let mut n = name;
        n.push(".torrent");
        PathBuf::from(n)
    });
    std::fs::write(&out, &bytes).with_context(|| format!("{}", out.display()))?;
    let t = Torrent::from_bytes(&bytes)?;
    println!(
        "{} {} ({} pieces of {} bytes)",
        t.info_hash,
        out.display(),
        t.num_pieces(),
        t.piece_length
    );
    Ok(())
}

pub fn peer(a: PeerArgs) -> anyhow::Result<()> {
    init_logging(a.log.as_deref(), "warn")?;
    let torrent = Arc::new(Torrent::from_file(&a.torrent)?);
    let seed = a.rng_seed.unwrap_or_else(rand::random);
    let picker = policy::picker_by_name(&a.policy, seed).with_context(|| {
        format!(
            "--policy {}: unknown (known: {})",
            a.policy,
            policy::PICKERS.join(", ")
        )
    })?;
    let peer_id = match &a.peer_id {
        None => peer::new_peer_id(),
        Some(s) => s
            .as_bytes()
            .try_into()
            .map_err(|_| anyhow::anyhow!("--peer-id must be exactly 20 bytes, got {}", s.len()))?,
    };
    let exit = match (a.exit_on_complete, a.linger) {
        (true, _) => ExitMode::OnComplete,
        (false, Some(s)) if s >= 0.0 && s.is_finite() => {
            ExitMode::Linger(Duration::from_secs_f64(s))
        }
        (false, Some(s)) => anyhow::bail!("--linger {s}: must be a non-negative number of seconds"),
        (false, None) => ExitMode::Never,
    };
    let cfg = PeerConfig {
        torrent,
        data: a.data,
        seed: a.seed,
        bind: a.bind,
        port: a.port,
        peer_id,
        max_upload_rate: a.max_upload_rate,
        max_download_rate: a.max_download_rate,
        limits: peer::session::Limits {
            max_connections: a.max_connections,
            ban_after: a.ban_after.max(1),
            ..Default::default()
        },
        tracker: a.tracker,
        peers: a.peers,
        exit,
        picker,
        choker: Box::new(TitForTat::new(a.upload_slots, seed ^ 0x5eed)),
        timeouts: Default::default(),
        max_announce_interval: Duration::from_secs_f64(a.max_announce_interval.max(1.0)),
        playback: None,
        status_file: a.status_file.clone(),
    };
    let rt = if a.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(a.threads)
            .enable_all()
            .build()?
    };
    rt.block_on(async {
        let p = Peer::start(cfg).await?;
        // One machine-readable line for whoever started us (tests, the orchestrator).
        println!(
            "listening {} peer_id {}",
            p.addr,
            String::from_utf8_lossy(&p.session.peer_id)
        );
        p.run_until_exit().await
    })
}

pub fn tracker(a: TrackerArgs) -> anyhow::Result<()> {
    use crate::tracker::{self, Tracker, TrackerConfig};
    init_logging(None, "info")?;
    if a.interval == 0 {
        anyhow::bail!("--interval must be at least 1 second");
    }
    let t = Tracker::new(TrackerConfig {
        interval: Duration::from_secs(a.interval),
        min_interval: Duration::from_secs(a.interval.div_ceil(2)),
        allow_unknown: a.allow.is_empty(),
        public_ip: a.public_ip,
        max_connections: a.max_connections,
        idle_timeout: Duration::from_secs_f64(a.idle_timeout.max(0.1)),
        ..Default::default()
    });
    for p in &a.allow {
        t.register(&Torrent::from_file(p)?);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async {
        let addr = SocketAddr::new(a.bind, a.port);
        let listener = tracker::bind(addr).await?;
        let local = listener.local_addr()?;
        println!("tracker on http://{local}/announce · status page http://{local}/");
        tracker::serve(t.clone(), listener, tracker::router(t), async {
            let s = peer::shutdown_signal().await;
            tracing::info!("{s}: stopping");
        })
        .await
    })
}

/// `testbed run`: the experiment end to end in this process.
pub fn run(a: RunArgs) -> anyhow::Result<()> {
    use crate::orchestrator::{self, config::Config};
    let cfg = Config::load(&a.config.config)?;
    let mut my = a.my_client;
    if my.is_empty() {
        // The default my client: vod-client beside this binary, with the config's template.
        let exe = std::env::current_exe()?.with_file_name("vod-client");
        if !exe.is_file() {
            anyhow::bail!(
                "{}: not built (cargo build --release builds it)",
                exe.display()
            );
        }
        my.push(exe.display().to_string());
        my.extend(cfg.my_client.args.split_whitespace().map(String::from));
    }
    if let Some(p) = &a.policy {
        if crate::policy::picker_by_name(p, 0).is_none() {
            anyhow::bail!(
                "--policy {p}: unknown (known: {})",
                crate::policy::PICKERS.join(", ")
            );
        }
        if my.len() == 1 {
            my.extend(cfg.my_client.args.split_whitespace().map(String::from));
        }
        my.extend(["--policy".to_string(), p.clone()]);
    }
    let started = std::time::Instant::now();
    let outcome = orchestrator::supervise(&a.config.config, my, orchestrator::Mode::Run)?;
    let rd = orchestrator::rundir::RunDir::new(&cfg.run_dir);
    let summary = crate::vod::summary(
        &outcome,
        &rd.reports().join("my-client.json"),
        started.elapsed().as_secs_f64(),
    );
    let path = cfg.run_dir.join("summary.json");
    orchestrator::rundir::write_atomic(
        &path,
        serde_json::to_string_pretty(&summary.json)?.as_bytes(),
    )?;
    println!("{}", summary.text);
    println!("summary: {}", path.display());
    // The timeline, to look at without a server: run/report.svg and its data, run/report.csv.
    if let Some(r) = crate::vod::Report::read(&rd.reports().join("my-client.json")) {
        let svg = cfg.run_dir.join("report.svg");
        orchestrator::rundir::write_atomic(&svg, crate::vod::chart::svg(&r, None).as_bytes())?;
        let csv = cfg.run_dir.join("report.csv");
        orchestrator::rundir::write_atomic(&csv, crate::vod::chart::csv(&r).as_bytes())?;
        println!("timeline: {} ({})", svg.display(), csv.display());
    }
    if !summary.ok {
        anyhow::bail!("{}", summary.problem.unwrap_or_default());
    }
    Ok(())
}

/// Run the CLI; returns the process exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::MakeTorrent(a) => make_torrent(a),
        Command::Peer(a) => peer(*a),
        Command::Tracker(a) => tracker(a),
        Command::Start(a) if a.foreground => crate::orchestrator::supervise(
            &a.config.config,
            a.my_client,
            crate::orchestrator::Mode::Start,
        )
        .map(|_| ()),
        Command::Start(a) => crate::orchestrator::start(&a.config.config, &a.my_client),
        Command::Supervise(a) => crate::orchestrator::supervise(
            &a.config.config,
            a.my_client,
            crate::orchestrator::Mode::Start,
        )
        .map(|_| ()),
        Command::Stop(a) => crate::orchestrator::stop(&a.config, true),
        Command::Status(a) => match crate::orchestrator::status(&a.config.config, a.json) {
            Ok(true) => Ok(()),
            Ok(false) => return std::process::ExitCode::from(3),
            Err(e) => Err(e),
        },
        Command::Run(a) => run(a),
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testbed: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
