//! BitTornado's choker (`BitTornado/BT1/Choker.py`), rule for rule, as the world's clients ran
//! it in the old lab:
//!
//! * Connections are kept in one **order**. A new connection goes in at a random place, biased
//!   to the front (`randrange(-2, n + 1)`, clamped to 0: the front is three times as likely as
//!   any other place). That is how a newcomer, with nothing to trade yet, gets its first pieces.
//!   The place is drawn from our seed and the newcomer's [key](ChokeCandidate::key), not from
//!   one stream of draws: how many connections came before it and in what order is timing, and
//!   with one stream the same newcomer in the same seeded world landed somewhere else in every
//!   rerun (BENCHMARKS.md, "Tried, what it gave, kept or not").
//! * **Rechoke** (every 5 s, and at once when a connection comes or goes, or an unchoked peer
//!   turns interested or not): the *preferred* are the interested peers that give us the most,
//!   at least 1000 B/s, up to `slots - 1` of them (when seeding: those we give the most). Then,
//!   walking the order, every other connection is unchoked until the interested unchoked count
//!   reaches `slots` (and at least one non-preferred interested peer is unchoked); the rest are
//!   choked. Peers not interested that come before that point stay unchoked, so that when they
//!   turn interested they can start at once.
//! * **Round robin** (every 30 s): the order is rotated so that the first choked, interested
//!   connection comes first: the optimistic unchoke moves on.
//! * **Ties**: connections met in the same rechoke are placed, and equal rates ordered, by a rank
//!   drawn from our seed and the peer's key, never by the order the session lists them in
//!   (by key, that is by address: the same low addresses, my client's among them, would win
//!   every tie in every world). With the session's first rechoke delayed
//!   (`PeerConfig::first_rechoke`), a world born together then makes the same first choices in
//!   every rerun of its seed.
//! * **Hysteresis** (not BitTornado's; off unless asked, `world.choke_hysteresis`): a peer
//!   preferred at the last rechoke keeps its place until another's rate beats its own by that
//!   fraction, so that rates a few KB/s apart, read through timing noise, stop reordering the
//!   preferred at every rechoke (BENCHMARKS.md, "Reruns, and how many seeds a verdict needs").

use rand::{Rng, SeedableRng};

use super::{ChokeCandidate, Choker};

/// BitTornado's minimum rate (B/s) to be preferred while downloading.
const MIN_PREFERRED_RATE: f64 = 1000.0;
/// Rounds (of 5 s) between rotations of the order: 30 s.
const ROTATE_EVERY: u64 = 6;

#[derive(Clone)]
pub struct TitForTat {
    /// Upload slots, the optimistic one included (BitTornado's `max_uploads`).
    pub slots: usize,
    /// Connection ids in BitTornado's order.
    order: Vec<u64>,
    rotated_at: Option<u64>,
    seed: u64,
    /// A preferred peer's rate counts `1 + hysteresis` times at the next rechoke (0: BitTornado).
    hysteresis: f64,
    /// The preferred of the last rechoke.
    kept: Vec<u64>,
}

impl TitForTat {
    pub fn new(slots: usize, seed: u64) -> Self {
        TitForTat {
            slots: slots.max(1),
            order: Vec::new(),
            rotated_at: None,
            seed,
            hysteresis: 0.0,
            kept: Vec::new(),
        }
    }

    /// With hysteresis `h` (a fraction, 0 for BitTornado's choker): see the module doc.
    pub fn with_hysteresis(mut self, h: f64) -> Self {
        self.hysteresis = h.max(0.0);
        self
    }

    /// BitTornado's `randrange(-2, n + 1)`, clamped to 0, drawn for the peer named `key`.
    fn place_of(&self, key: u64, n: i64) -> usize {
        let mut draw = rand::rngs::SmallRng::seed_from_u64(self.seed ^ key.rotate_left(17));
        draw.random_range(-2..=n).max(0) as usize
    }

    /// A seeded rank for the peer named `key`, the same in every rerun of a seeded world.
    fn rank(&self, key: u64) -> u64 {
        super::seeded_rank(self.seed, key)
    }

    /// Bring the order up to date: drop connections that are gone, insert new ones (in the
    /// order given).
    fn sync(&mut self, peers: &[&ChokeCandidate]) {
        self.order.retain(|id| peers.iter().any(|p| p.id == *id));
        for p in peers {
            if !self.order.contains(&p.id) {
                let n = self.order.len() as i64;
                let at = self.place_of(p.key, n);
                self.order.insert(at, p.id);
            }
        }
    }
}

impl Choker for TitForTat {
    fn name(&self) -> &'static str {
        "tit-for-tat"
    }

    fn rechoke(&mut self, peers: &[ChokeCandidate], seeding: bool, round: u64) -> Vec<u64> {
        // The candidates by their seeded rank, not in the order given (by address, the same
        // in every world): connections met in the same rechoke are placed in the order in that
        // sequence, and equal rates (0 B/s for everyone at a world's birth) are broken by it.
        // In a hash map's order, as before, which peers a seed served first, and so kept
        // serving, was a new draw in every rerun of a seeded world (BENCHMARKS.md, "Tried, what it gave, kept or not").
        let mut peers: Vec<&ChokeCandidate> = peers.iter().collect();
        peers.sort_by_cached_key(|p| self.rank(p.key));
        let peers = peers.as_slice();
        self.sync(peers);
        let by_id = |id: u64| peers.iter().find(|p| p.id == id).copied();
        if round.is_multiple_of(ROTATE_EVERY) && self.rotated_at != Some(round) {
            self.rotated_at = Some(round);
            if let Some(i) = self
                .order
                .iter()
                .position(|&id| by_id(id).is_some_and(|p| p.choked && p.interested))
            {
                self.order.rotate_left(i);
            }
        }

        let mut preferred: Vec<(f64, u64)> = Vec::new();
        if self.slots > 1 {
            for p in peers.iter().filter(|p| p.interested) {
                let r = if seeding {
                    p.upload_rate
                } else if p.download_rate < MIN_PREFERRED_RATE {
                    continue;
                } else {
                    p.download_rate
                };
                let kept = if self.kept.contains(&p.id) {
                    1.0 + self.hysteresis
                } else {
                    1.0
                };
                preferred.push((r * kept, p.id));
            }
            preferred.sort_by(|a, b| b.0.total_cmp(&a.0));
            preferred.truncate(self.slots - 1);
        }
        self.kept = preferred.iter().map(|&(_, id)| id).collect();
        let mut unchoke = self.kept.clone();
        let mut count = unchoke.len();
        let mut hit = false;
        for &id in &self.order {
            if unchoke.contains(&id) {
                continue;
            }
            if count < self.slots || !hit {
                unchoke.push(id);
                if by_id(id).is_some_and(|p| p.interested) {
                    count += 1;
                    hit = true;
                }
            } else {
                break;
            }
        }
        unchoke
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cand(id: u64, rate: f64, interested: bool) -> ChokeCandidate {
        ChokeCandidate {
            id,
            key: id.wrapping_mul(0x0101_0101),
            interested,
            choked: true,
            download_rate: rate,
            upload_rate: 0.0,
            is_seed: false,
            unchokes_us: false,
            connected_for: Duration::from_secs(60),
            window_pieces: 0,
        }
    }

    fn interested_unchoked(u: &[u64], peers: &[ChokeCandidate]) -> Vec<u64> {
        u.iter()
            .copied()
            .filter(|id| peers.iter().any(|p| p.id == *id && p.interested))
            .collect()
    }

    #[test]
    fn hysteresis_keeps_the_preferred_until_beaten_by_its_margin() {
        // One preferred slot (two slots): peer 1 at 17.5 KB/s holds it; peer 2 then gives
        // 19 KB/s, then 22 KB/s.
        let round = |c: &mut TitForTat, r2: f64| {
            let peers = [cand(1, 17_500.0, true), cand(2, r2, true)];
            c.rechoke(&peers, false, 1)[0]
        };
        let mut plain = TitForTat::new(2, 3);
        assert_eq!(round(&mut plain, 10_000.0), 1);
        assert_eq!(
            round(&mut plain, 19_000.0),
            2,
            "BitTornado's: the faster is preferred"
        );
        let mut sticky = TitForTat::new(2, 3).with_hysteresis(0.2);
        assert_eq!(round(&mut sticky, 10_000.0), 1);
        assert_eq!(round(&mut sticky, 19_000.0), 1, "within 20 %: kept");
        assert_eq!(round(&mut sticky, 22_000.0), 2, "beaten by more than 20 %");
        assert_eq!(round(&mut sticky, 19_000.0), 2, "and now the other is kept");
    }

    #[test]
    fn fastest_interested_plus_one_in_order() {
        let peers: Vec<_> = (0..10)
            .map(|i| cand(i, i as f64 * 1000.0, i != 9))
            .collect();
        let mut c = TitForTat::new(4, 7);
        let u = c.rechoke(&peers, false, 1);
        let int = interested_unchoked(&u, &peers);
        assert_eq!(int.len(), 4, "{u:?}");
        assert_eq!(&int[..3], &[8, 7, 6], "the three fastest are preferred");
        assert!(
            int[3] < 6,
            "the fourth is the first interested in order: {u:?}"
        );
        // The same order next round: the optimistic one holds until the order rotates.
        let again = c.rechoke(&peers, false, 2);
        assert_eq!(interested_unchoked(&again, &peers), int);
    }

    #[test]
    fn slow_peers_are_not_preferred_so_more_go_by_order() {
        // Nobody gives 1000 B/s: every slot is filled in order, none by rate.
        let peers: Vec<_> = (0..10).map(|i| cand(i, 500.0, true)).collect();
        let mut c = TitForTat::new(4, 1);
        let u = c.rechoke(&peers, false, 1);
        assert_eq!(u.len(), 4);
        assert_eq!(u, c.order[..4].to_vec(), "the first four in order");
    }

    #[test]
    fn uninterested_peers_before_the_optimistic_stay_unchoked() {
        let mut peers: Vec<_> = (0..6).map(|i| cand(i, 0.0, true)).collect();
        let mut c = TitForTat::new(2, 5);
        c.rechoke(&peers, false, 1);
        let first = c.order[0];
        peers.iter_mut().find(|p| p.id == first).unwrap().interested = false;
        let u = c.rechoke(&peers, false, 2);
        assert!(
            u.contains(&first),
            "ahead of the hit: unchoked though not interested"
        );
        assert_eq!(interested_unchoked(&u, &peers).len(), 2);
    }

    #[test]
    fn newcomers_land_at_the_front_three_times_as_often() {
        // Four old connections; where does a fifth land? Front: 3 chances in 7.
        let old: Vec<_> = (0..4).map(|i| cand(i, 0.0, true)).collect();
        let mut front = 0;
        let trials = 3000;
        for seed in 0..trials {
            let mut c = TitForTat::new(1, seed);
            c.rechoke(&old, false, 1);
            let mut all = old.clone();
            all.push(cand(99, 0.0, true));
            c.rechoke(&all, false, 1);
            front += usize::from(c.order[0] == 99);
        }
        let share = front as f64 / trials as f64;
        assert!(
            (0.38..0.48).contains(&share),
            "front share {share}, want 3/7"
        );
    }

    #[test]
    fn a_newcomer_lands_by_its_key_whatever_came_before() {
        // Two chokers with the same seed that met the same four peers in other orders, one of
        // them also through a connection that came and went: the same newcomer still lands at
        // the same place in both (a rerun of a seeded world), and another newcomer need not.
        let old: Vec<_> = (0..4).map(|i| cand(i, 0.0, true)).collect();
        let mut a = TitForTat::new(4, 11);
        let mut b = TitForTat::new(4, 11);
        for k in 1..=old.len() {
            a.rechoke(&old[..k], false, 1);
        }
        let mut gone = old.clone();
        gone.push(cand(50, 0.0, true));
        b.rechoke(&gone, false, 1);
        b.rechoke(&old, false, 1);
        let place = |c: &mut TitForTat, id: u64| {
            let mut all = old.clone();
            all.push(cand(id, 0.0, true));
            c.rechoke(&all, false, 1);
            c.order.iter().position(|&x| x == id).unwrap()
        };
        let mut places = std::collections::HashSet::new();
        for id in 100..140 {
            let (mut a, mut b) = (a.clone(), b.clone());
            let pa = place(&mut a, id);
            assert_eq!(pa, place(&mut b, id), "newcomer {id}");
            places.insert(pa);
        }
        assert!(places.len() >= 3, "keys spread over places: {places:?}");
    }

    #[test]
    fn the_same_peers_in_any_order_get_the_same_slots() {
        // A seed at a world's birth: twenty peers met in one rechoke, all at 0 B/s. The
        // session lists them in a hash map's order, a new one in every process; the seed's
        // choice (its preferred three and the order) must not depend on it, and another seed
        // of the world chooses others.
        let peers: Vec<_> = (0..20).map(|i| cand(i, 0.0, true)).collect();
        let choose = |seed: u64, list: &[ChokeCandidate]| {
            let mut c = TitForTat::new(4, seed);
            let mut u = c.rechoke(list, true, 1);
            u.sort_unstable();
            (u, c.order)
        };
        let (first, order) = choose(5, &peers);
        assert_eq!(first.len(), 4);
        let mut shuffled = peers.clone();
        for k in 0..10u64 {
            use rand::seq::SliceRandom;
            shuffled.shuffle(&mut rand::rngs::SmallRng::seed_from_u64(k));
            assert_eq!(
                choose(5, &shuffled),
                (first.clone(), order.clone()),
                "listing {k}"
            );
        }
        let others: std::collections::HashSet<_> = (6..16).map(|s| choose(s, &peers).0).collect();
        assert!(others.len() >= 5, "seeds choose differently: {others:?}");
    }

    #[test]
    fn round_robin_moves_the_optimistic_unchoke_every_30_s() {
        let mut peers: Vec<_> = (0..12).map(|i| cand(i, 0.0, true)).collect();
        let mut c = TitForTat::new(2, 3);
        let mut seen = std::collections::HashSet::new();
        for round in 1..=60 {
            let u = c.rechoke(&peers, false, round);
            for p in peers.iter_mut() {
                p.choked = !u.contains(&p.id);
            }
            seen.extend(u);
        }
        // 60 rounds = 10 rotations, each bringing the next choked peer to the front.
        assert!(seen.len() >= 10, "unchokes rotate: {seen:?}");
    }

    #[test]
    fn seeding_prefers_those_we_upload_to_fastest() {
        let mut peers: Vec<_> = (0..6).map(|i| cand(i, 0.0, true)).collect();
        for p in peers.iter_mut() {
            p.upload_rate = p.id as f64 * 10.0;
        }
        let mut c = TitForTat::new(3, 9);
        let u = c.rechoke(&peers, true, 1);
        assert_eq!(&u[..2], &[5, 4]);
        assert_eq!(u.len(), 3);
    }
}
