//! BitTornado's choker: every round unchoke the interested peers that give us the most (when
//! downloading) or take the most (when seeding), and keep one optimistic unchoke that moves to
//! another choked, interested peer every third round (30 s), so that newcomers get a chance.

use rand::seq::IndexedRandom;
use rand::SeedableRng;

use super::{ChokeCandidate, Choker};

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

        let rest: Vec<u64> = interested.iter().skip(regular).map(|p| p.id).collect();
        let keep = self.optimistic.filter(|o| rest.contains(o));
        self.optimistic = match keep {
            Some(o) if !round.is_multiple_of(3) => Some(o),
            _ => rest.choose(&mut self.rng).copied(),
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
