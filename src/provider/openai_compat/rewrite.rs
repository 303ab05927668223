//! A request and its answer rewritten for an OpenAI-compatible server's
//! [`Dialect`]: parameters renamed, dropped or refused, messages put in the
//! form the server takes; answers whose content is a list of blocks turned
//! into OpenAI's `content` and `reasoning_content`.

use serde_json::{Map, Value};

use super::dialect::Dialect;
use crate::api::error::GatewayError;
use crate::api::request::ClientRequest;
use crate::provider::common::errors::unsupported_param;

/// The request body for a server of dialect `d`.
pub fn request_body(
    req: &ClientRequest,
    model: &str,
    d: &Dialect,
    drop_params: bool,
) -> Result<Vec<u8>, GatewayError> {
    let mut body = req.parsed()?.raw.clone();
    body.insert("model".into(), Value::String(model.to_string()));
    if !d.stream_options {
        body.remove("stream_options");
    }
    for key in d.dropped {
        body.remove(*key);
    }
    for key in d.unsupported {
        if body.get(*key).is_some_and(|v| !v.is_null()) {
            if !drop_params {
                return Err(unsupported_param(d.name, model, key, "parameter"));
            }
            body.remove(*key);
        }
    }
    for (from, to) in d.renames {
        if let Some(v) = body.remove(*from) {
            body.insert((*to).to_string(), v);
        }
    }
    if d.tool_choice_needs_tools && !body.get("tools").is_some_and(non_empty_list) {
        body.remove("tool_choice");
    }
    if let (Some(to), Some(choice)) = (d.tool_choice_required, body.get_mut("tool_choice")) {
        if choice.as_str() == Some("required") {
            *choice = Value::String(to.to_string());
        }
    }
    if let Some(Value::Array(messages)) = body.get_mut("messages") {
        messages.retain_mut(|m| message(m, d));
    }
    serde_json::to_vec(&body).map_err(|e| GatewayError::bad_request(e.to_string()))
}

fn non_empty_list(v: &Value) -> bool {
    v.as_array().is_some_and(|a| !a.is_empty())
}

/// One message in the dialect's form; false: leave it out.
fn message(m: &mut Value, d: &Dialect) -> bool {
    let Value::Object(m) = m else {
        return true;
    };
    let role = m.get("role").and_then(Value::as_str).unwrap_or("");
    if d.developer_as_system && role == "developer" {
        m.insert("role".into(), Value::String("system".into()));
    }
    let role = m
        .get("role")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if d.flatten_text_parts {
        if let Some(text) = m.get("content").and_then(text_parts) {
            m.insert("content".into(), Value::String(text));
        }
    }
    if !d.message_names && role != "tool" {
        m.remove("name");
    }
    if role == "assistant" {
        let calls = m.get("tool_calls").is_some_and(non_empty_list);
        if m.get("content").is_some_and(Value::is_null) {
            m.remove("content");
        }
        let empty = m
            .get("content")
            .is_none_or(|c| c.as_str() == Some("") || c.as_array().is_some_and(Vec::is_empty));
        if d.drop_empty_assistant && empty && !calls {
            return false;
        }
    }
    true
}

/// A part list of text parts only, joined (OpenAI reads the parts as one
/// text); `None` for a string or a list with other parts.
fn text_parts(content: &Value) -> Option<String> {
    let parts = content.as_array()?;
    let mut out = String::new();
    for p in parts {
        if p.get("type").and_then(Value::as_str) != Some("text") {
            return None;
        }
        out.push_str(p.get("text").and_then(Value::as_str)?);
    }
    Some(out)
}

/// An answer (`message`) or chunk (`delta`) whose content is a list of
/// blocks (Mistral's reasoning models: `thinking` holding text parts, and
/// `text`) in OpenAI's form: `content` the text, `reasoning_content` the
/// thinking; an answer's empty content is `null` (LiteLLM's
/// `_handle_empty_content_response`). `None` when nothing changes.
pub fn answer_with_text_content(body: &str, field: &str) -> Option<String> {
    let whole = field == "message";
    let may_change = body.contains("\"content\":[")
        || body.contains("\"content\": [")
        || (whole && (body.contains("\"content\":\"\"") || body.contains("\"content\": \"\"")));
    if !may_change {
        return None;
    }
    let mut v: Value = serde_json::from_str(body).ok()?;
    let mut changed = false;
    for choice in v.get_mut("choices")?.as_array_mut()? {
        let Some(Value::Object(m)) = choice.get_mut(field) else {
            continue;
        };
        changed |= normalise(m, whole);
    }
    changed.then(|| v.to_string())
}

fn normalise(m: &mut Map<String, Value>, whole: bool) -> bool {
    let Some(content) = m.get("content") else {
        return false;
    };
    if whole && content.as_str() == Some("") {
        m.insert("content".into(), Value::Null);
        return true;
    }
    let Some(blocks) = content.as_array() else {
        return false;
    };
    let (mut text, mut thinking) = (String::new(), Vec::new());
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("thinking") => {
                let parts = b.get("thinking").and_then(Value::as_array);
                let t: String = parts
                    .into_iter()
                    .flatten()
                    .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect();
                if !t.is_empty() {
                    thinking.push(t);
                }
            }
            _ => {}
        }
    }
    let content = if text.is_empty() && !whole {
        Value::Null
    } else {
        Value::String(text)
    };
    m.insert("content".into(), content);
    if !thinking.is_empty() {
        m.insert(
            "reasoning_content".into(),
            Value::String(thinking.join("\n")),
        );
    }
    true
}
