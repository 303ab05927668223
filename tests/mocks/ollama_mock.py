#!/usr/bin/env python3
"""Mock Ollama server for llm-gateway: `POST /api/chat` (JSON and NDJSON stream) and `POST /api/embed`.

Built on mock_providers.py's plumbing (recording, `/__mock/script`, `/__mock/requests`,
`/__mock/reset`, faults: status/body, delay_ms, reset_after_events, truncate_after_events,
error_after_events, stall_after_events, sse_chunks for raw bodies).

    from ollama_mock import OllamaMock
    mock = OllamaMock().start()   # mock.port ... mock.stop()

Wire format (ollama/docs/api.md):

* No auth (a bearer key is recorded, never required).
* Errors are `{"error": "..."}`: 400 for a body that is not JSON, a missing `model` or
  `messages`, roles other than system/user/assistant/tool, `images` that are not bare base64
  (a `data:` URL fails as in Ollama: "illegal base64 data at input byte 4"), tool-call
  `arguments` that are not objects, `format` other than "json" or a schema object, `options`
  not an object; 404 `model "<name>" not found, try pulling it first` for models in
  `missing_models`.
* `stream` defaults to true, as in Ollama: a request without `"stream": false` is answered with
  a stream.
* Answer: `{"model", "created_at", "message": {"role": "assistant", "content", ["thinking"],
  ["tool_calls": [{"function": {"name", "arguments": {...}}}]]}, "done": true, "done_reason",
  "total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
  "eval_count", "eval_duration"}`. Text "Hello from the mock Ollama provider! You said: <last
  user text>" (+ " (with N image(s))"); with tools and a last user turn the first tool is called
  (arguments from its schema), after a tool result "The tool returned: <text>".
  `options.stop` / `options.num_predict` cut the text (done_reason "stop" / "length").
  Script keys: text, tool_calls, thinking, done_reason, usage ({"prompt_eval_count", ...}).
* Stream: `application/x-ndjson`, one JSON object per line (one line per word, thinking first,
  tool calls in one line each, complete), the last line `done: true` with the counts;
  `error_after_events` ends with an `{"error": ...}` line.
* Embed: `{"model", "input": str | [str], "dimensions"?}` -> `{"model", "embeddings": [[...]],
  "total_duration", "load_duration", "prompt_eval_count"}` (deterministic vectors).
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

from cohere_mock import record, vector
from mock_providers import (
    ThreadedMock,
    Endpoint, MockHandler, ProviderServer, ValidationError, count_tokens, cut_text, dumps,
    sample_from_schema, words,
)

OLLAMA = "ollama"


def text_of(content: Any) -> str:
    return content if isinstance(content, str) else ""


class OllamaEndpoint(Endpoint):
    flavour = OLLAMA

    @staticmethod
    def not_found(h: MockHandler, rec: dict) -> None:
        rec["response"].update(status=404, outcome="error")
        h.send_body(404, b"404 page not found", "text/plain; charset=utf-8")

    def error_body(self, status, message=None, etype=None, param=None, code=None):
        return {"error": message or {400: "invalid request", 404: "model not found", 500: "internal error",
                                     503: "server busy, please try again.  maximum pending requests exceeded"
                                     }.get(status, f"HTTP {status}")}

    def stream_error_event(self) -> bytes:
        return (dumps({"error": "an error was encountered while running the model: unexpected EOF"}) + "\n").encode()

    def validate(self) -> None:
        E = ValidationError
        r = self.rec["body"]
        if not isinstance(r, dict):
            raise E(400, "invalid character 'x' looking for beginning of value")
        model = r.get("model")
        if not isinstance(model, str) or not model:
            raise E(400, "model is required")
        if model in self.server.missing_models:
            raise E(404, f'model "{model}" not found, try pulling it first')
        msgs = r.get("messages")
        if not isinstance(msgs, list):
            raise E(400, "messages is required")
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool"):
                raise E(400, f"invalid role in messages[{i}]")
            if "content" in m and not isinstance(m["content"], str):
                raise E(400, "json: cannot unmarshal array into Go struct field Message.messages.content "
                             "of type string")
            for img in m.get("images") or []:
                try:
                    base64.b64decode(img, validate=True)
                except (binascii.Error, ValueError, TypeError):
                    raise E(400, "illegal base64 data at input byte 4")
            for c in m.get("tool_calls") or []:
                args = (c.get("function") or {}).get("arguments") if isinstance(c, dict) else None
                if not isinstance(args, dict):
                    raise E(400, "json: cannot unmarshal string into Go struct field "
                                 "ToolCallFunction.messages.tool_calls.function.arguments of type "
                                 "api.ToolCallFunctionArguments")
        fmt = r.get("format")
        if fmt is not None and fmt != "json" and not isinstance(fmt, dict):
            raise E(400, f"invalid format: {fmt!r}")
        if "options" in r and not isinstance(r["options"], dict):
            raise E(400, "options must be an object")

    def is_stream(self) -> bool:
        return self.req.get("stream", True) is not False

    def run(self) -> None:
        # Ollama streams unless told not to: make Endpoint.run see that.
        if isinstance(self.req, dict) and "stream" not in self.req:
            self.req = {**self.req, "stream": True}
        super().run()

    def plan(self) -> dict:
        r, b = self.req, self.b
        msgs = r.get("messages") or []
        last = msgs[-1] if msgs else {}
        tools = [t["function"] for t in (r.get("tools") or []) if isinstance(t, dict) and "function" in t]
        calls: list[dict] = []
        if "tool_calls" in b:
            calls = [{"name": c.get("name"), "arguments": c.get("arguments", {})} for c in b["tool_calls"]]
        elif tools and last.get("role") == "user":
            calls = [{"name": tools[0]["name"], "arguments": sample_from_schema(tools[0].get("parameters"))}]
        if "text" in b:
            text = str(b["text"])
        elif calls:
            text = ""
        elif last.get("role") == "tool":
            text = "The tool returned: " + text_of(last.get("content"))
        else:
            said = text_of(last.get("content")) if last.get("role") == "user" else ""
            text = f"Hello from the mock Ollama provider! You said: {said}"
            n_img = len(last.get("images") or [])
            if n_img:
                text += f" (with {n_img} image{'s' if n_img > 1 else ''})"
        opts = r.get("options") or {}
        stops = opts.get("stop") if isinstance(opts.get("stop"), list) else []
        text, why, _ = cut_text(text, stops, opts.get("num_predict"))
        reason = "length" if why == "max_tokens" else "stop"
        reason = b.get("done_reason", reason)
        prompt = max(1, sum(count_tokens(text_of(m.get("content"))) for m in msgs if isinstance(m, dict)))
        completion = count_tokens(text) + sum(count_tokens(dumps(c["arguments"])) for c in calls)
        counts = {"prompt_eval_count": prompt, "eval_count": completion}
        counts.update(b.get("usage") or {})
        return {"text": text, "calls": calls, "reason": reason, "counts": counts, "thinking": b.get("thinking")}

    def line(self, message: dict, done: bool, p: dict | None = None) -> dict:
        obj: dict[str, Any] = {"model": self.req["model"], "created_at": "2025-05-24T02:12:05.859654Z",
                               "message": {"role": "assistant", **message}, "done": done}
        if done and p is not None:
            obj.update({"done_reason": p["reason"], "total_duration": 4883583458, "load_duration": 1334875,
                        "prompt_eval_duration": 342546000, "eval_duration": 4535599000, **p["counts"]})
        return obj

    def answer_json(self) -> None:
        p = self.plan()
        msg: dict[str, Any] = {"content": p["text"]}
        if p["thinking"]:
            msg["thinking"] = p["thinking"]
        if p["calls"]:
            msg["tool_calls"] = [{"function": {"name": c["name"], "arguments": c["arguments"]}} for c in p["calls"]]
        body = self.line(msg, True, p)
        self.rec["response"].update(status=200, usage=p["counts"], outcome="complete", message=body["message"],
                                    done_reason=p["reason"])
        self.h.send_json(200, body)

    def answer_stream(self) -> None:
        p = self.plan()
        self.rec["response"].update(status=200, stream=True, usage=p["counts"], done_reason=p["reason"])
        lines = []
        for w in words(p["thinking"] or ""):
            lines.append(self.line({"content": "", "thinking": w}, False))
        for c in p["calls"]:
            lines.append(self.line({"content": "", "tool_calls": [
                {"function": {"name": c["name"], "arguments": c["arguments"]}}]}, False))
        for w in words(p["text"]):
            lines.append(self.line({"content": w}, False))
        lines.append(self.line({"content": ""}, True, p))
        self.h.start_chunked(200, "application/x-ndjson")
        self.stream_events([(dumps(x) + "\n").encode() for x in lines])


class OllamaEmbedEndpoint(OllamaEndpoint):
    def run(self) -> None:
        Endpoint.run(self)

    def validate(self) -> None:
        r = self.rec["body"]
        if not isinstance(r, dict) or not isinstance(r.get("model"), str):
            raise ValidationError(400, "model is required")
        inp = r.get("input")
        if not (isinstance(inp, str) or (isinstance(inp, list) and all(isinstance(x, str) for x in inp))):
            raise ValidationError(400, "invalid input type")

    def answer_json(self) -> None:
        r = self.req
        inputs = [r["input"]] if isinstance(r["input"], str) else r["input"]
        dims = r.get("dimensions") or 4
        tokens = sum(count_tokens(t) for t in inputs)
        body = {"model": r["model"], "embeddings": [vector(t, dims) for t in inputs],
                "total_duration": 14143917, "load_duration": 1019500, "prompt_eval_count": tokens}
        self.rec["response"].update(status=200, outcome="complete", usage={"prompt_eval_count": tokens})
        self.h.send_json(200, body)

    def answer_stream(self) -> None:
        self.answer_json()


class OllamaServer(ProviderServer):
    def __init__(self, host: str = "127.0.0.1", port: int = 0, chunk_delay_ms: float = 5.0,
                 missing_models: tuple[str, ...] = ("not-pulled",)):
        super().__init__(OLLAMA, host, port, chunk_delay_ms, None)
        self.missing_models = set(missing_models)

    def base_headers(self) -> list[tuple[str, str]]:
        return [("x-mock-provider", OLLAMA)]

    def provider_request(self, h: MockHandler, path: str, bare: str, body: bytes) -> None:
        rec = record(self, h, path, body)
        ep = {"/api/chat": OllamaEndpoint, "/api/embed": OllamaEmbedEndpoint}.get(bare)
        if ep is None or h.command != "POST":
            OllamaEndpoint.not_found(h, rec)
            return
        behaviour = self.state.next_behaviour(rec["body"]) or {}
        rec["script"] = behaviour or None
        ep(self, h, rec, body, behaviour).run()


class OllamaMock(ThreadedMock):
    """The Ollama mock on its own thread and port (0 = any free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, chunk_delay_ms: float = 5.0):
        super().__init__(OllamaServer(host, port, chunk_delay_ms))


if __name__ == "__main__":
    m = OllamaMock(port=11434).start()
    print(f"mock ollama on http://127.0.0.1:{m.port}", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        m.stop()
