//! The nemesis harness in `make test`: a short run of `regionstore-chaos`'s library on a
//! fixed seed against real processes (this build's binaries, which have failpoints). Every
//! fault kind is injected at least once, and the run must find no anomaly and lose no
//! acknowledged write. The long soak with random seeds is `make chaos`.

use std::time::Duration;

use chaos::cluster::Binaries;
use chaos::schedule::Kind;

/// Fixed, so that CI is repeatable; a failure prints it for `regionstore-chaos --seed`.
const SEED: u64 = 20_261_203;

fn options(dir: &tempfile::TempDir, stores: usize) -> chaos::Options {
    chaos::Options {
        seed: SEED,
        duration: Duration::from_secs(100),
        stores,
        clients: 4,
        bins: Binaries {
            server: env!("CARGO_BIN_EXE_regionstore-server").into(),
            pd: env!("CARGO_BIN_EXE_regionstore-pd").into(),
            ctl: env!("CARGO_BIN_EXE_regionstore-ctl").into(),
        },
        dir: dir.path().join("run"),
        keep: false,
        power_loss: true,
    }
}

#[test]
fn a_short_nemesis_run_with_every_fault_kind_finds_no_anomaly() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(&dir, 5);
    let summary = chaos::run(&opts).expect("the run completes");
    if summary.failed() {
        let kept = dir.keep();
        panic!("{summary}\nlogs kept in {}", kept.display());
    }
    for k in Kind::ALL {
        assert!(summary.faults.contains_key(&k), "no {} fault was injected:\n{summary}", k.name());
    }
    assert!(summary.ops_ok > 1000, "too little work got done:\n{summary}");
}

/// The harness names the store's fault failpoints without linking the server crate.
#[test]
fn the_harness_names_the_servers_failpoints() {
    use chaos::nemesis::server_faults as h;
    assert_eq!(h::DROP_RAFT_TO, server::fault::DROP_RAFT_TO);
    assert_eq!(h::REFUSE_KV, server::fault::REFUSE_KV);
    assert_eq!(h::LOSE_KV_RESPONSE, server::fault::LOSE_KV_RESPONSE);
}

/// 30 s of malformed and hostile requests on every port: no process dies, memory stays
/// bounded, and a well-formed client is served throughout and reads back what it wrote.
#[test]
fn the_network_fuzzer_crashes_nothing_and_a_well_formed_client_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let report = chaos::run_fuzz(&options(&dir, 3), Duration::from_secs(30)).expect("the run");
    let failures = report.failures();
    if !failures.is_empty() {
        let kept = dir.keep();
        panic!("{report}\nlogs kept in {}", kept.display());
    }
    for what in ["tikv random bytes", "hostile kv request", "forged raft batch", "forged snapshot"]
    {
        assert!(report.sent.get(what).is_some_and(|n| *n > 0), "no {what} sent:\n{report}");
    }
}
