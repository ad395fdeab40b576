//! The world: the throttled BitTorrent clients that share each file of `fresh-files/`.
//!
//! Each swarm has `seeds` complete clients (they share the file in `fresh-files/` itself,
//! opened read-only) and `clients` partial ones, each started on its own copy holding a random
//! subset of pieces (a fraction drawn from `start_fraction`) copied from fresh-files. A client is
//! a `testbed peer` child process, quiet, logging into `run/logs/`.
//!
//! Life cycle of a slot: a partial client that completes lingers as a seed (`linger`), exits
//! with status 0, and is *reincarnated*: after a little random jitter a new client takes the
//! slot with a new peer id and a fresh partial copy. A client that crashes is logged with its exit
//! status and restarted after a doubling backoff; after `crash_backoff.limit` crashes in a row
//! the slot is given up and reported, never spun.
//!
//! With a `seed:` in the config every random choice (fractions, pieces, caps, linger, ids) is
//! drawn from a generator seeded by (seed, swarm, slot, generation), so the layout is the same
//! from run to run whatever the timing.

use std::ffi::OsString;
use std::net::IpAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::config::{Addresses, WorldSection};
use super::netns;
use crate::metainfo::Torrent;
use crate::sys::spawn::{SpawnRequest, Spawner};
use crate::util::Exit;
use crate::util::Locked;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Seed,
    World,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotState {
    Starting,
    Running,
    /// Waiting to be replaced (after completing) or restarted (after a crash).
    Waiting,
    /// Crashed too often: given up.
    Failed,
}

impl Role {
    /// The name on the wire and in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Seed => "seed",
            Role::World => "world",
        }
    }
}

impl SlotState {
    /// The name on the wire and in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            SlotState::Starting => "starting",
            SlotState::Running => "running",
            SlotState::Waiting => "waiting",
            SlotState::Failed => "failed",
        }
    }
}

/// One place in the world.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Slot {
    pub swarm: usize,
    pub index: usize,
    pub role: Role,
    pub generation: u32,
    #[serde(with = "peer_id_text")]
    pub peer_id: [u8; 20],
    /// The address it listens on, dials from and announces from.
    pub addr: IpAddr,
    pub pid: Option<i32>,
    pub state: SlotState,
    /// Crashes in a row.
    pub crashes: u32,
    /// Replacements after completing.
    pub reincarnations: u32,
    pub upload_rate: f64,
    pub start_fraction: f64,
    /// Its emulated link (a run with `network:`); the same for every generation of the slot.
    #[serde(default)]
    pub link: Option<crate::netem::Link>,
    pub last_exit: Option<String>,
    #[serde(skip)]
    pub data: PathBuf,
    #[serde(skip)]
    pub started: Option<Instant>,
}

/// A world client's peer id as JSON text (world ids are ASCII: `-TB0001-` and 12 of [a-z0-9]).
mod peer_id_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &[u8; 20], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(id))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 20], D::Error> {
        let s = String::deserialize(d)?;
        s.as_bytes()
            .try_into()
            .map_err(|_| serde::de::Error::custom(format!("peer id {s:?} is not 20 bytes")))
    }
}

/// What [`World::on_exit`] asks of the supervisor.
#[derive(Debug, Clone, PartialEq)]
pub struct Respawn {
    pub slot: usize,
    /// Wait this long first (jitter, or the crash backoff).
    pub delay: Duration,
    /// The finished client's folder, to delete before the new one starts.
    pub remove: Option<PathBuf>,
}

/// A swarm: one file of fresh-files and its torrent.
#[derive(Debug, Clone)]
pub struct SwarmFiles {
    pub torrent: Arc<Torrent>,
    pub torrent_path: PathBuf,
    pub fresh: PathBuf,
}

pub struct World {
    pub cfg: WorldSection,
    /// How slots are addressed (never `Auto` here: the supervisor has decided).
    pub addresses: Addresses,
    /// The address of every client under [`Addresses::Shared`].
    pub shared_addr: IpAddr,
    pub seed: u64,
    pub swarms: Vec<SwarmFiles>,
    pub slots: Mutex<Vec<Slot>>,
    pub spawner: Spawner,
    pub testbed_exe: PathBuf,
    /// `testbed_exe` is this binary (not `world.command`), which arms its own death signal and
    /// opens its own log (see [`SpawnRequest::arms_itself`]).
    pub exe_is_ours: bool,
    pub downloads: PathBuf,
    pub logs: PathBuf,
    /// Live status files, one per slot (see [`World::status_file`]).
    pub status: PathBuf,
    /// Referee records, one per client (see `peer::referee`).
    pub referee: PathBuf,
    pub tracker_url: String,
    pub interval: u64,
    /// The `network:` section and its seed: every slot's emulated link.
    pub network: Option<(crate::netem::NetworkSection, u64)>,
    pub stopping: std::sync::atomic::AtomicBool,
}

/// A generator for one (swarm, slot, generation): the same every run with the same seed.
fn rng_for(seed: u64, swarm: usize, slot: usize, generation: u32) -> rand::rngs::StdRng {
    let mix = seed
        ^ (swarm as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (slot as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ (generation as u64).wrapping_mul(0x1656_67B1_9E37_79F9);
    rand::rngs::StdRng::seed_from_u64(mix)
}

impl World {
    /// Lay out every slot of this testbed's shard (not yet started).
    pub fn layout(&self) {
        let mut slots = Vec::new();
        let per_swarm = self.cfg.seeds + self.cfg.clients;
        for (s, _) in self.swarms.iter().enumerate() {
            for i in 0..per_swarm {
                if !self.cfg.shard.has(s * per_swarm + i) {
                    continue;
                }
                let role = if i < self.cfg.seeds {
                    Role::Seed
                } else {
                    Role::World
                };
                slots.push(self.new_slot(s, i, role, 0));
            }
        }
        *self.slots.locked() = slots;
    }

    fn new_slot(&self, swarm: usize, index: usize, role: Role, generation: u32) -> Slot {
        let mut rng = rng_for(self.seed, swarm, index, generation);
        let start_fraction = if role == Role::Seed {
            1.0
        } else {
            self.cfg.start_fraction.draw(&mut rng)
        };
        let rate = match (role, &self.cfg.seed_upload_rate) {
            (Role::Seed, Some(r)) => r.draw(&mut rng),
            _ => self.cfg.upload_rate.draw(&mut rng),
        };
        let tag = if role == Role::Seed { 'S' } else { 'W' };
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let suffix: String = (0..3)
            .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
            .collect();
        let id = format!(
            "-TB0100-{tag}{:04}g{:03}{suffix}",
            index % 10000,
            generation % 1000
        );
        let peer_id: [u8; 20] = id.as_bytes().try_into().expect("20 bytes");
        let addr = self.slot_addr(swarm, index);
        let name = &self.swarms[swarm].torrent.name;
        let data = if role == Role::Seed {
            self.swarms[swarm].fresh.clone()
        } else {
            self.downloads
                .join(format!("world-{swarm}-{index}-g{generation}"))
                .join(name)
        };
        Slot {
            swarm,
            index,
            role,
            generation,
            peer_id,
            addr,
            pid: None,
            state: SlotState::Starting,
            crashes: 0,
            reincarnations: 0,
            upload_rate: (rate * 10.0).round() / 10.0,
            start_fraction,
            link: self
                .network
                .as_ref()
                .map(|(n, seed)| n.world_link(*seed, self.slot_number(swarm, index))),
            last_exit: None,
            data,
            started: None,
        }
    }

    pub fn peer_ids(&self) -> Vec<[u8; 20]> {
        self.slots
            .locked()
            .iter()
            .filter(|s| s.state != SlotState::Failed)
            .map(|s| s.peer_id)
            .collect()
    }

    /// A slot's number in the run, across swarms (its address's and its link's).
    fn slot_number(&self, swarm: usize, index: usize) -> usize {
        swarm * (self.cfg.seeds + self.cfg.clients) + index
    }

    /// The address of a slot: its own under `namespace` and `loopback` (numbered across
    /// swarms, so unique in the run), the shared one otherwise. The supervisor checks that
    /// the world fits ([`netns::MAX_CLIENTS`]).
    pub fn slot_addr(&self, swarm: usize, index: usize) -> IpAddr {
        let k = self.slot_number(swarm, index);
        let own = match self.addresses {
            Addresses::Namespace => netns::world_addr(k),
            Addresses::Loopback => netns::loopback_addr(k),
            Addresses::Auto | Addresses::Shared => None,
        };
        own.unwrap_or(self.shared_addr)
    }

    /// The live status file of a slot (rewritten by its client every second).
    pub fn status_file(&self, swarm: usize, index: usize) -> PathBuf {
        self.status.join(format!("{swarm}-{index}.json"))
    }

    /// Make the slot's partial copy and start its client. Blocking (file copies): call from a
    /// blocking context.
    pub fn start_slot(&self, k: usize) -> anyhow::Result<i32> {
        self.prepare_slot(k)?;
        self.spawn_slot(k)
    }

    /// A world client's partial copy (nothing for a seed, which reads the fresh file).
    /// Blocking.
    pub fn prepare_slot(&self, k: usize) -> anyhow::Result<()> {
        let slot = self.slots.locked()[k].clone();
        let sw = &self.swarms[slot.swarm];
        if slot.role == Role::World {
            let mut rng = rng_for(self.seed ^ 0x22, slot.swarm, slot.index, slot.generation);
            make_partial_copy(
                &sw.torrent,
                &sw.fresh,
                &slot.data,
                slot.start_fraction,
                &mut rng,
            )?;
        }
        Ok(())
    }

    /// Start the slot's client on its prepared copy. Blocking.
    pub fn spawn_slot(&self, k: usize) -> anyhow::Result<i32> {
        let (args, log) = self.slot_command(k);
        let pid = self.spawner.spawn(SpawnRequest {
            program: self.testbed_exe.clone(),
            args,
            // Quiet by default; TESTBED_WORLD_LOG (a RUST_LOG filter) traces the world.
            env: vec![(
                "RUST_LOG".into(),
                std::env::var("TESTBED_WORLD_LOG").unwrap_or_else(|_| "info".into()),
            )],
            log,
            cwd: None,
            arms_itself: self.exe_is_ours,
        })?;
        self.mark_running(k, pid);
        Ok(pid)
    }

    /// Slot `k`'s client runs, as `pid`.
    pub fn mark_running(&self, k: usize, pid: i32) {
        let mut slots = self.slots.locked();
        slots[k].pid = Some(pid);
        slots[k].state = SlotState::Running;
        slots[k].started = Some(Instant::now());
    }

    /// The arguments of slot `k`'s `testbed peer` (after the program's name) and its log.
    pub fn slot_command(&self, k: usize) -> (Vec<OsString>, PathBuf) {
        let slot = self.slots.locked()[k].clone();
        let mut linger_rng = rng_for(self.seed ^ 0x11, slot.swarm, slot.index, slot.generation);
        let linger = self.cfg.linger.draw(&mut linger_rng);
        (
            self.peer_args(&slot, linger, linger_rng.random::<u64>()),
            self.slot_log(k),
        )
    }

    /// Slot `k`'s log, which every client of the slot appends to.
    pub fn slot_log(&self, k: usize) -> PathBuf {
        let slot = &self.slots.locked()[k];
        self.logs.join(format!(
            "{}-{}-{}.log",
            slot.role.as_str(),
            slot.swarm,
            slot.index
        ))
    }

    /// The command line of a slot's `testbed peer`: `linger` seconds after it completes (a
    /// world client), `rng_seed` for its own draws.
    fn peer_args(&self, slot: &Slot, linger: f64, rng_seed: u64) -> Vec<OsString> {
        let sw = &self.swarms[slot.swarm];
        let mut args: Vec<OsString> = vec![
            "peer".into(),
            sw.torrent_path.clone().into(),
            "--data".into(),
            slot.data.clone().into(),
        ];
        let referee = self.referee.join(format!(
            "{}-{}-g{}.jsonl",
            slot.swarm, slot.index, slot.generation
        ));
        let cfg = &self.cfg;
        let mut flags: Vec<(&str, String)> = vec![
            ("--tracker", self.tracker_url.clone()),
            ("--bind", slot.addr.to_string()),
            ("--referee", referee.display().to_string()),
            (
                "--peer-id",
                String::from_utf8_lossy(&slot.peer_id).into_owned(),
            ),
            ("--max-upload-rate", slot.upload_rate.to_string()),
            ("--max-connections", cfg.max_connections.to_string()),
            ("--upload-slots", cfg.upload_slots.to_string()),
            ("--first-rechoke", cfg.first_rechoke.to_string()),
        ];
        if cfg.choke_hysteresis > 0.0 {
            flags.push(("--choke-hysteresis", cfg.choke_hysteresis.to_string()));
        }
        flags.extend([
            ("--policy", cfg.policy.to_string()),
            ("--rng-seed", rng_seed.to_string()),
            ("--max-announce-interval", self.interval.to_string()),
            (
                "--status-file",
                self.status_file(slot.swarm, slot.index)
                    .display()
                    .to_string(),
            ),
        ]);
        if slot.role == Role::World {
            flags.push(("--linger", format!("{linger:.1}")));
        }
        // `--key=value`: a value may start with '-' (peer ids do).
        args.extend(flags.into_iter().map(|(k, v)| format!("{k}={v}").into()));
        if slot.role == Role::Seed {
            args.push("--seed".into());
        }
        args
    }

    /// A child exited. Returns what to do: start a slot again after a delay, or nothing. Does
    /// no I/O (it runs on the supervisor's event loop): the old copy is for the caller to remove.
    pub fn on_exit(&self, pid: i32, exit: Exit) -> Option<Respawn> {
        let mut slots = self.slots.locked();
        let k = slots.iter().position(|s| s.pid == Some(pid))?;
        let stopping = self.stopping.load(std::sync::atomic::Ordering::Relaxed);
        let s = &mut slots[k];
        s.pid = None;
        s.last_exit = Some(exit.to_string());
        if stopping {
            return None;
        }
        let mut rng = rand::rng();
        let jitter =
            Duration::from_secs_f64(rng.random_range(0.0..=self.cfg.respawn_jitter.max(0.0)));
        if exit == Exit::Code(0) && s.role == Role::World {
            // Completed and lingered: a new client takes the slot.
            tracing::info!(
                slot = k,
                generation = s.generation,
                "world client completed; reincarnating"
            );
            let old = s.data.clone();
            let reinc = s.reincarnations + 1;
            let fresh = self.new_slot(s.swarm, s.index, s.role, s.generation + 1);
            *s = Slot {
                reincarnations: reinc,
                state: SlotState::Waiting,
                ..fresh
            };
            return Some(Respawn {
                slot: k,
                delay: jitter,
                remove: old.parent().map(Path::to_path_buf),
            });
        }
        if s.started.is_some_and(|t| t.elapsed() >= HEALTHY_AFTER) {
            s.crashes = 0;
        }
        s.crashes += 1;
        let b = &self.cfg.crash_backoff;
        if s.crashes >= b.limit {
            s.state = SlotState::Failed;
            tracing::error!(
                slot = k,
                "world client {} ({exit}) crashed {} times in a row; giving up on this slot",
                String::from_utf8_lossy(&s.peer_id),
                s.crashes
            );
            return None;
        }
        s.state = SlotState::Waiting;
        let backoff = (b.initial * 2f64.powi(s.crashes as i32 - 1)).min(b.max);
        tracing::warn!(
            slot = k,
            "world client {} died ({exit}); restarting in {backoff:.1} s",
            String::from_utf8_lossy(&s.peer_id)
        );
        Some(Respawn {
            slot: k,
            delay: Duration::from_secs_f64(backoff) + jitter,
            remove: None,
        })
    }
}

/// Write `dest` as a sparse file of the torrent's size holding a random `fraction` of the
/// pieces, copied from `fresh` (which is only read).
///
/// `run/downloads` is shared with my client, which may be hostile: a symlink planted at `dest`
/// is removed (never followed), a folder that is a symlink is refused, and the file is created
/// new (`O_EXCL | O_NOFOLLOW`), so that nothing is written outside the run dir (fresh-files
/// above all).
pub fn make_partial_copy(
    t: &Torrent,
    fresh: &Path,
    dest: &Path,
    fraction: f64,
    rng: &mut impl Rng,
) -> anyhow::Result<usize> {
    use anyhow::Context;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = dest.parent() {
        if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
            anyhow::bail!("{}: a symlink; refusing to write through it", dir.display());
        }
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    let src = std::fs::File::open(fresh).with_context(|| format!("{}", fresh.display()))?;
    match std::fs::remove_file(dest) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("{}", dest.display()))
        }
        _ => {}
    }
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(dest)
        .with_context(|| format!("{}", dest.display()))?;
    out.set_len(t.total_length)?;
    let n = t.num_pieces() as usize;
    let k = ((n as f64) * fraction).round() as usize;
    let chosen = rand::seq::index::sample(rng, n, k.min(n));
    let mut buf = vec![0u8; t.piece_length as usize];
    for i in chosen.iter() {
        let i = i as u32;
        let len = t.piece_len(i) as usize;
        src.read_exact_at(&mut buf[..len], t.piece_offset(i))?;
        out.write_all_at(&buf[..len], t.piece_offset(i))?;
    }
    Ok(k)
}

/// How long a client must run before its crash count starts again from zero.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_copy_never_writes_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh.bin");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&fresh, &data).unwrap();
        let t = Torrent::from_bytes(
            &crate::metainfo::make_torrent(&fresh, "http://x/announce", 16384).unwrap(),
        )
        .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        // A symlink planted where the copy goes, pointing at the fresh file.
        let dl = dir.path().join("downloads/world-0-0-g1");
        std::fs::create_dir_all(&dl).unwrap();
        let dest = dl.join("fresh.bin");
        std::os::unix::fs::symlink(&fresh, &dest).unwrap();
        make_partial_copy(&t, &fresh, &dest, 0.5, &mut rng).unwrap();
        assert_eq!(std::fs::read(&fresh).unwrap(), data, "fresh file untouched");
        assert!(!std::fs::symlink_metadata(&dest)
            .unwrap()
            .file_type()
            .is_symlink());
        // A folder that is a symlink is refused.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let linked = dir.path().join("downloads/world-0-1-g1");
        std::os::unix::fs::symlink(&elsewhere, &linked).unwrap();
        let err = make_partial_copy(&t, &fresh, &linked.join("fresh.bin"), 0.5, &mut rng)
            .unwrap_err()
            .to_string();
        assert!(err.contains("symlink"), "{err}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    #[test]
    fn partial_copy_holds_the_drawn_fraction_of_true_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("m.bin");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8 + 1).collect();
        std::fs::write(&src, &data).unwrap();
        let t =
            Torrent::from_bytes(&crate::metainfo::make_torrent(&src, "http://x/a", 16384).unwrap())
                .unwrap();
        let dest = dir.path().join("c/m.bin");
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let k = make_partial_copy(&t, &src, &dest, 0.5, &mut rng).unwrap();
        assert_eq!(k, 7); // 13 pieces * 0.5, rounded
        let (_, have) = crate::peer::storage::Storage::open(&t, &dest, true).unwrap();
        assert_eq!(have.count() as usize, k);
        assert_eq!(std::fs::read(&src).unwrap(), data, "source untouched");
        // Same seed, same pieces.
        let dest2 = dir.path().join("d/m.bin");
        make_partial_copy(
            &t,
            &src,
            &dest2,
            0.5,
            &mut rand::rngs::StdRng::seed_from_u64(1),
        )
        .unwrap();
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            std::fs::read(&dest2).unwrap()
        );
    }
}

#[cfg(test)]
mod names {
    use super::*;

    #[test]
    fn table_names_are_the_wire_names() {
        for r in [Role::Seed, Role::World] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        for s in [
            SlotState::Starting,
            SlotState::Running,
            SlotState::Waiting,
            SlotState::Failed,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
