//! BitTornado's choker: every round unchoke the interested peers that give us the most (when
//! downloading) or take the most (when seeding), and keep one optimistic unchoke that moves to
//! another choked, interested peer every third round (30 s), so that newcomers get a chance.
//! As in mainline BitTorrent, a peer connected for less than a minute is three times as likely
//! to be drawn: it has nothing to trade yet, and this is how it gets its first pieces.

use std::time::Duration;

use rand::seq::IndexedRandom;
use rand::SeedableRng;

use super::{ChokeCandidate, Choker};

/// Connected for less than this: three chances in the optimistic draw.
const NEWCOMER: Duration = Duration::from_secs(60);

pub struct TitForTat {
    /// Upload slots, the optimistic one included (BitTornado's `max_uploads`).
    pub slots: usize,
    optimistic: Option<u64>,
    rng: rand::rngs::SmallRng,
}

impl TitForTat {
    pub fn new(slots: usize, seed: u64) -> Self {
        TitForTat {
            slots: slots.max(1),
            optimistic: None,
            rng: rand::rngs::SmallRng::seed_from_u64(seed),
        }
    }
}

impl Choker for TitForTat {
    fn name(&self) -> &'static str {
        "tit-for-tat"
    }

    fn rechoke(&mut self, peers: &[ChokeCandidate], seeding: bool, round: u64) -> Vec<u64> {
        let mut interested: Vec<&ChokeCandidate> = peers
            .iter()
            .filter(|p| p.interested && !p.is_seed)
            .collect();
        let rate = |p: &ChokeCandidate| {
            if seeding {
                p.upload_rate
            } else {
                p.download_rate
            }
        };
        interested.sort_by(|a, b| rate(b).total_cmp(&rate(a)));
        let regular = self.slots - 1;
        let mut unchoke: Vec<u64> = interested.iter().take(regular).map(|p| p.id).collect();

        let rest: Vec<&ChokeCandidate> = interested.iter().skip(regular).copied().collect();
        let keep = self.optimistic.filter(|o| rest.iter().any(|p| p.id == *o));
        self.optimistic = match keep {
            Some(o) if !round.is_multiple_of(3) => Some(o),
            _ => rest
                .choose_weighted(&mut self.rng, |p| {
                    if p.connected_for < NEWCOMER {
                        3
                    } else {
                        1
                    }
                })
                .ok()
                .map(|p| p.id),
        };
        unchoke.extend(self.optimistic);
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
            interested,
            choked: true,
            download_rate: rate,
            upload_rate: 0.0,
            is_seed: false,
            connected_for: Duration::from_secs(60),
        }
    }

    #[test]
    fn fastest_interested_plus_one_optimistic() {
        let peers: Vec<_> = (0..10).map(|i| cand(i, i as f64 * 100.0, i != 9)).collect();
        let mut c = TitForTat::new(4, 7);
        let u = c.rechoke(&peers, false, 0);
        assert_eq!(u.len(), 4);
        assert_eq!(&u[..3], &[8, 7, 6]);
        assert!(u[3] < 6, "optimistic among the rest: {u:?}");
        // The optimistic slot holds for rounds 1 and 2.
        let opt = u[3];
        assert_eq!(c.rechoke(&peers, false, 1)[3], opt);
        assert_eq!(c.rechoke(&peers, false, 2)[3], opt);
        assert!(!u.contains(&9), "never unchoke the uninterested");
    }

    #[test]
    fn newcomers_are_three_times_as_likely_to_be_optimistic() {
        // One slot, so the only unchoke is the optimistic one; peer 0 is new, 1..=3 are old.
        let mut peers: Vec<_> = (0..4).map(|i| cand(i, 0.0, true)).collect();
        peers[0].connected_for = Duration::from_secs(5);
        let mut c = TitForTat::new(1, 11);
        let draws = 3000;
        let new = (0..draws)
            .filter(|_| c.rechoke(&peers, false, 0) == [0])
            .count();
        // Expected 3/6 of the draws; an unweighted draw would give 1/4.
        let share = new as f64 / draws as f64;
        assert!((0.45..0.55).contains(&share), "newcomer share {share}");
    }

    #[test]
    fn optimistic_moves_over_rounds() {
        let peers: Vec<_> = (0..12).map(|i| cand(i, 0.0, true)).collect();
        let mut c = TitForTat::new(2, 3);
        let mut seen = std::collections::HashSet::new();
        for round in 0..60 {
            let u = c.rechoke(&peers, false, round);
            seen.insert(u[1]);
        }
        assert!(seen.len() > 4, "optimistic unchoke rotates: {seen:?}");
    }
}
