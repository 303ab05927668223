#!/usr/bin/env python3
"""Mock Mistral AI chat API for llm-gateway: `POST /v1/chat/completions`, as Mistral's API
reference (docs.mistral.ai/api) describes it, built on mock_providers.py's OpenAI mock
(recording, `/__mock/script`, `/__mock/requests`, `/__mock/reset`, the same fault switches).

    from mistral_mock import MistralMock
    mock = MistralMock().start()   # mock.port ... mock.stop()

Mistral's differences from OpenAI, enforced:

* Unknown fields are refused (Mistral's request models forbid extras): a top-level key outside
  Mistral's list (`user`, `seed`, `max_completion_tokens`, `stream_options`, `logit_bias` ...)
  or a message key its role does not take (`name` on a user message) -> 422
  `{"object": "error", "message": {"detail": [{"type": "extra_forbidden", "loc": [...],
  "msg": "Extra inputs are not permitted", ...}]}, "type": "invalid_request_error", ...}`.
* Roles are system, user, assistant, tool (`developer` -> 422); `tool_choice` is auto, none,
  any, required or a function object; an assistant message with neither content nor tool calls
  -> 400. `random_seed` is the seed.
* Answers are the OpenAI mock's, without OpenAI's `refusal`, `annotations`, `service_tier`;
  streams carry `usage` in the last content chunk, always (Mistral has no stream_options).
  Script `{"thinking": "..."}` answers as Magistral does: content as a list of blocks
  (`thinking` holding text parts, then `text`), whole and streamed.
"""

from __future__ import annotations

import time
from typing import Any

from mock_providers import OpenAIEndpoint, ProviderServer, ThreadedMock, ValidationError, dumps, words

MISTRAL = "mistral"
TOP_LEVEL = {"model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop", "random_seed",
             "response_format", "tools", "tool_choice", "presence_penalty", "frequency_penalty", "n",
             "prediction", "parallel_tool_calls", "prompt_mode", "safe_prompt", "metadata",
             "reasoning_effort", "prompt_cache_key"}
MESSAGE_KEYS = {"system": {"role", "content"}, "user": {"role", "content"},
                "assistant": {"role", "content", "tool_calls", "prefix"},
                "tool": {"role", "content", "tool_call_id", "name"}}


class Unprocessable(ValidationError):
    pass


class MistralEndpoint(OpenAIEndpoint):
    flavour = MISTRAL

    def error_body(self, status, message=None, etype=None, param=None, code=None):
        return {"object": "error", "message": message or f"HTTP {status}",
                "type": etype or "invalid_request_error", "param": param, "code": code}

    def extra(self, loc: list, value: Any) -> ValidationError:
        detail = [{"type": "extra_forbidden", "loc": ["body", *loc], "msg": "Extra inputs are not permitted",
                   "input": value}]
        return ValidationError(422, {"detail": detail}, "invalid_request_error")  # type: ignore[arg-type]

    def validate(self) -> None:
        auth = self.rec["headers"].get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            raise ValidationError(401, "Unauthorized", "invalid_request_error")
        r = self.req
        for k in r:
            if k not in TOP_LEVEL:
                raise self.extra([k], r[k])
        msgs = r.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise ValidationError(422, "messages: a non-empty list is required", "invalid_request_error")
        for i, m in enumerate(msgs):
            role = m.get("role") if isinstance(m, dict) else None
            if role not in MESSAGE_KEYS:
                raise ValidationError(422, {"detail": [{"type": "union_tag_invalid", "loc": ["body", "messages", i],
                                                        "msg": f"Input tag '{role}' found using 'role' does not "
                                                               "match any of the expected tags: 'assistant', "
                                                               "'system', 'tool', 'user'"}]},
                                      "invalid_request_error")  # type: ignore[arg-type]
            for k in m:
                if k not in MESSAGE_KEYS[role]:
                    raise self.extra(["messages", i, role, k], m[k])
            if role == "assistant" and not m.get("content") and not m.get("tool_calls"):
                raise ValidationError(400, "Assistant message must have either content or tool_calls, but not "
                                           "none.", "invalid_request_error")
        tc = r.get("tool_choice")
        if tc is not None and not isinstance(tc, dict) and tc not in ("auto", "none", "any", "required"):
            raise ValidationError(422, f"tool_choice: invalid value {tc!r}", "invalid_request_error")
        if tc is not None and not r.get("tools"):
            raise ValidationError(400, "tool_choice is set but no tools are given", "invalid_request_error")
        super().validate()  # the OpenAI shape: bearer, model, tool results answering tool calls

    def content_of(self, text: str | None) -> Any:
        thinking = self.b.get("thinking")
        if thinking is None:
            return text
        return [{"type": "thinking", "thinking": [{"type": "text", "text": thinking}]},
                {"type": "text", "text": text or ""}]

    def answer_json(self) -> None:
        p = self.plan()
        msg: dict[str, Any] = {"role": "assistant", "content": self.content_of(p["text"]) or "",
                               "tool_calls": p["tool_calls"] or None, "prefix": False}
        usage = {k: p["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
        body = {"id": p["id"][9:], "object": "chat.completion", "created": p["created"], "model": self.req["model"],
                "choices": [{"index": 0, "message": msg, "finish_reason": p["finish"]}], "usage": usage}
        self.rec["response"].update(status=200, usage=usage, outcome="complete", message=msg, id=body["id"],
                                    finish_reason=p["finish"])
        self.h.send_json(200, body)

    def answer_stream(self) -> None:
        p = self.plan()
        usage = {k: p["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
        self.rec["response"].update(status=200, usage=usage, id=p["id"], finish_reason=p["finish"],
                                    message={"role": "assistant", "content": p["text"]})

        def chunk(delta: dict, finish: str | None = None, with_usage: bool = False) -> bytes:
            obj: dict[str, Any] = {"id": p["id"][9:], "object": "chat.completion.chunk", "created": p["created"],
                                   "model": self.req["model"],
                                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if with_usage:
                obj["usage"] = usage
            return f"data: {dumps(obj)}\n\n".encode()

        events = [chunk({"role": "assistant", "content": ""})]
        if self.b.get("thinking") is not None:
            events.append(chunk({"content": [{"type": "thinking",
                                              "thinking": [{"type": "text", "text": self.b["thinking"]}]}]}))
        if p["tool_calls"]:
            events.append(chunk({"tool_calls": [{"index": i, **tc} for i, tc in enumerate(p["tool_calls"])]}))
        else:
            for piece in words(p["text"] or ""):
                events.append(chunk({"content": piece}))
        events.append(chunk({"content": ""}, p["finish"], with_usage=True))
        events.append(b"data: [DONE]\n\n")
        self.h.start_chunked(200, "text/event-stream; charset=utf-8")
        self.stream_events(events)


class MistralServer(ProviderServer):
    def __init__(self, host: str = "127.0.0.1", port: int = 0, chunk_delay_ms: float = 5.0):
        super().__init__(MISTRAL, host, port, chunk_delay_ms, None)

    def provider_request(self, h, path: str, bare: str, body: bytes) -> None:
        from cohere_mock import record
        rec = record(self, h, path, body)
        if h.command != "POST" or bare != "/v1/chat/completions":
            rec["response"].update(status=404, outcome="error")
            h.send_json(404, {"detail": "Not Found"})
            return
        behaviour = self.state.next_behaviour(rec["body"]) or {}
        rec["script"] = behaviour or None
        MistralEndpoint(self, h, rec, body, behaviour).run()


class MistralMock(ThreadedMock):
    """The Mistral mock on its own thread and port (0 = any free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, chunk_delay_ms: float = 5.0):
        super().__init__(MistralServer(host, port, chunk_delay_ms))


if __name__ == "__main__":
    m = MistralMock(port=9106).start()
    print(f"mock mistral on http://127.0.0.1:{m.port}", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        m.stop()
