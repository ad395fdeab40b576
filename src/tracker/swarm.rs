//! The tracker's memory: every swarm and its peers, what an announce does to them, and the
//! bencoded answers. Pure state, no HTTP: the server in `mod.rs` calls in under a lock.
//!
//! Every peer of the lab runs on one host, so peers are keyed by (info hash, peer id) and
//! returned with their own port: two peers on 127.0.0.1 are two peers, never merged.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::seq::index::sample;

use crate::announce::Announce;
use crate::announce::Event;
use crate::bencode::encode_bytes;

pub type InfoHash = [u8; 20];
pub type PeerId = [u8; 20];

/// One peer as the tracker last heard of it.
#[derive(Debug, Clone)]
pub struct PeerEntry {
    pub peer_id: PeerId,
    pub addr: SocketAddr,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub first_seen: Instant,
    pub last_seen: Instant,
    pub announces: u64,
    /// Bytes/s between the last two announces.
    pub up_rate: f64,
    pub down_rate: f64,
}

impl PeerEntry {
    pub fn is_seed(&self) -> bool {
        self.left == 0
    }
}

/// A torrent's swarm.
#[derive(Debug, Default)]
pub struct Swarm {
    /// Peers in a vector for uniform random sampling; `index` finds them by id.
    peers: Vec<PeerEntry>,
    index: HashMap<PeerId, usize>,
    seeds: usize,
    /// `completed` events seen (the scrape's `downloaded`).
    pub completed: u64,
}

impl Swarm {
    pub fn peers(&self) -> &[PeerEntry] {
        &self.peers
    }
    pub fn seeds(&self) -> usize {
        self.seeds
    }
    pub fn leechers(&self) -> usize {
        self.peers.len() - self.seeds
    }

    fn remove_at(&mut self, i: usize) {
        let gone = self.peers.swap_remove(i);
        self.index.remove(&gone.peer_id);
        if gone.is_seed() {
            self.seeds -= 1;
        }
        if let Some(moved) = self.peers.get(i) {
            self.index.insert(moved.peer_id, i);
        }
    }

    fn remove(&mut self, peer_id: &PeerId) {
        if let Some(&i) = self.index.get(peer_id) {
            self.remove_at(i);
        }
    }

    /// Drop peers not heard from since `cutoff`; returns how many.
    pub fn expire(&mut self, cutoff: Instant) -> usize {
        let mut i = 0;
        let mut n = 0;
        while i < self.peers.len() {
            if self.peers[i].last_seen < cutoff {
                self.remove_at(i);
                n += 1;
            } else {
                i += 1;
            }
        }
        n
    }

    /// Apply an announce from `addr` (the peer's IP and announced port).
    pub fn announce(&mut self, a: &Announce, addr: SocketAddr, now: Instant) {
        if a.event == Some(Event::Stopped) {
            self.remove(&a.peer_id);
            return;
        }
        if a.event == Some(Event::Completed) {
            self.completed += 1;
        }
        match self.index.get(&a.peer_id) {
            Some(&i) => {
                let p = &mut self.peers[i];
                let was_seed = p.is_seed();
                let dt = now.saturating_duration_since(p.last_seen).as_secs_f64();
                if dt > 0.5 {
                    p.up_rate = a.uploaded.saturating_sub(p.uploaded) as f64 / dt;
                    p.down_rate = a.downloaded.saturating_sub(p.downloaded) as f64 / dt;
                }
                p.addr = addr;
                p.uploaded = a.uploaded;
                p.downloaded = a.downloaded;
                p.left = a.left;
                p.last_seen = now;
                p.announces += 1;
                match (was_seed, p.is_seed()) {
                    (false, true) => self.seeds += 1,
                    (true, false) => self.seeds -= 1,
                    _ => {}
                }
            }
            None => {
                let p = PeerEntry {
                    peer_id: a.peer_id,
                    addr,
                    uploaded: a.uploaded,
                    downloaded: a.downloaded,
                    left: a.left,
                    first_seen: now,
                    last_seen: now,
                    announces: 1,
                    up_rate: 0.0,
                    down_rate: 0.0,
                };
                if p.is_seed() {
                    self.seeds += 1;
                }
                self.index.insert(a.peer_id, self.peers.len());
                self.peers.push(p);
            }
        }
    }

    /// Up to `n` peers other than `me`, chosen uniformly at random. A seed is not sent seeds.
    pub fn select(&self, me: &PeerId, n: usize, for_seed: bool) -> Vec<&PeerEntry> {
        let eligible = |p: &&PeerEntry| &p.peer_id != me && !(for_seed && p.is_seed());
        let total = self.peers.len();
        if total <= n + 1 {
            return self.peers.iter().filter(eligible).take(n).collect();
        }
        let mut rng = rand::rng();
        // Sample a few spare ones for those filtered out; top up in order if still short.
        let mut out: Vec<&PeerEntry> = sample(&mut rng, total, (n + 1).min(total))
            .into_iter()
            .map(|i| &self.peers[i])
            .filter(eligible)
            .take(n)
            .collect();
        if out.len() < n && for_seed {
            for p in self.peers.iter().filter(eligible) {
                if out.len() >= n {
                    break;
                }
                if !out.iter().any(|q| q.peer_id == p.peer_id) {
                    out.push(p);
                }
            }
        }
        out
    }
}

/// Encode an announce answer.
#[allow(clippy::too_many_arguments)]
pub fn encode_announce(
    swarm: &Swarm,
    peers: &[&PeerEntry],
    interval: Duration,
    min_interval: Duration,
    compact: bool,
    no_peer_id: bool,
    map_ip: impl Fn(IpAddr) -> IpAddr,
    out: &mut Vec<u8>,
) {
    use std::io::Write;
    let _ = write!(
        out,
        "d8:completei{}e10:incompletei{}e8:intervali{}e12:min intervali{}e",
        swarm.seeds(),
        swarm.leechers(),
        interval.as_secs(),
        min_interval.as_secs()
    );
    let (v4, v6): (Vec<&&PeerEntry>, Vec<&&PeerEntry>) =
        peers.iter().partition(|p| map_ip(p.addr.ip()).is_ipv4());
    if compact {
        out.extend_from_slice(b"5:peers");
        let _ = write!(out, "{}:", v4.len() * 6);
        for p in &v4 {
            if let IpAddr::V4(ip) = map_ip(p.addr.ip()) {
                out.extend_from_slice(&ip.octets());
                out.extend_from_slice(&p.addr.port().to_be_bytes());
            }
        }
        if !v6.is_empty() {
            out.extend_from_slice(b"6:peers6");
            let _ = write!(out, "{}:", v6.len() * 18);
            for p in &v6 {
                if let IpAddr::V6(ip) = map_ip(p.addr.ip()) {
                    out.extend_from_slice(&ip.octets());
                    out.extend_from_slice(&p.addr.port().to_be_bytes());
                }
            }
        }
    } else {
        out.extend_from_slice(b"5:peersl");
        for p in peers {
            out.push(b'd');
            encode_bytes(b"ip", out);
            encode_bytes(map_ip(p.addr.ip()).to_string().as_bytes(), out);
            if !no_peer_id {
                encode_bytes(b"peer id", out);
                encode_bytes(&p.peer_id, out);
            }
            encode_bytes(b"port", out);
            let _ = write!(out, "i{}e", p.addr.port());
            out.push(b'e');
        }
        out.push(b'e');
    }
    out.push(b'e');
}

/// Encode a scrape answer for `swarms` (hash → swarm), sorted by hash as bencode wants.
pub fn encode_scrape<'a>(swarms: impl Iterator<Item = (&'a InfoHash, &'a Swarm)>) -> Vec<u8> {
    use std::io::Write;
    let sorted: BTreeMap<&InfoHash, &Swarm> = swarms.collect();
    let mut out = b"d5:filesd".to_vec();
    for (h, s) in sorted {
        encode_bytes(h, &mut out);
        let _ = write!(
            out,
            "d8:completei{}e10:downloadedi{}e10:incompletei{}ee",
            s.seeds(),
            s.completed,
            s.leechers()
        );
    }
    out.extend_from_slice(b"ee");
    out
}

/// A bencoded failure.
pub fn failure(reason: &str) -> Vec<u8> {
    let mut out = b"d14:failure reason".to_vec();
    encode_bytes(reason.as_bytes(), &mut out);
    out.push(b'e');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode;

    fn ann(id: u8, port: u16, left: u64, event: Event) -> Announce {
        Announce {
            info_hash: [1; 20],
            peer_id: [id; 20],
            port,
            uploaded: 0,
            downloaded: 0,
            left,
            event: Some(event),
            numwant: 50,
            compact: true,
            no_peer_id: false,
            ip: None,
        }
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn same_ip_different_ports_are_different_peers() {
        let mut s = Swarm::default();
        let now = Instant::now();
        for i in 0..200u16 {
            s.announce(
                &ann((i % 250) as u8, 7000 + i, 1, Event::Started),
                addr(7000 + i),
                now,
            );
        }
        // Ids 0..199 are distinct (one byte each, < 250).
        assert_eq!(s.peers().len(), 200);
        let got = s.select(&[0; 20], 200, false);
        assert_eq!(got.len(), 199, "everyone but the asker");
        let ports: std::collections::HashSet<u16> = got.iter().map(|p| p.addr.port()).collect();
        assert_eq!(ports.len(), 199);
    }

    #[test]
    fn counts_follow_events() {
        let mut s = Swarm::default();
        let now = Instant::now();
        s.announce(&ann(1, 1, 100, Event::Started), addr(1), now);
        s.announce(&ann(2, 2, 0, Event::Started), addr(2), now);
        assert_eq!((s.seeds(), s.leechers()), (1, 1));
        s.announce(&ann(1, 1, 0, Event::Completed), addr(1), now);
        assert_eq!((s.seeds(), s.leechers(), s.completed), (2, 0, 1));
        s.announce(&ann(2, 2, 0, Event::Stopped), addr(2), now);
        assert_eq!((s.seeds(), s.leechers()), (1, 0));
        assert_eq!(s.expire(now + Duration::from_secs(1)), 1);
        assert!(s.peers().is_empty());
    }

    #[test]
    fn answers_are_valid_bencode() {
        let mut s = Swarm::default();
        let now = Instant::now();
        s.announce(&ann(1, 6881, 5, Event::Started), addr(6881), now);
        s.announce(&ann(2, 6882, 0, Event::Started), addr(6882), now);
        let peers = s.select(&[9; 20], 50, false);
        for compact in [true, false] {
            let mut out = Vec::new();
            encode_announce(
                &s,
                &peers,
                Duration::from_secs(10),
                Duration::from_secs(5),
                compact,
                false,
                |ip| ip,
                &mut out,
            );
            let r = crate::announce::request::parse_response(&out).unwrap();
            assert_eq!(r.peers.len(), 2);
            assert_eq!((r.complete, r.incomplete), (Some(1), Some(1)));
        }
        let mut map = HashMap::new();
        map.insert([1u8; 20], s);
        let scrape = bencode::decode(&encode_scrape(map.iter())).unwrap();
        let f = scrape.get("files").unwrap().as_dict().unwrap();
        assert_eq!(f[&vec![1u8; 20]].get("complete").unwrap().as_int(), Some(1));
        assert!(bencode::decode(&failure("bad"))
            .unwrap()
            .get("failure reason")
            .is_some());
    }
}
