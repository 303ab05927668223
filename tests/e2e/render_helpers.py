"""A gateway on a *rendered* bootstrap (`llm-gateway render`), as users run it: the config is
written as YAML, rendered with the given flags, and Envoy started on the result."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from conftest import WASM_PATH, free_port, launch_envoy, stop_envoy


@contextlib.contextmanager
def rendered_gateway(gateway_bin: Path, envoy_bin: str, cfg: dict, workdir: Path, name: str,
                     env: dict[str, str], *flags: str) -> Iterator[tuple[int, int]]:
    """Run Envoy on `llm-gateway render CONFIG ... FLAGS`; yields (port, admin_port)."""
    if not WASM_PATH.is_file():
        pytest.fail(f"the filter is not built: {WASM_PATH}", pytrace=False)
    workdir.mkdir(parents=True, exist_ok=True)
    port, admin_port = free_port(), free_port()
    src = workdir / f"{name}.config.yaml"
    src.write_text(yaml.safe_dump(cfg))
    cmd = [str(gateway_bin), "render", str(src), "--listen", f"127.0.0.1:{port}", "--admin-port",
           str(admin_port), "--wasm", str(WASM_PATH), *flags]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"render failed: {' '.join(cmd)}\n{r.stderr}"
    proc, _, _ = launch_envoy(yaml.safe_load(r.stdout), workdir, name, envoy_bin,
                              ["--file-flush-interval-msec", "50"], env=env)
    try:
        yield port, admin_port
    finally:
        stop_envoy(proc)
