//! The experiment's configuration: a YAML scenario (`configs/default.yaml` is the standard one).
//!
//! Every key has a default, unknown keys are refused, and every error names the file and the
//! field (and the line, for errors the YAML parser sees).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::util::range::Range;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Makes the world's layout (pieces, linger times, peer ids) the same from run to run.
    pub seed: Option<u64>,
    /// Runtime state: pid file, logs, torrents, downloads, reports.
    pub run_dir: PathBuf,
    /// The content the world shares; never written to.
    pub fresh_files: PathBuf,
    /// How the world's clients get their addresses (see [`Addresses`]).
    pub addresses: Addresses,
    pub tracker: TrackerSection,
    pub torrents: TorrentsSection,
    pub world: WorldSection,
    pub my_client: MyClientSection,
    /// Per-link round-trip time, jitter, loss and download caps (none: loopback speed).
    pub network: Option<crate::netem::NetworkSection>,
    /// What runs the experiment: real processes on this machine's network, or the same
    /// binaries under Shadow's simulated network and clock (see [`Engine`]).
    pub engine: Engine,
    /// `testbed world --tracker URL`: the tracker this world shard announces to, another
    /// testbed's (not a key of the file).
    #[serde(skip)]
    pub remote_tracker: Option<String>,
}

/// What runs an experiment (`engine:`, or `--engine` on `run` and `compare`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Real processes, real sockets, real time: faithful, and noisy.
    #[default]
    Real,
    /// The same binaries under Shadow: a simulated network and clock, deterministic, faster
    /// than real time (`lab::shadow`).
    Shadow,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Real => "real",
            Engine::Shadow => "shadow",
        })
    }
}

/// How world clients are addressed. Real clients keep one connection per address, and
/// Transmission refuses loopback peers from a tracker, so by default every world client has an
/// address of its own in a network namespace the lab makes (see `lab::netns`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Addresses {
    /// `shared` when my client may be on another host (`tracker.bind` unspecified, or a
    /// `public_host`); else `namespace`, or `loopback` where no namespace can be made.
    #[default]
    Auto,
    /// 10.77.0.0/16 in the lab's own network namespace; my client runs inside it.
    Namespace,
    /// 127.77.0.0/16 on this host (enough for libtorrent, not for Transmission).
    Loopback,
    /// Every world client listens on `tracker.bind` (0.0.0.0 for other hosts), one port each.
    Shared,
}

impl std::fmt::Display for Addresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Addresses::Auto => "auto",
            Addresses::Namespace => "namespace",
            Addresses::Loopback => "loopback",
            Addresses::Shared => "shared",
        })
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerSection {
    pub bind: IpAddr,
    pub port: u16,
    /// Re-announce interval, seconds.
    pub interval: u64,
    /// Host name or IP that a client on another machine uses to reach this one.
    pub public_host: Option<String>,
}

/// One of `count` parts of the world (`--shard I/K`): the slots numbered k (across swarms,
/// seeds first) with k mod count = index. A world across nodes is K testbeds, each running its
/// shard against one tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Shard {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    /// Whether world slot `k` is this shard's.
    pub fn has(&self, k: usize) -> bool {
        k % self.count == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("shard {s:?}: expected I/K with 0 <= I < K, e.g. 1/4");
        let (i, k) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse().map_err(|_| bad())?,
            k.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TorrentsSection {
    pub piece_length: u32,
    /// The file of `fresh_files` my client gets (default: the largest).
    pub my_torrent: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backoff {
    /// Seconds before the first restart of a crashed client; doubles per crash.
    pub initial: f64,
    pub max: f64,
    /// Consecutive crashes after which a client slot is given up (and reported).
    pub limit: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorldSection {
    /// Partial clients (leechers) per swarm.
    pub clients: usize,
    /// Complete clients per swarm.
    pub seeds: usize,
    /// Fraction of pieces a partial client starts with.
    pub start_fraction: Range,
    /// Upload cap per client, KB/s (1 KB = 1024 B).
    pub upload_rate: Range,
    /// Upload cap of the seeds, KB/s (default: `upload_rate`).
    pub seed_upload_rate: Option<Range>,
    pub max_connections: usize,
    pub upload_slots: usize,
    /// Seconds a world client waits before its first rechoke (`peer --first-rechoke`), so that
    /// a world born together chooses whom to serve among everyone, by its seeded draws.
    pub first_rechoke: f64,
    /// A world client keeps a preferred peer until another's rate beats it by this fraction
    /// (`peer --choke-hysteresis`; 0, the default, is BitTornado's choker).
    pub choke_hysteresis: f64,
    /// Seconds a completed client seeds before it is replaced.
    pub linger: Range,
    /// Seconds of random delay before a replacement starts.
    pub respawn_jitter: f64,
    pub crash_backoff: Backoff,
    /// Piece picker (and its choker) of the world clients.
    pub policy: crate::policy::Policy,
    /// Program run instead of this `testbed` binary for world clients; it gets the same
    /// arguments (`peer TORRENT --data ... --tracker=...`).
    pub command: Option<PathBuf>,
    /// The part of the world this testbed runs (`--shard`; not a key of the file).
    #[serde(skip)]
    pub shard: Shard,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MyClientSection {
    /// Argument template; placeholders in braces (see docs/running.md).
    pub args: String,
    /// Playback rate R, KB/s.
    pub rate: f64,
    /// Startup delay D, seconds.
    pub delay: f64,
    /// Prefetch P, seconds.
    pub prefetch: f64,
    /// My client's upload cap, KB/s.
    pub max_upload_rate: f64,
    /// List the VoD server in my client's torrent as a BEP 19 web seed (`url-list`), so that
    /// unmodified clients that support web seeds fetch from it themselves. Every byte is still
    /// counted (by my client's address).
    pub web_seed: bool,
    /// Seconds the world runs before my client starts (a warm swarm, as a real viewer finds
    /// it); 0: together.
    pub start_after: f64,
}

/// The default argument template of the SPEC.
pub const DEFAULT_ARGS: &str = "--saveas {saveas} --max_upload_rate {max_upload_rate} --rate {rate} --delay {delay} --prefetch {prefetch} --vod-server {vod_url} --report {report} {torrent}";

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: None,
            run_dir: "run".into(),
            fresh_files: "fresh-files".into(),
            addresses: Addresses::Auto,
            tracker: TrackerSection::default(),
            torrents: TorrentsSection::default(),
            world: WorldSection::default(),
            my_client: MyClientSection::default(),
            network: None,
            engine: Engine::Real,
            remote_tracker: None,
        }
    }
}

impl Default for TrackerSection {
    fn default() -> Self {
        TrackerSection {
            bind: [127, 0, 0, 1].into(),
            port: 6970,
            interval: 10,
            public_host: None,
        }
    }
}

impl Default for TorrentsSection {
    fn default() -> Self {
        TorrentsSection {
            piece_length: 32768,
            my_torrent: None,
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: 1.0,
            max: 30.0,
            limit: 5,
        }
    }
}

impl Default for WorldSection {
    fn default() -> Self {
        WorldSection {
            clients: 20,
            seeds: 2,
            start_fraction: Range::Uniform { min: 0.0, max: 0.5 },
            upload_rate: Range::Fixed(20.0),
            seed_upload_rate: None,
            max_connections: 30,
            upload_slots: 4,
            first_rechoke: 1.0,
            choke_hysteresis: 0.0,
            linger: Range::Uniform {
                min: 10.0,
                max: 30.0,
            },
            respawn_jitter: 2.0,
            crash_backoff: Backoff::default(),
            policy: crate::policy::Policy::Rarest,
            command: None,
            shard: Shard::default(),
        }
    }
}

impl Default for MyClientSection {
    fn default() -> Self {
        MyClientSection {
            args: DEFAULT_ARGS.into(),
            rate: 60.0,
            delay: 6.0,
            prefetch: 2.0,
            max_upload_rate: 20.0,
            web_seed: false,
            start_after: 0.0,
        }
    }
}

/// Where a command's config comes from: a file, and the command line's overrides of it
/// (`--run-dir`, `--port`), so that several testbeds can share a config and a machine.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Source {
    pub path: PathBuf,
    /// `run_dir`, instead of the file's.
    pub run_dir: Option<PathBuf>,
    /// `tracker.port`, instead of the file's (0: any free port).
    pub port: Option<u16>,
    /// Run only this part of the world.
    pub shard: Option<Shard>,
    /// `tracker.public_host`, with `tracker.bind` 0.0.0.0: clients on other hosts (other
    /// nodes) reach this one by that name.
    pub public_host: Option<String>,
    /// (`testbed world`) The announce URL of the testbed whose world this shard joins.
    pub tracker_url: Option<String>,
    /// `engine`, instead of the file's.
    pub engine: Option<Engine>,
}

impl Source {
    /// The file alone.
    pub fn file(path: impl Into<PathBuf>) -> Source {
        Source {
            path: path.into(),
            ..Source::default()
        }
    }

    /// The config, with the overrides applied and checked.
    pub fn load(&self) -> anyhow::Result<Config> {
        let mut cfg = Config::load(&self.path)?;
        if let Some(d) = &self.run_dir {
            cfg.run_dir = d.clone();
        }
        if let Some(p) = self.port {
            cfg.tracker.port = p;
        }
        if let Some(s) = self.shard {
            cfg.world.shard = s;
        }
        if let Some(e) = self.engine {
            cfg.engine = e;
        }
        if let Some(u) = &self.tracker_url {
            if matches!(cfg.addresses, Addresses::Namespace) {
                anyhow::bail!(
                    "{}: addresses: namespace keeps world clients in this host's own network, \
                     where the tracker at {u} cannot reach them: use shared, loopback or auto",
                    self.path.display()
                );
            }
            cfg.remote_tracker = Some(u.clone());
        }
        if let Some(h) = &self.public_host {
            cfg.tracker.public_host = Some(h.clone());
            cfg.tracker.bind = IpAddr::from([0, 0, 0, 0]);
            cfg.validate()
                .map_err(|e| anyhow::anyhow!("{} with --public-host: {e}", self.path.display()))?;
        }
        Ok(cfg)
    }

    /// The same, as flags for another `testbed` command (the detached supervisor).
    pub fn args(&self) -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = vec!["--config".into(), self.path.clone().into()];
        if let Some(d) = &self.run_dir {
            a.push("--run-dir".into());
            a.push(d.clone().into());
        }
        if let Some(p) = self.port {
            a.push(format!("--port={p}").into());
        }
        if let Some(s) = self.shard {
            a.push(format!("--shard={s}").into());
        }
        if let Some(h) = &self.public_host {
            a.push(format!("--public-host={h}").into());
        }
        if let Some(u) = &self.tracker_url {
            a.push(format!("--tracker={u}").into());
        }
        a
    }
}

/// The unit of a number-or-range key, by its name.
fn range_unit(key: &str) -> Option<&'static str> {
    Some(match key {
        "upload_rate" | "seed_upload_rate" | "download_rate" => "KB/s",
        "rtt_ms" | "jitter_ms" => "milliseconds",
        "loss_percent" => "percent",
        "linger" => "seconds",
        "start_fraction" => "a fraction of the file",
        _ => return None,
    })
}

/// The YAML parser's error for a number-or-range key, said as the key's unit and what it got:
/// `world.upload_rate: expected KB/s as a number or {min, max}, got "fast" at line 39 ...`.
fn explain(msg: &str) -> String {
    use crate::util::range::EXPECTED;
    let parsed = msg.split_once(": invalid type: ").and_then(|(path, rest)| {
        let (got, tail) = rest.split_once(&format!(", expected {EXPECTED}"))?;
        let unit = range_unit(path.rsplit('.').next()?)?;
        let got = got.strip_prefix("string ").unwrap_or(got);
        Some(format!(
            "{path}: expected {unit} as {EXPECTED}, got {got}{tail}"
        ))
    });
    parsed.unwrap_or_else(|| msg.to_string())
}

impl Config {
    /// Read and check a config file. Relative paths in it are relative to the current folder
    /// (the project root under `make`).
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let cfg: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_yaml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), explain(&e.to_string())))?
        };
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(cfg)
    }

    /// A testbed that runs until stopped (`start`, `world`, `supervise`) is the real engine's:
    /// a simulation is a whole run at once.
    pub fn refuse_live(&self) -> anyhow::Result<()> {
        if self.engine == Engine::Shadow {
            anyhow::bail!(
                "engine: shadow runs a whole experiment at once, with nothing live to start, \
                 watch or join: use `testbed run` or `testbed compare`, or engine: real"
            );
        }
        Ok(())
    }

    /// My client may be on another host: the tracker listens on every address, or other
    /// hosts are told a public host name.
    pub fn for_other_hosts(&self) -> bool {
        self.tracker.bind.is_unspecified() || self.tracker.public_host.is_some()
    }

    /// Semantic checks; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        let w = &self.world;
        if self.for_other_hosts()
            && matches!(self.addresses, Addresses::Namespace | Addresses::Loopback)
        {
            return Err(format!(
                "addresses: {} keeps the world on this host, but tracker.bind {} or public_host \
                 ask for clients on other hosts: use `addresses: shared` (or auto)",
                self.addresses, self.tracker.bind
            ));
        }
        if self.tracker.interval == 0 {
            return Err("tracker.interval: must be at least 1 second".into());
        }
        if self.torrents.piece_length < 1024
            || self.torrents.piece_length > 16 << 20
            || !self.torrents.piece_length.is_power_of_two()
        {
            return Err(format!(
                "torrents.piece_length: {} must be a power of two from 1024 to 16 MiB",
                self.torrents.piece_length
            ));
        }
        if w.clients + w.seeds > 2000 {
            return Err(format!(
                "world: {} clients + {} seeds is more than 2000",
                w.clients, w.seeds
            ));
        }
        w.start_fraction.check("world.start_fraction", 0.0, 1.0)?;
        w.upload_rate.check("world.upload_rate", 0.0, 1e7)?;
        if let Some(s) = &w.seed_upload_rate {
            s.check("world.seed_upload_rate", 0.0, 1e7)?;
        }
        w.linger.check("world.linger", 0.0, 1e6)?;
        if !(0.0..=60.0).contains(&w.first_rechoke) {
            return Err(format!(
                "world.first_rechoke: {} must be 0 to 60 seconds",
                w.first_rechoke
            ));
        }
        if !(0.0..=1.0).contains(&w.choke_hysteresis) {
            return Err(format!(
                "world.choke_hysteresis: {} must be a fraction from 0 to 1 (0: BitTornado's choker)",
                w.choke_hysteresis
            ));
        }
        if !(0.0..=3600.0).contains(&w.respawn_jitter) {
            return Err("world.respawn_jitter: must be 0 to 3600 seconds".into());
        }
        let b = &w.crash_backoff;
        if !(b.initial > 0.0 && b.max >= b.initial && b.limit >= 1) {
            return Err("world.crash_backoff: need initial > 0, max >= initial, limit >= 1".into());
        }
        if w.max_connections == 0 || w.upload_slots == 0 {
            return Err("world.max_connections and world.upload_slots: must be at least 1".into());
        }
        let m = &self.my_client;
        for (f, v) in [
            ("my_client.rate", m.rate),
            ("my_client.delay", m.delay),
            ("my_client.prefetch", m.prefetch),
            ("my_client.max_upload_rate", m.max_upload_rate),
            ("my_client.start_after", m.start_after),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{f}: {v} must be a non-negative number"));
            }
        }
        if m.rate <= 0.0 {
            return Err("my_client.rate: must be positive".into());
        }
        crate::lab::template::check(&m.args).map_err(|e| format!("my_client.args: {e}"))?;
        if let Some(n) = &self.network {
            n.validate()?;
            if matches!(self.addresses, Addresses::Loopback | Addresses::Shared)
                || self.for_other_hosts()
            {
                return Err(format!(
                    "network: emulates the links between the lab's own addresses, in its network \
                     namespace: it needs `addresses: namespace` or auto on one host, not \
                     addresses: {} with tracker.bind {}",
                    self.addresses, self.tracker.bind
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(s: &str) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, s).unwrap();
        Config::load(&p)
    }

    #[test]
    fn shards_split_the_slots_and_bad_ones_are_refused() {
        let s: Shard = "1/3".parse().unwrap();
        assert_eq!(s.to_string(), "1/3");
        let mine: Vec<usize> = (0..8).filter(|&k| s.has(k)).collect();
        assert_eq!(mine, [1, 4, 7]);
        // Every slot is in exactly one shard.
        for k in 0..30 {
            let owners = (0..3)
                .filter(|&i| Shard { index: i, count: 3 }.has(k))
                .count();
            assert_eq!(owners, 1);
        }
        assert!(Shard::default().has(5));
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(e.contains("I/K"), "{bad}: {e}");
        }
    }

    #[test]
    fn defaults_and_ranges() {
        let c = load_str("world:\n  clients: 3\n  upload_rate: {min: 10, max: 30}\n").unwrap();
        assert_eq!(c.world.clients, 3);
        assert_eq!(
            c.world.upload_rate,
            Range::Uniform {
                min: 10.0,
                max: 30.0
            }
        );
        assert_eq!(c.tracker.port, 6970);
        assert_eq!(load_str("").unwrap().world.seeds, 2);
    }

    #[test]
    fn a_range_key_says_its_unit_and_what_it_got() {
        let e = load_str("world:\n  upload_rate: fast\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("world.upload_rate: expected KB/s as a number or {min, max}, got \"fast\"")
                && e.contains("line 2"),
            "{e}"
        );
        let e = load_str("world:\n  linger: [1, 2]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("world.linger: expected seconds as"), "{e}");
        let e = load_str("world:\n  upload_rate: {min: 10}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("world.upload_rate") && e.contains("max"), "{e}");
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = load_str("seed: 1\nworld:\n  clientz: 3\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c.yaml") && e.contains("clientz") && e.contains("line 3"),
            "{e}"
        );
        let e = load_str("world:\n  start_fraction: {min: 0.8, max: 0.2}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("world.start_fraction"), "{e}");
        let e = load_str("tracker:\n  port: banana\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("port"), "{e}");
        let e = load_str("my_client:\n  args: \"--x {nope}\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("my_client.args") && e.contains("nope"), "{e}");
        let e = load_str("world:\n  policy: fastest\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("world.policy") && e.contains("fastest") && e.contains("deadline"),
            "{e}"
        );
        let c = load_str("world:\n  policy: deadline\n").unwrap();
        assert_eq!(c.world.policy, crate::policy::Policy::Deadline);
        let e = load_str("world:\n  first_rechoke: -1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("world.first_rechoke") && e.contains("-1"), "{e}");
        assert_eq!(load_str("").unwrap().world.first_rechoke, 1.0);
        let e = load_str("world:\n  choke_hysteresis: 1.5\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("world.choke_hysteresis") && e.contains("1.5"),
            "{e}"
        );
        assert_eq!(load_str("").unwrap().world.choke_hysteresis, 0.0);
    }

    #[test]
    fn a_network_needs_the_labs_namespace() {
        let c = load_str("network:\n  rtt_ms: {min: 20, max: 200}\n  loss_percent: 0.5\n").unwrap();
        let n = c.network.unwrap();
        assert_eq!(n.loss_percent, Range::Fixed(0.5));
        for bad in [
            "addresses: loopback\nnetwork: {rtt_ms: 50}\n",
            "tracker: {bind: 0.0.0.0}\nnetwork: {rtt_ms: 50}\n",
        ] {
            let e = load_str(bad).unwrap_err().to_string();
            assert!(
                e.contains("c.yaml: network:") && e.contains("namespace"),
                "{e}"
            );
        }
        let e = load_str("network:\n  loss_percent: 101\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("network.loss_percent"), "{e}");
        let e = load_str("network:\n  rtt: 5\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("rtt"), "{e}");
    }
}
