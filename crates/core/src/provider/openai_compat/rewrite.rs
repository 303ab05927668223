//! A request and its answer rewritten for an OpenAI-compatible server's
//! [`Dialect`]: parameters renamed, dropped or refused, messages put in the
//! form the server takes; answers whose content is a list of blocks turned
//! into OpenAI's `content` and `reasoning_content`.

use serde_json::{Map, Value};

use super::dialect::{Answers, Dialect, Names};
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
    if d.json_schema_tool {
        super::json_tool::request(&mut body, model)?;
    }
    if !d.stream_options {
        body.remove("stream_options");
    }
    for key in d.dropped {
        body.remove(*key);
    }
    let temperature_not_one = d.temperature_one_only
        && body
            .get("temperature")
            .is_some_and(|t| !t.is_null() && t.as_f64() != Some(1.0));
    let refused = d
        .unsupported
        .iter()
        .copied()
        .filter(|k| body.get(*k).is_some_and(|v| !v.is_null()))
        .chain(temperature_not_one.then_some("temperature"));
    for key in refused.collect::<Vec<_>>() {
        if !drop_params {
            return Err(unsupported_param(d.name, model, key, "parameter"));
        }
        body.remove(key);
    }
    for r in d.renames {
        if let Some(v) = body.remove(r.from) {
            if !(r.keep_existing && body.contains_key(r.to)) {
                body.insert(r.to.to_string(), v);
            }
        }
    }
    // LiteLLM sends a tool choice only with tools (OpenAI refuses it alone).
    if !body.contains_key("tools") && !body.contains_key("functions") {
        body.remove("tool_choice");
    }
    if let (Some(to), Some(choice)) = (d.tool_choice_required, body.get_mut("tool_choice")) {
        if choice.as_str() == Some("required") {
            *choice = Value::String(to.to_string());
        }
    }
    if !d.tool_schema_drops.is_empty() {
        if let Some(Value::Array(tools)) = body.get_mut("tools") {
            for t in tools.iter_mut() {
                if let Some(f) = t.get_mut("function") {
                    strip_keys(f, d.tool_schema_drops);
                }
            }
        }
    }
    if let Some(Value::Array(messages)) = body.get_mut("messages") {
        messages.retain_mut(|m| message(m, d));
    }
    for (k, v) in d.added {
        if !body.contains_key(*k) {
            body.insert(
                (*k).to_string(),
                serde_json::from_str(v).unwrap_or(Value::Null),
            );
        }
    }
    serde_json::to_vec(&body).map_err(|e| GatewayError::bad_request(e.to_string()))
}

fn non_empty_list(v: &Value) -> bool {
    v.as_array().is_some_and(|a| !a.is_empty())
}

/// `keys` taken out of `v` and everything in it (a tool's `strict`, a
/// schema's `additionalProperties` at any depth).
fn strip_keys(v: &mut Value, keys: &[&str]) {
    match v {
        Value::Object(m) => {
            for k in keys {
                m.remove(*k);
            }
            for child in m.values_mut() {
                strip_keys(child, keys);
            }
        }
        Value::Array(items) => {
            for child in items {
                strip_keys(child, keys);
            }
        }
        _ => {}
    }
}

/// One message in the dialect's form; false: leave it out.
fn message(m: &mut Value, d: &Dialect) -> bool {
    let Value::Object(m) = m else {
        return true;
    };
    if d.developer_as_system && m.get("role").and_then(Value::as_str) == Some("developer") {
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
    let keeps_name = match d.names {
        Names::All => true,
        Names::ToolOnly => role == "tool",
        Names::UserOnly => role == "user",
    };
    if !keeps_name {
        m.remove("name");
    }
    if role == "assistant" {
        for k in d.assistant_drops {
            m.remove(*k);
        }
        if d.assistant_nulls_dropped {
            m.retain(|_, v| !v.is_null());
        }
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

/// An answer (`message`) or chunk (`delta`) in OpenAI's form where the
/// dialect's answers differ: content blocks ([`Answers::ContentBlocks`]:
/// Mistral's reasoning models, `thinking` holding text parts and `text`)
/// as `content` and `reasoning_content`, an answer's empty content `null`
/// (LiteLLM's `_handle_empty_content_response`); or `reasoning`
/// ([`Answers::ReasoningField`]) copied to `reasoning_content`. `None` when
/// nothing changes.
pub fn answer(body: &str, field: &str, kind: Answers) -> Option<String> {
    let whole = field == "message";
    let may_change = match kind {
        Answers::OpenAi => false,
        // A whole answer is read (its empty content may become null); a
        // chunk only when its content is a list.
        Answers::ContentBlocks => {
            whole || body.contains("\"content\":[") || body.contains("\"content\": [")
        }
        Answers::ReasoningField => body.contains("\"reasoning\""),
    };
    if !may_change {
        return None;
    }
    let mut v: Value = serde_json::from_str(body).ok()?;
    let mut changed = false;
    for choice in v.get_mut("choices")?.as_array_mut()? {
        let Some(Value::Object(m)) = choice.get_mut(field) else {
            continue;
        };
        changed |= match kind {
            Answers::ReasoningField => reasoning_field(m),
            _ => normalise(m, whole),
        };
    }
    changed.then(|| v.to_string())
}

/// `reasoning` (a string) as `reasoning_content` too, unless it is there.
fn reasoning_field(m: &mut Map<String, Value>) -> bool {
    match m.get("reasoning") {
        Some(Value::String(r)) if !m.contains_key("reasoning_content") => {
            let r = Value::String(r.clone());
            m.insert("reasoning_content".into(), r);
            true
        }
        _ => false,
    }
}

/// A part's `text`, appended.
fn push_text(part: &Value, out: &mut String) {
    if let Some(t) = part.get("text").and_then(Value::as_str) {
        out.push_str(t);
    }
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
    let (mut text, mut thinking) = (String::new(), String::new());
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => push_text(b, &mut text),
            Some("thinking") => {
                let mark = thinking.len();
                if mark > 0 {
                    thinking.push('\n');
                }
                for p in b
                    .get("thinking")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if p.get("type").and_then(Value::as_str) == Some("text") {
                        push_text(p, &mut thinking);
                    }
                }
                if thinking.len() == mark + usize::from(mark > 0) {
                    thinking.truncate(mark);
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
        m.insert("reasoning_content".into(), Value::String(thinking));
    }
    true
}
