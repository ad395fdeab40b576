//! What a finished simulation shows. A simulation runs faster than real time, so its page
//! cannot be live: after the run, `run/finished.json` holds what `testbed status` prints (the
//! world's slots as they ended, my client, what the VoD server sent, the tracker's last
//! status) and `run/status.html` is the status page of the run's end, rendered by the live
//! page's own code, a file that opens with no server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::plan::{MyRecord, Plan, MY_CLIENT_AT};
use crate::lab::api::{MyClient, MyClientState, Phase, RunInfo, Running};
use crate::lab::world::{Slot, SlotState, World};
use crate::lab::Orchestrator;
use crate::util::Locked;
use crate::vod::server::VodServer;

/// Writes `run/finished.json` and `run/status.html` for the simulation of `plan`, from its
/// end ([`lab`]).
pub fn write(plan: &Plan, lab: &Orchestrator) -> anyhow::Result<()> {
    let rd = plan.run_dir();
    let finished = Running {
        running: false,
        pid: 0,
        world: lab.snapshot(),
        tracker: crate::util::fs::read_json(&plan.tracker_status()).unwrap_or_default(),
    };
    let page = crate::lab::web::page::finished(lab, &finished.tracker);
    crate::util::fs::write_atomic(&rd.finished(), &serde_json::to_vec_pretty(&finished)?)?;
    crate::util::fs::write_atomic(&rd.finished_page(), page.as_bytes())?;
    Ok(())
}

/// The lab's state at the end of the simulation, as a supervisor holds a live run's: the
/// slots as they ended, what the VoD server sent, my client's record.
pub fn lab(plan: &Plan, info: RunInfo, world: World) -> anyhow::Result<Orchestrator> {
    let slots: Vec<Slot> = (0..world.slots.locked().len())
        .map(|k| {
            let mut s: Slot = crate::util::fs::read_json(&plan.slot_file(k))
                .unwrap_or_else(|| world.slots.locked()[k].clone());
            if s.state == SlotState::Running {
                s.last_exit = Some("running when the simulation ended".into());
            }
            // Its process was the simulation's.
            s.pid = None;
            s
        })
        .collect();
    *world.slots.locked() = slots;
    let vod = VodServer::new(
        crate::lab::supervisor::vod_files(&world.swarms),
        plan.config.my_client.web_seed,
    );
    vod.replay(crate::vod::server::read_log(&plan.vod_log()).1);
    let tracker = crate::tracker::Tracker::new(Default::default())?;
    for s in &world.swarms {
        tracker.register(&s.torrent);
    }
    let simulated = Duration::from_secs_f64(plan.stop_time());
    let started = Instant::now()
        .checked_sub(simulated)
        .unwrap_or_else(Instant::now);
    Ok(Orchestrator::new(
        &plan.config,
        &plan.run_dir(),
        info,
        Arc::new(world),
        (tracker, vod),
        my_client(plan),
        (Phase::Stopped, started),
    ))
}

/// My client as its launcher recorded it; times in simulated seconds since the start.
fn my_client(plan: &Plan) -> MyClient {
    let record: Option<MyRecord> = crate::util::fs::read_json(&plan.my.record);
    let start = MY_CLIENT_AT + plan.config.my_client.start_after;
    MyClient {
        command: std::iter::once(plan.my.program.display().to_string())
            .chain(plan.my.args.iter().cloned())
            .collect(),
        pid: None,
        state: match &record {
            Some(_) => MyClientState::Exited,
            None => MyClientState::NotStarted,
        },
        exit: record.as_ref().map(|r| match (&r.error, r.exit()) {
            (Some(e), _) => e.clone(),
            (None, Some(e)) if r.ended_by_lab => {
                format!("{e}: still running at the movie's end and the grace, so ended")
            }
            (None, Some(e)) => e.to_string(),
            (None, None) => "still running when the simulation ended".into(),
        }),
        started_secs: Some(start),
        started_unix: record.as_ref().map(|r| r.started_unix),
        ended_secs: record
            .as_ref()
            .and_then(|r| Some(start + r.ended_unix? - r.started_unix)),
        log: plan.my.log.clone(),
    }
}
