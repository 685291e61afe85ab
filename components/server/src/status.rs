//! The status port: a small HTTP/1.1 server for operators and scrapers, apart from gRPC.
//!
//! | path | answer |
//! |---|---|
//! | `GET /metrics` | every metric in Prometheus' text format (see `metrics`) |
//! | `GET /status` | JSON: store id, addresses, version, start time, uptime, region and leader counts |
//! | `GET /fail` | the failpoints set, one `name=actions` per line (builds with failpoints only) |
//! | `PUT /fail/<name>` | sets the failpoint's actions to the body, e.g. `return(2,3)` (ditto) |
//! | `DELETE /fail/<name>` | removes the failpoint (ditto) |
//! | anything else | `404`, or `405` for another method on a known path |
//!
//! The `/fail` paths are how the nemesis harness injects faults into a running store (see
//! `fault`), as TiKV's status server does; builds without failpoints (release builds) answer
//! `404` there.
//!
//! Limits (a status port must not become a way to hurt the store): at most
//! [`CONNECTIONS_MAX`] connections at once (more wait in the kernel's accept backlog), one
//! request per connection (no keep-alive), the request head within [`HEADER_READ_TIMEOUT`],
//! and the whole connection within [`CONNECTION_TIMEOUT`]. Request bodies are read only for
//! `PUT /fail/<name>`, at most [`FAIL_BODY_BYTES_MAX`] (`413` beyond).
//!
//! Answers are computed per request from shared counters; no request blocks on the raftstore
//! beyond `StoreMeta`'s lock for the region count.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use raftstore::{StoreMeta, StoreStats};
use serde::Serialize;
use slog::{debug, warn, Logger};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use util::StoreId;

use crate::metrics::{Metrics, TEXT_CONTENT_TYPE};

/// Most connections served at once.
pub const CONNECTIONS_MAX: usize = 16;
/// A client must send its request head within this.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is closed after this, answered or not.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest failpoint action list accepted by `PUT /fail/<name>`.
pub const FAIL_BODY_BYTES_MAX: usize = 4096;

/// What `/status` says about the store that does not change while it runs.
#[derive(Debug, Clone)]
pub struct StoreInfo {
    pub store_id: StoreId,
    /// The gRPC address advertised to PD and clients.
    pub address: String,
    /// The status address advertised to PD.
    pub status_address: String,
    pub version: &'static str,
    /// Unix time (seconds) when the store started, as reported to PD.
    pub start_timestamp: i64,
    /// The same instant, on the monotonic clock, for the uptime.
    pub started: Instant,
}

/// The body of `/status`.
#[derive(Debug, Serialize)]
struct StatusBody<'a> {
    store_id: u64,
    address: &'a str,
    status_address: &'a str,
    version: &'a str,
    start_timestamp: i64,
    uptime_seconds: u64,
    region_count: usize,
    leader_count: u64,
}

/// Answers the status port's requests; shared by every connection.
pub struct StatusService {
    info: StoreInfo,
    metrics: Arc<Metrics>,
    stats: StoreStats,
    meta: Arc<Mutex<StoreMeta>>,
}

impl StatusService {
    pub fn new(
        info: StoreInfo,
        metrics: Arc<Metrics>,
        stats: StoreStats,
        meta: Arc<Mutex<StoreMeta>>,
    ) -> Self {
        StatusService { info, metrics, stats, meta }
    }

    /// The answer to `method path` with the request's `body` (empty unless it was read),
    /// whatever the connection.
    pub fn handle(&self, method: &Method, path: &str, body: &[u8]) -> Response<Full<Bytes>> {
        if path == "/fail" || path.starts_with("/fail/") {
            return failpoints(method, &path["/fail".len()..], body);
        }
        let known = matches!(path, "/metrics" | "/status");
        if !known {
            return plain(StatusCode::NOT_FOUND, "not found; try /metrics or /status\n");
        }
        if method != Method::GET && method != Method::HEAD {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
            r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        match path {
            "/metrics" => answer(StatusCode::OK, TEXT_CONTENT_TYPE, self.metrics.encode()),
            _ => answer(StatusCode::OK, "application/json", self.status_json()),
        }
    }

    fn status_json(&self) -> String {
        let i = &self.info;
        let body = StatusBody {
            store_id: i.store_id.get(),
            address: &i.address,
            status_address: &i.status_address,
            version: i.version,
            start_timestamp: i.start_timestamp,
            uptime_seconds: i.started.elapsed().as_secs(),
            region_count: self.meta.lock().region_count(),
            leader_count: self.stats.leaders(),
        };
        let mut json = serde_json::to_string(&body).expect("plain fields serialize");
        json.push('\n');
        json
    }
}

/// `/fail[/<name>]`: lists, sets or removes failpoints (`rest` is the path after `/fail`).
fn failpoints(method: &Method, rest: &str, body: &[u8]) -> Response<Full<Bytes>> {
    if !cfg!(feature = "failpoints") {
        return plain(StatusCode::NOT_FOUND, "this build has no failpoints\n");
    }
    let name = rest.trim_start_matches('/');
    match (method, name.is_empty()) {
        (&Method::GET, true) => {
            let mut list: Vec<String> =
                fail::list().into_iter().map(|(n, a)| format!("{n}={a}\n")).collect();
            list.sort();
            answer(StatusCode::OK, "text/plain; charset=utf-8", list.concat())
        }
        (&Method::PUT, false) => {
            let Ok(actions) = std::str::from_utf8(body) else {
                return plain(StatusCode::BAD_REQUEST, "actions must be UTF-8\n");
            };
            if !crate::fault::is_allowed(name, actions) {
                return plain(
                    StatusCode::BAD_REQUEST,
                    "only return and off for the network faults (see server::fault)\n",
                );
            }
            match fail::cfg(name, actions.trim()) {
                Ok(()) => plain(StatusCode::OK, "set\n"),
                Err(e) => answer(
                    StatusCode::BAD_REQUEST,
                    "text/plain; charset=utf-8",
                    format!("bad actions for {name}: {e}\n"),
                ),
            }
        }
        (&Method::DELETE, false) => {
            fail::remove(name);
            plain(StatusCode::OK, "removed\n")
        }
        _ => plain(StatusCode::METHOD_NOT_ALLOWED, "GET /fail, PUT or DELETE /fail/<name>\n"),
    }
}

fn answer(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    // hyper sets Content-Length from the full body.
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    r
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    answer(status, "text/plain; charset=utf-8", text.to_owned())
}

/// Serves `listener` until `stop` turns true (or its sender is dropped). MUST be called inside
/// a tokio runtime. Connections already accepted finish on their own, within
/// [`CONNECTION_TIMEOUT`].
pub fn spawn(
    listener: TcpListener,
    service: Arc<StatusService>,
    mut stop: watch::Receiver<bool>,
    logger: Logger,
) {
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                _ = stop_requested(&mut stop) => return,
                p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            };
            let (stream, peer) = tokio::select! {
                _ = stop_requested(&mut stop) => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Typically out of file descriptors: back off instead of spinning.
                        warn!(logger, "status port cannot accept"; "err" => %e);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let service = service.clone();
            let logger = logger.clone();
            tokio::spawn(async move {
                serve_connection(stream, peer, service, &logger).await;
                drop(permit);
            });
        }
    });
}

/// Resolves once `stop` turns true or its sender is dropped.
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    // The borrow `wait_for` returns is dropped here, never held across an await.
    let _ = stop.wait_for(|s| *s).await;
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    service: Arc<StatusService>,
    logger: &Logger,
) {
    let handler = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let service = service.clone();
        async move {
            let (parts, body) = req.into_parts();
            let path = parts.uri.path();
            let body = if parts.method == Method::PUT && path.starts_with("/fail/") {
                match Limited::new(body, FAIL_BODY_BYTES_MAX).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(e) if e.is::<LengthLimitError>() => {
                        let too_big = plain(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n");
                        return Ok::<_, Infallible>(too_big);
                    }
                    // The connection broke mid-body: nothing is set.
                    Err(_) => return Ok(plain(StatusCode::BAD_REQUEST, "incomplete body\n")),
                }
            } else {
                Bytes::new()
            };
            Ok(service.handle(&parts.method, path, &body))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), handler);
    match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(logger, "status connection failed"; "peer" => %peer, "err" => %e),
        Err(_) => debug!(logger, "status connection timed out"; "peer" => %peer),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn service() -> (Arc<StatusService>, StoreStats) {
        let stats = StoreStats::default();
        let meta = Arc::new(Mutex::new(StoreMeta::new(StoreId(7))));
        let metrics = Arc::new(Metrics::new(stats.clone(), meta.clone()));
        let info = StoreInfo {
            store_id: StoreId(7),
            address: "127.0.0.1:20160".into(),
            status_address: "127.0.0.1:20180".into(),
            version: "0.1.0",
            start_timestamp: 1_700_000_000,
            started: Instant::now(),
        };
        (Arc::new(StatusService::new(info, metrics, stats.clone(), meta)), stats)
    }

    async fn body(r: Response<Full<Bytes>>) -> String {
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn routes() {
        let (s, stats) = service();
        let _leader = stats.leader_guard();
        let r = s.handle(&Method::GET, "/status", &[]);
        assert_eq!(r.status(), StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body(r).await).unwrap();
        assert_eq!(v["store_id"], 7);
        assert_eq!(v["leader_count"], 1);
        assert_eq!(v["region_count"], 0);
        assert_eq!(v["version"], "0.1.0");

        let r = s.handle(&Method::GET, "/metrics", &[]);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], TEXT_CONTENT_TYPE);
        assert!(body(r).await.contains("regionstore_raftstore_leaders 1"));

        assert_eq!(s.handle(&Method::GET, "/nope", &[]).status(), StatusCode::NOT_FOUND);
        assert_eq!(s.handle(&Method::POST, "/nope", &[]).status(), StatusCode::NOT_FOUND);
        let r = s.handle(&Method::POST, "/metrics", &[]);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");
    }

    /// Failpoints are listed, set and removed (in builds that have them; others answer 404).
    #[tokio::test]
    async fn failpoint_routes() {
        let (s, _) = service();
        const NAME: &str = "server::status::test_only";
        let put = s.handle(&Method::PUT, &format!("/fail/{NAME}"), b"return(2,3)");
        if !cfg!(feature = "failpoints") {
            assert_eq!(put.status(), StatusCode::NOT_FOUND);
            return;
        }
        assert_eq!(put.status(), StatusCode::OK);
        let list = body(s.handle(&Method::GET, "/fail", &[])).await;
        assert!(list.contains(&format!("{NAME}=return(2,3)\n")), "{list}");
        let bad = s.handle(&Method::PUT, &format!("/fail/{NAME}"), b"frobnicate(");
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        let blocking =
            s.handle(&Method::PUT, &format!("/fail/{}", crate::fault::REFUSE_KV), b"pause");
        assert_eq!(blocking.status(), StatusCode::BAD_REQUEST);
        assert_eq!(s.handle(&Method::POST, "/fail", &[]).status(), StatusCode::METHOD_NOT_ALLOWED);
        let del = s.handle(&Method::DELETE, &format!("/fail/{NAME}"), &[]);
        assert_eq!(del.status(), StatusCode::OK);
        let list = body(s.handle(&Method::GET, "/fail", &[])).await;
        assert!(!list.contains(NAME), "{list}");
    }

    /// A real HTTP/1.1 exchange: status line, Content-Length, the connection closed after it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_http() {
        let (s, _) = service();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stop_rx) = watch::channel(false);
        spawn(listener, s, stop_rx, Logger::root(slog::Discard, slog::o!()));
        let get = move |path: &'static str| {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).unwrap(); // ends: the server closes the connection
            out
        };
        let resp =
            tokio::task::spawn_blocking(move || (get("/status"), get("/missing"))).await.unwrap();
        let (status, missing) = resp;
        assert!(status.starts_with("HTTP/1.1 200 OK\r\n"), "{status}");
        let (head, body) = status.split_once("\r\n\r\n").unwrap();
        let head = head.to_ascii_lowercase();
        assert!(head.contains(&format!("content-length: {}", body.len())), "{status}");
        assert!(head.contains("content-type: application/json"), "{status}");
        assert!(missing.starts_with("HTTP/1.1 404 Not Found\r\n"), "{missing}");
        stop.send(true).unwrap();
    }
}
