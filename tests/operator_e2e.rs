//! PD operators driven by `regionstore-ctl` against a real cluster (PD and stores as processes):
//! a store dies for good, a fourth store joins, the dead store's replicas move to it with
//! `operator remove-peer` / `add-peer` / `transfer-peer`, leadership moves with
//! `transfer-leader`, and then another original store dies: every key written before is still
//! read back through the official `tikv-client`. Bad operator requests get clear refusals.

mod common;

use std::time::Duration;

use common::{wait_for, TestCluster};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

/// Runs the ctl against the cluster's PD; returns (success, stdout, stderr).
fn ctl(cluster: &TestCluster, args: &[&str]) -> (bool, String, String) {
    common::ctl(&cluster.pd_addr, args)
}

fn ctl_json(cluster: &TestCluster, args: &[&str]) -> Value {
    let (ok, out, err) = ctl(cluster, &[&["--json"], args].concat());
    assert!(ok, "ctl {args:?} failed: {err}\n{}", cluster.logs());
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ctl {args:?}: bad JSON ({e}): {out}"))
}

/// Runs an operator command that must fail; returns its error output.
fn ctl_refused(cluster: &TestCluster, args: &[&str]) -> String {
    let (ok, out, err) = ctl(cluster, args);
    assert!(!ok, "ctl {args:?} should have been refused, printed: {out}");
    err
}

/// Runs an operator to its end (`--wait`); it must succeed.
fn run_operator(cluster: &TestCluster, args: &[&str]) {
    let op = ctl_json(cluster, &[&["operator"], args, &["--wait", "--timeout", "120"]].concat());
    assert_eq!(op["status"], "success", "operator {args:?}: {op}");
}

/// Store ids by index in `cluster.stores` (matched by address).
fn store_id(cluster: &TestCluster, index: usize) -> u64 {
    let stores = ctl_json(cluster, &["store", "list"]);
    stores
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["address"] == cluster.stores[index].addr.as_str())
        .and_then(|s| s["id"].as_u64())
        .unwrap_or_else(|| panic!("store {index} not registered: {stores}"))
}

fn regions(cluster: &TestCluster) -> Vec<Value> {
    ctl_json(cluster, &["region", "list"]).as_array().unwrap().clone()
}

fn has_peer_on(region: &Value, store: u64) -> bool {
    region["peers"].as_array().unwrap().iter().any(|p| p["store_id"] == store)
}

fn key(i: u32) -> Vec<u8> {
    format!("k{i:03}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    format!("value-{i}").into_bytes()
}

#[test]
fn replicas_of_a_dead_store_move_to_a_new_store_with_ctl_operators() {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut cluster = TestCluster::start(3);
    let client = wait_for("the official client to write to the cluster", T, || {
        rt.block_on(async {
            let c = tikv_client::RawClient::new(vec![cluster.pd_addr.clone()]).await.ok()?;
            c.put(b"probe".to_vec(), b"ready".to_vec()).await.ok().map(|()| c)
        })
    });
    // Three regions, with data in each.
    let split = ctl_json(&cluster, &["region", "split", "--key", "k100", "--key", "k200"]);
    assert_eq!(split.as_array().unwrap().len(), 3, "{split}");
    rt.block_on(async {
        for i in 0..300 {
            client.put(key(i), value(i)).await.unwrap_or_else(|e| panic!("put {i}: {e}"));
        }
    });

    let dead = store_id(&cluster, 0);
    cluster.stores[0].proc.kill9();
    let new_index = cluster.add_store();
    let new = wait_for("the new store to register", T, || {
        let (ok, out, _) = ctl(&cluster, &["--json", "store", "list"]);
        let stores: Value = serde_json::from_str(&out).ok().filter(|_| ok)?;
        let addr = cluster.stores[new_index].addr.as_str();
        stores.as_array()?.iter().find(|s| s["address"] == addr)?["id"].as_u64()
    });
    let ids: Vec<u64> = regions(&cluster).iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 3);

    // Refusals, each naming what is wrong.
    let err = ctl_refused(&cluster, &["operator", "add-peer", &ids[0].to_string(), "999"]);
    assert!(err.contains("max-replicas"), "{err}");
    let err = ctl_refused(&cluster, &["operator", "add-peer", "999999", &new.to_string()]);
    assert!(err.contains("region 999999 not found"), "{err}");
    let err = ctl_refused(&cluster, &["operator", "remove-peer", &ids[0].to_string(), "999"]);
    assert!(err.contains("has no peer on store 999"), "{err}");
    let err = ctl_refused(&cluster, &["operator", "cancel", &ids[0].to_string()]);
    assert!(err.contains("no running operator"), "{err}");
    let err = ctl_refused(
        &cluster,
        &["operator", "transfer-peer", &ids[0].to_string(), &dead.to_string(), "999"],
    );
    assert!(err.contains("store 999 not found"), "{err}");

    // The first region: remove the dead peer, then add one on the new store (it first has to
    // send its heartbeat, then it is accepted as a target).
    let first = ids[0].to_string();
    run_operator(&cluster, &["remove-peer", &first, &dead.to_string()]);
    wait_for("the new store to heartbeat PD", T, || {
        let (ok, out, err) =
            ctl(&cluster, &["--json", "operator", "add-peer", &first, &new.to_string()]);
        if ok {
            return Some(out);
        }
        assert!(err.contains("no heartbeat"), "add-peer refused: {err}");
        None
    });
    wait_for("add-peer to finish", Duration::from_secs(120), || {
        let op = ctl_json(&cluster, &["operator", "show", &first]);
        match op["status"].as_str() {
            Some("running") => None,
            Some("success") => Some(()),
            _ => panic!("add-peer ended: {op}\n{}", cluster.logs()),
        }
    });
    // The others: move the peer in one operator each.
    for id in &ids[1..] {
        run_operator(
            &cluster,
            &["transfer-peer", &id.to_string(), &dead.to_string(), &new.to_string()],
        );
    }
    // And one leadership onto the new store.
    run_operator(&cluster, &["transfer-leader", &ids[1].to_string(), &new.to_string()]);

    for r in regions(&cluster) {
        assert!(!has_peer_on(&r, dead), "region still on the dead store: {r}");
        assert!(has_peer_on(&r, new), "region not on the new store: {r}");
        assert_eq!(r["peers"].as_array().unwrap().len(), 3, "{r}");
    }
    let running = ctl_json(&cluster, &["operator", "list"]);
    assert_eq!(running.as_array().unwrap().len(), 0, "{running}");
    let finished = ctl_json(&cluster, &["operator", "list", "--finished"]);
    let successes =
        finished.as_array().unwrap().iter().filter(|op| op["status"] == "success").count();
    assert_eq!(successes, 5, "{finished}");

    // Another original store dies: the new store is now part of every quorum. tikv-client 0.4
    // connects to a store eagerly and, when that fails, surfaces the transport error without
    // forgetting the region's cached leader: a client whose cache points at the dead store
    // fails until it is replaced, as an application would replace it.
    cluster.stores[1].proc.kill9();
    let pd = cluster.pd_addr.clone();
    rt.block_on(async {
        let mut client = client;
        for i in 0..300 {
            let got = until_ok(&format!("get {i}"), &pd, &mut client, |c| {
                Box::pin(async move { c.get(key(i)).await })
            })
            .await;
            assert_eq!(got, Some(value(i)), "key {i}");
        }
        until_ok("the survivors take writes", &pd, &mut client, |c| {
            Box::pin(async move { c.put(key(300), value(300)).await })
        })
        .await;
    });
}

type Attempt<V> = std::pin::Pin<Box<dyn std::future::Future<Output = tikv_client::Result<V>>>>;

/// Runs `op` on the client until it succeeds, replacing the client after a failure; panics
/// with the last error after [`T`].
async fn until_ok<V>(
    what: &str,
    pd: &str,
    client: &mut tikv_client::RawClient,
    op: impl Fn(tikv_client::RawClient) -> Attempt<V>,
) -> V {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let e = match tokio::time::timeout_at(deadline, op(client.clone())).await {
            Ok(Ok(v)) => return v,
            Ok(Err(e)) => e.to_string(),
            Err(_) => panic!("{what}: timed out after {T:?}"),
        };
        assert!(tokio::time::Instant::now() < deadline, "{what}: {e}");
        eprintln!("{what}: {e}; retrying with a new client");
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(c) = tikv_client::RawClient::new(vec![pd.to_string()]).await {
            *client = c;
        }
    }
}
