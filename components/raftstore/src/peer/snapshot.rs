//! Snapshots, on the peer's side. The files are `snap`'s; this is when and in which order.
//!
//! Leader (sender):
//! 1. Raft asks `PeerStorage::snapshot` for a follower whose entries were compacted away; the
//!    request is recorded (`GenState::Requested`), raft hears "temporarily unavailable".
//! 2. `maybe_schedule_snapshot_gen` hands the request to the apply FSM
//!    (`ApplyTask::GenerateSnapshot`): after flushing its round it takes a KV snapshot at
//!    exactly its applied index and passes it to the `snap-generator` worker (`snap_gen`),
//!    which builds the files and answers on a channel. Raft's next request finds it ready.
//! 3. A `MsgSnapshot` leaves through `Transport::send_snapshot`, which sends the files with
//!    it and reports the end (`PeerMsg::SnapshotReport`) so raft resumes replicating to the
//!    follower (`report_snapshot`).
//!
//! Follower (receiver):
//! 4. The transport has received and checked the files (`rev_`) before it delivers the
//!    message. `check_snapshot` refuses one that is not for this peer, is older than the
//!    region here, overlaps another region on this store, or whose files are missing.
//! 5. The ready carrying it is persisted KV first: region state `Applying` with the
//!    snapshot's region, the apply state at the snapshot's index (truncated there too), and a
//!    copy of the raft state it sets, in one synced write; then the round's raft batch
//!    replaces the log (cleaned) and raft state. A crash after the KV write restarts the
//!    region in `Applying` with the copy (`PeerStorage::load`), and applies again.
//! 6. After the raft batch is durable (`post_persist`), the apply FSM gets
//!    `ApplyTask::ApplySnapshot`: after flushing its round (entries before the snapshot go
//!    to the engine first, never after), it applies the files and writes `Normal`
//!    (`apply::fsm`). Entries after the snapshot follow it in the same mailbox.

use crossbeam_channel::bounded;
use engine_traits::{KvEngine, Mutable, RaftEngine, RaftLogBatch, WriteOptions, CF_RAFT};
use prost::Message as _;
use proto::metapb;
use proto::raft_serverpb::{
    MergeState, PeerState, RaftApplyState, RaftMessage, RaftSnapshotData, RaftTruncatedState,
    RegionLocalState,
};
use raft::eraftpb::{Message, Snapshot};
use raft::SnapshotStatus;
use slog::{debug, error, info};
use util::{LogIndex, RegionId, Term};

use super::storage::encode_raft_state;
use super::Peer;
use crate::apply::ApplyTask;
use crate::msg::PeerMsg;
use crate::snap::{Side, SnapKey};
use crate::stats::DroppedMessage;
use crate::store::{life, PollContext};
use crate::transport::Transport;
use crate::util::{conf_state_from_region, epoch, find_peer_by_id, is_epoch_stale};

/// A persisted snapshot whose data the apply FSM must apply (step 6), after the round's raft
/// write.
pub(super) struct PendingSnapshotApply {
    pub region: proto::metapb::Region,
    pub key: SnapKey,
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Step 2.
    pub(super) fn maybe_schedule_snapshot_gen<T>(&mut self, ctx: &mut PollContext<EK, ER, T>) {
        // A merging region's followers hold its log from `min_index` (compaction stops): none
        // needs a snapshot, and one would carry the `Merging` state nowhere. Raft asks again.
        if self.is_merging() || !self.raft_group.mut_store().take_gen_request() {
            return;
        }
        let (tx, rx) = bounded(1);
        let task = ApplyTask::GenerateSnapshot { tx };
        if ctx.apply_router.force_send(self.region_id.get(), task).is_ok() {
            self.raft_group.mut_store().set_generating(rx);
        }
        // Otherwise the apply FSM is gone (destroy); raft asks again if it still needs one.
    }

    /// Step 3: sends a `MsgSnapshot` with its files.
    pub(super) fn send_snapshot<T: Transport>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        msg: RaftMessage,
        to: u64,
    ) {
        let router = ctx.router.clone();
        let region_id = self.region_id;
        info!(self.logger, "sending snapshot"; "to" => to);
        ctx.transport.send_snapshot(
            msg,
            Box::new(move |ok| {
                // Forced: raft keeps the follower paused until it hears the outcome.
                router.force_send(region_id, PeerMsg::SnapshotReport { to_peer_id: to, ok });
            }),
        );
    }

    /// Step 3: the transport finished sending a snapshot to `to`.
    /// A failed send also drops the generated snapshot: its files may be gone (GC), and the
    /// next request builds a fresh one.
    pub fn on_snapshot_report(&mut self, to: u64, ok: bool) {
        let status = if ok { SnapshotStatus::Finish } else { SnapshotStatus::Failure };
        info!(self.logger, "snapshot sent"; "to" => to, "ok" => ok);
        if !ok {
            self.raft_group.mut_store().drop_generated_snapshot();
        }
        self.raft_group.report_snapshot(to, status);
    }

    /// Step 4: whether raft may step this `MsgSnapshot`; the merge sources it replaces.
    pub(super) fn check_snapshot<T>(
        &self,
        ctx: &PollContext<EK, ER, T>,
        m: &Message,
    ) -> Result<Vec<RegionId>, DroppedMessage> {
        let snap = m.get_snapshot();
        let meta = snap.get_metadata();
        let data =
            RaftSnapshotData::decode(snap.get_data()).map_err(|_| DroppedMessage::Malformed)?;
        let Some(region) = data.region else { return Err(DroppedMessage::Malformed) };
        // raft-rs restores the snapshot's conf state and aborts on an invalid one, so it must
        // be the region's, and the region sane: unique peers and stores, a voter.
        if region.id != self.region_id.get()
            || find_peer_by_id(&region, self.peer_id()).is_none()
            || meta.index == 0
            || meta.term == 0
            || *meta.get_conf_state() != conf_state_from_region(&region)
            || !region_is_sane(&region)
        {
            return Err(DroppedMessage::Malformed);
        }
        if self.raft_group.store().is_initialized()
            && is_epoch_stale(&epoch(&region), &epoch(self.region()))
        {
            return Err(DroppedMessage::SnapshotRejected);
        }
        let key = snap_key(self.region_id, snap);
        if !ctx.snap_mgr.exists(key, Side::Rev) {
            return Err(DroppedMessage::SnapshotRejected);
        }
        // Reserved until persisted (or until raft turns out not to take it): no other
        // snapshot can claim an overlapping range meanwhile (`release_unused_reservation`).
        // Merge sources of this region that it covers are replaced by it (step 4a).
        let mut meta = ctx.store_meta.lock();
        let sources = match meta.overlap_other_than(&region) {
            Some(_) => meta.snapshot_sources(&region).unwrap_or_default(),
            None => Vec::new(),
        };
        if let Err(other) = meta.reserve_snapshot(&region, &sources) {
            info!(self.logger, "snapshot overlaps another region here"; "other" => other.get());
            return Err(DroppedMessage::SnapshotRejected);
        }
        drop(meta);
        if !sources.is_empty() {
            info!(self.logger, "snapshot replaces merge sources here"; "sources" => ?sources);
        }
        Ok(sources)
    }

    /// Step 4a: the sources the snapshot just stepped replaces, fixed while it is reserved.
    pub(super) fn set_snapshot_sources(&mut self, sources: Vec<RegionId>) {
        self.ready.snapshot_sources = sources;
        self.ready.sources_stopped.clear();
        self.ready.sources_asked.clear();
    }

    /// Step 4a: a snapshot raft took that replaces merge sources waits until each has
    /// stopped applying (`SnapshotSourceStopped`): from then on nothing writes their ranges
    /// but the snapshot. They are asked only now (raft took it, and this peer's apply has
    /// caught up with everything before it, so no CommitMerge of theirs waits here: stopping
    /// one that a paused CommitMerge needs would stall both), once each. A source destroyed
    /// otherwise meanwhile (merged by the log) has nothing left to stop.
    ///
    /// A region that overlaps the snapshot and is not one of its sources (a source applied a
    /// split before it stopped) keeps it waiting: persisting over a live region would make two
    /// regions own a key.
    pub(super) fn snapshot_sources_stopped<T>(&mut self, ctx: &PollContext<EK, ER, T>) -> bool {
        let snap = self.raft_group.raft.raft_log.unstable.snapshot.as_ref();
        let region = snap.and_then(|s| RaftSnapshotData::decode(s.get_data()).ok()?.region);
        let live: Vec<RegionId> = {
            let meta = ctx.store_meta.lock();
            if let Some(other) =
                region.as_ref().and_then(|r| meta.overlap_except(r, &self.ready.snapshot_sources))
            {
                debug!(self.logger, "snapshot waits: another region overlaps it"; "other" => other);
                return false;
            }
            let sources = self.ready.snapshot_sources.iter().copied();
            sources.filter(|s| meta.region(*s).is_some()).collect()
        };
        let mut all = true;
        for s in live {
            if self.ready.sources_stopped.contains(&s) {
                continue;
            }
            all = false;
            if self.ready.sources_asked.insert(s) {
                let _ = ctx.router.send(s, PeerMsg::StopForSnapshot { target: self.region_id });
            }
        }
        all
    }

    /// Step 4a: a merge source asked to stop has stopped.
    pub fn on_snapshot_source_stopped(&mut self, source: RegionId) {
        info!(self.logger, "merge source stopped for the snapshot"; "source" => source);
        self.ready.sources_stopped.insert(source);
    }

    /// Step 5, for the snapshot of the ready being handled. Storage errors are fatal.
    pub(super) fn persist_snapshot<T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        snap: &Snapshot,
    ) {
        let meta = snap.get_metadata();
        let (index, term) = (meta.index, meta.term);
        let region =
            RaftSnapshotData::decode(snap.get_data()).ok().and_then(|d| d.region).unwrap_or_else(
                || panic!("region {}: a checked snapshot lost its region", self.region_id),
            );
        info!(self.logger, "persisting snapshot"; "index" => index, "term" => term,
            "conf_ver" => epoch(&region).conf_ver, "version" => epoch(&region).version);
        let apply_state = RaftApplyState {
            applied_index: index,
            commit_index: index,
            commit_term: term,
            truncated_state: Some(RaftTruncatedState { index, term }),
            ..Default::default()
        };
        let mut hs = self.raft_group.raft.hard_state();
        hs.commit = hs.commit.max(index);
        let raft_state = encode_raft_state(&hs, LogIndex(index));
        let mut wb = ctx.engines.kv.write_batch();
        let state = RegionLocalState {
            state: PeerState::Applying as i32,
            region: Some(region.clone()),
            ..Default::default()
        };
        wb.put_msg_cf(CF_RAFT, &keys::region_state_key(self.region_id), &state);
        wb.put_msg_cf(CF_RAFT, &keys::apply_state_key(self.region_id), &apply_state);
        wb.put_msg_cf(CF_RAFT, &keys::snapshot_raft_state_key(self.region_id), &raft_state);
        // The merge sources it replaces (step 4a, all stopped) become tombstones in the same
        // write: a crash leaves either both or neither. Each keeps the target its merge
        // recorded, which a stale peer of it elsewhere compares with its own (`merge`).
        let sources: Vec<(metapb::Region, metapb::Region)> = {
            let meta = ctx.store_meta.lock();
            let ids = std::mem::take(&mut self.ready.snapshot_sources);
            ids.iter()
                .filter_map(|id| {
                    let target = meta.merge_target_of(*id).cloned();
                    let target = target.unwrap_or_else(|| region.clone());
                    meta.region(*id).cloned().map(|r| (r, target))
                })
                .collect()
        };
        for (source, target) in &sources {
            let tombstone = RegionLocalState {
                state: PeerState::Tombstone as i32,
                region: Some(source.clone()),
                merge_state: Some(MergeState {
                    target: Some(target.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            wb.put_msg_cf(CF_RAFT, &keys::region_state_key(RegionId(source.id)), &tombstone);
        }
        if let Err(e) = ctx.engines.kv.write(&mut wb, &WriteOptions::synced()) {
            error!(self.logger, "cannot persist snapshot state"; "err" => %e);
            panic!("region {}: cannot persist snapshot state: {e}", self.region_id);
        }
        ctx.raft_wb.clean(self.region_id);
        ctx.raft_wb.put_raft_state(self.region_id, &raft_state);
        for (source, _) in &sources {
            ctx.raft_wb.clean(RegionId(source.id));
        }
        ctx.sync_needed = true;
        self.raft_group.mut_store().on_snapshot(region.clone(), apply_state, hs, Term(term));
        self.answer_proposals_covered_by_snapshot(index);
        for p in &region.peers {
            self.peer_cache.insert(p.id, p.clone());
        }
        {
            // Reserved when checked: nothing overlaps it (`StoreMeta::reserve_snapshot`) but
            // the sources it replaces, which leave the store now.
            let mut meta = ctx.store_meta.lock();
            for (source, _) in &sources {
                info!(self.logger, "merge source replaced by the snapshot"; "source" => source.id);
                life::unregister_region(&ctx.fsm_handles(), &mut meta, RegionId(source.id));
            }
            meta.release_snapshot(self.region_id);
            meta.set_region(region.clone());
            self.ready.sources_stopped.clear();
        }
        self.ready.snapshot_reserved = false;
        let key = SnapKey { region_id: self.region_id, term: Term(term), index: LogIndex(index) };
        self.ready.pending_snapshot = Some(PendingSnapshotApply { region, key });
        self.ready.sent_to_apply = index;
    }

    /// End of a turn: a snapshot reserved at step 4 that raft did not take (it answered it
    /// without restoring, e.g. an old one) gives its range back.
    pub(super) fn release_unused_reservation<T>(&mut self, ctx: &mut PollContext<EK, ER, T>) {
        if !self.ready.snapshot_reserved
            || self.raft_group.raft.raft_log.unstable.snapshot.is_some()
        {
            return; // none, or taken: persisted at a coming ready
        }
        self.ready.snapshot_reserved = false;
        self.ready.snapshot_sources.clear();
        ctx.store_meta.lock().release_snapshot(self.region_id);
    }

    /// Step 6: after the round's raft write. Returns the snapshot's index if one was sent.
    pub(super) fn send_snapshot_to_apply<T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
    ) -> Option<u64> {
        let PendingSnapshotApply { region, key } = self.ready.pending_snapshot.take()?;
        let index = key.index.get();
        let task = ApplyTask::ApplySnapshot { region, key };
        if ctx.apply_router.force_send(self.region_id.get(), task).is_err() {
            // Destroyed meanwhile; the region state says `Applying`, so a restart would apply
            // it, but a destroyed peer's tombstone replaces that state first.
            info!(self.logger, "snapshot not applied: the apply FSM is gone");
        }
        Some(index)
    }
}

/// Unique peer ids and stores, and at least one voter.
fn region_is_sane(region: &proto::metapb::Region) -> bool {
    let mut ids: Vec<u64> = region.peers.iter().map(|p| p.id).collect();
    let mut stores: Vec<u64> = region.peers.iter().map(|p| p.store_id).collect();
    ids.sort_unstable();
    ids.dedup();
    stores.sort_unstable();
    stores.dedup();
    ids.len() == region.peers.len()
        && stores.len() == region.peers.len()
        && !ids.contains(&0)
        && region.peers.iter().any(crate::util::is_voter)
}

/// The key naming a raft snapshot's files.
pub(crate) fn snap_key(region_id: RegionId, snap: &Snapshot) -> SnapKey {
    let meta = snap.get_metadata();
    SnapKey { region_id, term: Term(meta.term), index: LogIndex(meta.index) }
}
