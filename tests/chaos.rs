//! The nemesis harness in `make test`: short runs of `regionstore-chaos`'s library on a fixed
//! set of seeds against real processes (this build's binaries, which have failpoints). Every
//! fault kind is injected (not only scheduled: the cluster may refuse an admin command) at
//! least once over the set, and no run may find an anomaly or lose an acknowledged write.
//! The long soak with random seeds is `make chaos`.

use std::time::Duration;

use chaos::cluster::Binaries;
use chaos::schedule::Kind;

/// Fixed, so that CI is repeatable; a failure prints its seed for `regionstore-chaos --seed`.
const SEEDS: [u64; 2] = [20_261_203, 7_310_541];
/// Each seed's run; the schedule puts every kind into the first ~30 s of a run.
const RUN: Duration = Duration::from_secs(70);

fn options(dir: &tempfile::TempDir, seed: u64, stores: usize) -> chaos::Options {
    chaos::Options {
        seed,
        duration: RUN,
        stores,
        clients: 4,
        bins: Binaries {
            server: env!("CARGO_BIN_EXE_regionstore-server").into(),
            pd: env!("CARGO_BIN_EXE_regionstore-pd").into(),
            ctl: env!("CARGO_BIN_EXE_regionstore-ctl").into(),
        },
        dir: dir.path().join(format!("run-{seed}")),
        keep: false,
        power_loss: true,
    }
}

#[test]
fn short_nemesis_runs_on_a_fixed_seed_set_inject_every_fault_kind_and_find_no_anomaly() {
    let dir = tempfile::tempdir().unwrap();
    let mut injected: std::collections::BTreeMap<Kind, usize> = Default::default();
    for seed in SEEDS {
        let summary = chaos::run(&options(&dir, seed, 5)).expect("the run completes");
        if summary.failed() {
            let kept = dir.keep();
            panic!("{summary}\nlogs kept in {}", kept.display());
        }
        assert!(summary.ops_ok > 500, "too little work got done:\n{summary}");
        for k in Kind::ALL {
            *injected.entry(k).or_default() += summary.injected(k);
        }
    }
    for k in Kind::ALL {
        assert!(injected[&k] > 0, "no {} fault was injected by seeds {SEEDS:?}", k.name());
    }
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
    let report =
        chaos::run_fuzz(&options(&dir, SEEDS[0], 3), Duration::from_secs(30)).expect("the run");
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
