#!/usr/bin/env python3
"""Mock Azure OpenAI resource for llm-gateway: chat completions and embeddings of deployments.

Built on mock_providers.py (the OpenAI mock's answers, recording, `/__mock/script`,
`/__mock/requests`, `/__mock/reset`, the same fault switches), with Azure's differences:

    from azure_mock import AzureMock
    mock = AzureMock(key="az-key", deployments={"gpt4o": "gpt-4o-2024-11-20"}).start()

* Paths: `POST /openai/deployments/{deployment}/chat/completions?api-version=...` and
  `.../embeddings?api-version=...`. Without `api-version` -> 404 `{"error": {"code": "404",
  "message": "Resource not found"}}`; an unknown deployment -> 404 `DeploymentNotFound`.
* Auth: the `api-key` header; missing or wrong -> 401 `{"error": {"code": "401", "message":
  "Access denied due to invalid subscription key or wrong API endpoint. ..."}}`.
* Errors: `{"error": {"code", "message", ["param", "type", "status", "innererror"]}}`.
* Content filter: a prompt whose last user text contains `BLOCKME` -> 400 with `code:
  content_filter`, `param: prompt` and `innererror.code: ResponsibleAIPolicyViolation`
  (`content_filter_result` per category, as Azure); one containing `FILTERME` is answered with
  `finish_reason: content_filter` and the violence category filtered.
* Answers are the OpenAI mock's (text "Hello from the mock OpenAI provider! You said: ...",
  tools, stop, max_tokens) with `prompt_filter_results` on the answer and
  `content_filter_results` on each choice; `model` is the deployment's model. Streams start with
  Azure's chunk with empty `choices`, empty `id`/`model` and `prompt_filter_results`; every
  content chunk carries `content_filter_results`; the usage chunk comes when
  `stream_options.include_usage` is set.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

from cohere_mock import record, vector
from mock_providers import (
    ThreadedMock,
    MockHandler, OpenAIEndpoint, ProviderServer, ValidationError, _openai_text_of, count_tokens, dumps,
    split_in_pieces, words,
)

AZURE = "azure"
SAFE = {k: {"filtered": False, "severity": "safe"} for k in ("hate", "self_harm", "sexual", "violence")}
CF_MESSAGE = ("The response was filtered due to the prompt triggering Azure OpenAI's content management "
              "policy. Please modify your prompt and retry. To learn more about our content filtering "
              "policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766")
DENIED = ("Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
          "key for an active subscription and use a correct regional API endpoint for your resource.")


def filtered() -> dict:
    return {**SAFE, "violence": {"filtered": True, "severity": "high"}}


class AzureEndpoint(OpenAIEndpoint):
    flavour = AZURE

    @staticmethod
    def not_found(h: MockHandler, rec: dict) -> None:
        rec["response"].update(status=404, outcome="error")
        h.send_json(404, {"error": {"code": "404", "message": "Resource not found"}})

    def error_body(self, status, message=None, etype=None, param=None, code=None):
        defaults = {401: DENIED, 429: "Requests to the ChatCompletions_Create Operation under Azure OpenAI API "
                    "version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. "
                    "Please retry after 1 second.",
                    500: "The server had an error while processing your request. Sorry about that!"}
        err: dict[str, Any] = {"code": code or str(status), "message": message or defaults.get(status, f"HTTP {status}")}
        if param is not None:
            err["param"] = param
        if etype is not None:
            err["type"] = etype
        return {"error": err}

    def last_user_text(self) -> str:
        msgs = self.req.get("messages") or []
        users = [m for m in msgs if isinstance(m, dict) and m.get("role") == "user"]
        return _openai_text_of(users[-1].get("content")) if users else ""

    def validate(self) -> None:
        key = self.rec["headers"].get("api-key", "")
        if not key or (self.server.require_key is not None and key != self.server.require_key):
            raise ValidationError(401, DENIED, code="401")
        if not isinstance(self.rec["body"], dict):
            raise ValidationError(400, "We could not parse the JSON body of your request.")
        # The OpenAI checks, without its bearer-key check.
        headers = self.rec["headers"]
        saved = headers.get("authorization")
        headers["authorization"] = f"Bearer {self.server.require_key or 'azure'}"
        try:
            super().validate()
        finally:
            if saved is None:
                headers.pop("authorization", None)
            else:
                headers["authorization"] = saved
        if "BLOCKME" in self.last_user_text():
            self.rec["response"]["content_filter"] = "prompt"
            raise ContentFilterError()

    def send_error(self, status, message=None, etype=None, param=None, code=None, headers=None):
        if status == 400 and self.rec["response"].get("content_filter") == "prompt":
            self.rec["response"].update(status=400, outcome="error")
            body = {"error": {"message": CF_MESSAGE, "type": None, "param": "prompt", "code": "content_filter",
                              "status": 400, "innererror": {"code": "ResponsibleAIPolicyViolation",
                                                            "content_filter_result": {**SAFE, "jailbreak": {
                                                                "filtered": False, "detected": False},
                                                                "violence": {"filtered": True, "severity": "medium"}}}}}
            self.h.send_json(400, body)
            return
        super().send_error(status, message, etype, param, code, headers)

    def model_name(self) -> str:
        return self.server.deployments.get(self.deployment, self.deployment)

    def answer_json(self) -> None:
        p = self.plan()
        flag = "FILTERME" in self.last_user_text()
        finish = "content_filter" if flag else p["finish"]
        msg: dict[str, Any] = {"role": "assistant", "content": None if flag else p["text"], "refusal": None,
                               "annotations": []}
        if p["tool_calls"] and not flag:
            msg["tool_calls"] = p["tool_calls"]
        body = {"choices": [{"content_filter_results": filtered() if flag else SAFE, "finish_reason": finish,
                             "index": 0, "logprobs": None, "message": msg}],
                "created": p["created"], "id": p["id"], "model": self.model_name(), "object": "chat.completion",
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": SAFE}],
                "system_fingerprint": "fp_azure01", "usage": p["usage"]}
        self.rec["response"].update(status=200, usage=p["usage"], outcome="complete", message=msg,
                                    finish_reason=finish)
        self.h.send_json(200, body)

    def answer_stream(self) -> None:
        p = self.plan()
        flag = "FILTERME" in self.last_user_text()
        finish = "content_filter" if flag else p["finish"]
        so = self.req.get("stream_options") or {}
        include_usage = isinstance(so, dict) and so.get("include_usage") is True
        self.rec["response"].update(status=200, usage=p["usage"], finish_reason=finish,
                                    message={"content": p["text"], "tool_calls": p["tool_calls"] or None})

        def data(obj: dict) -> bytes:
            return f"data: {dumps(obj)}\n\n".encode()

        def chunk(delta: dict, finish_reason: str | None = None, cf: dict | None = None) -> bytes:
            obj: dict[str, Any] = {"choices": [{"content_filter_results": SAFE if cf is None else cf,
                                                "delta": delta, "finish_reason": finish_reason, "index": 0,
                                                "logprobs": None}],
                                   "created": p["created"], "id": p["id"], "model": self.model_name(),
                                   "object": "chat.completion.chunk", "system_fingerprint": "fp_azure01"}
            if include_usage:
                obj["usage"] = None
            return data(obj)

        events = [data({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": SAFE}]})]
        events.append(chunk({"content": "", "refusal": None, "role": "assistant"}, cf={}))
        if p["tool_calls"] and not flag:
            for i, tc in enumerate(p["tool_calls"]):
                events.append(chunk({"tool_calls": [{"index": i, "id": tc["id"], "type": "function",
                                                     "function": {"name": tc["function"]["name"], "arguments": ""}}]}))
                for piece in split_in_pieces(tc["function"]["arguments"], 4):
                    events.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
        elif not flag:
            for w in words(p["text"] or ""):
                events.append(chunk({"content": w}))
        events.append(chunk({}, finish, cf=filtered() if flag else SAFE))
        if include_usage:
            events.append(data({"choices": [], "created": p["created"], "id": p["id"], "model": self.model_name(),
                                "object": "chat.completion.chunk", "system_fingerprint": "fp_azure01",
                                "usage": p["usage"]}))
        events.append(b"data: [DONE]\n\n")
        self.h.start_chunked(200, "text/event-stream; charset=utf-8")
        self.stream_events(events)


class ContentFilterError(ValidationError):
    def __init__(self) -> None:
        super().__init__(400, CF_MESSAGE, None, "prompt", "content_filter")


class AzureEmbeddingsEndpoint(AzureEndpoint):
    def validate(self) -> None:
        key = self.rec["headers"].get("api-key", "")
        if not key or (self.server.require_key is not None and key != self.server.require_key):
            raise ValidationError(401, DENIED, code="401")
        r = self.rec["body"]
        if not isinstance(r, dict) or r.get("input") is None:
            raise ValidationError(400, "'input' is a required property", code="invalid_request_error")

    def answer_json(self) -> None:
        r = self.req
        inputs = [r["input"]] if isinstance(r["input"], str) else list(r["input"])
        dims = r.get("dimensions") or 4
        tokens = sum(count_tokens(str(t)) for t in inputs)
        body = {"object": "list", "data": [{"object": "embedding", "index": i, "embedding": vector(str(t), dims)}
                                           for i, t in enumerate(inputs)],
                "model": self.model_name(), "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        self.rec["response"].update(status=200, outcome="complete", usage=body["usage"])
        self.h.send_json(200, body)


class AzureServer(ProviderServer):
    def __init__(self, host: str = "127.0.0.1", port: int = 0, chunk_delay_ms: float = 5.0,
                 key: str | None = None, deployments: dict[str, str] | None = None):
        super().__init__(AZURE, host, port, chunk_delay_ms, key)
        self.deployments = dict(deployments or {})

    def base_headers(self) -> list[tuple[str, str]]:
        return [("apim-request-id", "mock-apim-0001"), ("x-ms-region", "Sweden Central"),
                ("x-mock-provider", AZURE)]

    def provider_request(self, h: MockHandler, path: str, bare: str, body: bytes) -> None:
        rec = record(self, h, path, body)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        parts = bare.split("/")
        # ['', 'openai', 'deployments', name, 'chat', 'completions'] or [..., name, 'embeddings']
        ok_shape = len(parts) >= 5 and parts[1] == "openai" and parts[2] == "deployments"
        tail = "/".join(parts[4:]) if ok_shape else ""
        ep = {"chat/completions": AzureEndpoint, "embeddings": AzureEmbeddingsEndpoint}.get(tail)
        if ep is None or h.command != "POST" or not query.get("api-version"):
            AzureEndpoint.not_found(h, rec)
            return
        deployment = urllib.parse.unquote(parts[3])
        if self.deployments and deployment not in self.deployments:
            rec["response"].update(status=404, outcome="error")
            h.send_json(404, {"error": {"code": "DeploymentNotFound", "message":
                                        "The API deployment for this resource does not exist. If you created the "
                                        "deployment within the last 5 minutes, please wait a moment and try again."}})
            return
        behaviour = self.state.next_behaviour(rec["body"]) or {}
        rec["script"] = behaviour or None
        e = ep(self, h, rec, body, behaviour)
        e.deployment = deployment
        e.run()


class AzureMock(ThreadedMock):
    """The Azure OpenAI mock on its own thread and port (0 = any free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, chunk_delay_ms: float = 5.0,
                 key: str | None = None, deployments: dict[str, str] | None = None):
        super().__init__(AzureServer(host, port, chunk_delay_ms, key, deployments))


if __name__ == "__main__":
    m = AzureMock(port=9105).start()
    print(f"mock azure on http://127.0.0.1:{m.port}", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        m.stop()
