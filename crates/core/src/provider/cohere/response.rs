//! A v2 Chat answer as an OpenAI `chat.completion`; Cohere errors as OpenAI errors.

#[allow(unused_imports)]
use super::*;

pub(super) fn invalid_response(detail: impl std::fmt::Display) -> GatewayError {
    crate::provider::invalid_response(PROVIDER, detail)
}

/// OpenAI's finish reason for an answer stopped by the provider's safety system.
pub(super) const CONTENT_FILTER: &str = "content_filter";

/// Cohere's `finish_reason` as OpenAI's, or the error a failed generation is.
pub(super) fn finish_reason(
    reason: Option<&str>,
    error: Option<&str>,
) -> Result<&'static str, GatewayError> {
    let failed = |status: u16, kind: ErrorKind, what: &str| {
        let detail = error.filter(|e| !e.is_empty()).unwrap_or("no detail given");
        Err(GatewayError::new(
            status,
            kind,
            format!("{PROVIDER} ended the generation with {what}: {detail}"),
        )
        .with_code("upstream_generation_error"))
    };
    match reason {
        Some("COMPLETE") | Some("STOP_SEQUENCE") | Some("USER_CANCEL") | None => Ok("stop"),
        Some("MAX_TOKENS") | Some("ERROR_LIMIT") => Ok("length"),
        Some("TOOL_CALL") => Ok("tool_calls"),
        // A safety stop is an answer, not a failure: v1's `ERROR_TOXIC`
        // (still possible on v2), `SAFETY` as LiteLLM's shared map has it.
        Some("ERROR_TOXIC") | Some("SAFETY") => Ok(CONTENT_FILTER),
        Some("TIMEOUT") => failed(504, ErrorKind::Timeout, "TIMEOUT"),
        Some("ERROR") => failed(502, ErrorKind::Upstream, "ERROR"),
        Some(_) => Ok("stop"),
    }
}

/// Usage from a v2 `usage` object: `tokens`, else `billed_units`.
pub(super) fn usage_of(u: &Value) -> Option<Usage> {
    let counts = u
        .get("tokens")
        .filter(|t| t.is_object())
        .or_else(|| u.get("billed_units").filter(|t| t.is_object()))?;
    let get = |k: &str| counts.get(k).map(count).unwrap_or(0);
    Some(Usage::new(get("input_tokens"), get("output_tokens")))
}

/// A tool call's arguments as a JSON string (Cohere sends strings; an object
/// is serialised).
pub(super) fn arguments_string(args: Option<&Value>) -> String {
    match args {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(v) => v.to_string(),
    }
}

pub(super) fn translate_response(
    body: &[u8],
    meta: &ResponseMeta,
) -> Result<Translated, GatewayError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| invalid_response(format!("not JSON ({e}): {}", snippet(body))))?;
    let finish = finish_reason(
        v.get("finish_reason").and_then(Value::as_str),
        v.get("error").and_then(Value::as_str),
    )?;
    // A safety stop may come without a message: the answer is then empty.
    let message = match v.get("message").filter(|m| m.is_object()) {
        Some(m) => m,
        None if finish == CONTENT_FILTER => &Value::Null,
        None => return Err(invalid_response("no `message` object")),
    };
    let mut text = String::new();
    let mut reasoning: Option<String> = None;
    for item in message
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match item.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(item.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("thinking") => reasoning
                .get_or_insert_with(String::new)
                .push_str(item.get("thinking").and_then(Value::as_str).unwrap_or("")),
            _ => {}
        }
    }
    let mut tool_calls = Vec::new();
    for (i, c) in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let f = c.get("function");
        let name = f
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| invalid_response(format!("tool_calls[{i}] has no function name")))?;
        let id = c
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("call_{}_{i}", meta.id));
        let mut arguments = arguments_string(f.and_then(|f| f.get("arguments")));
        if arguments.is_empty() {
            arguments = "{}".into();
        }
        tool_calls.push(json!({
            "id": id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }));
    }
    let tool_plan = message
        .get("tool_plan")
        .and_then(Value::as_str)
        .unwrap_or("");
    let content = if !text.is_empty() {
        Value::String(text)
    } else if !tool_plan.is_empty() {
        Value::String(tool_plan.to_string())
    } else {
        Value::Null
    };
    let mut msg = Map::new();
    msg.insert("role".into(), Value::from("assistant"));
    msg.insert("content".into(), content);
    if !tool_calls.is_empty() {
        msg.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    if let Some(r) = reasoning {
        msg.insert("reasoning_content".into(), Value::String(r));
    }
    let usage = v.get("usage").and_then(usage_of);
    let mut out = json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [{"index": 0, "message": Value::Object(msg), "finish_reason": finish}],
    });
    if let Some(u) = usage {
        out["usage"] = json!(u);
    }
    Ok(Translated {
        body: to_vec(&out)?,
        usage,
    })
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

pub(super) fn error_from_body(status: u16, body: &[u8]) -> GatewayError {
    let mut e = openai_style_error(status, body);
    if status == 498 {
        e.status = 401;
        e.kind = ErrorKind::Authentication;
    }
    if e.message.starts_with("upstream returned") {
        e.message = e.message.replacen("upstream", PROVIDER, 1);
    }
    e
}
