//! Size estimates of a key range from RocksDB's own metadata, without reading data.
//!
//! Bytes: `GetApproximateSizes` with both flags, files and memtables. For SST files RocksDB
//! answers from index blocks, so the error is about one data block (~4KiB compressed) per file
//! touching the range boundaries, and it counts compressed bytes including not-yet-compacted
//! overwrites and tombstones. For memtables it estimates entries in the range from the skiplist
//! and multiplies by the average entry size. Expect tens of percent, not exactness.
//!
//! Keys: RocksDB keeps no per-range key count reachable from the C API, so keys are the CF's
//! `rocksdb.estimate-num-keys` scaled by the range's share of the CF's bytes. That assumes
//! entries of similar size across the CF; a range of unusually large values is credited too
//! many keys. Enough for split checks and PD heartbeats; TiKV's range-properties collector
//! would be the precise replacement.
//!
//! The safe rust-rocksdb API only offers the files-only estimate, so the files+memtable variant
//! is called through the C API; that call is the only `unsafe` in this crate.

use std::ffi::{c_char, c_void, CStr};
use std::ptr;

use engine_traits::{RangeStats, Result};
use librocksdb_sys as ffi;
use rocksdb::{AsColumnFamilyRef, AsRawPtr, ColumnFamily, DB};

use crate::error::engine_error;

/// A key above every key we store (all start with `0x01` or `b'z'`), closing the "whole CF"
/// range used to compute a range's share.
const WHOLE_CF_END: [u8; 16] = [0xff; 16];

/// Approximate bytes in `[start, end)` of `cf`, memtables included.
fn approximate_bytes(db: &DB, cf: &ColumnFamily, start: &[u8], end: &[u8]) -> Result<u64> {
    let flags = (ffi::rocksdb_size_approximation_flags_include_memtable
        | ffi::rocksdb_size_approximation_flags_include_files) as u8;
    let start_ptr = start.as_ptr() as *const c_char;
    let end_ptr = end.as_ptr() as *const c_char;
    let (start_len, end_len) = (start.len(), end.len());
    let mut size: u64 = 0;
    let mut err: *mut c_char = ptr::null_mut();
    // SAFETY: `db` and `cf` are borrowed for the whole call, so both handles are live; each key
    // array has one element pointing at a slice alive for the call with the matching length;
    // `size` has room for the one result; `err` is either left null or set to a string that
    // we own and free below.
    unsafe {
        ffi::rocksdb_approximate_sizes_cf_with_flags(
            db.as_raw_ptr(),
            cf.inner(),
            1,
            &start_ptr,
            &start_len,
            &end_ptr,
            &end_len,
            flags,
            &mut size,
            &mut err,
        );
    }
    if err.is_null() {
        return Ok(size);
    }
    // SAFETY: RocksDB set `err` to a NUL-terminated string allocated with malloc; we read it
    // once and release it with RocksDB's own free.
    let message = unsafe {
        let message = CStr::from_ptr(err).to_string_lossy().into_owned();
        ffi::rocksdb_free(err as *mut c_void);
        message
    };
    Err(engine_traits::Error::Engine { op: "approximate sizes", message })
}

/// See the module doc for what the numbers mean.
pub(crate) fn approximate_size_and_keys(
    db: &DB,
    cf: &ColumnFamily,
    start: &[u8],
    end: &[u8],
) -> Result<RangeStats> {
    if start >= end {
        return Ok(RangeStats::default());
    }
    let size_bytes = approximate_bytes(db, cf, start, end)?;
    let total_bytes = approximate_bytes(db, cf, &[], &WHOLE_CF_END)?;
    let total_keys = db
        .property_int_value_cf(cf, "rocksdb.estimate-num-keys")
        .map_err(|e| engine_error("property estimate-num-keys", e))?
        .unwrap_or(0);
    let keys = if total_bytes == 0 {
        0
    } else {
        let share = u128::from(size_bytes.min(total_bytes));
        (u128::from(total_keys) * share / u128::from(total_bytes)) as u64
    };
    Ok(RangeStats { size_bytes, keys })
}
