//! The link stage as it runs: a TUN device, the routes and rules that send lab packets
//! through it, and one thread that holds each packet until its [`stage`](super::stage) verdict
//! says, then writes it back.
//!
//! It must run inside the lab's own network namespace (the rules it changes are that
//! namespace's). Ending the thread, or the process, closes the device: its route goes, the
//! `prohibit` route answers, and lab traffic stops instead of running undelayed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use super::stage::{Counts, Links, Stage, Verdict};
use crate::sys::netlink::{self, Netlink, RouteTo, Rule, TABLE_LOCAL};
use crate::sys::tun::{raise_this_thread, Tun};

/// The device's name in the lab's namespace.
pub const DEVICE: &str = "tun0";
/// The routing table whose default route is the device.
const TABLE: u8 = 100;

/// Which packets go through the stage: between addresses of `prefix`, except to or from
/// `exempt` (the tracker and the VoD server).
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub prefix: (Ipv4Addr, u8),
    pub exempt: Ipv4Addr,
}

/// The running stage. Dropping it stops the thread and removes the device.
pub struct Emulator {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    counts: Arc<[AtomicU64; 4]>,
}

impl Emulator {
    /// Make the device, route the plan's packets through it and start the thread.
    pub fn start<L: Links + Send + 'static>(
        links: L,
        seed: u64,
        plan: Plan,
    ) -> anyhow::Result<Emulator> {
        let dev = Tun::open(DEVICE).with_context(|| format!("netem: TUN device {DEVICE}"))?;
        route_through(DEVICE, plan)?;
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new([(); 4].map(|_| AtomicU64::new(0)));
        let thread = {
            let (stop, counts) = (stop.clone(), counts.clone());
            std::thread::Builder::new()
                .name("netem".into())
                .spawn(move || {
                    // Packets wait on this thread: ahead of the world's clients where allowed.
                    raise_this_thread(-10);
                    if let Err(e) = pump(&dev, Stage::new(links, seed), &stop, &counts) {
                        tracing::error!("netem: the link stage stopped: {e}; lab traffic stops");
                        eprintln!("testbed: netem: the link stage stopped: {e}");
                    }
                })
                .context("netem: thread")?
        };
        Ok(Emulator {
            stop,
            thread: Some(thread),
            counts,
        })
    }

    /// Packets delivered, lost, dropped at a full line; and the most held at once.
    pub fn counts(&self) -> (Counts, u64) {
        let c = |i: usize| self.counts[i].load(Ordering::Relaxed);
        (
            Counts {
                delivered: c(0),
                lost: c(1),
                overflow: c(2),
            },
            c(3),
        )
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The device up, and the plan's packets routed through it (the module doc of `netem`).
fn route_through(dev: &str, plan: Plan) -> anyhow::Result<()> {
    let nl = Netlink::open().context("netem: netlink")?;
    let index = Netlink::index(dev).with_context(|| format!("netem: {dev}"))?;
    nl.link_up(index, Some(10_000))
        .with_context(|| format!("netem: {dev} up"))?;
    // Packets the stage writes back come from lab addresses, which are local here.
    for (k, v) in [
        (format!("net.ipv4.conf.{dev}.accept_local"), "1"),
        (format!("net.ipv4.conf.{dev}.rp_filter"), "0"),
        ("net.ipv4.conf.all.rp_filter".to_string(), "0"),
    ] {
        netlink::sysctl(&k, v).context("netem: sysctl")?;
    }
    let local = |pref| Rule {
        pref,
        table: TABLE_LOCAL,
        ..Rule::default()
    };
    let host = (plan.exempt, 32);
    let rules = [
        // `local` after ours, then ours: the tracker's address both ways stays direct, the
        // rest of the lab sent from here (iif lo) goes to table TABLE.
        (true, local(100)),
        (false, local(0)),
        (
            true,
            Rule {
                to: Some(host),
                ..local(5)
            },
        ),
        (
            true,
            Rule {
                from: Some(host),
                ..local(6)
            },
        ),
        (
            true,
            Rule {
                pref: 10,
                to: Some(plan.prefix),
                iif: Some("lo"),
                table: TABLE,
                ..Rule::default()
            },
        ),
    ];
    for (add, r) in &rules {
        match add {
            true => nl.add_rule(r),
            false => nl.del_rule(r),
        }
        .with_context(|| format!("netem: rule {} {r:?}", if *add { "add" } else { "del" }))?;
    }
    nl.add_default_route(TABLE, RouteTo::Device(index), 0)
        .context("netem: route through the device")?;
    nl.add_default_route(TABLE, RouteTo::Prohibit, 100)
        .context("netem: prohibit route")?;
    Ok(())
}

/// A packet waiting for its time.
struct Held {
    at: u64,
    seq: u64,
    buf: Vec<u8>,
    len: usize,
    /// It is due at its receiver's download line, not yet for delivery.
    line: bool,
}

impl PartialEq for Held {
    fn eq(&self, o: &Held) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Held) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Held) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// Packets most read in one wake-up before the due ones are written.
const BATCH: usize = 256;
/// Room for one packet: the device keeps its default MTU of 1500 bytes, and the kernel
/// segments larger sends before they reach it.
const MAX_PACKET: usize = 2048;
/// The longest sleep, so that a stop is seen.
const TICK_NS: u64 = 50_000_000;

fn pump<L: Links>(
    dev: &Tun,
    mut stage: Stage<L>,
    stop: &AtomicBool,
    counts: &[AtomicU64; 4],
) -> std::io::Result<()> {
    let clock = Instant::now();
    let now = || clock.elapsed().as_nanos() as u64;
    let mut held: BinaryHeap<Reverse<Held>> = BinaryHeap::new();
    let mut pool: Vec<Vec<u8>> = Vec::new();
    let mut seq = 0u64;
    let mut most = 0u64;
    // A packet the kernel refuses is lost, as on a wire.
    let write = |buf: &[u8]| {
        let _ = dev.write(buf);
    };
    while !stop.load(Ordering::Relaxed) {
        let wait = held.peek().map_or(TICK_NS, |Reverse(h)| {
            h.at.saturating_sub(now()).min(TICK_NS)
        });
        dev.wait_readable(wait)?;
        for _ in 0..BATCH {
            let mut buf = pool.pop().unwrap_or_else(|| vec![0u8; MAX_PACKET]);
            let len = match dev.read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    pool.push(buf);
                    match e.kind() {
                        std::io::ErrorKind::WouldBlock => break,
                        std::io::ErrorKind::Interrupted => continue,
                        _ => return Err(e),
                    }
                }
            };
            let t = now();
            let v = stage.admit(t, &buf[..len]);
            match v {
                Verdict::Deliver(at) if at <= t => {
                    write(&buf[..len]);
                    pool.push(buf);
                }
                Verdict::Deliver(at) | Verdict::Line(at) => {
                    seq += 1;
                    let line = matches!(v, Verdict::Line(_));
                    held.push(Reverse(Held {
                        at,
                        seq,
                        buf,
                        len,
                        line,
                    }));
                }
                Verdict::Lost | Verdict::Overflow => pool.push(buf),
            }
        }
        most = most.max(held.len() as u64);
        let t = now();
        while held.peek().is_some_and(|Reverse(h)| h.at <= t) {
            let Reverse(mut h) = held.pop().expect("peeked");
            if h.line {
                // At its receiver's line, in order of arrival.
                match stage.line(h.at, &h.buf[..h.len]) {
                    Verdict::Deliver(at) if at > t => {
                        (h.at, h.line) = (at, false);
                        held.push(Reverse(h));
                        continue;
                    }
                    Verdict::Deliver(_) => {}
                    _ => {
                        pool.push(h.buf);
                        continue;
                    }
                }
            }
            write(&h.buf[..h.len]);
            pool.push(h.buf);
        }
        // Keep the pool to what the queue has needed, not what one burst once did.
        pool.truncate(4096);
        let c = stage.counts;
        for (i, v) in [c.delivered, c.lost, c.overflow, most]
            .into_iter()
            .enumerate()
        {
            counts[i].store(v, Ordering::Relaxed);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use crate::sys::netns::tests::{in_a_namespace, socket2_connect_from};

    /// The addresses the test's namespace gives the tracker (exempt from the stage).
    const TRACKER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    const PREFIX: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 77, 0, 0), 16);

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
        in_a_namespace(|| {
            let e = |e: std::io::Error| e.to_string();
            let stage = super::Emulator::start(
                TestLinks,
                42,
                super::Plan {
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
}
