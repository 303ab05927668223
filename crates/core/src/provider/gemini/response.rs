//! A `generateContent` answer as an OpenAI `chat.completion`; thought
//! signatures carried in tool call ids; Gemini errors as OpenAI errors.

#[allow(unused_imports)]
use super::*;

/// `base` with the signature appended (URL-safe, no padding), or `base`.
pub(super) fn id_with_signature(base: String, signature: Option<&str>) -> String {
    match signature.filter(|s| !s.is_empty()) {
        Some(sig) => {
            let safe: String = sig
                .chars()
                .filter(|c| *c != '=')
                .map(|c| match c {
                    '+' => '-',
                    '/' => '_',
                    c => c,
                })
                .collect();
            format!("{base}{THOUGHT_SIGNATURE_SEPARATOR}{safe}")
        }
        None => base,
    }
}

/// The thought signature a tool call id carries, as standard padded base64.
pub(super) fn signature_from_id(id: &str) -> Option<String> {
    let (_, sig) = id.split_once(THOUGHT_SIGNATURE_SEPARATOR)?;
    if sig.is_empty() {
        return None;
    }
    let mut s: String = sig
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    Some(s)
}

// ---------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------

/// OpenAI `finish_reason` for a Gemini `finishReason` (LiteLLM's
/// `_FINISH_REASON_MAP`): `STOP` -> `stop`; `MAX_TOKENS` -> `length`;
/// `SAFETY`, `RECITATION`, `BLOCKLIST`, `PROHIBITED_CONTENT`, `SPII`,
/// `LANGUAGE`, `OTHER` and the image and escalation reasons ->
/// `content_filter`; `MALFORMED_FUNCTION_CALL`, `TOO_MANY_TOOL_CALLS`,
/// `UNEXPECTED_TOOL_CALL`, `MISSING_THOUGHT_SIGNATURE`, `MALFORMED_RESPONSE`,
/// a missing reason and unknown ones -> `stop`. A candidate that called a
/// function says `tool_calls` instead (decided by the caller).
pub fn finish_reason(reason: Option<&str>) -> &'static str {
    match reason {
        Some("MAX_TOKENS") => "length",
        Some(
            "SAFETY"
            | "RECITATION"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "LANGUAGE"
            | "OTHER"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_RECITATION"
            | "IMAGE_OTHER"
            | "NO_IMAGE"
            | "ESCALATION",
        ) => "content_filter",
        _ => "stop",
    }
}

/// Gemini token counts, as reported so far (each `usageMetadata` is
/// cumulative, so later ones replace earlier ones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct TokenCounts {
    pub(super) prompt: u64,
    pub(super) candidates: u64,
    pub(super) thoughts: u64,
    pub(super) total: Option<u64>,
    pub(super) cached: Option<u64>,
}

impl TokenCounts {
    pub(super) fn merge(&mut self, um: &Value) {
        let get = |k: &str| um.get(k).and_then(Value::as_u64);
        if let Some(n) = get("promptTokenCount") {
            self.prompt = n;
        }
        if let Some(n) = get("candidatesTokenCount") {
            self.candidates = n;
        }
        if let Some(n) = get("thoughtsTokenCount") {
            self.thoughts = n;
        }
        if let Some(n) = get("totalTokenCount") {
            self.total = Some(n);
        }
        if let Some(n) = get("cachedContentTokenCount") {
            self.cached = Some(n);
        }
    }

    pub(super) fn completion(&self) -> u64 {
        let inclusive = self.total == Some(self.prompt.saturating_add(self.candidates));
        if inclusive {
            self.candidates
        } else {
            self.candidates.saturating_add(self.thoughts)
        }
    }

    pub(super) fn usage(&self) -> Usage {
        let completion = self.completion();
        Usage {
            prompt_tokens: self.prompt,
            completion_tokens: completion,
            total_tokens: self
                .total
                .unwrap_or_else(|| self.prompt.saturating_add(completion)),
        }
    }

    pub(super) fn openai(&self) -> UsageOut {
        let u = self.usage();
        UsageOut {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
            prompt_tokens_details: self
                .cached
                .map(|cached_tokens| PromptTokensDetails { cached_tokens }),
            completion_tokens_details: (self.thoughts > 0).then_some(CompletionTokensDetails {
                reasoning_tokens: self.thoughts,
            }),
        }
    }
}

pub(super) fn invalid_response(api: Api, detail: impl std::fmt::Display) -> GatewayError {
    crate::provider::invalid_response(api.name(), detail)
}

/// Tool call ids for one response: `call_<response id>_<n>`.
pub(super) fn call_id(meta: &ResponseMeta, n: u32, signature: Option<&str>) -> String {
    let base = meta.id.strip_prefix("chatcmpl-").unwrap_or(&meta.id);
    id_with_signature(format!("call_{base}_{n}"), signature)
}

/// What the parts of one candidate say.
#[derive(Default)]
pub(super) struct CandidateParts {
    pub(super) text: Option<String>,
    pub(super) reasoning: Option<String>,
    /// (name, arguments JSON, thought signature)
    pub(super) calls: Vec<(String, String, Option<String>)>,
}

pub(super) fn read_parts(api: Api, parts: &[Value]) -> Result<CandidateParts, GatewayError> {
    let mut out = CandidateParts::default();
    for (i, part) in parts.iter().enumerate() {
        if let Some(fc) = part.get("functionCall") {
            let name = fc.get("name").and_then(Value::as_str).ok_or_else(|| {
                invalid_response(api, format!("parts[{i}].functionCall has no name"))
            })?;
            let args = match fc.get("args") {
                None | Some(Value::Null) => "{}".to_string(),
                Some(a) => a.to_string(),
            };
            let sig = part
                .get("thoughtSignature")
                .and_then(Value::as_str)
                .map(str::to_string);
            out.calls.push((name.to_string(), args, sig));
        } else if let Some(t) = part.get("text").and_then(Value::as_str) {
            let slot = if part.get("thought").and_then(Value::as_bool) == Some(true) {
                &mut out.reasoning
            } else {
                &mut out.text
            };
            slot.get_or_insert_with(String::new).push_str(t);
        }
        // inlineData, executableCode, codeExecutionResult ... are not returned.
    }
    Ok(out)
}

/// A `generateContent` answer as an OpenAI `chat.completion`.
pub(super) fn translate_response(
    api: Api,
    body: &[u8],
    meta: &ResponseMeta,
) -> Result<Translated, GatewayError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| invalid_response(api, format!("not JSON ({e}): {}", snippet(body))))?;
    // Vertex answers some requests with a one-element array.
    let v = match v {
        Value::Array(mut a) if a.len() == 1 => a.remove(0),
        v => v,
    };
    if v.get("error").is_some_and(Value::is_object) {
        return Err(error_from_value(api, 502, &v));
    }
    if !v.is_object() {
        return Err(invalid_response(api, "not a JSON object"));
    }
    let candidates = v.get("candidates").and_then(Value::as_array);
    let mut choices = Vec::new();
    let mut next_call = 0u32;
    for (pos, cand) in candidates.into_iter().flatten().enumerate() {
        let index = cand
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(pos as u64);
        let parts = cand
            .get("content")
            .and_then(|c| c.get("parts"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let read = read_parts(api, parts)?;
        let mut message = Map::new();
        message.insert("role".into(), json!("assistant"));
        message.insert(
            "content".into(),
            read.text.map(Value::String).unwrap_or(Value::Null),
        );
        let tool_calls: Vec<Value> = read
            .calls
            .iter()
            .map(|(name, args, sig)| {
                let id = call_id(meta, next_call, sig.as_deref());
                next_call = next_call.saturating_add(1);
                json!({
                    "id": id,
                    "type": "function",
                    "function": { "name": name, "arguments": args },
                })
            })
            .collect();
        let finish = if tool_calls.is_empty() {
            finish_reason(cand.get("finishReason").and_then(Value::as_str))
        } else {
            "tool_calls"
        };
        if !tool_calls.is_empty() {
            message.insert("tool_calls".into(), Value::Array(tool_calls));
        }
        if let Some(r) = read.reasoning {
            message.insert("reasoning_content".into(), Value::String(r));
        }
        choices.push(json!({
            "index": index,
            "message": Value::Object(message),
            "finish_reason": finish,
        }));
    }
    if choices.is_empty() {
        // No candidates: the prompt was blocked (promptFeedback.blockReason).
        if v.get("promptFeedback")
            .and_then(|p| p.get("blockReason"))
            .is_none()
        {
            return Err(invalid_response(api, "no candidates and no promptFeedback"));
        }
        choices.push(json!({
            "index": 0,
            "message": { "role": "assistant", "content": null },
            "finish_reason": "content_filter",
        }));
    }
    let model = v
        .get("modelVersion")
        .and_then(Value::as_str)
        .unwrap_or(&meta.model);
    let mut out = json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": model,
        "choices": choices,
    });
    let usage = match v.get("usageMetadata").filter(|u| u.is_object()) {
        Some(um) => {
            let mut counts = TokenCounts::default();
            counts.merge(um);
            out["usage"] = json!(counts.openai());
            Some(counts.usage())
        }
        None => None,
    };
    Ok(Translated {
        body: to_body(&out)?,
        usage,
    })
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A Google error body (`{"error": {"code", "message", "status", "details"}}`,
/// or Vertex's one-element array of it) as a gateway error: status and kind
/// from [`upstream_status_kind`], message from the body, `code` = Google's
/// `status` (`INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED` ...), or `API_KEY_INVALID`
/// when Google says the key is not valid (it answers 400 for that, and the
/// status stays 400: the key is the gateway's, not the client's). Other JSON
/// shapes go through the OpenAI-family reader; non-JSON bodies are quoted.
pub(super) fn error_from_body(api: Api, status: u16, body: &[u8]) -> GatewayError {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        let (mapped, kind) = upstream_status_kind(status);
        let mut e = GatewayError::new(
            mapped,
            kind,
            format!("{} returned HTTP {status}", api.name()),
        );
        if !body.is_empty() {
            e.message = format!("{} returned HTTP {status}: {}", api.name(), snippet(body));
        }
        return e;
    };
    let v = match v {
        Value::Array(mut a) if a.len() == 1 => a.remove(0),
        v => v,
    };
    if v.get("error").is_some_and(Value::is_object) {
        error_from_value(api, status, &v)
    } else {
        crate::provider::openai_compat::openai_style_error(status, body)
    }
}

/// The gateway error for a parsed `{"error": {...}}` value.
pub(super) fn error_from_value(api: Api, status: u16, v: &Value) -> GatewayError {
    let err = v.get("error");
    let field = |k: &str| err.and_then(|e| e.get(k)).and_then(Value::as_str);
    let message = field("message")
        .map(str::to_string)
        .unwrap_or_else(|| format!("{} returned HTTP {status}", api.name()));
    let key_invalid = err
        .and_then(|e| e.get("details"))
        .and_then(Value::as_array)
        .is_some_and(|d| {
            d.iter()
                .any(|x| x.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
        });
    let (mapped, kind) = upstream_status_kind(status);
    let mut e = GatewayError::new(mapped, kind, message);
    e.code = if key_invalid {
        Some("API_KEY_INVALID".to_string())
    } else {
        field("status").map(str::to_string)
    };
    e
}

/// The HTTP status an error inside a stream stands for: its `code`, else
/// Google's `status` name, else 500.
pub(super) fn stream_error_status(v: &Value) -> u16 {
    let err = v.get("error");
    if let Some(c) = err
        .and_then(|e| e.get("code"))
        .and_then(Value::as_u64)
        .filter(|c| (400..600).contains(c))
    {
        return c as u16;
    }
    match err.and_then(|e| e.get("status")).and_then(Value::as_str) {
        Some("INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE") => 400,
        Some("UNAUTHENTICATED") => 401,
        Some("PERMISSION_DENIED") => 403,
        Some("NOT_FOUND") => 404,
        Some("RESOURCE_EXHAUSTED") => 429,
        Some("UNAVAILABLE") => 503,
        Some("DEADLINE_EXCEEDED") => 504,
        _ => 500,
    }
}
