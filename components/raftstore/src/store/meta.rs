//! `StoreMeta`: which regions this store hosts and which key ranges they cover. Shared by the
//! pollers (updated on create, destroy, and later split/merge) and readers of routing info.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use proto::metapb;
use proto::raft_serverpb::RaftMessage;
use util::{RegionId, StoreId};

/// Most raft messages kept for regions that a split on this store has not created yet.
pub const PENDING_MSGS_MAX: usize = 128;

/// Most uninitialized peers (created by a message, waiting for their first snapshot) a store
/// holds at once. Beyond it, messages that would create one are dropped: the leader repeats
/// its heartbeat, and the peer is created once others have received their snapshots.
pub const UNINITIALIZED_PEERS_MAX: usize = 1024;

#[derive(Debug)]
pub struct StoreMeta {
    pub store_id: StoreId,
    regions: HashMap<RegionId, metapb::Region>,
    /// Encoded end key (see `keys::enc_end_key`) → region: the region containing key `k` is
    /// the first entry with an end key greater than `data_key(k)`.
    ranges: BTreeMap<Vec<u8>, RegionId>,
    /// Election messages for regions that do not exist here yet because this store has not
    /// applied the split creating them; delivered when the split creates the region (so its
    /// first election does not wait for a retry). Oldest dropped first beyond the bound.
    pending_msgs: VecDeque<RaftMessage>,
    /// Peers without a range yet (waiting for their first snapshot); not in `ranges`.
    uninitialized: HashSet<RegionId>,
    /// Ranges of snapshots accepted by a peer (checked, stepped into raft) and not persisted
    /// yet: another snapshot overlapping one is refused, so two pollers cannot both accept
    /// overlapping snapshots (`peer::snapshot`, step 4).
    pending_snapshots: HashMap<RegionId, metapb::Region>,
    /// Merge sources here and the target each merges into, as its PrepareMerge recorded it
    /// or as a merged peer's answer told it (`peer::merge`): a snapshot of that target that
    /// covers a source replaces the source (`snapshot_sources`). Bounded by the regions here
    /// (an entry leaves with its region).
    merge_sources: HashMap<RegionId, metapb::Region>,
}

impl StoreMeta {
    pub fn new(store_id: StoreId) -> Self {
        StoreMeta {
            store_id,
            regions: HashMap::new(),
            ranges: BTreeMap::new(),
            pending_msgs: VecDeque::new(),
            uninitialized: HashSet::new(),
            pending_snapshots: HashMap::new(),
            merge_sources: HashMap::new(),
        }
    }

    /// Keeps `msg` until its region is created here (see `pending_msgs`).
    pub fn keep_pending_msg(&mut self, msg: RaftMessage) {
        if self.pending_msgs.len() >= PENDING_MSGS_MAX {
            self.pending_msgs.pop_front();
        }
        self.pending_msgs.push_back(msg);
    }

    /// Takes the kept messages of `region_id`, oldest first.
    pub fn take_pending_msgs(&mut self, region_id: RegionId) -> Vec<RaftMessage> {
        let mut mine = Vec::new();
        self.pending_msgs.retain(|m| {
            if m.region_id == region_id.get() {
                mine.push(m.clone());
                false
            } else {
                true
            }
        });
        mine
    }

    /// Some region here whose range overlaps `[start, end)` (origin keys; empty end = +inf).
    pub fn overlapping(&self, start: &[u8], end: &[u8]) -> Option<&metapb::Region> {
        use std::ops::Bound::{Excluded, Unbounded};
        // The first region ending after `start` is the only candidate that can begin before
        // `end`: regions are disjoint and ordered.
        let start = keys::data_key(start);
        let (_, id) =
            self.ranges.range::<[u8], _>((Excluded(start.as_slice()), Unbounded)).next()?;
        let region = &self.regions[id];
        let region_start = keys::data_key(&region.start_key);
        (region_start < keys::enc_end_key(end)).then_some(region)
    }

    /// Reserves `region`'s range for a snapshot about to be stepped, unless a region here
    /// (other than `region` itself and the merge sources it `replaces`) or another reserved
    /// snapshot overlaps it: then the id of one.
    pub fn reserve_snapshot(
        &mut self,
        region: &metapb::Region,
        replaces: &[RegionId],
    ) -> Result<(), RegionId> {
        if let Some(other) = self.overlap_except(region, replaces) {
            return Err(other);
        }
        let overlaps = |r: &metapb::Region| {
            keys::data_key(&r.start_key) < keys::enc_end_key(&region.end_key)
                && keys::data_key(&region.start_key) < keys::enc_end_key(&r.end_key)
        };
        if let Some(r) = self.pending_snapshots.values().find(|r| r.id != region.id && overlaps(r))
        {
            return Err(RegionId(r.id));
        }
        self.pending_snapshots.insert(RegionId(region.id), region.clone());
        Ok(())
    }

    /// Drops a snapshot reservation (persisted: the range is the region's now; or raft did
    /// not take it).
    pub fn release_snapshot(&mut self, id: RegionId) {
        self.pending_snapshots.remove(&id);
    }

    /// A region here, other than `region` itself, whose range overlaps `region`'s.
    pub fn overlap_other_than(&self, region: &metapb::Region) -> Option<RegionId> {
        self.overlapping_ids(region).into_iter().next()
    }

    /// A region here, other than `region` itself and `except`, whose range overlaps
    /// `region`'s.
    pub fn overlap_except(&self, region: &metapb::Region, except: &[RegionId]) -> Option<RegionId> {
        self.overlapping_ids(region).into_iter().find(|id| !except.contains(id))
    }

    /// Every region here, other than `region` itself, whose range overlaps `region`'s.
    fn overlapping_ids(&self, region: &metapb::Region) -> Vec<RegionId> {
        use std::ops::Bound::{Excluded, Unbounded};
        let start = keys::data_key(&region.start_key);
        let end = keys::enc_end_key(&region.end_key);
        let mut out = Vec::new();
        for (_, id) in self.ranges.range::<[u8], _>((Excluded(start.as_slice()), Unbounded)) {
            let other = &self.regions[id];
            if keys::data_key(&other.start_key) >= end {
                break;
            }
            if other.id != region.id {
                out.push(*id);
            }
        }
        out
    }

    /// Records that `source` merges (or merged) into `target` (see `merge_sources`).
    pub fn set_merge_source(&mut self, source: RegionId, target: metapb::Region) {
        if self.regions.contains_key(&source) {
            self.merge_sources.insert(source, target);
        }
    }

    pub fn clear_merge_source(&mut self, source: RegionId) {
        self.merge_sources.remove(&source);
    }

    pub fn merge_target_of(&self, source: RegionId) -> Option<&metapb::Region> {
        self.merge_sources.get(&source)
    }

    /// The regions here a snapshot of `region` replaces (`peer::snapshot`, step 4): `Some`
    /// only if every region overlapping it is a merge source of `region`, recorded at an
    /// older version of it, with a range inside `region`'s. Coverage alone is not enough:
    /// after a split, a merge and another split, a region may live on elsewhere.
    pub fn snapshot_sources(&self, region: &metapb::Region) -> Option<Vec<RegionId>> {
        let version = |r: &metapb::Region| r.region_epoch.unwrap_or_default().version;
        let mut out = Vec::new();
        for id in self.overlapping_ids(region) {
            let target = self.merge_sources.get(&id)?;
            let source = &self.regions[&id];
            let inside = keys::data_key(&source.start_key) >= keys::data_key(&region.start_key)
                && keys::enc_end_key(&source.end_key) <= keys::enc_end_key(&region.end_key);
            if target.id != region.id || version(target) >= version(region) || !inside {
                return None;
            }
            out.push(id);
        }
        (!out.is_empty()).then_some(out)
    }

    /// The regions here adjacent to `region` (ending at its start, starting at its end).
    pub fn neighbours(&self, region: &metapb::Region) -> Vec<metapb::Region> {
        let mut out = Vec::new();
        if !region.start_key.is_empty() {
            if let Some(id) = self.ranges.get(&keys::data_key(&region.start_key)) {
                out.push(self.regions[id].clone());
            }
        }
        if !region.end_key.is_empty() {
            if let Some(r) = self.region_for_key(&region.end_key) {
                if r.start_key == region.end_key {
                    out.push(r.clone());
                }
            }
        }
        out
    }

    /// Adds or replaces a region.
    ///
    /// # Panics
    /// If the region's range overlaps another region's (two regions owning a key is a bug).
    pub fn set_region(&mut self, region: metapb::Region) {
        let id = RegionId(region.id);
        self.remove_region(id);
        self.uninitialized.remove(&id);
        let end = keys::enc_end_key(&region.end_key);
        {
            use std::ops::Bound::{Excluded, Unbounded};
            let start = keys::data_key(&region.start_key);
            let next = self.ranges.range::<[u8], _>((Excluded(start.as_slice()), Unbounded)).next();
            if let Some((_, other)) = next {
                let other_start = keys::data_key(&self.regions[other].start_key);
                assert!(other_start >= end, "region {id} overlaps region {other} on this store");
            }
        }
        let prev = self.ranges.insert(end, id);
        assert!(prev.is_none(), "region {id}: end key taken by region {prev:?}");
        self.regions.insert(id, region);
    }

    /// Records a peer that has no range yet (`UNINITIALIZED_PEERS_MAX`).
    pub fn add_uninitialized(&mut self, id: RegionId) {
        self.uninitialized.insert(id);
    }

    pub fn is_uninitialized(&self, id: RegionId) -> bool {
        self.uninitialized.contains(&id)
    }

    pub fn uninitialized_count(&self) -> usize {
        self.uninitialized.len()
    }

    pub fn remove_region(&mut self, id: RegionId) -> Option<metapb::Region> {
        self.uninitialized.remove(&id);
        self.merge_sources.remove(&id);
        let region = self.regions.remove(&id)?;
        let end = keys::enc_end_key(&region.end_key);
        if self.ranges.get(&end) == Some(&id) {
            self.ranges.remove(&end);
        }
        Some(region)
    }

    pub fn region(&self, id: RegionId) -> Option<&metapb::Region> {
        self.regions.get(&id)
    }

    pub fn regions(&self) -> impl Iterator<Item = &metapb::Region> {
        self.regions.values()
    }

    pub fn region_count(&self) -> usize {
        self.regions.len()
    }

    /// The region whose range holds user key `key`.
    pub fn region_for_key(&self, key: &[u8]) -> Option<&metapb::Region> {
        self.region_for_data_key(&keys::data_key(key))
    }

    fn region_for_data_key(&self, data_key: &[u8]) -> Option<&metapb::Region> {
        use std::ops::Bound::{Excluded, Unbounded};
        let (_, id) = self.ranges.range::<[u8], _>((Excluded(data_key), Unbounded)).next()?;
        let region = &self.regions[id];
        (keys::data_key(&region.start_key).as_slice() <= data_key).then_some(region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u64, start: &[u8], end: &[u8]) -> metapb::Region {
        metapb::Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn lookup_by_key() {
        let mut m = StoreMeta::new(StoreId(1));
        m.set_region(region(1, b"", b"b"));
        m.set_region(region(2, b"b", b"d"));
        m.set_region(region(3, b"f", b""));
        assert_eq!(m.region_for_key(b"").unwrap().id, 1);
        assert_eq!(m.region_for_key(b"a").unwrap().id, 1);
        assert_eq!(m.region_for_key(b"b").unwrap().id, 2);
        assert_eq!(m.region_for_key(b"c").unwrap().id, 2);
        assert!(m.region_for_key(b"d").is_none(), "gap between d and f");
        assert_eq!(m.region_for_key(b"zzz").unwrap().id, 3);
        m.remove_region(RegionId(2));
        assert!(m.region_for_key(b"c").is_none());
        assert_eq!(m.region_count(), 2);
    }

    #[test]
    fn overlap_and_neighbours() {
        let mut m = StoreMeta::new(StoreId(1));
        m.set_region(region(1, b"", b"b"));
        m.set_region(region(2, b"b", b"d"));
        m.set_region(region(3, b"f", b""));
        assert_eq!(m.overlapping(b"a", b"c").unwrap().id, 1);
        assert_eq!(m.overlapping(b"c", b"e").unwrap().id, 2);
        assert!(m.overlapping(b"d", b"f").is_none(), "the gap");
        assert!(m.overlapping(b"d", b"e").is_none());
        assert_eq!(m.overlapping(b"e", b"").unwrap().id, 3);
        assert_eq!(m.overlapping(b"b", b"c").unwrap().id, 2, "start is inclusive");
        let n: Vec<u64> = m.neighbours(&region(2, b"b", b"d")).iter().map(|r| r.id).collect();
        assert_eq!(n, vec![1], "nothing starts at d");
        let n: Vec<u64> = m.neighbours(&region(1, b"", b"b")).iter().map(|r| r.id).collect();
        assert_eq!(n, vec![2]);
    }

    #[test]
    fn pending_messages_are_bounded_and_taken_per_region() {
        let mut m = StoreMeta::new(StoreId(1));
        for i in 0..PENDING_MSGS_MAX + 10 {
            m.keep_pending_msg(RaftMessage { region_id: (i % 2) as u64, ..Default::default() });
        }
        let zero = m.take_pending_msgs(RegionId(0));
        assert_eq!(zero.len(), PENDING_MSGS_MAX / 2);
        assert_eq!(m.take_pending_msgs(RegionId(1)).len(), PENDING_MSGS_MAX / 2);
        assert!(m.take_pending_msgs(RegionId(1)).is_empty());
    }

    #[test]
    fn a_snapshot_replaces_only_recorded_merge_sources_it_covers() {
        let versioned = |mut r: metapb::Region, v: u64| {
            r.region_epoch = Some(metapb::RegionEpoch { conf_ver: 1, version: v });
            r
        };
        let mut m = StoreMeta::new(StoreId(1));
        m.set_region(versioned(region(1, b"", b"c"), 3));
        m.set_region(versioned(region(2, b"c", b"f"), 3));
        m.set_region(versioned(region(3, b"f", b""), 3));
        // The target 3 as its snapshot shows it: widened to [c, +inf) at version 5.
        let snap = versioned(region(3, b"c", b""), 5);
        assert_eq!(m.snapshot_sources(&snap), None, "2 is not known to merge into 3");
        assert!(m.reserve_snapshot(&snap, &[]).is_err());
        m.set_merge_source(RegionId(2), versioned(region(3, b"f", b""), 3));
        assert_eq!(m.snapshot_sources(&snap), Some(vec![RegionId(2)]));
        assert!(m.reserve_snapshot(&snap, &[RegionId(2)]).is_ok());
        m.release_snapshot(RegionId(3));
        // Not at a newer version of the target than the merge recorded: not proof.
        assert_eq!(m.snapshot_sources(&versioned(region(3, b"c", b""), 3)), None);
        // Only part of the source covered (the target split after the merge): not replaced.
        assert_eq!(m.snapshot_sources(&versioned(region(3, b"d", b""), 5)), None);
        // Recorded for another target: not replaced.
        m.set_merge_source(RegionId(2), versioned(region(1, b"", b"c"), 3));
        assert_eq!(m.snapshot_sources(&snap), None);
        // A region leaving the meta takes its record along.
        m.remove_region(RegionId(2));
        assert!(m.merge_target_of(RegionId(2)).is_none());
    }

    #[test]
    #[should_panic(expected = "overlaps")]
    fn overlapping_regions_panic() {
        let mut m = StoreMeta::new(StoreId(1));
        m.set_region(region(2, b"b", b"d"));
        m.set_region(region(1, b"a", b"c"));
    }
}
