//! A stored chat answer sent to a client that asked for a stream: the same
//! content as OpenAI streams it (`chat.completion.chunk` objects: per
//! choice one delta with the role, content, reasoning and whole tool calls,
//! then one with its `finish_reason`; the usage chunk when the client asked
//! for it with `stream_options.include_usage`; `[DONE]`).
//!
//! LiteLLM replays a cached answer in five-character pieces with a delay
//! between them; one delta per choice carries the same text and an SDK's
//! accumulator rebuilds the same message, without the wait.

use serde_json::{json, Map, Value};

use crate::codec::sse;

/// The SSE stream for a stored whole answer; `None` when it is not a chat
/// completion (then it is a miss).
pub fn to_stream(answer: &[u8], include_usage: bool) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(answer).ok()?;
    let obj = v.as_object()?;
    let choices = obj.get("choices")?.as_array()?;
    let mut head = Map::new();
    for k in ["id", "created", "model", "system_fingerprint"] {
        if let Some(x) = obj.get(k) {
            head.insert(k.into(), x.clone());
        }
    }
    head.insert("object".into(), json!("chat.completion.chunk"));
    let chunk = |choices: Value| -> String {
        let mut c = head.clone();
        c.insert("choices".into(), choices);
        Value::Object(c).to_string()
    };
    let mut out = Vec::with_capacity(answer.len() + 512);
    for (i, choice) in choices.iter().enumerate() {
        let index = choice.get("index").cloned().unwrap_or(json!(i));
        let message = choice.get("message").and_then(Value::as_object)?;
        let mut delta = Map::new();
        delta.insert(
            "role".into(),
            message.get("role").cloned().unwrap_or(json!("assistant")),
        );
        for k in ["content", "reasoning_content", "refusal"] {
            if let Some(x) = message.get(k).filter(|x| !x.is_null()) {
                delta.insert(k.into(), x.clone());
            }
        }
        if let Some(Value::Array(calls)) = message.get("tool_calls") {
            let calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(n, c)| {
                    let mut c = c.as_object().cloned().unwrap_or_default();
                    c.insert("index".into(), json!(n));
                    Value::Object(c)
                })
                .collect();
            delta.insert("tool_calls".into(), Value::Array(calls));
        }
        sse::write_data(
            &mut out,
            &chunk(json!([{"index": index, "delta": delta, "finish_reason": null}])),
        );
        let finish = choice
            .get("finish_reason")
            .cloned()
            .unwrap_or(json!("stop"));
        sse::write_data(
            &mut out,
            &chunk(json!([{"index": index, "delta": {}, "finish_reason": finish}])),
        );
    }
    if include_usage {
        if let Some(u) = obj.get("usage") {
            let mut c = head.clone();
            c.insert("choices".into(), json!([]));
            c.insert("usage".into(), u.clone());
            sse::write_data(&mut out, &Value::Object(c).to_string());
        }
    }
    sse::write_done(&mut out);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::assemble::Assembler;

    #[test]
    fn replayed_stream_assembles_back_to_the_answer() {
        let answer = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 7,
            "model": "m", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "hi there"}, "finish_reason": "stop"},
                {"index": 1, "message": {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
                 "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}});
        let bytes = serde_json::to_vec(&answer).unwrap();
        let sse = to_stream(&bytes, true).unwrap();
        let text = String::from_utf8(sse.clone()).unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        assert_eq!(text.matches("chat.completion.chunk").count(), 5);
        let mut a = Assembler::default();
        a.feed(&sse);
        let back: Value = serde_json::from_slice(&a.finish().unwrap()).unwrap();
        assert_eq!(back, answer);
        let without = String::from_utf8(to_stream(&bytes, false).unwrap()).unwrap();
        assert!(!without.contains("usage"));
    }

    #[test]
    fn not_a_chat_answer() {
        assert!(to_stream(b"{\"object\":\"list\",\"data\":[]}", false).is_none());
        assert!(to_stream(b"nope", false).is_none());
    }
}
