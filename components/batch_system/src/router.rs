//! [`Router`]: the address book from a u64 address (for raftstore, a region id) to the mailbox
//! of a normal FSM, plus the mailbox of the one control FSM.
//!
//! # Invariants
//! - An address maps to at most one mailbox, and every mailbox in the book is open, except a
//!   mailbox whose FSM stopped itself (the poller closes it but cannot edit the book); such an
//!   entry answers `Disconnected` once and is then purged by that send.
//! - A mailbox removed from the book (`close`, `register` over it, `broadcast_shutdown`) is
//!   closed after it is removed, outside the shard lock, so a sender that found it either got
//!   its message queued before the close or gets it back.
//! - After `broadcast_shutdown` the book is empty forever: `register` drops new FSMs at once
//!   and every send answers `Disconnected` (never `NotFound`).
//!
//! # Hot path
//! `send` takes one shard's read lock (64 shards, chosen by the address's low bits, which
//! spreads sequential region ids evenly), looks the address up and sends while holding it.
//! Sending never blocks, so a writer waits at most for a few in-flight sends. TiKV adds a
//! per-thread cache in front of its map; we can add one if benchmarks show lock traffic.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use slog::{debug, info, Logger};

use crate::error::{ForceSendError, MailboxClosed, SendError, TrySendError};
use crate::fsm::Fsm;
use crate::mailbox::{inbox, Inbox, InboxSender, Mailbox, Schedule};

const SHARD_BITS: u32 = 6;
const SHARD_COUNT: usize = 1 << SHARD_BITS;

/// A hasher for u64 keys: the splitmix64 finaliser. Much cheaper than SipHash; addresses are
/// not attacker-chosen (they are allocated by the placement driver).
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u64(&mut self, mut z: u64) {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        self.0 = z ^ (z >> 31);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type AddrMap<V> = HashMap<u64, V, BuildHasherDefault<AddrHasher>>;

/// One shard, on its own cache lines so that lock traffic on one does not slow its neighbours.
#[repr(align(128))]
struct Shard<N: Fsm> {
    map: RwLock<AddrMap<Mailbox<N>>>,
}

struct Inner<N: Fsm, C: Fsm> {
    shards: Box<[Shard<N>]>,
    control: Mailbox<C>,
    normal_scheduler: Arc<dyn Schedule<N>>,
    /// Entries in the book; changed under the owning shard's write lock.
    alive: AtomicUsize,
    shut_down: AtomicBool,
    /// `notify-capacity`: the capacity of inboxes made by `create_inbox`.
    inbox_capacity: usize,
    logger: Logger,
}

/// Routes messages to FSMs by address. Thread-safe; cloning is one atomic increment.
pub struct Router<N: Fsm, C: Fsm> {
    inner: Arc<Inner<N, C>>,
}

impl<N: Fsm, C: Fsm> Clone for Router<N, C> {
    fn clone(&self) -> Router<N, C> {
        Router { inner: self.inner.clone() }
    }
}

/// What a lookup-and-send found, decided under the shard lock and acted on after it.
enum Lookup<M> {
    Sent,
    Full(M),
    Dead(M),
    Missing(M),
}

impl<N: Fsm, C: Fsm> Router<N, C> {
    pub(crate) fn new(
        control: Mailbox<C>,
        normal_scheduler: Arc<dyn Schedule<N>>,
        inbox_capacity: usize,
        logger: Logger,
    ) -> Router<N, C> {
        let shards = (0..SHARD_COUNT).map(|_| Shard { map: RwLock::default() }).collect();
        let inner = Inner {
            shards,
            control,
            normal_scheduler,
            alive: AtomicUsize::new(0),
            shut_down: AtomicBool::new(false),
            inbox_capacity,
            logger,
        };
        Router { inner: Arc::new(inner) }
    }

    /// A new inbox with the configured `notify-capacity`, for an FSM about to be registered.
    pub fn create_inbox(&self) -> (InboxSender<N::Message>, Inbox<N::Message>) {
        inbox(self.inner.inbox_capacity)
    }

    /// The control mailbox, for the pollers.
    pub(crate) fn control(&self) -> &Mailbox<C> {
        &self.inner.control
    }

    fn shard(&self, addr: u64) -> &Shard<N> {
        &self.inner.shards[(addr as usize) & (SHARD_COUNT - 1)]
    }

    /// Registers `fsm` at `addr`, Idle; `sender` MUST be the other half of the inbox the FSM
    /// holds. Calls [`Fsm::set_mailbox`]. Registering sends nothing: send a first message to
    /// get the FSM handled.
    ///
    /// A mailbox already at `addr` is replaced and closed (its FSM is dropped once no poller
    /// owns it). After shutdown the new FSM is dropped at once.
    pub fn register(&self, addr: u64, sender: InboxSender<N::Message>, fsm: Box<N>) {
        let mailbox = Mailbox::new(sender, fsm, self.inner.normal_scheduler.clone());
        let replaced = {
            let mut map = self.shard(addr).map.write();
            // Checked under the shard lock: `broadcast_shutdown` sets the flag before it
            // drains the shards, so an insert either sees the flag or is drained.
            if self.inner.shut_down.load(Ordering::SeqCst) {
                drop(map);
                mailbox.close();
                return;
            }
            let old = map.insert(addr, mailbox);
            if old.is_none() {
                self.inner.alive.fetch_add(1, Ordering::SeqCst);
            }
            old
        };
        if let Some(old) = replaced {
            debug!(self.inner.logger, "replaced mailbox"; "addr" => addr);
            old.close();
        }
    }

    /// [`register`](Self::register) for each entry, in order.
    pub fn register_all(&self, fsms: Vec<(u64, InboxSender<N::Message>, Box<N>)>) {
        for (addr, sender, fsm) in fsms {
            self.register(addr, sender, fsm);
        }
    }

    /// A handle to the open mailbox at `addr`, for callers that send to it often.
    pub fn mailbox(&self, addr: u64) -> Option<Mailbox<N>> {
        let map = self.shard(addr).map.read();
        map.get(&addr).filter(|mb| !mb.is_closed()).cloned()
    }

    /// A handle to the control FSM's mailbox.
    pub fn control_mailbox(&self) -> Mailbox<C> {
        self.inner.control.clone()
    }

    fn lookup_send(&self, addr: u64, msg: N::Message, force: bool) -> Lookup<N::Message> {
        let map = self.shard(addr).map.read();
        let Some(mailbox) = map.get(&addr) else {
            return Lookup::Missing(msg);
        };
        if force {
            return match mailbox.force_send(msg) {
                Ok(()) => Lookup::Sent,
                Err(MailboxClosed(m)) => Lookup::Dead(m),
            };
        }
        match mailbox.try_send(msg) {
            Ok(()) => Lookup::Sent,
            Err(TrySendError::Full(m)) => Lookup::Full(m),
            Err(TrySendError::Disconnected(m)) => Lookup::Dead(m),
        }
    }

    /// Removes a closed entry left by an FSM that stopped itself; see the module invariants.
    fn purge_dead(&self, addr: u64) {
        let mut map = self.shard(addr).map.write();
        if map.get(&addr).is_some_and(Mailbox::is_closed) {
            map.remove(&addr);
            self.inner.alive.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Sends `msg` to the FSM at `addr` (capacity-checked), scheduling it if idle.
    ///
    /// Errors give the message back: `NotFound` if no FSM is registered there (raftstore:
    /// "region not found" / maybe create a peer), `Full` if its mailbox is full ("busy"),
    /// `Disconnected` if it was closed concurrently or the router is shut down.
    pub fn send(&self, addr: u64, msg: N::Message) -> Result<(), SendError<N::Message>> {
        match self.lookup_send(addr, msg, false) {
            Lookup::Sent => Ok(()),
            Lookup::Full(msg) => Err(SendError::Full { addr, msg }),
            Lookup::Dead(msg) => {
                self.purge_dead(addr);
                Err(SendError::Disconnected { addr, msg })
            }
            Lookup::Missing(msg) if self.is_shut_down() => {
                Err(SendError::Disconnected { addr, msg })
            }
            Lookup::Missing(msg) => Err(SendError::NotFound { addr, msg }),
        }
    }

    /// Like [`send`](Self::send) but ignores the mailbox capacity. Only for messages whose
    /// number is bounded elsewhere; see the `mailbox` module doc, "Queue and bound".
    pub fn force_send(&self, addr: u64, msg: N::Message) -> Result<(), ForceSendError<N::Message>> {
        match self.lookup_send(addr, msg, true) {
            Lookup::Sent => Ok(()),
            Lookup::Full(_) => unreachable!("force send reported Full (addr {addr})"),
            Lookup::Dead(msg) => {
                self.purge_dead(addr);
                Err(ForceSendError::Disconnected { addr, msg })
            }
            Lookup::Missing(msg) if self.is_shut_down() => {
                Err(ForceSendError::Disconnected { addr, msg })
            }
            Lookup::Missing(msg) => Err(ForceSendError::NotFound { addr, msg }),
        }
    }

    /// Sends to the control FSM, capacity-checked.
    pub fn send_control(&self, msg: C::Message) -> Result<(), TrySendError<C::Message>> {
        self.inner.control.try_send(msg)
    }

    /// Sends to the control FSM ignoring capacity (same rules as `force_send`).
    pub fn force_send_control(&self, msg: C::Message) -> Result<(), MailboxClosed<C::Message>> {
        self.inner.control.force_send(msg)
    }

    /// Force-sends `msg_gen()` to every registered normal FSM; returns how many accepted it.
    /// A mailbox closing concurrently drops its copy. Holds one shard's read lock at a time, so
    /// FSMs registered meanwhile may or may not receive it.
    pub fn broadcast_normal(&self, mut msg_gen: impl FnMut() -> N::Message) -> usize {
        let mut delivered = 0;
        for shard in self.inner.shards.iter() {
            let map = shard.map.read();
            for mailbox in map.values() {
                if mailbox.force_send(msg_gen()).is_ok() {
                    delivered += 1;
                }
            }
        }
        delivered
    }

    /// Unregisters and closes the FSM at `addr`; returns whether one was registered. An idle
    /// FSM is dropped on this thread before `close` returns, with its queued messages; an FSM
    /// owned by a poller is dropped by that poller at the end of its round. Either way, every
    /// send that starts after `close` returns gets its message back.
    pub fn close(&self, addr: u64) -> bool {
        let removed = self.shard(addr).map.write().remove(&addr);
        let Some(mailbox) = removed else {
            return false;
        };
        self.inner.alive.fetch_sub(1, Ordering::SeqCst);
        debug!(self.inner.logger, "closing mailbox"; "addr" => addr);
        mailbox.close();
        true
    }

    /// Registered normal FSMs (an FSM that stopped itself counts until its entry is purged).
    pub fn alive_count(&self) -> usize {
        self.inner.alive.load(Ordering::SeqCst)
    }

    /// True once [`broadcast_shutdown`](Self::broadcast_shutdown) has started.
    pub fn is_shut_down(&self) -> bool {
        self.inner.shut_down.load(Ordering::SeqCst)
    }

    /// Closes every mailbox, normal and control, and refuses all later registrations. Idle
    /// FSMs are dropped here; owned ones by their pollers. Does not stop the pollers: that is
    /// [`BatchSystem::shutdown`](crate::BatchSystem::shutdown), which calls this first.
    pub fn broadcast_shutdown(&self) {
        if self.inner.shut_down.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut closed = 0usize;
        for shard in self.inner.shards.iter() {
            let drained: Vec<Mailbox<N>> = {
                let mut map = shard.map.write();
                self.inner.alive.fetch_sub(map.len(), Ordering::SeqCst);
                map.drain().map(|(_, mb)| mb).collect()
            };
            closed += drained.len();
            for mailbox in drained {
                mailbox.close();
            }
        }
        self.inner.control.close();
        info!(self.inner.logger, "router shut down"; "closed_mailboxes" => closed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use parking_lot::Mutex;

    use super::*;

    struct Node {
        inbox: Inbox<u32>,
        drops: Arc<AtomicUsize>,
    }

    impl Drop for Node {
        fn drop(&mut self) {
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Fsm for Node {
        type Message = u32;
        fn is_stopped(&self) -> bool {
            false
        }
    }

    struct Recorder<T>(Mutex<Vec<Box<T>>>);

    impl<T> Default for Recorder<T> {
        fn default() -> Self {
            Recorder(Mutex::new(Vec::new()))
        }
    }

    impl<T: Fsm> Schedule<T> for Recorder<T> {
        fn schedule(&self, fsm: Box<T>, _mailbox: &Mailbox<T>) {
            self.0.lock().push(fsm);
        }
    }

    struct Fixture {
        router: Router<Node, Node>,
        normals: Arc<Recorder<Node>>,
        drops: Arc<AtomicUsize>,
    }

    fn node(drops: &Arc<AtomicUsize>, capacity: usize) -> (InboxSender<u32>, Box<Node>) {
        let (tx, inbox) = inbox(capacity);
        (tx, Box::new(Node { inbox, drops: drops.clone() }))
    }

    fn fixture() -> Fixture {
        let drops = Arc::new(AtomicUsize::new(0));
        let normals = Arc::new(Recorder::default());
        let (tx, control) = node(&drops, 4);
        let control = Mailbox::new(tx, control, Arc::new(Recorder::<Node>::default()));
        let logger = Logger::root(slog::Discard, slog::o!());
        let router = Router::new(control, normals.clone(), 4, logger);
        Fixture { router, normals, drops }
    }

    #[test]
    fn send_reaches_the_registered_fsm_and_unknown_is_not_found() {
        let f = fixture();
        for addr in [1, 65, 1 << 40] {
            let (tx, fsm) = node(&f.drops, 4);
            f.router.register(addr, tx, fsm);
        }
        assert_eq!(f.router.alive_count(), 3);
        f.router.send(65, 7).unwrap();
        let scheduled = f.normals.0.lock().pop().expect("send schedules the idle FSM");
        assert_eq!(scheduled.inbox.try_recv(), Some(7));
        assert_eq!(f.router.send(2, 9), Err(SendError::NotFound { addr: 2, msg: 9 }));
        assert_eq!(f.router.force_send(3, 9), Err(ForceSendError::NotFound { addr: 3, msg: 9 }));
        assert!(f.router.mailbox(1 << 40).is_some());
        assert!(f.router.mailbox(2).is_none());
    }

    #[test]
    fn full_mailbox_is_reported_with_its_address() {
        let f = fixture();
        let (tx, fsm) = node(&f.drops, 2);
        f.router.register(5, tx, fsm);
        f.router.send(5, 1).unwrap();
        f.router.send(5, 2).unwrap();
        assert_eq!(f.router.send(5, 3), Err(SendError::Full { addr: 5, msg: 3 }));
        f.router.force_send(5, 4).unwrap();
        assert_eq!(f.router.mailbox(5).unwrap().len(), 3);
    }

    #[test]
    fn close_drops_idle_fsm_and_later_sends_are_not_found() {
        let f = fixture();
        let (tx, fsm) = node(&f.drops, 4);
        f.router.register(9, tx, fsm);
        let stale = f.router.mailbox(9).unwrap();
        assert!(f.router.close(9));
        assert!(!f.router.close(9), "second close finds nothing");
        assert_eq!(f.drops.load(Ordering::SeqCst), 1);
        assert_eq!(f.router.alive_count(), 0);
        assert_eq!(f.router.send(9, 1), Err(SendError::NotFound { addr: 9, msg: 1 }));
        assert_eq!(stale.try_send(2), Err(TrySendError::Disconnected(2)));
    }

    #[test]
    fn register_over_an_address_closes_the_old_mailbox() {
        let f = fixture();
        let (tx, fsm) = node(&f.drops, 4);
        f.router.register(3, tx, fsm);
        let old = f.router.mailbox(3).unwrap();
        let (tx, fsm) = node(&f.drops, 4);
        f.router.register(3, tx, fsm);
        assert!(old.is_closed());
        assert_eq!(f.drops.load(Ordering::SeqCst), 1);
        assert_eq!(f.router.alive_count(), 1);
        f.router.send(3, 1).unwrap();
    }

    #[test]
    fn dead_entry_answers_disconnected_once_then_not_found() {
        let f = fixture();
        let (tx, fsm) = node(&f.drops, 4);
        f.router.register(4, tx, fsm);
        // What a poller does when the FSM stops itself without `Router::close`.
        f.router.mailbox(4).unwrap().close();
        assert_eq!(f.router.send(4, 1), Err(SendError::Disconnected { addr: 4, msg: 1 }));
        assert_eq!(f.router.alive_count(), 0);
        assert_eq!(f.router.send(4, 2), Err(SendError::NotFound { addr: 4, msg: 2 }));
    }

    #[test]
    fn broadcast_reaches_every_fsm() {
        let f = fixture();
        for addr in 0..100 {
            let (tx, fsm) = node(&f.drops, 1);
            f.router.register(addr, tx, fsm);
        }
        // Capacity 1 and already full: the broadcast must still get through.
        for addr in 0..100 {
            f.router.send(addr, 0).unwrap();
        }
        assert_eq!(f.router.broadcast_normal(|| 1), 100);
        assert!((0..100).all(|a| f.router.mailbox(a).unwrap().len() == 2));
    }

    #[test]
    fn shutdown_closes_everything_and_refuses_registration() {
        let f = fixture();
        for addr in 0..10 {
            let (tx, fsm) = node(&f.drops, 4);
            f.router.register(addr, tx, fsm);
        }
        f.router.broadcast_shutdown();
        // Ten normals and the control FSM, all idle, were dropped.
        assert_eq!(f.drops.load(Ordering::SeqCst), 11);
        assert_eq!(f.router.alive_count(), 0);
        assert_eq!(f.router.send(3, 1), Err(SendError::Disconnected { addr: 3, msg: 1 }));
        assert_eq!(f.router.send_control(1), Err(TrySendError::Disconnected(1)));
        let (tx, fsm) = node(&f.drops, 4);
        f.router.register(20, tx, fsm);
        assert_eq!(f.drops.load(Ordering::SeqCst), 12, "late registration is dropped");
        assert_eq!(f.router.alive_count(), 0);
    }
}
