//! The lab's own network: a network namespace that the supervisor makes for its run, where
//! every world client has an address of its own.
//!
//! Real clients keep one connection per address (libtorrent, qBittorrent, Deluge, Transmission)
//! and Transmission drops every 127.0.0.0/8 peer a tracker gives it. So in the namespace the
//! whole of 10.77.0.0/16 is local: any process can bind any address of it, and a connection
//! between two of them never leaves the kernel. The range lives on `lab0`, one end of a veth
//! pair (both ends inside), not on `lo`: libtorrent announces only from an interface whose
//! routes reach the tracker, and it takes nothing on `lo` to reach past 127/8. As `ip` would
//! say it:
//!
//! ```text
//! ip link add lab0 type veth peer name lab1; ip link set lo|lab0|lab1 up
//! ip addr add 10.77.0.2/16 dev lab0
//! ip route add local 10.77.0.0/16 dev lab0 src 10.77.0.2 table local
//! ```
//!
//! The namespace itself is `sys::netns`'s; this file is the lab's plan of addresses in it.
//!
//! The tracker and the VoD server listen on [`TRACKER`]; a socket that binds no address (my
//! client, whatever it is) gets [`MY_CLIENT`] as its source; world client `k` binds
//! [`world_addr`]`(k)` for listening, dialling and announcing.
//!
//! The supervisor moves itself into the namespace before it starts any thread
//! ([`enter`]), so every process it starts is inside too. As root it makes a plain network
//! namespace; otherwise a user namespace with it (as `unshare -Urn` does), where it is root
//! over that namespace only. Sockets bound before the move stay in the host's namespace: that
//! is how the status page stays reachable from the host's browser. The namespace has no name
//! and no mount: it ends with the last process inside it, so `testbed stop` removes it by
//! ending the run's processes, also after the supervisor was SIGKILLed. Private addresses never
//! touch the host.

use std::net::{IpAddr, Ipv4Addr};

pub use crate::sys::netns::{current, members, NoNamespace};

/// Where the tracker, the status page and the VoD server listen inside the namespace.
pub const TRACKER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The source address of a socket that binds none: my client's.
pub const MY_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The namespace's local range.
pub const PREFIX: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 77, 0, 0), 16);

/// Most world clients one run can address.
pub const MAX_CLIENTS: usize = 253 * 250;

/// World client `k` (numbered across swarms): 10.77.(1 + k / 250).(1 + k % 250), stable per
/// slot, unique in the run. `None` past [`MAX_CLIENTS`].
pub fn world_addr(k: usize) -> Option<IpAddr> {
    addr_in([10, 77], k)
}

/// The slot `k` whose address is `ip` ([`world_addr`] backwards).
pub fn world_index(ip: Ipv4Addr) -> Option<usize> {
    let [a, b, c, d] = ip.octets();
    let k = ((a, b) == (10, 77) && c >= 1 && (1..=250).contains(&d))
        .then(|| (c as usize - 1) * 250 + (d as usize - 1))?;
    (k < MAX_CLIENTS).then_some(k)
}

/// The links of the lab's addresses under a `network:` section drawn with a seed: world
/// slot k's from (seed, k), the tracker's none (it is exempt), any other address (my client's,
/// or one it binds) my client's.
pub struct LabLinks(pub crate::netem::NetworkSection, pub u64);

impl crate::netem::stage::Links for LabLinks {
    fn link(&self, ip: Ipv4Addr) -> Option<crate::netem::Link> {
        if ip == TRACKER {
            return None;
        }
        Some(match world_index(ip) {
            Some(k) => self.0.world_link(self.1, k),
            None => self.0.my_client,
        })
    }
}

/// The same plan on the host's loopback (127.77.0.0/16), where no namespace can be made.
pub fn loopback_addr(k: usize) -> Option<IpAddr> {
    addr_in([127, 77], k)
}

fn addr_in([a, b]: [u8; 2], k: usize) -> Option<IpAddr> {
    (k < MAX_CLIENTS).then(|| {
        IpAddr::V4(Ipv4Addr::new(
            a,
            b,
            (1 + k / 250) as u8,
            (1 + k % 250) as u8,
        ))
    })
}

/// Move this process into the lab's namespace ([`crate::sys::netns::enter`] with the lab's
/// prefix, unbound sockets from [`MY_CLIENT`]). Must run before this process starts a thread.
pub fn enter() -> Result<(), NoNamespace> {
    crate::sys::netns::enter(PREFIX, MY_CLIENT)
}

/// Whether [`enter`] works here, tried in a child process first.
pub fn probe() -> Result<(), String> {
    crate::sys::netns::probe(PREFIX, MY_CLIENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_addresses_are_distinct_and_inside_the_prefix() {
        let mut seen = std::collections::HashSet::new();
        for k in 0..5000 {
            let IpAddr::V4(a) = world_addr(k).unwrap() else {
                panic!("v4")
            };
            let o = a.octets();
            assert_eq!((o[0], o[1]), (10, 77));
            assert!(o[2] >= 1 && (1..=250).contains(&o[3]), "{a}");
            assert!(a != TRACKER && a != MY_CLIENT);
            assert!(seen.insert(a), "{a} twice");
        }
        assert_eq!(world_addr(0), Some("10.77.1.1".parse().unwrap()));
        assert_eq!(world_addr(251), Some("10.77.2.2".parse().unwrap()));
        assert!(world_addr(MAX_CLIENTS).is_none());
        for k in [0, 1, 249, 250, 251, 4999, MAX_CLIENTS - 1] {
            let Some(IpAddr::V4(a)) = world_addr(k) else {
                panic!("slot {k}")
            };
            assert_eq!(world_index(a), Some(k));
        }
        assert_eq!(world_index(MY_CLIENT), None);
        assert_eq!(world_index(TRACKER), None);
        // The stage's links follow the same plan: slot k's drawn link, my client's, none for
        // the tracker.
        use crate::netem::stage::Links;
        let n: crate::netem::NetworkSection =
            serde_yaml::from_str("{rtt_ms: {min: 20, max: 200}, my_client: {rtt_ms: 40}}").unwrap();
        let links = LabLinks(n.clone(), 5);
        let at = |k| match world_addr(k) {
            Some(IpAddr::V4(a)) => a,
            _ => panic!("slot {k}"),
        };
        assert_eq!(links.link(at(300)), Some(n.world_link(5, 300)));
        assert_ne!(links.link(at(300)), links.link(at(301)));
        assert_eq!(links.link(MY_CLIENT).unwrap().rtt_ms, 40.0);
        assert_eq!(links.link(TRACKER), None);
        assert_eq!(loopback_addr(0), Some("127.77.1.1".parse().unwrap()));
    }
}
