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
