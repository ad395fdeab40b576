//! The supply side of the referee: what a world client gave my client, in its own words.
//!
//! A world client started with `--referee FILE` appends one JSON line per event with a peer
//! that is not a world client (a peer id not of the world's form, see [`is_world_id`]): the
//! connection, every block it has written to that peer's socket (piece, offset, length; the
//! time is when the write returned), and every HAVE,
//! BITFIELD or HAVE ALL it receives from it, and every block it receives from it (my client's
//! uploads, which the referee holds against its cap). For tracing how the world treats a
//! client (the scoring ignores these), also every request it receives from that peer, the
//! peer's interest, and each time it chokes or unchokes the peer, with the rates it measured
//! of it then. Each line carries the wall clock (`t`, Unix
//! seconds): all processes of a run share it, and the supervisor turns it into seconds since it
//! started my client. Only what the world did is written, never what the other side claims to
//! have received; world-to-world traffic is not written at all (a world of 500 clients costs
//! nothing more). One `write` per line on a file opened for appending: a line is never torn,
//! and a client killed mid-run loses at most the line it was writing.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::util::Locked;
use crate::wire::Bitfield;

/// One line of a referee file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// Unix time, seconds.
    pub t: f64,
    /// The other side's peer id, hex.
    pub peer: String,
    /// The other side's address.
    pub addr: String,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "lowercase")]
pub enum Event {
    /// The connection is up (handshake done).
    Connect,
    /// We sent it a block.
    Block { piece: u32, begin: u32, len: u32 },
    /// It announced a piece.
    Have { piece: u32 },
    /// It announced these pieces at once (BITFIELD, or HAVE ALL), as hex of the wire bitfield.
    Bitfield { have: String },
    /// It sent us a block (my client's upload, measured where it lands).
    Got { piece: u32, begin: u32, len: u32 },
    /// It asked for a block (served or not).
    Request { piece: u32, begin: u32, len: u32 },
    /// It said it is interested (true) or not (false).
    Interest { on: bool },
    /// We choked it (`on`: true) or unchoked it, having measured `down` B/s from it and `up`
    /// B/s to it: the figures the choker decided on.
    Choke { on: bool, down: u64, up: u64 },
}

/// A world client's peer id: `-TB0100-` then `W` or `S`, four digits, `g`, three digits, three
/// of [a-z0-9] (see `lab::world`). A random id of that form has a chance of about one
/// in 10^9.
pub fn is_world_id(id: &[u8]) -> bool {
    let digits = |r: std::ops::Range<usize>| id[r].iter().all(u8::is_ascii_digit);
    id.len() == 20
        && id.starts_with(b"-TB0100-")
        && matches!(id[8], b'W' | b'S')
        && digits(9..13)
        && id[13] == b'g'
        && digits(14..17)
        && id[17..]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The file a world client writes.
pub struct Log {
    file: Mutex<File>,
}

impl Log {
    pub fn open(path: &Path) -> std::io::Result<Log> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Log {
            file: Mutex::new(file),
        })
    }

    fn write(&self, line: &Line) {
        if let Ok(mut text) = serde_json::to_vec(line) {
            text.push(b'\n');
            // One write: appended whole, even with other writers.
            let _ = self.file.locked().write_all(&text);
        }
    }
}

/// The referee's view of one connection with a peer that is not a world client.
pub struct Tap<'a> {
    pub log: &'a Log,
    pub peer: String,
    pub addr: SocketAddr,
}

impl Tap<'_> {
    pub fn record(&self, event: Event) {
        self.log.write(&Line {
            t: crate::util::unix_now(),
            peer: self.peer.clone(),
            addr: self.addr.to_string(),
            event,
        });
    }

    pub fn bitfield(&self, b: &Bitfield) {
        self.record(Event::Bitfield {
            have: crate::util::hex(b.as_bytes()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_ids_and_others() {
        assert!(is_world_id(b"-TB0100-W0003g002abc"));
        assert!(is_world_id(b"-TB0100-S0000g000mk6"));
        assert!(!is_world_id(b"-TB0100-aZ3k9LmQ2xWq"), "vod-client's");
        assert!(!is_world_id(b"-TR3000-abcdefghijkl"));
        assert!(!is_world_id(b"-TB0100-W0003g002abC"));
        assert!(!is_world_id(b"-TB0100-W0003g002ab"));
    }

    #[test]
    fn lines_append_and_read_back() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.jsonl");
        let log = Log::open(&p).unwrap();
        let tap = Tap {
            log: &log,
            peer: "2d54".into(),
            addr: "10.77.0.2:6881".parse().unwrap(),
        };
        tap.record(Event::Connect);
        tap.record(Event::Block {
            piece: 3,
            begin: 16384,
            len: 16384,
        });
        let mut b = Bitfield::new(10);
        b.set(9);
        tap.bitfield(&b);
        let lines: Vec<Line> = std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].event, Event::Connect);
        assert_eq!(
            lines[1].event,
            Event::Block {
                piece: 3,
                begin: 16384,
                len: 16384
            }
        );
        assert_eq!(
            lines[2].event,
            Event::Bitfield {
                have: "0040".into()
            }
        );
        assert_eq!(lines[2].addr, "10.77.0.2:6881");
        assert!(lines[0].t > 1.7e9);
    }
}
