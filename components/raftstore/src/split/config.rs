//! The `[coprocessor]` section: when a region is big enough to split, and where.
//!
//! Option names and defaults are TiKV's (v8.3+). Only `region-split-size` is needed; the others
//! derive from it when absent, as in TiKV:
//! - `region-max-size` = split size × 3/2;
//! - `region-split-keys` = 10,000 keys per MiB of split size (TiKV's ~100 B per key);
//! - `region-max-keys` = split keys × 3/2.
//!
//! A region is split once it holds more than `region-max-size` bytes or `region-max-keys`
//! keys, at keys about `region-split-size` bytes (or `region-split-keys` keys) apart, so each
//! part starts well below the maximum and grows for a while before it splits again.

use serde::{Deserialize, Serialize};
use util::config::{ConfigError, ReadableSize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct SplitConfig {
    /// The size the parts of a split region aim for.
    pub region_split_size: ReadableSize,
    /// A region above this size is split. Default: split size × 3/2.
    pub region_max_size: Option<ReadableSize>,
    /// The key count the parts of a split region aim for. Default: 10,000 per MiB of split
    /// size.
    pub region_split_keys: Option<u64>,
    /// A region with more keys than this is split. Default: split keys × 3/2.
    pub region_max_keys: Option<u64>,
    /// Most keys one automatic split cuts a region at (one raft entry).
    pub batch_split_limit: u64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            region_split_size: ReadableSize::mib(256),
            region_max_size: None,
            region_split_keys: None,
            region_max_keys: None,
            batch_split_limit: 10,
        }
    }
}

impl SplitConfig {
    /// A config that splits at `split_size` bytes (everything else derived).
    pub fn with_split_size(split_size: ReadableSize) -> Self {
        SplitConfig { region_split_size: split_size, ..SplitConfig::default() }
    }

    pub fn split_size(&self) -> u64 {
        self.region_split_size.as_bytes()
    }

    pub fn max_size(&self) -> u64 {
        self.region_max_size.map_or(self.split_size() / 2 * 3, |s| s.as_bytes())
    }

    pub fn split_keys(&self) -> u64 {
        self.region_split_keys.unwrap_or_else(|| {
            (self.split_size() * 10_000 / ReadableSize::mib(1).as_bytes()).max(1)
        })
    }

    pub fn max_keys(&self) -> u64 {
        self.region_max_keys.unwrap_or_else(|| self.split_keys() / 2 * 3)
    }

    /// Keys are local; the caller adds the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.split_size() == 0 {
            return Err(ConfigError::invalid("region-split-size", "must be positive"));
        }
        if self.max_size() < self.split_size() {
            return Err(ConfigError::conflict(
                "region-max-size",
                "region-split-size",
                "the maximum must not be below the split size",
            ));
        }
        if self.split_keys() == 0 {
            return Err(ConfigError::invalid("region-split-keys", "must be at least 1"));
        }
        if self.max_keys() < self.split_keys() {
            return Err(ConfigError::conflict(
                "region-max-keys",
                "region-split-keys",
                "the maximum must not be below the split keys",
            ));
        }
        if self.batch_split_limit == 0 {
            return Err(ConfigError::invalid("batch-split-limit", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_derive_like_tikv() {
        let c = SplitConfig::default();
        c.validate().unwrap();
        assert_eq!(c.split_size(), 256 << 20);
        assert_eq!(c.max_size(), 384 << 20);
        assert_eq!(c.split_keys(), 2_560_000);
        assert_eq!(c.max_keys(), 3_840_000);
    }

    #[test]
    fn explicit_values_win_and_are_checked() {
        let c =
            SplitConfig { region_max_size: Some(ReadableSize::mib(100)), ..SplitConfig::default() };
        let err = c.validate().unwrap_err();
        assert!(matches!(err, ConfigError::Conflict { .. }), "{err}");
        let c = SplitConfig::with_split_size(ReadableSize::kib(64));
        c.validate().unwrap();
        assert_eq!(c.max_size(), 96 << 10);
        assert_eq!(c.split_keys(), 625);
    }
}
