//! Opening a RocksDB instance with our options and column families.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};
use slog::{info, Logger};

use crate::config::RocksDbConfig;
use crate::error::OpenError;

/// Validates `cfg` and opens (or, if allowed, creates) the database at `path` with exactly the
/// CFs `cfs`, creating missing ones when `create-if-missing` is set. `tune_cf` may add to each
/// CF's options (given the CF name) what `cfg` does not cover; `extra_db_options` (RocksDB's
/// `key=value;...` option string, usually empty) adds DB options.
pub(crate) fn open_db(
    path: &Path,
    cfg: &RocksDbConfig,
    cfs: &[&str],
    tune_cf: impl Fn(&str, &mut Options),
    extra_db_options: &str,
    what: &'static str,
    logger: &Logger,
) -> Result<Arc<DB>, OpenError> {
    cfg.validate()?;
    let mut db_options = cfg.db_options();
    if !extra_db_options.is_empty() {
        db_options = db_options
            .get_options_from_string(extra_db_options)
            .map_err(|e| OpenError::Open { path: path.to_path_buf(), message: e.into_string() })?;
    }
    let cache = cfg.block_cache();
    let descriptors = cfs.iter().map(|name| {
        let mut opts = cfg.cf_options(&cache);
        tune_cf(name, &mut opts);
        ColumnFamilyDescriptor::new(*name, opts)
    });
    let db = DB::open_cf_descriptors(&db_options, path, descriptors)
        .map_err(|e| OpenError::Open { path: path.to_path_buf(), message: e.into_string() })?;
    info!(logger, "opened RocksDB"; "engine" => what, "path" => %path.display(), "cfs" => ?cfs);
    Ok(Arc::new(db))
}
