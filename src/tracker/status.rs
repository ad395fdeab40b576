//! The tracker's state for people and tools: one [`Status`] snapshot, served as JSON
//! (`/api/status`), as an HTML page readable without JavaScript (`/`), and as Prometheus
//! counters (`/metrics`).

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::Tracker;
use crate::util::hex;
use crate::util::html::{esc, human, printable_id};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Status {
    pub uptime_secs: f64,
    pub interval_secs: u64,
    pub swarms: Vec<SwarmStatus>,
    /// Sections added by the embedding program (e.g. `vod`: bytes served per client).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SwarmStatus {
    pub info_hash: String,
    pub name: Option<String>,
    pub size: Option<u64>,
    pub seeds: usize,
    pub leechers: usize,
    pub completed: u64,
    pub peers: Vec<PeerStatus>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Printable peer id (non-printable bytes as `%XX`).
    pub peer_id: String,
    pub ip: String,
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    /// 0..1 when the torrent's size is known.
    pub progress: Option<f64>,
    pub last_seen_secs: f64,
    pub connected_secs: f64,
    /// Bytes/s between its last two announces.
    pub up_rate: f64,
    pub down_rate: f64,
}

impl Tracker {
    /// A snapshot of every swarm and peer, swarms by name, peers by port.
    pub fn status(&self) -> Status {
        let known = self.known();
        let now = Instant::now();
        let mut swarms: Vec<SwarmStatus> = self.with_swarms(|swarms| {
            swarms
                .iter()
                .map(|(h, s)| {
                    let k = known.get(h);
                    let mut peers: Vec<PeerStatus> = s
                        .peers()
                        .iter()
                        .map(|p| PeerStatus {
                            peer_id: printable_id(&p.peer_id),
                            ip: p.addr.ip().to_string(),
                            port: p.addr.port(),
                            uploaded: p.uploaded,
                            downloaded: p.downloaded,
                            left: p.left,
                            progress: k
                                .map(|k| 1.0 - p.left.min(k.size) as f64 / k.size.max(1) as f64),
                            last_seen_secs: (now - p.last_seen).as_secs_f64(),
                            connected_secs: (now - p.first_seen).as_secs_f64(),
                            up_rate: p.up_rate,
                            down_rate: p.down_rate,
                        })
                        .collect();
                    peers.sort_by_key(|p| p.port);
                    SwarmStatus {
                        info_hash: hex(h),
                        name: k.map(|k| k.name.clone()),
                        size: k.map(|k| k.size),
                        seeds: s.seeds(),
                        leechers: s.leechers(),
                        completed: s.completed,
                        peers,
                    }
                })
                .collect()
        });
        // Known torrents with nobody in them yet are listed too.
        for (h, k) in &known {
            let hx = hex(h);
            if !swarms.iter().any(|s| s.info_hash == hx) {
                swarms.push(SwarmStatus {
                    info_hash: hx,
                    name: Some(k.name.clone()),
                    size: Some(k.size),
                    seeds: 0,
                    leechers: 0,
                    completed: 0,
                    peers: Vec::new(),
                });
            }
        }
        swarms.sort_by(|a, b| (&a.name, &a.info_hash).cmp(&(&b.name, &b.info_hash)));
        Status {
            uptime_secs: self.started.elapsed().as_secs_f64(),
            interval_secs: self.config.interval.as_secs(),
            swarms,
            extra: self
                .status_sections()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }
}

pub async fn json(State(t): State<Arc<Tracker>>) -> Response {
    axum::Json(t.status()).into_response()
}

/// A swarm's name for a heading (escaped).
pub fn swarm_name(sw: &SwarmStatus) -> String {
    esc(sw.name.as_deref().unwrap_or("(unknown torrent)"))
}

/// A swarm's info hash, size and counts, as one line of HTML.
pub fn swarm_counts(sw: &SwarmStatus) -> String {
    format!(
        "<code>{}</code>{} · {} seeds · {} leechers · {} completed",
        sw.info_hash,
        sw.size
            .map(|b| format!(" · {}", human(b)))
            .unwrap_or_default(),
        sw.seeds,
        sw.leechers,
        sw.completed
    )
}

/// The page, rendered on the server so that it reads without JavaScript.
pub fn render_html(s: &Status) -> String {
    let mut h = String::with_capacity(8192);
    h.push_str(concat!(
        "<!doctype html><html><head><meta charset=utf-8><title>testbed tracker</title>",
        "<meta http-equiv=refresh content=5>",
        "<style>body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}",
        "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{padding:2px 10px;border-bottom:1px solid #ddd;text-align:right}",
        "td.l,th.l{text-align:left}code{font-size:12px}.bar{display:inline-block;width:80px;height:8px;background:#eee}",
        ".bar i{display:block;height:8px;background:#3a7}</style></head><body>"
    ));
    let _ = write!(h, "<h1>testbed tracker</h1><p>up {:.0} s · announce interval {} s · <a href=/api/status>JSON</a> · <a href=/metrics>metrics</a></p>", s.uptime_secs, s.interval_secs);
    if s.swarms.is_empty() {
        h.push_str("<p id=idle>No swarms yet: nobody has announced.</p>");
    }
    for sw in &s.swarms {
        let _ = write!(h, "<h2>{}</h2><p>{}</p>", swarm_name(sw), swarm_counts(sw));
        h.push_str("<table class=peers><tr><th class=l>peer id</th><th class=l>address</th><th class=l>progress</th><th>uploaded</th><th>downloaded</th><th>left</th><th>last seen</th></tr>");
        for p in &sw.peers {
            let pct = p.progress.map(|x| x * 100.0);
            let _ = write!(
                h,
                "<tr><td class=l><code>{}</code></td><td class=l>{}:{}</td><td class=l>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0} s ago</td></tr>",
                esc(&p.peer_id),
                esc(&p.ip),
                p.port,
                pct.map(|x| format!("<span class=bar><i style=width:{x:.0}%></i></span> {x:.0}%")).unwrap_or_else(|| "?".into()),
                human(p.uploaded),
                human(p.downloaded),
                human(p.left),
                p.last_seen_secs
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</body></html>");
    h
}

pub async fn html(State(t): State<Arc<Tracker>>) -> Html<String> {
    Html(render_html(&t.status()))
}

pub async fn metrics(State(t): State<Arc<Tracker>>) -> Response {
    let (swarms, peers, seeds) = t.with_swarms(|s| {
        (
            s.len(),
            s.values().map(|x| x.peers().len()).sum::<usize>(),
            s.values().map(|x| x.seeds()).sum::<usize>(),
        )
    });
    let m = &t.metrics;
    let body = format!(
        "# TYPE tracker_announces_total counter\ntracker_announces_total {}\n\
         # TYPE tracker_scrapes_total counter\ntracker_scrapes_total {}\n\
         # TYPE tracker_failures_total counter\ntracker_failures_total {}\n\
         # TYPE tracker_swarms gauge\ntracker_swarms {swarms}\n\
         # TYPE tracker_peers gauge\ntracker_peers {peers}\n\
         # TYPE tracker_seeds gauge\ntracker_seeds {seeds}\n",
        m.announces.load(Ordering::Relaxed),
        m.scrapes.load(Ordering::Relaxed),
        m.failures.load(Ordering::Relaxed),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
