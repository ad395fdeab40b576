//! The `testbed` command line: clap's parsing and the dispatch, nothing else. Each subcommand
//! turns its flags into the owning module's config and calls it (`start`, `stop`, `status`,
//! `run`, `supervise`: [`crate::lab`]; `peer`: [`crate::peer`]; `tracker`:
//! [`crate::tracker`]; `make-torrent`: [`crate::metainfo`]). Errors come back as one line on
//! stderr and a non-zero exit.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::experiment;
use crate::lab::{self, commands::run::Experiment, Mode};
use crate::metainfo::Torrent;
use crate::peer::{self, ExitMode, PeerConfig};
use crate::policy::Policy;
use crate::tracker::access::AccessSink;
use crate::tracker::TrackerConfig;

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
    /// Run every entrant on every seed, paired and one at a time; print the verdicts.
    Compare(Box<CompareArgs>),
    /// Run one shard of a world (--shard I/K) against another testbed's tracker, in the
    /// foreground until stopped: a world across nodes.
    World(WorldArgs),
    /// (internal) The supervisor that `start` detaches.
    #[command(hide = true)]
    Supervise(StartArgs),
    /// (internal) One run of a `compare --slurm`, as a Slurm array task.
    #[command(hide = true)]
    SlurmTask(SlurmTaskArgs),
    /// (internal) A process inside a Shadow simulation of a run: `services`, `my-client`, or a
    /// world slot's number.
    #[command(hide = true)]
    Sim(SimArgs),
}

#[derive(Args, Debug)]
pub struct SimArgs {
    /// The simulation's plan (run/shadow/plan.json)
    #[arg(long)]
    pub plan: PathBuf,
    /// services, my-client, or a world slot's number
    pub role: String,
}

#[derive(Args, Debug)]
pub struct SlurmTaskArgs {
    /// The compare's plan (OUT/slurm/plan.json)
    #[arg(long)]
    pub plan: PathBuf,
    /// The task (default: $SLURM_ARRAY_TASK_ID)
    #[arg(long)]
    pub index: Option<usize>,
}

#[derive(Args, Debug)]
pub struct ConfigArg {
    /// The scenario
    #[arg(long, default_value = "configs/default.yaml")]
    pub config: PathBuf,
    /// Runtime folder, instead of the config's `run_dir` (several testbeds on one machine
    /// each need their own)
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Tracker port, instead of the config's `tracker.port`; 0: any free port (printed, and
    /// written to the run folder's state.json)
    #[arg(long)]
    pub port: Option<u16>,
    /// (start, run, world) Run only part I of K of the world: the slots k with k mod K = I
    /// (the other parts run as `testbed world --shard` on other nodes)
    #[arg(long, value_parser = clap::value_parser!(lab::config::Shard))]
    pub shard: Option<lab::config::Shard>,
    /// (start, run, world) Serve other hosts: the tracker listens on every address and hands
    /// out this host name (the config's tracker.public_host, with bind 0.0.0.0)
    #[arg(long)]
    pub public_host: Option<String>,
}

impl ConfigArg {
    pub fn source(&self) -> lab::config::Source {
        lab::config::Source {
            path: self.config.clone(),
            run_dir: self.run_dir.clone(),
            port: self.port,
            shard: self.shard,
            public_host: self.public_host.clone(),
            tracker_url: None,
            engine: None,
        }
    }
}

#[derive(Args, Debug)]
pub struct WorldArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The announce URL of the testbed whose world this shard joins (its world clients
    /// announce there), e.g. http://node1:6970/announce
    #[arg(long)]
    pub tracker: String,
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
    /// What runs the experiment, instead of the config's `engine:` (real processes, or the
    /// same binaries under Shadow)
    #[arg(long, value_enum)]
    pub engine: Option<lab::config::Engine>,
    /// Policy of the default vod-client
    #[arg(long, value_enum)]
    pub policy: Option<Policy>,
    /// My client and its arguments (default: vod-client with the config's args template)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub my_client: Vec<String>,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// What runs every run, instead of the config's `engine:` (real processes, or the same
    /// binaries under Shadow)
    #[arg(long, value_enum)]
    pub engine: Option<lab::config::Engine>,
    /// World seeds, A..B (inclusive) or one number
    #[arg(long, default_value = "42..51")]
    pub seeds: String,
    /// Runs per entrant and seed
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// A built-in policy of vod-client as an entrant (repeatable)
    #[arg(long = "policy", value_enum)]
    pub policies: Vec<Policy>,
    /// A my-client command line as an entrant, run by `sh -c` (repeatable; placeholders such as
    /// {torrent} and the TESTBED_* variables as in `testbed start`)
    #[arg(long = "client")]
    pub clients: Vec<String>,
    /// The same, with the VoD server listed in my client's torrent as a BEP 19 web seed
    /// (my_client.web_seed: true), for clients that fetch from web seeds themselves: its name
    /// in the tables ends in "[web seed]" unless --name names it (repeatable)
    #[arg(long = "web-seed-client")]
    pub web_seed_clients: Vec<String>,
    /// A short name for a --client or --web-seed-client entrant in the tables and runs.csv
    /// (repeatable: the first names the first --client, and so on, then the --web-seed-client
    /// ones); runs.csv resumes by name, so a renamed entrant runs again
    #[arg(long = "name")]
    pub names: Vec<String>,
    /// Where runs.csv, summary.json, compare.md and compare.svg go (the same command again
    /// resumes there)
    #[arg(long, default_value = "run/compare")]
    pub out: PathBuf,
    /// Run nothing: read the runs.csv of this finished compare's --out (repeatable) and write
    /// the tables of all of them together in --out, a seed run in two folders counting as one
    /// seed run twice; the entrants are those given (a --client by its name in the folders'
    /// tables), or all that the folders name
    #[arg(long = "from", conflicts_with_all = ["slurm", "repeat", "seeds", "jobs", "config"])]
    pub from: Vec<PathBuf>,
    /// Experiments run together, each with its own run folder, port and namespace (the
    /// tables then say so: runs that share the CPU are noisier)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub jobs: u16,
    /// Submit the runs as one Slurm job array (one task per run, each its own testbed on the
    /// node Slurm gives it) and wait for it; `testbed`, the config, fresh_files and --out must
    /// be on a filesystem the nodes share
    #[arg(long, conflicts_with = "jobs")]
    pub slurm: bool,
    /// Plan instead of running: per pair, the seeds a compare needs for 80 % power to find a
    /// difference of --effect points, from the runs of --from (else of --out)
    #[arg(long, requires = "effect")]
    pub plan: bool,
    /// (--plan) The difference to find, points of the file
    #[arg(long)]
    pub effect: Option<f64>,
    /// Run seeds in batches from the first of --seeds until every pair has a verdict by an
    /// anytime-valid confidence sequence, or --max-seeds have run
    #[arg(long, conflicts_with_all = ["plan", "from"])]
    pub until_settled: bool,
    /// Keep in the tables the runs whose machine was over 90 % busy (left out by default)
    #[arg(long)]
    pub keep_busy: bool,
    /// (--until-settled) Seeds at most
    #[arg(long, default_value_t = 100, requires = "until_settled")]
    pub max_seeds: u64,
    /// (--until-settled) Seeds a batch
    #[arg(long, default_value_t = 5, requires = "until_settled")]
    pub batch: u64,
    /// The equivalence margin δ, points of the file: a pair whose 90 % interval lies inside
    /// ±δ is "equivalent" (two one-sided tests)
    #[arg(long, default_value_t = experiment::plan::DEFAULT_MARGIN * 100.0, value_parser = margin_points)]
    pub margin: f64,
    /// Slurm partition for the array
    #[arg(long, requires = "slurm")]
    pub partition: Option<String>,
    /// Slurm time limit of each task (e.g. 10:00)
    #[arg(long, requires = "slurm")]
    pub time: Option<String>,
    /// One more sbatch argument (repeatable), e.g. --sbatch-arg=--exclusive for one experiment
    /// per node
    #[arg(long = "sbatch-arg", requires = "slurm", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
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
    /// Seconds a silent peer stays listed (default: two intervals, but at least 330, since
    /// libtorrent clients re-announce only every 300 s whatever the interval)
    #[arg(long)]
    pub peer_timeout: Option<f64>,
    /// Write the log (one line per request at info level) to this file instead of stderr
    #[arg(long)]
    pub log: Option<PathBuf>,
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
    /// Piece picker, with its choker
    #[arg(long, value_enum, default_value_t = Policy::Rarest)]
    pub policy: Policy,
    /// Upload slots (the optimistic unchoke included)
    #[arg(long, default_value_t = 4)]
    pub upload_slots: usize,
    /// Seconds before the first rechoke (every connection stays choked until then); 0:
    /// BitTornado's timing, a rechoke as each connection comes
    #[arg(long, default_value_t = 0.0)]
    pub first_rechoke: f64,
    /// Keep a preferred peer until another's rate beats it by this fraction (0: BitTornado's
    /// choker; only the tit-for-tat choker has it)
    #[arg(long, default_value_t = 0.0)]
    pub choke_hysteresis: f64,
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
    /// Append what we give peers that are not world clients to this file (the referee's
    /// record; one JSON line per event)
    #[arg(long)]
    pub referee: Option<PathBuf>,
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

impl PeerArgs {
    /// The peer's config, with every flag checked (one line naming the flag if not).
    fn into_config(self) -> anyhow::Result<PeerConfig> {
        let torrent = Arc::new(Torrent::from_file(&self.torrent)?);
        let seed = self.rng_seed.unwrap_or_else(rand::random);
        let peer_id = match &self.peer_id {
            None => peer::new_peer_id(),
            Some(s) => s.as_bytes().try_into().map_err(|_| {
                anyhow::anyhow!("--peer-id must be exactly 20 bytes, got {}", s.len())
            })?,
        };
        let exit = match (self.exit_on_complete, self.linger) {
            (true, _) => ExitMode::OnComplete,
            (false, Some(s)) if s >= 0.0 && s.is_finite() => {
                ExitMode::Linger(Duration::from_secs_f64(s))
            }
            (false, Some(s)) => {
                anyhow::bail!("--linger {s}: must be a non-negative number of seconds")
            }
            (false, None) => ExitMode::Never,
        };
        if self.upload_slots == 0 {
            anyhow::bail!("--upload-slots 0: must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.choke_hysteresis) {
            anyhow::bail!(
                "--choke-hysteresis {}: must be a fraction from 0 to 1",
                self.choke_hysteresis
            );
        }
        if !(0.0..=60.0).contains(&self.first_rechoke) {
            anyhow::bail!(
                "--first-rechoke {}: must be 0 to 60 seconds",
                self.first_rechoke
            );
        }
        Ok(PeerConfig {
            torrent,
            data: self.data,
            seed: self.seed,
            bind: self.bind,
            port: self.port,
            peer_id,
            max_upload_rate: self.max_upload_rate,
            max_download_rate: self.max_download_rate,
            limits: peer::session::Limits {
                max_connections: self.max_connections,
                ban_after: self.ban_after.max(1),
                ..Default::default()
            },
            tracker: self.tracker,
            peers: self.peers,
            exit,
            picker: self.policy.picker(seed),
            choker: self.policy.choker_with_hysteresis(
                self.upload_slots,
                seed,
                self.choke_hysteresis,
            ),
            first_rechoke: Duration::from_secs_f64(self.first_rechoke),
            timeouts: Default::default(),
            max_announce_interval: Duration::from_secs_f64(self.max_announce_interval.max(1.0)),
            playback: None,
            status_file: self.status_file,
            referee: self.referee,
        })
    }
}

impl TrackerArgs {
    fn config(&self) -> anyhow::Result<TrackerConfig> {
        if self.interval == 0 {
            anyhow::bail!("--interval must be at least 1 second");
        }
        Ok(TrackerConfig {
            interval: Duration::from_secs(self.interval),
            min_interval: Duration::from_secs(self.interval.div_ceil(2)),
            allow_unknown: self.allow.is_empty(),
            public_ip: self.public_ip,
            max_connections: self.max_connections,
            idle_timeout: Duration::from_secs_f64(self.idle_timeout.max(0.1)),
            peer_timeout: self.peer_timeout.map_or_else(
                || TrackerConfig::peer_timeout_for(Duration::from_secs(self.interval)),
                |s| Duration::from_secs_f64(s.max(0.1)),
            ),
            access_log: Some(match &self.log {
                Some(p) => AccessSink::File(p.clone()),
                None => AccessSink::Stderr,
            }),
            ..Default::default()
        })
    }
}

fn dispatch(command: Command) -> anyhow::Result<std::process::ExitCode> {
    use std::process::ExitCode;
    match command {
        Command::MakeTorrent(a) => {
            let (out, t) = crate::metainfo::write_torrent(
                &a.file,
                &a.announce,
                a.piece_length,
                a.output.as_deref(),
            )?;
            crate::util::outln!(
                "{} {} ({} pieces of {} bytes)",
                t.info_hash,
                out.display(),
                t.num_pieces(),
                t.piece_length
            );
        }
        Command::Peer(a) => {
            crate::sys::spawn::child_start();
            crate::util::rt::init_logging(a.log.as_deref(), "warn")?;
            let threads = a.threads;
            peer::run_standalone(a.into_config()?, threads)?;
        }
        Command::Tracker(a) => {
            crate::util::rt::init_logging(a.log.as_deref(), "info")?;
            let mut allowed = Vec::new();
            for p in &a.allow {
                allowed.push(Torrent::from_file(p)?);
            }
            let addr = SocketAddr::new(a.bind, a.port);
            crate::tracker::run_standalone(a.config()?, &allowed, addr, a.threads)?;
        }
        Command::Start(a) if a.foreground => {
            lab::supervise(&a.config.source(), a.my_client, Mode::Start)?;
        }
        Command::Start(a) => lab::start(&a.config.source(), &a.my_client)?,
        Command::Supervise(a) => {
            lab::supervise(&a.config.source(), a.my_client, Mode::Start)?;
        }
        Command::Stop(a) => lab::stop(&a.source(), true)?,
        Command::Status(a) => {
            if !lab::status(&a.config.source(), a.json)? {
                return Ok(ExitCode::from(3));
            }
        }
        Command::Sim(a) => sim(&a)?,
        Command::Run(a) => lab::run(Experiment {
            config: lab::config::Source {
                engine: a.engine,
                ..a.config.source()
            },
            policy: a.policy,
            my_client: a.my_client,
        })?,
        Command::Compare(a) => return compare_command(*a),
        Command::SlurmTask(a) => experiment::exec::slurm::task(&a.plan, a.index)?,
        Command::World(a) => {
            let mut source = a.config.source();
            if source.shard.is_none() {
                anyhow::bail!("world: --shard I/K is needed (which part of the world to run)");
            }
            // Beside another testbed on the same host: any free port unless told.
            source.port = source.port.or(Some(0));
            source.tracker_url = Some(a.tracker);
            lab::supervise(&source, Vec::new(), Mode::World)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Run the CLI; returns the process exit code.
pub fn main() -> std::process::ExitCode {
    match dispatch(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("testbed: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `--margin`: points of the file, from 0 (no equivalence verdict) to 50.
fn margin_points(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=50.0).contains(&x) => Ok(x),
        _ => Err(format!("{s}: a margin in points of the file, 0 to 50")),
    }
}

/// `testbed sim`: a process inside a Shadow simulation of a run.
fn sim(a: &SimArgs) -> anyhow::Result<()> {
    let plan = lab::shadow::Plan::read(&a.plan)?;
    match a.role.as_str() {
        "services" => lab::shadow::inside::services(&plan)?,
        "my-client" => lab::shadow::inside::my_client(&plan)?,
        k => {
            let k: usize = k.parse().map_err(|_| {
                anyhow::anyhow!("sim: {k}: not services, my-client or a slot number")
            })?;
            lab::shadow::inside::slot(&plan, k, |args| {
                let cli =
                    Cli::try_parse_from(std::iter::once(OsString::from("testbed")).chain(args))?;
                match cli.command {
                    Command::Peer(a) => {
                        let threads = a.threads;
                        peer::run_standalone(a.into_config()?, threads)
                    }
                    _ => anyhow::bail!("a world slot runs `testbed peer`"),
                }
            })?
        }
    }
    Ok(())
}

/// `testbed compare`: a plan (`--plan`), a pool (`--from`), seeds until settled, or a compare.
fn compare_command(a: CompareArgs) -> anyhow::Result<std::process::ExitCode> {
    use experiment::{compare, entrants, parse_seeds, Comparison};
    use std::process::ExitCode;
    let entrants = entrants(a.policies, a.clients, a.web_seed_clients, a.names)?;
    if a.plan {
        let from = match a.from.is_empty() {
            true => vec![a.out.clone()],
            false => a.from.clone(),
        };
        let text = experiment::power::plan(&from, &entrants, a.effect.unwrap_or(0.0))?;
        crate::util::out!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    if !a.from.is_empty() {
        return experiment::pool(&a.from, entrants, &a.out, a.margin / 100.0)
            .map(|()| ExitCode::SUCCESS);
    }
    let c = Comparison {
        config_sha1: experiment::file_sha1(&a.config.config),
        margin: a.margin / 100.0,
        keep_busy: a.keep_busy,
        config: lab::config::Source {
            engine: a.engine,
            ..a.config.source()
        },
        seeds: parse_seeds(&a.seeds).map_err(anyhow::Error::msg)?,
        repeat: a.repeat.max(1),
        entrants,
        out: a.out,
        jobs: a.jobs as usize,
        slurm: a.slurm.then_some(experiment::Slurm {
            partition: a.partition,
            time: a.time,
            sbatch_args: a.sbatch_args,
        }),
        pooled_from: Vec::new(),
    };
    match a.until_settled {
        true => {
            let text = experiment::sequential::until_settled(&c, a.batch, a.max_seeds)?;
            crate::util::out!("{text}");
        }
        false => compare(&c)?,
    }
    Ok(ExitCode::SUCCESS)
}
