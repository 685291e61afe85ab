//! End-to-end tests with the official client, `tikv-client` 0.4.0, against a real cluster of
//! processes (one `regionstore-pd`, three `regionstore-server`) on loopback.
//!
//! Every raw operation the client offers is driven through its own routing, retry and batching
//! code, and every answer is compared with the values written.
//!
//! Two quirks of the 0.4.0 client shape the scans (client bugs, not ours; see
//! `../shared/reference/tikv-wire-compat.md`):
//! 1. `scan` continues from the region's end key; when the region is the last one (end key "")
//!    it starts again at "", returning duplicates, or looping forever on an empty range. The
//!    cluster has one region, so every `scan`/`scan_reverse` here asks for at most as many
//!    pairs as its range holds: the first `RawScan` then fills the limit and the loop stops.
//!    Emptiness is checked with `batch_get`/`batch_scan`, which have no such loop. Each call
//!    also runs under a deadline, so a loop fails the test instead of hanging it.
//! 2. `scan_reverse` picks the region from the lower bound, so reverse scans stay in one
//!    region (trivially, with one region).
//!
//! Each test starts its own cluster on free ports, so the tests run in parallel.

mod common;

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use common::{RaftTiming, TestCluster, FAST_TICKS, TEMPLATE_TICKS};
use tikv_client::{KvPair, RawClient};

/// The longest any single client call may take before the test fails (the client's own
/// timeout is 2 s per RPC, with up to ~1.5 s of region backoff on top).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fresh cluster gets to elect a leader and serve its first write.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Tests that load the machine heavily run alone: the client's 2 s RPC deadline, under a
/// loaded machine, can turn an applied compare-and-swap into a retry that then fails.
static HEAVY: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

enum Turn {
    Shared(#[allow(dead_code)] tokio::sync::RwLockReadGuard<'static, ()>),
    Exclusive(#[allow(dead_code)] tokio::sync::RwLockWriteGuard<'static, ()>),
}

/// A cluster and an official client connected to its PD.
struct Env {
    cluster: TestCluster,
    client: RawClient,
    _turn: Turn,
}

impl Env {
    /// Starts a three-store cluster and waits until a write through the official client
    /// succeeds.
    ///
    /// `TestCluster` picks ports by binding port 0 and releasing it, so another process (for
    /// example an outgoing connection of a test running in parallel) can take a port before
    /// the store binds it; the store then exits at start-up. Such a cluster is discarded and
    /// a new one started on fresh ports, a bounded number of times.
    async fn start() -> Env {
        Self::start_with(Turn::Shared(HEAVY.read().await), FAST_TICKS, "", "").await
    }

    /// As [`Env::start`], with `extra` TOML sections for the stores, and no other test
    /// running meanwhile.
    async fn start_alone(extra: &str) -> Env {
        Self::start_alone_with_timing(FAST_TICKS, extra).await
    }

    /// As [`Env::start_alone`], with the given raft timing.
    async fn start_alone_with_timing(timing: RaftTiming, extra: &str) -> Env {
        Self::start_with(Turn::Exclusive(HEAVY.write().await), timing, extra, "").await
    }

    /// As [`Env::start_alone`], with `pd_config` as PD's config file.
    async fn start_alone_with_pd_config(extra: &str, pd_config: &str) -> Env {
        Self::start_with(Turn::Exclusive(HEAVY.write().await), FAST_TICKS, extra, pd_config).await
    }

    async fn start_with(turn: Turn, timing: RaftTiming, extra: &str, pd_config: &str) -> Env {
        const ATTEMPTS_MAX: usize = 3;
        for attempt in 1..=ATTEMPTS_MAX {
            let started = Instant::now();
            let mut cluster = TestCluster::start_with_pd_config(3, timing, extra, pd_config);
            match Self::connect(&mut cluster).await {
                Ok(client) => {
                    eprintln!("cluster serving after {:?} (attempt {attempt})", started.elapsed());
                    return Env { cluster, client, _turn: turn };
                }
                Err(exited) if attempt < ATTEMPTS_MAX => {
                    eprintln!(
                        "{exited} during start-up; starting a new cluster\n{}",
                        cluster.logs()
                    );
                }
                Err(exited) => {
                    panic!("{exited} during start-up, {ATTEMPTS_MAX} times\n{}", cluster.logs())
                }
            }
        }
        unreachable!("the last attempt returns or panics");
    }

    /// Connects the official client and waits for a probe write to succeed. `Err` names a
    /// process that exited meanwhile; panics if nothing serves within [`STARTUP_TIMEOUT`].
    async fn connect(cluster: &mut TestCluster) -> Result<RawClient, String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let client = loop {
            let attempt =
                tokio::time::timeout(CALL_TIMEOUT, RawClient::new(vec![cluster.pd_addr.clone()]))
                    .await;
            match attempt {
                Ok(Ok(client)) => break client,
                Ok(Err(e)) => eprintln!("connect to PD: {e}; retrying"),
                Err(_) => eprintln!("connect to PD timed out; retrying"),
            }
            Self::check_alive(cluster, deadline)?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        loop {
            match tokio::time::timeout(
                CALL_TIMEOUT,
                client.put(b"probe".to_vec(), b"ready".to_vec()),
            )
            .await
            {
                Ok(Ok(())) => return Ok(client),
                Ok(Err(e)) => eprintln!("probe put: {e}; retrying"),
                Err(_) => eprintln!("probe put timed out; retrying"),
            }
            Self::check_alive(cluster, deadline)?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `Err` if a process of the cluster has exited; panics past `deadline`.
    fn check_alive(cluster: &mut TestCluster, deadline: Instant) -> Result<(), String> {
        for proc in
            std::iter::once(&mut cluster.pd).chain(cluster.stores.iter_mut().map(|s| &mut s.proc))
        {
            if let Some(child) = proc.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("{} exited ({status})", proc.name));
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "cluster not serving within {STARTUP_TIMEOUT:?}\n{}",
            cluster.logs()
        );
        Ok(())
    }

    /// Awaits a client call that must succeed within [`CALL_TIMEOUT`]; panics with the
    /// processes' logs otherwise.
    async fn ok<T>(&self, what: &str, call: impl Future<Output = tikv_client::Result<T>>) -> T {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => panic!("{what}: {e:?}\n{}", self.cluster.logs()),
            Err(_) => panic!("{what}: no answer within {CALL_TIMEOUT:?}\n{}", self.cluster.logs()),
        }
    }

    /// A PD client of the cluster (region counts, routing).
    async fn pd(&self) -> pd_client::PdClient {
        pd_client::PdClient::connect(
            vec![self.cluster.pd_addr.clone()],
            Duration::from_secs(5),
            slog::Logger::root(slog::Discard, slog::o!()),
        )
        .await
        .expect("connect to PD")
    }

    /// Panics, with the first errors and the processes' logs, unless `errors` is empty.
    fn assert_no_client_errors(&self, errors: &[String]) {
        assert!(
            errors.is_empty(),
            "{} errors reached the client, first: {:?}\n{}",
            errors.len(),
            &errors[..errors.len().min(10)],
            self.cluster.logs()
        );
    }

    /// Polls `cond` every 100 ms until it holds; panics if it does not within `timeout`.
    async fn wait_until<F, Fut>(&self, what: &str, timeout: Duration, mut cond: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        while !cond().await {
            assert!(
                Instant::now() < deadline,
                "{what}: not true within {timeout:?}\n{}",
                self.cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn key(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// Bytes that print as an escaped string, cut short when long, so a failed comparison of
/// pairs (up to 10,000 of them, or 1 MiB values) stays readable.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct B(Vec<u8>);

impl fmt::Debug for B {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN_BYTES_MAX: usize = 48;
        let shown = &self.0[..self.0.len().min(SHOWN_BYTES_MAX)];
        write!(f, "\"{}\"", shown.escape_ascii())?;
        if self.0.len() > SHOWN_BYTES_MAX {
            write!(f, "...({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

impl From<B> for tikv_client::Key {
    fn from(b: B) -> Self {
        b.0.into()
    }
}

impl From<B> for Vec<u8> {
    fn from(b: B) -> Self {
        b.0
    }
}

/// `(key, value)` pairs in a comparable, printable form.
type Pairs = Vec<(B, B)>;

fn pairs(kvs: Vec<KvPair>) -> Pairs {
    kvs.into_iter()
        .map(|p| {
            let (k, v): (tikv_client::Key, Vec<u8>) = p.into();
            (B(k.into()), B(v))
        })
        .collect()
}

fn b_pairs(kvs: &[(Vec<u8>, Vec<u8>)]) -> Pairs {
    kvs.iter().map(|(k, v)| (B(k.clone()), B(v.clone()))).collect()
}

/// `pairs`, sorted by key: `batch_get` promises no order.
fn sorted_pairs(kvs: Vec<KvPair>) -> Pairs {
    let mut v = pairs(kvs);
    v.sort();
    v
}

fn keys(ks: Vec<tikv_client::Key>) -> Vec<B> {
    ks.into_iter().map(|k| B(k.into())).collect()
}

/// `basic/kNN` -> `vNN` for the given indexes, in the given order.
fn basic(indexes: impl IntoIterator<Item = u32>) -> Pairs {
    indexes
        .into_iter()
        .map(|i| (B(key(&format!("basic/k{i:02}"))), B(key(&format!("v{i:02}")))))
        .collect()
}

/// Deterministic pseudo-random bytes (xorshift64*), so each large value is distinct and a
/// mix-up or corruption anywhere in it shows.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_batch_and_range_operations() {
    let env = Env::start().await;
    let c = &env.client;

    // get / put / overwrite / delete.
    assert_eq!(env.ok("get absent", c.get(key("basic/absent"))).await, None);
    for (k, v) in basic(0..10) {
        env.ok("put", c.put(k, v)).await;
    }
    for (k, v) in basic(0..10) {
        assert_eq!(env.ok("get", c.get(k.clone())).await.map(B), Some(v), "key {k:?}");
    }
    env.ok("overwrite", c.put(key("basic/k05"), key("v05-new"))).await;
    assert_eq!(env.ok("get overwritten", c.get(key("basic/k05"))).await, Some(key("v05-new")));
    env.ok("put back", c.put(key("basic/k05"), key("v05"))).await;
    env.ok("delete", c.delete(key("basic/k09"))).await;
    assert_eq!(env.ok("get deleted", c.get(key("basic/k09"))).await, None);
    env.ok("delete absent", c.delete(key("basic/absent"))).await;
    assert_eq!(env.ok("get k08 after deletes", c.get(key("basic/k08"))).await, Some(key("v08")));

    // Binary keys and values: every byte value, including 0x00 and 0xff.
    let bin_key = b"bin/\x00\xff\x00\x01".to_vec();
    let bin_value: Vec<u8> = (0..=255u8).rev().chain(0..=255u8).collect();
    env.ok("put binary", c.put(bin_key.clone(), bin_value.clone())).await;
    assert_eq!(env.ok("get binary", c.get(bin_key.clone())).await, Some(bin_value));
    assert_eq!(env.ok("get binary prefix", c.get(b"bin/\x00\xff\x00".to_vec())).await, None);

    // batch_get: only the keys that exist come back.
    let got = env
        .ok(
            "batch_get",
            c.batch_get(vec![
                key("basic/k05"),
                key("basic/k09"),
                key("basic/absent"),
                key("basic/k00"),
                key("basic/k01"),
            ]),
        )
        .await;
    assert_eq!(sorted_pairs(got), basic([0, 1, 5]));

    // batch_put / batch_delete.
    let bp: Vec<(Vec<u8>, Vec<u8>)> =
        (0..20).map(|i| (key(&format!("bp/{i:02}")), key(&format!("bp-value-{i}")))).collect();
    env.ok("batch_put", c.batch_put(bp.clone())).await;
    let all_bp_keys: Vec<Vec<u8>> = bp.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(
        sorted_pairs(env.ok("batch_get bp", c.batch_get(all_bp_keys.clone())).await),
        b_pairs(&bp)
    );
    env.ok("batch_delete", c.batch_delete(all_bp_keys[..10].to_vec())).await;
    assert_eq!(
        sorted_pairs(env.ok("batch_get bp after delete", c.batch_get(all_bp_keys.clone())).await),
        b_pairs(&bp[10..])
    );
    for (k, _) in &bp[..10] {
        assert_eq!(env.ok("get batch-deleted", c.get(k.clone())).await, None, "key {k:?}");
    }

    // Forward scans. basic/k00..k08 exist (k09 was deleted): 9 pairs.
    let range = key("basic/k00")..key("basic/k99");
    assert_eq!(pairs(env.ok("scan all", c.scan(range.clone(), 9)).await), basic(0..9));
    assert_eq!(pairs(env.ok("scan limit", c.scan(range.clone(), 4)).await), basic(0..4));
    assert_eq!(
        pairs(env.ok("scan mid", c.scan(key("basic/k03")..key("basic/k99"), 6)).await),
        basic(3..9)
    );
    assert_eq!(
        pairs(env.ok("scan inclusive", c.scan(key("basic/k02")..=key("basic/k05"), 4)).await),
        basic(2..=5),
    );
    assert_eq!(
        pairs(env.ok("scan exclusive end", c.scan(key("basic/k02")..key("basic/k05"), 3)).await),
        basic(2..5),
    );
    assert_eq!(
        keys(env.ok("scan_keys", c.scan_keys(key("basic/k01")..key("basic/k99"), 8)).await),
        basic(1..9).into_iter().map(|(k, _)| k).collect::<Vec<_>>(),
    );

    // Reverse scans: [lower, upper) walked downwards.
    assert_eq!(
        pairs(env.ok("scan_reverse all", c.scan_reverse(range.clone(), 9)).await),
        basic((0..9).rev())
    );
    assert_eq!(
        pairs(
            env.ok("scan_reverse limit", c.scan_reverse(key("basic/k02")..key("basic/k06"), 3))
                .await
        ),
        basic([5, 4, 3]),
    );
    assert_eq!(
        pairs(
            env.ok(
                "scan_reverse inclusive",
                c.scan_reverse(key("basic/k02")..=key("basic/k06"), 5)
            )
            .await
        ),
        basic((2..=6).rev()),
    );
    assert_eq!(
        keys(
            env.ok("scan_keys_reverse", c.scan_keys_reverse(key("basic/k00")..key("basic/k04"), 4))
                .await
        ),
        basic((0..4).rev()).into_iter().map(|(k, _)| k).collect::<Vec<_>>(),
    );

    // batch_scan: results concatenated in range order, each range cut at `each_limit`.
    let ranges = vec![key("basic/k00")..key("basic/k03"), key("basic/k05")..key("basic/k99")];
    assert_eq!(
        pairs(env.ok("batch_scan limit 2", c.batch_scan(ranges.clone(), 2)).await),
        basic([0, 1, 5, 6])
    );
    assert_eq!(
        pairs(env.ok("batch_scan limit 10", c.batch_scan(ranges.clone(), 10)).await),
        basic([0, 1, 2, 5, 6, 7, 8]),
    );
    assert_eq!(
        keys(env.ok("batch_scan_keys", c.batch_scan_keys(ranges, 10)).await),
        basic([0, 1, 2, 5, 6, 7, 8]).into_iter().map(|(k, _)| k).collect::<Vec<_>>(),
    );
    assert_eq!(
        pairs(
            env.ok(
                "batch_scan empty range",
                c.batch_scan(vec![key("basic/x")..key("basic/y")], 10)
            )
            .await
        ),
        Pairs::new(),
    );

    // delete_range: [k03, k06) goes, then the inclusive [k07, k08].
    env.ok("delete_range", c.delete_range(key("basic/k03")..key("basic/k06"))).await;
    let all_basic: Vec<B> = basic(0..10).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        sorted_pairs(env.ok("batch_get after delete_range", c.batch_get(all_basic.clone())).await),
        basic([0, 1, 2, 6, 7, 8])
    );
    assert_eq!(
        pairs(env.ok("scan after delete_range", c.scan(range.clone(), 6)).await),
        basic([0, 1, 2, 6, 7, 8])
    );
    env.ok("delete_range inclusive", c.delete_range(key("basic/k07")..=key("basic/k08"))).await;
    assert_eq!(
        sorted_pairs(env.ok("batch_get after 2nd delete_range", c.batch_get(all_basic)).await),
        basic([0, 1, 2, 6])
    );
    // Keys outside the deleted ranges are untouched.
    assert_eq!(
        sorted_pairs(env.ok("bp untouched", c.batch_get(all_bp_keys)).await),
        b_pairs(&bp[10..])
    );
    assert_eq!(env.ok("probe untouched", c.get(key("probe"))).await, Some(key("ready")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_and_compare_and_swap() {
    let env = Env::start().await;
    let c = &env.client;
    let cas = c.with_atomic_for_cas();
    // Expiry is stored in whole seconds, so a key with this TTL lives between TTL-1 and TTL
    // seconds: long enough to read it back first, short enough to wait for.
    const SHORT_TTL_SECS: u64 = 3;
    const LONG_TTL_SECS: u64 = 3600;

    // TTL of keys without one, and of absent keys.
    env.ok("put perm", c.put(key("ttl/perm"), key("p"))).await;
    assert_eq!(
        env.ok("ttl of key without ttl", c.get_key_ttl_secs(key("ttl/perm"))).await,
        Some(0)
    );
    assert_eq!(env.ok("ttl of absent key", c.get_key_ttl_secs(key("ttl/absent"))).await, None);

    // Writes with TTLs: single, batch (mixed TTLs), and an atomic-mode write for CAS later.
    env.ok("put_with_ttl long", c.put_with_ttl(key("ttl/long"), key("l"), LONG_TTL_SECS)).await;
    env.ok("put_with_ttl short", c.put_with_ttl(key("ttl/a-short"), key("s"), SHORT_TTL_SECS))
        .await;
    env.ok(
        "batch_put_with_ttl",
        c.batch_put_with_ttl(
            vec![
                (key("ttl/b-short1"), key("b1")),
                (key("ttl/b-short2"), key("b2")),
                (key("ttl/c-live1"), key("c1")),
                (key("ttl/c-live2"), key("c2")),
            ],
            vec![SHORT_TTL_SECS, SHORT_TTL_SECS, 0, LONG_TTL_SECS],
        ),
    )
    .await;
    env.ok("atomic put_with_ttl", cas.put_with_ttl(key("ttlcas/k"), key("old"), SHORT_TTL_SECS))
        .await;

    // Everything is readable before expiry, with the TTLs asked for.
    let ttl_keys: Vec<Vec<u8>> = [
        "ttl/a-short",
        "ttl/b-short1",
        "ttl/b-short2",
        "ttl/c-live1",
        "ttl/c-live2",
        "ttl/long",
        "ttl/perm",
    ]
    .into_iter()
    .map(key)
    .collect();
    let before: Vec<(Vec<u8>, Vec<u8>)> = ttl_keys
        .iter()
        .cloned()
        .zip(["s", "b1", "b2", "c1", "c2", "l", "p"].into_iter().map(key))
        .collect();
    let before = b_pairs(&before);
    assert_eq!(
        sorted_pairs(env.ok("batch_get before expiry", c.batch_get(ttl_keys.clone())).await),
        before
    );
    assert_eq!(
        pairs(env.ok("scan before expiry", c.scan(key("ttl/")..key("ttl0"), 7)).await),
        before
    );
    assert_eq!(env.ok("get atomic ttl key", c.get(key("ttlcas/k"))).await, Some(key("old")));
    for k in ["ttl/a-short", "ttl/b-short1", "ttlcas/k"] {
        let ttl = env.ok("ttl of short key", c.get_key_ttl_secs(key(k))).await;
        assert!(matches!(ttl, Some(t) if (1..=SHORT_TTL_SECS).contains(&t)), "ttl of {k}: {ttl:?}");
    }
    assert_eq!(
        env.ok("ttl of batch key without ttl", c.get_key_ttl_secs(key("ttl/c-live1"))).await,
        Some(0)
    );
    for k in ["ttl/long", "ttl/c-live2"] {
        let ttl = env.ok("ttl of long key", c.get_key_ttl_secs(key(k))).await;
        assert!(
            matches!(ttl, Some(t) if (LONG_TTL_SECS - 10..=LONG_TTL_SECS).contains(&t)),
            "ttl of {k}: {ttl:?}"
        );
    }

    // Wait for the short keys to expire.
    let short = ["ttl/a-short", "ttl/b-short1", "ttl/b-short2", "ttlcas/k"];
    let env_ref = &env;
    env.wait_until(
        "short TTL keys expire",
        Duration::from_secs(SHORT_TTL_SECS + 10),
        move || async move {
            for k in short {
                if env_ref.ok("get while waiting", c.get(key(k))).await.is_some() {
                    return false;
                }
            }
            true
        },
    )
    .await;

    // Expired values are gone from every read path; the others remain.
    let live: Vec<(Vec<u8>, Vec<u8>)> = ["ttl/c-live1", "ttl/c-live2", "ttl/long", "ttl/perm"]
        .into_iter()
        .map(key)
        .zip(["c1", "c2", "l", "p"].into_iter().map(key))
        .collect();
    let live = b_pairs(&live);
    for k in short {
        assert_eq!(
            env.ok("ttl of expired key", c.get_key_ttl_secs(key(k))).await,
            None,
            "ttl of {k}"
        );
    }
    assert_eq!(
        sorted_pairs(env.ok("batch_get after expiry", c.batch_get(ttl_keys.clone())).await),
        live
    );
    // The expired keys sort first: a scan that returned them would fill its limit with them.
    assert_eq!(pairs(env.ok("scan after expiry", c.scan(key("ttl/")..key("ttl0"), 4)).await), live);
    let mut live_rev = live.clone();
    live_rev.reverse();
    assert_eq!(
        pairs(
            env.ok("scan_reverse after expiry", c.scan_reverse(key("ttl/")..key("ttl0"), 4)).await
        ),
        live_rev
    );
    assert_eq!(
        pairs(
            env.ok("batch_scan after expiry", c.batch_scan(vec![key("ttl/")..key("ttl0")], 10))
                .await
        ),
        live
    );

    // Rewriting: an expired key can be written again; a plain put clears a TTL.
    env.ok("put over expired", c.put(key("ttl/a-short"), key("again"))).await;
    assert_eq!(env.ok("get rewritten", c.get(key("ttl/a-short"))).await, Some(key("again")));
    assert_eq!(env.ok("ttl of rewritten", c.get_key_ttl_secs(key("ttl/a-short"))).await, Some(0));
    env.ok("put over long ttl", c.put(key("ttl/c-live2"), key("c2-new"))).await;
    assert_eq!(env.ok("ttl cleared", c.get_key_ttl_secs(key("ttl/c-live2"))).await, Some(0));

    // compare_and_swap: an expired key counts as absent.
    assert_eq!(
        env.ok("cas on expired", cas.compare_and_swap(key("ttlcas/k"), None, key("new"))).await,
        (None, true)
    );
    assert_eq!(env.ok("get after cas on expired", c.get(key("ttlcas/k"))).await, Some(key("new")));

    // compare_and_swap on an absent key, then against the wrong and the right previous value.
    let k = key("cas/a");
    assert_eq!(
        env.ok("cas absent", cas.compare_and_swap(k.clone(), None, key("v1"))).await,
        (None, true)
    );
    assert_eq!(env.ok("get v1", c.get(k.clone())).await, Some(key("v1")));
    assert_eq!(
        env.ok("cas expects absent", cas.compare_and_swap(k.clone(), None, key("v2"))).await,
        (Some(key("v1")), false)
    );
    assert_eq!(
        env.ok(
            "cas wrong previous",
            cas.compare_and_swap(k.clone(), Some(key("wrong")), key("v2"))
        )
        .await,
        (Some(key("v1")), false),
    );
    assert_eq!(env.ok("get still v1", c.get(k.clone())).await, Some(key("v1")));
    assert_eq!(
        env.ok("cas right previous", cas.compare_and_swap(k.clone(), Some(key("v1")), key("v2")))
            .await,
        (Some(key("v1")), true)
    );
    assert_eq!(env.ok("get v2", c.get(k.clone())).await, Some(key("v2")));
    // A previous value that is a prefix of the current one is not equal to it.
    assert_eq!(
        env.ok("cas prefix previous", cas.compare_and_swap(k.clone(), Some(key("v")), key("v3")))
            .await,
        (Some(key("v2")), false),
    );

    // Atomic-mode put and delete interleave with CAS.
    env.ok("atomic put", cas.put(k.clone(), key("v3"))).await;
    assert_eq!(
        env.ok("cas after atomic put", cas.compare_and_swap(k.clone(), Some(key("v3")), key("v4")))
            .await,
        (Some(key("v3")), true)
    );
    env.ok("atomic delete", cas.delete(k.clone())).await;
    assert_eq!(env.ok("get after atomic delete", c.get(k.clone())).await, None);
    assert_eq!(
        env.ok(
            "cas on deleted expecting value",
            cas.compare_and_swap(k.clone(), Some(key("v4")), key("v5"))
        )
        .await,
        (None, false),
    );
    assert_eq!(env.ok("get still deleted", c.get(k.clone())).await, None);
    assert_eq!(
        env.ok("cas on deleted", cas.compare_and_swap(k.clone(), None, key("v5"))).await,
        (None, true)
    );
    assert_eq!(env.ok("get v5", c.get(k.clone())).await, Some(key("v5")));

    // The client refuses CAS outside atomic mode, and range/batch deletes inside it.
    assert!(matches!(
        c.compare_and_swap(k.clone(), None, key("x")).await,
        Err(tikv_client::Error::UnsupportedMode)
    ));
    assert!(matches!(
        cas.batch_delete(vec![k.clone()]).await,
        Err(tikv_client::Error::UnsupportedMode)
    ));
    assert!(matches!(
        cas.delete_range(key("cas/")..key("cas0")).await,
        Err(tikv_client::Error::UnsupportedMode)
    ));
    assert_eq!(env.ok("get after refused ops", c.get(k.clone())).await, Some(key("v5")));

    // Concurrent increments through CAS loops: none may be lost.
    const WORKERS: u64 = 4;
    const INCREMENTS: u64 = 10;
    let counter = key("cas/counter");
    env.ok("init counter", cas.put(counter.clone(), 0u64.to_be_bytes().to_vec())).await;
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let cas = cas.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut swaps_failed = 0u64;
            for _ in 0..INCREMENTS {
                let mut current =
                    cas.get(counter.clone()).await.expect("get counter").expect("counter exists");
                loop {
                    let n =
                        u64::from_be_bytes(current.as_slice().try_into().expect("8-byte counter"));
                    let (previous, ok) = cas
                        .compare_and_swap(
                            counter.clone(),
                            Some(current.clone()),
                            (n + 1).to_be_bytes().to_vec(),
                        )
                        .await
                        .expect("cas counter");
                    if ok {
                        assert_eq!(
                            previous.as_ref(),
                            Some(&current),
                            "a successful CAS reports the value it replaced"
                        );
                        break;
                    }
                    swaps_failed += 1;
                    current = previous.expect("counter exists");
                }
            }
            swaps_failed
        }));
    }
    let mut swaps_failed = 0;
    for t in tasks {
        swaps_failed += tokio::time::timeout(CALL_TIMEOUT * 2, t)
            .await
            .expect("CAS workers finish")
            .expect("CAS worker");
    }
    let total = env.ok("get counter", c.get(counter)).await.expect("counter exists");
    assert_eq!(
        u64::from_be_bytes(total.as_slice().try_into().unwrap()),
        WORKERS * INCREMENTS,
        "{swaps_failed} failed swaps"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_keys_in_batches() {
    const N: u32 = 10_000;
    let env = Env::start().await;
    let c = &env.client;
    let bulk_key = |i: u32| key(&format!("bulk/{i:05}"));
    // Values of varying length, each naming its key.
    let bulk_value = |i: u32| key(&format!("value-{i}-{}", "x".repeat((i % 50) as usize)));
    let all: Vec<(Vec<u8>, Vec<u8>)> = (0..N).map(|i| (bulk_key(i), bulk_value(i))).collect();
    let all_keys: Vec<Vec<u8>> = all.iter().map(|(k, _)| k.clone()).collect();
    let range = key("bulk/")..key("bulk0");

    // The client splits this into ~16 KiB RawBatchPut requests sent concurrently. Shuffle the
    // input order (deterministically) so the client's sorting is exercised too.
    let mut shuffled = all.clone();
    shuffled
        .sort_by_key(|(k, _)| noise(u64::from_be_bytes(k[k.len() - 8..].try_into().unwrap()), 8));
    env.ok("batch_put 10k", c.batch_put(shuffled)).await;

    let got = env.ok("batch_get 10k", c.batch_get(all_keys.clone())).await;
    assert_eq!(got.len(), N as usize);
    let all_pairs = b_pairs(&all);
    assert_eq!(sorted_pairs(got), all_pairs);
    let scanned = pairs(env.ok("scan 10k", c.scan(range.clone(), N)).await);
    assert_eq!(scanned.len(), N as usize);
    assert_eq!(scanned, all_pairs);
    let mut reversed = all_pairs.clone();
    reversed.reverse();
    assert_eq!(pairs(env.ok("scan_reverse 10k", c.scan_reverse(range.clone(), N)).await), reversed);
    let batch_scanned = pairs(
        env.ok(
            "batch_scan 2x2500",
            c.batch_scan(
                vec![bulk_key(0)..bulk_key(2_500), bulk_key(5_000)..bulk_key(7_500)],
                10_240,
            ),
        )
        .await,
    );
    let want: Pairs = all_pairs[..2_500].iter().chain(&all_pairs[5_000..7_500]).cloned().collect();
    assert_eq!(batch_scanned, want);
    // Spot checks through the single-key path.
    for i in [0, 1, 4_999, 9_998, 9_999] {
        assert_eq!(env.ok("get bulk", c.get(bulk_key(i))).await, Some(bulk_value(i)), "key {i}");
    }

    // Delete the even keys; exactly the odd ones remain.
    let even: Vec<Vec<u8>> = (0..N).step_by(2).map(bulk_key).collect();
    env.ok("batch_delete 5k", c.batch_delete(even)).await;
    let odd: Pairs = all_pairs.iter().skip(1).step_by(2).cloned().collect();
    assert_eq!(
        sorted_pairs(env.ok("batch_get after batch_delete", c.batch_get(all_keys.clone())).await),
        odd
    );
    assert_eq!(pairs(env.ok("scan after batch_delete", c.scan(range.clone(), N / 2)).await), odd);
    assert_eq!(env.ok("get deleted even", c.get(bulk_key(4_242))).await, None);

    // delete_range takes the rest.
    env.ok("delete_range bulk", c.delete_range(range.clone())).await;
    assert_eq!(
        sorted_pairs(env.ok("batch_get after delete_range", c.batch_get(all_keys)).await),
        Pairs::new()
    );
    assert_eq!(
        pairs(env.ok("batch_scan after delete_range", c.batch_scan(vec![range], 10)).await),
        Pairs::new()
    );
    assert_eq!(env.ok("probe untouched", c.get(key("probe"))).await, Some(key("ready")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mebibyte_values() {
    const MIB: usize = 1 << 20;
    let env = Env::start().await;
    let c = &env.client;
    let big_key = |i: u64| key(&format!("big/{i:02}"));

    // Single puts, each read back in full.
    for i in 0..4 {
        env.ok("put 1 MiB", c.put(big_key(i), noise(i, MIB))).await;
    }
    for i in 0..4 {
        let got = env.ok("get 1 MiB", c.get(big_key(i))).await.map(B);
        assert_eq!(got, Some(B(noise(i, MIB))), "key {i}");
    }
    // Overwrite one with a different 1 MiB value; its neighbour keeps its own.
    env.ok("overwrite 1 MiB", c.put(big_key(2), noise(102, MIB))).await;
    let got = env.ok("get overwritten", c.get(big_key(2))).await.map(B);
    assert_eq!(got, Some(B(noise(102, MIB))));
    let got = env.ok("get neighbour", c.get(big_key(3))).await.map(B);
    assert_eq!(got, Some(B(noise(3, MIB))));

    // Batched: three values (one RawBatchPut each; ~3 MiB stays under the client's 4 MiB
    // response limit for the batch_get and the scan).
    let batch: Vec<(Vec<u8>, Vec<u8>)> = (10..13).map(|i| (big_key(i), noise(i, MIB))).collect();
    env.ok("batch_put 3x1 MiB", c.batch_put(batch.clone())).await;
    let batch_keys: Vec<Vec<u8>> = batch.iter().map(|(k, _)| k.clone()).collect();
    let got = sorted_pairs(env.ok("batch_get 3x1 MiB", c.batch_get(batch_keys.clone())).await);
    assert_eq!(got, b_pairs(&batch), "batch_get of 1 MiB values");
    let scanned = pairs(env.ok("scan 3x1 MiB", c.scan(big_key(10)..big_key(99), 3)).await);
    assert_eq!(scanned, b_pairs(&batch), "scan of 1 MiB values");
    let listed = keys(env.ok("scan_keys big", c.scan_keys(key("big/")..key("big0"), 7)).await);
    assert_eq!(
        listed,
        [0, 1, 2, 3, 10, 11, 12].into_iter().map(|i| B(big_key(i))).collect::<Vec<_>>()
    );

    // Delete one of each kind.
    env.ok("delete big", c.delete(big_key(0))).await;
    env.ok("batch_delete big", c.batch_delete(vec![big_key(11)])).await;
    assert_eq!(env.ok("get deleted big", c.get(big_key(0))).await, None);
    assert_eq!(env.ok("get batch-deleted big", c.get(big_key(11))).await, None);
    let got = env.ok("get remaining big", c.get(big_key(12))).await.map(B);
    assert_eq!(got, Some(B(noise(12, MIB))));
}

/// The client follows splits: 200,000 keys written into a cluster that splits every ~256 KiB
/// are all read back, through batch gets and scans that cross region boundaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_thousand_keys_across_auto_splits() {
    const N: u32 = 200_000;
    const CHUNK: u32 = 10_000;
    let env = Env::start_alone("[coprocessor]\nregion-split-size = \"256KiB\"\n").await;
    let c = &env.client;
    let k = |i: u32| key(&format!("many/{i:06}"));
    let v = |i: u32| key(&format!("value-{i:06}-{}", "y".repeat((i % 17) as usize)));
    for start in (0..N).step_by(CHUNK as usize) {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (start..start + CHUNK).map(|i| (k(i), v(i))).collect();
        env.ok("batch_put 10k", c.batch_put(pairs)).await;
    }
    // About 10 MB of data over a 384 KiB maximum: the region splits many times.
    let pd = env.pd().await;
    env.wait_until("the cluster to split", Duration::from_secs(120), || async {
        pd.scan_regions(b"", b"", 10_000).await.map(|r| r.len()).unwrap_or(0) >= 16
    })
    .await;
    for start in (0..N).step_by(CHUNK as usize) {
        let keys: Vec<Vec<u8>> = (start..start + CHUNK).map(k).collect();
        let got = env.ok("batch_get 10k", c.batch_get(keys)).await;
        let want: Pairs = (start..start + CHUNK).map(|i| (B(k(i)), B(v(i)))).collect();
        assert_eq!(sorted_pairs(got), want, "keys from {start}");
    }
    // Scans crossing region boundaries (none of them reaches the last region).
    for start in [0, 61_234, 150_000] {
        let got = pairs(env.ok("scan 5k", c.scan(k(start)..k(start + 5_000), 5_000)).await);
        let want: Pairs = (start..start + 5_000).map(|i| (B(k(i)), B(v(i)))).collect();
        assert_eq!(got, want, "scan from {start}");
    }
    for i in [0, 1, 99_999, 199_999] {
        assert_eq!(env.ok("get", c.get(k(i))).await, Some(v(i)), "key {i}");
    }
}

/// Auto split under concurrent puts and gets, with the template's raft timing (1 s ticks, so
/// a heartbeat every 2 s), as a new user runs it (#11): while the cluster splits from one
/// region into many, no error reaches the application and every get returns what was written.
///
/// The writers share one descending key sequence (reverse timestamps, say): every split puts
/// the keys being written into the new left region (right-derive), and the parent gets no
/// more writes, so nothing but the leader's commit broadcast tells its followers that the
/// split committed. New regions must get their leader within round trips of the split, and
/// requests that reach them first must wait for it rather than fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_split_under_concurrent_puts_and_gets_surfaces_no_error() {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};
    const WRITERS: u32 = 6;
    const READERS: u32 = 6;
    const RUN: Duration = Duration::from_secs(20);
    const REGIONS_MIN: usize = 6;
    let env = Env::start_alone_with_timing(
        TEMPLATE_TICKS,
        "[coprocessor]\nregion-split-size = \"128KiB\"\n",
    )
    .await;
    let k = |i: u32| key(&format!("split/{:08}", 99_999_999 - i));
    let v = |i: u32| noise(u64::from(i), 512);
    let next = Arc::new(AtomicU32::new(0));
    let acked = Arc::new(Mutex::new(Vec::<u32>::new()));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let gets = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let (c, next, acked, errors, stop) =
            (env.client.clone(), next.clone(), acked.clone(), errors.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                match tokio::time::timeout(CALL_TIMEOUT, c.put(k(i), v(i))).await {
                    Ok(Ok(())) => acked.lock().unwrap().push(i),
                    Ok(Err(e)) => errors.lock().unwrap().push(format!("put {i}: {e:?}")),
                    Err(_) => errors.lock().unwrap().push(format!("put {i}: timed out")),
                }
            }
        }));
    }
    for r in 0..READERS {
        let (c, acked, errors, stop, gets) =
            (env.client.clone(), acked.clone(), errors.clone(), stop.clone(), gets.clone());
        tasks.push(tokio::spawn(async move {
            let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(r);
            while !stop.load(Ordering::Relaxed) {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let i = {
                    let acked = acked.lock().unwrap();
                    if acked.is_empty() {
                        None
                    } else {
                        Some(acked[(seed >> 33) as usize % acked.len()])
                    }
                };
                let Some(i) = i else {
                    tokio::task::yield_now().await;
                    continue;
                };
                match tokio::time::timeout(CALL_TIMEOUT, c.get(k(i))).await {
                    Ok(Ok(got)) if got == Some(v(i)) => {
                        gets.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Ok(got)) => errors.lock().unwrap().push(format!(
                        "get {i}: {} bytes, not the value written",
                        got.map_or(0, |g| g.len())
                    )),
                    Ok(Err(e)) => errors.lock().unwrap().push(format!("get {i}: {e:?}")),
                    Err(_) => errors.lock().unwrap().push(format!("get {i}: timed out")),
                }
            }
        }));
    }
    tokio::time::sleep(RUN).await; // the workload's length, not a synchronization
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("workload task");
    }
    let pd = env.pd().await;
    let regions = pd.scan_regions(b"", b"", 10_000).await.expect("scan regions").len();
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let gets = gets.load(Ordering::Relaxed);
    eprintln!("{} puts, {gets} gets, {regions} regions", acked.len());
    env.assert_no_client_errors(&errors.lock().unwrap());
    assert!(regions >= REGIONS_MIN, "only {regions} regions: the workload did not split enough");
    assert!(gets > 0, "no get ran");
    // Every acknowledged write is there.
    for chunk in acked.chunks(2_000) {
        let keys: Vec<Vec<u8>> = chunk.iter().map(|&i| k(i)).collect();
        let got = env.ok("batch_get acked", env.client.batch_get(keys)).await;
        assert_eq!(got.len(), chunk.len(), "acknowledged writes missing");
    }
}

/// #14 items 3, 4 and 6: a cluster split to about a hundred regions whose data is then deleted
/// returns to a handful of regions by PD's automatic merge alone, while the official client
/// writes and reads. No error reaches the application, every read returns the last value
/// acknowledged before it or a newer one, and the data that was kept is all there after.
///
/// Regions split at 200 keys; PD merges a region holding fewer than 40 keys (its size limit,
/// 1 MiB, is never the binding one), five seconds after its last split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_data_merges_back_to_a_few_regions_under_client_traffic() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    const BULK: u32 = 25_000;
    const KEEP_EVERY: u32 = 1_000;
    const LIVE: usize = 8;
    const REGIONS_SPLIT_MIN: usize = 70;
    const REGIONS_MERGED_MAX: usize = 5;
    let env = Env::start_alone_with_pd_config(
        "[coprocessor]\nregion-split-size = \"1MiB\"\nregion-split-keys = 200\n",
        "[schedule]\nmax-merge-region-size = 1\nmax-merge-region-keys = 40\n\
         split-merge-interval = \"5s\"\nmerge-schedule-limit = 8\n",
    )
    .await;
    let c = &env.client;
    let pd = env.pd().await;
    let regions = || async { pd.scan_regions(b"", b"", 10_000).await.map(|r| r.len()).ok() };
    let k = |i: u32| key(&format!("bulk/{i:06}"));
    let v = |i: u32| noise(u64::from(i), 200);

    // 1. About 5 MB in 25,000 keys: the cluster splits into about a hundred regions.
    for start in (0..BULK).step_by(5_000) {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (start..start + 5_000).map(|i| (k(i), v(i))).collect();
        env.ok("batch_put 5k", c.batch_put(pairs)).await;
    }
    env.wait_until("the cluster to split", Duration::from_secs(120), || async {
        regions().await.is_some_and(|n| n >= REGIONS_SPLIT_MIN)
    })
    .await;
    let split_to = regions().await.unwrap_or(0);

    // 2. Client traffic for the rest of the test: one writer per live key, counting up; readers
    //    check that no read goes back behind an acknowledged write.
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..LIVE).map(|_| AtomicU64::new(0)).collect());
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (puts, gets) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let live = |j: usize| key(&format!("live/{j}"));
    let mut tasks = Vec::new();
    for j in 0..LIVE {
        let (c, acked, errors, stop, puts) =
            (c.clone(), acked.clone(), errors.clone(), stop.clone(), puts.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                match tokio::time::timeout(CALL_TIMEOUT, c.put(live(j), n.to_string())).await {
                    Ok(Ok(())) => {
                        acked[j].store(n, Ordering::SeqCst);
                        puts.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => errors.lock().unwrap().push(format!("put live/{j}: {e:?}")),
                    Err(_) => errors.lock().unwrap().push(format!("put live/{j}: timed out")),
                }
            }
        }));
    }
    for r in 0..LIVE {
        let (c, acked, errors, stop, gets) =
            (c.clone(), acked.clone(), errors.clone(), stop.clone(), gets.clone());
        tasks.push(tokio::spawn(async move {
            let mut j = r;
            while !stop.load(Ordering::Relaxed) {
                j = (j + 3) % LIVE;
                let floor = acked[j].load(Ordering::SeqCst);
                match tokio::time::timeout(CALL_TIMEOUT, c.get(live(j))).await {
                    Ok(Ok(got)) => {
                        let n = got.and_then(|g| String::from_utf8(g).ok()?.parse::<u64>().ok());
                        if n.unwrap_or(0) < floor {
                            errors.lock().unwrap().push(format!(
                                "get live/{j}: {n:?}, older than {floor} acknowledged before"
                            ));
                        }
                        gets.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => errors.lock().unwrap().push(format!("get live/{j}: {e:?}")),
                    Err(_) => errors.lock().unwrap().push(format!("get live/{j}: timed out")),
                }
            }
        }));
    }

    // 3. Most of the data goes: one range delete over all of it (the client cuts it by
    //    region), then every KEEP_EVERY-th key is written back.
    env.ok("delete_range bulk", c.delete_range(k(0)..k(BULK))).await;
    let kept: Vec<u32> = (0..BULK).step_by(KEEP_EVERY as usize).collect();
    env.ok("batch_put kept", c.batch_put(kept.iter().map(|&i| (k(i), v(i))).collect::<Vec<_>>()))
        .await;

    // 4. PD merges the emptied regions back, by itself.
    let merging = Instant::now();
    env.wait_until("automatic merge to a few regions", Duration::from_secs(300), || async {
        regions().await.is_some_and(|n| n <= REGIONS_MERGED_MAX)
    })
    .await;
    let merged_in = merging.elapsed();
    let merged_to = regions().await.unwrap_or(0);
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("workload task");
    }
    let (puts, gets) = (puts.load(Ordering::Relaxed), gets.load(Ordering::Relaxed));
    eprintln!(
        "split to {split_to} regions; merged to {merged_to} in {merged_in:?}; \
         {puts} puts, {gets} gets meanwhile"
    );
    env.assert_no_client_errors(&errors.lock().unwrap());
    assert!(puts > 0 && gets > 0, "the traffic did not run: {puts} puts, {gets} gets");

    // 5. What was kept is there, what was deleted is not, and the live keys hold their last
    //    acknowledged values.
    let all: Vec<Vec<u8>> = (0..BULK).map(k).collect();
    let mut got = Vec::new();
    for chunk in all.chunks(5_000) {
        got.extend(env.ok("batch_get bulk", c.batch_get(chunk.to_vec())).await);
    }
    let want: Pairs = kept.iter().map(|&i| (B(k(i)), B(v(i)))).collect();
    assert_eq!(sorted_pairs(got), want);
    for j in 0..LIVE {
        let n = acked[j].load(Ordering::SeqCst).to_string().into_bytes();
        assert_eq!(env.ok("get live", c.get(live(j))).await, Some(n), "live/{j}");
    }
}
