//! Time as the peers see it. Peer logic (leases, deadlines, the times proposals and ReadIndex
//! requests were sent) reads the poll context's [`Clock`], never `Instant::now()` itself, so a
//! test can move time by hand ([`ManualClock`]) instead of sleeping.
//!
//! The clock MUST be monotonic: the lease argument (`peer/lease.rs`) compares instants taken
//! on one store. Threads outside peer logic (the ticker, the gRPC edge's latency metrics) use
//! the system's monotonic clock; a ticker tick is only a wake-up, and the peer decides with its
//! own clock what is due.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A monotonic clock.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The system's monotonic clock: what every store runs on.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to (tests). Starts at the instant it was made.
#[derive(Debug)]
pub struct ManualClock {
    origin: Instant,
    elapsed: Mutex<Duration>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock { origin: Instant::now(), elapsed: Mutex::new(Duration::ZERO) }
    }
}

impl ManualClock {
    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        *self.elapsed.lock() += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.origin + *self.elapsed.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let c = ManualClock::default();
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        c.advance(Duration::from_millis(250));
        assert_eq!(c.now() - t0, Duration::from_millis(250));
    }
}
