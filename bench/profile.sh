#!/usr/bin/env bash
# Instructions per request of each hot path, natively, under callgrind
# (repeatable on a busy machine). Usage: bench/profile.sh [case ...]
# Counts only what runs inside `hotpath::measure` (examples/hotpath.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/profiling/examples/hotpath
cargo build --quiet --profile profiling --example hotpath
cases=("$@")
if [ ${#cases[@]} -eq 0 ]; then
  mapfile -t cases < <("$BIN" | awk '{print $1}')
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '%-30s %14s %12s\n' case instructions/req iterations
for c in "${cases[@]}"; do
  # Fewer iterations for the big cases: the count per request is exact anyway.
  case $c in
    anthropic_100k) n=20 ;;
    anthropic_stream_500*) n=20 ;;
    *) n=200 ;;
  esac
  valgrind --tool=callgrind --callgrind-out-file="$out/$c.out" \
    --collect-atstart=no --toggle-collect='hotpath::measure*' \
    "$BIN" "$c" "$n" >/dev/null 2>"$out/$c.log"
  total=$(awk '/^(summary|totals):/ {print $2; exit}' "$out/$c.out")
  printf '%-30s %14d %12d\n' "$c" $((total / n)) "$n"
done
echo
echo "heap held by one streaming request (native, examples/hotpath.rs memory):"
"$BIN" memory | sed 's/^/  /'

# The same cases as wasm in V8 (Node's WASI), when node is installed.
if command -v node >/dev/null; then
  cargo build --quiet --profile profiling --example hotpath --target wasm32-wasip1
  echo
  echo "wall-clock per iteration in V8 (wasm32-wasip1, node $(node --version)):"
  for c in "${cases[@]}"; do
    case $c in
      anthropic_100k) n=100 ;;
      anthropic_stream_500*) n=20 ;;
      *) n=2000 ;;
    esac
    node --no-warnings bench/v8time.mjs target/wasm32-wasip1/profiling/examples/hotpath.wasm "$c" "$n" | sed 's/^/  /'
  done
fi
