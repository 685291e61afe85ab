//! Linearizable reads.
//!
//! A read is served from a KV snapshot taken once this peer's applied state includes every
//! write acknowledged before the read arrived. Two ways to know that:
//!
//! 1. **Lease read**: the leader's lease is valid (no other leader can exist, see `lease`) and
//!    it has applied an entry of its own term (so everything committed by earlier leaders is
//!    applied). Served at once, without a raft round trip.
//! 2. **ReadIndex**: otherwise the leader asks a quorum to confirm its leadership (raft-rs'
//!    ReadIndex, a heartbeat round) and records the commit index at that time; the read is
//!    served when the applied index reaches it. The confirmation also renews the lease, from
//!    the time the request was sent.
//!
//! A ReadIndex request is only issued once the leader has applied an entry of its term: raft-rs
//! silently drops read requests before its term's first commit, so earlier reads wait here.
//! Reads still queued when the peer stops being leader are answered `NotLeader`.

use std::collections::VecDeque;
use std::time::Instant;

use engine_traits::KvEngine;
use engine_traits::RaftEngine;
use proto::raft_cmdpb::{
    CmdType, GetResponse, RaftCmdRequest, RaftCmdResponse, RaftResponseHeader, Response,
    SnapResponse,
};
use raft::ReadState;
use slog::warn;

use super::lease::LeaseState;
use super::{Peer, Snap};
use crate::callback::{Callback, CmdResponse};
use crate::error::{Error, Result};
use crate::region_snapshot::RegionSnapshot;
use crate::store::PollContext;

struct PendingRead<S> {
    id: u64,
    request: RaftCmdRequest,
    callback: Callback<S>,
    /// When the ReadIndex request was issued (`None`: waiting for the term's first apply).
    sent_at: Option<Instant>,
    /// The commit index a quorum confirmed; serve once applied reaches it.
    read_index: Option<u64>,
}

pub(super) struct ReadQueue<S> {
    reads: VecDeque<PendingRead<S>>,
    next_id: u64,
}

impl<S> Default for ReadQueue<S> {
    fn default() -> Self {
        ReadQueue { reads: VecDeque::new(), next_id: 1 }
    }
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    pub(super) fn on_read<T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        request: RaftCmdRequest,
        callback: Callback<Snap<EK>>,
    ) {
        let now = ctx.clock.now();
        if self.can_read_locally(now) {
            ctx.stats.record_lease_read();
            self.serve_read(ctx, request, callback);
            return;
        }
        if self.reads.reads.len() >= ctx.cfg.max_pending_reads {
            let e = Error::ServerIsBusy(format!(
                "region {} has too many pending reads",
                self.region_id
            ));
            return callback.invoke_with_error(e);
        }
        ctx.stats.record_read_index_read();
        let id = self.reads.next_id;
        self.reads.next_id += 1;
        self.reads.reads.push_back(PendingRead {
            id,
            request,
            callback,
            sent_at: None,
            read_index: None,
        });
        if self.applied_term == self.term() {
            self.send_read_indexes(now);
        }
    }

    fn can_read_locally(&self, now: Instant) -> bool {
        self.is_leader()
            && self.applied_term == self.term()
            && self.leadership.lease.inspect(now) == LeaseState::Valid
    }

    /// Issues ReadIndex for every read still waiting for one; `now` is when they are sent.
    pub(super) fn send_read_indexes(&mut self, now: Instant) {
        for r in self.reads.reads.iter_mut().filter(|r| r.sent_at.is_none()) {
            r.sent_at = Some(now);
            self.raft_group.read_index(r.id.to_be_bytes().to_vec());
        }
    }

    /// Records the indexes a quorum confirmed (from a ready).
    pub(super) fn on_read_states(&mut self, states: Vec<ReadState>) {
        for rs in states {
            let Ok(id) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()).map(u64::from_be_bytes)
            else {
                warn!(self.logger, "read state with a foreign context"; "len" => rs.request_ctx.len());
                continue;
            };
            // ReadIndex confirms leadership as of `sent_at`: renew the lease from then.
            let mut renew_from = None;
            for r in self.reads.reads.iter_mut() {
                if r.id <= id && r.read_index.is_none() && r.sent_at.is_some() {
                    // raft-rs answers a context only after every earlier one, and a later
                    // confirmation also covers earlier requests.
                    r.read_index = Some(rs.index);
                    if r.id == id {
                        renew_from = r.sent_at;
                    }
                }
            }
            if let (Some(t), true) = (renew_from, self.is_leader()) {
                self.leadership.lease.renew(t);
            }
        }
    }

    /// Serves every read at the front of the queue whose index has been applied.
    /// A read confirmed at or after a committed PrepareMerge is not served: the merge target
    /// may serve the range by then (`merge`, step 2).
    pub(super) fn serve_ready_reads<T>(&mut self, ctx: &mut PollContext<EK, ER, T>) {
        let applied = self.applied_index().get();
        let fence = self.merge_fence();
        while self.reads.reads.front().is_some_and(|r| r.read_index.is_some_and(|i| i <= applied)) {
            let r = self.reads.reads.pop_front().expect("front exists");
            if fence.is_some_and(|f| r.read_index.is_some_and(|i| i >= f)) {
                let e = Error::ReadIndexNotReady {
                    region_id: self.region_id,
                    reason: "the region is merging".into(),
                };
                r.callback.invoke_with_error(e);
                continue;
            }
            self.serve_read(ctx, r.request, r.callback);
        }
    }

    /// Answers every queued read with `err` (leadership lost, peer destroyed).
    pub(super) fn fail_reads(&mut self, err: &Error) {
        let e = err.clone();
        for r in self.reads.reads.drain(..) {
            r.callback.invoke_with_error(e.clone());
        }
    }

    fn serve_read<T>(
        &self,
        ctx: &mut PollContext<EK, ER, T>,
        request: RaftCmdRequest,
        callback: Callback<Snap<EK>>,
    ) {
        // A read that waited (ReadIndex) may find the region split meanwhile: its keys may
        // belong to another region now.
        if let Err(e) = crate::util::check_region_epoch(&request, self.region()) {
            return callback.invoke_with_error(e);
        }
        let snap = RegionSnapshot::new(
            ctx.engines.kv.snapshot(),
            self.region().clone(),
            self.applied_index(),
        );
        match self.exec_read(&snap, &request) {
            Ok(responses) => callback.invoke_with(Ok(CmdResponse {
                response: RaftCmdResponse {
                    header: Some(RaftResponseHeader {
                        current_term: self.term().get(),
                        ..Default::default()
                    }),
                    responses,
                    ..Default::default()
                },
                snapshot: Some(snap),
            })),
            Err(e) => callback.invoke_with_error(e),
        }
    }

    fn exec_read(
        &self,
        snap: &RegionSnapshot<Snap<EK>>,
        req: &RaftCmdRequest,
    ) -> Result<Vec<Response>> {
        let mut out = Vec::with_capacity(req.requests.len());
        for r in &req.requests {
            let mut resp = Response { cmd_type: r.cmd_type, ..Default::default() };
            match CmdType::try_from(r.cmd_type).unwrap_or(CmdType::Invalid) {
                CmdType::Get => {
                    let get = r
                        .get
                        .as_ref()
                        .ok_or_else(|| Error::InvalidRequest("get without body".into()))?;
                    let cf = crate::apply::data_cf(&get.cf)?;
                    let value = snap.get_value_cf(cf, &get.key)?;
                    resp.get = Some(GetResponse { value: value.unwrap_or_default() });
                }
                CmdType::Snap | CmdType::ReadIndex => {
                    resp.snap = Some(SnapResponse { region: Some(self.region().clone()) });
                }
                other => return Err(Error::InvalidRequest(format!("{other:?} in a read command"))),
            }
            out.push(resp);
        }
        Ok(out)
    }
}
