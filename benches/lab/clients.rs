//! Section `clients`: the league table of real clients' streaming modes.

use super::*;

/// A real client as my client: its wrapper in examples/, how to tell it is installed and its
/// version, its mode and how the lab scores it.
pub(crate) struct RealClient {
    name: &'static str,
    mode: &'static str,
    scoring: &'static str,
    /// The my-client command line (paths relative to the project root).
    cmd: &'static str,
    /// A shell command that succeeds when the client is installed.
    check: &'static str,
    /// A shell command printing its version.
    version: &'static str,
    /// It fetches from BEP 19 web seeds: a second row with the VoD server as one
    /// (`testbed compare --web-seed-client`), scored by the server's count.
    web_seed: bool,
}

pub(crate) const REAL_CLIENTS: &[RealClient] = &[
    RealClient {
        name: "libtorrent",
        mode: "time-critical pieces (set_piece_deadline)",
        scoring: "VoD server at the deadline",
        cmd: "examples/libtorrent_vod.py --mode time-critical",
        check: "/usr/bin/python3 -c 'import libtorrent'",
        version: "/usr/bin/python3 -c 'import libtorrent; print(libtorrent.__version__)'",
        web_seed: true,
    },
    RealClient {
        name: "libtorrent",
        mode: "sequential_download",
        scoring: "VoD server at the deadline",
        cmd: "examples/libtorrent_vod.py --mode sequential",
        check: "/usr/bin/python3 -c 'import libtorrent'",
        version: "/usr/bin/python3 -c 'import libtorrent; print(libtorrent.__version__)'",
        web_seed: false,
    },
    RealClient {
        name: "aria2",
        mode: "--stream-piece-selector=inorder",
        scoring: "referee (late bytes)",
        cmd: "examples/aria2_stream.sh inorder",
        check: "command -v aria2c",
        version: "aria2c --version | head -n1 | awk '{print $3}'",
        web_seed: true,
    },
    RealClient {
        name: "aria2",
        mode: "--stream-piece-selector=geom",
        scoring: "referee (late bytes)",
        cmd: "examples/aria2_stream.sh geom",
        check: "command -v aria2c",
        version: "aria2c --version | head -n1 | awk '{print $3}'",
        web_seed: false,
    },
    RealClient {
        name: "Transmission",
        mode: "none (plain client, the baseline)",
        scoring: "referee (late bytes)",
        cmd: "examples/transmission_plain.sh",
        check: "command -v transmission-cli",
        version: "transmission-cli --version 2>&1 | head -n1 | awk '{print $2}'",
        web_seed: true,
    },
    RealClient {
        name: "qBittorrent",
        mode: "sequential + first/last piece priority (Web API)",
        scoring: "referee (late bytes)",
        cmd: "examples/qbittorrent_stream.py",
        check: "command -v qbittorrent-nox",
        version: "qbittorrent-nox --version | awk '{print $2}' | tr -d v",
        web_seed: true,
    },
    RealClient {
        name: "WebTorrent",
        mode: "file stream read at the playback rate",
        scoring: "referee (late bytes)",
        cmd: "examples/webtorrent_stream.sh",
        check: "test -x /opt/webtorrent/node_modules/.bin/webtorrent",
        version: "node -p \"require('/opt/webtorrent/node_modules/webtorrent-cli/package.json').version\"",
        web_seed: true,
    },
    RealClient {
        name: "rqbit",
        mode: "HTTP stream read at the playback rate",
        scoring: "referee (late bytes)",
        cmd: "examples/rqbit_stream.sh",
        check: "test -x /opt/rqbit/bin/rqbit",
        version: "/opt/rqbit/bin/rqbit --version | awk '{print $2}'",
        web_seed: false,
    },
];

/// A row of the league table.
pub(crate) struct LeagueRow {
    /// Its name in the compare; `None` when not installed.
    entrant: Option<String>,
    client: String,
    version: String,
    mode: String,
    scoring: String,
    /// Why it has no figures.
    missing: Option<String>,
}

/// Seeds of the league table (`CLIENTS_SEEDS=N` overrides).
pub(crate) const CLIENTS_SEEDS: u64 = 5;
/// Seconds of the movie the league table plays (`CLIENTS_SECS=S` overrides; 0: all of it). Its
/// tables have always been of the first 60 s, where the start-up decides (about 65 minutes for
/// 16 entrants x 5 seeds); the whole movie would take about two and a half hours.
pub(crate) const CLIENTS_SECS: u64 = 60;

pub(crate) fn sh(cmd: &str) -> Option<String> {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .current_dir(ROOT)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Every installable real client and our three policies, on the standard experiment, as one
/// `testbed compare` (one experiment at a time), and the league table from it.
pub(crate) fn clients(b: &mut Bench) -> Result<()> {
    let (seeds, secs) = if b.quick {
        (1u64, 20u64)
    } else {
        (
            env_u64("CLIENTS_SEEDS", CLIENTS_SEEDS),
            env_u64("CLIENTS_SECS", CLIENTS_SECS),
        )
    };
    let dir = b.dir.join("clients");
    let (s, size) = movie_scenario(&dir, "default", secs)?;
    let mut rows: Vec<LeagueRow> = Vec::new();
    let mut args: Vec<String> = Vec::new();
    let ours = sh(&format!("{TESTBED} --version"))
        .unwrap_or_default()
        .replace("testbed ", "");
    for p in ["deadline", "sequential", "rarest"] {
        args.extend(["--policy".into(), p.into()]);
        rows.push(LeagueRow {
            entrant: Some(p.into()),
            client: format!("ours: vod-client `{p}`"),
            version: ours.clone(),
            mode: format!("policy `{p}`"),
            scoring: "VoD server at the deadline".into(),
            missing: None,
        });
    }
    for c in REAL_CLIENTS {
        let installed = sh(c.check).is_some();
        let version = if installed {
            sh(c.version).unwrap_or_else(|| "?".into())
        } else {
            String::new()
        };
        let line = format!("{ROOT}/{}", c.cmd);
        rows.push(LeagueRow {
            entrant: installed.then(|| line.clone()),
            client: c.name.into(),
            version,
            mode: c.mode.into(),
            scoring: c.scoring.into(),
            missing: (!installed).then(|| format!("not installed here (`{}` failed)", c.check)),
        });
        if installed {
            args.extend(["--client".into(), line.clone()]);
            if c.web_seed {
                rows.push(LeagueRow {
                    entrant: Some(format!("{line} [web seed]")),
                    client: c.name.into(),
                    version: rows.last().map(|r| r.version.clone()).unwrap_or_default(),
                    mode: c.mode.into(),
                    scoring: "VoD server as a BEP 19 web seed".into(),
                    missing: None,
                });
                args.extend(["--web-seed-client".into(), line]);
            }
        }
    }
    let last = 42 + seeds - 1;
    let entrants = rows.iter().filter(|r| r.entrant.is_some()).count();
    println!(
        "  configs/default.yaml, {size} B, seeds 42..{last}, {entrants} entrants, one experiment at a time"
    );
    let out = compare_out("clients", secs)?;
    let mut cmd_args: Vec<&str> = vec!["--seeds"];
    let seeds_arg = format!("42..{last}");
    cmd_args.push(&seeds_arg);
    cmd_args.extend(args.iter().map(String::as_str));
    let out_s = out.display().to_string();
    cmd_args.extend(["--out", &out_s]);
    let mut p = spawn(
        s.command("compare", &cmd_args)
            .current_dir(ROOT)
            .stdout(Stdio::null()),
    )?;
    let per_run = if secs == 0 { 400 } else { secs * 3 + 90 };
    let st = wait_exit(
        &mut p,
        "testbed compare",
        Duration::from_secs(per_run * seeds * entrants as u64),
    )?;
    if !st.success() {
        bail!("testbed compare exited with {st}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json"))?)?;
    let runs = std::fs::read_to_string(out.join("runs.csv"))?;
    let pct = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN) * 100.0;
    let stats = |name: &str| {
        summary["entrants"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["entrant"] == name)
            .cloned()
    };
    // Mean late pieces and first byte played per entrant, from runs.csv (quoted fields: a
    // client line has no comma, so a plain split is enough for these columns).
    let per_run = |name: &str, col: usize| -> Option<f64> {
        let v: Vec<f64> = runs
            .lines()
            .skip(1)
            .filter(|l| l.starts_with(&format!("{name},")))
            .filter_map(|l| l.split(',').nth(col)?.parse().ok())
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let mut table = String::from(
        "| client | version | mode | scored by | mean share (sd) | late pieces | first byte played | my upload, busiest 10 s |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let mut means: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    for LeagueRow {
        entrant,
        client,
        version,
        mode,
        scoring,
        missing,
    } in &rows
    {
        let Some(e) = entrant else {
            table.push_str(&format!(
                "| {client} |  | {mode} | {scoring} | {} |  |  |  |\n",
                missing.clone().unwrap_or_default()
            ));
            continue;
        };
        let Some(st) = stats(e) else { continue };
        let label = format!("{client} {version}, {mode}");
        let i = b.add(
            "clients",
            &format!(
                "{label}: share, {} (sd {:.1}, runs {})",
                scoring,
                pct(&st["sd"]),
                st["runs"]
            ),
            pct(&st["mean"]),
            "%",
        );
        means.insert(e.clone(), (i, pct(&st["mean"])));
        let fmt = |x: Option<f64>, unit: &str| x.map_or("-".into(), |v| format!("{v:.1}{unit}"));
        // The referee's measure of my client's upload (runs.csv columns 12 and 13): a client
        // above its cap buys the world's unchokes, and its row says so.
        let over = per_run(e, 13).map_or(0.0, |f| f * st["runs"].as_f64().unwrap_or(0.0));
        let upload = match over.round() as u64 {
            0 => fmt(per_run(e, 12), " KB/s"),
            k => format!(
                "{}, **above the cap in {k} runs**",
                fmt(per_run(e, 12), " KB/s")
            ),
        };
        table.push_str(&format!(
            "| {client} | {version} | {mode} | {scoring} | {:.1} % ({:.1}) | {} | {} | {upload} |\n",
            pct(&st["mean"]),
            pct(&st["sd"]),
            fmt(per_run(e, 6), ""),
            fmt(per_run(e, 11), " s"),
        ));
    }
    println!("{table}");
    // The target: deadline beats every real client, libtorrent's time-critical mode first.
    if let Some(&(i, d)) = means.get("deadline") {
        let tc = format!("{ROOT}/examples/libtorrent_vod.py --mode time-critical");
        if let Some(&(_, l)) = means.get(&tc) {
            b.anchor(i, "libtorrent time-critical", l, false);
        }
        let real: Vec<f64> = means
            .iter()
            .filter(|(k, _)| k.starts_with(ROOT))
            .map(|(_, &(_, m))| m)
            .collect();
        b.target(
            i,
            "beats every real client's share",
            !real.is_empty() && real.iter().all(|&m| d < m),
        );
    }
    if !b.quick {
        let note = format!(
            "Generated by `make bench BENCH=clients` on {}: configs/default.yaml ({}), seeds \
             42..{last}, one experiment at a time; my client's upload cap 60 KB/s, checked by the \
             referee (the last column); every run's dots: benches/clients.svg.\n\n",
            Command::new("date")
                .args(["-u", "+%Y-%m-%d"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default(),
            if secs == 0 {
                "the whole movie".to_string()
            } else {
                format!("its first {secs} s")
            }
        );
        for file in ["BENCHMARKS.md", "docs/clients.md"] {
            replace_between(
                &Path::new(ROOT).join(file),
                "<!-- clients:begin -->",
                "<!-- clients:end -->",
                &format!("{note}{table}"),
            )?;
        }
        std::fs::copy(
            out.join("compare.svg"),
            Path::new(ROOT).join("benches/clients.svg"),
        )?;
    }
    Ok(())
}

/// Replace what lies between the markers in `path` (which must have them).
pub(crate) fn replace_between(path: &Path, begin: &str, end: &str, body: &str) -> Result<()> {
    let old = std::fs::read_to_string(path)?;
    let (a, z) = match (old.find(begin), old.find(end)) {
        (Some(a), Some(z)) if a < z => (a, z),
        _ => bail!("{}: no {begin} .. {end} markers", path.display()),
    };
    std::fs::write(path, format!("{}{begin}\n{body}{}", &old[..a], &old[z..]))?;
    Ok(())
}
