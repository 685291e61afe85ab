//! The id allocator: region, peer and store ids, unique for the life of the cluster.
//!
//! Invariant: an id is handed out only if it is `<=` the persisted bound `alloc_id`. The bound
//! grows in batches of [`ID_BATCH`], so most allocations touch no disk; after a restart
//! allocation resumes above the persisted bound, skipping at most one batch, and never hands out
//! an id twice. Id 0 is never handed out (it means "none" on the wire).

/// How far the persisted bound runs ahead of the ids handed out.
pub const ID_BATCH: u64 = 1000;

/// Most ids one request may take at once (AskBatchSplit: split count × (1 + peers)).
pub const ALLOC_COUNT_MAX: u64 = 10_000;

#[derive(Debug)]
pub struct IdAllocator {
    /// The last id handed out.
    last: u64,
    /// The persisted bound.
    end: u64,
}

impl IdAllocator {
    /// Resumes from the persisted bound: every id up to it counts as used.
    pub fn new(persisted_end: u64) -> IdAllocator {
        IdAllocator { last: persisted_end, end: persisted_end }
    }

    /// The bound to persist before `count` more ids can be handed out, if the current one is
    /// too low.
    ///
    /// # Panics
    /// If `count` is 0 or above [`ALLOC_COUNT_MAX`] (callers bound request sizes first).
    pub fn bound_needed(&self, count: u64) -> Option<u64> {
        assert!(count > 0 && count <= ALLOC_COUNT_MAX, "id count {count} out of range");
        let want = self.last.checked_add(count).expect("id space exhausted");
        (want > self.end).then(|| want + ID_BATCH)
    }

    /// Records that `end` is now persisted.
    pub fn bound_persisted(&mut self, end: u64) {
        assert!(end >= self.end, "id bound moves backwards: {} -> {end}", self.end);
        self.end = end;
    }

    /// Hands out `count` consecutive ids, returning the first.
    ///
    /// # Panics
    /// If the persisted bound does not cover them: call [`IdAllocator::bound_needed`] first.
    pub fn take(&mut self, count: u64) -> u64 {
        assert!(self.bound_needed(count).is_none(), "ids past the persisted bound {}", self.end);
        let first = self.last + 1;
        self.last += count;
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_resume_above_the_persisted_bound() {
        let mut ids = IdAllocator::new(0);
        let end = ids.bound_needed(1).unwrap();
        assert_eq!(end, 1 + ID_BATCH);
        ids.bound_persisted(end);
        assert_eq!(ids.take(1), 1);
        assert_eq!(ids.take(3), 2);
        assert_eq!(ids.bound_needed(5), None);

        // A restart skips the unused rest of the batch.
        let mut ids = IdAllocator::new(end);
        let next_end = ids.bound_needed(1).unwrap();
        ids.bound_persisted(next_end);
        assert_eq!(ids.take(1), end + 1);
    }

    #[test]
    fn a_large_request_extends_the_bound_past_itself() {
        let mut ids = IdAllocator::new(10);
        let end = ids.bound_needed(ALLOC_COUNT_MAX).unwrap();
        assert_eq!(end, 10 + ALLOC_COUNT_MAX + ID_BATCH);
        ids.bound_persisted(end);
        assert_eq!(ids.take(ALLOC_COUNT_MAX), 11);
    }
}
