//! A stream as the client got it (OpenAI `chat.completion.chunk` events),
//! put back together into the whole answer to store, so a later request
//! can be served plain or streamed alike.
//!
//! Only a stream that ended well is stored: `[DONE]` seen, every choice
//! with its `finish_reason`, no error event (a cut, failed or budget-cut
//! stream ends with an error event or without `[DONE]`), and no larger
//! than [`crate::config::cache::MAX_ITEM_BYTES`].

use serde_json::{json, Map, Value};

use crate::codec::sse::SseDecoder;
use crate::config::cache::MAX_ITEM_BYTES;

#[derive(Debug, Default)]
struct ToolCall {
    id: Option<Value>,
    kind: Option<Value>,
    name: String,
    arguments: String,
}

#[derive(Debug, Default)]
struct Choice {
    role: Option<Value>,
    content: Option<String>,
    reasoning: Option<String>,
    refusal: Option<String>,
    tools: Vec<ToolCall>,
    finish: Option<Value>,
}

/// Accumulates a forwarded stream.
#[derive(Debug, Default)]
pub struct Assembler {
    decoder: SseDecoder,
    head: Map<String, Value>,
    choices: Vec<Choice>,
    usage: Option<Value>,
    done: bool,
    /// An error event, an unreadable chunk, or too large: never stored.
    spoiled: bool,
    bytes: usize,
}

fn append(slot: &mut Option<String>, v: Option<&Value>) {
    if let Some(s) = v.and_then(Value::as_str) {
        slot.get_or_insert_with(String::new).push_str(s);
    }
}

impl Assembler {
    /// The next bytes the client was sent.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.spoiled {
            return;
        }
        self.bytes += bytes.len();
        if self.bytes > MAX_ITEM_BYTES.saturating_mul(4) {
            self.spoiled = true;
            return;
        }
        let mut events: Vec<String> = Vec::new();
        self.decoder
            .feed_with(bytes, |_, data| events.push(data.to_string()));
        for data in events {
            self.event(&data);
        }
    }

    fn event(&mut self, data: &str) {
        if data.trim() == "[DONE]" {
            self.done = true;
            return;
        }
        let Ok(Value::Object(mut chunk)) = serde_json::from_str::<Value>(data) else {
            self.spoiled = true;
            return;
        };
        if chunk.contains_key("error") {
            self.spoiled = true;
            return;
        }
        for k in ["id", "created", "model", "system_fingerprint"] {
            if let Some(v) = chunk.remove(k).filter(|v| !v.is_null()) {
                self.head.entry(k).or_insert(v);
            }
        }
        if let Some(u) = chunk.remove("usage").filter(|u| !u.is_null()) {
            self.usage = Some(u);
        }
        let Some(Value::Array(choices)) = chunk.remove("choices") else {
            return;
        };
        for c in choices {
            let i = c.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            if i > 128 {
                self.spoiled = true;
                return;
            }
            if self.choices.len() <= i {
                self.choices.resize_with(i + 1, Choice::default);
            }
            let Some(choice) = self.choices.get_mut(i) else {
                return;
            };
            if let Some(f) = c.get("finish_reason").filter(|f| !f.is_null()) {
                choice.finish = Some(f.clone());
            }
            let Some(d) = c.get("delta") else { continue };
            if let Some(r) = d.get("role").filter(|r| !r.is_null()) {
                choice.role.get_or_insert_with(|| r.clone());
            }
            append(&mut choice.content, d.get("content"));
            append(&mut choice.reasoning, d.get("reasoning_content"));
            append(&mut choice.refusal, d.get("refusal"));
            for t in d
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let n = t.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                if n > 128 {
                    self.spoiled = true;
                    return;
                }
                if choice.tools.len() <= n {
                    choice.tools.resize_with(n + 1, ToolCall::default);
                }
                let Some(call) = choice.tools.get_mut(n) else {
                    return;
                };
                if let Some(id) = t.get("id").filter(|v| !v.is_null()) {
                    call.id = Some(id.clone());
                }
                if let Some(k) = t.get("type").filter(|v| !v.is_null()) {
                    call.kind = Some(k.clone());
                }
                if let Some(f) = t.get("function") {
                    if let Some(s) = f.get("name").and_then(Value::as_str) {
                        call.name.push_str(s);
                    }
                    if let Some(s) = f.get("arguments").and_then(Value::as_str) {
                        call.arguments.push_str(s);
                    }
                }
            }
        }
    }

    /// The whole answer, when the stream ended well; `None`: not stored.
    pub fn finish(self) -> Option<Vec<u8>> {
        if self.spoiled
            || !self.done
            || self.choices.is_empty()
            || self.choices.iter().any(|c| c.finish.is_none())
        {
            return None;
        }
        let mut obj = self.head;
        obj.insert("object".into(), json!("chat.completion"));
        let choices: Vec<Value> = self
            .choices
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let mut m = Map::new();
                m.insert("role".into(), c.role.unwrap_or(json!("assistant")));
                m.insert(
                    "content".into(),
                    c.content.map_or(Value::Null, Value::String),
                );
                if let Some(r) = c.reasoning {
                    m.insert("reasoning_content".into(), Value::String(r));
                }
                if let Some(r) = c.refusal {
                    m.insert("refusal".into(), Value::String(r));
                }
                if !c.tools.is_empty() {
                    let calls: Vec<Value> = c
                        .tools
                        .into_iter()
                        .map(|t| {
                            json!({"id": t.id, "type": t.kind.unwrap_or(json!("function")),
                                   "function": {"name": t.name, "arguments": t.arguments}})
                        })
                        .collect();
                    m.insert("tool_calls".into(), Value::Array(calls));
                }
                json!({"index": i, "message": m, "finish_reason": c.finish})
            })
            .collect();
        obj.insert("choices".into(), Value::Array(choices));
        if let Some(u) = self.usage {
            obj.insert("usage".into(), u);
        }
        let out = serde_json::to_vec(&Value::Object(obj)).ok()?;
        (out.len() <= MAX_ITEM_BYTES).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(v: Value) -> String {
        format!("data: {v}\n\n")
    }

    #[test]
    fn whole_stream_assembled_at_every_split() {
        let stream = [
            ev(json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",
                "choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]})),
            ev(json!({"id":"c1","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]})),
            ev(json!({"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})),
            ev(json!({"id":"c1","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}})),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let want = json!({"id":"c1","object":"chat.completion","created":1,"model":"m",
            "choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}});
        for split in 0..stream.len() {
            let mut a = Assembler::default();
            a.feed(&stream.as_bytes()[..split]);
            a.feed(&stream.as_bytes()[split..]);
            let got: Value = serde_json::from_slice(&a.finish().unwrap()).unwrap();
            assert_eq!(got, want, "split {split}");
        }
    }

    #[test]
    fn spoiled_streams_are_not_stored() {
        let ok =
            ev(json!({"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}]}));
        for s in [
            ok.clone(), // no [DONE]: cut
            format!("{ok}data: {{\"error\":{{\"message\":\"x\"}}}}\n\ndata: [DONE]\n\n"),
            format!("data: nope\n\n{ok}data: [DONE]\n\n"),
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\ndata: [DONE]\n\n"
                .into(),
            "data: [DONE]\n\n".into(),
        ] {
            let mut a = Assembler::default();
            a.feed(s.as_bytes());
            assert!(a.finish().is_none(), "{s}");
        }
    }
}
