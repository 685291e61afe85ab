//! The status port of real `regionstore-server` processes: `/metrics` in Prometheus' text format
//! and `/status` as JSON, found through the status address each store registered with PD.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{wait_for, Client, TestCluster};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// One `GET` over HTTP/1.1: (status code, body). Checks the framing: a status line, a
/// Content-Length that matches the body, and the server closing the connection after it.
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut c = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(c, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\n\r\n").unwrap();
    let mut raw = String::new();
    c.read_to_string(&mut raw).unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"));
    let (head, body) =
        raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end in {raw:?}"));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let code: u16 = status_line[9..12].parse().unwrap();
    let length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no Content-Length in {head}"));
    assert_eq!(length, body.len(), "Content-Length of http://{addr}{path}");
    (code, body.to_owned())
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn status_port_serves_metrics_and_status() {
    let cluster = TestCluster::start(3);
    let rt = runtime();
    // (store id, status address) of every store, from what the stores registered with PD.
    let stores: Vec<(u64, String)> = rt.block_on(async {
        let client = Client::connect(&cluster.pd_addr, Duration::from_secs(30)).await;
        for i in 0..20u32 {
            let k = format!("status-key{i:02}");
            client
                .put(k.as_bytes(), b"v")
                .await
                .unwrap_or_else(|e| panic!("put {k}: {e}\n{}", cluster.logs()));
        }
        assert_eq!(client.get(b"status-key00").await.unwrap(), Some(b"v".to_vec()));
        let info = client.pd.get_region(b"status-key00").await.unwrap().expect("region");
        let mut stores = Vec::new();
        for peer in &info.region.peers {
            let store = client.pd.get_store(peer.store_id).await.unwrap();
            assert!(
                !store.status_address.is_empty(),
                "store {} registered no status address",
                store.id
            );
            stores.push((store.id, store.status_address));
        }
        stores
    });
    assert_eq!(stores.len(), 3);

    let put_ok = r#"regionstore_server_grpc_requests_total{method="raw_put",result="ok"}"#;
    let mut puts_ok = 0.0;
    for (store_id, addr) in &stores {
        let (code, text) = http_get(addr, "/metrics");
        assert_eq!(code, 200, "{text}");
        // Every replica appends the writes, so every store has synced its raft engine.
        let fsyncs = sample(&text, "regionstore_raftstore_fsyncs_total")
            .unwrap_or_else(|| panic!("no fsync counter:\n{text}"));
        assert!(fsyncs > 0.0, "store {store_id} has not synced:\n{text}");
        assert!(
            text.contains("# TYPE regionstore_server_grpc_request_duration_seconds histogram"),
            "{text}"
        );
        assert_eq!(
            sample(&text, "regionstore_raftstore_regions"),
            Some(1.0),
            "store {store_id}:\n{text}"
        );
        puts_ok += sample(&text, put_ok).unwrap_or_else(|| panic!("no raw_put counter:\n{text}"));

        let (code, body) = http_get(addr, "/status");
        assert_eq!(code, 200, "{body}");
        let status: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("/status is not JSON ({e}): {body}"));
        assert_eq!(status["store_id"], *store_id, "{body}");
        assert_eq!(status["status_address"], addr.as_str(), "{body}");
        assert_eq!(status["region_count"], 1, "{body}");
        assert!(status["version"].as_str().is_some_and(|v| !v.is_empty()), "{body}");
        assert!(status["uptime_seconds"].is_u64(), "{body}");

        let (code, _) = http_get(addr, "/no-such-page");
        assert_eq!(code, 404);
    }
    // The leader answered every put; which store leads does not matter.
    assert!(puts_ok >= 20.0, "raw_put ok across stores: {puts_ok}");

    // Exactly one leader among the replicas, once elections have settled.
    wait_for("exactly one store to report itself leader", Duration::from_secs(20), || {
        let leaders: u64 = stores
            .iter()
            .map(|(_, addr)| {
                let (_, body) = http_get(addr, "/status");
                let status: serde_json::Value = serde_json::from_str(&body).unwrap();
                status["leader_count"].as_u64().expect("leader_count")
            })
            .sum();
        (leaders == 1).then_some(())
    });
}
