//! The network faults follow their failpoints. A binary of its own: failpoints are global to
//! the process, and these turn every KV request away.
#![cfg(feature = "failpoints")]

use server::fault::*;

#[test]
fn faults_follow_their_failpoints() {
    assert!(!raft_dropped_to(2) && !kv_refused() && !kv_response_lost());
    fail::cfg(DROP_RAFT_TO, "return(2)").unwrap();
    fail::cfg(REFUSE_KV, "return").unwrap();
    fail::cfg(LOSE_KV_RESPONSE, "return").unwrap();
    assert!(raft_dropped_to(2) && !raft_dropped_to(3));
    assert!(kv_refused() && kv_response_lost());
    fail::cfg(DROP_RAFT_TO, "return").unwrap();
    assert!(raft_dropped_to(3), "a bare return drops traffic to every store");
    for name in [DROP_RAFT_TO, REFUSE_KV, LOSE_KV_RESPONSE] {
        fail::remove(name);
    }
    assert!(!raft_dropped_to(2) && !kv_refused() && !kv_response_lost());
}
