//! Anthropic Messages as a client API (`POST /v1/messages`), for
//! deployments that are not Anthropic's own: the request becomes an OpenAI
//! chat request ([`request`]), the answer an Anthropic `message`
//! ([`response`]), a stream Anthropic's events ([`stream`]), an error
//! Anthropic's error object ([`error_body`]). Reference: LiteLLM's
//! `anthropic/experimental_pass_through/adapters/transformation.py`
//! (`LiteLLMAnthropicMessagesAdapter`), and Anthropic's API reference.
//!
//! # Request (Messages -> chat)
//!
//! - `system` (a string or text blocks) -> the first message, role
//!   `system`; blocks stay text parts unless there is only one.
//!   `cache_control` is left out everywhere: no chat translator reads it
//!   (LiteLLM keeps it only for Claude models), and a strict
//!   OpenAI-compatible server refuses unknown members in a part.
//! - user turns: `text` -> text parts, `image` (base64 or URL source) ->
//!   `image_url` (a `data:` URL for base64), `document` with a base64 PDF
//!   -> `image_url` with a `data:application/pdf` URL (what the Claude,
//!   Gemini and Bedrock translators read as a document), a plain-text
//!   document -> text; `tool_result` blocks -> `tool` messages before the
//!   user's other content (text joined; images in a result follow as the
//!   user's image parts). A single plain text part becomes a string.
//! - assistant turns: `text` joined -> `content`, `tool_use` ->
//!   `tool_calls` (`input` serialised as `arguments`), `thinking` /
//!   `redacted_thinking` -> `thinking_blocks` (LiteLLM's field, which the
//!   Claude and Bedrock translators send back) and `reasoning_content`.
//! - `tools` -> functions (`input_schema` -> `parameters`); `tool_choice`
//!   `auto` / `any` / `tool` / `none` -> `auto` / `required` / named
//!   function / `none`, `disable_parallel_tool_use: true` ->
//!   `parallel_tool_calls: false`.
//! - `stop_sequences` -> `stop`, `metadata.user_id` -> `user`;
//!   `max_tokens`, `temperature`, `top_p`, `top_k`, `thinking`, `stream`
//!   keep their names; `thinking` stays for the Claude, Gemini and Bedrock
//!   translators, which read it, and becomes `reasoning_effort` for the
//!   others ([`reasoning_effort`], per attempt in
//!   `pipeline::ingress::thinking_as_effort`, as LiteLLM's adapter does for
//!   non-Claude models). `output_format` (or `output_config.format`)
//!   `{type: json_schema, schema}` -> `response_format` `json_schema`
//!   named `structured_output`, as LiteLLM maps it. A
//!   stream asks for usage (`stream_options.include_usage`): the closing
//!   `message_delta` carries it. Any other member is passed on under its
//!   own name, so the translator's parameter policy decides (400 naming it,
//!   or dropped with `drop_params`).
//! - Not translatable, a 400 for a translated attempt (a passthrough to
//!   Anthropic takes them): server tools (`tools[].type` other than
//!   `custom`), block kinds chat has no part for (`search_result`,
//!   `container_upload`, server tool results), file-id and URL documents.
//!
//! # Answer (chat -> Messages)
//!
//! `reasoning_content` / `thinking_blocks` -> `thinking` blocks first, then
//! the text, then one `tool_use` per tool call (`arguments` parsed; an
//! unparsable string becomes `{}`). `finish_reason` -> `stop_reason`:
//! `stop` -> `end_turn`, `length` -> `max_tokens`, `tool_calls` /
//! `function_call` -> `tool_use`, `content_filter` -> `refusal`. Usage:
//! `input_tokens` = `prompt_tokens` - `cached_tokens`,
//! `cache_read_input_tokens` = `cached_tokens`,
//! `cache_creation_input_tokens` 0 (chat usage does not say which prompt
//! tokens were written to a cache: they are counted in `input_tokens`),
//! `output_tokens` = `completion_tokens`. The id is the answer's, `msg_`
//! instead of `chatcmpl-`. `stop_sequence` is `null` (chat does not say
//! which sequence stopped the answer).

pub mod request;
pub mod response;
pub mod stream;

use crate::api::error::GatewayError;
use crate::codec::json_out;

/// Anthropic's error `type`s, the ones a provider's error `code` may carry
/// through.
const ERROR_TYPES: &[&str] = &[
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "rate_limit_error",
    "api_error",
    "overloaded_error",
];

/// The Anthropic error `type` for a gateway error: the provider's own when
/// it was Anthropic's (kept in `code`), else by status.
pub fn error_type(e: &GatewayError) -> &'static str {
    if let Some(t) = e
        .code
        .as_deref()
        .and_then(|c| ERROR_TYPES.iter().find(|t| **t == c))
    {
        return t;
    }
    match e.status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// `{"type":"error","error":{"type":...,"message":...}}`.
pub fn error_body(e: &GatewayError) -> Vec<u8> {
    let mut out = Vec::with_capacity(e.message.len() + 64);
    write_error(&mut out, e);
    out
}

fn write_error(out: &mut Vec<u8>, e: &GatewayError) {
    out.extend_from_slice(br#"{"type":"error","error":{"type":"#);
    json_out::str(out, error_type(e));
    out.extend_from_slice(br#","message":"#);
    json_out::str(out, &e.message);
    out.extend_from_slice(b"}}");
}

/// The `reasoning_effort` for a Messages `thinking` object (JSON text), as
/// LiteLLM buckets a budget (`reasoning_effort_from_thinking_budget`, the
/// budgets of [`crate::provider::common::reasoning`]): 4096 and more
/// `high`, 2048 `medium`, 1024 `low`, less `minimal`. `None` when thinking
/// is not enabled.
pub fn reasoning_effort(thinking: &str) -> Option<&'static str> {
    use crate::codec::json_in::{first, string, u64 as num};
    let kind = string(first(thinking, "type"))?;
    if kind.text() == "disabled" {
        return None;
    }
    Some(
        match num(first(thinking, "budget_tokens")).unwrap_or(4096) {
            b if b >= 4096 => "high",
            b if b >= 2048 => "medium",
            b if b >= 1024 => "low",
            _ => "minimal",
        },
    )
}

/// Anthropic's `stop_reason` for a chat `finish_reason`.
pub fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// The Messages id for a chat answer's id.
pub(crate) fn message_id(id: &str) -> String {
    match id.strip_prefix("chatcmpl-") {
        Some(rest) => format!("msg_{rest}"),
        None if id.is_empty() => "msg_gateway".to_string(),
        None => id.to_string(),
    }
}

/// The `usage` object from chat counts (prompt including cached reads).
pub(crate) fn write_usage(out: &mut Vec<u8>, prompt: u64, cached: u64, completion: u64) {
    out.extend_from_slice(br#"{"input_tokens":"#);
    json_out::u64(out, prompt.saturating_sub(cached));
    out.extend_from_slice(br#","cache_creation_input_tokens":0,"cache_read_input_tokens":"#);
    json_out::u64(out, cached);
    out.extend_from_slice(br#","output_tokens":"#);
    json_out::u64(out, completion);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::error::ErrorKind;

    #[test]
    fn errors_take_anthropic_types() {
        let cases = [
            (400, None, "invalid_request_error"),
            (401, None, "authentication_error"),
            (403, None, "permission_error"),
            (404, None, "not_found_error"),
            (429, None, "rate_limit_error"),
            (503, None, "overloaded_error"),
            (502, None, "api_error"),
            (500, Some("overloaded_error"), "overloaded_error"),
            (400, Some("budget_exceeded"), "invalid_request_error"),
        ];
        for (status, code, want) in cases {
            let mut e = GatewayError::new(status, ErrorKind::Internal, "m \"q\"");
            e.code = code.map(str::to_string);
            let v: serde_json::Value = serde_json::from_slice(&error_body(&e)).unwrap();
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], want, "{status} {code:?}");
            assert_eq!(v["error"]["message"], "m \"q\"");
        }
    }

    #[test]
    fn finish_reasons_become_stop_reasons() {
        assert_eq!(stop_reason(Some("stop")), "end_turn");
        assert_eq!(stop_reason(Some("length")), "max_tokens");
        assert_eq!(stop_reason(Some("tool_calls")), "tool_use");
        assert_eq!(stop_reason(Some("content_filter")), "refusal");
        assert_eq!(stop_reason(None), "end_turn");
        assert_eq!(message_id("chatcmpl-ab"), "msg_ab");
    }
}
