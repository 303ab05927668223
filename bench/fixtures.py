"""Request bodies and canned provider responses for the benchmark.

Generated, not committed, so their sizes are exact and visible here: the
1 KB chat, the 100 KB multi-turn conversation, and what the nginx mock serves
(an Anthropic Messages answer, an OpenAI chat.completion, and an Anthropic SSE
stream of 500 text deltas). Text is deterministic (no randomness), so two runs
send and receive the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

# Aliases of bench/gateway-config.yaml.
ANTHROPIC_ALIAS = "smart"
STREAM_ALIAS = "smart-stream"
PASSTHROUGH_ALIAS = "fast"
HOLD_ALIAS = "smart-hold"

STREAM_DELTAS = 500
REPLY_TEXT = ("The benchmark answer: a short paragraph that stands for what a model says back, "
              "long enough to be a realistic reply of a few sentences, with \"quotes\", a newline\n"
              "and some unicode (café, naïve, 東京) so escaping is exercised on the way back.")

_WORDS = ("gateway envoy filter request stream token budget provider model latency proxy route "
          "cluster header body translate anthropic openai message content assistant user system").split()


def _text(n: int, seed: int) -> str:
    """About n characters of words, with a quote and a newline now and then (JSON escapes)."""
    out: list[str] = []
    size, i = 0, seed
    while size < n:
        w = _WORDS[(i * 7 + seed) % len(_WORDS)]
        if i % 17 == 0:
            w = f'"{w}"'
        if i % 29 == 0:
            w += "\n"
        out.append(w)
        size += len(w) + 1
        i += 1
    return " ".join(out)[:n]


def _pad_to(body: dict, field: list, target: int) -> bytes:
    """Serialize `body`, growing the string at `field` (a path) until it is `target` bytes."""
    def get_parent():
        node = body
        for k in field[:-1]:
            node = node[k]
        return node
    parent = get_parent()
    while True:
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        missing = target - len(raw)
        if missing <= 0:
            return raw
        parent[field[-1]] += "x" * missing


def chat_1k(model: str = ANTHROPIC_ALIAS, stream: bool = False) -> bytes:
    """A 1,024-byte OpenAI chat request: a system prompt and one user turn."""
    body: dict = {"model": model, "max_tokens": 256}
    if stream:
        body["stream"] = True
    body["messages"] = [
        {"role": "system", "content": "You are a concise assistant. Answer in plain text."},
        {"role": "user", "content": _text(800, 3)},
    ]
    return _pad_to(body, ["messages", 1, "content"], 1024)


def chat_1k_cached(model: str = ANTHROPIC_ALIAS) -> bytes:
    """The 1 KB request opting in to the response cache (`cache: {use-cache: true}`;
    bench/gateway-config.yaml runs it `mode: default_off`, so no other case is cached)."""
    body: dict = {"model": model, "max_tokens": 256, "cache": {"use-cache": True}}
    body["messages"] = [
        {"role": "system", "content": "You are a concise assistant. Answer in plain text."},
        {"role": "user", "content": _text(800, 7)},
    ]
    return _pad_to(body, ["messages", 1, "content"], 1024)


def chat_1k_pii(model: str = ANTHROPIC_ALIAS) -> bytes:
    """The 1 KB request with personal data in its user turn (an e-mail address,
    a card number and a phone number), for the PII-masking case."""
    body: dict = {"model": model, "max_tokens": 256}
    body["messages"] = [
        {"role": "system", "content": "You are a concise assistant. Answer in plain text."},
        {"role": "user", "content": "Reach me at jane.doe@example.com or +1 415 555 0100; "
                                    "card 4111 1111 1111 1111. " + _text(700, 5)},
    ]
    return _pad_to(body, ["messages", 1, "content"], 1024)


def chat_100k(model: str = ANTHROPIC_ALIAS) -> bytes:
    """A 102,400-byte multi-turn conversation: a system prompt and 40 user/assistant turns."""
    turns = [{"role": "system", "content": "You are a careful reviewer. Keep the whole thread in mind."}]
    for i in range(40):
        role = "user" if i % 2 == 0 else "assistant"
        turns.append({"role": role, "content": _text(2400, i)})
    turns.append({"role": "user", "content": "Summarise the thread above. " + _text(100, 99)})
    body = {"model": model, "max_tokens": 1024, "temperature": 0.2, "messages": turns}
    return _pad_to(body, ["messages", len(turns) - 1, "content"], 102_400)


def anthropic_message() -> bytes:
    """What nginx answers on POST /v1/messages."""
    return json.dumps({
        "id": "msg_01BenchmarkFixedResponse", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": REPLY_TEXT}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 231, "output_tokens": 64},
    }, ensure_ascii=False, separators=(",", ":")).encode()


def openai_completion() -> bytes:
    """What nginx answers on POST /v1/chat/completions (the OpenAI-compatible upstream)."""
    return json.dumps({
        "id": "chatcmpl-BenchmarkFixedResponse", "object": "chat.completion", "created": 1763700000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY_TEXT},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 231, "completion_tokens": 64, "total_tokens": 295},
    }, ensure_ascii=False, separators=(",", ":")).encode()


def sse_event(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


def stream_head() -> bytes:
    """message_start and content_block_start: what opens every Anthropic stream."""
    return sse_event("message_start", {"type": "message_start", "message": {
        "id": "msg_01BenchmarkStream", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 231, "output_tokens": 1}}}) + \
        sse_event("content_block_start", {"type": "content_block_start", "index": 0,
                                          "content_block": {"type": "text", "text": ""}})


def text_delta(text: str) -> bytes:
    return sse_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "text_delta", "text": text}})


def stream_tail(output_tokens: int) -> bytes:
    return sse_event("content_block_stop", {"type": "content_block_stop", "index": 0}) + \
        sse_event("message_delta", {"type": "message_delta",
                                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                    "usage": {"output_tokens": output_tokens}}) + \
        sse_event("message_stop", {"type": "message_stop"})


def stream_words(deltas: int = STREAM_DELTAS) -> list[str]:
    """The text of each delta of the 500-chunk stream."""
    return [_WORDS[i % len(_WORDS)] + " " for i in range(deltas)]


def anthropic_stream(deltas: int = STREAM_DELTAS) -> bytes:
    """An Anthropic Messages SSE stream with `deltas` text deltas (one word each)."""
    parts = [stream_head()]
    parts += [text_delta(w) for w in stream_words(deltas)]
    parts.append(stream_tail(deltas))
    return b"".join(parts)


def write_docroot(root: Path) -> None:
    """The files nginx serves (its `root`): paths are the provider paths the filter calls."""
    (root / "v1" / "chat").mkdir(parents=True, exist_ok=True)
    (root / "stream" / "v1").mkdir(parents=True, exist_ok=True)
    (root / "v1" / "messages").write_bytes(anthropic_message())
    (root / "v1" / "chat" / "completions").write_bytes(openai_completion())
    (root / "stream" / "v1" / "messages").write_bytes(anthropic_stream())
