//! The KV engine against real RocksDB in temporary directories.

use engine_rocks::{
    open_kv_engine, open_kv_engine_losing_unsynced_writes, RocksDbConfig, RocksEngine,
};
use engine_traits::{
    EngineIterator, IterOptions, Iterable, KvEngine, Mutable, Peekable, WriteBatch, WriteOptions,
    CF_DEFAULT, CF_LOCK, CF_RAFT, CF_WRITE,
};
use slog::{o, Discard, Logger};
use tempfile::TempDir;

fn logger() -> Logger {
    Logger::root(Discard, o!())
}

fn small_config() -> RocksDbConfig {
    RocksDbConfig {
        block_cache_size: util::config::ReadableSize::mib(8),
        write_buffer_size: util::config::ReadableSize::mib(4),
        ..RocksDbConfig::default()
    }
}

fn open(dir: &TempDir) -> RocksEngine {
    open_kv_engine(dir.path(), &small_config(), &logger()).unwrap()
}

fn put(engine: &RocksEngine, cf: &str, kvs: &[(&[u8], &[u8])]) {
    let mut wb = engine.write_batch();
    for (k, v) in kvs {
        wb.put_cf(cf, k, v);
    }
    engine.write(&mut wb, &WriteOptions::default()).unwrap();
}

fn collect_forward(it: &mut impl EngineIterator) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut valid = it.seek_to_first().unwrap();
    while valid {
        out.push(it.key().to_vec());
        valid = it.next().unwrap();
    }
    out
}

fn collect_reverse(it: &mut impl EngineIterator) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut valid = it.seek_to_last().unwrap();
    while valid {
        out.push(it.key().to_vec());
        valid = it.prev().unwrap();
    }
    out
}

fn keys(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|k| k.as_bytes().to_vec()).collect()
}

#[test]
fn write_batch_commits_across_cfs_and_empties_itself() {
    let dir = TempDir::new().unwrap();
    let engine = open(&dir);
    let mut wb = engine.write_batch_with_cap(1024);
    wb.put_cf(CF_DEFAULT, b"k1", b"v1");
    wb.put_cf(CF_LOCK, b"k1", b"lock");
    wb.put_cf(CF_WRITE, b"k1", b"write");
    wb.put_cf(CF_RAFT, b"k1", b"raft");
    wb.delete_cf(CF_DEFAULT, b"absent");
    assert_eq!(wb.count(), 5);
    assert!(wb.data_size() > 12);
    // Nothing is visible before the write.
    assert_eq!(engine.get_value_cf(CF_DEFAULT, b"k1").unwrap(), None);
    engine.write(&mut wb, &WriteOptions::synced()).unwrap();
    assert!(wb.is_empty());
    assert_eq!(engine.get_value_cf(CF_DEFAULT, b"k1").unwrap().unwrap(), b"v1");
    assert_eq!(engine.get_value_cf(CF_LOCK, b"k1").unwrap().unwrap(), b"lock");
    assert_eq!(engine.get_value_cf(CF_WRITE, b"k1").unwrap().unwrap(), b"write");
    assert_eq!(engine.get_value_cf(CF_RAFT, b"k1").unwrap().unwrap(), b"raft");
    // The emptied batch is reusable, and an empty write is a no-op.
    engine.write(&mut wb, &WriteOptions::default()).unwrap();
    wb.put_cf(CF_DEFAULT, b"k2", b"v2");
    wb.clear();
    engine.write(&mut wb, &WriteOptions::default()).unwrap();
    assert_eq!(engine.get_value_cf(CF_DEFAULT, b"k2").unwrap(), None);
}

#[test]
fn save_points_roll_back_only_the_latest_mutations() {
    let dir = TempDir::new().unwrap();
    let engine = open(&dir);
    let mut wb = engine.write_batch();
    wb.put_cf(CF_DEFAULT, b"a", b"1");
    wb.set_save_point();
    wb.put_cf(CF_DEFAULT, b"b", b"2");
    wb.set_save_point();
    wb.put_cf(CF_RAFT, b"c", b"3");
    wb.delete_range_cf(CF_DEFAULT, b"a", b"z");
    assert_eq!(wb.count(), 4);
    wb.rollback_to_save_point();
    assert_eq!(wb.count(), 2);
    wb.put_cf(CF_DEFAULT, b"d", b"4");
    wb.set_save_point();
    wb.pop_save_point();
    wb.rollback_to_save_point();
    assert_eq!(wb.count(), 1);
    // Rolling back to an empty batch works too.
    wb.set_save_point();
    engine.write(&mut wb, &WriteOptions::default()).unwrap();
    for (key, expected) in [(&b"a"[..], Some(&b"1"[..])), (b"b", None), (b"d", None)] {
        assert_eq!(engine.get_value_cf(CF_DEFAULT, key).unwrap().as_deref(), expected);
    }
    assert_eq!(engine.get_value_cf(CF_RAFT, b"c").unwrap(), None);

    let mut empty = engine.write_batch();
    empty.set_save_point();
    empty.put_cf(CF_DEFAULT, b"x", b"y");
    empty.rollback_to_save_point();
    assert!(empty.is_empty());
}

#[test]
#[should_panic(expected = "without a save point")]
fn rollback_without_save_point_panics() {
    let dir = TempDir::new().unwrap();
    open(&dir).write_batch().rollback_to_save_point();
}

#[test]
#[should_panic(expected = "no column family")]
fn unknown_cf_panics() {
    let dir = TempDir::new().unwrap();
    open(&dir).write_batch().put_cf("nope", b"k", b"v");
}

#[test]
fn snapshot_does_not_see_later_writes() {
    let dir = TempDir::new().unwrap();
    let engine = open(&dir);
    put(&engine, CF_DEFAULT, &[(b"a", b"1"), (b"b", b"2")]);
    let snap = engine.snapshot();
    let clone = snap.clone();
    put(&engine, CF_DEFAULT, &[(b"a", b"changed"), (b"c", b"3")]);
    engine.delete_range_cf(CF_DEFAULT, b"b", b"c").unwrap();
    engine.flush_cf(CF_DEFAULT).unwrap();

    assert_eq!(snap.get_value_cf(CF_DEFAULT, b"a").unwrap().unwrap(), b"1");
    assert_eq!(clone.get_value_cf(CF_DEFAULT, b"b").unwrap().unwrap(), b"2");
    assert_eq!(snap.get_value_cf(CF_DEFAULT, b"c").unwrap(), None);
    let mut it = snap.iterator_opt(CF_DEFAULT, IterOptions::default());
    drop(snap);
    drop(clone);
    // The iterator keeps the snapshot alive on its own.
    assert_eq!(collect_forward(&mut it), keys(&["a", "b"]));
    assert_eq!(engine.get_value_cf(CF_DEFAULT, b"a").unwrap().unwrap(), b"changed");
    assert!(engine.snapshot().sequence_number() > 0);
}

#[test]
fn snapshots_and_iterators_move_across_threads() {
    let dir = TempDir::new().unwrap();
    let engine = open(&dir);
    put(&engine, CF_DEFAULT, &[(b"k", b"v")]);
    let snap = engine.snapshot();
    let it = engine.iterator_opt(CF_DEFAULT, IterOptions::default());
    let handle = std::thread::spawn(move || {
        let mut it = it;
        (snap.get_value_cf(CF_DEFAULT, b"k").unwrap(), collect_forward(&mut it))
    });
    let (value, seen) = handle.join().unwrap();
    assert_eq!(value.unwrap(), b"v");
    assert_eq!(seen, keys(&["k"]));
}

#[test]
fn iteration_respects_bounds_in_both_directions() {
    let dir = TempDir::new().unwrap();
    let engine = open(&dir);
    let all = ["a", "b", "c", "d", "e", "f"];
    let kvs: Vec<(&[u8], &[u8])> = all.iter().map(|k| (k.as_bytes(), &b"v"[..])).collect();
    put(&engine, CF_WRITE, &kvs);

    let bounded = || IterOptions::new(Some(b"b".to_vec()), Some(b"e".to_vec()));
    let mut it = engine.iterator_opt(CF_WRITE, bounded());
    assert_eq!(collect_forward(&mut it), keys(&["b", "c", "d"]));
    assert_eq!(collect_reverse(&mut it), keys(&["d", "c", "b"]));
    // Seeks are clamped into the bounds.
    assert!(it.seek(b"a").unwrap());
    assert_eq!(it.key(), b"b");
    assert!(it.seek(b"cc").unwrap());
    assert_eq!(it.key(), b"d");
    assert!(!it.seek(b"e").unwrap());
    assert!(it.seek_for_prev(b"z").unwrap());
    assert_eq!(it.key(), b"d");
    assert!(it.seek_for_prev(b"bb").unwrap());
    assert_eq!(it.key(), b"b");
    assert_eq!(it.value(), b"v");
    assert!(!it.seek_for_prev(b"a").unwrap());
    assert!(!it.valid().unwrap());

    let mut lower_only = engine.iterator_opt(CF_WRITE, IterOptions::new(Some(b"e".to_vec()), None));
    assert_eq!(collect_forward(&mut lower_only), keys(&["e", "f"]));
    assert_eq!(collect_reverse(&mut lower_only), keys(&["f", "e"]));
    let mut upper_only = engine.iterator_opt(CF_WRITE, IterOptions::new(None, Some(b"b".to_vec())));
    assert_eq!(collect_reverse(&mut upper_only), keys(&["a"]));
    let mut unbounded = engine.iterator_opt(CF_WRITE, IterOptions::default().fill_cache(false));
    assert_eq!(collect_forward(&mut unbounded), keys(&all));

    // The same over a snapshot.
    let snap = engine.snapshot();
    let mut it = snap.iterator_opt(CF_WRITE, bounded());
    assert_eq!(collect_reverse(&mut it), keys(&["d", "c", "b"]));

    let mut scanned = Vec::new();
    engine
        .scan(CF_WRITE, b"b", b"f", true, |k, _| {
            scanned.push(k.to_vec());
            Ok(scanned.len() < 3)
        })
        .unwrap();
    assert_eq!(scanned, keys(&["b", "c", "d"]));
}

#[test]
#[should_panic(expected = "invalid iterator")]
fn next_on_invalid_iterator_panics() {
    let dir = TempDir::new().unwrap();
    let engine = open(&dir);
    let mut it = engine.iterator_opt(CF_DEFAULT, IterOptions::default());
    let _ = it.next();
}

#[test]
fn delete_range_removes_exactly_the_range() {
    let dir = TempDir::new().unwrap();
    let engine = open(&dir);
    let names: Vec<String> = (0..100).map(|i| format!("k{i:03}")).collect();
    let kvs: Vec<(&[u8], &[u8])> = names.iter().map(|k| (k.as_bytes(), &b"v"[..])).collect();
    put(&engine, CF_DEFAULT, &kvs);
    engine.flush_cf(CF_DEFAULT).unwrap();
    engine.delete_range_cf(CF_DEFAULT, b"k010", b"k090").unwrap();
    let mut it = engine.iterator_opt(CF_DEFAULT, IterOptions::default());
    let left = collect_forward(&mut it);
    assert_eq!(left.len(), 20);
    assert_eq!(left[9], b"k009");
    assert_eq!(left[10], b"k090");
    // In a batch, atomically with other writes.
    let mut wb = engine.write_batch();
    wb.delete_range_cf(CF_DEFAULT, b"k000", b"k005");
    wb.put_cf(CF_DEFAULT, b"k001", b"again");
    engine.write(&mut wb, &WriteOptions::default()).unwrap();
    assert_eq!(engine.get_value_cf(CF_DEFAULT, b"k000").unwrap(), None);
    assert_eq!(engine.get_value_cf(CF_DEFAULT, b"k001").unwrap().unwrap(), b"again");
}

#[test]
fn approximate_size_and_keys_cover_memtable_and_sst() {
    let dir = TempDir::new().unwrap();
    let engine = open(&dir);
    let value = vec![7u8; 100];
    let names: Vec<String> = (0..2000).map(|i| format!("key{i:06}")).collect();
    let mut wb = engine.write_batch();
    for name in &names {
        wb.put_cf(CF_DEFAULT, name.as_bytes(), &value);
    }
    engine.write(&mut wb, &WriteOptions::default()).unwrap();

    // Unflushed data is counted through the memtable estimate.
    let in_memtable = engine.approximate_size_and_keys(CF_DEFAULT, b"key", b"kez").unwrap();
    assert!(in_memtable.size_bytes > 0, "{in_memtable:?}");

    engine.flush_cf(CF_DEFAULT).unwrap();
    let all = engine.approximate_size_and_keys(CF_DEFAULT, b"key", b"kez").unwrap();
    // 2000 entries of ~110 bytes, uncompressed at L0: within a factor of two either way.
    assert!(all.size_bytes > 110_000 && all.size_bytes < 440_000, "{all:?}");
    assert!(all.keys > 1000 && all.keys <= 2000, "{all:?}");
    let first_half =
        engine.approximate_size_and_keys(CF_DEFAULT, b"key000000", b"key001000").unwrap();
    assert!(first_half.size_bytes < all.size_bytes, "{first_half:?} vs {all:?}");
    assert!(first_half.keys <= all.keys);
    let empty = engine.approximate_size_and_keys(CF_DEFAULT, b"zzz0", b"zzz1").unwrap();
    assert!(empty.size_bytes < 10_000, "{empty:?}");
    assert_eq!(engine.approximate_size_and_keys(CF_DEFAULT, b"b", b"a").unwrap().keys, 0);
}

#[test]
fn messages_round_trip_and_bad_bytes_are_codec_errors() {
    use proto::raft_serverpb::RaftApplyState;
    let dir = TempDir::new().unwrap();
    let engine = open(&dir);
    let state = RaftApplyState { applied_index: 42, ..Default::default() };
    let key = keys::apply_state_key(util::RegionId(9));
    let mut wb = engine.write_batch();
    wb.put_msg_cf(CF_RAFT, &key, &state);
    wb.put_cf(CF_RAFT, b"garbage", &[0xff, 0xff, 0xff]);
    engine.write(&mut wb, &WriteOptions::default()).unwrap();
    let back: RaftApplyState = engine.get_msg_cf(CF_RAFT, &key).unwrap().unwrap();
    assert_eq!(back, state);
    let snap_back: Option<RaftApplyState> = engine.snapshot().get_msg_cf(CF_RAFT, &key).unwrap();
    assert_eq!(snap_back.unwrap(), state);
    let missing: Option<RaftApplyState> = engine.get_msg_cf(CF_RAFT, b"absent").unwrap();
    assert!(missing.is_none());
    let bad = engine.get_msg_cf::<RaftApplyState>(CF_RAFT, b"garbage");
    assert!(matches!(bad, Err(engine_traits::Error::Codec { .. })), "{bad:?}");
}

#[test]
fn synced_writes_survive_reopen() {
    let dir = TempDir::new().unwrap();
    {
        let engine = open(&dir);
        let mut wb = engine.write_batch();
        wb.put_cf(CF_DEFAULT, b"durable", b"yes");
        wb.put_cf(CF_RAFT, b"state", b"s");
        engine.write(&mut wb, &WriteOptions::synced()).unwrap();
        engine.sync_wal().unwrap();
    }
    let engine = open(&dir);
    assert_eq!(engine.get_value_cf(CF_DEFAULT, b"durable").unwrap().unwrap(), b"yes");
    assert_eq!(engine.get_value_cf(CF_RAFT, b"state").unwrap().unwrap(), b"s");
}

/// The power-cut simulation loses exactly what was not made durable: unsynced writes after
/// the last sync, and nothing before it.
#[test]
fn losing_engine_drops_unsynced_writes_on_close_and_keeps_synced_ones() {
    let dir = TempDir::new().unwrap();
    let open_losing =
        || open_kv_engine_losing_unsynced_writes(dir.path(), &small_config(), &logger()).unwrap();
    {
        let engine = open_losing();
        put(&engine, CF_DEFAULT, &[(b"a", b"1")]);
        put(&engine, CF_RAFT, &[(b"state", b"1")]);
        engine.sync_wal().unwrap();
        put(&engine, CF_DEFAULT, &[(b"b", b"lost")]);
        engine.delete_range_cf(CF_DEFAULT, b"a", b"b").unwrap();
        put(&engine, CF_RAFT, &[(b"state", b"2")]);
        assert_eq!(engine.get_value_cf(CF_DEFAULT, b"b").unwrap().unwrap(), b"lost");
    }
    {
        let engine = open_losing();
        assert_eq!(engine.get_value_cf(CF_DEFAULT, b"a").unwrap().unwrap(), b"1");
        assert_eq!(engine.get_value_cf(CF_DEFAULT, b"b").unwrap(), None, "unsynced: lost");
        assert_eq!(engine.get_value_cf(CF_RAFT, b"state").unwrap().unwrap(), b"1");
        let mut wb = engine.write_batch();
        wb.put_cf(CF_DEFAULT, b"c", b"synced");
        engine.write(&mut wb, &WriteOptions::synced()).unwrap();
    }
    let engine = open_losing();
    assert_eq!(engine.get_value_cf(CF_DEFAULT, b"c").unwrap().unwrap(), b"synced");
    drop(engine);
    // The same unsynced writes on a real engine survive a close (kill -9 keeps the WAL).
    let dir = TempDir::new().unwrap();
    {
        let engine = open(&dir);
        put(&engine, CF_DEFAULT, &[(b"b", b"kept")]);
    }
    assert_eq!(open(&dir).get_value_cf(CF_DEFAULT, b"b").unwrap().unwrap(), b"kept");
}

#[test]
fn open_refuses_missing_db_without_create_and_invalid_config() {
    let dir = TempDir::new().unwrap();
    let cfg = RocksDbConfig { create_if_missing: false, ..small_config() };
    let err = open_kv_engine(dir.path().join("absent"), &cfg, &logger()).unwrap_err();
    assert!(matches!(err, engine_rocks::OpenError::Open { .. }), "{err}");
    let cfg = RocksDbConfig { max_write_buffer_number: 0, ..small_config() };
    let err = open_kv_engine(dir.path(), &cfg, &logger()).unwrap_err();
    assert!(matches!(err, engine_rocks::OpenError::Config(_)), "{err}");
}
