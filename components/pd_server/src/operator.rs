//! Operators: PD's plan to change one region — add a peer, remove one, move one to another
//! store, move its leadership — as steps the region's leader executes one at a time.
//!
//! 1. **Create** ([`plan`], called by `Cluster::add_operator` for the HTTP API and the ctl): the
//!    request is checked against PD's view of the region and the stores, and becomes steps. A
//!    new voter is added as a learner first and promoted once it has caught up (a voter that
//!    needs a snapshot would count against the quorum while it has none). At most one operator
//!    per region: another is refused while one runs (cancel it first).
//! 2. **Dispatch** ([`Operator::on_heartbeat`]): each heartbeat of the region's leader first
//!    advances the operator past the steps the heartbeat shows done, then answers the current
//!    step's command. The command is repeated on every heartbeat until the step is seen done:
//!    the store's own checks make a repeat harmless (a change already applied is refused as
//!    invalid, one in flight as busy), and a lost command is simply sent again. The command
//!    carries the epoch of the heartbeat, so the store refuses it if the region changed since.
//!    The first command does not wait for a heartbeat: creation dispatches against the
//!    region's last heartbeat and pushes the command to that leader's store at once
//!    (`Cluster` invariant 6, PD's `DispatchFromCreate`).
//! 3. **Removing the leader**: a `RemovePeer` step whose peer leads when it is dispatched sends a
//!    leader transfer to another voter first (decided at dispatch, not at creation, because
//!    leadership moves by itself).
//! 4. **Finish**: every step done → `success`; a step not done within its timeout → `timeout`;
//!    the region split or merged (its version moved), or a peer a step needs vanished →
//!    `canceled` with the reason; `operator cancel` → `canceled`. Whatever steps were done stay
//!    done: the region is always in a valid configuration between steps.
//! 5. Operators are soft state, as in TiKV's PD: a PD restart forgets them; the region keeps
//!    what the finished steps made and the operator can be issued again.
//! 6. **Merge** (`merge-region`, [`merge`]): an operator on the source region that also locks
//!    the target. It first aligns the source's peers with the target's (the steps above), then
//!    its `Merge` step asks the source's leader to merge into the target. The store's version
//!    bumps are its progress, and the target's heartbeats drive it too: see [`merge`] for the
//!    exact success and cancel rules.
//!
//! Everything here is pure (no locks, no IO, time passed in) so it is unit-tested directly;
//! [`registry`] holds the running and finished operators.

use std::fmt;

use proto::metapb::{self, ConfChangeType, PeerRole};
use proto::pdpb;

use crate::region_tree::RegionInfo;

pub mod merge;
pub mod registry;

pub use merge::{plan_merge, MERGE_STEP_TIMEOUT_MS};
pub use registry::Registry;

/// How long a step may take before its operator times out. Adding a learner includes sending
/// it a snapshot of the whole region, so it gets the longest.
pub const ADD_LEARNER_TIMEOUT_MS: u64 = 10 * 60 * 1000;
pub const STEP_TIMEOUT_MS: u64 = 60 * 1000;

/// Finished operators kept for `GET /pd/api/v1/operators/records`; the oldest go first.
pub const HISTORY_MAX: usize = 1024;

/// What a user asks for (the HTTP body's `name`, PD's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    AddPeer,
    RemovePeer,
    TransferLeader,
    TransferPeer,
    /// Merge the request's region (the source) into its neighbour `target_region_id`.
    MergeRegion,
}

impl Kind {
    pub fn parse(name: &str) -> Option<Kind> {
        match name {
            "add-peer" => Some(Kind::AddPeer),
            "remove-peer" => Some(Kind::RemovePeer),
            "transfer-leader" => Some(Kind::TransferLeader),
            "transfer-peer" => Some(Kind::TransferPeer),
            "merge-region" => Some(Kind::MergeRegion),
            _ => None,
        }
    }

    /// Whether the operator adds one peer (and needs one new peer id). A merge adds as many
    /// as the alignment needs ([`merge::new_peers_needed`]).
    pub fn adds_a_peer(self) -> bool {
        matches!(self, Kind::AddPeer | Kind::TransferPeer)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::AddPeer => "add-peer",
            Kind::RemovePeer => "remove-peer",
            Kind::TransferLeader => "transfer-leader",
            Kind::TransferPeer => "transfer-peer",
            Kind::MergeRegion => "merge-region",
        }
    }
}

/// One request for an operator, validated by [`plan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub kind: Kind,
    pub region_id: u64,
    /// The store that gains a peer or the leadership (add-peer, transfer-leader, transfer-peer).
    pub to_store: Option<u64>,
    /// The store that loses a peer (remove-peer, transfer-peer).
    pub from_store: Option<u64>,
    /// The region to merge into (merge-region; `region_id` is the source).
    pub target_region_id: Option<u64>,
}

/// One change to a region.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Done when the peer is in the region and not pending (it has caught up).
    AddLearner { peer: metapb::Peer },
    /// Done when the peer is a voter.
    PromoteLearner { peer: metapb::Peer },
    /// Done when the peer is gone from the region.
    RemovePeer { peer: metapb::Peer },
    /// Done when a peer on the store leads.
    TransferLeader { to: metapb::Peer },
    /// Done when a heartbeat of `target` shows a range covering `source`'s (the regions as
    /// they were when the operator was made). Always the last step of a merge.
    Merge { source: metapb::Region, target: metapb::Region },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::AddLearner { peer } => {
                write!(f, "add learner peer {} on store {}", peer.id, peer.store_id)
            }
            Step::PromoteLearner { peer } => {
                write!(f, "promote learner peer {} on store {} to voter", peer.id, peer.store_id)
            }
            Step::RemovePeer { peer } => {
                write!(f, "remove peer {} on store {}", peer.id, peer.store_id)
            }
            Step::TransferLeader { to } => {
                write!(f, "transfer leader to peer {} on store {}", to.id, to.store_id)
            }
            Step::Merge { source, target } => {
                write!(f, "merge region {} into region {}", source.id, target.id)
            }
        }
    }
}

/// Where an operator is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Running,
    Success,
    Timeout(String),
    Canceled(String),
}

impl Status {
    pub fn name(&self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Success => "success",
            Status::Timeout(_) => "timeout",
            Status::Canceled(_) => "canceled",
        }
    }
}

/// An operator for one region.
#[derive(Clone, Debug)]
pub struct Operator {
    pub kind: Kind,
    pub region_id: u64,
    /// The region's version when the operator was made: a split or merge makes it stale.
    pub version: u64,
    pub steps: Vec<Step>,
    /// Index of the step being executed; `steps.len()` once all are done.
    pub current: usize,
    pub status: Status,
    pub created_unix_ms: u64,
    pub step_started_unix_ms: u64,
    pub finished_unix_ms: Option<u64>,
    /// Merge only: the source's conf_ver when the `Merge` command was last sent (the epoch
    /// the store's PrepareMerge bumps; see [`merge`]).
    pub merge_conf_ver: Option<u64>,
}

/// Why an operator cannot be made. Each names what to do about it where there is something.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("store {0} not found")]
    StoreNotFound(u64),
    #[error("store {store} cannot take a peer: it is {state}")]
    StoreNotUp { store: u64, state: &'static str },
    #[error(
        "store {store} cannot take a peer: no heartbeat from it for {since_secs}s (down or not started)"
    )]
    StoreDown { store: u64, since_secs: u64 },
    #[error(
        "store {store} cannot take a peer: no heartbeat from it since PD started (down, or PD \
         restarted moments ago: retry after its next heartbeat)"
    )]
    StoreNotHeardYet { store: u64 },
    #[error("region {region} already has peer {peer} on store {store}")]
    PeerExists { region: u64, peer: u64, store: u64 },
    #[error("region {region} has no peer on store {store}")]
    NoPeer { region: u64, store: u64 },
    #[error(
        "region {region} already has {peers} peers (max-replicas is {max}): remove one first \
         (remove-peer) or move one (transfer-peer)"
    )]
    MaxReplicas { region: u64, peers: usize, max: usize },
    #[error("peer {peer} on store {store} is the last voter of region {region}")]
    LastVoter { region: u64, peer: u64, store: u64 },
    #[error("peer {peer} on store {store} is a learner: it cannot lead region {region}")]
    NotVoter { region: u64, peer: u64, store: u64 },
    #[error("store {store} already leads region {region}")]
    AlreadyLeader { region: u64, store: u64 },
    #[error("region {0} has no known leader yet: wait for its heartbeat")]
    NoLeader(u64),
    #[error("region {region} already has a running {kind} operator: cancel it first")]
    Busy { region: u64, kind: &'static str },
    #[error("{kind} needs {what}")]
    Missing { kind: &'static str, what: &'static str },
    #[error("from-store and to-store are both {0}")]
    SameStore(u64),
    #[error("cannot merge region {0} into itself")]
    SameRegion(u64),
    #[error("regions {source_id} and {target_id} are not adjacent: only neighbours merge")]
    NotAdjacent { source_id: u64, target_id: u64 },
    #[error(
        "region {region} is being split (it asked for split ids {since_ms} ms ago): retry once \
         the split is done"
    )]
    InSplit { region: u64, since_ms: u64 },
    #[error(
        "region {0} is in a joint configuration (a membership change is half done): retry once \
         it finishes"
    )]
    Joint(u64),
    #[error(
        "region {target_id} has a learner on store {store} where region {source_id} has a \
         voter: demoting a voter is not supported, remove the learner or the voter first"
    )]
    LearnerOnTarget { source_id: u64, target_id: u64, store: u64 },
}

/// What `plan` needs to know about a store.
#[derive(Clone, Copy, Debug)]
pub struct StoreView {
    pub state: metapb::StoreState,
    /// 0 when the store has not sent a heartbeat since PD started.
    pub last_heartbeat_unix_ms: u64,
}

/// A target store is refused when PD has not heard from it for this long.
pub const STORE_HEARTBEAT_STALE_MS: u64 = 60 * 1000;

/// Step 1: checks `req` against the region and stores and makes its steps. `new_peer_id` is
/// the id of the peer to add, for the kinds that add one ([`Kind::adds_a_peer`]).
pub fn plan(
    req: &Request,
    region: &RegionInfo,
    store: impl Fn(u64) -> Option<StoreView>,
    max_replicas: usize,
    now_ms: u64,
    new_peer_id: u64,
) -> Result<Operator, PlanError> {
    let r = &region.region;
    let kind = req.kind.name();
    let need = |v: Option<u64>, what| v.ok_or(PlanError::Missing { kind, what });
    let on_store = |s: u64| r.peers.iter().find(|p| p.store_id == s).cloned();
    let new_learner = |s: u64| -> Result<metapb::Peer, PlanError> {
        if let Some(p) = on_store(s) {
            return Err(PlanError::PeerExists { region: r.id, peer: p.id, store: s });
        }
        check_store_up(&store, s, now_ms)?;
        let id = new_peer_id;
        Ok(metapb::Peer { id, store_id: s, role: PeerRole::Learner as i32, ..Default::default() })
    };
    let removable = |s: u64| -> Result<metapb::Peer, PlanError> {
        let p = on_store(s).ok_or(PlanError::NoPeer { region: r.id, store: s })?;
        let voters = r.peers.iter().filter(|q| is_voter(q)).count();
        if is_voter(&p) && voters <= 1 {
            return Err(PlanError::LastVoter { region: r.id, peer: p.id, store: s });
        }
        Ok(p)
    };
    let steps = match req.kind {
        Kind::AddPeer => {
            let to = need(req.to_store, "a store to add the peer on")?;
            if r.peers.len() >= max_replicas {
                if let Some(p) = on_store(to) {
                    return Err(PlanError::PeerExists { region: r.id, peer: p.id, store: to });
                }
                return Err(PlanError::MaxReplicas {
                    region: r.id,
                    peers: r.peers.len(),
                    max: max_replicas,
                });
            }
            let peer = new_learner(to)?;
            vec![
                Step::AddLearner { peer: peer.clone() },
                Step::PromoteLearner { peer: voter(peer) },
            ]
        }
        Kind::RemovePeer => {
            let from = need(req.from_store, "a store to remove the peer from")?;
            vec![Step::RemovePeer { peer: removable(from)? }]
        }
        Kind::TransferPeer => {
            let from = need(req.from_store, "a store to move the peer from")?;
            let to = need(req.to_store, "a store to move the peer to")?;
            if from == to {
                return Err(PlanError::SameStore(from));
            }
            let old = removable(from)?;
            let peer = new_learner(to)?;
            let mut steps = vec![Step::AddLearner { peer: peer.clone() }];
            if is_voter(&old) {
                steps.push(Step::PromoteLearner { peer: voter(peer) });
            }
            steps.push(Step::RemovePeer { peer: old });
            steps
        }
        Kind::TransferLeader => {
            let to = need(req.to_store, "a store to move the leadership to")?;
            let p = on_store(to).ok_or(PlanError::NoPeer { region: r.id, store: to })?;
            if !is_voter(&p) {
                return Err(PlanError::NotVoter { region: r.id, peer: p.id, store: to });
            }
            match &region.leader {
                None => return Err(PlanError::NoLeader(r.id)),
                Some(l) if l.store_id == to => {
                    return Err(PlanError::AlreadyLeader { region: r.id, store: to })
                }
                Some(_) => {}
            }
            vec![Step::TransferLeader { to: p }]
        }
        Kind::MergeRegion => unreachable!("merge-region involves two regions: see plan_merge"),
    };
    Ok(Operator::start(req.kind, r, steps, now_ms))
}

impl Operator {
    /// A running operator of `kind` on `region` (at its current version), at its first step.
    fn start(kind: Kind, region: &metapb::Region, steps: Vec<Step>, now_ms: u64) -> Operator {
        Operator {
            kind,
            region_id: region.id,
            version: region.region_epoch.as_ref().map_or(0, |e| e.version),
            steps,
            current: 0,
            status: Status::Running,
            created_unix_ms: now_ms,
            step_started_unix_ms: now_ms,
            finished_unix_ms: None,
            merge_conf_ver: None,
        }
    }
}

/// Whether `s` can take a new peer: known, up, and heard from lately.
fn check_store_up(
    store: &impl Fn(u64) -> Option<StoreView>,
    s: u64,
    now_ms: u64,
) -> Result<(), PlanError> {
    let view = store(s).ok_or(PlanError::StoreNotFound(s))?;
    if view.state != metapb::StoreState::Up {
        return Err(PlanError::StoreNotUp { store: s, state: view.state.as_str_name() });
    }
    if view.last_heartbeat_unix_ms == 0 {
        return Err(PlanError::StoreNotHeardYet { store: s });
    }
    let since = now_ms.saturating_sub(view.last_heartbeat_unix_ms);
    if since > STORE_HEARTBEAT_STALE_MS {
        return Err(PlanError::StoreDown { store: s, since_secs: since / 1000 });
    }
    Ok(())
}

fn voter(mut p: metapb::Peer) -> metapb::Peer {
    p.role = PeerRole::Voter as i32;
    p
}

fn is_voter(p: &metapb::Peer) -> bool {
    matches!(
        PeerRole::try_from(p.role),
        Ok(PeerRole::Voter | PeerRole::IncomingVoter | PeerRole::DemotingVoter)
    )
}

/// Whether `step` is done in `info`; `Err` when it can no longer be done.
fn step_done(step: &Step, info: &RegionInfo) -> Result<bool, String> {
    let r = &info.region;
    let by_id = |id: u64| r.peers.iter().find(|p| p.id == id);
    let vanished =
        |p: &metapb::Peer| format!("peer {} on store {} left the region", p.id, p.store_id);
    match step {
        Step::AddLearner { peer } => {
            if let Some(other) =
                r.peers.iter().find(|p| p.store_id == peer.store_id && p.id != peer.id)
            {
                return Err(format!(
                    "store {} got another peer ({}) of the region",
                    peer.store_id, other.id
                ));
            }
            Ok(by_id(peer.id).is_some() && !info.pending_peers.iter().any(|p| p.id == peer.id))
        }
        Step::PromoteLearner { peer } => match by_id(peer.id) {
            Some(p) => Ok(PeerRole::try_from(p.role) == Ok(PeerRole::Voter)),
            None => Err(vanished(peer)),
        },
        Step::RemovePeer { peer } => Ok(by_id(peer.id).is_none()),
        Step::TransferLeader { to } => match by_id(to.id) {
            Some(_) => Ok(info.leader.as_ref().is_some_and(|l| l.id == to.id)),
            None => Err(vanished(to)),
        },
        // Only the target's heartbeat shows a merge done (`on_target_heartbeat`).
        Step::Merge { .. } => Ok(false),
    }
}

impl Operator {
    pub fn is_running(&self) -> bool {
        self.status == Status::Running
    }

    fn timeout_ms(&self) -> u64 {
        match self.steps.get(self.current) {
            Some(Step::AddLearner { .. }) => ADD_LEARNER_TIMEOUT_MS,
            Some(Step::Merge { .. }) => MERGE_STEP_TIMEOUT_MS,
            Some(
                Step::PromoteLearner { .. } | Step::RemovePeer { .. } | Step::TransferLeader { .. },
            )
            | None => STEP_TIMEOUT_MS,
        }
    }

    fn finish(&mut self, status: Status, now_ms: u64) {
        self.status = status;
        self.finished_unix_ms = Some(now_ms);
    }

    /// Ends a running operator whose step has run past its timeout. Called on every
    /// heartbeat and before any listing, so a region that stopped heartbeating (its leader is
    /// gone) still shows its operator timed out.
    pub fn check_timeout(&mut self, now_ms: u64) {
        if self.is_running() && now_ms.saturating_sub(self.step_started_unix_ms) > self.timeout_ms()
        {
            let step = self.steps.get(self.current).map_or(String::new(), ToString::to_string);
            let secs = self.timeout_ms() / 1000;
            self.finish(
                Status::Timeout(format!("step \"{step}\" not done within {secs}s")),
                now_ms,
            );
        }
    }

    /// Cancels a running operator at the user's request.
    pub fn cancel(&mut self, now_ms: u64) {
        if self.is_running() {
            self.finish(Status::Canceled("canceled by the user".into()), now_ms);
        }
    }

    /// Step 2: advances past the steps `info` (a leader's heartbeat) shows done and answers the
    /// command for the current step; `None` once the operator has finished.
    pub fn on_heartbeat(
        &mut self,
        info: &RegionInfo,
        now_ms: u64,
    ) -> Option<pdpb::RegionHeartbeatResponse> {
        if !self.is_running() || !self.epoch_lets_go_on(info, now_ms) {
            return None;
        }
        while let Some(step) = self.steps.get(self.current) {
            match step_done(step, info) {
                Ok(true) => {
                    self.current += 1;
                    self.step_started_unix_ms = now_ms;
                }
                Ok(false) => break,
                Err(why) => {
                    self.finish(Status::Canceled(why), now_ms);
                    return None;
                }
            }
        }
        if self.current == self.steps.len() {
            self.finish(Status::Success, now_ms);
            return None;
        }
        self.check_timeout(now_ms);
        if !self.is_running() {
            return None;
        }
        self.command(info)
    }

    /// Whether the heartbeat's epoch lets the operator dispatch. Ends it when the region
    /// changed under it (a split or merge moved the version; for a merge step, the rules in
    /// `operator/merge.rs`); `false` without ending it while the store carries a merge on.
    fn epoch_lets_go_on(&mut self, info: &RegionInfo, now_ms: u64) -> bool {
        let version = info.region.region_epoch.as_ref().map_or(0, |e| e.version);
        let why = match self.steps.get(self.current) {
            Some(Step::Merge { source, .. }) => {
                match merge::source_epoch(source, self.version, self.merge_conf_ver, &info.region) {
                    merge::SourceEpoch::NotStarted => return true,
                    merge::SourceEpoch::InProgress => {
                        // The store carries the merge on; nothing to send.
                        self.check_timeout(now_ms);
                        return false;
                    }
                    merge::SourceEpoch::Ended(why) => why,
                }
            }
            _ if version != self.version => {
                format!("the region split or merged (version {} → {version})", self.version)
            }
            _ => return true,
        };
        self.finish(Status::Canceled(why), now_ms);
        false
    }

    /// The command for the current step, addressed to the heartbeat's leader and epoch;
    /// `None` when there is nobody to hand leadership to yet.
    fn command(&mut self, info: &RegionInfo) -> Option<pdpb::RegionHeartbeatResponse> {
        let step = self.steps[self.current].clone();
        let mut resp = pdpb::RegionHeartbeatResponse {
            region_id: info.region.id,
            region_epoch: info.region.region_epoch,
            target_peer: info.leader.clone(),
            ..Default::default()
        };
        let change = |peer: &metapb::Peer, t: ConfChangeType| {
            Some(pdpb::ChangePeer { peer: Some(peer.clone()), change_type: t as i32 })
        };
        match &step {
            Step::AddLearner { peer } => {
                resp.change_peer = change(peer, ConfChangeType::AddLearnerNode);
            }
            Step::PromoteLearner { peer } => {
                resp.change_peer = change(peer, ConfChangeType::AddNode)
            }
            Step::TransferLeader { to } => resp.transfer_leader = Some(transfer(to)),
            Step::RemovePeer { peer } => {
                let leads = info.leader.as_ref().is_some_and(|l| l.id == peer.id);
                if !leads {
                    resp.change_peer = change(peer, ConfChangeType::RemoveNode);
                } else {
                    // Step 3: the leader is not removed; another voter takes over first.
                    resp.transfer_leader = Some(transfer(self.successor(info, peer)?));
                }
            }
            Step::Merge { target, .. } => {
                // The target as PD knows it: any change to it since ended the operator.
                resp.merge = Some(pdpb::Merge { target: Some(target.clone()) });
                self.merge_conf_ver = info.region.region_epoch.as_ref().map(|e| e.conf_ver);
            }
        }
        Some(resp)
    }

    /// Step 6, for a merge: a heartbeat of the target region, which the operator locks.
    /// Finishes the operator when the heartbeat shows the merge done or the target changed;
    /// sends nothing (the source's leader runs the merge).
    pub fn on_target_heartbeat(&mut self, info: &RegionInfo, now_ms: u64) {
        if !self.is_running() {
            return;
        }
        let Some(Step::Merge { source, target }) = self.steps.last() else {
            return;
        };
        match merge::target_state(source, target, &info.region) {
            merge::TargetState::Unchanged => self.check_timeout(now_ms),
            merge::TargetState::Merged => {
                self.current = self.steps.len();
                self.finish(Status::Success, now_ms);
            }
            merge::TargetState::Changed(why) => self.finish(Status::Canceled(why), now_ms),
        }
    }

    /// The region a merge locks besides its own (the target); `None` for other kinds.
    pub fn target_region_id(&self) -> Option<u64> {
        match self.steps.last() {
            Some(Step::Merge { target, .. }) => Some(target.id),
            _ => None,
        }
    }

    /// Who leads instead of `leaving` before it is removed: a caught-up voter, preferably one
    /// that no later step removes too (a merge's alignment may remove several).
    fn successor<'a>(
        &self,
        info: &'a RegionInfo,
        leaving: &metapb::Peer,
    ) -> Option<&'a metapb::Peer> {
        let pending = |p: &metapb::Peer| info.pending_peers.iter().any(|q| q.id == p.id);
        let removed_later = |p: &metapb::Peer| {
            self.steps[self.current..]
                .iter()
                .any(|s| matches!(s, Step::RemovePeer { peer } if peer.id == p.id))
        };
        let mut candidates =
            info.region.peers.iter().filter(|p| p.id != leaving.id && is_voter(p) && !pending(p));
        candidates.clone().find(|p| !removed_later(p)).or_else(|| candidates.next())
    }
}

fn transfer(to: &metapb::Peer) -> pdpb::TransferLeader {
    pdpb::TransferLeader { peer: Some(to.clone()), peers: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    fn peer(id: u64, store: u64, role: PeerRole) -> metapb::Peer {
        metapb::Peer { id, store_id: store, role: role as i32, ..Default::default() }
    }

    fn info(peers: Vec<metapb::Peer>, leader: Option<u64>) -> RegionInfo {
        let leader = leader.and_then(|id| peers.iter().find(|p| p.id == id).cloned());
        RegionInfo {
            region: metapb::Region {
                id: 7,
                region_epoch: Some(metapb::RegionEpoch { conf_ver: 3, version: 2 }),
                peers,
                ..Default::default()
            },
            leader,
            ..Default::default()
        }
    }

    fn three() -> RegionInfo {
        info(
            vec![
                peer(11, 1, PeerRole::Voter),
                peer(12, 2, PeerRole::Voter),
                peer(13, 3, PeerRole::Voter),
            ],
            Some(11),
        )
    }

    fn up(id: u64) -> Option<StoreView> {
        (id <= 5).then_some(StoreView {
            state: metapb::StoreState::Up,
            last_heartbeat_unix_ms: NOW - 1000,
        })
    }

    fn req(kind: Kind, from: Option<u64>, to: Option<u64>) -> Request {
        Request { kind, region_id: 7, from_store: from, to_store: to, target_region_id: None }
    }

    fn plan_with(r: &Request, i: &RegionInfo, max: usize) -> Result<Operator, PlanError> {
        plan(r, i, up, max, NOW, 99)
    }

    #[test]
    fn add_peer_adds_a_learner_and_promotes_it_once_it_caught_up() {
        let mut op = plan_with(&req(Kind::AddPeer, None, Some(4)), &three(), 5).unwrap();
        assert_eq!(op.steps.len(), 2);
        // Not there yet: the command is to add the learner.
        let resp = op.on_heartbeat(&three(), NOW).unwrap();
        let cp = resp.change_peer.unwrap();
        assert_eq!(cp.change_type, ConfChangeType::AddLearnerNode as i32);
        assert_eq!(cp.peer.unwrap(), peer(99, 4, PeerRole::Learner));
        assert_eq!(resp.target_peer.unwrap().id, 11);
        assert_eq!(resp.region_epoch.unwrap().conf_ver, 3);
        // Added but pending (waiting for its snapshot): the same step again.
        let mut with_learner = three();
        with_learner.region.peers.push(peer(99, 4, PeerRole::Learner));
        with_learner.pending_peers = vec![peer(99, 4, PeerRole::Learner)];
        let cp = op.on_heartbeat(&with_learner, NOW).unwrap().change_peer.unwrap();
        assert_eq!(cp.change_type, ConfChangeType::AddLearnerNode as i32);
        // Caught up: promote.
        with_learner.pending_peers.clear();
        let cp = op.on_heartbeat(&with_learner, NOW).unwrap().change_peer.unwrap();
        assert_eq!(cp.change_type, ConfChangeType::AddNode as i32);
        assert_eq!(cp.peer.unwrap(), peer(99, 4, PeerRole::Voter));
        // Promoted: done.
        with_learner.region.peers[3].role = PeerRole::Voter as i32;
        assert!(op.on_heartbeat(&with_learner, NOW).is_none());
        assert_eq!(op.status, Status::Success);
    }

    #[test]
    fn removing_the_leader_moves_leadership_first() {
        let mut op = plan_with(&req(Kind::RemovePeer, Some(1), None), &three(), 3).unwrap();
        let resp = op.on_heartbeat(&three(), NOW).unwrap();
        assert!(resp.change_peer.is_none());
        let to = resp.transfer_leader.unwrap().peer.unwrap();
        assert_ne!(to.id, 11);
        // Leadership moved: now the removal.
        let moved = info(three().region.peers, Some(to.id));
        let cp = op.on_heartbeat(&moved, NOW).unwrap().change_peer.unwrap();
        assert_eq!(cp.change_type, ConfChangeType::RemoveNode as i32);
        assert_eq!(cp.peer.unwrap().id, 11);
        let removed = info(moved.region.peers[1..].to_vec(), Some(to.id));
        assert!(op.on_heartbeat(&removed, NOW).is_none());
        assert_eq!(op.status, Status::Success);
    }

    #[test]
    fn transfer_peer_adds_promotes_then_removes() {
        let op = plan_with(&req(Kind::TransferPeer, Some(2), Some(4)), &three(), 3).unwrap();
        let names: Vec<String> = op.steps.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "add learner peer 99 on store 4",
                "promote learner peer 99 on store 4 to voter",
                "remove peer 12 on store 2"
            ]
        );
    }

    #[test]
    fn transfer_leader_finishes_when_the_target_leads() {
        let mut op = plan_with(&req(Kind::TransferLeader, None, Some(3)), &three(), 3).unwrap();
        let resp = op.on_heartbeat(&three(), NOW).unwrap();
        assert_eq!(resp.transfer_leader.unwrap().peer.unwrap().id, 13);
        assert!(op.on_heartbeat(&info(three().region.peers, Some(13)), NOW).is_none());
        assert_eq!(op.status, Status::Success);
    }

    #[test]
    fn bad_requests_are_refused_with_the_reason() {
        let r = three();
        let cases = [
            (
                req(Kind::AddPeer, None, Some(2)),
                PlanError::PeerExists { region: 7, peer: 12, store: 2 },
            ),
            (
                req(Kind::AddPeer, None, Some(4)),
                PlanError::MaxReplicas { region: 7, peers: 3, max: 3 },
            ),
            (
                req(Kind::AddPeer, None, None),
                PlanError::Missing { kind: "add-peer", what: "a store to add the peer on" },
            ),
            (req(Kind::RemovePeer, Some(4), None), PlanError::NoPeer { region: 7, store: 4 }),
            (
                req(Kind::TransferLeader, None, Some(1)),
                PlanError::AlreadyLeader { region: 7, store: 1 },
            ),
            (req(Kind::TransferLeader, None, Some(9)), PlanError::NoPeer { region: 7, store: 9 }),
            (req(Kind::TransferPeer, Some(2), Some(2)), PlanError::SameStore(2)),
            (req(Kind::TransferPeer, Some(2), Some(9)), PlanError::StoreNotFound(9)),
        ];
        for (r_, want) in cases {
            assert_eq!(plan_with(&r_, &r, 3).unwrap_err(), want, "{r_:?}");
        }
        // The last voter.
        let one =
            info(vec![peer(11, 1, PeerRole::Voter), peer(14, 4, PeerRole::Learner)], Some(11));
        assert_eq!(
            plan_with(&req(Kind::RemovePeer, Some(1), None), &one, 3).unwrap_err(),
            PlanError::LastVoter { region: 7, peer: 11, store: 1 }
        );
        // A learner cannot lead.
        assert_eq!(
            plan_with(&req(Kind::TransferLeader, None, Some(4)), &one, 3).unwrap_err(),
            PlanError::NotVoter { region: 7, peer: 14, store: 4 }
        );
        // No leader known.
        let leaderless = info(three().region.peers, None);
        assert_eq!(
            plan_with(&req(Kind::TransferLeader, None, Some(2)), &leaderless, 3).unwrap_err(),
            PlanError::NoLeader(7)
        );
        // A store that stopped heartbeating, or never did, takes no peer.
        let silent = |id| {
            Some(StoreView {
                state: metapb::StoreState::Up,
                last_heartbeat_unix_ms: if id == 4 {
                    0
                } else {
                    NOW - STORE_HEARTBEAT_STALE_MS - 1
                },
            })
        };
        let e = plan(&req(Kind::AddPeer, None, Some(4)), &r, silent, 5, NOW, 99);
        assert_eq!(e.unwrap_err(), PlanError::StoreNotHeardYet { store: 4 });
        for to in [5] {
            let e = plan(&req(Kind::AddPeer, None, Some(to)), &r, silent, 5, NOW, 99);
            assert!(matches!(e, Err(PlanError::StoreDown { since_secs: 60, .. })), "{e:?}");
        }
    }

    #[test]
    fn a_split_cancels_and_a_stuck_step_times_out() {
        let mut op = plan_with(&req(Kind::TransferLeader, None, Some(3)), &three(), 3).unwrap();
        let mut split = three();
        split.region.region_epoch.as_mut().unwrap().version += 1;
        assert!(op.on_heartbeat(&split, NOW).is_none());
        assert_eq!(op.status.name(), "canceled");

        let mut op = plan_with(&req(Kind::TransferLeader, None, Some(3)), &three(), 3).unwrap();
        op.check_timeout(NOW + STEP_TIMEOUT_MS);
        assert!(op.is_running());
        assert!(op.on_heartbeat(&three(), NOW + STEP_TIMEOUT_MS + 1).is_none());
        assert_eq!(op.status.name(), "timeout");
        assert!(op.finished_unix_ms.is_some());

        // A target that left the region cancels the operator instead of waiting for the timeout.
        let mut op = plan_with(&req(Kind::TransferLeader, None, Some(3)), &three(), 3).unwrap();
        let gone = info(three().region.peers[..2].to_vec(), Some(11));
        assert!(op.on_heartbeat(&gone, NOW).is_none());
        assert!(matches!(op.status, Status::Canceled(ref why) if why.contains("left the region")));
    }
}
