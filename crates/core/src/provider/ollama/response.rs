//! An `/api/chat` answer as an OpenAI `chat.completion`.

#[allow(unused_imports)]
use super::*;

pub(super) fn invalid_response(detail: impl std::fmt::Display) -> GatewayError {
    crate::provider::invalid_response(PROVIDER, detail)
}

/// A tool call id for Ollama calls without one: `call_<id>_<index>`.
pub(super) fn call_id(meta: &ResponseMeta, index: usize) -> String {
    let base = meta.id.strip_prefix("chatcmpl-").unwrap_or(&meta.id);
    format!("call_{base}_{index}")
}

/// One Ollama tool call as (id, name, arguments string).
pub(super) fn tool_call(
    c: &Value,
    meta: &ResponseMeta,
    index: usize,
) -> Option<(String, String, String)> {
    let f = c.get("function")?;
    let name = f.get("name")?.as_str()?.to_string();
    let arguments = match f.get("arguments") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => "{}".to_string(),
        Some(v) => v.to_string(),
    };
    let id = c
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| call_id(meta, index));
    Some((id, name, arguments))
}

pub(super) fn usage_of(v: &Value) -> Usage {
    let get = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    Usage::new(get("prompt_eval_count"), get("eval_count"))
}

pub(super) fn finish_reason(done_reason: Option<&str>, called_tools: bool) -> &'static str {
    if called_tools {
        "tool_calls"
    } else if done_reason == Some("length") {
        "length"
    } else {
        "stop"
    }
}

pub(super) fn translate_response(
    body: &[u8],
    meta: &ResponseMeta,
) -> Result<Translated, GatewayError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| invalid_response(format!("not JSON ({e}): {}", snippet(body))))?;
    if let Some(err) = v.get("error").and_then(Value::as_str) {
        return Err(GatewayError::new(502, ErrorKind::Upstream, err.to_string()));
    }
    let message = v
        .get("message")
        .filter(|m| m.is_object())
        .ok_or_else(|| invalid_response("no `message` object"))?;
    let text = message.get("content").and_then(Value::as_str).unwrap_or("");
    let mut calls = Vec::new();
    for (i, c) in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let (id, name, arguments) = tool_call(c, meta, i)
            .ok_or_else(|| invalid_response(format!("tool_calls[{i}] has no function name")))?;
        calls.push(json!({
            "id": id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }));
    }
    let mut msg = Map::new();
    msg.insert("role".into(), Value::from("assistant"));
    msg.insert(
        "content".into(),
        if text.is_empty() && !calls.is_empty() {
            Value::Null
        } else {
            Value::from(text)
        },
    );
    let finish = finish_reason(
        v.get("done_reason").and_then(Value::as_str),
        !calls.is_empty(),
    );
    if !calls.is_empty() {
        msg.insert("tool_calls".into(), Value::Array(calls));
    }
    if let Some(t) = message
        .get("thinking")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        msg.insert("reasoning_content".into(), Value::from(t));
    }
    let usage = usage_of(&v);
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or(&meta.model);
    let out = json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": model,
        "choices": [{"index": 0, "message": Value::Object(msg), "finish_reason": finish}],
        "usage": usage,
    });
    Ok(Translated {
        body: to_vec(&out)?,
        usage: Some(usage),
    })
}
