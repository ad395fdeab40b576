//! The picker's side of a policy: what a picker sees ([`PickView`], [`PeerView`], the
//! [`Playback`] clock of a VoD client) and the [`PiecePicker`] trait it implements.

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

#[cfg(test)]
mod tests {
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
