//! Network emulation: per-link round-trip time, jitter, loss and download caps between the
//! lab's addresses, on a kernel without `netem`.
//!
//! The story. In the lab's namespace every 10.77.x.y address is local, so a packet between two
//! clients never leaves the kernel: it loops through `lo` at once. With a `network:` section
//! the supervisor routes those packets through a TUN device instead, and one thread of its own,
//! the link stage, holds each one as long as its link says and writes it back, where the kernel
//! delivers it as if it had crossed a network:
//!
//! ```text
//! ip rule add pref 100 lookup local; ip rule del pref 0         # our rules before `local`
//! ip rule add pref 5 to 10.77.0.1 lookup local                    # the tracker and the VoD
//! ip rule add pref 6 from 10.77.0.1 lookup local                  #   server are not delayed
//! ip rule add pref 10 to 10.77.0.0/16 iif lo lookup 100           # sent here: to the stage
//! ip route add default dev tun0 table 100
//! ip route add prohibit default table 100 metric 100             # no stage: no traffic
//! ```
//!
//! A packet the stage writes back arrives on `tun0`, not from `lo`, so it skips rule 10 and is
//! delivered locally. The model is a star: every client has an access link ([`Link`]: RTT,
//! jitter, loss, download cap), and a packet from a to b takes `(rtt_a + rtt_b) / 2`, plus
//! jitter, then b's download line at its rate. See [`stage`] for the rules, which are plain
//! functions of the packet, the time and the seed; [`tun`] is the device, the routes and the
//! thread.
//!
//! Every draw is seeded: a world slot's link from (seed, slot), and a packet's loss and jitter
//! from (seed, source, destination, its number on that link), so a run repeats its losses
//! however the links interleave. If the stage thread ends, its device goes with it and the
//! `prohibit` route answers: lab traffic stops rather than run on undelayed. Everything lives
//! in the lab's namespace and ends with it; nothing is added to the host.

pub mod stage;
pub mod tun;

use serde::{Deserialize, Serialize};

use crate::util::range::Range;

/// The config's `network:` section: the world's links (each a number or `{min, max}`, drawn
/// per world slot), my client's link, and the seed of every draw.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSection {
    /// Round-trip time of a world client's access link, milliseconds.
    pub rtt_ms: Range,
    /// Each packet's one-way delay varies by up to this much either way, milliseconds.
    pub jitter_ms: Range,
    /// Packets lost on the access link, percent.
    pub loss_percent: Range,
    /// Download cap of a world client's line, KB/s (none: uncapped).
    pub download_rate: Option<Range>,
    /// My client's own link.
    pub my_client: Link,
    /// Seed of the links and of every packet's draws (default: the config's `seed`).
    pub seed: Option<u64>,
}

impl Default for NetworkSection {
    fn default() -> NetworkSection {
        NetworkSection {
            rtt_ms: Range::Fixed(0.0),
            jitter_ms: Range::Fixed(0.0),
            loss_percent: Range::Fixed(0.0),
            download_rate: None,
            my_client: Link::default(),
            seed: None,
        }
    }
}

/// One client's access link.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Link {
    /// Round-trip time, milliseconds (a path's is the sum of its two ends').
    pub rtt_ms: f64,
    /// Up to this much more or less one-way delay per packet, milliseconds.
    pub jitter_ms: f64,
    /// Percent of packets lost.
    pub loss_percent: f64,
    /// Download cap, KB/s (none: uncapped).
    pub download_rate: Option<f64>,
}

impl Link {
    /// "rtt 120 ms ±5, loss 0.5 %, down 800 KB/s", the parts that are set ("0 ms" for none).
    pub fn describe(&self) -> String {
        let mut s = format!("rtt {} ms", trim(self.rtt_ms));
        if self.jitter_ms > 0.0 {
            s += &format!(" ±{}", trim(self.jitter_ms));
        }
        if self.loss_percent > 0.0 {
            s += &format!(", loss {} %", trim(self.loss_percent));
        }
        if let Some(d) = self.download_rate {
            s += &format!(", down {} KB/s", trim(d));
        }
        s
    }

    fn check(&self, field: &str) -> Result<(), String> {
        for (name, v, hi) in [
            ("rtt_ms", self.rtt_ms, 10_000.0),
            ("jitter_ms", self.jitter_ms, 10_000.0),
            ("loss_percent", self.loss_percent, 100.0),
        ] {
            if !(v.is_finite() && (0.0..=hi).contains(&v)) {
                return Err(format!("{field}.{name}: {v} must be between 0 and {hi}"));
            }
        }
        match self.download_rate {
            Some(d) if !(d.is_finite() && d > 0.0) => Err(format!(
                "{field}.download_rate: {d} must be a positive rate in KB/s (leave it out for none)"
            )),
            _ => Ok(()),
        }
    }
}

/// A figure without a needless ".0" and with at most two decimals.
fn trim(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl NetworkSection {
    /// The ranges' bounds; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        self.rtt_ms.check("network.rtt_ms", 0.0, 10_000.0)?;
        self.jitter_ms.check("network.jitter_ms", 0.0, 10_000.0)?;
        self.loss_percent
            .check("network.loss_percent", 0.0, 100.0)?;
        if let Some(d) = &self.download_rate {
            d.check("network.download_rate", 1e-3, 1e9)?;
        }
        self.my_client.check("network.my_client")
    }

    /// The link of world slot `k` (numbered across swarms, as addresses are): the same for
    /// the same seed, whatever else the run does.
    pub fn world_link(&self, seed: u64, k: usize) -> Link {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(
            seed ^ 0x6E65_7465_6D00_0000 ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        // Rounded as the page shows them: 0.1 ms, 0.01 %, 1 KB/s.
        let round = |x: f64, unit: f64| (x / unit).round() * unit;
        Link {
            rtt_ms: round(self.rtt_ms.draw(&mut rng), 0.1),
            jitter_ms: round(self.jitter_ms.draw(&mut rng), 0.1),
            loss_percent: round(self.loss_percent.draw(&mut rng), 0.01),
            download_rate: self
                .download_rate
                .map(|r| round(r.draw(&mut rng), 1.0).max(1.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_keeps_its_link_and_the_draws_fill_the_range() {
        let n: NetworkSection = serde_yaml::from_str(
            "{rtt_ms: {min: 20, max: 200}, loss_percent: 0.5, download_rate: {min: 100, max: 900}}",
        )
        .unwrap();
        n.validate().unwrap();
        assert_eq!(n.world_link(7, 3), n.world_link(7, 3));
        assert_ne!(n.world_link(7, 3), n.world_link(8, 3));
        let rtts: Vec<f64> = (0..400).map(|k| n.world_link(7, k).rtt_ms).collect();
        assert!(rtts.iter().all(|r| (20.0..=200.0).contains(r)));
        assert!(rtts.iter().any(|&r| r < 40.0) && rtts.iter().any(|&r| r > 180.0));
        assert!((0..50).all(|k| n.world_link(7, k).loss_percent == 0.5));
        assert_eq!(
            Link {
                rtt_ms: 120.0,
                jitter_ms: 5.0,
                loss_percent: 0.5,
                download_rate: Some(800.0)
            }
            .describe(),
            "rtt 120 ms ±5, loss 0.5 %, down 800 KB/s"
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        for (yaml, field) in [
            ("{loss_percent: 120}", "network.loss_percent"),
            ("{rtt_ms: {min: 50, max: 20}}", "network.rtt_ms"),
            ("{download_rate: 0}", "network.download_rate"),
            ("{my_client: {rtt_ms: -1}}", "network.my_client.rtt_ms"),
        ] {
            let n: NetworkSection = serde_yaml::from_str(yaml).unwrap();
            let e = n.validate().unwrap_err();
            assert!(e.starts_with(field), "{yaml}: {e}");
        }
        assert!(serde_yaml::from_str::<NetworkSection>("{rtt: 5}").is_err());
    }
}
