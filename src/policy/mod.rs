//! Policies: which piece to ask a peer for next, how many requests to keep in flight, and whom
//! to upload to. These are the lab's subject, the places where students and researchers change
//! behaviour, so each policy is one file behind one small trait:
//!
//! | trait | BitTornado counterpart | implementations |
//! |---|---|---|
//! | [`PiecePicker::next`] | `PiecePicker.next` | [`rarest::RarestFirst`], [`sequential::Sequential`], [`deadline::Deadline`] |
//! | [`PiecePicker::backlog`] | `Downloader._request_more` (how deep to pipeline) | default method |
//! | [`Choker::rechoke`] | `Choker._rechoke` / `_round_robin` | [`tit_for_tat::TitForTat`], [`window_choker::WindowChoker`], [`tyrant::Tyrant`] |
//!
//! A picker never sees sockets or buffers: the session hands it a [`PickView`] of the swarm
//! (what we have, which pieces are under way, how many peers have each piece, and, for a VoD
//! client, where playback is) and the bitfield of the peer that has a free request slot. To add
//! a policy, add a file here, implement the trait, and give it a variant of [`Policy`].

pub mod deadline;
pub mod rarest;
pub mod sequential;
pub mod tit_for_tat;
pub mod tyrant;
pub mod window_choker;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::wire::Bitfield;

/// Where a piece stands in our download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceStatus {
    /// Not started.
    Missing,
    /// Started, with blocks nobody has been asked for yet.
    Partial,
    /// Started, every block asked for (endgame territory).
    Requested,
    /// Every block is here; being hashed and written (held in a moment, or missing again if
    /// it fails its check).
    Checking,
    /// Verified and on disk.
    Have,
}

/// What a VoD client adds to the view: the playback clock.
#[derive(Debug, Clone, Copy)]
pub struct Playback {
    /// Seconds until each piece's deadline is computed from this: deadline(i) = first + i * per_piece.
    pub first_deadline: f64,
    pub secs_per_piece: f64,
    /// Bytes in a piece.
    pub piece_length: u32,
    /// Seconds since the client started.
    pub now: f64,
}

impl Playback {
    /// Seconds of playback ahead that make a VoD client's window: the pieces the deadline
    /// picker treats as urgent, and what the window choker counts in a peer's favour.
    pub const WINDOW: f64 = 20.0;

    /// Seconds after start when piece `i` is due.
    pub fn deadline(&self, i: u32) -> f64 {
        self.first_deadline + i as f64 * self.secs_per_piece
    }

    /// Seconds from now until piece `i` is due (negative: overdue).
    pub fn slack(&self, i: u32) -> f64 {
        self.deadline(i) - self.now
    }

    /// The first of `n` pieces due more than `margin` seconds from now (the ones before it
    /// are overdue, or too close to make: the VoD server's), or `n`.
    pub fn first_due(&self, margin: f64, n: u32) -> u32 {
        (((self.now + margin - self.first_deadline) / self.secs_per_piece)
            .ceil()
            .max(0.0) as u64)
            .min(n as u64) as u32
    }

    /// The pieces of `n` due within the next [`Self::WINDOW`] seconds and not overdue.
    pub fn window(&self, n: u32) -> std::ops::Range<u32> {
        let last =
            ((self.now + Self::WINDOW - self.first_deadline) / self.secs_per_piece).max(0.0) as u64;
        self.first_due(0.0, n)..(last + 1).min(n as u64) as u32
    }
}

/// The swarm as a picker sees it.
pub struct PickView<'a> {
    pub status: &'a [PieceStatus],
    /// How many connected peers have each piece.
    pub availability: &'a [u16],
    /// Pieces started and not finished, ascending.
    pub partials: &'a [u32],
    /// Set for a VoD client.
    pub playback: Option<Playback>,
}

impl PickView<'_> {
    /// Whether we could request a not-yet-requested block of piece `i` from a peer having `peer`.
    pub fn requestable(&self, i: u32, peer: &Bitfield) -> bool {
        matches!(
            self.status[i as usize],
            PieceStatus::Missing | PieceStatus::Partial
        ) && peer.get(i)
    }

    /// The first started piece that still has unrequested blocks the peer can give: finishing
    /// what is started before starting more (BitTornado's strict priority).
    pub fn first_partial(&self, peer: &Bitfield) -> Option<u32> {
        self.partials
            .iter()
            .copied()
            .find(|&i| self.status[i as usize] == PieceStatus::Partial && peer.get(i))
    }
}

/// The peer with a free request slot, as a picker sees it.
pub struct PeerView<'a> {
    pub has: &'a Bitfield,
    /// Bytes/s it has been sending us.
    pub rate: f64,
    /// Blocks we have asked it for and not yet received.
    pub outstanding: usize,
}

impl<'a> PeerView<'a> {
    /// A peer of unknown speed (tests, first contact).
    pub fn of(has: &'a Bitfield) -> Self {
        PeerView {
            has,
            rate: 0.0,
            outstanding: 0,
        }
    }
}

/// Chooses the next piece to request from a peer.
pub trait PiecePicker: Send {
    fn name(&self) -> &'static str;

    /// A piece that `peer` has and [`PickView::requestable`] allows, or `None` when there is
    /// nothing to ask this peer for.
    fn next(&mut self, view: &PickView<'_>, peer: &PeerView<'_>) -> Option<u32>;

    /// Started pieces whose blocks, already asked of another peer, should also be asked of
    /// this one (at most two askers per block; the first copy to arrive wins and the other is
    /// cancelled): the re-issue of a request that will not make its deadline. Asked only when
    /// [`next`](Self::next) has nothing more for this peer. Default: none (endgame aside,
    /// which the session does for every policy).
    fn rescue(&mut self, _view: &PickView<'_>, _peer: &PeerView<'_>) -> Vec<u32> {
        Vec::new()
    }

    /// How many block requests to keep outstanding at a peer that sends us `rate` bytes/s.
    /// The default keeps about half a second of data in flight, at least 4 and at most 400
    /// blocks (enough to fill a loopback link, few enough not to hoard a slow peer).
    fn backlog(&self, rate: f64) -> usize {
        (4 + (rate * 0.5 / crate::wire::BLOCK_SIZE as f64) as usize).min(400)
    }
}

/// The built-in policies: one name (for `--policy`, configs and reports) builds a picker and
/// the choker that goes with it. The one registry: add a variant here and in the three
/// matches below, and the command lines, the config and the checks all know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Rarest first (BitTornado's), with BitTornado's choker.
    Rarest,
    /// In file order, with BitTornado's choker.
    Sequential,
    /// Earliest deadline from a peer that can make it, rarest first beyond the window; the
    /// window choker.
    Deadline,
}

impl Policy {
    pub const ALL: [Policy; 3] = [Policy::Rarest, Policy::Sequential, Policy::Deadline];

    pub fn name(self) -> &'static str {
        match self {
            Policy::Rarest => "rarest",
            Policy::Sequential => "sequential",
            Policy::Deadline => "deadline",
        }
    }

    /// The piece picker, its random choices drawn from `seed`.
    pub fn picker(self, seed: u64) -> Box<dyn PiecePicker> {
        match self {
            Policy::Rarest => Box::new(rarest::RarestFirst::new(seed)),
            Policy::Sequential => Box::new(sequential::Sequential),
            Policy::Deadline => Box::new(deadline::Deadline::new(seed)),
        }
    }

    /// Upload slots (the optimistic one included) when the user does not say. The deadline
    /// policy spends our uploads on the peers that hold the playback window, in three slots: a
    /// third of our cap beats what a world client's other uploaders give it (a quarter of
    /// theirs), so it keeps serving us (see `window_choker.rs`). The others keep BitTornado's
    /// four, so that they compare pickers alone.
    pub fn default_upload_slots(self) -> usize {
        match self {
            Policy::Deadline => 3,
            Policy::Rarest | Policy::Sequential => 4,
        }
    }

    /// The choker that goes with the picker.
    pub fn default_choker(self) -> ChokerKind {
        match self {
            Policy::Deadline => ChokerKind::Window,
            Policy::Rarest | Policy::Sequential => ChokerKind::TitForTat,
        }
    }

    /// A world client's choker: the policy's, made sticky by `hysteresis` > 0 where it is
    /// BitTornado's ([`tit_for_tat::TitForTat::with_hysteresis`]; the others have none).
    pub fn choker_with_hysteresis(
        self,
        slots: usize,
        seed: u64,
        hysteresis: f64,
    ) -> Box<dyn Choker> {
        self.default_choker().build(slots, seed, 0.0, hysteresis)
    }

    /// The policy's choker, with `slots` upload slots (default: [`Self::default_upload_slots`]).
    pub fn choker(self, slots: Option<usize>, seed: u64) -> Box<dyn Choker> {
        self.choker_with_hysteresis(slots.unwrap_or(self.default_upload_slots()), seed, 0.0)
    }
}

/// The chokers, by name (`vod-client --choker`; default: the policy's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChokerKind {
    /// BitTornado's.
    TitForTat,
    /// Upload where it buys the playback window (the deadline policy's).
    Window,
    /// A price per peer, what keeps its slot (BitTyrant's idea); needs an upload cap.
    Tyrant,
}

impl ChokerKind {
    /// The choker, with `slots` upload slots (for the tyrant: when seeding), spending
    /// `capacity` bytes/s (the tyrant's budget; 0: no cap, and the tyrant falls back to the
    /// window choker: `vod-client` refuses `--choker tyrant` without a cap before it gets here),
    /// and for BitTornado's choker `hysteresis` ([`tit_for_tat::TitForTat::with_hysteresis`];
    /// 0 is BitTornado's, and the others have none).
    pub fn build(self, slots: usize, seed: u64, capacity: f64, hysteresis: f64) -> Box<dyn Choker> {
        // Its own stream of random numbers, apart from the picker's.
        let seed = seed ^ 0x5eed;
        match self {
            ChokerKind::Window => Box::new(window_choker::WindowChoker::new(slots, seed)),
            ChokerKind::TitForTat => {
                Box::new(tit_for_tat::TitForTat::new(slots, seed).with_hysteresis(hysteresis))
            }
            ChokerKind::Tyrant if capacity > 0.0 => {
                Box::new(tyrant::Tyrant::new(capacity, slots, seed))
            }
            ChokerKind::Tyrant => Box::new(window_choker::WindowChoker::new(slots, seed)),
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Policy {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Policy, UnknownPolicy> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownPolicy(s.to_string()))
    }
}

/// A name that is no built-in policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPolicy(pub String);

impl std::fmt::Display for UnknownPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let known: Vec<&str> = Policy::ALL.iter().map(|p| p.name()).collect();
        write!(
            f,
            "unknown policy {:?} (known: {})",
            self.0,
            known.join(", ")
        )
    }
}

impl std::error::Error for UnknownPolicy {}

/// One connection as the choker sees it.
#[derive(Debug, Clone)]
pub struct ChokeCandidate {
    pub id: u64,
    /// A name for the peer that does not depend on timing (`peer::session::peer_key`): the
    /// choker's random draws about this peer come from it, so that a seeded world treats the
    /// same peer the same way in every rerun.
    pub key: u64,
    /// The peer wants data from us.
    pub interested: bool,
    /// We are currently choking it.
    pub choked: bool,
    /// Bytes/s it sends us.
    pub download_rate: f64,
    /// Bytes/s we send it.
    pub upload_rate: f64,
    /// It has every piece (it will never upload to a seed... nor need from us).
    pub is_seed: bool,
    /// It has unchoked us: it lets us request (whether our uploads bought its slot).
    pub unchokes_us: bool,
    /// How long it has been connected.
    pub connected_for: Duration,
    /// For a VoD client: how many pieces we still need in the next 20 s of playback it has.
    pub window_pieces: u32,
}

/// A rank for the peer named `key` (a [`ChokeCandidate::key`]), drawn from a choker's `seed`:
/// how a choker orders peers it has no other reason to tell apart, the same in every rerun of
/// a seeded world (where the order the peers came in is timing) and different from seed to
/// seed (where their keys' order would hand the same addresses every tie).
pub(crate) fn seeded_rank(seed: u64, key: u64) -> u64 {
    use rand::{Rng, SeedableRng};
    rand::rngs::SmallRng::seed_from_u64(seed.rotate_left(29) ^ key ^ 0x9e37_79b9_7f4a_7c15).random()
}

/// How long a choker that [fills free slots at once](Choker::fills_free_slots_at_once) waits,
/// after a choked peer turns interested, for the others the same news turned interested: the
/// interests one `have` sets off arrive within milliseconds, in an order that is timing.
pub const GATHER: Duration = Duration::from_millis(200);

/// Decides whom to unchoke: every round (5 s) and when a connection comes or goes or an
/// unchoked peer changes its interest (then with the same `round`).
pub trait Choker: Send {
    fn name(&self) -> &'static str;
    /// Also rechoke (same `round`) when a *choked* peer turns interested, so that a free slot
    /// is filled at once. BitTornado does not (such a peer waits for the next round); a client
    /// whose uploads must buy slots in the world's first rechoke cannot wait 5 s. The rechoke
    /// comes [`GATHER`] after the first such peer, with all that turned interested meanwhile.
    fn fills_free_slots_at_once(&self) -> bool {
        false
    }
    /// The ids to unchoke; every other candidate is choked. `round` counts rechokes.
    fn rechoke(&mut self, peers: &[ChokeCandidate], seeding: bool, round: u64) -> Vec<u64>;
    /// Bytes/s to send an unchoked peer at most, under the session's cap (BitTyrant gives
    /// each peer what keeps its slot, and no more). Default: no cap of its own.
    fn upload_cap(&self, _id: u64) -> Option<u32> {
        None
    }
}

#[cfg(test)]
mod registry_tests {
    use super::*;

    #[test]
    fn every_policy_is_known_by_its_name_everywhere() {
        for p in Policy::ALL {
            assert_eq!(p.name().parse::<Policy>().unwrap(), p);
            assert_eq!(p.picker(1).name(), p.name());
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
            let clap_name = clap::ValueEnum::to_possible_value(&p).unwrap();
            assert_eq!(clap_name.get_name(), p.name());
        }
        assert_eq!(Policy::Deadline.choker(None, 1).name(), "window");
        assert_eq!(Policy::Rarest.choker(Some(2), 1).name(), "tit-for-tat");
        let e = "fastest".parse::<Policy>().unwrap_err().to_string();
        assert!(e.contains("\"fastest\"") && e.contains("deadline"), "{e}");
    }
}

#[cfg(test)]
mod playback_tests {
    use super::*;

    #[test]
    fn window_math() {
        // A piece every 2 s from t = 4 s; at t = 9 piece 3 (due 10) is the first not overdue.
        let pb = Playback {
            first_deadline: 4.0,
            secs_per_piece: 2.0,
            piece_length: 16384,
            now: 9.0,
        };
        assert_eq!(pb.deadline(3), 10.0);
        assert_eq!(pb.slack(3), 1.0);
        assert_eq!(pb.first_due(0.0, 100), 3);
        assert_eq!(
            pb.first_due(1.5, 100),
            4,
            "piece 3 is too close with a 1.5 s margin"
        );
        assert_eq!(pb.first_due(0.0, 2), 2, "capped at n");
        // Due within 20 s: up to t = 29, piece 12 (due 28).
        assert_eq!(pb.window(100), 3..13);
        assert_eq!(pb.window(10), 3..10);
        let early = Playback { now: 0.0, ..pb };
        assert_eq!(
            early.window(100),
            0..9,
            "before playback: from piece 0 to t = 20"
        );
    }
}
