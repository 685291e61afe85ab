//! The answer channel of a command: every command is answered exactly once.
//!
//! A [`Callback`] wraps the closure supplied at the gRPC edge (the only place closures enter the
//! raftstore). It is consumed by [`Callback::invoke`], so it cannot be answered twice. If it is
//! dropped unanswered (a peer destroyed with proposals pending, a mailbox dropped on shutdown, a
//! bug), its `Drop` answers `RegionNotFound`, so the client gets a retryable region error
//! instead of a hung request. Dropping a callback is therefore never silent, but it is a
//! fallback: code paths that discard work SHOULD answer with the precise error
//! (`StaleCommand`, `NotLeader`, ...) first.
//!
//! The answer is a [`CmdResult`]: a typed [`Error`] on failure, which stays typed until the
//! edge that maps it for its client (`Error::into_region_error` at the gRPC edge). A read is
//! answered with a [`RegionSnapshot`] (a consistent view of the region's data at or after the
//! read's linearization point); a write with the raft command response only.

use std::fmt;

use proto::raft_cmdpb::RaftCmdResponse;
use util::RegionId;

use crate::error::Error;
use crate::region_snapshot::RegionSnapshot;

/// What a successful command is answered with.
pub struct CmdResponse<S> {
    pub response: RaftCmdResponse,
    /// Set for a successful read: the data to read from.
    pub snapshot: Option<RegionSnapshot<S>>,
}

/// What every command is answered with.
pub type CmdResult<S> = Result<CmdResponse<S>, Error>;

type ResponseFn<S> = Box<dyn FnOnce(CmdResult<S>) + Send>;

/// Answers one command, exactly once. `S` is the engine snapshot type a read returns.
pub struct Callback<S> {
    region_id: RegionId,
    f: Option<ResponseFn<S>>,
}

impl<S> Callback<S> {
    pub fn new(region_id: RegionId, f: impl FnOnce(CmdResult<S>) + Send + 'static) -> Self {
        Callback { region_id, f: Some(Box::new(f)) }
    }

    /// A callback that only wants the raft response (writes, admin commands).
    pub fn write(
        region_id: RegionId,
        f: impl FnOnce(Result<RaftCmdResponse, Error>) + Send + 'static,
    ) -> Self
    where
        S: 'static,
    {
        Callback::new(region_id, move |resp: CmdResult<S>| f(resp.map(|r| r.response)))
    }

    /// A callback whose answer nobody waits for (internal commands).
    pub fn none(region_id: RegionId) -> Self {
        Callback { region_id, f: Some(Box::new(|_| {})) }
    }

    /// Delivers a successful response without a snapshot.
    pub fn invoke(self, response: RaftCmdResponse) {
        self.invoke_with(Ok(CmdResponse { response, snapshot: None }));
    }

    /// Delivers a result.
    pub fn invoke_with(mut self, resp: CmdResult<S>) {
        let f = self.f.take().expect("a callback holds its closure until invoked");
        f(resp);
    }

    /// Delivers an error.
    pub fn invoke_with_error(self, err: Error) {
        self.invoke_with(Err(err));
    }
}

impl<S> Drop for Callback<S> {
    fn drop(&mut self) {
        if let Some(f) = self.f.take() {
            f(Err(Error::RegionNotFound(self.region_id)));
        }
    }
}

impl<S> fmt::Debug for Callback<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callback").field("region_id", &self.region_id).finish_non_exhaustive()
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
        assert_eq!(rx.try_recv().unwrap(), Ok(RaftCmdResponse::default()));
        assert!(rx.try_recv().is_err(), "answered twice");
    }

    #[test]
    fn dropping_answers_region_not_found() {
        let (tx, rx) = mpsc::channel();
        drop(Cb::write(RegionId(9), move |resp| tx.send(resp).unwrap()));
        let resp = rx.try_recv().expect("a dropped callback still answers");
        assert_eq!(resp, Err(Error::RegionNotFound(RegionId(9))));
        assert!(rx.try_recv().is_err());
    }
}
