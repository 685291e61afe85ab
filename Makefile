# regionstore: the two commands of the contract are `make run` and `make test`.
#
# Compiled dependencies live outside the checkout (RocksDB alone takes ~13 minutes to build on
# two cores), so a fresh clone reuses them. Override CARGO_TARGET_DIR to build elsewhere.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/regionstore/target
export RUST_BACKTRACE ?= 1
CARGO ?= cargo
CONFIG ?= etc/config-template.toml
BIN := $(CARGO_TARGET_DIR)/release

.PHONY: all deps build build-release test run load bench bench-lifecycle bench-merge chaos fuzz lint fmt clean-data help

all: build

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

deps: ## Install missing system packages (clang/libclang for the RocksDB bindings).
	@bash scripts/ensure-deps.sh

build: deps ## Debug build of every crate and binary.
	$(CARGO) build --workspace --bins

build-release: deps ## Release build of the binaries.
	$(CARGO) build --release --bins

test: deps ## Run every test in the workspace.
	$(CARGO) test --workspace --no-fail-fast

run: build-release ## Start a local cluster (PD + 3 stores, data in ./data) until Ctrl-C.
	@BIN=$(BIN) bash scripts/local-cluster.sh

# What `make load` runs; override, e.g. LOAD_ARGS="--workload put --clients 64 --secs 60".
LOAD_ARGS ?= --workload mixed --clients 16 --secs 20
PD_ADDR ?= 127.0.0.1:2379

load: build-release ## Load a running cluster (make run), ~50 s: 100k-key prefill, 2 s warm-up, 20 s mixed put/get.
	$(BIN)/regionstore-load --pd $(PD_ADDR) $(LOAD_ARGS)

bench: deps ## Run the benchmarks (a few minutes); record results in benches/RESULTS.md.
	$(CARGO) bench --workspace --bench batch_system_throughput --bench batch_system_memory --bench raftstore_put --bench raftstore_split_leader

# Minutes of the raft-engine size run of bench-lifecycle.
RAFT_SIZE_MINUTES ?= 30

bench-lifecycle: build-release ## Region lifecycle on real processes (~45 min): 100 MiB snapshot, puts with/without log GC, raft engine size under overwrites.
	BIN=$(BIN) bash benches/lifecycle.sh snapshot
	BIN=$(BIN) bash benches/lifecycle.sh gc
	BIN=$(BIN) bash benches/lifecycle.sh raft-size $(RAFT_SIZE_MINUTES)

bench-merge: build-release ## Region merge on real processes (~10 min): merge latency, put/get while merging, auto merge rate.
	BIN=$(BIN) bash benches/lifecycle.sh merge-latency 20
	BIN=$(BIN) bash benches/lifecycle.sh merge-dip
	BIN=$(BIN) bash benches/lifecycle.sh merge-auto 200

# Minutes of the soak of `make chaos`.
CHAOS_MINUTES ?= 60
CHAOS_ARGS ?=

chaos: deps ## Nemesis soak on real processes (CHAOS_MINUTES, default 60) with a random seed; fails on any anomaly.
	$(CARGO) build --workspace --tests --bins
	$(CARGO_TARGET_DIR)/debug/regionstore-chaos --minutes $(CHAOS_MINUTES) $(CHAOS_ARGS)

# Seconds of libFuzzer per target of `make fuzz`.
FUZZ_SECS ?= 60
FUZZ_TARGETS := raft_message keys wire

fuzz: deps ## libFuzzer on the decoders (FUZZ_SECS per target; installs cargo-fuzz; stable rustc via RUSTC_BOOTSTRAP).
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -s none $$t -- -max_total_time=$(FUZZ_SECS) || exit 1; done

lint: deps ## Formatting and clippy, warnings as errors.
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code.
	$(CARGO) fmt --all

clean-data: ## Remove local cluster data under ./data.
	rm -rf data
