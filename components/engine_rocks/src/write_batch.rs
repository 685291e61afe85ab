//! [`RocksWriteBatch`]: a RocksDB `WriteBatch` plus the CF lookup and save points the
//! `engine_traits::WriteBatch` contract needs.
//!
//! rust-rocksdb 0.25 exposes no save points, so they are implemented here the way RocksDB
//! implements them internally: a save point records the batch's encoded length and count, and
//! rolling back truncates the encoded batch to that length and restores the count in its
//! header. The encoding is RocksDB's WAL record format, which is stable (old WALs must stay
//! readable): a 12-byte header (8-byte sequence, 4-byte little-endian count) followed by the
//! records, each appended whole. A rollback costs one copy of the kept prefix; it only happens
//! when a command fails to apply.

use std::sync::Arc;

use engine_traits::{Mutable, WriteBatch};
use rocksdb::DB;

use crate::snapshot::cf_handle;

/// Bytes of the RocksDB write batch header (sequence number + count).
const HEADER_LEN: usize = 12;
/// Offset of the little-endian u32 record count in the header.
const COUNT_OFFSET: usize = 8;

#[derive(Debug, Clone, Copy)]
struct SavePoint {
    data_len: usize,
    count: u32,
}

/// A write batch for [`crate::RocksEngine`].
pub struct RocksWriteBatch {
    db: Arc<DB>,
    batch: rocksdb::WriteBatch,
    save_points: Vec<SavePoint>,
    cap_bytes: usize,
}

impl RocksWriteBatch {
    pub(crate) fn new(db: Arc<DB>, cap_bytes: usize) -> RocksWriteBatch {
        RocksWriteBatch {
            db,
            batch: rocksdb::WriteBatch::with_capacity_bytes(cap_bytes),
            save_points: Vec::new(),
            cap_bytes,
        }
    }

    /// Hands the buffered batch over for writing and leaves this one empty.
    pub(crate) fn take(&mut self) -> rocksdb::WriteBatch {
        self.save_points.clear();
        std::mem::replace(&mut self.batch, rocksdb::WriteBatch::with_capacity_bytes(self.cap_bytes))
    }
}

impl Mutable for RocksWriteBatch {
    fn put_cf(&mut self, cf: &str, key: &[u8], value: &[u8]) {
        self.batch.put_cf(cf_handle(&self.db, cf), key, value);
    }

    fn delete_cf(&mut self, cf: &str, key: &[u8]) {
        self.batch.delete_cf(cf_handle(&self.db, cf), key);
    }

    fn delete_range_cf(&mut self, cf: &str, start: &[u8], end: &[u8]) {
        self.batch.delete_range_cf(cf_handle(&self.db, cf), start, end);
    }
}

impl WriteBatch for RocksWriteBatch {
    fn count(&self) -> usize {
        self.batch.len()
    }

    fn data_size(&self) -> usize {
        self.batch.size_in_bytes()
    }

    fn clear(&mut self) {
        self.batch.clear();
        self.save_points.clear();
    }

    fn set_save_point(&mut self) {
        let count = u32::try_from(self.batch.len()).expect("write batch count exceeds u32");
        self.save_points.push(SavePoint { data_len: self.batch.size_in_bytes(), count });
    }

    fn pop_save_point(&mut self) {
        self.save_points.pop().expect("pop_save_point without a save point");
    }

    fn rollback_to_save_point(&mut self) {
        let sp = self.save_points.pop().expect("rollback_to_save_point without a save point");
        let data = self.batch.data();
        assert!(
            data.len() >= sp.data_len && sp.data_len >= HEADER_LEN,
            "write batch shrank below a save point: {} < {}",
            data.len(),
            sp.data_len
        );
        let mut kept = data[..sp.data_len].to_vec();
        kept[COUNT_OFFSET..HEADER_LEN].copy_from_slice(&sp.count.to_le_bytes());
        self.batch = rocksdb::WriteBatch::from_data(&kept);
        debug_assert_eq!(self.batch.len(), sp.count as usize);
    }
}
