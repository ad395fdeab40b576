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

use crate::sys::netlink::Netlink;

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

/// Why the namespace could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NoNamespace {
    #[error("unshare({what}): {err}")]
    Unshare { what: &'static str, err: nix::Error },
    #[error("{file}: {err}")]
    Map {
        file: &'static str,
        err: std::io::Error,
    },
    #[error("netlink {what}: {err}")]
    Netlink {
        what: &'static str,
        err: std::io::Error,
    },
}

/// Move this process into a new network namespace (and a user namespace when not root) and
/// set up its `lo`. Must run before this process starts a thread: a process with threads
/// cannot enter a user namespace, and the threads would stay behind.
pub fn enter() -> Result<(), NoNamespace> {
    use nix::sched::{unshare, CloneFlags};
    let uid = nix::unistd::geteuid();
    let gid = nix::unistd::getegid();
    if uid.is_root() {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|err| NoNamespace::Unshare {
            what: "CLONE_NEWNET",
            err,
        })?;
    } else {
        unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET).map_err(|err| {
            NoNamespace::Unshare {
                what: "CLONE_NEWUSER | CLONE_NEWNET",
                err,
            }
        })?;
        // Root inside maps to us outside: files stay ours, and we may configure the network.
        for (file, text) in [
            ("/proc/self/setgroups", "deny".to_string()),
            ("/proc/self/uid_map", format!("0 {uid} 1")),
            ("/proc/self/gid_map", format!("0 {gid} 1")),
        ] {
            std::fs::write(file, text).map_err(|err| NoNamespace::Map { file, err })?;
        }
    }
    set_up_network()
}

/// Whether [`enter`] works here, tried in a child process first: a failure half-way (the
/// namespace made, its network not, as where user namespaces are allowed but their network
/// is not) must not strand the supervisor in an empty namespace. `Err` says why not.
pub fn probe() -> Result<(), String> {
    use std::io::{Read, Write};
    let (r, w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: called before the process starts any thread; the child only runs `enter` (no
    // lock another thread could hold) and leaves with _exit.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            drop(r);
            let code = match enter() {
                Ok(()) => 0,
                Err(e) => {
                    let _ = std::fs::File::from(w).write_all(e.to_string().as_bytes());
                    1
                }
            };
            // SAFETY: leave the child without running the parent's destructors.
            unsafe { nix::libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            let mut why = String::new();
            let _ = std::fs::File::from(r).read_to_string(&mut why);
            match nix::sys::wait::waitpid(child, None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
                _ if !why.is_empty() => Err(why),
                other => Err(format!("the trial ended with {other:?}")),
            }
        }
    }
}

/// `lo` and the `lab0`/`lab1` pair up, [`MY_CLIENT`]/16 on `lab0`, and the whole [`PREFIX`]
/// local with [`MY_CLIENT`] as the preferred source.
fn set_up_network() -> Result<(), NoNamespace> {
    let nl = Netlink::open().map_err(|err| NoNamespace::Netlink {
        what: "socket",
        err,
    })?;
    let fail = |what| move |err| NoNamespace::Netlink { what, err };
    nl.add_veth("lab0", "lab1").map_err(fail("veth pair"))?;
    for dev in ["lo", "lab0", "lab1"] {
        let index = Netlink::index(dev).map_err(fail("interface index"))?;
        nl.link_up(index, None).map_err(fail("link up"))?;
    }
    let lab0 = Netlink::index("lab0").map_err(fail("interface index"))?;
    nl.add_addr(lab0, MY_CLIENT, PREFIX.1)
        .map_err(fail("address"))?;
    nl.add_local_route(lab0, PREFIX.0, PREFIX.1, MY_CLIENT)
        .map_err(fail("local route"))?;
    Ok(())
}

/// The inode of this process's network namespace (to tell the lab's from the host's).
pub fn current() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/net").ok().map(|m| m.ino())
}

/// Processes whose network namespace is `inode`.
pub fn members(inode: u64) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.ino() == inode)
        })
        .collect()
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

    /// `body` in a forked child that has entered a namespace as the supervisor does (a test
    /// binary has threads; entering moves only the calling one). Skipped (exit 77) where
    /// namespaces are refused, except under CI=true.
    fn in_the_labs_namespace(body: fn() -> Result<(), String>) {
        // SAFETY: the child only runs the test body and _exits; it uses no lock another
        // thread could hold (std's allocator and sockets are fork-safe for this use).
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = match enter().map_err(|e| e.to_string()).and_then(|()| body()) {
                    Ok(()) => 0,
                    Err(e) if e.contains("EPERM") || e.contains("Operation not permitted") => {
                        eprintln!("SKIPPED: namespaces not allowed here ({e})");
                        77
                    }
                    Err(e) => {
                        eprintln!("namespace test: {e}");
                        1
                    }
                };
                // SAFETY: leave the forked child without running the parent's destructors.
                unsafe { nix::libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let st = nix::sys::wait::waitpid(child, None).unwrap();
                match st {
                    nix::sys::wait::WaitStatus::Exited(_, 0) => {}
                    nix::sys::wait::WaitStatus::Exited(_, 77)
                        if std::env::var("CI").as_deref() != Ok("true") => {}
                    other => panic!("the namespace child ended with {other:?}"),
                }
            }
        }
    }

    /// The namespace as the supervisor makes it: any address of the prefix binds, a
    /// connection between two of them keeps its source, and an unbound socket comes from
    /// MY_CLIENT.
    #[test]
    fn a_namespace_where_every_address_is_local() {
        use std::net::{TcpListener, TcpStream};
        in_the_labs_namespace(|| {
            let l = TcpListener::bind("10.77.3.9:7000").map_err(|e| e.to_string())?;
            let s = socket2_connect_from("10.77.1.1".parse().unwrap(), "10.77.3.9:7000")?;
            let (_, from) = l.accept().map_err(|e| e.to_string())?;
            if from.ip() != "10.77.1.1".parse::<IpAddr>().unwrap() {
                return Err(format!("bound source seen as {from}"));
            }
            drop(s);
            let _t = TcpStream::connect("10.77.3.9:7000").map_err(|e| e.to_string())?;
            let (_, from) = l.accept().map_err(|e| e.to_string())?;
            if from.ip() != IpAddr::V4(MY_CLIENT) {
                return Err(format!("unbound source seen as {from}"));
            }
            Ok(())
        });
    }

    /// Links of a test: 10.77.1.x gets TABLE[x], my client (any other address) MY_LINK.
    struct TestLinks;
    const fn lk(rtt_ms: f64, loss_percent: f64) -> crate::netem::Link {
        crate::netem::Link {
            rtt_ms,
            jitter_ms: 0.0,
            loss_percent,
            download_rate: None,
        }
    }
    const NONE: crate::netem::Link = lk(0.0, 0.0);
    /// .1 and .2: two world clients 30 ms away each (a 60 ms path); .3 loses 2 %; .4, .5 and
    /// .6 have no delay of their own; .7 is 100 ms away; .8 downloads at 1000 KB/s.
    const TABLE: [crate::netem::Link; 9] = [
        NONE,
        lk(30.0, 0.0),
        lk(30.0, 0.0),
        lk(0.0, 2.0),
        NONE,
        NONE,
        NONE,
        lk(100.0, 0.0),
        crate::netem::Link {
            download_rate: Some(1000.0),
            ..NONE
        },
    ];
    const MY_LINK: crate::netem::Link = lk(50.0, 0.0);
    impl crate::netem::stage::Links for TestLinks {
        fn link(&self, ip: Ipv4Addr) -> Option<crate::netem::Link> {
            let [_, _, c, d] = ip.octets();
            if ip == TRACKER {
                return None;
            }
            Some(match (c, TABLE.get(d as usize)) {
                (1, Some(l)) => *l,
                _ => MY_LINK,
            })
        }
    }

    /// The link stage in the lab's namespace, measured with real sockets: round trips
    /// between two world addresses and from an unbound socket (my client's) within 10 % of
    /// the links, loss within 1 point over 10,000 datagrams, a single TCP connection slower at
    /// 100 ms than at 0 ms; the tracker's address undelayed; and after the stage ends, lab
    /// traffic refused rather than undelayed.
    #[test]
    fn the_link_stage_delays_loses_and_slows_as_configured() {
        in_the_labs_namespace(|| {
            let e = |e: std::io::Error| e.to_string();
            let stage = crate::netem::tun::Emulator::start(
                TestLinks,
                42,
                crate::netem::tun::Plan {
                    prefix: PREFIX,
                    exempt: TRACKER,
                },
            )
            .map_err(|e| format!("{e:#}"))?;
            let within = |what: &str, got: f64, want: f64, tol: f64| {
                eprintln!("{what}: {got:.2} (configured {want})");
                if (got - want).abs() > tol {
                    return Err(format!("{what}: measured {got:.2}, configured {want}"));
                }
                Ok(())
            };
            // World to world: 30 + 30 ms; my client (unbound) to a world client: 50 + 30.
            let rtt = echo_rtt_ms(Some("10.77.1.1"), "10.77.1.2:7001")?;
            within("world-world RTT ms", rtt, 60.0, 6.0)?;
            let rtt = echo_rtt_ms(None, "10.77.1.2:7002")?;
            within("my client-world RTT ms", rtt, 80.0, 8.0)?;
            let rtt = echo_rtt_ms(Some("10.77.1.1"), "10.77.0.1:7003")?;
            if rtt > 3.0 {
                return Err(format!(
                    "the tracker's address took {rtt:.1} ms: not exempt"
                ));
            }
            // Loss: 2 % on .3's link.
            let lost = udp_loss_percent("10.77.1.3", "10.77.1.4:7004", 10_000)?;
            within("loss %", lost, 2.0, 1.0)?;
            // One TCP connection, the receiver's buffer fixed at 256 KiB (no autotuning).
            let fast = tcp_mb_per_s("10.77.1.5", "10.77.1.6:7005")?;
            let slow = tcp_mb_per_s("10.77.1.7", "10.77.1.6:7006")?;
            eprintln!("one TCP connection: {fast:.1} MB/s at 0 ms, {slow:.1} MB/s at 100 ms");
            if slow * 4.0 > fast {
                return Err(format!("{slow:.1} MB/s at 100 ms vs {fast:.1} at 0 ms"));
            }
            // A download cap of 1000 KB/s (1.024 MB/s), TCP through its tail-drop queue.
            let capped = tcp_mb_per_s("10.77.1.5", "10.77.1.8:7007")?;
            within("capped download MB/s", capped, 1.024, 0.15)?;
            // The stage gone, lab traffic is refused (prohibit), not undelayed.
            drop(stage);
            let refused = std::net::UdpSocket::bind("10.77.1.1:0")
                .and_then(|u| u.send_to(b"x", "10.77.1.2:9"))
                .map_err(e);
            if refused.is_ok() {
                return Err("with the stage gone a lab packet still went out".into());
            }
            Ok(())
        });
    }

    /// The median of 20 one-byte TCP round trips to an echo at `to`, from `from` (or an
    /// unbound socket), in ms.
    fn echo_rtt_ms(from: Option<&str>, to: &str) -> Result<f64, String> {
        use std::io::{Read, Write};
        let e = |e: std::io::Error| e.to_string();
        let l = std::net::TcpListener::bind(to).map_err(e)?;
        let echo = std::thread::spawn(move || -> std::io::Result<()> {
            let (mut c, _) = l.accept()?;
            c.set_nodelay(true)?;
            let mut b = [0u8; 1];
            while c.read(&mut b)? == 1 {
                c.write_all(&b)?;
            }
            Ok(())
        });
        let mut c = match from {
            Some(f) => socket2_connect_from(f.parse().unwrap(), to)?,
            None => std::net::TcpStream::connect(to).map_err(e)?,
        };
        c.set_nodelay(true).map_err(e)?;
        c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .map_err(e)?;
        let mut times = Vec::new();
        let mut b = [0u8; 1];
        for _ in 0..20 {
            let t = std::time::Instant::now();
            c.write_all(b"p").map_err(e)?;
            c.read_exact(&mut b).map_err(e)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        drop(c);
        let _ = echo.join();
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    }

    /// Percent of `n` numbered datagrams from `from` that never reach `to`, paced at about
    /// 100 per ms so that no socket or device queue of this machine drops one.
    fn udp_loss_percent(from: &str, to: &str, n: u32) -> Result<f64, String> {
        use std::net::UdpSocket;
        let e = |e: std::io::Error| e.to_string();
        let rx = UdpSocket::bind(to).map_err(e)?;
        nix::sys::socket::setsockopt(&rx, nix::sys::socket::sockopt::RcvBuf, &(4 << 20))
            .map_err(|e| e.to_string())?;
        rx.set_read_timeout(Some(std::time::Duration::from_millis(500)))
            .map_err(e)?;
        let tx = UdpSocket::bind(format!("{from}:0")).map_err(e)?;
        let mut seen = vec![false; n as usize];
        for i in 0..n {
            tx.send_to(&i.to_be_bytes(), to).map_err(e)?;
            if i % 100 == 99 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        let mut b = [0u8; 16];
        while let Ok(len) = rx.recv(&mut b) {
            if len == 4 {
                if let Some(s) = seen.get_mut(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
                {
                    *s = true;
                }
            }
        }
        let got = seen.iter().filter(|&&s| s).count();
        Ok(100.0 * (n as usize - got) as f64 / n as f64)
    }

    /// MB/s of one TCP connection from `from` to `to` over 1.5 s, the receiver's buffer
    /// fixed at 256 KiB.
    fn tcp_mb_per_s(from: &str, to: &str) -> Result<f64, String> {
        use std::io::{Read, Write};
        let e = |e: std::io::Error| e.to_string();
        let l = std::net::TcpListener::bind(to).map_err(e)?;
        nix::sys::socket::setsockopt(&l, nix::sys::socket::sockopt::RcvBuf, &(256 << 10))
            .map_err(|e| e.to_string())?;
        let sink = std::thread::spawn(move || -> std::io::Result<u64> {
            let (mut c, _) = l.accept()?;
            let mut b = vec![0u8; 1 << 16];
            let mut total = 0u64;
            loop {
                match c.read(&mut b)? {
                    0 => return Ok(total),
                    n => total += n as u64,
                }
            }
        });
        let mut c = socket2_connect_from(from.parse().unwrap(), to)?;
        let chunk = vec![7u8; 1 << 16];
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(1500) {
            c.write_all(&chunk).map_err(e)?;
        }
        drop(c);
        let total = sink
            .join()
            .map_err(|_| "sink panicked".to_string())?
            .map_err(e)?;
        Ok(total as f64 / t.elapsed().as_secs_f64() / 1e6)
    }

    /// A TCP connection from `from` (bound first) to `to`.
    fn socket2_connect_from(from: IpAddr, to: &str) -> Result<std::net::TcpStream, String> {
        let to: std::net::SocketAddr = to.parse().unwrap();
        let s = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
        s.bind(std::net::SocketAddr::new(from, 0))
            .map_err(|e| e.to_string())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| e.to_string())?;
        let stream = rt.block_on(s.connect(to)).map_err(|e| e.to_string())?;
        let s = stream.into_std().map_err(|e| e.to_string())?;
        s.set_nonblocking(false).map_err(|e| e.to_string())?;
        Ok(s)
    }
}
