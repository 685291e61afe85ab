//! [`MetaStore`]: PD's durable metadata in its own RocksDB (`<data-dir>/meta`, CF `default`).
//!
//! Key layout (all integers big-endian, so keys of one kind sort by id):
//!
//! | key | value |
//! |---|---|
//! | `cluster_id` | u64 |
//! | `alloc_id` | u64: every id `<=` this may have been handed out |
//! | `tso_window` | i64: every timestamp handed out has a physical part `<` this |
//! | `bootstrapped` | empty |
//! | `gc_safe_point` | u64 |
//! | `store/<id>` | `metapb.Store` |
//! | `region/<id>` | `pdpb.Region` (the region and its last known leader) |
//!
//! Invariant: every write is one atomic, synced batch ([`MetaBatch::commit`]), and PD changes
//! its in-memory state only after the batch describing the change committed. A crash therefore
//! never leaves memory ahead of disk, and a restart reloads exactly what was acknowledged.

use std::path::Path;

use engine_rocks::{RocksDbConfig, RocksEngine, RocksWriteBatch};
use engine_traits::{KvEngine, Mutable, Peekable, Result, WriteOptions, CF_DEFAULT};
use proto::{metapb, pdpb};
use slog::Logger;
use util::config::ReadableSize;

const CLUSTER_ID: &[u8] = b"cluster_id";
const ALLOC_ID: &[u8] = b"alloc_id";
const TSO_WINDOW: &[u8] = b"tso_window";
const BOOTSTRAPPED: &[u8] = b"bootstrapped";
const GC_SAFE_POINT: &[u8] = b"gc_safe_point";
const STORE_PREFIX: &[u8] = b"store/";
const REGION_PREFIX: &[u8] = b"region/";

/// The durable half of PD. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MetaStore {
    engine: RocksEngine,
}

/// Metadata is small (a record per store and per region): a small cache and small memtables
/// keep an idle PD light. Not configurable until someone needs it.
fn meta_db_config() -> RocksDbConfig {
    RocksDbConfig {
        block_cache_size: ReadableSize::mib(32),
        write_buffer_size: ReadableSize::mib(8),
        max_total_wal_size: ReadableSize::mib(256),
        ..RocksDbConfig::default()
    }
}

impl MetaStore {
    /// Opens (creating if missing) the metadata store at `path`.
    pub fn open(path: &Path, logger: &Logger) -> std::result::Result<MetaStore, crate::Error> {
        let engine = engine_rocks::open_kv_engine(path, &meta_db_config(), logger)?;
        Ok(MetaStore { engine })
    }

    pub fn cluster_id(&self) -> Result<Option<u64>> {
        self.get_u64(CLUSTER_ID)
    }

    pub fn alloc_id(&self) -> Result<u64> {
        Ok(self.get_u64(ALLOC_ID)?.unwrap_or(0))
    }

    pub fn tso_window(&self) -> Result<i64> {
        Ok(self.get_u64(TSO_WINDOW)?.map_or(0, |v| v as i64))
    }

    pub fn bootstrapped(&self) -> Result<bool> {
        Ok(self.engine.get_value_cf(CF_DEFAULT, BOOTSTRAPPED)?.is_some())
    }

    pub fn gc_safe_point(&self) -> Result<u64> {
        Ok(self.get_u64(GC_SAFE_POINT)?.unwrap_or(0))
    }

    pub fn stores(&self) -> Result<Vec<metapb::Store>> {
        self.load_all(STORE_PREFIX)
    }

    pub fn regions(&self) -> Result<Vec<pdpb::Region>> {
        self.load_all(REGION_PREFIX)
    }

    /// An empty batch; nothing is written until [`MetaBatch::commit`].
    pub fn batch(&self) -> MetaBatch<'_> {
        MetaBatch { store: self, wb: self.engine.write_batch() }
    }

    fn get_u64(&self, key: &[u8]) -> Result<Option<u64>> {
        let Some(bytes) = self.engine.get_value_cf(CF_DEFAULT, key)? else {
            return Ok(None);
        };
        let arr: [u8; 8] =
            bytes.as_slice().try_into().map_err(|_| engine_traits::Error::Codec {
                what: "u64",
                key: key.to_vec(),
                message: format!("{} bytes, expected 8", bytes.len()),
            })?;
        Ok(Some(u64::from_be_bytes(arr)))
    }

    fn load_all<M: prost::Message + Default>(&self, prefix: &[u8]) -> Result<Vec<M>> {
        let mut out = Vec::new();
        let end = prefix_end(prefix);
        engine_traits::Iterable::scan(&self.engine, CF_DEFAULT, prefix, &end, true, |k, v| {
            let msg = M::decode(v).map_err(|e| engine_traits::Error::Codec {
                what: std::any::type_name::<M>(),
                key: k.to_vec(),
                message: e.to_string(),
            })?;
            out.push(msg);
            Ok(true)
        })?;
        Ok(out)
    }
}

/// One atomic group of metadata changes.
pub struct MetaBatch<'a> {
    store: &'a MetaStore,
    wb: RocksWriteBatch,
}

impl MetaBatch<'_> {
    pub fn put_cluster_id(&mut self, id: u64) {
        self.wb.put_cf(CF_DEFAULT, CLUSTER_ID, &id.to_be_bytes());
    }

    pub fn put_alloc_id(&mut self, end: u64) {
        self.wb.put_cf(CF_DEFAULT, ALLOC_ID, &end.to_be_bytes());
    }

    pub fn put_tso_window(&mut self, end_ms: i64) {
        assert!(end_ms >= 0, "negative TSO window {end_ms}");
        self.wb.put_cf(CF_DEFAULT, TSO_WINDOW, &(end_ms as u64).to_be_bytes());
    }

    pub fn put_bootstrapped(&mut self) {
        self.wb.put_cf(CF_DEFAULT, BOOTSTRAPPED, b"");
    }

    pub fn put_gc_safe_point(&mut self, safe_point: u64) {
        self.wb.put_cf(CF_DEFAULT, GC_SAFE_POINT, &safe_point.to_be_bytes());
    }

    pub fn put_store(&mut self, store: &metapb::Store) {
        self.wb.put_msg_cf(CF_DEFAULT, &id_key(STORE_PREFIX, store.id), store);
    }

    pub fn put_region(&mut self, region: &metapb::Region, leader: Option<&metapb::Peer>) {
        let record = pdpb::Region {
            region: Some(region.clone()),
            leader: leader.cloned(),
            ..pdpb::Region::default()
        };
        self.wb.put_msg_cf(CF_DEFAULT, &id_key(REGION_PREFIX, region.id), &record);
    }

    pub fn delete_region(&mut self, region_id: u64) {
        self.wb.delete_cf(CF_DEFAULT, &id_key(REGION_PREFIX, region_id));
    }

    /// Writes the batch atomically and fsyncs it before returning.
    pub fn commit(mut self) -> Result<()> {
        self.store.engine.write(&mut self.wb, &WriteOptions::synced())
    }
}

fn id_key(prefix: &[u8], id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 8);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The smallest key after every key starting with `prefix` (prefixes here end below 0xff).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    let last = end.last_mut().expect("non-empty prefix");
    assert!(*last < 0xff, "prefix {prefix:?} ends in 0xff");
    *last += 1;
    end
}
