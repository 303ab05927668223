//! AWS Bedrock: the Converse API for chat, InvokeModel for embeddings, every
//! request SigV4-signed in the filter.
//!
//! References: the Bedrock Runtime API reference (`Converse`,
//! `ConverseStream`, `InvokeModel`, the `ContentBlock`, `ToolConfiguration`,
//! `InferenceConfiguration` and `TokenUsage` types), the Titan and Cohere
//! embedding parameter pages, and AWS SigV4 (see [`crate::provider::sigv4`]). Where the
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
//! - Unsupported: `n` > 1 and [`UNSUPPORTED_PARAMS`] and unknown parameters
//!   -> 400 naming parameter and provider, or dropped with `drop_params`.
//!   [`IGNORED_PARAMS`] and `user` are accepted and ignored.
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

use super::chunk::{
    Chunk, ChunkChoice, Delta, FunctionDelta, PromptTokensDetails, ToolCallDelta, UsageOut,
};
use super::openai_compat::snippet;
use super::{
    stream_error_event, RequestContext, ResponseMeta, StreamTranslator, Translated, Translator,
    UpstreamRequest,
};
use crate::api::error::{upstream_status_kind, ErrorKind, GatewayError};
use crate::api::openai::{Content, ContentPart, ParsedRequest, Role, ToolCall, Usage};
use crate::codec::eventstream::{Decoder, Message as EsMessage};
use crate::codec::sse::{write_data, write_done};
use crate::config::Deployment;
use crate::provider::sigv4;

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

/// OpenAI parameters Converse has no equivalent for: 400 unless `drop_params`.
pub const UNSUPPORTED_PARAMS: &[&str] = &[
    "audio",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "modalities",
    "prediction",
    "presence_penalty",
    "seed",
    "top_logprobs",
    "verbosity",
    "web_search_options",
];

/// OpenAI parameters accepted and ignored: OpenAI storage, caching, tiers.
pub const IGNORED_PARAMS: &[&str] = &["metadata", "prompt_cache_key", "service_tier", "store"];

/// Bedrock's own top-level request fields, passed through unchanged.
const NATIVE_FIELDS: &[&str] = &["guardrailConfig", "performanceConfig", "requestMetadata"];

/// Parameters read by name from the request's extra fields.
const MAPPED_EXTRA: &[&str] = &[
    "top_k",
    "thinking",
    "reasoning_effort",
    "additionalModelRequestFields",
];

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
        let model = model_id(dep);
        if model.is_empty() || model.starts_with("invoke/") {
            return Err(format!(
                "bedrock model `{}`: only the Converse route is served (bedrock/<model id> or \
                 bedrock/converse/<model id>)",
                dep.model
            ));
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

/// The model id without LiteLLM's `converse/` route selector.
fn model_id(dep: &Deployment) -> &str {
    dep.model.strip_prefix("converse/").unwrap_or(&dep.model)
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

// ---------------------------------------------------------------------------
// Chat request
// ---------------------------------------------------------------------------

/// The model family a model id belongs to, for model-specific fields: the id
/// without a cross-region inference prefix (`us.`, `eu.`, `apac.`, `global.`
/// ...: a short first segment before the provider name).
fn base_model(dep: &Deployment) -> &str {
    let id = model_id(dep);
    match id.split_once('.') {
        Some((prefix, rest))
            if prefix.len() <= 6
                && !matches!(
                    prefix,
                    "amazon" | "cohere" | "meta" | "ai21" | "mistral" | "writer" | "qwen"
                ) =>
        {
            rest
        }
        _ => id,
    }
}

fn unsupported(param: &str, what: &str, dep: &Deployment) -> GatewayError {
    GatewayError::bad_param(
        param,
        format!(
            "{what} `{param}` is not supported by provider {PROVIDER} (model {}); remove it, or \
             set `litellm_settings.drop_params: true` to drop unsupported parameters",
            dep.model
        ),
    )
    .with_code("unsupported_parameter")
}

/// Reject (or, with `drop_params`, accept) parameters Converse cannot take.
fn check_params(req: &ParsedRequest, dep: &Deployment) -> Result<(), GatewayError> {
    if req.chat.n.is_some_and(|n| n > 1) {
        return Err(unsupported("n", "parameter", dep));
    }
    if req.chat.parallel_tool_calls == Some(false) {
        return Err(unsupported("parallel_tool_calls", "parameter", dep));
    }
    if req.chat.tool_choice.as_ref().and_then(Value::as_str) == Some("none") {
        return Err(GatewayError::bad_param(
            "tool_choice",
            format!(
                "tool_choice `none` is not supported by provider {PROVIDER} (Converse has auto, \
                 any and tool); remove it, or set `litellm_settings.drop_params: true`"
            ),
        )
        .with_code("unsupported_parameter"));
    }
    for (key, value) in &req.chat.extra {
        let key = key.as_str();
        if value.is_null()
            || IGNORED_PARAMS.contains(&key)
            || NATIVE_FIELDS.contains(&key)
            || MAPPED_EXTRA.contains(&key)
        {
            continue;
        }
        let asks_nothing = match key {
            "logprobs" => value == &Value::Bool(false),
            "modalities" => value == &json!(["text"]),
            _ => false,
        };
        if asks_nothing {
            continue;
        }
        let what = if UNSUPPORTED_PARAMS.contains(&key) {
            "parameter"
        } else {
            "unknown parameter"
        };
        return Err(unsupported(key, what, dep));
    }
    Ok(())
}

/// The Converse body for `req`.
fn converse_body(
    req: &ParsedRequest,
    dep: &Deployment,
    drop_params: bool,
) -> Result<Value, GatewayError> {
    let chat = &req.chat;
    if !drop_params {
        check_params(req, dep)?;
    }
    let base = base_model(dep);
    let anthropic_model = base.starts_with("anthropic.");
    let converted = convert_messages(req)?;

    let mut body = Map::new();
    body.insert("messages".into(), Value::Array(converted.turns));
    if !converted.system.is_empty() {
        body.insert("system".into(), Value::Array(converted.system));
    }

    // additionalModelRequestFields: the client's own, then what we map.
    let mut additional = match req.raw.get("additionalModelRequestFields") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => {
            return Err(GatewayError::bad_param(
                "additionalModelRequestFields",
                "'additionalModelRequestFields' must be an object",
            ))
        }
    };
    let thinking = match req.raw.get("thinking") {
        None | Some(Value::Null) => {
            reasoning_effort_thinking(req, dep, anthropic_model, drop_params)?
        }
        Some(t @ Value::Object(_)) => Some(t.clone()),
        Some(_) => return Err(GatewayError::bad_param(
            "thinking",
            "'thinking' must be an object such as {\"type\": \"enabled\", \"budget_tokens\": 2048}",
        )),
    };
    let thinking_budget = thinking.as_ref().and_then(|t| {
        (t.get("type").and_then(Value::as_str) == Some("enabled"))
            .then(|| t.get("budget_tokens").and_then(Value::as_u64))
            .flatten()
    });
    let thinking_on = thinking
        .as_ref()
        .is_some_and(|t| t.get("type").and_then(Value::as_str) != Some("disabled"));
    if let Some(t) = thinking {
        additional.insert("thinking".into(), t);
    }
    if let Some(k) = req.raw.get("top_k").filter(|v| !v.is_null()) {
        if anthropic_model {
            additional.insert("top_k".into(), k.clone());
        } else if base.starts_with("amazon.nova") {
            additional.insert("inferenceConfig".into(), json!({ "topK": k }));
        } else if !drop_params {
            return Err(unsupported("top_k", "parameter", dep));
        }
    }

    let mut inference = Map::new();
    let max_tokens = chat
        .max_output_tokens()
        .or_else(|| thinking_budget.map(|b| b.saturating_add(THINKING_HEADROOM)));
    if let Some(n) = max_tokens {
        inference.insert("maxTokens".into(), Value::from(n));
    }
    if let Some(t) = req.raw.get("temperature").filter(|v| !v.is_null()) {
        inference.insert("temperature".into(), t.clone());
    }
    if let Some(p) = req.raw.get("top_p").filter(|v| !v.is_null()) {
        inference.insert("topP".into(), p.clone());
    }
    if let Some(stop) = &chat.stop {
        let list: Vec<String> = stop
            .to_vec()
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        if !list.is_empty() {
            inference.insert("stopSequences".into(), json!(list));
        }
    }
    if !inference.is_empty() {
        body.insert("inferenceConfig".into(), Value::Object(inference));
    }

    // Tools, the JSON-mode tool, and the choice.
    let mut tools = match &chat.tools {
        Some(defs) => map_tools(defs)?,
        None => Vec::new(),
    };
    let mut tool_choice = map_tool_choice(chat.tool_choice.as_ref())?;
    if let Some(schema) =
        crate::provider::json_mode_schema(chat.response_format.as_ref(), PROVIDER)?
    {
        tools.push(json!({ "toolSpec": {
            "name": JSON_TOOL_NAME,
            "inputSchema": { "json": schema },
        }}));
        if !thinking_on {
            tool_choice = Some(json!({ "tool": { "name": JSON_TOOL_NAME } }));
        }
    }
    if converted.has_tool_blocks && tools.is_empty() {
        return Err(GatewayError::bad_param(
            "tools",
            "bedrock does not accept tool calls or tool results in `messages` unless the request \
             also lists the tools in `tools`",
        ));
    }
    if !tools.is_empty() {
        let mut config = Map::new();
        config.insert("tools".into(), Value::Array(tools));
        if let Some(tc) = tool_choice {
            config.insert("toolChoice".into(), tc);
        }
        body.insert("toolConfig".into(), Value::Object(config));
    }
    if !additional.is_empty() {
        body.insert(
            "additionalModelRequestFields".into(),
            Value::Object(additional),
        );
    }
    for key in NATIVE_FIELDS {
        if let Some(v) = req.raw.get(*key).filter(|v| !v.is_null()) {
            body.insert((*key).into(), v.clone());
        }
    }
    Ok(Value::Object(body))
}

/// `reasoning_effort` as an Anthropic `thinking` object (LiteLLM's budgets),
/// for Anthropic models; other models refuse it (or drop it).
fn reasoning_effort_thinking(
    req: &ParsedRequest,
    dep: &Deployment,
    anthropic_model: bool,
    drop_params: bool,
) -> Result<Option<Value>, GatewayError> {
    let effort = match req.raw.get("reasoning_effort") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return Err(GatewayError::bad_param(
                "reasoning_effort",
                "'reasoning_effort' must be a string",
            ))
        }
    };
    if !anthropic_model {
        return if drop_params {
            Ok(None)
        } else {
            Err(unsupported("reasoning_effort", "parameter", dep))
        };
    }
    let budget = match effort {
        "none" => return Ok(None),
        "minimal" | "low" => 1024,
        "medium" => 2048,
        "high" => 4096,
        other => {
            return Err(GatewayError::bad_param(
                "reasoning_effort",
                format!(
                    "reasoning_effort `{other}` is not supported by provider {PROVIDER}; use \
                     none, minimal, low, medium or high"
                ),
            ))
        }
    };
    Ok(Some(json!({ "type": "enabled", "budget_tokens": budget })))
}

/// OpenAI function tools as Converse `toolSpec`s.
fn map_tools(defs: &[crate::api::openai::ToolDef]) -> Result<Vec<Value>, GatewayError> {
    let mut out = Vec::with_capacity(defs.len());
    for (i, def) in defs.iter().enumerate() {
        if def.kind != "function" {
            return Err(GatewayError::bad_param(
                &format!("tools[{i}].type"),
                format!(
                    "tool type `{}` is not supported by provider {PROVIDER}; only `function` tools are",
                    def.kind
                ),
            ));
        }
        let schema = match &def.function.parameters {
            None | Some(Value::Null) => json!({ "type": "object", "properties": {} }),
            Some(Value::Object(o)) => {
                let mut o = o.clone();
                if o.get("type").and_then(Value::as_str) != Some("object") {
                    o.insert("type".into(), Value::from("object"));
                    o.entry("properties").or_insert_with(|| json!({}));
                }
                Value::Object(o)
            }
            Some(_) => {
                return Err(GatewayError::bad_param(
                    &format!("tools[{i}].function.parameters"),
                    "function parameters must be a JSON Schema object",
                ))
            }
        };
        let mut spec = Map::new();
        spec.insert("name".into(), Value::String(def.function.name.clone()));
        if let Some(d) = def.function.description.as_ref().filter(|d| !d.is_empty()) {
            spec.insert("description".into(), Value::String(d.clone()));
        }
        spec.insert("inputSchema".into(), json!({ "json": schema }));
        out.push(json!({ "toolSpec": Value::Object(spec) }));
    }
    Ok(out)
}

/// OpenAI `tool_choice` as a Converse `toolChoice` (`none` was handled by the
/// parameter check: refused, or dropped here).
fn map_tool_choice(choice: Option<&Value>) -> Result<Option<Value>, GatewayError> {
    let bad = |detail: &str| {
        GatewayError::bad_param(
            "tool_choice",
            format!("tool_choice {detail}: use \"auto\", \"required\" or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}"),
        )
    };
    let by_word = |w: &str| match w {
        "auto" => Ok(Some(json!({ "auto": {} }))),
        "required" | "any" => Ok(Some(json!({ "any": {} }))),
        "none" => Ok(None),
        other => Err(bad(&format!("`{other}` is not supported"))),
    };
    match choice {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => by_word(s),
        Some(Value::Object(o)) => {
            let kind = o.get("type").and_then(Value::as_str).unwrap_or("function");
            if kind == "function" || o.contains_key("function") {
                match o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                {
                    Some(name) => Ok(Some(json!({ "tool": { "name": name } }))),
                    None => Err(bad("names no function")),
                }
            } else {
                by_word(kind)
            }
        }
        Some(_) => Err(bad("must be a string or an object")),
    }
}

/// Messages in Converse shape.
struct Converted {
    system: Vec<Value>,
    turns: Vec<Value>,
    has_tool_blocks: bool,
}

#[derive(Default)]
struct Turns {
    turns: Vec<(&'static str, Vec<Value>)>,
}

impl Turns {
    fn push(&mut self, role: &'static str, blocks: Vec<Value>) {
        if blocks.is_empty() {
            return;
        }
        match self.turns.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => self.turns.push((role, blocks)),
        }
    }
}

fn convert_messages(req: &ParsedRequest) -> Result<Converted, GatewayError> {
    let raw_messages = req.raw.get("messages").and_then(Value::as_array);
    let mut system = Vec::new();
    let mut turns = Turns::default();
    let mut has_tool_blocks = false;
    let mut tool_uses: Vec<(String, String)> = Vec::new();

    for (i, m) in req.chat.messages.iter().enumerate() {
        let raw = raw_messages.and_then(|list| list.get(i));
        let at = |what: &str| format!("messages[{i}]{what}");
        match m.role {
            Role::System | Role::Developer => {
                for text in text_only(m.content.as_ref(), &at(".content"))? {
                    if !text.is_empty() {
                        system.push(json!({ "text": text }));
                    }
                }
            }
            Role::User => {
                let blocks = match &m.content {
                    None => Vec::new(),
                    Some(Content::Text(s)) if s.is_empty() => Vec::new(),
                    Some(Content::Text(s)) => vec![json!({ "text": s })],
                    Some(Content::Parts(parts)) => user_parts(parts, i, &at(".content"))?,
                };
                turns.push("user", blocks);
            }
            Role::Tool | Role::Function => {
                let id = match (&m.tool_call_id, m.role) {
                    (Some(id), _) => id.clone(),
                    (None, Role::Function) => m
                        .name
                        .as_ref()
                        .and_then(|n| tool_uses.iter().rev().find(|(name, _)| name == n))
                        .map(|(_, id)| id.clone())
                        .ok_or_else(|| {
                            GatewayError::bad_param(
                                &at(".tool_call_id"),
                                format!(
                                    "messages[{i}] is a function result that matches no earlier \
                                     tool call; set tool_call_id"
                                ),
                            )
                        })?,
                    (None, _) => {
                        return Err(GatewayError::bad_param(
                            &at(".tool_call_id"),
                            format!("messages[{i}] has role tool but no tool_call_id"),
                        ))
                    }
                };
                let content = match &m.content {
                    None => vec![json!({ "text": "" })],
                    Some(Content::Text(s)) => vec![json!({ "text": s })],
                    Some(Content::Parts(parts)) => user_parts(parts, i, &at(".content"))?,
                };
                has_tool_blocks = true;
                turns.push(
                    "user",
                    vec![json!({ "toolResult": { "toolUseId": id, "content": content } })],
                );
            }
            Role::Assistant => {
                let mut blocks = Vec::new();
                if let Some(Value::Array(thinking)) = raw.and_then(|r| r.get("thinking_blocks")) {
                    blocks.extend(thinking.iter().filter_map(reasoning_block));
                }
                for text in text_only(m.content.as_ref(), &at(".content"))? {
                    if !text.is_empty() {
                        blocks.push(json!({ "text": text }));
                    }
                }
                for (j, call) in m.tool_calls.iter().flatten().enumerate() {
                    let block = tool_use_block(call, &at(&format!(".tool_calls[{j}]")))?;
                    tool_uses.push((call.function.name.clone(), call.id.clone()));
                    has_tool_blocks = true;
                    blocks.push(block);
                }
                if let Some(fc) = raw
                    .and_then(|r| r.get("function_call"))
                    .filter(|v| !v.is_null())
                {
                    let call: crate::api::openai::FunctionCall = serde_json::from_value(fc.clone())
                        .map_err(|e| {
                            GatewayError::bad_param(
                                &at(".function_call"),
                                format!("invalid function_call: {e}"),
                            )
                        })?;
                    let call = ToolCall {
                        id: format!("tooluse_function_call_{i}"),
                        kind: "function".into(),
                        function: call,
                    };
                    let block = tool_use_block(&call, &at(".function_call"))?;
                    tool_uses.push((call.function.name.clone(), call.id.clone()));
                    has_tool_blocks = true;
                    blocks.push(block);
                }
                turns.push("assistant", blocks);
            }
        }
    }

    // A final assistant turn (a prefill) must not end in whitespace.
    if let Some((role, blocks)) = turns.turns.last_mut() {
        if *role == "assistant" {
            for b in blocks.iter_mut() {
                if let Some(t) = b.get("text").and_then(Value::as_str) {
                    let trimmed = t.trim_end().to_string();
                    b["text"] = Value::String(trimmed);
                }
            }
            blocks.retain(|b| b.get("text") != Some(&Value::String(String::new())));
            if blocks.is_empty() {
                turns.turns.pop();
            }
        }
    }
    if turns.turns.is_empty() {
        return Err(GatewayError::bad_param(
            "messages",
            format!(
                "provider {PROVIDER} needs at least one user or assistant message besides \
                 system messages"
            ),
        ));
    }
    let turns = turns
        .turns
        .into_iter()
        .map(|(role, content)| json!({ "role": role, "content": content }))
        .collect();
    Ok(Converted {
        system,
        turns,
        has_tool_blocks,
    })
}

/// A LiteLLM thinking block as a Converse `reasoningContent` block.
fn reasoning_block(b: &Value) -> Option<Value> {
    match b.get("type").and_then(Value::as_str) {
        Some("thinking") => {
            let mut text = Map::new();
            text.insert(
                "text".into(),
                b.get("thinking").cloned().unwrap_or_else(|| json!("")),
            );
            if let Some(sig) = b.get("signature").filter(|s| s.is_string()) {
                text.insert("signature".into(), sig.clone());
            }
            Some(json!({ "reasoningContent": { "reasoningText": Value::Object(text) } }))
        }
        Some("redacted_thinking") => {
            let data = b.get("data").filter(|d| d.is_string())?;
            Some(json!({ "reasoningContent": { "redactedContent": data } }))
        }
        _ => None,
    }
}

fn text_only(content: Option<&Content>, param: &str) -> Result<Vec<String>, GatewayError> {
    match content {
        None => Ok(Vec::new()),
        Some(Content::Text(s)) => Ok(vec![s.clone()]),
        Some(Content::Parts(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| {
                if p.kind == "text" {
                    Ok(p.text.clone().unwrap_or_default())
                } else {
                    Err(unsupported_part(p, &format!("{param}[{j}]"), true))
                }
            })
            .collect(),
    }
}

fn user_parts(
    parts: &[ContentPart],
    message: usize,
    param: &str,
) -> Result<Vec<Value>, GatewayError> {
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let param = format!("{param}[{j}]");
        match p.kind.as_str() {
            "text" => {
                let text = p.text.clone().unwrap_or_default();
                if !text.is_empty() {
                    out.push(json!({ "text": text }));
                }
            }
            "image_url" => match &p.image_url {
                Some(img) => out.push(media_block(
                    img.url(),
                    &format!("{param}.image_url"),
                    &format!("document-{message}-{j}"),
                )?),
                None => {
                    return Err(GatewayError::bad_param(
                        &format!("{param}.image_url"),
                        "an image_url part needs an `image_url`",
                    ))
                }
            },
            _ => return Err(unsupported_part(p, &param, false)),
        }
    }
    Ok(out)
}

fn unsupported_part(p: &ContentPart, param: &str, text_only_role: bool) -> GatewayError {
    let detail = if text_only_role {
        "this role takes text parts only"
    } else {
        "supported part types are `text` and `image_url`"
    };
    GatewayError::bad_param(
        param,
        format!(
            "content part type `{}` is not supported by provider {PROVIDER} here ({detail})",
            p.kind
        ),
    )
    .with_code("unsupported_content_type")
}

/// A base64 `data:` URL as an image (or PDF document) block. Bedrock takes
/// bytes only: http(s) URLs are refused.
fn media_block(url: &str, param: &str, doc_name: &str) -> Result<Value, GatewayError> {
    let Some(rest) = url.strip_prefix("data:") else {
        let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Err(GatewayError::bad_param(
                param,
                format!(
                    "provider {PROVIDER} takes image bytes only, not image URLs, and the gateway \
                     does not fetch URLs: send the image as a base64 data URL \
                     (data:image/png;base64,...)"
                ),
            )
            .with_code("image_url_not_supported"));
        }
        return Err(GatewayError::bad_param(
            param,
            "image_url must be a base64 data URL for provider bedrock",
        ));
    };
    let bad = |why: &str| {
        GatewayError::bad_param(
            param,
            format!("image data URL {why}; expected data:<media type>;base64,<data>"),
        )
    };
    let (meta, data) = rest.split_once(',').ok_or_else(|| bad("has no data"))?;
    let mut fields = meta.split(';');
    let mime = fields
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if !fields.any(|f| f.trim().eq_ignore_ascii_case("base64")) {
        return Err(bad("is not base64-encoded"));
    }
    let format = match mime.as_str() {
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/png" => "png",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "application/pdf" => {
            return Ok(json!({ "document": {
                "format": "pdf",
                "name": doc_name,
                "source": { "bytes": data },
            }}))
        }
        other => {
            return Err(GatewayError::bad_param(
                param,
                format!(
                    "media type `{other}` is not supported by provider {PROVIDER}; use \
                     image/jpeg, image/png, image/gif, image/webp or application/pdf"
                ),
            ))
        }
    };
    Ok(json!({ "image": { "format": format, "source": { "bytes": data } } }))
}

fn tool_use_block(call: &ToolCall, param: &str) -> Result<Value, GatewayError> {
    if call.kind != "function" {
        return Err(GatewayError::bad_param(
            &format!("{param}.type"),
            format!("tool call type `{}` is not supported", call.kind),
        ));
    }
    let args = call.function.arguments.trim();
    let input = if args.is_empty() {
        json!({})
    } else {
        match serde_json::from_str::<Value>(args) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                return Err(GatewayError::bad_param(
                    &format!("{param}.function.arguments"),
                    format!(
                        "the arguments of tool call `{}` must encode a JSON object",
                        call.id
                    ),
                ))
            }
            Err(e) => {
                return Err(GatewayError::bad_param(
                    &format!("{param}.function.arguments"),
                    format!(
                        "the arguments of tool call `{}` are not valid JSON: {e}",
                        call.id
                    ),
                ))
            }
        }
    };
    Ok(json!({ "toolUse": {
        "toolUseId": call.id,
        "name": call.function.name,
        "input": input,
    }}))
}

// ---------------------------------------------------------------------------
// Chat response
// ---------------------------------------------------------------------------

/// OpenAI `finish_reason` for a Converse `stopReason`.
///
/// `end_turn`, `stop_sequence` -> `stop`; `max_tokens` and
/// `model_context_window_exceeded` -> `length`; `tool_use` -> `tool_calls`;
/// `guardrail_intervened`, `content_filtered` -> `content_filter` (LiteLLM's
/// `map_finish_reason`); missing or unknown -> `stop`.
pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("guardrail_intervened" | "content_filtered") => "content_filter",
        _ => "stop",
    }
}

/// Bedrock `TokenUsage`, as reported so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct TokenCounts {
    input: u64,
    output: u64,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
}

impl TokenCounts {
    fn from_value(u: &Value) -> Self {
        let get = |k: &str| u.get(k).and_then(Value::as_u64);
        TokenCounts {
            input: get("inputTokens").unwrap_or(0),
            output: get("outputTokens").unwrap_or(0),
            cache_read: get("cacheReadInputTokens"),
            cache_write: get("cacheWriteInputTokens"),
        }
    }

    fn usage(&self) -> Usage {
        let prompt = self
            .input
            .saturating_add(self.cache_read.unwrap_or(0))
            .saturating_add(self.cache_write.unwrap_or(0));
        Usage {
            prompt_tokens: prompt,
            completion_tokens: self.output,
            total_tokens: prompt.saturating_add(self.output),
        }
    }

    fn openai(&self) -> UsageOut {
        let u = self.usage();
        UsageOut {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
            prompt_tokens_details: self
                .cache_read
                .map(|cached_tokens| PromptTokensDetails { cached_tokens }),
        }
    }
}

fn invalid_response(detail: impl std::fmt::Display) -> GatewayError {
    crate::provider::invalid_response(PROVIDER, detail)
}

/// A Converse answer as an OpenAI `chat.completion`.
fn translate_response(body: &[u8], meta: &ResponseMeta) -> Result<Translated, GatewayError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| invalid_response(format!("not JSON ({e}): {}", snippet(body))))?;
    let content = v
        .get("output")
        .and_then(|o| o.get("message"))
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .ok_or_else(|| invalid_response("no `output.message.content` array"))?;

    let mut text = String::new();
    let mut json_text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    for (i, block) in content.iter().enumerate() {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(tu) = block.get("toolUse") {
            let field = |k: &str| {
                tu.get(k)
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid_response(format!("content[{i}].toolUse has no `{k}`")))
            };
            let (id, name) = (field("toolUseId")?, field("name")?);
            let arguments = tu
                .get("input")
                .cloned()
                .unwrap_or_else(|| json!({}))
                .to_string();
            if name == JSON_TOOL_NAME {
                json_text = Some(arguments);
            } else {
                tool_calls.push(json!({
                    "id": id,
                    "type": "function",
                    "function": { "name": name, "arguments": arguments },
                }));
            }
        } else if let Some(rc) = block.get("reasoningContent") {
            if let Some(rt) = rc.get("reasoningText") {
                let t = rt.get("text").and_then(Value::as_str).unwrap_or("");
                reasoning.get_or_insert_with(String::new).push_str(t);
                let mut tb = Map::new();
                tb.insert("type".into(), json!("thinking"));
                tb.insert("thinking".into(), json!(t));
                if let Some(sig) = rt.get("signature").filter(|s| s.is_string()) {
                    tb.insert("signature".into(), sig.clone());
                }
                thinking_blocks.push(Value::Object(tb));
            } else if let Some(data) = rc.get("redactedContent") {
                thinking_blocks.push(json!({ "type": "redacted_thinking", "data": data }));
            }
        }
        // citationsContent, guardContent, images ... carry nothing a chat
        // completion has a field for.
    }
    let mut finish = finish_reason(v.get("stopReason").and_then(Value::as_str));
    if let Some(json_text) = json_text {
        text = json_text;
        if tool_calls.is_empty() && finish == "tool_calls" {
            finish = "stop";
        }
    }

    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    message.insert(
        "content".into(),
        if text.is_empty() {
            Value::Null
        } else {
            Value::String(text)
        },
    );
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    if let Some(r) = reasoning {
        message.insert("reasoning_content".into(), Value::String(r));
    }
    if !thinking_blocks.is_empty() {
        message.insert("thinking_blocks".into(), Value::Array(thinking_blocks));
    }
    let mut out = json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [{
            "index": 0,
            "message": Value::Object(message),
            "finish_reason": finish,
        }],
    });
    let usage = match v.get("usage").filter(|u| u.is_object()) {
        Some(u) => {
            let counts = TokenCounts::from_value(u);
            out["usage"] = json!(counts.openai());
            Some(counts.usage())
        }
        None => None,
    };
    let body = serde_json::to_vec(&out)
        .map_err(|e| GatewayError::new(500, ErrorKind::Internal, e.to_string()))?;
    Ok(Translated { body, usage })
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// The HTTP status Bedrock documents for an exception name (from a stream's
/// `:exception-type`, or an error body's `__type`).
fn status_for_exception(name: &str) -> u16 {
    let lower = name.to_ascii_lowercase();
    match lower.trim_end_matches("exception") {
        "validation" => 400,
        "accessdenied" | "unrecognizedclient" => 403,
        "resourcenotfound" => 404,
        "modeltimeout" => 408,
        "modelerror" | "modelstreamerror" => 424,
        "throttling" | "modelnotready" | "servicequotaexceeded" => 429,
        "serviceunavailable" => 503,
        _ => 500,
    }
}

/// The gateway status and kind for an exception inside a stream: the shared
/// table, except 424 (`modelStreamErrorException`: the model failed) which is
/// an upstream failure. (HTTP error answers keep the shared table, which the
/// pipeline applies to the status line: 424 stays 424.)
fn stream_exception_kind(status: u16) -> (u16, ErrorKind) {
    match status {
        424 => (502, ErrorKind::Upstream),
        s => upstream_status_kind(s),
    }
}

/// A Bedrock error body (`{"message": ...}`; REST-JSON errors also say
/// `Message`, and some carry `__type`) as a gateway error. The exception name
/// travels in the `x-amzn-errortype` header, which a translator does not see,
/// so `code` is set only when the body names it.
fn error_from_body(status: u16, body: &[u8]) -> GatewayError {
    let (mapped, kind) = upstream_status_kind(status);
    let mut e = GatewayError::new(mapped, kind, format!("{PROVIDER} returned HTTP {status}"));
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        if !body.is_empty() {
            e.message = format!("{PROVIDER} returned HTTP {status}: {}", snippet(body));
        }
        return e;
    };
    let obj = v.get("error").filter(|o| o.is_object()).unwrap_or(&v);
    if let Some(m) = ["message", "Message"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str))
    {
        e.message = m.to_string();
    }
    if let Some(t) = ["__type", "code", "type"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str))
    {
        e.code = Some(exception_name(t).to_string());
    }
    e
}

/// `com.amazon.coral#ThrottlingException` or
/// `ThrottlingException:http://...` -> `ThrottlingException`.
fn exception_name(t: &str) -> &str {
    let t = t.rsplit('#').next().unwrap_or(t);
    t.split(':').next().unwrap_or(t)
}

// ---------------------------------------------------------------------------
// Stream
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Block {
    /// A client tool call: its OpenAI index and argument bytes sent so far.
    Tool { index: u32, args: usize },
    /// The JSON-mode tool: its input is streamed as content.
    JsonTool { args: usize },
}

/// Translates ConverseStream event-stream messages into OpenAI chunks.
///
/// Holds the event-stream decoder's unfinished message (bounded by
/// [`crate::codec::eventstream::MAX_MESSAGE_BYTES`]) and a few counters.
struct BedrockStream {
    decoder: Decoder,
    meta: ResponseMeta,
    started: bool,
    /// `messageStop` was seen (the finish chunk is out).
    stopped: bool,
    /// `[DONE]` was written: nothing more may follow.
    done: bool,
    blocks: Vec<(u64, Block)>,
    tool_calls: u32,
    json_mode: bool,
    counts: Option<TokenCounts>,
}

impl BedrockStream {
    fn new(meta: ResponseMeta) -> Self {
        BedrockStream {
            decoder: Decoder::new(),
            meta,
            started: false,
            stopped: false,
            done: false,
            blocks: Vec::new(),
            tool_calls: 0,
            json_mode: false,
            counts: None,
        }
    }

    fn write_chunk(&self, out: &mut Vec<u8>, choices: Vec<ChunkChoice>, usage: Option<UsageOut>) {
        let chunk = Chunk {
            id: &self.meta.id,
            object: "chat.completion.chunk",
            created: self.meta.created,
            model: &self.meta.model,
            choices,
            usage,
        };
        if let Ok(s) = serde_json::to_string(&chunk) {
            write_data(out, &s);
        }
    }

    fn write_delta(&mut self, out: &mut Vec<u8>, delta: Delta, finish: Option<&'static str>) {
        self.ensure_started(out);
        self.write_chunk(
            out,
            vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish,
            }],
            None,
        );
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            let delta = Delta {
                role: Some("assistant"),
                content: Some(String::new()),
                ..Delta::default()
            };
            self.write_delta(out, delta, None);
        }
    }

    fn fail(&mut self, out: &mut Vec<u8>, err: &GatewayError) {
        if self.done {
            return;
        }
        stream_error_event(err, out);
        write_done(out);
        self.done = true;
    }

    /// The usage chunk (when asked for) and `[DONE]`.
    fn close(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.ensure_started(out);
        if self.meta.include_usage {
            let usage = self.counts.unwrap_or_default().openai();
            self.write_chunk(out, Vec::new(), Some(usage));
        }
        write_done(out);
        self.done = true;
    }

    fn block(&mut self, index: u64) -> Option<&mut Block> {
        self.blocks
            .iter_mut()
            .find(|(i, _)| *i == index)
            .map(|(_, b)| b)
    }

    fn handle(&mut self, msg: &EsMessage, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        match msg.header_str(":message-type").unwrap_or("event") {
            "event" => {}
            "exception" => {
                let name = msg.header_str(":exception-type").unwrap_or("exception");
                let status = status_for_exception(name);
                let (mapped, kind) = stream_exception_kind(status);
                let message = serde_json::from_slice::<Value>(&msg.payload)
                    .ok()
                    .and_then(|v| {
                        ["message", "Message"]
                            .iter()
                            .find_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_string))
                    })
                    .unwrap_or_else(|| format!("{PROVIDER} stream exception {name}"));
                let err = GatewayError::new(mapped, kind, message).with_code(name);
                self.fail(out, &err);
                return;
            }
            _ => {
                let code = msg.header_str(":error-code").unwrap_or("error");
                let message = msg
                    .header_str(":error-message")
                    .unwrap_or("upstream stream error");
                let err = GatewayError::new(502, ErrorKind::Upstream, message).with_code(code);
                self.fail(out, &err);
                return;
            }
        }
        let event = msg.header_str(":event-type").unwrap_or("");
        let v: Value = if msg.payload.is_empty() {
            json!({})
        } else {
            match serde_json::from_slice(&msg.payload) {
                Ok(v) => v,
                Err(e) => {
                    let err = invalid_response(format!("stream event `{event}` is not JSON: {e}"));
                    self.fail(out, &err);
                    return;
                }
            }
        };
        let index = v
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        match event {
            "messageStart" => self.ensure_started(out),
            "contentBlockStart" => {
                let Some(tu) = v.get("start").and_then(|s| s.get("toolUse")) else {
                    return;
                };
                let field = |k: &str| tu.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                let name = field("name");
                let block = if name == JSON_TOOL_NAME {
                    self.json_mode = true;
                    Block::JsonTool { args: 0 }
                } else {
                    let i = self.tool_calls;
                    self.tool_calls = self.tool_calls.saturating_add(1);
                    let d = Delta {
                        tool_calls: Some(vec![ToolCallDelta {
                            index: i,
                            id: Some(field("toolUseId")),
                            kind: Some("function"),
                            function: FunctionDelta {
                                name: Some(name),
                                arguments: Some(String::new()),
                            },
                        }]),
                        ..Delta::default()
                    };
                    self.write_delta(out, d, None);
                    Block::Tool { index: i, args: 0 }
                };
                self.blocks.retain(|(i, _)| *i != index);
                self.blocks.push((index, block));
            }
            "contentBlockDelta" => {
                let Some(delta) = v.get("delta") else { return };
                if let Some(t) = delta.get("text").and_then(Value::as_str) {
                    if !t.is_empty() {
                        self.write_delta(out, Delta::content(t), None);
                    }
                } else if let Some(input) = delta
                    .get("toolUse")
                    .and_then(|t| t.get("input"))
                    .and_then(Value::as_str)
                {
                    if input.is_empty() {
                        return;
                    }
                    let d = match self.block(index) {
                        Some(Block::Tool { index: i, args }) => {
                            *args = args.saturating_add(input.len());
                            Delta::tool_args(*i, input.to_string())
                        }
                        Some(Block::JsonTool { args }) => {
                            *args = args.saturating_add(input.len());
                            Delta::content(input)
                        }
                        None => return,
                    };
                    self.write_delta(out, d, None);
                } else if let Some(t) = delta
                    .get("reasoningContent")
                    .and_then(|r| r.get("text"))
                    .and_then(Value::as_str)
                {
                    if !t.is_empty() {
                        let d = Delta {
                            reasoning_content: Some(t.to_string()),
                            ..Delta::default()
                        };
                        self.write_delta(out, d, None);
                    }
                }
                // reasoningContent.signature / redactedContent and citations
                // carry nothing a chunk has a field for.
            }
            "contentBlockStop" => {
                let Some(pos) = self.blocks.iter().position(|(i, _)| *i == index) else {
                    return;
                };
                let (_, block) = self.blocks.remove(pos);
                match block {
                    Block::Tool { index: i, args: 0 } => {
                        self.write_delta(out, Delta::tool_args(i, "{}".to_string()), None);
                    }
                    Block::JsonTool { args: 0 } => {
                        self.write_delta(out, Delta::content("{}"), None);
                    }
                    _ => {}
                }
            }
            "messageStop" => {
                let mut finish = finish_reason(v.get("stopReason").and_then(Value::as_str));
                if finish == "tool_calls" && self.json_mode && self.tool_calls == 0 {
                    finish = "stop";
                }
                self.write_delta(out, Delta::default(), Some(finish));
                self.stopped = true;
                if self.counts.is_some() {
                    self.close(out);
                }
            }
            "metadata" => {
                if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                    self.counts = Some(TokenCounts::from_value(u));
                }
                if self.stopped {
                    self.close(out);
                }
            }
            // Event types added later carry nothing to translate.
            _ => {}
        }
    }
}

impl StreamTranslator for BedrockStream {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let mut messages = Vec::new();
        let result = self.decoder.feed(bytes, &mut messages);
        for m in &messages {
            self.handle(m, out);
        }
        if let Err(e) = result {
            let err = invalid_response(e).with_code("upstream_invalid_response");
            self.fail(out, &err);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if let Err(e) = self.decoder.finish() {
            let err = GatewayError::new(
                502,
                ErrorKind::Upstream,
                format!("the upstream stream ended before it was complete: {e}"),
            )
            .with_code("upstream_stream_truncated");
            self.fail(out, &err);
            return;
        }
        if self.stopped {
            // messageStop without the metadata event: close with what we have.
            self.close(out);
            return;
        }
        let err = GatewayError::new(
            502,
            ErrorKind::Upstream,
            "the upstream stream ended before it was complete",
        )
        .with_code("upstream_stream_truncated");
        self.fail(out, &err);
    }

    fn usage(&self) -> Option<Usage> {
        self.counts.map(|c| c.usage())
    }
}

// ---------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EmbedFamily {
    /// Titan text v1 / G1: `inputText` only.
    TitanV1,
    /// Titan text v2: `inputText`, `dimensions`.
    TitanV2,
    /// Cohere embed v3: `texts`, `input_type`.
    CohereV3,
    /// Cohere embed v4: also `output_dimension`.
    CohereV4,
}

fn embed_family(dep: &Deployment) -> Option<EmbedFamily> {
    let id = base_model(dep);
    if id.starts_with("amazon.titan-embed-text-v2") {
        Some(EmbedFamily::TitanV2)
    } else if id.starts_with("amazon.titan-embed-text")
        || id.starts_with("amazon.titan-embed-g1-text")
    {
        Some(EmbedFamily::TitanV1)
    } else if id.starts_with("cohere.embed-v4") {
        Some(EmbedFamily::CohereV4)
    } else if id.starts_with("cohere.embed") {
        Some(EmbedFamily::CohereV3)
    } else {
        None
    }
}

fn embeddings_body(
    req: &ParsedRequest,
    dep: &Deployment,
    drop_params: bool,
) -> Result<Value, GatewayError> {
    let e = req
        .embeddings
        .as_ref()
        .ok_or_else(|| GatewayError::new(500, ErrorKind::Internal, "not an embeddings request"))?;
    let family = embed_family(dep).ok_or_else(|| {
        GatewayError::bad_param(
            "model",
            format!(
                "bedrock embeddings are served for Titan text (amazon.titan-embed-text-*) and \
                 Cohere (cohere.embed-*) models, not `{}`",
                dep.model
            ),
        )
        .with_code("unsupported_model")
    })?;
    let texts = e.input.texts().ok_or_else(|| {
        GatewayError::bad_param(
            "input",
            format!("provider {PROVIDER} takes text inputs only, not token ids"),
        )
        .with_code("unsupported_parameter")
    })?;
    let dimensions_ok = matches!(family, EmbedFamily::TitanV2 | EmbedFamily::CohereV4);
    let native: &[&str] = match family {
        EmbedFamily::TitanV1 | EmbedFamily::TitanV2 => &["normalize"],
        EmbedFamily::CohereV3 | EmbedFamily::CohereV4 => {
            &["input_type", "truncate", "embedding_types"]
        }
    };
    if !drop_params {
        if e.dimensions.is_some() && !dimensions_ok {
            return Err(unsupported("dimensions", "parameter", dep));
        }
        for (k, v) in &e.extra {
            if !v.is_null() && !native.contains(&k.as_str()) {
                return Err(unsupported(k, "parameter", dep));
            }
        }
    }
    let dimensions = e.dimensions.filter(|_| dimensions_ok);
    let mut body = Map::new();
    match family {
        EmbedFamily::TitanV1 | EmbedFamily::TitanV2 => {
            let [text] = texts.as_slice() else {
                return Err(GatewayError::bad_param(
                    "input",
                    format!(
                        "Titan embedding models take one input per request and this one has {}; \
                         send one string per request (the gateway makes one upstream call per \
                         client request)",
                        texts.len()
                    ),
                )
                .with_code("unsupported_parameter"));
            };
            body.insert("inputText".into(), json!(text));
            if let Some(d) = dimensions {
                body.insert("dimensions".into(), json!(d));
            }
            if let Some(n) = e.extra.get("normalize").filter(|v| !v.is_null()) {
                body.insert("normalize".into(), n.clone());
            }
        }
        EmbedFamily::CohereV3 | EmbedFamily::CohereV4 => {
            body.insert("texts".into(), json!(texts));
            let input_type = e
                .extra
                .get("input_type")
                .filter(|v| !v.is_null())
                .cloned()
                .unwrap_or_else(|| json!("search_document"));
            body.insert("input_type".into(), input_type);
            for k in ["truncate", "embedding_types"] {
                if let Some(v) = e.extra.get(k).filter(|v| !v.is_null()) {
                    body.insert(k.into(), v.clone());
                }
            }
            if let Some(d) = dimensions {
                body.insert("output_dimension".into(), json!(d));
            }
        }
    }
    Ok(Value::Object(body))
}

/// Little-endian `f32` bytes of a vector, base64 (OpenAI's `base64` format).
fn vector_base64(vector: &[Value]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bytes = Vec::with_capacity(vector.len() * 4);
    for x in vector {
        bytes.extend_from_slice(&(x.as_f64().unwrap_or(0.0) as f32).to_le_bytes());
    }
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(c.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(c.get(2).copied().unwrap_or(0));
        let sextet = |shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
        s.push(sextet(18));
        s.push(sextet(12));
        s.push(if c.len() > 1 { sextet(6) } else { '=' });
        s.push(if c.len() > 2 { sextet(0) } else { '=' });
    }
    s
}

/// A Titan (`embedding`) or Cohere (`embeddings`) answer as an OpenAI list.
fn translate_embeddings(
    body: &[u8],
    meta: &ResponseMeta,
    as_base64: bool,
) -> Result<Translated, GatewayError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| invalid_response(format!("not JSON ({e}): {}", snippet(body))))?;
    let (vectors, prompt_tokens): (Vec<&Value>, u64) = if let Some(one) = v.get("embedding") {
        let tokens = v
            .get("inputTextTokenCount")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        (vec![one], tokens)
    } else {
        let list = match v.get("embeddings") {
            Some(Value::Array(a)) => a,
            // `embedding_types` given: {"float": [[...]], ...}.
            Some(Value::Object(o)) => match o.get("float") {
                Some(Value::Array(a)) => a,
                _ => return Err(invalid_response("`embeddings` has no `float` vectors")),
            },
            _ => return Err(invalid_response("no `embedding` or `embeddings`")),
        };
        (list.iter().collect(), 0)
    };
    let mut data = Vec::with_capacity(vectors.len());
    for (i, vec) in vectors.into_iter().enumerate() {
        let Some(numbers) = vec.as_array().filter(|a| a.iter().all(Value::is_number)) else {
            return Err(invalid_response(format!(
                "embedding {i} is not a list of numbers"
            )));
        };
        let embedding = if as_base64 {
            Value::String(vector_base64(numbers))
        } else {
            vec.clone()
        };
        data.push(json!({ "object": "embedding", "index": i, "embedding": embedding }));
    }
    let out = json!({
        "object": "list",
        "data": data,
        "model": meta.model,
        "usage": { "prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens },
    });
    let body = serde_json::to_vec(&out)
        .map_err(|e| GatewayError::new(500, ErrorKind::Internal, e.to_string()))?;
    Ok(Translated {
        body,
        usage: Some(Usage::new(prompt_tokens, 0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::eventstream::{encode, encode_event, HeaderValue};

    fn meta(include_usage: bool) -> ResponseMeta {
        ResponseMeta {
            id: "x".into(),
            created: 1,
            model: "m".into(),
            include_usage,
        }
    }

    fn run(s: &mut BedrockStream, pieces: &[&[u8]]) -> String {
        let mut out = Vec::new();
        for p in pieces {
            s.feed(p, &mut out);
        }
        s.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn stop_reasons_map() {
        assert_eq!(finish_reason(Some("end_turn")), "stop");
        assert_eq!(finish_reason(Some("stop_sequence")), "stop");
        assert_eq!(finish_reason(Some("max_tokens")), "length");
        assert_eq!(finish_reason(Some("tool_use")), "tool_calls");
        assert_eq!(
            finish_reason(Some("guardrail_intervened")),
            "content_filter"
        );
        assert_eq!(finish_reason(Some("content_filtered")), "content_filter");
        assert_eq!(finish_reason(None), "stop");
    }

    #[test]
    fn exception_names_map_to_statuses() {
        assert_eq!(status_for_exception("throttlingException"), 429);
        assert_eq!(status_for_exception("ValidationException"), 400);
        assert_eq!(status_for_exception("modelStreamErrorException"), 424);
        assert_eq!(status_for_exception("serviceUnavailableException"), 503);
        assert_eq!(status_for_exception("internalServerException"), 500);
        assert_eq!(
            exception_name("com.amazon#ThrottlingException"),
            "ThrottlingException"
        );
        assert_eq!(
            exception_name("ValidationException:http://x"),
            "ValidationException"
        );
    }

    #[test]
    fn corrupt_crc_ends_with_one_error_event() {
        let mut bytes = encode_event("messageStart", br#"{"role":"assistant"}"#);
        let mut bad = encode_event(
            "contentBlockDelta",
            br#"{"contentBlockIndex":0,"delta":{"text":"hi"}}"#,
        );
        let n = bad.len();
        bad[n - 1] ^= 0x55;
        bytes.extend(bad);
        bytes.extend(encode_event("messageStop", br#"{"stopReason":"end_turn"}"#));
        let text = run(&mut BedrockStream::new(meta(false)), &[&bytes]);
        assert!(text.contains("CRC mismatch"), "{text}");
        assert!(!text.contains("\"hi\""));
        assert_eq!(text.matches("[DONE]").count(), 1);
        assert!(text.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn exception_message_becomes_error_event() {
        let ex = encode(
            &[
                (":message-type", HeaderValue::String("exception".into())),
                (
                    ":exception-type",
                    HeaderValue::String("throttlingException".into()),
                ),
                (
                    ":content-type",
                    HeaderValue::String("application/json".into()),
                ),
            ],
            br#"{"message":"Too many requests"}"#,
        );
        let text = run(&mut BedrockStream::new(meta(false)), &[&ex]);
        assert!(text.contains("\"code\":\"throttlingException\""), "{text}");
        assert!(text.contains("rate_limit_error"), "{text}");
        assert_eq!(text.matches("[DONE]").count(), 1);
    }

    #[test]
    fn garbage_and_odd_payloads_do_not_panic() {
        let payloads: [&[u8]; 8] = [
            b"null",
            b"[1,2]",
            br#"{"contentBlockIndex":"x","delta":5}"#,
            br#"{"contentBlockIndex":-1,"delta":{"toolUse":{"input":7}}}"#,
            br#"{"start":{"toolUse":[]}}"#,
            br#"{"usage":[1]}"#,
            br#"{"stopReason":9}"#,
            b"{not json",
        ];
        for p in payloads {
            for ev in [
                "messageStart",
                "contentBlockStart",
                "contentBlockDelta",
                "contentBlockStop",
                "messageStop",
                "metadata",
            ] {
                let bytes = encode_event(ev, p);
                let text = run(&mut BedrockStream::new(meta(true)), &[&bytes]);
                assert_eq!(text.matches("[DONE]").count(), 1, "{ev} {text}");
            }
        }
        let text = run(
            &mut BedrockStream::new(meta(false)),
            &[b"\xff\xff\xff\xff garbage"],
        );
        assert_eq!(text.matches("[DONE]").count(), 1);
        for body in [
            &b"null"[..],
            b"{}",
            b"{\"output\":{\"message\":{\"content\":[1,{\"toolUse\":5}]}}}",
        ] {
            let _ = translate_response(body, &meta(false));
            let _ = error_from_body(500, body);
            let _ = translate_embeddings(body, &meta(false), true);
        }
    }

    #[test]
    fn nothing_follows_done_and_finish_is_idempotent() {
        let mut bytes = encode_event("messageStop", br#"{"stopReason":"end_turn"}"#);
        bytes.extend(encode_event(
            "metadata",
            br#"{"usage":{"inputTokens":1,"outputTokens":2,"totalTokens":3}}"#,
        ));
        bytes.extend(encode_event(
            "contentBlockDelta",
            br#"{"delta":{"text":"late"}}"#,
        ));
        let mut s = BedrockStream::new(meta(false));
        let mut out = Vec::new();
        s.feed(&bytes, &mut out);
        s.finish(&mut out);
        s.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("late"));
        assert_eq!(text.matches("[DONE]").count(), 1);
        assert_eq!(s.usage(), Some(Usage::new(1, 2)));
    }

    #[test]
    fn base64_vectors_are_little_endian_f32() {
        // 1.0f32 = 00 00 80 3f -> "AACAPw=="
        assert_eq!(vector_base64(&[json!(1.0)]), "AACAPw==");
        let t = translate_embeddings(
            br#"{"embedding":[1.0],"inputTextTokenCount":3}"#,
            &meta(false),
            true,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["data"][0]["embedding"], "AACAPw==");
        assert_eq!(t.usage, Some(Usage::new(3, 0)));
    }
}
