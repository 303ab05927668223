#!/usr/bin/env python3
"""Draw the Grafana dashboard's panels (dashboards/llm-gateway.json) from a running Prometheus
to a PNG, so the README shows what the dashboard looks like without Grafana:
    tools/dashboard_png.py PROMETHEUS_URL OUT.png [MINUTES]
Each panel's PromQL is evaluated with /api/v1/query_range; needs matplotlib."""

from __future__ import annotations

import json
import math
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboards" / "llm-gateway.json"


def query_range(prom: str, expr: str, minutes: float) -> list[dict]:
    end = time.time()
    q = urllib.parse.urlencode({"query": expr, "start": end - minutes * 60, "end": end, "step": 1})
    with urllib.request.urlopen(f"{prom}/api/v1/query_range?{q}", timeout=10) as r:
        return json.loads(r.read())["data"]["result"]


def main() -> None:
    prom, out = sys.argv[1].rstrip("/"), sys.argv[2]
    minutes = float(sys.argv[3]) if len(sys.argv) > 3 else 2
    panels = json.loads(DASHBOARD.read_text())["panels"]
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 5.2, rows * 3.1))
    for ax, p in zip(axes.flat, panels):
        for series in query_range(prom, p["targets"][0]["expr"], minutes):
            pts = [(float(t), float(v)) for t, v in series["values"] if v not in ("NaN", "+Inf", "-Inf")]
            if not pts:
                continue
            t0 = pts[0][0]
            label = ",".join(f"{k}={v}" for k, v in sorted(series["metric"].items())) or "all"
            ax.plot([t - t0 for t, _ in pts], [v for _, v in pts], label=label[:40])
        ax.set_title(p["title"], fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("s", fontsize=7)
        if ax.lines:
            ax.legend(fontsize=6, loc="upper left")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("llm-gateway (dashboards/llm-gateway.json, queries evaluated by Prometheus)", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=90)


if __name__ == "__main__":
    main()
