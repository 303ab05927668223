"""Runs last (file order): after everything above, Envoy and the wasm VM are still healthy."""

from __future__ import annotations

import re

from conftest import ANTHROPIC_HELLO, chat_body, user

BAD = re.compile(r"panicked|\[critical\]|wasm.*(failed|abort|unreachable)|Wasm VM failed", re.IGNORECASE)


def test_envoy_alive_and_log_clean(gw):
    assert gw.proc.poll() is None, "Envoy exited"
    r = gw.chat(chat_body("claude", user("still there?")))
    assert r.status == 200 and r.json()["choices"][0]["message"]["content"] == ANTHROPIC_HELLO + "still there?"
    log = gw.log_path.read_text(errors="replace") if gw.log_path.exists() else ""
    bad = [ln for ln in log.splitlines() if BAD.search(ln)]
    assert not bad, "Envoy log shows trouble:\n" + "\n".join(bad[:30])


def test_no_envoy_errors_counted_for_wasm(gw):
    stats = gw.admin("/stats?filter=wasm").text
    failures = [ln for ln in stats.splitlines() if re.search(r"(failed|crash|abort)\w*: [1-9]", ln)]
    assert not failures, failures
