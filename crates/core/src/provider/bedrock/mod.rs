//! AWS Bedrock: the Converse API for chat, InvokeModel for embeddings and
//! for Claude's Messages body ([`invoke`], `bedrock/invoke/...`), every
//! request SigV4-signed in the filter.
//!
//! References: the Bedrock Runtime API reference (`Converse`,
//! `ConverseStream`, `InvokeModel`, the `ContentBlock`, `ToolConfiguration`,
//! `InferenceConfiguration` and `TokenUsage` types), the Titan and Cohere
//! embedding parameter pages, and AWS SigV4 (see [`crate::provider::bedrock::sigv4`]). Where the
//! OpenAI -> Bedrock mapping is a choice this follows LiteLLM
//! (`litellm/llms/bedrock/chat/converse_transformation.py`, its
//! `_bedrock_converse_messages_pt` and `AWSEventStreamDecoder`, and
//! `llms/bedrock/embed/*`); departures say why.
//!
//! # Endpoint and signing
//!
//! - Chat: `POST {api_base}/model/{modelId}/converse`, or `/converse-stream`
//!   when the client streams. Embeddings: `POST {api_base}/model/{modelId}/invoke`.
//!   The model id is percent-encoded as one path segment (LiteLLM:
//!   `quote(model_id, safe="")`), so `...-v1:0` travels as `...-v1%3A0` and an
//!   inference-profile ARN's `/` as `%2F`. A leading `converse/` in the model
//!   (LiteLLM's route selector, `bedrock/converse/<id>`) is removed.
//! - Credentials: `litellm_params` `aws_access_key_id`, `aws_secret_access_key`,
//!   optional `aws_session_token`, and `aws_region_name` (or `region_name`).
//!   [`Translator::validate`] refuses a deployment without them, naming the
//!   field, and refuses an `api_base` of the form
//!   `bedrock-runtime.<region>.amazonaws.com` whose region differs from
//!   `aws_region_name` (the signature would not verify).
//! - The signature covers the final body, the path above and `host` = the
//!   api_base authority (what the filter sends as `:authority`), plus
//!   `content-type` (and `accept` for InvokeModel) and `x-amz-date` /
//!   `x-amz-security-token`, at the request's clock (`RequestContext::now_ms`).
//!
//! # Chat request (Converse)
//!
//! - `system`/`developer` messages -> top-level `system: [{text}]`, empty
//!   texts skipped (LiteLLM).
//! - user turns: text -> `{text}`; `image_url` with a base64 `data:` URL ->
//!   `{image: {format: png|jpeg|gif|webp, source: {bytes}}}` and PDFs ->
//!   `{document: {format: pdf, name, source: {bytes}}}`. Bedrock takes image
//!   bytes only; LiteLLM downloads http(s) URLs, which a filter cannot do
//!   inline, so an http(s) image URL is a 400 that says to send base64.
//! - `tool`/`function` results -> `{toolResult: {toolUseId, content: [{text}]}}`
//!   in a user turn (image parts of a result become image blocks); assistant
//!   `tool_calls` -> `{toolUse: {toolUseId, name, input}}`; assistant
//!   `thinking_blocks` (LiteLLM's field, returned by this gateway too) go first
//!   as `reasoningContent`, as Bedrock requires with thinking and tools.
//!   Consecutive turns of one role are merged (Bedrock requires alternation);
//!   a final assistant turn (prefill) loses trailing whitespace.
//! - Tool calls or results in `messages` without `tools` -> 400 (LiteLLM does
//!   the same unless `modify_params`).
//! - `inferenceConfig`: `maxTokens` (`max_completion_tokens` or `max_tokens`;
//!   with thinking and no limit, budget + 4096 as LiteLLM),
//!   `temperature`, `topP`, `stopSequences` (empty strings dropped, LiteLLM).
//! - `tools` -> `toolConfig.tools[].toolSpec {name, description, inputSchema:
//!   {json}}` (a missing schema is an empty object schema); `tool_choice`:
//!   `auto` -> `{auto:{}}`, `required` -> `{any:{}}`, a named function ->
//!   `{tool:{name}}`; `none` has no Bedrock form: 400, or dropped with
//!   `drop_params` (the tools are still sent), as LiteLLM.
//! - `parallel_tool_calls: true` asks for Bedrock's default and passes;
//!   `false` has no Converse form: 400 unless `drop_params`.
//! - `response_format` `json_object` / `json_schema`: LiteLLM's JSON mode, a
//!   tool named [`JSON_TOOL_NAME`] with the schema, forced with
//!   `toolChoice.tool` unless thinking is on; its input comes back as message
//!   content (streamed as content deltas). LiteLLM names the tool after the
//!   schema's `name` in older versions; the fixed name is recognisable in
//!   answers and streams without request state.
//! - `additionalModelRequestFields` (LiteLLM's home for model-specific
//!   parameters): `top_k` for Anthropic models (`{top_k}`) and Amazon Nova
//!   (`{inferenceConfig: {topK}}`) as LiteLLM; `top_k` on other models is
//!   refused (LiteLLM drops it silently); `thinking` passes through;
//!   `reasoning_effort` on Anthropic models -> `thinking` with LiteLLM's
//!   budgets (minimal/low 1024, medium 2048, high 4096). A client
//!   `additionalModelRequestFields` object is merged in, and Bedrock's own
//!   `guardrailConfig`, `performanceConfig` and `requestMetadata` pass through.
//! - Unsupported: `n` > 1 and
//!   [`OPENAI_ONLY_PARAMS`](crate::provider::common::params::OPENAI_ONLY_PARAMS),
//!   [`PARAMS`]`.unsupported` and unknown parameters
//!   -> 400 naming parameter and provider, or dropped with `drop_params`.
//!   [`OPENAI_ACCOUNT_PARAMS`](crate::provider::common::params::OPENAI_ACCOUNT_PARAMS)
//!   and `user` are accepted and ignored.
//! - Tool names are sent as given; LiteLLM rewrites names Bedrock refuses
//!   (over 64 characters, characters outside `[a-zA-Z0-9_-]`) and maps them
//!   back, which needs per-request state a translator does not keep: Bedrock's
//!   400 is mapped instead.
//!
//! # Chat response
//!
//! `output.message.content`: text blocks concatenated into `content` (`null`
//! when none), `toolUse` -> `tool_calls` (`input` serialised as `arguments`),
//! `reasoningContent.reasoningText` -> `reasoning_content` plus
//! `thinking_blocks` (`{type: thinking, thinking, signature}`;
//! `redactedContent` -> `{type: redacted_thinking, data}`), as LiteLLM.
//! `stopReason` -> `finish_reason` by [`finish_reason`]. Usage: `prompt_tokens`
//! = `inputTokens` + `cacheReadInputTokens` + `cacheWriteInputTokens` (LiteLLM),
//! `prompt_tokens_details.cached_tokens` = cache reads. `id` is the gateway's
//! (Bedrock has none), `model` the deployment's model id.
//!
//! # Stream (ConverseStream)
//!
//! The `application/vnd.amazon.eventstream` body is decoded by
//! [`crate::codec::eventstream::Decoder`]; each event's JSON payload becomes chunks:
//! `messageStart` -> the role chunk, `contentBlockStart` with `toolUse` -> a
//! tool call's id and name, `contentBlockDelta` `text` / `toolUse.input` /
//! `reasoningContent.text` -> content / arguments / `reasoning_content`,
//! `messageStop` -> the `finish_reason` chunk, `metadata` -> usage (the usage
//! chunk when asked for) and `[DONE]`. An `exception` message
//! (`throttlingException` ...) becomes an OpenAI error event with the status
//! Bedrock gives that exception, then `[DONE]`. A framing error (CRC mismatch,
//! impossible length) or a stream cut short ends the client stream with an
//! error event and `[DONE]`; nothing after it is read.
//!
//! # Embeddings (InvokeModel)
//!
//! - Titan text (`amazon.titan-embed-text-*`, `amazon.titan-embed-g1-text-*`):
//!   `{"inputText"}`, plus `dimensions` on v2 (v1 refuses it). Titan embeds one
//!   text per call; LiteLLM loops over a list, which one upstream request
//!   cannot, so a list of more than one input is a 400 that says so.
//!   Usage: `inputTextTokenCount`.
//! - Cohere (`cohere.embed-*`): `{"texts", "input_type"}` with LiteLLM's
//!   default `input_type: search_document`; a client `input_type`, `truncate`
//!   or `embedding_types` passes through; `dimensions` ->
//!   `output_dimension` on `cohere.embed-v4` only. The body carries no token
//!   count (Bedrock sends it in the `X-Amzn-Bedrock-Input-Token-Count` header,
//!   which a translator does not see), so usage is 0.
//! - `encoding_format: base64` needs the response step to know the request's
//!   choice, which [`ResponseMeta`] does not carry yet: vectors come back as
//!   floats (the `openai` SDK accepts both).

use serde_json::{json, Map, Value};

use super::{
    stream_error_event, RequestContext, ResponseMeta, StreamTranslator, Translated, Translator,
    UpstreamRequest,
};
use crate::api::error::{upstream_status_kind, ErrorKind, GatewayError};
use crate::api::openai::{Content, ContentPart, ParsedRequest, Role, ToolCall, Usage};
use crate::codec::eventstream::{Decoder, Message as EsMessage};
use crate::codec::sse::{write_data, write_done};
use crate::config::Deployment;
use crate::provider::common::chunk::{Chunk, ChunkChoice, Delta, FunctionDelta, ToolCallDelta};
use crate::provider::common::embedding;
use crate::provider::common::errors::snippet;
use crate::provider::common::errors::unsupported_param;
use crate::provider::common::media::{data_url, is_http_url, DataUrl};
use crate::provider::common::params::{one_choice_only, ParamPolicy};
use crate::provider::common::reasoning::claude_thinking;
use crate::provider::common::usage::{CachedPromptCounts, UsageOut};

pub mod sigv4;

mod request;
use request::*;
mod messages;
use messages::*;
mod response;
pub use response::*;
mod stream;
use stream::*;
mod embeddings;
use embeddings::*;
pub mod invoke;

/// The Bedrock translator.
pub struct Bedrock;

/// Provider name in error messages.
const PROVIDER: &str = "bedrock";

/// SigV4 service name of the Bedrock runtime.
pub const SIGNING_SERVICE: &str = "bedrock";

/// Name of the tool that carries `response_format` (LiteLLM's
/// `RESPONSE_FORMAT_TOOL_NAME`).
pub const JSON_TOOL_NAME: &str = "json_tool_call";

/// Added to a thinking budget for `maxTokens` when the client sets no limit
/// (LiteLLM's `DEFAULT_MAX_TOKENS`).
const THINKING_HEADROOM: u64 = 4096;

/// What Converse does with the OpenAI parameters it does not read as
/// fields: `unsupported` have no Converse equivalent; `native` are
/// Bedrock's own top-level request fields, passed through unchanged;
/// `mapped` are read by name.
pub const PARAMS: ParamPolicy = ParamPolicy {
    unsupported: &["frequency_penalty", "presence_penalty", "seed"],
    ignored: &[],
    native: &["guardrailConfig", "performanceConfig", "requestMetadata"],
    mapped: &[
        "top_k",
        "thinking",
        "reasoning_effort",
        "additionalModelRequestFields",
    ],
};

impl Translator for Bedrock {
    fn request(
        &self,
        req: &crate::api::request::ClientRequest,
        dep: &Deployment,
        ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError> {
        let req = req.parsed()?;
        let body = converse_body(req, dep, ctx.drop_params)?;
        let body = serde_json::to_vec(&body)
            .map_err(|e| GatewayError::new(500, ErrorKind::Internal, e.to_string()))?;
        let op = if req.chat.is_stream() {
            "converse-stream"
        } else {
            "converse"
        };
        let path = model_path(dep, op);
        let headers = vec![("content-type".to_string(), "application/json".to_string())];
        signed(dep, ctx, path, headers, body)
    }

    fn validate(&self, dep: &Deployment) -> Result<(), String> {
        let region = region(dep).ok_or_else(|| {
            "bedrock needs `aws_region_name` (the AWS region of the Bedrock runtime)".to_string()
        })?;
        for field in ["aws_access_key_id", "aws_secret_access_key"] {
            if dep.params.get(field).is_none_or(|v| v.is_empty()) {
                return Err(format!(
                    "bedrock needs `{field}` (requests are SigV4-signed with the deployment's \
                     AWS credentials)"
                ));
            }
        }
        let host = dep.api_base.host().to_ascii_lowercase();
        if let Some(base_region) = host
            .strip_prefix("bedrock-runtime.")
            .and_then(|h| h.strip_suffix(".amazonaws.com"))
        {
            let base_region = base_region.strip_suffix("-fips").unwrap_or(base_region);
            if base_region != region {
                return Err(format!(
                    "api_base `{host}` is in region `{base_region}` but aws_region_name is \
                     `{region}`: the signature would not verify"
                ));
            }
        }
        if model_id(dep).is_empty() {
            return Err(format!("bedrock model `{}`: no model id", dep.model));
        }
        Ok(())
    }

    fn response(&self, body: &[u8], meta: &ResponseMeta) -> Result<Translated, GatewayError> {
        translate_response(body, meta)
    }

    fn stream(&self, meta: ResponseMeta) -> Box<dyn StreamTranslator> {
        Box::new(BedrockStream::new(meta))
    }

    fn error(&self, status: u16, body: &[u8]) -> GatewayError {
        error_from_body(status, body)
    }

    fn embeddings_request(
        &self,
        req: &crate::api::request::ClientRequest,
        dep: &Deployment,
        ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError> {
        let req = req.parsed()?;
        let body = embeddings_body(req, dep, ctx.drop_params)?;
        let body = serde_json::to_vec(&body)
            .map_err(|e| GatewayError::new(500, ErrorKind::Internal, e.to_string()))?;
        let headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("accept".to_string(), "application/json".to_string()),
        ];
        signed(dep, ctx, model_path(dep, "invoke"), headers, body)
    }

    fn embeddings_response(
        &self,
        body: &[u8],
        meta: &ResponseMeta,
    ) -> Result<Translated, GatewayError> {
        translate_embeddings(body, meta, false)
    }
}

// ---------------------------------------------------------------------------
// Endpoint, credentials, signing
// ---------------------------------------------------------------------------

fn region(dep: &Deployment) -> Option<&str> {
    ["aws_region_name", "region_name"]
        .iter()
        .find_map(|k| dep.params.get(*k))
        .map(String::as_str)
        .filter(|r| !r.is_empty())
}

/// The model id without LiteLLM's `converse/` or `invoke/` route selector.
fn model_id(dep: &Deployment) -> &str {
    let m = &dep.model;
    m.strip_prefix("converse/")
        .or_else(|| m.strip_prefix("invoke/"))
        .unwrap_or(m)
}

/// `{api_base path}/model/{percent-encoded id}/{op}`.
fn model_path(dep: &Deployment, op: &str) -> String {
    let mut enc = String::new();
    for &b in model_id(dep).as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            enc.push(char::from(b));
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{}/model/{enc}/{op}", dep.api_base.path)
}

/// The request with SigV4 headers added.
fn signed(
    dep: &Deployment,
    ctx: &RequestContext,
    path: String,
    mut headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> Result<UpstreamRequest, GatewayError> {
    let missing = |what: &str| {
        GatewayError::new(
            500,
            ErrorKind::Internal,
            format!("bedrock deployment {} has no {what}", dep.id),
        )
    };
    let param = |k: &str| dep.params.get(k).filter(|v| !v.is_empty()).cloned();
    let creds = sigv4::Credentials {
        access_key_id: param("aws_access_key_id").ok_or_else(|| missing("aws_access_key_id"))?,
        secret_access_key: param("aws_secret_access_key")
            .ok_or_else(|| missing("aws_secret_access_key"))?,
        session_token: param("aws_session_token"),
    };
    let region = region(dep).ok_or_else(|| missing("aws_region_name"))?;
    let body = super::with_extra_body(body, dep);
    let signature = sigv4::sign(
        &creds,
        &sigv4::Scope {
            region,
            service: SIGNING_SERVICE,
            unix_seconds: ctx.now_ms / 1000,
        },
        &sigv4::Request {
            method: "POST",
            authority: &dep.api_base.authority,
            path: &path,
            headers: &headers,
            body: &body,
        },
    );
    headers.extend(signature.headers);
    Ok(UpstreamRequest {
        path,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests;
