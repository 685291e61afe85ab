//! SST writers and ingestion against real RocksDB in temporary directories: what a region
//! snapshot relies on (build files from one engine, clear a range in another, ingest).

use std::path::{Path, PathBuf};

use engine_rocks::{open_kv_engine, RocksDbConfig, RocksEngine};
use engine_traits::{
    Iterable, KvEngine, Mutable, Peekable, SstWriter, WriteOptions, CF_DEFAULT, CF_LOCK, CF_RAFT,
    CF_WRITE, DATA_CFS,
};
use slog::{o, Discard, Logger};
use tempfile::TempDir;

fn open(dir: &Path) -> RocksEngine {
    let cfg = RocksDbConfig {
        block_cache_size: util::config::ReadableSize::mib(8),
        write_buffer_size: util::config::ReadableSize::mib(4),
        ..RocksDbConfig::default()
    };
    open_kv_engine(dir, &cfg, &Logger::root(Discard, o!())).unwrap()
}

fn put(engine: &RocksEngine, cf: &str, kvs: &[(&str, &str)]) {
    let mut wb = engine.write_batch();
    for (k, v) in kvs {
        wb.put_cf(cf, k.as_bytes(), v.as_bytes());
    }
    engine.write(&mut wb, &WriteOptions::default()).unwrap();
}

fn get(engine: &impl Peekable, cf: &str, key: &str) -> Option<String> {
    engine.get_value_cf(cf, key.as_bytes()).unwrap().map(|v| String::from_utf8(v).unwrap())
}

/// Every key-value pair of `cf`, in order.
fn dump(engine: &RocksEngine, cf: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    engine
        .scan(cf, b"", &[0xff], true, |k, v| {
            out.push((
                String::from_utf8(k.to_vec()).unwrap(),
                String::from_utf8(v.to_vec()).unwrap(),
            ));
            Ok(true)
        })
        .unwrap();
    out
}

/// Writes `kvs` (sorted) into an SST file for `cf` made by `engine`.
fn write_sst(engine: &RocksEngine, cf: &str, path: &Path, kvs: &[(&str, &str)]) -> u64 {
    let mut w = engine.sst_writer(cf, path).unwrap();
    for (k, v) in kvs {
        w.put(k.as_bytes(), v.as_bytes()).unwrap();
    }
    let info = w.finish().unwrap();
    assert_eq!(info.keys, kvs.len() as u64);
    assert_eq!(info.size_bytes, std::fs::metadata(path).unwrap().len());
    info.size_bytes
}

fn sst_path(dir: &TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

#[test]
fn a_file_written_by_one_engine_is_ingested_by_another_and_moved() {
    let (a_dir, b_dir, files) =
        (TempDir::new().unwrap(), TempDir::new().unwrap(), TempDir::new().unwrap());
    let (a, b) = (open(a_dir.path()), open(b_dir.path()));
    let path = sst_path(&files, "default.sst");
    write_sst(&a, CF_DEFAULT, &path, &[("k1", "v1"), ("k2", "v2")]);

    b.ingest_external_files_cf(CF_DEFAULT, &[&path]).unwrap();

    assert_eq!(get(&b, CF_DEFAULT, "k1").as_deref(), Some("v1"));
    assert_eq!(get(&b, CF_DEFAULT, "k2").as_deref(), Some("v2"));
    assert!(!path.exists(), "an ingested file is moved into the engine, not copied");
    assert_eq!(get(&b, CF_WRITE, "k1"), None, "only the CF named is touched");
    // Survives a reopen: ingestion is recorded in the manifest.
    drop(b);
    let b = open(b_dir.path());
    assert_eq!(dump(&b, CF_DEFAULT).len(), 2);
}

#[test]
fn ingested_keys_shadow_older_versions_but_not_for_an_earlier_snapshot() {
    let (dir, files) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let engine = open(dir.path());
    put(&engine, CF_LOCK, &[("k1", "old"), ("k3", "old")]);
    engine.flush_cf(CF_LOCK).unwrap();
    put(&engine, CF_LOCK, &[("k2", "old in memtable")]);
    let before = engine.snapshot();

    let path = sst_path(&files, "lock.sst");
    write_sst(&engine, CF_LOCK, &path, &[("k1", "new"), ("k2", "new")]);
    engine.ingest_external_files_cf(CF_LOCK, &[&path]).unwrap();

    assert_eq!(get(&engine, CF_LOCK, "k1").as_deref(), Some("new"));
    assert_eq!(get(&engine, CF_LOCK, "k2").as_deref(), Some("new"));
    assert_eq!(get(&engine, CF_LOCK, "k3").as_deref(), Some("old"));
    assert_eq!(get(&before, CF_LOCK, "k1").as_deref(), Some("old"));
    assert_eq!(get(&before, CF_LOCK, "k2").as_deref(), Some("old in memtable"));
}

#[test]
fn a_range_cleared_in_every_data_cf_then_ingested_holds_exactly_the_files() {
    let (dir, files) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let engine = open(dir.path());
    for cf in DATA_CFS {
        put(&engine, cf, &[("a", "outside"), ("m1", "stale"), ("m5", "stale"), ("z", "outside")]);
    }
    engine.flush_cf(CF_WRITE).unwrap(); // Stale data both in SSTs and in memtables.
    put(&engine, CF_RAFT, &[("m2", "not a data cf")]);

    engine.delete_range_cfs(DATA_CFS, b"m", b"n").unwrap();
    let path = sst_path(&files, "write.sst");
    write_sst(&engine, CF_WRITE, &path, &[("m2", "fresh"), ("m3", "fresh")]);
    engine.ingest_external_files_cf(CF_WRITE, &[&path]).unwrap();

    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    assert_eq!(
        dump(&engine, CF_WRITE),
        pairs(&[("a", "outside"), ("m2", "fresh"), ("m3", "fresh"), ("z", "outside")])
    );
    for cf in [CF_DEFAULT, CF_LOCK] {
        assert_eq!(dump(&engine, cf), pairs(&[("a", "outside"), ("z", "outside")]), "{cf}");
    }
    assert_eq!(get(&engine, CF_RAFT, "m2").as_deref(), Some("not a data cf"));
}

#[test]
fn writer_errors_are_errors_not_panics() {
    let (dir, files) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let engine = open(dir.path());

    let empty = engine.sst_writer(CF_DEFAULT, &sst_path(&files, "empty.sst")).unwrap();
    assert!(empty.finish().is_err(), "an SST file with no key cannot be finished");

    let mut w = engine.sst_writer(CF_DEFAULT, &sst_path(&files, "order.sst")).unwrap();
    w.put(b"k2", b"v").unwrap();
    assert!(w.put(b"k1", b"v").is_err(), "keys must be strictly increasing");
    assert!(w.put(b"k2", b"v").is_err(), "keys must be strictly increasing");

    let missing = files.path().join("no-such-dir").join("x.sst");
    assert!(engine.sst_writer(CF_DEFAULT, &missing).is_err());
    assert!(engine.ingest_external_files_cf(CF_DEFAULT, &[&missing]).is_err());
    engine.ingest_external_files_cf(CF_DEFAULT, &[]).unwrap();
}
