//! The snapshot file layer against real RocksDB engines in temporary directories: build on one
//! store, move chunk by chunk to another store's manager, apply there.

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, SystemTime};

use engine_rocks::{open_kv_engine, RocksDbConfig, RocksEngine};
use engine_traits::{
    Iterable, KvEngine, Mutable, WriteOptions, CF_DEFAULT, CF_LOCK, CF_RAFT, CF_WRITE, DATA_CFS,
};
use proto::metapb::Region;
use proto::raft_serverpb::SnapshotMeta;
use slog::{o, Discard, Logger};
use tempfile::TempDir;
use util::config::{ReadableDuration, ReadableSize};
use util::{LogIndex, RegionId, Term};

use super::{Error, Side, SnapKey, SnapManager};
use crate::config::Config;

/// One store's half of a test: a KV engine and a snapshot manager, each in its own temp dir.
struct Store {
    kv: RocksEngine,
    mgr: SnapManager,
    _dirs: (TempDir, TempDir),
}

fn config() -> Config {
    Config {
        // Tiny limits, so the busy paths run.
        concurrent_send_snap_limit: 2,
        concurrent_recv_snap_limit: 2,
        snap_io_max_bytes_per_sec: ReadableSize(0),
        ..Config::default()
    }
}

fn store_with(cfg: &Config) -> Store {
    let (db_dir, snap_dir) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let logger = Logger::root(Discard, o!());
    let rocks = RocksDbConfig {
        block_cache_size: ReadableSize::mib(8),
        write_buffer_size: ReadableSize::mib(4),
        ..RocksDbConfig::default()
    };
    let kv = open_kv_engine(db_dir.path(), &rocks, &logger).unwrap();
    let mgr =
        SnapManager::new(snap_dir.path().join("snap"), cfg, RocksEngine::sst_key_range, logger)
            .unwrap();
    Store { kv, mgr, _dirs: (db_dir, snap_dir) }
}

fn store() -> Store {
    store_with(&config())
}

fn key(index: u64) -> SnapKey {
    SnapKey { region_id: RegionId(1), term: Term(5), index: LogIndex(index) }
}

/// Region 1 over user keys `[b, m)`.
fn region() -> Region {
    Region { id: 1, start_key: b"b".to_vec(), end_key: b"m".to_vec(), ..Default::default() }
}

fn put(kv: &RocksEngine, cf: &str, user_key: &str, value: impl AsRef<[u8]>) {
    let mut wb = kv.write_batch();
    wb.put_cf(cf, &keys::data_key(user_key.as_bytes()), value.as_ref());
    kv.write(&mut wb, &WriteOptions::default()).unwrap();
}

type Dump = BTreeMap<(&'static str, Vec<u8>), Vec<u8>>;

/// Every key of every CF (data and local), for comparing whole engines.
fn dump(kv: &RocksEngine) -> Dump {
    let mut out = BTreeMap::new();
    for cf in [CF_DEFAULT, CF_LOCK, CF_WRITE, CF_RAFT] {
        kv.scan(cf, &[], &[0xff], true, |k, v| {
            out.insert((cf, k.to_vec()), v.to_vec());
            Ok(true)
        })
        .unwrap();
    }
    out
}

/// `(inside the region, outside it)` of a dump; local keys count as outside.
fn split(d: &Dump) -> (Dump, Dump) {
    let (start, end) = (keys::data_key(b"b"), keys::data_key(b"m"));
    d.clone().into_iter().partition(|((cf, k), _)| *cf != CF_RAFT && *k >= start && *k < end)
}

/// Source data in every data CF, inside and outside the region.
fn fill_source(kv: &RocksEngine) {
    for cf in DATA_CFS {
        for k in ["a", "b", "c1", "c2", "k", "lz", "m", "n", "zz"] {
            put(kv, cf, k, format!("src {cf} {k}"));
        }
    }
    kv.flush_cf(CF_DEFAULT).unwrap(); // Some of it in SSTs, some in memtables.
    put(kv, CF_DEFAULT, "d", "src default d");
}

/// Stale data inside the region and live data outside it, in every data CF, plus local keys.
fn fill_target(kv: &RocksEngine) {
    for cf in DATA_CFS {
        for k in ["a", "b", "c1", "stale", "l", "m", "q"] {
            put(kv, cf, k, format!("tgt {cf} {k}"));
        }
    }
    kv.flush_cf(CF_WRITE).unwrap();
    let mut wb = kv.write_batch();
    wb.put_cf(CF_RAFT, &keys::region_state_key(RegionId(1)), b"state");
    kv.write(&mut wb, &WriteOptions::default()).unwrap();
}

/// Sends snapshot `key` from `from` to `to` in chunks of `chunk_bytes`; returns the chunks'
/// lengths.
fn transfer(
    from: &Store,
    to: &Store,
    key: SnapKey,
    meta: &SnapshotMeta,
    chunk_bytes: usize,
) -> Vec<usize> {
    let mut receiver = to.mgr.receiver(key, meta, &region()).unwrap();
    let mut lens = Vec::new();
    for chunk in from.mgr.reader(key, chunk_bytes).unwrap() {
        let chunk = chunk.unwrap();
        lens.push(chunk.len());
        receiver.write(&chunk).unwrap();
    }
    receiver.finish().unwrap();
    lens
}

/// All chunks of a generated snapshot.
fn chunks(store: &Store, key: SnapKey, chunk_bytes: usize) -> Vec<Vec<u8>> {
    store.mgr.reader(key, chunk_bytes).unwrap().map(|c| c.unwrap()).collect()
}

/// Bytes of every file in the manager's directory.
fn dir_bytes(mgr: &SnapManager) -> u64 {
    fs::read_dir(mgr.dir()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
}

fn files(mgr: &SnapManager) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(mgr.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_snapshot_moves_a_region_exactly_and_leaves_the_rest_alone() {
    let (src, dst) = (store(), store());
    fill_source(&src.kv);
    fill_target(&dst.kv);
    let snap = src.kv.snapshot();
    put(&src.kv, CF_LOCK, "c3", "written after the snapshot");
    let before = dump(&dst.kv);

    let generated = src.mgr.build(&src.kv, &snap, &region(), key(10)).unwrap();
    let cfs: Vec<_> = generated.meta.cf_files.iter().map(|f| f.cf.as_str()).collect();
    assert_eq!(cfs, DATA_CFS);
    assert_eq!(generated.keys, 3 * 5 + 1, "b c1 c2 k lz in each CF, d in default");
    let size: u64 = generated.meta.cf_files.iter().map(|f| f.size).sum();
    assert_eq!(generated.size_bytes, size);
    assert!(src.mgr.exists(key(10), Side::Gen));
    assert_eq!(src.mgr.load_meta(key(10), Side::Gen).unwrap(), generated.meta);

    let lens = transfer(&src, &dst, key(10), &generated.meta, 100);
    assert!(lens.len() > 3 && lens.iter().all(|&n| n > 0 && n <= 100), "{lens:?}");
    assert!(dst.mgr.exists(key(10), Side::Rev));
    dst.mgr.apply(&dst.kv, &region(), key(10), &generated.meta).unwrap();

    let (mut src_in_at_snapshot, _) = split(&dump(&src.kv));
    src_in_at_snapshot.remove(&(CF_LOCK, keys::data_key(b"c3")));
    let (dst_in, dst_out) = split(&dump(&dst.kv));
    let (_, before_out) = split(&before);
    assert_eq!(dst_in, src_in_at_snapshot, "the range equals the source's at the snapshot");
    assert_eq!(dst_out, before_out, "outside the range nothing changed");

    // Applying again (a restart in `Applying`) gives the same engine.
    let applied = dump(&dst.kv);
    dst.mgr.apply(&dst.kv, &region(), key(10), &generated.meta).unwrap();
    assert_eq!(dump(&dst.kv), applied);

    // Once the region is Normal the received files go; the sender's go when done.
    let on_disk = dir_bytes(&dst.mgr);
    let deleted = dst.mgr.delete(key(10), Side::Rev).unwrap();
    assert_eq!(deleted.files, 4, "three CF files and the meta");
    assert_eq!(deleted.bytes, on_disk);
    assert!(files(&dst.mgr).is_empty(), "{:?}", files(&dst.mgr));
    assert_eq!(dump(&dst.kv), applied, "ingested data does not depend on the received files");
    src.mgr.delete(key(10), Side::Gen).unwrap();
    assert!(files(&src.mgr).is_empty(), "{:?}", files(&src.mgr));
}

#[test]
fn a_flipped_byte_is_corrupted_and_leaves_no_file() {
    let (src, dst) = (store(), store());
    fill_source(&src.kv);
    let generated = src.mgr.build(&src.kv, &src.kv.snapshot(), &region(), key(10)).unwrap();
    let mut data = chunks(&src, key(10), 64);
    let middle = data.len() / 2;
    data[middle][10] ^= 0x40;

    let mut receiver = dst.mgr.receiver(key(10), &generated.meta, &region()).unwrap();
    for chunk in &data {
        receiver.write(chunk).unwrap();
    }
    let err = receiver.finish().unwrap_err();
    assert!(matches!(err, Error::Corrupted { .. }), "{err}");
    assert!(files(&dst.mgr).is_empty(), "{:?}", files(&dst.mgr));
    assert!(!dst.mgr.exists(key(10), Side::Rev));
    // The slot was released: the snapshot can be received again, correctly this time.
    transfer(&src, &dst, key(10), &generated.meta, 1 << 20);
}

#[test]
fn files_with_keys_outside_the_region_are_refused_and_leave_no_file() {
    // Intact files (sizes and checksums right) of `[b, m)`, offered as a snapshot of the
    // narrower `[c, k)`: ingesting them would overwrite keys another region owns.
    let (src, dst) = (store(), store());
    fill_source(&src.kv);
    let generated = src.mgr.build(&src.kv, &src.kv.snapshot(), &region(), key(10)).unwrap();
    let narrower = Region { start_key: b"c".to_vec(), end_key: b"k".to_vec(), ..region() };
    let mut receiver = dst.mgr.receiver(key(10), &generated.meta, &narrower).unwrap();
    for chunk in chunks(&src, key(10), 1 << 20) {
        receiver.write(&chunk).unwrap();
    }
    let err = receiver.finish().unwrap_err();
    assert!(
        matches!(&err, Error::Corrupted { reason, .. } if reason.contains("outside the region")),
        "{err}"
    );
    assert!(files(&dst.mgr).is_empty(), "{:?}", files(&dst.mgr));
    assert!(!dst.mgr.exists(key(10), Side::Rev));
    // The region the files were built for takes them.
    transfer(&src, &dst, key(10), &generated.meta, 1 << 20);
}

#[test]
fn a_rotten_generated_file_ends_the_stream_with_corrupted() {
    let src = store();
    fill_source(&src.kv);
    src.mgr.build(&src.kv, &src.kv.snapshot(), &region(), key(10)).unwrap();
    let path = src.mgr.dir().join("gen_1_5_10_lock.sst");
    let mut bytes = fs::read(&path).unwrap();
    bytes[3] ^= 1;
    fs::write(&path, bytes).unwrap();

    let results: Vec<_> = src.mgr.reader(key(10), 1 << 20).unwrap().collect();
    assert_eq!(results.len(), 2, "default's chunk, then the error in place of lock's");
    assert!(results[0].is_ok());
    assert!(matches!(&results[1], Err(Error::Corrupted { path: p, .. }) if *p == path));

    fs::write(&path, b"short").unwrap();
    let mut reader = src.mgr.reader(key(10), 1 << 20).unwrap();
    assert!(reader.next().unwrap().is_ok());
    assert!(matches!(reader.next(), Some(Err(Error::Corrupted { .. }))));
    assert!(reader.next().is_none(), "a reader ends after an error");
}

#[test]
fn bytes_beyond_the_declared_sizes_are_refused_and_never_written() {
    let (src, dst) = (store(), store());
    fill_source(&src.kv);
    let generated = src.mgr.build(&src.kv, &src.kv.snapshot(), &region(), key(10)).unwrap();
    let declared = generated.size_bytes;
    let mut stream: Vec<u8> = chunks(&src, key(10), 1 << 20).concat();
    stream.extend_from_slice(&[7; 1000]);

    let mut receiver = dst.mgr.receiver(key(10), &generated.meta, &region()).unwrap();
    match receiver.write(&stream) {
        Err(Error::TooLarge { declared_bytes, received_bytes, .. }) => {
            assert_eq!((declared_bytes, received_bytes), (declared, declared + 1000));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(dir_bytes(&dst.mgr), declared, "nothing past the declared sizes was written");
    assert!(matches!(receiver.write(&[1]), Err(Error::TooLarge { .. })));
    drop(receiver);
    assert!(files(&dst.mgr).is_empty(), "{:?}", files(&dst.mgr));

    // A hostile meta naming a CF that is not a data CF is refused before anything is written.
    let mut hostile = generated.meta.clone();
    hostile.cf_files[0].cf = CF_RAFT.to_owned();
    assert!(matches!(dst.mgr.receiver(key(10), &hostile, &region()), Err(Error::Corrupted { .. })));
}

#[test]
fn a_stream_that_ends_early_is_corrupted() {
    let (src, dst) = (store(), store());
    fill_source(&src.kv);
    let generated = src.mgr.build(&src.kv, &src.kv.snapshot(), &region(), key(10)).unwrap();
    let data = chunks(&src, key(10), 50);
    let mut receiver = dst.mgr.receiver(key(10), &generated.meta, &region()).unwrap();
    for chunk in &data[..data.len() - 1] {
        receiver.write(chunk).unwrap();
    }
    assert!(matches!(receiver.finish(), Err(Error::Corrupted { .. })));
    assert!(files(&dst.mgr).is_empty(), "{:?}", files(&dst.mgr));
}

#[test]
fn dropping_an_unfinished_receiver_deletes_its_files() {
    let (src, dst) = (store(), store());
    fill_source(&src.kv);
    let generated = src.mgr.build(&src.kv, &src.kv.snapshot(), &region(), key(10)).unwrap();
    let data = chunks(&src, key(10), 50);
    let mut receiver = dst.mgr.receiver(key(10), &generated.meta, &region()).unwrap();
    for chunk in &data[..data.len() / 2] {
        receiver.write(chunk).unwrap();
    }
    assert!(!files(&dst.mgr).is_empty());
    drop(receiver);
    assert!(files(&dst.mgr).is_empty(), "{:?}", files(&dst.mgr));
}

#[test]
fn concurrency_limits_answer_busy_and_a_dropped_transfer_frees_its_slot() {
    let (src, dst) = (store(), store());
    let meta = SnapshotMeta::default();
    let r1 = dst.mgr.receiver(key(1), &meta, &region()).unwrap();
    let _r2 = dst.mgr.receiver(key(2), &meta, &region()).unwrap();
    match dst.mgr.receiver(key(3), &meta, &region()) {
        Err(Error::Busy { side: Side::Rev, limit: 2 }) => {}
        other => panic!("expected Busy, got {other:?}"),
    }
    drop(r1);
    let r3 = dst.mgr.receiver(key(3), &meta, &region()).unwrap();
    assert!(matches!(dst.mgr.receiver(key(3), &meta, &region()), Err(Error::InUse { .. })));
    r3.finish().unwrap();
    assert!(matches!(dst.mgr.receiver(key(3), &meta, &region()), Err(Error::Exists { .. })));
    assert!(matches!(dst.mgr.apply(&dst.kv, &region(), key(2), &meta), Err(Error::InUse { .. })));

    fill_source(&src.kv);
    src.mgr.build(&src.kv, &src.kv.snapshot(), &region(), key(10)).unwrap();
    let a = src.mgr.reader(key(10), 10).unwrap();
    let _b = src.mgr.reader(key(10), 10).unwrap(); // Readers share a snapshot.
    match src.mgr.reader(key(10), 10) {
        Err(Error::Busy { side: Side::Gen, limit: 2 }) => {}
        other => panic!("expected Busy, got {other:?}"),
    }
    assert!(matches!(src.mgr.delete(key(10), Side::Gen), Err(Error::InUse { .. })));
    let snap = src.kv.snapshot();
    assert!(matches!(src.mgr.build(&src.kv, &snap, &region(), key(10)), Err(Error::InUse { .. })));
    drop(a);
    src.mgr.reader(key(10), 10).unwrap();
}

#[test]
fn an_empty_region_round_trips_and_clears_the_target_range() {
    let (src, dst) = (store(), store());
    fill_target(&dst.kv);
    let before = dump(&dst.kv);
    let generated = src.mgr.build(&src.kv, &src.kv.snapshot(), &region(), key(10)).unwrap();
    assert_eq!(generated.keys, 0);
    assert!(generated.meta.cf_files.iter().all(|f| f.size == 0 && f.checksum == 0));
    assert_eq!(files(&src.mgr), ["gen_1_5_10.meta"]);

    assert!(transfer(&src, &dst, key(10), &generated.meta, 1024).is_empty());
    dst.mgr.apply(&dst.kv, &region(), key(10), &generated.meta).unwrap();
    let (dst_in, dst_out) = split(&dump(&dst.kv));
    assert!(dst_in.is_empty(), "{dst_in:?}");
    assert_eq!(dst_out, split(&before).1);
}

#[test]
fn a_region_of_a_few_megabytes_is_streamed_in_bounded_chunks() {
    // The default rate limit (100MiB/s) is on, so every path charges the limiter.
    let cfg = Config { concurrent_recv_snap_limit: 1, ..Config::default() };
    let (src, dst) = (store_with(&cfg), store_with(&cfg));
    // Incompressible values, so the files are as big as the data.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut value = || -> Vec<u8> {
        (0..125)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()
            })
            .collect()
    };
    for i in 0..4000 {
        put(&src.kv, CF_DEFAULT, &format!("c{i:05}"), value());
        if i % 4 == 0 {
            put(&src.kv, CF_WRITE, &format!("c{i:05}"), "w");
        }
    }
    let generated = src.mgr.build(&src.kv, &src.kv.snapshot(), &region(), key(10)).unwrap();
    assert_eq!(generated.keys, 5000);
    let default_file = &generated.meta.cf_files[0];
    assert!(default_file.size > 3 << 20, "{default_file:?}");

    let chunk_bytes = 256 * 1024;
    let lens = transfer(&src, &dst, key(10), &generated.meta, chunk_bytes);
    assert!(lens.iter().all(|&n| n <= chunk_bytes));
    assert!(lens.len() as u64 >= generated.size_bytes / chunk_bytes as u64);
    assert_eq!(lens.iter().sum::<usize>() as u64, generated.size_bytes);
    dst.mgr.apply(&dst.kv, &region(), key(10), &generated.meta).unwrap();
    assert_eq!(split(&dump(&dst.kv)).0, split(&dump(&src.kv)).0);
}

#[test]
fn apply_checks_files_again_before_touching_the_engine() {
    let (src, dst) = (store(), store());
    fill_source(&src.kv);
    fill_target(&dst.kv);
    let generated = src.mgr.build(&src.kv, &src.kv.snapshot(), &region(), key(10)).unwrap();
    transfer(&src, &dst, key(10), &generated.meta, 1 << 20);
    let before = dump(&dst.kv);

    let path = dst.mgr.dir().join("rev_1_5_10_write.sst");
    let mut bytes = fs::read(&path).unwrap();
    bytes[0] ^= 1;
    fs::write(&path, bytes).unwrap();
    let err = dst.mgr.apply(&dst.kv, &region(), key(10), &generated.meta).unwrap_err();
    assert!(matches!(&err, Error::Corrupted { path: p, .. } if *p == path), "{err}");
    assert_eq!(dump(&dst.kv), before);
}

#[test]
fn gc_at_start_keeps_only_snapshots_being_applied_and_foreign_files() {
    let (src, dst) = (store(), store());
    fill_source(&src.kv);
    let generated = src.mgr.build(&src.kv, &src.kv.snapshot(), &region(), key(10)).unwrap();
    let other = src.mgr.build(&src.kv, &src.kv.snapshot(), &region(), key(11)).unwrap();
    transfer(&src, &dst, key(10), &generated.meta, 1 << 20);
    transfer(&src, &dst, key(11), &other.meta, 1 << 20);
    // What crashes leave: a half-written file, a clone being ingested; and someone's notes.
    for name in
        ["rev_1_5_12_default.sst.tmp", "rev_1_5_10_lock.sst.clone", "gen_1_5_13.meta.tmp", "NOTES"]
    {
        fs::write(dst.mgr.dir().join(name), b"x").unwrap();
    }
    let rev_10 = |names: Vec<String>| -> Vec<String> {
        names
            .into_iter()
            .filter(|n| n.starts_with("rev_1_5_10") && !n.ends_with(".clone"))
            .collect()
    };
    let kept = rev_10(files(&dst.mgr));
    assert_eq!(kept.len(), 4);

    let stats = dst.mgr.gc_at_start(|k| *k == key(10)).unwrap();
    let mut expected = kept.clone();
    expected.insert(0, "NOTES".to_owned());
    assert_eq!(files(&dst.mgr), expected);
    assert_eq!(stats.files, 4 + 3, "rev 11 (4 files) and the three leftovers");
    dst.mgr.apply(&dst.kv, &region(), key(10), &generated.meta).unwrap();

    let stats = src.mgr.gc_at_start(|_| true).unwrap();
    assert_eq!(stats.files, 8, "generated snapshots are regenerated on demand");
    assert!(files(&src.mgr).is_empty());
}

#[test]
fn periodic_gc_deletes_unneeded_incomplete_and_expired_snapshots_not_in_use() {
    let cfg = Config { snap_gc_timeout: ReadableDuration::secs(3600), ..config() };
    let src = store_with(&cfg);
    fill_source(&src.kv);
    for i in [10, 11, 12] {
        src.mgr.build(&src.kv, &src.kv.snapshot(), &region(), key(i)).unwrap();
    }
    fs::write(src.mgr.dir().join("gen_1_5_13_default.sst"), b"no meta").unwrap();
    fs::write(src.mgr.dir().join("gen_1_5_10_default.sst.tmp"), b"leftover").unwrap();
    let reader = src.mgr.reader(key(11), 10).unwrap();
    let old = SystemTime::now() - Duration::from_secs(7200);
    fs::File::options()
        .write(true)
        .open(src.mgr.dir().join("gen_1_5_12.meta"))
        .unwrap()
        .set_modified(old)
        .unwrap();

    // 10 is needed and fresh; 11 is not needed but being read; 12 is needed but expired;
    // 13 has no meta.
    let stats = src.mgr.gc(|k, side| side == Side::Gen && *k != key(11)).unwrap();
    let prefixes = |names: Vec<String>| -> Vec<String> {
        let mut p: Vec<_> = names.into_iter().map(|n| n[..10].to_owned()).collect();
        p.dedup();
        p
    };
    assert_eq!(prefixes(files(&src.mgr)), ["gen_1_5_10", "gen_1_5_11"]);
    assert!(!src.mgr.dir().join("gen_1_5_10_default.sst.tmp").exists());
    assert_eq!(stats.files, 1 + 4 + 1);

    drop(reader);
    let stats = src.mgr.gc(|k, _| *k != key(11)).unwrap();
    assert_eq!(stats.files, 4);
    assert_eq!(prefixes(files(&src.mgr)), ["gen_1_5_10"]);
    assert!(src.mgr.exists(key(10), Side::Gen));
}
