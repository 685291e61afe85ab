//! Opening a RocksDB instance with our options and column families.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, DB};
use slog::{info, Logger};

use crate::config::RocksDbConfig;
use crate::error::OpenError;

/// Validates `cfg` and opens (or, if allowed, creates) the database at `path` with exactly the
/// CFs `cfs`, creating missing ones when `create-if-missing` is set.
pub(crate) fn open_db(
    path: &Path,
    cfg: &RocksDbConfig,
    cfs: &[&str],
    what: &'static str,
    logger: &Logger,
) -> Result<Arc<DB>, OpenError> {
    cfg.validate()?;
    let cache = cfg.block_cache();
    let descriptors =
        cfs.iter().map(|name| ColumnFamilyDescriptor::new(*name, cfg.cf_options(&cache)));
    let db = DB::open_cf_descriptors(&cfg.db_options(), path, descriptors)
        .map_err(|e| OpenError::Open { path: path.to_path_buf(), message: e.into_string() })?;
    info!(logger, "opened RocksDB"; "engine" => what, "path" => %path.display(), "cfs" => ?cfs);
    Ok(Arc::new(db))
}
