//! RocksDB options that matter for regionstore, as one serde config used for both the KV
//! engine (`[rocksdb]`) and the raft engine (`[raftdb]`).
//!
//! Defaults are production-shaped but sized for a small dev machine (2 cores, a few GiB); each
//! says how to scale it. Options not listed here keep RocksDB's defaults on purpose.

use rocksdb::{BlockBasedOptions, Cache, DBCompressionType, Options};
use serde::{Deserialize, Serialize};
use util::config::{ConfigError, ReadableSize};

/// Compression of one LSM level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression: for the small, hot upper levels where CPU matters more than space.
    No,
    /// Fast, modest ratio: the middle levels.
    Lz4,
    /// Slower, best ratio: the bottom levels, which hold ~90% of the data.
    Zstd,
}

impl Compression {
    fn to_rocks(self) -> DBCompressionType {
        match self {
            Compression::No => DBCompressionType::None,
            Compression::Lz4 => DBCompressionType::Lz4,
            Compression::Zstd => DBCompressionType::Zstd,
        }
    }
}

/// RocksDB's default (and our) number of LSM levels; `compression-per-level` may not be longer.
pub const NUM_LEVELS: usize = 7;

/// Options of one RocksDB instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct RocksDbConfig {
    /// Create the database and its column families if they do not exist. Turn it off in
    /// production once a store is bootstrapped, so a wrong path fails loudly instead of
    /// starting an empty store.
    pub create_if_missing: bool,
    /// LRU block cache shared by all CFs of this instance (uncompressed data, index and filter
    /// blocks). The main memory knob: production KV engines use 30-45% of RAM; the raft engine
    /// needs little because recent log entries are read from the raftstore's entry cache.
    pub block_cache_size: ReadableSize,
    /// Memtable size per CF. Bigger memtables mean fewer, larger L0 files and less write
    /// amplification; memory use is up to `write-buffer-size * max-write-buffer-number` per CF.
    pub write_buffer_size: ReadableSize,
    /// Memtables per CF (one active, the rest waiting for flush) before writes stall.
    pub max_write_buffer_number: i32,
    /// Threads for flushes and compactions together. About the number of cores; too few lets
    /// L0 pile up and stall writes.
    pub max_background_jobs: i32,
    /// Compression of each LSM level, top first: `"no"`, `"lz4"` or `"zstd"` (the only codecs
    /// built in). At most 7 entries; missing trailing levels use the last entry.
    pub compression_per_level: Vec<Compression>,
    /// Ask the OS to write SST data out every this many bytes, so a large flush does not become
    /// one multi-second burst of writeback. 0 disables.
    pub bytes_per_sync: ReadableSize,
    /// The same for the WAL; keeps the eventual fsync of a sync write short.
    pub wal_bytes_per_sync: ReadableSize,
    /// When the WALs exceed this, the CFs holding the oldest one are flushed so it can be
    /// deleted. Bounds recovery time after a crash. 0 lets RocksDB choose (4x the memtables).
    pub max_total_wal_size: ReadableSize,
}

impl Default for RocksDbConfig {
    fn default() -> Self {
        RocksDbConfig {
            create_if_missing: true,
            // Enough for a dev machine and tests; see the field doc for production sizing.
            block_cache_size: ReadableSize::mib(256),
            // RocksDB's own default; with 4 CFs it is at most 4 * 64MiB * 5 of memtables.
            write_buffer_size: ReadableSize::mib(64),
            // As TiKV: absorbs a flush falling behind briefly without stalling writes.
            max_write_buffer_number: 5,
            // Two cores here; a production server sets this near its core count.
            max_background_jobs: 2,
            // As TiKV: no compression where data is hot and short-lived, zstd at the bottom.
            compression_per_level: vec![
                Compression::No,
                Compression::No,
                Compression::Lz4,
                Compression::Lz4,
                Compression::Lz4,
                Compression::Zstd,
                Compression::Zstd,
            ],
            bytes_per_sync: ReadableSize::mib(1),
            wal_bytes_per_sync: ReadableSize::kib(512),
            max_total_wal_size: ReadableSize::gib(4),
        }
    }
}

impl RocksDbConfig {
    /// Rejects values RocksDB would refuse or that cannot work. Keys are local
    /// (`block-cache-size`); wrap with [`ConfigError::in_section`] for the full path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.block_cache_size.as_bytes() < ReadableSize::mib(1).as_bytes() {
            return Err(ConfigError::invalid("block-cache-size", "must be at least 1MiB"));
        }
        if self.write_buffer_size.as_bytes() < ReadableSize::kib(64).as_bytes() {
            return Err(ConfigError::invalid("write-buffer-size", "must be at least 64KiB"));
        }
        if self.max_write_buffer_number < 2 {
            return Err(ConfigError::invalid(
                "max-write-buffer-number",
                "must be at least 2, or every flush stalls writes",
            ));
        }
        if self.max_background_jobs < 2 {
            return Err(ConfigError::invalid(
                "max-background-jobs",
                "must be at least 2 (one flush and one compaction)",
            ));
        }
        if self.compression_per_level.is_empty() || self.compression_per_level.len() > NUM_LEVELS {
            return Err(ConfigError::invalid(
                "compression-per-level",
                format!("must have 1 to {NUM_LEVELS} entries"),
            ));
        }
        Ok(())
    }

    /// DB-wide options (the CFs get [`RocksDbConfig::cf_options`]).
    pub(crate) fn db_options(&self) -> Options {
        let mut opts = Options::default();
        opts.create_if_missing(self.create_if_missing);
        opts.create_missing_column_families(self.create_if_missing);
        opts.set_max_background_jobs(self.max_background_jobs);
        opts.set_bytes_per_sync(self.bytes_per_sync.as_bytes());
        opts.set_wal_bytes_per_sync(self.wal_bytes_per_sync.as_bytes());
        opts.set_max_total_wal_size(self.max_total_wal_size.as_bytes());
        opts
    }

    /// Options of one CF; all CFs of an instance share `cache`.
    pub(crate) fn cf_options(&self, cache: &Cache) -> Options {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(cache);
        // Bloom filters make point gets of absent keys (most raft state and apply state
        // lookups of new regions) skip SST files.
        table.set_bloom_filter(10.0, false);
        // Index and filter blocks count against the cache instead of growing without bound
        // with the data; L0's stay pinned because every read touches them.
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        let mut opts = Options::default();
        opts.set_block_based_table_factory(&table);
        opts.set_write_buffer_size(self.write_buffer_size.as_usize());
        opts.set_max_write_buffer_number(self.max_write_buffer_number);
        opts.set_level_compaction_dynamic_level_bytes(true);
        let mut levels: Vec<_> = self.compression_per_level.iter().map(|c| c.to_rocks()).collect();
        let last = *levels.last().expect("validated: compression-per-level is not empty");
        levels.resize(NUM_LEVELS, last);
        opts.set_compression_per_level(&levels);
        opts
    }

    /// The block cache for one instance.
    pub(crate) fn block_cache(&self) -> Cache {
        Cache::new_lru_cache(self.block_cache_size.as_usize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip_through_toml() {
        let cfg = RocksDbConfig::default();
        cfg.validate().unwrap();
        let text = toml::to_string(&cfg).unwrap();
        assert!(text.contains("compression-per-level = [\"no\", \"no\", \"lz4\""), "{text}");
        let back: RocksDbConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn partial_toml_keeps_other_defaults() {
        let cfg: RocksDbConfig =
            toml::from_str("block-cache-size = \"1GiB\"\ncompression-per-level = [\"zstd\"]")
                .unwrap();
        assert_eq!(cfg.block_cache_size, ReadableSize::gib(1));
        assert_eq!(cfg.compression_per_level, vec![Compression::Zstd]);
        assert_eq!(cfg.write_buffer_size, RocksDbConfig::default().write_buffer_size);
        cfg.validate().unwrap();
    }

    #[test]
    fn validate_rejects_unusable_values() {
        let bad = |f: fn(&mut RocksDbConfig), key: &str| {
            let mut cfg = RocksDbConfig::default();
            f(&mut cfg);
            match cfg.validate() {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key),
                other => panic!("expected invalid {key}, got {other:?}"),
            }
        };
        bad(|c| c.block_cache_size = ReadableSize(0), "block-cache-size");
        bad(|c| c.write_buffer_size = ReadableSize::kib(1), "write-buffer-size");
        bad(|c| c.max_write_buffer_number = 1, "max-write-buffer-number");
        bad(|c| c.max_background_jobs = 0, "max-background-jobs");
        bad(|c| c.compression_per_level.clear(), "compression-per-level");
        bad(|c| c.compression_per_level = vec![Compression::No; 8], "compression-per-level");
    }
}
