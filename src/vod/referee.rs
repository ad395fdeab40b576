//! The referee: my client's score from the supply side, for any client.
//!
//! The VoD server's byte count scores a client that calls it. A client that never does (an
//! unmodified one) would score 0 whatever it did, so the world also reports what it gave my
//! client (`peer::referee`), and here that becomes a verdict per piece, on my client's clock
//! (seconds since the supervisor started it):
//!
//! * `complete_at`: when the world had sent every byte of the piece;
//! * `have_at`: when my client first announced it (HAVE, BITFIELD, HAVE ALL);
//! * `server`: whether the VoD server sent any of it;
//! * late: the world and the server together had not delivered all of it by its deadline.
//!   Server bytes count until [`SERVER_GRACE`] after the deadline: a client asks the server at
//!   the deadline (that is the rule), so its answer comes a moment after.
//!
//! What the world delivered counts, never what my client claims: `have_at` is shown, not used.
//!
//! The world also counts what it received from my client, and that is held against my client's
//! upload cap: a client's uploads buy the world's unchokes (BitTornado's choker prefers the
//! peers that upload to it most), so one that uploads beyond the cap it was given buys a better
//! score than a capped client can. Over its busiest [`UPLOAD_WINDOW`] seconds my client may send
//! the world its cap's worth plus [`UPLOAD_SLACK`]; more is flagged (`upload_over_cap`, and a
//! note). Found so: libtorrent exempts peers on a local network from its rate limits by default
//! (its `local` peer class), and every lab address is local.

use serde::{Deserialize, Serialize};

use super::{Model, PieceDetail, Report};

/// Seconds after a deadline within which the server's bytes still count as in time.
pub const SERVER_GRACE: f64 = 2.0;

/// The start-up, in seconds of my client's clock: what the world delivers in it decides most
/// of a run (BENCHMARKS.md, "Supply and waste").
pub const STARTUP: f64 = 10.0;

/// Seconds over which my client's uploads are held against its cap.
pub const UPLOAD_WINDOW: f64 = 10.0;

/// Bytes beyond the cap allowed in any [`UPLOAD_WINDOW`]: eight blocks, a rate limiter's
/// burst. libtorrent with its cap on every peer pays its quota out about a second at a time (up
/// to 128 KiB in one second, none in the next): over 5 s windows it reached 77 KB/s under a
/// 60 KB/s cap, over 10 s 65.6 KB/s (56 KiB beyond the cap), over 20 s 58.4. Uncapped, a client
/// exceeds this many times over.
pub const UPLOAD_SLACK: u64 = 8 * 16384;

/// Where a piece came from, as the referee saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The world sent all of it and the server none.
    Peer,
    /// The server sent some or all of it.
    Server,
    /// Neither delivered all of it.
    Missing,
}

/// The verdict on one piece.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Piece {
    pub index: u32,
    pub deadline: f64,
    pub complete_at: Option<f64>,
    pub have_at: Option<f64>,
    pub source: Source,
    pub late: bool,
}

/// `referee` in `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub late_pieces: u32,
    pub late_bytes: u64,
    /// World clients that connected with my client.
    pub world_peers_connected: u32,
    /// When the world sent my client its first block.
    pub first_block_at: Option<f64>,
    /// Bytes of blocks the world sent my client (a block sent twice counts twice).
    pub bytes_from_world: u64,
    /// Of those, the bytes that saved no server byte: a second copy of a byte the world had
    /// already sent, or a byte the server sent too (the piece was late, and its bytes from
    /// peers came after the server's, or raced them). `bytes_from_world - wasted_bytes` are
    /// the bytes my client kept from peers. What is wasted is my client's requests' doing;
    /// it costs server bytes only while the world sends less than my client plays (a second
    /// copy from a peer with bandwidth to spare costs nothing). `None`: a summary from before
    /// the field.
    #[serde(default)]
    pub wasted_bytes: Option<u64>,
    /// Of the wasted bytes, the second copies (the rest the server sent too).
    #[serde(default)]
    pub duplicate_bytes: Option<u64>,
    /// Pieces the world alone completed within the first [`STARTUP`] seconds.
    #[serde(default)]
    pub startup_pieces: u32,
    /// "First byte played": seconds until piece 0 was playable, from the world (when it was
    /// complete) or from the server (at its deadline, when the server was asked for it).
    #[serde(default)]
    pub first_piece_at: Option<f64>,
    /// Bytes of blocks the world received from my client.
    #[serde(default)]
    pub bytes_to_world: u64,
    /// My client's upload over its busiest [`UPLOAD_WINDOW`] seconds, bytes/s.
    #[serde(default)]
    pub upload_peak: f64,
    /// Whether it sent more than its cap allows in some window (see the module doc).
    #[serde(default)]
    pub upload_over_cap: bool,
    /// What the referee found odd (no world peer, several peer ids, no HAVE at all...).
    pub notes: Vec<String>,
    #[serde(skip)]
    pub pieces: Vec<Piece>,
}

impl Verdict {
    /// The verdict in the shape of a client's report, for the timeline of a client that writes
    /// none: a piece the world completed arrived then, from peers; a piece the server sent,
    /// at its deadline (the server answers when asked, at the deadline); the rest not yet.
    pub fn as_report(
        &self,
        torrent: &str,
        model: &Model,
        elapsed: f64,
        server_bytes: u64,
    ) -> Report {
        let pieces_detail: Vec<PieceDetail> = self
            .pieces
            .iter()
            .map(|p| {
                let (arrived, source) = match p.source {
                    Source::Server => (Some(p.deadline), Some(super::Source::Server)),
                    Source::Peer => (p.complete_at, Some(super::Source::Peer)),
                    Source::Missing => (None, None),
                };
                PieceDetail {
                    index: p.index,
                    deadline: p.deadline,
                    arrived,
                    source,
                }
            })
            .collect();
        Report {
            torrent: torrent.to_string(),
            size: model.size,
            piece_length: model.piece_length,
            pieces: model.num_pieces(),
            rate: model.rate / super::KB,
            delay: model.delay,
            prefetch: model.prefetch,
            policy: "(seen by the referee)".into(),
            bytes_from_peers: self.bytes_from_world,
            bytes_from_server: server_bytes,
            bytes_from_server_discarded: 0,
            pieces_from_server: self
                .pieces
                .iter()
                .filter(|p| p.source == Source::Server)
                .count() as u32,
            penalty: server_bytes,
            elapsed,
            position: model.needed(elapsed),
            finished_at: None,
            pieces_detail,
        }
    }
}

/// The events of a run, on my client's clock, and the model that gives the deadlines.
pub struct Referee {
    model: Model,
    /// Per piece: (time, begin, end) of what the world sent.
    world: Vec<Vec<(f64, u32, u32)>>,
    /// Per piece: (time, begin, end) of what the server sent.
    server: Vec<Vec<(f64, u32, u32)>>,
    have: Vec<Option<f64>>,
    any_have: bool,
    first_block: Option<f64>,
    bytes: u64,
    peers: std::collections::BTreeSet<String>,
    /// (time, bytes) of each block the world received from my client.
    uploads: Vec<(f64, u32)>,
    /// My client's upload cap, bytes/s (0: none).
    upload_cap: f64,
}

impl Referee {
    pub fn new(model: Model) -> Referee {
        let n = model.num_pieces() as usize;
        Referee {
            model,
            world: vec![Vec::new(); n],
            server: vec![Vec::new(); n],
            have: vec![None; n],
            any_have: false,
            first_block: None,
            bytes: 0,
            peers: Default::default(),
            uploads: Vec::new(),
            upload_cap: 0.0,
        }
    }

    /// Hold my client's uploads against `cap` bytes/s (0: no cap).
    pub fn with_upload_cap(mut self, cap: f64) -> Referee {
        self.upload_cap = cap;
        self
    }

    /// A world client received `len` bytes of a block from my client at `t`.
    pub fn my_upload(&mut self, t: f64, len: u32) {
        self.uploads.push((t, len));
    }

    /// The most bytes my client sent in any [`UPLOAD_WINDOW`], and when that window began.
    fn busiest_window(&self) -> (u64, f64) {
        let mut up = self.uploads.clone();
        up.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (mut best, mut at, mut sum, mut lo) = (0u64, 0.0, 0u64, 0usize);
        for hi in 0..up.len() {
            sum += up[hi].1 as u64;
            while up[hi].0 - up[lo].0 >= UPLOAD_WINDOW {
                sum -= up[lo].1 as u64;
                lo += 1;
            }
            if sum > best {
                (best, at) = (sum, up[lo].0);
            }
        }
        (best, at)
    }

    fn piece_len(&self, i: u32) -> u32 {
        let l = self.model.piece_length as u64;
        (self.model.size - i as u64 * l).min(l) as u32
    }

    /// World client `who` connected with my client.
    pub fn connected(&mut self, who: &str) {
        self.peers.insert(who.to_string());
    }

    /// The world sent `len` bytes of piece `piece` at `begin`, at `t`.
    pub fn world_block(&mut self, t: f64, piece: u32, begin: u32, len: u32) {
        if let Some(v) = self.world.get_mut(piece as usize) {
            v.push((t, begin, begin.saturating_add(len)));
            self.bytes += len as u64;
            self.first_block = Some(self.first_block.map_or(t, |f| f.min(t)));
        }
    }

    /// My client announced `piece` at `t`.
    pub fn have(&mut self, t: f64, piece: u32) {
        self.any_have = true;
        if let Some(h) = self.have.get_mut(piece as usize) {
            *h = Some(h.map_or(t, |x| x.min(t)));
        }
    }

    /// The server sent bytes `[start, start + len)` of the file at `t`.
    pub fn server_range(&mut self, t: f64, start: u64, len: u64) {
        let l = self.model.piece_length as u64;
        let end = (start + len).min(self.model.size);
        let mut at = start;
        while at < end {
            let i = at / l;
            let piece_end = ((i + 1) * l).min(end);
            if let Some(v) = self.server.get_mut(i as usize) {
                v.push((t, (at - i * l) as u32, (piece_end - i * l) as u32));
            }
            at = piece_end;
        }
    }

    /// The verdict, with `notes` from whoever identified my client.
    pub fn verdict(&self, mut notes: Vec<String>) -> Verdict {
        let mut pieces = Vec::with_capacity(self.world.len());
        let (mut late_pieces, mut late_bytes) = (0u32, 0u64);
        // Bytes of the file the world covered, and of those the ones the server covered too.
        let (mut covered, mut both) = (0u64, 0u64);
        for i in 0..self.world.len() as u32 {
            let len = self.piece_len(i);
            let deadline = self.model.deadline(i);
            let w = &self.world[i as usize];
            let s = &self.server[i as usize];
            let (c, b) = world_cover(w, s, len);
            (covered, both) = (covered + c, both + b);
            let complete_at = covered_at(w.iter().copied(), len);
            let in_time = w
                .iter()
                .filter(|e| e.0 <= deadline)
                .chain(s.iter().filter(|e| e.0 <= deadline + SERVER_GRACE))
                .copied();
            let late = covered_at(in_time, len).is_none();
            if late {
                late_pieces += 1;
                late_bytes += len as u64;
            }
            let source = if !s.is_empty() {
                Source::Server
            } else if complete_at.is_some() {
                Source::Peer
            } else {
                Source::Missing
            };
            pieces.push(Piece {
                index: i,
                deadline: (deadline * 1000.0).round() / 1000.0,
                complete_at,
                have_at: self.have[i as usize],
                source,
                late,
            });
        }
        if self.peers.is_empty() {
            notes.push("my client connected to no world peer".into());
        } else if !self.any_have {
            notes.push(
                "my client announced no piece to the world (no HAVE, BITFIELD or HAVE ALL): \
                 have_at is empty; the verdict rests on what the world sent"
                    .into(),
            );
        }
        let (busiest, busiest_at) = self.busiest_window();
        let allowed = (self.upload_cap * UPLOAD_WINDOW) as u64 + UPLOAD_SLACK;
        let upload_over_cap = self.upload_cap > 0.0 && busiest > allowed;
        if upload_over_cap {
            notes.push(format!(
                "my client uploaded {:.0} KB/s over its busiest {UPLOAD_WINDOW:.0} s (from {busiest_at:.1} s), \
                 above its cap of {:.0} KB/s: uploads buy the world's unchokes, so this score is not \
                 comparable with a capped client's",
                busiest as f64 / UPLOAD_WINDOW / 1024.0,
                self.upload_cap / 1024.0
            ));
        }
        let startup_pieces = pieces
            .iter()
            .filter(|p| p.source == Source::Peer && p.complete_at.is_some_and(|t| t <= STARTUP))
            .count() as u32;
        let first_piece_at = pieces.first().and_then(|p| match p.source {
            Source::Server => Some(p.complete_at.map_or(p.deadline, |t| t.min(p.deadline))),
            Source::Peer => p.complete_at,
            Source::Missing => None,
        });
        Verdict {
            late_pieces,
            late_bytes,
            startup_pieces,
            first_piece_at,
            world_peers_connected: self.peers.len() as u32,
            first_block_at: self.first_block,
            bytes_from_world: self.bytes,
            wasted_bytes: Some(self.bytes.saturating_sub(covered - both)),
            duplicate_bytes: Some(self.bytes.saturating_sub(covered)),
            bytes_to_world: self.uploads.iter().map(|u| u.1 as u64).sum(),
            upload_peak: busiest as f64 / UPLOAD_WINDOW,
            upload_over_cap,
            notes,
            pieces,
        }
    }
}

/// The bytes of `[0, len)` that the world's ranges cover, and of those the ones the server's
/// cover too: my client kept the difference from peers, of one piece.
fn world_cover(world: &[(f64, u32, u32)], server: &[(f64, u32, u32)], len: u32) -> (u64, u64) {
    let w = merged(world, len);
    let s = merged(server, len);
    let covered = |v: &[(u32, u32)]| v.iter().map(|&(b, e)| (e - b) as u64).sum::<u64>();
    let both: u64 = w
        .iter()
        .flat_map(|&(wb, we)| {
            s.iter()
                .map(move |&(sb, se)| we.min(se).saturating_sub(wb.max(sb)) as u64)
        })
        .sum();
    (covered(&w), both)
}

/// The ranges `(_, begin, end)` clipped to `[0, len)` and merged: sorted, disjoint, none
/// touching the next.
fn merged(ranges: &[(f64, u32, u32)], len: u32) -> Vec<(u32, u32)> {
    let mut v: Vec<(u32, u32)> = ranges
        .iter()
        .map(|&(_, b, e)| (b, e.min(len)))
        .filter(|&(b, e)| b < e)
        .collect();
    v.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(v.len());
    for (b, e) in v {
        match out.last_mut() {
            Some(last) if b <= last.1 => last.1 = last.1.max(e),
            _ => out.push((b, e)),
        }
    }
    out
}

/// The earliest time at which the ranges `(t, begin, end)` cover `[0, len)`, or `None`.
fn covered_at(events: impl Iterator<Item = (f64, u32, u32)>, len: u32) -> Option<f64> {
    let mut ev: Vec<(f64, u32, u32)> = events.collect();
    ev.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Merged intervals so far, sorted by start.
    let mut have: Vec<(u32, u32)> = Vec::new();
    for (t, b, e) in ev {
        let (mut b, mut e) = (b, e.min(len));
        if b >= e {
            continue;
        }
        let mut merged = Vec::with_capacity(have.len() + 1);
        for &(x, y) in &have {
            if y < b || x > e {
                merged.push((x, y));
            } else {
                b = b.min(x);
                e = e.max(y);
            }
        }
        merged.push((b, e));
        merged.sort_unstable();
        have = merged;
        if have.len() == 1 && have[0] == (0, len) {
            return Some(t);
        }
    }
    None
}

/// `run/referee.csv`: one row per piece.
pub fn csv(v: &Verdict) -> String {
    let mut s = String::from("index,deadline,complete_at,have_at,source\n");
    let opt = |x: Option<f64>| x.map(|t| format!("{t:.3}")).unwrap_or_default();
    for p in &v.pieces {
        let src = match p.source {
            Source::Peer => "peer",
            Source::Server => "server",
            Source::Missing => "",
        };
        s.push_str(&format!(
            "{},{:.3},{},{},{}\n",
            p.index,
            p.deadline,
            opt(p.complete_at),
            opt(p.have_at),
            src
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four pieces of 32 KiB (the last 10,000 bytes), one due every 3.2 s from 4 s.
    fn model() -> Model {
        Model::new(10.0, 6.0, 2.0, 3 * 32768 + 10_000, 32768)
    }

    #[test]
    fn coverage_is_the_moment_the_last_gap_closes() {
        let b = 16384;
        assert_eq!(covered_at([(1.0, 0, b)].into_iter(), 2 * b), None);
        assert_eq!(
            covered_at([(2.0, b, 2 * b), (1.0, 0, b)].into_iter(), 2 * b),
            Some(2.0)
        );
        // Overlaps and odd sizes.
        assert_eq!(
            covered_at(
                [(1.0, 0, 9000), (3.0, 20000, 32768), (2.0, 8000, 21000)].into_iter(),
                32768
            ),
            Some(3.0)
        );
        assert_eq!(covered_at([(1.0, 100, 32768)].into_iter(), 32768), None);
    }

    #[test]
    fn uploads_beyond_the_cap_in_some_window_are_flagged() {
        let cap = 60.0 * 1024.0;
        // 60 KB/s as 16 KiB blocks every 0.2667 s for 30 s.
        let at_cap = || {
            let mut r = Referee::new(model()).with_upload_cap(cap);
            let mut t = 0.0;
            while t < 30.0 {
                r.my_upload(t, 16384);
                t += 16384.0 / cap;
            }
            r
        };
        // At the cap, plus one block of burst at the start: within the slack.
        let mut ok = at_cap();
        ok.my_upload(0.0, 16384);
        let v = ok.verdict(Vec::new());
        assert!(!v.upload_over_cap, "{:?}", v.notes);
        assert!((v.upload_peak - cap).abs() < 0.1 * cap, "{}", v.upload_peak);
        assert!(v.bytes_to_world > 100 * 16384);
        assert!(!v.notes.iter().any(|n| n.contains("cap")), "{:?}", v.notes);
        // The same, with a burst of 20 blocks at 12 s (320 KiB at once, more than the slack):
        // flagged, with the window in the note.
        let mut over = at_cap();
        for _ in 0..20 {
            over.my_upload(12.0, 16384);
        }
        let v = over.verdict(Vec::new());
        assert!(v.upload_over_cap);
        assert!(v.upload_peak > 85.0 * 1024.0, "{}", v.upload_peak);
        assert!(
            v.notes
                .iter()
                .any(|n| n.contains("above its cap of 60 KB/s")),
            "{:?}",
            v.notes
        );
        // No cap given: measured, never flagged.
        let mut free = Referee::new(model());
        for _ in 0..100 {
            free.my_upload(1.0, 16384);
        }
        let v = free.verdict(Vec::new());
        assert!(!v.upload_over_cap);
        assert_eq!(v.bytes_to_world, 100 * 16384);
    }

    #[test]
    fn late_means_world_and_server_together_missed_the_deadline() {
        let m = model();
        let mut r = Referee::new(m);
        r.connected("w1");
        // Piece 0 (due 4.0): all from the world by 3.5.
        r.world_block(3.0, 0, 0, 16384);
        r.world_block(3.5, 0, 16384, 16384);
        // Piece 1 (due 7.2): half from the world in time, the rest from the server at 7.25.
        r.world_block(5.0, 1, 0, 16384);
        r.server_range(7.25, 32768 + 16384, 16384);
        // Piece 2 (due 10.4): the world, but too late.
        r.world_block(9.0, 2, 0, 16384);
        r.world_block(11.0, 2, 16384, 16384);
        // Piece 3 (due 13.6, 10,000 bytes): nobody.
        r.have(3.6, 0);
        r.have(3.7, 0);
        r.have(11.2, 2);
        let v = r.verdict(Vec::new());
        let p = &v.pieces;
        assert_eq!(
            (p[0].source, p[0].late, p[0].complete_at),
            (Source::Peer, false, Some(3.5))
        );
        assert_eq!(p[0].have_at, Some(3.6), "the first HAVE");
        assert_eq!((p[1].source, p[1].late), (Source::Server, false));
        assert_eq!(p[1].complete_at, None, "the world never sent all of it");
        assert_eq!(
            (p[2].source, p[2].late, p[2].complete_at),
            (Source::Peer, true, Some(11.0))
        );
        assert_eq!((p[3].source, p[3].late), (Source::Missing, true));
        assert_eq!((v.late_pieces, v.late_bytes), (2, 32768 + 10_000));
        assert_eq!(v.world_peers_connected, 1);
        assert_eq!(v.first_block_at, Some(3.0));
        assert_eq!(v.bytes_from_world, 5 * 16384);
        assert_eq!(
            v.startup_pieces, 1,
            "piece 0 by 3.5 s; piece 2 came at 11 s, piece 1 from the server"
        );
        assert_eq!(
            v.first_piece_at,
            Some(3.5),
            "piece 0, complete from the world"
        );
        assert!(v.notes.is_empty(), "{:?}", v.notes);
        let csv = csv(&v);
        assert_eq!(csv.lines().count(), 5);
        assert_eq!(csv.lines().nth(1).unwrap(), "0,4.000,3.500,3.600,peer");
        assert_eq!(csv.lines().nth(4).unwrap(), "3,13.600,,,");
    }

    #[test]
    fn waste_is_what_the_world_sent_that_saved_no_server_byte() {
        let b = 16384;
        let mut r = Referee::new(model());
        // Piece 0: both blocks from the world, the second one twice (a rescue's duplicate).
        r.world_block(1.0, 0, 0, b);
        r.world_block(2.0, 0, b, b);
        r.world_block(2.1, 0, b, b);
        // Piece 1: its first block from the world in time; its second from the server at the
        // deadline, and then from the world as well (a request not cancelled in time).
        r.world_block(5.0, 1, 0, b);
        r.server_range(7.2, 32768 + 16384, 16384);
        r.world_block(7.3, 1, b, b);
        // Piece 2: from the server only. Piece 3 (10,000 bytes): the world, a block of 16 KiB
        // announced for it clipped to the piece (its bytes sent all the same).
        r.server_range(10.4, 2 * 32768, 32768);
        r.world_block(12.0, 3, 0, 10_000);
        let v = r.verdict(Vec::new());
        assert_eq!(v.bytes_from_world, 5 * b as u64 + 10_000);
        assert_eq!(
            v.wasted_bytes,
            Some(2 * b as u64),
            "the duplicate of piece 0 and the block of piece 1 the server had sent"
        );
        assert_eq!(v.duplicate_bytes, Some(b as u64), "piece 0's second copy");
        // Kept from peers plus the server's bytes make the file.
        let server = 16384 + 32768;
        assert_eq!(
            v.bytes_from_world - v.wasted_bytes.unwrap() + server,
            model().size
        );
        // Ranges that only touch merge; a server range overlapping a world one in part.
        assert_eq!(
            merged(&[(0.0, 5, 9), (0.0, 0, 5), (0.0, 20, 99)], 30),
            vec![(0, 9), (20, 30)]
        );
        assert_eq!(
            world_cover(&[(0.0, 0, 100)], &[(0.0, 40, 60), (0.0, 90, 200)], 100),
            (100, 30)
        );
    }

    #[test]
    fn a_server_answer_long_after_the_deadline_is_late() {
        let mut r = Referee::new(model());
        r.connected("w1");
        r.server_range(4.0 + SERVER_GRACE + 0.1, 0, 32768);
        r.have(1.0, 0);
        let v = r.verdict(Vec::new());
        assert!(v.pieces[0].late && v.pieces[0].source == Source::Server);
    }

    #[test]
    fn odd_runs_get_a_note() {
        let v = Referee::new(model()).verdict(vec!["given".into()]);
        assert_eq!(v.late_pieces, 4, "nothing delivered: all late");
        assert_eq!(v.notes, ["given", "my client connected to no world peer"]);
        let mut r = Referee::new(model());
        r.connected("w1");
        r.world_block(1.0, 0, 0, 32768);
        let v = r.verdict(Vec::new());
        assert!(v.notes[0].contains("announced no piece"), "{:?}", v.notes);
        assert_eq!(v.late_pieces, 3);
    }
}
