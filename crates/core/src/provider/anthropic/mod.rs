//! Anthropic Messages API (`POST /v1/messages`).
//!
//! Reference: <https://docs.anthropic.com/en/api/messages> and
//! <https://docs.anthropic.com/en/api/messages-streaming>. Where the mapping
//! from the OpenAI Chat Completions API is a choice, this follows LiteLLM
//! (`litellm/llms/anthropic/chat/transformation.py`, its streaming
//! `ModelResponseIterator` and `anthropic_messages_pt`) so a LiteLLM user sees
//! the same answers; the few places that differ say so and why.
//!
//! # Request
//!
//! - The leading `system` and `developer` messages become the top-level
//!   `system`, always as an array of text blocks (LiteLLM does the same; empty
//!   and whitespace-only texts are skipped because Anthropic rejects them).
//!   One after the conversation started stays where it was, as user text
//!   after LiteLLM's operator note ("Operator note (not from the user): ..."),
//!   after the tool results it sits among: LiteLLM's
//!   `mid_conversation_system.py` for models that take no system role in
//!   `messages` (the few newest that do get it in place there; here every
//!   model gets the user text). Hoisting it would lose where the instruction
//!   was given.
//! - Empty user content (`""`, `[]`, whitespace-only or empty text parts) is
//!   LiteLLM's placeholder text `[System: Empty message content sanitised to
//!   satisfy protocol]`, since Anthropic refuses empty text and empty turns.
//! - User, `tool` and legacy `function` messages become user turns, assistant
//!   messages assistant turns; consecutive turns of one role are merged because
//!   the API requires alternation. Tool results are `tool_result` blocks in a
//!   user turn. An assistant message with nothing to say (no text, no calls;
//!   blank text counts as none) adds nothing, so the turns around it merge too
//!   (LiteLLM sends its placeholder as the assistant's words, which the model
//!   may then echo, or continue as a prefill).
//! - Trailing whitespace is trimmed from the text of a final assistant turn
//!   (a prefill), which Anthropic rejects otherwise (LiteLLM does the same).
//! - `max_tokens` is `max_completion_tokens` or `max_tokens`, else what
//!   LiteLLM sends: with a thinking budget, the budget plus
//!   [`DEFAULT_MAX_TOKENS`]; otherwise the model's maximum output from the
//!   built-in table beside the prices
//!   ([`crate::config::pricing::max_output_tokens`]: 64000 for
//!   `claude-sonnet-4-5`, as LiteLLM's model map says). For a model the table
//!   lacks, [`DEFAULT_MAX_TOKENS`]: LiteLLM sends 128000 there, which
//!   Anthropic refuses for every model with a lower maximum.
//! - `stop` -> `stop_sequences`; whitespace-only sequences (which Anthropic
//!   rejects) are dropped when `drop_params` is on, as LiteLLM does.
//! - `user` -> `metadata.user_id`, skipped when it looks like an e-mail
//!   address or a phone number (LiteLLM's `_valid_user_id`: Anthropic refuses
//!   personal data there). When `user` is absent, `metadata.user_id` and then
//!   `safety_identifier` (OpenAI's newer name for the same idea) are used.
//! - `tools` -> `{name, description, input_schema}`; a missing schema becomes
//!   `{"type":"object","properties":{}}` and a schema without `"type":"object"`
//!   is coerced to one (LiteLLM does both).
//! - `tool_choice`: `auto` -> `{type:auto}`, `required` -> `{type:any}`,
//!   `none` -> `{type:none}`, a named function -> `{type:tool,name}`;
//!   `parallel_tool_calls: p` sets `disable_parallel_tool_use: !p` (on
//!   `{type:auto}` when no choice was given, not at all with `none`), as
//!   LiteLLM does. Without `tools`, `tool_choice` is not sent (Anthropic
//!   refuses a choice without tools).
//! - `response_format` `json_schema` on Claude 4.5 and later (LiteLLM's
//!   `supports_native_structured_output` models): Anthropic's
//!   `output_format: {type: json_schema, schema}` with `anthropic-beta:
//!   structured-outputs-2025-11-13`, as LiteLLM sends; the answer is plain
//!   text. Only when the schema fits as written (every object closed by
//!   `additionalProperties: false`, as strict schemas are; none of the
//!   constraints Anthropic refuses, nor `oneOf`): LiteLLM rewrites other
//!   schemas to fit (closes objects, drops constraints into descriptions),
//!   which changes what the answer may be. Otherwise, on older models, and
//!   for `json_object` (which LiteLLM now sends nothing for, so no JSON is
//!   asked for): LiteLLM's JSON mode, a
//!   tool named [`JSON_TOOL_NAME`] whose input schema is the requested schema,
//!   forced through `tool_choice` (not forced when thinking is on: Anthropic
//!   refuses forced tool use with thinking). Answers turn that tool call back
//!   into message content; `json_object` gets an open object schema.
//! - `reasoning_effort` -> `thinking: {type: enabled, budget_tokens}` with
//!   LiteLLM's budgets (minimal/low 1024, medium 2048, high 4096; `none` adds
//!   nothing). Anthropic-native `thinking` and `top_k` pass through unchanged
//!   (LiteLLM forwards provider-specific parameters).
//! - Assistant `thinking_blocks` (LiteLLM's field, which this gateway also
//!   returns) are sent back first in the assistant turn, as Anthropic requires
//!   when thinking is combined with tools.
//! - Images: `data:<mime>;base64,...` -> a base64 `image` source
//!   (`application/pdf` -> a `document`); `http(s)` URLs -> a `url` source.
//!   LiteLLM downloads URLs and inlines them; a filter cannot block on a fetch
//!   and Anthropic fetches URL sources itself.
//! - Tool calls in the conversation need `tools` on the request (Anthropic
//!   refuses them otherwise); LiteLLM rejects such requests too unless
//!   `modify_params` is set, which this gateway does not have.
//!
//! Parameter policy (`drop_params` off -> 400 naming the parameter and the
//! provider; on -> dropped):
//!
//! - unsupported:
//!   [`OPENAI_ONLY_PARAMS`](crate::provider::common::params::OPENAI_ONLY_PARAMS),
//!   [`PARAMS`]`.unsupported`, `n` > 1, and any other parameter the
//!   gateway does not know. LiteLLM forwards unknown parameters to Anthropic,
//!   which rejects them with a 400; refusing here names the parameter and lets
//!   `drop_params` work for them as well.
//! - accepted and ignored (they change nothing the client sees):
//!   [`OPENAI_ACCOUNT_PARAMS`](crate::provider::common::params::OPENAI_ACCOUNT_PARAMS),
//!   plus `stream_options` (used for the usage chunk).
//!
//! # Response
//!
//! Text blocks are concatenated into `content` (`null` when there is none);
//! `tool_use` blocks become `tool_calls` with `input` serialised as the
//! `arguments` string; `thinking` blocks become `reasoning_content` and, with
//! `redacted_thinking`, `thinking_blocks` (LiteLLM's fields). The `id` is
//! [`ResponseMeta::id`] in answers and in every stream chunk, as LiteLLM returns
//! its own `chatcmpl-` id rather than Anthropic's `msg_` id. `model` is the model
//! Anthropic reports. Usage: `prompt_tokens` = `input_tokens` +
//! `cache_creation_input_tokens` + `cache_read_input_tokens` (LiteLLM counts
//! cache tokens as prompt tokens), with `prompt_tokens_details.cached_tokens`
//! when Anthropic reported cache reads. See [`finish_reason`] for
//! `stop_reason`.

mod request;
mod response;
mod stream;
pub mod vertex;

use serde_json::{Map, Value};

use super::openai_compat::openai_style_error;
use super::{
    endpoint_path, RequestContext, ResponseMeta, StreamTranslator, Translated, Translator,
    UpstreamRequest,
};
use crate::api::error::{upstream_status_kind, ErrorKind, GatewayError};
use crate::api::request::ClientRequest;
use crate::config::Deployment;
use crate::provider::common::errors::snippet;
use crate::provider::common::params::ParamPolicy;
use crate::provider::common::usage::CachedPromptCounts;

/// The Anthropic translator.
pub struct Anthropic;

/// Provider name used in error messages.
const PROVIDER: &str = "anthropic";

/// `anthropic-version` sent when the deployment sets no `api_version`.
pub const DEFAULT_API_VERSION: &str = "2023-06-01";

/// `max_tokens` when the client sets none and the model's maximum is not
/// known (Anthropic requires one), and the headroom above a thinking budget
/// (LiteLLM's `DEFAULT_MAX_TOKENS`).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The `anthropic-beta` value a request with `output_format` needs
/// (LiteLLM's `ANTHROPIC_BETA_HEADER_VALUES.STRUCTURED_OUTPUT_2025_09_25`).
pub const STRUCTURED_OUTPUTS_BETA: &str = "structured-outputs-2025-11-13";

/// Name of the tool that carries `response_format` (LiteLLM's
/// `RESPONSE_FORMAT_TOOL_NAME`). A `tool_use` of this name in an answer is
/// turned back into message content. A client tool with this exact name would
/// be treated the same way.
pub const JSON_TOOL_NAME: &str = "json_tool_call";

/// What the Messages API does with the OpenAI parameters this translator
/// does not read as fields: `unsupported` have no Anthropic equivalent;
/// `native` are Anthropic's own, passed through unchanged; `mapped` are
/// read by name. (`metadata`, one of the OpenAI account parameters, is read
/// for `user_id` only.)
pub const PARAMS: ParamPolicy = ParamPolicy {
    unsupported: &["frequency_penalty", "presence_penalty", "seed"],
    ignored: &[],
    native: &["thinking", "top_k"],
    mapped: &["reasoning_effort", "safety_identifier"],
};

impl Translator for Anthropic {
    fn request(
        &self,
        req: &ClientRequest,
        dep: &Deployment,
        ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError> {
        let (body, output_format) = request::request_body(req, dep, ctx.drop_params)?;
        let version = dep
            .api_version
            .clone()
            .unwrap_or_else(|| DEFAULT_API_VERSION.to_string());
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("anthropic-version".to_string(), version),
        ];
        if let Some(key) = &dep.api_key {
            headers.push(("x-api-key".to_string(), key.clone()));
        }
        if output_format {
            headers.push(("anthropic-beta".into(), STRUCTURED_OUTPUTS_BETA.into()));
        }
        Ok(UpstreamRequest {
            path: endpoint_path(&dep.api_base.path, "/v1/messages"),
            headers,
            body,
        })
    }

    fn response(&self, body: &[u8], meta: &ResponseMeta) -> Result<Translated, GatewayError> {
        response::translate_response(body, meta)
    }

    fn stream(&self, meta: ResponseMeta) -> Box<dyn StreamTranslator> {
        Box::new(stream::AnthropicStream::new(meta))
    }

    fn error(&self, status: u16, body: &[u8]) -> GatewayError {
        error_from_body(status, body)
    }
}

/// The Messages body as a cloud that hosts Claude takes it (Vertex AI's
/// rawPredict, Bedrock's InvokeModel): the Anthropic translation without
/// `model` (the path names it), with the cloud's `anthropic_version`, and
/// the beta features the request needs named in the body's
/// `anthropic_beta` list instead of the `anthropic-beta` header.
pub(crate) fn hosted_body(
    req: &ClientRequest,
    dep: &Deployment,
    ctx: &RequestContext,
    version: &str,
) -> Result<Map<String, Value>, GatewayError> {
    let native = Anthropic.request(req, dep, ctx)?;
    let Value::Object(mut fields) = serde_json::from_slice(&native.body).map_err(internal)? else {
        return Err(GatewayError::new(500, ErrorKind::Internal, "not an object"));
    };
    fields.remove("model");
    fields.insert("anthropic_version".into(), Value::String(version.into()));
    let betas: Vec<Value> = native
        .headers
        .iter()
        .filter(|(k, _)| k == "anthropic-beta")
        .flat_map(|(_, v)| v.split(','))
        .map(|b| Value::String(b.trim().to_string()))
        .collect();
    if !betas.is_empty() {
        fields.insert("anthropic_beta".into(), Value::Array(betas));
    }
    Ok(fields)
}

/// A body the gateway wrote that does not serialise: its own failure.
pub(crate) fn internal(e: serde_json::Error) -> GatewayError {
    GatewayError::new(500, ErrorKind::Internal, e.to_string())
}

// ---------------------------------------------------------------------------
// Shared by the response and the stream
// ---------------------------------------------------------------------------

/// OpenAI `finish_reason` for an Anthropic `stop_reason`.
///
/// `end_turn`, `stop_sequence` -> `stop`; `max_tokens` -> `length`;
/// `tool_use` -> `tool_calls`; `refusal` -> `content_filter` and `compaction`
/// -> `length` (LiteLLM's table). `pause_turn`, a missing reason and unknown
/// reasons -> `stop` (LiteLLM's default). `model_context_window_exceeded` ->
/// `length`: LiteLLM has no entry and says `stop`, but the answer was cut
/// short, which is what `length` tells a client.
pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded" | "compaction") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// Anthropic token counts, as reported so far (`cache_write` is
/// Anthropic's `cache_creation_input_tokens`).
type TokenCounts = CachedPromptCounts;

/// Take the counts present in an Anthropic `usage` object (checked JSON
/// text); a count that is not a non-negative integer (`null` included) is
/// ignored.
fn merge_counts(counts: &mut TokenCounts, usage: &str) {
    for (key, value) in crate::codec::json_in::members(usage) {
        let Ok(n) = value.parse::<u64>() else {
            continue;
        };
        match key.text().as_ref() {
            "input_tokens" => counts.input = n,
            "output_tokens" => counts.output = n,
            "cache_creation_input_tokens" => counts.cache_write = Some(n),
            "cache_read_input_tokens" => counts.cache_read = Some(n),
            _ => {}
        }
    }
}

/// The counts of one `usage` object.
fn counts_of(usage: &str) -> TokenCounts {
    let mut counts = TokenCounts::default();
    merge_counts(&mut counts, usage);
    counts
}

fn invalid_response(detail: impl std::fmt::Display) -> GatewayError {
    crate::provider::invalid_response(PROVIDER, detail)
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// The HTTP status Anthropic documents for an error `type`, for errors that
/// arrive inside a stream (which has already answered 200). Unknown types are
/// taken as 500, as LiteLLM does for stream errors.
fn status_for_error_type(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

/// An Anthropic error body (`{"type":"error","error":{"type","message"}}`) as
/// a gateway error: status and kind from [`upstream_status_kind`], message
/// from the body, `code` = Anthropic's error type. JSON bodies of another
/// shape (no top-level `"type": "error"`: a proxy in between) go through the
/// OpenAI-family reader; non-JSON bodies are quoted.
fn error_from_body(status: u16, body: &[u8]) -> GatewayError {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        let (mapped, kind) = upstream_status_kind(status);
        let mut e = GatewayError::new(mapped, kind, format!("{PROVIDER} returned HTTP {status}"));
        if !body.is_empty() {
            e.message = format!("{PROVIDER} returned HTTP {status}: {}", snippet(body));
        }
        return e;
    };
    let anthropic_shaped = v.get("type").and_then(Value::as_str) == Some("error");
    match anthropic_error(status, &v).filter(|_| anthropic_shaped) {
        Some(e) => e,
        None => openai_style_error(status, body),
    }
}

/// The gateway error for a parsed Anthropic error object, if it is one.
fn anthropic_error(status: u16, v: &Value) -> Option<GatewayError> {
    let err = v.get("error")?.as_object()?;
    let kind_str = err.get("type").and_then(Value::as_str);
    let message = err.get("message").and_then(Value::as_str);
    if kind_str.is_none() && message.is_none() {
        return None;
    }
    let (mapped, kind) = upstream_status_kind(status);
    let mut e = GatewayError::new(
        mapped,
        kind,
        message
            .map(str::to_string)
            .unwrap_or_else(|| format!("{PROVIDER} returned HTTP {status}")),
    );
    e.code = kind_str.map(str::to_string);
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::error::ErrorKind;
    use crate::api::openai::Usage;

    #[test]
    fn stop_reasons_map() {
        assert_eq!(finish_reason(Some("end_turn")), "stop");
        assert_eq!(finish_reason(Some("stop_sequence")), "stop");
        assert_eq!(finish_reason(Some("max_tokens")), "length");
        assert_eq!(finish_reason(Some("tool_use")), "tool_calls");
        assert_eq!(finish_reason(Some("refusal")), "content_filter");
        assert_eq!(finish_reason(Some("pause_turn")), "stop");
        assert_eq!(finish_reason(None), "stop");
    }

    #[test]
    fn token_counts_include_cache() {
        let mut c = counts_of(
            r#"{"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 5, "cache_creation_input_tokens": null}"#,
        );
        merge_counts(&mut c, r#"{"output_tokens": 7}"#);
        assert_eq!(c.usage(), Usage::new(15, 7));
        assert_eq!(
            serde_json::to_value(c.openai()).unwrap()["prompt_tokens_details"]["cached_tokens"],
            5
        );
        let odd = counts_of(
            r#"{"input_tokens": -1, "output_tokens": 2.0, "cache_read_input_tokens": "3"}"#,
        );
        assert_eq!(odd, TokenCounts::default());
        assert_eq!(counts_of("[1]"), TokenCounts::default());
    }

    #[test]
    fn stream_error_types_map_to_statuses() {
        let e = anthropic_error(
            status_for_error_type("overloaded_error"),
            &serde_json::json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
        )
        .unwrap();
        assert_eq!((e.status, e.kind), (503, ErrorKind::Unavailable));
        assert_eq!(e.code.as_deref(), Some("overloaded_error"));
    }

    #[test]
    fn odd_answers_do_not_panic() {
        let meta = ResponseMeta {
            id: "x".into(),
            created: 1,
            model: "m".into(),
            include_usage: true,
        };
        for body in [
            &b"null"[..],
            b"[]",
            b"{\"content\": [1, \"x\", null, {\"type\": 5}]}",
            b"{\"content\": [{\"type\": \"text\", \"text\": 7}], \"usage\": [1], \"model\": 3}",
            b"{\"content\": [{\"type\": \"tool_use\", \"id\": \"a\", \"name\": \"b\", \"input\": \"str\"}], \"stop_reason\": 9}",
            b"{\"type\": \"error\", \"error\": \"boom\"}",
        ] {
            let _ = response::translate_response(body, &meta);
            let _ = error_from_body(500, body);
        }
    }
}
