//! The processes of `testbed sim --plan PLAN ROLE` inside a Shadow simulation: what the real
//! engine's supervisor does outside, done where the simulated clock runs.
//!
//! * `services`: the tracker (its access log in `run/logs/tracker.log`) and the VoD server,
//!   which appends every range it sends to `run/shadow/vod.jsonl` as it sends it: Shadow ends a
//!   simulation by killing what still runs, and the count must survive that;
//! * a slot number: a world slot's life, as the real engine's [`World`] leads it: a partial
//!   copy, the client (`testbed peer`'s code, called in this process, with the arguments the
//!   real engine gives it), then a replacement after it completes, or a restart with backoff
//!   after it fails, until the slot is given up; its state in `run/shadow/slots/K.json`;
//! * `my-client`: my client's launcher. It starts my client as the real engine does (its
//!   arguments, the caller's environment and the `TESTBED_*` variables, its output in
//!   `run/logs/my-client.log`), ends it if it outlives its movie by the grace, and writes a
//!   [`MyRecord`].

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::plan::{MyRecord, Plan};
use crate::lab::world::World;
use crate::util::{Exit, Locked};
use crate::vod::server::VodServer;

/// `testbed sim --plan PLAN services`.
pub fn services(plan: &Plan) -> anyhow::Result<()> {
    let rd = plan.run_dir();
    let log = rd.logs().join("tracker.log");
    crate::util::rt::init_logging(Some(&log), "info")?;
    let trk =
        crate::tracker::Tracker::new(crate::lab::supervisor::tracker_config(&plan.config, log))?;
    let swarms = plan.swarm_files()?;
    for s in &swarms {
        trk.register(&s.torrent);
    }
    let vod = VodServer::new(
        crate::lab::supervisor::vod_files(&swarms),
        plan.config.my_client.web_seed,
    );
    vod.log_to(&plan.vod_log())
        .with_context(|| format!("{}", plan.vod_log().display()))?;
    let app = crate::tracker::api_router(trk.clone()).merge(crate::vod::server::router(vod));
    let addr = std::net::SocketAddr::new([0, 0, 0, 0].into(), plan.port);
    let served = crate::util::rt::runtime(1)?.block_on(async {
        let listener = crate::tracker::http::bind(addr).await?;
        crate::tracker::serve_on(trk.clone(), listener, None, app, async {
            let s = crate::util::rt::shutdown_signal().await;
            tracing::info!("{s}: the simulation ends");
        })
        .await
    });
    crate::util::fs::write_atomic(
        &plan.tracker_status(),
        &serde_json::to_vec_pretty(&trk.status())?,
    )?;
    served
}

/// `testbed sim --plan PLAN K`: world slot `k` for the whole simulation. `run_peer` runs one
/// client on the arguments of `testbed peer` and returns how it ended.
pub fn slot(
    plan: &Plan,
    k: usize,
    run_peer: impl Fn(Vec<OsString>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let world = plan.world()?;
    let n = world.slots.locked().len();
    anyhow::ensure!(k < n, "slot {k}: the world has {n}");
    crate::util::rt::init_logging(Some(&world.slot_log(k)), "info")?;
    let me = std::process::id() as i32;
    loop {
        world.prepare_slot(k)?;
        let (args, _) = world.slot_command(k);
        world.mark_running(k, me);
        write_slot(plan, &world, k);
        let exit = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_peer(args))) {
            Ok(Ok(())) => Exit::Code(0),
            Ok(Err(e)) => {
                tracing::error!("{e:#}");
                Exit::Code(1)
            }
            Err(_) => Exit::Code(101),
        };
        let again = world.on_exit(me, exit);
        write_slot(plan, &world, k);
        let Some(respawn) = again else { break };
        std::thread::sleep(respawn.delay);
        if let Some(dir) = &respawn.remove {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    // Given up, as the real engine gives a slot up: the host stays, idle, to the end.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Slot `k`'s state, for the finished run's status.
fn write_slot(plan: &Plan, world: &World, k: usize) {
    let slot = world.slots.locked()[k].clone();
    if let Ok(json) = serde_json::to_vec(&slot) {
        let _ = crate::util::fs::write_atomic(&plan.slot_file(k), &json);
    }
}

/// `testbed sim --plan PLAN my-client`: start my client, end it if it outlives its movie by
/// the grace, and write its record.
pub fn my_client(plan: &Plan) -> anyhow::Result<()> {
    let my = &plan.my;
    let mut record = MyRecord {
        started_unix: crate::util::unix_now(),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let child = (|| {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&my.log)?;
        std::process::Command::new(&my.program)
            .args(&my.args)
            .envs(my.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
    })();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            record.error = Some(format!("{}: {e}", my.program.display()));
            record.code = Some(127);
            return write_record(&my.record, &record);
        }
    };
    write_record(&my.record, &record)?;
    let deadline = Duration::from_secs_f64(my.run_for);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if started.elapsed() >= deadline {
            record.ended_by_lab = true;
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            std::thread::sleep(Duration::from_millis(300));
            let _ = child.kill();
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    record.ended_unix = Some(crate::util::unix_now());
    record.code = status.code();
    record.signal = status.signal();
    write_record(&my.record, &record)
}

fn write_record(path: &Path, r: &MyRecord) -> anyhow::Result<()> {
    crate::util::fs::write_atomic(path, &serde_json::to_vec_pretty(r)?)?;
    Ok(())
}

/// Whether Shadow can run `program` (a name on the PATH, or a path): an ELF that is
/// dynamically linked (Shadow injects itself with LD_PRELOAD, which a static binary never
/// loads), or a script whose interpreter is one. The error names the program and the reason.
pub fn check_runnable(program: &str) -> anyhow::Result<()> {
    let path = crate::util::which(program).ok_or_else(|| {
        anyhow::anyhow!("my client {program}: not found, or not an executable file")
    })?;
    let head = read_head(&path)?;
    if let Some(line) = head.strip_prefix(b"#!") {
        let line = String::from_utf8_lossy(line);
        let interp = line
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_default()
            .to_string();
        let ihead = read_head(Path::new(&interp))
            .with_context(|| format!("my client {}: its interpreter", path.display()))?;
        return match crate::util::elf::is_static(&ihead) {
            Some(true) => anyhow::bail!(
                "my client {}: its interpreter {interp} is statically linked, and Shadow runs only \
                 dynamically linked programs (it loads itself with LD_PRELOAD)",
                path.display()
            ),
            _ => Ok(()),
        };
    }
    match crate::util::elf::is_static(&head) {
        Some(true) => anyhow::bail!(
            "my client {}: a statically linked program, and Shadow runs only dynamically linked \
             ones (it loads itself with LD_PRELOAD): link it dynamically (for Go, see \
             docs/shadow.md)",
            path.display()
        ),
        Some(false) => Ok(()),
        None => anyhow::bail!(
            "my client {}: neither an ELF program nor a script with #!, which Shadow cannot run",
            path.display()
        ),
    }
}

/// The first 64 KiB of a file: an ELF's headers, or a script's first line.
fn read_head(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(64 << 10).read_to_end(&mut buf))
        .with_context(|| format!("{}", path.display()))?;
    Ok(buf)
}
