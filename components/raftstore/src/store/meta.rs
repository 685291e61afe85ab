//! `StoreMeta`: which regions this store hosts and which key ranges they cover. Shared by the
//! pollers (updated on create, destroy, and later split/merge) and readers of routing info.

use std::collections::{BTreeMap, HashMap};

use proto::metapb;
use util::{RegionId, StoreId};

#[derive(Debug)]
pub struct StoreMeta {
    pub store_id: StoreId,
    regions: HashMap<RegionId, metapb::Region>,
    /// Encoded end key (see `keys::enc_end_key`) → region: the region containing key `k` is
    /// the first entry with an end key greater than `data_key(k)`.
    ranges: BTreeMap<Vec<u8>, RegionId>,
}

impl StoreMeta {
    pub fn new(store_id: StoreId) -> Self {
        StoreMeta { store_id, regions: HashMap::new(), ranges: BTreeMap::new() }
    }

    /// Adds or replaces a region.
    ///
    /// # Panics
    /// If the region's range overlaps another region's (two regions owning a key is a bug).
    pub fn set_region(&mut self, region: metapb::Region) {
        let id = RegionId(region.id);
        self.remove_region(id);
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

    pub fn remove_region(&mut self, id: RegionId) -> Option<metapb::Region> {
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
    #[should_panic(expected = "overlaps")]
    fn overlapping_regions_panic() {
        let mut m = StoreMeta::new(StoreId(1));
        m.set_region(region(2, b"b", b"d"));
        m.set_region(region(1, b"a", b"c"));
    }
}
