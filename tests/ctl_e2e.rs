//! `regionstore-ctl` against a real cluster: data commands take the users' path, and the
//! store/region/cluster views agree with what the cluster is.

mod common;

use std::time::Duration;

use common::{ctl, wait_for, TestCluster};
use serde_json::Value;

fn ctl_ok(cluster: &TestCluster, args: &[&str]) -> String {
    let (ok, out, err) = ctl(&cluster.pd_addr, args);
    assert!(ok, "ctl {args:?} failed: {err}\n{}", cluster.logs());
    out
}

fn ctl_json(cluster: &TestCluster, args: &[&str]) -> Value {
    let out = ctl_ok(cluster, &[&["--json"], args].concat());
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("ctl {args:?} printed bad JSON ({e}): {out}"))
}

#[test]
fn ctl_reads_writes_and_describes_the_cluster() {
    let cluster = TestCluster::start(3);
    // The first write waits for the cluster to bootstrap and elect (the client retries).
    wait_for("the cluster to accept writes", Duration::from_secs(60), || {
        ctl(&cluster.pd_addr, &["put", "hello", "world"]).0.then_some(())
    });
    assert_eq!(ctl_ok(&cluster, &["get", "hello"]).trim(), "world");
    for k in ["a1", "a2", "a3", "b1"] {
        assert_eq!(ctl_ok(&cluster, &["put", k, &format!("v-{k}")]).trim(), "OK");
    }

    let scan = ctl_json(&cluster, &["scan", "--start", "a", "--end", "b"]);
    let keys: Vec<&str> =
        scan.as_array().unwrap().iter().map(|p| p["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["a1", "a2", "a3"]);
    assert_eq!(scan[1]["value"], "v-a2");
    let limited = ctl_json(&cluster, &["scan", "--start", "a", "--limit", "2"]);
    assert_eq!(limited.as_array().unwrap().len(), 2);

    assert_eq!(ctl_ok(&cluster, &["delete", "a2"]).trim(), "OK");
    let got = ctl_json(&cluster, &["get", "a2"]);
    assert_eq!(got["found"], false);
    let (ok, _, err) = ctl(&cluster.pd_addr, &["get", "a2"]);
    assert!(!ok && err.contains("not found"), "a missing key is an error for humans: {err}");

    let stores = ctl_json(&cluster, &["store", "list"]);
    let addrs: Vec<&str> =
        stores.as_array().unwrap().iter().map(|s| s["address"].as_str().unwrap()).collect();
    for s in &cluster.stores {
        assert!(addrs.contains(&s.addr.as_str()), "store {} missing from {addrs:?}", s.addr);
    }

    // The region view follows heartbeats: wait until PD knows the leader.
    wait_for("PD to learn the region's leader", Duration::from_secs(30), || {
        let regions = ctl_json(&cluster, &["region", "list"]);
        regions.as_array().is_some_and(|r| r.len() == 1 && !r[0]["leader"].is_null()).then_some(())
    });
    let regions = ctl_json(&cluster, &["region", "list"]);
    let region = &regions[0];
    assert_eq!(region["peers"].as_array().unwrap().len(), 3);
    assert_eq!(region["start_key"], "");
    assert_eq!(region["end_key"], "");
    let shown = ctl_json(&cluster, &["region", "show", "--key", "hello"]);
    assert_eq!(shown["id"], region["id"]);
    let table = ctl_ok(&cluster, &["region", "list"]);
    assert!(table.contains("LEADER") && table.contains("SIZE"), "{table}");

    let status = ctl_json(&cluster, &["cluster", "status"]);
    assert_eq!(status["bootstrapped"], true);
    assert_eq!(status["stores"], 3);
    assert_eq!(status["regions"], 1);
}

#[test]
fn ctl_reports_an_unreachable_pd_clearly() {
    let port = common::free_port();
    let (ok, _, err) = ctl(&format!("127.0.0.1:{port}"), &["store", "list"]);
    assert!(!ok);
    assert!(err.contains("cannot reach PD"), "{err}");
}

#[test]
fn ctl_splits_regions_and_refuses_bad_keys() {
    let cluster = TestCluster::start(3);
    wait_for("the cluster to accept writes", Duration::from_secs(60), || {
        ctl(&cluster.pd_addr, &["put", "a", "1"]).0.then_some(())
    });
    for k in ["c", "m", "x"] {
        ctl_ok(&cluster, &["put", k, k]);
    }
    let regions = ctl_json(&cluster, &["region", "split", "--key", "m"]);
    let bounds: Vec<(&str, &str)> = regions
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["start_key"].as_str().unwrap(), r["end_key"].as_str().unwrap()))
        .collect();
    assert_eq!(bounds, [("", "m"), ("m", "")]);
    assert_eq!(regions[0]["version"], 2);
    let left_id = regions[0]["id"].as_u64().unwrap();

    // Several keys at once, naming the region.
    let regions = ctl_json(
        &cluster,
        &["region", "split", "--region", &left_id.to_string(), "--key", "d", "--key", "g"],
    );
    assert_eq!(regions.as_array().unwrap().len(), 3);

    // Bad keys: a clear error, nothing split.
    for (args, expect) in [
        (vec!["--key", "t", "--key", "p"], "sorted"),
        (vec!["--key", "p", "--key", "p"], "distinct"),
        (vec!["--key", "m"], "start of region"),
        (vec!["--key", "b", "--key", "z"], "span regions"),
        (vec!["--region", &left_id.to_string(), "--key", "z"], "not in region"),
    ] {
        let (ok, _, err) = ctl(&cluster.pd_addr, &[&["region", "split"], &args[..]].concat());
        assert!(!ok, "split {args:?} succeeded");
        assert!(err.contains(expect), "split {args:?}: {err}");
    }

    // PD routes by the new layout (reported at the split, then by heartbeats) and the data
    // is all there.
    wait_for("PD to know every part with a leader", Duration::from_secs(30), || {
        let regions = ctl_json(&cluster, &["region", "list"]);
        let r = regions.as_array()?;
        (r.len() == 4 && r.iter().all(|r| !r["leader"].is_null())).then_some(())
    });
    for k in ["a", "c", "m", "x"] {
        let got = ctl_json(&cluster, &["get", k]);
        assert_eq!(got["found"], true, "{k}");
    }
    ctl_ok(&cluster, &["put", "e", "after-split"]);
    assert_eq!(ctl_ok(&cluster, &["get", "e"]).trim(), "after-split");
    let shown = ctl_json(&cluster, &["region", "show", "--key", "e"]);
    assert_eq!((shown["start_key"].as_str(), shown["end_key"].as_str()), (Some("d"), Some("g")));
}

/// `region merge` end to end: the store merges through PD's operator, PD's routing follows,
/// the data of both sides is read back through the official path, and refusals are clear.
#[test]
fn ctl_merges_regions_and_refuses_what_cannot_merge() {
    let cluster = TestCluster::start(3);
    wait_for("the cluster to accept writes", Duration::from_secs(60), || {
        ctl(&cluster.pd_addr, &["put", "a", "1"]).0.then_some(())
    });
    for k in ["c", "m", "x"] {
        ctl_ok(&cluster, &["put", k, k]);
    }
    let regions = ctl_json(&cluster, &["region", "split", "--key", "g", "--key", "m"]);
    let ids: Vec<u64> =
        regions.as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 3);
    wait_for("PD to know every part with a leader", Duration::from_secs(30), || {
        let r = ctl_json(&cluster, &["region", "list"]);
        let r = r.as_array()?;
        (r.len() == 3 && r.iter().all(|r| !r["leader"].is_null())).then_some(())
    });
    // Not adjacent: [, g) and [m, ).
    let (ok, _, err) = ctl(
        &cluster.pd_addr,
        &["region", "merge", "--source", &ids[0].to_string(), "--target", &ids[2].to_string()],
    );
    assert!(!ok && err.contains("adjacent"), "{err}");
    // By key: c's region [, g) into its right neighbour [g, m).
    let out = ctl_ok(&cluster, &["region", "merge", "--key", "c"]);
    assert!(out.contains("merged"), "{out}");
    wait_for("PD to route by the merged layout", Duration::from_secs(30), || {
        let r = ctl_json(&cluster, &["region", "list"]);
        let r = r.as_array()?;
        // `region list` shows keys in hex: "6d" is "m".
        (r.len() == 2 && r[0]["end_key"].as_str() == Some("6d")).then_some(())
    });
    // By ids: the rest into one region.
    let left = ctl_json(&cluster, &["region", "show", "--key", "a"]);
    let right = ctl_json(&cluster, &["region", "show", "--key", "x"]);
    let (l, r) = (left["id"].as_u64().unwrap(), right["id"].as_u64().unwrap());
    ctl_ok(&cluster, &["region", "merge", "--source", &r.to_string(), "--target", &l.to_string()]);
    wait_for("one region", Duration::from_secs(30), || {
        let r = ctl_json(&cluster, &["region", "list"]);
        (r.as_array()?.len() == 1).then_some(())
    });
    for k in ["a", "c", "m", "x"] {
        let got = ctl_json(&cluster, &["get", k]);
        assert_eq!(got["found"], true, "{k}");
    }
    ctl_ok(&cluster, &["put", "z", "after-merge"]);
    assert_eq!(ctl_ok(&cluster, &["get", "z"]).trim(), "after-merge");
}
