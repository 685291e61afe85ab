//! The [`Fsm`] trait and [`FsmState`], the cell that decides which thread owns an FSM.
//!
//! # Ownership state machine
//!
//! Every FSM lives in exactly one [`FsmState`], which is in one of three states:
//!
//! ```text
//!              take() (CAS)                       clear()
//!   ┌──────┐ ──────────────► ┌──────────┐  ─────────────────►  ┌─────────┐
//!   │ Idle │                 │ Notified │                      │ Dropped │
//!   └──────┘ ◄────────────── └──────────┘   release() sees     └─────────┘
//!      │        release()                   Dropped: drops FSM     ▲
//!      └───────────────────── clear(): drops the FSM at once ──────┘
//! ```
//!
//! - **Idle**: no thread owns the FSM; it sits in `slot`. It costs nothing but memory.
//! - **Notified**: exactly one thread owns the `Box<N>` (a sender that is handing it to the
//!   scheduler, the scheduler queue, or a poller). `slot` is empty.
//! - **Dropped**: the mailbox was closed. The FSM has been dropped, or will be dropped by its
//!   owner at the next `release()`. Terminal.
//!
//! **Invariant: at most one thread owns an FSM at any time.** Only the thread whose CAS moved
//! the state Idle→Notified may touch the FSM, until it calls `release()` (or hands the box to
//! another thread through a channel, which transfers ownership with it). The `slot` mutex is
//! therefore never contended; it exists so that this crate needs no `unsafe`, and every access
//! uses `try_lock` and asserts success, which turns a broken invariant into a loud panic
//! instead of a data race.

use std::sync::atomic::{AtomicU8, Ordering};

use parking_lot::Mutex;

use crate::mailbox::Mailbox;

/// A finite state machine driven by messages.
///
/// An FSM is `Send` because it moves between poller threads; it is never shared, so it need
/// not be `Sync`.
pub trait Fsm: Send + 'static {
    /// What its mailbox carries.
    type Message: Send + 'static;

    /// True once the FSM has finished for good. After a round in which this returns true, the
    /// poller closes the FSM's mailbox and drops the FSM; messages still queued are dropped
    /// with it (see the crate README, "failure modes").
    fn is_stopped(&self) -> bool;

    /// Called once, at registration, with the FSM's own mailbox, so that it can later send
    /// messages to itself (for example a follow-up step or a tick). The default ignores it.
    ///
    /// An FSM that keeps the mailbox forms a reference cycle (FSM → mailbox → FSM cell) that
    /// is broken when the mailbox is closed, which always happens at
    /// [`Router::close`](crate::Router::close) or shutdown; so the FSM MUST NOT expect to be
    /// dropped merely by dropping every router.
    fn set_mailbox(&mut self, _mailbox: &Mailbox<Self>)
    where
        Self: Sized,
    {
    }
}

/// The three ownership states; see the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Ownership {
    Idle = 0,
    Notified = 1,
    Dropped = 2,
}

impl Ownership {
    fn from_u8(v: u8) -> Ownership {
        match v {
            0 => Ownership::Idle,
            1 => Ownership::Notified,
            2 => Ownership::Dropped,
            other => panic!("corrupt FSM ownership state {other}"),
        }
    }
}

/// The ownership cell of one FSM. Shared (in an `Arc`) by all clones of its mailbox.
pub(crate) struct FsmState<N> {
    status: AtomicU8,
    /// Holds the FSM while Idle; empty otherwise. Guarded by `status`, not by the mutex.
    slot: Mutex<Option<Box<N>>>,
}

impl<N> FsmState<N> {
    /// A cell in state Notified, owned by the caller, with an empty slot. The creator MUST
    /// `release()` the FSM into it to make it Idle; this lets the mailbox be built (and handed
    /// to [`Fsm::set_mailbox`]) before the FSM is parked in it.
    pub(crate) fn new_owned() -> FsmState<N> {
        FsmState { status: AtomicU8::new(Ownership::Notified as u8), slot: Mutex::new(None) }
    }

    pub(crate) fn ownership(&self) -> Ownership {
        Ownership::from_u8(self.status.load(Ordering::SeqCst))
    }

    /// Moves Idle→Notified and returns the FSM; `None` if it is already owned or dropped.
    ///
    /// SeqCst because the caller pairs it with a queue operation (see `Mailbox::notify` and
    /// `Mailbox::release_or_retake`); the orderings must form one total order with them.
    pub(crate) fn take(&self) -> Option<Box<N>> {
        let won = self
            .status
            .compare_exchange(
                Ownership::Idle as u8,
                Ownership::Notified as u8,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok();
        if !won {
            return None;
        }
        let fsm = self.lock_slot().take();
        assert!(fsm.is_some(), "FSM state was Idle but its slot was empty");
        fsm
    }

    /// Gives the FSM back: Notified→Idle. If the mailbox was closed meanwhile (Dropped), the
    /// FSM is dropped here instead.
    ///
    /// # Panics
    /// If the state is Idle (the caller did not own the FSM: two owners existed).
    pub(crate) fn release(&self, fsm: Box<N>) {
        {
            let mut slot = self.lock_slot();
            assert!(slot.is_none(), "released an FSM into an occupied slot");
            // Store before the CAS: once Idle is visible, a taker expects the box in place.
            *slot = Some(fsm);
        }
        let res = self.status.compare_exchange(
            Ownership::Notified as u8,
            Ownership::Idle as u8,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        match res.map_err(Ownership::from_u8) {
            Ok(_) => {}
            Err(Ownership::Dropped) => {
                // `clear()` saw Notified and left the FSM to us. Dropped is terminal, so no
                // one else will touch the slot again.
                let fsm = self.lock_slot().take();
                drop(fsm);
            }
            Err(state @ (Ownership::Idle | Ownership::Notified)) => {
                panic!("released an FSM that was not owned (state {state:?})")
            }
        }
    }

    /// Moves to Dropped. If the FSM was Idle it is dropped now, on the calling thread;
    /// if it was Notified its owner drops it at `release()`. Idempotent.
    pub(crate) fn clear(&self) {
        let prev = Ownership::from_u8(self.status.swap(Ownership::Dropped as u8, Ordering::SeqCst));
        match prev {
            Ownership::Idle => {
                let fsm = self.lock_slot().take();
                assert!(fsm.is_some(), "FSM state was Idle but its slot was empty");
                // Dropped outside the slot lock: the FSM's own Drop may touch its mailbox.
                drop(fsm);
            }
            Ownership::Notified | Ownership::Dropped => {}
        }
    }

    fn lock_slot(&self) -> parking_lot::MutexGuard<'_, Option<Box<N>>> {
        self.slot.try_lock().expect("FSM slot contended: two threads own one FSM")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use super::*;

    /// Counts its drops, so tests can see exactly when the cell lets go of it.
    struct Probe(Arc<AtomicUsize>);

    impl Drop for Probe {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn cell() -> (FsmState<Probe>, Arc<AtomicUsize>) {
        let drops = Arc::new(AtomicUsize::new(0));
        let state = FsmState::new_owned();
        state.release(Box::new(Probe(drops.clone())));
        (state, drops)
    }

    #[test]
    fn take_then_release_round_trips() {
        let (state, drops) = cell();
        assert_eq!(state.ownership(), Ownership::Idle);
        let fsm = state.take().expect("idle FSM can be taken");
        assert_eq!(state.ownership(), Ownership::Notified);
        assert!(state.take().is_none(), "a second taker must lose");
        state.release(fsm);
        assert_eq!(state.ownership(), Ownership::Idle);
        assert!(state.take().is_some());
        assert_eq!(drops.load(Ordering::SeqCst), 1, "the taken box was dropped by the test");
    }

    #[test]
    fn clear_while_idle_drops_at_once() {
        let (state, drops) = cell();
        state.clear();
        assert_eq!(state.ownership(), Ownership::Dropped);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert!(state.take().is_none(), "a dropped FSM can never be taken");
        state.clear();
        assert_eq!(drops.load(Ordering::SeqCst), 1, "clear is idempotent");
    }

    #[test]
    fn clear_while_owned_defers_drop_to_release() {
        let (state, drops) = cell();
        let fsm = state.take().unwrap();
        state.clear();
        assert_eq!(drops.load(Ordering::SeqCst), 0, "the owner still holds it");
        state.release(fsm);
        assert_eq!(drops.load(Ordering::SeqCst), 1, "release after clear drops the FSM");
        assert_eq!(state.ownership(), Ownership::Dropped);
    }

    #[test]
    fn dropping_the_cell_drops_an_idle_fsm() {
        let (state, drops) = cell();
        drop(state);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    #[should_panic(expected = "released an FSM")]
    fn release_without_ownership_panics() {
        let (state, drops) = cell();
        state.release(Box::new(Probe(drops)));
    }

    #[test]
    fn concurrent_takers_have_exactly_one_winner() {
        for _ in 0..200 {
            let (state, _drops) = cell();
            let state = Arc::new(state);
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let state = state.clone();
                    // The winner keeps the box until joined: releasing it would let a later
                    // taker win too.
                    std::thread::spawn(move || state.take())
                })
                .collect();
            let taken: Vec<_> = handles.into_iter().filter_map(|h| h.join().unwrap()).collect();
            assert_eq!(taken.len(), 1);
        }
    }
}
