//! The simulation's Shadow config (`run/shadow/shadow.yaml`): its hosts, their processes and
//! the network graph.
//!
//! Hosts: `services` (10.77.0.1: the tracker and the VoD server, from 0 s), `my-client`
//! (10.77.0.2, from 2 s plus `my_client.start_after`) and one per world slot, named as its log
//! (`seed-0-1`, `world-0-7`), at the address it has in the real engine's namespace (from 1 s).
//!
//! The graph: without `network:`, one switch that every host hangs off, 1 Gbit/s each way and
//! 1 ms one way (a LAN; the real engine's namespace is faster, 0.05 ms, but Shadow delivers
//! nothing sooner than its runahead, 1 ms). With `network:`, each host has its own node on a
//! star: the edge to the centre has half the link's round trip as latency and its loss, and
//! the node the link's download cap as bandwidth. A path's round trip is then the sum of its
//! two ends', as in the real engine's link stage. Shadow has no jitter: `jitter_ms` is left
//! out (and said so in docs/shadow.md).
//!
//! Not Shadow's memory manager (`use_memory_manager`, 10 % faster here): it cannot spawn
//! processes inside the simulation, and my client's launcher does.
//!
//! System calls take no simulated time (`model_unblocked_syscall_latency: false`): with it on,
//! two simulations of one config differed in 4 of 17 tries (a thread's handoff took one or two
//! more system calls from run to run); off, never.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

use super::plan::{Plan, MY_CLIENT_AT, WORLD_AT};
use crate::lab::netns;
use crate::lab::world::World;
use crate::netem::Link;

#[derive(Serialize)]
struct ShadowConfig {
    general: General,
    network: Network,
    hosts: BTreeMap<String, Host>,
}

#[derive(Serialize)]
struct General {
    stop_time: String,
    seed: u32,
    model_unblocked_syscall_latency: bool,
    data_directory: String,
}

#[derive(Serialize)]
struct Network {
    graph: Graph,
}

#[derive(Serialize)]
struct Graph {
    #[serde(rename = "type")]
    kind: &'static str,
    inline: String,
}

#[derive(Serialize)]
struct Host {
    network_node_id: usize,
    ip_addr: String,
    processes: Vec<Process>,
}

#[derive(Serialize)]
struct Process {
    path: String,
    args: Vec<String>,
    environment: BTreeMap<String, String>,
    start_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    shutdown_time: Option<String>,
    expected_final_state: serde_yaml::Value,
}

/// Simulated seconds as Shadow reads them, to the millisecond.
fn at(secs: f64) -> String {
    format!("{} ms", (secs * 1000.0).round() as u64)
}

/// The Shadow config of `plan` (whose file is `plan_path`), with `world` laid out.
pub fn shadow_config(plan: &Plan, plan_path: &Path, world: &World) -> anyhow::Result<String> {
    let exe = std::env::current_exe()?.display().to_string();
    let plan_arg = plan_path.display().to_string();
    let env = |log: &str| {
        BTreeMap::from([
            (
                crate::sys::procs::RUN_ID_VAR.to_string(),
                plan.run_id.clone(),
            ),
            ("RUST_LOG".to_string(), log.to_string()),
        ])
    };
    let sim = |role: String, start: f64, end: serde_yaml::Value, log: &str| Process {
        path: exe.clone(),
        args: vec!["sim".into(), "--plan".into(), plan_arg.clone(), role],
        environment: env(log),
        start_time: at(start),
        shutdown_time: None,
        expected_final_state: end,
    };
    let running = serde_yaml::Value::from("running");
    let exited = serde_yaml::to_value(BTreeMap::from([("exited", 0)]))?;
    let stop = plan.stop_time();
    let mut services = sim("services".into(), 0.0, exited.clone(), "info");
    // Time to write the tracker's status and flush its log before the end.
    services.shutdown_time = Some(at(stop - 0.5));
    let world_log = std::env::var("TESTBED_WORLD_LOG").unwrap_or_else(|_| "info".into());
    let network = plan.config.network.as_ref();
    let mut graph = Star::new(network.is_some());
    let mut hosts = BTreeMap::new();
    hosts.insert(
        "services".to_string(),
        Host {
            network_node_id: graph.node(None),
            ip_addr: netns::TRACKER.to_string(),
            processes: vec![services],
        },
    );
    hosts.insert(
        "my-client".to_string(),
        Host {
            network_node_id: graph.node(network.map(|n| n.my_client)),
            ip_addr: netns::MY_CLIENT.to_string(),
            processes: vec![sim(
                "my-client".into(),
                MY_CLIENT_AT + plan.config.my_client.start_after,
                exited,
                "info",
            )],
        },
    );
    for (k, slot) in world
        .slots
        .lock()
        .map_err(|_| anyhow::anyhow!("slots"))?
        .iter()
        .enumerate()
    {
        hosts.insert(
            format!("{}-{}-{}", slot.role.as_str(), slot.swarm, slot.index),
            Host {
                network_node_id: graph.node(slot.link),
                ip_addr: slot.addr.to_string(),
                processes: vec![sim(k.to_string(), WORLD_AT, running.clone(), &world_log)],
            },
        );
    }
    let config = ShadowConfig {
        general: General {
            stop_time: at(stop),
            seed: (plan.config.seed.unwrap_or(0) & 0xffff_ffff) as u32,
            model_unblocked_syscall_latency: false,
            data_directory: "shadow.data".into(),
        },
        network: Network {
            graph: Graph {
                kind: "gml",
                inline: graph.gml(),
            },
        },
        hosts,
    };
    Ok(serde_yaml::to_string(&config)?)
}

/// A LAN of one switch, or a star of one node per host around a centre (node 0).
struct Star {
    /// Each host's node's link, for a star.
    links: Option<Vec<Link>>,
}

/// One way, at least: Shadow's threads run ahead of each other by at most its runahead (1 ms
/// by default), so a packet takes at least that long whatever its path says.
const MIN_LATENCY_MS: f64 = 1.0;

impl Star {
    fn new(star: bool) -> Star {
        Star {
            links: star.then(Vec::new),
        }
    }

    /// The node of a host with `link` (none: a link of the LAN's speed).
    fn node(&mut self, link: Option<Link>) -> usize {
        match &mut self.links {
            None => 0,
            Some(links) => {
                links.push(link.unwrap_or_default());
                links.len()
            }
        }
    }

    fn gml(&self) -> String {
        let mut g = String::from("graph [\n  directed 0\n");
        let node = |g: &mut String, id: usize, down: Option<f64>| {
            let down = match down {
                // KB/s of 1024 bytes, as Shadow's bits.
                Some(kb) => format!("{} Kibit", (kb * 8.0).round().max(1.0) as u64),
                None => "1 Gbit".into(),
            };
            let _ = writeln!(
                g,
                "  node [\n    id {id}\n    host_bandwidth_down \"{down}\"\n    host_bandwidth_up \"1 Gbit\"\n  ]"
            );
        };
        let edge = |g: &mut String, a: usize, b: usize, ms: f64, loss: f64| {
            let _ = writeln!(
                g,
                "  edge [\n    source {a}\n    target {b}\n    latency \"{} us\"\n    packet_loss {loss:?}\n  ]",
                (ms.max(MIN_LATENCY_MS) * 1000.0).round() as u64
            );
        };
        match &self.links {
            None => {
                node(&mut g, 0, None);
                edge(&mut g, 0, 0, MIN_LATENCY_MS, 0.0);
            }
            Some(links) => {
                node(&mut g, 0, None);
                // Shadow wants a path from every node to itself (a host's to itself, here).
                edge(&mut g, 0, 0, MIN_LATENCY_MS, 0.0);
                for (i, l) in links.iter().enumerate() {
                    let id = i + 1;
                    node(&mut g, id, l.download_rate);
                    edge(&mut g, id, id, MIN_LATENCY_MS, 0.0);
                    edge(&mut g, id, 0, l.rtt_ms / 2.0, l.loss_percent / 100.0);
                }
            }
        }
        g.push_str("]\n");
        g
    }
}
