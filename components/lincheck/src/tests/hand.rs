//! Hand-made histories, one behaviour each; times are nanoseconds.

use super::*;

#[test]
fn sequential_history_is_linearizable() {
    assert_linearizable(&[
        get(1, 0, 1, None),
        put(1, 2, 3, "a"),
        get(2, 4, 5, Some("a")),
        put(2, 6, 7, "b"),
        get(1, 8, 9, Some("b")),
        delete(1, 10, 11),
        get(2, 12, 13, None),
        cas(1, 14, 15, None, "c", None, true),
        cas(2, 16, 17, Some("a"), "d", Some("c"), false),
        get(1, 18, 19, Some("c")),
    ]);
}

#[test]
fn concurrent_writes_either_order() {
    let writes = [put(1, 0, 10, "a"), put(2, 1, 9, "b")];
    for last in ["a", "b"] {
        let mut h = writes.to_vec();
        h.push(get(3, 11, 12, Some(last)));
        assert_linearizable(&h);
    }
    let mut h = writes.to_vec();
    h.push(get(3, 11, 12, None));
    assert_not_linearizable(&h);
}

#[test]
fn read_concurrent_with_write_may_see_either() {
    assert_linearizable(&[
        put(1, 0, 1, "a"),
        put(1, 10, 20, "b"),
        get(2, 11, 12, Some("a")),
        get(3, 13, 14, Some("b")),
        get(2, 15, 16, Some("b")),
    ]);
    assert_linearizable(&[put(1, 0, 1, "a"), put(1, 10, 20, "b"), get(2, 11, 19, Some("b"))]);
}

#[test]
fn reads_do_not_go_back_while_a_write_is_in_flight() {
    // Once some read saw b, a later read (in real time) cannot see a again.
    assert_not_linearizable(&[
        put(1, 0, 1, "a"),
        put(1, 10, 20, "b"),
        get(2, 11, 12, Some("b")),
        get(3, 13, 14, Some("a")),
    ]);
}

#[test]
fn stale_read() {
    let (window, state_before, stuck) =
        assert_not_linearizable(&[put(1, 0, 1, "a"), put(2, 2, 3, "b"), get(3, 4, 5, Some("a"))]);
    assert!(stuck.starts_with("c3 get k"), "{stuck}");
    assert_eq!(state_before, "b");
    assert_eq!(window.len(), 1, "{window:?}");
}

#[test]
fn lost_write() {
    // b was acknowledged, yet the register carried on from a as if b never happened.
    assert_not_linearizable(&[
        put(1, 0, 1, "a"),
        put(2, 2, 3, "b"),
        cas(3, 4, 5, Some("a"), "c", Some("a"), true),
        get(1, 6, 7, Some("c")),
    ]);
}

#[test]
fn cas_applied_twice() {
    // The register goes back to a after a->b was seen: only explained by the put of a being
    // applied a second time.
    let (_, state_before, stuck) = assert_not_linearizable(&[
        put(1, 0, 1, "a"),
        cas(2, 2, 3, Some("a"), "b", Some("a"), true),
        get(3, 4, 5, Some("b")),
        get(3, 6, 7, Some("a")),
    ]);
    assert_eq!(state_before, "b");
    assert!(stuck.contains("ok a"), "{stuck}");
}

#[test]
fn cas_answered_not_swapped_with_its_own_value() {
    // A client retried an applied CAS: the retry sees the CAS's own value and reports "not
    // swapped". Nothing else writes b, so no order explains prev = b.
    let (_, _, stuck) = assert_not_linearizable(&[
        put(1, 0, 1, "a"),
        cas(1, 2, 10, Some("a"), "b", Some("b"), false),
        get(2, 11, 12, Some("b")),
    ]);
    assert!(stuck.contains("cas k a->b"), "{stuck}");
}

#[test]
fn unknown_write_may_have_happened() {
    assert_linearizable(&[put(1, 0, 1, "a"), unknown(put(2, 2, 3, "b")), get(3, 4, 5, Some("b"))]);
}

#[test]
fn unknown_write_may_not_have_happened() {
    // Removed before the search (nobody observes b).
    assert_linearizable(&[
        put(1, 0, 1, "a"),
        unknown(put(2, 2, 3, "b")),
        get(3, 4, 5, Some("a")),
        get(3, 10, 11, Some("a")),
    ]);
    // Kept for the search (a CAS expects b), and left unplaced.
    assert_linearizable(&[
        put(1, 0, 1, "a"),
        unknown(put(2, 2, 3, "b")),
        get(3, 4, 5, Some("a")),
        cas(3, 10, 11, Some("b"), "c", Some("a"), false),
    ]);
}

#[test]
fn unknown_write_may_land_after_the_client_gave_up() {
    assert_linearizable(&[
        put(1, 0, 1, "a"),
        unknown(put(2, 2, 3, "b")),
        get(3, 10, 11, Some("a")),
        get(3, 12, 13, Some("b")),
    ]);
}

#[test]
fn unknown_write_takes_effect_only_after_its_invoke() {
    assert_not_linearizable(&[
        put(1, 0, 1, "a"),
        get(3, 2, 3, Some("b")),
        unknown(put(2, 4, 5, "b")),
    ]);
}

#[test]
fn failed_write_did_not_happen() {
    assert_not_linearizable(&[
        put(1, 0, 1, "a"),
        failed(put(2, 2, 3, "b")),
        get(3, 4, 5, Some("b")),
    ]);
}

#[test]
fn unknown_and_failed_gets_are_ignored() {
    assert_linearizable(&[
        put(1, 0, 1, "a"),
        unknown(get(2, 2, 3, Some("zz"))),
        failed(get(3, 2, 3, Some("yy"))),
        get(1, 4, 5, Some("a")),
    ]);
}

#[test]
fn delete_then_read_absent() {
    assert_linearizable(&[put(1, 0, 1, "a"), delete(2, 2, 3), get(3, 4, 5, None)]);
    assert_not_linearizable(&[put(1, 0, 1, "a"), delete(2, 2, 3), get(3, 4, 5, Some("a"))]);
}

#[test]
fn cas_on_absent_key() {
    assert_linearizable(&[
        cas(1, 0, 1, Some("x"), "y", None, false),
        cas(1, 2, 3, None, "a", None, true),
        get(2, 4, 5, Some("a")),
    ]);
    // Absent is a value a CAS can expect; once it swapped, the key is no longer absent.
    assert_not_linearizable(&[cas(1, 0, 1, None, "a", None, true), get(2, 2, 3, None)]);
}

#[test]
fn unknown_cas_takes_effect_only_if_it_would_swap() {
    assert_linearizable(&[
        put(1, 0, 1, "a"),
        unknown(cas(2, 2, 3, Some("a"), "b", None, false)),
        get(3, 4, 5, Some("b")),
    ]);
    assert_not_linearizable(&[
        put(1, 0, 1, "c"),
        unknown(cas(2, 2, 3, Some("a"), "b", None, false)),
        get(3, 4, 5, Some("b")),
    ]);
}

#[test]
fn touching_ops_are_concurrent() {
    // The get is invoked at the instant the put of b completes: they may be in either order.
    assert_linearizable(&[put(1, 0, 1, "a"), put(2, 2, 5, "b"), get(3, 5, 6, Some("a"))]);
    assert_not_linearizable(&[put(1, 0, 1, "a"), put(2, 2, 5, "b"), get(3, 6, 7, Some("a"))]);
}

#[test]
fn initial_value_is_every_keys_value_before_the_history() {
    let h = [get(1, 0, 1, Some("init")), on_key(get(1, 0, 1, Some("init")), "other")];
    let opts = Options { initial: Some(val("init")), ..Options::default() };
    assert!(check(&h, &opts).is_linearizable());
    assert!(!check_default(&h).is_linearizable());
}

#[test]
fn keys_are_checked_independently() {
    let history = [
        on_key(put(1, 0, 1, "a"), "good"),
        on_key(put(1, 0, 1, "a"), "bad"),
        on_key(put(2, 2, 3, "b"), "bad"),
        on_key(get(3, 4, 5, Some("a")), "bad"),
        // The same op times on another key constrain nothing here.
        on_key(put(2, 2, 3, "b"), "good"),
        on_key(get(3, 4, 5, Some("b")), "good"),
    ];
    let report = check_default(&history);
    let bad: Vec<&[u8]> = report.anomalies().iter().map(|k| k.key.as_slice()).collect();
    assert_eq!(bad, vec![b"bad".as_slice()]);
    assert!(report.undecided().is_empty());
    assert_eq!(report.keys.len(), 2);
    assert!(!report.is_linearizable());
    let printed = report.to_string();
    assert!(printed.contains("key bad: NOT LINEARIZABLE"), "{printed}");
    assert!(!printed.contains("key good"), "{printed}");
}

#[test]
fn inconsistent_cas_answer_is_not_linearizable() {
    let (window, _, stuck) = assert_not_linearizable(&[
        put(1, 0, 1, "a"),
        cas(2, 2, 3, Some("a"), "b", Some("c"), true),
    ]);
    assert!(stuck.contains("prev differs from expect"), "{stuck}");
    assert_eq!(window.len(), 1);
    let (_, _, stuck) = assert_not_linearizable(&[
        put(1, 0, 1, "a"),
        cas(2, 2, 3, Some("a"), "b", Some("a"), false),
    ]);
    assert!(stuck.contains("prev equals expect"), "{stuck}");
}

#[test]
fn answer_of_the_wrong_kind_is_not_linearizable() {
    let (_, _, stuck) = assert_not_linearizable(&[event(1, Op::Get, 0, 1, Outcome::Ok(Ret::Put))]);
    assert!(stuck.contains("another kind"), "{stuck}");
}

/// Twelve concurrent puts and a read of a value none wrote: refuting it means trying the
/// puts' orders, far more than 100 states.
fn many_concurrent_puts_then_impossible_read() -> Vec<Event> {
    let mut h: Vec<Event> = (0..12).map(|i| put(i, i, 100, &format!("v{i}"))).collect();
    h.push(get(99, 200, 201, Some("never")));
    h
}

#[test]
fn search_budget_gives_undecided() {
    let h = many_concurrent_puts_then_impossible_read();
    let report = check(&h, &Options { max_states_per_key: 100, ..Options::default() });
    assert_eq!(single(&report).verdict, Verdict::Undecided);
    assert_eq!(single(&report).states, 100);
    assert!(!report.is_linearizable());
    assert_eq!(report.undecided().len(), 1);
    assert!(report.to_string().contains("UNDECIDED"), "{report}");
    // With the default budget the same history is refuted.
    assert!(verdict(&h).is_anomaly());
}

#[test]
fn window_shows_the_stuck_op() {
    let mut h = Vec::new();
    for i in 0..200u64 {
        h.push(put(1 + i % 3, 10 * i, 10 * i + 5, &format!("v{i}")));
    }
    h.push(put(7, 3000, 3005, "x"));
    h.push(get(8, 3002, 3003, Some("v199")));
    h.push(get(8, 3010, 3011, Some("x")));
    h.push(get(9, 3020, 3021, Some("v199")));
    let (window, state_before, stuck) = assert_not_linearizable(&h);
    assert_eq!(stuck, "c9 get k [0.000003s..0.000003s] ok v199");
    assert_eq!(state_before, "x");
    assert_eq!(window.len(), 1, "{window:#?}");
    assert!(window[0].starts_with(&stuck) && window[0].contains("cannot be placed"), "{window:#?}");
}

#[test]
fn window_starts_where_the_value_was_last_known() {
    // The put of b is concurrent with reads until the bad one: the window goes back to the
    // last point where only a was possible, and shows the writes in between.
    let h = [
        put(1, 0, 1, "a"),
        put(2, 10, 30, "b"),
        get(3, 11, 12, Some("b")),
        put(4, 13, 14, "c"),
        get(3, 15, 16, Some("b")),
    ];
    let (window, state_before, _) = assert_not_linearizable(&h);
    assert_eq!(state_before, "a");
    assert_eq!(window.len(), 4, "{window:#?}");
    assert!(window[3].contains("cannot be placed"), "{window:#?}");
}

#[test]
fn many_unknown_deletes_stay_tractable() {
    // Timed-out deletes are identical ops; the search places them in invoke order only, so
    // refuting the final read does not try their 2^40 subsets.
    let mut h = vec![put(1, 0, 1, "a")];
    for i in 0..40u64 {
        h.push(unknown(delete(2 + i, 2 + i, 3 + i)));
        h.push(put(1, 100 + 10 * i, 101 + 10 * i, &format!("v{i}")));
        h.push(get(1, 102 + 10 * i, 103 + 10 * i, Some(&format!("v{i}"))));
    }
    h.push(get(1, 1000, 1001, Some("a")));
    let report = check_default(&h);
    assert!(single(&report).verdict.is_anomaly(), "{report}");
    assert!(single(&report).states < 20_000, "{} states", single(&report).states);
}

#[test]
fn unobserved_unknown_writes_do_not_cost_states() {
    // 300 timed-out puts of values nobody reads are removed before the search.
    let mut h = vec![put(1, 0, 1, "a")];
    for i in 0..300u64 {
        h.push(unknown(put(2 + i, 2 + i, 3 + i, &format!("lost{i}"))));
    }
    for i in 0..100u64 {
        h.push(get(1, 1000 + 2 * i, 1001 + 2 * i, Some("a")));
    }
    let report = check_default(&h);
    assert!(report.is_linearizable(), "{report}");
    assert_eq!(single(&report).states, 101, "one state per acknowledged op");
    assert_eq!(single(&report).unknown_ops, 300);
    assert_eq!(single(&report).ops, 401);
}
