//! The timestamp oracle: hybrid timestamps `(physical ms, logical)`, strictly increasing for
//! the life of the cluster, restarts included.
//!
//! Invariants:
//! 1. Every timestamp handed out has a physical part `<` the persisted window end
//!    `tso_window`. Before handing out one at or past it, PD persists a new end
//!    ([`TSO_WINDOW_MS`] ahead) and only then answers.
//! 2. After a restart the physical part starts at the persisted window end, so every new
//!    timestamp is above every old one, whatever the wall clock did meanwhile.
//! 3. The physical part never goes backwards: a wall clock that steps back is ignored and the
//!    logical counter keeps counting; when it would reach [`MAX_LOGICAL`], the physical part
//!    moves one millisecond ahead of the clock.

/// Logical values are below this (18 bits, as TiKV's PD).
pub const MAX_LOGICAL: i64 = 1 << 18;

/// How far ahead of the timestamps handed out the persisted window reaches.
pub const TSO_WINDOW_MS: i64 = 3_000;

/// Most timestamps one request may take.
pub const TSO_COUNT_MAX: u32 = 1 << 16;

#[derive(Debug)]
pub struct Tso {
    physical_ms: i64,
    logical: i64,
    /// The persisted window end (invariant 1).
    window_end_ms: i64,
}

impl Tso {
    /// Resumes after the persisted window (invariant 2); 0 on a new cluster.
    pub fn new(persisted_window_end_ms: i64) -> Tso {
        Tso {
            physical_ms: persisted_window_end_ms,
            logical: 0,
            window_end_ms: persisted_window_end_ms,
        }
    }

    /// Takes `count` timestamps and returns the largest, plus the window end to persist
    /// before answering if invariant 1 demands one.
    ///
    /// # Panics
    /// If `count` is 0 or above [`TSO_COUNT_MAX`] (callers check request sizes first).
    pub fn next(&mut self, now_ms: i64, count: u32) -> ((i64, i64), Option<i64>) {
        assert!(count > 0 && count <= TSO_COUNT_MAX, "tso count {count} out of range");
        let count = i64::from(count);
        if now_ms > self.physical_ms {
            self.physical_ms = now_ms;
            self.logical = 0;
        }
        if self.logical + count >= MAX_LOGICAL {
            self.physical_ms += 1;
            self.logical = 0;
        }
        self.logical += count;
        let window =
            (self.physical_ms >= self.window_end_ms).then(|| self.physical_ms + TSO_WINDOW_MS);
        ((self.physical_ms, self.logical), window)
    }

    /// Records that `end_ms` is now persisted.
    pub fn window_persisted(&mut self, end_ms: i64) {
        assert!(end_ms > self.physical_ms, "window {end_ms} does not cover {}", self.physical_ms);
        self.window_end_ms = self.window_end_ms.max(end_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(tso: &mut Tso, now: i64, count: u32) -> (i64, i64) {
        let (ts, window) = tso.next(now, count);
        if let Some(end) = window {
            tso.window_persisted(end);
        }
        ts
    }

    #[test]
    fn strictly_increasing_under_clock_steps_and_overflow() {
        let mut tso = Tso::new(0);
        let mut last = (0, 0);
        for (now, count) in
            [(100, 1), (100, 5), (90, 1), (200, TSO_COUNT_MAX), (200, TSO_COUNT_MAX)]
        {
            let ts = take(&mut tso, now, count);
            assert!(ts > last, "{ts:?} after {last:?}");
            assert!(ts.1 >= i64::from(count) && ts.1 < MAX_LOGICAL);
            last = ts;
        }
        for _ in 0..10 {
            let ts = take(&mut tso, 200, TSO_COUNT_MAX);
            assert!(ts > last, "{ts:?} after {last:?}");
            last = ts;
        }
        assert!(last.0 > 200, "overflow moves physical ahead: {last:?}");
    }

    #[test]
    fn window_is_persisted_before_crossing_it_and_restart_resumes_above() {
        let mut tso = Tso::new(0);
        let (ts, window) = tso.next(1_000, 1);
        assert_eq!(window, Some(1_000 + TSO_WINDOW_MS));
        tso.window_persisted(window.unwrap());
        assert_eq!(tso.next(2_000, 1).1, None);

        // Restart with the clock behind the window: still above everything handed out.
        let mut tso = Tso::new(1_000 + TSO_WINDOW_MS);
        let (after, window) = tso.next(1_500, 1);
        assert!(after > ts);
        assert_eq!(after.0, 1_000 + TSO_WINDOW_MS);
        assert!(window.is_some());
    }
}
