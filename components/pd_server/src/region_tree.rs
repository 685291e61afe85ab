//! The routing table: which region owns which key range, its epoch and its leader.
//!
//! Pure data, no IO. Updates come in two steps so the caller can persist in between:
//! [`RegionTree::plan`] decides (no mutation), the caller writes the plan to disk, then
//! [`RegionTree::apply`] changes memory.
//!
//! Invariants:
//! 1. Ranges of the regions in the tree never overlap (`debug_assert`ed after every apply).
//! 2. A region's epoch in the tree never goes backwards: an update whose `(version, conf_ver)`
//!    is lexicographically lower than the stored one is stale and ignored.
//! 3. An accepted region removes every other region its range overlaps; if one of those has a
//!    higher `version` (a newer split or merge already reported), the update is stale instead.
//!    Between a split and the heartbeats of all its parts the tree may have a gap; `GetRegion`
//!    then answers no region and the client retries.
//! 4. A leader update is accepted only with a raft term `>=` the recorded one, so a deposed
//!    leader's late heartbeat cannot hide the new leader. Terms are not persisted: after a
//!    restart the next heartbeat wins.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use proto::metapb;

/// What PD knows about one region.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RegionInfo {
    pub region: metapb::Region,
    /// The leader from the newest heartbeat, if any peer has reported as leader.
    pub leader: Option<metapb::Peer>,
    /// The raft term of `leader` (0 when unknown).
    pub term: u64,
    /// From the last leader heartbeat; `None` until one reports them after PD starts or after a
    /// split report (the merge checker never merges a region of unknown size).
    pub stats: Option<RegionStats>,
    /// Peers the leader's last heartbeat named as not caught up (a new peer waiting for its
    /// snapshot); soft state.
    pub pending_peers: Vec<metapb::Peer>,
}

/// A region's approximate size, as its leader measured it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionStats {
    pub approximate_size: u64,
    pub approximate_keys: u64,
}

/// Why an update was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    /// The tree holds this region with a newer epoch.
    Epoch { stored: (u64, u64) },
    /// An overlapping region has a newer version.
    Overlap { region_id: u64, version: u64 },
}

/// The decision for one update, to persist and then [`RegionTree::apply`].
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub info: RegionInfo,
    /// Regions whose ranges the new one covers; they leave the tree.
    pub removed: Vec<u64>,
    /// Whether the persisted record (region or leader) changes; statistics alone do not.
    pub meta_changed: bool,
}

#[derive(Debug, Default)]
pub struct RegionTree {
    /// start key -> region id.
    by_start: BTreeMap<Vec<u8>, u64>,
    regions: HashMap<u64, RegionInfo>,
}

/// `(version, conf_ver)`: compared version first (invariant 2).
pub fn epoch_key(region: &metapb::Region) -> (u64, u64) {
    region.region_epoch.as_ref().map_or((0, 0), |e| (e.version, e.conf_ver))
}

/// Whether `key` is inside `region`'s range.
pub fn contains(region: &metapb::Region, key: &[u8]) -> bool {
    region.start_key.as_slice() <= key && (region.end_key.is_empty() || key < &region.end_key[..])
}

impl RegionTree {
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    pub fn get(&self, region_id: u64) -> Option<&RegionInfo> {
        self.regions.get(&region_id)
    }

    /// The region whose range holds `key`.
    pub fn search(&self, key: &[u8]) -> Option<&RegionInfo> {
        let (_, id) =
            self.by_start.range::<[u8], _>((Bound::Unbounded, Bound::Included(key))).next_back()?;
        let info = &self.regions[id];
        contains(&info.region, key).then_some(info)
    }

    /// The region right before (by start key) the one starting at `start_key`.
    pub fn prev(&self, start_key: &[u8]) -> Option<&RegionInfo> {
        let (_, id) = self
            .by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(start_key)))
            .next_back()?;
        Some(&self.regions[id])
    }

    /// Regions in key order starting with the one holding `start_key` (or the first after it),
    /// up to `end_key` (exclusive, empty = +inf) and at most `limit` of them.
    pub fn scan(&self, start_key: &[u8], end_key: &[u8], limit: usize) -> Vec<&RegionInfo> {
        let from = match self.search(start_key) {
            Some(info) => info.region.start_key.clone(),
            None => start_key.to_vec(),
        };
        self.by_start
            .range(from..)
            .map(|(_, id)| &self.regions[id])
            .take_while(|info| end_key.is_empty() || info.region.start_key.as_slice() < end_key)
            .take(limit)
            .collect()
    }

    /// Every region in key order.
    pub fn iter(&self) -> impl Iterator<Item = &RegionInfo> {
        self.by_start.values().map(|id| &self.regions[id])
    }

    /// Decides an update reported by a heartbeat (`term > 0`, with a leader) or a split report
    /// (`term == 0`, leader unknown or inherited). `Err` when it is stale (invariants 2, 3).
    pub fn plan(&self, mut info: RegionInfo) -> Result<Plan, Stale> {
        let new_epoch = epoch_key(&info.region);
        let old = self.regions.get(&info.region.id);
        if let Some(old) = old {
            let stored = epoch_key(&old.region);
            if new_epoch < stored {
                return Err(Stale::Epoch { stored });
            }
        }
        let mut removed = Vec::new();
        for other in self.overlapping(&info.region) {
            if other.region.id == info.region.id {
                continue;
            }
            let version = epoch_key(&other.region).0;
            if version > new_epoch.0 {
                return Err(Stale::Overlap { region_id: other.region.id, version });
            }
            removed.push(other.region.id);
        }
        // A leader must be one of the region's peers; a stale leader (lower term) keeps the
        // recorded one (invariant 4).
        if let Some(leader) = &info.leader {
            if !info.region.peers.iter().any(|p| p.id == leader.id) {
                info.leader = None;
            }
        }
        if let Some(old) = old {
            let keep_old_leader = info.leader.is_none() || info.term < old.term;
            if keep_old_leader {
                let old_leader_still_peer = old
                    .leader
                    .as_ref()
                    .is_some_and(|l| info.region.peers.iter().any(|p| p.id == l.id));
                info.leader = if old_leader_still_peer { old.leader.clone() } else { None };
                info.term = old.term;
            }
        }
        let meta_changed = !removed.is_empty()
            || old.is_none_or(|old| old.region != info.region || old.leader != info.leader);
        Ok(Plan { info, removed, meta_changed })
    }

    /// Applies a plan made by [`RegionTree::plan`] on this same tree state.
    pub fn apply(&mut self, plan: Plan) {
        for id in &plan.removed {
            self.remove(*id);
        }
        let id = plan.info.region.id;
        if let Some(old) = self.regions.get(&id) {
            let old_start = old.region.start_key.clone();
            self.by_start.remove(&old_start);
        }
        self.by_start.insert(plan.info.region.start_key.clone(), id);
        self.regions.insert(id, plan.info);
        debug_assert!(self.check_no_overlap(), "overlapping regions after applying region {id}");
    }

    fn remove(&mut self, region_id: u64) {
        if let Some(info) = self.regions.remove(&region_id) {
            let removed = self.by_start.remove(&info.region.start_key);
            assert_eq!(removed, Some(region_id), "routing index out of step for {region_id}");
        }
    }

    /// Regions whose ranges intersect `region`'s.
    fn overlapping(&self, region: &metapb::Region) -> Vec<&RegionInfo> {
        let mut out = Vec::new();
        if let Some(first) = self.search(&region.start_key) {
            out.push(first);
        }
        let after = self
            .by_start
            .range::<[u8], _>((Bound::Excluded(&region.start_key[..]), Bound::Unbounded));
        for (start, id) in after {
            if !region.end_key.is_empty() && start.as_slice() >= region.end_key.as_slice() {
                break;
            }
            out.push(&self.regions[id]);
        }
        out
    }

    fn check_no_overlap(&self) -> bool {
        let mut prev_end: Option<&[u8]> = None;
        for info in self.iter() {
            if let Some(end) = prev_end {
                if end.is_empty() || end > info.region.start_key.as_slice() {
                    return false;
                }
            }
            prev_end = Some(&info.region.end_key);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u64, start: &[u8], end: &[u8], version: u64, conf_ver: u64) -> RegionInfo {
        RegionInfo {
            region: metapb::Region {
                id,
                start_key: start.to_vec(),
                end_key: end.to_vec(),
                region_epoch: Some(metapb::RegionEpoch { conf_ver, version }),
                peers: vec![
                    metapb::Peer { id: id * 10 + 1, store_id: 1, ..Default::default() },
                    metapb::Peer { id: id * 10 + 2, store_id: 2, ..Default::default() },
                ],
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn put(tree: &mut RegionTree, info: RegionInfo) -> Result<Vec<u64>, Stale> {
        let plan = tree.plan(info)?;
        let removed = plan.removed.clone();
        tree.apply(plan);
        Ok(removed)
    }

    fn ids(tree: &RegionTree) -> Vec<u64> {
        tree.iter().map(|i| i.region.id).collect()
    }

    #[test]
    fn split_then_stale_parent_heartbeat() {
        let mut tree = RegionTree::default();
        put(&mut tree, region(1, b"", b"", 1, 1)).unwrap();
        assert_eq!(tree.search(b"anything").unwrap().region.id, 1);

        // Left half keeps id 1 with version 2; the right half is new.
        put(&mut tree, region(1, b"", b"m", 2, 1)).unwrap();
        assert!(tree.search(b"x").is_none(), "gap until the right half reports");
        put(&mut tree, region(2, b"m", b"", 2, 1)).unwrap();
        assert_eq!(ids(&tree), [1, 2]);

        // The parent's old heartbeat is stale by epoch.
        assert_eq!(put(&mut tree, region(1, b"", b"", 1, 1)), Err(Stale::Epoch { stored: (2, 1) }));
        // A stale region overlapping a newer one is refused.
        assert_eq!(
            put(&mut tree, region(3, b"a", b"z", 1, 5)),
            Err(Stale::Overlap { region_id: 1, version: 2 })
        );
        // Conf changes bump conf_ver only.
        put(&mut tree, region(2, b"m", b"", 2, 3)).unwrap();
        assert_eq!(
            put(&mut tree, region(2, b"m", b"", 2, 2)),
            Err(Stale::Epoch { stored: (2, 3) })
        );
    }

    #[test]
    fn merge_removes_overlapped_regions() {
        let mut tree = RegionTree::default();
        put(&mut tree, region(1, b"", b"g", 2, 1)).unwrap();
        put(&mut tree, region(2, b"g", b"p", 2, 1)).unwrap();
        put(&mut tree, region(3, b"p", b"", 2, 1)).unwrap();
        let removed = put(&mut tree, region(2, b"", b"p", 3, 1)).unwrap();
        assert_eq!(removed, [1]);
        assert_eq!(ids(&tree), [2, 3]);
        assert_eq!(tree.search(b"a").unwrap().region.id, 2);
        assert_eq!(tree.prev(b"p").unwrap().region.id, 2);
        assert!(tree.prev(b"").is_none());
        let scanned: Vec<_> = tree.scan(b"h", b"", 10).iter().map(|i| i.region.id).collect();
        assert_eq!(scanned, [2, 3]);
        let scanned: Vec<_> = tree.scan(b"", b"p", 10).iter().map(|i| i.region.id).collect();
        assert_eq!(scanned, [2]);
    }

    /// The merge as the store reports it (#14): PrepareMerge bumps the source's version and
    /// conf_ver; CommitMerge widens the target to version max(source, target) + 1. The widened
    /// target drops the source, and the source's late heartbeat cannot bring it back.
    #[test]
    fn a_merged_target_drops_its_source() {
        let mut tree = RegionTree::default();
        put(&mut tree, region(1, b"", b"g", 4, 1)).unwrap();
        put(&mut tree, region(2, b"g", b"p", 6, 3)).unwrap();
        put(&mut tree, region(3, b"p", b"", 2, 1)).unwrap();
        // Source 2 prepares to merge into 3: same range, version 7, conf_ver 4.
        assert_eq!(put(&mut tree, region(2, b"g", b"p", 7, 4)).unwrap(), Vec::<u64>::new());
        // Target 3 commits: range ["g", ""), version max(7, 2) + 1.
        assert_eq!(put(&mut tree, region(3, b"g", b"", 8, 1)).unwrap(), [2]);
        assert_eq!(ids(&tree), [1, 3]);
        assert!(tree.get(2).is_none());
        assert_eq!(tree.search(b"h").unwrap().region.id, 3);
        // The source's last heartbeat, sent before it was destroyed, is stale.
        assert_eq!(
            put(&mut tree, region(2, b"g", b"p", 7, 4)),
            Err(Stale::Overlap { region_id: 3, version: 8 })
        );
        assert_eq!(ids(&tree), [1, 3]);
        // Merging to the left works the same: 1 absorbs 3 at version max(4, 8) + 1.
        assert_eq!(put(&mut tree, region(1, b"", b"", 9, 1)).unwrap(), [3]);
        assert_eq!(ids(&tree), [1]);
    }

    #[test]
    fn leader_follows_the_term() {
        let mut tree = RegionTree::default();
        let mut hb = region(1, b"", b"", 1, 1);
        hb.leader = Some(hb.region.peers[1].clone());
        hb.term = 5;
        put(&mut tree, hb.clone()).unwrap();

        let mut late = hb.clone();
        late.leader = Some(hb.region.peers[0].clone());
        late.term = 4;
        let plan = tree.plan(late).unwrap();
        assert!(!plan.meta_changed);
        assert_eq!(plan.info.leader, hb.leader);

        let mut newer = hb.clone();
        newer.leader = Some(hb.region.peers[0].clone());
        newer.term = 6;
        assert!(tree.plan(newer).unwrap().meta_changed);
    }
}
