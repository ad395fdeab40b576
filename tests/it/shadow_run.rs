//! `testbed run --engine shadow`: the whole experiment as one Shadow simulation. The same
//! config and seed give the same run (referee.csv byte for byte, summary.json but for its
//! wall-clock fields), another seed another; what cannot run says so in one line; a stalled or
//! stopped simulation ends with every process it ran.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::common::*;
use crate::shadow::have_shadow;

/// A small world: one seed and eight partial clients (which complete, linger and are
/// replaced), my client the default vod-client on a 1 MiB movie at 60 KB/s.
fn small_world(seed: u64, rate: u32) -> Scenario {
    Scenario::new(
        &[("movie.bin", content(1 << 20, 61))],
        "interval: 5",
        &format!(
            "seed: {seed}\nworld: {{clients: 8, seeds: 1, upload_rate: 50, linger: {{min: 2, max: 4}}}}\n\
             my_client: {{rate: {rate}, max_upload_rate: 50}}\n"
        ),
    )
}

/// `testbed run --engine shadow` of `lab` into `run_dir`, with `my_client`.
fn run_in(lab: &Scenario, run_dir: &Path, my_client: &[&str]) -> Output {
    let mut args = vec!["--engine", "shadow", "--run-dir", run_dir.to_str().unwrap()];
    args.extend(my_client);
    let mut cmd = lab.command("run", &args);
    let mut p = Proc::spawn(
        "testbed run --engine shadow",
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    );
    // Bounded: the test's own limit, beyond the engine's.
    assert!(
        p.wait_timeout(Duration::from_secs(240)).is_some(),
        "testbed run --engine shadow did not end within 240 s"
    );
    p.output()
}

/// summary.json without the fields of the wall clock and the run's identity.
fn summary_sans_wall_clock(run_dir: &Path) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_slice(&read(&run_dir.join("summary.json"))).unwrap();
    for k in ["run_id", "seconds"] {
        v.as_object_mut().unwrap().remove(k);
    }
    v
}

/// Two simulations of one seed are the same run; another seed is another run. The run is
/// scored as the real engine scores it, and afterwards `testbed status` and the page show it.
#[test]
fn a_run_under_shadow_is_the_same_run_twice() {
    if !have_shadow() {
        return;
    }
    let lab = small_world(7, 60);
    let fresh_before = read(&lab.fresh_dir().join("movie.bin"));
    let runs: Vec<_> = ["a", "b"].iter().map(|n| lab.root().join(n)).collect();
    for r in &runs {
        let out = run_in(&lab, r, &[]);
        let text = ok(&out);
        assert!(text.contains("score: -"), "{text}");
        for f in [
            "summary.json",
            "referee.csv",
            "report.svg",
            "finished.json",
            "status.html",
        ] {
            assert!(r.join(f).is_file(), "{}: no {f}", r.display());
        }
    }
    let referee: Vec<_> = runs.iter().map(|r| read(&r.join("referee.csv"))).collect();
    assert!(referee[0].len() > 100, "a referee.csv with rows");
    assert!(
        referee[0] == referee[1],
        "two simulations of seed 7 gave two referee.csv"
    );
    assert_eq!(
        summary_sans_wall_clock(&runs[0]),
        summary_sans_wall_clock(&runs[1])
    );
    let summary = summary_sans_wall_clock(&runs[0]);
    assert_eq!(summary["my_client_exit"], "exit code 0", "{summary}");
    // The world came and went: a client completed, lingered and was replaced.
    let status = lab.testbed("status", &["--run-dir", runs[0].to_str().unwrap()]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("Shadow simulation of run"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("world") && !l.contains("   0 -TB")),
        "no world slot past its first generation:\n{text}"
    );
    let page = std::fs::read_to_string(runs[0].join("status.html")).unwrap();
    assert!(
        page.contains("movie.bin") && !page.contains("<script") && !page.contains("/api/"),
        "the page of the end: no script, no link to a server"
    );
    // Another seed, another world.
    let other = small_world(8, 60);
    let c = lab.root().join("c");
    ok(&run_in(&other, &c, &[]));
    assert!(
        read(&c.join("referee.csv")) != referee[0],
        "seeds 7 and 8 gave the same run"
    );
    assert!(
        read(&lab.fresh_dir().join("movie.bin")) == fresh_before,
        "fresh-files changed"
    );
}

/// `network:` becomes the simulated links: my client's round trip of 300 ms and the world's
/// of 100 ms are edges of 150 and 50 ms to the centre, and my client's first piece comes later
/// than on the LAN. Jitter, which Shadow has not, is named in a warning.
#[test]
fn a_network_section_becomes_the_simulated_links() {
    if !have_shadow() {
        return;
    }
    let lan = small_world(7, 60);
    let net = Scenario::new(
        &[("movie.bin", content(1 << 20, 61))],
        "interval: 5",
        "seed: 7\nworld: {clients: 8, seeds: 1, upload_rate: 50, linger: {min: 2, max: 4}}\n\
         my_client: {rate: 60, max_upload_rate: 50}\n\
         network: {rtt_ms: 100, jitter_ms: 2, my_client: {rtt_ms: 300, download_rate: 400}}\n",
    );
    // When the first block from the world reached my client, seconds after it started.
    let first_piece = |lab: &Scenario| {
        let dir = lab.root().join("r");
        let out = run_in(lab, &dir, &[]);
        ok(&out);
        let s = summary_sans_wall_clock(&dir);
        let at = s["referee"]["first_block_at"].as_f64().unwrap();
        (at, dir, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (on_lan, _, _) = first_piece(&lan);
    let (on_net, dir, err) = first_piece(&net);
    assert!(err.contains("jitter"), "{err}");
    let yaml = std::fs::read_to_string(dir.join("shadow/shadow.yaml")).unwrap();
    assert!(
        yaml.contains("latency \"150000 us\"") && yaml.contains("latency \"50000 us\""),
        "{yaml}"
    );
    assert!(
        yaml.contains("host_bandwidth_down \"3200 Kibit\""),
        "{yaml}"
    );
    assert!(
        on_net > on_lan + 0.3,
        "first piece at {on_net} s with the network, {on_lan} s without"
    );
}

/// Shadow missing, and a my client that Shadow cannot run: one line each, naming what and
/// why, and no simulation.
#[test]
fn what_shadow_cannot_run_is_refused_in_one_line() {
    let lab = small_world(7, 60);
    let run_dir = lab.root().join("r");
    let mut cmd = lab.command(
        "run",
        &["--engine", "shadow", "--run-dir", run_dir.to_str().unwrap()],
    );
    let out = cmd
        .env("TESTBED_SHADOW", "/nonexistent/shadow")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("/nonexistent/shadow") && err.contains("make deps"),
        "{err}"
    );
    // A simulation is a whole run: nothing live to start; and no world.command in it.
    let live = Scenario::new(
        &[("movie.bin", content(1 << 16, 62))],
        "",
        "engine: shadow\n",
    );
    let out = live.testbed("start", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("testbed run"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let own = Scenario::new(
        &[("movie.bin", content(1 << 16, 63))],
        "",
        "world: {command: /bin/true}\n",
    );
    let out = own.testbed("run", &["--engine", "shadow"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("world.command"),
        "{err}"
    );
    if !have_shadow() {
        return;
    }
    let static_bin = static_program(lab.root());
    let out = run_in(&lab, &run_dir, &[static_bin.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(static_bin.to_str().unwrap()) && err.contains("statically linked"),
        "{err}"
    );
    assert!(!run_dir.join("shadow").exists(), "a simulation was made");
}

/// A statically linked program: /sbin/ldconfig where it is one, else one built with gcc.
fn static_program(dir: &Path) -> std::path::PathBuf {
    let ldconfig = Path::new("/sbin/ldconfig");
    let out = std::process::Command::new("file").arg(ldconfig).output();
    if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("static")) {
        return ldconfig.to_path_buf();
    }
    let src = dir.join("s.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
    let bin = dir.join("static-client");
    let built = std::process::Command::new("gcc")
        .args(["-static", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .unwrap();
    assert!(built.success(), "gcc -static");
    bin
}

/// A my client that busy-loops stalls the simulated clock: the run is ended by the stall
/// limit and says so. A long simulation is ended by `testbed stop`, another by SIGINT. Each
/// time nothing of the run survives.
#[test]
fn a_stalled_or_stopped_simulation_ends_with_all_it_ran() {
    if !have_shadow() {
        return;
    }
    let lab = small_world(7, 60);
    let stalled = lab.root().join("stalled");
    let mut cmd = lab.command(
        "run",
        &[
            "--engine",
            "shadow",
            "--run-dir",
            stalled.to_str().unwrap(),
            "sh",
            "-c",
            "while :; do :; done",
        ],
    );
    let mut p = Proc::spawn(
        "stalled",
        cmd.env("TESTBED_SHADOW_STALL", "3")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    );
    assert!(
        p.wait_timeout(Duration::from_secs(60)).is_some(),
        "a stalled run did not end"
    );
    let out = p.output();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("stalled"), "{err}");
    assert_nothing_left(&stalled);
    // A movie of 200 s at 5 KB/s: stopped long before its end.
    let slow = small_world(7, 5);
    for how in ["stop", "SIGINT"] {
        let run_dir = slow.root().join(how);
        let mut cmd = slow.command(
            "run",
            &["--engine", "shadow", "--run-dir", run_dir.to_str().unwrap()],
        );
        let mut p = Proc::spawn(
            how,
            cmd.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped()),
        );
        let log = run_dir.join("shadow/shadow.log");
        wait_until("the simulation runs", Duration::from_secs(60), || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("at simtime 4"))
        });
        if how == "stop" {
            ok(&slow.testbed("stop", &["--run-dir", run_dir.to_str().unwrap()]));
        } else {
            p.signal(nix::sys::signal::Signal::SIGINT);
        }
        assert!(
            p.wait_timeout(Duration::from_secs(20)).is_some(),
            "{how}: the run did not end"
        );
        let out = p.output();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("stopped"),
            "{how}: {err}"
        );
        assert_nothing_left(&run_dir);
    }
}

/// No process of the run in `run_dir` (Shadow, or one it ran) is alive.
fn assert_nothing_left(run_dir: &Path) {
    let left = in_cmdline(run_dir.to_str().unwrap());
    assert!(
        left.is_empty(),
        "survivors of {}: {left:?}",
        run_dir.display()
    );
}
