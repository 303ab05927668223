#!/usr/bin/env python3
"""Mock Google Gemini API and Vertex AI server for llm-gateway (standard library only).

One port serves both APIs, told apart by the path:

* Gemini API: `POST /v1beta/models/{model}:generateContent`,
  `:streamGenerateContent?alt=sse`, `:embedContent`, `:batchEmbedContents`
  (`v1` works too), key in `x-goog-api-key`.
* Vertex AI: `POST /v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent`,
  `:streamGenerateContent?alt=sse`, `:predict` (text embeddings), bearer token in
  `Authorization`.

    python3 tests/mocks/mock_gemini.py --port 9103

or, from Python: `MockGemini().start()` (`.port`, `.state`, `.stop()`).

Payloads follow https://ai.google.dev/api/generate-content and the Vertex AI
inference and text-embeddings references: `GenerateContentResponse`
(`candidates[].content.parts`, `finishReason`, `usageMetadata`, `modelVersion`),
SSE streams of such objects separated by CRLF blank lines and closed by the
server after the chunk with `finishReason` (no `[DONE]`), and Google's error
envelope `{"error": {"code", "message", "status", "details"}}`.

Default answers (no script):

* "Hello from the mock Gemini provider! You said: <last user text>" (+ " (with N
  image(s))" for `inlineData` / `fileData` parts in the last user turn).
* Tools: when the request declares functions, `toolConfig` does not say `NONE`
  and the last turn is user text, the answer calls the first function (or the
  first of `allowedFunctionNames`) with arguments generated from its schema
  (`parametersJsonSchema` or `parameters`), finishReason `STOP`. After
  `functionResponse` parts the answer is "The tool returned: <response content>".
* `generationConfig.stopSequences` / `maxOutputTokens` cut the text (finishReason
  `STOP` / `MAX_TOKENS`); `candidateCount` gives that many candidates (the
  second and later say "(candidate N)"); `responseMimeType: application/json`
  answers JSON (sampled from `responseJsonSchema` if given);
  `thinkingConfig.includeThoughts` adds a `thought: true` part first, counts
  `thoughtsTokenCount`, and signs function calls with a `thoughtSignature`.
* Usage: prompt tokens = words in `contents` and `systemInstruction` (+258 per
  image), candidates tokens = words in the answer.
* Embeddings: deterministic vectors (8 values, or `outputDimensionality`);
  Vertex `:predict` reports `statistics.token_count` (words), the Gemini API no
  usage at all, as the real ones.

Validation, as the real APIs do it (cheap checks), in Google's error format:
missing `x-goog-api-key` -> 403 PERMISSION_DENIED; with `require_key` a wrong
key -> 400 INVALID_ARGUMENT (`API_KEY_INVALID`); a `key=` query parameter ->
400 (this gateway must never put the key in the URL); Vertex without a bearer
token -> 401 UNAUTHENTICATED; streams without `alt=sse` -> 400; unknown fields
at the top level, in `generationConfig`, in parts or in function declarations,
`contents` missing or empty, roles other than user/model, parts empty or with
zero or several data fields, an empty `text` (Google's "empty text parameter"), `parameters` together with `parametersJsonSchema`,
a function call turn not right after a user or function response turn, and a
function response turn whose count or names do not match the preceding call
turn -> 400 INVALID_ARGUMENT.

Control API: the same as tests/mocks/mock_providers.py (`POST/GET/DELETE
/__mock/script`, `GET /__mock/requests`, `POST /__mock/reset`). Behaviours:
`delay_ms`, `status` (with the canonical Google error), `body`/`response`,
`headers`, `sse` / `sse_chunks`, `text`, `tool_calls` ([{"name", "arguments"}]),
`finish_reason`, `usage` (merged into usageMetadata), `chunk_delay_ms`,
`reset_after_events`, `truncate_after_events`, `error_after_events` (a
`data: {"error": ...}` UNAVAILABLE event), `stall_after_events`,
`reset_before_headers`, and the matchers `match_model` (the model in the path),
`match_stream` and `repeat`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import json
import re
import signal
import sys
import threading
import time
from typing import Any
from urllib.parse import parse_qs

sys.path.insert(0, os.path.dirname(__file__))

from mock_providers import (  # noqa: E402
    ThreadedMock,
    Endpoint,
    MockHandler,
    ProviderServer,
    ValidationError,
    _rand,
    count_tokens,
    cut_text,
    dumps,
    sample_from_schema,
    words,
)

GEMINI = "gemini"
VERTEX = "vertex_ai"

GOOGLE_STATUS = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                             "login cookie or other valid authentication credential."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report in "
                      "https://developers.generativeai.google/guide/troubleshooting"),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}

TOP_LEVEL = {"contents", "systemInstruction", "generationConfig", "tools", "toolConfig", "safetySettings",
             "cachedContent", "labels"}
GENERATION_CONFIG = {"temperature", "topP", "topK", "maxOutputTokens", "stopSequences", "candidateCount",
                     "responseMimeType", "responseSchema", "responseJsonSchema", "seed", "presencePenalty",
                     "frequencyPenalty", "thinkingConfig", "responseLogprobs", "logprobs", "responseModalities",
                     "speechConfig", "mediaResolution"}
PART_DATA = {"text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
             "codeExecutionResult"}
PART_EXTRA = {"thought", "thoughtSignature", "videoMetadata"}
DECLARATION = {"name", "description", "parameters", "parametersJsonSchema", "response", "responseJsonSchema",
               "behavior"}

# Gemini's OpenAPI `Schema` (the `parameters` of a function declaration): its fields, and the
# types as JSON Schema spells them (Google reads the enum names case-insensitively).
SCHEMA_FIELDS = {"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
                 "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
                 "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum"}
SCHEMA_TYPES = {"string", "number", "integer", "boolean", "array", "object", "null"}


def check_openapi_schema(schema, at: str) -> None:
    """What Google checks of an OpenAPI `parameters` schema: known fields only (JSON Schema's
    `additionalProperties`, `$ref`, `$defs` ... are "Unknown name"), one type from the enum,
    string enums, and properties for an OBJECT."""
    if not isinstance(schema, dict):
        raise ValidationError(400, f"Invalid value at '{at}'")
    for k in schema:
        if k not in SCHEMA_FIELDS:
            raise ValidationError(400, f'Invalid JSON payload received. Unknown name "{k}" at \'{at}\': Cannot find field.')
    t = schema.get("type")
    if t is not None and (not isinstance(t, str) or t.lower() not in SCHEMA_TYPES):
        raise ValidationError(400, f"Invalid value at '{at}.type'")
    if any(not isinstance(v, str) for v in schema.get("enum") or []):
        raise ValidationError(400, f"Invalid value at '{at}.enum'")
    if isinstance(t, str) and t.lower() == "object" and not schema.get("properties"):
        raise ValidationError(400, f"* GenerateContentRequest.{at}.properties: should be non-empty for OBJECT type")
    for name, sub in (schema.get("properties") or {}).items():
        check_openapi_schema(sub, f"{at}.properties[{name}].value")
    if "items" in schema:
        check_openapi_schema(schema["items"], f"{at}.items")
    for n, sub in enumerate(schema.get("anyOf") or []):
        check_openapi_schema(sub, f"{at}.any_of[{n}]")


GEMINI_PATH = re.compile(r"^/(v1beta|v1)/(models|tunedModels)/([^/:]+):([A-Za-z]+)$")
VERTEX_PATH = re.compile(r"^/(v1|v1beta1)/projects/([^/]+)/locations/([^/]+)/publishers/google/models/([^/:]+):([A-Za-z]+)$")


def google_error(status: int, message: str | None = None, gstatus: str | None = None,
                 details: list | None = None) -> dict:
    ds, dm = GOOGLE_STATUS.get(status, ("UNKNOWN", f"HTTP {status}"))
    err: dict[str, Any] = {"code": status, "message": message or dm, "status": gstatus or ds}
    if details:
        err["details"] = details
    return {"error": err}


def parts_text(parts: Any, include_responses: bool = True) -> str:
    out = []
    for p in parts if isinstance(parts, list) else []:
        if not isinstance(p, dict):
            continue
        if isinstance(p.get("text"), str) and not p.get("thought"):
            out.append(p["text"])
        elif include_responses and isinstance(p.get("functionResponse"), dict):
            resp = p["functionResponse"].get("response")
            out.append(str(resp.get("content")) if isinstance(resp, dict) and "content" in resp else dumps(resp))
    return " ".join(x for x in out if x)


def vector(text: str, dims: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round((digest[i % len(digest)] - 128) / 128.0, 6) for i in range(dims)]


class GeminiServer(ProviderServer):
    """Both Google APIs on one port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, chunk_delay_ms: float = 10.0,
                 require_key: str | None = None, verbose: bool = False):
        super().__init__(GEMINI, host, port, chunk_delay_ms, require_key, verbose)

    def base_headers(self) -> list[tuple[str, str]]:
        return [("server", "scaffolding on HTTPServer2"), ("x-mock-provider", GEMINI),
                ("vary", "Origin, X-Origin, Referer")]

    def provider_request(self, h: MockHandler, path: str, bare: str, body: bytes) -> None:
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
        self.state.record(rec)
        query = parse_qs(path.split("?", 1)[1]) if "?" in path else {}
        m = GEMINI_PATH.match(bare)
        api, model, method, project, location = None, None, None, None, None
        if m:
            api, model, method = GEMINI, m.group(3), m.group(4)
        else:
            m = VERTEX_PATH.match(bare)
            if m:
                api, project, location, model, method = VERTEX, m.group(2), m.group(3), m.group(4), m.group(5)
        known = {GEMINI: {"generateContent", "streamGenerateContent", "embedContent", "batchEmbedContents"},
                 VERTEX: {"generateContent", "streamGenerateContent", "predict"}}
        if api is None or method not in known[api] or h.command != "POST":
            rec["response"].update(status=404, outcome="error")
            h.send_json(404, google_error(404, f"The requested URL {bare} was not found on this server."))
            return
        rec.update(api=api, model=model, method=method, project=project, location=location)
        is_stream = method == "streamGenerateContent"
        behaviour = self.state.next_behaviour({"model": model, "stream": is_stream}) or {}
        rec["script"] = behaviour or None
        GeminiEndpoint(self, h, rec, body, behaviour, api, model, method, query).run()


class GeminiEndpoint(Endpoint):
    flavour = GEMINI

    def __init__(self, server, h, rec, body, behaviour, api, model, method, query):
        super().__init__(server, h, rec, body, behaviour)
        self.api, self.model, self.method, self.query = api, model, method, query
        self.is_stream = method == "streamGenerateContent"

    # -- Endpoint API

    def error_body(self, status, message=None, etype=None, param=None, code=None):
        return google_error(status, message, etype)

    def stream_error_event(self) -> bytes:
        return ("data: " + dumps(google_error(503)) + "\r\n\r\n").encode()

    def run(self) -> None:
        b = self.b
        if b.get("delay_ms"):
            self.server.state.sleep(float(b["delay_ms"]) / 1000.0)
        self.rec["response"]["stream"] = self.is_stream
        if b.get("reset_before_headers"):
            self.rec["response"]["outcome"] = "reset"
            self.h.reset_connection()
        if "reset_after_events" in b and not self.is_stream and not int(b["reset_after_events"]):
            self.rec["response"]["outcome"] = "reset"
            self.h.reset_connection()
        if "response" in b or "body" in b or int(b.get("status", 200)) >= 400:
            self.scripted_answer()
            return
        if "sse" in b or "sse_chunks" in b:
            self.scripted_sse()
            return
        try:
            self.validate()
        except ValidationError as e:
            self.send_error(e.status, e.message, e.etype)
            return
        if self.method in ("embedContent", "batchEmbedContents", "predict"):
            self.answer_embeddings()
        elif self.is_stream:
            self.answer_stream()
        else:
            self.answer_json()

    # -- validation

    def validate(self) -> None:
        E = ValidationError
        hdrs = self.rec["headers"]
        if "key" in self.query:
            raise E(400, "API keys must not be sent in the URL of this mock (access logs keep URLs).")
        if self.api == GEMINI:
            key = hdrs.get("x-goog-api-key")
            if not key:
                raise E(403, "Method doesn't allow unregistered callers (callers without established identity). "
                             "Please use API Key or other form of API consumer identity to call this API.")
            if self.server.require_key is not None and key != self.server.require_key:
                raise ValidationError(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT")
        else:
            auth = hdrs.get("authorization", "")
            token = auth[7:].strip() if auth.startswith("Bearer ") else ""
            if not token or (self.server.require_key is not None and token != self.server.require_key):
                raise E(401, None, "UNAUTHENTICATED")
        if self.is_stream and self.query.get("alt") != ["sse"]:
            raise E(400, "This mock streams only with alt=sse.")
        if not isinstance(self.rec["body"], dict):
            raise E(400, "Invalid JSON payload received. Expected an object.")
        r = self.req
        if self.method in ("embedContent", "batchEmbedContents", "predict"):
            self.validate_embeddings(r)
            return
        for k in r:
            if k not in TOP_LEVEL or (k == "labels" and self.api == GEMINI):
                raise E(400, f'Invalid JSON payload received. Unknown name "{k}": Cannot find field.')
        gc = r.get("generationConfig")
        if gc is not None:
            if not isinstance(gc, dict):
                raise E(400, "Invalid value at 'generation_config'")
            for k in gc:
                if k not in GENERATION_CONFIG:
                    raise E(400, f'Invalid JSON payload received. Unknown name "{k}" at \'generation_config\': '
                                 f'Cannot find field.')
        si = r.get("systemInstruction")
        if si is not None:
            if not isinstance(si, dict) or not isinstance(si.get("parts"), list):
                raise E(400, "Invalid value at 'system_instruction'")
            self.validate_parts(si["parts"], "system_instruction")
        contents = r.get("contents")
        if not isinstance(contents, list) or not contents:
            raise E(400, "* GenerateContentRequest.contents: contents is not specified")
        prev: dict | None = None
        for i, c in enumerate(contents):
            if not isinstance(c, dict):
                raise E(400, f"Invalid value at 'contents[{i}]'")
            role = c.get("role", "user")
            if role not in ("user", "model"):
                raise E(400, f"Please use a valid role: user, model. (contents[{i}].role = {role})")
            parts = c.get("parts")
            if not isinstance(parts, list) or not parts:
                raise E(400, f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
            self.validate_parts(parts, f"contents[{i}]")
            calls = [p["functionCall"] for p in parts if "functionCall" in p]
            responses = [p["functionResponse"] for p in parts if "functionResponse" in p]
            if calls and role == "model":
                prev_ok = prev is None or prev.get("role", "user") == "user"
                if not prev_ok:
                    raise E(400, "Please ensure that function call turn comes immediately after a user turn or "
                                 "after a function response turn.")
            if responses:
                prev_calls = [p["functionCall"] for p in (prev or {}).get("parts", []) if "functionCall" in p] \
                    if prev is not None and prev.get("role") == "model" else []
                if len(prev_calls) != len(responses):
                    raise E(400, "Please ensure that the number of function response parts is equal to the number "
                                 "of function call parts of the function call turn.")
                if sorted(x.get("name", "") for x in prev_calls) != sorted(x.get("name", "") for x in responses):
                    raise E(400, "Please ensure that function response names match the function call names.")
            prev = c
        tools = r.get("tools")
        names: list[str] = []
        if tools is not None:
            if not isinstance(tools, list):
                raise E(400, "Invalid value at 'tools'")
            for i, t in enumerate(tools):
                decls = t.get("functionDeclarations") if isinstance(t, dict) else None
                if decls is None:
                    continue
                for j, d in enumerate(decls):
                    if not isinstance(d, dict) or not isinstance(d.get("name"), str) \
                            or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}", d["name"]):
                        raise E(400, f"* GenerateContentRequest.tools[{i}].function_declarations[{j}].name: "
                                     f"Invalid function name.")
                    for k in d:
                        if k not in DECLARATION:
                            raise E(400, f'Invalid JSON payload received. Unknown name "{k}" at '
                                         f"'tools[{i}].function_declarations[{j}]': Cannot find field.")
                    if "parameters" in d and "parametersJsonSchema" in d:
                        raise E(400, "parameters and parameters_json_schema are mutually exclusive")
                    if "parameters" in d:
                        check_openapi_schema(d["parameters"], f"tools[{i}].function_declarations[{j}].parameters")
                    names.append(d["name"])
        fcc = (r.get("toolConfig") or {}).get("functionCallingConfig") if isinstance(r.get("toolConfig"), dict) \
            else None
        if fcc is not None:
            if fcc.get("mode") not in ("AUTO", "ANY", "NONE", "VALIDATED"):
                raise E(400, "Invalid value at 'tool_config.function_calling_config.mode'")
            for n in fcc.get("allowedFunctionNames") or []:
                if n not in names:
                    raise E(400, f"allowed_function_names contains {n}, which is not declared")

    def validate_parts(self, parts: list, where: str) -> None:
        E = ValidationError
        for j, p in enumerate(parts):
            if not isinstance(p, dict):
                raise E(400, f"Invalid value at '{where}.parts[{j}]'")
            unknown = set(p) - PART_DATA - PART_EXTRA
            if unknown:
                raise E(400, f'Invalid JSON payload received. Unknown name "{sorted(unknown)[0]}" at '
                             f"'{where}.parts[{j}]': Cannot find field.")
            data = [k for k in p if k in PART_DATA]
            if len(data) != 1:
                raise E(400, f"* {where}.parts[{j}].data: required oneof field 'data' must have one initialized field")
            if p.get("text") == "":
                raise E(400, "Unable to submit request because it has an empty text parameter. Add a value to "
                             "the parameter and try again.")
            if "inlineData" in p:
                d = p["inlineData"]
                if not isinstance(d, dict) or not d.get("mimeType") or not isinstance(d.get("data"), str):
                    raise E(400, f"{where}.parts[{j}].inline_data: mime_type and data are required")
            if "fileData" in p:
                d = p["fileData"]
                if not isinstance(d, dict) or not d.get("fileUri"):
                    raise E(400, f"{where}.parts[{j}].file_data: file_uri is required")
            if "functionCall" in p:
                fc = p["functionCall"]
                if not isinstance(fc, dict) or not fc.get("name") or not isinstance(fc.get("args", {}), dict):
                    raise E(400, f"{where}.parts[{j}].function_call: name is required and args must be an object")
            if "functionResponse" in p:
                fr = p["functionResponse"]
                if not isinstance(fr, dict) or not fr.get("name") or not isinstance(fr.get("response"), dict):
                    raise E(400, f"{where}.parts[{j}].function_response: name and response are required")

    def validate_embeddings(self, r: dict) -> None:
        E = ValidationError
        if self.method == "predict":
            inst = r.get("instances")
            if not isinstance(inst, list) or not inst or not all(isinstance(i, dict) and isinstance(i.get("content"), str)
                                                                 for i in inst):
                raise E(400, "instances must be a list of {content}")
            if self.model.startswith("gemini-embedding") and len(inst) > 1:
                raise E(400, f"Model {self.model} supports only one instance per request.")
            return
        reqs = r.get("requests") if self.method == "batchEmbedContents" else [r]
        if not isinstance(reqs, list) or not reqs:
            raise E(400, "* BatchEmbedContentsRequest.requests: requests is not specified")
        for i, q in enumerate(reqs):
            if not isinstance(q, dict) or not isinstance(q.get("content"), dict):
                raise E(400, f"requests[{i}].content is required")
            allowed = {"content", "model", "taskType", "title", "outputDimensionality"}
            for k in q:
                if k not in allowed:
                    raise E(400, f'Invalid JSON payload received. Unknown name "{k}": Cannot find field.')
            if self.method == "batchEmbedContents" and q.get("model") != f"models/{self.model}":
                raise E(400, f"requests[{i}].model must be models/{self.model}")
            self.validate_parts(q["content"].get("parts") or [], f"requests[{i}].content")

    # -- answers

    def prompt_tokens(self) -> int:
        r = self.req
        n = count_tokens(parts_text((r.get("systemInstruction") or {}).get("parts")))
        for c in r.get("contents") or []:
            parts = c.get("parts") or []
            n += count_tokens(parts_text(parts))
            n += 258 * sum(1 for p in parts if "inlineData" in p or "fileData" in p)
            for p in parts:
                if "functionCall" in p:
                    n += count_tokens(dumps(p["functionCall"].get("args", {})))
        for t in r.get("tools") or []:
            n += count_tokens(dumps(t))
        return max(n, 1)

    def plan(self) -> dict:
        """The candidates to answer: [{"parts": [...], "finish": str}], and usage."""
        r, b = self.req, self.b
        gc = r.get("generationConfig") or {}
        contents = r.get("contents") or []
        last = contents[-1] if contents else {}
        last_parts = last.get("parts") or []
        after_results = any("functionResponse" in p for p in last_parts)
        decls = [d for t in (r.get("tools") or []) for d in (t.get("functionDeclarations") or [])]
        fcc = (r.get("toolConfig") or {}).get("functionCallingConfig") or {}
        thinking = bool((gc.get("thinkingConfig") or {}).get("includeThoughts"))
        calls: list[dict] = []
        if "tool_calls" in b:
            calls = [{"name": c.get("name"), "args": c.get("arguments", {})} for c in b["tool_calls"]]
        elif decls and fcc.get("mode") != "NONE" and last.get("role", "user") == "user" and not after_results:
            allowed = fcc.get("allowedFunctionNames") or []
            fn = next((d for d in decls if d["name"] in allowed), decls[0])
            schema = fn.get("parametersJsonSchema", fn.get("parameters"))
            calls = [{"name": fn["name"], "args": sample_from_schema(schema) if schema else {}}]
        if "text" in b:
            text: str | None = str(b["text"])
        elif calls:
            text = None
        elif after_results:
            text = "The tool returned: " + parts_text(last_parts)
        else:
            said = parts_text(last_parts, include_responses=False)
            text = f"Hello from the mock Gemini provider! You said: {said}"
            n_img = sum(1 for p in last_parts if "inlineData" in p or "fileData" in p)
            if n_img:
                text += f" (with {n_img} image{'s' if n_img > 1 else ''})"
            if gc.get("responseMimeType") == "application/json":
                schema = gc.get("responseJsonSchema") or gc.get("responseSchema")
                text = dumps(sample_from_schema(schema, "answer") if schema else {"answer": said})
        finish = "STOP"
        if text is not None:
            text, why, _ = cut_text(text, [s for s in gc.get("stopSequences") or []], gc.get("maxOutputTokens"))
            if why == "max_tokens":
                finish, calls = "MAX_TOKENS", []
        finish = b.get("finish_reason", finish)
        n = int(gc.get("candidateCount") or 1)
        candidates = []
        answer_tokens = 0
        thought_tokens = 0
        for i in range(n):
            parts: list[dict] = []
            if thinking:
                thought = f"Thinking about: {parts_text(last_parts) or 'the request'}"
                thought_tokens += count_tokens(thought)
                parts.append({"text": thought, "thought": True})
            t = text if (text is None or i == 0) else f"{text} (candidate {i + 1})"
            if t:
                parts.append({"text": t})
                answer_tokens += count_tokens(t)
            for j, c in enumerate(calls):
                part: dict[str, Any] = {"functionCall": {"name": c["name"], "args": c["args"]}}
                if thinking and j == 0:
                    part["thoughtSignature"] = base64.b64encode(os.urandom(31)).decode()
                answer_tokens += count_tokens(dumps(c["args"]))
                parts.append(part)
            candidates.append({"parts": parts, "finish": finish, "index": i})
        prompt = self.prompt_tokens()
        usage = {"promptTokenCount": prompt, "candidatesTokenCount": answer_tokens,
                 "totalTokenCount": prompt + answer_tokens + thought_tokens,
                 "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]}
        if thought_tokens:
            usage["thoughtsTokenCount"] = thought_tokens
        usage.update(b.get("usage") or {})
        return {"candidates": candidates, "usage": usage, "text": text, "calls": calls}

    def answer_json(self) -> None:
        p = self.plan()
        body = {
            "candidates": [{"content": {"parts": c["parts"], "role": "model"}, "finishReason": c["finish"],
                            "index": c["index"], "avgLogprobs": -0.1} for c in p["candidates"]],
            "usageMetadata": p["usage"], "modelVersion": self.model, "responseId": _rand(22),
        }
        self.rec["response"].update(status=200, usage=p["usage"], outcome="complete", text=p["text"],
                                    calls=p["calls"], finish_reason=p["candidates"][0]["finish"],
                                    candidates=p["candidates"])
        n = self.b.get("reset_after_events")
        if n is not None and int(n) > 0:
            data = dumps(body).encode()
            self.h._send_head(200, [("Content-Type", "application/json; charset=UTF-8"),
                                    ("Content-Length", str(len(data)))])
            self.h.wfile.write(data[: len(data) // 2])
            self.h.wfile.flush()
            time.sleep(0.02)
            self.rec["response"]["outcome"] = "reset"
            self.h.reset_connection()
        self.h.send_body(200, dumps(body).encode(), "application/json; charset=UTF-8")

    def answer_stream(self) -> None:
        p = self.plan()
        self.rec["response"].update(status=200, usage=p["usage"], text=p["text"], calls=p["calls"],
                                    finish_reason=p["candidates"][0]["finish"], candidates=p["candidates"])
        usage = p["usage"]
        prompt_only = {"promptTokenCount": usage["promptTokenCount"], "totalTokenCount": usage["promptTokenCount"],
                       "promptTokensDetails": usage["promptTokensDetails"]}
        rid = _rand(22)
        # One event per text word (thoughts first, function calls whole), then the finish.
        pieces: list[list[tuple[int, dict]]] = []
        for c in p["candidates"]:
            for k, part in enumerate(c["parts"]):
                if "text" in part:
                    for w in words(part["text"]):
                        pieces.append([(c["index"], {**part, "text": w})])
                else:
                    pieces.append([(c["index"], part)])
        events: list[bytes] = []

        def event(cands: list[dict], final: bool) -> bytes:
            obj = {"candidates": cands, "usageMetadata": usage if final else prompt_only,
                   "modelVersion": self.model, "responseId": rid}
            return ("data: " + dumps(obj) + "\r\n\r\n").encode()

        for group in pieces:
            cands = [{"content": {"parts": [part], "role": "model"}, "index": idx} for idx, part in group]
            events.append(event(cands, False))
        finals = [{"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": c["finish"],
                   "index": c["index"]} for c in p["candidates"]]
        events.append(event(finals, True))
        self.h.start_chunked(200, "text/event-stream")
        self.stream_events(events)

    def answer_embeddings(self) -> None:
        r = self.req
        if self.method == "predict":
            dims = int((r.get("parameters") or {}).get("outputDimensionality") or 8)
            preds = [{"embeddings": {"values": vector(i["content"], dims),
                                     "statistics": {"token_count": count_tokens(i["content"]), "truncated": False}}}
                     for i in r["instances"]]
            body: dict[str, Any] = {"predictions": preds, "metadata": {"billableCharacterCount": sum(
                len(i["content"]) for i in r["instances"])}}
        else:
            reqs = r["requests"] if self.method == "batchEmbedContents" else [r]
            embs = [{"values": vector(parts_text(q["content"].get("parts")), int(q.get("outputDimensionality") or 8))}
                    for q in reqs]
            body = {"embeddings": embs} if self.method == "batchEmbedContents" else {"embedding": embs[0]}
        self.rec["response"].update(status=200, outcome="complete")
        self.h.send_json(200, body)


class MockGemini(ThreadedMock):
    """The Gemini/Vertex mock on its own thread (port 0 = any free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, chunk_delay_ms: float = 10.0,
                 require_key: str | None = None, verbose: bool = False):
        super().__init__(GeminiServer(host, port, chunk_delay_ms, require_key, verbose))

    @property
    def state(self):
        return self.server.state


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Mock Google Gemini API / Vertex AI for llm-gateway")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9103)
    ap.add_argument("--chunk-delay-ms", type=float, default=10.0)
    ap.add_argument("--key", default=None, help="require exactly this x-goog-api-key / bearer token")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    mock = MockGemini(args.host, args.port, args.chunk_delay_ms, args.key, args.verbose).start()
    print(f"mock gemini/vertex: http://{args.host}:{mock.port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    mock.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
