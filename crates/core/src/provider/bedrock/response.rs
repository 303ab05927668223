//! A Converse answer as an OpenAI `chat.completion`, with token counts;
//! Bedrock exceptions as OpenAI errors.

#[allow(unused_imports)]
use super::*;

/// OpenAI `finish_reason` for a Converse `stopReason`.
///
/// `end_turn`, `stop_sequence` -> `stop`; `max_tokens` and
/// `model_context_window_exceeded` -> `length`; `tool_use` -> `tool_calls`;
/// `guardrail_intervened`, `content_filtered` -> `content_filter` (LiteLLM's
/// `map_finish_reason`); missing or unknown -> `stop`.
pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("guardrail_intervened" | "content_filtered") => "content_filter",
        _ => "stop",
    }
}

/// Bedrock `TokenUsage`, as reported so far.
pub(super) type TokenCounts = CachedPromptCounts;

/// The counts of one Bedrock `usage` object.
pub(super) fn counts_from_value(u: &Value) -> TokenCounts {
    let get = |k: &str| u.get(k).and_then(Value::as_u64);
    TokenCounts {
        input: get("inputTokens").unwrap_or(0),
        output: get("outputTokens").unwrap_or(0),
        cache_read: get("cacheReadInputTokens"),
        cache_write: get("cacheWriteInputTokens"),
    }
}

pub(super) fn invalid_response(detail: impl std::fmt::Display) -> GatewayError {
    crate::provider::invalid_response(PROVIDER, detail)
}

/// A Converse answer as an OpenAI `chat.completion`.
pub(super) fn translate_response(
    body: &[u8],
    meta: &ResponseMeta,
) -> Result<Translated, GatewayError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| invalid_response(format!("not JSON ({e}): {}", snippet(body))))?;
    let content = v
        .get("output")
        .and_then(|o| o.get("message"))
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .ok_or_else(|| invalid_response("no `output.message.content` array"))?;

    let mut text = String::new();
    let mut json_text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    for (i, block) in content.iter().enumerate() {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(tu) = block.get("toolUse") {
            let field = |k: &str| {
                tu.get(k)
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid_response(format!("content[{i}].toolUse has no `{k}`")))
            };
            let (id, name) = (field("toolUseId")?, field("name")?);
            let arguments = tu
                .get("input")
                .cloned()
                .unwrap_or_else(|| json!({}))
                .to_string();
            if name == JSON_TOOL_NAME {
                json_text = Some(arguments);
            } else {
                tool_calls.push(json!({
                    "id": id,
                    "type": "function",
                    "function": { "name": name, "arguments": arguments },
                }));
            }
        } else if let Some(rc) = block.get("reasoningContent") {
            if let Some(rt) = rc.get("reasoningText") {
                let t = rt.get("text").and_then(Value::as_str).unwrap_or("");
                reasoning.get_or_insert_with(String::new).push_str(t);
                let mut tb = Map::new();
                tb.insert("type".into(), json!("thinking"));
                tb.insert("thinking".into(), json!(t));
                if let Some(sig) = rt.get("signature").filter(|s| s.is_string()) {
                    tb.insert("signature".into(), sig.clone());
                }
                thinking_blocks.push(Value::Object(tb));
            } else if let Some(data) = rc.get("redactedContent") {
                thinking_blocks.push(json!({ "type": "redacted_thinking", "data": data }));
            }
        }
        // citationsContent, guardContent, images ... carry nothing a chat
        // completion has a field for.
    }
    let mut finish = finish_reason(v.get("stopReason").and_then(Value::as_str));
    if let Some(json_text) = json_text {
        text = json_text;
        if tool_calls.is_empty() && finish == "tool_calls" {
            finish = "stop";
        }
    }

    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    message.insert(
        "content".into(),
        if text.is_empty() {
            Value::Null
        } else {
            Value::String(text)
        },
    );
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    if let Some(r) = reasoning {
        message.insert("reasoning_content".into(), Value::String(r));
    }
    if !thinking_blocks.is_empty() {
        message.insert("thinking_blocks".into(), Value::Array(thinking_blocks));
    }
    let mut out = json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [{
            "index": 0,
            "message": Value::Object(message),
            "finish_reason": finish,
        }],
    });
    let usage = match v.get("usage").filter(|u| u.is_object()) {
        Some(u) => {
            let counts = counts_from_value(u);
            out["usage"] = json!(counts.openai());
            Some(counts.usage())
        }
        None => None,
    };
    let body = serde_json::to_vec(&out)
        .map_err(|e| GatewayError::new(500, ErrorKind::Internal, e.to_string()))?;
    Ok(Translated { body, usage })
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// The HTTP status Bedrock documents for an exception name (from a stream's
/// `:exception-type`, or an error body's `__type`).
pub(super) fn status_for_exception(name: &str) -> u16 {
    let lower = name.to_ascii_lowercase();
    match lower.trim_end_matches("exception") {
        "validation" => 400,
        "accessdenied" | "unrecognizedclient" => 403,
        "resourcenotfound" => 404,
        "modeltimeout" => 408,
        "modelerror" | "modelstreamerror" => 424,
        "throttling" | "modelnotready" | "servicequotaexceeded" => 429,
        "serviceunavailable" => 503,
        _ => 500,
    }
}

/// The gateway status and kind for an exception inside a stream: the shared
/// table, except 424 (`modelStreamErrorException`: the model failed) which is
/// an upstream failure. (HTTP error answers keep the shared table, which the
/// pipeline applies to the status line: 424 stays 424.)
pub(super) fn stream_exception_kind(status: u16) -> (u16, ErrorKind) {
    match status {
        424 => (502, ErrorKind::Upstream),
        s => upstream_status_kind(s),
    }
}

/// A Bedrock error body (`{"message": ...}`; REST-JSON errors also say
/// `Message`, and some carry `__type`) as a gateway error. The exception name
/// travels in the `x-amzn-errortype` header, which a translator does not see,
/// so `code` is set only when the body names it.
pub(super) fn error_from_body(status: u16, body: &[u8]) -> GatewayError {
    let (mapped, kind) = upstream_status_kind(status);
    let mut e = GatewayError::new(mapped, kind, format!("{PROVIDER} returned HTTP {status}"));
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        if !body.is_empty() {
            e.message = format!("{PROVIDER} returned HTTP {status}: {}", snippet(body));
        }
        return e;
    };
    let obj = v.get("error").filter(|o| o.is_object()).unwrap_or(&v);
    if let Some(m) = ["message", "Message"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str))
    {
        e.message = m.to_string();
    }
    if let Some(t) = ["__type", "code", "type"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str))
    {
        e.code = Some(exception_name(t).to_string());
    }
    e
}

/// `com.amazon.coral#ThrottlingException` or
/// `ThrottlingException:http://...` -> `ThrottlingException`.
pub(super) fn exception_name(t: &str) -> &str {
    let t = t.rsplit('#').next().unwrap_or(t);
    t.split(':').next().unwrap_or(t)
}
