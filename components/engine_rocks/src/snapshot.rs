//! Owned RocksDB snapshots and iterators.
//!
//! rust-rocksdb ties a snapshot and an iterator to a borrow of the `DB`. Our engines hand them
//! out as owned values (they move to other threads and outlive the call that made them), so each
//! is a `self_cell` that owns what it borrows from: a snapshot owns an `Arc<DB>`, an iterator
//! owns either an `Arc<DB>` or the `Arc` of the snapshot it reads. Drop order is therefore
//! correct by construction (borrower before owner) and this module needs no `unsafe`.
//!
//! Invariant: an iterator over a snapshot holds the snapshot alive until the iterator drops, so
//! it reads at the snapshot's sequence number for its whole life.

use std::fmt;
use std::sync::Arc;

use engine_traits::{EngineIterator, IterOptions, Iterable, Peekable, Result};
use rocksdb::{ColumnFamily, DBRawIteratorWithThreadMode, ReadOptions, SnapshotWithThreadMode, DB};
use self_cell::self_cell;

use crate::error::engine_error;

type RawSnapshot<'a> = SnapshotWithThreadMode<'a, DB>;
type RawIterator<'a> = DBRawIteratorWithThreadMode<'a, DB>;

self_cell!(
    struct SnapshotCell {
        owner: Arc<DB>,
        #[covariant]
        dependent: RawSnapshot,
    }
);

/// What an iterator reads: the live database or a snapshot of it.
enum IterSource {
    Db(Arc<DB>),
    Snapshot(Arc<SnapshotCell>),
}

self_cell!(
    struct IterCell {
        owner: IterSource,
        #[covariant]
        dependent: RawIterator,
    }
);

/// Looks a CF up by name.
///
/// # Panics
/// If the database has no such CF: CF names are constants, so this is a programmer error.
pub(crate) fn cf_handle<'a>(db: &'a DB, cf: &str) -> &'a ColumnFamily {
    db.cf_handle(cf).unwrap_or_else(|| panic!("RocksDB has no column family {cf:?}"))
}

pub(crate) fn read_options(opts: IterOptions) -> ReadOptions {
    let mut ro = ReadOptions::default();
    if let Some(lower) = opts.lower_bound {
        ro.set_iterate_lower_bound(lower);
    }
    if let Some(upper) = opts.upper_bound {
        ro.set_iterate_upper_bound(upper);
    }
    ro.fill_cache(opts.fill_cache);
    ro
}

/// An owned, bounded iterator over one CF of a [`crate::RocksEngine`] or [`RocksSnapshot`].
pub struct RocksIterator(IterCell);

impl RocksIterator {
    pub(crate) fn over_db(db: Arc<DB>, cf: &str, opts: IterOptions) -> RocksIterator {
        RocksIterator::new(IterSource::Db(db), cf, opts)
    }

    fn new(source: IterSource, cf: &str, opts: IterOptions) -> RocksIterator {
        let ro = read_options(opts);
        RocksIterator(IterCell::new(source, |source| match source {
            IterSource::Db(db) => db.raw_iterator_cf_opt(cf_handle(db, cf), ro),
            IterSource::Snapshot(snap) => {
                let db = snap.borrow_owner();
                snap.borrow_dependent().raw_iterator_cf_opt(cf_handle(db, cf), ro)
            }
        }))
    }

    fn raw(&self) -> &RawIterator<'_> {
        self.0.borrow_dependent()
    }

    /// Runs a positioning operation, then reports where it landed.
    fn step(&mut self, f: impl FnOnce(&mut RawIterator<'_>)) -> Result<bool> {
        self.0.with_dependent_mut(|_, it| f(it));
        self.valid()
    }

    fn assert_valid(&self, op: &str) {
        assert!(self.raw().valid(), "RocksIterator::{op} called on an invalid iterator");
    }
}

impl EngineIterator for RocksIterator {
    fn seek(&mut self, key: &[u8]) -> Result<bool> {
        self.step(|it| it.seek(key))
    }

    fn seek_for_prev(&mut self, key: &[u8]) -> Result<bool> {
        self.step(|it| it.seek_for_prev(key))
    }

    fn seek_to_first(&mut self) -> Result<bool> {
        self.step(|it| it.seek_to_first())
    }

    fn seek_to_last(&mut self) -> Result<bool> {
        self.step(|it| it.seek_to_last())
    }

    fn next(&mut self) -> Result<bool> {
        self.assert_valid("next");
        self.step(|it| it.next())
    }

    fn prev(&mut self) -> Result<bool> {
        self.assert_valid("prev");
        self.step(|it| it.prev())
    }

    fn valid(&self) -> Result<bool> {
        let it = self.raw();
        if it.valid() {
            return Ok(true);
        }
        it.status().map_err(|e| engine_error("iterate", e))?;
        Ok(false)
    }

    fn key(&self) -> &[u8] {
        self.raw().key().expect("RocksIterator::key called on an invalid iterator")
    }

    fn value(&self) -> &[u8] {
        self.raw().value().expect("RocksIterator::value called on an invalid iterator")
    }
}

/// A consistent read view of a [`crate::RocksEngine`]. Clones share one RocksDB snapshot, which
/// is released when the last clone and the last iterator over it drop.
#[derive(Clone)]
pub struct RocksSnapshot(Arc<SnapshotCell>);

impl RocksSnapshot {
    pub(crate) fn new(db: Arc<DB>) -> RocksSnapshot {
        RocksSnapshot(Arc::new(SnapshotCell::new(db, |db| db.snapshot())))
    }

    /// RocksDB's sequence number of this snapshot; later snapshots have larger ones.
    pub fn sequence_number(&self) -> u64 {
        self.0.borrow_dependent().sequence_number()
    }
}

impl fmt::Debug for RocksSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksSnapshot").field("sequence_number", &self.sequence_number()).finish()
    }
}

impl Peekable for RocksSnapshot {
    fn get_value_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let handle = cf_handle(self.0.borrow_owner(), cf);
        self.0.borrow_dependent().get_cf(handle, key).map_err(|e| engine_error("snapshot get", e))
    }
}

impl Iterable for RocksSnapshot {
    type Iterator = RocksIterator;

    fn iterator_opt(&self, cf: &str, opts: IterOptions) -> RocksIterator {
        RocksIterator::new(IterSource::Snapshot(self.0.clone()), cf, opts)
    }
}

impl engine_traits::Snapshot for RocksSnapshot {}
