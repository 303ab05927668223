#!/usr/bin/env python3
"""Mock Cohere v2 API for llm-gateway: `POST /v2/chat` (JSON and SSE stream) and `POST /v2/embed`.

Built on the plumbing of mock_providers.py (recording, `/__mock/script`, `/__mock/requests`,
`/__mock/reset`, fault injection: status/body, delay_ms, reset_after_events,
truncate_after_events, error_after_events, stall_after_events, sse/sse_chunks), so it is
scripted and introspected exactly like the Anthropic and OpenAI mocks.

    from cohere_mock import CohereMock
    mock = CohereMock(require_key="co-key").start()   # mock.port ... mock.stop()

Wire format (Cohere API reference, v2):

* Auth: `Authorization: Bearer <key>`; missing -> 401 `{"message": "no api key supplied"}`,
  wrong (with `require_key`) -> 401 `{"message": "invalid api token"}`.
* Errors are `{"id": "...", "message": "..."}`. Validation (400): body not JSON, `model` or
  `messages` missing, unknown top-level fields, roles other than system/user/assistant/tool,
  `tool` messages whose `tool_call_id` answers no earlier assistant `tool_calls`, `tool_choice`
  other than REQUIRED/NONE, `p` outside [0.01, 0.99], `response_format.type` other than
  text/json_object, OpenAI-only fields (`top_p`, `stop`, `n`, `max_completion_tokens` ...), tools
  not of the `{type: function, function: {name, parameters}}` shape, `k` outside [0, 500].
* Answer: `{"id", "message": {"role": "assistant", "content": [{"type": "text", "text"}]} |
  {"tool_plan", "tool_calls": [{id, type, function: {name, arguments}}]}, "finish_reason",
  "usage": {"billed_units": {...}, "tokens": {...}}}`. Text: "Hello from the mock Cohere
  provider! You said: <last user text>" (+ " (with N image(s))"); with tools and a last user
  turn, the first tool (all with `tool_choice: REQUIRED` too) is called with arguments from its
  schema, after a tool result "The tool returned: <text>". `stop_sequences` and `max_tokens`
  cut the text (STOP_SEQUENCE / MAX_TOKENS). Script keys: text, tool_calls, finish_reason
  (e.g. ERROR_TOXIC, the safety stop), error (an `error` text beside it, in the answer or the
  stream's message-end), omit_message (a safety stop answered without `message`), usage,
  thinking (a `thinking` content item first), framing.
* Stream (`stream: true`): `text/event-stream`, events `event: <type>` + `data: {"type": ...}`:
  message-start, content-start, content-delta (one per word), content-end, tool-plan-delta,
  tool-call-start, tool-call-delta (arguments in pieces), tool-call-end, message-end (with
  `delta.finish_reason` and `delta.usage`). `error_after_events` ends with a message-end whose
  finish_reason is ERROR. With the script key `framing: "json_lines"` the same events are bare
  JSON objects, one per line, `application/stream+json` (as Cohere's API has also answered).
* Embed: `{"model", "texts", "input_type", "embedding_types"}` (input_type required) ->
  `{"id", "texts", "embeddings": {"float": [[...]]}, "meta": {"api_version": {"version": "2"},
  "billed_units": {"input_tokens": n}}, "response_type": "embeddings_by_type"}`; vectors are
  deterministic (from the text), `output_dimension` long (default 4).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mock_providers import (  # noqa: E402
    ThreadedMock,
    Endpoint, MockHandler, ProviderServer, ValidationError, count_tokens, cut_text, dumps,
    sample_from_schema, split_in_pieces, words,
)

COHERE = "cohere"
TOP_LEVEL = {
    "model", "messages", "tools", "strict_tools", "documents", "citation_options", "response_format",
    "safety_mode", "max_tokens", "stop_sequences", "temperature", "seed", "frequency_penalty",
    "presence_penalty", "k", "p", "logprobs", "tool_choice", "thinking", "priority", "stream",
}
ERRORS = {
    400: "invalid request",
    401: "invalid api token",
    402: "Please add or update your payment method",
    404: "model not found",
    422: "unprocessable entity",
    429: "You are using a Trial key, which is limited to 10 API calls / minute.",
    499: "request cancelled by user",
    500: "internal server error, this has been reported to our developers",
    503: "service unavailable",
}


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content
                        if isinstance(p, dict) and p.get("type") == "text" and p.get("text"))
    return ""


def vector(text: str, dims: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round((digest[i % 32] - 128) / 128.0, 6) for i in range(dims)]


class CohereEndpoint(Endpoint):
    flavour = COHERE

    @staticmethod
    def not_found(h: MockHandler, rec: dict) -> None:
        rec["response"].update(status=404, outcome="error")
        h.send_json(404, {"message": f"{h.command} {h.path.split('?')[0]} not found"})

    def error_body(self, status, message=None, etype=None, param=None, code=None):
        return {"id": str(uuid.uuid4()), "message": message or ERRORS.get(status, f"HTTP {status}")}

    def stream_error_event(self) -> bytes:
        return self.ev("message-end", delta={"finish_reason": "ERROR",
                                             "error": "internal server error during generation"})

    def json_lines(self) -> bool:
        return self.b.get("framing") == "json_lines"

    def ev(self, kind: str, **fields: Any) -> bytes:
        data = dumps({'type': kind, **fields})
        if self.json_lines():
            return f"{data}\n".encode()
        return f"event: {kind}\ndata: {data}\n\n".encode()

    def check_auth(self) -> None:
        auth = self.rec["headers"].get("authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            raise ValidationError(401, "no api key supplied")
        if self.server.require_key is not None and auth[7:].strip() != self.server.require_key:
            raise ValidationError(401, "invalid api token")

    def validate(self) -> None:
        E = ValidationError
        self.check_auth()
        r = self.rec["body"]
        if not isinstance(r, dict):
            raise E(400, "invalid request: body must be a JSON object")
        unknown = sorted(set(r) - TOP_LEVEL)
        if unknown:
            raise E(400, f"invalid request: unknown field: parameter '{unknown[0]}' is not a valid field")
        if not isinstance(r.get("model"), str) or not r["model"]:
            raise E(400, "invalid request: model must be specified")
        msgs = r.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise E(400, "invalid request: messages must contain at least one message")
        calls: set[str] = set()
        for i, m in enumerate(msgs):
            role = m.get("role") if isinstance(m, dict) else None
            if role not in ("system", "user", "assistant", "tool"):
                raise E(400, f"invalid request: messages[{i}].role '{role}' is not one of system, user, "
                             "assistant, tool")
            if role == "assistant":
                for c in m.get("tool_calls") or []:
                    if not isinstance(c, dict) or not c.get("id") or not isinstance(c.get("function"), dict):
                        raise E(400, f"invalid request: messages[{i}].tool_calls must have id and function")
                    calls.add(c["id"])
            if role == "tool" and m.get("tool_call_id") not in calls:
                raise E(400, f"invalid request: messages[{i}].tool_call_id '{m.get('tool_call_id')}' does not "
                             "match any tool call")
        if r.get("tool_choice") is not None and r["tool_choice"] not in ("REQUIRED", "NONE"):
            raise E(400, "invalid request: tool_choice must be one of REQUIRED, NONE")
        p = r.get("p")
        if p is not None and not (isinstance(p, (int, float)) and 0.01 <= p <= 0.99):
            raise E(400, "invalid request: p must be between 0.01 and 0.99")
        k = r.get("k")
        if k is not None and not (isinstance(k, int) and 0 <= k <= 500):
            raise E(400, "invalid request: k must be between 0 and 500")
        rf = r.get("response_format")
        if rf is not None and (not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object")):
            raise E(400, "invalid request: response_format.type must be one of text, json_object")
        for i, t in enumerate(r.get("tools") or []):
            fn = t.get("function") if isinstance(t, dict) else None
            if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(fn, dict) \
                    or not isinstance(fn.get("name"), str):
                raise E(400, f"invalid request: tools[{i}] must be {{type: function, function: {{name, ...}}}}")
        if "stream" in r and not isinstance(r["stream"], bool):
            raise E(400, "invalid request: stream must be a boolean")

    def plan(self) -> dict:
        r, b = self.req, self.b
        msgs = r.get("messages") or []
        last = msgs[-1] if msgs else {}
        tools = [t["function"] for t in (r.get("tools") or []) if isinstance(t, dict) and "function" in t]
        calls: list[dict] = []
        if "tool_calls" in b:
            calls = [{"name": c.get("name"), "arguments": c.get("arguments", {})} for c in b["tool_calls"]]
        elif tools and r.get("tool_choice") != "NONE" and last.get("role") == "user":
            calls = [{"name": tools[0]["name"], "arguments": sample_from_schema(tools[0].get("parameters"))}]
        if "text" in b:
            text: str | None = str(b["text"])
        elif calls:
            text = None
        elif last.get("role") == "tool":
            text = "The tool returned: " + text_of(last.get("content"))
        else:
            said = text_of(last.get("content")) if last.get("role") == "user" else ""
            text = f"Hello from the mock Cohere provider! You said: {said}"
            content = last.get("content")
            n_img = sum(1 for x in (content if isinstance(content, list) else [])
                        if isinstance(x, dict) and x.get("type") == "image_url")
            if n_img:
                text += f" (with {n_img} image{'s' if n_img > 1 else ''})"
        finish = "TOOL_CALL" if calls else "COMPLETE"
        if text is not None:
            text, why, _ = cut_text(text, self.stops("stop_sequences"), r.get("max_tokens"))
            if why == "max_tokens":
                finish = "MAX_TOKENS"
            elif why == "stop_sequence":
                finish = "STOP_SEQUENCE"
        finish = b.get("finish_reason", finish)
        tool_calls = [{"id": f"{c['name']}_{uuid.uuid4().hex[:12]}", "type": "function",
                       "function": {"name": c["name"], "arguments": dumps(c["arguments"])}} for c in calls]
        tool_plan = f"I will use the {calls[0]['name']} tool." if calls else None
        prompt = max(1, sum(count_tokens(text_of(m.get("content"))) for m in msgs if isinstance(m, dict)))
        completion = count_tokens(text or "") + sum(count_tokens(c["function"]["arguments"]) for c in tool_calls)
        usage = {"billed_units": {"input_tokens": prompt, "output_tokens": completion},
                 "tokens": {"input_tokens": prompt + 60, "output_tokens": completion}}
        usage.update(b.get("usage") or {})
        return {"id": str(uuid.uuid4()), "text": text, "tool_calls": tool_calls, "tool_plan": tool_plan,
                "finish": finish, "usage": usage, "thinking": b.get("thinking")}

    def answer_json(self) -> None:
        p = self.plan()
        msg: dict[str, Any] = {"role": "assistant"}
        content = []
        if p["thinking"]:
            content.append({"type": "thinking", "thinking": p["thinking"]})
        if p["text"] is not None:
            content.append({"type": "text", "text": p["text"]})
        if content:
            msg["content"] = content
        if p["tool_calls"]:
            msg["tool_plan"] = p["tool_plan"]
            msg["tool_calls"] = p["tool_calls"]
        body = {"id": p["id"], "message": msg, "finish_reason": p["finish"], "usage": p["usage"]}
        if self.b.get("error"):
            body["error"] = self.b["error"]
        if self.b.get("omit_message"):
            del body["message"]
        self.rec["response"].update(status=200, usage=p["usage"], outcome="complete", message=msg,
                                    finish_reason=p["finish"])
        self.h.send_json(200, body)

    def answer_stream(self) -> None:
        p = self.plan()
        self.rec["response"].update(status=200, usage=p["usage"], finish_reason=p["finish"],
                                    message={"text": p["text"], "tool_calls": p["tool_calls"]})
        ev = self.ev
        events = [ev("message-start", id=p["id"], delta={"message": {
            "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}})]
        index = 0
        if p["thinking"]:
            events.append(ev("content-start", index=index,
                             delta={"message": {"content": {"type": "thinking", "thinking": ""}}}))
            for w in words(p["thinking"]):
                events.append(ev("content-delta", index=index, delta={"message": {"content": {"thinking": w}}}))
            events.append(ev("content-end", index=index))
            index += 1
        if p["tool_calls"]:
            for w in words(p["tool_plan"]):
                events.append(ev("tool-plan-delta", delta={"message": {"tool_plan": w}}))
            for i, c in enumerate(p["tool_calls"]):
                events.append(ev("tool-call-start", index=i, delta={"message": {"tool_calls": {
                    "id": c["id"], "type": "function",
                    "function": {"name": c["function"]["name"], "arguments": ""}}}}))
                for piece in split_in_pieces(c["function"]["arguments"], 4):
                    events.append(ev("tool-call-delta", index=i,
                                     delta={"message": {"tool_calls": {"function": {"arguments": piece}}}}))
                events.append(ev("tool-call-end", index=i))
        if p["text"] is not None:
            events.append(ev("content-start", index=index,
                             delta={"message": {"content": {"type": "text", "text": ""}}}))
            for w in words(p["text"]):
                events.append(ev("content-delta", index=index, delta={"message": {"content": {"text": w}}}))
            events.append(ev("content-end", index=index))
        end = {"finish_reason": p["finish"], "usage": p["usage"]}
        if self.b.get("error"):
            end["error"] = self.b["error"]
        events.append(ev("message-end", delta=end))
        self.h.start_chunked(200, "application/stream+json" if self.json_lines() else "text/event-stream")
        self.stream_events(events)


class CohereEmbedEndpoint(CohereEndpoint):
    def validate(self) -> None:
        E = ValidationError
        self.check_auth()
        r = self.rec["body"]
        if not isinstance(r, dict) or not isinstance(r.get("model"), str):
            raise E(400, "invalid request: model must be specified")
        if not isinstance(r.get("texts"), list) or not all(isinstance(t, str) for t in r["texts"]):
            raise E(400, "invalid request: texts must be a list of strings")
        if r.get("input_type") not in ("search_document", "search_query", "classification", "clustering", "image"):
            raise E(400, "invalid request: valid input_type must be provided with the provided model")
        types = r.get("embedding_types")
        if types is not None and (not isinstance(types, list) or not set(types) <= {
                "float", "int8", "uint8", "binary", "ubinary", "base64"}):
            raise E(400, "invalid request: invalid embedding_types")

    def answer_json(self) -> None:
        r = self.req
        dims = r.get("output_dimension") or 4
        texts = r["texts"]
        tokens = sum(count_tokens(t) for t in texts)
        body = {"id": str(uuid.uuid4()), "texts": texts,
                "embeddings": {"float": [vector(t, dims) for t in texts]},
                "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}},
                "response_type": "embeddings_by_type"}
        self.rec["response"].update(status=200, outcome="complete", usage={"input_tokens": tokens})
        self.h.send_json(200, body)

    def answer_stream(self) -> None:
        self.answer_json()


class CohereServer(ProviderServer):
    def __init__(self, host: str = "127.0.0.1", port: int = 0, chunk_delay_ms: float = 5.0,
                 require_key: str | None = None):
        super().__init__(COHERE, host, port, chunk_delay_ms, require_key)

    def base_headers(self) -> list[tuple[str, str]]:
        return [("x-request-id", uuid.uuid4().hex), ("x-mock-provider", COHERE),
                ("x-api-warning", "mock")]

    def provider_request(self, h: MockHandler, path: str, bare: str, body: bytes) -> None:
        rec = record(self, h, path, body)
        routes = {"/v2/chat": CohereEndpoint, "/v2/embed": CohereEmbedEndpoint}
        ep = routes.get(bare)
        if ep is None or h.command != "POST":
            CohereEndpoint.not_found(h, rec)
            return
        behaviour = self.state.next_behaviour(rec["body"]) or {}
        rec["script"] = behaviour or None
        ep(self, h, rec, body, behaviour).run()


def record(server: ProviderServer, h: MockHandler, path: str, body: bytes) -> dict:
    """Record a provider request the way mock_providers.py does (see its `/__mock/requests`)."""
    rec: dict[str, Any] = {
        "time": time.time(), "method": h.command, "path": path, "headers": {},
        "header_list": [[k, v] for k, v in h.headers.items()], "body": None, "body_bytes": len(body),
        "script": None, "response": {"status": None, "stream": False, "usage": None, "outcome": None},
    }
    for k, v in h.headers.items():
        lk = k.lower()
        rec["headers"][lk] = v if lk not in rec["headers"] else rec["headers"][lk] + ", " + v
    try:
        rec["body"] = json.loads(body) if body else None
    except ValueError:
        rec["raw_body"] = body.decode("utf-8", "replace")
    server.state.record(rec)
    return rec


class CohereMock(ThreadedMock):
    """The Cohere mock on its own thread and port (0 = any free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, chunk_delay_ms: float = 5.0,
                 require_key: str | None = None):
        super().__init__(CohereServer(host, port, chunk_delay_ms, require_key))


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Mock Cohere v2 API")
    ap.add_argument("--port", type=int, default=9104)
    ap.add_argument("--key", default=None)
    a = ap.parse_args()
    m = CohereMock(port=a.port, require_key=a.key).start()
    print(f"mock cohere on http://127.0.0.1:{m.port}", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        m.stop()
