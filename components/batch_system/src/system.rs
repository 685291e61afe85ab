//! [`BatchSystem`]: creates the router and scheduler queue, starts the poller threads, and
//! shuts everything down in order.
//!
//! # Shutdown order (and why)
//! 1. `Router::broadcast_shutdown`: close every mailbox. After this no sender can schedule an
//!    FSM (closing waits for senders in flight), idle FSMs are dropped, and an FSM still owned
//!    by a poller or sitting in the queue is dropped at its next release.
//! 2. One `Shutdown` sentinel per poller. Each poller stops at the first one it sees and
//!    releases (so drops) the FSMs in its batch.
//! 3. Join the pollers.
//! 4. Drain the queue: FSMs that were rescheduled or notified before step 1 are released
//!    (dropped) here. Nobody can add to the queue any more, so the drain is complete and every
//!    FSM has been dropped when `shutdown` returns.

use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender};
use slog::{error, info, o, Logger};

use crate::config::Config;
use crate::error::Error;
use crate::fsm::Fsm;
use crate::mailbox::{InboxSender, Mailbox};
use crate::poller::{HandlerBuilder, Poller};
use crate::router::Router;
use crate::scheduler::{ControlScheduler, NormalScheduler, Task};

/// Lifecycle of a system; each step happens at most once, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lifecycle {
    Created,
    Running,
    ShutDown,
}

/// Owns the poller threads of one batch system.
pub struct BatchSystem<N: Fsm, C: Fsm> {
    router: Router<N, C>,
    tx: Sender<Task<N, C>>,
    rx: Receiver<Task<N, C>>,
    cfg: Config,
    pollers: Vec<JoinHandle<()>>,
    lifecycle: Lifecycle,
    logger: Logger,
}

/// What [`create_system`] returns: the router to hand to senders and the system to spawn.
pub type SystemParts<N, C> = (Router<N, C>, BatchSystem<N, C>);

/// Creates a batch system whose control FSM is `control`; `control_sender` MUST be the other
/// half of the inbox `control` holds. Nothing runs until [`BatchSystem::spawn`]; messages
/// sent before it are queued and handled once the pollers start.
pub fn create_system<N: Fsm, C: Fsm>(
    cfg: &Config,
    logger: Logger,
    control_sender: InboxSender<C::Message>,
    control: Box<C>,
) -> Result<SystemParts<N, C>, Error> {
    cfg.validate()?;
    // Unbounded by type, bounded by the ownership invariant: see `scheduler`.
    let (tx, rx) = crossbeam_channel::unbounded();
    let control_scheduler = Arc::new(ControlScheduler { tx: tx.clone() });
    let control = Mailbox::new(control_sender, control, control_scheduler);
    let normal_scheduler = Arc::new(NormalScheduler { tx: tx.clone() });
    let router = Router::new(control, normal_scheduler, cfg.notify_capacity, logger.clone());
    let system = BatchSystem {
        router: router.clone(),
        tx,
        rx,
        cfg: cfg.clone(),
        pollers: Vec::with_capacity(cfg.pool_size),
        lifecycle: Lifecycle::Created,
        logger,
    };
    Ok((router, system))
}

impl<N: Fsm, C: Fsm> BatchSystem<N, C> {
    pub fn router(&self) -> &Router<N, C> {
        &self.router
    }

    /// Starts `pool-size` pollers named `<name_prefix>-<n>`, each with a handler from
    /// `builder`. If a thread cannot be started, the ones already started keep running until
    /// [`shutdown`](Self::shutdown).
    ///
    /// # Panics
    /// If called twice, or after `shutdown`.
    pub fn spawn<B: HandlerBuilder<N, C>>(
        &mut self,
        name_prefix: &str,
        mut builder: B,
    ) -> Result<(), Error> {
        assert_eq!(
            self.lifecycle,
            Lifecycle::Created,
            "spawn called on a {:?} system",
            self.lifecycle
        );
        self.lifecycle = Lifecycle::Running;
        for i in 0..self.cfg.pool_size {
            let name = format!("{name_prefix}-{i}");
            let poller = Poller {
                router: self.router.clone(),
                rx: self.rx.clone(),
                tx: self.tx.clone(),
                handler: builder.build(),
                max_batch_size: self.cfg.max_batch_size,
                reschedule_duration: self.cfg.reschedule_duration.as_duration(),
                logger: self.logger.new(o!("poller" => name.clone())),
            };
            let handle = thread::Builder::new()
                .name(name.clone())
                .spawn(move || poller.poll())
                .map_err(|source| Error::SpawnPoller { name, source })?;
            self.pollers.push(handle);
        }
        info!(self.logger, "batch system started"; "prefix" => name_prefix, "pollers" => self.cfg.pool_size);
        Ok(())
    }

    /// Stops the system in the order described in the module doc and joins the pollers. When
    /// it returns, every FSM has been dropped and every send answers `Disconnected`.
    /// Idempotent; also run by `Drop`.
    ///
    /// Returns the first poller panic, after joining all pollers.
    pub fn shutdown(&mut self) -> Result<(), Error> {
        if self.lifecycle == Lifecycle::ShutDown {
            return Ok(());
        }
        self.lifecycle = Lifecycle::ShutDown;
        self.router.broadcast_shutdown();
        for _ in 0..self.pollers.len() {
            // The system holds a receiver, so this cannot fail.
            let sent = self.tx.send(Task::Shutdown);
            assert!(sent.is_ok(), "scheduler queue disconnected during shutdown");
        }
        let mut first_panic = None;
        for handle in self.pollers.drain(..) {
            let name = handle.thread().name().unwrap_or("poller").to_owned();
            if handle.join().is_err() {
                error!(self.logger, "poller panicked"; "thread" => &name);
                first_panic.get_or_insert(Error::PollerPanicked { name });
            }
        }
        let mut drained = 0usize;
        while let Ok(task) = self.rx.try_recv() {
            match task {
                Task::Normal { fsm, mailbox } => mailbox.release(fsm),
                Task::Control(control) => self.router.control().release(control),
                Task::Shutdown => continue,
            }
            drained += 1;
        }
        info!(self.logger, "batch system stopped"; "drained_fsms" => drained);
        first_panic.map_or(Ok(()), Err)
    }
}

impl<N: Fsm, C: Fsm> Drop for BatchSystem<N, C> {
    fn drop(&mut self) {
        if let Err(err) = self.shutdown() {
            error!(self.logger, "batch system shutdown failed in drop"; "error" => %err);
        }
    }
}
