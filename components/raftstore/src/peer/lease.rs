//! The leader lease: when a leader may serve a read from its own state without asking a quorum.
//!
//! Why it is safe. Suppose a leader proposed something at time `t` and a quorum accepted it. Each
//! peer of that quorum heard from the leader after `t`, so none of them will vote for another
//! candidate before its election timer expires, which is at least `t + election_timeout` (with
//! check-quorum and pre-vote, a peer that hears from a live leader refuses votes). No other
//! leader can therefore exist before `t + election_timeout`, and a leader that keeps its lease
//! bound at `t + max_lease` with `max_lease <= election_timeout - one tick` (enforced by
//! `Config::validate`) is the only leader while its lease is valid. The tick of slack absorbs
//! the granularity of the followers' tick clocks.
//!
//! The argument needs `t` to be taken BEFORE the proposal is sent: callers MUST record the time
//! when they propose (or send the read-index heartbeat), and renew with that recorded time when
//! the quorum's acknowledgement arrives, never with the time of arrival.
//!
//! Suspect state. During leader transfer (and, later, merge and split) another peer may become
//! leader before the lease would expire, so the lease is marked *suspect*: local reads stop, and
//! reads go through ReadIndex until a renewal proves leadership again after the suspect bound.
//!
//! Time is `Instant` (monotonic); wall-clock jumps cannot extend a lease.

use std::time::{Duration, Instant};

/// What a lease allows at a given instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// Local reads are allowed.
    Valid,
    /// Leadership may have moved; reads must use ReadIndex.
    Suspect,
    /// No lease; reads must use ReadIndex.
    Expired,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bound {
    /// Leadership is confirmed until this instant.
    Valid(Instant),
    /// Leadership is in doubt until this instant; renewals before it do not restore validity.
    Suspect(Instant),
}

/// A leader's lease. Owned by one peer; not shared across threads.
#[derive(Debug)]
pub struct Lease {
    bound: Option<Bound>,
    max_lease: Duration,
}

impl Lease {
    /// # Panics
    /// If `max_lease` is zero: a lease that can never be valid is a configuration bug.
    pub fn new(max_lease: Duration) -> Lease {
        assert!(!max_lease.is_zero(), "leader lease must be positive");
        Lease { bound: None, max_lease }
    }

    pub fn max_lease(&self) -> Duration {
        self.max_lease
    }

    /// Extends the lease to `proposed_at + max_lease` after a quorum acknowledged something
    /// sent at `proposed_at`. Never shortens a valid lease. A suspect lease becomes valid only
    /// once the new bound passes the suspect bound.
    pub fn renew(&mut self, proposed_at: Instant) {
        let bound = proposed_at + self.max_lease;
        self.bound = match self.bound {
            None => Some(Bound::Valid(bound)),
            Some(Bound::Valid(old)) => Some(Bound::Valid(old.max(bound))),
            Some(Bound::Suspect(until)) if bound > until => Some(Bound::Valid(bound)),
            Some(suspect @ Bound::Suspect(_)) => Some(suspect),
        };
    }

    /// Marks leadership as doubtful from `now` for one lease length, e.g. when leadership is
    /// being transferred.
    pub fn suspect(&mut self, now: Instant) {
        self.bound = Some(Bound::Suspect(now + self.max_lease));
    }

    /// Drops the lease, e.g. on stepping down.
    pub fn expire(&mut self) {
        self.bound = None;
    }

    pub fn inspect(&self, now: Instant) -> LeaseState {
        match self.bound {
            None => LeaseState::Expired,
            Some(Bound::Suspect(_)) => LeaseState::Suspect,
            Some(Bound::Valid(until)) if now < until => LeaseState::Valid,
            Some(Bound::Valid(_)) => LeaseState::Expired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_millis(900);

    #[test]
    fn a_new_lease_is_expired_until_renewed() {
        let t0 = Instant::now();
        let mut lease = Lease::new(LEASE);
        assert_eq!(lease.inspect(t0), LeaseState::Expired);
        lease.renew(t0);
        assert_eq!(lease.inspect(t0), LeaseState::Valid);
        assert_eq!(lease.inspect(t0 + LEASE - Duration::from_millis(1)), LeaseState::Valid);
        assert_eq!(lease.inspect(t0 + LEASE), LeaseState::Expired);
    }

    #[test]
    fn renewal_never_shortens() {
        let t0 = Instant::now();
        let mut lease = Lease::new(LEASE);
        lease.renew(t0 + Duration::from_millis(500));
        // A late acknowledgement of an older proposal must not pull the bound back.
        lease.renew(t0);
        assert_eq!(lease.inspect(t0 + LEASE + Duration::from_millis(100)), LeaseState::Valid);
    }

    #[test]
    fn suspect_blocks_local_reads_until_a_newer_renewal() {
        let t0 = Instant::now();
        let mut lease = Lease::new(LEASE);
        lease.renew(t0);
        lease.suspect(t0 + Duration::from_millis(100));
        assert_eq!(lease.inspect(t0 + Duration::from_millis(100)), LeaseState::Suspect);
        // Acknowledgement of something proposed before the doubt began proves nothing new.
        lease.renew(t0 + Duration::from_millis(50));
        assert_eq!(lease.inspect(t0 + Duration::from_millis(150)), LeaseState::Suspect);
        // One proposed after the doubt began, whose bound passes the suspect bound, does.
        lease.renew(t0 + Duration::from_millis(200));
        assert_eq!(lease.inspect(t0 + Duration::from_millis(250)), LeaseState::Valid);
    }

    #[test]
    fn expire_drops_the_lease() {
        let t0 = Instant::now();
        let mut lease = Lease::new(LEASE);
        lease.renew(t0);
        lease.expire();
        assert_eq!(lease.inspect(t0), LeaseState::Expired);
    }
}
