//! LiteLLM's emulation of `response_format: json_schema` for OpenAI-shaped
//! servers without structured outputs (Groq's older models:
//! `GroqChatConfig.map_openai_params`): the schema becomes the parameters
//! of one forced tool, [`JSON_TOOL_NAME`], and the call of that tool comes
//! back as the answer's `content` with `finish_reason: stop`, whole or
//! streamed. A client tool of that exact name is read the same way (as
//! the Anthropic and Bedrock translators read theirs).

use serde_json::{json, Map, Value};

use crate::api::error::GatewayError;
use crate::provider::anthropic::JSON_TOOL_NAME;

/// `body`'s `response_format` as the forced JSON tool, when it carries a
/// schema (`json_schema.schema`, or LiteLLM's `response_schema`); other
/// formats (`json_object`, `text`) are left as sent. With client `tools`
/// too it is a 400, as in LiteLLM: the forced tool would take their place.
pub(super) fn request(body: &mut Map<String, Value>, model: &str) -> Result<(), GatewayError> {
    let Some(format) = body.get("response_format") else {
        return Ok(());
    };
    let schema = format
        .get("response_schema")
        .or_else(|| format.get("json_schema").and_then(|j| j.get("schema")))
        .cloned();
    let Some(schema) = schema else {
        return Ok(());
    };
    if body.get("tools").is_some_and(|t| !t.is_null()) {
        return Err(GatewayError::bad_param(
            "response_format",
            format!(
                "model `{model}` has no native structured outputs: `json_schema` is sent as a \
                 forced tool, which cannot be combined with `tools`; use a model with \
                 structured outputs or leave out `tools`"
            ),
        ));
    }
    body.remove("response_format");
    body.insert(
        "tools".into(),
        json!([{"type": "function", "function": {"name": JSON_TOOL_NAME, "parameters": schema}}]),
    );
    body.insert(
        "tool_choice".into(),
        json!({"type": "function", "function": {"name": JSON_TOOL_NAME}}),
    );
    Ok(())
}

/// The `choices` of an answer or chunk (none when it has no list).
fn choices(v: &mut Value) -> impl Iterator<Item = &mut Value> {
    v.get_mut("choices")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

/// Whether a `tool_calls` list holds a call of the JSON tool.
fn names_json_tool(calls: &[Value]) -> bool {
    calls
        .iter()
        .any(|c| c.pointer("/function/name").and_then(Value::as_str) == Some(JSON_TOOL_NAME))
}

/// A whole answer's choices: a message whose only tool call is the JSON
/// tool's gets its arguments as `content` and `finish_reason: stop`
/// (LiteLLM's `convert_tool_call_to_json_mode`). False: nothing changed.
pub(super) fn answer(v: &mut Value) -> bool {
    let mut changed = false;
    for choice in choices(v) {
        let Some(Value::Object(m)) = choice.get_mut("message") else {
            continue;
        };
        let args = match m.get("tool_calls").and_then(Value::as_array) {
            Some(calls) if calls.len() == 1 && names_json_tool(calls) => calls[0]
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            _ => continue,
        };
        m.remove("tool_calls");
        m.insert("content".into(), Value::String(args));
        choice["finish_reason"] = Value::String("stop".into());
        changed = true;
    }
    changed
}

/// A stream chunk's choices: once a delta names the JSON tool (`armed`,
/// kept across chunks: later deltas carry only the call's index), its
/// argument pieces are `content` and `finish_reason: tool_calls` is
/// `stop`. False: nothing changed.
pub(super) fn chunk(v: &mut Value, armed: &mut bool) -> bool {
    let mut changed = false;
    for choice in choices(v) {
        if let Some(Value::Object(delta)) = choice.get_mut("delta") {
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                *armed |= names_json_tool(calls);
                if *armed {
                    let text: String = calls
                        .iter()
                        .filter_map(|c| c.pointer("/function/arguments").and_then(Value::as_str))
                        .collect();
                    delta.remove("tool_calls");
                    delta.insert("content".into(), Value::String(text));
                    changed = true;
                }
            }
        }
        if *armed && choice.get("finish_reason").and_then(Value::as_str) == Some("tool_calls") {
            choice["finish_reason"] = Value::String("stop".into());
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streamed_json_tool_call_becomes_content() {
        let mut armed = false;
        let mut first = json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c",
            "type": "function", "function": {"name": "json_tool_call", "arguments": ""}}]}}]});
        assert!(chunk(&mut first, &mut armed) && armed);
        assert_eq!(first["choices"][0]["delta"], json!({"content": ""}));
        let mut next = json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,
            "function": {"arguments": "{\"a\":1}"}}]}, "finish_reason": "tool_calls"}]});
        assert!(chunk(&mut next, &mut armed));
        assert_eq!(next["choices"][0]["delta"], json!({"content": "{\"a\":1}"}));
        assert_eq!(next["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn other_tool_calls_are_left_alone() {
        let mut armed = false;
        let mut c = json!({"choices": [{"delta": {"tool_calls": [{"index": 0,
            "function": {"name": "get_weather", "arguments": ""}}]}, "finish_reason": "tool_calls"}]});
        assert!(!chunk(&mut c, &mut armed) && !armed);
        let mut whole = json!({"choices": [{"message": {"tool_calls": [
            {"function": {"name": "json_tool_call", "arguments": "{}"}},
            {"function": {"name": "x", "arguments": "{}"}}]}, "finish_reason": "tool_calls"}]});
        assert!(!answer(&mut whole));
    }
}
