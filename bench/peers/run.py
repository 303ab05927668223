#!/usr/bin/env python3
"""`make bench-peers`: llm-gateway beside its peers, in one run.

The same 1 KB OpenAI chat request (bench/fixtures.py) through four servers to
the same nginx provider mock (bench/nginx.conf, its OpenAI-compatible
/v1/chat/completions answer):

  llm-gateway   Envoy with llm_gateway.wasm, the passthrough alias `fast` of
                bench/gateway-config.yaml, rendered and started as `make bench` does
  plain Envoy   the same Envoy without the filter (`make bench`'s plain Envoy)
  LiteLLM       the LiteLLM proxy (PyPI `litellm[proxy]`), one worker, no database,
                a master key that every request sends
  Portkey       the Portkey gateway (npm `@portkey-ai/gateway`) on Node, headless,
                with the provider headers it expects (openai, custom host = nginx)

Every server is pinned to CPU 0 (`taskset`), wrk and this process to CPU 1.
Each gateway is warmed up (WARM_REQUESTS requests or WARM_MAX_SECONDS: Portkey's
Node JIT needs thousands before its cost settles), then measured in interleaved rounds
(the order rotates each round): wrk -c16 for throughput, p50/p99 and CPU per
request, and wrk -c1 for the latency one request adds. CPU per request is
utime + stime of the server's whole process tree (every thread, children
included) from /proc over the run, divided by the completed requests. Every
answer is checked (status 200 and the mock's text, bench/peers/wrk.lua on top
of bench/wrk.lua): a run with one wrong answer or socket error is INVALID,
never a number, and the exit status is 1. A measured run during which other
processes (or the hypervisor) took over CONTENDED_SHARE of the servers' CPU
(/proc/stat for that CPU, less our servers' own ticks) is CONTENDED: printed,
not written, exit status 1.

The peers are installed into target/bench-peers/ (a scratch venv and npm
prefix, kept between runs); nothing of theirs enters the product.

Usage: .venv/bin/python bench/peers/run.py [--quick] [--no-write] [--only NAMES] [--json PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NoReturn

HERE = Path(__file__).resolve().parent          # bench/peers
BENCH = HERE.parent                               # bench
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import fixtures  # noqa: E402
import load  # noqa: E402
import report  # noqa: E402
import servers  # noqa: E402


def _bench_run():
    """bench/run.py as a module (not `import run`: this file is a run.py too)."""
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = mod   # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


bench_run = _bench_run()

# The peers, pinned. LiteLLM: the newest `litellm[proxy]` whose dependencies the
# registry can install (1.108.8 and later pin litellm-enterprise / litellm-proxy-extras
# / litellm-proxy releases it does not have). Portkey: the newest on npm.
LITELLM_VERSION = "1.108.7"
PORTKEY_VERSION = "1.15.2"
SCRATCH = ROOT / "target" / "bench-peers"
LITELLM_VENV = SCRATCH / "litellm-venv"
PORTKEY_DIR = SCRATCH / "portkey"

BEGIN = "<!-- peers:begin (written by `make bench-peers`) -->"
END = "<!-- peers:end -->"

CHAT_PATH = "/v1/chat/completions"
GATEWAY_KEY = "sk-bench-open"                 # bench/gateway-config.yaml: no limits
LITELLM_MASTER_KEY = "sk-bench-litellm-master"
# Every answer: the OpenAI chat.completion shape and the mock's text.
CHECK = load.Check(200, ['"chat.completion"', "The benchmark answer"])
# Warm-up per gateway: this many requests, or WARM_MAX_SECONDS, whichever comes first (and
# at least 2 s). Portkey on Node costs ~3 ms CPU per request cold and settles at ~1.3 ms after
# 7,000-8,000 requests here; the LiteLLM proxy does not get cheaper with warm-up.
WARM_REQUESTS = 10000
WARM_MAX_SECONDS = 30
# A measured run during which other processes (or the hypervisor: steal) took more than
# this share of the servers' CPU is CONTENDED: printed, never written to BENCHMARKS.md.
CONTENDED_SHARE = 0.05

ORDER = ("llm-gateway", "plain", "litellm", "portkey")
LABELS = {"llm-gateway": "llm-gateway (Envoy + filter)", "plain": "plain Envoy",
          "litellm": "LiteLLM proxy", "portkey": "Portkey gateway"}


@dataclass
class Settings:
    quick: bool
    seconds: float          # one measured wrk run at -c{connections}
    latency_seconds: float  # one measured wrk run at -c1
    rounds: int
    warm_requests: int
    warm_min_seconds: float
    warm_max_seconds: float
    connections: int

    @staticmethod
    def make(quick: bool, connections: int) -> "Settings":
        if quick:
            return Settings(True, 1, 1, 1, 0, 1, 1, connections)
        return Settings(False, 5, 3, 3, WARM_REQUESTS, 2, WARM_MAX_SECONDS, connections)


@dataclass
class Target:
    """One server under test and how to ask it."""
    name: str
    proc: servers.Proc
    version: str
    key: str
    headers: dict[str, str] = field(default_factory=dict)
    path: str = CHAT_PATH


def fail(msg: str) -> NoReturn:
    print(f"bench-peers: {msg}", file=sys.stderr)
    sys.exit(2)


# ---- CPU of a whole process tree ---------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def tree_pids(root: int) -> list[int]:
    """`root` and every live descendant."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st:
                children.setdefault(int(st[1]), []).append(int(d))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def tree_ticks(root: int) -> int:
    """utime + stime of every live process of the tree (all threads), plus cutime +
    cstime (what its children that already exited and were waited for used)."""
    total = 0
    for pid in tree_pids(root):
        st = _stat(pid)
        if st:
            total += sum(int(x) for x in st[11:15])
    return total


# load.run_wrk measures the server with servers.cpu_ticks (one process, all its threads)
# and runs bench/wrk.lua; here it counts the whole tree (a peer may fork) and runs
# bench/peers/wrk.lua, which is bench/wrk.lua plus the peer's extra headers.
load.cpu_ticks = tree_ticks
load.HERE = HERE


def cpu_busy_ticks(cpu: int) -> int:
    """Ticks CPU `cpu` ran processes (user, nice, system) or was stolen by the hypervisor, from
    /proc/stat; not irq and softirq time, most of which is our own loopback traffic."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                return v[0] + v[1] + v[2] + v[7]
    return 0


@dataclass
class Watch:
    """What shares the servers' CPU: every server we started, all pinned to `cpu`."""
    cpu: int
    pids: list[int]

    def ours(self) -> int:
        return sum(tree_ticks(p) for p in self.pids)


def wrk(t: Target, body_file: Path, seconds: float, connections: int, client_cpu: int,
        watch: Watch) -> tuple[load.WrkResult, float]:
    """One wrk run, and the share of the server CPU that processes other than ours used meanwhile."""
    os.environ["BENCH_HEADERS"] = "\n".join(f"{k}: {v}" for k, v in t.headers.items())
    busy0, ours0, t0 = cpu_busy_ticks(watch.cpu), watch.ours(), time.monotonic()
    try:
        r = load.run_wrk(f"http://127.0.0.1:{t.proc.port}{t.path}", body_file, t.key, CHECK,
                         t.proc.pid, seconds, connections, client_cpu)
    finally:
        os.environ.pop("BENCH_HEADERS", None)
    other = (cpu_busy_ticks(watch.cpu) - busy0) - (watch.ours() - ours0)
    return r, max(other, 0) / servers.CLK_TCK / (time.monotonic() - t0)


def ask(t: Target, body: bytes) -> tuple[int, bytes]:
    """One request, for the start-up check and the sample answer."""
    c = http.client.HTTPConnection("127.0.0.1", t.proc.port, timeout=30)
    try:
        c.request("POST", t.path, body, {"Content-Type": "application/json",
                                         "Authorization": f"Bearer {t.key}", **t.headers})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def answers_right(status: int, body: bytes) -> bool:
    return status == CHECK.status and all(m.encode() in body for m in CHECK.marks)


def wait_answering(t: Target, body: bytes, timeout: float = 120) -> dict:
    """Until the server gives a right answer (a peer may listen before it is ready)."""
    deadline = time.monotonic() + timeout
    status, got = 0, b""
    while time.monotonic() < deadline:
        if t.proc.popen.poll() is not None:
            raise RuntimeError(f"{t.name} exited with {t.proc.popen.returncode}")
        try:
            status, got = ask(t, body)
            if answers_right(status, got):
                return {"status": status, "body": got[:2000].decode("utf-8", "replace")}
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{t.name}: no right answer after {timeout:.0f}s; last {status} "
                       f"{got[:500].decode('utf-8', 'replace')!r}")


# ---- installing and starting the peers ---------------------------------------------------

def run(cmd: list[str], **kw) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{(p.stdout + p.stderr)[-3000:]}")
    return p.stdout.strip()


def ensure_litellm(log) -> Path:
    """The LiteLLM proxy in a scratch venv, installed once per pinned version."""
    marker = LITELLM_VENV / f".installed-{LITELLM_VERSION}"
    if not marker.exists():
        log(f"bench-peers: installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV}")
        if not (LITELLM_VENV / "bin" / "python").exists():
            run(["python3", "-m", "venv", str(LITELLM_VENV)])
        run([str(LITELLM_VENV / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
             f"litellm[proxy]=={LITELLM_VERSION}"])
        marker.touch()
    return LITELLM_VENV / "bin" / "litellm"


def ensure_portkey(log) -> Path:
    """The Portkey gateway in a scratch npm prefix, installed once per pinned version."""
    pkg = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway"
    try:
        have = json.loads((pkg / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        have = None
    if have != PORTKEY_VERSION:
        if not shutil.which("npm"):
            run([str(ROOT / "tools" / "ensure-debs.sh"), "npm"])
        log(f"bench-peers: installing @portkey-ai/gateway@{PORTKEY_VERSION} into {PORTKEY_DIR}")
        PORTKEY_DIR.mkdir(parents=True, exist_ok=True)
        pj = PORTKEY_DIR / "package.json"
        if not pj.exists():
            pj.write_text('{"name": "bench-peers-portkey", "private": true}\n')
        run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(PORTKEY_DIR),
             f"@portkey-ai/gateway@{PORTKEY_VERSION}"])
    return pkg / "build" / "start-server.js"


def start_litellm(litellm: Path, work: Path, nginx_port: int, cpu: int) -> servers.Proc:
    """One worker, no database; the model the 1 KB request names (`fast`) is
    openai/gpt-4o-mini at the nginx mock."""
    cfg = work / "litellm-config.yaml"
    cfg.write_text(
        "model_list:\n"
        f"  - model_name: {fixtures.PASSTHROUGH_ALIAS}\n"
        "    litellm_params:\n"
        "      model: openai/gpt-4o-mini\n"
        f"      api_base: http://127.0.0.1:{nginx_port}/v1\n"
        "      api_key: bench-openai-key\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_MASTER_KEY}\n")
    port = servers.free_port()
    # The proxy refuses to start without a master key (unless
    # LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY=true): it gets one, and every request
    # sends it, as every llm-gateway request sends its virtual key.
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}   # no fetch of the price list
    for var in ("DATABASE_URL", "LITELLM_MASTER_KEY"):
        env.pop(var, None)
    log = open(work / "litellm.log", "wb")
    p = subprocess.Popen(["taskset", "-c", str(cpu), str(litellm), "--config", str(cfg),
                          "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
                         stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    proc = servers.Proc("litellm", p, port)
    servers.wait_port(port, p, "litellm", timeout=180)
    return proc


def start_portkey(entry: Path, work: Path, cpu: int) -> servers.Proc:
    port = servers.free_port()
    log = open(work / "portkey.log", "wb")
    p = subprocess.Popen(["taskset", "-c", str(cpu), "node", str(entry), f"--port={port}", "--headless"],
                         stdout=log, stderr=subprocess.STDOUT, cwd=work,
                         env={**os.environ, "NODE_ENV": "production"})
    proc = servers.Proc("portkey", p, port)
    servers.wait_port(port, p, "portkey", timeout=60)
    return proc


def stop_tree(proc: servers.Proc) -> None:
    pids = [p for p in tree_pids(proc.pid) if p != proc.pid] if proc.popen.poll() is None else []
    proc.stop()
    for pid in pids:    # what the peer started and left (it is ours: we started the peer)
        try:
            os.kill(pid, 9)
        except OSError:
            pass


# ---- versions ----------------------------------------------------------------------------

def versions(envoy_version: str) -> dict[str, str]:
    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip()
        except OSError:
            return "?"
    crate = next((ln.split('"')[1] for ln in (ROOT / "Cargo.toml").read_text().splitlines()
                  if ln.startswith("version")), "?")
    py = out([str(LITELLM_VENV / "bin" / "python"), "-c",
              "import importlib.metadata as m, platform; print(m.version('litellm'), platform.python_version())"]).split()
    portkey = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "package.json"
    return {
        "llm-gateway": f"{crate} @ {out(['git', '-C', str(ROOT), 'rev-parse', '--short', 'HEAD'])}, Envoy {envoy_version}",
        "plain": f"Envoy {envoy_version}",
        "litellm": f"litellm {py[0] if py else '?'} (Python {py[1] if len(py) > 1 else '?'})",
        "portkey": f"@portkey-ai/gateway {json.loads(portkey.read_text())['version'] if portkey.exists() else '?'} "
                   f"(Node {out(['node', '--version']).lstrip('v')})",
    }


# ---- measuring ---------------------------------------------------------------------------

def median_of(rs: list[load.WrkResult]) -> dict:
    return {
        "valid": bool(rs) and all(r.valid for r in rs),
        "runs": [asdict(r) for r in rs],
        "rps": statistics.median(r.rps for r in rs),
        "p50_us": statistics.median(r.p50_us for r in rs),
        "p99_us": statistics.median(r.p99_us for r in rs),
        "cpu_us_per_req": statistics.median(r.cpu_us_per_req for r in rs),
        "server_cpu_share": statistics.median(r.envoy_cpu_share for r in rs),
        "wrk_cpu_share": statistics.median(r.wrk_cpu_share for r in rs),
        "requests": sum(r.requests for r in rs),
    }


def measure(targets: dict[str, Target], st: Settings, body_file: Path, client_cpu: int,
            watch: Watch, log) -> dict:
    contention: dict[str, list[float]] = {n: [] for n in targets}

    def run1(name: str, what: str, seconds: float, conns: int, measured: bool = True) -> load.WrkResult:
        r, other = wrk(targets[name], body_file, seconds, conns, client_cpu, watch)
        if measured:
            contention[name].append(other)
        state = "ok" if r.valid else ("INVALID: no answers" if not r.requests else
                                      f"INVALID {r.errors} first bad answer: {r.first_bad!r}")
        busy = f"  CONTENDED (others {other:.0%} of CPU {watch.cpu})" if other > CONTENDED_SHARE else ""
        log(f"  {name:12s} {what:10s} {r.rps:8.0f} req/s  p50 {r.p50_us:7.0f} us  p99 {r.p99_us:7.0f} us  "
            f"{r.cpu_us_per_req:8.1f} us CPU/req (server {r.envoy_cpu_share:4.0%} of a CPU, "
            f"wrk {r.wrk_cpu_share:4.0%})  {state}{busy}")
        return r

    warm: dict[str, list[load.WrkResult]] = {n: [] for n in targets}
    for name in targets:
        done, t0 = 0, time.monotonic()
        while True:
            r = run1(name, "warm-up", 2 if not st.quick else 1, st.connections, measured=False)
            warm[name].append(r)
            done += r.requests
            spent = time.monotonic() - t0
            if not r.valid or (done >= st.warm_requests and spent >= st.warm_min_seconds) \
                    or spent >= st.warm_max_seconds:
                break
    loaded: dict[str, list[load.WrkResult]] = {n: [] for n in targets}
    single: dict[str, list[load.WrkResult]] = {n: [] for n in targets}
    names = list(targets)
    for rnd in range(st.rounds):
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        for name in order:
            loaded[name].append(run1(name, f"round {rnd + 1}", st.seconds, st.connections))
            single[name].append(run1(name, f"-c1 rnd {rnd + 1}", st.latency_seconds, 1))
    out = {}
    for name in targets:
        out[name] = {"loaded": median_of(loaded[name]), "single": median_of(single[name]),
                     "warmup_requests": sum(r.requests for r in warm[name]),
                     "warmup_valid": all(r.valid for r in warm[name]),
                     "others_cpu_share_max": max(contention[name], default=0.0)}
        out[name]["valid"] = out[name]["loaded"]["valid"] and out[name]["single"]["valid"] \
            and out[name]["warmup_valid"]
    return out


# ---- the report --------------------------------------------------------------------------

def _n(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def render(res: dict) -> str:
    m, st, g, vers = res["machine"], res["settings"], res["gateways"], res["versions"]
    mode = "QUICK SMOKE RUN: not a measurement" if res["quick"] else "full run"
    lines = [
        f"Measured {m['date']} ({mode}, {res['seconds']:.0f} s) on {m['cpu']}, nproc {m['nproc']}, "
        f"{m['mem_gib']} GiB, Linux {m['kernel']}; nginx {m['nginx']}, {m['wrk']}; commit {res['commit']}; "
        f"load average at start {' '.join(m['loadavg_start'])}, at end {' '.join(res['loadavg_end'])}.",
        f"Servers on CPU {res['cpus'][0]}, wrk on CPU {res['cpus'][1]}; warm-up "
        f"{st['warm_requests']:,} requests or {st['warm_max_seconds']:g} s each (done: "
        + ", ".join(f"{LABELS[n]} {g[n]['warmup_requests']:,}" for n in ORDER if n in g)
        + f"); {st['rounds']} interleaved round(s) of "
        f"{st['seconds']:g} s at wrk -t1 -c{st['connections']} and {st['latency_seconds']:g} s at -c1 "
        f"per gateway (medians). CPU: the server's process tree, all threads.",
        "",
        f"| gateway | version | req/s (-c{st['connections']}) | p50 µs | p99 µs | CPU µs/req | "
        "added CPU µs/req (over plain Envoy) | CPU/req ÷ llm-gateway's | -c1 p50 µs | -c1 p99 µs | "
        "added -c1 p50 / p99 µs |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    plain = g.get("plain") if g.get("plain", {}).get("valid") else None
    ours = g.get("llm-gateway") if g.get("llm-gateway", {}).get("valid") else None
    for name in ORDER:
        if name not in g:
            continue
        r = g[name]
        if not r["valid"]:
            bad = next((x for k in ("loaded", "single") for x in r[k]["runs"]
                        if any(x["errors"].values()) or not x["requests"]), None)
            errs = ("no answers" if bad and not bad["requests"] else
                    ", ".join(f"{k} {v}" for k, v in bad["errors"].items() if v)) if bad else "invalid warm-up"
            lines.append(f"| {LABELS[name]} | {vers[name]} | INVALID ({errs}) | | | | | | | | |")
            continue
        lo, si = r["loaded"], r["single"]
        cpu = lo["cpu_us_per_req"]
        added = f"{cpu - plain['loaded']['cpu_us_per_req']:+,.1f}" if plain and name != "plain" else ""
        ratio = f"{cpu / ours['loaded']['cpu_us_per_req']:.2f}x" if ours else ""
        lat = (f"{si['p50_us'] - plain['single']['p50_us']:+,.0f} / {si['p99_us'] - plain['single']['p99_us']:+,.0f}"
               if plain and name != "plain" else "")
        lines.append(f"| {LABELS[name]} | {vers[name]} | {_n(lo['rps'])} | {_n(lo['p50_us'])} | {_n(lo['p99_us'])} "
                     f"| {_n(cpu, 1)} | {added} | {ratio} | {_n(si['p50_us'])} | {_n(si['p99_us'])} | {lat} |")
    worst = max((g[n]["others_cpu_share_max"] for n in g), default=0.0)
    lines += ["", f"Other processes (and steal) on CPU {res['cpus'][0]} during the measured runs: at most "
                  f"{worst:.1%} of it" + (f" (over {CONTENDED_SHARE:.0%}: CONTENDED, not a measurement)."
                                          if worst > CONTENDED_SHARE else ".")]
    invalid = [LABELS[n] for n in ORDER if n in g and not g[n]["valid"]]
    if invalid:
        lines += ["", f"INVALID runs (wrong status or body, or socket errors): {', '.join(invalid)}."]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="about a second per case: checks the harness, judges nothing")
    ap.add_argument("--no-write", action="store_true", help="do not rewrite BENCHMARKS.md")
    ap.add_argument("--json", type=Path, help="write every figure here")
    ap.add_argument("--only", help=f"comma-separated, of {','.join(ORDER)} (default: all; a partial run writes nothing)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--keep", action="store_true", help="keep the work dir (configs and the servers' logs)")
    ap.add_argument("--envoy", default=str(ROOT / ".venv" / "bin" / "envoy"))
    ap.add_argument("--wasm", type=Path, default=ROOT / "target" / "wasm32-wasip1" / "release" / "llm_gateway.wasm")
    ap.add_argument("--bin", type=Path, default=ROOT / "target" / "release" / "llm-gateway")
    args = ap.parse_args()
    started = time.monotonic()
    only = [n for n in ORDER if not args.only or n in args.only.split(",")]
    if args.only and set(args.only.split(",")) - set(ORDER):
        fail(f"--only: unknown {sorted(set(args.only.split(',')) - set(ORDER))}; names: {', '.join(ORDER)}")

    def log(msg: str) -> None:
        print(msg, flush=True)

    nginx = bench_run.which("nginx")
    bench_run.which("wrk")
    bench_run.which("taskset")
    for p, what in ((Path(args.envoy), "envoy (make venv)"), (args.wasm, "the .wasm (make build)"),
                    (args.bin, "llm-gateway (cargo build --release --bin llm-gateway)")):
        if not p.exists():
            fail(f"{p} missing: build {what}")
    litellm = ensure_litellm(log) if "litellm" in only else None
    portkey = ensure_portkey(log) if "portkey" in only else None

    st = Settings.make(args.quick, args.connections)
    server_cpu, client_cpu = bench_run.cpus()
    os.sched_setaffinity(0, {client_cpu})
    facts = bench_run.machine(args.envoy, nginx)
    vers = versions(facts["envoy"])
    work = Path(tempfile.mkdtemp(prefix="llm-gateway-bench-peers-"))
    docroot = work / "www"
    fixtures.write_docroot(docroot)
    body = fixtures.chat_1k(fixtures.PASSTHROUGH_ALIAS)
    body_file = work / "body.json"
    body_file.write_bytes(body)
    procs: list[servers.Proc] = []
    results: dict = {"quick": st.quick, "settings": asdict(st), "machine": facts, "versions": vers,
                     "cpus": [server_cpu, client_cpu], "body_bytes": len(body), "samples": {}}
    problems: list[str] = []
    try:
        ngx = servers.start_nginx(work, docroot, server_cpu)
        procs.append(ngx)
        targets: dict[str, Target] = {}
        if "llm-gateway" in only or "plain" in only:
            # No hold mock is needed here: its alias is never called, a free port stands in.
            hold_port = servers.free_port()
            boots = servers.bootstraps(servers.render(args.bin, args.wasm.resolve(), work, ngx.port, hold_port),
                                       ngx.port, hold_port)
            for name, boot in (("llm-gateway", "filter"), ("plain", "plain")):
                if name in only:
                    proc = servers.start_envoy(boot, args.envoy, boots[boot], work, server_cpu)
                    procs.append(proc)
                    targets[name] = Target(name, proc, vers[name], GATEWAY_KEY)
        if litellm:
            proc = start_litellm(litellm, work, ngx.port, server_cpu)
            procs.append(proc)
            targets["litellm"] = Target("litellm", proc, vers["litellm"], LITELLM_MASTER_KEY)
        if portkey:
            proc = start_portkey(portkey, work, server_cpu)
            procs.append(proc)
            targets["portkey"] = Target("portkey", proc, vers["portkey"], "bench-openai-key", {
                "x-portkey-provider": "openai",
                "x-portkey-custom-host": f"http://127.0.0.1:{ngx.port}/v1",
            })
        targets = {n: targets[n] for n in ORDER if n in targets}
        watch = Watch(server_cpu, [p.pid for p in procs])
        for name, t in targets.items():
            results["samples"][name] = wait_answering(t, body)
        log(f"bench-peers: nginx :{ngx.port}; " + ", ".join(f"{n} :{t.proc.port}" for n, t in targets.items())
            + f"; servers on CPU {server_cpu}, wrk on CPU {client_cpu}; work dir {work}")
        results["gateways"] = measure(targets, st, body_file, client_cpu, watch, log)
        for t in targets.values():
            if t.proc.popen.poll() is not None:
                problems.append(f"{t.name} exited with {t.proc.popen.returncode}")
    except RuntimeError as e:
        problems.append(str(e))
    finally:
        for p in reversed(procs):
            stop_tree(p)
    results["problems"] = problems
    results["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    results["seconds"] = round(time.monotonic() - started, 1)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "?"
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    results["commit"] = commit + (" (with uncommitted changes)" if dirty else "")
    results["machine"]["date"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if problems:
        print(f"bench-peers: FAILED: {'; '.join(problems)}", file=sys.stderr)
        print(f"bench-peers: kept {work} (configs and logs)", file=sys.stderr)
        return 1
    text = render(results)
    print()
    print(text)
    invalid = [n for n, r in results["gateways"].items() if not r["valid"]]
    contended = [n for n, r in results["gateways"].items() if r["others_cpu_share_max"] > CONTENDED_SHARE]
    if contended and not st.quick:
        print(f"bench-peers: CONTENDED: other processes took over {CONTENDED_SHARE:.0%} of CPU {server_cpu} "
              f"while measuring {', '.join(contended)}; nothing written: rerun on a quiet machine", file=sys.stderr)
    if not st.quick and not args.no_write and not args.only and not invalid and not contended:
        report.write_benchmarks_md(ROOT / "BENCHMARKS.md", text, BEGIN, END)
        print(f"bench-peers: wrote {ROOT / 'BENCHMARKS.md'}", file=sys.stderr)
    if invalid:
        print(f"bench-peers: INVALID runs: {', '.join(invalid)}; kept {work}", file=sys.stderr)
        return 1
    if contended and not st.quick:
        return 1
    if args.keep:
        print(f"bench-peers: kept {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
