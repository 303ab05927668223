#!/usr/bin/env python3
"""`make bench`: llm-gateway's filter against plain Envoy (issue 8).

Starts on loopback nginx (fixed provider answers), plain Envoy and Envoy with
llm_gateway.wasm (both `--concurrency 1`), pins the servers to CPU 0 and the
load generator (wrk, and this process) to CPU 1, runs every case on both
Envoys interleaved (plain, filter, filter, plain, ...), and prints one table:
requests/s, p50/p90/p99, Envoy CPU per request from /proc, the CPU the filter
adds per request and the throughput ratio, with the issue's targets beside
them. Then time to first byte of a stream, memory per open stream, growth with
stream length and the .wasm size. A full run rewrites the marked section of
BENCHMARKS.md; `--quick` (about a second per case) only checks the harness.

Any answer with the wrong status or body, and any socket error, makes a run
invalid: it is reported as such, never as a number, and the exit status is 1.

Usage: .venv/bin/python bench/run.py [--quick] [--json PATH] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NoReturn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import fixtures  # noqa: E402
import load  # noqa: E402
import memory  # noqa: E402
import report  # noqa: E402
import servers  # noqa: E402

OPEN_KEY = "sk-bench-open"     # bench/gateway-config.yaml: no limits
BROKE_KEY = "sk-bench-broke"   # max_budget 0: every request refused with 429
PII_KEY = "sk-bench-pii"       # runs the `pii` content filter (pre_call, MASK)
CHAT_PATH = "/v1/chat/completions"

# What the filter's answers must contain: the OpenAI shape and the provider's text.
OPENAI_JSON = ['"chat.completion"', "The benchmark answer"]
ANTHROPIC_JSON = ['"type":"message"', "The benchmark answer"]


@dataclass
class Case:
    """One benchmark case: the same request bytes to both Envoys.

    Plain Envoy gets the request at the provider path the filter would call
    (`plain_path`), so both Envoys carry the same request to the same nginx
    answer; only the filter translates."""
    name: str
    title: str
    body: bytes
    plain_path: str
    filter_check: load.Check
    plain_check: load.Check
    key: str = OPEN_KEY
    connections: int | None = None   # None: --connections


def cases() -> list[Case]:
    one_k = fixtures.chat_1k()
    return [
        Case("anthropic_1k", "1 KB chat -> Anthropic", one_k, "/v1/messages",
             load.Check(200, OPENAI_JSON), load.Check(200, ANTHROPIC_JSON)),
        Case("anthropic_100k", "100 KB multi-turn -> Anthropic", fixtures.chat_100k(), "/v1/messages",
             load.Check(200, OPENAI_JSON), load.Check(200, ANTHROPIC_JSON)),
        Case("passthrough_1k", "1 KB OpenAI-compatible passthrough",
             fixtures.chat_1k(fixtures.PASSTHROUGH_ALIAS), CHAT_PATH,
             load.Check(200, OPENAI_JSON), load.Check(200, OPENAI_JSON)),
        Case("stream_500", "stream, 500 chunks -> Anthropic",
             fixtures.chat_1k(fixtures.STREAM_ALIAS, stream=True), "/stream/v1/messages",
             load.Check(200, ["chat.completion.chunk", '"gateway "', "data: [DONE]"]),
             load.Check(200, ["event: message_stop"])),
        Case("pii_1k", "1 KB chat -> Anthropic, PII masked (pre_call)", fixtures.chat_1k_pii(),
             "/v1/messages", load.Check(200, OPENAI_JSON), load.Check(200, ANTHROPIC_JSON),
             key=PII_KEY),
        Case("refused", "budget-refused (429) vs proxied", one_k, "/v1/messages",
             load.Check(429, ["insufficient_quota"]), load.Check(200, ANTHROPIC_JSON), key=BROKE_KEY),
        Case("cache_hit_1k", "1 KB chat answered from the cache (local)", fixtures.chat_1k_cached(),
             "/v1/messages", load.Check(200, OPENAI_JSON), load.Check(200, ANTHROPIC_JSON)),
        Case("unloaded_1k", "1 KB -> Anthropic, 1 connection", one_k, "/v1/messages",
             load.Check(200, OPENAI_JSON), load.Check(200, ANTHROPIC_JSON), connections=1),
    ]


@dataclass
class Settings:
    """How long and how much: a full run (about 4 minutes) or --quick (about 30 s)."""
    quick: bool
    seconds: float
    warmup: float
    rounds: int
    connections: int
    ttfb_requests: int    # timed stream requests per round and Envoy
    streams: int          # open streams in the memory test
    growth_streams: int   # streams in the stream-length test ...
    growth_events: int    # ... and the deltas each gets after its first ones

    @staticmethod
    def make(quick: bool, connections: int) -> "Settings":
        if quick:
            return Settings(True, 1, 0, 1, connections, 20, 50, 5, 2000)
        return Settings(False, 5, 1, 3, connections, 200, 1000, 20, 50000)


def fail(msg: str) -> NoReturn:
    print(f"bench: {msg}", file=sys.stderr)
    sys.exit(2)


def which(tool: str) -> str:
    found = shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}", f"/usr/bin/{tool}")
                                        if os.access(p, os.X_OK)), None)
    if not found:
        fail(f"`{tool}` not found: install the Debian packages nginx-light and wrk "
             "(`make bench` does that with apt-get when run as root)")
    return found


def raise_nofile(need: int) -> None:
    """Streams held open need ~3 descriptors each across client, Envoy and mock (children inherit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(need, hard), max(need, hard)))
    except (ValueError, OSError):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < need:
        fail(f"open files limit is {soft}, the memory test needs {need}: raise `ulimit -n`")


def cpus() -> tuple[int, int]:
    """(server CPU, client CPU): 0 and 1, or both 0 on a single-CPU machine."""
    avail = sorted(os.sched_getaffinity(0))
    if len(avail) >= 2:
        return avail[0], avail[1]
    print("bench: only one CPU available; servers and load generator share it", file=sys.stderr)
    return avail[0], avail[0]


def sample(port: int, path: str, case: Case, key: str) -> dict:
    """One answer, kept for the report and the smoke test (status, type, body start)."""
    c = load.OneConnection(port)
    try:
        a = c.post(path, case.body, key)
    finally:
        c.close()
    return {"status": a.status, "content_type": a.headers.get("content-type", ""),
            "body": a.body[:4000].decode("utf-8", "replace"), "body_bytes": len(a.body)}


def run_case(case: Case, st: Settings, envoys: dict, client_cpu: int, log) -> dict:
    """Interleaved wrk runs; the median of each figure over the rounds."""
    conns = case.connections or st.connections
    runs: dict[str, list[load.WrkResult]] = {"plain": [], "filter": []}
    body_file = Path(tempfile.gettempdir()) / f"bench-body-{os.getpid()}-{case.name}.json"
    body_file.write_bytes(case.body)
    try:
        def one(target: str, seconds: float) -> load.WrkResult:
            proc = envoys[target]
            path = case.plain_path if target == "plain" else CHAT_PATH
            check = case.plain_check if target == "plain" else case.filter_check
            return load.run_wrk(f"http://127.0.0.1:{proc.port}{path}", body_file, case.key, check,
                                proc.pid, seconds, conns, client_cpu)
        if st.warmup:
            for target in ("plain", "filter"):
                one(target, st.warmup)
        for r in range(st.rounds):
            order = ("plain", "filter") if r % 2 == 0 else ("filter", "plain")
            for target in order:
                res = one(target, st.seconds)
                runs[target].append(res)
                state = "ok" if res.valid else f"INVALID {res.errors} first bad answer: {res.first_bad!r}"
                log(f"  {case.name:15s} round {r + 1} {target:6s} {res.rps:9.0f} req/s "
                    f"{res.cpu_us_per_req:8.1f} us CPU/req  (Envoy {res.envoy_cpu_share:4.0%} "
                    f"of a CPU, wrk {res.wrk_cpu_share:4.0%})  {state}")
    finally:
        body_file.unlink(missing_ok=True)
    out = {"name": case.name, "title": case.title, "connections": conns, "body_bytes": len(case.body)}
    for target, rs in runs.items():
        valid = all(r.valid for r in rs)
        out[target] = {
            "valid": valid,
            "runs": [asdict(r) for r in rs],
            "rps": statistics.median(r.rps for r in rs),
            "p50_us": statistics.median(r.p50_us for r in rs),
            "p90_us": statistics.median(r.p90_us for r in rs),
            "p99_us": statistics.median(r.p99_us for r in rs),
            "cpu_us_per_req": statistics.median(r.cpu_us_per_req for r in rs),
            "requests": sum(r.requests for r in rs),
        }
    return out


def ttfb(case: Case, st: Settings, envoys: dict) -> dict:
    """Stream timing at one connection, interleaved rounds, medians.

    `burst`: the 500-chunk stream from nginx, which writes it all at once, so
    the first byte waits for whatever Envoy read with it; time to the first
    byte and to the end. `first_event`: a stream from the hold mock whose
    opening events arrive alone (as from a provider that is still generating);
    time to the first byte the client gets, on a new connection each time."""
    hold_body = fixtures.chat_1k(fixtures.HOLD_ALIAS, stream=True)
    first_marks = {"plain": [b"message_start"], "filter": [b"chat.completion.chunk"]}
    times = {t: {"first": [], "total": [], "held": []} for t in envoys}
    bad = {t: 0 for t in envoys}
    for r in range(st.rounds):
        for target in (("plain", "filter") if r % 2 == 0 else ("filter", "plain")):
            proc = envoys[target]
            path = case.plain_path if target == "plain" else CHAT_PATH
            check = case.plain_check if target == "plain" else case.filter_check
            conn = load.OneConnection(proc.port)
            try:
                for i in range(st.ttfb_requests + 5):
                    a = conn.post(path, case.body, case.key)
                    bad[target] += not (a.status == check.status and all(m.encode() in a.body for m in check.marks))
                    if i >= 5:   # the first answers warm up, checked but not timed
                        times[target]["first"].append(a.first_byte_s * 1e6)
                        times[target]["total"].append(a.total_s * 1e6)
            finally:
                conn.close()
            held_path = "/hold/v1/messages" if target == "plain" else CHAT_PATH
            for i in range(st.ttfb_requests + 5):
                conn = load.OneConnection(proc.port)
                try:
                    a = conn.post(held_path, hold_body, OPEN_KEY, first_only=True)
                finally:
                    conn.close()
                bad[target] += a.status != 200
                if i >= 5:
                    times[target]["held"].append(a.first_byte_s * 1e6)
            # The first byte is the start of the first event the client can use.
            conn = load.OneConnection(proc.port)
            try:
                a = conn.post(held_path, hold_body, OPEN_KEY, first_only=True)
            finally:
                conn.close()
            bad[target] += not any(m in a.body for m in first_marks[target])
    out = {}
    for target, t in times.items():
        out[target] = {"valid": bad[target] == 0, "bad": bad[target], "requests": len(t["first"]),
                       "first_byte_us": statistics.median(t["first"]),
                       "total_us": statistics.median(t["total"]),
                       "held_first_byte_us": statistics.median(t["held"])}
    return out


def run_memory(st: Settings, envoys: dict, hold_port: int, log) -> dict:
    body = fixtures.chat_1k(fixtures.HOLD_ALIAS, stream=True)
    out = {}
    for target in ("plain", "filter"):
        path = "/hold/v1/messages" if target == "plain" else CHAT_PATH
        res = asyncio.run(memory.measure(envoys[target], path, body, OPEN_KEY, hold_port,
                                         st.streams, st.growth_streams, st.growth_events))
        d = asdict(res)
        for kind in ("rss", "heap", "wasm", "used"):
            d[f"delta_{kind}_kib"] = res.delta_kib(kind)
            d[f"growth_{kind}_kib_per_stream"] = res.growth_kib_per_stream(kind)
        out[target] = d
        log(f"  memory {target:6s} {res.streams} streams: {res.idle} -> {res.open} KiB; "
            f"{res.growth_streams} streams x {res.growth_events} more events: {res.short} -> {res.long} KiB")
    return out


def machine(envoy: str, nginx: str) -> dict:
    def cmd(args: list[str]) -> str:
        try:
            p = subprocess.run(args, capture_output=True, text=True, timeout=60)
            return (p.stdout + p.stderr).strip()
        except OSError as e:
            return str(e)
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mhz = re.search(r"^cpu MHz\s*:\s*(.+)$", cpuinfo, re.M)
    mem = re.search(r"^MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text(), re.M)
    envoy_v = re.search(r"version: (\S+)", cmd([envoy, "--version"]))
    git = cmd(["git", "-C", str(ROOT), "describe", "--always", "--dirty"])
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": model.group(1).strip() if model else "?",
        "cpu_mhz": mhz.group(1).strip() if mhz else "?",
        "nproc": os.cpu_count(),
        "mem_gib": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else 0,
        "kernel": platform.release(),
        # "<commit>/1.40.0/Clean/RELEASE/BoringSSL" -> "1.40.0"
        "envoy": envoy_v.group(1).split("/")[1] if envoy_v and envoy_v.group(1).count("/") else "?",
        "nginx": cmd([nginx, "-v"]).replace("nginx version: nginx/", ""),
        "wrk": cmd(["wrk", "-v"]).splitlines()[0].split(" [")[0].replace("wrk ", "") if shutil.which("wrk") else "?",
        "git": git,
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
    }


LOG_TROUBLE = re.compile(r"panicked|\[critical\]|wasm.*(failed|abort|unreachable)|Wasm VM failed", re.I)


def log_trouble(work: Path) -> list[str]:
    lines = []
    for name in ("plain", "filter"):
        p = work / f"envoy-{name}.log"
        if p.exists():
            lines += [f"{name}: {ln}" for ln in p.read_text(errors="replace").splitlines() if LOG_TROUBLE.search(ln)]
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="about a second per case: checks the harness, judges nothing")
    ap.add_argument("--json", type=Path, help="write every figure (and sample answers) here")
    ap.add_argument("--no-write", action="store_true", help="do not rewrite BENCHMARKS.md")
    ap.add_argument("--connections", type=int, default=16, help="wrk connections for the loaded cases")
    ap.add_argument("--envoy", default=str(ROOT / ".venv" / "bin" / "envoy"))
    ap.add_argument("--wasm", type=Path, default=ROOT / "target" / "wasm32-wasip1" / "release" / "llm_gateway.wasm")
    ap.add_argument("--bin", type=Path, default=ROOT / "target" / "release" / "llm-gateway")
    ap.add_argument("--only", help="comma-separated case names (plus 'memory', 'ttfb'); default: all")
    args = ap.parse_args()
    started = time.monotonic()

    nginx = which("nginx")
    which("wrk")
    which("taskset")
    for p, what in ((Path(args.envoy), "envoy (make venv)"), (args.wasm, "the .wasm (make build)"),
                    (args.bin, "llm-gateway (cargo build --release --bin llm-gateway)")):
        if not p.exists():
            fail(f"{p} missing: build {what}")
    st = Settings.make(args.quick, args.connections)
    raise_nofile(3 * st.streams + 4096)
    server_cpu, client_cpu = cpus()
    os.sched_setaffinity(0, {client_cpu})   # this process is a client too (TTFB, memory)
    only = set(args.only.split(",")) if args.only else None

    def log(msg: str) -> None:
        print(msg, flush=True)

    facts = machine(args.envoy, nginx)
    facts["wasm_bytes"] = args.wasm.stat().st_size
    facts["wasm_sha256"] = hashlib.sha256(args.wasm.read_bytes()).hexdigest()[:16]
    facts["pinning"] = f"servers on CPU {server_cpu}, wrk and the Python clients on CPU {client_cpu}"
    results: dict = {"quick": st.quick, "settings": asdict(st), "machine": facts, "cases": [],
                     "ttfb": None, "memory": None, "samples": {}}

    work = Path(tempfile.mkdtemp(prefix="llm-gateway-bench-"))
    docroot = work / "www"
    fixtures.write_docroot(docroot)
    procs: list[servers.Proc] = []
    try:
        ngx = servers.start_nginx(work, docroot, server_cpu)
        procs.append(ngx)
        hold = servers.start_hold_mock(server_cpu)
        procs.append(hold)
        boots = servers.bootstraps(servers.render(args.bin, args.wasm.resolve(), work, ngx.port, hold.port),
                                   ngx.port, hold.port)
        envoys = {}
        for name in ("plain", "filter"):
            envoys[name] = servers.start_envoy(name, args.envoy, boots[name], work, server_cpu)
            procs.append(envoys[name])
        log(f"bench: nginx :{ngx.port}, plain Envoy :{envoys['plain'].port}, filter Envoy "
            f":{envoys['filter'].port} ({facts['pinning']}); work dir {work}")

        all_cases = cases()
        for case in all_cases:
            results["samples"][case.name] = {
                "plain": sample(envoys["plain"].port, case.plain_path, case, case.key),
                "filter": sample(envoys["filter"].port, CHAT_PATH, case, case.key),
            }
        # Memory first, on fresh Envoys: later load would leave freed memory that new streams reuse.
        if only is None or "memory" in only:
            log("memory: open streams held by the hold mock")
            results["memory"] = run_memory(st, envoys, hold.port, log)
        for case in all_cases:
            if only is None or case.name in only:
                log(f"case {case.name}: {case.title}")
                results["cases"].append(run_case(case, st, envoys, client_cpu, log))
        if only is None or "ttfb" in only:
            log("stream timing at one connection")
            results["ttfb"] = ttfb(next(c for c in all_cases if c.name == "stream_500"), st, envoys)
        for name, proc in envoys.items():
            if proc.popen.poll() is not None:
                results.setdefault("problems", []).append(f"envoy ({name}) exited with {proc.popen.returncode}")
    finally:
        for p in reversed(procs):
            p.stop()
    results["log_trouble"] = log_trouble(work)
    results["machine"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    results["seconds"] = round(time.monotonic() - started, 1)

    judged = report.judge(results)
    text = report.render(results, judged)
    print()
    print(text)
    if args.json:
        args.json.write_text(json.dumps({**results, "judged": judged}, indent=2))
    if not st.quick and not args.no_write and only is None:
        report.write_benchmarks_md(ROOT / "BENCHMARKS.md", text)
        print(f"bench: wrote {ROOT / 'BENCHMARKS.md'}")
    if judged["invalid"] or results["log_trouble"]:
        print(f"bench: kept {work} (configs and Envoy logs)", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    if judged["invalid"]:
        print(f"bench: INVALID runs: {', '.join(judged['invalid'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
