//! Raft log GC, on the peer's side.
//!
//! 1. **Decide** (leader, every `raft-log-gc-tick-interval`): [`decide`] picks the index to
//!    compact to from the log's first, applied and last index, the lowest index every peer
//!    (learners too) has replicated, and the log's approximate size, with TiKV's rules:
//!    - past `raft-log-gc-count-limit` applied entries or `raft-log-gc-size-limit` bytes, the
//!      log is compacted to halfway (or to what every peer has, if that is further), even
//!      past a lagging follower, which then needs a snapshot;
//!    - otherwise to what every peer has, once at least `raft-log-gc-threshold` entries can
//!      go, or once the tick was put off `raft-log-reserve-max-ticks` times;
//!    - never past the applied index, and one entry short of the target (TiKV's margin).
//! 2. **Propose** a `CompactLog` admin command for that index and its term. It depends on no
//!    epoch, so it is never held behind a split, and it carries no callback.
//! 3. **Apply** (every replica, `apply::compact`): the truncated state moves in the apply
//!    state, persisted with the apply round.
//! 4. **Delete** (every replica, on the apply result): the storage drops its cached entries
//!    and size estimate below the new first index, and the log GC worker (`log_gc`) deletes
//!    them from the raft engine once the KV engine is synced: the log is never truncated
//!    past what the KV engine has made durable.

use engine_traits::{KvEngine, RaftEngine};
use proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, CompactLogRequest, RaftCmdRequest, RaftRequestHeader,
};
use proto::raft_serverpb::RaftTruncatedState;
use slog::{debug, warn};
use util::LogIndex;

use super::Peer;
use crate::config::Config;
use crate::log_gc::LogGcTask;
use crate::store::PollContext;

/// What [`decide`] looks at.
#[derive(Debug, Clone, Copy)]
pub(super) struct LogPositions {
    pub first: u64,
    pub applied: u64,
    pub last: u64,
    /// The lowest index every peer of the region holds.
    pub replicated: u64,
    /// Approximate bytes of the log.
    pub bytes: u64,
    /// GC ticks put off in a row so far.
    pub skipped_ticks: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GcDecision {
    /// Compact the log up to and including this index.
    CompactTo(u64),
    /// Too little to compact for now; counts toward `raft-log-reserve-max-ticks`.
    PutOff,
    /// Nothing can go.
    Nothing,
}

/// Step 1 of the module doc.
pub(super) fn decide(p: LogPositions, cfg: &Config) -> GcDecision {
    let forced = p.applied.saturating_sub(p.first) >= cfg.raft_log_gc_count_limit()
        || p.bytes >= cfg.raft_log_gc_size_limit();
    let target = if forced {
        (p.first + p.last.saturating_sub(p.first) / 2).max(p.replicated)
    } else if p.replicated < p.first
        || p.last.saturating_sub(p.first) < 3
        || (p.replicated - p.first < cfg.raft_log_gc_threshold
            && p.skipped_ticks < cfg.raft_log_reserve_max_ticks)
    {
        return GcDecision::PutOff;
    } else {
        p.replicated
    };
    let compact = target.min(p.applied).saturating_sub(1);
    if compact < p.first {
        return GcDecision::Nothing;
    }
    GcDecision::CompactTo(compact)
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Steps 1 and 2: the GC tick of a leader.
    pub(super) fn on_raft_log_gc_tick<T>(&mut self, ctx: &mut PollContext<EK, ER, T>) {
        // A merge target may need the source's entries (`merge`; apply ignores a compaction
        // while merging too, #12663).
        if !self.is_leader() || self.merge_fence().is_some() || self.is_merge_proposed() {
            return;
        }
        let raft = &self.raft_group.raft;
        let store = self.raft_group.store();
        let positions = LogPositions {
            first: store.first_log_index().get(),
            applied: store.applied_index().get(),
            last: raft.raft_log.last_index(),
            replicated: raft.prs().iter().map(|(_, p)| p.matched).min().unwrap_or(0),
            bytes: store.log_bytes(),
            skipped_ticks: self.leadership.log_gc_skipped_ticks,
        };
        let compact_index = match decide(positions, &ctx.cfg) {
            GcDecision::CompactTo(i) => i,
            GcDecision::PutOff => {
                self.leadership.log_gc_skipped_ticks += 1;
                return;
            }
            GcDecision::Nothing => return,
        };
        let compact_term = match raft.raft_log.term(compact_index) {
            Ok(t) => t,
            Err(e) => {
                // `compact_index` lies within [first, last]; raft not knowing its term would
                // be a storage fault, already logged by the storage.
                warn!(self.logger, "no term for the log compaction index";
                    "index" => compact_index, "err" => %e);
                return;
            }
        };
        self.leadership.log_gc_skipped_ticks = 0;
        debug!(self.logger, "proposing log compaction"; "index" => compact_index,
            "first" => positions.first, "replicated" => positions.replicated);
        let req = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: self.region_id.get(),
                peer: Some(self.meta.clone()),
                region_epoch: self.region().region_epoch,
                ..Default::default()
            }),
            admin_request: Some(AdminRequest {
                cmd_type: AdminCmdType::CompactLog as i32,
                compact_log: Some(CompactLogRequest {
                    compact_index,
                    compact_term,
                    voter_replicated_index: positions.replicated,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.propose_entry(ctx, &req, Vec::new());
    }

    /// Step 4: a `CompactLog` applied here.
    pub(super) fn on_ready_compact_log<T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        truncated: RaftTruncatedState,
    ) {
        ctx.stats.record_log_compaction();
        self.raft_group.mut_store().on_compacted(truncated);
        ctx.log_gc.schedule(LogGcTask {
            region_id: self.region_id,
            keep_from: LogIndex(truncated.index + 1),
        });
    }
}

#[cfg(test)]
mod tests {
    use util::config::ReadableSize;

    use super::*;

    fn cfg() -> Config {
        Config {
            raft_log_gc_threshold: 50,
            raft_log_gc_count_limit: Some(1000),
            raft_log_gc_size_limit: Some(ReadableSize::mib(1)),
            raft_log_reserve_max_ticks: 6,
            ..Config::default()
        }
    }

    fn at(first: u64, applied: u64, last: u64, replicated: u64) -> LogPositions {
        LogPositions { first, applied, last, replicated, bytes: 0, skipped_ticks: 0 }
    }

    #[test]
    fn compacts_to_what_every_peer_has_once_past_the_threshold() {
        assert_eq!(decide(at(6, 200, 200, 200), &cfg()), GcDecision::CompactTo(199));
        assert_eq!(decide(at(6, 200, 200, 100), &cfg()), GcDecision::CompactTo(99));
        // Never past the applied index.
        assert_eq!(decide(at(6, 80, 200, 200), &cfg()), GcDecision::CompactTo(79));
    }

    #[test]
    fn puts_off_small_compactions_up_to_the_reserve_ticks() {
        let p = at(6, 30, 30, 30);
        assert_eq!(decide(p, &cfg()), GcDecision::PutOff);
        let p = LogPositions { skipped_ticks: 6, ..p };
        assert_eq!(decide(p, &cfg()), GcDecision::CompactTo(29));
        // Fewer than three entries: always put off.
        let p = LogPositions { skipped_ticks: 100, ..at(6, 7, 7, 7) };
        assert_eq!(decide(p, &cfg()), GcDecision::PutOff);
    }

    #[test]
    fn keeps_what_a_lagging_follower_needs_below_the_limits() {
        // A follower holds nothing past the first index: nothing goes.
        assert_eq!(decide(at(100, 900, 900, 50), &cfg()), GcDecision::PutOff);
        let p = LogPositions { skipped_ticks: 100, ..at(100, 900, 900, 120) };
        assert_eq!(decide(p, &cfg()), GcDecision::CompactTo(119));
    }

    #[test]
    fn past_the_count_or_size_limit_compacts_past_a_laggard() {
        // 1000 applied entries: halfway, although a follower is at 50.
        assert_eq!(decide(at(100, 1100, 1100, 50), &cfg()), GcDecision::CompactTo(599));
        // Everyone has more than halfway: to what everyone has.
        assert_eq!(decide(at(100, 1100, 1100, 1000), &cfg()), GcDecision::CompactTo(999));
        let p = LogPositions { bytes: 1 << 20, ..at(100, 300, 300, 50) };
        assert_eq!(decide(p, &cfg()), GcDecision::CompactTo(199));
    }

    #[test]
    fn nothing_when_the_target_is_below_the_first_index() {
        let p = LogPositions { skipped_ticks: 100, ..at(100, 100, 104, 104) };
        assert_eq!(decide(p, &cfg()), GcDecision::Nothing);
    }
}
