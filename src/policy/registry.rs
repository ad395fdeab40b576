//! The one registry of built-in policies: a name (for `--policy`, configs and reports) builds
//! a picker and the choker that goes with it.

use serde::{Deserialize, Serialize};

use super::choker::Choker;
use super::picker::PiecePicker;
use super::{deadline, rarest, sequential, tit_for_tat, tyrant, window_choker};

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

#[cfg(test)]
mod tests {
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
