//! Opening a RocksDB instance with our options and column families.

use std::path::Path;
use std::sync::Arc;

use engine_traits::CfName;
use rocksdb::{ColumnFamilyDescriptor, Options, DB};
use slog::{info, Logger};

use crate::config::RocksDbConfig;
use crate::error::OpenError;

/// A database just opened, with the options each of its CFs was opened with.
pub(crate) struct OpenedDb {
    pub(crate) db: Arc<DB>,
    /// Per CF, in the order given to [`open_db`]: what an SST writer for the CF must use.
    pub(crate) cf_options: Vec<(CfName, Options)>,
}

/// Validates `cfg` and opens (or, if allowed, creates) the database at `path` with exactly the
/// CFs `cfs`, creating missing ones when `create-if-missing` is set. `tune_cf` may add to each
/// CF's options (given the CF name) what `cfg` does not cover; `extra_db_options` (RocksDB's
/// `key=value;...` option string, usually empty) adds DB options.
pub(crate) fn open_db(
    path: &Path,
    cfg: &RocksDbConfig,
    cfs: &[CfName],
    tune_cf: impl Fn(&str, &mut Options),
    extra_db_options: &str,
    what: &'static str,
    logger: &Logger,
) -> Result<OpenedDb, OpenError> {
    cfg.validate()?;
    let mut db_options = cfg.db_options();
    if !extra_db_options.is_empty() {
        db_options = db_options
            .get_options_from_string(extra_db_options)
            .map_err(|e| OpenError::Open { path: path.to_path_buf(), message: e.into_string() })?;
    }
    let cache = cfg.block_cache();
    let cf_options: Vec<(CfName, Options)> = cfs
        .iter()
        .map(|name| {
            let mut opts = cfg.cf_options(&cache);
            tune_cf(name, &mut opts);
            (*name, opts)
        })
        .collect();
    let descriptors =
        cf_options.iter().map(|(name, opts)| ColumnFamilyDescriptor::new(*name, opts.clone()));
    let db = DB::open_cf_descriptors(&db_options, path, descriptors)
        .map_err(|e| OpenError::Open { path: path.to_path_buf(), message: e.into_string() })?;
    info!(logger, "opened RocksDB"; "engine" => what, "path" => %path.display(), "cfs" => ?cfs);
    Ok(OpenedDb { db: Arc::new(db), cf_options })
}
