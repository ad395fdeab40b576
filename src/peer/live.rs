//! A peer's live status file (`testbed peer --status-file PATH`): what it has and how fast it
//! moves, rewritten in place every second. The lab gives one to every world client
//! and reads them for the status page (rates, progress, the swarm's piece availability).
//!
//! In place, not by writing a new file and renaming it over the old: a world of 500 clients
//! made and freed 500 inodes a second that way in one directory, and ext4's inode allocation
//! and the directory's lock were a fifth of the machine's CPU while the world started. The
//! JSON is padded with spaces to the longest it has been, so a shorter status never leaves a
//! stale tail; a reader that catches a write half done reads JSON that does not parse, which
//! counts as no status yet (the page shows the next second's).

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
    let mut file = InPlace::new(path);
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
            if file.write(&json).is_ok() {
                last = Some(st);
            }
        }
    }
}

/// A file rewritten from its start, padded with spaces to the longest content written.
struct InPlace {
    path: PathBuf,
    file: Option<std::fs::File>,
    len: usize,
}

impl InPlace {
    fn new(path: PathBuf) -> InPlace {
        InPlace {
            path,
            file: None,
            len: 0,
        }
    }

    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        if self.file.is_none() {
            // A slot's earlier client may have left a longer file: start from empty.
            let f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&self.path)?;
            self.file = Some(f);
        }
        let f = self.file.as_ref().expect("opened above");
        let mut buf = data.to_vec();
        if buf.len() < self.len {
            buf.resize(self.len, b' ');
        }
        f.write_all_at(&buf, 0)?;
        self.len = buf.len();
        Ok(())
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

    #[test]
    fn in_place_rewrites_read_back_whole_however_long() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("0-1.json");
        // A longer file left by the slot's previous client.
        std::fs::write(&p, vec![b'x'; 500]).unwrap();
        let st = |conns: usize, have: &str| LiveStatus {
            have: have.into(),
            pieces_held: 1,
            uploaded: 12345,
            downloaded: 678,
            up_rate: 1.5,
            down_rate: 0.0,
            connections: conns,
        };
        let mut f = InPlace::new(p.clone());
        let long = st(30, "ffffffffffffffff");
        f.write(&serde_json::to_vec(&long).unwrap()).unwrap();
        assert_eq!(LiveStatus::read(&p), Some(long));
        let short = st(1, "80");
        f.write(&serde_json::to_vec(&short).unwrap()).unwrap();
        assert_eq!(LiveStatus::read(&p), Some(short), "no stale tail");
    }
}
