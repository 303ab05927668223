//! Cohere v2 Chat API (`POST /v2/chat`) and Embed API (`POST /v2/embed`),
//! for the `cohere/` and `cohere_chat/` prefixes.
//!
//! Reference: <https://docs.cohere.com/reference/chat>,
//! <https://docs.cohere.com/reference/chat-stream>,
//! <https://docs.cohere.com/reference/embed>. LiteLLM
//! (`litellm/llms/cohere/chat/v2_transformation.py`, its
//! `CohereV2ModelResponseIterator`, `litellm/llms/cohere/embed/`) is
//! followed where the mapping is a choice; the places that differ say so.
//!
//! # Request
//!
//! The v2 API is close to OpenAI's: `messages` with `system`, `user`,
//! `assistant` and `tool` roles, `tool_calls` on assistant messages
//! (`{id, type: "function", function: {name, arguments}}`), `tool_call_id` on
//! tool messages, and OpenAI-shaped `tools`. So:
//!
//! - `system` and `developer` messages -> `system` messages (text only).
//! - `user` content: a string, or `text` and `image_url` parts (Cohere's
//!   vision models take both `http(s)` URLs and base64 `data:` URLs, with an
//!   optional `detail`). Other part types are refused.
//! - `assistant` messages: text -> `content`; with `tool_calls`, the text
//!   goes in `tool_plan`, where Cohere puts its own text before tool calls
//!   (LiteLLM forwards the OpenAI message as is).
//! - `tool` messages -> `{role: tool, tool_call_id, content}`; the legacy
//!   `function` role has no call id and is refused.
//! - `max_completion_tokens` / `max_tokens` -> `max_tokens`; `temperature`;
//!   `top_p` -> `p`; `top_k` -> `k`; `stop` -> `stop_sequences`; `seed`,
//!   `frequency_penalty`, `presence_penalty` unchanged (all as LiteLLM).
//!   Cohere-native `k`, `p`, `thinking`, `safety_mode`, `documents`,
//!   `citation_options`, `strict_tools` and `priority` pass through (and win
//!   over the OpenAI names).
//! - `tool_choice`: `auto` -> not sent (Cohere's default), `required` ->
//!   `"REQUIRED"`, `none` -> `"NONE"`; a named function -> `"REQUIRED"` with
//!   `tools` narrowed to that function (Cohere has no named choice). LiteLLM
//!   lists `tool_choice` as supported but never sends it.
//!   `parallel_tool_calls: false` cannot be expressed (Cohere may always call
//!   several tools): unsupported.
//! - `response_format`: `json_object` -> `{type: json_object}`,
//!   `json_schema` -> `{type: json_object, json_schema: <schema>}`, `text` ->
//!   not sent.
//! - `reasoning_effort` -> `thinking`: `none` -> `{type: disabled}`, any
//!   other effort -> `{type: enabled}` (Cohere's reasoning models choose their
//!   own budget; native `thinking` with `token_budget` passes through).
//! - `stream: true` is sent for streams; Cohere always reports usage at the
//!   end, so `stream_options` is not forwarded.
//!
//! Parameter policy, as in `anthropic.rs` (`drop_params` off -> 400 naming
//! the parameter and the provider; on -> dropped): unsupported are `n` > 1
//! (LiteLLM maps `n` to `num_generations`, which v2 no longer has),
//! `parallel_tool_calls: false`,
//! [`OPENAI_ONLY_PARAMS`](crate::provider::common::params::OPENAI_ONLY_PARAMS),
//! [`PARAMS`]`.unsupported` and any parameter
//! the gateway does not know;
//! [`OPENAI_ACCOUNT_PARAMS`](crate::provider::common::params::OPENAI_ACCOUNT_PARAMS)
//! and `user` are accepted and
//! not sent.
//!
//! # Response
//!
//! `message.content` `text` items are joined into `content`; `thinking`
//! items become `reasoning_content`; `tool_calls` become OpenAI tool calls
//! (arguments are already JSON strings). A `tool_plan` becomes `content` when
//! there is no text (LiteLLM drops it), so it returns as `tool_plan` on the
//! next turn. `finish_reason`: `COMPLETE` and `STOP_SEQUENCE` -> `stop`,
//! `MAX_TOKENS` -> `length`, `TOOL_CALL` -> `tool_calls`, the safety stops
//! `ERROR_TOXIC` and `SAFETY` -> `content_filter` (as LiteLLM's
//! `map_finish_reason`; an `error` text beside them, and a missing
//! `message`, do not make them failures), `ERROR_LIMIT` -> `length`
//! (LiteLLM: `stop`; it is the context limit), unknown -> `stop`; `ERROR`
//! and `TIMEOUT` mean the generation failed and become a 502 / 504 error
//! (LiteLLM reports `stop`, hiding the failure). Usage from `usage.tokens` (what the model
//! processed, as LiteLLM), else `usage.billed_units`. The `id` is the
//! gateway's `chatcmpl-` id, `model` the deployment's model (Cohere reports
//! none).
//!
//! Streams are events whose JSON carries a `type`, framed as SSE or as one
//! bare JSON object per line (both seen from Cohere; the first byte that is
//! not whitespace decides, see `stream::Framing`): `message-start` ->
//! the role chunk; `content-delta` -> `content` (or `reasoning_content` for
//! `thinking`); `tool-plan-delta` -> `content`; `tool-call-start` /
//! `tool-call-delta` -> `tool_calls` deltas; `message-end` -> the finish
//! chunk, the usage chunk when asked for, `[DONE]` (an `error` there ends the
//! stream with an error event). `citation-*`, `content-start` /
//! `content-end`, `tool-call-end` and unknown events carry nothing to
//! translate. A stream that ends before `message-end` ends with an error
//! event. The finish reason is mapped as for whole answers: LiteLLM's
//! iterator looks for `message-end` under an `event` key the v2 stream does
//! not have, so its streams always finish with `stop`, a safety stop
//! included; here a streamed safety stop is `content_filter` too.
//!
//! # Errors
//!
//! Cohere errors are `{"message": "..."}` (sometimes with an `id`); the
//! message is kept and the status mapped like every provider's, with
//! Cohere's 498 (invalid token) as 401.
//!
//! # Embeddings
//!
//! `POST /v2/embed` with `{model, texts, input_type, embedding_types:
//! ["float"]}`; `input_type` defaults to `search_document` (LiteLLM's
//! default) and may be given by the client; `dimensions` ->
//! `output_dimension` (embed-v4 models); Cohere's `truncate` passes
//! through. The answer's `embeddings.float` become the OpenAI list of float
//! vectors (for `encoding_format: "base64"` see
//! [`embedding::reencode_base64`]), usage from
//! `meta.billed_units.input_tokens`.

use serde_json::{json, Map, Value};

use super::openai_compat::openai_style_error;
use super::{
    endpoint_path, RequestContext, ResponseMeta, StreamTranslator, Translated, Translator,
    UpstreamRequest,
};
use crate::api::error::{ErrorKind, GatewayError};
use crate::api::openai::{Content, ParsedRequest, Role, Usage};
use crate::codec::sse::SseDecoder;
use crate::config::Deployment;
use crate::provider::common::chunk::{ChunkWriter, Delta};
use crate::provider::common::embedding;
use crate::provider::common::errors::snippet;
use crate::provider::common::errors::unsupported_param;
use crate::provider::common::media::{data_url, is_http_url};
use crate::provider::common::params::{one_choice_only, ParamPolicy};

mod request;
use request::*;
mod response;
use response::*;
mod stream;
use stream::*;
/// The Cohere translator.
pub struct Cohere;

/// Provider name used in error messages.
const PROVIDER: &str = "cohere";

/// What the v2 Chat API does with the OpenAI parameters it does not read
/// as fields: `unsupported` have no Cohere equivalent; `native` are
/// Cohere's own parameters, passed through unchanged; `mapped` are read by
/// name.
pub const PARAMS: ParamPolicy = ParamPolicy {
    unsupported: &[],
    ignored: &[],
    native: &[
        "k",
        "p",
        "thinking",
        "safety_mode",
        "documents",
        "citation_options",
        "strict_tools",
        "priority",
    ],
    mapped: &[
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "top_k",
        "reasoning_effort",
    ],
};

/// Embeddings parameters Cohere takes as they are.
const EMBED_NATIVE_PARAMS: &[&str] = &["input_type", "truncate"];

impl Translator for Cohere {
    fn request(
        &self,
        req: &crate::api::request::ClientRequest,
        dep: &Deployment,
        ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError> {
        let req = req.parsed()?;
        let body = request_body(req, dep, ctx.drop_params)?;
        Ok(UpstreamRequest {
            path: endpoint_path(&dep.api_base.path, "/v2/chat"),
            headers: headers(dep),
            body: to_vec(&body)?,
        })
    }

    fn embeddings_request(
        &self,
        req: &crate::api::request::ClientRequest,
        dep: &Deployment,
        ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError> {
        let req = req.parsed()?;
        let e = embedding::view(req)?;
        embedding::check_params(
            e,
            PROVIDER,
            &dep.model,
            true,
            EMBED_NATIVE_PARAMS,
            ctx.drop_params,
        )?;
        let texts = embedding::texts(e, PROVIDER)?;
        let input_type = e
            .extra
            .get("input_type")
            .filter(|v| v.is_string())
            .cloned()
            .unwrap_or_else(|| Value::from("search_document"));
        let mut body = json!({
            "model": dep.model,
            "texts": texts,
            "input_type": input_type,
            "embedding_types": ["float"],
        });
        if let Some(d) = e.dimensions {
            body["output_dimension"] = Value::from(d);
        }
        if let Some(t) = e.extra.get("truncate").filter(|v| !v.is_null()) {
            body["truncate"] = t.clone();
        }
        Ok(UpstreamRequest {
            path: endpoint_path(&dep.api_base.path, "/v2/embed"),
            headers: headers(dep),
            body: to_vec(&body)?,
        })
    }

    fn embeddings_response(
        &self,
        body: &[u8],
        meta: &ResponseMeta,
    ) -> Result<Translated, GatewayError> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| embedding::invalid(&format!("not JSON ({e}): {}", snippet(body))))?;
        let vectors = v
            .get("embeddings")
            .and_then(|e| e.get("float"))
            .and_then(Value::as_array)
            .ok_or_else(|| embedding::invalid("no `embeddings.float` list"))?;
        let tokens = v
            .get("meta")
            .and_then(|m| m.get("billed_units"))
            .and_then(|b| b.get("input_tokens"))
            .map(count)
            .unwrap_or(0);
        let (out, usage) = embedding::openai_list(vectors, &meta.model, tokens, false)?;
        Ok(Translated {
            body: to_vec(&out)?,
            usage: Some(usage),
        })
    }

    fn response(&self, body: &[u8], meta: &ResponseMeta) -> Result<Translated, GatewayError> {
        translate_response(body, meta)
    }

    fn stream(&self, meta: ResponseMeta) -> Box<dyn StreamTranslator> {
        Box::new(CohereStream {
            framing: Framing::Undecided,
            w: ChunkWriter::new(meta),
            tools: Vec::new(),
            usage: None,
        })
    }

    fn error(&self, status: u16, body: &[u8]) -> GatewayError {
        error_from_body(status, body)
    }
}

fn headers(dep: &Deployment) -> Vec<(String, String)> {
    let mut h = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("accept".to_string(), "application/json".to_string()),
    ];
    if let Some(key) = &dep.api_key {
        h.push(("authorization".to_string(), format!("Bearer {key}")));
    }
    h
}

fn to_vec(v: &Value) -> Result<Vec<u8>, GatewayError> {
    serde_json::to_vec(v).map_err(|e| GatewayError::new(500, ErrorKind::Internal, e.to_string()))
}

/// A token count that may arrive as an integer or a float.
fn count(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f.round() as u64))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
