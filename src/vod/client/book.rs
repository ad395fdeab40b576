//! The report's bookkeeping, in one place: where each piece came from and when, the bytes from
//! peers and from the server, and the report file rewritten atomically.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use crate::metainfo::Torrent;
use crate::policy::Policy;
use crate::util::fs::write_atomic;
use crate::util::Locked;
use crate::vod::{Model, PieceDetail, Report, Source};

/// My client's report as it fills in, on the playback clock (seconds since `t0`).
pub struct Book {
    report: Mutex<Report>,
    model: Model,
    t0: Instant,
}

impl Book {
    pub fn new(torrent: &Torrent, model: Model, policy: Policy, t0: Instant) -> Book {
        let report = Report {
            torrent: torrent.name.clone(),
            size: torrent.total_length,
            piece_length: torrent.piece_length,
            pieces: torrent.num_pieces(),
            rate: model.rate / crate::vod::KB,
            delay: model.delay,
            prefetch: model.prefetch,
            policy: policy.to_string(),
            bytes_from_peers: 0,
            bytes_from_server: 0,
            bytes_from_server_discarded: 0,
            pieces_from_server: 0,
            penalty: 0,
            elapsed: 0.0,
            position: 0,
            finished_at: None,
            pieces_detail: (0..torrent.num_pieces())
                .map(|i| PieceDetail {
                    index: i,
                    deadline: (model.deadline(i) * 1000.0).round() / 1000.0,
                    arrived: None,
                    source: None,
                })
                .collect(),
        };
        Book {
            report: Mutex::new(report),
            model,
            t0,
        }
    }

    fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// Pieces on disk when we started: arrived at once, from peers (no bytes counted: nothing
    /// was downloaded for them).
    pub fn held_at_start(&self, pieces: impl Iterator<Item = u32>) {
        let now = self.now();
        let mut r = self.report.locked();
        for i in pieces {
            let d = &mut r.pieces_detail[i as usize];
            d.arrived = Some(now);
            d.source = Some(Source::Peer);
        }
    }

    /// Piece `i` (`bytes` long) was verified from peers' blocks. A piece booked already (the
    /// server completed it) is left as it is.
    pub fn got_from_peers(&self, i: u32, bytes: u64) {
        let now = self.now();
        let mut r = self.report.locked();
        let d = &mut r.pieces_detail[i as usize];
        if d.arrived.is_none() {
            d.arrived = Some(now);
            d.source = Some(Source::Peer);
            r.bytes_from_peers += bytes;
        }
    }

    /// The server sent `bytes` of piece `i`. Booked before the piece is inserted (the insert
    /// announces it, and [`Self::got_from_peers`] must not take it for a peer's). A piece that
    /// arrived from a peer while we fetched keeps its peer arrival; the server's bytes count
    /// all the same.
    pub fn got_from_server(&self, i: u32, bytes: u64) {
        let now = self.now();
        let mut r = self.report.locked();
        r.bytes_from_server += bytes;
        r.penalty += bytes;
        if r.pieces_detail[i as usize].arrived.is_none() {
            r.pieces_from_server += 1;
            let d = &mut r.pieces_detail[i as usize];
            d.arrived = Some(now);
            d.source = Some(Source::Server);
        }
    }

    /// The server's `n` bytes of this attempt completed piece `i` (`len` bytes); `discarded`
    /// bytes of an earlier attempt (whose mix with peers' blocks failed its check) went to
    /// waste. The blocks not fetched came from peers, unless peers completed the whole piece
    /// first, and then these `n` bytes went to waste.
    pub fn server_completed(&self, i: u32, n: u64, len: u64, discarded: u64) {
        let mut r = self.report.locked();
        r.bytes_from_server_discarded += discarded;
        if r.pieces_detail[i as usize].source == Some(Source::Server) {
            r.bytes_from_peers += len.saturating_sub(n);
        } else {
            r.bytes_from_server_discarded += n;
        }
    }

    /// Server bytes that could not be used (the fetch or the check failed).
    pub fn server_discarded(&self, n: u64) {
        self.report.locked().bytes_from_server_discarded += n;
    }

    /// Playback ended.
    pub fn finish(&self) {
        let now = self.now();
        self.report.locked().finished_at = Some(now);
    }

    /// The report now, with its clock and playback position.
    pub fn snapshot(&self) -> Report {
        let mut r = self.report.locked();
        r.elapsed = self.now();
        r.position = self.model.needed(r.elapsed);
        r.clone()
    }

    /// Write the report atomically (an error is logged: the run goes on).
    pub fn write(&self, path: &Path) {
        match serde_json::to_vec_pretty(&self.snapshot()) {
            Ok(json) => {
                if let Err(e) = write_atomic(path, &json) {
                    tracing::error!("report: {e}");
                }
            }
            Err(e) => tracing::error!("report: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_piece_is_booked_once_with_its_source() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("f");
        std::fs::write(&file, vec![7u8; 40_000]).unwrap();
        let bytes = crate::metainfo::make_torrent(&file, "http://t/a", 16384).unwrap();
        let t = Torrent::from_bytes(&bytes).unwrap();
        let model = Model::new(16.0, 1.0, 0.0, t.total_length, t.piece_length);
        let book = Book::new(&t, model, Policy::Deadline, Instant::now());
        book.held_at_start([0].into_iter());
        book.got_from_peers(1, 16384);
        book.got_from_peers(1, 16384);
        book.got_from_server(2, 7232);
        book.got_from_peers(2, 7232);
        let r = book.snapshot();
        assert_eq!(
            r.bytes_from_peers, 16384,
            "piece 0 was there, piece 1 counted once"
        );
        assert_eq!(
            (r.bytes_from_server, r.penalty, r.pieces_from_server),
            (7232, 7232, 1)
        );
        let src: Vec<_> = r.pieces_detail.iter().map(|p| p.source).collect();
        assert_eq!(
            src,
            [Some(Source::Peer), Some(Source::Peer), Some(Source::Server)]
        );
        assert_eq!(r.pieces_detail[1].deadline, 2.0, "D - P + L / R");
        assert_eq!(r.policy, "deadline");
        assert!(r.finished_at.is_none());
        book.finish();
        let path = d.path().join("report.json");
        book.write(&path);
        let back = Report::read(&path).unwrap();
        assert!(back.finished_at.is_some());
        assert_eq!(back.bytes_from_server, 7232);
    }

    #[test]
    fn peers_and_server_add_up_to_the_file() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("f");
        std::fs::write(&file, vec![7u8; 4 * 16384]).unwrap();
        let bytes = crate::metainfo::make_torrent(&file, "http://t/a", 16384).unwrap();
        let t = Torrent::from_bytes(&bytes).unwrap();
        let model = Model::new(16.0, 1.0, 0.0, t.total_length, t.piece_length);
        let book = Book::new(&t, model, Policy::Deadline, Instant::now());
        let len = 16384;
        // Piece 0 from peers.
        book.got_from_peers(0, len);
        // Piece 1: peers sent 12 KiB, the server the missing 4 KiB.
        book.got_from_server(1, 4096);
        book.server_completed(1, 4096, len, 0);
        book.got_from_peers(1, len);
        // Piece 2: the mix failed its check, then the whole piece again.
        book.got_from_server(2, 4096);
        book.got_from_server(2, len);
        book.server_completed(2, len, len, 4096);
        // Piece 3: peers completed it while the server's 8 KiB were on their way.
        book.got_from_peers(3, len);
        book.got_from_server(3, 8192);
        book.server_completed(3, 8192, len, 0);
        let r = book.snapshot();
        assert_eq!(
            r.bytes_from_server,
            4096 + 4096 + len + 8192,
            "every server byte"
        );
        assert_eq!(r.bytes_from_server_discarded, 4096 + 8192);
        assert_eq!(
            r.bytes_from_peers + r.bytes_from_server - r.bytes_from_server_discarded,
            t.total_length
        );
        assert_eq!(r.pieces_from_server, 2);
    }
}
