//! Removal of expired raw KV values from disk: a compaction filter on the data CFs of the KV
//! engine, plus RocksDB's periodic compaction so every SST file passes through the filter
//! regularly even when nothing is written.
//!
//! The value format belongs to `server::storage` (TiKV's API-V1TTL layout): `user value ++
//! expire_at`, `expire_at` a big-endian u64 of unix seconds, 0 = never. Reads there already treat
//! an expired value as absent, so removing one changes no answer; this module only reclaims the
//! space. It is opt-in ([`ValueFormat::RawTtl`]) because the engine cannot tell the format from
//! the bytes: the raftstore test cluster and PD's metadata store write opaque values, whose last
//! 8 bytes would be misread as an expiry.
//!
//! Invariants:
//! 1. Only data keys (first byte [`keys::DATA_PREFIX`]) in [`DATA_CFS`] are ever removed; local
//!    keys and [`engine_traits::CF_RAFT`] are never looked at.
//! 2. A value is removed only when `expire_at != 0 && expire_at <= now`, the exact complement of
//!    what `server::storage::live_value` calls live, with `now` read when the compaction starts
//!    (so it is never later than the clock of a read that runs after the removal). Values
//!    shorter than 8 bytes are malformed and kept, so a read still reports them.
//! 3. Removing a value never makes an older value of the same key visible again. This rests on
//!    RocksDB's semantics of `CompactionFilter::Decision::kRemove` (the only removal decision
//!    the rust crate exposes, as `Decision::Remove`), see [`RawTtlFilter`].
//!
//! Cost: the filter is a prefix check and an 8-byte read per key that a compaction rewrites
//! anyway. The periodic compaction is the expensive part: with `ttl-check-poll-interval = I`,
//! every SST file of the data CFs is rewritten about once per `I` (RocksDB picks files older than
//! `I`, spread over time by file age, within `max-background-jobs`), i.e. the whole data set is
//! read and written once per `I` on top of normal compaction. At the 12h default a 100 GiB store
//! rewrites ~2.4 MB/s on average. TiKV avoids most of that by recording min/max expiry per SST in
//! table properties and compacting only files holding expired data; the rust crate exposes no
//! table-properties collector, so we pay the full rewrite until we add one through the C API.

use std::ffi::CStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use engine_traits::DATA_CFS;
use rocksdb::compaction_filter::{CompactionFilter, Decision};
use rocksdb::compaction_filter_factory::{CompactionFilterContext, CompactionFilterFactory};
use rocksdb::Options;

/// Length of the expiry suffix of a raw TTL value.
const EXPIRE_AT_LEN: usize = 8;

/// What the KV engine may assume about the values in its data CFs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueFormat {
    /// Opaque bytes: compaction never looks at values. For stores of anything but raw KV with
    /// TTL (the raftstore test cluster, PD's metadata store).
    Opaque,
    /// Raw KV with TTL (API V1TTL, see the module docs): compaction removes expired values, and
    /// every SST file of the data CFs is recompacted at most about `ttl_check_poll_interval`
    /// after it was written, so an expired value leaves the disk within about that long after
    /// it expires even without writes. `Duration::ZERO` turns the periodic recompaction off
    /// (expired values then go only when normal compaction happens to rewrite them); a
    /// sub-second interval counts as one second.
    RawTtl { ttl_check_poll_interval: Duration },
}

/// Adds what `format` needs to the options of CF `cf` of the KV engine.
pub(crate) fn tune_cf_options(format: ValueFormat, cf: &str, opts: &mut Options) {
    match format {
        ValueFormat::Opaque => {}
        ValueFormat::RawTtl { ttl_check_poll_interval } => {
            if !DATA_CFS.contains(&cf) {
                return;
            }
            opts.set_compaction_filter_factory(RawTtlFilterFactory);
            // Periodic compaction is RocksDB's own answer to "make every file go through the
            // compaction filter regularly". It needs no thread of ours, survives restarts (a
            // file's age is its creation time, kept in its properties, where a timer would
            // restart from zero with the process), and RocksDB wakes up to schedule it even
            // when nothing is written (its `TriggerPeriodicCompaction` task runs at least every
            // fifth of the interval). 0 disables it; without an explicit value RocksDB would
            // default to 30 days because a compaction filter is set.
            let secs = if ttl_check_poll_interval.is_zero() {
                0
            } else {
                ttl_check_poll_interval.as_secs().max(1)
            };
            opts.set_periodic_compaction_seconds(secs);
        }
    }
}

/// The expiry of a raw TTL value; `None` if it is too short to carry one.
fn expire_at(value: &[u8]) -> Option<u64> {
    let start = value.len().checked_sub(EXPIRE_AT_LEN)?;
    let suffix: [u8; EXPIRE_AT_LEN] = value[start..].try_into().ok()?;
    Some(u64::from_be_bytes(suffix))
}

/// Seconds since the unix epoch; 0 if the clock is before it, which expires nothing.
fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Whether compaction may drop `key` => `value` at `now_secs` (invariants 1 and 2).
fn is_expired_data(key: &[u8], value: &[u8], now_secs: u64) -> bool {
    key.first() == Some(&keys::DATA_PREFIX)
        && matches!(expire_at(value), Some(at) if at != 0 && at <= now_secs)
}

/// Makes one [`RawTtlFilter`] per (sub)compaction, each with the time the compaction started.
struct RawTtlFilterFactory;

impl CompactionFilterFactory for RawTtlFilterFactory {
    type Filter = RawTtlFilter;

    fn create(&mut self, _context: CompactionFilterContext) -> RawTtlFilter {
        RawTtlFilter { now_secs: now_secs() }
    }

    fn name(&self) -> &CStr {
        c"regionstore.raw-ttl-filter-factory"
    }
}

/// Removes expired raw values (see the module invariants).
///
/// Why removing at any level is safe (invariant 3). RocksDB calls a filter only for the newest
/// committed version of each user key among a compaction's inputs, and turns `kRemove` of a
/// plain value into a *deletion tombstone with the value's sequence number*
/// (`CompactionIterator::InvokeFilterIfNeeded`; `compaction_filter.h`: "converted to a
/// tombstone (Delete), resulting in the deletion of any earlier versions of the key"). So:
/// 1. An older version of the key in the same compaction and the same snapshot stripe is
///    hidden by the tombstone and dropped with it.
/// 2. An older version in a lower level, outside this compaction, stays on disk but is
///    shadowed by the tombstone, which compaction keeps while the key may exist below its
///    output level (`KeyNotExistsBeyondOutputLevel`) and drops only at the bottom, where it
///    meets and deletes that older version.
/// 3. An older version kept for a RocksDB snapshot taken before the newer write is visible to
///    that snapshot only, exactly as without the filter.
///
/// A filter may therefore run at every level and needs no bottommost-only restriction (which
/// the rust crate could not express anyway: its context says only full/manual, and the `level`
/// argument is the compaction's input level). The decisions that *would* resurrect older
/// versions are `kRemoveAndSkipUntil` (drops without tombstones) and `kPurge` (a SingleDelete,
/// undefined over several puts); the crate exposes neither and we must not add them.
///
/// The filter ignores snapshots (RocksDB always does now): a value expired at compaction time
/// may vanish from an open RocksDB snapshot. Reads through such a snapshot check expiry against
/// a clock no earlier than the filter's, so they would not have returned it either.
struct RawTtlFilter {
    now_secs: u64,
}

impl CompactionFilter for RawTtlFilter {
    fn filter(&mut self, _level: u32, key: &[u8], value: &[u8]) -> Decision {
        if is_expired_data(key, value, self.now_secs) {
            Decision::Remove
        } else {
            Decision::Keep
        }
    }

    fn name(&self) -> &CStr {
        c"regionstore.raw-ttl-filter"
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use engine_traits::{KvEngine, Mutable, Peekable, WriteOptions, ALL_CFS};
    use engine_traits::{CF_DEFAULT, CF_LOCK, CF_RAFT, CF_WRITE};
    use rocksdb::{BottommostLevelCompaction, ColumnFamilyDescriptor, CompactOptions, DB};
    use slog::{o, Discard, Logger};
    use tempfile::TempDir;
    use util::config::ReadableSize;

    use super::*;
    use crate::{open_kv_engine, open_kv_engine_with_format, RocksDbConfig, RocksEngine};

    const HOUR: Duration = Duration::from_secs(3600);

    fn logger() -> Logger {
        Logger::root(Discard, o!())
    }

    fn small_config() -> RocksDbConfig {
        RocksDbConfig {
            block_cache_size: ReadableSize::mib(8),
            write_buffer_size: ReadableSize::mib(4),
            ..RocksDbConfig::default()
        }
    }

    /// `user` with the expiry suffix, as `server::storage::encode_value` lays it out.
    fn raw(user: &[u8], expire_at: u64) -> Vec<u8> {
        let mut v = user.to_vec();
        v.extend_from_slice(&expire_at.to_be_bytes());
        v
    }

    /// Expired since 1970 (a fixed value, so tests can compare it after the clock moves).
    fn expired(user: &[u8]) -> Vec<u8> {
        raw(user, 1)
    }

    fn put(engine: &RocksEngine, cf: &str, key: &[u8], value: &[u8]) {
        let mut wb = engine.write_batch();
        wb.put_cf(cf, key, value);
        engine.write(&mut wb, &WriteOptions::default()).unwrap();
    }

    /// A manual compaction of every CF over the whole key space, bottommost level included.
    fn compact_all(db: &DB, cfs: &[&str]) {
        let mut opts = CompactOptions::default();
        opts.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
        for cf in cfs {
            db.compact_range_cf_opt(db.cf_handle(cf).unwrap(), None::<&[u8]>, None::<&[u8]>, &opts);
        }
    }

    fn files_at_level(db: &DB, cf: &str, level: usize) -> u64 {
        let name = format!("rocksdb.num-files-at-level{level}");
        db.property_int_value_cf(db.cf_handle(cf).unwrap(), name.as_str()).unwrap().unwrap()
    }

    #[test]
    fn expiry_is_the_complement_of_live() {
        let now = 1_000;
        assert!(is_expired_data(b"zk", &raw(b"v", now), now), "expired at its deadline");
        assert!(is_expired_data(b"zk", &raw(b"", 1), now));
        assert!(!is_expired_data(b"zk", &raw(b"v", now + 1), now));
        assert!(!is_expired_data(b"zk", &raw(b"v", 0), now), "0 never expires");
        assert!(!is_expired_data(b"zk", b"short", now), "malformed values are kept");
        assert!(!is_expired_data(b"\x01\x02k", &raw(b"v", 1), now), "local keys are kept");
        assert!(!is_expired_data(b"", &raw(b"v", 1), now));
        assert_eq!(expire_at(&[0, 0, 0, 0, 0, 0, 1, 2]), Some(0x102), "big endian");
    }

    #[test]
    fn compaction_removes_only_expired_data_values() {
        let dir = TempDir::new().unwrap();
        let format = ValueFormat::RawTtl { ttl_check_poll_interval: HOUR };
        let engine =
            open_kv_engine_with_format(dir.path(), &small_config(), format, &logger()).unwrap();
        let later = raw(b"later", now_secs() + 3600);
        let forever = raw(b"forever", 0);
        for cf in DATA_CFS {
            put(&engine, cf, b"zexpired", &expired(b"gone"));
            put(&engine, cf, b"zlater", &later);
            put(&engine, cf, b"zforever", &forever);
            put(&engine, cf, b"zshort", b"abc");
            put(&engine, cf, b"\x01local", &expired(b"meta"));
        }
        put(&engine, CF_RAFT, b"zin-raft-cf", &expired(b"state"));
        for cf in ALL_CFS {
            engine.flush_cf(cf).unwrap();
        }
        compact_all(&engine.db, ALL_CFS);

        for cf in DATA_CFS {
            assert_eq!(engine.get_value_cf(cf, b"zexpired").unwrap(), None, "{cf}");
            assert_eq!(engine.get_value_cf(cf, b"zlater").unwrap(), Some(later.clone()), "{cf}");
            assert_eq!(engine.get_value_cf(cf, b"zforever").unwrap(), Some(forever.clone()));
            assert_eq!(engine.get_value_cf(cf, b"zshort").unwrap(), Some(b"abc".to_vec()));
            assert_eq!(engine.get_value_cf(cf, b"\x01local").unwrap(), Some(expired(b"meta")));
        }
        assert_eq!(engine.get_value_cf(CF_RAFT, b"zin-raft-cf").unwrap(), Some(expired(b"state")));
    }

    #[test]
    fn opaque_engines_never_filter() {
        let dir = TempDir::new().unwrap();
        let engine = open_kv_engine(dir.path(), &small_config(), &logger()).unwrap();
        put(&engine, CF_DEFAULT, b"zk", &expired(b"looks expired"));
        engine.flush_cf(CF_DEFAULT).unwrap();
        compact_all(&engine.db, &[CF_DEFAULT]);
        assert_eq!(
            engine.get_value_cf(CF_DEFAULT, b"zk").unwrap(),
            Some(expired(b"looks expired"))
        );
    }

    /// Opens a bare DB with the KV engine's default-CF options and the raw TTL filter, with
    /// `dynamic` level sizing (the engine's setting) or not.
    fn open_filtered(dir: &TempDir, dynamic: bool) -> Arc<DB> {
        let cfg = small_config();
        let mut cf_opts = cfg.cf_options(&cfg.block_cache());
        cf_opts.set_level_compaction_dynamic_level_bytes(dynamic);
        cf_opts.set_disable_auto_compactions(true);
        let format = ValueFormat::RawTtl { ttl_check_poll_interval: Duration::ZERO };
        tune_cf_options(format, CF_DEFAULT, &mut cf_opts);
        let cfs = [ColumnFamilyDescriptor::new(CF_DEFAULT, cf_opts)];
        Arc::new(DB::open_cf_descriptors(&cfg.db_options(), dir.path(), cfs).unwrap())
    }

    /// The scenario a filter that silently dropped values would get wrong:
    /// 1. `zk = old` (no TTL) is flushed and moved to the bottom level, L6.
    /// 2. A RocksDB snapshot is taken; then `zk = new` (expired) is written and flushed to L0.
    /// 3. A full manual compaction runs. Without dynamic level sizing it goes level by level, so
    ///    the filter sees `new` in the L0->L1 step while `old` sits in L6, outside that
    ///    compaction; with dynamic sizing L0 goes straight to L6 and both meet in one
    ///    compaction, where the snapshot keeps `old` in its own stripe.
    /// Either way `old` survives on disk (the snapshot still reads it) but the latest view must
    /// find `zk` absent. Once the snapshot is released, another compaction removes both.
    #[test]
    fn removing_an_expired_value_never_resurrects_an_older_one() {
        for dynamic in [false, true] {
            let dir = TempDir::new().unwrap();
            let db = open_filtered(&dir, dynamic);
            let cf = db.cf_handle(CF_DEFAULT).unwrap();
            let old = raw(b"old", 0);
            db.put_cf(cf, b"zk", &old).unwrap();
            db.flush_cf(cf).unwrap();
            let mut to_bottom = CompactOptions::default();
            to_bottom.set_change_level(true);
            to_bottom.set_target_level(6);
            db.compact_range_cf_opt(cf, None::<&[u8]>, None::<&[u8]>, &to_bottom);
            assert_eq!(files_at_level(&db, CF_DEFAULT, 6), 1, "dynamic = {dynamic}");

            let snap = db.snapshot();
            db.put_cf(cf, b"zk", expired(b"new")).unwrap();
            db.flush_cf(cf).unwrap();
            assert_eq!(files_at_level(&db, CF_DEFAULT, 0), 1);
            compact_all(&db, &[CF_DEFAULT]);
            assert_eq!(db.get_cf(cf, b"zk").unwrap(), None, "resurrected, dynamic = {dynamic}");
            assert_eq!(snap.get_cf(cf, b"zk").unwrap(), Some(old.clone()), "snapshot view lost");

            drop(snap);
            compact_all(&db, &[CF_DEFAULT]);
            assert_eq!(db.get_cf(cf, b"zk").unwrap(), None, "resurrected, dynamic = {dynamic}");
            let live_files: u64 = (0..7).map(|l| files_at_level(&db, CF_DEFAULT, l)).sum();
            assert_eq!(live_files, 0, "both versions and the tombstone are gone");
        }
    }

    /// Without any write or manual compaction, RocksDB's periodic compaction alone brings an
    /// expired value through the filter.
    #[test]
    fn periodic_compaction_removes_expired_values_without_traffic() {
        let dir = TempDir::new().unwrap();
        let format = ValueFormat::RawTtl { ttl_check_poll_interval: Duration::from_secs(1) };
        let engine =
            open_kv_engine_with_format(dir.path(), &small_config(), format, &logger()).unwrap();
        let keep = raw(b"keep", 0);
        put(&engine, CF_WRITE, b"zexpired", &expired(b"gone"));
        put(&engine, CF_WRITE, b"zkeep", &keep);
        put(&engine, CF_LOCK, b"zexpired", &expired(b"gone"));
        engine.flush_cf(CF_WRITE).unwrap();
        engine.flush_cf(CF_LOCK).unwrap();
        util::wait::wait_for("periodic compaction", Duration::from_secs(60), || {
            (engine.get_value_cf(CF_WRITE, b"zexpired").unwrap().is_none()
                && engine.get_value_cf(CF_LOCK, b"zexpired").unwrap().is_none())
            .then_some(())
        });
        assert_eq!(engine.get_value_cf(CF_WRITE, b"zkeep").unwrap(), Some(keep));
    }
}
