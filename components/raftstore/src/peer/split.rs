//! Splitting a region, on the peer's side.
//!
//! 1. **Start** (leader only): a split request (the `SplitRegion` RPC, or the split checker)
//!    names keys and the epoch they were chosen under. The keys are checked against the region,
//!    then PD allocates one region id and one peer id per peer for each key (asynchronously);
//!    its answer comes back as a BatchSplit admin command through the router.
//! 2. **Propose**: the admin command is checked like any command (leader, epoch: version and
//!    conf_ver), the round's batched writes are proposed first (they were checked against the
//!    current range), then the split, and the split is remembered as the pending epoch change.
//!    Until it resolves, the leader broadcasts every commit at once (`begin_epoch_change`):
//!    the followers apply the split within a round trip of its commit, not a heartbeat later.
//! 3. **Proposal checker**: while that split is proposed but not applied, commands that depend
//!    on the range (writes, further splits) are held rather than proposed: proposed behind the
//!    split they would carry an epoch the split invalidates. When the split resolves (applied,
//!    overwritten, or leadership lost) the held commands are checked again from the start, so
//!    each gets the answer it would have got after the split: usually `EpochNotMatch` with the
//!    new regions, or a plain success if the split failed.
//! 4. **Apply** (every replica, `apply::split`): new regions' state and the shrunk original are
//!    written atomically; the apply result carries the new regions.
//! 5. **Create**: the peer shrinks its range, creates a peer and an apply FSM for each new
//!    region, registers them, hands them any election messages that arrived before them (see
//!    `StoreMeta::pending_msgs`), and, if it leads the original, makes each new peer campaign
//!    at once and tells PD (`ReportBatchSplit` plus a heartbeat per region). Until a new
//!    region's first leader is known, commands routed to its peers wait briefly for it
//!    (`peer::leader_wait`).
//!
//! The split checker (`split::check`) runs on a leader's tick when enough was written since
//! the last check; its result comes back as `SplitCheckResult`.

use engine_traits::{KvEngine, RaftEngine};
use proto::metapb;
use proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, BatchSplitRequest, RaftCmdRequest, RaftRequestHeader, SplitRequest,
};
use slog::{debug, info, warn};
use util::{LogIndex, RegionId, Term};

use super::{Peer, Snap};
use crate::apply::{ApplyRes, SplitResult};
use crate::callback::Callback;
use crate::error::{Error, Result};
use crate::msg::{PeerMsg, RaftCommand, SplitSource};
use crate::pd::{PdError, RegionHeartbeat};
use crate::split::check::{CheckOutcome, SplitCheckTask};
use crate::store::life::{self, RegionFsms};
use crate::store::PollContext;
use crate::transport::Transport;
use crate::util::{epoch, validate_split_keys};

/// An epoch-changing admin command proposed and not yet applied, and the commands held
/// behind it (step 3 of the module doc).
pub(super) struct PendingEpochChange<S> {
    pub index: LogIndex,
    pub term: Term,
    pub held: Vec<RaftCommand<S>>,
}

/// Size bookkeeping for split checks.
#[derive(Debug, Default)]
pub(super) struct SizeTracker {
    /// Bytes written since the last check.
    pub diff_hint: u64,
    /// A check was scheduled and has not answered yet.
    pub checking: bool,
    pub approximate_size: Option<u64>,
    pub approximate_keys: Option<u64>,
    /// RocksDB's estimate may count deleted data (deletes since the last check, a merged
    /// source, or the last check said so): the next check counts exactly (`split::check`).
    pub exact_next: bool,
    /// Raft ticks since the peer started, to derive the split-check tick.
    pub ticks: u64,
}

impl SizeTracker {
    /// What a round of applied commands did to the size. Puts count their bytes. A delete
    /// frees a value of unknown size: it counts as an average entry of the last measure, so a
    /// region emptied by deletes is measured again as soon as one filled by as many bytes of
    /// puts. A deleted range may have freed anything: it makes the next tick check (at most
    /// one exact check per `split-region-check-tick-interval`, costing a scan of what is left).
    pub fn on_applied(&mut self, res: &ApplyRes, check_diff: u64) {
        self.diff_hint = self.diff_hint.saturating_add(res.written_bytes);
        if res.deleted_keys == 0 && res.deleted_ranges == 0 {
            return;
        }
        self.exact_next = true;
        if let (Some(size), Some(keys)) = (self.approximate_size, self.approximate_keys) {
            let freed = res.deleted_keys.saturating_mul(size / keys.max(1));
            self.diff_hint = self.diff_hint.saturating_add(freed);
        }
        if res.deleted_ranges > 0 {
            self.diff_hint = self.diff_hint.max(check_diff);
        }
    }

    /// The size is unknown now (the range changed): measure again on the next tick.
    /// `exact`: the range took in data whose estimate may count deleted data (a merge).
    pub fn reset(&mut self, check_diff: u64, exact: bool) {
        self.approximate_size = None;
        self.approximate_keys = None;
        self.diff_hint = check_diff;
        self.exact_next |= exact;
    }
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Step 1: a request to split at `split_keys`.
    pub fn on_split_region<T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        region_epoch: metapb::RegionEpoch,
        split_keys: Vec<Vec<u8>>,
        callback: Callback<Snap<EK>>,
        source: SplitSource,
    ) {
        if let Err(e) = self.check_split_request(ctx, &region_epoch, &split_keys) {
            debug!(self.logger, "split refused"; "err" => %e, "source" => ?source);
            return callback.invoke_with_error(e);
        }
        info!(self.logger, "asking PD for split ids"; "keys" => split_keys.len(), "source" => ?source);
        let region = self.region().clone();
        let router = ctx.router.clone();
        let me = self.meta.clone();
        let right_derive = ctx.cfg.right_derive_when_split;
        let count = split_keys.len() as u32;
        ctx.pd.ask_batch_split(
            region.clone(),
            count,
            Box::new(move |ids| {
                let ids = match ids {
                    Ok(ids) if ids.len() == split_keys.len() => ids,
                    Ok(ids) => {
                        let e =
                            PdError::WrongSplitIdCount { asked: count as usize, got: ids.len() };
                        return callback.invoke_with_error(e.into());
                    }
                    Err(e) => return callback.invoke_with_error(e.into()),
                };
                let requests = split_keys
                    .into_iter()
                    .zip(ids)
                    .map(|(split_key, id)| SplitRequest {
                        split_key,
                        new_region_id: id.new_region_id,
                        new_peer_ids: id.new_peer_ids,
                        ..Default::default()
                    })
                    .collect();
                let req = RaftCmdRequest {
                    header: Some(RaftRequestHeader {
                        region_id: region.id,
                        peer: Some(me),
                        region_epoch: region.region_epoch,
                        ..Default::default()
                    }),
                    admin_request: Some(AdminRequest {
                        cmd_type: AdminCmdType::BatchSplit as i32,
                        splits: Some(BatchSplitRequest {
                            requests,
                            right_derive,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                router.send_command(req, callback);
            }),
        );
    }

    fn check_split_request<T>(
        &self,
        ctx: &PollContext<EK, ER, T>,
        region_epoch: &metapb::RegionEpoch,
        split_keys: &[Vec<u8>],
    ) -> Result<()> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let current = epoch(self.region());
        if region_epoch.version != current.version {
            return Err(self.epoch_not_match(
                ctx,
                format!(
                    "split asked under version {}, region has {current:?}",
                    region_epoch.version
                ),
            ));
        }
        if split_keys.len() > crate::apply::split::SPLIT_KEYS_MAX {
            return Err(Error::InvalidRequest(format!(
                "{} split keys; at most {} per split",
                split_keys.len(),
                crate::apply::split::SPLIT_KEYS_MAX
            )));
        }
        validate_split_keys(split_keys, self.region())
    }

    /// `EpochNotMatch` with this region and its neighbours on this store, so a client whose
    /// cache predates a split learns the parts (TiKV sends the same).
    pub(super) fn epoch_not_match<T>(
        &self,
        ctx: &PollContext<EK, ER, T>,
        message: String,
    ) -> Error {
        let mut current_regions = vec![self.region().clone()];
        current_regions.extend(ctx.store_meta.lock().neighbours(self.region()));
        Error::EpochNotMatch { message, current_regions }
    }

    /// Step 2: proposes a checked BatchSplit admin command.
    pub(super) fn propose_split<T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        req: RaftCmdRequest,
        cb: Callback<Snap<EK>>,
    ) {
        let admin = req.admin_request.as_ref().expect("classified as admin");
        let keys: Vec<Vec<u8>> =
            admin.splits.iter().flat_map(|s| &s.requests).map(|r| r.split_key.clone()).collect();
        if let Err(e) = validate_split_keys(&keys, self.region()) {
            return cb.invoke_with_error(e);
        }
        // Writes batched this round were checked against the current range: they go first.
        self.propose_batch(ctx);
        let Some(index) = self.propose_entry(ctx, &req, vec![(cb, 0)]) else { return };
        self.begin_epoch_change(index);
    }

    /// Remembers a proposed epoch change (step 3), and makes its commit reach the followers
    /// at once (#11): the regions it creates cannot elect a leader until a quorum of stores
    /// has applied it, and with `skip_bcast_commit` the followers would learn the commit only
    /// from the next append or heartbeat, which is a whole heartbeat interval away while the
    /// held writes send no appends. raft-rs broadcasts the new commit index after each commit
    /// while skipping is off (as it does on its own for a pending conf change); it is back on
    /// once the change resolves, so ordinary writes keep piggybacking their commits.
    pub(super) fn begin_epoch_change(&mut self, index: LogIndex) {
        self.raft_group.skip_bcast_commit(false);
        self.leadership.epoch_change =
            Some(PendingEpochChange { index, term: self.term(), held: Vec::new() });
    }

    /// Step 3: holds `cmd` if an epoch change is pending and `cmd` depends on the range;
    /// gives it back otherwise.
    pub(super) fn hold_if_epoch_changing<T>(
        &mut self,
        ctx: &PollContext<EK, ER, T>,
        cmd: RaftCommand<Snap<EK>>,
    ) -> Option<RaftCommand<Snap<EK>>> {
        let Some(pending) = self.leadership.epoch_change.as_mut() else { return Some(cmd) };
        if pending.held.len() >= ctx.cfg.max_pending_proposals {
            // The client backs off and retries; by then the split has applied.
            cmd.callback.invoke_with_error(Error::StaleCommand);
            return None;
        }
        pending.held.push(cmd);
        ctx.stats.record_command_held();
        None
    }

    /// Step 3: once the pending epoch change is applied, overwritten, or leadership is lost,
    /// the held commands are handled again from the start.
    pub(super) fn maybe_resolve_epoch_change<T: Transport>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
    ) {
        let Some(p) = &self.leadership.epoch_change else { return };
        let resolved = self.applied_index() >= p.index
            || !self.is_leader()
            || self.term() != p.term
            || self.leadership.epoch_change_dropped;
        if !resolved {
            return;
        }
        self.leadership.epoch_change_dropped = false;
        self.raft_group.skip_bcast_commit(true);
        let p = self.leadership.epoch_change.take().expect("checked above");
        if self.applied_index() < p.index {
            // Not applied here (overwritten, or leadership lost): if it was a PrepareMerge,
            // this peer is not merging.
            self.on_prepare_merge_dropped(p.index);
        }
        if !p.held.is_empty() {
            debug!(self.logger, "re-checking commands held behind a split"; "count" => p.held.len());
        }
        for cmd in p.held {
            self.on_command(ctx, cmd);
        }
    }

    /// Step 5: the split applied; create the new regions' peers.
    pub(super) fn on_ready_split<T: Transport>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        res: SplitResult,
    ) {
        let SplitResult { derived, regions, skipped } = res;
        let was_leader = self.is_leader();
        info!(self.logger, "region split";
            "start" => %derived.start_key.escape_ascii(), "end" => %derived.end_key.escape_ascii(),
            "new_regions" => regions.len() - 1, "leader" => was_leader);
        ctx.stats.record_split_applied();
        self.raft_group.mut_store().set_region(derived.clone());
        for p in &derived.peers {
            self.peer_cache.insert(p.id, p.clone());
        }
        // The size is unknown now: measure again soon.
        self.size.reset(ctx.cfg.split_check_diff(), false);
        let applied_at = ctx.clock.now();
        let mut created = Vec::new();
        for r in regions.iter().filter(|r| r.id != derived.id) {
            if skipped.contains(&RegionId(r.id)) {
                warn!(self.logger, "new region already exists here; not created"; "new_region_id" => r.id);
                continue;
            }
            match self.build_split_peer(ctx, r, was_leader, applied_at) {
                Ok(fsms) => created.push(fsms),
                // The split is durable; failing to load what it wrote is a broken engine.
                Err(e) => {
                    panic!("region {}: cannot create split region {}: {e}", self.region_id, r.id)
                }
            }
        }
        let mut wake = Vec::new();
        {
            // One change of the meta: the shrunk parent and the new regions together, so no
            // reader sees a key owned twice or by nobody.
            let mut meta = ctx.store_meta.lock();
            meta.set_region(derived.clone());
            let ids: Vec<RegionId> = created.iter().map(|f| f.region_id()).collect();
            life::register_regions(&ctx.fsm_handles(), &mut meta, created);
            for id in ids {
                wake.push((id, meta.take_pending_msgs(id)));
            }
        }
        for (id, msgs) in wake {
            for m in msgs {
                let _ = ctx.router.send(id, PeerMsg::RaftMessage(Box::new(m)));
            }
            let _ = ctx.router.send(id, PeerMsg::Wake);
        }
        if was_leader {
            ctx.pd.report_batch_split(regions);
            self.heartbeat_pd(ctx);
        }
    }

    fn build_split_peer<T>(
        &self,
        ctx: &PollContext<EK, ER, T>,
        region: &metapb::Region,
        campaign: bool,
        applied_at: std::time::Instant,
    ) -> Result<RegionFsms<EK, ER>> {
        let mut fsms = life::build_region(&ctx.fsm_handles(), region, None)?;
        let peer = fsms.peer_mut();
        // The new region's first check comes soon: a big region may need several splits.
        peer.size.diff_hint = ctx.cfg.split_check_diff();
        // Clients routed here before the first election wait for it briefly (`leader_wait`).
        // On the parent leader's store this also measures the split-to-leader time.
        peer.open_leader_wait(ctx, applied_at, campaign);
        if campaign {
            // The original's leader leads the new regions too, without waiting for an
            // election timeout (the other replicas may not have applied the split yet; their
            // votes are kept for them, see `StoreMeta::pending_msgs`).
            if let Err(e) = peer.raft_group.campaign() {
                warn!(peer.logger, "campaign failed"; "err" => %e);
            }
        }
        Ok(fsms)
    }

    /// Tells PD about this region, if this peer leads it.
    pub(super) fn heartbeat_pd<T>(&self, ctx: &PollContext<EK, ER, T>) {
        if !self.is_leader() {
            return;
        }
        ctx.pd.region_heartbeat(RegionHeartbeat {
            region: self.region().clone(),
            leader: self.meta.clone(),
            approximate_size: self.size.approximate_size,
            approximate_keys: self.size.approximate_keys,
            pending_peers: self.pending_peers(),
        });
    }

    /// Peers that cannot be counted as caught up: raft knows no progress for them, they are
    /// being sent a snapshot, or their log ends below this leader's first entry (they need
    /// one). A new peer is pending until its snapshot is applied.
    fn pending_peers(&self) -> Vec<metapb::Peer> {
        let first_index = self.raft_group.store().first_log_index().get();
        let prs = self.raft_group.raft.prs();
        self.region()
            .peers
            .iter()
            .filter(|p| p.id != self.meta.id)
            .filter(|p| {
                prs.get(p.id).is_none_or(|pr| {
                    pr.state == raft::ProgressState::Snapshot || pr.matched + 1 < first_index
                })
            })
            .cloned()
            .collect()
    }

    /// The split-check tick: a leader whose region grew enough since the last check asks the
    /// split checker to measure it.
    pub(super) fn on_split_check_tick<T>(&mut self, ctx: &mut PollContext<EK, ER, T>) {
        if !self.is_leader()
            || self.size.checking
            || self.leadership.epoch_change.is_some()
            || self.size.diff_hint < ctx.cfg.split_check_diff()
        {
            return;
        }
        let task = SplitCheckTask { region: self.region().clone(), exact: self.size.exact_next };
        if ctx.split_checker.try_send(task).is_ok() {
            ctx.stats.record_split_check();
            self.size.checking = true;
            self.size.diff_hint = 0;
            self.size.exact_next = false;
        }
        // Full: the checker is behind; try again next tick.
    }

    pub(super) fn on_split_check_result<T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        region_epoch: metapb::RegionEpoch,
        outcome: CheckOutcome,
    ) {
        self.size.checking = false;
        if region_epoch.version != epoch(self.region()).version {
            return; // measured before a split; the next check measures the new range
        }
        let CheckOutcome { size, keys, split_keys, estimate_off } = outcome;
        self.size.approximate_size = Some(size);
        self.size.approximate_keys = Some(keys);
        self.size.exact_next |= estimate_off;
        if split_keys.is_empty() || !self.is_leader() {
            return;
        }
        // Check again next tick if this split does not happen (PD unreachable, lost
        // leadership); a split that happens resets it anyway.
        self.size.diff_hint = ctx.cfg.split_check_diff();
        let cb = Callback::none(self.region_id);
        self.on_split_region(ctx, region_epoch, split_keys, cb, SplitSource::SizeCheck);
    }
}
