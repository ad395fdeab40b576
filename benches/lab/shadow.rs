//! Section `shadow`: the standard experiment's world under Shadow 3.3.0 (`make deps` builds it
//! into /opt/shadow): the tracker, two seeds and twenty empty leechers of the movie at 70 KB/s,
//! 130 s simulated on the `1_gbit_switch` graph with `--parallelism 2`. Wall time until the
//! simulation ends, whether every leecher completed, and whether a second simulation gave the
//! same tracker log byte for byte. (The world alone, before the Shadow engine runs the whole
//! experiment: my client, the VoD server, the world's partial starts.)

use super::*;

use support::SHADOW;

/// Simulated seconds.
const SIMULATED: f64 = 130.0;

pub(crate) fn shadow(b: &mut Bench) -> Result<()> {
    if !Path::new(SHADOW).is_file() {
        bail!("{SHADOW} is missing (make deps builds it)");
    }
    let dir = b.dir.join("shadow");
    std::fs::create_dir_all(&dir)?;
    let movie = Path::new(ROOT).join("fresh-files/movie.mp4");
    let torrent = dir.join("movie.mp4.torrent");
    let st = Command::new(TESTBED)
        .args([
            "make-torrent",
            "--announce",
            "http://11.0.0.1:6970/announce",
        ])
        .args(["--piece-length", "32768", "-o"])
        .arg(&torrent)
        .arg(&movie)
        .stdout(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("testbed make-torrent {} failed", movie.display());
    }
    let config = dir.join("shadow.yaml");
    std::fs::write(&config, world(&movie, &torrent))?;
    let runs = if b.quick { 1 } else { 2 };
    let mut walls = Vec::new();
    let mut logs = Vec::new();
    for k in 0..runs {
        let run = dir.join(format!("run-{k}"));
        std::fs::create_dir_all(&run)?;
        let t = Instant::now();
        let Some(status) = support::run_shadow(&run, &config, 2, Duration::from_secs(300))? else {
            bail!("shadow did not end within 300 s ({})", run.display());
        };
        walls.push(t.elapsed().as_secs_f64());
        if !status.success() {
            bail!(
                "shadow: {status} (see {})",
                run.join("shadow.log").display()
            );
        }
        let tracker_log = run.join("shadow.data/hosts/tracker/tracker.log");
        let text = std::fs::read_to_string(&tracker_log)?;
        let completed = text.matches(" completed ").count();
        if completed < 20 {
            bail!(
                "{completed} of 20 leechers completed ({})",
                tracker_log.display()
            );
        }
        logs.push(text);
    }
    let wall = walls[0];
    let i = b.add(
        "shadow",
        &format!("standard world, {SIMULATED:.0} s simulated: wall time (runs {walls:.1?} s)"),
        wall,
        "s",
    );
    if runs == 2 {
        b.target(i, "two simulations byte-identical", logs[0] == logs[1]);
    }
    b.add(
        "shadow",
        "standard world: simulated seconds per wall second",
        SIMULATED / wall,
        "x",
    );
    Ok(())
}

/// The Shadow config of the standard world: tracker, 2 seeds, 20 empty leechers, 70 KB/s caps.
fn world(movie: &Path, torrent: &Path) -> String {
    let (bin, torrent) = (TESTBED, torrent.display());
    let host = |name: &str, args: &str, start: u32| {
        format!(
            "  {name}:\n    network_node_id: 0\n    processes:\n    - path: {bin}\n      \
             args: {args}\n      start_time: {start}s\n      expected_final_state: running\n"
        )
    };
    let mut yaml = format!(
        "general:\n  stop_time: {SIMULATED}s\n  seed: 42\n  model_unblocked_syscall_latency: false\n\
         network:\n  graph:\n    type: 1_gbit_switch\nhosts:\n  tracker:\n    network_node_id: 0\n    \
         ip_addr: 11.0.0.1\n    processes:\n    - path: {bin}\n      args: tracker --bind 0.0.0.0 \
         --port 6970 --log tracker.log\n      start_time: 0s\n      expected_final_state: running\n"
    );
    let peer = "peer --bind 0.0.0.0 --port 6881 --max-upload-rate 70 --first-rechoke 1";
    for k in 0..2 {
        let args = format!("{peer} --seed --data {} {torrent}", movie.display());
        yaml.push_str(&host(&format!("seed{k}"), &args, 1));
    }
    for k in 0..20 {
        let args = format!("{peer} --data movie.mp4 {torrent}");
        yaml.push_str(&host(&format!("leecher{k}"), &args, 2));
    }
    yaml
}
