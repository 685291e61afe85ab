//! [`IoLimiter`]: one token bucket for all snapshot I/O of a store (generating, sending,
//! receiving), so snapshots cannot starve the foreground's disk (TiKV #9918: separate
//! limiters for generation and reception let both run at full rate at once).
//!
//! Algorithm: virtual scheduling (GCRA). The limiter keeps the instant `tat` at which every
//! byte granted so far is paid for at `bytes_per_sec`. A request of `n` bytes moves `tat` to
//! `max(tat, now) + n / rate` and waits until `tat - BURST`: an idle limiter lets
//! [`BURST`] worth of bytes through at once, a busy one spaces requests out at the rate.
//!
//! Bounds: a request waits at most (bytes granted and not yet paid for, including its own) /
//! rate. The callers bound what is outstanding: each build, sender and receiver requests at
//! most one chunk (1 MiB) or one key-value pair past [`BUILD_GRAIN_BYTES`] at a time, and
//! their number is bounded by the snapshot concurrency limits and worker pools. Waiting sleeps
//! in slices of at most [`SLEEP_SLICE`]; it runs on snapshot worker threads, never on a poller.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How much an idle limiter lets through without waiting, in time at the rate.
pub const BURST: Duration = Duration::from_millis(100);
/// Longest single sleep of a waiting request.
pub const SLEEP_SLICE: Duration = Duration::from_millis(100);
/// The most one request is charged: a larger request (far above any chunk) waits this long,
/// not longer, so an absurd size cannot overflow the clock.
pub const REQUEST_COST_MAX: Duration = Duration::from_secs(24 * 60 * 60);
/// A snapshot build charges the limiter once per this many bytes of keys and values (plus the
/// last pair), not per key, to keep the lock off the hot loop.
pub const BUILD_GRAIN_BYTES: u64 = 64 * 1024;

/// A rate limiter over bytes; `0` bytes per second means unlimited. Share it by reference (the
/// snapshot manager holds one per store).
#[derive(Debug)]
pub struct IoLimiter {
    bytes_per_sec: u64,
    /// When every byte granted so far is paid for; `None` before the first request.
    tat: Mutex<Option<Instant>>,
}

impl IoLimiter {
    /// A limiter letting `bytes_per_sec` through on average; 0 = unlimited.
    pub fn new(bytes_per_sec: u64) -> IoLimiter {
        IoLimiter { bytes_per_sec, tat: Mutex::new(None) }
    }

    /// The configured rate; 0 = unlimited.
    pub fn bytes_per_sec(&self) -> u64 {
        self.bytes_per_sec
    }

    /// Takes `bytes` from the bucket, blocking the calling thread until the rate allows it.
    /// Never call it on a poller thread.
    pub fn request(&self, bytes: u64) {
        let Some(until) = self.reserve(bytes, Instant::now()) else {
            return;
        };
        loop {
            let now = Instant::now();
            if now >= until {
                return;
            }
            // Sleeping is the point of a rate limiter; the slice bounds each sleep.
            std::thread::sleep((until - now).min(SLEEP_SLICE));
        }
    }

    /// Grants `bytes` at `now` and returns until when the caller must wait, `None` for no
    /// wait. The pure half of [`IoLimiter::request`].
    fn reserve(&self, bytes: u64, now: Instant) -> Option<Instant> {
        if self.bytes_per_sec == 0 || bytes == 0 {
            return None;
        }
        let secs = bytes as f64 / self.bytes_per_sec as f64;
        let cost =
            Duration::try_from_secs_f64(secs).map_or(REQUEST_COST_MAX, |c| c.min(REQUEST_COST_MAX));
        let mut tat = self.tat.lock();
        let start = match *tat {
            Some(t) if t > now => t,
            Some(_) | None => now,
        };
        let new_tat = start + cost;
        *tat = Some(new_tat);
        let until = new_tat.checked_sub(BURST)?;
        (until > now).then_some(until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn unlimited_never_waits() {
        let limiter = IoLimiter::new(0);
        let now = Instant::now();
        assert_eq!(limiter.reserve(u64::MAX, now), None);
        limiter.request(u64::MAX);
    }

    #[test]
    fn an_idle_limiter_lets_a_burst_through_then_spaces_requests_at_the_rate() {
        let limiter = IoLimiter::new(MIB);
        let t0 = Instant::now();
        let ms = |n: u64| Duration::from_millis(n);
        // 100 KiB is within the 100 ms burst at 1 MiB/s.
        assert_eq!(limiter.reserve(100 * 1024, t0), None);
        // The bucket is now ~98 ms in debt: 1 MiB more is paid at ~1098 ms, waited until ~998.
        let until = limiter.reserve(MIB, t0).unwrap();
        assert!(until > t0 + ms(990) && until < t0 + ms(1000), "{:?}", until - t0);
        // A request right behind it queues behind it.
        let until = limiter.reserve(MIB, t0 + ms(10)).unwrap();
        assert!(until > t0 + ms(1990) && until < t0 + ms(2000), "{:?}", until - t0);
        // After a long idle time the debt is forgotten, and the burst is available again.
        assert_eq!(limiter.reserve(100 * 1024, t0 + ms(60_000)), None);
    }

    #[test]
    fn an_absurd_request_waits_at_most_the_cap() {
        let limiter = IoLimiter::new(1);
        let t0 = Instant::now();
        let until = limiter.reserve(u64::MAX, t0).unwrap();
        assert_eq!(until, t0 + REQUEST_COST_MAX - BURST);
    }

    #[test]
    fn rate_is_kept_over_many_small_requests() {
        let limiter = IoLimiter::new(10 * MIB);
        let t0 = Instant::now();
        let mut until = None;
        for _ in 0..100 {
            until = limiter.reserve(MIB, t0).or(until);
        }
        // 100 MiB at 10 MiB/s: the last request waits ~10 s minus the burst.
        let waited = until.unwrap() - t0;
        assert!(waited > Duration::from_millis(9_890) && waited < Duration::from_millis(9_910));
    }
}
