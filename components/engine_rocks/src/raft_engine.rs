//! [`RocksRaftEngine`]: every region's raft log and `RaftLocalState` in one RocksDB instance
//! (the "raftdb"), all in its default CF, under the keys of the `keys` crate.
//!
//! Entries are stored one per key (`raft_log_key(region, index)` → encoded `eraftpb::Entry`),
//! so fetching a range is one bounded forward scan, and first/last index are one seek each.
//!
//! Deletion choices, and why:
//! * Overwriting a conflicting tail and log GC use point deletes: they happen constantly across
//!   thousands of regions, and thousands of range tombstones would slow every log read until
//!   compaction. A very long conflicting tail (over [`TAIL_POINT_DELETES_MAX`]) uses one range
//!   tombstone instead, to keep the batch bounded.
//! * Cleaning a destroyed region uses one range tombstone: it is rare and the log may be long.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use engine_traits::{
    EngineIterator, Error, IterOptions, RaftEngine, RaftLogBatch, Result, CF_DEFAULT,
};
use keys::{
    decode_raft_log_key, decode_region_raft_key, raft_log_key, raft_state_key, region_raft_prefix,
    region_raft_prefix_end,
};
use prost::Message as _;
use proto::raft_serverpb::RaftLocalState;
use protobuf::Message as _;
use raft::eraftpb::Entry;
use rocksdb::DB;
use slog::Logger;
use util::{LogIndex, RegionId, Term};

use crate::config::RocksDbConfig;
use crate::db::open_db;
use crate::error::{engine_error, OpenError};
use crate::snapshot::RocksIterator;

/// Longest conflicting tail deleted key by key; longer ones get one range tombstone.
pub const TAIL_POINT_DELETES_MAX: u64 = 64;
/// Keys deleted per write by [`RaftEngine::gc`], bounding the size of each GC write.
pub const GC_KEYS_PER_WRITE_MAX: u64 = 4096;

/// Opens the raft engine at `path`, creating it if `create-if-missing` allows.
pub fn open_raft_engine(
    path: impl AsRef<Path>,
    cfg: &RocksDbConfig,
    logger: &Logger,
) -> std::result::Result<RocksRaftEngine, OpenError> {
    let db = open_db(path.as_ref(), cfg, &[CF_DEFAULT], |_, _| {}, "", "raft", logger)?.db;
    Ok(RocksRaftEngine { db })
}

/// The raft engine. Clones share one database.
#[derive(Clone)]
pub struct RocksRaftEngine {
    db: Arc<DB>,
}

impl fmt::Debug for RocksRaftEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksRaftEngine").field("path", &self.db.path()).finish()
    }
}

/// Many regions' appends and raft states, written by one [`RaftEngine::consume`].
pub struct RocksLogBatch {
    batch: rocksdb::WriteBatch,
    /// Reused buffer for encoding entries.
    scratch: Vec<u8>,
    cap_bytes: usize,
}

impl RocksLogBatch {
    fn delete_tail(&mut self, region_id: RegionId, after: LogIndex, through: LogIndex) {
        if through <= after {
            return;
        }
        if through.get() - after.get() <= TAIL_POINT_DELETES_MAX {
            for index in after.get() + 1..=through.get() {
                self.batch.delete(raft_log_key(region_id, LogIndex(index)));
            }
            return;
        }
        let start = raft_log_key(region_id, after.next());
        // `through + 1` may overflow; the raft state key bounds every log key of the region.
        match through.get().checked_add(1) {
            Some(end) => self.batch.delete_range(start, raft_log_key(region_id, LogIndex(end))),
            None => self.batch.delete_range(&start[..], &raft_state_key(region_id)[..]),
        }
    }
}

impl RaftLogBatch for RocksLogBatch {
    fn append(
        &mut self,
        region_id: RegionId,
        entries: &[Entry],
        overwrite_to: Option<LogIndex>,
    ) -> Result<()> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        assert_eq!(
            last.index - first.index + 1,
            entries.len() as u64,
            "region {region_id}: appended entries [{}, {}] are not consecutive",
            first.index,
            last.index
        );
        for (i, entry) in entries.iter().enumerate() {
            debug_assert_eq!(entry.index, first.index + i as u64, "region {region_id}");
            self.scratch.clear();
            entry.write_to_vec(&mut self.scratch).map_err(|e| Error::Codec {
                what: "eraftpb::Entry",
                key: raft_log_key(region_id, LogIndex(entry.index)).to_vec(),
                message: e.to_string(),
            })?;
            self.batch.put(raft_log_key(region_id, LogIndex(entry.index)), &self.scratch);
        }
        if let Some(through) = overwrite_to {
            self.delete_tail(region_id, LogIndex(last.index), through);
        }
        Ok(())
    }

    fn put_raft_state(&mut self, region_id: RegionId, state: &RaftLocalState) {
        self.batch.put(raft_state_key(region_id), state.encode_to_vec());
    }

    fn clean(&mut self, region_id: RegionId) {
        self.batch.delete_range(region_raft_prefix(region_id), region_raft_prefix_end(region_id));
    }

    fn count(&self) -> usize {
        self.batch.len()
    }

    fn data_size(&self) -> usize {
        self.batch.size_in_bytes()
    }

    fn clear(&mut self) {
        self.batch.clear();
    }
}

impl RocksRaftEngine {
    /// A forward iterator over exactly the region's log keys with index in `[low, high)`.
    fn log_iter(
        &self,
        region_id: RegionId,
        low: LogIndex,
        high: Option<LogIndex>,
    ) -> RocksIterator {
        let upper = match high {
            Some(high) => raft_log_key(region_id, high).to_vec(),
            None => raft_state_key(region_id).to_vec(),
        };
        let lower = raft_log_key(region_id, low).to_vec();
        RocksIterator::over_db(
            self.db.clone(),
            CF_DEFAULT,
            IterOptions::new(Some(lower), Some(upper)),
        )
    }

    fn write(&self, batch: rocksdb::WriteBatch, sync: bool, op: &'static str) -> Result<()> {
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(batch, &wo).map_err(|e| engine_error(op, e))
    }

    /// The error for a fetch that found no entry at `low`: compacted if the log starts above
    /// it, otherwise unavailable (the log ends below it) or, if the log spans it, a hole.
    fn missing_entry_error(&self, region_id: RegionId, low: LogIndex, high: LogIndex) -> Error {
        let first = match self.first_index(region_id) {
            Ok(first) => first,
            Err(e) => return e,
        };
        let last = match self.last_index(region_id) {
            Ok(last) => last,
            Err(e) => return e,
        };
        match (first, last) {
            (Some(first), Some(_)) if low < first => {
                Error::EntriesCompacted { region_id, low, first_index: first }
            }
            (Some(_), Some(last)) if low <= last => Error::Corrupted {
                what: format!(
                    "region {region_id}: raft log has no entry {low} inside [first, {last}]"
                ),
            },
            (_, last) => Error::EntriesUnavailable {
                region_id,
                low,
                high,
                last_index: last.unwrap_or(LogIndex(0)),
            },
        }
    }

    fn decode_entry(key: &[u8], value: &[u8]) -> Result<Entry> {
        let entry = Entry::parse_from_bytes(value).map_err(|e| Error::Codec {
            what: "eraftpb::Entry",
            key: key.to_vec(),
            message: e.to_string(),
        })?;
        let (region_id, index) = decode_raft_log_key(key)?;
        if entry.index != index.get() {
            return Err(Error::Corrupted {
                what: format!(
                    "region {region_id}: entry stored at index {index} says index {}",
                    entry.index
                ),
            });
        }
        Ok(entry)
    }

    /// The index of the log entry the iterator is on.
    fn current_index(it: &RocksIterator) -> Result<LogIndex> {
        Ok(decode_raft_log_key(it.key())?.1)
    }
}

impl RaftEngine for RocksRaftEngine {
    type LogBatch = RocksLogBatch;

    fn log_batch(&self, capacity_bytes: usize) -> RocksLogBatch {
        RocksLogBatch {
            batch: rocksdb::WriteBatch::with_capacity_bytes(capacity_bytes),
            scratch: Vec::new(),
            cap_bytes: capacity_bytes,
        }
    }

    fn consume(&self, batch: &mut RocksLogBatch, sync: bool) -> Result<usize> {
        let taken = std::mem::replace(
            &mut batch.batch,
            rocksdb::WriteBatch::with_capacity_bytes(batch.cap_bytes),
        );
        if taken.is_empty() {
            return Ok(0);
        }
        let bytes = taken.size_in_bytes();
        self.write(taken, sync, "consume raft log batch")?;
        Ok(bytes)
    }

    fn get_raft_state(&self, region_id: RegionId) -> Result<Option<RaftLocalState>> {
        let key = raft_state_key(region_id);
        let Some(value) = self.db.get(key).map_err(|e| engine_error("get raft state", e))? else {
            return Ok(None);
        };
        let state = RaftLocalState::decode(value.as_slice()).map_err(|e| Error::Codec {
            what: "RaftLocalState",
            key: key.to_vec(),
            message: e.to_string(),
        })?;
        Ok(Some(state))
    }

    fn get_entry(&self, region_id: RegionId, index: LogIndex) -> Result<Option<Entry>> {
        let key = raft_log_key(region_id, index);
        match self.db.get(key).map_err(|e| engine_error("get entry", e))? {
            Some(value) => Self::decode_entry(&key, &value).map(Some),
            None => Ok(None),
        }
    }

    fn term(&self, region_id: RegionId, index: LogIndex) -> Result<Option<Term>> {
        Ok(self.get_entry(region_id, index)?.map(|e| Term(e.term)))
    }

    fn fetch_entries_to(
        &self,
        region_id: RegionId,
        low: LogIndex,
        high: LogIndex,
        max_size_bytes: Option<u64>,
        buf: &mut Vec<Entry>,
    ) -> Result<usize> {
        assert!(low < high, "region {region_id}: fetch_entries_to with low {low} >= high {high}");
        let mut it = self.log_iter(region_id, low, Some(high));
        let (mut next, mut total_bytes, mut count) = (low, 0u64, 0usize);
        let mut valid = it.seek_to_first()?;
        while valid {
            if Self::current_index(&it)? != next {
                break;
            }
            let size = it.value().len() as u64;
            if count > 0 && max_size_bytes.is_some_and(|max| total_bytes + size > max) {
                return Ok(count);
            }
            buf.push(Self::decode_entry(it.key(), it.value())?);
            total_bytes += size;
            count += 1;
            next = next.next();
            valid = it.next()?;
        }
        if next == high {
            return Ok(count);
        }
        if count == 0 {
            return Err(self.missing_entry_error(region_id, low, high));
        }
        // Some entries were found but the scan stopped short of `high`: the log either ends
        // at `next - 1` or has a hole at `next`.
        match self.last_index(region_id)? {
            Some(last) if last >= next => Err(Error::Corrupted {
                what: format!("region {region_id}: raft log has a hole at index {next}"),
            }),
            last => Err(Error::EntriesUnavailable {
                region_id,
                low,
                high,
                last_index: last.unwrap_or(LogIndex(0)),
            }),
        }
    }

    fn first_index(&self, region_id: RegionId) -> Result<Option<LogIndex>> {
        let mut it = self.log_iter(region_id, LogIndex(0), None);
        if !it.seek_to_first()? {
            return Ok(None);
        }
        Self::current_index(&it).map(Some)
    }

    fn last_index(&self, region_id: RegionId) -> Result<Option<LogIndex>> {
        let mut it = self.log_iter(region_id, LogIndex(0), None);
        if !it.seek_to_last()? {
            return Ok(None);
        }
        Self::current_index(&it).map(Some)
    }

    fn gc(&self, region_id: RegionId, from: LogIndex, to: LogIndex) -> Result<u64> {
        let (Some(first), Some(last)) = (self.first_index(region_id)?, self.last_index(region_id)?)
        else {
            return Ok(0);
        };
        let start = from.max(first).get();
        let end = to.min(last.next()).get();
        if start >= end {
            return Ok(0);
        }
        let mut chunk_start = start;
        while chunk_start < end {
            let chunk_end = end.min(chunk_start + GC_KEYS_PER_WRITE_MAX);
            let mut batch = rocksdb::WriteBatch::default();
            for index in chunk_start..chunk_end {
                batch.delete(raft_log_key(region_id, LogIndex(index)));
            }
            self.write(batch, false, "raft log gc")?;
            chunk_start = chunk_end;
        }
        Ok(end - start)
    }

    fn clean(&self, region_id: RegionId) -> Result<()> {
        let mut batch = self.log_batch(0);
        batch.clean(region_id);
        self.consume(&mut batch, true).map(|_| ())
    }

    fn raft_groups(&self) -> Result<Vec<RegionId>> {
        let lower = region_raft_prefix(RegionId(0)).to_vec();
        let upper = region_raft_prefix_end(RegionId(u64::MAX)).to_vec();
        let mut it = RocksIterator::over_db(
            self.db.clone(),
            CF_DEFAULT,
            IterOptions::new(Some(lower.clone()), Some(upper)),
        );
        let mut regions = Vec::new();
        let mut valid = it.seek(&lower)?;
        while valid {
            let (region_id, _) = decode_region_raft_key(it.key())?;
            let state_key = raft_state_key(region_id);
            // Log keys sort before the state key (keys invariant 3): seek straight to it.
            if it.seek(&state_key)? && it.key() == state_key {
                regions.push(region_id);
            }
            if region_id.get() == u64::MAX {
                break;
            }
            valid = it.seek(&region_raft_prefix_end(region_id))?;
        }
        Ok(regions)
    }

    fn sync(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(|e| engine_error("sync wal", e))
    }
}
