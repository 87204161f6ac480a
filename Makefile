# claudemeshd — build, test, lint, demo, bench.
# One shared target dir for the workspace; everything runs on loopback only.
CARGO ?= cargo
BIN := target/debug/claudemeshd

.PHONY: build test lint fmt demo bench release

build:
	$(CARGO) build --workspace --all-targets

test: build
	$(CARGO) test --workspace -- --test-threads=2

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

demo: build
	BIN=$(BIN) scripts/demo.sh

release:
	$(CARGO) build --release --workspace --bins

bench:
	$(CARGO) run --release -p claudemesh-actors --example store_bench
	$(CARGO) bench --bench daemon
