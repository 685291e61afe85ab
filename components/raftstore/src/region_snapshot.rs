//! A consistent, read-only view of one region's data, handed to a read once it is linearizable.
//!
//! Keys in and out are the client's (origin) keys; the `z` data prefix of the KV engine never
//! leaks. Every access is clipped to the region's range as it was when the snapshot was taken,
//! so a read cannot see keys that belong to another region.

use engine_traits::{EngineIterator, IterOptions, Snapshot};
use proto::metapb;
use util::LogIndex;

use crate::error::{Error, Result};
use crate::util::check_key_in_region;

/// An engine snapshot plus the region it is a view of.
#[derive(Debug, Clone)]
pub struct RegionSnapshot<S> {
    snap: S,
    region: metapb::Region,
    /// The apply index of the region when the snapshot was taken.
    applied_index: LogIndex,
}

impl<S: Snapshot> RegionSnapshot<S> {
    pub fn new(snap: S, region: metapb::Region, applied_index: LogIndex) -> Self {
        RegionSnapshot { snap, region, applied_index }
    }

    pub fn region(&self) -> &metapb::Region {
        &self.region
    }

    pub fn applied_index(&self) -> LogIndex {
        self.applied_index
    }

    /// The value of `key` in `cf`. `KeyNotInRegion` if the key is outside the region.
    pub fn get_value_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        check_key_in_region(key, &self.region)?;
        Ok(self.snap.get_value_cf(cf, &keys::data_key(key))?)
    }

    /// An iterator over `[lower, upper)` (origin keys; empty `upper` means the region's end),
    /// clipped to the region.
    pub fn iter(&self, cf: &str, lower: &[u8], upper: &[u8]) -> RegionIterator<S::Iterator> {
        let start = std::cmp::max(lower, self.region.start_key.as_slice());
        let end = match (upper.is_empty(), self.region.end_key.is_empty()) {
            (true, _) => self.region.end_key.as_slice(),
            (false, true) => upper,
            (false, false) => std::cmp::min(upper, self.region.end_key.as_slice()),
        };
        let lower_bound = keys::data_key(start);
        let upper_bound = keys::enc_end_key(end);
        let it = self.snap.iterator_opt(cf, IterOptions::new(Some(lower_bound), Some(upper_bound)));
        RegionIterator { it }
    }
}

/// Iterates origin keys of one region. Positioning calls return whether the iterator is valid.
pub struct RegionIterator<I> {
    it: I,
}

impl<I: EngineIterator> RegionIterator<I> {
    pub fn seek_to_first(&mut self) -> Result<bool> {
        Ok(self.it.seek_to_first()?)
    }

    pub fn seek_to_last(&mut self) -> Result<bool> {
        Ok(self.it.seek_to_last()?)
    }

    /// First key `>= key`.
    pub fn seek(&mut self, key: &[u8]) -> Result<bool> {
        Ok(self.it.seek(&keys::data_key(key))?)
    }

    /// Last key `<= key`.
    pub fn seek_for_prev(&mut self, key: &[u8]) -> Result<bool> {
        Ok(self.it.seek_for_prev(&keys::data_key(key))?)
    }

    pub fn next(&mut self) -> Result<bool> {
        Ok(self.it.next()?)
    }

    pub fn prev(&mut self) -> Result<bool> {
        Ok(self.it.prev()?)
    }

    pub fn valid(&self) -> Result<bool> {
        Ok(self.it.valid()?)
    }

    /// The current origin key. MUST only be called while valid.
    pub fn key(&self) -> &[u8] {
        let k = self.it.key();
        assert!(keys::is_data_key(k), "region iterator left the data key space: {k:?}");
        &k[1..]
    }

    pub fn value(&self) -> &[u8] {
        self.it.value()
    }
}

impl From<keys::Error> for Error {
    fn from(e: keys::Error) -> Error {
        Error::Engine(engine_traits::Error::Key(e))
    }
}
