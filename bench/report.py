"""Judge the figures against issue 8's targets and print them as one Markdown
report (the same text goes to the terminal and into BENCHMARKS.md).
"""

from __future__ import annotations

from pathlib import Path

BEGIN = "<!-- bench:begin (written by `make bench`; edit the prose above, not this section) -->"
END = "<!-- bench:end -->"
MIB = 1024 * 1024

# Issue 8's targets on the ratio and on the CPU the filter adds, per case.
CASE_TARGETS = {
    "passthrough_1k": {"ratio": 0.9},
    "anthropic_1k": {"added_cpu": 25.0, "ratio": 0.75},
    "anthropic_100k": {"added_cpu": 250.0, "ratio": 0.35},
}
TTFB_TARGET_US = 200.0
STREAM_KIB_TARGET = 16.0


def _verdict(ok: bool, quick: bool) -> str:
    if quick:
        return "not judged (quick)"
    return "met" if ok else "MISSED"


def judge(results: dict) -> dict:
    """Derived figures, the verdict on each target, and what was invalid."""
    quick = results["quick"]
    invalid: list[str] = []
    targets: list[dict] = []
    cases = {c["name"]: c for c in results["cases"]}
    rows = {}
    for name, c in cases.items():
        p, f = c["plain"], c["filter"]
        for t in ("plain", "filter"):
            if not c[t]["valid"]:
                invalid.append(f"{name}/{t}")
        row = {"added_cpu": f["cpu_us_per_req"] - p["cpu_us_per_req"],
               "ratio": f["rps"] / p["rps"] if p["rps"] else 0.0, "targets": []}
        valid = p["valid"] and f["valid"]
        for what, limit in CASE_TARGETS.get(name, {}).items():
            ok = row[what] <= limit if what == "added_cpu" else row[what] >= limit
            text = f"+CPU <= {limit:g} µs" if what == "added_cpu" else f">= {limit:g}x"
            row["targets"].append(_target(targets, f"{c['title']}: {text}", ok, valid, quick))
        rows[name] = row
    if "refused" in cases and "anthropic_1k" in cases:
        refused = cases["refused"]["filter"]["cpu_us_per_req"]
        proxied = cases["anthropic_1k"]["filter"]["cpu_us_per_req"]
        valid = cases["refused"]["filter"]["valid"] and cases["anthropic_1k"]["filter"]["valid"]
        rows["refused"]["targets"].append(_target(
            targets, f"refused < proxied 1 KB ({proxied:.1f} µs)", refused < proxied, valid, quick))
    if "cache_hit_1k" in cases and "anthropic_1k" in cases:
        # Issue 18: a hit is not slower than a tenth of a miss (the same request
        # through the filter to the fastest provider, nginx).
        hit = cases["cache_hit_1k"]["filter"]
        miss = cases["anthropic_1k"]["filter"]
        valid = hit["valid"] and miss["valid"]
        rows["cache_hit_1k"]["targets"].append(_target(
            targets, f"cache hit p50 <= 1/10 of a miss ({miss['p50_us']:.0f} µs)",
            hit["p50_us"] <= miss["p50_us"] / 10, valid, quick))
        rows["cache_hit_1k"]["targets"].append(_target(
            targets, f"cache hit CPU < a miss's ({miss['cpu_us_per_req']:.1f} µs)",
            hit["cpu_us_per_req"] < miss["cpu_us_per_req"], valid, quick))
    extra: dict = {}
    tt = results.get("ttfb")
    if tt:
        for t in ("plain", "filter"):
            if not tt[t]["valid"]:
                invalid.append(f"ttfb/{t}")
        extra["ttfb_added_us"] = tt["filter"]["held_first_byte_us"] - tt["plain"]["held_first_byte_us"]
        extra["ttfb_target"] = _target(targets, f"stream: added time to first byte <= {TTFB_TARGET_US:g} µs",
                                       extra["ttfb_added_us"] <= TTFB_TARGET_US,
                                       tt["plain"]["valid"] and tt["filter"]["valid"], quick)
    mem = results.get("memory")
    if mem:
        p, f = mem["plain"], mem["filter"]
        for kind in ("rss", "heap", "wasm", "used"):
            extra[f"{kind}_kib_per_stream"] = (f[f"delta_{kind}_kib"] - p[f"delta_{kind}_kib"]) / f["streams"]
            extra[f"growth_{kind}_kib_per_stream"] = (f[f"growth_{kind}_kib_per_stream"]
                                                      - p[f"growth_{kind}_kib_per_stream"])
        # Judged on memory in use (Envoy's heap + the wasm VM): RSS hides reuse of memory left free.
        extra["mem_target"] = _target(targets, f"memory per open stream <= {STREAM_KIB_TARGET:g} KiB",
                                      extra["used_kib_per_stream"] <= STREAM_KIB_TARGET, True, quick)
        # "No growth": the filter keeps less than one byte per streamed event.
        extra["growth_target"] = _target(targets, "no memory growth with stream length (< 1 byte/event)",
                                         extra["growth_used_kib_per_stream"] * 1024 < f["growth_events"],
                                         True, quick)
    wasm = results["machine"]["wasm_bytes"]
    extra["wasm_target"] = _target(targets, ".wasm <= 1 MiB", wasm <= MIB, True, quick)
    return {"invalid": invalid, "rows": rows, "extra": extra, "targets": targets}


def _target(targets: list, text: str, ok: bool, valid: bool, quick: bool) -> str:
    verdict = _verdict(ok, quick) if valid else "invalid run"
    targets.append({"target": text, "verdict": verdict})
    short = text.split(": ", 1)[-1]
    return f"{short}: {verdict}"


def _n(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def render(results: dict, judged: dict) -> str:
    m, st = results["machine"], results["settings"]
    out = []
    mode = "QUICK SMOKE RUN: numbers not judged" if results["quick"] else "full run"
    out.append(f"Measured {m['date']} ({mode}, {results['seconds']:.0f} s) on {m['cpu']} ({m['cpu_mhz']} MHz), "
               f"nproc {m['nproc']}, {m['mem_gib']} GiB, Linux {m['kernel']}; Envoy {m['envoy']}, "
               f"nginx {m['nginx']}, {m['wrk']}; commit {m['git']}; load average at start "
               f"{' '.join(m['loadavg_start'])}, at end {' '.join(m.get('loadavg_end', []))}.")
    out.append(f"{m['pinning']}; Envoy `--concurrency 1`, one nginx process; {st['rounds']} interleaved "
               f"round(s) of {st['seconds']:g} s per case and Envoy (medians), wrk -t1 -c{st['connections']} "
               f"unless noted.")
    out.append("")
    out.append("| case | Envoy | req/s | p50 µs | p90 µs | p99 µs | Envoy CPU µs/req | added CPU µs/req "
               "| filter/plain | targets |")
    out.append("|---|---|--:|--:|--:|--:|--:|--:|--:|---|")
    for c in results["cases"]:
        row = judged["rows"][c["name"]]
        title = c["title"] + (f" (-c{c['connections']})" if c["connections"] != st["connections"] else "")
        for t in ("plain", "filter"):
            r = c[t]
            if not r["valid"]:
                bad = next((x for x in r["runs"] if any(x["errors"].values())), r["runs"][0])
                errs = ", ".join(f"{k} {v}" for k, v in bad["errors"].items() if v)
                out.append(f"| {title if t == 'plain' else ''} | {t} | INVALID ({errs}) | | | | | | | |")
                continue
            cells = [_n(r["rps"]), _n(r["p50_us"]), _n(r["p90_us"]), _n(r["p99_us"]), _n(r["cpu_us_per_req"], 1)]
            if t == "plain":
                out.append(f"| {title} | plain | " + " | ".join(cells) + " | | | |")
            else:
                both = c["plain"]["valid"]
                added = f"{row['added_cpu']:+.1f}" if both else ""
                ratio = f"{row['ratio']:.2f}x" if both else ""
                out.append(f"| | filter | " + " | ".join(cells) + f" | {added} | {ratio} | "
                           + "; ".join(row["targets"]) + " |")
    out.append("")
    out.append("| streaming, memory, size | plain Envoy | Envoy + filter | filter adds | target |")
    out.append("|---|--:|--:|--:|---|")
    ex = judged["extra"]
    tt = results.get("ttfb")
    if tt:
        p, f = tt["plain"], tt["filter"]
        out.append(f"| stream, 1 connection: time to first byte, first events sent alone (µs, median of "
                   f"{f['requests']}) | {_n(p['held_first_byte_us'])} | {_n(f['held_first_byte_us'])} "
                   f"| {ex['ttfb_added_us']:+,.0f} | {ex['ttfb_target']} |")
        out.append(f"| stream of 500 chunks sent in one burst, 1 connection: time to first byte (µs) "
                   f"| {_n(p['first_byte_us'])} | {_n(f['first_byte_us'])} "
                   f"| {f['first_byte_us'] - p['first_byte_us']:+,.0f} | |")
        out.append(f"| same: time to the last byte (µs) | {_n(p['total_us'])} | {_n(f['total_us'])} "
                   f"| {f['total_us'] - p['total_us']:+,.0f} | |")
    sc = next((c for c in results["cases"] if c["name"] == "stream_500"), None)
    if sc and sc["plain"]["valid"] and sc["filter"]["valid"]:
        p, f = sc["plain"]["cpu_us_per_req"] / 500, sc["filter"]["cpu_us_per_req"] / 500
        out.append(f"| stream under load: Envoy CPU per chunk (µs) | {p:.2f} | {f:.2f} | {f - p:+.2f} | |")
    mem = results.get("memory")
    if mem:
        p, f = mem["plain"], mem["filter"]
        labels = (("used", "in use (heap + wasm)"), ("heap", "heap (tcmalloc allocated)"),
                  ("wasm", "wasm linear memory (resident)"), ("rss", "RSS"))
        for kind, label in labels:
            out.append(f"| {f['streams']:,} open streams: Envoy memory {label}, KiB over idle "
                       f"| {_n(p[f'delta_{kind}_kib'])} | {_n(f[f'delta_{kind}_kib'])} "
                       f"| {ex[f'{kind}_kib_per_stream']:+.1f} KiB/stream "
                       f"| {ex['mem_target'] if kind == 'used' else ''} |")
        for kind, label in labels[:1] + labels[3:]:
            out.append(f"| {f['growth_streams']} open streams x {f['growth_events']:,} more events each: "
                       f"memory {label} growth, KiB/stream | {p[f'growth_{kind}_kib_per_stream']:+.1f} "
                       f"| {f[f'growth_{kind}_kib_per_stream']:+.1f} | {ex[f'growth_{kind}_kib_per_stream']:+.1f} "
                       f"| {ex['growth_target'] if kind == 'used' else ''} |")
    out.append(f"| `llm_gateway.wasm` size (bytes) | | {m['wasm_bytes']:,} | | {ex['wasm_target']} |")
    out.append("")
    met = sum(t["verdict"] == "met" for t in judged["targets"])
    if not results["quick"]:
        out.append(f"Targets met: {met} of {len(judged['targets'])}"
                   + ("; missed: " + "; ".join(t["target"] for t in judged["targets"] if t["verdict"] != "met")
                      if met < len(judged["targets"]) else "") + ".")
    if judged["invalid"]:
        out.append(f"INVALID runs (wrong status or body, or socket errors): {', '.join(judged['invalid'])}.")
    if results.get("log_trouble"):
        out.append(f"Envoy logged trouble: {results['log_trouble'][:5]}")
    return "\n".join(out)


def write_benchmarks_md(path: Path, section: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the section of BENCHMARKS.md between `begin` and `end` (appended with them if
    they are missing)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{begin}\n{section}\n{end}"
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
