#!/usr/bin/env python3
"""Mock Claude on Vertex AI for llm-gateway: Anthropic's Messages API at Google's endpoint, as
Google documents it (cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude), built on
mock_providers.py's Anthropic mock (its answers, streams, recording, `/__mock/script`,
`/__mock/requests`, `/__mock/reset`, faults).

    from vertex_claude_mock import VertexClaudeMock
    mock = VertexClaudeMock(token="ya29.x").start()   # mock.port ... mock.stop()

* `POST /v1/projects/{project}/locations/{location}/publishers/anthropic/models/{model}:rawPredict`
  answers JSON; `...:streamRawPredict` answers Anthropic's SSE stream. Any other path -> 404.
* Auth: `Authorization: Bearer <token>` (Google's 401 `{"error": {"code": 401, "message",
  "status": "UNAUTHENTICATED"}}` when missing or wrong).
* Body: Anthropic's Messages body without `model` (the model is in the path: a `model` member ->
  400 "model: Extra inputs are not permitted"), with `anthropic_version: "vertex-2023-10-16"`
  (anything else -> 400); `anthropic_beta` (a list of beta names) is accepted in the body.
  The rest is validated and answered as the Anthropic mock does, for the path's model.
"""

from __future__ import annotations

import re
import time

from cohere_mock import record
from mock_providers import AnthropicEndpoint, ProviderServer, ThreadedMock, ValidationError

VERTEX_CLAUDE = "vertex_claude"
PATH = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/publishers/anthropic/models/([^/:]+):(rawPredict|streamRawPredict)$")


class VertexClaudeEndpoint(AnthropicEndpoint):
    model_from_path = ""

    def validate(self) -> None:
        auth = self.rec["headers"].get("authorization", "")
        if not auth.startswith("Bearer ") or (self.server.require_key and auth[7:] != self.server.require_key):
            raise ValidationError(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED")
        body = self.rec["body"]
        if not isinstance(body, dict):
            raise ValidationError(400, "There was an error parsing the body of your request as JSON")
        if "model" in body:
            raise ValidationError(400, "model: Extra inputs are not permitted")
        if body.get("anthropic_version") != "vertex-2023-10-16":
            raise ValidationError(400, "anthropic_version: Input should be 'vertex-2023-10-16'")
        betas = body.get("anthropic_beta")
        if betas is not None and not (isinstance(betas, list) and all(isinstance(b, str) for b in betas)):
            raise ValidationError(400, "anthropic_beta: Input should be a valid list of strings")
        # The rest as Anthropic checks it, for the model in the path.
        self.req = {k: v for k, v in body.items() if k not in ("anthropic_version", "anthropic_beta")}
        self.req["model"] = self.model_from_path
        saved = self.rec["headers"]
        self.rec["headers"] = {**saved, "x-api-key": "vertex", "anthropic-version": "2023-06-01"}
        if betas:
            self.rec["headers"]["anthropic-beta"] = ",".join(betas)
        try:
            require, self.server.require_key = self.server.require_key, None
            super().validate()
        finally:
            self.server.require_key = require
            self.rec["headers"] = saved

    def error_body(self, status, message=None, etype=None, param=None, code=None):
        if status == 401:
            return {"error": {"code": 401, "message": message, "status": "UNAUTHENTICATED"}}
        return super().error_body(status, message, etype, param, code)


class VertexClaudeServer(ProviderServer):
    def __init__(self, host: str = "127.0.0.1", port: int = 0, chunk_delay_ms: float = 5.0,
                 token: str | None = None):
        super().__init__(VERTEX_CLAUDE, host, port, chunk_delay_ms, token)

    def provider_request(self, h, path: str, bare: str, body: bytes) -> None:
        rec = record(self, h, path, body)
        m = PATH.match(bare)
        if h.command != "POST" or not m:
            rec["response"].update(status=404, outcome="error")
            h.send_json(404, {"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}})
            return
        behaviour = self.state.next_behaviour(rec["body"]) or {}
        rec["script"] = behaviour or None
        ep = VertexClaudeEndpoint(self, h, rec, body, behaviour)
        ep.model_from_path = m.group(3)
        ep.run()


class VertexClaudeMock(ThreadedMock):
    """The Claude-on-Vertex mock on its own thread and port (0 = any free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, chunk_delay_ms: float = 5.0,
                 token: str | None = None):
        super().__init__(VertexClaudeServer(host, port, chunk_delay_ms, token))


if __name__ == "__main__":
    mock = VertexClaudeMock(port=9107).start()
    print(f"mock Claude on Vertex on http://127.0.0.1:{mock.port}", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        mock.stop()
