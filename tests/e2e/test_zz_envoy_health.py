"""Runs last (file order): after everything above, Envoy and the wasm VM are still healthy."""

from __future__ import annotations

import re

from conftest import ANTHROPIC_HELLO, assert_envoy_log_clean, chat_body, user


def test_envoy_alive_and_log_clean(gw):
    assert gw.proc.poll() is None, "Envoy exited"
    r = gw.chat(chat_body("claude", user("still there?")))
    assert r.status == 200 and r.json()["choices"][0]["message"]["content"] == ANTHROPIC_HELLO + "still there?"
    assert_envoy_log_clean(gw)


def test_no_envoy_errors_counted_for_wasm(gw):
    stats = gw.admin("/stats?filter=wasm").text
    failures = [ln for ln in stats.splitlines() if re.search(r"(failed|crash|abort)\w*: [1-9]", ln)]
    assert not failures, failures
