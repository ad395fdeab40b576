//! `testbed status`: is a testbed running in this run dir, and what does it run? Reads the
//! supervisor's `/api/world` ([`WorldStatus`]) and the tracker's `/api/status`
//! ([`tracker::status::Status`](crate::tracker::status::Status)) into their types and prints a
//! table: one line per world client (role, slot, generation, pid, state, peer id, progress,
//! rates from the tracker) and my client, then the files on disk.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use anyhow::Context;

pub use crate::lab::api::Running;
use crate::lab::api::{RunInfo, WorldStatus};
use crate::lab::config::{Addresses, Source};
use crate::lab::netns;
use crate::lab::rundir::{PidInfo, RunDir};
use crate::sys::procs;
use crate::tracker::status::{PeerStatus, Status};

/// `testbed status`: returns false when nothing runs.
pub fn status(source: &Source, json: bool) -> anyhow::Result<bool> {
    let cfg = source.load()?;
    let rd = RunDir::new(&cfg.run_dir);
    let info = rd
        .read_pid()
        .filter(|i| procs::is_same_process(i.pid, i.start_time));
    let Some(info) = info else {
        return not_running(&rd, json);
    };
    let rt = crate::util::rt::runtime(1)?;
    let url = format!("{}/api/world", info.url);
    let (world, tracker) = rt
        .block_on(async {
            let c = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()?;
            let w = c.get(&url).send().await?.text().await?;
            let t = c
                .get(format!("{}/api/status", info.url))
                .send()
                .await?
                .text()
                .await?;
            anyhow::Ok((w, t))
        })
        .with_context(|| format!("supervisor pid {} runs but {url} does not answer", info.pid))?;
    let world: WorldStatus =
        serde_json::from_str(&world).with_context(|| format!("{url}: unexpected answer"))?;
    let tracker: Status = serde_json::from_str(&tracker)
        .with_context(|| format!("{}/api/status: unexpected answer", info.url))?;
    if json {
        let r = Running {
            running: true,
            pid: info.pid,
            world,
            tracker,
        };
        crate::util::outln!("{}", serde_json::to_string(&r)?);
    } else {
        crate::util::out!("{}", render(&info, &world, &tracker));
    }
    Ok(true)
}

/// Nothing runs: say so, or show the run that a Shadow simulation finished here (its
/// `finished.json`; see `lab::shadow::finished`).
fn not_running(rd: &RunDir, json: bool) -> anyhow::Result<bool> {
    let finished: Option<Running> = crate::util::fs::read_json(&rd.finished());
    match (finished, json) {
        (Some(f), true) => crate::util::outln!("{}", serde_json::to_string(&f)?),
        (Some(f), false) => {
            let mut s = format!(
                "not running; the Shadow simulation of run {} finished here ({:.0} s simulated)\n",
                f.world.run.run_id, f.world.uptime_secs
            );
            let _ = writeln!(
                s,
                "  page         {} (the run's end; open it as a file)",
                rd.finished_page().display()
            );
            where_things_are(&mut s, None, &f.world.run);
            clients(&mut s, &f.world, &f.tracker);
            crate::util::out!("{s}");
        }
        (None, true) => crate::util::outln!("{{\"running\":false}}"),
        (None, false) => crate::util::outln!("not running ({})", rd.root.display()),
    }
    Ok(false)
}

/// The text table.
pub fn render(info: &PidInfo, w: &WorldStatus, t: &Status) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "testbed running: supervisor pid {}, run {}, up {:.0} s, {}",
        info.pid, info.run_id, w.uptime_secs, w.phase
    );
    where_things_are(&mut s, Some(info.pid), &w.run);
    clients(&mut s, w, t);
    let _ = writeln!(s, "\n  downloads on disk:");
    for (path, size) in &w.downloads {
        let _ = writeln!(s, "  {size:>12}  {path}");
    }
    s
}

/// The URLs and paths a client needs, the addresses, the emulated network. `pid`: the
/// supervisor's, whose network namespace holds the lab (none: a simulation's).
fn where_things_are(s: &mut String, pid: Option<i32>, run: &RunInfo) {
    let hash = &run.my_info_hash;
    // A simulation's page was served to nobody: its end is a file (see `not_running`).
    let page = pid.map(|_| ("status page", run.status_url.clone()));
    for (k, v) in page.into_iter().chain([
        (
            "tracker",
            // A world shard's clients announce to another testbed's tracker.
            if run.addresses == crate::lab::config::Addresses::Namespace {
                format!("{}/announce", run.base_url)
            } else {
                run.tracker_url.clone()
            },
        ),
        ("VoD server", format!("{}/vod/{hash}", run.base_url)),
        ("my torrent", run.torrent.display().to_string()),
        ("my saveas", run.saveas.display().to_string()),
    ]) {
        let _ = writeln!(s, "  {k:<12} {v}");
    }
    let _ = match (run.addresses, pid) {
        (Addresses::Namespace, None) => writeln!(
            s,
            "  addresses    simulated: world 10.77.x.y, my client {}, tracker and VoD server {}",
            netns::MY_CLIENT,
            netns::TRACKER
        ),
        (Addresses::Namespace, Some(pid)) => writeln!(
            s,
            "  addresses    namespace: world 10.77.x.y, my client {}, tracker and VoD server for\n               \
             them at {} and {} (nsenter --net=/proc/{}/ns/net to look inside)",
            netns::MY_CLIENT,
            run.tracker_url,
            run.vod_url,
            pid
        ),
        (a, _) => writeln!(s, "  addresses    {a}"),
    };
    if let Some(l) = &run.my_link {
        let _ = writeln!(
            s,
            "  network      emulated: my client {}; each world client's link under LINK",
            l.describe()
        );
    }
}

/// A row per world client, with the tracker's figures by peer id, then my client's.
fn clients(s: &mut String, w: &WorldStatus, t: &Status) {
    let peers: BTreeMap<&str, &PeerStatus> = t
        .swarms
        .iter()
        .flat_map(|sw| sw.peers.iter())
        .map(|p| (p.peer_id.as_str(), p))
        .collect();
    let _ = writeln!(
        s,
        "\n  {:<6} {:>4} {:>4} {:>7} {:<8} {:<20} {:<15} {:>8} {:>9} {:>9}{}",
        "ROLE",
        "SLOT",
        "GEN",
        "PID",
        "STATE",
        "PEER ID",
        "ADDRESS",
        "PROGRESS",
        "UP KB/s",
        "DOWN KB/s",
        if w.run.my_link.is_some() {
            "  LINK"
        } else {
            ""
        }
    );
    for slot in &w.world {
        let id = String::from_utf8_lossy(&slot.peer_id);
        let p = peers.get(&*id);
        let _ = writeln!(
            s,
            "  {:<6} {:>4} {:>4} {:>7} {:<8} {:<20} {:<15} {:>7.0}% {:>9.1} {:>9.1}{}",
            slot.role.as_str(),
            slot.index,
            slot.generation,
            slot.pid.map(|p| p.to_string()).unwrap_or("-".into()),
            slot.state.as_str(),
            id,
            slot.addr.to_string(),
            p.and_then(|p| p.progress).unwrap_or(0.0) * 100.0,
            p.map_or(0.0, |p| p.up_rate) / 1024.0,
            p.map_or(0.0, |p| p.down_rate) / 1024.0,
            slot.link
                .map(|l| format!("  {}", l.describe()))
                .unwrap_or_default()
        );
    }
    let my = &w.my_client;
    let _ = writeln!(
        s,
        "  {:<6} {:>4} {:>4} {:>7} {:<8} {}",
        "my",
        "-",
        "-",
        my.pid.map(|p| p.to_string()).unwrap_or("-".into()),
        my.state.as_str(),
        my.exit.as_deref().unwrap_or("")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/api/world` and `/api/status` as the supervisor serves them (field names and all).
    fn answers() -> (WorldStatus, Status) {
        let world = r#"{
          "phase": "ready", "uptime_secs": 12.4,
          "run": {"run_id": "abc", "pid": 42, "base_url": "http://127.0.0.1:6970",
                  "tracker_url": "http://127.0.0.1:6970/announce",
                  "status_url": "http://127.0.0.1:6970/", "vod_url": "http://127.0.0.1:6970/vod/ff",
                  "torrent": "/r/torrents/movie.mp4.torrent", "saveas": "/r/downloads/my-client/movie.mp4",
                  "report": "/r/reports/my-client.json", "torrents": [], "addresses": "namespace",
                  "my_info_hash": "ff"},
          "world": [{"swarm": 0, "index": 3, "role": "world", "generation": 2,
                     "peer_id": "-TB0100-W0003g002abc", "addr": "10.77.1.4", "pid": 777, "state": "running",
                     "crashes": 0, "reincarnations": 2, "upload_rate": 70.0,
                     "start_fraction": 0.4, "last_exit": "exit code 0"}],
          "my_client": {"command": ["vod-client"], "pid": 900, "state": "exited",
                        "exit": "exit code 0", "started_secs": 1.0, "ended_secs": 9.0, "log": "/r/l"},
          "downloads": [["/r/downloads/world-0-3-g2/movie.mp4", 123]],
          "vod_served": {"me": {"bytes": 5, "requests": 1}}
        }"#;
        let status = r#"{"uptime_secs": 12.0, "interval_secs": 10, "swarms": [
          {"info_hash": "ff", "name": "movie.mp4", "size": 1000, "seeds": 1, "leechers": 1,
           "completed": 0, "peers": [{"peer_id": "-TB0100-W0003g002abc", "ip": "127.0.0.1",
           "port": 7000, "uploaded": 0, "downloaded": 0, "left": 500, "progress": 0.5,
           "last_seen_secs": 1.0, "connected_secs": 9.0, "up_rate": 2048.0, "down_rate": 1024.0}]}],
          "vod": {"me": {"bytes": 5, "requests": 1}}}"#;
        (
            serde_json::from_str(world).unwrap(),
            serde_json::from_str(status).unwrap(),
        )
    }

    #[test]
    fn the_table_comes_from_typed_answers() {
        let (w, t) = answers();
        let info = PidInfo {
            pid: 42,
            start_time: 1,
            run_id: "abc".into(),
            sid: None,
            cgroup: None,
            url: "http://127.0.0.1:6970".into(),
            port: 6970,
            netns: None,
        };
        let text = render(&info, &w, &t);
        assert!(
            text.contains("supervisor pid 42, run abc, up 12 s, ready"),
            "{text}"
        );
        assert!(
            text.contains("VoD server   http://127.0.0.1:6970/vod/ff"),
            "{text}"
        );
        let row = text
            .lines()
            .find(|l| l.contains("-TB0100-W0003g002abc"))
            .unwrap();
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cols[..7],
            [
                "world",
                "3",
                "2",
                "777",
                "running",
                "-TB0100-W0003g002abc",
                "10.77.1.4"
            ]
        );
        assert_eq!(
            cols[7..],
            ["50%", "2.0", "1.0"],
            "progress and rates from the tracker"
        );
        assert!(
            text.contains("addresses    namespace: world 10.77.x.y, my client 10.77.0.2"),
            "{text}"
        );
        let my: Vec<&str> = text
            .lines()
            .find(|l| l.trim_start().starts_with("my  "))
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(my, ["my", "-", "-", "900", "exited", "exit", "code", "0"]);
        assert!(
            text.contains("123  /r/downloads/world-0-3-g2/movie.mp4"),
            "{text}"
        );
        assert_eq!(
            t.extra["vod"]["me"]["bytes"], 5,
            "the embedder's section is kept"
        );
        // What the supervisor serializes, `status` reads back.
        let again: WorldStatus = serde_json::from_str(&serde_json::to_string(&w).unwrap()).unwrap();
        assert_eq!(again.world[0].peer_id, *b"-TB0100-W0003g002abc");
    }
}
