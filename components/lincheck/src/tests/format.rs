//! The one-line event format and the report's text.

use super::*;

fn at(e: Event, invoke_ns: u64, complete_ns: u64) -> Event {
    Event { invoke_ns, complete_ns, ..e }
}

#[test]
fn event_prints_on_one_line() {
    let mut e = at(on_key(put(3, 0, 0, "v17"), "k1"), 1_204_000_000, 1_210_000_000);
    assert_eq!(e.to_string(), "c3 put k1=v17 [1.204000s..1.210000s] ok");
    e.outcome = Outcome::Unknown;
    assert_eq!(e.to_string(), "c3 put k1=v17 [1.204000s..1.210000s] unknown");
    e.outcome = Outcome::Fail;
    assert_eq!(e.to_string(), "c3 put k1=v17 [1.204000s..1.210000s] fail");
    assert_eq!(
        get(1, 1_500, 2_500, None).to_string(),
        "c1 get k [0.000001s..0.000002s] ok (absent)"
    );
    assert_eq!(delete(2, 0, 1).to_string(), "c2 delete k [0.000000s..0.000000s] ok");
    assert_eq!(
        cas(4, 0, 1, None, "b", Some("x"), false).to_string(),
        "c4 cas k (absent)->b [0.000000s..0.000000s] ok prev=x not-swapped"
    );
    assert_eq!(
        cas(4, 0, 1, Some("a"), "b", Some("a"), true).to_string(),
        "c4 cas k a->b [0.000000s..0.000000s] ok prev=a swapped"
    );
}

#[test]
fn values_print_as_text_when_printable_else_hex() {
    let mut e = put(1, 0, 1, "x");
    e.op = Op::Put(vec![0x00, 0xff, b'a']);
    assert!(e.to_string().contains("k=0x00ff61 "), "{e}");
    e.op = Op::Put(b"two words".to_vec());
    assert!(e.to_string().contains("k=0x74776f20776f726473 "), "{e}");
    e.op = Op::Put(Vec::new());
    assert!(e.to_string().contains("k=\"\" "), "{e}");
    e.op = Op::Put("ключ".as_bytes().to_vec());
    assert!(e.to_string().contains("k=ключ "), "{e}");
    e.op = Op::Put(vec![b'a'; 100]);
    let long = format!("k={}...(100 bytes) ", "a".repeat(48));
    assert!(e.to_string().contains(&long), "{e}");
}

#[test]
fn report_prints_a_summary_and_each_bad_key_with_its_window() {
    let history = [
        on_key(put(1, 0, 1, "a"), "k1"),
        on_key(put(2, 2, 3, "b"), "k1"),
        on_key(get(3, 4, 5, Some("a")), "k1"),
        on_key(put(1, 0, 1, "a"), "k2"),
    ];
    let text = check_default(&history).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        vec![
            "linearizability: 2 keys, 4 ops (0 unknown): 1 linearizable, 1 not linearizable, 0 undecided",
            "key k1: NOT LINEARIZABLE (3 ops, 0 unknown, 2 states)",
            "  cannot place: c3 get k1 [0.000000s..0.000000s] ok a",
            "  value at the window's start: b",
            "  window:",
            "    c3 get k1 [0.000000s..0.000000s] ok a   <-- cannot be placed",
        ]
    );
}
