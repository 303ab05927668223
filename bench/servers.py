"""Start and stop what the benchmark measures: nginx (the provider mock), the
stream-holding mock, plain Envoy and Envoy with the filter.

Both Envoys come from one rendering of bench/gateway-config.yaml by
`llm-gateway render`, so they share listener settings, access log, local-reply
mapping and clusters; the plain one only loses the wasm filter (and the
counter service) and routes by path to the same clusters. Every process is
pinned with `taskset` and runs with `--concurrency 1` / one nginx process.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# Raised on every cluster of both Envoys so the 1,000-stream memory test is
# not cut by Envoy's default circuit breakers (1,024 connections/requests).
BREAKERS = {"thresholds": [{"priority": "DEFAULT", "max_connections": 100000, "max_pending_requests": 100000,
                            "max_requests": 100000, "max_retries": 100000}]}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} is not listening on {port} after {timeout}s")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    port: int
    admin_port: int = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start_nginx(work: Path, docroot: Path, cpu: int) -> Proc:
    """nginx with a single process (no master), serving `docroot` to POSTs."""
    port = free_port()
    (work / "nginx-tmp").mkdir(exist_ok=True)
    conf = (HERE / "nginx.conf").read_text().replace("@PORT@", str(port)) \
        .replace("@ROOT@", str(docroot)).replace("@WORK@", str(work))
    path = work / "nginx.conf"
    path.write_text(conf)
    log = open(work / "nginx.log", "wb")
    p = subprocess.Popen(["taskset", "-c", str(cpu), "nginx", "-p", str(work), "-c", str(path),
                          "-e", str(work / "nginx-error.log")], stdout=log, stderr=subprocess.STDOUT)
    proc = Proc("nginx", p, port)
    wait_port(port, p, "nginx")
    return proc


def start_hold_mock(cpu: int) -> Proc:
    port = free_port()
    p = subprocess.Popen(["taskset", "-c", str(cpu), sys.executable, str(HERE / "hold_mock.py"),
                          "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    proc = Proc("hold_mock", p, port)
    wait_port(port, p, "hold mock")
    return proc


# Diagnostics only (attributing the filter's cost; never for the published table):
# BENCH_VARIANT=open (no virtual keys), no_counter (no counter service),
# no_access_log (neither Envoy logs), comma-separated.
VARIANT = set(os.environ.get("BENCH_VARIANT", "").split(","))


def render(bin_path: Path, wasm: Path, work: Path, nginx_port: int, hold_port: int) -> dict:
    """bench/gateway-config.yaml with the ports filled in, rendered by the repo's renderer."""
    cfg = (HERE / "gateway-config.yaml").read_text().replace("@NGINX@", str(nginx_port)) \
        .replace("@HOLD@", str(hold_port))
    if "open" in VARIANT:
        cfg = cfg.split("virtual_keys:")[0]
    cfg_path = work / "gateway-config.yaml"
    cfg_path.write_text(cfg)
    out = subprocess.run([str(bin_path), "render", str(cfg_path), "--listen", "127.0.0.1:0",
                          "--admin-port", "0", "--wasm", str(wasm), "--access-log", "/dev/null"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"llm-gateway render failed: {out.stderr.strip()}")
    return yaml.safe_load(out.stdout)


def _hcm(boot: dict) -> dict:
    return boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def _cluster_for(boot: dict, port: int) -> str:
    for c in boot["static_resources"]["clusters"]:
        addr = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
        if addr["port_value"] == port:
            return c["name"]
    raise RuntimeError(f"no cluster for port {port} in the rendered bootstrap")


def bootstraps(rendered: dict, nginx_port: int, hold_port: int) -> dict[str, dict]:
    """{"plain": ..., "filter": ...}: the rendered bootstrap, and the same without the filter."""
    filt = copy.deepcopy(rendered)
    for c in filt["static_resources"]["clusters"]:
        c["circuit_breakers"] = copy.deepcopy(BREAKERS)
    if "no_counter" in VARIANT:
        filt.pop("bootstrap_extensions", None)
    if "no_access_log" in VARIANT:
        _hcm(filt).pop("access_log", None)
    plain = copy.deepcopy(filt)
    plain.pop("bootstrap_extensions", None)
    hcm = _hcm(plain)
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != "envoy.filters.http.wasm"]
    vhost = hcm["route_config"]["virtual_hosts"][0]
    vhost["routes"] = [
        {"match": {"prefix": "/hold/"}, "route": {"cluster": _cluster_for(plain, hold_port), "timeout": "600s"}},
        {"match": {"prefix": "/"}, "route": {"cluster": _cluster_for(plain, nginx_port), "timeout": "600s"}},
    ]
    floor = os.environ.get("BENCH_FLOOR")
    if floor:
        # Diagnostic: the "filter" Envoy is plain Envoy plus another wasm
        # module (BENCH_FLOOR=<file.wasm>:<configuration string>), to measure
        # what a minimal proxy-wasm filter costs on this machine.
        wasm_file, conf = floor.split(":", 1)
        filt = copy.deepcopy(plain)
        wasm = copy.deepcopy(next(f for f in _hcm(rendered)["http_filters"]
                                  if f["name"] == "envoy.filters.http.wasm"))
        cfg = wasm["typed_config"]["config"]
        cfg["configuration"]["value"] = conf
        cfg["vm_config"]["code"]["local"]["filename"] = wasm_file
        cfg["vm_config"]["vm_id"] = "floor"
        cfg["root_id"] = ""
        _hcm(filt)["http_filters"].insert(0, wasm)
    return {"plain": plain, "filter": filt}


def _ready(admin_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def start_envoy(name: str, envoy: str, boot: dict, work: Path, cpu: int) -> Proc:
    port, admin = free_port(), free_port()
    boot = copy.deepcopy(boot)
    boot["admin"]["address"]["socket_address"]["port_value"] = admin
    boot["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = port
    path = work / f"envoy-{name}.yaml"
    path.write_text(yaml.safe_dump(boot, sort_keys=False))
    log = work / f"envoy-{name}.log"
    p = subprocess.Popen(["taskset", "-c", str(cpu), envoy, "-c", str(path), "--concurrency", "1",
                          "--disable-hot-restart", "-l", "warning", "--log-path", str(log)],
                         stdout=subprocess.DEVNULL, stderr=open(work / f"envoy-{name}.stderr", "wb"),
                         cwd=ROOT)
    proc = Proc(f"envoy-{name}", p, port, admin)
    deadline = time.monotonic() + 120
    while not _ready(admin):
        if p.poll() is not None:
            raise RuntimeError(f"envoy ({name}) exited with {p.returncode}; see {log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"envoy ({name}) not ready after 120s; see {log}")
        time.sleep(0.1)
    wait_port(port, p, f"envoy ({name})")
    return proc


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


CLK_TCK = os.sysconf("SC_CLK_TCK")


def memory_kib(proc: "Proc") -> dict[str, int]:
    """Envoy's memory in KiB: `rss` (VmRSS); `heap`, what Envoy has allocated
    from tcmalloc (admin `/memory`); `wasm`, the resident part of the wasm VMs'
    linear memories; `used` = heap + wasm.

    RSS alone misleads: starting the V8 VM leaves tens of MB free inside
    tcmalloc, which later allocations reuse without moving RSS. `used` counts
    what is in use, wherever it lives."""
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.admin_port}/memory", timeout=10) as r:
        heap = int(json.loads(r.read())["allocated"]) // 1024
    wasm = wasm_memory_kib(proc.pid)
    return {"rss": rss_kib(proc.pid), "heap": heap, "wasm": wasm, "used": heap + wasm}


def wasm_memory_kib(pid: int) -> int:
    """Resident KiB of every wasm linear memory in the process.

    V8 reserves each wasm memory as one large region (8 GiB here) and makes
    its first pages read-write as the memory grows, so in /proc/<pid>/smaps a
    linear memory is the rw-p mapping directly followed by a multi-GiB
    inaccessible (---p) mapping that starts where it ends."""
    maps: list[tuple[int, int, str, int]] = []
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(maxsplit=2)
            if "-" in head[0] and not head[0].endswith(":"):
                start, end = (int(x, 16) for x in head[0].split("-"))
                maps.append((start, end, head[1], 0))
            elif head[0] == "Rss:" and maps:
                s, e, perms, _ = maps[-1]
                maps[-1] = (s, e, perms, int(head[1]))
    total = 0
    for (s, e, perms, rss), (s2, e2, perms2, _) in zip(maps, maps[1:]):
        if perms == "rw-p" and perms2 == "---p" and s2 == e and e2 - s2 >= 4 << 30:
            total += rss
    return total


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")
