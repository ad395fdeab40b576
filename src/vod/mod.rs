//! Video on demand: the deadline model ([`Model`]), the report a client writes ([`Report`]),
//! the VoD server that counts the penalty ([`server`]), the score of a run and its
//! `summary.json` ([`score`]), the timeline chart ([`chart`]), and the `vod-client` that plays
//! while it downloads ([`client`]).
//!
//! The model (SPEC, Units and the VoD model): with playback rate R (bytes/s), startup delay D
//! and prefetch P, at time t (seconds since the client started) every byte with index below
//! B(t) = R·(P + t − D), clamped to [0, size], must be on disk. Piece i (bytes
//! [i·L, min((i+1)·L, size))) is due when B(t) first exceeds i·L: deadline(i) = D − P + i·L/R.
//! A piece not complete and verified at its deadline is fetched from the VoD server, and every
//! byte the server sends is a penalty point: score = −penalty.

pub(crate) mod chart;
pub mod client;
pub(crate) mod referee;
pub(crate) mod score;
pub(crate) mod server;

use serde::{Deserialize, Serialize};

use crate::policy::Playback;

/// 1 KB in the lab's rates.
pub const KB: f64 = 1024.0;

/// The deadline model of one file.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// R, bytes per second.
    pub rate: f64,
    /// D, seconds.
    pub delay: f64,
    /// P, seconds.
    pub prefetch: f64,
    pub size: u64,
    pub piece_length: u32,
}

impl Model {
    /// A model from the lab's units: `rate_kbps` in KB/s (1 KB = 1024 B).
    pub fn new(rate_kbps: f64, delay: f64, prefetch: f64, size: u64, piece_length: u32) -> Model {
        Model {
            rate: rate_kbps * KB,
            delay,
            prefetch,
            size,
            piece_length,
        }
    }

    /// B(t): bytes that must be present at time t.
    pub fn needed(&self, t: f64) -> u64 {
        let b = self.rate * (self.prefetch + t - self.delay);
        b.clamp(0.0, self.size as f64) as u64
    }

    /// Seconds after start when piece `i` is due (the one formula: [`Playback::deadline`]).
    pub fn deadline(&self, i: u32) -> f64 {
        self.playback().deadline(i)
    }

    pub fn num_pieces(&self) -> u32 {
        self.size.div_ceil(self.piece_length as u64) as u32
    }

    /// When playback has consumed the whole file: B(t) = size.
    pub fn end(&self) -> f64 {
        self.delay - self.prefetch + self.size as f64 / self.rate
    }

    /// The clock a picker sees (its `now` is filled in by the session).
    pub fn playback(&self) -> Playback {
        Playback {
            first_deadline: self.delay - self.prefetch,
            secs_per_piece: self.piece_length as f64 / self.rate,
            piece_length: self.piece_length,
            now: 0.0,
        }
    }
}

/// Where a piece came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Peer,
    Server,
}

/// One piece in the report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PieceDetail {
    pub index: u32,
    /// Seconds after start.
    pub deadline: f64,
    /// Seconds after start when it was verified; `null` while missing.
    pub arrived: Option<f64>,
    /// `null` until it arrives or is due.
    pub source: Option<Source>,
}

/// The client's report (`--report FILE`), written atomically and updated while it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub torrent: String,
    pub size: u64,
    pub piece_length: u32,
    pub pieces: u32,
    /// KB/s.
    pub rate: f64,
    pub delay: f64,
    pub prefetch: f64,
    /// Ours, not the SPEC's: a foreign client's report may leave it out (and `elapsed`,
    /// `position`).
    #[serde(default)]
    pub policy: String,
    /// Bytes of the file that came from peers: whole pieces, and the blocks peers delivered of
    /// pieces the server completed.
    pub bytes_from_peers: u64,
    /// Every byte the server sent (the penalty, as the server counts it).
    pub bytes_from_server: u64,
    /// Ours: server bytes that did not end up in the file (a piece peers completed during the
    /// fetch; the part fetched before a mix of blocks failed its check). For a finished run,
    /// `bytes_from_peers + bytes_from_server - bytes_from_server_discarded` is the file size.
    #[serde(default)]
    pub bytes_from_server_discarded: u64,
    pub pieces_from_server: u32,
    pub penalty: u64,
    /// Seconds since start; playback position B(t) in bytes.
    #[serde(default)]
    pub elapsed: f64,
    #[serde(default)]
    pub position: u64,
    /// Seconds after start when playback ended; `null` while playing.
    pub finished_at: Option<f64>,
    pub pieces_detail: Vec<PieceDetail>,
}

impl Report {
    /// A report file, or `None` when it is missing or unreadable (a client that has not written
    /// one yet, or writes none).
    pub fn read(path: &std::path::Path) -> Option<Report> {
        crate::util::fs::read_json(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_example_holds() {
        // R = 5 KB/s, D = 6 s, P = 2 s: 10 KB by t = 6, 70 KB by t = 18.
        let m = Model::new(5.0, 6.0, 2.0, 1 << 20, 16384);
        assert_eq!(m.needed(6.0), 10 * 1024);
        assert_eq!(m.needed(18.0), 70 * 1024);
        assert_eq!(m.needed(0.0), 0, "clamped at 0 before D - P");
        assert_eq!(m.needed(1e9), 1 << 20, "clamped at the size");
        // deadline(i) = D - P + i L / R: piece 0 at 4 s, piece 1 (16 KiB in) at 4 + 3.2 s.
        assert_eq!(m.deadline(0), 4.0);
        assert!((m.deadline(1) - 7.2).abs() < 1e-9);
        // B(t) first exceeds i·L exactly at deadline(i).
        for i in 1..10u32 {
            let t = m.deadline(i);
            assert!(
                m.needed(t - 1e-6) <= i as u64 * 16384 && m.needed(t + 1e-3) > i as u64 * 16384
            );
        }
        assert!((m.end() - (4.0 + (1 << 20) as f64 / 5120.0)).abs() < 1e-9);
    }
}
