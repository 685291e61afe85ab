#!/usr/bin/env bash
# Runs a local cluster: one regionstore-pd and three regionstore-server processes on loopback,
# data under ./data/local-cluster (kept between runs: running it again restarts the same
# cluster), logs next to the data. Waits until the cluster serves, prints how to use it, and
# stops everything cleanly (SIGTERM) on Ctrl-C. STORE_CONFIG names the stores' config file
# (default etc/config-template.toml).
set -euo pipefail

BIN=${BIN:?BIN must point at the directory of the release binaries}
DATA=${DATA:-data/local-cluster}
PD_ADDR=${PD_ADDR:-127.0.0.1:2379}
mkdir -p "$DATA"

pids=()
stop() {
    echo
    echo "stopping the cluster..."
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    echo "stopped; data kept in $DATA (make clean-data removes it)"
}
trap stop EXIT
trap 'exit 0' INT TERM

"$BIN/regionstore-pd" --addr "$PD_ADDR" --data-dir "$DATA/pd" 2>>"$DATA/pd.log" &
pids+=($!)
for i in 1 2 3; do
    "$BIN/regionstore-server" --config "${STORE_CONFIG:-etc/config-template.toml}" --pd "$PD_ADDR" \
        --addr "127.0.0.1:2016$i" --status-addr "127.0.0.1:2018$i" \
        --data-dir "$DATA/store-$i" 2>>"$DATA/store-$i.log" &
    pids+=($!)
done

echo "waiting for the cluster to serve (logs in $DATA/*.log)..."
for _ in $(seq 1 120); do
    if "$BIN/regionstore-ctl" --pd "$PD_ADDR" put __ready__ yes >/dev/null 2>&1; then
        "$BIN/regionstore-ctl" --pd "$PD_ADDR" delete __ready__ >/dev/null 2>&1 || true
        cat <<MSG

regionstore is running: PD at $PD_ADDR, stores at 127.0.0.1:20161..20163.

  $BIN/regionstore-ctl --pd $PD_ADDR put hello world
  $BIN/regionstore-ctl --pd $PD_ADDR get hello
  $BIN/regionstore-ctl --pd $PD_ADDR scan --start a --end z
  $BIN/regionstore-ctl --pd $PD_ADDR store list
  $BIN/regionstore-ctl --pd $PD_ADDR region list
  $BIN/regionstore-ctl --pd $PD_ADDR region split --key m
  $BIN/regionstore-ctl --pd $PD_ADDR cluster status

The official client works too: tikv_client::RawClient::new(vec!["$PD_ADDR"]).
Press Ctrl-C to stop the cluster.
MSG
        while true; do
            for pid in "${pids[@]}"; do
                if ! kill -0 "$pid" 2>/dev/null; then
                    echo "process $pid exited; see $DATA/*.log"
                    exit 1
                fi
            done
            sleep 2
        done
    fi
    sleep 1
done
echo "the cluster did not start serving within 2 minutes; see $DATA/*.log" >&2
exit 1
