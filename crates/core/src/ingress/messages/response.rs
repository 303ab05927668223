//! An OpenAI `chat.completion` as an Anthropic `message` (the mapping is in
//! the module doc of [`super`]).

use serde_json::{json, Value};

use super::{message_id, stop_reason, write_usage};
use crate::api::error::{ErrorKind, GatewayError};

/// The Messages body for a chat answer; an answer that is not one becomes
/// Anthropic's `api_error` (the translators only hand on answers they read,
/// so this is the gateway's own failure).
pub fn from_chat(body: &[u8]) -> Vec<u8> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return super::error_body(&GatewayError::new(
            502,
            ErrorKind::Upstream,
            "the provider's answer could not be read",
        ));
    };
    let choice = &v["choices"][0];
    let msg = &choice["message"];
    let mut content = Vec::new();
    match msg.get("thinking_blocks").and_then(Value::as_array) {
        Some(blocks) => content.extend(blocks.iter().cloned()),
        None => {
            if let Some(r) = msg
                .get("reasoning_content")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
            {
                content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
            }
        }
    }
    if let Some(t) = msg
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        content.push(json!({"type": "text", "text": t}));
    }
    for call in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = &call["function"];
        let input = f["arguments"]
            .as_str()
            .and_then(|a| serde_json::from_str::<Value>(a).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        content
            .push(json!({"type": "tool_use", "id": call["id"], "name": f["name"], "input": input}));
    }
    let u = &v["usage"];
    let n = |x: &Value| x.as_u64().unwrap_or(0);
    let mut usage = Vec::new();
    write_usage(
        &mut usage,
        n(&u["prompt_tokens"]),
        n(&u["prompt_tokens_details"]["cached_tokens"]),
        n(&u["completion_tokens"]),
    );
    let usage: Value = serde_json::from_slice(&usage).unwrap_or_default();
    let out = json!({
        "id": message_id(v["id"].as_str().unwrap_or("")),
        "type": "message",
        "role": "assistant",
        "model": v["model"],
        "content": content,
        "stop_reason": stop_reason(choice["finish_reason"].as_str()),
        "stop_sequence": null,
        "usage": usage,
    });
    serde_json::to_vec(&out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_answer_becomes_a_message() {
        let chat = br#"{"id":"chatcmpl-9","object":"chat.completion","created":1,"model":"gpt-x",
            "choices":[{"index":0,"message":{"role":"assistant","content":"Hi","reasoning_content":"hm",
            "tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}},
                          {"id":"call_2","type":"function","function":{"name":"g","arguments":"not json"}}]},
            "finish_reason":"tool_calls"}],
            "usage":{"prompt_tokens":30,"completion_tokens":5,"total_tokens":35,"prompt_tokens_details":{"cached_tokens":20}}}"#;
        let v: Value = serde_json::from_slice(&from_chat(chat)).unwrap();
        assert_eq!(
            v,
            json!({"id":"msg_9","type":"message","role":"assistant","model":"gpt-x",
              "content":[{"type":"thinking","thinking":"hm","signature":""},{"type":"text","text":"Hi"},
                {"type":"tool_use","id":"call_1","name":"f","input":{"a":1}},
                {"type":"tool_use","id":"call_2","name":"g","input":{}}],
              "stop_reason":"tool_use","stop_sequence":null,
              "usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":20,"output_tokens":5}})
        );
        let e: Value = serde_json::from_slice(&from_chat(b"nope")).unwrap();
        assert_eq!(e["error"]["type"], "api_error");
    }
}
