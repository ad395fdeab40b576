//! Policies: which piece to ask a peer for next, how many requests to keep in flight, and whom
//! to upload to. These are the lab's subject, the places where students and researchers change
//! behaviour, so each policy is one file behind one small trait:
//!
//! | trait | BitTornado counterpart | implementations |
//! |---|---|---|
//! | [`PiecePicker::next`] | `PiecePicker.next` | [`rarest::RarestFirst`], [`sequential::Sequential`], [`deadline::Deadline`] |
//! | [`PiecePicker::backlog`] | `Downloader._request_more` (how deep to pipeline) | default method |
//! | [`Choker::rechoke`] | `Choker._rechoke` / `_round_robin` | [`tit_for_tat::TitForTat`], [`window_choker::WindowChoker`] |
//!
//! A picker never sees sockets or buffers: the session hands it a [`PickView`] of the swarm
//! (what we have, which pieces are under way, how many peers have each piece, and, for a VoD
//! client, where playback is) and the bitfield of the peer that has a free request slot. To add
//! a policy, add a file here, implement the trait, and name it in [`picker_by_name`].

pub mod deadline;
pub mod rarest;
pub mod sequential;
pub mod tit_for_tat;
pub mod window_choker;

use std::time::Duration;

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
    /// Seconds from now until piece `i` is due (negative: overdue).
    pub fn slack(&self, i: u32) -> f64 {
        self.first_deadline + i as f64 * self.secs_per_piece - self.now
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

/// A picker by its `--policy` name.
pub fn picker_by_name(name: &str, seed: u64) -> Option<Box<dyn PiecePicker>> {
    match name {
        "rarest" => Some(Box::new(rarest::RarestFirst::new(seed))),
        "sequential" => Some(Box::new(sequential::Sequential)),
        "deadline" => Some(Box::new(deadline::Deadline::new(seed))),
        _ => None,
    }
}

/// Names accepted by [`picker_by_name`].
pub const PICKERS: &[&str] = &["rarest", "sequential", "deadline"];

/// One connection as the choker sees it.
#[derive(Debug, Clone)]
pub struct ChokeCandidate {
    pub id: u64,
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
    /// How long it has been connected.
    pub connected_for: Duration,
    /// For a VoD client: how many pieces we still need in the next 20 s of playback it has.
    pub window_pieces: u32,
}

/// Decides whom to unchoke: every round (5 s) and when a connection comes or goes or an
/// unchoked peer changes its interest (then with the same `round`).
pub trait Choker: Send {
    fn name(&self) -> &'static str;
    /// The ids to unchoke; every other candidate is choked. `round` counts rechokes.
    fn rechoke(&mut self, peers: &[ChokeCandidate], seeding: bool, round: u64) -> Vec<u64>;
}
