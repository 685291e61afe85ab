//! One region's raft peer, split by concern:
//!
//! | module | concern |
//! |---|---|
//! | `fsm` | `PeerFsm`: the batch-system FSM, a `match` that delegates |
//! | `storage` | raft-rs `Storage` over the engines |
//! | `propose` | command checks, write batching, proposing |
//! | `read` | lease reads and ReadIndex |
//! | `message` | what the peer accepts from the network: checks before raft steps a message |
//! | `ready` | the ready loop: persist, send, hand committed entries to apply |
//! | `life` | destroying a peer (two phases around its apply FSM) |
//! | `log_gc` | raft log GC: deciding, proposing and acting on `CompactLog` |
//! | `conf_change` | membership changes: checks, proposing, acting on the applied change |
//! | `leader_wait` | commands that reach a new peer before its region's first leader |
//! | `snapshot` | snapshots: generation requests, sending, checking, persisting, applying |
//! | `split` | splitting: asking PD, proposing, the proposal checker, creating new regions, size checks |
//! | `merge` | merging: PrepareMerge, the fence, checking the target, CommitMerge, catching up, rollback |
//! | `lease` | the leader lease |
//!
//! `Peer` holds the state; it never touches the batch system or the transport directly, only
//! the poll context it is handed.

mod conf_change;
pub mod fsm;
mod leader_wait;
pub mod lease;
mod life;
mod log_gc;
mod merge;
mod message;
mod propose;
mod read;
mod ready;
mod snapshot;
mod split;
mod stale;
pub mod storage;

pub(crate) use self::snapshot::snap_key as snapshot_key;

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use engine_traits::{KvEngine, RaftEngine};
use proto::metapb;
use raft::{RawNode, Ready, StateRole};
use slog::Logger;
use util::{LogIndex, PeerId, RegionId, Term};

use crate::apply::Proposal;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::stats::LeaderGuard;
use crate::util::find_peer_by_id;

use self::leader_wait::LeaderWait;
use self::lease::Lease;
use self::propose::WriteBatcher;
use self::read::ReadQueue;
use self::split::{PendingEpochChange, SizeTracker};
use self::storage::PeerStorage;

/// Most bytes of committed entries one ready hands to the apply FSM (TiKV's figure). The rest
/// comes in the next readies: a follower that catches up on a long log, or a leader whose
/// apply fell behind, never puts the whole backlog into the apply mailbox at once (its sends
/// are `force_send`: this bound is what keeps them bounded).
const MAX_COMMITTED_SIZE_PER_READY: u64 = 16 << 20;

type Snap<EK> = <EK as KvEngine>::Snapshot;

/// The raft peer of one region on this store. What it holds beyond raft is grouped by who
/// needs it: [`Leadership`] (meaningful while leading), [`ReadyState`] (the ready loop),
/// [`LifeState`] (where the peer is in its life), and the proposal pipeline.
pub struct Peer<EK: KvEngine, ER: RaftEngine> {
    region_id: RegionId,
    meta: metapb::Peer,
    raft_group: RawNode<PeerStorage<EK, ER>>,
    /// Proposed commands in log order, waiting for their entries to commit.
    proposals: VecDeque<Proposal<Snap<EK>>>,
    /// Small writes of this round, proposed together as one entry at the end of the round.
    batcher: WriteBatcher<Snap<EK>>,
    reads: ReadQueue<Snap<EK>>,
    leadership: Leadership<Snap<EK>>,
    ready: ReadyState,
    life: LifeState<Snap<EK>>,
    applied_term: Term,
    /// Other peers of the region, by id, to address raft messages.
    peer_cache: HashMap<u64, metapb::Peer>,
    size: SizeTracker,
    /// This region's part in a merge, as a source (`merge`).
    merge: merge::MergeStatus<Snap<EK>>,
    logger: Logger,
}

/// What a leader keeps: its lease and the epoch change it proposed. Reset (lease expired,
/// guard dropped) when the peer stops leading; `epoch_change` resolves then too (`split`).
struct Leadership<S> {
    lease: Lease,
    /// Set when this peer became leader, until the first entry of its term commits; that
    /// commit proves the leadership from that instant and starts the lease.
    since: Option<Instant>,
    /// Held exactly while raft says this peer leads: counts it in `StoreStats::leaders`.
    guard: Option<LeaderGuard>,
    /// A proposed split not applied yet, and the commands held behind it (see `split`).
    epoch_change: Option<PendingEpochChange<S>>,
    /// The pending epoch change's entry was overwritten by another leader's.
    epoch_change_dropped: bool,
    /// Log GC ticks put off in a row (`log_gc`).
    log_gc_skipped_ticks: usize,
    /// When each member last sent this peer a message that passed the checks (`message`),
    /// while it leads: the health a membership change is checked against (`conf_change`).
    /// Bounded by the region's members; cleared when leadership ends.
    heard_from: HashMap<u64, Instant>,
}

/// The ready loop's state between the two halves of a round (see `ready`).
#[derive(Default)]
struct ReadyState {
    /// The ready handed out this round, persisted at the round's end.
    pending: Option<Ready>,
    /// A commit index learned after the last persisted hard state; persisted next round.
    commit_dirty: bool,
    /// A snapshot persisted this round, for the apply FSM once the round's write is durable.
    pending_snapshot: Option<snapshot::PendingSnapshotApply>,
    /// A snapshot passed `check_snapshot` and holds a range reservation in the store's meta
    /// until it is persisted or raft turns out not to take it.
    snapshot_reserved: bool,
    /// The last log index handed to the apply FSM (or restored by a snapshot): a snapshot is
    /// persisted only once everything before it was applied (`snapshot`, step 5).
    sent_to_apply: u64,
    /// Merge sources the reserved snapshot replaces (`snapshot`, step 4a), fixed when it was
    /// checked; those asked to stop, and those that stopped.
    snapshot_sources: Vec<RegionId>,
    sources_asked: std::collections::HashSet<RegionId>,
    sources_stopped: std::collections::HashSet<RegionId>,
}

/// Where the peer is in its life.
struct LifeState<S> {
    /// A peer a split created, until its region's first leader is known (see `leader_wait`).
    leader_wait: Option<LeaderWait<S>>,
    /// Being destroyed: waits for its apply FSM to stop (`life`); steps no raft message and
    /// answers commands `RegionNotFound`.
    pending_remove: bool,
    /// Destroyed or shutting down: handles nothing more.
    stopped: bool,
    /// Raft accepted a message from this peer's leader since the last stale-state check
    /// (`stale`, step 1).
    heard_leader: bool,
    /// When the current leader-missing period began (`stale`, step 2); `None` while a leader
    /// is heard.
    leader_missing_since: Option<Instant>,
    /// The current leader-missing period was logged and counted.
    leader_missing_reported: bool,
    /// Set when this peer, a merge source, is destroyed because its target absorbed it
    /// (`merge`, step 7): the target after the merge. Its data stays (it is the target's).
    merged_into: Option<metapb::Region>,
    /// Set when this peer, a merge source, stops because a snapshot of its target replaces
    /// it (`snapshot`, step 4a): the target. The target's snapshot write tombstones it and
    /// unregisters it; it only stops its apply FSM and reports.
    replaced_by: Option<RegionId>,
    /// Its apply FSM stopped for that snapshot.
    stopped_for_snapshot: bool,
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Creates the peer of an initialized region over its loaded storage.
    pub fn new(
        cfg: &Config,
        meta: metapb::Peer,
        storage: PeerStorage<EK, ER>,
        logger: Logger,
    ) -> Result<Self> {
        let region = storage.region().clone();
        let applied = storage.applied_index();
        let applied_term = Term(storage.apply_state().commit_term);
        let raft_cfg = raft::Config {
            id: meta.id,
            election_tick: cfg.raft_election_timeout_ticks,
            heartbeat_tick: cfg.raft_heartbeat_ticks,
            min_election_tick: cfg.min_election_ticks(),
            max_election_tick: cfg.max_election_ticks(),
            max_size_per_msg: cfg.raft_max_size_per_msg.0,
            max_inflight_msgs: cfg.raft_max_inflight_msgs,
            applied: applied.get(),
            check_quorum: true,
            pre_vote: cfg.prevote,
            skip_bcast_commit: true,
            max_committed_size_per_ready: MAX_COMMITTED_SIZE_PER_READY,
            ..Default::default()
        };
        let raft_group = RawNode::new(&raft_cfg, storage, &logger).map_err(|e| {
            Error::Engine(engine_traits::Error::Corrupted {
                what: format!("region {}: raft cannot start: {e}", region.id),
            })
        })?;
        let mut peer = Peer {
            region_id: RegionId(region.id),
            meta,
            raft_group,
            proposals: VecDeque::new(),
            batcher: WriteBatcher::new(cfg),
            reads: ReadQueue::default(),
            leadership: Leadership {
                lease: Lease::new(cfg.raft_store_max_leader_lease.as_duration()),
                since: None,
                guard: None,
                epoch_change: None,
                epoch_change_dropped: false,
                log_gc_skipped_ticks: 0,
                heard_from: HashMap::new(),
            },
            ready: ReadyState { sent_to_apply: applied.get(), ..ReadyState::default() },
            life: LifeState {
                leader_wait: None,
                pending_remove: false,
                stopped: false,
                heard_leader: false,
                leader_missing_since: None,
                leader_missing_reported: false,
                merged_into: None,
                replaced_by: None,
                stopped_for_snapshot: false,
            },
            applied_term,
            peer_cache: HashMap::new(),
            // Every peer's first check (after it leads) measures its region.
            size: SizeTracker { diff_hint: u64::MAX, ..SizeTracker::default() },
            merge: merge::MergeStatus::default(),
            logger,
        };
        for p in &region.peers {
            peer.peer_cache.insert(p.id, p.clone());
        }
        Ok(peer)
    }

    pub fn region_id(&self) -> RegionId {
        self.region_id
    }

    pub fn peer_id(&self) -> PeerId {
        PeerId(self.meta.id)
    }

    pub fn region(&self) -> &metapb::Region {
        self.raft_group.store().region()
    }

    pub fn is_leader(&self) -> bool {
        self.raft_group.raft.state == StateRole::Leader
    }

    pub fn term(&self) -> Term {
        Term(self.raft_group.raft.term)
    }

    pub fn applied_index(&self) -> LogIndex {
        self.raft_group.store().applied_index()
    }

    /// The leader this peer knows of, if any.
    pub fn leader(&self) -> Option<metapb::Peer> {
        let id = self.raft_group.raft.leader_id;
        if id == raft::INVALID_ID {
            return None;
        }
        self.peer_cache
            .get(&id)
            .cloned()
            .or_else(|| find_peer_by_id(self.region(), PeerId(id)).cloned())
    }

    pub fn not_leader(&self) -> Error {
        Error::NotLeader { region_id: self.region_id, leader: self.leader() }
    }

    pub fn is_stopped(&self) -> bool {
        self.life.stopped
    }

    /// Being destroyed (see `life`).
    pub fn is_pending_remove(&self) -> bool {
        self.life.pending_remove
    }
}
