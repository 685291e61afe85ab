//! The shared queue from mailboxes (and pollers) to pollers.
//!
//! An FSM is in this queue only while its state is Notified, and an FSM has one state, so the
//! queue holds at most (normal FSMs alive) + 1 (control) + `pool_size` (shutdown sentinels)
//! tasks. That is why an unbounded channel is acceptable here: its bound comes from the
//! ownership invariant, not from a capacity.

use crossbeam_channel::Sender;

use crate::fsm::Fsm;
use crate::mailbox::{Mailbox, Schedule};

/// One unit of work for a poller. Carrying the mailbox with a normal FSM means the poller can
/// release it without the FSM having to store its own mailbox.
pub(crate) enum Task<N: Fsm, C: Fsm> {
    Normal {
        fsm: Box<N>,
        mailbox: Mailbox<N>,
    },
    Control(Box<C>),
    /// Tells exactly one poller to finish its round and exit.
    Shutdown,
}

pub(crate) struct NormalScheduler<N: Fsm, C: Fsm> {
    pub(crate) tx: Sender<Task<N, C>>,
}

impl<N: Fsm, C: Fsm> Schedule<N> for NormalScheduler<N, C> {
    fn schedule(&self, fsm: Box<N>, mailbox: &Mailbox<N>) {
        let task = Task::Normal { fsm, mailbox: mailbox.clone() };
        if let Err(err) = self.tx.send(task) {
            // Every receiver is gone: the system was dropped. Park the FSM again rather than
            // lose it; its mailbox was closed by the shutdown, so this drops it.
            if let Task::Normal { fsm, mailbox } = err.into_inner() {
                mailbox.release(fsm);
            }
        }
    }
}

pub(crate) struct ControlScheduler<N: Fsm, C: Fsm> {
    pub(crate) tx: Sender<Task<N, C>>,
}

impl<N: Fsm, C: Fsm> Schedule<C> for ControlScheduler<N, C> {
    fn schedule(&self, fsm: Box<C>, mailbox: &Mailbox<C>) {
        if let Err(err) = self.tx.send(Task::Control(fsm)) {
            // See `NormalScheduler::schedule`.
            if let Task::Control(fsm) = err.into_inner() {
                mailbox.release(fsm);
            }
        }
    }
}
