//! [`SplitTracker`]: which regions are being split now, and which took part in a split recently.
//! Soft state (a PD restart forgets it), fed by the split RPCs and by region heartbeats, read by
//! the merge operator's refusals and by the merge checker.
//!
//! Invariants:
//! 1. A region is "in a split" from its leader's `AskBatchSplit` until the first of: the
//!    `ReportBatchSplit` naming it, a heartbeat showing a version above the one it asked with,
//!    or [`SPLIT_IN_PROGRESS_MS_MAX`] later (the split was abandoned, or its report lost and no
//!    heartbeat came yet). Merging it meanwhile would race the split (#14's "merge racing a
//!    split"), so PD refuses.
//! 2. A region "split recently" when a split report named it, or a heartbeat showed it new to
//!    PD or with a range shrunk at a higher version (the report is best effort), within the
//!    last `split-merge-interval`. PD's start counts as a split of every region, as in TiKV's
//!    PD: sizes and leaders are not known yet, and a region split just before the restart must
//!    not merge straight away.
//! 3. Bounded: one entry per region in each map, dropped by [`SplitTracker::prune`] once it
//!    no longer matters.
//!
//! Pure (time passed in), unit-tested directly.

use std::collections::HashMap;

/// Longest a region counts as "in a split" after asking for split ids.
pub const SPLIT_IN_PROGRESS_MS_MAX: u64 = 10_000;

/// See the module docs.
#[derive(Debug)]
pub struct SplitTracker {
    /// Region id → (version it asked with, when it asked).
    asking: HashMap<u64, (u64, u64)>,
    /// Region id → when it last took part in a split.
    last_split_ms: HashMap<u64, u64>,
    /// When PD started (invariant 2).
    started_ms: u64,
}

impl SplitTracker {
    pub fn new(started_ms: u64) -> SplitTracker {
        SplitTracker { asking: HashMap::new(), last_split_ms: HashMap::new(), started_ms }
    }

    /// A leader asked for split ids for `region_id` at `version`.
    pub fn on_ask(&mut self, region_id: u64, version: u64, now_ms: u64) {
        self.asking.insert(region_id, (version, now_ms));
    }

    /// A split was reported: `region_ids` are every region it produced (the parent included).
    pub fn on_report(&mut self, region_ids: impl IntoIterator<Item = u64>, now_ms: u64) {
        for id in region_ids {
            self.asking.remove(&id);
            self.last_split_ms.insert(id, now_ms);
        }
    }

    /// A heartbeat (or split report) was accepted for `region_id` at `version`; `split_seen`
    /// when it shows the region new to PD or shrunk (invariant 2).
    pub fn on_region_update(
        &mut self,
        region_id: u64,
        version: u64,
        split_seen: bool,
        now_ms: u64,
    ) {
        if self.asking.get(&region_id).is_some_and(|&(asked, _)| version > asked) {
            self.asking.remove(&region_id);
        }
        if split_seen {
            self.last_split_ms.insert(region_id, now_ms);
        }
    }

    /// How long ago `region_id` asked for split ids, while it counts as in a split.
    pub fn in_split_ms(&self, region_id: u64, now_ms: u64) -> Option<u64> {
        let &(_, asked_ms) = self.asking.get(&region_id)?;
        let since = now_ms.saturating_sub(asked_ms);
        (since <= SPLIT_IN_PROGRESS_MS_MAX).then_some(since)
    }

    /// Whether `region_id` took part in a split, or PD started, less than `interval_ms` ago.
    pub fn split_within(&self, region_id: u64, interval_ms: u64, now_ms: u64) -> bool {
        let last = self.last_split_ms.get(&region_id).copied().unwrap_or(0).max(self.started_ms);
        now_ms.saturating_sub(last) < interval_ms
    }

    /// Whether PD started less than `interval_ms` ago (then no region may merge by itself).
    pub fn started_within(&self, interval_ms: u64, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.started_ms) < interval_ms
    }

    /// Drops the entries that no longer matter (invariant 3).
    pub fn prune(&mut self, interval_ms: u64, now_ms: u64) {
        self.asking.retain(|_, &mut (_, at)| now_ms.saturating_sub(at) <= SPLIT_IN_PROGRESS_MS_MAX);
        self.last_split_ms.retain(|_, &mut at| now_ms.saturating_sub(at) < interval_ms);
    }

    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        (self.asking.len(), self.last_split_ms.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: u64 = 1_000_000;
    const HOUR: u64 = 3_600_000;

    #[test]
    fn a_split_lasts_from_the_ask_until_report_newer_version_or_timeout() {
        let mut t = SplitTracker::new(START);
        assert_eq!(t.in_split_ms(7, START), None);
        t.on_ask(7, 5, START);
        assert_eq!(t.in_split_ms(7, START + 3), Some(3));
        assert_eq!(t.in_split_ms(8, START + 3), None, "only the asking region");
        t.on_report([7, 8], START + 10);
        assert_eq!(t.in_split_ms(7, START + 10), None, "cleared by the report");

        t.on_ask(7, 6, START + 20);
        t.on_region_update(7, 6, false, START + 21);
        assert!(t.in_split_ms(7, START + 21).is_some(), "same version: still splitting");
        t.on_region_update(7, 7, true, START + 22);
        assert_eq!(t.in_split_ms(7, START + 22), None, "a newer version ends it");

        t.on_ask(9, 1, START);
        assert!(t.in_split_ms(9, START + SPLIT_IN_PROGRESS_MS_MAX).is_some());
        assert_eq!(t.in_split_ms(9, START + SPLIT_IN_PROGRESS_MS_MAX + 1), None, "expired");
    }

    #[test]
    fn pd_start_and_splits_count_for_the_interval() {
        let mut t = SplitTracker::new(START);
        assert!(t.started_within(HOUR, START + HOUR - 1));
        assert!(!t.started_within(HOUR, START + HOUR));
        // Every region counts as split at PD's start.
        assert!(t.split_within(1, HOUR, START + HOUR - 1));
        assert!(!t.split_within(1, HOUR, START + HOUR));
        // A reported split, and a split seen only through a heartbeat.
        t.on_report([2, 3], START + HOUR);
        t.on_region_update(4, 1, true, START + HOUR + 5);
        t.on_region_update(5, 1, false, START + HOUR + 5);
        for id in [2, 3, 4] {
            assert!(t.split_within(id, HOUR, START + 2 * HOUR - 1), "region {id}");
        }
        assert!(!t.split_within(5, HOUR, START + 2 * HOUR - 1), "a plain heartbeat is no split");
        assert!(!t.split_within(2, HOUR, START + 2 * HOUR));
        // A zero interval never holds a merge back.
        assert!(!t.split_within(2, 0, START + HOUR));
    }

    #[test]
    fn prune_keeps_only_what_still_matters() {
        let mut t = SplitTracker::new(START);
        t.on_ask(1, 1, START);
        t.on_ask(2, 1, START + 5_000);
        t.on_report([3], START);
        t.on_report([4], START + HOUR / 2);
        t.prune(HOUR, START + HOUR + SPLIT_IN_PROGRESS_MS_MAX / 2 + 1);
        assert_eq!(t.len(), (0, 1));
        assert!(t.split_within(4, HOUR, START + HOUR + 1));
        t.on_ask(5, 1, START + 2 * HOUR);
        t.prune(HOUR, START + 2 * HOUR);
        assert_eq!(t.len(), (1, 0));
    }
}
