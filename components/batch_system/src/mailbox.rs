//! Per-FSM mailboxes: the queue of messages for one FSM plus the FSM's ownership cell.
//!
//! Sending doubles as scheduling: after a message is queued, the sender tries to take the FSM
//! out of its cell (Idle→Notified, see [`crate::fsm`]) and, if it wins, hands it to the
//! pollers' scheduler. An idle FSM therefore costs no thread and no polling.
//!
//! # Queue and bound
//!
//! The queue is an unbounded crossbeam channel used as a *loosely* bounded one: `try_send`
//! refuses a message when the queue already holds `capacity` messages. The check and the push
//! are not one atomic step, so concurrent senders can overshoot; the bound argument is:
//!
//! > queue length ≤ `capacity` + (threads inside `try_send` at once) + (messages queued by
//! > `force_send`).
//!
//! `force_send` is allowed only for messages whose own count is bounded elsewhere (one per
//! timer tick, one per apply result batch, a broadcast from the system, a reply the FSM must
//! not lose); never for traffic that comes from outside the process. We chose an unbounded
//! channel over crossbeam's bounded one because a bounded channel allocates all `capacity`
//! slots up front: with the default 40960 slots and 100k FSMs that is hundreds of GiB,
//! whereas a list channel only allocates blocks as messages arrive.
//!
//! # Closing
//!
//! A mailbox is closed by [`Mailbox::close`] (through `Router::close`, a stopped FSM, or
//! shutdown). Closing is exact: senders enter a [`SendGate`] around push + notify, and
//! `close` waits until every sender inside has left. So once `close` returns, every later send
//! returns the message as `Disconnected`, and every send that returned `Ok` has queued its
//! message, which the FSM either handled or still holds in its [`Inbox`] when it is dropped.
//!
//! # No lost wake-ups
//!
//! A poller that has drained an FSM releases it and then re-reads the queue length; a sender
//! queues and then tries to take the FSM. Scenario, with the two SeqCst fences that make it
//! safe (`notify` and `release_or_retake`):
//!
//! 1. The poller drains the queue (length 0) and decides to release the FSM.
//! 2. A sender pushes message m (length 1), then its take fails: the state is still Notified.
//! 3. The poller stores Idle, then reads the length. Because both sides put a SeqCst fence
//!    between their write and their read, at least one sees the other: either the sender's
//!    take sees Idle (and schedules the FSM), or the poller sees length 1 ≠ 0 and takes the
//!    FSM back itself. m is never stranded in an idle mailbox.

use std::fmt;
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::error::{MailboxClosed, TrySendError};
use crate::fsm::{Fsm, FsmState};

/// Creates the two halves of an FSM's message queue. The [`Inbox`] goes into the FSM, which
/// drains it when it is handled; the [`InboxSender`] is given to `Router::register` (or
/// `create_system` for the control FSM) together with the FSM.
///
/// # Panics
/// If `capacity` is 0 (`Config::validate` rejects it).
pub fn inbox<M>(capacity: usize) -> (InboxSender<M>, Inbox<M>) {
    assert!(capacity >= 1, "mailbox capacity must be at least 1");
    let (tx, rx) = crossbeam_channel::unbounded();
    (InboxSender { tx, capacity }, Inbox { rx })
}

/// The not-yet-attached send half of an inbox. It cannot send by itself: it becomes a
/// [`Mailbox`] when registered with its FSM.
pub struct InboxSender<M> {
    tx: Sender<M>,
    capacity: usize,
}

/// The receive half of an FSM's queue, owned by the FSM. Only the FSM's current owner (a
/// poller) reads it, so its length only grows while the FSM is Idle or queued.
pub struct Inbox<M> {
    rx: Receiver<M>,
}

impl<M> Inbox<M> {
    /// The next message, or `None` if the queue is empty.
    pub fn try_recv(&self) -> Option<M> {
        self.rx.try_recv().ok()
    }

    /// Messages currently queued. Use it as `progress` in `HandleResult::StopAt`.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

/// Admission control for senders; see "Closing" in the module doc.
///
/// One word: the top bit is "closed", the rest counts senders currently inside. Entering and
/// closing are read-modify-writes on the same word, hence totally ordered: a sender either
/// enters before the close (and `close_and_wait` waits for it) or sees the closed bit.
struct SendGate {
    word: AtomicUsize,
}

const GATE_CLOSED: usize = 1 << (usize::BITS - 1);

struct GateGuard<'a>(&'a SendGate);

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        self.0.word.fetch_sub(1, Ordering::SeqCst);
    }
}

impl SendGate {
    fn enter(&self) -> Option<GateGuard<'_>> {
        let prev = self.word.fetch_add(1, Ordering::SeqCst);
        if prev & GATE_CLOSED != 0 {
            self.word.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(GateGuard(self))
    }

    /// Closes the gate and waits until no sender is inside. Senders inside do bounded,
    /// non-blocking work (a push and at most one scheduler send), so the wait is short; it
    /// yields to let a preempted sender finish.
    fn close_and_wait(&self) {
        self.word.fetch_or(GATE_CLOSED, Ordering::SeqCst);
        let mut spins = 0u32;
        while self.word.load(Ordering::SeqCst) & !GATE_CLOSED != 0 {
            if spins < 64 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }

    fn is_closed(&self) -> bool {
        self.word.load(Ordering::SeqCst) & GATE_CLOSED != 0
    }
}

/// Hands a just-taken FSM to the pollers. Implemented by the system's schedulers; tests use a
/// recorder.
pub(crate) trait Schedule<N: Fsm>: Send + Sync {
    /// Takes ownership of `fsm` (state Notified). MUST NOT block and MUST NOT drop the FSM
    /// while its mailbox is open.
    fn schedule(&self, fsm: Box<N>, mailbox: &Mailbox<N>);
}

struct Core<N: Fsm> {
    state: FsmState<N>,
    gate: SendGate,
    capacity: usize,
    scheduler: Arc<dyn Schedule<N>>,
}

/// The address of one FSM: send messages to it from any thread. Cheap to clone (two atomic
/// increments); all clones share one queue, one capacity and one ownership cell.
pub struct Mailbox<N: Fsm> {
    tx: Sender<N::Message>,
    core: Arc<Core<N>>,
}

impl<N: Fsm> Clone for Mailbox<N> {
    fn clone(&self) -> Mailbox<N> {
        Mailbox { tx: self.tx.clone(), core: self.core.clone() }
    }
}

impl<N: Fsm> fmt::Debug for Mailbox<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailbox")
            .field("len", &self.len())
            .field("capacity", &self.core.capacity)
            .field("ownership", &self.core.state.ownership())
            .finish()
    }
}

impl<N: Fsm> Mailbox<N> {
    /// Attaches `fsm` to its queue and parks it Idle. Calls [`Fsm::set_mailbox`] first.
    pub(crate) fn new(
        sender: InboxSender<N::Message>,
        mut fsm: Box<N>,
        scheduler: Arc<dyn Schedule<N>>,
    ) -> Mailbox<N> {
        let core = Core {
            state: FsmState::new_owned(),
            gate: SendGate { word: AtomicUsize::new(0) },
            capacity: sender.capacity,
            scheduler,
        };
        let mailbox = Mailbox { tx: sender.tx, core: Arc::new(core) };
        fsm.set_mailbox(&mailbox);
        mailbox.core.state.release(fsm);
        mailbox
    }

    /// Queues `msg` unless the mailbox is full or closed, and schedules the FSM if it was idle.
    ///
    /// Errors give the message back: `Full` when `len() >= capacity` (the caller should answer
    /// "busy"), `Disconnected` when the mailbox is closed (the FSM is gone for good).
    pub fn try_send(&self, msg: N::Message) -> Result<(), TrySendError<N::Message>> {
        let Some(_inside) = self.core.gate.enter() else {
            return Err(TrySendError::Disconnected(msg));
        };
        if self.tx.len() >= self.core.capacity {
            return Err(TrySendError::Full(msg));
        }
        self.push_and_notify(msg).map_err(|MailboxClosed(m)| TrySendError::Disconnected(m))
    }

    /// Queues `msg` ignoring capacity; see "Queue and bound" in the module doc for when this
    /// is allowed. Fails only if the mailbox is closed.
    pub fn force_send(&self, msg: N::Message) -> Result<(), MailboxClosed<N::Message>> {
        let Some(_inside) = self.core.gate.enter() else {
            return Err(MailboxClosed(msg));
        };
        self.push_and_notify(msg)
    }

    /// MUST be called inside the gate.
    fn push_and_notify(&self, msg: N::Message) -> Result<(), MailboxClosed<N::Message>> {
        // The send fails only if the FSM dropped its own Inbox; treat that as closed.
        self.tx.send(msg).map_err(|e| MailboxClosed(e.into_inner()))?;
        // Pairs with the fence in `release_or_retake`; see "No lost wake-ups".
        fence(Ordering::SeqCst);
        if let Some(fsm) = self.core.state.take() {
            self.core.scheduler.schedule(fsm, self);
        }
        Ok(())
    }

    /// Messages currently queued.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }

    /// The `try_send` bound of this mailbox.
    pub fn capacity(&self) -> usize {
        self.core.capacity
    }

    /// True once [`close`](Self::close) has started; sends fail from then on.
    pub fn is_closed(&self) -> bool {
        self.core.gate.is_closed()
    }

    /// True if both handles address the same FSM.
    pub fn same_mailbox(&self, other: &Mailbox<N>) -> bool {
        Arc::ptr_eq(&self.core, &other.core)
    }

    /// Closes the mailbox: waits for senders inside to finish, then moves the FSM cell to
    /// Dropped. An idle FSM is dropped here, on the calling thread, with the messages still in
    /// its inbox; an owned one is dropped by its poller at release. Idempotent.
    ///
    /// The caller MUST NOT be inside a send to this same mailbox (an FSM's `Drop` MUST NOT
    /// close the mailbox it is being dropped from), or it waits for itself forever.
    pub(crate) fn close(&self) {
        self.core.gate.close_and_wait();
        self.core.state.clear();
    }

    /// Gives the owned `fsm` back after a round. If the queue length differs from
    /// `expected_len` (messages arrived meanwhile), tries to take it again and returns it, so
    /// the caller keeps handling it; `None` if it is idle, re-scheduled by a sender, or
    /// dropped because the mailbox was closed.
    pub(crate) fn release_or_retake(&self, fsm: Box<N>, expected_len: usize) -> Option<Box<N>> {
        self.core.state.release(fsm);
        // Pairs with the fence in `push_and_notify`; see "No lost wake-ups".
        fence(Ordering::SeqCst);
        if self.len() == expected_len {
            return None;
        }
        self.core.state.take()
    }

    /// Gives the owned `fsm` back with no re-check; used when it is known to be dropped.
    pub(crate) fn release(&self, fsm: Box<N>) {
        self.core.state.release(fsm);
    }

    #[cfg(test)]
    pub(crate) fn ownership(&self) -> crate::fsm::Ownership {
        self.core.state.ownership()
    }
}

#[cfg(test)]
mod tests {
    use parking_lot::Mutex;

    use super::*;
    use crate::fsm::Ownership;

    struct Counter {
        inbox: Inbox<u64>,
        handled: Vec<u64>,
    }

    impl Fsm for Counter {
        type Message = u64;
        fn is_stopped(&self) -> bool {
            false
        }
    }

    /// A scheduler that just keeps what it is given, so tests can act as the poller.
    #[derive(Default)]
    // Boxes, because these are the very boxes the mailbox hands out and takes back.
    #[allow(clippy::vec_box)]
    struct Recorder(Mutex<Vec<Box<Counter>>>);

    impl Schedule<Counter> for Recorder {
        fn schedule(&self, fsm: Box<Counter>, _mailbox: &Mailbox<Counter>) {
            self.0.lock().push(fsm);
        }
    }

    fn mailbox(capacity: usize) -> (Mailbox<Counter>, Arc<Recorder>) {
        let recorder = Arc::new(Recorder::default());
        let (tx, inbox) = super::inbox(capacity);
        let fsm = Box::new(Counter { inbox, handled: Vec::new() });
        (Mailbox::new(tx, fsm, recorder.clone()), recorder)
    }

    fn take_scheduled(recorder: &Recorder) -> Box<Counter> {
        let mut q = recorder.0.lock();
        assert_eq!(q.len(), 1, "expected exactly one scheduled FSM");
        q.pop().unwrap()
    }

    #[test]
    fn first_send_schedules_later_sends_do_not() {
        let (mb, rec) = mailbox(8);
        assert_eq!(mb.ownership(), Ownership::Idle);
        mb.try_send(1).unwrap();
        mb.try_send(2).unwrap();
        assert_eq!(mb.ownership(), Ownership::Notified);
        let mut fsm = take_scheduled(&rec);
        while let Some(m) = fsm.inbox.try_recv() {
            fsm.handled.push(m);
        }
        assert_eq!(fsm.handled, vec![1, 2]);
        assert!(mb.release_or_retake(fsm, 0).is_none());
        assert_eq!(mb.ownership(), Ownership::Idle);
        mb.force_send(3).unwrap();
        assert_eq!(take_scheduled(&rec).inbox.try_recv(), Some(3));
    }

    #[test]
    fn message_arriving_before_release_is_retaken() {
        let (mb, rec) = mailbox(8);
        mb.try_send(1).unwrap();
        let fsm = take_scheduled(&rec);
        assert_eq!(fsm.inbox.try_recv(), Some(1));
        // Arrives while the poller still owns the FSM: no one schedules it...
        mb.try_send(2).unwrap();
        assert!(rec.0.lock().is_empty());
        // ...so the release must notice it and hand the FSM back.
        let fsm = mb.release_or_retake(fsm, 0).expect("new message forces a retake");
        assert_eq!(fsm.inbox.try_recv(), Some(2));
        assert_eq!(mb.ownership(), Ownership::Notified);
        assert!(mb.release_or_retake(fsm, 0).is_none());
    }

    #[test]
    fn full_mailbox_returns_the_message_and_force_send_ignores_capacity() {
        let (mb, _rec) = mailbox(2);
        mb.try_send(1).unwrap();
        mb.try_send(2).unwrap();
        assert_eq!(mb.try_send(3), Err(TrySendError::Full(3)));
        mb.force_send(4).unwrap();
        assert_eq!(mb.len(), 3);
        assert_eq!(mb.capacity(), 2);
    }

    #[test]
    fn closed_mailbox_rejects_sends_and_drops_idle_fsm() {
        let (mb, _rec) = mailbox(2);
        let weak = Arc::downgrade(&mb.core);
        mb.close();
        assert!(mb.is_closed());
        assert_eq!(mb.ownership(), Ownership::Dropped);
        assert_eq!(mb.try_send(1), Err(TrySendError::Disconnected(1)));
        assert_eq!(mb.force_send(2), Err(MailboxClosed(2)));
        drop(mb);
        assert!(weak.upgrade().is_none(), "no cycle keeps the cell alive");
    }

    #[test]
    fn close_while_owned_drops_at_release() {
        let (mb, rec) = mailbox(2);
        mb.try_send(1).unwrap();
        let fsm = take_scheduled(&rec);
        mb.close();
        assert_eq!(mb.try_send(2), Err(TrySendError::Disconnected(2)));
        assert!(mb.release_or_retake(fsm, 0).is_none(), "a closed FSM is never retaken");
        assert_eq!(mb.ownership(), Ownership::Dropped);
    }

    #[test]
    fn concurrent_senders_schedule_exactly_once_per_idle_period() {
        let (mb, rec) = mailbox(1 << 20);
        let senders: Vec<_> = (0..4u64)
            .map(|t| {
                let mb = mb.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        mb.try_send(t * 1000 + i).unwrap();
                    }
                })
            })
            .collect();
        for s in senders {
            s.join().unwrap();
        }
        // Nobody released the FSM, so exactly one sender won the take.
        let fsm = take_scheduled(&rec);
        assert_eq!(fsm.inbox.len(), 4000);
    }
}
