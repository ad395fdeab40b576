//! Section `scale`: worlds of 200 and 500 clients: start, stop, memory, idle CPU (the page's
//! figures are in `page`).

use super::*;

/// `testbed start` of a world of `n` clients (2 seeds) on one random file of `size` bytes,
/// each client holding half of it, uploads capped at `upload_rate` KB/s, none leaving; `extra`
/// is more YAML.
pub(crate) fn start_world(
    dir: &Path,
    n: usize,
    size: usize,
    upload_rate: u32,
    extra: &str,
) -> Result<Scenario> {
    let mut blob = vec![0u8; size];
    rand::rngs::SmallRng::seed_from_u64(3).fill_bytes(&mut blob);
    let scenario = Scenario::in_dir(
        dir,
        &[("blob.bin", blob)],
        "bind: 127.0.0.1, interval: 30",
        &format!(
            "seed: 1\n\
             torrents: {{piece_length: 32768, my_torrent: blob.bin}}\n\
             world:\n  clients: {clients}\n  seeds: 2\n  start_fraction: 0.5\n  \
             upload_rate: {upload_rate}\n  max_connections: 30\n  linger: 600\n{extra}",
            clients = n - 2,
        ),
    )?;
    let st = scenario
        .command("start", &[])
        .stdout(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("testbed start failed ({st})");
    }
    Ok(scenario)
}

pub(crate) fn scale(b: &mut Bench) -> Result<()> {
    let sizes: &[usize] = if b.quick { &[200] } else { &[200, 500] };
    for &n in sizes {
        scale_one(b, n).with_context(|| format!("world of {n}"))?;
    }
    Ok(())
}

pub(crate) fn scale_one(b: &mut Bench, n: usize) -> Result<()> {
    let dir = b.dir.join(format!("scale-{n}"));
    let t0 = Instant::now();
    let scenario = start_world(&dir, n, 256 * 1024, 500, "")?;
    let port = scenario.port;
    let peers = || -> Result<(usize, usize)> {
        let v: serde_json::Value = serde_json::from_str(&http_get(port, "/api/status")?)?;
        let s = &v["swarms"][0];
        let total = s["peers"].as_array().map_or(0, |a| a.len());
        Ok((total, s["leechers"].as_u64().unwrap_or(u64::MAX) as usize))
    };
    wait_until(
        &format!("{n} clients announced"),
        Duration::from_secs(60),
        || peers().map(|(t, _)| t >= n).unwrap_or(false),
    )?;
    let announced = t0.elapsed().as_secs_f64();
    // Idle: every client complete and seeding (the file is small), nothing to do but keep up.
    wait_until("every client complete", Duration::from_secs(120), || {
        peers().map(|(_, l)| l == 0).unwrap_or(false)
    })?;
    let world: serde_json::Value = serde_json::from_str(&http_get(port, "/api/world")?)?;
    let pids: Vec<i32> = world["world"]
        .as_array()
        .ok_or_else(|| anyhow!("/api/world has no world"))?
        .iter()
        .filter_map(|s| s["pid"].as_i64().map(|p| p as i32))
        .collect();
    if pids.len() != n {
        bail!("{} of {n} world clients running", pids.len());
    }
    let sup = world["run"]["pid"].as_i64().map(|p| p as i32);
    let all: Vec<i32> = pids.iter().copied().chain(sup).collect();
    std::thread::sleep(Duration::from_secs(2));
    let idle_span = if b.quick { 3.0 } else { 5.0 };
    let c0: f64 = all.iter().map(|&p| proc_cpu(p)).sum();
    std::thread::sleep(Duration::from_secs_f64(idle_span));
    let c1: f64 = all.iter().map(|&p| proc_cpu(p)).sum();
    let rss: u64 = pids.iter().map(|&p| proc_rss(p)).sum::<u64>() / n as u64;
    let private: u64 = pids.iter().map(|&p| proc_rss_private(p)).sum::<u64>() / n as u64;
    if let Err(e) = page(b, n, port, &dir) {
        b.errors
            .push(format!("scale: page with {n} clients: {e:#}"));
    }

    let t = Instant::now();
    let st = scenario
        .command("stop", &[])
        .stdout(Stdio::null())
        .status()?;
    let stop = t.elapsed().as_secs_f64();
    if !st.success() {
        bail!("testbed stop failed ({st})");
    }
    let survivors = all.iter().filter(|&&p| alive(p)).count();

    let i = b.add(
        "scale",
        &format!("{n} clients: all announced after"),
        announced,
        "s",
    );
    if n >= 500 {
        b.target(i, "<= 5 s", announced <= 5.0);
    }
    let i = b.add("scale", &format!("{n} clients: testbed stop"), stop, "s");
    b.target(i, "<= 2 s, no survivor", stop <= 2.0 && survivors == 0);
    let i = b.add(
        "scale",
        &format!("{n} clients: RSS per client"),
        rss as f64 / MIB as f64,
        "MiB",
    );
    b.target(i, "< 8 MiB", (rss as f64) < 8.0 * MIB as f64);
    b.add(
        "scale",
        &format!("{n} clients: private memory per client (RssAnon)"),
        private as f64 / MIB as f64,
        "MiB",
    );
    b.add(
        "scale",
        &format!("{n} clients: idle CPU, all processes"),
        (c1 - c0) / idle_span * 100.0,
        "% of a core",
    );
    if survivors > 0 {
        bail!("{survivors} processes survived testbed stop");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
