//! Rates: measuring them (BitTornado's `Measure`) and capping them (governor token buckets,
//! served first come first served).
//!
//! Caps are in KB/s with 1 KB = 1024 bytes, the BitTornado convention the lab keeps. A token is
//! one byte; the bucket holds one block (16 KiB), so a capped peer sends a block as soon as the
//! bucket has refilled enough for it and never bursts more than one block ahead of its cap.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::{Clock, MonotonicClock};
use governor::{Quota, RateLimiter};

/// A rate over a trailing window: `rate = bytes since ratesince / (now - ratesince)`, the window
/// sliding forward so that it never spans more than `max_period` (BitTornado's `Measure`).
#[derive(Debug, Clone)]
pub struct Measure {
    max_period: f64,
    ratesince: Instant,
    last: Instant,
    rate: f64,
    pub total: u64,
}

impl Measure {
    pub fn new(max_period: Duration) -> Self {
        let now = Instant::now();
        Measure {
            max_period: max_period.as_secs_f64(),
            // Pretend the window started a second ago so the first samples are not inflated.
            ratesince: now - Duration::from_secs(1),
            last: now,
            rate: 0.0,
            total: 0,
        }
    }

    pub fn update(&mut self, bytes: u64) {
        self.update_at(bytes, Instant::now());
    }

    pub fn update_at(&mut self, bytes: u64, now: Instant) {
        self.total += bytes;
        let span_before = self
            .last
            .saturating_duration_since(self.ratesince)
            .as_secs_f64();
        let span_now = now.saturating_duration_since(self.ratesince).as_secs_f64();
        if span_now > 0.0 {
            self.rate = (self.rate * span_before + bytes as f64) / span_now;
        }
        self.last = now;
        let oldest = now - Duration::from_secs_f64(self.max_period);
        if self.ratesince < oldest {
            self.ratesince = oldest;
        }
    }

    /// Bytes per second, decayed to now.
    pub fn rate(&mut self) -> f64 {
        self.update(0);
        self.rate
    }
}

/// The rate of a cumulative counter over its last `n` samples (one a second for the status
/// file). Unlike [`Measure`], whose rate decays without ever reaching zero, an idle counter
/// reads exactly 0 once the window has passed, so an idle client's status stops changing (and
/// its file is not rewritten).
#[derive(Debug, Clone)]
pub struct Window {
    samples: std::collections::VecDeque<(Instant, u64)>,
    n: usize,
}

impl Window {
    pub fn new(n: usize) -> Window {
        Window {
            samples: std::collections::VecDeque::with_capacity(n + 1),
            n,
        }
    }

    /// Record `total` at `now`; bytes/s between the oldest sample kept and now.
    pub fn rate(&mut self, now: Instant, total: u64) -> f64 {
        self.samples.push_back((now, total));
        while self.samples.len() > self.n + 1 {
            self.samples.pop_front();
        }
        let (t0, first) = self.samples[0];
        let dt = now.saturating_duration_since(t0).as_secs_f64();
        if dt > 0.0 {
            total.saturating_sub(first) as f64 / dt
        } else {
            0.0
        }
    }
}

/// A cap in bytes/s shared by every connection of a session.
///
/// On std's monotonic clock, not governor's default (quanta's TSC clock): quanta calibrates the
/// TSC when a process first asks for the time, spinning for up to 200 ms, and on the lab's
/// 2-core VMs that calibration was about a tenth of all the CPU a world of 500 clients spent
/// starting up (`perf record -a`), for a clock read a few times per 16 KiB block.
pub struct Limiter {
    inner: RateLimiter<
        governor::state::NotKeyed,
        governor::state::InMemoryState,
        MonotonicClock,
        governor::middleware::NoOpMiddleware<Instant>,
    >,
    burst: u32,
    /// The queue for the bucket: connections take their turns in the order they asked
    /// (tokio's mutex is fair), one `take` each.
    turn: tokio::sync::Mutex<()>,
    pub bytes_per_sec: u32,
}

impl Limiter {
    /// A cap of `kbps` KB/s (1 KB = 1024 B). `None` for 0 (no cap).
    pub fn kbps(kbps: f64) -> Option<Limiter> {
        let bps = (kbps * 1024.0).round();
        if bps < 1.0 {
            return None;
        }
        let bps = bps.min(u32::MAX as f64) as u32;
        let burst = crate::wire::BLOCK_SIZE;
        let quota = Quota::per_second(NonZeroU32::new(bps).expect("non-zero"))
            .allow_burst(NonZeroU32::new(burst).expect("non-zero"));
        Some(Limiter {
            inner: RateLimiter::direct_with_clock(quota, MonotonicClock),
            burst,
            turn: tokio::sync::Mutex::new(()),
            bytes_per_sec: bps,
        })
    }

    /// Wait until `bytes` may pass, taking them from the bucket.
    ///
    /// Callers wait in line, first come first served, as BitTornado's `RateLimiter` sends from
    /// a ring of connections one unit each. Left to race for the bucket (every waiter asleep
    /// until the same instant, the first one polled winning), on a multi-thread runtime one
    /// backlogged connection at a time took block after block (26 to 32 in a row in the test
    /// below) while the others sharing the cap waited: which world clients got my client's
    /// upload, and so which of them had reason to serve it back, was the scheduler's choice.
    pub async fn take(&self, mut bytes: u32) {
        let _turn = self.turn.lock().await;
        let clock = MonotonicClock;
        while bytes > 0 {
            let n = bytes.min(self.burst);
            let cells = NonZeroU32::new(n).expect("non-zero");
            loop {
                match self.inner.check_n(cells) {
                    Ok(Ok(())) => break,
                    Ok(Err(not_until)) => {
                        tokio::time::sleep(not_until.wait_time_from(clock.now())).await
                    }
                    Err(_) => unreachable!("n <= burst"),
                }
            }
            bytes -= n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measure_steady_rate() {
        let t0 = Instant::now();
        let mut m = Measure::new(Duration::from_secs(20));
        m.ratesince = t0;
        m.last = t0;
        for s in 1..=30 {
            m.update_at(1000, t0 + Duration::from_secs(s));
        }
        assert!((m.rate - 1000.0).abs() < 1.0, "{}", m.rate);
        // Idle for 10 s: 20 s of data spread over the 30 s since the window start.
        m.update_at(0, t0 + Duration::from_secs(40));
        assert!((m.rate - 1000.0 * 20.0 / 30.0).abs() < 1.0, "{}", m.rate);
        // Long idle: the rate decays by about 20/21 a second (a 20 s time constant).
        for s in 41..=100 {
            m.update_at(0, t0 + Duration::from_secs(s));
        }
        assert!(m.rate < 0.1 * 666.0, "{}", m.rate);
    }

    #[test]
    fn window_rate_is_exact_and_zero_when_idle() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut w = Window::new(5);
        assert_eq!(w.rate(at(0), 0), 0.0, "one sample: no rate yet");
        assert_eq!(w.rate(at(1), 1000), 1000.0);
        for s in 2..=5 {
            w.rate(at(s), 1000 * s);
        }
        assert_eq!(w.rate(at(6), 6000), 1000.0, "over the last five seconds");
        for s in 7..=10 {
            w.rate(at(s), 6000);
        }
        assert!(w.rate(at(11), 6000) == 0.0, "idle for the whole window");
    }

    #[test]
    fn zero_cap_means_none() {
        assert!(Limiter::kbps(0.0).is_none());
        assert_eq!(Limiter::kbps(20.0).unwrap().bytes_per_sec, 20480);
    }

    #[tokio::test]
    async fn limiter_passes_a_burst_then_waits() {
        // Loose bound only: speed is measured in the benchmark, not here.
        let l = Limiter::kbps(1024.0).unwrap(); // 1 MiB/s
        let t = Instant::now();
        l.take(16384).await; // the bucket starts full
        l.take(16384 * 8).await; // 128 KiB more at 1 MiB/s: ~125 ms
        let e = t.elapsed();
        assert!(e >= Duration::from_millis(100), "{e:?}");
    }

    /// Connections that share a cap take turns, one block each, in the order they asked
    /// (BitTornado's `RateLimiter` sends from a ring of connections, one unit each). Left to
    /// race for the bucket on a multi-thread runtime (my client's), one connection at a time
    /// took block after block while the others waited; on a current-thread one (a world
    /// client's) the race happened to come out fair. Both runtimes are checked.
    #[test]
    fn connections_sharing_a_cap_take_turns() {
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let single = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for rt in [multi, single] {
            rt.block_on(take_turns());
        }
    }

    /// Four backlogged connections, each back for its next block after a short, uneven pause
    /// (writing the last one), share a cap of 64 blocks a second.
    async fn take_turns() {
        let l = std::sync::Arc::new(Limiter::kbps(1024.0).unwrap());
        let turns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for who in 0..4usize {
            let (l, turns) = (l.clone(), turns.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..32 {
                    l.take(16384 + 13).await;
                    let n = {
                        let mut t = turns.lock().unwrap();
                        t.push(who);
                        t.len() as u64
                    };
                    let pause = (who as u64 * 7 + n * 13) % 5;
                    tokio::time::sleep(Duration::from_micros(300 * pause)).await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let turns = turns.lock().unwrap().clone();
        // No connection gets ahead of another by more than two turns at any point (one for a
        // block in flight, one for a late return from the scheduler).
        let mut got = [0i32; 4];
        for (i, &who) in turns.iter().enumerate() {
            got[who] += 1;
            let spread = got.iter().max().unwrap() - got.iter().min().unwrap();
            assert!(spread <= 2, "after {} turns {got:?}: {turns:?}", i + 1);
        }
    }
}
