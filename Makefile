# Rivulet: one cargo profile (release) for the demo, the tests and the benchmarks, so
# RocksDB's C++ is compiled once. The target directory lives outside the checkout.
CARGO_TARGET_DIR ?= $(HOME)/.cache/rivulet/target
export CARGO_TARGET_DIR

CARGO ?= cargo

.PHONY: all setup build run test fmt clippy bench bench-flink profile images

all: build

## setup: install the native build dependencies, tansu (Kafka broker) and moto (S3 server)
setup:
	scripts/setup.sh

## build: build everything (binaries, tests) with the release profile
build:
	$(CARGO) build --release --workspace --all-targets

## run: the demo: a clicks generator into Kafka, windowed counts out of it
run: setup build
	scripts/demo.sh

## images: the worker and operator images (rivulet/worker:VERSION, rivulet/operator:VERSION) from the release binaries; BASE=image picks the base (default debian:bookworm-slim, made with debootstrap when no registry is reachable)
images: build
	scripts/images.sh

## bench: Nexmark through Kafka (tansu on loopback), every variant at each parallelism in BENCH_PARALLELISM (comma-separated workers per job, default 1,2); writes bench/results/<UTC date>.md
BENCH_EVENTS ?= 1000000
BENCH_PARALLELISM ?= 1,2
bench: setup build
	$(CARGO_TARGET_DIR)/release/rivulet-bench run --events $(BENCH_EVENTS) --parallelism $(BENCH_PARALLELISM)

## bench-flink: the Flink comparison (bids per auction in tumbling 10 s windows) on Rivulet, in process and through Kafka, and on a local Flink (PyPI apache-flink, Java 17; installed in a virtualenv) in the same run, at each parallelism in BENCH_PARALLELISM; writes bench/results/<UTC date>-flink.md
FLINK_EVENTS ?= 5000000
bench-flink: setup build
	$(CARGO_TARGET_DIR)/release/rivulet-bench flink --events $(FLINK_EVENTS) --parallelism $(BENCH_PARALLELISM) --python "$$(scripts/setup-flink.sh)"

## profile: a perf CPU profile of one query in process (QUERY=q5-heap, EVENTS=300000)
QUERY ?= q5-heap
EVENTS ?= 300000
profile: build
	bench/scripts/profile.sh $(QUERY) $(EVENTS)

## test: formatting, lints, then every test (unit and end-to-end)
test: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	$(CARGO) build --release --workspace --bins
	$(CARGO) test --release --workspace

## fmt: format the code
fmt:
	$(CARGO) fmt --all

## clippy: lints, warnings are errors
clippy:
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
