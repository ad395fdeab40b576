//! An adaptive choker for a VoD client: pay each peer what keeps its slot, and no more
//! (BitTyrant's idea: Piatek et al., "Do incentives build robustness in BitTorrent?", NSDI
//! 2007).
//!
//! The world's clients run BitTornado's choker: three regular slots for the interested peers
//! that upload to them fastest (at 1000 B/s or more), one optimistic. What it takes to hold one
//! of those slots is the third-best rate that world client receives, and that differs from
//! client to client. In a traced scarce run (BENCHMARKS.md) its median was 9 KB/s
//! (quartiles 6 and 11), never 15, while a world slot gives 15 KB/s. The
//! window choker pays every partner the same 20 KB/s (a third of our cap) and holds three; a
//! price per peer can hold more with the same upload.
//!
//! * **Prices**: each interested peer `p` has a price `u_p`, the rate we send it (a cap of its
//!   own on the connection, [`Choker::upload_cap`]). A new peer starts at a third of our cap,
//!   what the window choker pays a partner and what won a world client's slot in the traces.
//!   At every 5 s round, a peer that unchokes us costs 10 % less; one we have unchoked for
//!   three rounds that does not unchoke us costs 20 % more (BitTyrant's steps, but BitTyrant
//!   lowers a price only after three rounds answered; lowering after two did worse here, 12.8 %
//!   of the movie from the server against 6.3 % on the same scarce seeds: a run's hard part is
//!   its first 80 s). The patience is needed: a world client measures our rate over 20 s, and
//!   with one round of it the choker moved on from every partner before its answer came (a
//!   traced run paid 47 % of the movie).
//! * **Worth**: `d_p`, what the peer sends us while it unchokes us (its measured rate, and at
//!   least a quarter of our cap, what a world slot gives once its rate has climbed), or half
//!   that for a peer that does not unchoke us; halved when it holds none of the playback
//!   window. A peer that unchokes us is thus always worth more than one that might.
//! * **Unchoke** the peers with the best `d_p / u_p` while their prices fit in our cap (at
//!   most [`MAX_UNCHOKED`]); the first always gets a slot. Ties go to the peer we already
//!   unchoke, then to the one holding more of the window. A free slot is filled as soon as a
//!   choked peer turns interested.
//! * **Seeding**: BitTornado's rules, unchanged.

use std::collections::{HashMap, HashSet};

use super::tit_for_tat::TitForTat;
use super::{ChokeCandidate, Choker};

/// More partners than this would each get too thin a slice to register (BitTornado's floor is
/// 1000 B/s).
pub const MAX_UNCHOKED: usize = 8;
/// The lowest price: just above BitTornado's floor for a preferred peer.
const MIN_PRICE: f64 = 2048.0;
/// A price goes up this much after a round unanswered (past `PATIENCE`), down this much after
/// a round answered.
const UP: f64 = 1.2;
const DOWN: f64 = 0.9;
/// Rounds a newly unchoked peer gets before its silence counts: a world client measures our
/// rate over up to 20 s and rechokes every 5 s, so an answer takes two or three.
const PATIENCE: u32 = 3;

#[derive(Debug, Clone)]
struct Estimate {
    /// Bytes/s we pay.
    price: f64,
    /// Rounds in a row we have unchoked it.
    held: u32,
}

pub struct Tyrant {
    /// Our upload cap, bytes/s.
    capacity: f64,
    prices: HashMap<u64, Estimate>,
    /// Whom we unchoked last (each at its price in `prices`).
    unchoked: HashSet<u64>,
    last_round: Option<u64>,
    seeding: TitForTat,
}

impl Tyrant {
    /// A choker spending `capacity` bytes/s (our upload cap; must be positive); `slots` and
    /// `seed` are for the seeding choker.
    pub fn new(capacity: f64, slots: usize, seed: u64) -> Self {
        Tyrant {
            capacity: capacity.max(MIN_PRICE),
            prices: HashMap::new(),
            unchoked: HashSet::new(),
            last_round: None,
            seeding: TitForTat::new(slots, seed),
        }
    }

    fn first_price(&self) -> f64 {
        (self.capacity / 3.0).max(MIN_PRICE)
    }

    /// A new round: reprice the peers we unchoked by whether they answered.
    fn reprice(&mut self, peers: &[ChokeCandidate]) {
        for (id, e) in self.prices.iter_mut() {
            let Some(p) = peers.iter().find(|p| p.id == *id) else {
                continue;
            };
            if !self.unchoked.contains(id) || !p.interested {
                e.held = 0;
                continue;
            }
            e.held += 1;
            if p.unchokes_us {
                e.price = (e.price * DOWN).max(MIN_PRICE);
            } else if e.held >= PATIENCE {
                e.price = (e.price * UP).min(self.capacity);
            }
        }
    }

    /// What a peer is worth to us: what it sends while it unchokes us (at least what a world
    /// slot gives, a quarter of our cap: its rate climbs for 20 s after an unchoke), or a
    /// guess of half that for a peer that does not; halved again if it holds none of the
    /// playback window.
    fn worth(&self, p: &ChokeCandidate) -> f64 {
        let w = if p.unchokes_us {
            p.download_rate.max(self.capacity / 4.0)
        } else {
            self.capacity / 8.0
        };
        if p.window_pieces > 0 {
            w
        } else {
            w / 2.0
        }
    }
}

impl Choker for Tyrant {
    fn name(&self) -> &'static str {
        "tyrant"
    }

    fn fills_free_slots_at_once(&self) -> bool {
        true
    }

    fn rechoke(&mut self, peers: &[ChokeCandidate], seeding: bool, round: u64) -> Vec<u64> {
        if seeding {
            self.unchoked.clear();
            return self.seeding.rechoke(peers, true, round);
        }
        self.prices
            .retain(|id, _| peers.iter().any(|p| p.id == *id));
        if self.last_round != Some(round) {
            self.last_round = Some(round);
            self.reprice(peers);
        }
        let first = self.first_price();
        let mut ranked: Vec<(&ChokeCandidate, f64, f64)> = peers
            .iter()
            .filter(|p| p.interested && !p.is_seed)
            .map(|p| {
                let price = self
                    .prices
                    .entry(p.id)
                    .or_insert(Estimate {
                        price: first,
                        held: 0,
                    })
                    .price;
                (p, self.worth(p), price)
            })
            .collect();
        let held = |p: &ChokeCandidate| self.unchoked.contains(&p.id);
        ranked.sort_by(|a, b| {
            (b.1 / b.2)
                .total_cmp(&(a.1 / a.2))
                .then(held(b.0).cmp(&held(a.0)))
                .then(b.0.window_pieces.cmp(&a.0.window_pieces))
                .then(a.0.key.cmp(&b.0.key))
        });
        let mut unchoked = HashSet::new();
        let mut spent = 0.0;
        for (p, _, price) in ranked {
            if unchoked.len() >= MAX_UNCHOKED {
                break;
            }
            if !unchoked.is_empty() && spent + price > self.capacity {
                continue;
            }
            spent += price;
            unchoked.insert(p.id);
        }
        self.unchoked = unchoked;
        let mut ids: Vec<u64> = self.unchoked.iter().copied().collect();
        ids.sort_unstable();
        ids
    }

    fn upload_cap(&self, id: u64) -> Option<u32> {
        // A price never exceeds the capacity (`reprice` and `first_price` bound it).
        self.unchoked
            .contains(&id)
            .then(|| self.prices[&id].price.round() as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cand(id: u64, unchokes_us: bool, rate: f64) -> ChokeCandidate {
        ChokeCandidate {
            id,
            key: id,
            interested: true,
            choked: true,
            download_rate: rate,
            upload_rate: 0.0,
            is_seed: false,
            unchokes_us,
            connected_for: Duration::from_secs(60),
            window_pieces: 1,
        }
    }

    const CAP: f64 = 60.0 * 1024.0;

    #[test]
    fn spends_the_cap_on_new_peers_at_a_third_each() {
        let peers: Vec<_> = (0..9).map(|i| cand(i, false, 0.0)).collect();
        let mut t = Tyrant::new(CAP, 4, 1);
        let u = t.rechoke(&peers, false, 1);
        assert_eq!(u, vec![0, 1, 2]);
        let total: u32 = u.iter().map(|&id| t.upload_cap(id).unwrap()).sum();
        assert!(total as f64 <= CAP + 5.0, "{total}");
        assert_eq!(t.upload_cap(0), Some((CAP / 3.0).round() as u32));
        assert_eq!(t.upload_cap(8), None, "choked: no cap");
    }

    #[test]
    fn a_peer_that_answers_gets_cheaper_one_that_does_not_dearer_and_loses_its_place() {
        let mut peers: Vec<_> = (0..6).map(|i| cand(i, false, 0.0)).collect();
        let mut t = Tyrant::new(CAP, 4, 1);
        assert_eq!(t.rechoke(&peers, false, 1), vec![0, 1, 2]);
        let first = t.upload_cap(0).unwrap();
        // 0 answers and sends us 15 KB/s; 1 and 2 do not.
        peers[0] = cand(0, true, 15_360.0);
        let mut paid = first;
        for round in 2..=3 {
            // Patience: two rounds unanswered do not move 1 and 2.
            assert_eq!(t.rechoke(&peers, false, round), vec![0, 1, 2]);
            assert_eq!(t.upload_cap(1), Some(first));
            let now = t.upload_cap(0).unwrap();
            assert!(
                now < paid,
                "answered: cheaper every round ({now} after {paid})"
            );
            paid = now;
        }
        // The third round unanswered makes 1 and 2 dearer than newcomers: 3 and 4 get their
        // slots, and the money 0 saved pays for them.
        let u = t.rechoke(&peers, false, 4);
        assert_eq!(u, vec![0, 3, 4]);
        assert!(t.prices[&1].price > first as f64 * 1.1);
        // The same round again (an eager call) does not reprice.
        let before = (t.upload_cap(0), t.upload_cap(3));
        assert_eq!(t.rechoke(&peers, false, 4), vec![0, 3, 4]);
        assert_eq!((t.upload_cap(0), t.upload_cap(3)), before);
    }

    #[test]
    fn one_peer_always_gets_a_slot_and_seeding_is_bittornado() {
        let peers = vec![cand(7, false, 0.0)];
        let mut t = Tyrant::new(1000.0, 4, 1);
        assert_eq!(t.rechoke(&peers, false, 1), vec![7]);
        assert!(t.upload_cap(7).unwrap() >= MIN_PRICE as u32);
        let u = t.rechoke(&peers, true, 2);
        assert_eq!(u, vec![7]);
        assert_eq!(t.upload_cap(7), None, "no caps of its own when seeding");
    }
}
