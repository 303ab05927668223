#!/usr/bin/env python3
"""`make bench-floor`: what any proxy-wasm filter costs here, step by step.

Runs the 1 KB passthrough case of bench/run.py (plain Envoy and Envoy with a
filter, interleaved, same pinning) once per mode of bench/floor (a filter
with no logic that does only host work llm-gateway's filter must do; see
bench/floor/src/lib.rs), then once with llm_gateway.wasm itself, and prints
the Envoy CPU each adds per request over plain Envoy. The difference between
the last floor row and llm_gateway is what the gateway's own work costs
(authentication, routing, budgets, metrics, translation); the floor rows are
what no proxy-wasm filter in Envoy can avoid. Writes the marked floor
section of BENCHMARKS.md unless --no-write.

Usage: .venv/bin/python bench/floor.py --floor-wasm PATH [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import report  # noqa: E402
BEGIN = "<!-- floor:begin (written by `make bench-floor`) -->"
END = "<!-- floor:end -->"

MODES = [
    ("noop", "a filter whose callbacks return at once"),
    ("buf replace", "+ hold the headers for the body, read it into the VM and write it back"),
    ("buf replace hdr route", "+ remove 7 and set 8 request headers, clear_route_cache"),
    ("buf replace hdr route resp state",
     "+ hold, read and write back the response; 4 response header edits; 8 filter-state values"),
]


def run_case(extra_env: dict[str, str], quick: bool, passthrough: list[str]) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [sys.executable, str(HERE / "run.py"), "--only", "passthrough_1k", "--no-write",
           "--json", str(out), *passthrough]
    if quick:
        cmd.append("--quick")
    env = {**os.environ, **extra_env}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode not in (0, 1):   # 1: targets missed, still measured
        sys.exit(f"bench-floor: run.py failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    case = json.loads(out.read_text())["cases"][0]
    out.unlink()
    if not (case["plain"]["valid"] and case["filter"]["valid"]):
        sys.exit("bench-floor: a run was INVALID (wrong status or body); see run.py's output")
    return case


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--floor-wasm", type=Path, required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args, passthrough = ap.parse_known_args()
    rows = []
    for mode, what in MODES:
        case = run_case({"BENCH_FLOOR": f"{args.floor_wasm.resolve()}:{mode}"}, args.quick, passthrough)
        rows.append((f"floor `{mode}`", what, case))
        print(f"bench-floor: {mode}: done", file=sys.stderr)
    case = run_case({}, args.quick, passthrough)
    rows.append(("llm_gateway.wasm", "the gateway: key, route, count, translate, observe", case))
    lines = [
        "| filter | what it does | plain µs/req | with filter µs/req | added µs/req | throughput ratio |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for name, what, c in rows:
        p, f = c["plain"], c["filter"]
        lines.append(f"| {name} | {what} | {p['cpu_us_per_req']:.1f} | {f['cpu_us_per_req']:.1f} | "
                     f"+{f['cpu_us_per_req'] - p['cpu_us_per_req']:.1f} | {f['rps'] / p['rps']:.2f}x |")
    mode_note = "quick run: not a measurement" if args.quick else "medians of the interleaved rounds"
    lines.append("")
    lines.append(f"1 KB OpenAI-compatible passthrough, Envoy CPU per request; {mode_note}.")
    table = "\n".join(lines)
    print(table)
    if not args.no_write and not args.quick:
        path = ROOT / "BENCHMARKS.md"
        report.write_benchmarks_md(path, table, BEGIN, END)
        print(f"bench-floor: wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
