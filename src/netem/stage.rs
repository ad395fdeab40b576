//! The link stage's rules, without I/O: a packet (its bytes, the time it was sent) in, a
//! verdict out: lost, dropped at a full download line, or delivered at a time.
//!
//! For a packet from a to b, the n-th on that directed link:
//! - lost with probability `1 - (1 - loss_a)(1 - loss_b)`, decided by a hash of
//!   (seed, a, b, n): the same packets are lost in every run of the same seed;
//! - delayed by `(rtt_a + rtt_b) / 2`, plus jitter drawn from the same hash, uniform within
//!   ±`jitter_a` and ±`jitter_b`, never below zero;
//! - never before the packet sent before it on the same link: jitter does not reorder (TCP
//!   would take reordering for loss);
//! - then, if b's line has a download cap, it arrives there at that time ([`Verdict::Line`])
//!   and the caller hands it to [`Stage::line`] then, in order of arrival: the line sends
//!   it after what arrived before it, from every sender, at its rate. A packet that would wait
//!   there longer than [`QUEUE`] is dropped, as a full router queue drops it.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::Link;

/// How long a packet may wait for its receiver's download line before it is dropped.
pub const QUEUE: f64 = 0.2;
/// ... but a line always buffers at least this many bytes.
pub const QUEUE_MIN_BYTES: f64 = 64.0 * 1024.0;

/// What becomes of a packet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Write it back at this time (nanoseconds on the caller's clock).
    Deliver(u64),
    /// It reaches its receiver's download line at this time: give it to [`Stage::line`]
    /// then (lines take packets in order of arrival, whoever sent them).
    Line(u64),
    /// Lost on a link (the config's loss).
    Lost,
    /// Dropped at the receiver's full download line.
    Overflow,
}

/// Where every address's link comes from.
pub trait Links {
    /// The link of `ip` (`None`: none, the packet only passes through).
    fn link(&self, ip: Ipv4Addr) -> Option<Link>;
}

/// Counts of what the stage did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub delivered: u64,
    pub lost: u64,
    pub overflow: u64,
}

#[derive(Default)]
struct Pair {
    sent: u64,
    last_release: u64,
}

/// The state of every link: packets counted per direction, download lines busy until when.
pub struct Stage<L> {
    links: L,
    seed: u64,
    known: HashMap<u32, Option<Link>>,
    pairs: HashMap<(u32, u32), Pair>,
    /// Per receiver: when its download line is free again (ns).
    line_free: HashMap<u32, u64>,
    pub counts: Counts,
}

impl<L: Links> Stage<L> {
    pub fn new(links: L, seed: u64) -> Stage<L> {
        Stage {
            links,
            seed,
            known: HashMap::new(),
            pairs: HashMap::new(),
            line_free: HashMap::new(),
            counts: Counts::default(),
        }
    }

    fn link_of(&mut self, ip: u32) -> Option<Link> {
        *self
            .known
            .entry(ip)
            .or_insert_with(|| self.links.link(Ipv4Addr::from(ip)))
    }

    /// The verdict on an IPv4 packet sent at `now` (ns). Anything else (too short, not IPv4)
    /// passes at once.
    pub fn admit(&mut self, now: u64, packet: &[u8]) -> Verdict {
        let v = match addresses(packet) {
            Some((src, dst)) => self.decide(now, src, dst),
            None => Verdict::Deliver(now),
        };
        self.count(v)
    }

    fn count(&mut self, v: Verdict) -> Verdict {
        match v {
            Verdict::Deliver(_) => self.counts.delivered += 1,
            Verdict::Lost => self.counts.lost += 1,
            Verdict::Overflow => self.counts.overflow += 1,
            Verdict::Line(_) => {}
        }
        v
    }

    fn decide(&mut self, now: u64, src: u32, dst: u32) -> Verdict {
        let (a, b) = (self.link_of(src), self.link_of(dst));
        let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
        let seed = self.seed;
        let pair = self.pairs.entry((src, dst)).or_default();
        let n = pair.sent;
        pair.sent += 1;
        let draw = |salt: u64| unit(mix(seed, src, dst, n, salt));
        let keep = (1.0 - a.loss_percent / 100.0) * (1.0 - b.loss_percent / 100.0);
        if a.loss_percent + b.loss_percent > 0.0 && draw(1) >= keep {
            return Verdict::Lost;
        }
        let jitter = (2.0 * draw(2) - 1.0) * a.jitter_ms + (2.0 * draw(3) - 1.0) * b.jitter_ms;
        let delay_ms = ((a.rtt_ms + b.rtt_ms) / 2.0 + jitter).max(0.0);
        let at = (now + (delay_ms * 1e6) as u64).max(pair.last_release);
        pair.last_release = at;
        match b.download_rate {
            Some(_) => Verdict::Line(at),
            None => Verdict::Deliver(at),
        }
    }

    /// A packet reaching its receiver's download line at `at` (after [`Verdict::Line`]):
    /// delivered once the line has sent it, or dropped at a full line. Calls must come in
    /// order of `at`.
    pub fn line(&mut self, at: u64, packet: &[u8]) -> Verdict {
        let Some((_, dst)) = addresses(packet) else {
            return self.count(Verdict::Deliver(at));
        };
        let Some(kbps) = self.link_of(dst).and_then(|l| l.download_rate) else {
            return self.count(Verdict::Deliver(at));
        };
        let rate = kbps * 1024.0; // bytes per second
        let free = self.line_free.entry(dst).or_insert(0);
        let start = at.max(*free);
        let wait = (start - at) as f64 / 1e9;
        if wait > QUEUE.max(QUEUE_MIN_BYTES / rate) {
            return self.count(Verdict::Overflow);
        }
        let done = start + (packet.len() as f64 / rate * 1e9) as u64;
        *free = done;
        self.count(Verdict::Deliver(done))
    }
}

/// Source and destination of an IPv4 packet.
pub fn addresses(p: &[u8]) -> Option<(u32, u32)> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let word = |i: usize| u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
    Some((word(12), word(16)))
}

/// splitmix64 over the packet's coordinates.
fn mix(seed: u64, src: u32, dst: u32, n: u64, salt: u64) -> u64 {
    let mut z = seed
        ^ (u64::from(src) << 32 | u64::from(dst)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ n.wrapping_mul(0xD1B5_4A32_D192_ED03)
        ^ salt.wrapping_mul(0xA076_1D64_78BD_642F);
    for _ in 0..2 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    z
}

/// A hash as a number in [0, 1).
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10.0.0.x has link x of the table; others none.
    struct Table(Vec<Link>);
    impl Links for Table {
        fn link(&self, ip: Ipv4Addr) -> Option<Link> {
            self.0.get(ip.octets()[3] as usize).copied()
        }
    }

    fn packet(src: u8, dst: u8, len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[12..16].copy_from_slice(&[10, 0, 0, src]);
        p[16..20].copy_from_slice(&[10, 0, 0, dst]);
        p
    }

    fn link(rtt_ms: f64, jitter_ms: f64, loss_percent: f64, down: Option<f64>) -> Link {
        Link {
            rtt_ms,
            jitter_ms,
            loss_percent,
            download_rate: down,
        }
    }

    #[test]
    fn a_path_takes_half_of_both_ends_round_trips() {
        let mut s = Stage::new(
            Table(vec![
                link(40.0, 0.0, 0.0, None),
                link(100.0, 0.0, 0.0, None),
            ]),
            1,
        );
        assert_eq!(s.admit(0, &packet(0, 1, 100)), Verdict::Deliver(70_000_000));
        assert_eq!(s.admit(5, &packet(1, 0, 100)), Verdict::Deliver(70_000_005));
        // An address with no link adds nothing of its own.
        assert_eq!(s.admit(0, &packet(0, 9, 100)), Verdict::Deliver(20_000_000));
        // Not IPv4: at once.
        assert_eq!(s.admit(3, &[0x60; 40]), Verdict::Deliver(3));
    }

    #[test]
    fn loss_is_near_its_rate_and_the_same_packets_are_lost_for_the_same_seed() {
        let lost = |seed| {
            let mut s = Stage::new(Table(vec![link(0.0, 0.0, 2.0, None); 2]), seed);
            (0..10_000u64)
                .filter(|&i| s.admit(i, &packet(0, 1, 60)) == Verdict::Lost)
                .collect::<Vec<_>>()
        };
        let (a, b, c) = (lost(5), lost(5), lost(6));
        // 1 - 0.98^2 = 3.96 %; the binomial sd over 10,000 is 0.2 points.
        let share = a.len() as f64 / 100.0;
        assert!((3.2..=4.7).contains(&share), "{share} %");
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn jitter_stays_in_its_band_and_never_reorders_a_link() {
        let mut s = Stage::new(Table(vec![link(20.0, 5.0, 0.0, None); 2]), 3);
        let mut last = 0;
        let mut spread = (u64::MAX, 0);
        for i in 0..4000u64 {
            // Every 0.1 ms (the clamp is busy), then every 50 ms (it never is).
            let now = if i < 2000 {
                i * 100_000
            } else {
                i * 50_000_000
            };
            let Verdict::Deliver(t) = s.admit(now, &packet(0, 1, 60)) else {
                panic!("no loss configured")
            };
            assert!(t >= last, "packet {i} overtook the one before");
            last = t;
            if i >= 2000 {
                let d = t - now;
                spread = (spread.0.min(d), spread.1.max(d));
            }
        }
        // 20 ms ± (5 + 5) ms; the no-reorder clamp only lengthens a delay.
        assert!(
            spread.0 >= 10_000_000 && spread.0 < 12_000_000,
            "{spread:?}"
        );
        assert!(
            spread.1 <= 30_000_000 && spread.1 > 25_000_000,
            "{spread:?}"
        );
    }

    #[test]
    fn a_download_cap_paces_the_receiver_and_drops_past_its_queue() {
        // 100 KB/s line: 1024 B takes 10 ms; the queue holds 0.2 s (20 packets) or 64 KiB.
        let mut s = Stage::new(
            Table(vec![
                link(0.0, 0.0, 0.0, None),
                link(0.0, 0.0, 0.0, Some(100.0)),
            ]),
            1,
        );
        let mut out = Vec::new();
        for _ in 0..200 {
            let p = packet(0, 1, 1024);
            let Verdict::Line(at) = s.admit(0, &p) else {
                panic!("a capped receiver's packet goes to its line")
            };
            out.push(s.line(at, &p));
        }
        let delivered: Vec<u64> = out
            .iter()
            .filter_map(|v| match v {
                Verdict::Deliver(t) => Some(*t),
                _ => None,
            })
            .collect();
        assert_eq!(delivered[0], 10_000_000);
        assert_eq!(delivered[1], 20_000_000);
        // 64 KiB of queue at 1 KiB a packet: the line takes 65 or so, the rest overflow.
        assert!((60..=70).contains(&delivered.len()), "{}", delivered.len());
        assert_eq!(s.counts.overflow as usize, 200 - delivered.len());
        // The sender's own direction has no cap.
        assert_eq!(s.admit(0, &packet(1, 0, 1024)), Verdict::Deliver(0));
        // The line is free again once it has sent its queue: a packet arriving later, from a
        // far sender, waits for nothing that arrived after it.
        let p = packet(2, 1, 1024);
        let Verdict::Line(at) = s.admit(10_000_000_000, &p) else {
            panic!("line")
        };
        assert_eq!(at, 10_000_000_000);
        assert_eq!(s.line(at, &p), Verdict::Deliver(at + 10_000_000));
    }
}
