//! Deadline-aware picking, the lab's best VoD policy so far.
//!
//! * **Urgent window**: among pieces due within `window` seconds (and not already overdue: the
//!   VoD server takes those), the earliest deadline first, but only from a peer that can
//!   deliver some of it in time: its estimated finish (blocks already asked of it plus one
//!   block of this piece, at its measured rate) must come before the deadline; at the deadline
//!   the server sends only the blocks still missing. An unknown peer is assumed slow. This is
//!   libtorrent's time-critical idea (lowest queue time wins) reduced to one rule.
//! * **Beyond the window**: rarest first among pieces not yet due, so that what we fetch early is
//!   also what the swarm lacks, and we have something to trade.
//! * **Rescue**: a piece due within `rescue` seconds that is still being fetched is also asked
//!   of any other peer that could deliver it in time; the first copy wins, the other request is
//!   cancelled. Peer bandwidth is free, server bytes are the penalty.
//! * **Backlog**: about one second of the peer's rate, so a slow peer never sits on blocks that a
//!   deadline needs.
//!
//! Without a playback clock (a world client using this policy) it is plain rarest first.

use super::rarest::RarestFirst;
use super::{PeerView, PickView, PiecePicker, PieceStatus, Playback};
use crate::wire::BLOCK_SIZE;

pub struct Deadline {
    /// Seconds ahead of playback that count as urgent.
    pub window: f64,
    /// Pieces due sooner than this are left to the server.
    pub min_slack: f64,
    /// Bytes/s assumed for a peer whose rate is not known yet.
    pub unknown_rate: f64,
    /// Pieces due within this many seconds and still in flight are asked of a second peer.
    pub rescue: f64,
    rarest: RarestFirst,
}

impl Deadline {
    pub fn new(seed: u64) -> Self {
        Deadline {
            window: Playback::WINDOW,
            min_slack: 0.3,
            // About one upload slot of the standard world (70 KB/s over 4 slots): a peer that
            // just unchoked us may take an urgent piece 2 s or more ahead. (8 KB/s, which kept
            // new peers on pieces 4 s ahead, did no better over 3 seeds: see BENCHMARKS.md.)
            unknown_rate: 16.0 * 1024.0,
            rescue: 5.0,
            rarest: RarestFirst::new(seed),
        }
    }
}

impl Deadline {
    /// The first piece not yet overdue (the VoD server takes those).
    fn first_due(&self, pb: &Playback, n: u32) -> u32 {
        pb.first_due(self.min_slack, n)
    }

    /// Seconds until `peer` would deliver the first block of one more piece: what is queued
    /// at it plus a block, at its measured rate (an unknown peer is assumed slow). A block, not
    /// the whole piece: the VoD server sends only the blocks missing at the deadline, so every
    /// block in time is 16 KiB less penalty (over seeds 42..57, 3 upload slots: 9.2% of the
    /// movie from the server against 13.1% when the whole piece had to be in time).
    fn finish(&self, peer: &PeerView<'_>) -> f64 {
        let rate = if peer.rate > 0.0 {
            peer.rate
        } else {
            self.unknown_rate
        };
        let queued = peer.outstanding as f64 * BLOCK_SIZE as f64;
        (queued + BLOCK_SIZE as f64) / rate
    }
}

impl PiecePicker for Deadline {
    fn name(&self) -> &'static str {
        "deadline"
    }

    fn next(&mut self, view: &PickView<'_>, peer: &PeerView<'_>) -> Option<u32> {
        let Some(pb) = view.playback else {
            return self.rarest.next(view, peer);
        };
        let n = view.status.len() as u32;
        let finish = self.finish(peer);
        let mut i = self.first_due(&pb, n);
        while i < n && pb.slack(i) <= self.window {
            if view.requestable(i, peer.has) && finish < pb.slack(i) {
                return Some(i);
            }
            i += 1;
        }
        // Beyond the window: rarest first among pieces not due soon.
        let horizon = i;
        let mut best: Option<(u16, u32)> = None;
        for j in peer.has.iter_ones().filter(|&j| j >= horizon) {
            let st = view.status[j as usize];
            if st == PieceStatus::Partial {
                return Some(j);
            }
            if st == PieceStatus::Missing
                && best.is_none_or(|(a, _)| view.availability[j as usize] < a)
            {
                best = Some((view.availability[j as usize], j));
            }
        }
        best.map(|(_, j)| j)
    }

    fn rescue(&mut self, view: &PickView<'_>, peer: &PeerView<'_>) -> Vec<u32> {
        let Some(pb) = view.playback else {
            return Vec::new();
        };
        let n = view.status.len() as u32;
        let mut i = self.first_due(&pb, n);
        let finish = self.finish(peer);
        let mut out = Vec::new();
        while i < n && pb.slack(i) <= self.rescue {
            if matches!(
                view.status[i as usize],
                PieceStatus::Requested | PieceStatus::Partial
            ) && peer.has.get(i)
                && finish < pb.slack(i)
            {
                out.push(i);
            }
            i += 1;
        }
        out
    }

    fn backlog(&self, rate: f64) -> usize {
        (1 + (rate / BLOCK_SIZE as f64) as usize).clamp(2, 400)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Bitfield;
    use PieceStatus::*;

    fn view<'a>(status: &'a [PieceStatus], avail: &'a [u16], now: f64) -> PickView<'a> {
        PickView {
            status,
            availability: avail,
            partials: &[],
            playback: Some(Playback {
                first_deadline: 4.0,
                secs_per_piece: 1.0,
                piece_length: 32768,
                now,
            }),
        }
    }

    #[test]
    fn earliest_deadline_from_a_fast_peer_skipping_overdue() {
        let status = vec![Missing; 40];
        let avail = vec![1u16; 40];
        let all = Bitfield::full(40);
        let fast = PeerView {
            has: &all,
            rate: 1e6,
            outstanding: 0,
        };
        let mut p = Deadline::new(1);
        // now = 6: pieces 0..2 are due by 4, 5, 6 (overdue or too close): piece 3 (due at 7) first.
        assert_eq!(p.next(&view(&status, &avail, 6.0), &fast), Some(3));
        let mut status2 = status.clone();
        status2[3] = Requested;
        assert_eq!(p.next(&view(&status2, &avail, 6.0), &fast), Some(4));
    }

    #[test]
    fn a_peer_that_can_bring_one_block_in_time_gets_the_urgent_piece() {
        // now = 6: piece 3 is due in 1 s. At 20,000 B/s a block takes 0.82 s, the whole 32 KiB
        // piece 1.64 s: the block is worth having, the server sends the other one.
        let status = vec![Missing; 40];
        let avail = vec![1u16; 40];
        let all = Bitfield::full(40);
        let medium = PeerView {
            has: &all,
            rate: 20_000.0,
            outstanding: 0,
        };
        let mut p = Deadline::new(1);
        assert_eq!(p.next(&view(&status, &avail, 6.0), &medium), Some(3));
        // With two blocks already queued at it (2.46 s for a third), pieces 3 and 4 are out of
        // its reach, piece 5 (due in 3 s) is not.
        let busy = PeerView {
            outstanding: 2,
            ..medium
        };
        assert_eq!(p.next(&view(&status, &avail, 6.0), &busy), Some(5));
    }

    #[test]
    fn slow_peer_is_kept_off_urgent_pieces_and_gets_rarest_beyond_the_window() {
        let status = vec![Missing; 60];
        let mut avail = vec![5u16; 60];
        avail[50] = 1;
        let all = Bitfield::full(60);
        // 512 B/s: a 16 KiB block takes 32 s, later than any deadline in the 20 s window.
        let slow = PeerView {
            has: &all,
            rate: 512.0,
            outstanding: 0,
        };
        let mut p = Deadline::new(1);
        let got = p.next(&view(&status, &avail, 0.0), &slow).unwrap();
        assert_eq!(got, 50, "the rarest piece beyond the window");
        // A fast peer takes the most urgent.
        let fast = PeerView {
            has: &all,
            rate: 1e6,
            outstanding: 0,
        };
        assert_eq!(p.next(&view(&status, &avail, 0.0), &fast), Some(0));
    }

    #[test]
    fn rescue_asks_a_fast_peer_for_urgent_pieces_in_flight_only() {
        // now = 6: piece 3 is due in 1 s, piece 8 in 6 s (beyond the 5 s rescue horizon).
        let mut status = vec![Missing; 40];
        status[3] = Requested;
        status[4] = Partial;
        status[8] = Requested;
        let avail = vec![1u16; 40];
        let all = Bitfield::full(40);
        let mut p = Deadline::new(1);
        let fast = PeerView {
            has: &all,
            rate: 1e6,
            outstanding: 0,
        };
        assert_eq!(p.rescue(&view(&status, &avail, 6.0), &fast), vec![3, 4]);
        // A peer that could not deliver a block within a second is no rescue for piece 3.
        let slow = PeerView {
            has: &all,
            rate: 12_000.0,
            outstanding: 0,
        };
        assert_eq!(p.rescue(&view(&status, &avail, 6.0), &slow), vec![4]);
        // Without a playback clock there is nothing to rescue.
        let mut v = view(&status, &avail, 6.0);
        v.playback = None;
        assert!(p.rescue(&v, &fast).is_empty());
    }

    #[test]
    fn backlog_is_about_a_second() {
        let p = Deadline::new(1);
        assert_eq!(p.backlog(0.0), 2);
        assert_eq!(p.backlog(20.0 * 16384.0), 21);
    }
}
