//! An OpenAI `chat.completion` as an Anthropic `message` (the mapping is in
//! the module doc of [`super`]).

use super::{message_id, stop_reason, write_usage};
use crate::api::error::{ErrorKind, GatewayError};
use crate::codec::json_in::{check, elements, first, present, string, u64 as num};
use crate::codec::json_out;

/// The Messages body for a chat answer; an answer that is not one becomes
/// Anthropic's `api_error` (the translators only hand on answers they read,
/// so this is the gateway's own failure). Read with the scanner and written
/// straight out: no `Value` tree.
pub fn from_chat(body: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(body).unwrap_or("");
    if check(text).is_err() || !text.trim_start().starts_with('{') {
        return super::error_body(&GatewayError::new(
            502,
            ErrorKind::Upstream,
            "the provider's answer could not be read",
        ));
    }
    let s = |v: Option<&str>| string(v).map(|s| s.text().into_owned());
    let choice = elements(first(text, "choices").unwrap_or("[]"))
        .next()
        .unwrap_or("{}");
    let msg = first(choice, "message").unwrap_or("{}");
    let mut out = Vec::with_capacity(body.len() + 128);
    out.extend_from_slice(br#"{"id":"#);
    json_out::str(
        &mut out,
        &message_id(&s(first(text, "id")).unwrap_or_default()),
    );
    out.extend_from_slice(br#","type":"message","role":"assistant","model":"#);
    json_out::raw(&mut out, present(first(text, "model")).unwrap_or("null"));
    out.extend_from_slice(br#","content":["#);
    let mut n = 0;
    let mut sep = |out: &mut Vec<u8>| {
        if n > 0 {
            out.push(b',');
        }
        n += 1;
    };
    match present(first(msg, "thinking_blocks")) {
        Some(blocks) => {
            for b in elements(blocks) {
                sep(&mut out);
                json_out::raw(&mut out, b);
            }
        }
        None => {
            if let Some(r) = s(first(msg, "reasoning_content")).filter(|r| !r.is_empty()) {
                sep(&mut out);
                out.extend_from_slice(br#"{"type":"thinking","thinking":"#);
                json_out::str(&mut out, &r);
                out.extend_from_slice(br#","signature":""}"#);
            }
        }
    }
    if let Some(t) = s(first(msg, "content")).filter(|t| !t.is_empty()) {
        sep(&mut out);
        out.extend_from_slice(br#"{"type":"text","text":"#);
        json_out::str(&mut out, &t);
        out.push(b'}');
    }
    for call in elements(present(first(msg, "tool_calls")).unwrap_or("[]")) {
        let f = first(call, "function").unwrap_or("{}");
        let args = s(first(f, "arguments")).unwrap_or_default();
        sep(&mut out);
        out.extend_from_slice(br#"{"type":"tool_use","id":"#);
        json_out::raw(&mut out, present(first(call, "id")).unwrap_or("\"\""));
        out.extend_from_slice(br#","name":"#);
        json_out::raw(&mut out, present(first(f, "name")).unwrap_or("\"\""));
        out.extend_from_slice(br#","input":"#);
        // Arguments that are not a JSON object become `{}` (Anthropic's
        // `input` is always one).
        let object = args.trim_start().starts_with('{') && check(&args).is_ok();
        json_out::raw(&mut out, if object { args.trim() } else { "{}" });
        out.push(b'}');
    }
    out.extend_from_slice(br#"],"stop_reason":"#);
    json_out::str(
        &mut out,
        stop_reason(s(first(choice, "finish_reason")).as_deref()),
    );
    out.extend_from_slice(br#","stop_sequence":null,"usage":"#);
    let u = first(text, "usage").unwrap_or("{}");
    let cached = first(u, "prompt_tokens_details").and_then(|d| num(first(d, "cached_tokens")));
    write_usage(
        &mut out,
        num(first(u, "prompt_tokens")).unwrap_or(0),
        cached.unwrap_or(0),
        num(first(u, "completion_tokens")).unwrap_or(0),
    );
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

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
