# regionstore: the two commands of the contract are `make run` and `make test`.
#
# Compiled dependencies live outside the checkout (RocksDB alone takes ~13 minutes to build on
# two cores), so a fresh clone reuses them. Override CARGO_TARGET_DIR to build elsewhere.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/regionstore/target
export RUST_BACKTRACE ?= 1
CARGO ?= cargo
CONFIG ?= etc/config-template.toml
BIN := $(CARGO_TARGET_DIR)/release

.PHONY: all deps build build-release test run load bench lint fmt clean-data help

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

lint: deps ## Formatting and clippy, warnings as errors.
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code.
	$(CARGO) fmt --all

clean-data: ## Remove local cluster data under ./data.
	rm -rf data
