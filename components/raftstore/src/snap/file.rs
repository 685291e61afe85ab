//! Names and bytes of snapshot files in the snap directory: naming and parsing, the meta file's
//! format, checksums, and the write-then-rename discipline.
//!
//! Names (`{key}` is `{region}_{term}_{index}`, see [`SnapKey`]):
//! ```text
//! gen_{key}_{cf}.sst   rev_{key}_{cf}.sst   one CF's data (an SST file), absent for an empty CF
//! gen_{key}.meta       rev_{key}.meta       the snapshot's SnapshotMeta; present = complete
//! <name>.tmp                                being written; never read, deleted at start
//! rev_{key}_{cf}.sst.clone                  a hard link of a received file, being ingested
//! ```
//!
//! Invariants:
//! 1. A name without `.tmp` or `.clone` is a complete file: every file is written as
//!    `<name>.tmp`, fsynced, and only then renamed to `<name>` ([`publish`]); a rename is
//!    atomic, so a crash leaves either the whole file or a `.tmp` that start-up deletes.
//! 2. The meta file is a 4-byte little-endian crc32 of the body followed by the body, the
//!    prost encoding of `raft_serverpb.SnapshotMeta`; a meta that fails its crc or decode, or
//!    is larger than [`META_BYTES_MAX`], is `Corrupted`, never trusted.
//! 3. CF names contain no `_` and no `.`, so names parse back unambiguously.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use engine_traits::DATA_CFS;
use prost::Message;
use proto::raft_serverpb::SnapshotMeta;
use util::{LogIndex, RegionId, Term};

use crate::snap::error::{io_error, Error, Result};
use crate::snap::{Side, SnapKey};

/// Suffix of a file being written.
pub(crate) const TMP_SUFFIX: &str = ".tmp";
/// Suffix of a hard link made for ingestion (RocksDB moves it into the engine).
pub(crate) const CLONE_SUFFIX: &str = ".clone";
const SST_SUFFIX: &str = ".sst";
const META_SUFFIX: &str = ".meta";
/// A meta file larger than this is corrupted: a real one is a few hundred bytes.
pub(crate) const META_BYTES_MAX: u64 = 64 * 1024;
/// Buffer for reading files back to checksum them: what a check holds in memory.
const READ_BUF_BYTES: usize = 64 * 1024;

/// What a file in the snap directory is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedName {
    pub(crate) side: Side,
    pub(crate) key: SnapKey,
    /// The CF of a data file; `None` for the meta file.
    pub(crate) cf: Option<String>,
    /// A `.tmp` or `.clone` file: never part of a complete snapshot.
    pub(crate) transient: bool,
}

/// The base name of every file of `key` on `side`: `gen_1_2_3`.
fn stem(side: Side, key: SnapKey) -> String {
    format!("{}_{}_{}_{}", side.prefix(), key.region_id, key.term, key.index)
}

/// The data file of `cf`.
pub(crate) fn cf_file_path(dir: &Path, side: Side, key: SnapKey, cf: &str) -> PathBuf {
    dir.join(format!("{}_{cf}{SST_SUFFIX}", stem(side, key)))
}

/// The meta file.
pub(crate) fn meta_file_path(dir: &Path, side: Side, key: SnapKey) -> PathBuf {
    dir.join(format!("{}{META_SUFFIX}", stem(side, key)))
}

/// `path` with `suffix` appended to its file name.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Every path a snapshot may have on `side`, the meta first. Deleting in this order keeps the
/// rule that a snapshot whose meta exists is complete (`snap/mod.rs`, invariant 2).
pub(crate) fn all_paths(dir: &Path, side: Side, key: SnapKey) -> Vec<PathBuf> {
    let meta = meta_file_path(dir, side, key);
    let meta_tmp = with_suffix(&meta, TMP_SUFFIX);
    let mut paths = vec![meta, meta_tmp];
    for cf in DATA_CFS {
        let path = cf_file_path(dir, side, key, cf);
        paths.push(with_suffix(&path, TMP_SUFFIX));
        paths.push(with_suffix(&path, CLONE_SUFFIX));
        paths.push(path);
    }
    paths
}

/// Parses a file name of the snap directory; `None` for anything this module did not name.
pub(crate) fn parse_name(name: &str) -> Option<ParsedName> {
    let (name, transient) =
        match name.strip_suffix(TMP_SUFFIX).or_else(|| name.strip_suffix(CLONE_SUFFIX)) {
            Some(base) => (base, true),
            None => (name, false),
        };
    let (body, is_meta) = if let Some(body) = name.strip_suffix(META_SUFFIX) {
        (body, true)
    } else {
        (name.strip_suffix(SST_SUFFIX)?, false)
    };
    let mut parts = body.split('_');
    let side = match parts.next()? {
        "gen" => Side::Gen,
        "rev" => Side::Rev,
        _ => return None,
    };
    let mut number = || parts.next()?.parse::<u64>().ok();
    let key = SnapKey {
        region_id: RegionId(number()?),
        term: Term(number()?),
        index: LogIndex(number()?),
    };
    let cf = if is_meta {
        None
    } else {
        let cf = parts.next().filter(|cf| !cf.is_empty() && !cf.contains('.'))?;
        Some(cf.to_owned())
    };
    if parts.next().is_some() {
        return None;
    }
    Some(ParsedName { side, key, cf, transient })
}

/// Makes a finished `.tmp` file durable under its final name (invariant 1): fsync the file,
/// rename, fsync the directory.
pub(crate) fn publish(tmp: &Path, path: &Path) -> Result<()> {
    File::open(tmp).and_then(|f| f.sync_all()).map_err(io_error("sync", tmp))?;
    fs::rename(tmp, path).map_err(io_error("rename", tmp))?;
    sync_dir(path)
}

/// Fsyncs the directory holding `path`, making a rename or create in it durable.
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error("sync directory", dir))
}

/// Writes `meta` to `path` through a `.tmp` file (invariants 1 and 2).
pub(crate) fn write_meta(path: &Path, meta: &SnapshotMeta) -> Result<()> {
    let body = meta.encode_to_vec();
    let mut bytes = Vec::with_capacity(4 + body.len());
    bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    let tmp = with_suffix(path, TMP_SUFFIX);
    File::create(&tmp).and_then(|mut f| f.write_all(&bytes)).map_err(io_error("write", &tmp))?;
    publish(&tmp, path)
}

/// Reads a meta file written by [`write_meta`], checking it (invariant 2).
pub(crate) fn read_meta(path: &Path) -> Result<SnapshotMeta> {
    let corrupted = |reason: String| Error::Corrupted { path: path.to_path_buf(), reason };
    let file = File::open(path).map_err(io_error("open", path))?;
    let mut bytes = Vec::new();
    file.take(META_BYTES_MAX + 1).read_to_end(&mut bytes).map_err(io_error("read", path))?;
    if bytes.len() as u64 > META_BYTES_MAX {
        return Err(corrupted(format!("meta file larger than {META_BYTES_MAX} bytes")));
    }
    let Some((crc, body)) = bytes.split_first_chunk::<4>() else {
        return Err(corrupted(format!("meta file of {} bytes has no checksum", bytes.len())));
    };
    let (stored, actual) = (u32::from_le_bytes(*crc), crc32fast::hash(body));
    if stored != actual {
        return Err(corrupted(format!("meta crc32 {actual:#010x}, stored {stored:#010x}")));
    }
    SnapshotMeta::decode(body).map_err(|e| corrupted(format!("meta does not decode: {e}")))
}

/// Size and crc32 of the file at `path`, read in bounded chunks; `on_read` sees each chunk's
/// length (for rate limiting).
pub(crate) fn file_size_and_crc32(path: &Path, mut on_read: impl FnMut(u64)) -> Result<(u64, u32)> {
    let mut file = File::open(path).map_err(io_error("open", path))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0; READ_BUF_BYTES];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error("read", path)(e)),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
        on_read(n as u64);
    }
    Ok((size, hasher.finalize()))
}

/// Checks the file at `path` against the size and crc32 its meta declares.
pub(crate) fn verify_file(path: &Path, size: u64, checksum: u32) -> Result<()> {
    let (actual_size, actual_crc) = file_size_and_crc32(path, |_| {})?;
    check_size(path, size, actual_size)?;
    check_crc32(path, checksum, actual_crc)
}

/// `Corrupted` unless the file at `path` has the `declared` size.
pub(crate) fn check_size(path: &Path, declared: u64, actual: u64) -> Result<()> {
    if actual == declared {
        return Ok(());
    }
    let reason = format!("{actual} bytes, the meta declares {declared}");
    Err(Error::Corrupted { path: path.to_path_buf(), reason })
}

/// `Corrupted` unless the file at `path` has the `declared` crc32.
pub(crate) fn check_crc32(path: &Path, declared: u32, actual: u32) -> Result<()> {
    if actual == declared {
        return Ok(());
    }
    let reason = format!("crc32 {actual:#010x}, the meta declares {declared:#010x}");
    Err(Error::Corrupted { path: path.to_path_buf(), reason })
}

/// Deletes `path` if it exists; returns the bytes freed (`None` if there was no file).
pub(crate) fn remove_file(path: &Path) -> Result<Option<u64>> {
    let size = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("stat", path)(e)),
    };
    match fs::remove_file(path) {
        Ok(()) => Ok(Some(size)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("delete", path)(e)),
    }
}

/// Checks what a meta says about its CF files before anything is written or read for it:
/// every CF is a data CF, named once. `path` names the meta in errors.
pub(crate) fn validate_meta(path: &Path, meta: &SnapshotMeta) -> Result<()> {
    for (i, file) in meta.cf_files.iter().enumerate() {
        if !DATA_CFS.contains(&file.cf.as_str()) {
            let reason = format!("meta names CF {:?}, not a data CF", file.cf);
            return Err(Error::Corrupted { path: path.to_path_buf(), reason });
        }
        if meta.cf_files[..i].iter().any(|f| f.cf == file.cf) {
            let reason = format!("meta names CF {:?} twice", file.cf);
            return Err(Error::Corrupted { path: path.to_path_buf(), reason });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(r: u64, t: u64, i: u64) -> SnapKey {
        SnapKey { region_id: RegionId(r), term: Term(t), index: LogIndex(i) }
    }

    #[test]
    fn names_parse_back() {
        let dir = Path::new("/snap");
        let k = key(7, 3, 42);
        let name = |p: PathBuf| p.file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(name(cf_file_path(dir, Side::Gen, k, "write")), "gen_7_3_42_write.sst");
        assert_eq!(name(meta_file_path(dir, Side::Rev, k)), "rev_7_3_42.meta");
        for side in [Side::Gen, Side::Rev] {
            for path in all_paths(dir, side, k) {
                let parsed = parse_name(&name(path.clone())).unwrap();
                assert_eq!((parsed.side, parsed.key), (side, k), "{path:?}");
                let n = name(path);
                assert_eq!(parsed.transient, n.ends_with(".tmp") || n.ends_with(".clone"));
                assert_eq!(parsed.cf.is_none(), n.contains(".meta"), "{n}");
            }
        }
        assert_eq!(all_paths(dir, Side::Rev, k)[0], meta_file_path(dir, Side::Rev, k));
    }

    #[test]
    fn foreign_names_are_not_ours() {
        for name in [
            "LOCK",
            "gen_1_2_3",
            "gen_1_2.meta",
            "gen_1_2_3_4.meta",
            "gen_x_2_3.meta",
            "gen_1_2_3_.sst",
            "gen_1_2_3_default_x.sst",
            "foo_1_2_3.meta",
            "gen_1_2_3_default.sst.bak",
        ] {
            assert_eq!(parse_name(name), None, "{name}");
        }
    }

    #[test]
    fn meta_round_trips_and_rot_is_detected() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("gen_1_1_1.meta");
        let meta = SnapshotMeta {
            cf_files: vec![proto::raft_serverpb::SnapshotCfFile {
                cf: "default".into(),
                size: 10,
                checksum: 7,
            }],
            start: 5,
            ..Default::default()
        };
        write_meta(&path, &meta).unwrap();
        assert_eq!(read_meta(&path).unwrap(), meta);
        assert!(!with_suffix(&path, TMP_SUFFIX).exists());

        let mut bytes = fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(read_meta(&path), Err(Error::Corrupted { .. })));
        fs::write(&path, [1, 2]).unwrap();
        assert!(matches!(read_meta(&path), Err(Error::Corrupted { .. })));
        fs::write(&path, vec![0; META_BYTES_MAX as usize + 1]).unwrap();
        assert!(matches!(read_meta(&path), Err(Error::Corrupted { .. })));
    }

    #[test]
    fn metas_naming_other_cfs_are_refused() {
        let file =
            |cf: &str| proto::raft_serverpb::SnapshotCfFile { cf: cf.into(), size: 1, checksum: 1 };
        let meta = |cfs: &[&str]| SnapshotMeta {
            cf_files: cfs.iter().map(|cf| file(cf)).collect(),
            ..Default::default()
        };
        let p = Path::new("m");
        validate_meta(p, &meta(&["default", "lock", "write"])).unwrap();
        validate_meta(p, &meta(&[])).unwrap();
        assert!(validate_meta(p, &meta(&["raft"])).is_err());
        assert!(validate_meta(p, &meta(&["../x"])).is_err());
        assert!(validate_meta(p, &meta(&["lock", "lock"])).is_err());
    }
}
