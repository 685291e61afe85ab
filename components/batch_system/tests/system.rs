//! Behaviour of a running batch system: batching, idle release and re-notification, the
//! control FSM, fairness, runtime registration and close, shutdown.
//!
//! Tests that assert on round structure use one poller and queue every FSM before `spawn`, so
//! the schedule is deterministic; none of them depends on timing.

mod common;

use std::collections::BTreeSet;

use batch_system::{SendError, TrySendError};
use common::*;
use util::config::ReadableDuration;

const NEVER: ReadableDuration = ReadableDuration::secs(3600);

fn end_sizes(events: &[Event]) -> Vec<usize> {
    events
        .iter()
        .filter_map(|e| if let Event::End { ids } = e { Some(ids.len()) } else { None })
        .collect()
}

#[test]
fn rounds_hold_at_most_max_batch_size_fsms() {
    let mut h = Harness::new(&config(1, 4, NEVER));
    for id in 0..10 {
        register(&h.router, id, &h.log);
        h.router.send(id, Msg::Work(id)).unwrap();
    }
    h.spawn(16);
    h.log.wait_for("three rounds", |ev| end_sizes(ev).len() >= 3);
    let events = h.log.snapshot();
    assert_eq!(events[0], Event::Pause, "an idle poller pauses before blocking");
    // Round 1 blocks for one FSM then tops up to 4; all are drained and released each round.
    assert_eq!(end_sizes(&events), vec![4, 4, 2]);
    for id in 0..10 {
        assert_eq!(handled_of(&events, id), vec![Msg::Work(id)]);
    }
    for e in &events {
        if let Event::Begin { thread, .. } = e {
            assert_eq!(thread, "test-0");
        }
    }
}

#[test]
fn skip_end_fsms_reach_light_end_but_not_end() {
    let mut h = Harness::new(&config(1, 8, NEVER));
    for id in 0..6 {
        if id % 2 == 0 {
            register_skip_end(&h.router, id, &h.log);
        } else {
            register(&h.router, id, &h.log);
        }
        h.router.send(id, Msg::Work(id)).unwrap();
    }
    h.spawn(16);
    h.log.wait_for("one round", |ev| !end_sizes(ev).is_empty());
    let events = h.log.snapshot();
    let light: BTreeSet<u64> = events
        .iter()
        .find_map(|e| {
            if let Event::LightEnd { ids } = e {
                Some(ids.iter().copied().collect())
            } else {
                None
            }
        })
        .unwrap();
    let end: BTreeSet<u64> = events
        .iter()
        .find_map(|e| {
            if let Event::End { ids } = e {
                Some(ids.iter().copied().collect())
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(light, (0..6).collect());
    assert_eq!(end, BTreeSet::from([1, 3, 5]));
}

#[test]
fn idle_fsm_is_woken_by_every_new_message() {
    let mut h = Harness::new(&config(2, 8, NEVER));
    for id in 0..4 {
        register(&h.router, id, &h.log);
    }
    h.spawn(16);
    // Each message arrives after the FSM was drained and released, so each one must schedule
    // it again.
    for round in 0..200u64 {
        for id in 0..4 {
            h.router.send(id, Msg::Work(round)).unwrap();
        }
        for id in 0..4 {
            h.wait_handled(id, round as usize + 1);
        }
    }
    for id in 0..4 {
        assert_eq!(h.log.handled(id), (0..200).map(Msg::Work).collect::<Vec<_>>());
    }
}

#[test]
fn concurrent_senders_lose_no_wakeups() {
    const SENDERS: u64 = 4;
    const PER_SENDER: u64 = 2000;
    const FSMS: u64 = 8;
    let mut h = Harness::new(&config(2, 4, NEVER));
    for id in 0..FSMS {
        register(&h.router, id, &h.log);
    }
    // One message per call: FSMs keep going idle and being woken while senders race.
    h.spawn(1);
    let threads: Vec<_> = (0..SENDERS)
        .map(|t| {
            let router = h.router.clone();
            std::thread::spawn(move || {
                for i in 0..PER_SENDER {
                    router.send(i % FSMS, Msg::Work(t * 1_000_000 + i)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let total = (SENDERS * PER_SENDER) as usize;
    h.log.wait_for("every message handled", |ev| count_handled(ev) == total);
    for id in 0..FSMS {
        let seqs: Vec<u64> = h
            .log
            .handled(id)
            .into_iter()
            .map(|m| if let Msg::Work(s) = m { s } else { panic!("unexpected {m:?}") })
            .collect();
        for t in 0..SENDERS {
            let mine: Vec<u64> = seqs.iter().copied().filter(|s| s / 1_000_000 == t).collect();
            let expected: Vec<u64> =
                (0..PER_SENDER).filter(|i| i % FSMS == id).map(|i| t * 1_000_000 + i).collect();
            assert_eq!(mine, expected, "fsm {id}, sender {t}: each message once, in order");
        }
    }
}

#[test]
fn control_fsm_handles_its_messages_and_can_stop() {
    let mut h = Harness::new(&config(2, 8, NEVER));
    register(&h.router, 1, &h.log);
    h.spawn(16);
    for i in 0..50 {
        h.router.send_control(Msg::Work(i)).unwrap();
        h.router.send(1, Msg::Work(i)).unwrap();
    }
    h.log.wait_for("50 control messages", |ev| {
        ev.iter().filter(|e| matches!(e, Event::Control { .. })).count() == 50
    });
    let control: Vec<Msg> = h
        .log
        .snapshot()
        .into_iter()
        .filter_map(|e| if let Event::Control { msg } = e { Some(msg) } else { None })
        .collect();
    assert_eq!(control, (0..50).map(Msg::Work).collect::<Vec<_>>());
    h.wait_handled(1, 50);

    h.router.send_control(Msg::Stop).unwrap();
    h.log.wait_for("control dropped", |ev| ev.contains(&Event::Dropped { id: CONTROL_ID }));
    assert_eq!(h.router.send_control(Msg::Work(0)), Err(TrySendError::Disconnected(Msg::Work(0))));
    // Normal FSMs are unaffected.
    h.router.send(1, Msg::Work(50)).unwrap();
    h.wait_handled(1, 51);
}

/// Four permanently busy FSMs and ten FSMs with one message each, one poller, batches of 1.
/// Returns the event log once every hot FSM has finished.
fn run_hot_and_cold(reschedule: ReadableDuration) -> Vec<Event> {
    const HOT: std::ops::Range<u64> = 100..104;
    const HOT_LEN: u64 = 200;
    let mut h = Harness::new(&config(1, 1, reschedule));
    for id in HOT {
        register(&h.router, id, &h.log);
        h.router.send(id, Msg::Hot(HOT_LEN)).unwrap();
    }
    for id in 0..10 {
        register(&h.router, id, &h.log);
        h.router.send(id, Msg::Work(id)).unwrap();
    }
    h.spawn(1);
    for id in HOT {
        h.wait_handled(id, HOT_LEN as usize + 1);
    }
    let events = h.log.snapshot();
    for id in HOT {
        assert_eq!(handled_of(&events, id), (0..=HOT_LEN).rev().map(Msg::Hot).collect::<Vec<_>>());
    }
    // No starvation: every cold FSM was handled while each hot one had handled at most one
    // message per round so far (one FSM joins per round, so 14 rounds suffice).
    let last_cold = events
        .iter()
        .rposition(|e| matches!(e, Event::Handled { id, .. } if *id < 10))
        .expect("cold FSMs were handled");
    let before = handled_counts(&events[..last_cold]);
    for id in HOT {
        let n = before.get(&id).copied().unwrap_or(0);
        assert!(n <= 14, "hot fsm {id} handled {n} messages before the last cold one");
    }
    events
}

#[test]
fn hot_fsms_do_not_starve_others_and_rescheduling_bounds_the_batch() {
    // Every busy FSM is "hot" at once: every second one goes back to the queue each round,
    // so a round never holds more than max_batch_size + 1 FSMs.
    let events = run_hot_and_cold(ReadableDuration::millis(0));
    assert!(end_sizes(&events).iter().all(|&n| n <= 2), "{:?}", end_sizes(&events));
    // Without rescheduling the hot FSMs accumulate in the one poller's batch.
    let events = run_hot_and_cold(NEVER);
    assert_eq!(end_sizes(&events).iter().max(), Some(&5));
}

#[test]
fn fsms_register_and_close_at_runtime() {
    let mut h = Harness::new(&config(2, 8, NEVER));
    h.spawn(16);
    register(&h.router, 1, &h.log);
    assert_eq!(h.router.alive_count(), 1);
    h.router.send(1, Msg::Work(1)).unwrap();
    h.wait_handled(1, 1);

    let stale = h.router.mailbox(1).unwrap();
    assert!(h.router.close(1));
    h.log.wait_for("fsm 1 dropped", |ev| ev.contains(&Event::Dropped { id: 1 }));
    assert_eq!(h.router.alive_count(), 0);
    assert!(matches!(h.router.send(1, Msg::Work(2)), Err(SendError::NotFound { addr: 1, .. })));
    assert_eq!(stale.try_send(Msg::Work(3)), Err(TrySendError::Disconnected(Msg::Work(3))));

    // A new FSM at the same address is a new instance.
    register(&h.router, 1, &h.log);
    h.router.send(1, Msg::Work(4)).unwrap();
    h.wait_handled(1, 2);
    assert_eq!(h.log.handled(1), vec![Msg::Work(1), Msg::Work(4)]);

    // An FSM that stops itself is dropped by its poller; its stale entry answers
    // Disconnected once, then the address is unknown.
    register(&h.router, 2, &h.log);
    h.router.send(2, Msg::Stop).unwrap();
    h.log.wait_for("fsm 2 dropped", |ev| ev.contains(&Event::Dropped { id: 2 }));
    assert!(matches!(h.router.send(2, Msg::Work(0)), Err(SendError::Disconnected { addr: 2, .. })));
    assert!(matches!(h.router.send(2, Msg::Work(0)), Err(SendError::NotFound { addr: 2, .. })));
    assert_eq!(h.router.alive_count(), 1);

    // Closing a busy FSM (owned by a poller) drops it at the end of that poller's round.
    register(&h.router, 3, &h.log);
    h.router.send(3, Msg::Hot(u64::MAX)).unwrap();
    h.wait_handled(3, 10);
    assert!(h.router.close(3));
    h.log.wait_for("fsm 3 dropped", |ev| ev.contains(&Event::Dropped { id: 3 }));
    assert_eq!(h.log.dropped().iter().filter(|&&id| id == 3).count(), 1);
}

#[test]
fn shutdown_drops_every_fsm_and_refuses_later_work() {
    let mut h = Harness::new(&config(2, 8, NEVER));
    for id in 0..100 {
        register(&h.router, id, &h.log);
    }
    h.spawn(4);
    for id in 0..50 {
        h.router.send(id, Msg::Work(id)).unwrap();
    }
    // Five FSMs stay busy so that pollers own FSMs (and the queue holds some) at shutdown.
    for id in 95..100 {
        h.router.send(id, Msg::Hot(u64::MAX)).unwrap();
    }
    for id in 95..100 {
        h.wait_handled(id, 5);
    }
    h.system.shutdown().unwrap();

    // No waiting: shutdown returns only after every FSM is gone.
    let mut dropped = h.log.dropped();
    dropped.sort_unstable();
    let mut expected: Vec<u64> = (0..100).collect();
    expected.push(CONTROL_ID);
    assert_eq!(dropped, expected, "each FSM dropped exactly once");

    assert!(matches!(h.router.send(7, Msg::Work(0)), Err(SendError::Disconnected { addr: 7, .. })));
    assert!(matches!(h.router.send(1000, Msg::Work(0)), Err(SendError::Disconnected { .. })));
    assert_eq!(h.router.send_control(Msg::Work(0)), Err(TrySendError::Disconnected(Msg::Work(0))));
    register(&h.router, 200, &h.log);
    assert!(h.log.dropped().contains(&200), "registration after shutdown drops the FSM");
    assert_eq!(h.router.alive_count(), 0);
    h.system.shutdown().unwrap();
}

#[test]
fn shutdown_before_spawn_drops_queued_fsms() {
    let mut h = Harness::new(&config(2, 8, NEVER));
    for id in 0..10 {
        register(&h.router, id, &h.log);
        h.router.send(id, Msg::Work(id)).unwrap();
    }
    h.router.send_control(Msg::Work(0)).unwrap();
    h.system.shutdown().unwrap();
    assert_eq!(h.log.dropped().len(), 11);
    assert_eq!(count_handled(&h.log.snapshot()), 0);
}

#[test]
fn dropping_the_system_shuts_it_down() {
    let mut h = Harness::new(&config(1, 8, NEVER));
    register(&h.router, 1, &h.log);
    h.spawn(1);
    h.router.send(1, Msg::Hot(u64::MAX)).unwrap();
    h.wait_handled(1, 3);
    let Harness { router, system, log } = h;
    drop(system);
    assert_eq!(log.dropped().len(), 2);
    assert!(router.is_shut_down());
}
