#!/usr/bin/env python3
"""Mock LLM providers for llm-gateway: Anthropic Messages and OpenAI Chat Completions.

Standard library only (Python 3.11+). One process serves both flavours, each on
its own port:

    python3 tests/mocks/mock_providers.py --anthropic-port 9101 --openai-port 9102

or, from Python (tests start it in-process on free ports):

    from mock_providers import MockProviders
    mocks = MockProviders().start()      # ports chosen by the OS
    mocks.anthropic_port, mocks.openai_port
    mocks.stop()

The payloads follow the providers' published API references: Anthropic's
`POST /v1/messages` (JSON and the `message_start` ... `message_stop` SSE event
stream, `{"type":"error","error":{...}}` errors, status 529 for overload) and
OpenAI's `POST .../chat/completions` (`chat.completion`, `chat.completion.chunk`
SSE ending with `data: [DONE]`, `{"error":{"message","type","param","code"}}`).

Default answers (no script):

* Anthropic: "Hello from the mock Anthropic provider! You said: <last user text>"
  OpenAI:    "Hello from the mock OpenAI provider! You said: <last user text>"
  (" (with N image(s))" is appended when the last user message has images).
* Tools: when the request has tools (and tool_choice does not forbid them) and
  the last message is a plain user turn (for Anthropic: a user message without
  `tool_result` blocks; for OpenAI: role `user`), the answer calls the first tool
  (or the one tool_choice names) with arguments generated from its JSON schema
  (strings named like city/location get "Zürich", other strings "sample <name>",
  integers 3, numbers 21.5, booleans true, enums their first value). Anthropic
  answers with a short text block ("I'll use the <name> tool.") followed by a
  `tool_use` block, stop_reason `tool_use`, as Claude does with tool_choice auto;
  OpenAI with `tool_calls`, content null, finish_reason `tool_calls`.
  After a tool result (Anthropic user message with `tool_result`, OpenAI role
  `tool`) the answer is text: "The tool returned: <result text>".
* `stop_sequences` / `stop`: the text is cut before the first stop sequence it
  contains (Anthropic stop_reason `stop_sequence`, OpenAI finish_reason `stop`).
* `max_tokens` (OpenAI also `max_completion_tokens`): the text is cut to that
  many "tokens" (a token is a whitespace-delimited word with its trailing
  spaces); stop_reason `max_tokens` / finish_reason `length`.
* Usage: input tokens = words in system, messages and tools (+16 per image);
  output tokens = words in the answer text plus words in the JSON of tool inputs.
* Streams: every SSE event is its own write (its own HTTP chunk, chunked
  transfer-encoding) with `chunk_delay_ms` between writes. The write carrying the
  first non-ASCII character of the streamed text is split in the middle of that
  character's UTF-8 bytes (two chunks, 20 ms apart). Anthropic tool input arrives
  as an empty `input_json_delta` followed by four pieces.

Validation, as the real APIs do it (cheap checks only), answered in the
flavour's error format:

* Anthropic: `x-api-key` missing -> 401 authentication_error; `anthropic-version`
  missing -> 400; body not JSON, `model` / `max_tokens` / `messages` missing or
  mistyped, unknown top-level fields ("Extra inputs are not permitted"), roles
  other than user/assistant, first message not user, roles not alternating,
  image blocks without a valid `source`, tools without `input_schema`,
  `tool_result` without a matching `tool_use` in the previous assistant turn,
  `tool_use` not answered by `tool_result` in the next user turn,
  `tool_use` / `tool_result` blocks in a request without `tools`,
  temperature outside [0, 1] -> 400 invalid_request_error; empty or
  whitespace-only text blocks (system or messages, but a final assistant
  prefill) -> 400 "text content blocks must contain non-whitespace text";
  `output_format` without `anthropic-beta: structured-outputs-2025-11-13`, or
  with a schema that has an object not closed by `additionalProperties: false`
  or a constraint Anthropic refuses (`minimum`, `maxLength`, `oneOf` ...) ->
  400. With a valid `output_format` the answer is the JSON text of a sample of
  the schema (plain text content, no tool).
* OpenAI: missing bearer -> 401; body not JSON, missing `model` / `messages`,
  unknown roles, `tool` messages not answering a preceding `tool_calls`,
  `stream_options` without `stream: true` -> 400.
* With `require_key` (`--anthropic-key` / `--openai-key`) a wrong key -> 401.

Control API (on each port, never recorded, never consumes the script):

* `POST /__mock/script` with a JSON list (or one object) of behaviours, appended
  to a queue; each later provider request (POST to the provider endpoint) takes
  the next one. Keys, combinable where it makes sense:
    {"delay_ms": 200}               sleep before answering
    {"status": 529}                 answer that status with the flavour's canonical
                                    error body (429 adds `retry-after: 1`)
    {"status": 500, "body": ...}    exact body (JSON value, or a string sent raw)
    {"headers": {...}}              extra response headers
    {"response": {...}}             exact JSON body (status 200 unless given)
    {"sse": "raw text"}             raw stream body, one write per blank-line
                                    separated event
    {"sse_chunks": ["..", ".."]}    raw stream body, one write per list item
    {"reset_after_events": 3}       stream: write 3 SSE events then abort the TCP
                                    connection with RST (SO_LINGER 0) without
                                    finishing the chunked body; non-stream: 0 =
                                    reset before any byte, N>0 = headers and half
                                    the body, then reset
    {"truncate_after_events": 3}    stream: write 3 SSE events then end the HTTP
                                    response cleanly (terminating chunk)
    {"stall_after_events": 3}       stream: write 3 events, then go silent for
                                    `stall_ms` (default 60000; cut short by a reset)
                                    with the connection open, then finish normally
    {"error_after_events": 3}       stream: write 3 events, then an SSE error event
                                    (Anthropic `event: error` overloaded_error;
                                    OpenAI `data: {"error":...}`), then end cleanly
    {"text": "..."}                 the answer text
    {"tool_calls": [{"name": "f", "arguments": {...}}]}
                                    answer with these tool calls ([] = never call tools)
    {"stop_reason": "..."}          (Anthropic) / {"finish_reason": "..."} (OpenAI)
    {"usage": {...}}                fields merged into the usage object
    {"chunk_delay_ms": 50}          delay between stream writes
  Matching and repetition (for several deployments sharing one mock):
    {"match_model": "model-a", ...}  only a request whose body `model` is exactly
                                    this takes the behaviour (a list: any of them);
                                    a request takes the first pending behaviour
                                    that matches it, so behaviours for other
                                    models stay queued; a behaviour without
                                    `match_model` matches every request
    {"match_stream": true, ...}     only streaming (true) / non-streaming (false)
                                    requests take it
    {"repeat": 5, ...}              used by the next 5 matching requests, then
                                    dropped (default 1); `GET /__mock/script`
                                    shows how many uses are left
    {"reset_before_headers": true}  abort the TCP connection with RST before any
                                    response byte, streaming or not (after
                                    `delay_ms`, if given)
  Delays (`delay_ms`) end early when the mock is reset, so a "hang" (a delay
  longer than the client's timeout) never outlives its test.
* `DELETE /__mock/script`: drop the pending behaviours (requests stay recorded).
* `GET /__mock/script`: behaviours not yet consumed.
* `GET /__mock/requests`: JSON list of every request received since the last
  reset: {"seq", "method", "path", "headers" (lower-case name -> value),
  "header_list" ([name, value] pairs as received), "body" (parsed JSON or null),
  "raw_body" (text, only when the body is not JSON), "body_bytes", "script"
  (behaviour used or null), "response": {"status", "stream", "usage",
  "outcome", and for generated answers "id", "usage", "content" (Anthropic blocks) or
  "message" (OpenAI), "stop_reason" / "finish_reason"}}.
* `POST /__mock/reset`: forget requests and pending script; cut pending delays short.
* `GET /__mock/health`: {"ok": true, "flavour": ...}.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import signal
import socket
import string
import struct
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANTHROPIC = "anthropic"
OPENAI = "openai"

ANTHROPIC_ERROR_TYPES = {
    400: ("invalid_request_error", "Invalid request: the mock provider rejected this request"),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "Not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}

OPENAI_ERRORS = {
    400: ("Invalid request: the mock provider rejected this request", "invalid_request_error", None, None),
    401: (
        "Incorrect API key provided: sk-****. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        None,
        "invalid_api_key",
    ),
    403: ("You are not allowed to sample from this model", "invalid_request_error", None, None),
    404: ("The model does not exist or you do not have access to it.", "invalid_request_error", None, "model_not_found"),
    429: (
        "Rate limit reached for gpt-4o-mini in organization org-mock on requests per min (RPM): "
        "Limit 3, Used 3, Requested 1. Please try again in 20s.",
        "requests",
        None,
        "rate_limit_exceeded",
    ),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None, None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None, None),
}

REASONS = {529: "Overloaded"}  # not in http.server's table

ANTHROPIC_TOP_LEVEL = {
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
    "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier",
    "container", "mcp_servers", "context_management", "output_format",
}
ANTHROPIC_BLOCK_TYPES = {
    "text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking",
    "search_result", "server_tool_use", "web_search_tool_result",
}
IMAGE_MEDIA_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
OPENAI_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


# ---------------------------------------------------------------- helpers


def _rand(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(random.choice(alphabet) for _ in range(n))


def words(text: str) -> list[str]:
    """Split text into "tokens": words with their trailing whitespace. Joins back exactly."""
    return re.findall(r"\S+\s*|\s+", text)


def count_tokens(text: str) -> int:
    return len(words(text))


def dumps(obj: Any) -> str:
    """Compact JSON with raw UTF-8, as the providers send it."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


STRUCTURED_OUTPUTS_BETA = "structured-outputs-2025-11-13"
OUTPUT_SCHEMA_REFUSED = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
                         "maxLength", "maxItems", "uniqueItems", "oneOf", "not", "if", "patternProperties"}


def _check_output_schema(node: Any, where: str = "output_format.schema") -> None:
    """Anthropic's structured outputs: closed objects only, no constraints its grammar cannot enforce."""
    if not isinstance(node, dict):
        return
    refused = sorted(OUTPUT_SCHEMA_REFUSED & set(node))
    if refused:
        raise ValidationError(400, f"{where}: property '{refused[0]}' is not supported")
    t = node.get("type")
    if (t == "object" or (isinstance(t, list) and "object" in t)) and node.get("additionalProperties") is not False:
        raise ValidationError(400, f"{where}: For 'object' type, 'additionalProperties' must be explicitly set "
                                   f"to false")
    for key in ("properties", "$defs", "definitions"):
        for k, sub in (node.get(key) or {}).items():
            _check_output_schema(sub, f"{where}.{key}.{k}")
    items = node.get("items")
    for i, sub in enumerate(items if isinstance(items, list) else [items]):
        _check_output_schema(sub, f"{where}.items")
    for key in ("anyOf", "allOf"):
        for i, sub in enumerate(node.get(key) or []):
            _check_output_schema(sub, f"{where}.{key}.{i}")


def sample_from_schema(schema: Any, name: str = "value") -> Any:
    """Plausible arguments for a JSON schema (see module doc)."""
    if not isinstance(schema, dict):
        return f"sample {name}"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return sample_from_schema(schema[key][0], name)
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "string")
    if typ == "object" or (typ is None and "properties" in schema):
        props = schema.get("properties") or {}
        return {k: sample_from_schema(v, k) for k, v in props.items()}
    if typ == "array":
        return [sample_from_schema(schema.get("items") or {"type": "string"}, name)]
    if typ == "integer":
        return 3
    if typ == "number":
        return 21.5
    if typ == "boolean":
        return True
    if typ == "null":
        return None
    lname = name.lower()
    if any(w in lname for w in ("city", "location", "place", "town")):
        return "Zürich"
    return f"sample {name}"


def split_in_pieces(s: str, n: int) -> list[str]:
    """Split a string into n non-empty pieces (fewer if it is shorter)."""
    n = max(1, min(n, len(s)))
    size = len(s) / n
    cuts = [round(i * size) for i in range(n + 1)]
    return [s[cuts[i]:cuts[i + 1]] for i in range(n) if cuts[i] < cuts[i + 1]]


# Anthropic refuses a max_tokens above the model's maximum output (models' pages, docs.anthropic.com).
ANTHROPIC_MAX_OUTPUT = (("claude-sonnet-4-5", 64000), ("claude-haiku-4-5", 64000), ("claude-opus-4-1", 32000),
                        ("claude-3-5-haiku", 8192), ("claude-3-haiku", 4096))


def cut_text(text: str, stops: list[str], max_tokens: int | None) -> tuple[str, str | None, str | None]:
    """Apply stop sequences then max_tokens. Returns (text, reason, matched_stop).

    reason: None (natural end), "stop_sequence" or "max_tokens".
    """
    best = None
    for s in stops:
        if isinstance(s, str) and s:
            i = text.find(s)
            if i >= 0 and (best is None or i < best[0]):
                best = (i, s)
    reason = None
    matched = None
    if best is not None:
        text = text[: best[0]]
        reason, matched = "stop_sequence", best[1]
    if isinstance(max_tokens, int) and max_tokens >= 0:
        w = words(text)
        if len(w) > max_tokens:
            text = "".join(w[:max_tokens])
            reason, matched = "max_tokens", None
    return text, reason, matched


# ---------------------------------------------------------------- state


class MockState:
    """Recorded requests and the pending script of one port."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.script: deque = deque()
        self.seq = 0
        self.wake = threading.Event()  # set on reset: pending delays end

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.script.clear()
            self.wake.set()
            self.wake = threading.Event()

    def clear_script(self) -> None:
        with self.lock:
            self.script.clear()

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake up early when the mock is reset."""
        with self.lock:
            ev = self.wake
        if seconds > 0:
            ev.wait(seconds)

    def add_script(self, items: list[dict]) -> None:
        with self.lock:
            self.script.extend(items)

    def next_behaviour(self, req: Any = None) -> dict | None:
        """The first pending behaviour that matches this request body (see the module doc)."""
        body = req if isinstance(req, dict) else {}
        with self.lock:
            for i, b in enumerate(self.script):
                if not _behaviour_matches(b, body):
                    continue
                left = b.get("repeat", 1)
                left = int(left) if isinstance(left, (int, float)) and not isinstance(left, bool) else 1
                if left > 1:
                    b["repeat"] = left - 1
                    return {**b, "repeat": left}
                del self.script[i]
                return b
            return None

    def record(self, rec: dict) -> dict:
        with self.lock:
            self.seq += 1
            rec["seq"] = self.seq
            self.requests.append(rec)
        return rec

    def snapshot(self) -> list[dict]:
        with self.lock:
            return json.loads(json.dumps(self.requests))


def _behaviour_matches(b: dict, body: dict) -> bool:
    want = b.get("match_model")
    if want is not None:
        names = want if isinstance(want, list) else [want]
        if body.get("model") not in names:
            return False
    if "match_stream" in b and bool(b["match_stream"]) != (body.get("stream") is True):
        return False
    return True


class _Reset(Exception):
    """The handler aborted the connection on purpose."""


class ValidationError(Exception):
    def __init__(self, status: int, message: str, etype: str | None = None, param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.etype = etype
        self.param = param
        self.code = code


# ---------------------------------------------------------------- HTTP plumbing


class MockHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-provider/1.0"
    sys_version = ""
    timeout = 300  # idle keep-alive connections are closed after this

    server: "ProviderServer"

    # -- BaseHTTPRequestHandler hooks

    def handle(self) -> None:
        self.was_reset = False
        try:
            super().handle()
        except ValueError:
            # http.server flushes wfile after each request; after a deliberate reset it is closed
            if not self.was_reset:
                raise
        except (ConnectionResetError, BrokenPipeError, TimeoutError):
            pass

    def log_message(self, fmt: str, *args: Any) -> None:  # noqa: D401
        if self.server.verbose:
            sys.stderr.write("[mock %s] %s\n" % (self.server.flavour, fmt % args))

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    # -- body / response primitives

    def _read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    break
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until blank line
                    while True:
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                out += self.rfile.read(size)
                self.rfile.readline(65537)  # CRLF after chunk
            return bytes(out)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send_head(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.send_response_only(status, REASONS.get(status))
        self.send_header("Date", self.date_time_string())
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()

    def send_body(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        hdrs = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        hdrs += list(self.server.base_headers())
        hdrs += [(k, str(v)) for k, v in (headers or {}).items()]
        self._send_head(status, hdrs)
        self.wfile.write(body)
        self.wfile.flush()

    def send_json(self, status: int, obj: Any, headers: dict | None = None) -> None:
        self.send_body(status, dumps(obj).encode(), "application/json", headers)

    def start_chunked(self, status: int, content_type: str, headers: dict | None = None) -> None:
        hdrs = [("Content-Type", content_type), ("Transfer-Encoding", "chunked"), ("Cache-Control", "no-cache")]
        hdrs += list(self.server.base_headers())
        hdrs += [(k, str(v)) for k, v in (headers or {}).items()]
        self._send_head(status, hdrs)
        self.wfile.flush()

    def write_chunk(self, data: bytes) -> None:
        if not data:
            return
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def reset_connection(self) -> None:
        """Abort the TCP connection with RST: SO_LINGER 0, then close the fd."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        self.was_reset = True
        for f in (self.wfile, self.rfile):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.connection.close()
        except OSError:
            pass
        raise _Reset()

    # -- dispatch

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        path = self.path
        bare = path.split("?", 1)[0]
        try:
            if bare.startswith("/__mock/"):
                self._control(bare, body)
                return
            self.server.provider_request(self, path, bare, body)
        except _Reset:
            return
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _control(self, bare: str, body: bytes) -> None:
        state = self.server.state
        if bare == "/__mock/script" and self.command == "POST":
            try:
                items = json.loads(body or b"[]")
            except ValueError as e:
                self.send_json(400, {"ok": False, "error": f"script is not JSON: {e}"})
                return
            if isinstance(items, dict):
                items = [items]
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                self.send_json(400, {"ok": False, "error": "script must be a list of objects"})
                return
            state.add_script(items)
            self.send_json(200, {"ok": True, "pending": len(state.script)})
        elif bare == "/__mock/script" and self.command == "DELETE":
            state.clear_script()
            self.send_json(200, {"ok": True})
        elif bare == "/__mock/script" and self.command == "GET":
            with state.lock:
                self.send_json(200, list(state.script))
        elif bare == "/__mock/requests" and self.command == "GET":
            self.send_json(200, state.snapshot())
        elif bare == "/__mock/reset" and self.command == "POST":
            state.reset()
            self.send_json(200, {"ok": True})
        elif bare == "/__mock/health":
            self.send_json(200, {"ok": True, "flavour": self.server.flavour})
        else:
            self.send_json(404, {"ok": False, "error": f"unknown control endpoint {self.command} {bare}"})


class ProviderServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, flavour: str, host: str, port: int, chunk_delay_ms: float = 10.0,
                 require_key: str | None = None, verbose: bool = False):
        self.flavour = flavour
        self.state = MockState()
        self.chunk_delay_ms = chunk_delay_ms
        self.require_key = require_key
        self.verbose = verbose
        super().__init__((host, port), MockHandler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def base_headers(self) -> list[tuple[str, str]]:
        if self.flavour == ANTHROPIC:
            return [("request-id", "req_" + _rand(24)), ("anthropic-organization-id", "mock-org-0000"),
                    ("x-mock-provider", ANTHROPIC)]
        return [("x-request-id", "req_" + _rand(24)), ("openai-version", "2020-10-01"),
                ("openai-organization", "org-mock"), ("openai-processing-ms", "7"),
                ("x-mock-provider", OPENAI)]

    def provider_request(self, h: MockHandler, path: str, bare: str, body: bytes) -> None:
        rec: dict[str, Any] = {
            "time": time.time(),
            "method": h.command,
            "path": path,
            "headers": {},
            "header_list": [[k, v] for k, v in h.headers.items()],
            "body": None,
            "body_bytes": len(body),
            "script": None,
            "response": {"status": None, "stream": False, "usage": None, "outcome": None},
        }
        for k, v in h.headers.items():
            lk = k.lower()
            rec["headers"][lk] = v if lk not in rec["headers"] else rec["headers"][lk] + ", " + v
        try:
            rec["body"] = json.loads(body) if body else None
        except ValueError:
            rec["raw_body"] = body.decode("utf-8", "replace")
        self.state.record(rec)
        if self.flavour == ANTHROPIC and bare == "/v1/messages/count_tokens" and h.command == "POST":
            count_tokens_answer(self, h, rec, body)
            return
        if self.flavour == OPENAI and bare.endswith("/completions") and not bare.endswith("/chat/completions") \
                and h.command == "POST":
            TextCompletion(self, h, rec, body, self.state.next_behaviour(rec["body"]) or {}).run()
            return
        if self.flavour == ANTHROPIC:
            is_endpoint = bare == "/v1/messages"
            ep = AnthropicEndpoint
        else:
            is_endpoint = bare.endswith("/chat/completions")
            ep = OpenAIEndpoint
        if not is_endpoint or h.command != "POST":
            ep.not_found(h, rec)
            return
        behaviour = self.state.next_behaviour(rec["body"]) or {}
        rec["script"] = behaviour or None
        ep(self, h, rec, body, behaviour).run()


# ---------------------------------------------------------------- shared endpoint logic


class Endpoint:
    flavour = ""

    def __init__(self, server: ProviderServer, h: MockHandler, rec: dict, body: bytes, behaviour: dict):
        self.server = server
        self.h = h
        self.rec = rec
        self.raw = body
        self.b = behaviour
        self.req: dict = rec["body"] if isinstance(rec["body"], dict) else {}
        self.delay = float(behaviour.get("chunk_delay_ms", server.chunk_delay_ms)) / 1000.0
        self.split_done = False

    # subclass API
    def validate(self) -> None: ...
    def error_body(self, status: int, message: str | None = None, etype: str | None = None,
                   param: str | None = None, code: str | None = None) -> Any: ...
    def answer_json(self) -> None: ...
    def answer_stream(self) -> None: ...
    def stream_error_event(self) -> bytes: ...

    def run(self) -> None:
        b = self.b
        if b.get("delay_ms"):
            self.server.state.sleep(float(b["delay_ms"]) / 1000.0)
        is_stream = self.req.get("stream") is True
        self.rec["response"]["stream"] = is_stream
        if b.get("reset_before_headers"):
            self.rec["response"]["outcome"] = "reset"
            self.h.reset_connection()
        if "reset_after_events" in b and not is_stream and not int(b["reset_after_events"]):
            self.rec["response"]["outcome"] = "reset"
            self.h.reset_connection()
        if "status" in b or "response" in b or "body" in b:
            self.scripted_answer()
            return
        if "sse" in b or "sse_chunks" in b:
            self.scripted_sse()
            return
        try:
            self.validate()
        except ValidationError as e:
            self.send_error(e.status, e.message, e.etype, e.param, e.code)
            return
        if is_stream:
            self.answer_stream()
        else:
            self.answer_json()

    def send_error(self, status: int, message: str | None = None, etype: str | None = None,
                   param: str | None = None, code: str | None = None, headers: dict | None = None) -> None:
        hdrs = dict(headers or {})
        if status == 429:
            hdrs.setdefault("retry-after", "1")
        self.rec["response"].update(status=status, outcome="error")
        self.h.send_json(status, self.error_body(status, message, etype, param, code), hdrs)

    def scripted_answer(self) -> None:
        b = self.b
        status = int(b.get("status", 200))
        headers = dict(b.get("headers") or {})
        if "response" in b:
            body = b["response"]
        elif "body" in b:
            body = b["body"]
        elif status >= 400:
            if status == 429:
                headers.setdefault("retry-after", "1")
            body = self.error_body(status)
        else:
            # a plain status override on a normal answer
            try:
                self.validate()
            except ValidationError as e:
                self.send_error(e.status, e.message, e.etype, e.param, e.code)
                return
            self.status_override = status
            if self.req.get("stream") is True:
                self.answer_stream()
            else:
                self.answer_json()
            return
        self.rec["response"].update(status=status, outcome="scripted")
        if isinstance(body, str):
            data = body.encode()
            ctype = headers.pop("content-type", headers.pop("Content-Type", "text/plain; charset=utf-8"))
        else:
            data = dumps(body).encode()
            ctype = headers.pop("content-type", headers.pop("Content-Type", "application/json"))
        n = b.get("reset_after_events")
        if n is not None and int(n) > 0:
            self.h._send_head(status, [("Content-Type", ctype), ("Content-Length", str(len(data)))])
            self.h.wfile.write(data[: len(data) // 2])
            self.h.wfile.flush()
            time.sleep(0.02)
            self.rec["response"]["outcome"] = "reset"
            self.h.reset_connection()
        self.h.send_body(status, data, ctype, headers)

    def scripted_sse(self) -> None:
        b = self.b
        if "sse_chunks" in b:
            chunks = [c.encode() if isinstance(c, str) else bytes(c) for c in b["sse_chunks"]]
        else:
            raw = b["sse"]
            parts = re.split(r"(?<=\n\n)", raw)
            chunks = [p.encode() for p in parts if p]
        status = int(b.get("status", 200))
        self.rec["response"].update(status=status, stream=True, outcome="scripted")
        self.h.start_chunked(status, "text/event-stream; charset=utf-8", b.get("headers"))
        for i, c in enumerate(chunks):
            if i:
                time.sleep(self.delay)
            self.h.write_chunk(c)
        self.h.end_chunks()

    # -- stream writing with fault injection

    def stream_events(self, events: list[bytes], text_has_split: bool = True) -> None:
        """Write events one per chunk, honouring reset/truncate/error_after_events."""
        b = self.b
        reset_n = b.get("reset_after_events")
        trunc_n = b.get("truncate_after_events")
        err_n = b.get("error_after_events")
        limit = None
        for n in (reset_n, trunc_n, err_n):
            if n is not None:
                limit = int(n)
        self.rec["response"]["outcome"] = "complete"
        stall_n = b.get("stall_after_events")
        for i, ev in enumerate(events):
            if limit is not None and i >= limit:
                break
            if stall_n is not None and i == int(stall_n):
                self.rec["response"]["outcome"] = "stalled"
                self.server.state.sleep(float(b.get("stall_ms", 60000)) / 1000.0)
            if i:
                time.sleep(self.delay)
            self.write_event(ev)
        if reset_n is not None:
            time.sleep(0.05)
            self.rec["response"]["outcome"] = "reset"
            self.h.reset_connection()
        if err_n is not None:
            time.sleep(self.delay)
            self.write_event(self.stream_error_event())
            self.rec["response"]["outcome"] = "error_event"
        elif trunc_n is not None:
            self.rec["response"]["outcome"] = "truncated"
        self.h.end_chunks()

    def write_event(self, data: bytes) -> None:
        """One write, except the first event with a non-ASCII character: split mid-character."""
        if not self.split_done:
            for i, byte in enumerate(data):
                if byte >= 0xC0:  # lead byte of a multi-byte sequence
                    self.split_done = True
                    self.h.write_chunk(data[: i + 1])
                    time.sleep(0.02)
                    self.h.write_chunk(data[i + 1:])
                    return
        self.h.write_chunk(data)

    # -- common request inspection

    def stops(self, key: str) -> list[str]:
        s = self.req.get(key)
        if isinstance(s, str):
            return [s]
        if isinstance(s, list):
            return [x for x in s if isinstance(x, str)]
        return []


# ---------------------------------------------------------------- Anthropic


def _anthropic_text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for blk in content:
            if isinstance(blk, dict):
                if blk.get("type") == "text":
                    parts.append(str(blk.get("text", "")))
                elif blk.get("type") == "tool_result":
                    parts.append(_anthropic_text_of(blk.get("content", "")))
        return " ".join(p for p in parts if p)
    return ""


class AnthropicEndpoint(Endpoint):
    flavour = ANTHROPIC

    @staticmethod
    def not_found(h: MockHandler, rec: dict) -> None:
        rec["response"].update(status=404, outcome="error")
        h.send_json(404, {"type": "error", "error": {"type": "not_found_error",
                                                     "message": f"Not Found: {h.command} {h.path}"},
                          "request_id": "req_" + _rand(24)})

    def error_body(self, status, message=None, etype=None, param=None, code=None):
        dt, dm = ANTHROPIC_ERROR_TYPES.get(status, ("api_error", f"HTTP {status}"))
        return {"type": "error", "error": {"type": etype or dt, "message": message or dm},
                "request_id": "req_" + _rand(24)}

    def stream_error_event(self) -> bytes:
        err = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return f"event: error\ndata: {dumps(err)}\n\n".encode()

    # -- validation

    def validate(self) -> None:
        E = ValidationError
        hdrs = self.rec["headers"]
        key = hdrs.get("x-api-key")
        if not key:
            raise E(401, "x-api-key header is required", "authentication_error")
        if self.server.require_key is not None and key != self.server.require_key:
            raise E(401, "invalid x-api-key", "authentication_error")
        if not hdrs.get("anthropic-version"):
            raise E(400, "anthropic-version: header is required")
        if self.rec["body"] is None or not isinstance(self.rec["body"], dict):
            raise E(400, "There was an error parsing the body of your request as JSON")
        r = self.req
        for k in r:
            if k not in ANTHROPIC_TOP_LEVEL:
                raise E(400, f"{k}: Extra inputs are not permitted")
        if not isinstance(r.get("model"), str) or not r["model"]:
            raise E(400, "model: Field required" if "model" not in r else "model: Input should be a valid string")
        if "max_tokens" not in r:
            raise E(400, "max_tokens: Field required")
        mt = r["max_tokens"]
        if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
            raise E(400, "max_tokens: Input should be a valid integer greater than or equal to 1")
        most = next((n for prefix, n in ANTHROPIC_MAX_OUTPUT if r["model"].startswith(prefix)), None)
        if most is not None and mt > most:
            raise E(400, f"max_tokens: {mt} > {most}, which is the maximum allowed number of output tokens "
                         f"for {r['model']}")
        if "stream" in r and not isinstance(r["stream"], bool):
            raise E(400, "stream: Input should be a valid boolean")
        t = r.get("temperature")
        if t is not None and (not isinstance(t, (int, float)) or isinstance(t, bool) or not 0 <= t <= 1):
            raise E(400, "temperature: Input should be less than or equal to 1")
        if "stop_sequences" in r and not (isinstance(r["stop_sequences"], list)
                                          and all(isinstance(s, str) for s in r["stop_sequences"])):
            raise E(400, "stop_sequences: Input should be a valid list of strings")
        sysp = r.get("system")
        if sysp is not None and not isinstance(sysp, str):
            if not isinstance(sysp, list) or not all(isinstance(x, dict) and x.get("type") == "text"
                                                     and isinstance(x.get("text"), str) for x in sysp):
                raise E(400, "system: Input should be a valid string or a list of text blocks")
            if any(not x["text"].strip() for x in sysp):
                raise E(400, "system: text content blocks must contain non-whitespace text")
        of = r.get("output_format")
        if of is not None:
            if STRUCTURED_OUTPUTS_BETA not in hdrs.get("anthropic-beta", ""):
                raise E(400, "output_format: Extra inputs are not permitted")
            if not isinstance(of, dict) or of.get("type") != "json_schema" or not isinstance(of.get("schema"), dict):
                raise E(400, "output_format: Input tag does not match the expected tag 'json_schema'")
            _check_output_schema(of["schema"])
        md = r.get("metadata")
        if md is not None and (not isinstance(md, dict) or any(k != "user_id" for k in md)):
            raise E(400, "metadata: only `user_id` is permitted")
        tools = r.get("tools")
        names = set()
        if tools is not None:
            if not isinstance(tools, list):
                raise E(400, "tools: Input should be a valid list")
            for i, tl in enumerate(tools):
                if not isinstance(tl, dict):
                    raise E(400, f"tools.{i}: Input should be a valid dictionary")
                if "type" in tl and tl["type"] not in ("custom",) and "input_schema" not in tl:
                    continue  # server tools (web_search_...) have no input_schema
                if not isinstance(tl.get("name"), str) or not re.fullmatch(r"[a-zA-Z0-9_-]{1,128}", tl["name"]):
                    raise E(400, f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
                if "input_schema" not in tl:
                    raise E(400, f"tools.{i}.custom.input_schema: Field required")
                sch = tl["input_schema"]
                if not isinstance(sch, dict) or sch.get("type") != "object":
                    raise E(400, f"tools.{i}.custom.input_schema.type: Input should be 'object'")
                extra = set(tl) - {"name", "description", "input_schema", "type", "cache_control", "strict"}
                if extra:
                    raise E(400, f"tools.{i}.custom.{sorted(extra)[0]}: Extra inputs are not permitted")
                if tl["name"] in names:
                    raise E(400, "tools: Tool names must be unique.")
                names.add(tl["name"])
        tc = r.get("tool_choice")
        if tc is not None:
            if not isinstance(tc, dict) or tc.get("type") not in ("auto", "any", "tool", "none"):
                raise E(400, "tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'")
            if tc["type"] == "tool" and tc.get("name") not in names:
                raise E(400, f"tool_choice.tool.name: tool `{tc.get('name')}` is not in tools")
        msgs = r.get("messages")
        if msgs is None:
            raise E(400, "messages: Field required")
        if not isinstance(msgs, list):
            raise E(400, "messages: Input should be a valid list")
        if not msgs:
            raise E(400, "messages: at least one message is required")
        prev_role = None
        pending_tool_ids: set[str] = set()
        for i, m in enumerate(msgs):
            if not isinstance(m, dict):
                raise E(400, f"messages.{i}: Input should be a valid dictionary")
            role = m.get("role")
            if role not in ("user", "assistant"):
                raise E(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
            extra = set(m) - {"role", "content"}
            if extra:
                raise E(400, f"messages.{i}.{sorted(extra)[0]}: Extra inputs are not permitted")
            if i == 0 and role != "user":
                raise E(400, 'messages: first message must use the "user" role')
            if role == prev_role:
                raise E(400, f'messages: roles must alternate between "user" and "assistant", '
                             f'but found multiple "{role}" roles in a row')
            prev_role = role
            content = m.get("content")
            if "content" not in m:
                raise E(400, f"messages.{i}.content: Field required")
            blocks = content if isinstance(content, list) else None
            if isinstance(content, str):
                if content == "" and not (role == "assistant" and i == len(msgs) - 1):
                    raise E(400, f"messages.{i}: all messages must have non-empty content except for "
                                 f"the optional final assistant message")
            elif blocks is None:
                raise E(400, f"messages.{i}.content: Input should be a valid string or list")
            elif not blocks and not (role == "assistant" and i == len(msgs) - 1):
                raise E(400, f"messages.{i}: all messages must have non-empty content except for "
                             f"the optional final assistant message")
            result_ids: set[str] = set()
            use_ids: set[str] = set()
            for j, blk in enumerate(blocks or []):
                where = f"messages.{i}.content.{j}"
                if not isinstance(blk, dict) or blk.get("type") not in ANTHROPIC_BLOCK_TYPES:
                    got = blk.get("type") if isinstance(blk, dict) else type(blk).__name__
                    raise E(400, f"{where}: Input tag '{got}' found using 'type' does not match any of the "
                                 f"expected tags: 'text', 'image', 'document', 'tool_use', 'tool_result', ...")
                bt = blk["type"]
                if bt == "text":
                    if not isinstance(blk.get("text"), str):
                        raise E(400, f"{where}.text.text: Field required")
                    if not blk["text"].strip() and not (role == "assistant" and i == len(msgs) - 1):
                        raise E(400, "messages: text content blocks must contain non-whitespace text")
                    if set(blk) - {"type", "text", "cache_control", "citations"}:
                        raise E(400, f"{where}.text.{sorted(set(blk) - {'type', 'text', 'cache_control', 'citations'})[0]}: "
                                     f"Extra inputs are not permitted")
                elif bt == "image":
                    if role != "user":
                        raise E(400, f"{where}: image blocks are only allowed in user messages")
                    src = blk.get("source")
                    if not isinstance(src, dict):
                        raise E(400, f"{where}.image.source: Field required")
                    st = src.get("type")
                    if st == "base64":
                        if src.get("media_type") not in IMAGE_MEDIA_TYPES:
                            raise E(400, f"{where}.image.source.base64.media_type: Input should be 'image/jpeg', "
                                         f"'image/png', 'image/gif' or 'image/webp'")
                        if not isinstance(src.get("data"), str) or not src["data"]:
                            raise E(400, f"{where}.image.source.base64.data: Field required")
                        if not re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", src["data"]):
                            raise E(400, f"{where}.image.source.base64.data: invalid base64 data")
                    elif st == "url":
                        if not isinstance(src.get("url"), str) or not src["url"].startswith(("http://", "https://")):
                            raise E(400, f"{where}.image.source.url.url: Field required")
                    else:
                        raise E(400, f"{where}.image.source: Input tag '{st}' found using 'type' does not match "
                                     f"any of the expected tags: 'base64', 'url', 'file'")
                elif bt == "tool_use":
                    if role != "assistant":
                        raise E(400, f"{where}: tool_use blocks are only allowed in assistant messages")
                    if not isinstance(blk.get("id"), str) or not isinstance(blk.get("name"), str):
                        raise E(400, f"{where}.tool_use.id: Field required")
                    if not isinstance(blk.get("input"), dict):
                        raise E(400, f"{where}.tool_use.input: Input should be a valid dictionary")
                    use_ids.add(blk["id"])
                elif bt == "tool_result":
                    if role != "user":
                        raise E(400, f"{where}: tool_result blocks are only allowed in user messages")
                    tid = blk.get("tool_use_id")
                    if not isinstance(tid, str):
                        raise E(400, f"{where}.tool_result.tool_use_id: Field required")
                    c = blk.get("content")
                    if c is not None and not isinstance(c, (str, list)):
                        raise E(400, f"{where}.tool_result.content: Input should be a valid string or list")
                    if tid not in pending_tool_ids:
                        raise E(400, f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: {tid}. "
                                     f"Each `tool_result` block must have a corresponding `tool_use` block "
                                     f"in the previous message.")
                    result_ids.add(tid)
            if role == "user" and pending_tool_ids:
                missing = pending_tool_ids - result_ids
                if missing:
                    raise E(400, f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                                 f"immediately after: {', '.join(sorted(missing))}. Each `tool_use` block must "
                                 f"have a corresponding `tool_result` block in the next message.")
            if (use_ids or result_ids) and not names:
                raise E(400, f"messages.{i}: Requests which include `tool_use` or `tool_result` blocks "
                             f"must define tools.")
            pending_tool_ids = use_ids if role == "assistant" else set()

    # -- answer planning

    def plan(self) -> dict:
        r, b = self.req, self.b
        msgs = r.get("messages") or []
        last = msgs[-1] if msgs else {}
        last_content = last.get("content")
        has_result = isinstance(last_content, list) and any(
            isinstance(x, dict) and x.get("type") == "tool_result" for x in last_content)
        tools = [t for t in (r.get("tools") or []) if isinstance(t, dict) and "input_schema" in t]
        tc = r.get("tool_choice") or {"type": "auto"}
        calls: list[dict] = []
        if "tool_calls" in b:
            calls = [{"name": c.get("name"), "arguments": c.get("arguments", {})} for c in b["tool_calls"]]
        elif tools and tc.get("type") != "none" and last.get("role") == "user" and not has_result:
            tool = tools[0]
            if tc.get("type") == "tool":
                tool = next((t for t in tools if t.get("name") == tc.get("name")), tool)
            calls = [{"name": tool["name"], "arguments": sample_from_schema(tool.get("input_schema"))}]
        of = r.get("output_format")
        if "text" in b:
            text = str(b["text"])
        elif of is not None and not calls:
            text = dumps(sample_from_schema(of["schema"]))
        elif calls:
            text = f"I'll use the {calls[0]['name']} tool." if tc.get("type") == "auto" else ""
        elif has_result:
            text = "The tool returned: " + _anthropic_text_of(last_content)
        else:
            said = _anthropic_text_of(last_content) if last.get("role") == "user" else ""
            text = f"Hello from the mock Anthropic provider! You said: {said}"
            n_img = sum(1 for x in (last_content if isinstance(last_content, list) else [])
                        if isinstance(x, dict) and x.get("type") == "image")
            if n_img:
                text += f" (with {n_img} image{'s' if n_img > 1 else ''})"
        text, reason, matched = cut_text(text, self.stops("stop_sequences"), r.get("max_tokens"))
        if reason is not None:
            calls = []
        elif calls:
            reason = "tool_use"
        else:
            reason = "end_turn"
        reason = b.get("stop_reason", reason)
        blocks: list[dict] = []
        if text or not calls:
            blocks.append({"type": "text", "text": text})
        for c in calls:
            blocks.append({"type": "tool_use", "id": "toolu_" + _rand(24), "name": c["name"],
                           "input": c["arguments"]})
        out_tokens = count_tokens(text) + sum(count_tokens(dumps(c["arguments"])) for c in calls)
        usage = {"input_tokens": self.input_tokens(), "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": 0, "output_tokens": out_tokens}
        usage.update(b.get("usage") or {})
        return {"id": "msg_" + _rand(24), "blocks": blocks, "stop_reason": reason,
                "stop_sequence": matched, "usage": usage}

    def input_tokens(self) -> int:
        r = self.req
        n = 0
        sysp = r.get("system")
        if isinstance(sysp, str):
            n += count_tokens(sysp)
        elif isinstance(sysp, list):
            n += sum(count_tokens(str(x.get("text", ""))) for x in sysp if isinstance(x, dict))
        for m in r.get("messages") or []:
            c = m.get("content") if isinstance(m, dict) else None
            if isinstance(c, str):
                n += count_tokens(c)
            elif isinstance(c, list):
                for blk in c:
                    if not isinstance(blk, dict):
                        continue
                    if blk.get("type") == "image":
                        n += 16
                    elif blk.get("type") == "tool_use":
                        n += count_tokens(dumps(blk.get("input")))
                    else:
                        n += count_tokens(_anthropic_text_of([blk]))
        for tl in r.get("tools") or []:
            n += count_tokens(dumps(tl))
        return max(n, 1)

    def answer_json(self) -> None:
        p = self.plan()
        status = getattr(self, "status_override", 200)
        body = {"id": p["id"], "type": "message", "role": "assistant", "model": self.req["model"],
                "content": p["blocks"], "stop_reason": p["stop_reason"], "stop_sequence": p["stop_sequence"],
                "usage": p["usage"]}
        self.rec["response"].update(status=status, usage=p["usage"], outcome="complete", content=p["blocks"],
                                    id=p["id"], stop_reason=p["stop_reason"])
        n = self.b.get("reset_after_events")
        if n is not None and int(n) > 0:
            data = dumps(body).encode()
            self.h._send_head(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            self.h.wfile.write(data[: len(data) // 2])
            self.h.wfile.flush()
            time.sleep(0.02)
            self.rec["response"]["outcome"] = "reset"
            self.h.reset_connection()
        self.h.send_json(status, body)

    def answer_stream(self) -> None:
        p = self.plan()
        status = getattr(self, "status_override", 200)
        self.rec["response"].update(status=status, usage=p["usage"], content=p["blocks"], id=p["id"],
                                    stop_reason=p["stop_reason"])

        def ev(obj: dict) -> bytes:
            return f"event: {obj['type']}\ndata: {dumps(obj)}\n\n".encode()

        u = p["usage"]
        start_usage = {k: v for k, v in u.items() if k != "output_tokens"}
        start_usage["output_tokens"] = 1
        events = [ev({"type": "message_start", "message": {
            "id": p["id"], "type": "message", "role": "assistant", "model": self.req["model"], "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": start_usage}})]
        for idx, blk in enumerate(p["blocks"]):
            if blk["type"] == "text":
                events.append(ev({"type": "content_block_start", "index": idx,
                                  "content_block": {"type": "text", "text": ""}}))
                if idx == 0:
                    events.append(ev({"type": "ping"}))
                for piece in words(blk["text"]):
                    events.append(ev({"type": "content_block_delta", "index": idx,
                                      "delta": {"type": "text_delta", "text": piece}}))
            else:
                events.append(ev({"type": "content_block_start", "index": idx, "content_block": {
                    "type": "tool_use", "id": blk["id"], "name": blk["name"], "input": {}}}))
                if idx == 0:
                    events.append(ev({"type": "ping"}))
                events.append(ev({"type": "content_block_delta", "index": idx,
                                  "delta": {"type": "input_json_delta", "partial_json": ""}}))
                for piece in split_in_pieces(dumps(blk["input"]), 4):
                    events.append(ev({"type": "content_block_delta", "index": idx,
                                      "delta": {"type": "input_json_delta", "partial_json": piece}}))
            events.append(ev({"type": "content_block_stop", "index": idx}))
        events.append(ev({"type": "message_delta",
                          "delta": {"stop_reason": p["stop_reason"], "stop_sequence": p["stop_sequence"]},
                          "usage": {"output_tokens": u["output_tokens"]}}))
        events.append(ev({"type": "message_stop"}))
        self.h.start_chunked(status, "text/event-stream; charset=utf-8")
        self.stream_events(events)


# ---------------------------------------------------------------- OpenAI


def _openai_text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content
                        if isinstance(p, dict) and p.get("type") in ("text", "input_text") and p.get("text"))
    return ""


class OpenAIEndpoint(Endpoint):
    flavour = OPENAI

    @staticmethod
    def not_found(h: MockHandler, rec: dict) -> None:
        rec["response"].update(status=404, outcome="error")
        h.send_json(404, {"error": {"message": f"Invalid URL ({h.command} {h.path.split('?')[0]})",
                                    "type": "invalid_request_error", "param": None, "code": None}})

    def error_body(self, status, message=None, etype=None, param=None, code=None):
        dm, dt, dp, dc = OPENAI_ERRORS.get(status, (f"HTTP {status}", "server_error" if status >= 500
                                                    else "invalid_request_error", None, None))
        return {"error": {"message": message or dm, "type": etype or dt,
                          "param": param if param is not None else dp, "code": code if code is not None else dc}}

    def stream_error_event(self) -> bytes:
        err = {"error": {"message": "The server had an error while processing your request. Sorry about that!",
                         "type": "server_error", "param": None, "code": None}}
        return f"data: {dumps(err)}\n\n".encode()

    def validate(self) -> None:
        E = ValidationError
        auth = self.rec["headers"].get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            raise E(401, "You didn't provide an API key. You need to provide your API key in an Authorization "
                         "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", "invalid_request_error")
        if self.server.require_key is not None and auth[7:].strip() != self.server.require_key:
            raise E(401, OPENAI_ERRORS[401][0], "invalid_request_error", None, "invalid_api_key")
        if not isinstance(self.rec["body"], dict):
            raise E(400, "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                         "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
                         "sent was not valid JSON.)", "invalid_request_error")
        r = self.req
        if not isinstance(r.get("model"), str) or not r["model"]:
            raise E(400, "you must provide a model parameter", "invalid_request_error")
        msgs = r.get("messages")
        if msgs is None:
            raise E(400, "Missing required parameter: 'messages'.", "invalid_request_error", "messages",
                    "missing_required_parameter")
        if not isinstance(msgs, list) or not msgs:
            raise E(400, "Invalid 'messages': empty array. Expected an array with minimum length 1.",
                    "invalid_request_error", "messages", "empty_array")
        if "stream" in r and not isinstance(r["stream"], bool) and r["stream"] is not None:
            raise E(400, "Invalid type for 'stream': expected a boolean.", "invalid_request_error", "stream",
                    "invalid_type")
        if r.get("stream_options") is not None and r.get("stream") is not True:
            raise E(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                    "invalid_request_error", "stream_options", None)
        open_calls: set[str] = set()
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in OPENAI_ROLES:
                got = m.get("role") if isinstance(m, dict) else None
                raise E(400, f"Invalid value: '{got}'. Supported values are: 'system', 'assistant', 'user', "
                             f"'function', 'tool', and 'developer'.", "invalid_request_error",
                        f"messages[{i}].role", "invalid_value")
            role = m["role"]
            if role == "assistant":
                open_calls = set()
                for c in m.get("tool_calls") or []:
                    if not isinstance(c, dict) or not isinstance(c.get("id"), str):
                        raise E(400, f"Missing required parameter: 'messages[{i}].tool_calls[0].id'.",
                                "invalid_request_error", f"messages[{i}].tool_calls[0].id",
                                "missing_required_parameter")
                    open_calls.add(c["id"])
            elif role == "tool":
                tid = m.get("tool_call_id")
                if tid not in open_calls:
                    raise E(400, "Invalid parameter: messages with role 'tool' must be a response to a "
                                 "preceeding message with 'tool_calls'.", "invalid_request_error",
                            f"messages.[{i}].role", None)
            else:
                open_calls = set()
        tools = r.get("tools")
        if tools is not None:
            if not isinstance(tools, list):
                raise E(400, "Invalid type for 'tools': expected an array.", "invalid_request_error", "tools",
                        "invalid_type")
            for i, t in enumerate(tools):
                if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(t.get("function"), dict) \
                        or not isinstance(t["function"].get("name"), str):
                    raise E(400, f"Missing required parameter: 'tools[{i}].function'.", "invalid_request_error",
                            f"tools[{i}].function", "missing_required_parameter")

    def plan(self) -> dict:
        r, b = self.req, self.b
        msgs = r.get("messages") or []
        last = msgs[-1] if msgs else {}
        tools = [t["function"] for t in (r.get("tools") or []) if isinstance(t, dict) and "function" in t]
        tc = r.get("tool_choice", "auto")
        calls: list[dict] = []
        if "tool_calls" in b:
            calls = [{"name": c.get("name"), "arguments": c.get("arguments", {})} for c in b["tool_calls"]]
        elif tools and tc != "none" and last.get("role") == "user":
            fn = tools[0]
            if isinstance(tc, dict):
                want = (tc.get("function") or {}).get("name")
                fn = next((t for t in tools if t.get("name") == want), fn)
            calls = [{"name": fn["name"], "arguments": sample_from_schema(fn.get("parameters"))}]
        if "text" in b:
            text: str | None = str(b["text"])
        elif calls:
            text = None
        elif last.get("role") == "tool":
            text = "The tool returned: " + _openai_text_of(last.get("content"))
        else:
            said = _openai_text_of(last.get("content")) if last.get("role") == "user" else ""
            text = f"Hello from the mock OpenAI provider! You said: {said}"
            content = last.get("content")
            n_img = sum(1 for x in (content if isinstance(content, list) else [])
                        if isinstance(x, dict) and x.get("type") == "image_url")
            if n_img:
                text += f" (with {n_img} image{'s' if n_img > 1 else ''})"
        mt = r.get("max_completion_tokens", r.get("max_tokens"))
        reason = None
        if text is not None:
            text, why, _ = cut_text(text, self.stops("stop"), mt)
            if why == "max_tokens":
                reason = "length"
            elif why == "stop_sequence":
                reason = "stop"
        if reason == "length":
            calls = []
        finish = reason or ("tool_calls" if calls else "stop")
        finish = b.get("finish_reason", finish)
        tool_calls = [{"id": "call_" + _rand(24), "type": "function",
                       "function": {"name": c["name"], "arguments": dumps(c["arguments"])}} for c in calls]
        prompt = self.input_tokens()
        completion = count_tokens(text or "") + sum(count_tokens(tc["function"]["arguments"]) for tc in tool_calls)
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                 "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                 "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                               "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
        usage.update(b.get("usage") or {})
        return {"id": "chatcmpl-" + _rand(29), "created": int(time.time()), "text": text,
                "tool_calls": tool_calls, "finish": finish, "usage": usage}

    def input_tokens(self) -> int:
        n = 0
        for m in self.req.get("messages") or []:
            if not isinstance(m, dict):
                continue
            c = m.get("content")
            n += count_tokens(_openai_text_of(c))
            if isinstance(c, list):
                n += 16 * sum(1 for x in c if isinstance(x, dict) and x.get("type") == "image_url")
            for tc in m.get("tool_calls") or []:
                if isinstance(tc, dict):
                    n += count_tokens(str((tc.get("function") or {}).get("arguments", "")))
        for t in self.req.get("tools") or []:
            n += count_tokens(dumps(t))
        return max(n, 1)

    def answer_json(self) -> None:
        p = self.plan()
        status = getattr(self, "status_override", 200)
        msg: dict[str, Any] = {"role": "assistant", "content": p["text"], "refusal": None, "annotations": []}
        if p["tool_calls"]:
            msg["tool_calls"] = p["tool_calls"]
        body = {"id": p["id"], "object": "chat.completion", "created": p["created"], "model": self.req["model"],
                "choices": [{"index": 0, "message": msg, "logprobs": None, "finish_reason": p["finish"]}],
                "usage": p["usage"], "service_tier": "default", "system_fingerprint": "fp_mock0001"}
        self.rec["response"].update(status=status, usage=p["usage"], outcome="complete", message=msg,
                                    id=p["id"], finish_reason=p["finish"])
        n = self.b.get("reset_after_events")
        if n is not None and int(n) > 0:
            data = dumps(body).encode()
            self.h._send_head(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            self.h.wfile.write(data[: len(data) // 2])
            self.h.wfile.flush()
            time.sleep(0.02)
            self.rec["response"]["outcome"] = "reset"
            self.h.reset_connection()
        self.h.send_json(status, body)

    def answer_stream(self) -> None:
        p = self.plan()
        status = getattr(self, "status_override", 200)
        self.rec["response"].update(status=status, usage=p["usage"], id=p["id"], finish_reason=p["finish"],
                                    message={"role": "assistant", "content": p["text"],
                                             "tool_calls": p["tool_calls"] or None})
        so = self.req.get("stream_options") or {}
        include_usage = isinstance(so, dict) and so.get("include_usage") is True

        def chunk(delta: dict, finish: str | None = None, choices: bool = True, usage: Any = None) -> bytes:
            obj: dict[str, Any] = {"id": p["id"], "object": "chat.completion.chunk", "created": p["created"],
                                   "model": self.req["model"], "service_tier": "default",
                                   "system_fingerprint": "fp_mock0001",
                                   "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                "finish_reason": finish}] if choices else []}
            if include_usage:
                obj["usage"] = usage
            return f"data: {dumps(obj)}\n\n".encode()

        events: list[bytes] = []
        if p["tool_calls"]:
            events.append(chunk({"role": "assistant", "content": None, "refusal": None}))
            for i, tc in enumerate(p["tool_calls"]):
                events.append(chunk({"tool_calls": [{"index": i, "id": tc["id"], "type": "function",
                                                     "function": {"name": tc["function"]["name"], "arguments": ""}}]}))
                for piece in split_in_pieces(tc["function"]["arguments"], 4):
                    events.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
        else:
            events.append(chunk({"role": "assistant", "content": "", "refusal": None}))
            for piece in words(p["text"] or ""):
                events.append(chunk({"content": piece}))
        events.append(chunk({}, p["finish"]))
        if include_usage:
            events.append(chunk({}, choices=False, usage=p["usage"]))
        events.append(b"data: [DONE]\n\n")
        self.h.start_chunked(status, "text/event-stream; charset=utf-8")
        self.stream_events(events)


def count_tokens_answer(server: "ProviderServer", h: MockHandler, rec: dict, body: bytes) -> None:
    """`POST /v1/messages/count_tokens`: `{"input_tokens": n}`, n counted as the Messages answer's
    usage counts the prompt (model and messages required, as Anthropic's endpoint wants)."""
    ep = AnthropicEndpoint(server, h, rec, body, {})
    if not isinstance(ep.req.get("model"), str) or not isinstance(ep.req.get("messages"), list):
        rec["response"].update(status=400, outcome="error")
        h.send_json(400, ep.error_body(400, "model and messages: Field required"))
        return
    n = ep.input_tokens()
    rec["response"].update(status=200, outcome="complete", usage={"input_tokens": n})
    h.send_json(200, {"input_tokens": n})


class TextCompletion(OpenAIEndpoint):
    """OpenAI's legacy `POST /v1/completions`: one choice per prompt (a string or a list of strings),
    text = the mock's hello + the prompt (after the prompt itself with `echo`), cut at `max_tokens`
    (default 16, as OpenAI's), `text_completion` objects, a stream of them with `[DONE]`."""

    def validate(self) -> None:
        r = self.req
        if not isinstance(r.get("model"), str):
            raise ValidationError(400, "you must provide a model parameter", param="model")
        p = r.get("prompt")
        if not (isinstance(p, str) or (isinstance(p, list) and p and all(isinstance(x, str) for x in p))):
            raise ValidationError(400, "prompt must be a string or a list of strings", param="prompt")
        if "messages" in r:
            raise ValidationError(400, "Unrecognized request argument supplied: messages")

    def completions(self) -> dict:
        r = self.req
        prompts = r["prompt"] if isinstance(r["prompt"], list) else [r["prompt"]]
        mt = r.get("max_tokens", 16)
        choices, completion = [], 0
        for i, pr in enumerate(prompts):
            text, why, _ = cut_text(f"Hello from the mock OpenAI provider! You said: {pr}", self.stops("stop"), mt)
            completion += count_tokens(text)
            choices.append({"index": i, "text": (pr if r.get("echo") else "") + text, "logprobs": None,
                            "finish_reason": "length" if why == "max_tokens" else "stop"})
        prompt = sum(count_tokens(pr) for pr in prompts) or 1
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        return {"id": "cmpl-" + _rand(29), "object": "text_completion", "created": int(time.time()),
                "model": r["model"], "choices": choices, "usage": usage}

    def answer_json(self) -> None:
        body = self.completions()
        self.rec["response"].update(status=200, usage=body["usage"], outcome="complete", id=body["id"])
        self.h.send_json(200, body)

    def answer_stream(self) -> None:
        whole = self.completions()
        self.rec["response"].update(status=200, usage=whole["usage"], id=whole["id"])
        so = self.req.get("stream_options") or {}
        include_usage = isinstance(so, dict) and so.get("include_usage") is True
        head = {k: whole[k] for k in ("id", "object", "created", "model")}
        events = []
        for c in whole["choices"]:
            for piece in words(c["text"]):
                events.append({**head, "choices": [{"index": c["index"], "text": piece, "logprobs": None,
                                                    "finish_reason": None}]})
            events.append({**head, "choices": [{"index": c["index"], "text": "", "logprobs": None,
                                                "finish_reason": c["finish_reason"]}]})
        if include_usage:
            events.append({**head, "choices": [], "usage": whole["usage"]})
        self.h.start_chunked(200, "text/event-stream; charset=utf-8")
        self.stream_events([f"data: {dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"])


# ---------------------------------------------------------------- in-process API and CLI


class ThreadedMock:
    """One provider server on its own thread and port: the in-process API every single-flavour
    mock shares (`start`, `port`, `reset`, `stop`)."""

    def __init__(self, server: ProviderServer):
        self.server = server
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.port

    def start(self):
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"mock-{self.server.flavour}", daemon=True)
        self._thread.start()
        return self

    def reset(self) -> None:
        self.server.state.reset()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread:
            self._thread.join(timeout=5)


class MockProviders:
    """Both mock providers, each on its own thread and port (0 = any free port)."""

    def __init__(self, host: str = "127.0.0.1", anthropic_port: int = 0, openai_port: int = 0,
                 chunk_delay_ms: float = 10.0, anthropic_key: str | None = None,
                 openai_key: str | None = None, verbose: bool = False):
        self.anthropic = ProviderServer(ANTHROPIC, host, anthropic_port, chunk_delay_ms, anthropic_key, verbose)
        self.openai = ProviderServer(OPENAI, host, openai_port, chunk_delay_ms, openai_key, verbose)
        self._threads: list[threading.Thread] = []

    @property
    def anthropic_port(self) -> int:
        return self.anthropic.port

    @property
    def openai_port(self) -> int:
        return self.openai.port

    def start(self) -> "MockProviders":
        for srv in (self.anthropic, self.openai):
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1},
                                 name=f"mock-{srv.flavour}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def reset(self) -> None:
        self.anthropic.state.reset()
        self.openai.state.reset()

    def stop(self) -> None:
        for srv in (self.anthropic, self.openai):
            srv.shutdown()
            srv.server_close()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> "MockProviders":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Mock Anthropic and OpenAI providers for llm-gateway")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--anthropic-port", type=int, default=9101)
    ap.add_argument("--openai-port", type=int, default=9102)
    ap.add_argument("--chunk-delay-ms", type=float, default=10.0, help="delay between stream writes")
    ap.add_argument("--anthropic-key", default=None, help="require exactly this x-api-key")
    ap.add_argument("--openai-key", default=None, help="require exactly this bearer key")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every request to stderr")
    args = ap.parse_args(argv)
    mocks = MockProviders(args.host, args.anthropic_port, args.openai_port, args.chunk_delay_ms,
                          args.anthropic_key, args.openai_key, args.verbose).start()
    print(f"mock providers: anthropic http://{args.host}:{mocks.anthropic_port}  "
          f"openai http://{args.host}:{mocks.openai_port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    mocks.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
