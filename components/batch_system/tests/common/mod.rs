//! A small FSM, handler and event log shared by the integration tests.
//!
//! Every handler call and every FSM drop is appended to one [`Log`]; tests wait on it with a
//! deadline (a condition variable, never a fixed sleep) and then assert on what it recorded.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use batch_system::{
    create_system, inbox, BatchSystem, Config, Fsm, HandleResult, HandlerBuilder, Inbox, Mailbox,
    NormalFsm, PollHandler, Router,
};
use parking_lot::{Condvar, Mutex};
use util::config::ReadableDuration;

/// Generous: the machine is shared and tests run in debug builds.
pub const DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Recorded as handled.
    Work(u64),
    /// Makes the FSM report `is_stopped`.
    Stop,
    /// Handled, then sends itself `Hot(n - 1)` until `n` is 0: a permanently busy FSM.
    Hot(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Begin { thread: String, batch_size: usize },
    Handled { id: u64, msg: Msg },
    Control { msg: Msg },
    LightEnd { ids: Vec<u64> },
    End { ids: Vec<u64> },
    Dropped { id: u64 },
    Pause,
}

/// Id of the control FSM in `Event::Dropped`.
pub const CONTROL_ID: u64 = u64::MAX;

#[derive(Default)]
pub struct Log {
    events: Mutex<Vec<Event>>,
    changed: Condvar,
}

impl Log {
    pub fn push(&self, event: Event) {
        self.events.lock().push(event);
        self.changed.notify_all();
    }

    pub fn snapshot(&self) -> Vec<Event> {
        self.events.lock().clone()
    }

    /// Waits until `pred` holds for the events so far; panics after [`DEADLINE`].
    pub fn wait_for(&self, what: &str, pred: impl Fn(&[Event]) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        let mut events = self.events.lock();
        while !pred(&events) {
            if self.changed.wait_until(&mut events, deadline).timed_out() && !pred(&events) {
                panic!("timed out waiting for {what}; {} events logged", events.len());
            }
        }
    }

    pub fn handled(&self, id: u64) -> Vec<Msg> {
        handled_of(&self.snapshot(), id)
    }

    pub fn dropped(&self) -> Vec<u64> {
        self.snapshot()
            .into_iter()
            .filter_map(|e| if let Event::Dropped { id } = e { Some(id) } else { None })
            .collect()
    }
}

pub fn handled_of(events: &[Event], id: u64) -> Vec<Msg> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Handled { id: i, msg } if *i == id => Some(msg.clone()),
            Event::Handled { .. }
            | Event::Begin { .. }
            | Event::Control { .. }
            | Event::LightEnd { .. }
            | Event::End { .. }
            | Event::Dropped { .. }
            | Event::Pause => None,
        })
        .collect()
}

pub fn count_handled(events: &[Event]) -> usize {
    events.iter().filter(|e| matches!(e, Event::Handled { .. })).count()
}

pub struct TestFsm {
    pub id: u64,
    inbox: Inbox<Msg>,
    stopped: bool,
    /// Leave the batch before `end`.
    skip_end: bool,
    own: Option<Mailbox<TestFsm>>,
    log: Arc<Log>,
}

impl Fsm for TestFsm {
    type Message = Msg;

    fn is_stopped(&self) -> bool {
        self.stopped
    }

    fn set_mailbox(&mut self, mailbox: &Mailbox<TestFsm>) {
        self.own = Some(mailbox.clone());
    }
}

impl Drop for TestFsm {
    fn drop(&mut self) {
        self.log.push(Event::Dropped { id: self.id });
    }
}

impl TestFsm {
    fn handle(&mut self, msg: Msg) {
        self.log.push(Event::Handled { id: self.id, msg: msg.clone() });
        match msg {
            Msg::Work(_) => {}
            Msg::Stop => self.stopped = true,
            Msg::Hot(0) => {}
            Msg::Hot(n) => {
                let own = self.own.as_ref().expect("registered FSMs know their mailbox");
                // Fails only once the mailbox is closed; the FSM is then about to be dropped
                // and the chain simply ends.
                own.force_send(Msg::Hot(n - 1)).ok();
            }
        }
    }
}

/// Builds an FSM for `router.register`.
pub fn new_fsm(
    router: &Router<TestFsm, TestFsm>,
    id: u64,
    log: &Arc<Log>,
) -> (batch_system::InboxSender<Msg>, Box<TestFsm>) {
    let (tx, inbox) = router.create_inbox();
    let fsm = TestFsm { id, inbox, stopped: false, skip_end: false, own: None, log: log.clone() };
    (tx, Box::new(fsm))
}

pub fn register(router: &Router<TestFsm, TestFsm>, id: u64, log: &Arc<Log>) {
    let (tx, fsm) = new_fsm(router, id, log);
    router.register(id, tx, fsm);
}

pub fn register_skip_end(router: &Router<TestFsm, TestFsm>, id: u64, log: &Arc<Log>) {
    let (tx, mut fsm) = new_fsm(router, id, log);
    fsm.skip_end = true;
    router.register(id, tx, fsm);
}

pub struct TestHandler {
    log: Arc<Log>,
    /// Messages handled per `handle_normal` call.
    per_round: usize,
}

impl PollHandler<TestFsm, TestFsm> for TestHandler {
    fn begin(&mut self, batch_size: usize) {
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        self.log.push(Event::Begin { thread, batch_size });
    }

    fn handle_control(&mut self, control: &mut TestFsm) -> Option<usize> {
        while let Some(msg) = control.inbox.try_recv() {
            self.log.push(Event::Control { msg: msg.clone() });
            if msg == Msg::Stop {
                control.stopped = true;
            }
        }
        Some(0)
    }

    fn handle_normal(&mut self, normal: &mut TestFsm) -> HandleResult {
        for _ in 0..self.per_round {
            match normal.inbox.try_recv() {
                Some(msg) => normal.handle(msg),
                None => break,
            }
        }
        if normal.inbox.is_empty() {
            HandleResult::stop_at(0, normal.skip_end)
        } else {
            HandleResult::KeepProcessing
        }
    }

    fn light_end(&mut self, normals: &mut [NormalFsm<TestFsm>]) {
        self.log.push(Event::LightEnd { ids: normals.iter().map(|n| n.id).collect() });
    }

    fn end(&mut self, normals: &mut [NormalFsm<TestFsm>]) {
        self.log.push(Event::End { ids: normals.iter().map(|n| n.id).collect() });
    }

    fn pause(&mut self) {
        self.log.push(Event::Pause);
    }
}

pub struct TestBuilder {
    pub log: Arc<Log>,
    pub per_round: usize,
}

impl HandlerBuilder<TestFsm, TestFsm> for TestBuilder {
    type Handler = TestHandler;

    fn build(&mut self) -> TestHandler {
        TestHandler { log: self.log.clone(), per_round: self.per_round }
    }
}

pub struct Harness {
    pub router: Router<TestFsm, TestFsm>,
    pub system: BatchSystem<TestFsm, TestFsm>,
    pub log: Arc<Log>,
}

impl Harness {
    pub fn new(cfg: &Config) -> Harness {
        let log = Arc::new(Log::default());
        let (tx, inbox) = inbox(cfg.notify_capacity);
        let control = TestFsm {
            id: CONTROL_ID,
            inbox,
            stopped: false,
            skip_end: false,
            own: None,
            log: log.clone(),
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let (router, system) = create_system(cfg, logger, tx, Box::new(control)).unwrap();
        Harness { router, system, log }
    }

    pub fn spawn(&mut self, per_round: usize) {
        let builder = TestBuilder { log: self.log.clone(), per_round };
        self.system.spawn("test", builder).unwrap();
    }

    /// Waits until FSM `id` has handled `n` messages.
    pub fn wait_handled(&self, id: u64, n: usize) {
        self.log.wait_for(&format!("fsm {id} to handle {n}"), |ev| handled_of(ev, id).len() >= n);
    }
}

pub fn config(pool_size: usize, max_batch_size: usize, reschedule: ReadableDuration) -> Config {
    Config { pool_size, max_batch_size, reschedule_duration: reschedule, notify_capacity: 1024 }
}

/// Per-id handled counts, for fairness assertions.
pub fn handled_counts(events: &[Event]) -> HashMap<u64, usize> {
    let mut counts = HashMap::new();
    for e in events {
        if let Event::Handled { id, .. } = e {
            *counts.entry(*id).or_default() += 1;
        }
    }
    counts
}
