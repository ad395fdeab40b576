//! The VoD timeline of one run, drawn from a client's [`Report`]: the deadline curve B(t)
//! against the contiguous bytes held over time, with each piece's arrival marked (from the
//! server in red, from peers in grey), and the running penalty. One SVG for the live status page
//! and for `run/report.svg`, a standalone XML document (every attribute quoted, the SVG
//! namespace declared, text escaped); the same data as CSV for `run/report.csv`.

use std::fmt::Write;

use super::{Model, Report, Source};

/// Width and height of the chart in SVG user units (it scales with the page).
const W: f64 = 720.0;
const H: f64 = 260.0;
/// Margins: left (the byte axis labels), right, top, bottom (the time axis labels).
const ML: f64 = 64.0;
const MR: f64 = 12.0;
const MT: f64 = 24.0;
const MB: f64 = 30.0;

/// The contiguous prefix held over time: (seconds, bytes) after each arrival that grew it.
pub fn contiguous(r: &Report) -> Vec<(f64, u64)> {
    let mut arrivals: Vec<(f64, u32)> = r
        .pieces_detail
        .iter()
        .filter_map(|p| p.arrived.map(|t| (t, p.index)))
        .collect();
    arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut held = vec![false; r.pieces as usize];
    let mut prefix = 0usize;
    let mut out = vec![(0.0, 0)];
    for (t, i) in arrivals {
        if let Some(h) = held.get_mut(i as usize) {
            *h = true;
        }
        let before = prefix;
        while prefix < held.len() && held[prefix] {
            prefix += 1;
        }
        if prefix != before {
            let bytes = (prefix as u64 * r.piece_length as u64).min(r.size);
            out.push((t, bytes));
        }
    }
    out
}

/// The chart's scales: seconds to x and bytes to y.
struct Frame {
    t_max: f64,
    b_max: f64,
}

impl Frame {
    fn x(&self, t: f64) -> f64 {
        ML + (t / self.t_max).clamp(0.0, 1.0) * (W - ML - MR)
    }

    fn y(&self, b: f64) -> f64 {
        H - MB - (b / self.b_max).clamp(0.0, 1.0) * (H - MT - MB)
    }
}

/// The timeline as a standalone SVG document. `now`: seconds since the client started, for a
/// run in progress (draws a "now" line); `None` for a finished run.
pub fn svg(r: &Report, now: Option<f64>) -> String {
    let model = Model::new(r.rate, r.delay, r.prefetch, r.size, r.piece_length);
    let f = Frame {
        t_max: model.end().max(r.elapsed).max(now.unwrap_or(0.0)).max(1.0) * 1.02,
        b_max: r.size.max(1) as f64,
    };
    let mut s = String::with_capacity(16 * 1024);
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" viewBox=\"0 0 {W} {H}\" \
         width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"11\">\
         <rect width=\"{W}\" height=\"{H}\" fill=\"#fff\"/>"
    );
    axes(&mut s, &f);
    // The deadline curve B(t) = R(P + t - D), clamped to the file.
    let t0 = (r.delay - r.prefetch).max(0.0);
    let _ = write!(
        s,
        "<polyline class=\"deadline\" fill=\"none\" stroke=\"#d33\" stroke-dasharray=\"5 3\" \
         points=\"{:.1},{:.1} {:.1},{:.1} {:.1},{:.1} {:.1},{:.1}\"/>",
        f.x(0.0),
        f.y(0.0),
        f.x(t0),
        f.y(0.0),
        f.x(model.end()),
        f.y(f.b_max),
        f.x(f.t_max),
        f.y(f.b_max)
    );
    held(&mut s, &f, r, now.or(r.finished_at).unwrap_or(r.elapsed));
    arrivals(&mut s, &f, r);
    if let Some(n) = now {
        let _ = write!(
            s,
            "<line class=\"now\" x1=\"{0:.1}\" y1=\"{MT}\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"#aaa\"/>",
            f.x(n),
            H - MB
        );
    }
    // Legend and the running penalty.
    let _ = write!(
        s,
        "<text x=\"{ML}\" y=\"15\" fill=\"#333\"><tspan fill=\"#d33\">- - deadline B(t)</tspan>\
         <tspan dx=\"14\" fill=\"#27a\">— contiguous bytes held</tspan>\
         <tspan dx=\"14\" fill=\"#d33\">● from the server</tspan>\
         <tspan dx=\"14\" fill=\"#888\">● from peers</tspan></text>\
         <text class=\"penalty\" x=\"{}\" y=\"15\" text-anchor=\"end\" fill=\"#333\">penalty {} B</text></svg>",
        W - MR,
        r.penalty
    );
    s
}

/// Axes with a few ticks.
fn axes(s: &mut String, f: &Frame) {
    let _ = write!(
        s,
        "<g stroke=\"#999\"><line x1=\"{ML}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>\
         <line x1=\"{ML}\" y1=\"{MT}\" x2=\"{ML}\" y2=\"{}\"/></g>",
        H - MB,
        W - MR,
        H - MB,
        H - MB
    );
    let step = nice_step(f.t_max / 6.0);
    let mut t = 0.0;
    while t <= f.t_max {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">{t:.0} s</text>",
            f.x(t),
            H - MB + 16.0
        );
        t += step;
    }
    for k in 0..=4 {
        let b = f.b_max * k as f64 / 4.0;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{}</text>",
            ML - 6.0,
            f.y(b) + 4.0,
            crate::util::html::human(b as u64)
        );
    }
}

/// Contiguous bytes held, as a step line up to `end_t`.
fn held(s: &mut String, f: &Frame, r: &Report, end_t: f64) {
    s.push_str(
        "<polyline class=\"held\" fill=\"none\" stroke=\"#27a\" stroke-width=\"2\" points=\"",
    );
    let mut last = 0.0;
    for (t, b) in contiguous(r) {
        let _ = write!(
            s,
            "{:.1},{:.1} {:.1},{:.1} ",
            f.x(t),
            f.y(last),
            f.x(t),
            f.y(b as f64)
        );
        last = b as f64;
    }
    let _ = write!(s, "{:.1},{:.1}\"/>", f.x(end_t), f.y(last));
}

/// Every arrival: a dot at (arrival, the piece's first byte), red from the server.
fn arrivals(s: &mut String, f: &Frame, r: &Report) {
    for p in &r.pieces_detail {
        let Some(t) = p.arrived else { continue };
        let (class, color, rad) = match p.source {
            Some(Source::Server) => ("server", "#d33", 2.6),
            _ => ("peer", "#888", 1.6),
        };
        let _ = write!(
            s,
            "<circle class=\"pt {class}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"{rad}\" fill=\"{color}\"/>",
            f.x(t),
            f.y(p.index as f64 * r.piece_length as f64)
        );
    }
}

/// Round a step up to 1, 2 or 5 times a power of ten.
fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1e-9);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&v| v >= raw)
        .unwrap_or(10.0 * p)
}

/// One line per piece: index, first byte, deadline, arrival (empty if none), source.
pub fn csv(r: &Report) -> String {
    let mut s = String::from("piece,offset,deadline_s,arrived_s,source\n");
    for p in &r.pieces_detail {
        let _ = writeln!(
            s,
            "{},{},{:.3},{},{}",
            p.index,
            p.index as u64 * r.piece_length as u64,
            p.deadline,
            p.arrived.map(|t| format!("{t:.3}")).unwrap_or_default(),
            match p.source {
                Some(Source::Server) => "server",
                Some(Source::Peer) => "peer",
                None => "",
            }
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vod::PieceDetail;

    fn report(arrivals: &[(u32, f64, Source)]) -> Report {
        let model = Model::new(5.0, 6.0, 2.0, 4 * 1024, 1024);
        let mut r = Report {
            torrent: "t".into(),
            size: 4 * 1024,
            piece_length: 1024,
            pieces: 4,
            rate: 5.0,
            delay: 6.0,
            prefetch: 2.0,
            policy: "rarest".into(),
            bytes_from_peers: 0,
            bytes_from_server: 0,
            bytes_from_server_discarded: 0,
            pieces_from_server: 0,
            penalty: 2048,
            elapsed: 5.0,
            position: 0,
            finished_at: None,
            pieces_detail: (0..4)
                .map(|i| PieceDetail {
                    index: i,
                    deadline: model.deadline(i),
                    arrived: None,
                    source: None,
                })
                .collect(),
        };
        for &(i, t, src) in arrivals {
            r.pieces_detail[i as usize].arrived = Some(t);
            r.pieces_detail[i as usize].source = Some(src);
        }
        r
    }

    #[test]
    fn contiguous_prefix_grows_only_when_the_gap_fills() {
        let r = report(&[
            (1, 1.0, Source::Peer),
            (0, 2.0, Source::Peer),
            (3, 3.0, Source::Peer),
            (2, 4.0, Source::Server),
        ]);
        // Piece 1 alone holds nothing contiguous; 0 brings 2 KiB; 3 nothing; 2 completes.
        assert_eq!(contiguous(&r), vec![(0.0, 0), (2.0, 2048), (4.0, 4096)]);
    }

    #[test]
    fn svg_marks_each_arrival_by_source_and_shows_the_penalty() {
        let r = report(&[(0, 2.0, Source::Peer), (1, 4.6, Source::Server)]);
        let s = svg(&r, Some(5.0));
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        assert_eq!(s.matches("class=\"pt server\"").count(), 1);
        assert_eq!(s.matches("class=\"pt peer\"").count(), 1);
        assert!(s.contains("class=\"deadline\"") && s.contains("class=\"held\""));
        assert!(s.contains("class=\"now\""));
        assert!(s.contains("penalty 2048 B"));
        // A finished run has no "now" line.
        assert!(!svg(&r, None).contains("class=\"now\""));
    }

    #[test]
    fn svg_is_a_standalone_xml_document() {
        let r = report(&[(0, 2.0, Source::Peer), (1, 4.6, Source::Server)]);
        for now in [Some(5.0), None] {
            let s = svg(&r, now);
            let doc = roxmltree::Document::parse(&s).unwrap_or_else(|e| panic!("{e}: {s}"));
            let root = doc.root_element();
            assert_eq!(root.tag_name().name(), "svg");
            assert_eq!(
                root.tag_name().namespace(),
                Some("http://www.w3.org/2000/svg")
            );
            assert_eq!(root.attribute("class"), Some("timeline"));
            let circles = doc
                .descendants()
                .filter(|n| n.has_tag_name("circle"))
                .count();
            assert_eq!(circles, 2);
        }
    }

    #[test]
    fn csv_has_a_line_per_piece() {
        let r = report(&[(2, 4.0, Source::Server)]);
        let c = csv(&r);
        let lines: Vec<&str> = c.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[3], "2,2048,4.400,4.000,server");
        assert_eq!(lines[1], "0,0,4.000,,");
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(13.0), 20.0);
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(50.0), 50.0);
    }
}
