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
//! `parallel_tool_calls: false`, [`UNSUPPORTED_PARAMS`] and any parameter
//! the gateway does not know; [`IGNORED_PARAMS`] and `user` are accepted and
//! not sent.
//!
//! # Response
//!
//! `message.content` `text` items are joined into `content`; `thinking`
//! items become `reasoning_content`; `tool_calls` become OpenAI tool calls
//! (arguments are already JSON strings). A `tool_plan` becomes `content` when
//! there is no text (LiteLLM drops it), so it returns as `tool_plan` on the
//! next turn. `finish_reason`: `COMPLETE` and `STOP_SEQUENCE` -> `stop`,
//! `MAX_TOKENS` -> `length`, `TOOL_CALL` -> `tool_calls`, `ERROR_TOXIC` ->
//! `content_filter`, `ERROR_LIMIT` -> `length`; `ERROR` and `TIMEOUT` mean
//! the generation failed and become a 502 / 504 error (LiteLLM reports
//! `stop`, hiding the failure). Usage from `usage.tokens` (what the model
//! processed, as LiteLLM), else `usage.billed_units`. The `id` is the
//! gateway's `chatcmpl-` id, `model` the deployment's model (Cohere reports
//! none).
//!
//! Streams are SSE events whose JSON carries a `type`: `message-start` ->
//! the role chunk; `content-delta` -> `content` (or `reasoning_content` for
//! `thinking`); `tool-plan-delta` -> `content`; `tool-call-start` /
//! `tool-call-delta` -> `tool_calls` deltas; `message-end` -> the finish
//! chunk, the usage chunk when asked for, `[DONE]` (an `error` there ends the
//! stream with an error event). `citation-*`, `content-start` /
//! `content-end`, `tool-call-end` and unknown events carry nothing to
//! translate. A stream that ends before `message-end` ends with an error
//! event.
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

use super::chunk::{ChunkWriter, Delta};
use super::embedding;
use super::openai_compat::{openai_style_error, snippet};
use super::{
    endpoint_path, RequestContext, ResponseMeta, StreamTranslator, Translated, Translator,
    UpstreamRequest,
};
use crate::api::error::{ErrorKind, GatewayError};
use crate::api::openai::{Content, ParsedRequest, Role, Usage};
use crate::codec::sse::SseDecoder;
use crate::config::Deployment;

/// The Cohere translator.
pub struct Cohere;

/// Provider name used in error messages.
const PROVIDER: &str = "cohere";

/// OpenAI parameters the v2 Chat API has no equivalent for: 400 unless
/// `drop_params`. (`logprobs: false` and `modalities: ["text"]` ask for
/// nothing and pass.)
pub const UNSUPPORTED_PARAMS: &[&str] = &[
    "audio",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "modalities",
    "prediction",
    "top_logprobs",
    "verbosity",
    "web_search_options",
];

/// OpenAI parameters accepted and not sent: they concern OpenAI's own
/// storage, caching or billing tier and change nothing in the answer.
pub const IGNORED_PARAMS: &[&str] = &["metadata", "prompt_cache_key", "service_tier", "store"];

/// Cohere-native parameters passed through unchanged.
const PASSTHROUGH_PARAMS: &[&str] = &[
    "k",
    "p",
    "thinking",
    "safety_mode",
    "documents",
    "citation_options",
    "strict_tools",
    "priority",
];

/// Extra parameters this translator maps.
const MAPPED_EXTRA_PARAMS: &[&str] = &[
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "top_k",
    "reasoning_effort",
];

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
            decoder: SseDecoder::new(),
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

// ---------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------

fn unsupported(param: &str, what: &str, model: &str) -> GatewayError {
    GatewayError::bad_param(
        param,
        format!(
            "{what} `{param}` is not supported by provider {PROVIDER} (model {model}); remove it, \
             or set `litellm_settings.drop_params: true` to drop unsupported parameters"
        ),
    )
    .with_code("unsupported_parameter")
}

fn check_params(
    req: &ParsedRequest,
    dep: &Deployment,
    drop_params: bool,
) -> Result<(), GatewayError> {
    if drop_params {
        return Ok(());
    }
    if req.chat.n.is_some_and(|n| n > 1) {
        return Err(unsupported("n", "parameter", &dep.model));
    }
    if req.chat.parallel_tool_calls == Some(false) {
        return Err(unsupported(
            "parallel_tool_calls",
            "value false of parameter",
            &dep.model,
        ));
    }
    for (key, value) in &req.chat.extra {
        let key = key.as_str();
        if value.is_null()
            || IGNORED_PARAMS.contains(&key)
            || PASSTHROUGH_PARAMS.contains(&key)
            || MAPPED_EXTRA_PARAMS.contains(&key)
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
        return Err(unsupported(key, what, &dep.model));
    }
    Ok(())
}

/// The v2 Chat body for `req`.
fn request_body(
    req: &ParsedRequest,
    dep: &Deployment,
    drop_params: bool,
) -> Result<Value, GatewayError> {
    check_params(req, dep, drop_params)?;
    let chat = &req.chat;
    let mut body = Map::new();
    body.insert("model".into(), Value::String(dep.model.clone()));
    body.insert("messages".into(), Value::Array(convert_messages(req)?));

    if let Some(n) = chat.max_output_tokens() {
        body.insert("max_tokens".into(), Value::from(n));
    }
    let raw = |k: &str| req.raw.get(k).filter(|v| !v.is_null()).cloned();
    if let Some(v) = raw("temperature") {
        body.insert("temperature".into(), v);
    }
    if let Some(v) = raw("top_p") {
        body.insert("p".into(), v);
    }
    if let Some(v) = raw("top_k") {
        body.insert("k".into(), v);
    }
    for key in ["seed", "frequency_penalty", "presence_penalty"] {
        if let Some(v) = raw(key) {
            body.insert(key.into(), v);
        }
    }
    if let Some(stop) = &chat.stop {
        let list = stop.to_vec();
        if !list.is_empty() {
            body.insert("stop_sequences".into(), json!(list));
        }
    }
    if let Some(thinking) = reasoning_effort_thinking(req)? {
        body.insert("thinking".into(), thinking);
    }
    if let Some(rf) = response_format(chat.response_format.as_ref())? {
        body.insert("response_format".into(), rf);
    }

    // Tools and the choice between them.
    if let Some(defs) = &chat.tools {
        let mut tools = Vec::with_capacity(defs.len());
        for (i, t) in defs.iter().enumerate() {
            if t.kind != "function" {
                return Err(GatewayError::bad_param(
                    &format!("tools[{i}].type"),
                    format!(
                        "tool type `{}` is not supported by provider {PROVIDER}; only `function` \
                         tools are",
                        t.kind
                    ),
                ));
            }
            let mut f = Map::new();
            f.insert("name".into(), Value::String(t.function.name.clone()));
            if let Some(d) = &t.function.description {
                f.insert("description".into(), Value::String(d.clone()));
            }
            f.insert(
                "parameters".into(),
                t.function
                    .parameters
                    .clone()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            );
            tools.push(json!({"type": "function", "function": Value::Object(f)}));
        }
        let (choice, only) = tool_choice(chat.tool_choice.as_ref())?;
        if let Some(name) = only {
            tools.retain(|t| t["function"]["name"].as_str() == Some(name.as_str()));
            if tools.is_empty() {
                return Err(GatewayError::bad_param(
                    "tool_choice",
                    format!("tool_choice names function `{name}`, which is not in `tools`"),
                ));
            }
        }
        if !tools.is_empty() {
            body.insert("tools".into(), Value::Array(tools));
            if let Some(c) = choice {
                body.insert("tool_choice".into(), Value::from(c));
            }
        }
    } else if let Some(tc) = &chat.tool_choice {
        // Validated even without tools, so a typo is reported.
        tool_choice(Some(tc))?;
    }

    for key in PASSTHROUGH_PARAMS {
        if let Some(v) = raw(key) {
            body.insert((*key).into(), v);
        }
    }
    if chat.is_stream() {
        body.insert("stream".into(), Value::Bool(true));
    }
    Ok(Value::Object(body))
}

/// OpenAI `tool_choice` as Cohere's, and the one function a named choice
/// keeps.
fn tool_choice(tc: Option<&Value>) -> Result<(Option<&'static str>, Option<String>), GatewayError> {
    let bad = || {
        GatewayError::bad_param(
            "tool_choice",
            "'tool_choice' must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \
             \"function\": {\"name\": ...}}",
        )
    };
    match tc {
        None | Some(Value::Null) => Ok((None, None)),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Ok((None, None)),
            "none" => Ok((Some("NONE"), None)),
            "required" => Ok((Some("REQUIRED"), None)),
            _ => Err(bad()),
        },
        Some(v @ Value::Object(_)) => {
            let name = v
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(bad)?;
            Ok((Some("REQUIRED"), Some(name.to_string())))
        }
        Some(_) => Err(bad()),
    }
}

fn response_format(rf: Option<&Value>) -> Result<Option<Value>, GatewayError> {
    let Some(rf) = rf.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let bad = |msg: &str| GatewayError::bad_param("response_format", msg.to_string());
    match rf.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let schema = rf
                .get("json_schema")
                .and_then(|j| j.get("schema"))
                .filter(|s| s.is_object());
            Ok(Some(match schema {
                Some(s) => json!({"type": "json_object", "json_schema": s}),
                None => json!({"type": "json_object"}),
            }))
        }
        _ => Err(bad(
            "'response_format.type' must be \"text\", \"json_object\" or \"json_schema\"",
        )),
    }
}

fn reasoning_effort_thinking(req: &ParsedRequest) -> Result<Option<Value>, GatewayError> {
    match req.raw.get("reasoning_effort") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s == "none" => Ok(Some(json!({"type": "disabled"}))),
        Some(Value::String(s)) if ["minimal", "low", "medium", "high"].contains(&s.as_str()) => {
            Ok(Some(json!({"type": "enabled"})))
        }
        Some(_) => Err(GatewayError::bad_param(
            "reasoning_effort",
            "'reasoning_effort' must be one of \"none\", \"minimal\", \"low\", \"medium\", \"high\"",
        )),
    }
}

/// Text of a message that takes text only (system, assistant, tool).
fn text_only(content: Option<&Content>, i: usize) -> Result<String, GatewayError> {
    match content {
        None => Ok(String::new()),
        Some(Content::Text(s)) => Ok(s.clone()),
        Some(Content::Parts(parts)) => {
            let mut s = String::new();
            for (j, p) in parts.iter().enumerate() {
                match p.kind.as_str() {
                    "text" => s.push_str(p.text.as_deref().unwrap_or("")),
                    "refusal" => {}
                    other => {
                        return Err(GatewayError::bad_param(
                            &format!("messages[{i}].content[{j}]"),
                            format!(
                                "content part type `{other}` is not supported in this message \
                                 role by provider {PROVIDER}"
                            ),
                        ))
                    }
                }
            }
            Ok(s)
        }
    }
}

fn user_content(content: Option<&Content>, i: usize) -> Result<Value, GatewayError> {
    let parts = match content {
        None => return Ok(Value::String(String::new())),
        Some(Content::Text(s)) => return Ok(Value::String(s.clone())),
        Some(Content::Parts(parts)) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let at = format!("messages[{i}].content[{j}]");
        match p.kind.as_str() {
            "text" => out.push(json!({"type": "text", "text": p.text.as_deref().unwrap_or("")})),
            "image_url" => {
                let img = p.image_url.as_ref().ok_or_else(|| {
                    GatewayError::bad_param(&at, "image_url part without `image_url`")
                })?;
                let url = img.url();
                let lower = url.get(..11).unwrap_or(url).to_ascii_lowercase();
                let ok = lower.starts_with("http://")
                    || lower.starts_with("https://")
                    || (lower.starts_with("data:image/") && url.contains(";base64,"));
                if !ok {
                    return Err(GatewayError::bad_param(
                        &at,
                        "image URLs must be http(s) URLs or base64 `data:image/...;base64,` URLs",
                    ));
                }
                let mut image = json!({"url": url});
                if let crate::api::openai::ImageUrl::Object {
                    detail: Some(d), ..
                } = img
                {
                    image["detail"] = Value::String(d.clone());
                }
                out.push(json!({"type": "image_url", "image_url": image}));
            }
            other => {
                return Err(GatewayError::bad_param(
                    &at,
                    format!("content part type `{other}` is not supported by provider {PROVIDER}"),
                ))
            }
        }
    }
    Ok(Value::Array(out))
}

fn convert_messages(req: &ParsedRequest) -> Result<Vec<Value>, GatewayError> {
    let mut out = Vec::with_capacity(req.chat.messages.len());
    for (i, m) in req.chat.messages.iter().enumerate() {
        match m.role {
            Role::System | Role::Developer => {
                out.push(json!({"role": "system", "content": text_only(m.content.as_ref(), i)?}));
            }
            Role::User => {
                out.push(json!({"role": "user", "content": user_content(m.content.as_ref(), i)?}));
            }
            Role::Assistant => {
                let text = text_only(m.content.as_ref(), i)?;
                let mut msg = Map::new();
                msg.insert("role".into(), Value::from("assistant"));
                match m.tool_calls.as_ref().filter(|c| !c.is_empty()) {
                    Some(calls) => {
                        let calls: Vec<Value> = calls
                            .iter()
                            .map(|c| {
                                json!({
                                    "id": c.id,
                                    "type": "function",
                                    "function": {
                                        "name": c.function.name,
                                        "arguments": c.function.arguments,
                                    },
                                })
                            })
                            .collect();
                        msg.insert("tool_calls".into(), Value::Array(calls));
                        if !text.is_empty() {
                            msg.insert("tool_plan".into(), Value::String(text));
                        }
                    }
                    None => {
                        msg.insert("content".into(), Value::String(text));
                    }
                }
                out.push(Value::Object(msg));
            }
            Role::Tool => {
                let id = m
                    .tool_call_id
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        GatewayError::bad_param(
                            &format!("messages[{i}].tool_call_id"),
                            "tool messages need `tool_call_id`",
                        )
                    })?;
                out.push(json!({
                    "role": "tool",
                    "tool_call_id": id,
                    "content": text_only(m.content.as_ref(), i)?,
                }));
            }
            Role::Function => {
                return Err(GatewayError::bad_param(
                    &format!("messages[{i}].role"),
                    format!(
                        "legacy `function` messages are not supported by provider {PROVIDER}; \
                         use `tool` messages with `tool_call_id`"
                    ),
                ))
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------

fn invalid_response(detail: impl std::fmt::Display) -> GatewayError {
    crate::provider::invalid_response(PROVIDER, detail)
}

/// Cohere's `finish_reason` as OpenAI's, or the error a failed generation is.
fn finish_reason(reason: Option<&str>, error: Option<&str>) -> Result<&'static str, GatewayError> {
    let failed = |status: u16, kind: ErrorKind, what: &str| {
        let detail = error.filter(|e| !e.is_empty()).unwrap_or("no detail given");
        Err(GatewayError::new(
            status,
            kind,
            format!("{PROVIDER} ended the generation with {what}: {detail}"),
        )
        .with_code("upstream_generation_error"))
    };
    match reason {
        Some("COMPLETE") | Some("STOP_SEQUENCE") | Some("USER_CANCEL") | None => Ok("stop"),
        Some("MAX_TOKENS") | Some("ERROR_LIMIT") => Ok("length"),
        Some("TOOL_CALL") => Ok("tool_calls"),
        Some("ERROR_TOXIC") => Ok("content_filter"),
        Some("TIMEOUT") => failed(504, ErrorKind::Timeout, "TIMEOUT"),
        Some("ERROR") => failed(502, ErrorKind::Upstream, "ERROR"),
        Some(_) => Ok("stop"),
    }
}

/// Usage from a v2 `usage` object: `tokens`, else `billed_units`.
fn usage_of(u: &Value) -> Option<Usage> {
    let counts = u
        .get("tokens")
        .filter(|t| t.is_object())
        .or_else(|| u.get("billed_units").filter(|t| t.is_object()))?;
    let get = |k: &str| counts.get(k).map(count).unwrap_or(0);
    Some(Usage::new(get("input_tokens"), get("output_tokens")))
}

/// A tool call's arguments as a JSON string (Cohere sends strings; an object
/// is serialised).
fn arguments_string(args: Option<&Value>) -> String {
    match args {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(v) => v.to_string(),
    }
}

fn translate_response(body: &[u8], meta: &ResponseMeta) -> Result<Translated, GatewayError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| invalid_response(format!("not JSON ({e}): {}", snippet(body))))?;
    let message = v
        .get("message")
        .filter(|m| m.is_object())
        .ok_or_else(|| invalid_response("no `message` object"))?;
    let mut text = String::new();
    let mut reasoning: Option<String> = None;
    for item in message
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match item.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(item.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("thinking") => reasoning
                .get_or_insert_with(String::new)
                .push_str(item.get("thinking").and_then(Value::as_str).unwrap_or("")),
            _ => {}
        }
    }
    let mut tool_calls = Vec::new();
    for (i, c) in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let f = c.get("function");
        let name = f
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| invalid_response(format!("tool_calls[{i}] has no function name")))?;
        let id = c
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("call_{}_{i}", meta.id));
        let mut arguments = arguments_string(f.and_then(|f| f.get("arguments")));
        if arguments.is_empty() {
            arguments = "{}".into();
        }
        tool_calls.push(json!({
            "id": id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }));
    }
    let tool_plan = message
        .get("tool_plan")
        .and_then(Value::as_str)
        .unwrap_or("");
    let finish = finish_reason(
        v.get("finish_reason").and_then(Value::as_str),
        v.get("error").and_then(Value::as_str),
    )?;
    let content = if !text.is_empty() {
        Value::String(text)
    } else if !tool_plan.is_empty() {
        Value::String(tool_plan.to_string())
    } else {
        Value::Null
    };
    let mut msg = Map::new();
    msg.insert("role".into(), Value::from("assistant"));
    msg.insert("content".into(), content);
    if !tool_calls.is_empty() {
        msg.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    if let Some(r) = reasoning {
        msg.insert("reasoning_content".into(), Value::String(r));
    }
    let usage = v.get("usage").and_then(usage_of);
    let mut out = json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [{"index": 0, "message": Value::Object(msg), "finish_reason": finish}],
    });
    if let Some(u) = usage {
        out["usage"] = json!(u);
    }
    Ok(Translated {
        body: to_vec(&out)?,
        usage,
    })
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

fn error_from_body(status: u16, body: &[u8]) -> GatewayError {
    let mut e = openai_style_error(status, body);
    if status == 498 {
        e.status = 401;
        e.kind = ErrorKind::Authentication;
    }
    if e.message.starts_with("upstream returned") {
        e.message = e.message.replacen("upstream", PROVIDER, 1);
    }
    e
}

// ---------------------------------------------------------------------------
// Stream
// ---------------------------------------------------------------------------

/// Translates Cohere v2 stream events into OpenAI chunks as they complete.
struct CohereStream {
    decoder: SseDecoder,
    w: ChunkWriter,
    /// Cohere tool-call index -> OpenAI `tool_calls` index, in start order.
    tools: Vec<(u64, u32)>,
    usage: Option<Usage>,
}

impl CohereStream {
    fn fail(&mut self, out: &mut Vec<u8>, err: &GatewayError) {
        self.w.fail(out, err);
    }

    fn handle(&mut self, data: &str, at_end: bool, out: &mut Vec<u8>) {
        if self.w.is_done() || data.trim().is_empty() || data == "[DONE]" {
            return;
        }
        let v: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            // Cut off by the end of the stream: `finish` reports truncation.
            Err(_) if at_end => return,
            Err(e) => {
                let err = invalid_response(format!("stream event is not JSON ({e})"));
                self.fail(out, &err);
                return;
            }
        };
        let delta_msg = v.get("delta").and_then(|d| d.get("message"));
        let text_of = |k: &str| {
            delta_msg
                .and_then(|m| m.get("content"))
                .and_then(|c| c.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        match v.get("type").and_then(Value::as_str).unwrap_or("") {
            "message-start" => self.w.start(out),
            "content-start" | "content-delta" => {
                let text = text_of("text");
                if !text.is_empty() {
                    self.w.delta(out, Delta::content(text), None);
                }
                let thinking = text_of("thinking");
                if !thinking.is_empty() {
                    self.w.delta(out, Delta::reasoning(thinking), None);
                }
            }
            "tool-plan-delta" => {
                let plan = delta_msg
                    .and_then(|m| m.get("tool_plan"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !plan.is_empty() {
                    self.w.delta(out, Delta::content(plan), None);
                }
            }
            "tool-call-start" => {
                let call = match delta_msg.and_then(|m| m.get("tool_calls")) {
                    Some(Value::Array(a)) => a.first(),
                    other => other,
                };
                let ours = u32::try_from(self.tools.len()).unwrap_or(u32::MAX);
                let cohere_index = v
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(ours.into());
                self.tools.retain(|(c, _)| *c != cohere_index);
                self.tools.push((cohere_index, ours));
                let f = call.and_then(|c| c.get("function"));
                let id = call
                    .and_then(|c| c.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("call_{}_{ours}", self.w.meta().id));
                let name = f
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let args = arguments_string(f.and_then(|f| f.get("arguments")));
                self.w
                    .delta(out, Delta::tool_start(ours, id, name, args), None);
            }
            "tool-call-delta" => {
                let cohere_index = v.get("index").and_then(Value::as_u64);
                let ours = match cohere_index {
                    Some(c) => self.tools.iter().find(|(i, _)| *i == c).map(|(_, o)| *o),
                    None => self.tools.last().map(|(_, o)| *o),
                };
                let Some(ours) = ours else { return };
                let call = match delta_msg.and_then(|m| m.get("tool_calls")) {
                    Some(Value::Array(a)) => a.first(),
                    other => other,
                };
                let args = arguments_string(
                    call.and_then(|c| c.get("function"))
                        .and_then(|f| f.get("arguments")),
                );
                if !args.is_empty() {
                    self.w.delta(out, Delta::tool_args(ours, args), None);
                }
            }
            "message-end" => {
                let delta = v.get("delta");
                if let Some(u) = delta.and_then(|d| d.get("usage")).and_then(usage_of) {
                    self.usage = Some(u);
                }
                let error = delta
                    .and_then(|d| d.get("error"))
                    .and_then(Value::as_str)
                    .filter(|e| !e.is_empty());
                let reason = delta
                    .and_then(|d| d.get("finish_reason"))
                    .and_then(Value::as_str);
                let finish = match (error, finish_reason(reason, error)) {
                    (Some(msg), Ok(_)) => Err(GatewayError::new(
                        502,
                        ErrorKind::Upstream,
                        format!("{PROVIDER} stream error: {msg}"),
                    )
                    .with_code("upstream_generation_error")),
                    (_, r) => r,
                };
                match finish {
                    Ok(f) => {
                        self.w.delta(out, Delta::default(), Some(f));
                        self.w.end(out, self.usage);
                    }
                    Err(e) => self.fail(out, &e),
                }
            }
            // content-end, tool-call-end, citation-start/end, debug and
            // event types added later carry nothing to translate.
            _ => {}
        }
    }
}

impl StreamTranslator for CohereStream {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        for ev in self.decoder.feed(bytes) {
            self.handle(&ev.data, false, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        for ev in self.decoder.finish() {
            self.handle(&ev.data, true, out);
        }
        if !self.w.is_done() {
            let err = GatewayError::new(
                502,
                ErrorKind::Upstream,
                "the upstream stream ended before it was complete",
            )
            .with_code("upstream_stream_truncated");
            self.fail(out, &err);
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ResponseMeta {
        ResponseMeta {
            id: "chatcmpl-x".into(),
            created: 1,
            model: "command-a".into(),
            include_usage: true,
        }
    }

    #[test]
    fn finish_reasons_map() {
        assert_eq!(finish_reason(Some("COMPLETE"), None), Ok("stop"));
        assert_eq!(finish_reason(Some("MAX_TOKENS"), None), Ok("length"));
        assert_eq!(finish_reason(Some("TOOL_CALL"), None), Ok("tool_calls"));
        assert_eq!(finish_reason(Some("STOP_SEQUENCE"), None), Ok("stop"));
        assert_eq!(
            finish_reason(Some("ERROR_TOXIC"), None),
            Ok("content_filter")
        );
        assert_eq!(
            finish_reason(Some("ERROR"), Some("x")).unwrap_err().status,
            502
        );
        assert_eq!(
            finish_reason(Some("TIMEOUT"), None).unwrap_err().status,
            504
        );
    }

    #[test]
    fn odd_shapes_do_not_panic() {
        for body in [
            &b"null"[..],
            b"[]",
            b"{\"message\": 5}",
            b"{\"message\": {\"content\": [1, null, {\"type\": 3}], \"tool_calls\": [{}]}}",
            b"{\"message\": {\"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1}}}]}, \"usage\": {\"tokens\": {\"input_tokens\": 1.5}}}",
        ] {
            let _ = translate_response(body, &meta());
            let _ = error_from_body(500, body);
        }
        for ev in [
            "{\"type\":\"tool-call-delta\",\"index\":7,\"delta\":null}",
            "{\"type\":\"tool-call-start\",\"index\":\"x\",\"delta\":{\"message\":{\"tool_calls\":[]}}}",
            "{\"type\":\"message-end\",\"delta\":[1]}",
            "{\"type\":\"content-delta\",\"delta\":{\"message\":{\"content\":7}}}",
            "[1,2]",
            "nonsense",
        ] {
            let mut s = Cohere.stream(meta());
            let mut out = Vec::new();
            s.feed(format!("data: {ev}\n\n").as_bytes(), &mut out);
            s.finish(&mut out);
            assert_eq!(String::from_utf8(out).unwrap().matches("[DONE]").count(), 1);
        }
    }

    #[test]
    fn invalid_token_is_401() {
        let e = error_from_body(498, br#"{"message":"invalid api token"}"#);
        assert_eq!((e.status, e.message.as_str()), (401, "invalid api token"));
    }
}
