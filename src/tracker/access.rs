//! The access log: one line per request, like `bttrack`'s (who, what, the answer), cheap enough
//! to stay on under load.
//!
//! Lines are formatted straight into a buffer in memory and written in batches: when the buffer
//! passes [`BATCH`], every [`FLUSH_EVERY`] (the tracker's serve loop calls [`AccessLog::flush`]),
//! and when the tracker stops or the log is dropped. A line never waits for the disk, and none is
//! lost when the tracker stops. Through `tracing` with a write per line, the log cost the
//! tracker a third of its announces/s (BENCHMARKS.md).
//!
//! A line reads like the `tracing` lines it sits among in `run/logs/tracker.log`:
//! `2026-11-26T11:47:02.123456Z  INFO tracker::access: 10.77.1.3 -TB0001-... GET /announce
//! started 200 86`. It is on when the `tracker::access` target is enabled at info level (the
//! default; `RUST_LOG=warn` turns it off).

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use crate::util::Locked;

/// Bytes held before a batch is written at once.
pub const BATCH: usize = 64 * 1024;
/// Longest a line waits in memory.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Where the access log goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AccessSink {
    /// The terminal (`testbed tracker`).
    #[default]
    Stderr,
    /// Appended to this file (`run/logs/tracker.log` under `testbed start`, `--log`).
    File(PathBuf),
}

pub struct AccessLog {
    on: bool,
    buf: Mutex<Vec<u8>>,
    /// Held while a batch is taken and written, so batches reach the sink in order.
    out: Mutex<Box<dyn Write + Send>>,
}

impl AccessLog {
    /// Opens the sink; the log is on if `tracing` enables `tracker::access` at info level.
    pub fn open(sink: &AccessSink) -> std::io::Result<AccessLog> {
        let on = tracing::enabled!(target: "tracker::access", tracing::Level::INFO);
        let out: Box<dyn Write + Send> = match sink {
            AccessSink::Stderr => Box::new(std::io::stderr()),
            AccessSink::File(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| {
                        std::io::Error::new(e.kind(), format!("log file {}: {e}", p.display()))
                    })?,
            ),
        };
        Ok(AccessLog {
            on,
            buf: Mutex::new(Vec::with_capacity(BATCH + 1024)),
            out: Mutex::new(out),
        })
    }

    /// A log that writes nothing.
    pub fn off() -> AccessLog {
        AccessLog {
            on: false,
            buf: Mutex::new(Vec::new()),
            out: Mutex::new(Box::new(std::io::sink())),
        }
    }

    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Appends one line: `{from} {peer} GET {path} {event} {outcome}`.
    pub fn line(
        &self,
        from: IpAddr,
        peer: &dyn std::fmt::Display,
        path: &str,
        event: &str,
        outcome: &dyn std::fmt::Display,
    ) {
        if !self.on {
            return;
        }
        let full = {
            let mut b = self.buf.locked();
            let _ = writeln!(
                b,
                "{}  INFO tracker::access: {from} {peer} GET {path} {event} {outcome}",
                humantime::format_rfc3339_micros(std::time::SystemTime::now())
            );
            b.len() >= BATCH
        };
        if full {
            self.flush();
        }
    }

    /// Writes what is buffered. A batch that cannot be written is reported on stderr and
    /// dropped, not retried.
    pub fn flush(&self) {
        let mut out = self.out.locked();
        let batch = {
            let mut b = self.buf.locked();
            if b.is_empty() {
                return;
            }
            std::mem::replace(&mut *b, Vec::with_capacity(BATCH + 1024))
        };
        if let Err(e) = out.write_all(&batch).and_then(|()| out.flush()) {
            eprintln!("testbed: tracker access log: {e}");
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_reach_the_file_in_order_on_flush_and_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        let mut log = AccessLog::open(&AccessSink::File(p.clone())).unwrap();
        log.on = true;
        let from: IpAddr = "10.77.1.3".parse().unwrap();
        log.line(from, &"-TB0001-x", "/announce", "started", &"200 86");
        assert_eq!(
            std::fs::read(&p).unwrap().len(),
            0,
            "buffered, not written yet"
        );
        log.flush();
        let n = 3 * BATCH / 80;
        for i in 0..n {
            log.line(from, &format_args!("p{i}"), "/scrape", "", &"200 1");
        }
        drop(log);
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), n + 1);
        assert!(
            lines[0].ends_with(
                "INFO tracker::access: 10.77.1.3 -TB0001-x GET /announce started 200 86"
            ),
            "{}",
            lines[0]
        );
        for (i, l) in lines[1..].iter().enumerate() {
            assert!(l.contains(&format!(" p{i} GET /scrape  200 1")), "{l}");
        }
    }
}
