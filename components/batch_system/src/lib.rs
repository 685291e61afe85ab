//! Runs many message-driven FSMs on a few poller threads, in batches. It knows nothing of
//! raft: raftstore plugs in its peer FSMs (normal) and store FSM (control).
//!
//! Map of the crate (read in this order):
//! - [`fsm`]: the [`Fsm`] trait and the 3-state ownership cell (Idle / Notified / Dropped)
//!   that guarantees at most one thread owns an FSM at any time.
//! - [`mailbox`]: per-FSM bounded inbox; sending to an idle FSM schedules it; exact close.
//! - [`router`]: address → mailbox book plus the control mailbox.
//! - [`poller`]: the round loop, [`PollHandler`] and fairness (hot FSM rescheduling).
//! - [`system`]: [`create_system`], [`BatchSystem::spawn`] and the shutdown order.
//!
//! Typical use:
//!
//! ```text
//! let (ctl_tx, ctl_inbox) = batch_system::inbox(cfg.notify_capacity);
//! let (router, mut system) = create_system(&cfg, logger, ctl_tx, Box::new(StoreFsm::new(ctl_inbox)))?;
//! let (tx, inbox) = router.create_inbox();
//! router.register(region_id, tx, Box::new(PeerFsm::new(inbox)));
//! system.spawn("raftstore", builder)?;
//! router.send(region_id, msg)?;
//! ```

pub mod config;
pub mod error;
pub mod fsm;
pub mod mailbox;
pub mod poller;
pub mod router;
mod scheduler;
pub mod system;

pub use config::Config;
pub use error::{Error, ForceSendError, MailboxClosed, SendError, TrySendError};
pub use fsm::Fsm;
pub use mailbox::{inbox, Inbox, InboxSender, Mailbox};
pub use poller::{HandleResult, HandlerBuilder, NormalFsm, PollHandler};
pub use router::Router;
pub use system::{create_system, BatchSystem, SystemParts};
