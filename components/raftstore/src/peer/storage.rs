//! `PeerStorage`: raft-rs' `Storage` over the shared engines, for one region.
//!
//! What lives where:
//! - raft engine: the log entries and `RaftLocalState` (hard state + last index), written by
//!   the store poller's one batch per round.
//! - KV engine, `raft` CF: `RegionLocalState` (the region and whether this peer is live) and
//!   `RaftApplyState` (applied index, truncated log position), written by the apply poller in
//!   the same batch as the data they describe.
//!
//! Invariants (asserted at load and on every update):
//! 1. `truncated.index <= applied <= commit <= last_index`.
//! 2. `last_index`/`last_term` here describe the log as it will be once the round's batch is
//!    consumed. Raft only reads persisted entries through this trait (unpersisted ones are in
//!    its unstable log), and the batch is consumed before `advance_append`, so reads never
//!    race the batch.
//! 3. The entry cache holds a contiguous suffix of the log, never anything beyond `last_index`.
//! 4. The raft engine holds every entry in `truncated.index + 1 ..= last_index` (it may hold
//!    garbage below, which nothing reads): log GC deletes entries only below a truncated index
//!    the KV engine has made durable (`log_gc`). Checked at load, so a log compacted past the
//!    KV engine's state is a clear error, not a hole raft stumbles into.

use std::cell::RefCell;
use std::collections::VecDeque;

use engine_traits::{KvEngine, RaftEngine, RaftLogBatch, CF_RAFT};
use proto::metapb;
use proto::raft_serverpb::{RaftApplyState, RaftLocalState, RaftTruncatedState, RegionLocalState};
use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use slog::{warn, Logger};
use util::{LogIndex, RegionId, Term};

use crate::error::{Error, Result};
use crate::util::conf_state_from_region;

/// The log position every bootstrapped region starts at. Greater than zero so that a peer
/// created later by a raft message (index 0) is distinguishable from a bootstrapped one.
pub const RAFT_INIT_LOG_INDEX: u64 = 5;
pub const RAFT_INIT_LOG_TERM: u64 = 5;

/// Entries kept in memory per region for replication; beyond it followers read RocksDB.
const ENTRY_CACHE_ENTRIES_MAX: usize = 512;
const ENTRY_CACHE_BYTES_MAX: usize = 1 << 20;

/// Both engines of a store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Engines<EK, ER> {
    pub kv: EK,
    pub raft: ER,
}

impl<EK, ER> Engines<EK, ER> {
    pub fn new(kv: EK, raft: ER) -> Self {
        Engines { kv, raft }
    }
}

pub fn decode_hard_state(state: &RaftLocalState) -> Result<HardState> {
    let mut hs = HardState::default();
    if !state.hard_state.is_empty() {
        hs.merge_from_bytes(&state.hard_state).map_err(|e| {
            Error::Engine(engine_traits::Error::Corrupted { what: format!("hard state: {e}") })
        })?;
    }
    Ok(hs)
}

pub fn encode_raft_state(hs: &HardState, last_index: LogIndex) -> RaftLocalState {
    RaftLocalState {
        hard_state: hs.write_to_bytes().expect("encoding a HardState cannot fail"),
        last_index: last_index.get(),
    }
}

/// Where snapshot generation for raft stands (`peer::snapshot`). Raft asks for a snapshot
/// through [`raft::Storage::snapshot`], which can only answer "ready" or "not yet": the
/// request is recorded here, the peer turns it into a task for its apply FSM (which takes
/// the KV snapshot at exactly its applied index), and the generator's answer comes back on a
/// channel that the next request reads.
#[derive(Default)]
pub enum GenState {
    #[default]
    Idle,
    /// Raft asked; the peer has not handed the task to its apply FSM yet.
    Requested,
    /// The generator works on it; `None` on the channel means it failed.
    Generating(crossbeam_channel::Receiver<Option<Snapshot>>),
    /// Generated: handed to raft while it is recent enough (see `snapshot`).
    Ready(Snapshot),
}

/// Raft's storage for one region.
pub struct PeerStorage<EK, ER> {
    engines: Engines<EK, ER>,
    region_id: RegionId,
    region: metapb::Region,
    hard_state: HardState,
    last_index: LogIndex,
    last_term: Term,
    apply_state: RaftApplyState,
    cache: VecDeque<Entry>,
    cache_bytes: usize,
    /// Approximate bytes of the entries in the log (for `raft-log-gc-size-limit`): what was
    /// appended since start-up, scaled down at each compaction. Starts at 0 after a restart,
    /// when the count limit still bounds the log.
    log_bytes: u64,
    /// Snapshot generation (interior mutability: raft asks through `&self`).
    gen: RefCell<GenState>,
    logger: Logger,
}

impl<EK: KvEngine, ER: RaftEngine> PeerStorage<EK, ER> {
    /// Loads the region's persisted state. Errors if the state is missing or violates
    /// invariant 1 (corruption: the store must not start this peer).
    pub fn load(engines: Engines<EK, ER>, region: metapb::Region, logger: Logger) -> Result<Self> {
        let region_id = RegionId(region.id);
        let corrupted = |what: String| Error::Engine(engine_traits::Error::Corrupted { what });
        let apply_state: RaftApplyState = engines
            .kv
            .get_msg_cf(CF_RAFT, &keys::apply_state_key(region_id))?
            .ok_or_else(|| corrupted(format!("region {region_id}: no apply state")))?;
        let raft_state = engines.raft.get_raft_state(region_id)?;
        // A region whose snapshot was being applied: the raft state that snapshot set is also
        // in the KV engine, for a crash before the raft engine had it (`peer::snapshot`).
        let snapshot_state: Option<RaftLocalState> =
            engines.kv.get_msg_cf(CF_RAFT, &keys::snapshot_raft_state_key(region_id))?;
        let raft_state = match (raft_state, snapshot_state) {
            (Some(r), Some(s)) if s.last_index > r.last_index => Some(s),
            (None, Some(s)) => Some(s),
            (r, _) => r,
        };
        let raft_state = match raft_state {
            // An uninitialized peer of a region a split here now creates (`store::fsm`) left
            // its term and vote, and no log: the region starts at the initial index, keeping
            // a newer term and the vote that goes with it.
            Some(state) if state.last_index == 0 && apply_state == initial_apply_state() => {
                let mut hs = decode_hard_state(&state)?;
                if hs.term < RAFT_INIT_LOG_TERM {
                    hs.term = RAFT_INIT_LOG_TERM;
                    hs.vote = 0;
                }
                hs.commit = RAFT_INIT_LOG_INDEX;
                encode_raft_state(&hs, LogIndex(RAFT_INIT_LOG_INDEX))
            }
            Some(state) => state,
            // A region created by a split: its apply state was written with the split, its
            // raft state is written by its first ready. Until then it is the initial one.
            None if apply_state == initial_apply_state() => {
                let mut hs = HardState::default();
                hs.term = RAFT_INIT_LOG_TERM;
                hs.commit = RAFT_INIT_LOG_INDEX;
                encode_raft_state(&hs, LogIndex(RAFT_INIT_LOG_INDEX))
            }
            None => return Err(corrupted(format!("region {region_id}: no raft state"))),
        };
        let mut hard_state = decode_hard_state(&raft_state)?;
        // The commit index is persisted lazily (see `Peer::post_persist`); what was applied
        // was committed.
        hard_state.commit = hard_state.commit.max(apply_state.applied_index);
        let last_index = LogIndex(raft_state.last_index);
        let truncated = apply_state.truncated_state.unwrap_or_default();
        let applied = apply_state.applied_index;
        if !(truncated.index <= applied
            && applied <= hard_state.commit
            && hard_state.commit <= last_index.get())
        {
            return Err(corrupted(format!(
                "region {region_id}: truncated {} applied {applied} commit {} last {last_index}",
                truncated.index, hard_state.commit
            )));
        }
        let last_term = if last_index.get() == truncated.index {
            Term(truncated.term)
        } else {
            // Invariant 4: the log starts at or before the first index the apply state needs.
            let first = engines.raft.first_index(region_id)?;
            if first.is_none_or(|f| f.get() > truncated.index + 1) {
                return Err(corrupted(format!(
                    "region {region_id}: the raft log starts at {first:?}, but the KV engine \
                     needs it from {} (compacted past what the KV engine holds)",
                    truncated.index + 1
                )));
            }
            engines.raft.term(region_id, last_index)?.ok_or_else(|| {
                corrupted(format!("region {region_id}: last entry {last_index} missing"))
            })?
        };
        Ok(PeerStorage {
            engines,
            region_id,
            region,
            hard_state,
            last_index,
            last_term,
            apply_state,
            cache: VecDeque::new(),
            cache_bytes: 0,
            log_bytes: 0,
            gen: RefCell::new(GenState::Idle),
            logger,
        })
    }

    /// The storage of an uninitialized peer: created by a raft message for a region this
    /// store has no state of (`store::fsm`), with no range, no data and no log until a
    /// snapshot arrives. Its term and vote are persisted like any peer's (by its readies) and
    /// taken back here when the peer is created again after a restart.
    pub fn new_uninitialized(
        engines: Engines<EK, ER>,
        region: metapb::Region,
        logger: Logger,
    ) -> Result<Self> {
        let region_id = RegionId(region.id);
        let mut hard_state = match engines.raft.get_raft_state(region_id)? {
            Some(state) => decode_hard_state(&state)?,
            None => HardState::default(),
        };
        // No entry can be here: a peer takes entries only after its first snapshot, which
        // makes it initialized (and writes its region state).
        hard_state.commit = 0;
        Ok(PeerStorage {
            engines,
            region_id,
            region,
            hard_state,
            last_index: LogIndex(0),
            last_term: Term(0),
            apply_state: RaftApplyState::default(),
            cache: VecDeque::new(),
            cache_bytes: 0,
            log_bytes: 0,
            gen: RefCell::new(GenState::Idle),
            logger,
        })
    }

    /// A snapshot was persisted (`peer::snapshot`, step 5): the log now starts after it, the
    /// region is the snapshot's, and the apply state is at its index.
    pub fn on_snapshot(
        &mut self,
        region: metapb::Region,
        apply_state: RaftApplyState,
        hard_state: HardState,
        term: Term,
    ) {
        self.last_index = LogIndex(apply_state.applied_index);
        self.last_term = term;
        self.hard_state = hard_state;
        self.apply_state = apply_state;
        self.region = region;
        self.cache.clear();
        self.cache_bytes = 0;
        self.log_bytes = 0;
        *self.gen.get_mut() = GenState::Idle;
    }

    /// Takes raft's request for a snapshot, if it made one since the last call; the caller
    /// MUST start a generation and report its channel with [`PeerStorage::set_generating`].
    pub fn take_gen_request(&mut self) -> bool {
        let gen = self.gen.get_mut();
        if matches!(gen, GenState::Requested) {
            *gen = GenState::Idle;
            return true;
        }
        false
    }

    /// Forgets a generated snapshot (a send of it failed); raft's next request regenerates.
    pub fn drop_generated_snapshot(&mut self) {
        let gen = self.gen.get_mut();
        if matches!(gen, GenState::Ready(_)) {
            *gen = GenState::Idle;
        }
    }

    pub fn set_generating(&mut self, rx: crossbeam_channel::Receiver<Option<Snapshot>>) {
        *self.gen.get_mut() = GenState::Generating(rx);
    }

    fn snapshot_usable(&self, snap: &Snapshot, request_index: u64) -> bool {
        let meta = snap.get_metadata();
        let conf_ver = self.region.region_epoch.unwrap_or_default().conf_ver;
        meta.index >= request_index.max(self.truncated().index)
            && snapshot_conf_ver(snap).is_some_and(|v| v >= conf_ver)
    }

    /// Whether the peer has the region's range and data (not waiting for a first snapshot).
    pub fn is_initialized(&self) -> bool {
        !self.region.peers.is_empty()
    }

    pub fn region(&self) -> &metapb::Region {
        &self.region
    }

    pub fn set_region(&mut self, region: metapb::Region) {
        self.region = region;
    }

    pub fn engines(&self) -> &Engines<EK, ER> {
        &self.engines
    }

    pub fn applied_index(&self) -> LogIndex {
        LogIndex(self.apply_state.applied_index)
    }

    pub fn apply_state(&self) -> &RaftApplyState {
        &self.apply_state
    }

    pub fn commit_index(&self) -> LogIndex {
        LogIndex(self.hard_state.commit)
    }

    pub fn last_index(&self) -> LogIndex {
        self.last_index
    }

    pub fn truncated(&self) -> RaftTruncatedState {
        self.apply_state.truncated_state.unwrap_or_default()
    }

    /// The first index of the log (raft's view: everything before is compacted).
    pub fn first_log_index(&self) -> LogIndex {
        LogIndex(self.truncated().index + 1)
    }

    /// Approximate bytes of the log's entries (see `log_bytes`).
    pub fn log_bytes(&self) -> u64 {
        self.log_bytes
    }

    /// The log was compacted to `truncated` (applied; the apply state that records it
    /// arrives with [`PeerStorage::on_applied`]): drops cached entries it covers and scales
    /// the size estimate by the entries left.
    pub fn on_compacted(&mut self, truncated: RaftTruncatedState) {
        let before = self.last_index.get().saturating_sub(self.truncated().index);
        let left = self.last_index.get().saturating_sub(truncated.index);
        if before > 0 {
            self.log_bytes = (self.log_bytes as u128 * left as u128 / before as u128) as u64;
        }
        self.drop_cached_to(truncated.index);
    }

    /// Records what the apply FSM applied (invariant 1 is asserted).
    pub fn on_applied(&mut self, apply_state: RaftApplyState) {
        assert!(
            apply_state.applied_index >= self.apply_state.applied_index,
            "region {}: applied index went back from {} to {}",
            self.region_id,
            self.apply_state.applied_index,
            apply_state.applied_index
        );
        self.apply_state = apply_state;
        self.compact_cache_to(self.apply_state.applied_index);
    }

    /// Puts a ready's entries and hard state into the round's raft batch, and updates the
    /// in-memory view (invariant 2).
    pub fn append_ready(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        batch: &mut ER::LogBatch,
    ) -> Result<()> {
        if let Some(first) = entries.first() {
            let last = entries.last().expect("non-empty");
            let overwrite_to = (self.last_index.get() > last.index).then_some(self.last_index);
            assert!(
                first.index <= self.last_index.get() + 1,
                "region {}: append at {} leaves a hole after {}",
                self.region_id,
                first.index,
                self.last_index
            );
            batch.append(self.region_id, entries, overwrite_to)?;
            self.log_bytes += entries.iter().map(|e| e.data.len() as u64).sum::<u64>();
            self.cache_append(entries);
            self.last_index = LogIndex(last.index);
            self.last_term = Term(last.term);
        }
        if let Some(hs) = hard_state {
            self.hard_state = hs.clone();
        }
        if !entries.is_empty() || hard_state.is_some() {
            batch.put_raft_state(
                self.region_id,
                &encode_raft_state(&self.hard_state, self.last_index),
            );
        }
        Ok(())
    }

    fn cache_append(&mut self, entries: &[Entry]) {
        let first = entries[0].index;
        // Drop the overwritten suffix.
        while self.cache.back().is_some_and(|e| e.index >= first) {
            let e = self.cache.pop_back().expect("non-empty");
            self.cache_bytes -= e.compute_size() as usize;
        }
        if self.cache.back().is_some_and(|e| e.index + 1 != first) {
            self.cache.clear();
            self.cache_bytes = 0;
        }
        for e in entries {
            self.cache_bytes += e.compute_size() as usize;
            self.cache.push_back(e.clone());
        }
        while self.cache.len() > ENTRY_CACHE_ENTRIES_MAX || self.cache_bytes > ENTRY_CACHE_BYTES_MAX
        {
            let e = self.cache.pop_front().expect("over the bound means non-empty");
            self.cache_bytes -= e.compute_size() as usize;
        }
    }

    /// Drops cached entries up to `index` once the cache is half full; applied entries are
    /// mostly replicated already, and a lagging follower can read them from RocksDB.
    fn compact_cache_to(&mut self, index: u64) {
        if self.cache.len() < ENTRY_CACHE_ENTRIES_MAX / 2 {
            return;
        }
        self.drop_cached_to(index);
    }

    /// Drops the cached entries at or below `index`.
    fn drop_cached_to(&mut self, index: u64) {
        let n = self.cache.iter().take_while(|e| e.index <= index).count();
        for e in self.cache.drain(..n) {
            self.cache_bytes -= e.compute_size() as usize;
        }
    }

    fn storage_error(&self, e: Error) -> raft::Error {
        warn!(self.logger, "raft storage read failed"; "err" => %e);
        raft::Error::Store(StorageError::Other(Box::new(e)))
    }
}

impl<EK: KvEngine, ER: RaftEngine> raft::Storage for PeerStorage<EK, ER> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state.clone(), conf_state_from_region(&self.region)))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        if low <= self.truncated().index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index.get() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut out = Vec::with_capacity((high - low) as usize);
        if low >= high {
            return Ok(out);
        }
        let cache_first = self.cache.front().map(|e| e.index);
        let mut next = low;
        let mut size = 0u64;
        if cache_first.is_none_or(|f| low < f) {
            let engine_high = cache_first.map_or(high, |f| f.min(high));
            self.engines
                .raft
                .fetch_entries_to(
                    self.region_id,
                    LogIndex(low),
                    LogIndex(engine_high),
                    max_size,
                    &mut out,
                )
                .map_err(|e| self.storage_error(e.into()))?;
            size = out.iter().map(|e| e.compute_size() as u64).sum();
            next = low + out.len() as u64;
            if next < engine_high {
                return Ok(out); // the size limit was reached
            }
        }
        if let Some(first) = cache_first {
            for e in self.cache.iter().skip((next - first) as usize) {
                if e.index >= high {
                    break;
                }
                size += e.compute_size() as u64;
                if !out.is_empty() && max_size.is_some_and(|m| size > m) {
                    break;
                }
                out.push(e.clone());
            }
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let truncated = self.truncated();
        if idx == truncated.index {
            return Ok(truncated.term);
        }
        if idx < truncated.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last_index.get() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        if idx == self.last_index.get() {
            return Ok(self.last_term.get());
        }
        if let Some(first) = self.cache.front().map(|e| e.index) {
            if idx >= first {
                return Ok(self.cache[(idx - first) as usize].term);
            }
        }
        match self.engines.raft.term(self.region_id, LogIndex(idx)) {
            Ok(Some(t)) => Ok(t.get()),
            Ok(None) => Err(raft::Error::Store(StorageError::Unavailable)),
            Err(e) => Err(self.storage_error(e.into())),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.truncated().index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index.get())
    }

    /// A generated snapshot if one is ready and still usable, else "temporarily unavailable"
    /// (raft retries on its next contact with the follower). MUST NOT return any other
    /// error: raft-rs aborts on one. Usable means: at or after `request_index` and the
    /// truncated index (the follower needs the log right after it), and of the region's
    /// current membership (a snapshot's conf state is what the follower restarts raft with).
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let mut gen = self.gen.borrow_mut();
        if let GenState::Generating(rx) = &*gen {
            match rx.try_recv() {
                Ok(Some(snap)) => *gen = GenState::Ready(snap),
                Ok(None) | Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    *gen = GenState::Idle
                }
                Err(crossbeam_channel::TryRecvError::Empty) => {}
            }
        }
        match &*gen {
            GenState::Ready(snap) if self.snapshot_usable(snap, request_index) => {
                return Ok(snap.clone());
            }
            GenState::Ready(_) | GenState::Idle => *gen = GenState::Requested,
            GenState::Requested | GenState::Generating(_) => {}
        }
        Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable))
    }
}

/// Writes the initial state of a bootstrapped region: its `RegionLocalState` and apply state
/// into `kv_wb`, its raft state into `raft_wb`. The caller writes both, raft engine first.
pub fn write_initial_region_state<EK: KvEngine, ER: RaftEngine>(
    kv_wb: &mut EK::WriteBatch,
    raft_wb: &mut ER::LogBatch,
    region: &metapb::Region,
) {
    use engine_traits::Mutable;
    let region_id = RegionId(region.id);
    let state = RegionLocalState { region: Some(region.clone()), ..Default::default() };
    kv_wb.put_msg_cf(CF_RAFT, &keys::region_state_key(region_id), &state);
    kv_wb.put_msg_cf(CF_RAFT, &keys::apply_state_key(region_id), &initial_apply_state());
    let mut hs = HardState::default();
    hs.term = RAFT_INIT_LOG_TERM;
    hs.commit = RAFT_INIT_LOG_INDEX;
    raft_wb.put_raft_state(region_id, &encode_raft_state(&hs, LogIndex(RAFT_INIT_LOG_INDEX)));
}

pub fn initial_apply_state() -> RaftApplyState {
    RaftApplyState {
        applied_index: RAFT_INIT_LOG_INDEX,
        commit_index: RAFT_INIT_LOG_INDEX,
        commit_term: RAFT_INIT_LOG_TERM,
        truncated_state: Some(RaftTruncatedState {
            index: RAFT_INIT_LOG_INDEX,
            term: RAFT_INIT_LOG_TERM,
        }),
        ..Default::default()
    }
}

/// The `conf_ver` of the region a snapshot carries; `None` if its data does not decode.
pub fn snapshot_conf_ver(snap: &Snapshot) -> Option<u64> {
    use prost::Message as _;
    let data = proto::raft_serverpb::RaftSnapshotData::decode(snap.get_data()).ok()?;
    Some(data.region?.region_epoch.unwrap_or_default().conf_ver)
}
