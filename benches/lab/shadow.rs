//! Section `shadow`: the standard experiment (`configs/default.yaml`, vod-client's default
//! policy) under the Shadow engine, `testbed run --engine shadow`, with Shadow 3.3.0 as `make
//! deps` builds it into /opt/shadow and its threads as the engine picks them (this machine's
//! cores, at most 4). Wall time of the whole run (plan, simulation, score), simulated seconds
//! per wall second, and whether a second run gave the same referee.csv byte for byte.

use super::*;

use support::SHADOW;

pub(crate) fn shadow(b: &mut Bench) -> Result<()> {
    if !Path::new(SHADOW).is_file() {
        bail!("{SHADOW} is missing (make deps builds it)");
    }
    let dir = b.dir.join("shadow");
    std::fs::create_dir_all(&dir)?;
    let runs = if b.quick { 1 } else { 2 };
    let mut walls = Vec::new();
    let mut referees = Vec::new();
    let mut simulated = 0.0;
    for k in 0..runs {
        let run = dir.join(format!("run-{k}"));
        let t = Instant::now();
        let out = Command::new(TESTBED)
            .current_dir(ROOT)
            .args([
                "run",
                "--engine",
                "shadow",
                "--config",
                "configs/default.yaml",
            ])
            .arg("--run-dir")
            .arg(&run)
            .stdin(Stdio::null())
            .output()?;
        walls.push(t.elapsed().as_secs_f64());
        if !out.status.success() {
            bail!(
                "testbed run --engine shadow: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        referees.push(std::fs::read(run.join("referee.csv"))?);
        let yaml = std::fs::read_to_string(run.join("shadow/shadow.yaml"))?;
        simulated = yaml
            .lines()
            .find_map(|l| l.trim().strip_prefix("stop_time: "))
            .and_then(|v| v.trim_end_matches(" ms").parse::<f64>().ok())
            .map_or(0.0, |ms| ms / 1000.0);
    }
    let wall = walls.iter().sum::<f64>() / walls.len() as f64;
    let i = b.add(
        "shadow",
        &format!("standard experiment, {simulated:.0} s simulated: wall time (runs {walls:.1?} s)"),
        wall,
        "s",
    );
    if runs == 2 {
        let same = referees[0] == referees[1];
        b.target(
            i,
            "<= 15 s; two runs' referee.csv byte-identical",
            wall <= 15.0 && same,
        );
    } else {
        b.target(i, "<= 15 s", wall <= 15.0);
    }
    let j = b.add(
        "shadow",
        "standard experiment: simulated seconds per wall second",
        simulated / wall,
        "x",
    );
    b.target(j, ">= 8x real time", simulated / wall >= 8.0);
    Ok(())
}
