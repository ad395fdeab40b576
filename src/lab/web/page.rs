//! The status page at `/`: the place where a person watches the experiment.
//!
//! [`super::view`] gathers what the page shows; here it is rendered on the server with `maud`
//! templates (checked at compile time, every value escaped unless marked otherwise): the run's
//! phase, my client and its VoD timeline (the chart of [`crate::vod::chart`]), and per swarm a
//! heat strip of piece availability and a table of clients (role, peer id, progress, rates,
//! reincarnations: the first [`SHOWN_ROWS`], or every one at `/?all=1`).
//! The first paint is complete HTML, so the page reads with JavaScript off (it then reloads every
//! 5 s). With JavaScript, a few lines fetch `/?part=live` every second and swap that part in:
//! one renderer for both, no framework, nothing from outside the binary.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Html;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Deserialize;

pub use super::view::SHOWN_ROWS;
use super::view::{Live, My, Penalty, Row, Swarm};
use crate::lab::api::{MyClientState, Phase};
use crate::lab::Orchestrator;
use crate::util::html::human;
use crate::vod::chart;

/// The page's style and script, kept as files of their own and included at build time.
const CSS: &str = include_str!("page.css");
const JS: &str = include_str!("page.js");

#[derive(Deserialize)]
pub struct PageQuery {
    part: Option<String>,
    /// Any value: every client's row, not only the first [`SHOWN_ROWS`] of a swarm.
    all: Option<String>,
}

/// `GET /`: the whole page; `GET /?part=live`: only the part that changes.
pub async fn handler(
    State(o): State<Arc<Orchestrator>>,
    Query(q): Query<PageQuery>,
) -> Html<String> {
    let all = q.all.is_some();
    let live = tokio::task::spawn_blocking(move || live(&Live::gather(&o, all)))
        .await
        .unwrap_or_else(|_| html! { p { "status unavailable" } });
    if q.part.as_deref() == Some("live") {
        return Html(live.into_string());
    }
    Html(whole(live, true).into_string())
}

/// The page of a run that has ended (a Shadow simulation's), every client's row, as a file
/// that opens with no server: no script, no reload, no links to a server. `tracker`: the
/// tracker's last status, for each swarm's counts.
pub fn finished(o: &Orchestrator, tracker: &crate::tracker::status::Status) -> String {
    let mut v = Live::gather(o, true);
    v.served = false;
    for sw in &mut v.swarms {
        if let Some(t) = tracker.swarms.iter().find(|t| t.info_hash == sw.info_hash) {
            (sw.seeds, sw.leechers, sw.completed) = (t.seeds, t.leechers, t.completed);
        }
    }
    whole(live(&v), false).into_string()
}

/// The whole page around its live part; `live_updates`: the script that refreshes it (and,
/// without JavaScript, a reload every 5 s).
fn whole(live: Markup, live_updates: bool) -> Markup {
    html! {
        (DOCTYPE)
        html {
            head {
                meta charset="utf-8";
                title { "testbed" }
                meta name="viewport" content="width=device-width";
                style { (PreEscaped(CSS)) }
                @if live_updates {
                    noscript { meta http-equiv="refresh" content="5"; }
                }
            }
            body {
                h1 { "testbed" }
                span #conn {}
                div #live data-updates="0" { (live) }
                @if live_updates {
                    script { (PreEscaped(JS)) }
                }
            }
        }
    }
}

/// The part of the page that changes: run, my client, swarms.
pub fn live(v: &Live) -> Markup {
    html! {
        p.run {
            "phase " b #phase { (v.phase) } " · up " (format!("{:.0}", v.uptime_secs)) " s · run "
            code { (v.run_id) } " · "
            @if v.served {
                a href="/api/status" { "status JSON" } " · "
                a href="/api/world" { "world JSON" } " · "
                a href="/metrics" { "metrics" }
            } @else {
                "the end of a simulated run (testbed status --json has all of it)"
            }
        }
        @if v.phase == Phase::Stopping {
            p.notice #stopping { "testbed is stopping: every process is being ended." }
        }
        (my_client(&v.my))
        @if v.swarms.is_empty() {
            p #idle { "No swarms yet: nobody has announced." }
        }
        @for sw in &v.swarms {
            (swarm(sw))
        }
    }
}

fn my_client(my: &My) -> Markup {
    html! {
        section #my {
            h2 { "My client" }
            p { (my_state(my)) }
            @match my.penalty {
                Penalty::Referee { bytes, percent, world_peers } => p {
                    "penalty (referee: bytes of pieces late at their deadline so far; my client \
                     has not called the VoD server): "
                    b #penalty data-source="referee" { (bytes) }
                    (format!(" B ({percent:.1}% of the movie) · {world_peers} world clients met it"))
                },
                Penalty::Server { bytes, percent } => p {
                    "penalty (bytes from the VoD server): "
                    b #penalty data-source="server" { (bytes) }
                    (format!(" B ({percent:.1}% of the movie)"))
                },
            }
            @match &my.report {
                Some(r) => {
                    p.muted {
                        "policy " (r.policy)
                        (format!(" · R = {} KB/s, D = {} s, P = {} s · playback ", r.rate, r.delay, r.prefetch))
                        @match r.finished_at {
                            Some(t) => (format!("ended at {t:.0} s")),
                            None => (format!("at {:.0} s", r.elapsed)),
                        }
                        (format!(" · {} of {} pieces from the server", r.pieces_from_server, r.pieces))
                    }
                    (PreEscaped(chart::svg(r, r.finished_at.is_none().then_some(r.elapsed))))
                }
                None => p.muted #no-report {
                    "No VoD report yet (a client that writes none still gets its penalty counted \
                     by the server)."
                },
            }
        }
    }
}

/// My client's state: whether there is one, its pid, how it ended, its command line.
fn my_state(my: &My) -> Markup {
    html! {
        @match my.state {
            MyClientState::None => span #my-state data-state="none" {
                "no my client in this run (give one to " code { "testbed start" } ")"
            },
            MyClientState::NotStarted => {
                span #my-state data-state="not-started" { "my client not started yet" }
                " · " code { (my.command) }
            },
            s => {
                span #my-state data-state=(s.as_str()) { (s.as_str()) }
                @if let Some(p) = my.pid { " · pid " (p) }
                @if let Some(e) = &my.exit { " · " (e) }
                " · " code { (my.command) }
            },
        }
    }
}

/// Rows in tables of this many, each in a box the browser may skip while it is off screen
/// (content-visibility), all with the same fixed columns so that they line up as one table:
/// with 500 clients a refresh lays out only what is in view (make bench times it).
const CHUNK: usize = 50;

/// The columns' widths, and their heads.
const COLUMNS: [(u32, &str, bool); 10] = [
    (90, "role", true),
    (190, "peer id", true),
    (110, "address", true),
    (80, "state", true),
    (135, "progress", true),
    (95, "up", false),
    (95, "down", false),
    (95, "uploaded", false),
    (85, "last seen", false),
    (115, "reincarnations", false),
];

fn swarm(sw: &Swarm) -> Markup {
    html! {
        section.swarm data-hash=(sw.info_hash) {
            h2 { (sw.name.as_deref().unwrap_or("(unknown torrent)")) }
            p {
                code { (sw.info_hash) }
                @if let Some(size) = sw.size { " · " (human(size)) }
                " · " (sw.seeds) " seeds · " (sw.leechers) " leechers · " (sw.completed) " completed · "
                (sw.rows.len()) " clients · " (human(sw.uploaded))
                " uploaded · " (human(sw.up_rate as u64)) "/s up in all"
            }
            @if !sw.holders.is_empty() { (heat(&sw.holders)) }
            @for (k, chunk) in chunks(&sw.rows[..sw.shown]).enumerate() {
                div.rows {
                    table.clients {
                        colgroup { @for (w, _, _) in COLUMNS { col style={ "width:" (w) "px" }; } }
                        @if k == 0 {
                            thead { tr { @for (_, head, left) in COLUMNS { th.l[left] { (head) } } } }
                        }
                        tbody { @for r in chunk { (row(r)) } }
                    }
                }
            }
            @if sw.shown < sw.rows.len() {
                p.more {
                    (sw.rows.len() - sw.shown) " more clients not shown · "
                    a href="/?all=1" { "show all " (sw.rows.len()) }
                }
            } @else if sw.rows.len() > SHOWN_ROWS {
                p.more {
                    "all " (sw.rows.len()) " clients · "
                    a href="/" { "show the first " (SHOWN_ROWS) }
                }
            }
        }
    }
}

/// `rows` in [`CHUNK`]s; one empty chunk for no rows, so that the table keeps its head.
fn chunks(rows: &[Row]) -> impl Iterator<Item = &[Row]> {
    let empty = rows.is_empty().then_some(&rows[..0]);
    rows.chunks(CHUNK).chain(empty)
}

fn row(r: &Row) -> Markup {
    let dash = html! { span.muted { "–" } };
    let or_dash = |x: Option<String>| x.map_or(dash.clone(), |s| html! { (s) });
    html! {
        tr class={ "client " (r.class) " st-" (r.state) } {
            td.l { (r.role) }
            td.l { code { (r.peer_id) } }
            td.l {
                (r.addr)
                @if let Some(l) = &r.link { br; span.link { (l) } }
            }
            td.l { (r.state) }
            td.l {
                @match r.progress.map(|x| (x * 100.0).clamp(0.0, 100.0)) {
                    Some(x) => {
                        span.bar { i style=(format!("width:{x:.0}%")) {} }
                        (format!(" {x:.0}%"))
                    },
                    None => (dash),
                }
            }
            td { (or_dash(r.up_rate.map(rate))) }
            td { (or_dash(r.down_rate.map(rate))) }
            td { (or_dash(r.uploaded.map(human))) }
            td { (or_dash(r.last_seen.map(|s| format!("{s:.0} s ago")))) }
            td { (or_dash(r.reincarnations.map(|n| n.to_string()))) }
        }
    }
}

fn rate(bps: f64) -> String {
    format!("{:.1} KB/s", bps / 1024.0)
}

/// Piece availability as one strip: a cell per piece (or per run of pieces, at most 400
/// cells, showing the run's rarest), from red (nobody) to dark green (the most peers).
fn heat(counts: &[u32]) -> Markup {
    let n = counts.len();
    let cells = n.min(400);
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    let (w, ht) = (720.0, 18.0);
    let cw = w / cells as f64;
    html! {
        p.muted {
            "piece availability (world clients and my client holding each piece; rarest "
            (counts.iter().min().unwrap_or(&0)) ", most " (max) ")"
        }
        svg.heat xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (w) " " (ht) }
            width=(w) height=(ht) data-pieces=(n) {
            @for c in 0..cells {
                @let (a, b) = (c * n / cells, ((c + 1) * n / cells).max(c * n / cells + 1));
                @let v = counts[a..b.min(n)].iter().copied().min().unwrap_or(0);
                rect x=(format!("{:.2}", c as f64 * cw)) width=(format!("{:.2}", cw + 0.05))
                    height=(ht) fill=(heat_colour(v, max)) {
                    title {
                        @if b - a > 1 { "pieces " (a) "–" (b - 1) } @else { "piece " (a) }
                        ": " (v)
                    }
                }
            }
        }
    }
}

/// A heat cell's colour: red for a piece nobody holds, then lighter to darker green.
fn heat_colour(v: u32, max: u32) -> String {
    match v {
        0 => "#d33".into(),
        v => format!("hsl(140,55%,{:.0}%)", 85.0 - 55.0 * v as f64 / max as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_strip_has_a_cell_per_piece_up_to_400() {
        let h = heat(&[0, 1, 2, 3]).into_string();
        assert_eq!(h.matches("<rect").count(), 4);
        assert!(h.contains("fill=\"#d33\""), "a missing piece is red");
        let h = heat(&[2; 1000]).into_string();
        assert_eq!(h.matches("<rect").count(), 400);
        assert!(h.contains("data-pieces=\"1000\""));
    }

    /// Text from a peer (its id, its address, a torrent's name) is escaped once: a peer cannot
    /// write markup into the page, and a name shows as it is.
    #[test]
    fn what_peers_send_is_escaped() {
        let r = || Row {
            role: "other",
            class: "role-other",
            peer_id: "<script>alert(1)</script>".into(),
            addr: "10.0.0.1\"><b>".into(),
            link: None,
            state: "running".into(),
            progress: Some(0.5),
            up_rate: None,
            down_rate: None,
            uploaded: None,
            last_seen: None,
            reincarnations: None,
        };
        let h = row(&r()).into_string();
        assert!(!h.contains("<script>") && !h.contains("<b>"), "{h}");
        assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{h}");
        assert_eq!(
            h.matches("<span class=\"muted\">–</span>").count(),
            5,
            "{h}"
        );
        assert!(h.contains("<i style=\"width:50%\"></i></span> 50%"), "{h}");
        let sw = Swarm {
            info_hash: "ab".repeat(20),
            name: Some("Tom & Jerry <1>.mkv".into()),
            size: Some(2048),
            seeds: 1,
            leechers: 2,
            completed: 3,
            uploaded: 0,
            up_rate: 0.0,
            holders: Vec::new(),
            rows: vec![r()],
            shown: 1,
        };
        let h = swarm(&sw).into_string();
        assert!(h.contains("<h2>Tom &amp; Jerry &lt;1&gt;.mkv</h2>"), "{h}");
        assert!(
            h.contains(&format!(
                "<p><code>{}</code> · 2.0 KiB · 1 seeds · 2 leechers · 3 completed · 1 clients",
                "ab".repeat(20)
            )),
            "{h}"
        );
    }
}
