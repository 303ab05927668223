//! Anthropic Messages answer -> OpenAI `chat.completion` (the mapping is
//! described in the module docs of [`super`]).
//!
//! The answer is read into structs that borrow from its bytes; text passes
//! into the output as the JSON literal Anthropic sent when there is one
//! block of it (the usual case), and the output is written into one buffer.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    error_from_body, finish_reason, invalid_response, Arr, Obj, TokenCounts, UsageIn,
    JSON_TOOL_NAME,
};
use crate::error::GatewayError;
use crate::json_out::{self, RawStr};
use crate::provider::openai_compat::snippet;
use crate::provider::{ResponseMeta, Translated};

/// The top level of a Messages answer. Every field is read leniently: a
/// field of an unexpected type is treated as absent, as before.
#[derive(Deserialize)]
struct AnswerIn<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<&'a RawValue>,
    #[serde(default, borrow)]
    content: Option<Arr<Obj<BlockIn<'a>>>>,
    #[serde(default, borrow)]
    stop_reason: Option<&'a RawValue>,
    #[serde(default, borrow)]
    model: Option<&'a RawValue>,
    #[serde(default, borrow)]
    usage: Option<Obj<UsageIn<'a>>>,
}

/// The content blocks as JSON text, read again only when thinking blocks
/// must be passed on whole.
#[derive(Deserialize)]
struct RawContent<'a> {
    #[serde(borrow)]
    content: Vec<&'a RawValue>,
}

/// One content block.
#[derive(Deserialize)]
struct BlockIn<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<&'a RawValue>,
    #[serde(default, borrow)]
    text: Option<&'a RawValue>,
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    name: Option<&'a RawValue>,
    #[serde(default, borrow)]
    input: Option<&'a RawValue>,
    #[serde(default, borrow)]
    thinking: Option<&'a RawValue>,
}

/// `raw` if it is a JSON string.
fn string(raw: Option<&RawValue>) -> Option<RawStr<'_>> {
    raw.and_then(RawStr::new)
}

/// A successful Messages API body as an OpenAI `chat.completion`.
pub(super) fn translate_response(
    body: &[u8],
    meta: &ResponseMeta,
) -> Result<Translated, GatewayError> {
    // UTF-8 is checked once; the parse then borrows text without checking it again.
    let text = std::str::from_utf8(body)
        .map_err(|e| invalid_response(format!("not JSON ({e}): {}", snippet(body))))?;
    let answer: AnswerIn = match serde_json::from_str(text) {
        Ok(a) => a,
        // Not JSON, or JSON that is not an object.
        Err(_) => {
            return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Err(e) => invalid_response(format!("not JSON ({e}): {}", snippet(body))),
                Ok(_) => invalid_response("no `content` array"),
            })
        }
    };
    if string(answer.kind).is_some_and(|k| k.text() == "error") {
        return Err(error_from_body(502, body));
    }
    let Some(Arr(Some(content))) = &answer.content else {
        return Err(invalid_response("no `content` array"));
    };

    let mut texts: Vec<RawStr> = Vec::new();
    let mut json_text: Option<&str> = None;
    let mut reasoning: Option<String> = None;
    // Indexes of the thinking blocks, passed on whole.
    let mut thinking_blocks: Vec<usize> = Vec::new();
    // (id, name, input JSON text)
    let mut tool_calls: Vec<(RawStr, RawStr, &str)> = Vec::new();
    for (i, block) in content.iter().enumerate() {
        let kind = block.0.as_ref().and_then(|b| string(b.kind));
        let Some((block, kind)) = block.0.as_ref().zip(kind) else {
            return Err(invalid_response(format!("content[{i}] has no `type`")));
        };
        match kind.text().as_ref() {
            "text" => {
                if let Some(t) = string(block.text) {
                    texts.push(t);
                }
            }
            "tool_use" => {
                let missing = |k: &str| invalid_response(format!("content[{i}] has no `{k}`"));
                let id = string(block.id).ok_or_else(|| missing("id"))?;
                let name = string(block.name).ok_or_else(|| missing("name"))?;
                let input = block.input.map_or("{}", RawValue::get);
                if name.text() == JSON_TOOL_NAME {
                    json_text = Some(input);
                } else {
                    tool_calls.push((id, name, input));
                }
            }
            "thinking" => {
                let t = string(block.thinking).map(|t| t.text());
                reasoning
                    .get_or_insert_with(String::new)
                    .push_str(t.as_deref().unwrap_or(""));
                thinking_blocks.push(i);
            }
            "redacted_thinking" => thinking_blocks.push(i),
            // Server tools (web search, code execution ...) are not requested by
            // this gateway; anything else new is skipped rather than refused.
            _ => {}
        }
    }
    let raw_blocks: Vec<&RawValue> = if thinking_blocks.is_empty() {
        Vec::new()
    } else {
        serde_json::from_str::<RawContent>(text)
            .map(|c| c.content)
            .unwrap_or_default()
    };
    let stop_reason = string(answer.stop_reason).map(|s| s.text());
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
    match string(answer.model) {
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
        for (k, b) in thinking_blocks
            .iter()
            .filter_map(|i| raw_blocks.get(*i))
            .enumerate()
        {
            if k > 0 {
                out.push(b',');
            }
            json_out::raw(&mut out, b.get());
        }
        out.push(b']');
    }
    out.extend_from_slice(br#"},"finish_reason":"#);
    json_out::str(&mut out, finish);
    out.extend_from_slice(b"}]");
    let usage = match &answer.usage {
        Some(Obj(Some(u))) => {
            let counts = TokenCounts::of(u);
            out.extend_from_slice(br#","usage":"#);
            json_out::value(&mut out, &counts.openai());
            Some(counts.usage())
        }
        _ => None,
    };
    out.push(b'}');
    Ok(Translated { body: out, usage })
}
