//! Section `vod`: `testbed compare` of the three policies on the three scenarios
//! (`VOD_ENGINE=shadow`: under the Shadow engine, each figure's name saying so).

use super::*;

pub(crate) fn vod(b: &mut Bench) -> Result<()> {
    // `testbed compare` on each scenario: the three policies on every seed, one experiment at a
    // time (side by side, two cores made the spread 8-13 points), CIs from its bootstrap.
    let (seeds, secs) = if b.quick {
        (1u64, 30u64)
    } else {
        (
            env_u64("VOD_SEEDS", VOD_SEEDS),
            env_u64("VOD_SECS", VOD_SECS),
        )
    };
    for scenario in ["default", "scarce", "network"] {
        vod_compare(b, scenario, seeds, secs)
            .with_context(|| format!("configs/{scenario}.yaml"))?;
        if b.quick {
            break;
        }
    }
    Ok(())
}

/// A whole number from the environment, or `default`.
pub(crate) fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seeds of the VoD comparison (`VOD_SEEDS=N` overrides): five, so that the section (two
/// scenarios x three policies x five seeds of about two minutes) takes about an hour.
pub(crate) const VOD_SEEDS: u64 = 5;
/// Seconds of the movie played (0: all of it; `VOD_SECS=S` overrides).
pub(crate) const VOD_SECS: u64 = 0;

/// `configs/{scenario}.yaml` in `dir`, on the movie or its first `secs` seconds: the scenario
/// and the size of what my client plays.
pub(crate) fn movie_scenario(dir: &Path, scenario: &str, secs: u64) -> Result<(Scenario, usize)> {
    let _ = std::fs::remove_dir_all(dir);
    let mut cfg: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(
        Path::new(ROOT).join(format!("configs/{scenario}.yaml")),
    )?)?;
    let movie = std::fs::read(Path::new(ROOT).join("fresh-files/movie.mp4"))?;
    let rate_kb = cfg["my_client"]["rate"].as_f64().unwrap_or(60.0);
    let (name, data) = if secs == 0 {
        ("movie.mp4".to_string(), movie)
    } else {
        let prefix = ((secs as f64 * rate_kb * 1024.0) as usize).min(movie.len());
        (format!("movie-{secs}s.mp4"), movie[..prefix].to_vec())
    };
    if !cfg["torrents"].is_mapping() {
        cfg["torrents"] = serde_yaml::Mapping::new().into();
    }
    cfg["torrents"]["my_torrent"] = name.clone().into();
    let size = data.len();
    Ok((
        Scenario::from_config(dir, &[(name.as_str(), data)], cfg)?,
        size,
    ))
}

/// Where a long section's `testbed compare` keeps its runs: in `run/bench-compare/`, which a
/// new `make bench` does not clear (it clears `run/bench/`), named by the section, the movie's length and the build (a digest of the
/// `testbed` and `vod-client` binaries), so that the same command after an interruption resumes
/// it (compare skips the runs in its runs.csv), and a new build starts over instead of mixing
/// its runs with an older one's.
pub(crate) fn compare_out(section: &str, secs: u64) -> Result<PathBuf> {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    for bin in [TESTBED, env!("CARGO_BIN_EXE_vod-client")] {
        h.update(std::fs::read(bin).with_context(|| bin.to_string())?);
    }
    let build: String = h.finalize()[..6]
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    let movie = if secs == 0 {
        "movie".to_string()
    } else {
        format!("{secs}s")
    };
    Ok(Path::new(ROOT)
        .join("run/bench-compare")
        .join(format!("{section}-{movie}-{build}")))
}

pub(crate) fn vod_compare(b: &mut Bench, scenario: &str, seeds: u64, secs: u64) -> Result<()> {
    // `VOD_ENGINE=shadow`: the same compares under the Shadow engine, named so in the table.
    let shadow = std::env::var("VOD_ENGINE").as_deref() == Ok("shadow");
    let label = match shadow {
        true => format!("{scenario} under Shadow"),
        false => scenario.to_string(),
    };
    let dir = b.dir.join(format!("vod-{scenario}"));
    let (s, size) = movie_scenario(&dir, scenario, secs)?;
    let last = 42 + seeds - 1;
    println!(
        "  configs/{scenario}.yaml, {} ({size} B), seeds 42..{last}, one experiment at a time",
        if secs == 0 {
            "the whole movie".to_string()
        } else {
            format!("the first {secs} s of the movie")
        }
    );
    let out = compare_out(&format!("vod-{scenario}"), secs)?;
    let mut p = spawn(
        s.command(
            "compare",
            &[
                "--seeds",
                &format!("42..{last}"),
                "--policy",
                "rarest",
                "--policy",
                "sequential",
                "--policy",
                "deadline",
                "--out",
                out.to_str().unwrap(),
                "--engine",
                if shadow { "shadow" } else { "real" },
            ],
        )
        .stdout(Stdio::null()),
    )?;
    let per_run = if secs == 0 { 400 } else { secs * 3 + 60 };
    let st = wait_exit(
        &mut p,
        "testbed compare",
        Duration::from_secs(per_run * seeds * 3),
    )?;
    if !st.success() {
        bail!("testbed compare exited with {st}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json"))?)?;
    let pct = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN) * 100.0;
    let mut mean = BTreeMap::new();
    for e in summary["entrants"].as_array().into_iter().flatten() {
        let p = e["entrant"].as_str().unwrap_or("?").to_string();
        let i = b.add(
            "vod",
            &format!(
                "{label}: server share, {p} (95 % CI {:.1}..{:.1}, sd {:.1}, runs: {})",
                pct(&e["ci95"][0]),
                pct(&e["ci95"][1]),
                pct(&e["sd"]),
                e["runs"]
            ),
            pct(&e["mean"]),
            "%",
        );
        mean.insert(p.clone(), (i, pct(&e["mean"])));
        // The referee's split: what the world sent and what my client wasted of it.
        if e["wasted_share"].is_f64() {
            b.add(
                "vod",
                &format!(
                    "{label}: wasted, {p} (of {:.1} % sent by the world{})",
                    pct(&e["world_share"]),
                    if e["wasted_sd"].is_f64() {
                        format!("; sd {:.1}", pct(&e["wasted_sd"]))
                    } else {
                        String::new()
                    }
                ),
                pct(&e["wasted_share"]),
                "%",
            );
        }
    }
    // A pair of `list` ("pairs": the share; "waste_pairs": the waste), whichever way round.
    let pair = |list: &str, a: &str, b: &str| {
        summary[list]
            .as_array()
            .into_iter()
            .flatten()
            .find(|q| (q["a"] == a && q["b"] == b) || (q["a"] == b && q["b"] == a))
            .cloned()
            .unwrap_or_default()
    };
    let (i, d) = mean["deadline"];
    let (_, r) = mean["rarest"];
    let best = mean.values().all(|&(_, m)| d <= m);
    // The paired differences are the verdicts; a row each, so the table shows them with their
    // intervals and not only the entrants' means.
    let vs_seq = pair("pairs", "deadline", "sequential");
    let rows = [
        ("", &vs_seq),
        ("", &pair("pairs", "deadline", "rarest")),
        ("wasted, ", &pair("waste_pairs", "deadline", "sequential")),
    ];
    for (what, q) in rows.into_iter().filter(|(_, q)| !q.is_null()) {
        b.add(
            "vod",
            &format!(
                "{label}: {what}{} − {}, paired over {} seeds (95 % CI {:.1}..{:.1}): {}",
                q["a"].as_str().unwrap_or("?"),
                q["b"].as_str().unwrap_or("?"),
                q["pairs"],
                pct(&q["ci95"][0]),
                pct(&q["ci95"][1]),
                q["verdict"].as_str().unwrap_or("?")
            ),
            pct(&q["mean_difference"]),
            "points",
        );
    }
    b.anchor(i, "rarest", r, false);
    b.target(
        i,
        "<= 0.3x rarest, best of three, CI against sequential excludes 0",
        d <= 0.3 * r && best && vs_seq["verdict"] == "deadline better",
    );
    // The compare folder stays (runs.csv, compare.md, the last run) until the next bench.
    Ok(())
}
