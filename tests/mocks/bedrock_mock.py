#!/usr/bin/env python3
"""Mock AWS Bedrock runtime for llm-gateway: Converse, ConverseStream and InvokeModel
(embeddings), every request SigV4-verified.

Standard library only. From Python (the e2e tests start it in-process):

    from bedrock_mock import BedrockMock
    mock = BedrockMock(credentials={"AKIDMOCK": "secret"}, region="us-east-1").start()
    mock.port ... mock.stop()

or standalone: `python3 tests/mocks/bedrock_mock.py --port 9103`.

Wire format (the Bedrock Runtime API reference):

* `POST /model/{modelId}/converse` -> `{"output": {"message": {"role": "assistant",
  "content": [...]}}, "stopReason", "usage": {"inputTokens", "outputTokens",
  "totalTokens"}, "metrics": {"latencyMs"}}`.
* `POST /model/{modelId}/converse-stream` -> `200`,
  `content-type: application/vnd.amazon.eventstream`, a chunked body of binary
  event-stream messages (prelude, headers, payload, CRC-32s computed with
  zlib.crc32), `:message-type: event` with `:event-type` messageStart,
  contentBlockStart (tool use), contentBlockDelta, contentBlockStop, messageStop,
  metadata; payloads carry a `p` padding field as real Bedrock's do. Each message
  is its own write, and the first delta is split across two writes.
* `POST /model/{modelId}/invoke` and `/invoke-with-response-stream` for Claude (`anthropic.` ids):
  Anthropic's Messages body without `model`/`stream`, `anthropic_version: bedrock-2023-05-31`
  (else 400 ValidationException "Malformed input request"); the answer is Anthropic's Messages
  response, the stream an event stream of `chunk` events whose `{"bytes"}` is the base64 of
  each Anthropic stream event.
* `POST /model/{modelId}/invoke` (embeddings): Titan text (`inputText` ->
  `{"embedding", "inputTextTokenCount"}`; v2 honours `dimensions`) and Cohere
  (`texts`, `input_type` -> `{"embeddings", "id", "response_type", "texts"}`),
  with the `X-Amzn-Bedrock-Input-Token-Count` header.
* Errors: JSON `{"message": ...}` plus an `x-amzn-errortype` header, as Bedrock:
  403 `InvalidSignatureException` when the signature recomputed with the
  configured secret differs ("The request signature we calculated does not
  match..."), 403 `UnrecognizedClientException` for an unknown access key or a
  wrong session token, 403 `InvalidSignatureException` "Signature expired" for an
  `x-amz-date` more than 5 minutes off, 400 `ValidationException` for a malformed
  body (unknown top-level keys, roles not alternating, first message not user,
  content blocks with other than one known member, tool blocks without
  `toolConfig`, toolResult not answering a toolUse of the previous turn, images
  whose bytes are not base64 or whose format is unknown).

SigV4 as AWS verifies it: the canonical URI is the received path, normalised and
URI-encoded again (each segment twice in all: `v1%3A0` -> `v1%253A0`); the
canonical headers are the `SignedHeaders` named in `authorization`; the payload
hash is SHA-256 of the received body.

Default answers: "Hello from the mock Bedrock provider! You said: <last user
text>"; with `toolConfig` and a last user turn without `toolResult` the first tool
(or the one `toolChoice.tool` names) is called with arguments generated from its
schema (city/location strings "Zürich", other strings "sample <name>", enums their
first value, integers 3, numbers 21.5, booleans true), stopReason `tool_use`;
after a toolResult the text is "The tool returned: <result text>".
`stopSequences` and `maxTokens` cut the text (stopReason stop_sequence /
max_tokens). Usage: words in system + messages (+16 per image), words of the
answer.

Control API: `POST /__mock/script` (a list of behaviours, each used by the next
provider request): {"status": 429, "body": {...}, "error_type": "..."} an error;
{"text": ".."}; {"tool_calls": [{"name", "arguments"}]}; {"reasoning": ".."}
(a reasoningContent block first); {"stop_reason": ".."}; {"usage": {...}};
{"corrupt_crc_at": N} (stream: the message CRC of the N-th message, 0-based, is
wrong); {"exception": "throttlingException", "exception_after": N} (stream: after
N messages an exception message, then the end); {"truncate_after": N} (stream:
end after N messages); {"raw": "<html>...", "status": 200, "content_type": ..} a body
that is no Bedrock answer; {"delay_ms": ..}. `GET /__mock/requests`: every request
({"method", "path", "headers", "header_list", "body", "signature": {"ok",
"reason", "canonical_request"}, "response": {...}}). `POST /__mock/reset`.

Fixture helper: `python3 tests/mocks/bedrock_mock.py --write-fixtures DIR` turns
each `DIR/<case>.json` with an `"events"` list into `DIR/<case>.eventstream`
(event: {"event": type, "payload": {...}}, {"exception": type, "payload": {...}},
{"raw_hex": ".."}; "corrupt_crc": true flips the message CRC; "split" is not
needed: the harness splits at every point).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import signal
import struct
import sys
import threading
import time
import urllib.parse
import uuid
import zlib
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)
ERROR_TYPES = {
    400: ("ValidationException", "Malformed input request, please reformat your input and try again."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    404: ("ResourceNotFoundException", "Could not resolve the foundation model from the provided model identifier."),
    408: ("ModelTimeoutException", "Model has timed out in processing the request."),
    424: ("ModelErrorException", "The model returned an error."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The server encountered an internal error."),
    503: ("ServiceUnavailableException", "Bedrock is unable to process your request."),
}
CONVERSE_TOP_LEVEL = {
    "messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig",
    "additionalModelRequestFields", "additionalModelResponseFieldPaths", "promptVariables",
    "requestMetadata", "performanceConfig",
}
INFERENCE_KEYS = {"maxTokens", "temperature", "topP", "stopSequences"}
BLOCK_KEYS = {"text", "image", "document", "video", "toolUse", "toolResult", "guardContent",
              "cachePoint", "reasoningContent", "citationsContent"}
IMAGE_FORMATS = {"png", "jpeg", "gif", "webp"}
HELLO = "Hello from the mock Bedrock provider! You said: "


# ---------------------------------------------------------------- SigV4


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def normalize_path(path: str) -> str:
    out: list[str] = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    norm = "/" + "/".join(out)
    if path.endswith("/") and out:
        norm += "/"
    return norm


def canonical_query(query: str) -> str:
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        pairs.append((urllib.parse.quote(urllib.parse.unquote(k), safe="-_.~"),
                      urllib.parse.quote(urllib.parse.unquote(v), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_request(method: str, raw_path: str, headers: dict[str, str], signed: list[str],
                      body: bytes) -> str:
    path, _, query = raw_path.partition("?")
    # Non-S3 services: the path as sent is encoded once more (botocore:
    # quote(normalize_url_path(path), safe='/~')).
    uri = urllib.parse.quote(normalize_path(path), safe="/~")
    canon_headers = "".join(f"{h}:{' '.join(headers.get(h, '').split())}\n" for h in signed)
    return "\n".join([method.upper(), uri, canonical_query(query), canon_headers, ";".join(signed),
                      hashlib.sha256(body).hexdigest()])


def signature(secret: str, amz_date: str, region: str, service: str, creq: str) -> str:
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    key = _hmac(("AWS4" + secret).encode(), amz_date[:8])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()


def sign_headers(access_key: str, secret: str, region: str, service: str, method: str, host: str,
                 path: str, headers: dict[str, str], body: bytes, when: dt.datetime,
                 session_token: str | None = None) -> dict[str, str]:
    """The headers botocore's SigV4Auth adds (x-amz-date, x-amz-security-token, authorization),
    for building expected values independently of the gateway's Rust implementation."""
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    all_headers = {k.lower(): v for k, v in headers.items()}
    all_headers["host"] = host
    all_headers["x-amz-date"] = amz_date
    if session_token:
        all_headers["x-amz-security-token"] = session_token
    signed = sorted(all_headers)
    creq = canonical_request(method, path, all_headers, signed, body)
    sig = signature(secret, amz_date, region, service, creq)
    out = {"x-amz-date": amz_date}
    if session_token:
        out["x-amz-security-token"] = session_token
    out["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{amz_date[:8]}/{region}/{service}/"
                            f"aws4_request, SignedHeaders={';'.join(signed)}, Signature={sig}")
    return out


AUTH_RE = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                     r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$")


def verify(method: str, raw_path: str, headers: dict[str, str], body: bytes,
           credentials: dict[str, str], region: str, session_token: str | None,
           max_skew_s: float = 300) -> dict:
    """{"ok", "status", "error_type", "reason", "canonical_request"} as Bedrock would judge it."""
    def deny(etype: str, reason: str, creq: str | None = None) -> dict:
        return {"ok": False, "status": 403, "error_type": etype, "reason": reason, "canonical_request": creq}

    auth = headers.get("authorization", "")
    if not auth:
        return deny("MissingAuthenticationTokenException", "Missing Authentication Token")
    m = AUTH_RE.match(auth)
    if not m:
        return deny("IncompleteSignatureException", f"Authorization header is malformed: {auth[:80]}")
    key, date, sig_region, service, signed_s, sig = m.groups()
    if key not in credentials:
        return deny("UnrecognizedClientException", "The security token included in the request is invalid.")
    if session_token is not None and headers.get("x-amz-security-token") != session_token:
        return deny("UnrecognizedClientException", "The security token included in the request is invalid.")
    signed = signed_s.split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        return deny("IncompleteSignatureException", "host and x-amz-date must be signed")
    if session_token is not None and "x-amz-security-token" not in signed:
        return deny("IncompleteSignatureException", "x-amz-security-token must be signed")
    amz_date = headers.get("x-amz-date", "")
    try:
        when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return deny("IncompleteSignatureException", f"bad x-amz-date {amz_date!r}")
    if abs(time.time() - when.timestamp()) > max_skew_s:
        return deny("InvalidSignatureException", f"Signature expired: {amz_date} is now earlier or later "
                    "than the allowed 5 minutes")
    if date != amz_date[:8] or sig_region != region or service != "bedrock":
        return deny("InvalidSignatureException", f"Credential should be scoped to a valid region and "
                    f"service ({sig_region}/{service} for {region}/bedrock)")
    creq = canonical_request(method, raw_path, headers, signed, body)
    want = signature(credentials[key], amz_date, sig_region, service, creq)
    if not hmac.compare_digest(want, sig):
        return deny("InvalidSignatureException", SIGNATURE_MISMATCH, creq)
    return {"ok": True, "status": 200, "error_type": None, "reason": None, "canonical_request": creq}


# ---------------------------------------------------------------- event-stream encoder


def es_header(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v


def es_message(headers: list[tuple[str, str]], payload: bytes, corrupt_crc: bool = False) -> bytes:
    h = b"".join(es_header(k, v) for k, v in headers)
    total = len(h) + len(payload) + 16
    prelude = struct.pack(">II", total, len(h))
    msg = prelude + struct.pack(">I", zlib.crc32(prelude)) + h + payload
    crc = zlib.crc32(msg)
    if corrupt_crc:
        crc ^= 0xDEADBEEF
    return msg + struct.pack(">I", crc)


def es_event(event_type: str, payload: dict, corrupt_crc: bool = False) -> bytes:
    return es_message([(":event-type", event_type), (":content-type", "application/json"),
                       (":message-type", "event")], json.dumps(payload).encode(), corrupt_crc)


def es_exception(exception_type: str, payload: dict) -> bytes:
    return es_message([(":exception-type", exception_type), (":content-type", "application/json"),
                       (":message-type", "exception")], json.dumps(payload).encode())


def write_fixtures(directory: Path) -> int:
    n = 0
    for side in sorted(directory.glob("*.json")):
        spec = json.loads(side.read_text())
        if "events" not in spec:
            continue
        out = bytearray()
        for ev in spec["events"]:
            if "raw_hex" in ev:
                out += bytes.fromhex(ev["raw_hex"])
            elif "exception" in ev:
                out += es_exception(ev["exception"], ev.get("payload", {}))
            else:
                out += es_event(ev["event"], ev.get("payload", {}), ev.get("corrupt_crc", False))
        cut = spec.get("truncate_bytes")
        if cut:
            out = out[:-cut]
        side.with_suffix(".eventstream").write_bytes(bytes(out))
        n += 1
    return n


# ---------------------------------------------------------------- answers


def words(text: str) -> int:
    return len(text.split())


def gen_value(name: str, schema: dict) -> Any:
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    t = schema.get("type")
    if t == "string":
        return "Zürich" if any(k in name.lower() for k in ("city", "location")) else f"sample {name}"
    if t == "integer":
        return 3
    if t == "number":
        return 21.5
    if t == "boolean":
        return True
    if t == "array":
        return [gen_value(name, schema.get("items") or {"type": "string"})]
    if t == "object":
        return gen_args(schema)
    return f"sample {name}"


def gen_args(schema: dict) -> dict:
    return {k: gen_value(k, v or {}) for k, v in (schema.get("properties") or {}).items()}


def block_text(blocks: list) -> str:
    return "".join(b.get("text", "") for b in blocks if isinstance(b, dict) and "text" in b)


def validate_converse(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "Malformed input request: expected a JSON object"
    extra = set(body) - CONVERSE_TOP_LEVEL
    if extra:
        return f"Malformed input request: extraneous key [{sorted(extra)[0]}] is not permitted"
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return "The messages field is required and must not be empty."
    tools = (body.get("toolConfig") or {}).get("tools") or []
    prev_tool_uses: set[str] = set()
    for i, m in enumerate(msgs):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: must be user or assistant"
        if i == 0 and role != "user":
            return "A conversation must start with a user message. Try again with a conversation that starts with a user message."
        if i > 0 and msgs[i - 1].get("role") == role:
            return "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again."
        content = m.get("content")
        if not isinstance(content, list) or not content:
            return f"messages.{i}.content: must be a non-empty list"
        uses = set()
        for j, b in enumerate(content):
            if not isinstance(b, dict) or len(b) != 1 or next(iter(b)) not in BLOCK_KEYS:
                return f"messages.{i}.content.{j}: a content block must have exactly one known member"
            (kind, val), = b.items()
            if kind == "text" and not str(val).strip() and role == "user":
                return f"The text field in the ContentBlock object at messages.{i}.content.{j} is blank."
            if kind == "image":
                if val.get("format") not in IMAGE_FORMATS:
                    return f"messages.{i}.content.{j}.image.format: unsupported"
                try:
                    base64.b64decode((val.get("source") or {}).get("bytes", ""), validate=True)
                except (ValueError, TypeError):
                    return f"messages.{i}.content.{j}.image.source.bytes: not base64"
            if kind in ("toolUse", "toolResult") and not tools:
                return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
            if kind == "toolUse":
                uses.add(val.get("toolUseId"))
            if kind == "toolResult" and val.get("toolUseId") not in prev_tool_uses:
                return (f"messages.{i}.content.{j}: toolResult {val.get('toolUseId')} does not answer a toolUse "
                        "of the previous turn")
        prev_tool_uses = uses
    inf = body.get("inferenceConfig") or {}
    if set(inf) - INFERENCE_KEYS:
        return f"inferenceConfig: unknown key {sorted(set(inf) - INFERENCE_KEYS)[0]}"
    return None


def answer(body: dict, script: dict) -> dict:
    msgs = body["messages"]
    last = msgs[-1]
    tool_cfg = body.get("toolConfig") or {}
    tools = [t["toolSpec"] for t in tool_cfg.get("tools") or [] if "toolSpec" in t]
    choice = tool_cfg.get("toolChoice") or {}
    last_has_result = any("toolResult" in b for b in last["content"])
    images = sum(1 for m in msgs for b in m["content"] if "image" in b)
    content: list[dict] = []
    stop = "end_turn"
    if script.get("reasoning"):
        content.append({"reasoningContent": {"reasoningText": {"text": script["reasoning"], "signature": "sig-mock"}}})
    calls = script.get("tool_calls")
    if calls is None and tools and last["role"] == "user" and not last_has_result:
        spec = tools[0]
        if "tool" in choice:
            spec = next((t for t in tools if t["name"] == choice["tool"]["name"]), spec)
        calls = [{"name": spec["name"], "arguments": gen_args(spec["inputSchema"]["json"])}]
    if calls:
        for n, c in enumerate(calls):
            content.append({"toolUse": {"toolUseId": f"tooluse_mock{len(msgs)}_{n}", "name": c["name"],
                                        "input": c.get("arguments", {})}})
        stop = "tool_use"
    else:
        if "text" in script:
            text = script["text"]
        elif last_has_result:
            res = next(b["toolResult"] for b in last["content"] if "toolResult" in b)
            text = "The tool returned: " + block_text(res.get("content") or [])
        else:
            text = HELLO + block_text(last["content"]) + (f" (with {images} image(s))" if images else "")
        inf = body.get("inferenceConfig") or {}
        for s in inf.get("stopSequences") or []:
            if s and s in text:
                text, stop = text[: text.index(s)], "stop_sequence"
        mt = inf.get("maxTokens")
        if mt is not None:
            toks = re.findall(r"\S+\s*", text)
            if len(toks) > mt:
                text, stop = "".join(toks[:mt]), "max_tokens"
        content.append({"text": text})
    stop = script.get("stop_reason", stop)
    in_tokens = sum(words(b.get("text", "")) for b in body.get("system") or []) + \
        sum(words(block_text(m["content"])) for m in msgs) + 16 * images
    out_tokens = sum(words(b["text"]) if "text" in b
                     else words(json.dumps(b["toolUse"]["input"])) if "toolUse" in b
                     else words(b["reasoningContent"]["reasoningText"]["text"])
                     for b in content)
    usage = {"inputTokens": in_tokens, "outputTokens": out_tokens, "totalTokens": in_tokens + out_tokens}
    usage.update(script.get("usage") or {})
    return {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
            "usage": usage, "metrics": {"latencyMs": 42}}


def stream_messages(resp: dict, script: dict) -> list[bytes]:
    msgs: list[bytes] = []
    pad = "abcdefghijklmnopqrstuvwxyz"

    def ev(kind: str, payload: dict) -> None:
        payload = {**payload, "p": pad[: 1 + len(msgs) % 20]}
        msgs.append(es_event(kind, payload, script.get("corrupt_crc_at") == len(msgs)))

    ev("messageStart", {"role": "assistant"})
    for i, b in enumerate(resp["output"]["message"]["content"]):
        if "text" in b:
            text = b["text"]
            pieces = re.findall(r"\S+\s*|\s+", text) or [""]
            for p in pieces:
                ev("contentBlockDelta", {"contentBlockIndex": i, "delta": {"text": p}})
        elif "toolUse" in b:
            tu = b["toolUse"]
            ev("contentBlockStart", {"contentBlockIndex": i,
                                     "start": {"toolUse": {"toolUseId": tu["toolUseId"], "name": tu["name"]}}})
            args = json.dumps(tu["input"], ensure_ascii=False)
            step = max(1, len(args) // 3)
            for k in range(0, len(args), step):
                ev("contentBlockDelta", {"contentBlockIndex": i, "delta": {"toolUse": {"input": args[k:k + step]}}})
        elif "reasoningContent" in b:
            rt = b["reasoningContent"]["reasoningText"]
            ev("contentBlockDelta", {"contentBlockIndex": i, "delta": {"reasoningContent": {"text": rt["text"]}}})
            ev("contentBlockDelta", {"contentBlockIndex": i,
                                     "delta": {"reasoningContent": {"signature": rt["signature"]}}})
        ev("contentBlockStop", {"contentBlockIndex": i})
    ev("messageStop", {"stopReason": resp["stopReason"]})
    ev("metadata", {"usage": resp["usage"], "metrics": {"latencyMs": 42}})
    if "exception" in script:
        at = script.get("exception_after", 1)
        msgs = msgs[:at] + [es_exception(script["exception"], {"message": script.get(
            "exception_message", "Too many tokens, please wait before trying again.")})]
    if "truncate_after" in script:
        msgs = msgs[: script["truncate_after"]]
    return msgs


# InvokeModel for Claude: Anthropic's Messages body as Bedrock takes it (no `model`, no `stream`).
CLAUDE_TOP_LEVEL = {"anthropic_version", "anthropic_beta", "messages", "system", "max_tokens", "metadata",
                    "stop_sequences", "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking",
                    "output_config"}


def _claude_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")


def claude_invoke(model: str, body: Any, script: dict) -> tuple[str | None, dict]:
    """Validate an InvokeModel Claude body as Bedrock does (its "Malformed input request" 400s),
    then answer it as Claude would: the first (or the chosen) tool called when tools are offered
    and the last turn is the user's text, else the greeting, cut at max_tokens words."""
    if not isinstance(body, dict):
        return "Malformed input request: expected a JSON object", {}
    extra = sorted(set(body) - CLAUDE_TOP_LEVEL)
    if extra:
        return f"Malformed input request: #: extraneous key [{extra[0]}] is not permitted", {}
    if body.get("anthropic_version") != "bedrock-2023-05-31":
        return "Malformed input request: #/anthropic_version: bedrock-2023-05-31 expected", {}
    mt = body.get("max_tokens")
    if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
        return "Malformed input request: #: required key [max_tokens] not found", {}
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs or msgs[0].get("role") != "user":
        return "Malformed input request: messages: first message must use the \"user\" role", {}
    last = msgs[-1]
    content = last.get("content")
    results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"] \
        if isinstance(content, list) else []
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or {"type": "auto"}
    out: list[dict] = []
    if script.get("text") is None and tools and choice.get("type") != "none" and not results:
        tool = next((t for t in tools if t["name"] == choice.get("name")), tools[0])
        out.append({"type": "tool_use", "id": f"toolu_mock{len(msgs)}", "name": tool["name"],
                    "input": gen_args(tool.get("input_schema") or {})})
        stop = "tool_use"
    else:
        if script.get("text") is not None:
            text = script["text"]
        elif results:
            text = "The tool returned: " + _claude_text(results[0].get("content") or "")
        else:
            text = HELLO + _claude_text(content)
        stop = "end_turn"
        toks = re.findall(r"\S+\s*", text)
        if len(toks) > mt:
            text, stop = "".join(toks[:mt]), "max_tokens"
        out.append({"type": "text", "text": text})
    system = body.get("system") or []
    in_tokens = sum(words(_claude_text(m.get("content") or "")) for m in msgs) + \
        (words(system) if isinstance(system, str) else sum(words(b.get("text", "")) for b in system))
    out_tokens = sum(words(b["text"]) if b["type"] == "text" else words(json.dumps(b["input"])) for b in out)
    bare = model.split("anthropic.", 1)[-1]
    return None, {"id": f"msg_bdrk_{uuid.uuid4().hex[:12]}", "type": "message", "role": "assistant",
                  "model": re.sub(r"-v\d+:\d+$", "", bare), "content": out, "stop_reason": stop,
                  "stop_sequence": None, "usage": {"input_tokens": in_tokens, "output_tokens": out_tokens}}


def claude_stream(resp: dict, script: dict) -> list[bytes]:
    """InvokeModelWithResponseStream: each Anthropic stream event as a `chunk` event whose payload
    is `{"bytes": <base64 of the event JSON>}`; message_stop carries Bedrock's invocation metrics."""
    u = resp["usage"]
    events: list[dict] = [{"type": "message_start", "message": {**resp, "content": [], "stop_reason": None,
                                                                  "usage": {**u, "output_tokens": 1}}}]
    for i, b in enumerate(resp["content"]):
        if b["type"] == "text":
            events.append({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}})
            for piece in re.findall(r"\S+\s*|\s+", b["text"]) or [""]:
                events.append({"type": "content_block_delta", "index": i,
                               "delta": {"type": "text_delta", "text": piece}})
        else:
            events.append({"type": "content_block_start", "index": i, "content_block": {
                "type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}})
            args = json.dumps(b["input"], ensure_ascii=False)
            for k in range(0, len(args), max(1, len(args) // 3)):
                events.append({"type": "content_block_delta", "index": i, "delta": {
                    "type": "input_json_delta", "partial_json": args[k:k + max(1, len(args) // 3)]}})
        events.append({"type": "content_block_stop", "index": i})
    events.append({"type": "message_delta", "delta": {"stop_reason": resp["stop_reason"], "stop_sequence": None},
                   "usage": {"output_tokens": u["output_tokens"]}})
    events.append({"type": "message_stop", "amazon-bedrock-invocationMetrics": {
        "inputTokenCount": u["input_tokens"], "outputTokenCount": u["output_tokens"],
        "invocationLatency": 42, "firstByteLatency": 10}})
    msgs = [es_event("chunk", {"bytes": base64.b64encode(json.dumps(e, ensure_ascii=False).encode()).decode()})
            for e in events]
    if "exception" in script:
        at = script.get("exception_after", 1)
        msgs = msgs[:at] + [es_exception(script["exception"], {"message": script.get(
            "exception_message", "Too many tokens, please wait before trying again.")})]
    return msgs


def embed(model: str, body: Any) -> tuple[int, dict, int]:
    """(status, body, input tokens) for an InvokeModel embeddings call."""
    if not isinstance(body, dict):
        return 400, {"message": "Malformed input request"}, 0
    if "titan-embed" in model:
        if set(body) - {"inputText", "dimensions", "normalize", "embeddingTypes"} or \
                not isinstance(body.get("inputText"), str):
            return 400, {"message": "Malformed input request: #: required key [inputText] not found or "
                         "extraneous key"}, 0
        dims = body.get("dimensions", 1024 if "v2" in model else 1536)
        if "v2" not in model and "dimensions" in body:
            return 400, {"message": "Malformed input request: extraneous key [dimensions] is not permitted"}, 0
        n = words(body["inputText"])
        vec = [round(((i * 7 + n) % 13) / 13 - 0.5, 6) for i in range(min(dims, 8))]
        return 200, {"embedding": vec, "inputTextTokenCount": n}, n
    if "cohere.embed" in model:
        texts = body.get("texts")
        if not isinstance(texts, list) or not texts or "input_type" not in body:
            return 400, {"message": "Malformed input request: texts and input_type are required"}, 0
        vecs = [[round(((i * 5 + words(t)) % 11) / 11 - 0.5, 6) for i in range(4)] for t in texts]
        return 200, {"embeddings": vecs, "id": str(uuid.uuid4()), "response_type": "embeddings_floats",
                     "texts": texts}, sum(words(t) for t in texts)
    return 400, {"message": f"The provided model identifier is invalid: {model}"}, 0


# ---------------------------------------------------------------- server


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.script: deque[dict] = deque()
        self.requests: list[dict] = []
        self.reset_event = threading.Event()

    def reset(self) -> None:
        with self.lock:
            self.script.clear()
            self.requests.clear()
            self.reset_event.set()
            self.reset_event = threading.Event()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "BedrockServer"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _read(self) -> bytes:
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-amzn-requestid", str(uuid.uuid4()))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, etype: str, message: str) -> None:
        self._json(status, {"message": message},
                   {"x-amzn-errortype": f"{etype}:http://internal.amazon.com/coral/com.amazon.bedrock/"})

    def do_GET(self) -> None:
        st = self.server.state
        if self.path == "/__mock/requests":
            with st.lock:
                self._json(200, list(st.requests))
        elif self.path == "/__mock/script":
            with st.lock:
                self._json(200, list(st.script))
        elif self.path == "/__mock/health":
            self._json(200, {"ok": True, "flavour": "bedrock"})
        else:
            self._error(404, "UnknownOperationException", "Unknown operation")

    def do_DELETE(self) -> None:
        if self.path == "/__mock/script":
            with self.server.state.lock:
                self.server.state.script.clear()
            self._json(200, {"ok": True})
        else:
            self._error(404, "UnknownOperationException", "Unknown operation")

    def do_POST(self) -> None:
        st = self.server.state
        raw = self._read()
        if self.path == "/__mock/script":
            items = json.loads(raw or b"[]")
            with st.lock:
                st.script.extend(items if isinstance(items, list) else [items])
            self._json(200, {"ok": True})
            return
        if self.path == "/__mock/reset":
            st.reset()
            self._json(200, {"ok": True})
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        sig = verify("POST", self.path, headers, raw, self.server.credentials, self.server.region,
                     self.server.session_token)
        with st.lock:
            script = st.script.popleft() if st.script else {}
            rec = {"seq": len(st.requests), "method": "POST", "path": self.path, "headers": headers,
                   "header_list": [[k, v] for k, v in self.headers.items()], "body": body,
                   "raw_body": None if body is not None else raw.decode("utf-8", "replace"),
                   "signature": {k: sig[k] for k in ("ok", "reason", "canonical_request")},
                   "script": script or None, "response": {}}
            st.requests.append(rec)
            reset_event = st.reset_event
        if script.get("delay_ms"):
            reset_event.wait(script["delay_ms"] / 1000)
        if not sig["ok"]:
            rec["response"] = {"status": 403, "error_type": sig["error_type"]}
            self._error(403, sig["error_type"], sig["reason"])
            return
        if "raw" in script:
            # Not Bedrock's answer at all (a proxy's HTML page, an empty 200): the fault rows.
            data = script["raw"].encode()
            rec["response"] = {"status": script.get("status", 200), "raw": True}
            self.send_response(script.get("status", 200))
            self.send_header("content-type", script.get("content_type", "text/html"))
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if "status" in script:
            status = script["status"]
            etype, msg = ERROR_TYPES.get(status, ("InternalServerException", "error"))
            etype = script.get("error_type", etype)
            rec["response"] = {"status": status}
            if "body" in script:
                b = script["body"]
                self._json(status, b, {"x-amzn-errortype": f"{etype}:http://internal.amazon.com/coral/"})
            else:
                self._error(status, etype, msg)
            return
        m = re.fullmatch(r"/model/([^/]+)/(converse|converse-stream|invoke|invoke-with-response-stream)",
                         self.path)
        if not m:
            self._error(404, "UnknownOperationException", f"Unknown operation {self.path}")
            return
        model, op = urllib.parse.unquote(m.group(1)), m.group(2)
        rec["model"] = model
        if op.startswith("invoke") and "anthropic." in model:
            problem, resp = claude_invoke(model, body, script)
            rec["response"] = {"status": 400 if problem else 200, "stream": op != "invoke", "body": resp}
            if problem:
                self._error(400, "ValidationException", problem)
            elif op == "invoke":
                self._json(200, resp)
            else:
                self._send_stream(claude_stream(resp, script))
            return
        if op == "invoke":
            status, out, tokens = embed(model, body)
            rec["response"] = {"status": status, "body": out}
            if status != 200:
                self._error(status, "ValidationException", out["message"])
            else:
                self._json(200, out, {"X-Amzn-Bedrock-Input-Token-Count": str(tokens)})
            return
        problem = validate_converse(body)
        if problem:
            rec["response"] = {"status": 400, "reason": problem}
            self._error(400, "ValidationException", problem)
            return
        resp = answer(body, script)
        rec["response"] = {"status": 200, "stream": op == "converse-stream", "body": resp}
        if op == "converse":
            self._json(200, resp)
            return
        self._send_stream(stream_messages(resp, script))

    def _send_stream(self, messages: list[bytes]) -> None:
        """An event-stream answer, chunked, one message a write (the second split in two)."""
        self.send_response(200)
        self.send_header("content-type", "application/vnd.amazon.eventstream")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("x-amzn-requestid", str(uuid.uuid4()))
        self.end_headers()
        writes: list[bytes] = []
        for i, msg in enumerate(messages):
            if i == 1:  # one message split across two writes
                writes += [msg[:7], msg[7:]]
            else:
                writes.append(msg)
        try:
            for w in writes:
                self.wfile.write(f"{len(w):x}\r\n".encode() + w + b"\r\n")
                self.wfile.flush()
                time.sleep(self.server.chunk_delay_ms / 1000)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass


class BedrockServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, credentials: dict[str, str], region: str,
                 session_token: str | None, chunk_delay_ms: float):
        super().__init__((host, port), Handler)
        self.state = State()
        self.credentials = credentials
        self.region = region
        self.session_token = session_token
        self.chunk_delay_ms = chunk_delay_ms


class BedrockMock:
    """The mock on its own thread; `credentials` maps access key ids to secrets; with
    `session_token` set, requests must carry (and sign) exactly that token."""

    def __init__(self, credentials: dict[str, str], region: str = "us-east-1",
                 session_token: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 chunk_delay_ms: float = 5.0):
        self.server = BedrockServer(host, port, credentials, region, session_token, chunk_delay_ms)
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> "BedrockMock":
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="mock-bedrock", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.state.reset()
        self.server.shutdown()
        self.server.server_close()
        if self.thread:
            self.thread.join(timeout=5)

    def reset(self) -> None:
        self.server.state.reset()

    def script(self, *behaviours: dict) -> None:
        with self.server.state.lock:
            self.server.state.script.extend(behaviours)

    def requests(self) -> list[dict]:
        with self.server.state.lock:
            return list(self.server.state.requests)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Mock AWS Bedrock runtime for llm-gateway")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9103)
    ap.add_argument("--access-key", default="AKIDMOCK")
    ap.add_argument("--secret", default="mock-secret")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--session-token", default=None)
    ap.add_argument("--write-fixtures", metavar="DIR", help="write <case>.eventstream from <case>.json events")
    args = ap.parse_args(argv)
    if args.write_fixtures:
        print(f"wrote {write_fixtures(Path(args.write_fixtures))} event streams")
        return 0
    mock = BedrockMock({args.access_key: args.secret}, args.region, args.session_token, args.host,
                       args.port).start()
    print(f"mock bedrock: http://{args.host}:{mock.port} (region {args.region})", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    mock.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
