//! The lab under Slurm, on a real single-node cluster of this host (tests/slurm/cluster.sh:
//! munged, slurmctld and slurmd with the task/cgroup plugin): `testbed compare --slurm` as one
//! job array, resumed, a testbed inside a job ended by `scancel` and by `testbed stop`, and a
//! world in two shards (examples/slurm_world.sbatch).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// A single-node cluster in a temp dir, stopped when dropped (also when the test fails).
struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Cluster {
    fn start() -> Option<Cluster> {
        for tool in ["slurmctld", "slurmd", "munged", "sbatch"] {
            if !have_tool(tool) {
                return None;
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slurm/cluster.sh");
        let out = Command::new(&script)
            .arg("start")
            .arg(dir.path().join("cluster"))
            .arg("task/cgroup")
            .output()
            .unwrap();
        let cluster = Cluster {
            conf: dir.path().join("cluster/slurm.conf"),
            dir,
        };
        assert!(
            out.status.success(),
            "cluster.sh start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(cluster)
    }

    /// A Slurm command (or testbed) that talks to this cluster.
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    fn queue_is_empty(&self) -> bool {
        let out = self
            .cmd("squeue")
            .args(["-h", "-o", "%i"])
            .output()
            .unwrap();
        out.status.success() && out.stdout.iter().all(u8::is_ascii_whitespace)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.cmd("scancel").arg("--user=root").status();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slurm/cluster.sh");
        let _ = Command::new(script)
            .arg("stop")
            .arg(self.dir.path().join("cluster"))
            .status();
    }
}

fn lab() -> Scenario {
    Scenario::new(
        &[("movie.bin", content(200_000, 5))],
        "interval: 1",
        "seed: 3\ntorrents: {piece_length: 16384}\n\
         world: {clients: 3, seeds: 1, upload_rate: 100, start_fraction: {min: 0.0, max: 0.3}, linger: 30}\n\
         my_client: {rate: 100, delay: 2, prefetch: 1, max_upload_rate: 50}\n",
    )
}

#[test]
fn slurm_runs_a_compare_array_a_testbed_in_a_job_and_a_sharded_world() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let s = lab();
    let out = s.root().join("out");
    let out_s = out.display().to_string();
    // What a failed compare said, and its array tasks' logs.
    let why = |o: &std::process::Output, out: &std::path::Path| {
        let mut s = String::from_utf8_lossy(&o.stderr).into_owned();
        for e in std::fs::read_dir(out.join("slurm/logs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            s += &format!("\n--- {}\n", e.path().display());
            s += &String::from_utf8_lossy(&std::fs::read(e.path()).unwrap_or_default());
        }
        s
    };
    let compare = |seeds: &str, extra: &[&str]| {
        let mut c = cluster.cmd(testbed_bin());
        c.current_dir(s.root())
            .args(["compare", "--config"])
            .arg(&s.config)
            .args([
                "--seeds", seeds, "--policy", "deadline", "--policy", "rarest",
            ])
            .args(["--out", &out_s, "--slurm", "--time", "5:00"])
            // Four testbeds on two cores: busy, and kept (the flag is tested elsewhere).
            .arg("--keep-busy")
            .args(extra);
        c.output().unwrap()
    };

    // 2 entrants x 2 seeds: four array tasks, each its own testbed.
    let o = compare("1..2", &[]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}{}", why(&o, &out));
    assert!(text.contains("Slurm job"), "{text}");
    let csv = String::from_utf8(read(&out.join("runs.csv"))).unwrap();
    let rows = runs_csv(&out.join("runs.csv"));
    assert_eq!(rows.len(), 4, "{csv}");
    for r in &rows {
        assert_eq!(r["placement"], "slurm", "a Slurm row says so: {r:?}");
        assert!(
            r["first_piece_at"].parse::<f64>().is_ok(),
            "first_piece_at: {r:?}"
        );
        assert_eq!(r["my_client_exit"], "exit code 0", "{r:?}");
    }
    let md = String::from_utf8(read(&out.join("compare.md"))).unwrap();
    assert!(md.contains("4 of the 4 runs as Slurm array tasks"), "{md}");
    let job = String::from_utf8(read(&out.join("slurm/job"))).unwrap();
    assert!(job.trim().parse::<u64>().is_ok(), "{job}");

    // The same array under the Shadow engine: each task a simulation.
    if crate::shadow::have_shadow() {
        let sim = s.root().join("out-shadow");
        let mut c = cluster.cmd(testbed_bin());
        c.current_dir(s.root())
            .args(["compare", "--config"])
            .arg(&s.config)
            .args(["--seeds", "1", "--policy", "deadline", "--policy", "rarest"])
            .arg("--out")
            .arg(&sim)
            .args(["--slurm", "--time", "5:00", "--engine", "shadow"]);
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", why(&o, &sim));
        let rows = runs_csv(&sim.join("runs.csv"));
        assert_eq!(rows.len(), 2, "{rows:?}");
        for r in &rows {
            assert_eq!(
                (r["engine"].as_str(), r["placement"].as_str()),
                ("shadow", "slurm")
            );
            assert_eq!(r["my_client_exit"], "exit code 0", "{r:?}");
        }
        let md = String::from_utf8(read(&sim.join("compare.md"))).unwrap();
        assert!(
            md.contains("2 of the 2 runs simulated by the Shadow engine"),
            "{md}"
        );
    }

    // The same command with one more seed submits only that seed's two runs; `--run-dir`
    // puts task K's run folder at DIR-K (a node-local disk on a real cluster).
    let local = s.root().join("local");
    let o = compare("1..3", &["--run-dir", &local.display().to_string()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}{}", why(&o, &out));
    assert!(text.contains("4 of 6 runs already"), "{text}");
    let csv = String::from_utf8(read(&out.join("runs.csv"))).unwrap();
    assert_eq!(csv.lines().count(), 1 + 6, "{csv}");
    for k in 0..2 {
        let summary = s.root().join(format!("local-{k}/summary.json"));
        assert!(summary.exists(), "{} is missing", summary.display());
    }
    assert!(in_cmdline(&out_s).is_empty(), "a task's processes are left");

    // A rebuild while the array runs (a copy of the binaries, one task at a time with
    // --exclusive): the pending tasks are cancelled, the running one's row is gathered, and
    // the compare exits non-zero; the same command resumes the rest with the new build.
    let bin = BuildCopy::new(s.root().join("bin"));
    let out2 = s.root().join("out-rebuilt");
    let copy = |log: &str| {
        let mut c = cluster.cmd(&bin.testbed().display().to_string());
        let log = std::fs::File::create(s.root().join(log)).unwrap();
        c.current_dir(s.root())
            .args(["compare", "--config"])
            .arg(&s.config)
            .args([
                "--seeds", "5..6", "--policy", "deadline", "--policy", "rarest",
            ])
            .arg("--out")
            .arg(&out2)
            .args([
                "--slurm",
                "--time",
                "5:00",
                "--sbatch-arg=--exclusive",
                "--keep-busy",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        c
    };
    let mut cmp = Proc::spawn("testbed compare --slurm (a copy)", &mut copy("rebuilt.log"));
    wait_until("the array's first row", Duration::from_secs(120), || {
        runs_csv_rows(&out2) >= 1
    });
    bin.rebuild("vod-client");
    let status = cmp
        .wait_timeout(Duration::from_secs(120))
        .expect("the compare ends after a rebuild");
    let log = String::from_utf8_lossy(&read(&s.root().join("rebuilt.log"))).into_owned();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("vod-client was replaced (rebuilt?)")
            && log.contains("cancelling the pending tasks of Slurm job"),
        "{log}"
    );
    let kept = runs_csv_rows(&out2);
    assert!((1..4).contains(&kept), "{kept} rows: {log}");
    assert!(cluster.queue_is_empty(), "the array left the queue: {log}");
    assert!(
        in_cmdline(&out2.display().to_string()).is_empty(),
        "a task's processes are left"
    );
    let o = copy("resumed.log").status().unwrap();
    let log = String::from_utf8_lossy(&read(&s.root().join("resumed.log"))).into_owned();
    assert!(o.success(), "{log}");
    assert!(
        log.contains(&format!("{kept} of 4 runs already in")),
        "{log}"
    );
    assert_eq!(runs_csv_rows(&out2), 4, "{log}");

    // A testbed started inside a job (task/cgroup) is ended by the end of the job: scancel.
    let run_dir = s.root().join("in-job");
    let script = s.root().join("job.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{} start --config {} --run-dir {} --port 0\nsleep 600\n",
            testbed_bin(),
            s.config.display(),
            run_dir.display()
        ),
    )
    .unwrap();
    let submit = || {
        let o = cluster
            .cmd("sbatch")
            .arg("--parsable")
            .arg(format!("--output={}", s.root().join("job.log").display()))
            .arg(&script)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    let pid_file = run_dir.join("testbed.pid");
    let run_id = || -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&pid_file).ok()?).ok()?;
        Some(v["run_id"].as_str()?.to_string())
    };
    let job = submit();
    wait_until(
        "the testbed in the job is up",
        Duration::from_secs(60),
        || run_id().is_some_and(|id| marked(&id).len() >= 5),
    );
    let id = run_id().unwrap();
    assert!(cluster.cmd("scancel").arg(&job).status().unwrap().success());
    wait_until(
        "scancel ends every process of the testbed",
        Duration::from_secs(60),
        || marked(&id).is_empty(),
    );

    // And `testbed stop` from outside the job ends it too, the job going on.
    let _ = std::fs::remove_file(&pid_file);
    let job = submit();
    wait_until("the second testbed is up", Duration::from_secs(60), || {
        run_id().is_some_and(|id| marked(&id).len() >= 5)
    });
    let id = run_id().unwrap();
    let o = s.testbed("stop", &["--run-dir", &run_dir.display().to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_until(
        "stop ends the testbed in the job",
        Duration::from_secs(30),
        || marked(&id).is_empty(),
    );
    assert!(cluster.cmd("scancel").arg(&job).status().unwrap().success());
    wait_until("the queue empties", Duration::from_secs(60), || {
        cluster.queue_is_empty()
    });

    // A world in K = 2 shards (examples/slurm_world.sbatch), here both on the one node: the
    // experiment with shard 0, and `testbed world --shard 1/2` announcing to its tracker.
    let root = s.root().join("sharded");
    let port = free_port();
    let o = cluster
        .cmd("sbatch")
        .current_dir(s.root())
        .args(["--parsable", "--nodes=1", "--ntasks=2"])
        .arg(format!(
            "--output={}",
            s.root().join("sharded.log").display()
        ))
        .env("TESTBED", testbed_bin())
        .env("TESTBED_PORT", port.to_string())
        .env("TESTBED_PUBLIC_HOST", "127.0.0.1")
        .env("RUN_ROOT", &root)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/slurm_world.sbatch"))
        .arg(&s.config)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_until(
        "the sharded experiment's job ends",
        Duration::from_secs(120),
        || cluster.queue_is_empty(),
    );
    let log = String::from_utf8_lossy(&read(&s.root().join("sharded.log"))).into_owned();
    let summary: serde_json::Value =
        serde_json::from_slice(&read(&root.join("node-0/summary.json"))).unwrap_or_default();
    assert_eq!(summary["my_client_exit"], "exit code 0", "{log}");
    // Shard 0 ran slots 0 and 2 (the seed and a client), shard 1 slots 1 and 3; the
    // experiment's tracker heard from both.
    let tracker =
        String::from_utf8_lossy(&read(&root.join("node-0/logs/tracker.log"))).into_owned();
    for id in [
        "-TB0100-S0000",
        "-TB0100-W0001",
        "-TB0100-W0002",
        "-TB0100-W0003",
    ] {
        assert!(tracker.contains(id), "{id} never announced:\n{log}");
    }
    let shard1 = std::fs::read_dir(root.join("node-1/logs"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(shard1 > 0, "shard 1 ran in its own run folder: {log}");
    wait_until(
        "nothing of the sharded world is left",
        Duration::from_secs(30),
        || in_cmdline(&root.display().to_string()).is_empty(),
    );
}
