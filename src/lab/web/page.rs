//! The status page at `/`: the place where a person watches the experiment.
//!
//! Everything is rendered here, on the server, from the supervisor's state: the run's phase, my
//! client and its VoD timeline (the chart of [`crate::vod::chart`]), and per swarm a heat strip
//! of piece availability and a table of clients (role, peer id, progress, rates, reincarnations:
//! the first [`SHOWN_ROWS`], or every one at `/?all=1`).
//! The first paint is complete HTML, so the page reads with JavaScript off (it then reloads every
//! 5 s). With JavaScript, a few lines fetch `/?part=live` every second and swap that part in:
//! one renderer for both, no framework, nothing from outside the binary.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Html;
use serde::Deserialize;

use crate::lab::api::{MyClientState, Phase};
use crate::lab::world::{Role, Slot, SlotState};
use crate::lab::Orchestrator;
use crate::peer::live::LiveStatus;
use crate::tracker::status::{swarm_counts, swarm_name, PeerStatus, SwarmStatus};
use crate::util::html::{esc, human, printable_id};
use crate::vod::{chart, Report};

/// The page's style and script, kept as files of their own and included at build time.
const CSS: &str = include_str!("page.css");
const JS: &str = include_str!("page.js");

#[derive(Deserialize)]
pub struct PageQuery {
    part: Option<String>,
    /// Any value: every client's row, not only the first [`SHOWN_ROWS`] of a swarm.
    all: Option<String>,
}

/// Rows of a swarm's table in the page's default view. A person reads a few dozen rows; a
/// browser that re-parses 500 every second spent over 100 ms doing it (make bench). The rest
/// are a click away (`/?all=1`), and every client is in `/api/world`.
pub const SHOWN_ROWS: usize = 100;

/// `GET /`: the whole page; `GET /?part=live`: only the part that changes.
pub async fn handler(
    State(o): State<Arc<Orchestrator>>,
    Query(q): Query<PageQuery>,
) -> Html<String> {
    let all = q.all.is_some();
    let live = tokio::task::spawn_blocking(move || live(&o, all))
        .await
        .unwrap_or_else(|_| "<p>status unavailable</p>".into());
    if q.part.as_deref() == Some("live") {
        return Html(live);
    }
    Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><title>testbed</title>\
         <meta name=viewport content=\"width=device-width\"><style>{CSS}</style>\
         <noscript><meta http-equiv=refresh content=5></noscript></head><body>\
         <h1>testbed</h1><span id=conn></span>\
         <div id=live data-updates=0>{live}</div><script>{JS}</script></body></html>"
    ))
}

/// The part of the page that changes: run, my client, swarms (each with its first
/// [`SHOWN_ROWS`] clients, or `all`).
pub fn live(o: &Orchestrator, all: bool) -> String {
    let w = o.snapshot();
    let status = o.tracker.status();
    let mut h = String::with_capacity(32 * 1024);
    let _ = write!(
        h,
        "<p class=run>phase <b id=phase>{}</b> · up {:.0} s · run <code>{}</code> · \
         <a href=/api/status>status JSON</a> · <a href=/api/world>world JSON</a> · \
         <a href=/metrics>metrics</a></p>",
        w.phase,
        w.uptime_secs,
        esc(&w.run.run_id)
    );
    if w.phase == Phase::Stopping {
        h.push_str(
            "<p class=notice id=stopping>testbed is stopping: every process is being ended.</p>",
        );
    }

    // My client.
    let my_hash = w.run.my_torrent().map(|t| t.info_hash.clone());
    let served: u64 = w.vod_served.values().map(|s| s.bytes).sum();
    let own_report = Report::read(&w.run.report);
    // What the referee saw (any client that started has that), on my client's clock: read
    // only when the page needs it, for a client that writes no report or never called the
    // server (it reads every world client's record).
    let referee = (own_report.is_none() || served == 0)
        .then(|| o.verdict())
        .flatten()
        .and_then(|v| {
            let t = w.run.my_torrent()?;
            let model = o.my_model()?;
            let elapsed = w.uptime_secs - w.my_client.started_secs?;
            Some((v, model, t.name.clone(), elapsed))
        });
    // The client's own report, or else the referee's view in its shape.
    let report = own_report.or_else(|| {
        let (v, model, name, elapsed) = referee.as_ref()?;
        Some(v.as_report(name, model, *elapsed, served))
    });
    h.push_str("<section id=my><h2>My client</h2>");
    let my = &w.my_client;
    let state = match my.state {
        MyClientState::None => "<span id=my-state data-state=none>no my client in this run (give one to \
                   <code>testbed start</code>)</span>"
            .to_string(),
        MyClientState::NotStarted => format!(
            "<span id=my-state data-state=not-started>my client not started yet</span> · <code>{}</code>",
            esc(&my.command.join(" "))
        ),
        s => format!(
            "<span id=my-state data-state=\"{0}\">{0}</span>{1}{2} · <code>{3}</code>",
            s.as_str(),
            my.pid.map(|p| format!(" · pid {p}")).unwrap_or_default(),
            my.exit
                .as_ref()
                .map(|e| format!(" · {}", esc(e)))
                .unwrap_or_default(),
            esc(&my.command.join(" "))
        ),
    };
    let size = w.run.my_torrent().map_or(0, |t| t.size);
    let pct = |b: u64| {
        if size > 0 {
            b as f64 * 100.0 / size as f64
        } else {
            0.0
        }
    };
    match &referee {
        // A client that has not called the server is scored by the referee: the bytes of the
        // pieces late so far (due by now and not delivered by their deadline).
        Some((v, model, _, elapsed)) if served == 0 => {
            let late: u64 = v
                .pieces
                .iter()
                .filter(|p| p.late && p.deadline <= *elapsed)
                .map(|p| {
                    let start = p.index as u64 * model.piece_length as u64;
                    (model.size - start).min(model.piece_length as u64)
                })
                .sum();
            let _ = write!(
                h,
                "<p>{state}</p><p>penalty (referee: bytes of pieces late at their deadline so \
                 far; my client has not called the VoD server): <b id=penalty \
                 data-source=referee>{late}</b> B ({:.1}% of the movie) · {} world clients met \
                 it</p>",
                pct(late),
                v.world_peers_connected
            );
        }
        _ => {
            let _ = write!(
                h,
                "<p>{state}</p><p>penalty (bytes from the VoD server): <b id=penalty \
                 data-source=server>{served}</b> B ({:.1}% of the movie)</p>",
                pct(served)
            );
        }
    }
    match &report {
        Some(r) => {
            let now = if r.finished_at.is_some() {
                None
            } else {
                Some(r.elapsed)
            };
            let _ = write!(
                h,
                "<p class=muted>policy {} · R = {} KB/s, D = {} s, P = {} s · playback {} · \
                 {} of {} pieces from the server</p>",
                esc(&r.policy),
                r.rate,
                r.delay,
                r.prefetch,
                match r.finished_at {
                    Some(t) => format!("ended at {t:.0} s"),
                    None => format!("at {:.0} s", r.elapsed),
                },
                r.pieces_from_server,
                r.pieces
            );
            h.push_str(&chart::svg(r, now));
        }
        None => h.push_str(
            "<p class=muted id=no-report>No VoD report yet (a client that writes none still gets \
             its penalty counted by the server).</p>",
        ),
    }
    h.push_str("</section>");

    // Swarms.
    if status.swarms.is_empty() {
        h.push_str("<p id=idle>No swarms yet: nobody has announced.</p>");
    }
    let slots_by_hash: HashMap<String, Vec<&Slot>> = {
        let mut m: HashMap<String, Vec<&Slot>> = HashMap::new();
        for s in &w.world {
            if let Some(sw) = o.world.swarms.get(s.swarm) {
                m.entry(sw.torrent.info_hash.hex()).or_default().push(s);
            }
        }
        m
    };
    let my_running = my.state == MyClientState::Running;
    for sw in &status.swarms {
        let slots = slots_by_hash
            .get(&sw.info_hash)
            .cloned()
            .unwrap_or_default();
        let pieces = o
            .world
            .swarms
            .iter()
            .find(|s| s.torrent.info_hash.hex() == sw.info_hash)
            .map(|s| s.torrent.num_pieces());
        let mine = my_hash.as_deref() == Some(sw.info_hash.as_str());
        swarm(
            &mut h,
            o,
            sw,
            &slots,
            pieces,
            if mine { report.as_ref() } else { None },
            mine && my_running,
            &w.vod_served,
            (!all).then_some(SHOWN_ROWS),
        );
    }
    h
}

struct Row {
    role: &'static str,
    class: &'static str,
    peer_id: String,
    addr: String,
    /// The emulated link (a run with `network:`).
    link: Option<String>,
    state: String,
    progress: Option<f64>,
    up_rate: Option<f64>,
    down_rate: Option<f64>,
    uploaded: Option<u64>,
    last_seen: Option<f64>,
    reincarnations: Option<u32>,
}

#[allow(clippy::too_many_arguments)]
fn swarm(
    h: &mut String,
    o: &Orchestrator,
    sw: &SwarmStatus,
    slots: &[&Slot],
    pieces: Option<u32>,
    report: Option<&Report>,
    my_running: bool,
    served: &BTreeMap<String, crate::vod::server::Served>,
    shown: Option<usize>,
) {
    let by_id: HashMap<&str, &PeerStatus> =
        sw.peers.iter().map(|p| (p.peer_id.as_str(), p)).collect();
    let mut counts: Vec<u32> = vec![0; pieces.unwrap_or(0) as usize];
    let mut rows: Vec<Row> = Vec::new();
    let mut slot_ids = std::collections::HashSet::new();
    for s in slots {
        let id = printable_id(&s.peer_id);
        let tp = by_id.get(id.as_str()).copied();
        slot_ids.insert(id.clone());
        let live = if s.state == SlotState::Running {
            LiveStatus::read(&o.world.status_file(s.swarm, s.index))
        } else {
            None
        };
        if let (Some(l), Some(n)) = (&live, pieces) {
            if let Some(b) = l.bitfield(n) {
                for i in b.iter_ones() {
                    counts[i as usize] += 1;
                }
            }
        }
        rows.push(Row {
            role: if s.role == Role::Seed {
                "seed"
            } else {
                "world"
            },
            class: if s.role == Role::Seed {
                "role-seed"
            } else {
                "role-world"
            },
            peer_id: id,
            addr: s.addr.to_string(),
            link: s.link.map(|l| l.describe()),
            state: s.state.as_str().to_string(),
            progress: match (&live, pieces) {
                (Some(l), Some(n)) if n > 0 => Some(l.pieces_held as f64 / n as f64),
                _ => tp.and_then(|p| p.progress),
            },
            up_rate: live.as_ref().map(|l| l.up_rate),
            down_rate: live.as_ref().map(|l| l.down_rate),
            uploaded: live.as_ref().map(|l| l.uploaded).or(tp.map(|p| p.uploaded)),
            last_seen: tp.map(|p| p.last_seen_secs),
            reincarnations: Some(s.reincarnations),
        });
    }
    // Everyone else the tracker knows: my client, or a peer from outside the world.
    for p in sw.peers.iter().filter(|p| !slot_ids.contains(&p.peer_id)) {
        let is_my = my_running || served.contains_key(&p.peer_id);
        rows.push(Row {
            role: if is_my { "my client" } else { "other" },
            class: if is_my { "role-my" } else { "role-other" },
            peer_id: p.peer_id.clone(),
            addr: p.ip.clone(),
            link: o.info.my_link.filter(|_| is_my).map(|l| l.describe()),
            state: "running".into(),
            progress: p.progress,
            up_rate: Some(p.up_rate),
            down_rate: Some(p.down_rate),
            uploaded: Some(p.uploaded),
            last_seen: Some(p.last_seen_secs),
            reincarnations: None,
        });
    }
    if let Some(r) = report {
        for d in &r.pieces_detail {
            if d.arrived.is_some() {
                if let Some(c) = counts.get_mut(d.index as usize) {
                    *c += 1;
                }
            }
        }
    }
    rows.sort_by_key(|r| match r.role {
        "my client" => 0,
        "seed" => 1,
        "world" => 2,
        _ => 3,
    });

    let up: f64 = rows.iter().filter_map(|r| r.up_rate).sum();
    let uploaded: u64 = rows.iter().filter_map(|r| r.uploaded).sum();
    let _ = write!(
        h,
        "<section class=swarm data-hash=\"{}\"><h2>{}</h2><p>{} · {} clients · {} uploaded · \
         {}/s up in all</p>",
        sw.info_hash,
        swarm_name(sw),
        swarm_counts(sw),
        rows.len(),
        human(uploaded),
        human(up as u64)
    );
    if !counts.is_empty() {
        heat(h, &counts);
    }
    // Rows in tables of CHUNK, each in a box the browser may skip while it is off screen
    // (content-visibility), all with the same fixed columns so that they line up as one table:
    // with 500 clients a refresh lays out only what is in view (make bench times it).
    const CHUNK: usize = 50;
    const COLS: &str = "<colgroup><col style=width:90px><col style=width:190px>\
         <col style=width:110px><col style=width:80px><col style=width:135px><col style=width:95px><col style=width:95px>\
         <col style=width:95px><col style=width:85px><col style=width:115px></colgroup>";
    let _ = write!(
        h,
        "<div class=rows><table class=clients>{COLS}<thead><tr><th class=l>role</th><th class=l>peer id</th>\
         <th class=l>address</th><th class=l>state</th><th class=l>progress</th><th>up</th><th>down</th>\
         <th>uploaded</th><th>last seen</th><th>reincarnations</th></tr></thead><tbody>",
    );
    let dash = || "<span class=muted>–</span>".to_string();
    let shown = shown.unwrap_or(usize::MAX).min(rows.len());
    for (k, r) in rows[..shown].iter().enumerate() {
        if k > 0 && k % CHUNK == 0 {
            let _ = write!(
                h,
                "</tbody></table></div><div class=rows><table class=clients>{COLS}<tbody>"
            );
        }
        let _ = write!(
            h,
            "<tr class=\"client {} st-{}\"><td class=l>{}</td><td class=l><code>{}</code></td>\
             <td class=l>{}</td><td class=l>{}</td><td class=l>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td></tr>",
            r.class,
            esc(&r.state),
            r.role,
            esc(&r.peer_id),
            match &r.link {
                Some(l) => format!("{}<br><span class=link>{}</span>", esc(&r.addr), esc(l)),
                None => esc(&r.addr),
            },
            esc(&r.state),
            r.progress
                .map(|x| {
                    let x = (x * 100.0).clamp(0.0, 100.0);
                    format!("<span class=bar><i style=\"width:{x:.0}%\"></i></span> {x:.0}%")
                })
                .unwrap_or_else(dash),
            r.up_rate.map(rate).unwrap_or_else(dash),
            r.down_rate.map(rate).unwrap_or_else(dash),
            r.uploaded.map(human).unwrap_or_else(dash),
            r.last_seen
                .map(|s| format!("{s:.0} s ago"))
                .unwrap_or_else(dash),
            r.reincarnations.map(|n| n.to_string()).unwrap_or_else(dash),
        );
    }
    h.push_str("</tbody></table></div>");
    if shown < rows.len() {
        let _ = write!(
            h,
            "<p class=more>{} more clients not shown · <a href=\"/?all=1\">show all {}</a></p>",
            rows.len() - shown,
            rows.len()
        );
    } else if rows.len() > SHOWN_ROWS {
        let _ = write!(
            h,
            "<p class=more>all {} clients · <a href=\"/\">show the first {SHOWN_ROWS}</a></p>",
            rows.len()
        );
    }
    h.push_str("</section>");
}

fn rate(bps: f64) -> String {
    format!("{:.1} KB/s", bps / 1024.0)
}

/// Piece availability as one strip: a cell per piece (or per run of pieces, at most 400
/// cells, showing the run's rarest), from red (nobody) to dark green (the most peers).
fn heat(h: &mut String, counts: &[u32]) {
    let n = counts.len();
    let cells = n.min(400);
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    let (w, ht) = (720.0, 18.0);
    let cw = w / cells as f64;
    let _ = write!(
        h,
        "<p class=muted>piece availability (world clients and my client holding each piece; \
         rarest {}, most {})</p><svg class=heat xmlns=\"http://www.w3.org/2000/svg\" \
         viewBox=\"0 0 {w} {ht}\" width=\"{w}\" height=\"{ht}\" data-pieces=\"{n}\">",
        counts.iter().min().unwrap_or(&0),
        max
    );
    for c in 0..cells {
        let (a, b) = (c * n / cells, ((c + 1) * n / cells).max(c * n / cells + 1));
        let v = counts[a..b.min(n)].iter().copied().min().unwrap_or(0);
        let color = if v == 0 {
            "#d33".to_string()
        } else {
            let f = v as f64 / max as f64;
            let l = 85.0 - 55.0 * f;
            format!("hsl(140,55%,{l:.0}%)")
        };
        let _ = write!(
            h,
            "<rect x=\"{:.2}\" width=\"{:.2}\" height=\"{ht}\" fill=\"{color}\"><title>{}: {v}</title></rect>",
            c as f64 * cw,
            cw + 0.05,
            if b - a > 1 {
                format!("pieces {a}–{}", b - 1)
            } else {
                format!("piece {a}")
            }
        );
    }
    h.push_str("</svg>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_strip_has_a_cell_per_piece_up_to_400() {
        let mut h = String::new();
        heat(&mut h, &[0, 1, 2, 3]);
        assert_eq!(h.matches("<rect").count(), 4);
        assert!(h.contains("fill=\"#d33\""), "a missing piece is red");
        let mut h = String::new();
        heat(&mut h, &vec![2; 1000]);
        assert_eq!(h.matches("<rect").count(), 400);
        assert!(h.contains("data-pieces=\"1000\""));
    }
}
