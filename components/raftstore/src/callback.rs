//! The answer channel of a command: every command is answered exactly once.
//!
//! A [`Callback`] wraps the closure supplied at the gRPC edge (the only place closures enter the
//! raftstore). It is consumed by [`Callback::invoke`], so it cannot be answered twice. If it is
//! dropped unanswered (a peer destroyed with proposals pending, a mailbox dropped on shutdown, a
//! bug), its `Drop` answers with a `RegionNotFound` error naming the reason, so the client gets
//! a retryable region error instead of a hung request. Dropping a callback is therefore never
//! silent, but it is a fallback: code paths that discard work SHOULD answer with the precise
//! error (`StaleCommand`, `NotLeader`, ...) first.
//!
//! A read is answered with a [`RegionSnapshot`] (a consistent view of the region's data at or
//! after the read's linearization point); a write with the raft command response only.

use std::fmt;

use proto::errorpb;
use proto::raft_cmdpb::{RaftCmdResponse, RaftResponseHeader};
use util::RegionId;

use crate::region_snapshot::RegionSnapshot;

/// What a command is answered with.
pub struct CmdResponse<S> {
    pub response: RaftCmdResponse,
    /// Set for a successful read: the data to read from.
    pub snapshot: Option<RegionSnapshot<S>>,
}

impl<S> CmdResponse<S> {
    /// The region error, if the command failed.
    pub fn error(&self) -> Option<&errorpb::Error> {
        self.response.header.as_ref().and_then(|h| h.error.as_ref())
    }
}

type ResponseFn<S> = Box<dyn FnOnce(CmdResponse<S>) + Send>;

/// Answers one command, exactly once. `S` is the engine snapshot type a read returns.
pub struct Callback<S> {
    region_id: RegionId,
    f: Option<ResponseFn<S>>,
}

impl<S> Callback<S> {
    pub fn new(region_id: RegionId, f: impl FnOnce(CmdResponse<S>) + Send + 'static) -> Self {
        Callback { region_id, f: Some(Box::new(f)) }
    }

    /// A callback that only wants the raft response (writes, admin commands).
    pub fn write(region_id: RegionId, f: impl FnOnce(RaftCmdResponse) + Send + 'static) -> Self
    where
        S: 'static,
    {
        Callback::new(region_id, move |resp: CmdResponse<S>| f(resp.response))
    }

    /// A callback whose answer nobody waits for (internal commands).
    pub fn none(region_id: RegionId) -> Self {
        Callback { region_id, f: Some(Box::new(|_| {})) }
    }

    /// Delivers a response without a snapshot.
    pub fn invoke(self, response: RaftCmdResponse) {
        self.invoke_with(CmdResponse { response, snapshot: None });
    }

    /// Delivers a full response.
    pub fn invoke_with(mut self, resp: CmdResponse<S>) {
        let f = self.f.take().expect("a callback holds its closure until invoked");
        f(resp);
    }

    /// Delivers a region error.
    pub fn invoke_with_error(self, err: errorpb::Error) {
        self.invoke(error_response(err));
    }
}

impl<S> Drop for Callback<S> {
    fn drop(&mut self) {
        if let Some(f) = self.f.take() {
            let err = errorpb::Error {
                message: format!("region {} dropped the command without answering", self.region_id),
                region_not_found: Some(errorpb::RegionNotFound { region_id: self.region_id.get() }),
                ..Default::default()
            };
            f(CmdResponse { response: error_response(err), snapshot: None });
        }
    }
}

impl<S> fmt::Debug for Callback<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callback").field("region_id", &self.region_id).finish_non_exhaustive()
    }
}

/// A response carrying only `err` in its header.
pub fn error_response(err: errorpb::Error) -> RaftCmdResponse {
    RaftCmdResponse {
        header: Some(RaftResponseHeader { error: Some(err), ..Default::default() }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    type Cb = Callback<()>;

    #[test]
    fn invoke_delivers_once() {
        let (tx, rx) = mpsc::channel();
        let cb = Cb::write(RegionId(1), move |resp| tx.send(resp).unwrap());
        cb.invoke(RaftCmdResponse::default());
        assert_eq!(rx.try_recv().unwrap(), RaftCmdResponse::default());
        assert!(rx.try_recv().is_err(), "answered twice");
    }

    #[test]
    fn dropping_answers_region_not_found() {
        let (tx, rx) = mpsc::channel();
        drop(Cb::write(RegionId(9), move |resp| tx.send(resp).unwrap()));
        let resp = rx.try_recv().expect("a dropped callback still answers");
        let err = resp.header.unwrap().error.unwrap();
        assert_eq!(err.region_not_found.unwrap().region_id, 9);
        assert!(rx.try_recv().is_err());
    }
}
