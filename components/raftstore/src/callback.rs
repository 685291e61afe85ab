//! The answer channel of a command: every command is answered exactly once.
//!
//! A [`Callback`] wraps the closure supplied at the gRPC edge (the only place closures enter the
//! raftstore). It is consumed by [`Callback::invoke`], so it cannot be answered twice. If it is
//! dropped unanswered (a peer destroyed with proposals pending, a queue cleared on shutdown, a
//! bug), its `Drop` answers with a `RegionNotFound`-style error naming the reason, so the client
//! gets a retryable region error instead of a hung request. Dropping a callback is therefore
//! never silent, but it is a fallback: code paths that discard work SHOULD answer with the
//! precise error (`StaleCommand`, `NotLeader`, ...) first.

use std::fmt;

use proto::errorpb;
use proto::raft_cmdpb::{RaftCmdResponse, RaftResponseHeader};
use util::RegionId;

type ResponseFn = Box<dyn FnOnce(RaftCmdResponse) + Send>;

/// Answers one command, exactly once.
pub struct Callback {
    region_id: RegionId,
    f: Option<ResponseFn>,
}

impl Callback {
    pub fn new(region_id: RegionId, f: impl FnOnce(RaftCmdResponse) + Send + 'static) -> Callback {
        Callback { region_id, f: Some(Box::new(f)) }
    }

    /// A callback whose answer nobody waits for (internal commands).
    pub fn none(region_id: RegionId) -> Callback {
        Callback::new(region_id, |_| {})
    }

    /// Delivers the response.
    pub fn invoke(mut self, resp: RaftCmdResponse) {
        let f = self.f.take().expect("a callback holds its closure until invoked");
        f(resp);
    }

    /// Delivers a region error.
    pub fn invoke_with_error(self, err: errorpb::Error) {
        self.invoke(error_response(err));
    }
}

impl Drop for Callback {
    fn drop(&mut self) {
        if let Some(f) = self.f.take() {
            let err = errorpb::Error {
                message: format!("region {} dropped the command without answering", self.region_id),
                region_not_found: Some(errorpb::RegionNotFound { region_id: self.region_id.get() }),
                ..Default::default()
            };
            f(error_response(err));
        }
    }
}

impl fmt::Debug for Callback {
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

    #[test]
    fn invoke_delivers_once() {
        let (tx, rx) = mpsc::channel();
        let cb = Callback::new(RegionId(1), move |resp| tx.send(resp).unwrap());
        cb.invoke(RaftCmdResponse::default());
        assert_eq!(rx.try_recv().unwrap(), RaftCmdResponse::default());
        assert!(rx.try_recv().is_err(), "answered twice");
    }

    #[test]
    fn dropping_answers_region_not_found() {
        let (tx, rx) = mpsc::channel();
        drop(Callback::new(RegionId(9), move |resp| tx.send(resp).unwrap()));
        let resp = rx.try_recv().expect("a dropped callback still answers");
        let err = resp.header.unwrap().error.unwrap();
        assert_eq!(err.region_not_found.unwrap().region_id, 9);
        assert!(rx.try_recv().is_err());
    }
}
