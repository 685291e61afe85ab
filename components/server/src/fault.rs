//! Network faults at the store's edges, for the nemesis harness (`regionstore-chaos`): raft
//! traffic to chosen stores dropped (partitions), client requests refused before they run, or
//! their answers lost after they ran (a client cut off mid-request).
//!
//! Each fault is a failpoint, switched on and off at run time through the status port
//! (`PUT /fail/<name>`, see `status`), or at start with `FAILPOINTS`. Builds without the `fail`
//! crate's `failpoints` feature (every release build) compile the checks away: they answer
//! "no fault" and cost nothing.
//!
//! | failpoint | action | effect |
//! |---|---|---|
//! | [`DROP_RAFT_TO`] | `return(2,3)` / `return` | raft messages and snapshots to stores 2 and 3 (to every store) are dropped, as a network would |
//! | [`REFUSE_KV`] | `return` | every raw KV request is answered `UNAVAILABLE` before it runs |
//! | [`LOSE_KV_RESPONSE`] | `return` | every raw KV request runs, then its answer is replaced by `UNAVAILABLE` |
//!
//! Only `return` (and `off`) are accepted for these names through the status port
//! ([`is_allowed`]): `pause`, `sleep` or `delay` would block the gRPC runtime's workers or the
//! raftstore thread that evaluates them, and with them the status port that could undo it.
//!
//! A partition between stores A and B is `DROP_RAFT_TO` on both sides; a one-way cut (a bridge,
//! an asymmetric link) on one side only. Dropped traffic is counted
//! (`RaftClient::fault_dropped_batches`).

/// Raft traffic (batches and snapshots) to the listed stores is dropped.
pub const DROP_RAFT_TO: &str = "server::raft_client::drop_to_stores";
/// KV requests are refused before they run.
pub const REFUSE_KV: &str = "server::service::refuse_kv";
/// KV requests run, then their answers are lost.
pub const LOSE_KV_RESPONSE: &str = "server::service::lose_kv_response";

/// The failpoint's argument when it is on: `Some(arg)`, `Some("")` for a bare `return`.
fn armed(name: &str) -> Option<String> {
    if !cfg!(feature = "failpoints") {
        return None;
    }
    fail::fail_point!(name, |arg: Option<String>| Some(arg.unwrap_or_default()));
    None
}

/// Whether raft traffic to `store_id` is to be dropped now.
pub fn raft_dropped_to(store_id: u64) -> bool {
    armed(DROP_RAFT_TO).is_some_and(|stores| names_store(&stores, store_id))
}

/// Whether KV requests are refused now.
pub fn kv_refused() -> bool {
    armed(REFUSE_KV).is_some()
}

/// Whether KV answers are lost now.
pub fn kv_response_lost() -> bool {
    armed(LOSE_KV_RESPONSE).is_some()
}

/// Whether `actions` may be set on failpoint `name` at run time: for this module's
/// failpoints, only `return` and `off` tasks (with optional `p%` and `n*` prefixes); any
/// action for other failpoints (crash windows are meant to pause).
pub fn is_allowed(name: &str, actions: &str) -> bool {
    if ![DROP_RAFT_TO, REFUSE_KV, LOSE_KV_RESPONSE].contains(&name) {
        return true;
    }
    actions.split("->").all(|action| {
        let a = action.trim();
        let a = a.split_once('%').map_or(a, |(_, rest)| rest);
        let a = a.split_once('*').map_or(a, |(_, rest)| rest);
        let task = a.split('(').next().unwrap_or("").trim();
        task == "return" || task == "off"
    })
}

/// Whether a `DROP_RAFT_TO` argument names `store_id`: an empty list names every store; a
/// word that is not a number names none (a typo must not cut the whole store off).
fn names_store(list: &str, store_id: u64) -> bool {
    let list = list.trim();
    list.is_empty() || list.split(',').any(|s| s.trim().parse::<u64>() == Ok(store_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_lists_name_stores() {
        assert!(names_store("", 5));
        assert!(names_store("2, 5", 5));
        assert!(!names_store("2,3", 5));
        assert!(!names_store("x", 5));
    }

    #[test]
    fn only_return_and_off_for_network_faults() {
        assert!(is_allowed(DROP_RAFT_TO, "return(2,3)"));
        assert!(is_allowed(REFUSE_KV, "50%return"));
        assert!(is_allowed(LOSE_KV_RESPONSE, "10%3*return->off"));
        assert!(!is_allowed(REFUSE_KV, "pause"));
        assert!(!is_allowed(DROP_RAFT_TO, "sleep(1000)"));
        assert!(!is_allowed(LOSE_KV_RESPONSE, "return->delay(10)"));
        assert!(is_allowed("raftstore::apply::snapshot_before_normal", "pause"));
    }
}
