#!/usr/bin/env bash
# Region lifecycle benchmarks (#12) on real release processes over loopback: PD and three
# stores from etc/config-template.toml (TiKV's defaults), a fresh data directory per run.
#
#   snapshot        a region holding 100 MiB (6,400 keys of 16 KiB random bytes) moves a
#                   follower's replica to a fourth store (`regionstore-ctl operator
#                   transfer-peer --wait`: a learner fed by a snapshot, promoted, the old
#                   replica removed); the new peer then takes the leadership and serves a read. Prints the snapshot's generate/send/receive/ingest times and rates
#                   from the stores' logs, and the wall time of each step.
#   gc              put throughput with log GC (the template's) and without it
#                   (raft-log-gc-tick-interval = 1000h), alternating, PAIRS pairs of 60 s runs.
#   raft-size MIN   puts overwrite a fixed set of 10,000 keys (1 KiB values) for MIN minutes;
#                   every minute prints the bytes written so far and each store's raft and KV
#                   directory sizes (the raft engine must plateau, not grow with the bytes).
#   merge-latency N the keys load/0..N*1000 in N+1 regions (split by the ctl); the regions
#                   are merged left to right, one after the other (`regionstore-ctl region
#                   merge --key`, which waits for PD's operator to end), each then written
#                   through its old source range. Times from the merge command.
#   merge-dip [N]   mixed put/get (16 clients, 60 s) over 100,000 keys in 41 regions; from the
#                   20th second, up to N (40) merges one after the other until the 40th.
#                   Throughput of the seconds with a merge running against the others; N = 0
#                   is the control run.
#   merge-auto N    N+1 nearly empty regions, PD's automatic merge with the template's limits
#                   but split-merge-interval 10s: the region count every 5 s until it
#                   reaches one (the rate at which auto merge retires regions; 15 min at most).
#
# Usage: BIN=$CARGO_TARGET_DIR/release benches/lifecycle.sh MODE [MIN|PAIRS|N]
# (SNAP_IO=0B: the snapshot mode without the I/O limit; WAL_LIMIT=256MiB: the raft-size mode
# with a smaller max-total-wal-size; KEEP=1 keeps the data and logs.)
# Needs nothing but the release binaries (make build-release) and python3 for the JSON.
set -euo pipefail

BIN=${BIN:?BIN must point at the directory of the release binaries}
MODE=${1:?snapshot, gc or raft-size}
ARG=${2:-}
PD=127.0.0.1:24790
WORK=$(mktemp -d /tmp/regionstore-lifecycle.XXXXXX)
pids=()

stop_all() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
trap 'stop_all; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT

ctl() { "$BIN/regionstore-ctl" --pd "$PD" "$@"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
now_ms() { date +%s%3N; }

# config FILE [KEY VALUE]...: the template with the given [raftstore] keys set.
config() {
    local out=$1
    shift
    cp etc/config-template.toml "$out"
    while [ $# -gt 0 ]; do
        sed -i "s|^# $1 = .*|$1 = $2|" "$out"
        grep -q "^$1 = $2" "$out" || { echo "no key $1 in the template" >&2; exit 1; }
        shift 2
    done
}

# start_store DIR CONFIG I: store I (1-based) of the cluster in DIR.
start_store() {
    "$BIN/regionstore-server" --config "$2" --pd "$PD" --addr "127.0.0.1:2426$3" \
        --status-addr "127.0.0.1:2428$3" --data-dir "$1/store-$3" 2>>"$1/store-$3.log" &
    pids+=($!)
}

# start_cluster DIR CONFIG: PD and three stores; returns once a put succeeds.
start_cluster() {
    mkdir -p "$1"
    # PD_TOML: PD's config file (PD's defaults unless set).
    "$BIN/regionstore-pd" --addr "$PD" --data-dir "$1/pd" ${PD_TOML:+--config "$PD_TOML"} \
        2>>"$1/pd.log" &
    pids+=($!)
    for i in 1 2 3; do start_store "$1" "$2" "$i"; done
    for _ in $(seq 1 300); do
        if ctl put __ready__ yes >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    echo "the cluster did not start; logs in $1" >&2
    exit 1
}

# load ARGS...: regionstore-load against the cluster, JSON report on stdout.
load() { "$BIN/regionstore-load" --pd "$PD" --json --quiet "$@"; }

# log_field FILE MESSAGE FIELD: FIELD of the last log line of FILE containing MESSAGE.
log_field() {
    grep "$2" "$1" | tail -1 | sed -n "s/.*[ ,]$3: \([0-9]*\).*/\1/p"
}

mode_snapshot() {
    local dir=$WORK/snapshot cfg=$WORK/store.toml
    # SNAP_IO: snap-io-max-bytes-per-sec (the template's 100MiB unless set; "0B" = unlimited).
    if [ -n "${SNAP_IO:-}" ]; then
        config "$cfg" snap-io-max-bytes-per-sec "\"$SNAP_IO\""
    else
        config "$cfg"
    fi
    echo "snap-io-max-bytes-per-sec: ${SNAP_IO:-100MiB (template)}"
    start_cluster "$dir" "$cfg"
    echo "prefill: 6,400 keys x 16 KiB = 100 MiB"
    load --workload get --key-space 6400 --value-size 16384 --secs 1 --warmup-secs 0 \
        --clients 16 >"$dir/prefill.json"
    local region leader_store
    region=$(ctl --json region list | json 'd[0]["id"]')
    echo "region $region: $(ctl --json region list | json '[len(d), d[0]["approximate_size"]]') (regions, approximate bytes)"
    start_store "$dir" "$cfg" 4
    for _ in $(seq 1 100); do
        [ "$(ctl --json store list | json 'len(d)')" = 4 ] && break
        sleep 0.2
    done
    local store4
    store4=$(ctl --json store list | json '[s["id"] for s in d if s["address"].endswith(":24264")][0]')
    # A follower's replica moves to store 4 (max-replicas is 3).
    local from
    from=$(ctl --json region list | json '[p["store_id"] for p in d[0]["peers"] if p["store_id"] != d[0]["leader"]["store_id"]][0]')
    local t0 t1 t2 t3
    t0=$(now_ms)
    ctl operator transfer-peer "$region" "$from" "$store4" --wait >/dev/null
    t1=$(now_ms)
    ctl operator transfer-leader "$region" "$store4" --wait >/dev/null
    t2=$(now_ms)
    ctl get __ready__ >/dev/null
    t3=$(now_ms)
    for i in 1 2 3; do
        if grep -q "snapshot built" "$dir/store-$i.log"; then leader_store=$i; fi
    done
    local gen_ms gen_bytes send_ms recv_ms recv_bytes ingest_ms applied_ms
    gen_ms=$(log_field "$dir/store-$leader_store.log" "snapshot built" duration_ms)
    gen_bytes=$(log_field "$dir/store-$leader_store.log" "snapshot built" bytes)
    send_ms=$(log_field "$dir/store-$leader_store.log" "snapshot sent.*to_store" duration_ms)
    recv_ms=$(log_field "$dir/store-4.log" "snapshot received" duration_ms)
    recv_bytes=$(log_field "$dir/store-4.log" "snapshot received" bytes)
    ingest_ms=$(log_field "$dir/store-4.log" "snapshot files ingested" duration_ms)
    applied_ms=$(log_field "$dir/store-4.log" "snapshot applied" ms)
    python3 - "$gen_bytes" "$gen_ms" "$send_ms" "$recv_bytes" "$recv_ms" "$ingest_ms" \
        "$applied_ms" "$((t1 - t0))" "$((t2 - t1))" "$((t3 - t2))" <<'PY'
import sys
gb, gms, sms, rb, rms, ims, ams, add, lead, read = (int(x or 0) for x in sys.argv[1:])
mib = lambda b, ms: f"{b / 2**20 / (ms / 1000):.1f} MiB/s" if ms else "n/a"
print(f"| step | bytes | ms | rate |\n|---|---|---|---|")
print(f"| generate (leader) | {gb:,} | {gms:,} | {mib(gb, gms)} |")
print(f"| send (leader, gRPC stream) | {gb:,} | {sms:,} | {mib(gb, sms)} |")
print(f"| receive (new store) | {rb:,} | {rms:,} | {mib(rb, rms)} |")
print(f"| ingest (new store) | {rb:,} | {ims:,} | {mib(rb, ims)} |")
print(f"| apply incl. ingest, region Normal | | {ams:,} | |")
print(f"\n| wall time | ms |\n|---|---|")
print(f"| operator transfer-peer to the new store (learner, snapshot, promotion, removal) | {add:,} |")
print(f"| operator transfer-leader to the new peer | {lead:,} |")
print(f"| first read after that | {read:,} |")
print(f"| new peer serving as leader, from the operator's start | {add + lead + read:,} |")
PY
}

mode_gc() {
    local pairs=${ARG:-2} n=0
    config "$WORK/gc-on.toml"
    config "$WORK/gc-off.toml" raft-log-gc-tick-interval '"1000h"'
    echo "| run | log GC | puts/s | p50 ms | p99 ms | p999 ms | errors |"
    echo "|---|---|---|---|---|---|---|"
    for _ in $(seq 1 "$pairs"); do
        for gc in on off; do
            n=$((n + 1))
            start_cluster "$WORK/gc-$n" "$WORK/gc-$gc.toml"
            load --workload put --clients 16 --secs 60 --warmup-secs 5 --key-space 100000 \
                --value-size 100 >"$WORK/gc-$n.json"
            local compactions=0
            for i in 1 2 3; do
                compactions=$((compactions + $(curl -s "127.0.0.1:2428$i/metrics" 2>/dev/null |
                    sed -n 's/^regionstore_raftstore_raft_log_compactions_total \([0-9]*\).*/\1/p' ||
                    echo 0)))
            done
            json "f'| $n | $gc ($compactions compactions) | {d[\"put\"][\"ops_per_sec\"]:,.0f} | {d[\"put\"][\"latency_ms\"][\"p50\"]} | {d[\"put\"][\"latency_ms\"][\"p99\"]} | {d[\"put\"][\"latency_ms\"][\"p999\"]} | {d[\"errors\"]} |'" <"$WORK/gc-$n.json"
            stop_all
        done
    done
}

mode_raft_size() {
    local minutes=${ARG:-30} dir=$WORK/raft-size cfg=$WORK/store.toml
    # WAL_LIMIT: max-total-wal-size of both engines (the template's 4GiB unless set).
    if [ -n "${WAL_LIMIT:-}" ]; then
        config "$cfg" max-total-wal-size "\"$WAL_LIMIT\""
    else
        config "$cfg"
    fi
    echo "max-total-wal-size: ${WAL_LIMIT:-4GiB (template)}"
    start_cluster "$dir" "$cfg"
    load --workload put --clients 16 --secs $((minutes * 60)) --warmup-secs 0 \
        --key-space 10000 --value-size 1024 >"$dir/load.json" &
    local loader=$!
    local start
    start=$(date +%s)
    echo "| minute | puts so far | raft dirs (MiB, stores 1-3) | KV dirs (MiB) |"
    echo "|---|---|---|---|"
    for m in $(seq 1 "$minutes"); do
        sleep $((start + m * 60 - $(date +%s)))
        local puts=0 raft="" kv=""
        for i in 1 2 3; do
            local p
            p=$(curl -s "127.0.0.1:2428$i/metrics" |
                sed -n 's/^regionstore_raftstore_proposals_total \([0-9]*\).*/\1/p' || true)
            puts=$((puts + ${p:-0}))
            raft+="$(du -sm "$dir/store-$i/raft" | cut -f1) "
            kv+="$(du -sm "$dir/store-$i/db" | cut -f1) "
        done
        echo "| $m | $puts | $raft| $kv|"
    done
    wait "$loader"
    json "f'load: {d[\"put\"][\"ops_per_sec\"]:,.0f} puts/s over the run, p99 {d[\"put\"][\"latency_ms\"][\"p99\"]} ms, {d[\"errors\"]} errors'" <"$dir/load.json"
}

# load_key I: the key regionstore-load writes for index I.
load_key() { printf 'load/%010d' "$1"; }

# split_every DIR STEP N: splits at the load keys STEP, 2 STEP, ..., N STEP.
split_every() {
    for i in $(seq 1 "$3"); do
        ctl region split --key "$(load_key $((i * $2)))" >/dev/null
    done
    echo "regions: $(ctl --json region list | json 'len(d)')"
}

mode_merge_latency() {
    local n=${ARG:-20} dir=$WORK/merge-latency cfg=$WORK/store.toml
    config "$cfg"
    start_cluster "$dir" "$cfg"
    load --workload get --key-space $((n * 1000 + 1000)) --value-size 100 --secs 1 \
        --warmup-secs 0 --clients 16 >"$dir/prefill.json"
    split_every "$dir" 1000 "$n"
    echo "| merge | merge command answered (ms) | a put to the old source range answered (ms) |"
    echo "|---|---|---|"
    local merged=() served=()
    for i in $(seq 1 "$n"); do
        # The region ending at boundary i holds key i*1000-1; its right neighbour is the target.
        local k t0 t1 t2
        k=$(load_key $((i * 1000 - 1)))
        t0=$(now_ms)
        ctl region merge --key "$k" --timeout 60 >/dev/null
        t1=$(now_ms)
        ctl put "$k" merged >/dev/null
        t2=$(now_ms)
        merged+=($((t1 - t0)))
        served+=($((t2 - t0)))
        echo "| $i | $((t1 - t0)) | $((t2 - t0)) |"
    done
    echo "regions after: $(ctl --json region list | json 'len(d)')"
    python3 - "${merged[*]}" "${served[*]}" <<'PY'
import statistics, sys
for name, xs in zip(["merge answered", "old source range served a put"], sys.argv[1:]):
    v = sorted(int(x) for x in xs.split())
    print(f"{name}: mean {statistics.mean(v):.0f} ms, p50 {v[len(v) // 2]} ms, max {v[-1]} ms")
PY
}

mode_merge_dip() {
    local dir=$WORK/merge-dip cfg=$WORK/store.toml merges=${ARG:-40}
    config "$cfg"
    start_cluster "$dir" "$cfg"
    load --workload get --key-space 100000 --value-size 100 --secs 1 --warmup-secs 0 \
        --clients 16 >"$dir/prefill.json"
    split_every "$dir" 2500 40
    local start
    start=$(now_ms)
    load --workload mixed --clients 16 --secs 60 --warmup-secs 0 --no-prefill \
        --key-space 100000 --value-size 100 >"$dir/load.json" &
    local loader=$!
    sleep 20
    local marks=() i=1
    while [ $(($(now_ms) - start)) -lt 40000 ] && [ $i -le "$merges" ]; do
        local t0
        t0=$(now_ms)
        ctl region merge --key "$(load_key $((i * 2500 - 1)))" --timeout 60 >/dev/null
        marks+=("$(((t0 - start) / 1000)):$((($(now_ms) - start) / 1000))")
        i=$((i + 1))
    done
    wait "$loader"
    echo "merges: $((i - 1)), regions after: $(ctl --json region list | json 'len(d)')"
    python3 - "$dir/load.json" "${marks[*]}" <<'PY'
import json, statistics, sys
d = json.load(open(sys.argv[1]))
per = d["ops_per_sec_each_second"]
busy = set()
for m in sys.argv[2].split():
    a, b = (int(x) for x in m.split(":"))
    busy.update(range(a, b + 1))
during = [x for s, x in enumerate(per) if s in busy]
quiet = [x for s, x in enumerate(per) if s not in busy]
row = lambda v: f"{statistics.median(v):,.0f} | {min(v):,} | {len(v)}" if v else "| | 0"
print("| seconds | median ops/s | slowest second | seconds |\n|---|---|---|---|")
print(f"| no merge running | {row(quiet)} |")
print(f"| a merge running | {row(during)} |")
print("each second:", per)
print(f"whole run: {d['all']['ops_per_sec']:,.0f} ops/s, put p99 {d['put']['latency_ms']['p99']} ms, "
      f"get p99 {d['get']['latency_ms']['p99']} ms, max {d['all']['latency_ms']['max']} ms, "
      f"{d['errors']} errors")
PY
}

mode_merge_auto() {
    local n=${ARG:-200} dir=$WORK/merge-auto cfg=$WORK/store.toml
    config "$cfg"
    PD_TOML=$WORK/pd.toml
    printf '[schedule]\nsplit-merge-interval = "10s"\n' >"$PD_TOML"
    start_cluster "$dir" "$cfg"
    load --workload get --key-space "$n" --value-size 100 --secs 1 --warmup-secs 0 \
        --clients 4 >"$dir/prefill.json"
    split_every "$dir" 1 "$n"
    local start
    start=$(now_ms)
    echo "| seconds since the last split | regions |"
    echo "|---|---|"
    while true; do
        local r
        r=$(ctl --json region list | json 'len(d)')
        echo "| $((($(now_ms) - start) / 1000)) | $r |"
        [ "$r" -le 1 ] && break
        [ $(($(now_ms) - start)) -gt 900000 ] && break
        sleep 5
    done
}

case "$MODE" in
snapshot) mode_snapshot ;;
gc) mode_gc ;;
raft-size) mode_raft_size ;;
merge-latency) mode_merge_latency ;;
merge-dip) mode_merge_dip ;;
merge-auto) mode_merge_auto ;;
*)
    echo "unknown mode $MODE (snapshot, gc, raft-size, merge-latency, merge-dip or merge-auto)" >&2
    exit 2
    ;;
esac
