//! Anthropic Messages answer -> OpenAI `chat.completion` (the mapping is
//! described in the module docs of [`super`]).
//!
//! The answer is read into structs that borrow from its bytes; text passes
//! into the output as the JSON literal Anthropic sent when there is one
//! block of it (the usual case), and the output is written into one buffer.

use super::{counts_of, error_from_body, finish_reason, invalid_response, JSON_TOOL_NAME};
use crate::api::error::GatewayError;
use crate::codec::json_in::{self, elements, is_array, is_object, members_at, string};
use crate::codec::json_out::{self, RawStr};
use crate::provider::common::errors::snippet;
use crate::provider::{ResponseMeta, Translated};

/// A successful Messages API body as an OpenAI `chat.completion`.
pub(super) fn translate_response(
    body: &[u8],
    meta: &ResponseMeta,
) -> Result<Translated, GatewayError> {
    let not_json =
        |e: &dyn std::fmt::Display| invalid_response(format!("not JSON ({e}): {}", snippet(body)));
    let text = std::str::from_utf8(body).map_err(|e| not_json(&e))?;
    // The top-level fields read, as the answer is checked (a body that is
    // not an object has none).
    let (mut kind, mut content, mut stop_reason, mut model, mut usage) =
        (None, None, None, None, None);
    json_in::check_members(text, &mut |key, value| {
        let slot = match key.text().as_ref() {
            "type" => &mut kind,
            "content" => &mut content,
            "stop_reason" => &mut stop_reason,
            "model" => &mut model,
            "usage" => &mut usage,
            _ => return,
        };
        *slot = Some(value);
    })
    .map_err(|e| not_json(&e))?;
    if string(kind).is_some_and(|k| k.text() == "error") {
        return Err(error_from_body(502, body));
    }
    let content = content
        .filter(|c| is_array(c))
        .ok_or_else(|| invalid_response("no `content` array"))?;

    let mut texts: Vec<RawStr> = Vec::new();
    let mut json_text: Option<&str> = None;
    let mut reasoning: Option<String> = None;
    // Thinking blocks are passed on whole, as Anthropic wrote them.
    let mut thinking_blocks: Vec<&str> = Vec::new();
    // (id, name, input JSON text)
    let mut tool_calls: Vec<(RawStr, RawStr, &str)> = Vec::new();
    let mut blocks = elements(content);
    let mut i = 0;
    while let Some(start) = blocks.start() {
        // Each block is walked where it stands (one pass over the answer).
        let (mut kind, mut text, mut id, mut name, mut input, mut thinking) =
            (None, None, None, None, None, None);
        let mut walk = members_at(content, start);
        while let Some(key) = walk.key() {
            let slot = match key.text().as_ref() {
                "type" => &mut kind,
                "text" => &mut text,
                "id" => &mut id,
                "name" => &mut name,
                "input" => &mut input,
                "thinking" => &mut thinking,
                _ => {
                    walk.value();
                    continue;
                }
            };
            *slot = Some(walk.value());
        }
        let end = if content.as_bytes().get(start) == Some(&b'{') {
            walk.end()
        } else {
            start
        };
        let block = content.get(start..end).unwrap_or("");
        blocks.resume(end);
        let at = i;
        i += 1;
        let i = at;
        let Some(kind) = string(kind) else {
            return Err(invalid_response(format!("content[{i}] has no `type`")));
        };
        match kind.text().as_ref() {
            "text" => {
                if let Some(t) = string(text) {
                    texts.push(t);
                }
            }
            "tool_use" => {
                let missing = |k: &str| invalid_response(format!("content[{i}] has no `{k}`"));
                let id = string(id).ok_or_else(|| missing("id"))?;
                let name = string(name).ok_or_else(|| missing("name"))?;
                let input = input.unwrap_or("{}");
                if name.text() == JSON_TOOL_NAME {
                    json_text = Some(input);
                } else {
                    tool_calls.push((id, name, input));
                }
            }
            "thinking" => {
                let t = string(thinking).map(|t| t.text());
                reasoning
                    .get_or_insert_with(String::new)
                    .push_str(t.as_deref().unwrap_or(""));
                thinking_blocks.push(block);
            }
            "redacted_thinking" => thinking_blocks.push(block),
            // Server tools (web search, code execution ...) are not requested by
            // this gateway; anything else new is skipped rather than refused.
            _ => {}
        }
    }
    let stop_reason = string(stop_reason).map(|s| s.text());
    let mut finish = finish_reason(stop_reason.as_deref());
    if json_text.is_some() && tool_calls.is_empty() && finish == "tool_calls" {
        finish = "stop";
    }

    let mut out = Vec::with_capacity(body.len() + 256);
    out.extend_from_slice(br#"{"id":"#);
    json_out::str(&mut out, &meta.id);
    out.extend_from_slice(br#","object":"chat.completion","created":"#);
    json_out::u64(&mut out, meta.created);
    out.extend_from_slice(br#","model":"#);
    match string(model) {
        Some(m) => m.write(&mut out),
        None => json_out::str(&mut out, &meta.model),
    }
    out.extend_from_slice(br#","choices":[{"index":0,"message":{"role":"assistant","content":"#);
    // LiteLLM's JSON mode: the JSON tool's input is the message.
    match (json_text, texts.as_slice()) {
        (Some(json), _) => json_out::str(&mut out, json),
        (None, []) => out.extend_from_slice(b"null"),
        (None, [one]) if one.is_empty() => out.extend_from_slice(b"null"),
        (None, [one]) => one.write(&mut out),
        (None, many) => {
            let joined: String = many.iter().map(|t| t.text()).collect();
            if joined.is_empty() {
                out.extend_from_slice(b"null");
            } else {
                json_out::str(&mut out, &joined);
            }
        }
    }
    if !tool_calls.is_empty() {
        out.extend_from_slice(br#","tool_calls":["#);
        for (k, (id, name, input)) in tool_calls.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"id":"#);
            id.write(&mut out);
            out.extend_from_slice(br#","type":"function","function":{"name":"#);
            name.write(&mut out);
            out.extend_from_slice(br#","arguments":"#);
            json_out::str(&mut out, input);
            out.extend_from_slice(b"}}");
        }
        out.push(b']');
    }
    if let Some(r) = &reasoning {
        out.extend_from_slice(br#","reasoning_content":"#);
        json_out::str(&mut out, r);
    }
    if !thinking_blocks.is_empty() {
        out.extend_from_slice(br#","thinking_blocks":["#);
        for (k, b) in thinking_blocks.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            json_out::raw(&mut out, b);
        }
        out.push(b']');
    }
    out.extend_from_slice(br#"},"finish_reason":"#);
    json_out::str(&mut out, finish);
    out.extend_from_slice(b"}]");
    let usage = match usage.filter(|u| is_object(u)) {
        Some(u) => {
            let counts = counts_of(u);
            out.extend_from_slice(br#","usage":"#);
            counts.openai().write(&mut out);
            Some(counts.usage())
        }
        _ => None,
    };
    out.push(b'}');
    Ok(Translated { body: out, usage })
}
