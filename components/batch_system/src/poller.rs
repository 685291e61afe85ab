//! Poller threads: the loop that takes FSMs from the shared scheduler queue and drives a
//! [`PollHandler`] over them in batches.
//!
//! # One round
//!
//! ```text
//! fetch      block for one task if the batch is empty (calling `pause` first), else try one
//! begin      handler.begin(batch size)
//! control    handle_control, if the control FSM is in the batch
//! normals    handle_normal for each FSM in the batch, then top up from the queue (handling
//!            each newcomer at once) until max_batch_size, a control task, or shutdown
//! light_end  over every normal FSM of the round
//! skip_end   FSMs that asked for it leave the batch now (released/removed/rescheduled)
//! end        over the remaining normals
//! settle     apply each FSM's policy: keep, release (re-check), remove, reschedule
//! ```
//!
//! # Invariants
//! - Every `Box<N>` the poller holds is owned by it (state Notified or Dropped); it leaves the
//!   poller only through `Mailbox::release*` or through the scheduler queue.
//! - An FSM is released only with the queue length the handler reported (`progress`); if the
//!   length changed it is retaken, so no message is stranded (see `mailbox`, "No lost
//!   wake-ups").
//! - A stopped FSM is closed and dropped at the end of the round; it is never handled again.
//! - Fairness: one task is fetched at the start of every round even if the batch is full, so
//!   the queue always drains; FSMs that stayed in the batch for `reschedule_duration` and
//!   still have work are "hot", and every second hot one goes to the back of the queue, so hot
//!   FSMs neither starve others nor all pile into one poller.

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use slog::{info, Logger};

use crate::fsm::Fsm;
use crate::mailbox::Mailbox;
use crate::router::Router;
use crate::scheduler::Task;

/// What `handle_normal` wants done with the FSM after the round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandleResult {
    /// It has more to do: keep it in the batch for the next round.
    KeepProcessing,
    /// It has handled everything it saw. `progress` is its inbox length when it stopped
    /// (0 after draining; more if it left messages for later on purpose). The FSM is released
    /// to Idle unless the length changed meanwhile, in which case it stays in the batch.
    /// `skip_end`: leave the batch before `end` is called, so `end` never sees it.
    StopAt { progress: usize, skip_end: bool },
}

impl HandleResult {
    pub fn stop_at(progress: usize, skip_end: bool) -> HandleResult {
        HandleResult::StopAt { progress, skip_end }
    }
}

/// The per-poller-thread logic that handles FSMs. Each poller has its own handler, so it need
/// not be `Sync`; it may keep per-round state (a write batch, a list of messages to flush).
///
/// Order per round: `begin`, `handle_control`?, `handle_normal`*, `light_end`, `end`; and
/// `pause` before the poller blocks waiting for work.
pub trait PollHandler<N: Fsm, C: Fsm>: Send + 'static {
    /// Start of a round; `batch_size` normal FSMs are in the batch (more may join).
    fn begin(&mut self, batch_size: usize);

    /// Handles the control FSM. `Some(len)`: release it unless its inbox length is no longer
    /// `len` (like `StopAt`). `None`: keep it and call again next round. If it reports
    /// `is_stopped`, its mailbox is closed and it is dropped.
    fn handle_control(&mut self, control: &mut C) -> Option<usize>;

    /// Handles one normal FSM, typically by draining (up to a per-round cap) its inbox.
    fn handle_normal(&mut self, normal: &mut N) -> HandleResult;

    /// After every `handle_normal` of the round, before `end`; for cheap work such as
    /// flushing network messages. Sees every normal FSM of the round.
    fn light_end(&mut self, _normals: &mut [NormalFsm<N>]) {}

    /// End of a round; sees the normal FSMs that did not ask to `skip_end`.
    fn end(&mut self, normals: &mut [NormalFsm<N>]);

    /// The poller has nothing to do and is about to block.
    fn pause(&mut self) {}
}

/// Builds one [`PollHandler`] per poller thread.
pub trait HandlerBuilder<N: Fsm, C: Fsm> {
    type Handler: PollHandler<N, C>;

    fn build(&mut self) -> Self::Handler;
}

/// What should happen to a normal FSM when the round settles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
    Keep,
    Release { progress: usize },
    Remove,
    Reschedule,
}

/// A normal FSM in a poller's batch. Dereferences to the FSM.
pub struct NormalFsm<N: Fsm> {
    fsm: Box<N>,
    mailbox: Mailbox<N>,
    /// When it joined this poller's batch; the age used for "hot".
    joined_at: Instant,
    policy: Policy,
    skip_end: bool,
}

impl<N: Fsm> NormalFsm<N> {
    fn new(fsm: Box<N>, mailbox: Mailbox<N>) -> NormalFsm<N> {
        NormalFsm { fsm, mailbox, joined_at: Instant::now(), policy: Policy::Keep, skip_end: false }
    }

    /// The FSM's own mailbox.
    pub fn mailbox(&self) -> &Mailbox<N> {
        &self.mailbox
    }
}

impl<N: Fsm> Deref for NormalFsm<N> {
    type Target = N;
    fn deref(&self) -> &N {
        &self.fsm
    }
}

impl<N: Fsm> DerefMut for NormalFsm<N> {
    fn deref_mut(&mut self) -> &mut N {
        &mut self.fsm
    }
}

struct Batch<N: Fsm, C: Fsm> {
    normals: Vec<NormalFsm<N>>,
    control: Option<Box<C>>,
    /// Scratch space for FSMs that survive settling; kept to avoid reallocating every round.
    kept: Vec<NormalFsm<N>>,
}

impl<N: Fsm, C: Fsm> Batch<N, C> {
    fn is_empty(&self) -> bool {
        self.normals.is_empty() && self.control.is_none()
    }

    /// Adds a task; false means it was the shutdown sentinel.
    fn push(&mut self, task: Task<N, C>) -> bool {
        match task {
            Task::Normal { fsm, mailbox } => self.normals.push(NormalFsm::new(fsm, mailbox)),
            Task::Control(control) => {
                assert!(self.control.is_none(), "two control FSMs in one batch");
                self.control = Some(control);
            }
            Task::Shutdown => return false,
        }
        true
    }
}

pub(crate) struct Poller<N: Fsm, C: Fsm, H> {
    pub(crate) router: Router<N, C>,
    pub(crate) rx: Receiver<Task<N, C>>,
    /// For pushing hot FSMs back to the queue.
    pub(crate) tx: Sender<Task<N, C>>,
    pub(crate) handler: H,
    pub(crate) max_batch_size: usize,
    pub(crate) reschedule_duration: Duration,
    pub(crate) logger: Logger,
}

impl<N: Fsm, C: Fsm, H: PollHandler<N, C>> Poller<N, C, H> {
    /// Runs rounds until a shutdown sentinel arrives, then gives back what it holds.
    pub(crate) fn poll(mut self) {
        info!(self.logger, "poller started");
        let mut batch = Batch {
            normals: Vec::with_capacity(self.max_batch_size),
            control: None,
            kept: Vec::new(),
        };
        while self.fetch(&mut batch) {
            if !self.round(&mut batch) {
                break;
            }
        }
        self.exit(batch);
        info!(self.logger, "poller stopped");
    }

    /// Adds at most one task to the batch; blocks only if the batch is empty. False on
    /// shutdown (or if every sender is gone, which means the same).
    fn fetch(&mut self, batch: &mut Batch<N, C>) -> bool {
        if batch.is_empty() {
            self.handler.pause();
            return match self.rx.recv() {
                Ok(task) => batch.push(task),
                Err(_) => false,
            };
        }
        match self.rx.try_recv() {
            Ok(task) => batch.push(task),
            Err(_) => true,
        }
    }

    /// One round (see the module doc). False if a shutdown sentinel arrived during it.
    fn round(&mut self, batch: &mut Batch<N, C>) -> bool {
        self.handler.begin(batch.normals.len());
        self.handle_control(batch);
        let mut hot = 0usize;
        for normal in batch.normals.iter_mut() {
            self.handle_normal(normal, &mut hot);
        }
        let running = self.top_up(batch, &mut hot);

        self.handler.light_end(&mut batch.normals);
        let mut i = 0;
        while i < batch.normals.len() {
            if batch.normals[i].skip_end {
                let normal = batch.normals.swap_remove(i);
                if let Some(normal) = self.settle(normal) {
                    batch.kept.push(normal);
                }
            } else {
                i += 1;
            }
        }
        self.handler.end(&mut batch.normals);
        let mut i = 0;
        while i < batch.normals.len() {
            if batch.normals[i].policy == Policy::Keep {
                i += 1;
                continue;
            }
            let normal = batch.normals.swap_remove(i);
            if let Some(normal) = self.settle(normal) {
                batch.kept.push(normal);
            }
        }
        batch.normals.append(&mut batch.kept);
        running
    }

    /// Pulls more FSMs while the batch is below `max_batch_size`, handling each at once. Stops
    /// early at a control task (handled first thing next round) or a shutdown sentinel
    /// (returns false).
    fn top_up(&mut self, batch: &mut Batch<N, C>, hot: &mut usize) -> bool {
        while batch.normals.len() < self.max_batch_size {
            let Ok(task) = self.rx.try_recv() else {
                return true;
            };
            match task {
                Task::Normal { fsm, mailbox } => {
                    batch.normals.push(NormalFsm::new(fsm, mailbox));
                    let last = batch.normals.last_mut().expect("just pushed");
                    self.handle_normal(last, hot);
                }
                Task::Control(control) => {
                    assert!(batch.control.is_none(), "two control FSMs in one batch");
                    batch.control = Some(control);
                    return true;
                }
                Task::Shutdown => return false,
            }
        }
        true
    }

    fn handle_control(&mut self, batch: &mut Batch<N, C>) {
        let Some(mut control) = batch.control.take() else {
            return;
        };
        let res = self.handler.handle_control(&mut control);
        let mailbox = self.router.control();
        if control.is_stopped() {
            mailbox.close();
            mailbox.release(control);
            return;
        }
        batch.control = match res {
            Some(len) => mailbox.release_or_retake(control, len),
            None => Some(control),
        };
    }

    /// Calls the handler and decides the FSM's policy for this round.
    fn handle_normal(&mut self, normal: &mut NormalFsm<N>, hot: &mut usize) {
        let res = self.handler.handle_normal(&mut normal.fsm);
        normal.skip_end = false;
        if normal.fsm.is_stopped() {
            normal.policy = Policy::Remove;
            return;
        }
        // Only an FSM that will stay in the batch can be hot. A drained FSM whose inbox did
        // not change is about to go idle; moving it to the queue would only make a poller
        // handle it again for nothing (TiKV counts those too).
        let stays = match res {
            HandleResult::KeepProcessing => true,
            HandleResult::StopAt { progress, .. } => normal.mailbox.len() != progress,
        };
        if stays && normal.joined_at.elapsed() >= self.reschedule_duration {
            *hot += 1;
            // Only every second hot FSM: moving all of them would let the next poller fetch
            // the same hot set into one batch again.
            if hot.is_multiple_of(2) {
                normal.policy = Policy::Reschedule;
                return;
            }
        }
        normal.policy = match res {
            HandleResult::KeepProcessing => Policy::Keep,
            HandleResult::StopAt { progress, skip_end } => {
                normal.skip_end = skip_end;
                Policy::Release { progress }
            }
        };
    }

    /// Applies the policy of an FSM taken out of the batch; returns it if it stays.
    fn settle(&self, normal: NormalFsm<N>) -> Option<NormalFsm<N>> {
        let NormalFsm { fsm, mailbox, joined_at, policy, .. } = normal;
        match policy {
            Policy::Keep => Some(NormalFsm { fsm, mailbox, joined_at, policy, skip_end: false }),
            Policy::Release { progress } => {
                let fsm = mailbox.release_or_retake(fsm, progress)?;
                Some(NormalFsm { fsm, mailbox, joined_at, policy: Policy::Keep, skip_end: false })
            }
            Policy::Remove => {
                // Closing first makes the release below drop the FSM, and makes every later
                // send to this mailbox fail instead of queueing into a dead inbox.
                mailbox.close();
                mailbox.release(fsm);
                None
            }
            Policy::Reschedule => {
                // The poller holds a receiver, so the queue cannot be disconnected.
                let sent = self.tx.send(Task::Normal { fsm, mailbox });
                assert!(sent.is_ok(), "scheduler queue disconnected while a poller runs");
                None
            }
        }
    }

    /// Shutdown: every mailbox is already closed, so releasing drops each FSM.
    fn exit(&mut self, mut batch: Batch<N, C>) {
        let held = batch.normals.len();
        for normal in batch.normals.drain(..) {
            normal.mailbox.release(normal.fsm);
        }
        if let Some(control) = batch.control.take() {
            self.router.control().release(control);
        }
        info!(self.logger, "poller released its batch"; "normal_fsms" => held);
    }
}
