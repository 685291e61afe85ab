//! Waiting for a condition with a deadline, for tests and tools: the one place that sleeps
//! between checks, so callers never use a fixed sleep as synchronization.

use std::time::{Duration, Instant};

/// How often a condition is checked.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Checks `cond` until it returns `Some` (returned) or `timeout` passes (`None`). `cond` runs
/// at least once.
pub fn poll_until<T>(timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// As [`poll_until`], but a timeout panics naming `what` (for tests).
pub fn wait_for<T>(what: &str, timeout: Duration, cond: impl FnMut() -> Option<T>) -> T {
    poll_until(timeout, cond)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_value_or_none_at_the_deadline() {
        let mut n = 0;
        assert_eq!(
            poll_until(Duration::from_secs(5), || {
                n += 1;
                (n == 3).then_some(n)
            }),
            Some(3)
        );
        assert_eq!(poll_until(Duration::ZERO, || None::<()>), None);
        let mut calls = 0;
        poll_until(Duration::ZERO, || {
            calls += 1;
            None::<()>
        });
        assert_eq!(calls, 1, "the condition runs at least once");
    }
}
