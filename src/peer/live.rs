//! A peer's live status file (`testbed peer --status-file PATH`): what it has and how fast it
//! moves, rewritten atomically every second. The orchestrator gives one to every world client
//! and reads them for the status page (rates, progress, the swarm's piece availability).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::rate::Window;
use super::session::Session;
use crate::wire::Bitfield;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LiveStatus {
    /// The bitfield as on the wire, in hex.
    pub have: String,
    pub pieces_held: u32,
    pub uploaded: u64,
    pub downloaded: u64,
    /// Bytes/s over the last five seconds.
    pub up_rate: f64,
    pub down_rate: f64,
    pub connections: usize,
}

impl LiveStatus {
    /// The bitfield, checked against the torrent's piece count.
    pub fn bitfield(&self, pieces: u32) -> Option<Bitfield> {
        Bitfield::from_wire(&crate::util::unhex(&self.have)?, pieces)
    }

    /// Read a status file; `None` if missing or unreadable (a client just starting).
    pub fn read(path: &Path) -> Option<LiveStatus> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }
}

/// Rewrite `path` every second until the session ends; an idle client (nothing changed since
/// the last write) leaves the file as it is, so that a world of idle seeds costs no disk work.
pub async fn writer(session: Arc<Session>, path: PathBuf) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let (mut up_rate, mut down_rate) = (Window::new(5), Window::new(5));
    let mut last: Option<LiveStatus> = None;
    loop {
        tick.tick().await;
        let now = Instant::now();
        let up = session.uploaded.load(Ordering::Relaxed);
        let down = session.downloaded.load(Ordering::Relaxed);
        let have = session.have();
        let st = LiveStatus {
            have: crate::util::hex(have.as_bytes()),
            pieces_held: have.count(),
            uploaded: up,
            downloaded: down,
            up_rate: up_rate.rate(now, up),
            down_rate: down_rate.rate(now, down),
            connections: session.num_conns(),
        };
        if last.as_ref() == Some(&st) {
            continue;
        }
        if let Ok(json) = serde_json::to_vec(&st) {
            if crate::util::fs::write_atomic(&path, &json).is_ok() {
                last = Some(st);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitfield_round_trips_through_hex() {
        let mut b = Bitfield::new(10);
        b.set(0);
        b.set(9);
        let s = LiveStatus {
            have: crate::util::hex(b.as_bytes()),
            pieces_held: 2,
            uploaded: 0,
            downloaded: 0,
            up_rate: 0.0,
            down_rate: 0.0,
            connections: 0,
        };
        assert_eq!(s.bitfield(10), Some(b));
        assert_eq!(s.bitfield(30), None, "wrong length is refused");
        let bad = LiveStatus {
            have: "zz".into(),
            ..s
        };
        assert_eq!(bad.bitfield(8), None);
    }
}
