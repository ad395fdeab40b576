//! Section `netem`: a world of 500 clients downloading without and with the link stage.

use super::*;

/// A world of `n` (500) clients downloading, without and then with the link stage: how much
/// longer until every client completes, and what the emulation costs in CPU.
pub(crate) fn netem(b: &mut Bench) -> Result<()> {
    let n = if b.quick { 100 } else { 500 };
    let mut off = None;
    for network in [false, true] {
        let (done, all_cpu, stage_cpu, idle, per_packet) =
            netem_one(b, n, network).with_context(|| {
                format!(
                    "{n} clients, network {}",
                    if network { "on" } else { "off" }
                )
            })?;
        let tag = if network {
            "realistic network"
        } else {
            "no network"
        };
        let i = b.add(
            "netem",
            &format!("{n} clients, {tag}: every client complete after"),
            done,
            "s",
        );
        if let Some(o) = off {
            b.anchor(i, "no network", o, false);
        }
        off.get_or_insert(done);
        b.add(
            "netem",
            &format!("{n} clients, {tag}: CPU of all processes while downloading"),
            all_cpu,
            "% of a core",
        );
        if network {
            let i = b.add(
                "netem",
                &format!("{n} clients: the link stage's thread while downloading"),
                stage_cpu,
                "% of a core",
            );
            b.target(i, "< 50 %", stage_cpu < 50.0);
            b.add(
                "netem",
                &format!("{n} clients: the link stage's thread, world idle"),
                idle,
                "% of a core",
            );
            if let Some(us) = per_packet {
                // The packet's delivery (the receiver's TCP) runs in the stage's write: work
                // that loopback does in the sender's thread without a stage.
                b.add(
                    "netem",
                    &format!("{n} clients: the link stage's CPU per packet, delivery included"),
                    us,
                    "µs",
                );
            }
        }
    }
    Ok(())
}

/// CPU seconds of the supervisor's thread named `name`.
pub(crate) fn thread_cpu(pid: i32, name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .filter_map(|t| t.file_name().to_str()?.parse::<i32>().ok())
        .map(|tid| proc_cpu_at(&format!("/proc/{pid}/task/{tid}/stat")))
        .sum()
}

/// (seconds until every client completes, CPU of all processes over that time and of the
/// stage's thread, both in % of a core; the stage's thread while the world is idle; its CPU
/// per packet delivered over the whole run, µs).
pub(crate) fn netem_one(
    b: &Bench,
    n: usize,
    network: bool,
) -> Result<(f64, f64, f64, f64, Option<f64>)> {
    let dir = b.dir.join(format!("netem-{n}-{network}"));
    let net = if network {
        "network:\n  rtt_ms: {min: 20, max: 200}\n  jitter_ms: 2\n  loss_percent: 0.5\n  \
         download_rate: {min: 256, max: 2048}\n"
    } else {
        ""
    };
    let t0 = Instant::now();
    let scenario = start_world(&dir, n, 1024 * 1024, 70, net)?;
    let port = scenario.port;
    let world: serde_json::Value = serde_json::from_str(&http_get(port, "/api/world")?)?;
    let sup = world["run"]["pid"]
        .as_i64()
        .ok_or_else(|| anyhow!("/api/world has no supervisor pid"))? as i32;
    let pids: Vec<i32> = world["world"]
        .as_array()
        .ok_or_else(|| anyhow!("/api/world has no world"))?
        .iter()
        .filter_map(|s| s["pid"].as_i64().map(|p| p as i32))
        .chain([sup])
        .collect();
    let cpu = || -> (f64, f64) {
        (
            pids.iter().map(|&p| proc_cpu(p)).sum(),
            thread_cpu(sup, "netem"),
        )
    };
    let (a0, s0) = cpu();
    let t1 = Instant::now();
    let leechers = || -> Result<usize> {
        let v: serde_json::Value = serde_json::from_str(&http_get(port, "/api/status")?)?;
        Ok(v["swarms"][0]["leechers"].as_u64().unwrap_or(u64::MAX) as usize)
    };
    let waited = wait_until("every client complete", Duration::from_secs(300), || {
        leechers().map(|l| l == 0).unwrap_or(false)
    });
    let done = t0.elapsed().as_secs_f64();
    let span = t1.elapsed().as_secs_f64();
    let (a1, s1) = cpu();
    std::thread::sleep(Duration::from_secs(5));
    let (_, s2) = cpu();
    let st = scenario
        .command("stop", &[])
        .stdout(Stdio::null())
        .status()?;
    waited?;
    if !st.success() {
        bail!("testbed stop failed ({st})");
    }
    if network && s1 - s0 <= 0.0 {
        bail!("no thread named netem in the supervisor: the stage did not run");
    }
    // The supervisor's count of packets through the stage, logged as it stops.
    let log = std::fs::read_to_string(dir.join("run/logs/tracker.log")).unwrap_or_default();
    let packets: Option<f64> = log
        .lines()
        .filter_map(|l| {
            l.split_once("netem: ")?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .next_back();
    let _ = std::fs::remove_dir_all(&dir);
    Ok((
        done,
        (a1 - a0) / span * 100.0,
        (s1 - s0) / span * 100.0,
        (s2 - s1) / 5.0 * 100.0,
        packets.map(|p| s2 / p * 1e6),
    ))
}
