//! The bottom of the house: small helpers that every other part may use and that use no other
//! part of the lab. Nothing here knows about torrents, peers or experiments.
//!
//! * [`fs`]: atomic file writes and JSON files read back;
//! * [`range`]: a number or a `{min, max}` range in a config, drawn per client;
//! * [`html`]: escaping and human-readable figures for the status page and the SVG charts;
//! * [`rt`]: the tokio runtime builder, the shutdown signal, logging set-up;
//! * [`stats`]: mean, median, sd and bootstrap intervals for comparisons;
//! * [`hex`], [`Locked`] (a mutex whose poisoning is survived), [`Exit`] (how a process ended).

pub mod elf;
pub mod fs;
pub mod html;
pub mod range;
pub mod rt;
pub mod signal;
pub mod stats;

use std::sync::{Mutex, MutexGuard};

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Bytes from lower- or upper-case hex; `None` for an odd length or a non-hex digit.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// The wall clock in Unix seconds: the one clock every process of a run shares.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Writes command output to stdout. A reader that went away (`testbed status | head -1`) ends
/// the output quietly instead of panicking as `print!` does, and the command carries on: a
/// compare keeps running and writing its files, a run still stops its world.
pub fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("testbed: cannot write to stdout: {e}");
        }
    }
}

/// `print!` through [`write_out`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::util::write_out(format_args!($($arg)*)) };
}
/// `println!` through [`write_out`].
macro_rules! outln {
    ($($arg:tt)*) => { $crate::util::write_out(format_args!("{}\n", format_args!($($arg)*))) };
}
pub(crate) use {out, outln};

/// `lock()` that survives a poisoned mutex. The lab's shared state (slots, reports, counters)
/// stays consistent between statements, so a thread that panicked while holding the lock
/// leaves nothing half-written that the others must not read.
pub trait Locked<T> {
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The remote address of an HTTP request (axum's `ConnectInfo` of the lab's listener).
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// Exit code 0.
    pub fn is_clean(self) -> bool {
        self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// `program` as `exec` would find it: a path with a slash as it is, else the first executable
/// file of that name on the PATH.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = std::path::PathBuf::from(program);
        return runnable(&p).then_some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| runnable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_bad_digits() {
        let b = [0u8, 1, 0xab, 0xff];
        assert_eq!(hex(&b), "0001abff");
        assert_eq!(unhex("0001ABff").unwrap(), b);
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn a_poisoned_mutex_still_locks() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.lock().is_err(), "poisoned");
        *m.locked() += 1;
        assert_eq!(*m.locked(), 2);
    }
}
