//! The choker's side of a policy: one connection as the choker sees it
//! ([`ChokeCandidate`]), the [`Choker`] trait, and the seeded draws every choker shares.

use std::time::Duration;

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
