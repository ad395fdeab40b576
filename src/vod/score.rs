//! The score of a run: the VoD server's count is the penalty (score = −penalty); the report my
//! client wrote, when it wrote one, is set beside it and must agree. A client that never called
//! the server is scored by the referee instead ([`super::referee`]): the bytes of the pieces
//! that the world and the server together had not delivered by their deadlines. [`score`] turns what a
//! supervised run ended with ([`Outcome`]) into the lines `testbed run` prints and the
//! `run/summary.json` it writes ([`Summary`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::referee::Verdict;
use super::server::Served;
use super::Report;
use crate::util::Exit;

/// What a supervised run ended with.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How my client ended; `None` when the run was stopped before it did.
    pub my_exit: Option<Exit>,
    /// The VoD server's count per client: the penalty.
    pub served: BTreeMap<String, Served>,
    /// Size of my client's file.
    pub my_size: u64,
    /// The run's id (every process it started carried it as `TESTBED_RUN_ID`).
    pub run_id: String,
    /// The referee's verdict on my client (when there was one).
    pub referee: Option<super::referee::Verdict>,
    /// What ran it: `real` or `shadow`.
    pub engine: &'static str,
}

/// `run/summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// −penalty.
    pub score: i64,
    /// Bytes the VoD server sent my client, or, for a client that never called it, the
    /// referee's late bytes.
    pub penalty: u64,
    /// Where the penalty comes from: `server` or `referee`.
    pub penalty_source: String,
    pub server_bytes: u64,
    /// `server_bytes` over the file's size.
    pub server_share: f64,
    pub server_by_client: BTreeMap<String, Served>,
    /// My client's file, bytes.
    pub size: u64,
    /// What my client's own report says, when it wrote one.
    pub client_report: Option<ClientReport>,
    /// Whether that report's server bytes equal the server's count.
    pub agree: Option<bool>,
    pub my_client_exit: Option<String>,
    /// Wall time of the whole run.
    pub seconds: f64,
    pub run_id: String,
    /// The referee's verdict (late pieces from the supply side), for any client.
    pub referee: Option<super::referee::Verdict>,
    /// What ran it: `real` (processes in real time) or `shadow` (a simulation); `real` in a
    /// summary from before the field.
    #[serde(default = "real_engine")]
    pub engine: String,
}

fn real_engine() -> String {
    "real".into()
}

/// The figures of my client's report that the summary keeps.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientReport {
    pub bytes_from_server: u64,
    pub bytes_from_peers: u64,
    pub pieces_from_server: u32,
    pub penalty: u64,
    pub finished_at: Option<f64>,
    pub policy: String,
}

/// A scored run: the summary, the lines for the terminal, and what went wrong if anything did.
pub struct Scored {
    pub summary: Summary,
    pub text: String,
    /// My client did not end cleanly, or its report disagrees with the server.
    pub problem: Option<String>,
}

/// Score a finished run against my client's report file (which may be missing or unreadable).
pub fn score(o: &Outcome, report: &Path, seconds: f64) -> Scored {
    let server: u64 = o.served.values().map(|s| s.bytes).sum();
    let (rep, unreadable) = read_report(report);
    let agree = rep.as_ref().map(|r| r.bytes_from_server == server);
    let by_referee = server == 0 && o.referee.is_some();
    let penalty = match &o.referee {
        Some(v) if by_referee => v.late_bytes,
        _ => server,
    };
    let pct = |b: u64| match o.my_size {
        0 => 0.0,
        size => b as f64 * 100.0 / size as f64,
    };
    let mut text = match &o.referee {
        Some(v) if by_referee => format!(
            "score: -{penalty}  (referee: {} = {penalty} bytes late at their deadline, \
             {:.1}% of the {} byte file; my client never called the VoD server)",
            pieces(v.late_pieces),
            pct(penalty),
            o.my_size
        ),
        _ => format!(
            "score: -{server}  ({server} bytes from the VoD server = {:.1}% of the {} byte file)",
            pct(server),
            o.my_size
        ),
    };
    if let Some(v) = &o.referee {
        text.push_str(&referee_lines(v, by_referee, pct));
    }
    text.push_str(&match (&rep, &unreadable) {
        (Some(r), _) => format!(
            "\nmy client's report: {} bytes from the server ({} pieces), {} from peers, policy {}; {}",
            r.bytes_from_server,
            r.pieces_from_server,
            r.bytes_from_peers,
            r.policy,
            if agree == Some(true) { "agrees with the server's count" } else { "DISAGREES with the server's count" }
        ),
        (None, Some(e)) => {
            format!("\nmy client's report is unreadable ({e}); the server's count is the score")
        }
        (None, None) if by_referee => "\nmy client wrote no report".into(),
        (None, None) => "\nmy client wrote no report (the server's count is the score)".into(),
    });
    let summary = Summary {
        score: -(penalty as i64),
        penalty,
        penalty_source: if by_referee { "referee" } else { "server" }.into(),
        server_bytes: server,
        server_share: match o.my_size {
            0 => 0.0,
            size => server as f64 / size as f64,
        },
        server_by_client: o.served.clone(),
        size: o.my_size,
        client_report: rep.as_ref().map(ClientReport::from),
        agree,
        my_client_exit: o.my_exit.map(|e| e.to_string()),
        seconds,
        run_id: o.run_id.clone(),
        referee: o.referee.clone(),
        engine: o.engine.to_string(),
    };
    Scored {
        summary,
        text,
        problem: problem(o.my_exit, agree),
    }
}

/// My client's report: none when there is no file; one that is there but unreadable is said
/// so (with serde's reason), not ignored.
fn read_report(path: &Path) -> (Option<Report>, Option<String>) {
    match std::fs::read(path) {
        Err(_) => (None, None),
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(format!("{}: {e}", path.display()))),
        },
    }
}

fn pieces(n: u32) -> String {
    match n {
        1 => "1 piece".to_string(),
        n => format!("{n} pieces"),
    }
}

/// The referee's lines: the late pieces (when the server's count is the score), the world's
/// supply and its waste, my client's upload, the notes. `pct`: bytes as a share of the file.
fn referee_lines(v: &Verdict, by_referee: bool, pct: impl Fn(u64) -> f64) -> String {
    let mut text = String::new();
    if !by_referee {
        text.push_str(&format!(
            "\nreferee: {} ({} bytes) late at their deadline",
            pieces(v.late_pieces),
            v.late_bytes
        ));
    }
    let waste = match (v.wasted_bytes, v.duplicate_bytes) {
        (Some(w), Some(d)) => format!(
            " ({:.1}% wasted: {:.1}% sent twice, {:.1}% sent by the server too)",
            pct(w),
            pct(d),
            pct(w.saturating_sub(d))
        ),
        _ => String::new(),
    };
    text.push_str(&format!(
        "\nreferee: {} world clients met my client, {:.1}% of the file sent by the world{waste}{}",
        v.world_peers_connected,
        pct(v.bytes_from_world),
        v.first_block_at
            .map(|t| format!(", first block at {t:.1} s"))
            .unwrap_or_default()
    ));
    text.push_str(&format!(
        "\nreferee: my client uploaded {:.0} KiB to the world, {:.1} KB/s over its busiest {:.0} s",
        v.bytes_to_world as f64 / 1024.0,
        v.upload_peak / 1024.0,
        super::referee::UPLOAD_WINDOW
    ));
    for n in &v.notes {
        text.push_str(&format!("\nreferee: note: {n}"));
    }
    text
}

/// What went wrong, if anything: my client did not end cleanly, or its report disagrees with
/// the server's count.
fn problem(exit: Option<Exit>, agree: Option<bool>) -> Option<String> {
    match (exit, agree) {
        (Some(e), Some(false)) if e.is_clean() => {
            Some("the client's report disagrees with the server's count".to_string())
        }
        (Some(e), _) if e.is_clean() => None,
        (Some(e), _) => Some(format!("my client ended with {e}")),
        (None, _) => Some("stopped before my client ended".to_string()),
    }
}

impl From<&Report> for ClientReport {
    fn from(r: &Report) -> ClientReport {
        ClientReport {
            bytes_from_server: r.bytes_from_server,
            bytes_from_peers: r.bytes_from_peers,
            pieces_from_server: r.pieces_from_server,
            penalty: r.penalty,
            finished_at: r.finished_at,
            policy: r.policy.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(exit: Option<Exit>, bytes: u64) -> Outcome {
        let mut served = BTreeMap::new();
        served.insert("me".to_string(), Served { bytes, requests: 1 });
        Outcome {
            my_exit: exit,
            served,
            my_size: 1000,
            run_id: "r".into(),
            referee: None,
            engine: "real",
        }
    }

    #[test]
    fn the_server_count_is_the_score_and_a_report_must_agree() {
        let d = tempfile::tempdir().unwrap();
        let none = d.path().join("none.json");
        let s = score(&outcome(Some(Exit::Code(0)), 250), &none, 1.0);
        assert_eq!((s.summary.score, s.summary.penalty), (-250, 250));
        assert!((s.summary.server_share - 0.25).abs() < 1e-12);
        assert_eq!(s.summary.agree, None);
        assert!(s.problem.is_none(), "no report is no problem");
        assert!(s.text.contains("wrote no report"), "{}", s.text);

        let bad = d.path().join("bad.json");
        std::fs::write(&bad, b"{").unwrap();
        let s = score(&outcome(Some(Exit::Code(0)), 250), &bad, 1.0);
        assert!(s.text.contains("unreadable"), "{}", s.text);

        let rep = d.path().join("rep.json");
        let mut r = Report {
            torrent: "m".into(),
            size: 1000,
            piece_length: 100,
            pieces: 10,
            rate: 1.0,
            delay: 0.0,
            prefetch: 0.0,
            policy: "p".into(),
            bytes_from_peers: 750,
            bytes_from_server: 100,
            bytes_from_server_discarded: 0,
            pieces_from_server: 1,
            penalty: 100,
            elapsed: 0.0,
            position: 0,
            finished_at: Some(9.0),
            pieces_detail: Vec::new(),
        };
        std::fs::write(&rep, serde_json::to_vec(&r).unwrap()).unwrap();
        let s = score(&outcome(Some(Exit::Code(0)), 250), &rep, 1.0);
        assert_eq!(s.summary.agree, Some(false));
        assert!(s.problem.unwrap().contains("disagrees"));
        r.bytes_from_server = 250;
        std::fs::write(&rep, serde_json::to_vec(&r).unwrap()).unwrap();
        let s = score(&outcome(Some(Exit::Signal(9)), 250), &rep, 1.0);
        assert_eq!(s.summary.agree, Some(true));
        assert!(s.problem.unwrap().contains("signal 9"));
        let s = score(&outcome(None, 250), &rep, 1.0);
        assert!(s.problem.unwrap().contains("stopped before"));
        // The summary file reads back as the same type.
        let json = serde_json::to_string(&s.summary).unwrap();
        assert_eq!(serde_json::from_str::<Summary>(&json).unwrap(), s.summary);
    }

    #[test]
    fn a_client_that_never_called_the_server_is_scored_by_the_referee() {
        use crate::vod::referee::Referee;
        use crate::vod::Model;
        let d = tempfile::tempdir().unwrap();
        // Two pieces of 500 bytes; the world sends piece 0 in time, piece 1 never.
        let mut r = Referee::new(Model::new(1.0, 2.0, 0.0, 1000, 500));
        r.connected("w");
        r.world_block(0.5, 0, 0, 500);
        r.have(0.6, 0);
        let mut o = outcome(Some(Exit::Code(0)), 0);
        o.served.clear();
        o.referee = Some(r.verdict(Vec::new()));
        let s = score(&o, &d.path().join("none"), 1.0);
        assert_eq!(s.summary.penalty_source, "referee");
        assert_eq!((s.summary.penalty, s.summary.score), (500, -500));
        assert!(
            s.text
                .starts_with("score: -500  (referee: 1 piece = 500 bytes late"),
            "{}",
            s.text
        );
        // With server bytes, the server's count stays the penalty; the referee is beside it.
        let mut o = outcome(Some(Exit::Code(0)), 250);
        o.referee = Some(Referee::new(Model::new(1.0, 2.0, 0.0, 1000, 500)).verdict(Vec::new()));
        let s = score(&o, &d.path().join("none"), 1.0);
        assert_eq!(
            (s.summary.penalty_source.as_str(), s.summary.penalty),
            ("server", 250)
        );
        assert!(
            s.text.contains("referee: 2 pieces (1000 bytes) late"),
            "{}",
            s.text
        );
        assert!(
            s.text
                .contains("note: my client connected to no world peer"),
            "{}",
            s.text
        );
    }
}
