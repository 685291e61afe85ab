//! [`Registry`]: the operators PD runs and the ones that finished (soft state).
//!
//! Invariants:
//! 1. A region is locked by at most one running operator: its own, or a merge whose target it
//!    is ("passive", as in TiKV's PD). [`Registry::insert`] asserts it; callers check
//!    [`Registry::busy`] first.
//! 2. Every finished operator leaves `running` (and its passive lock) at once, into `history`,
//!    which keeps the last [`HISTORY_MAX`](super::HISTORY_MAX).
//! 3. Heartbeats of either region of a merge reach the merge's operator.

use std::collections::{HashMap, VecDeque};

use proto::pdpb;

use super::{Kind, Operator, HISTORY_MAX};
use crate::region_tree::RegionInfo;

#[derive(Debug, Default)]
pub struct Registry {
    /// By the operator's `region_id` (a merge's source).
    running: HashMap<u64, Operator>,
    /// A merge's target → its source.
    passive: HashMap<u64, u64>,
    /// Finished ones, oldest first.
    history: VecDeque<Operator>,
}

/// What a heartbeat did to the registry.
#[derive(Debug, Default)]
pub struct Dispatch {
    /// The command to answer the heartbeat with.
    pub command: Option<pdpb::RegionHeartbeatResponse>,
    /// The operator the heartbeat finished, now in the history.
    pub finished: Option<Operator>,
}

impl Registry {
    /// The running operator that locks `region_id` (its own or a merge it is the target of).
    pub fn busy(&self, region_id: u64) -> Option<&Operator> {
        self.running
            .get(&region_id)
            .or_else(|| self.passive.get(&region_id).and_then(|s| self.running.get(s)))
    }

    /// Starts `op`.
    ///
    /// # Panics
    /// If a region it locks is already locked (invariant 1).
    pub fn insert(&mut self, op: Operator) {
        let ids = [Some(op.region_id), op.target_region_id()];
        for id in ids.into_iter().flatten() {
            assert!(self.busy(id).is_none(), "region {id} already has a running operator");
        }
        if let Some(target) = op.target_region_id() {
            self.passive.insert(target, op.region_id);
        }
        self.running.insert(op.region_id, op);
    }

    /// Feeds a heartbeat to the operator locking its region (invariant 3).
    pub fn on_heartbeat(&mut self, info: &RegionInfo, now_ms: u64) -> Dispatch {
        let id = info.region.id;
        let (owner, command) = if let Some(op) = self.running.get_mut(&id) {
            (id, op.on_heartbeat(info, now_ms))
        } else if let Some(&source) = self.passive.get(&id) {
            let op = self.running.get_mut(&source).expect("a passive lock has its operator");
            op.on_target_heartbeat(info, now_ms);
            (source, None)
        } else {
            return Dispatch::default();
        };
        let finished = if self.running[&owner].is_running() { None } else { self.retire(owner) };
        Dispatch { command, finished }
    }

    /// Ends the operators whose step ran past its timeout; answers them.
    pub fn check_timeouts(&mut self, now_ms: u64) -> Vec<Operator> {
        let expired: Vec<u64> = self
            .running
            .values_mut()
            .filter_map(|op| {
                op.check_timeout(now_ms);
                (!op.is_running()).then_some(op.region_id)
            })
            .collect();
        expired.into_iter().filter_map(|id| self.retire(id)).collect()
    }

    /// Cancels the operator locking `region_id` (as source or target); answers it.
    pub fn cancel(&mut self, region_id: u64, now_ms: u64) -> Option<Operator> {
        let owner = self.busy(region_id)?.region_id;
        self.running.get_mut(&owner).expect("busy found it").cancel(now_ms);
        self.retire(owner)
    }

    /// The running operators by region id.
    pub fn running(&self) -> Vec<Operator> {
        let mut list: Vec<Operator> = self.running.values().cloned().collect();
        list.sort_by_key(|op| op.region_id);
        list
    }

    /// The finished operators, oldest first.
    pub fn history(&self) -> Vec<Operator> {
        self.history.iter().cloned().collect()
    }

    /// The operator locking `region_id`, else the last finished one that involved it.
    pub fn get(&self, region_id: u64) -> Option<Operator> {
        let involves =
            |op: &&Operator| op.region_id == region_id || op.target_region_id() == Some(region_id);
        self.busy(region_id).or_else(|| self.history.iter().rev().find(involves)).cloned()
    }

    /// How many operators of `kind` run.
    pub fn count(&self, kind: Kind) -> usize {
        self.running.values().filter(|op| op.kind == kind).count()
    }

    fn retire(&mut self, owner: u64) -> Option<Operator> {
        let op = self.running.remove(&owner)?;
        if let Some(target) = op.target_region_id() {
            self.passive.remove(&target);
        }
        if self.history.len() == HISTORY_MAX {
            self.history.pop_front();
        }
        self.history.push_back(op.clone());
        Some(op)
    }
}

#[cfg(test)]
mod tests {
    use proto::metapb;

    use super::*;
    use crate::operator::{plan_merge, Status, StoreView, MERGE_STEP_TIMEOUT_MS};

    const NOW: u64 = 1_000_000;

    fn region(id: u64, start: &[u8], end: &[u8]) -> RegionInfo {
        let peers: Vec<metapb::Peer> = (1..=3)
            .map(|s| metapb::Peer { id: id * 10 + s, store_id: s, ..Default::default() })
            .collect();
        RegionInfo {
            leader: Some(peers[0].clone()),
            region: metapb::Region {
                id,
                start_key: start.to_vec(),
                end_key: end.to_vec(),
                region_epoch: Some(metapb::RegionEpoch { version: 2, conf_ver: 2 }),
                peers,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn merge(source: &RegionInfo, target: &RegionInfo) -> Operator {
        let up = |_| Some(StoreView { state: metapb::StoreState::Up, last_heartbeat_unix_ms: NOW });
        plan_merge(source, target, up, NOW, &[]).unwrap()
    }

    #[test]
    fn a_merge_locks_both_regions_and_either_id_finds_it() {
        let (s, t) = (region(1, b"", b"m"), region(2, b"m", b""));
        let mut reg = Registry::default();
        reg.insert(merge(&s, &t));
        assert_eq!(reg.busy(1).map(|op| op.region_id), Some(1));
        assert_eq!(reg.busy(2).map(|op| op.region_id), Some(1), "the target is locked");
        assert!(reg.busy(3).is_none());
        assert_eq!(reg.get(2).unwrap().kind, Kind::MergeRegion);
        assert_eq!(reg.count(Kind::MergeRegion), 1);
        assert_eq!(reg.running().len(), 1, "listed once, under the source");

        // The source's heartbeat gets the command; the target's none.
        assert!(reg.on_heartbeat(&s, NOW).command.unwrap().merge.is_some());
        let d = reg.on_heartbeat(&t, NOW);
        assert!(d.command.is_none() && d.finished.is_none());

        // The widened target finishes it: both locks go, the history keeps it under both ids.
        let mut merged = t.clone();
        merged.region.start_key = Vec::new();
        let d = reg.on_heartbeat(&merged, NOW + 1);
        assert_eq!(d.finished.unwrap().status, Status::Success);
        assert!(reg.busy(1).is_none() && reg.busy(2).is_none());
        assert_eq!(reg.get(1).unwrap().status, Status::Success);
        assert_eq!(reg.get(2).unwrap().status, Status::Success);
        assert_eq!(reg.history().len(), 1);
    }

    #[test]
    #[should_panic(expected = "region 2 already has a running operator")]
    fn a_locked_target_cannot_be_locked_twice() {
        let mut reg = Registry::default();
        reg.insert(merge(&region(1, b"", b"m"), &region(2, b"m", b"x")));
        reg.insert(merge(&region(3, b"x", b""), &region(2, b"m", b"x")));
    }

    #[test]
    fn cancel_by_target_and_timeouts_release_both_locks() {
        let (s, t) = (region(1, b"", b"m"), region(2, b"m", b""));
        let mut reg = Registry::default();
        reg.insert(merge(&s, &t));
        let op = reg.cancel(2, NOW).unwrap();
        assert_eq!((op.region_id, op.status.name()), (1, "canceled"));
        assert!(reg.busy(1).is_none() && reg.busy(2).is_none());
        assert!(reg.cancel(2, NOW).is_none());

        reg.insert(merge(&s, &t));
        assert!(reg.check_timeouts(NOW + MERGE_STEP_TIMEOUT_MS).is_empty());
        let expired = reg.check_timeouts(NOW + MERGE_STEP_TIMEOUT_MS + 1);
        assert_eq!(expired.len(), 1);
        assert!(reg.busy(2).is_none());
        assert_eq!(reg.get(2).unwrap().status.name(), "timeout");
        assert_eq!(reg.count(Kind::MergeRegion), 0);
    }
}
