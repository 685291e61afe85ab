//! Applying `CompactLog` (every replica): the new truncated log position goes into the apply
//! state, which the round's KV batch persists with everything applied before it. The entries
//! themselves are deleted later by the log GC worker, after the KV engine is synced
//! (`log_gc`'s durability invariant).
//!
//! Rules, checked against this replica's apply state (the leader's view may be older):
//! 1. an index at or below the truncated index is stale (an earlier compaction covered it):
//!    success, no effect;
//! 2. a zero term, or an index past the applied index, is refused as an invalid request (the
//!    leader only proposes indexes below the entry's own, which every replica applied first);
//! 3. otherwise the truncated state becomes `(index, term)`.

use proto::raft_cmdpb::{AdminCmdType, AdminResponse, CompactLogRequest, CompactLogResponse};
use proto::raft_serverpb::{RaftApplyState, RaftTruncatedState};

use crate::error::{Error, Result};

/// Executes `req` against `state`; returns the response and the new truncated state, if the
/// compaction took effect.
pub fn exec_compact_log(
    state: &mut RaftApplyState,
    req: Option<&CompactLogRequest>,
) -> Result<(AdminResponse, Option<RaftTruncatedState>)> {
    let req = req.ok_or_else(|| Error::InvalidRequest("CompactLog without its request".into()))?;
    let response = AdminResponse {
        cmd_type: AdminCmdType::CompactLog as i32,
        compact_log: Some(CompactLogResponse {}),
        ..Default::default()
    };
    let truncated = state.truncated_state.unwrap_or_default();
    if req.compact_index <= truncated.index {
        return Ok((response, None));
    }
    if req.compact_term == 0 {
        return Err(Error::InvalidRequest("CompactLog with term 0".into()));
    }
    if req.compact_index > state.applied_index {
        return Err(Error::InvalidRequest(format!(
            "cannot compact the log to {}: only {} is applied",
            req.compact_index, state.applied_index
        )));
    }
    let new = RaftTruncatedState { index: req.compact_index, term: req.compact_term };
    state.truncated_state = Some(new);
    Ok((response, Some(new)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(applied: u64, truncated: u64) -> RaftApplyState {
        RaftApplyState {
            applied_index: applied,
            truncated_state: Some(RaftTruncatedState { index: truncated, term: 5 }),
            ..Default::default()
        }
    }

    fn req(index: u64, term: u64) -> CompactLogRequest {
        CompactLogRequest { compact_index: index, compact_term: term, ..Default::default() }
    }

    #[test]
    fn compacts_to_the_index() {
        let mut s = state(100, 10);
        let (_, t) = exec_compact_log(&mut s, Some(&req(60, 7))).unwrap();
        assert_eq!(t, Some(RaftTruncatedState { index: 60, term: 7 }));
        assert_eq!(s.truncated_state, t);
    }

    #[test]
    fn stale_compaction_is_a_no_op() {
        let mut s = state(100, 60);
        let (_, t) = exec_compact_log(&mut s, Some(&req(60, 7))).unwrap();
        assert_eq!(t, None);
        let (_, t) = exec_compact_log(&mut s, Some(&req(20, 7))).unwrap();
        assert_eq!(t, None);
        assert_eq!(s.truncated_state.unwrap().index, 60);
    }

    #[test]
    fn bad_requests_are_refused_and_change_nothing() {
        let mut s = state(100, 10);
        for r in [None, Some(req(50, 0)), Some(req(101, 7))] {
            let e = exec_compact_log(&mut s, r.as_ref()).unwrap_err();
            assert!(matches!(e, Error::InvalidRequest(_)), "{e}");
        }
        assert_eq!(s, state(100, 10));
    }
}
