//! The byte layout of every key regionstore stores, in both engines.
//!
//! Two key spaces share one ordering:
//!
//! * **Local keys** start with [`LOCAL_PREFIX`] (`0x01`) and hold per-store and per-region
//!   metadata: the store ident, each region's raft log, `RaftLocalState`, `RaftApplyState` and
//!   `RegionLocalState`.
//! * **Data keys** are user keys prefixed with [`DATA_PREFIX`] (`b'z'`).
//!
//! Layout (all integers big-endian so byte order equals numeric order):
//!
//! ```text
//! 0x01 0x01                                  store ident
//! 0x01 0x02 <region_id u64> 0x01 <index u64> raft log entry
//! 0x01 0x02 <region_id u64> 0x02             RaftLocalState
//! 0x01 0x02 <region_id u64> 0x03             RaftApplyState
//! 0x01 0x03 <region_id u64> 0x01             RegionLocalState
//! 'z' <user key>                             data
//! ```
//!
//! Invariants the rest of the system relies on (each has a unit test below):
//! 1. All local keys sort before all data keys (`0x01 < b'z'`), so a scan of data never meets
//!    metadata and [`DATA_MIN_KEY`]..[`DATA_MAX_KEY`] covers exactly the data.
//! 2. One region's raft keys are contiguous: they all lie in
//!    `[region_raft_prefix(r), region_raft_prefix_end(r))` and no other region's keys do.
//! 3. One region's log keys are contiguous and ordered by index, and all of them sort before the
//!    region's `RaftLocalState` key, so [`raft_state_key`] is an exclusive upper bound for a log
//!    scan and a reverse seek from it finds the last entry.
//! 4. This layout is the on-disk format: changing a byte here makes existing stores unreadable.
//!
//! Building keys cannot fail. Parsing (`decode_*`, [`origin_key`]) returns a structured
//! [`Error`] on malformed input because such input comes from disk, not from our own code.

mod error;

pub use error::{Error, Result};
use util::{LogIndex, RegionId};

/// First byte of every local (metadata) key.
pub const LOCAL_PREFIX: u8 = 0x01;
/// The smallest local key; every local key is `>=` this.
pub const LOCAL_MIN_KEY: &[u8] = &[LOCAL_PREFIX];
/// The exclusive upper bound of all local keys.
pub const LOCAL_MAX_KEY: &[u8] = &[LOCAL_PREFIX + 1];

/// Key of the store ident (cluster id + store id), written once at bootstrap.
pub const STORE_IDENT_KEY: &[u8] = &[LOCAL_PREFIX, 0x01];

/// Second byte of per-region raft keys (log, raft state, apply state).
pub const REGION_RAFT_PREFIX: u8 = 0x02;
/// Second byte of per-region meta keys (region state).
pub const REGION_META_PREFIX: u8 = 0x03;

/// Suffix byte of raft log entry keys; followed by the index.
pub const RAFT_LOG_SUFFIX: u8 = 0x01;
/// Suffix byte of the `RaftLocalState` key.
pub const RAFT_STATE_SUFFIX: u8 = 0x02;
/// Suffix byte of the `RaftApplyState` key.
pub const APPLY_STATE_SUFFIX: u8 = 0x03;
/// Suffix byte of the snapshot's copy of the `RaftLocalState` (KV engine, raft CF).
pub const SNAPSHOT_RAFT_STATE_SUFFIX: u8 = 0x04;
/// Suffix byte of the `RegionLocalState` key (under the region meta prefix).
pub const REGION_STATE_SUFFIX: u8 = 0x01;

/// First byte of every data key.
pub const DATA_PREFIX: u8 = b'z';
/// The smallest data key (the encoding of the empty user key).
pub const DATA_MIN_KEY: &[u8] = &[DATA_PREFIX];
/// The exclusive upper bound of all data keys; a region with an empty end key ends here.
pub const DATA_MAX_KEY: &[u8] = &[DATA_PREFIX + 1];

/// Length of `0x01 <kind> <region_id>`.
pub const REGION_PREFIX_LEN: usize = 2 + 8;
/// Length of a raft state, apply state or region state key.
pub const REGION_STATE_KEY_LEN: usize = REGION_PREFIX_LEN + 1;
/// Length of a raft log entry key.
pub const RAFT_LOG_KEY_LEN: usize = REGION_STATE_KEY_LEN + 8;

/// Which per-region raft key a key is, as told by [`decode_region_raft_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaftKey {
    /// A raft log entry at this index.
    Log(LogIndex),
    /// The region's `RaftLocalState`.
    RaftState,
    /// The region's `RaftApplyState`.
    ApplyState,
    /// A copy of the `RaftLocalState` a snapshot set, kept in the KV engine while the
    /// snapshot is applied (the raft engine may not have it yet after a crash).
    SnapshotRaftState,
}

fn region_prefix(kind: u8, region_id: RegionId) -> [u8; REGION_PREFIX_LEN] {
    let mut key = [0; REGION_PREFIX_LEN];
    key[0] = LOCAL_PREFIX;
    key[1] = kind;
    key[2..].copy_from_slice(&region_id.get().to_be_bytes());
    key
}

/// The exclusive end of a region prefix: the prefix of the next region id, or of the next kind
/// for the largest id (which makes the range cover every key of that id too).
fn region_prefix_end(kind: u8, region_id: RegionId) -> [u8; REGION_PREFIX_LEN] {
    match region_id.get().checked_add(1) {
        Some(next) => region_prefix(kind, RegionId(next)),
        None => region_prefix(kind + 1, RegionId(0)),
    }
}

fn suffixed_key(kind: u8, region_id: RegionId, suffix: u8) -> [u8; REGION_STATE_KEY_LEN] {
    let mut key = [0; REGION_STATE_KEY_LEN];
    key[..REGION_PREFIX_LEN].copy_from_slice(&region_prefix(kind, region_id));
    key[REGION_PREFIX_LEN] = suffix;
    key
}

/// `0x01 0x02 <region_id>`: every raft key of the region starts with this.
pub fn region_raft_prefix(region_id: RegionId) -> [u8; REGION_PREFIX_LEN] {
    region_prefix(REGION_RAFT_PREFIX, region_id)
}

/// Exclusive upper bound of all raft keys of the region (invariant 2).
pub fn region_raft_prefix_end(region_id: RegionId) -> [u8; REGION_PREFIX_LEN] {
    region_prefix_end(REGION_RAFT_PREFIX, region_id)
}

/// Key of the raft log entry at `index` of the region.
pub fn raft_log_key(region_id: RegionId, index: LogIndex) -> [u8; RAFT_LOG_KEY_LEN] {
    let mut key = [0; RAFT_LOG_KEY_LEN];
    key[..REGION_STATE_KEY_LEN].copy_from_slice(&suffixed_key(
        REGION_RAFT_PREFIX,
        region_id,
        RAFT_LOG_SUFFIX,
    ));
    key[REGION_STATE_KEY_LEN..].copy_from_slice(&index.get().to_be_bytes());
    key
}

/// `0x01 0x02 <region_id> 0x01`: every log key of the region starts with this, and it is an
/// inclusive lower bound of them.
pub fn raft_log_prefix(region_id: RegionId) -> [u8; REGION_STATE_KEY_LEN] {
    suffixed_key(REGION_RAFT_PREFIX, region_id, RAFT_LOG_SUFFIX)
}

/// Key of the region's `RaftLocalState`. Also the exclusive upper bound of its log keys
/// (invariant 3).
pub fn raft_state_key(region_id: RegionId) -> [u8; REGION_STATE_KEY_LEN] {
    suffixed_key(REGION_RAFT_PREFIX, region_id, RAFT_STATE_SUFFIX)
}

/// Key of the `RaftLocalState` a snapshot being applied set (KV engine's raft CF).
pub fn snapshot_raft_state_key(region_id: RegionId) -> [u8; REGION_STATE_KEY_LEN] {
    suffixed_key(REGION_RAFT_PREFIX, region_id, SNAPSHOT_RAFT_STATE_SUFFIX)
}

/// Key of the region's `RaftApplyState` (stored in the KV engine's raft CF).
pub fn apply_state_key(region_id: RegionId) -> [u8; REGION_STATE_KEY_LEN] {
    suffixed_key(REGION_RAFT_PREFIX, region_id, APPLY_STATE_SUFFIX)
}

/// `0x01 0x03 <region_id>`: every meta key of the region starts with this.
pub fn region_meta_prefix(region_id: RegionId) -> [u8; REGION_PREFIX_LEN] {
    region_prefix(REGION_META_PREFIX, region_id)
}

/// Exclusive upper bound of all meta keys of the region.
pub fn region_meta_prefix_end(region_id: RegionId) -> [u8; REGION_PREFIX_LEN] {
    region_prefix_end(REGION_META_PREFIX, region_id)
}

/// Key of the region's `RegionLocalState` (stored in the KV engine's raft CF).
pub fn region_state_key(region_id: RegionId) -> [u8; REGION_STATE_KEY_LEN] {
    suffixed_key(REGION_META_PREFIX, region_id, REGION_STATE_SUFFIX)
}

fn check_region_key(
    kind: &'static str,
    second: u8,
    key: &[u8],
    min_len: usize,
) -> Result<RegionId> {
    if key.len() < 2 || key[0] != LOCAL_PREFIX || key[1] != second {
        return Err(Error::BadPrefix { kind, key: key.to_vec() });
    }
    if key.len() < min_len {
        return Err(Error::BadLength {
            kind,
            expected: min_len,
            actual: key.len(),
            key: key.to_vec(),
        });
    }
    Ok(RegionId(read_u64(&key[2..REGION_PREFIX_LEN])))
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut buf = [0; 8];
    buf.copy_from_slice(bytes);
    u64::from_be_bytes(buf)
}

/// Parses any per-region raft key (`0x01 0x02 ...`) into its region and kind.
pub fn decode_region_raft_key(key: &[u8]) -> Result<(RegionId, RaftKey)> {
    const KIND: &str = "region raft";
    let region_id = check_region_key(KIND, REGION_RAFT_PREFIX, key, REGION_STATE_KEY_LEN)?;
    let suffix = key[REGION_PREFIX_LEN];
    let (kind, expected_len) = match suffix {
        RAFT_LOG_SUFFIX => (RaftKey::Log(LogIndex(0)), RAFT_LOG_KEY_LEN),
        RAFT_STATE_SUFFIX => (RaftKey::RaftState, REGION_STATE_KEY_LEN),
        APPLY_STATE_SUFFIX => (RaftKey::ApplyState, REGION_STATE_KEY_LEN),
        SNAPSHOT_RAFT_STATE_SUFFIX => (RaftKey::SnapshotRaftState, REGION_STATE_KEY_LEN),
        other => return Err(Error::BadSuffix { kind: KIND, suffix: other, key: key.to_vec() }),
    };
    if key.len() != expected_len {
        return Err(Error::BadLength {
            kind: KIND,
            expected: expected_len,
            actual: key.len(),
            key: key.to_vec(),
        });
    }
    let kind = match kind {
        RaftKey::Log(_) => RaftKey::Log(LogIndex(read_u64(&key[REGION_STATE_KEY_LEN..]))),
        RaftKey::RaftState | RaftKey::ApplyState | RaftKey::SnapshotRaftState => kind,
    };
    Ok((region_id, kind))
}

/// Parses a raft log entry key into its region and index.
pub fn decode_raft_log_key(key: &[u8]) -> Result<(RegionId, LogIndex)> {
    match decode_region_raft_key(key)? {
        (region_id, RaftKey::Log(index)) => Ok((region_id, index)),
        (_, RaftKey::RaftState) => {
            Err(Error::BadSuffix { kind: "raft log", suffix: RAFT_STATE_SUFFIX, key: key.to_vec() })
        }
        (_, RaftKey::ApplyState) => Err(Error::BadSuffix {
            kind: "raft log",
            suffix: APPLY_STATE_SUFFIX,
            key: key.to_vec(),
        }),
        (_, RaftKey::SnapshotRaftState) => Err(Error::BadSuffix {
            kind: "raft log",
            suffix: SNAPSHOT_RAFT_STATE_SUFFIX,
            key: key.to_vec(),
        }),
    }
}

/// Parses a `RegionLocalState` key into its region.
pub fn decode_region_state_key(key: &[u8]) -> Result<RegionId> {
    const KIND: &str = "region state";
    let region_id = check_region_key(KIND, REGION_META_PREFIX, key, REGION_STATE_KEY_LEN)?;
    if key.len() != REGION_STATE_KEY_LEN {
        return Err(Error::BadLength {
            kind: KIND,
            expected: REGION_STATE_KEY_LEN,
            actual: key.len(),
            key: key.to_vec(),
        });
    }
    match key[REGION_PREFIX_LEN] {
        REGION_STATE_SUFFIX => Ok(region_id),
        other => Err(Error::BadSuffix { kind: KIND, suffix: other, key: key.to_vec() }),
    }
}

/// The data key of a user key: `b'z'` followed by the key.
pub fn data_key(key: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(key.len() + 1);
    v.push(DATA_PREFIX);
    v.extend_from_slice(key);
    v
}

/// True if `key` is a data key (starts with `b'z'`).
pub fn is_data_key(key: &[u8]) -> bool {
    key.first() == Some(&DATA_PREFIX)
}

/// The user key inside a data key.
pub fn origin_key(key: &[u8]) -> Result<&[u8]> {
    if !is_data_key(key) {
        return Err(Error::BadPrefix { kind: "data", key: key.to_vec() });
    }
    Ok(&key[1..])
}

/// The data key where a region starting at user key `start` starts.
pub fn enc_start_key(start: &[u8]) -> Vec<u8> {
    data_key(start)
}

/// The exclusive data key where a region ending at user key `end` ends; the empty end key
/// (“to infinity”) maps to [`DATA_MAX_KEY`] so that range bounds stay finite.
pub fn enc_end_key(end: &[u8]) -> Vec<u8> {
    if end.is_empty() {
        DATA_MAX_KEY.to_vec()
    } else {
        data_key(end)
    }
}

/// The inverse of [`enc_end_key`]: [`DATA_MAX_KEY`] maps back to the empty end key.
pub fn origin_end_key(key: &[u8]) -> Result<&[u8]> {
    if key == DATA_MAX_KEY {
        Ok(&[])
    } else {
        origin_key(key)
    }
}

#[cfg(test)]
mod tests;
