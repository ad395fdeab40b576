//! Section `tracker`: ours (access log on and off) against aquatic_http and opentracker under wrk.

use super::*;

pub(crate) const ANNOUNCE_LUA: &str = r#"
-- One torrent, 5000 distinct peers (peer id and port vary), numwant=50, compact.
local n = 0
local hash = string.rep("%AB", 20)
request = function()
  n = n + 1
  local id = n % 5000
  local path = "/announce?info_hash=" .. hash ..
    "&peer_id=-BN0001-" .. string.format("%012d", id) ..
    "&port=" .. (10000 + id) ..
    "&uploaded=0&downloaded=0&left=1000&compact=1&numwant=50&event=started"
  return wrk.format("GET", path)
end
"#;

pub(crate) struct WrkResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

pub(crate) fn wrk(port: u16, secs: u32, script: &Path) -> Result<WrkResult> {
    let out = Command::new("wrk")
        .args(["-t1", "-c64", &format!("-d{secs}s"), "--latency", "-s"])
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}/announce"))
        .output()
        .context("running wrk (make bench installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let field = |key: &str| -> Option<&str> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key).map(str::trim))
    };
    let ms = |v: &str| -> Option<f64> {
        let v = v.split_whitespace().next()?;
        let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
        let x: f64 = num.parse().ok()?;
        Some(match unit {
            "us" => x / 1000.0,
            "ms" => x,
            "s" => x * 1000.0,
            "m" => x * 60000.0,
            _ => return None,
        })
    };
    let parse = || -> Option<WrkResult> {
        Some(WrkResult {
            rps: field("Requests/sec:")?.parse().ok()?,
            p50_ms: ms(field("50%")?)?,
            p99_ms: ms(field("99%")?)?,
            errors: field("Non-2xx or 3xx responses:")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        })
    };
    parse().ok_or_else(|| anyhow!("could not read wrk's output:\n{text}"))
}

/// One announce as wrk sends it must get peers back, not a failure reason.
pub(crate) fn check_announce(port: u16, who: &str) -> Result<()> {
    let hash = "%AB".repeat(20);
    let body = http_get(
        port,
        &format!(
            "/announce?info_hash={hash}&peer_id=-BN0001-999999999999&port=9999\
             &uploaded=0&downloaded=0&left=1000&compact=1&numwant=50"
        ),
    )?;
    if body.contains("failure reason") || !body.contains("5:peers300:") {
        bail!("{who} did not answer an announce with 50 peers: {body:.200}");
    }
    Ok(())
}

/// aquatic_http as `make bench` installs it (tests/install-deps.sh), else from PATH.
pub(crate) fn aquatic_http() -> PathBuf {
    let opt = PathBuf::from("/opt/aquatic/bin/aquatic_http");
    if opt.exists() {
        opt
    } else {
        PathBuf::from("aquatic_http")
    }
}

/// One tracker under wrk: started by `start` on `port`, loaded, checked, ended.
pub(crate) fn load_tracker(
    who: &str,
    port: u16,
    secs: u32,
    script: &Path,
    start: &mut Command,
) -> Result<WrkResult> {
    let _t = spawn(start.stdout(Stdio::null()).stderr(Stdio::null()))
        .with_context(|| format!("{who} (make bench installs it)"))?;
    wait_port(port, Duration::from_secs(10))?;
    let r = wrk(port, secs, script)?;
    check_announce(port, who)?;
    if r.errors > 0 {
        bail!("{who} answered {} requests with errors", r.errors);
    }
    Ok(r)
}

pub(crate) fn tracker(b: &mut Bench) -> Result<()> {
    let secs = if b.quick { 3 } else { 10 };
    let rounds = if b.quick { 1 } else { 3 };
    let dir = b.dir.join("tracker");
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("announce.lua");
    std::fs::write(&script, ANNOUNCE_LUA)?;
    let whitelist = dir.join("whitelist");
    std::fs::write(&whitelist, format!("{}\n", "ab".repeat(20)))?;
    let aquatic_conf = dir.join("aquatic.toml");

    // Ours as the lab runs it (the access log on, into a file), ours with the log off, and
    // aquatic_http with its default config, in turn, `rounds` times: the median round of each.
    // The log is deleted after each run (some 10^6 lines).
    let (mut on, mut off, mut aq) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let log = dir.join("access.log");
        let port = free_port();
        on.push(load_tracker(
            "our tracker",
            port,
            secs,
            &script,
            Command::new(TESTBED)
                .args(["tracker", "--port", &port.to_string(), "--log"])
                .arg(&log),
        )?);
        let lines = std::fs::read(&log).map(|t| t.iter().filter(|&&c| c == b'\n').count());
        let _ = std::fs::remove_file(&log);
        if lines.unwrap_or(0) == 0 {
            bail!("our tracker wrote no access log");
        }
        let port = free_port();
        off.push(load_tracker(
            "our tracker",
            port,
            secs,
            &script,
            Command::new(TESTBED)
                .args(["tracker", "--port", &port.to_string()])
                .env("RUST_LOG", "warn"),
        )?);
        let port = free_port();
        let conf = Command::new(aquatic_http())
            .arg("-p")
            .output()
            .context("aquatic_http (make bench installs it)")?;
        let conf = String::from_utf8_lossy(&conf.stdout).replace(
            "address = \"0.0.0.0:3000\"",
            &format!("address = \"127.0.0.1:{port}\""),
        );
        std::fs::write(&aquatic_conf, conf)?;
        aq.push(load_tracker(
            "aquatic_http",
            port,
            secs,
            &script,
            Command::new(aquatic_http()).arg("-c").arg(&aquatic_conf),
        )?);
    }
    let port = free_port();
    let ot = load_tracker(
        "opentracker",
        port,
        secs,
        &script,
        Command::new("opentracker")
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-P", &port.to_string(), "-w"])
            .arg(&whitelist),
    )?;
    let median_round = |v: &mut Vec<WrkResult>| -> WrkResult {
        let all: Vec<String> = v.iter().map(|r| format!("{:.0}", r.rps)).collect();
        v.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        let m = &v[v.len() / 2];
        println!("  rounds (req/s): {}", all.join(", "));
        WrkResult {
            rps: m.rps,
            p50_ms: m.p50_ms,
            p99_ms: m.p99_ms,
            errors: 0,
        }
    };
    let rounds_of = |v: &[WrkResult]| -> String {
        let mut r: Vec<f64> = v.iter().map(|r| r.rps / 1000.0).collect();
        r.sort_by(f64::total_cmp);
        r.iter()
            .map(|x| format!("{x:.1}k"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (on_all, off_all, aq_all) = (rounds_of(&on), rounds_of(&off), rounds_of(&aq));
    let (on, off, aq) = (
        median_round(&mut on),
        median_round(&mut off),
        median_round(&mut aq),
    );
    let median = if rounds > 1 { "median of " } else { "" };

    let i = b.add(
        "tracker",
        &format!(
            "announces/s, access log on as in the lab ({median}{rounds}: {on_all}; aquatic_http {aq_all})"
        ),
        on.rps,
        "req/s",
    );
    b.at_least(i, "aquatic_http", aq.rps, 1.2);
    let i = b.add(
        "tracker",
        "announces/s, access log on as in the lab",
        on.rps,
        "req/s",
    );
    b.at_least(i, "opentracker", ot.rps, 1.5);
    let i = b.add(
        "tracker",
        &format!("announces/s, access log off ({median}{rounds}: {off_all})"),
        off.rps,
        "req/s",
    );
    b.anchor(i, "aquatic_http", aq.rps, true);
    let i = b.add("tracker", "announce latency p50, log on", on.p50_ms, "ms");
    b.anchor(i, "aquatic_http", aq.p50_ms, false);
    let i = b.add("tracker", "announce latency p99, log on", on.p99_ms, "ms");
    b.anchor(i, "aquatic_http", aq.p99_ms, false);
    b.target(i, "<= aquatic_http's", on.p99_ms <= aq.p99_ms);
    let i = b.add("tracker", "announce latency p99, log on", on.p99_ms, "ms");
    b.anchor(i, "opentracker", ot.p99_ms, false);
    let i = b.add("tracker", "announce latency p99, log off", off.p99_ms, "ms");
    b.anchor(i, "aquatic_http", aq.p99_ms, false);
    b.target(i, "<= 2 ms", off.p99_ms <= 2.0);
    Ok(())
}
