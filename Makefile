# claudemeshd — build, test, lint, demo, bench.
# One shared target dir for the workspace; everything runs on loopback only.
# Binaries are found where cargo puts them: `cargo metadata` names the target dir, so
# CARGO_TARGET_DIR (or a `build.target-dir` in a cargo config) is honoured.
CARGO ?= cargo
TARGET_DIR = $(shell $(CARGO) metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
BIN = $(TARGET_DIR)/debug/claudemeshd

.PHONY: build build-bin test lint fmt demo bench release torture

build:
	$(CARGO) build --workspace --all-targets

# Only the binary: what `make demo` runs (quick in a fresh target dir).
build-bin:
	$(CARGO) build --bin claudemeshd

test: build
	$(CARGO) test --workspace -- --test-threads=2

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

demo: build-bin
	BIN="$(BIN)" scripts/demo.sh

release:
	$(CARGO) build --release --workspace --bins

bench:
	$(CARGO) run --release -p claudemesh-actors --example store_bench
	$(CARGO) bench --bench daemon
	$(CARGO) bench --bench drain
	$(CARGO) bench --bench scale

# Long scenarios kept out of `make test` (ignored tests): e.g. the pacing against a
# rate-limited broker, ~50 s.
torture: build
	$(CARGO) test --test it -- --ignored --test-threads=1
