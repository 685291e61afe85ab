//! Errors of the batch system.
//!
//! Every send error hands the message back to the caller, so nothing is lost silently: the
//! caller decides whether a rejected message becomes "server is busy" (`Full`), "region not
//! found" (`NotFound`) or is dropped because the target is gone (`Disconnected`).
//!
//! `Debug` is written by hand for the generic errors so that they do not require `M: Debug`;
//! it never prints the message itself (messages may be large or hold secrets).

use std::fmt;

/// A [`Mailbox::try_send`](crate::Mailbox::try_send) (or
/// [`Router::send_control`](crate::Router::send_control)) that did not enqueue its message.
#[derive(thiserror::Error, PartialEq, Eq)]
pub enum TrySendError<M> {
    /// The mailbox holds `notify-capacity` messages or more. The caller should back off or
    /// answer "busy"; retrying in a tight loop only adds load.
    #[error("mailbox is full")]
    Full(M),
    /// The mailbox was closed (its FSM stopped, was replaced, or the system shut down). The
    /// message will never be delivered.
    #[error("mailbox is closed")]
    Disconnected(M),
}

impl<M> TrySendError<M> {
    /// Gives the rejected message back.
    pub fn into_inner(self) -> M {
        match self {
            TrySendError::Full(m) | TrySendError::Disconnected(m) => m,
        }
    }
}

impl<M> fmt::Debug for TrySendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Disconnected(_) => f.write_str("Disconnected(..)"),
        }
    }
}

/// A [`Mailbox::force_send`](crate::Mailbox::force_send) to a closed mailbox. Force sends ignore
/// capacity, so being closed is the only way they fail.
#[derive(thiserror::Error, PartialEq, Eq)]
#[error("mailbox is closed")]
pub struct MailboxClosed<M>(pub M);

impl<M> fmt::Debug for MailboxClosed<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MailboxClosed(..)")
    }
}

/// A [`Router::send`](crate::Router::send) that did not enqueue its message.
#[derive(thiserror::Error, PartialEq, Eq)]
pub enum SendError<M> {
    /// No FSM is registered at the address (and the router is not shut down). For raftstore
    /// this is "region not found": the message may be for a peer that must be created.
    #[error("no mailbox is registered at address {addr}")]
    NotFound { addr: u64, msg: M },
    /// The target mailbox is full; see [`TrySendError::Full`].
    #[error("mailbox at address {addr} is full")]
    Full { addr: u64, msg: M },
    /// The target mailbox was closed while the message was on its way, or the router is shut
    /// down; see [`TrySendError::Disconnected`].
    #[error("mailbox at address {addr} is closed")]
    Disconnected { addr: u64, msg: M },
}

impl<M> SendError<M> {
    /// Gives the rejected message back.
    pub fn into_inner(self) -> M {
        match self {
            SendError::NotFound { msg, .. }
            | SendError::Full { msg, .. }
            | SendError::Disconnected { msg, .. } => msg,
        }
    }
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, addr) = match self {
            SendError::NotFound { addr, .. } => ("NotFound", addr),
            SendError::Full { addr, .. } => ("Full", addr),
            SendError::Disconnected { addr, .. } => ("Disconnected", addr),
        };
        write!(f, "{name} {{ addr: {addr}, .. }}")
    }
}

/// A [`Router::force_send`](crate::Router::force_send) that did not enqueue its message. There
/// is no `Full` variant: force sends ignore capacity.
#[derive(thiserror::Error, PartialEq, Eq)]
pub enum ForceSendError<M> {
    /// See [`SendError::NotFound`].
    #[error("no mailbox is registered at address {addr}")]
    NotFound { addr: u64, msg: M },
    /// See [`SendError::Disconnected`].
    #[error("mailbox at address {addr} is closed")]
    Disconnected { addr: u64, msg: M },
}

impl<M> ForceSendError<M> {
    /// Gives the rejected message back.
    pub fn into_inner(self) -> M {
        match self {
            ForceSendError::NotFound { msg, .. } | ForceSendError::Disconnected { msg, .. } => msg,
        }
    }
}

impl<M> fmt::Debug for ForceSendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, addr) = match self {
            ForceSendError::NotFound { addr, .. } => ("NotFound", addr),
            ForceSendError::Disconnected { addr, .. } => ("Disconnected", addr),
        };
        write!(f, "{name} {{ addr: {addr}, .. }}")
    }
}

/// Lifecycle errors of a [`BatchSystem`](crate::BatchSystem).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The [`Config`](crate::Config) failed validation.
    #[error("invalid batch-system config: {0}")]
    Config(#[from] util::config::ConfigError),
    /// The OS refused to start a poller thread. Pollers started before it keep running until
    /// [`BatchSystem::shutdown`](crate::BatchSystem::shutdown).
    #[error("failed to spawn poller thread {name}")]
    SpawnPoller {
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// A poller thread panicked. The FSMs it owned at that moment were dropped without being
    /// released, so their mailboxes accepted messages that nobody will handle; the process
    /// should treat this as fatal.
    #[error("poller thread {name} panicked")]
    PollerPanicked { name: String },
}
