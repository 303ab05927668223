"""A guardrail service for the e2e tests, speaking two documented APIs on one port:

* LiteLLM's generic guardrail API, `POST /beta/litellm_basic_guardrail_api`
  (request `{texts, request_data, input_type, litellm_call_id,
  additional_provider_specific_params}`, answer `{action: NONE | BLOCKED |
  GUARDRAIL_INTERVENED, blocked_reason, texts}`);
* OpenAI's moderation API, `POST /v1/moderations` (request `{model, input}`, answer
  `{id, model, results: [{flagged, categories, category_scores}]}`);
* Presidio's analyzer, `POST /analyze` (request `{text, language, entities?}`, answer a
  list of `{entity_type, start, end, score}` with offsets in characters): it finds
  "Jane Doe" (PERSON), e-mail addresses (EMAIL_ADDRESS) and NNN-NN-NNNN (US_SSN).

What it answers is decided by the texts: "BLOCKME" blocks, "Jane Doe" is rewritten to
"<PERSON>", "SLOWME" answers after 3 s, "GARBAGE" answers something that is not JSON,
"nasty" is flagged by the moderation API (category violence). Control: `GET /__requests`
(what it received: path, headers, body), `POST /__reset`.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class GuardrailMock:
    def __init__(self) -> None:
        self.received: list[dict] = []
        self.lock = threading.Lock()
        mock = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args) -> None:
                pass

            def answer(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                with mock.lock:
                    data = json.dumps(mock.received).encode()
                self.answer(200, data)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
                if self.path == "/__reset":
                    with mock.lock:
                        mock.received.clear()
                    return self.answer(200, b"{}")
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self.answer(400, b'{"error": "body is not JSON"}')
                with mock.lock:
                    mock.received.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                          "body": body})
                if self.path == "/beta/litellm_basic_guardrail_api":
                    return self.generic(body)
                if self.path == "/v1/moderations":
                    return self.moderation(body)
                if self.path == "/analyze":
                    return self.analyze(body)
                self.answer(404, b'{"error": "unknown path"}')

            def generic(self, body: dict) -> None:
                texts = body.get("texts")
                if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                    return self.answer(400, b'{"error": "texts must be a list of strings"}')
                joined = " ".join(texts)
                if "SLOWME" in joined:
                    time.sleep(3)
                if "GARBAGE" in joined:
                    return self.answer(200, b"<html>oops</html>", "text/html")
                if "BLOCKME" in joined:
                    out = {"action": "BLOCKED", "blocked_reason": "policy: demo block"}
                elif "Jane Doe" in joined:
                    out = {"action": "GUARDRAIL_INTERVENED", "texts": [t.replace("Jane Doe", "<PERSON>") for t in texts]}
                else:
                    out = {"action": "NONE"}
                self.answer(200, json.dumps(out).encode())

            def analyze(self, body: dict) -> None:
                text = body.get("text")
                if not isinstance(text, str) or not isinstance(body.get("language"), str):
                    return self.answer(400, b'{"error": "text and language are required"}')
                found = []
                for entity, pattern, score in (("PERSON", r"Jane Doe", 0.85),
                                               ("EMAIL_ADDRESS", r"[\w.+-]+@[\w-]+\.[\w.]+", 1.0),
                                               ("US_SSN", r"\b\d{3}-\d{2}-\d{4}\b", 0.6)):
                    if body.get("entities") and entity not in body["entities"]:
                        continue
                    for m in re.finditer(pattern, text):
                        found.append({"entity_type": entity, "start": m.start(), "end": m.end(), "score": score,
                                      "analysis_explanation": None,
                                      "recognition_metadata": {"recognizer_name": "MockRecognizer"}})
                self.answer(200, json.dumps(found).encode())

            def moderation(self, body: dict) -> None:
                inputs = body.get("input")
                inputs = inputs if isinstance(inputs, list) else [inputs]
                results = [{"flagged": "nasty" in str(t), "categories": {"violence": "nasty" in str(t)},
                            "category_scores": {"violence": 0.9 if "nasty" in str(t) else 0.01}} for t in inputs]
                self.answer(200, json.dumps({"id": "modr-mock", "model": body.get("model"), "results": results}).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "GuardrailMock":
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def requests(self) -> list[dict]:
        with self.lock:
            return list(self.received)

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
