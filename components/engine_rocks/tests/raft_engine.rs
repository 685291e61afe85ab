//! The raft engine against real RocksDB in temporary directories.

use engine_rocks::{open_raft_engine, RocksDbConfig, RocksRaftEngine, TAIL_POINT_DELETES_MAX};
use engine_traits::{Error, RaftEngine, RaftLogBatch};
use proto::raft_serverpb::RaftLocalState;
use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState};
use slog::{o, Discard, Logger};
use tempfile::TempDir;
use util::{LogIndex, RegionId, Term};

fn open(dir: &TempDir) -> RocksRaftEngine {
    let cfg = RocksDbConfig {
        block_cache_size: util::config::ReadableSize::mib(8),
        write_buffer_size: util::config::ReadableSize::mib(4),
        ..RocksDbConfig::default()
    };
    open_raft_engine(dir.path(), &cfg, &Logger::root(Discard, o!())).unwrap()
}

fn entry(index: u64, term: u64, data_len: usize) -> Entry {
    Entry { index, term, data: vec![index as u8; data_len].into(), ..Default::default() }
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|i| entry(i, term, 10)).collect()
}

fn append(engine: &RocksRaftEngine, region: u64, ents: &[Entry], overwrite_to: Option<u64>) {
    let mut batch = engine.log_batch(0);
    batch.append(RegionId(region), ents, overwrite_to.map(LogIndex)).unwrap();
    engine.consume(&mut batch, false).unwrap();
}

fn fetch(
    engine: &RocksRaftEngine,
    region: u64,
    low: u64,
    high: u64,
    max: Option<u64>,
) -> Result<Vec<Entry>, Error> {
    let mut buf = Vec::new();
    let n =
        engine.fetch_entries_to(RegionId(region), LogIndex(low), LogIndex(high), max, &mut buf)?;
    assert_eq!(n, buf.len());
    Ok(buf)
}

fn indexes(ents: &[Entry]) -> Vec<u64> {
    ents.iter().map(|e| e.index).collect()
}

fn raft_state(term: u64, commit: u64, last_index: u64) -> RaftLocalState {
    let hs = HardState { term, commit, vote: 3, ..Default::default() };
    RaftLocalState { hard_state: hs.write_to_bytes().unwrap(), last_index }
}

#[test]
fn append_then_fetch_with_size_limit() {
    let dir = TempDir::new().unwrap();
    let engine = open(&dir);
    append(&engine, 1, &entries(5..=14, 2), None);

    let all = fetch(&engine, 1, 5, 15, None).unwrap();
    assert_eq!(indexes(&all), (5..=14).collect::<Vec<_>>());
    assert_eq!(all[3], entry(8, 2, 10));

    let one_size = entry(5, 2, 10).compute_size() as u64;
    // Exactly three entries fit.
    assert_eq!(indexes(&fetch(&engine, 1, 5, 15, Some(3 * one_size)).unwrap()), vec![5, 6, 7]);
    assert_eq!(indexes(&fetch(&engine, 1, 5, 15, Some(3 * one_size + 1)).unwrap()), vec![5, 6, 7]);
    // At least one entry, even when it is bigger than the limit.
    assert_eq!(indexes(&fetch(&engine, 1, 9, 15, Some(0)).unwrap()), vec![9]);
    assert_eq!(indexes(&fetch(&engine, 1, 14, 15, None).unwrap()), vec![14]);

    // The buffer is appended to, not replaced.
    let mut buf = vec![entry(1, 1, 0)];
    engine.fetch_entries_to(RegionId(1), LogIndex(6), LogIndex(8), None, &mut buf).unwrap();
    assert_eq!(indexes(&buf), vec![1, 6, 7]);

    assert_eq!(engine.get_entry(RegionId(1), LogIndex(7)).unwrap().unwrap(), entry(7, 2, 10));
    assert_eq!(engine.get_entry(RegionId(1), LogIndex(15)).unwrap(), None);
    assert_eq!(engine.term(RegionId(1), LogIndex(10)).unwrap(), Some(Term(2)));
    assert_eq!(engine.term(RegionId(1), LogIndex(4)).unwrap(), None);
    assert_eq!(engine.first_index(RegionId(1)).unwrap(), Some(LogIndex(5)));
    assert_eq!(engine.last_index(RegionId(1)).unwrap(), Some(LogIndex(14)));
    assert_eq!(engine.first_index(RegionId(2)).unwrap(), None);
    assert_eq!(engine.last_index(RegionId(2)).unwrap(), None);
}

#[test]
fn fetch_reports_compacted_and_unavailable_ranges() {
    let dir = TempDir::new().unwrap();
    let engine = open(&dir);
    append(&engine, 1, &entries(10..=20, 1), None);
    let err = fetch(&engine, 1, 8, 12, None).unwrap_err();
    assert_eq!(
        err,
        Error::EntriesCompacted {
            region_id: RegionId(1),
            low: LogIndex(8),
            first_index: LogIndex(10)
        }
    );
    let err = fetch(&engine, 1, 21, 25, None).unwrap_err();
    assert_eq!(
        err,
        Error::EntriesUnavailable {
            region_id: RegionId(1),
            low: LogIndex(21),
            high: LogIndex(25),
            last_index: LogIndex(20)
        }
    );
    let err = fetch(&engine, 1, 18, 25, None).unwrap_err();
    assert!(matches!(err, Error::EntriesUnavailable { last_index: LogIndex(20), .. }), "{err}");
    let err = fetch(&engine, 7, 1, 2, None).unwrap_err();
    assert!(matches!(err, Error::EntriesUnavailable { last_index: LogIndex(0), .. }), "{err}");
}

#[test]
fn conflicting_tail_is_overwritten() {
    let dir = TempDir::new().unwrap();
    let engine = open(&dir);
    append(&engine, 1, &entries(1..=10, 1), None);
    // A new leader rewrites from index 6 with two entries; 8..=10 must disappear.
    append(&engine, 1, &entries(6..=7, 2), Some(10));
    assert_eq!(engine.last_index(RegionId(1)).unwrap(), Some(LogIndex(7)));
    let ents = fetch(&engine, 1, 1, 8, None).unwrap();
    assert_eq!(ents.iter().map(|e| e.term).collect::<Vec<_>>(), vec![1, 1, 1, 1, 1, 2, 2]);
    assert!(fetch(&engine, 1, 8, 9, None).is_err());

    // A long tail takes the range-tombstone path and leaves neighbours alone.
    let long = TAIL_POINT_DELETES_MAX * 3;
    append(&engine, 2, &entries(1..=long, 1), None);
    append(&engine, 3, &entries(1..=3, 1), None);
    append(&engine, 2, &entries(2..=2, 5), Some(long));
    assert_eq!(engine.last_index(RegionId(2)).unwrap(), Some(LogIndex(2)));
    assert_eq!(engine.first_index(RegionId(3)).unwrap(), Some(LogIndex(1)));
    assert_eq!(engine.last_index(RegionId(3)).unwrap(), Some(LogIndex(3)));
    // A tail ending at the maximum index does not overflow.
    append(&engine, 2, &entries(3..=3, 5), Some(u64::MAX));
    assert_eq!(engine.last_index(RegionId(2)).unwrap(), Some(LogIndex(3)));
}

#[test]
#[should_panic(expected = "not consecutive")]
fn non_consecutive_append_panics() {
    let dir = TempDir::new().unwrap();
    let engine = open(&dir);
    let mut batch = engine.log_batch(0);
    let _ = batch.append(RegionId(1), &[entry(1, 1, 0), entry(3, 1, 0)], None);
}

#[test]
fn gc_deletes_a_range_from_the_front() {
    let dir = TempDir::new().unwrap();
    let engine = open(&dir);
    append(&engine, 1, &entries(1..=100, 1), None);
    assert_eq!(engine.gc(RegionId(1), LogIndex(0), LogIndex(40)).unwrap(), 39);
    assert_eq!(engine.first_index(RegionId(1)).unwrap(), Some(LogIndex(40)));
    // Already-deleted part and beyond-the-end part are skipped.
    assert_eq!(engine.gc(RegionId(1), LogIndex(10), LogIndex(50)).unwrap(), 10);
    assert_eq!(engine.gc(RegionId(1), LogIndex(10), LogIndex(30)).unwrap(), 0);
    assert_eq!(engine.gc(RegionId(1), LogIndex(95), LogIndex(1000)).unwrap(), 6);
    assert_eq!(engine.first_index(RegionId(1)).unwrap(), Some(LogIndex(50)));
    assert_eq!(engine.last_index(RegionId(1)).unwrap(), Some(LogIndex(94)));
    assert_eq!(engine.gc(RegionId(9), LogIndex(0), LogIndex(10)).unwrap(), 0);
}

#[test]
fn gc_of_more_than_one_write_worth() {
    let dir = TempDir::new().unwrap();
    let engine = open(&dir);
    let n = engine_rocks::GC_KEYS_PER_WRITE_MAX * 2 + 10;
    let mut batch = engine.log_batch(1 << 20);
    batch.append(RegionId(4), &(1..=n).map(|i| entry(i, 1, 0)).collect::<Vec<_>>(), None).unwrap();
    engine.consume(&mut batch, false).unwrap();
    assert_eq!(engine.gc(RegionId(4), LogIndex(1), LogIndex(n)).unwrap(), n - 1);
    assert_eq!(engine.first_index(RegionId(4)).unwrap(), Some(LogIndex(n)));
}

#[test]
fn raft_state_round_trips_and_clean_removes_everything() {
    let dir = TempDir::new().unwrap();
    let engine = open(&dir);
    assert_eq!(engine.get_raft_state(RegionId(1)).unwrap(), None);
    let state = raft_state(7, 5, 10);
    let mut batch = engine.log_batch(0);
    batch.append(RegionId(1), &entries(1..=10, 7), None).unwrap();
    batch.put_raft_state(RegionId(1), &state);
    batch.append(RegionId(2), &entries(1..=3, 1), None).unwrap();
    batch.put_raft_state(RegionId(2), &raft_state(1, 1, 3));
    engine.consume(&mut batch, true).unwrap();

    let back = engine.get_raft_state(RegionId(1)).unwrap().unwrap();
    assert_eq!(back, state);
    let hs = HardState::parse_from_bytes(&back.hard_state).unwrap();
    assert_eq!((hs.term, hs.commit, hs.vote), (7, 5, 3));
    assert_eq!(engine.raft_groups().unwrap(), vec![RegionId(1), RegionId(2)]);

    engine.clean(RegionId(1)).unwrap();
    assert_eq!(engine.get_raft_state(RegionId(1)).unwrap(), None);
    assert_eq!(engine.first_index(RegionId(1)).unwrap(), None);
    assert_eq!(engine.raft_groups().unwrap(), vec![RegionId(2)]);
    assert_eq!(engine.last_index(RegionId(2)).unwrap(), Some(LogIndex(3)));
}

#[test]
fn one_batch_for_many_regions() {
    let dir = TempDir::new().unwrap();
    let engine = open(&dir);
    let regions = 150u64;
    let mut batch = engine.log_batch(64 * 1024);
    for region in 1..=regions {
        batch.append(RegionId(region), &entries(6..=(5 + region % 7 + 1), 6), None).unwrap();
        batch.put_raft_state(RegionId(region), &raft_state(6, 6, 5 + region % 7 + 1));
    }
    assert!(!batch.is_empty());
    let expected_count: u64 = (1..=regions).map(|r| r % 7 + 1 + 1).sum();
    assert_eq!(batch.count() as u64, expected_count);
    let size = batch.data_size();
    // Before the consume nothing is visible.
    assert_eq!(engine.raft_groups().unwrap(), vec![]);
    assert_eq!(engine.consume(&mut batch, true).unwrap(), size);
    assert!(batch.is_empty());
    assert_eq!(engine.consume(&mut batch, true).unwrap(), 0);

    let groups = engine.raft_groups().unwrap();
    assert_eq!(groups, (1..=regions).map(RegionId).collect::<Vec<_>>());
    for region in 1..=regions {
        let last = 5 + region % 7 + 1;
        assert_eq!(engine.first_index(RegionId(region)).unwrap(), Some(LogIndex(6)));
        assert_eq!(engine.last_index(RegionId(region)).unwrap(), Some(LogIndex(last)));
        assert_eq!(engine.get_raft_state(RegionId(region)).unwrap().unwrap().last_index, last);
    }
    // The batch is reusable after consume, and clear drops buffered work.
    batch.append(RegionId(1), &entries(20..=20, 6), None).unwrap();
    batch.clear();
    assert_eq!(engine.consume(&mut batch, false).unwrap(), 0);
    assert_eq!(engine.last_index(RegionId(1)).unwrap(), Some(LogIndex(7)));
}

#[test]
fn synced_batch_survives_reopen() {
    let dir = TempDir::new().unwrap();
    {
        let engine = open(&dir);
        let mut batch = engine.log_batch(0);
        for region in [3u64, 4] {
            batch.append(RegionId(region), &entries(1..=5, 2), None).unwrap();
            batch.put_raft_state(RegionId(region), &raft_state(2, 4, 5));
        }
        engine.consume(&mut batch, true).unwrap();
        engine.sync().unwrap();
    }
    let engine = open(&dir);
    assert_eq!(engine.raft_groups().unwrap(), vec![RegionId(3), RegionId(4)]);
    for region in [3u64, 4] {
        assert_eq!(engine.get_raft_state(RegionId(region)).unwrap().unwrap(), raft_state(2, 4, 5));
        let ents = fetch(&engine, region, 1, 6, None).unwrap();
        assert_eq!(ents, entries(1..=5, 2));
    }
}
