#!/usr/bin/env bash
# The JSON scanner's unit tests built for wasm32-wasip1 (with SIMD, as the
# filter is: .cargo/config.toml) and run in Node's V8 through WASI, so the
# wasm-only SIMD path (crates/codec/src/json_in.rs `plain_run`) is tested too; native
# `cargo test` runs the portable path. Node is the Debian package nodejs
# (installed here when missing, as root or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v node >/dev/null || tools/ensure-debs.sh nodejs
out=$(cargo test --release --target wasm32-wasip1 -p llm-gateway-codec --lib --no-run 2>&1) || { echo "$out" >&2; exit 1; }
test_wasm=$(echo "$out" | grep -o 'target/wasm32-wasip1/release/deps/llm_gateway_codec-[0-9a-f]*\.wasm' | tail -1)
[ -n "$test_wasm" ] || { echo "wasm-unit: no test binary in cargo's output" >&2; echo "$out" >&2; exit 1; }
node --no-warnings tools/wasi-test.mjs "$test_wasm" json_in
