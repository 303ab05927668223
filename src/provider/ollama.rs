//! Ollama's native chat API (`POST /api/chat`) and embeddings API
//! (`POST /api/embed`), for the `ollama/` and `ollama_chat/` prefixes.
//!
//! Reference: <https://github.com/ollama/ollama/blob/main/docs/api.md>.
//! Where the mapping is a choice this follows LiteLLM's `ollama_chat`
//! (`litellm/llms/ollama/chat/transformation.py`); the places that differ
//! say so. Both prefixes use `/api/chat` here (LiteLLM's `ollama/` uses
//! `/api/generate`, which has no messages, tools or images per turn).
//!
//! # Request
//!
//! - `{model, messages, stream, options, format, tools, think}`. `stream` is
//!   always sent, because Ollama streams unless told `false`.
//! - `system` / `developer` -> `system` messages; `user` text parts are
//!   joined into `content` and image parts go in the message's `images`
//!   array as bare base64: a `data:image/...;base64,` URL loses its header;
//!   an `http(s)` URL is refused with a 400 (Ollama takes base64 only, and a
//!   filter does not fetch URLs; LiteLLM downloads them).
//! - `assistant` messages: `tool_calls` with their JSON `arguments` parsed
//!   into objects (Ollama's form); `reasoning_content` -> `thinking` (both
//!   as LiteLLM).
//! - `tool` messages -> `{role: tool, content, tool_name}`, the name found
//!   from the assistant tool call the `tool_call_id` answers (Ollama has no
//!   call ids; LiteLLM sends no `tool_name`). Legacy `function` messages are
//!   tool messages named by their `name`.
//! - `options`: `temperature`, `top_p`, `top_k`, `seed`, `stop` (a list),
//!   `max_completion_tokens` / `max_tokens` -> `num_predict`;
//!   `frequency_penalty` and `presence_penalty` -> Ollama's options of the
//!   same names (LiteLLM sends `frequency_penalty` as `repeat_penalty`, whose
//!   scale differs: 1.0 is neutral there, 0 in OpenAI's). A client
//!   `options` object (Ollama-native) is merged over these.
//! - `response_format`: `json_object` -> `format: "json"`, `json_schema` ->
//!   `format: <schema>` (as LiteLLM).
//! - `tools` are sent as they are (OpenAI's shape is Ollama's). LiteLLM falls
//!   back to a JSON prompt for models its model map says cannot call tools;
//!   this gateway has no model map and always sends tools natively.
//!   `tool_choice`: `auto` changes nothing; `none` leaves `tools` out (the
//!   same effect); `required` and a named function cannot be expressed and
//!   are unsupported (LiteLLM drops `tool_choice` silently).
//! - `reasoning_effort` -> `think`: `none` -> `false`, other efforts ->
//!   `true` (LiteLLM sends `true` for any value). Ollama-native `think`,
//!   `keep_alive` and `options` pass through.
//!
//! Parameter policy as in `anthropic.rs` (`drop_params` off -> 400 naming
//! the parameter and the provider; on -> dropped): unsupported are `n` > 1,
//! `parallel_tool_calls: false`, `tool_choice` `required` / named,
//! [`UNSUPPORTED_PARAMS`] and any parameter the gateway does not know;
//! [`IGNORED_PARAMS`], `user` and `stream_options` are accepted and not sent
//! (Ollama reports usage at the end of every stream).
//!
//! # Response
//!
//! `message.content` -> `content` (`null` when empty with tool calls);
//! `message.thinking` -> `reasoning_content`; `message.tool_calls` ->
//! `tool_calls`, arguments serialised to a JSON string, ids Ollama's when it
//! gives them, else `call_<response id>_<index>` (deterministic; LiteLLM
//! uses random UUIDs). `finish_reason`: `tool_calls` when the answer calls
//! tools (Ollama says `stop`; OpenAI clients look for `tool_calls`),
//! `length` for `done_reason: length`, else `stop`. Usage: `prompt_eval_count`
//! and `eval_count` (0 when absent). `model` is the one Ollama reports.
//! LiteLLM also moves `<think>...</think>` text out of `content`; this
//! gateway does not rewrite content.
//!
//! Streams are NDJSON ([`crate::codec::ndjson`]): each line's message becomes a
//! chunk (thinking, content, or whole tool calls: Ollama sends each call
//! complete), and the last line (`done: true`) the finish chunk, the usage
//! chunk when asked for, and `[DONE]`. A `{"error": ...}` line, an
//! unreadable line or a line over 16 MiB ends the stream with an error
//! event; so does a stream that ends before `done: true`.
//!
//! # Errors
//!
//! `{"error": "..."}` bodies keep their message; statuses are mapped like
//! every provider's.
//!
//! # Embeddings
//!
//! `POST /api/embed` with `{model, input: [texts]}`, `dimensions` when asked
//! (models that support it), Ollama's `truncate`, `keep_alive` and `options`
//! passed through; the answer's `embeddings` become the OpenAI list, usage
//! from `prompt_eval_count`.

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
use crate::codec::ndjson::NdjsonDecoder;
use crate::config::Deployment;

/// The Ollama translator.
pub struct Ollama;

/// Provider name used in error messages.
const PROVIDER: &str = "ollama";

/// OpenAI parameters Ollama has no equivalent for: 400 unless `drop_params`.
/// (`logprobs: false` and `modalities: ["text"]` ask for nothing and pass.)
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

/// OpenAI parameters accepted and not sent.
pub const IGNORED_PARAMS: &[&str] = &["metadata", "prompt_cache_key", "service_tier", "store"];

/// Ollama-native top-level parameters passed through.
const PASSTHROUGH_PARAMS: &[&str] = &["think", "keep_alive"];

/// Extra parameters this translator maps.
const MAPPED_EXTRA_PARAMS: &[&str] = &[
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "top_k",
    "reasoning_effort",
    "options",
];

/// Embeddings parameters Ollama takes as they are.
const EMBED_NATIVE_PARAMS: &[&str] = &["truncate", "keep_alive", "options"];

impl Translator for Ollama {
    fn request(
        &self,
        req: &crate::api::request::ClientRequest,
        dep: &Deployment,
        ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError> {
        let req = req.parsed()?;
        let body = request_body(req, dep, ctx.drop_params)?;
        Ok(UpstreamRequest {
            path: endpoint_path(&dep.api_base.path, "/api/chat"),
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
        let mut body = json!({"model": dep.model, "input": texts});
        if let Some(d) = e.dimensions {
            body["dimensions"] = Value::from(d);
        }
        for k in EMBED_NATIVE_PARAMS {
            if let Some(v) = e.extra.get(*k).filter(|v| !v.is_null()) {
                body[*k] = v.clone();
            }
        }
        Ok(UpstreamRequest {
            path: endpoint_path(&dep.api_base.path, "/api/embed"),
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
            .and_then(Value::as_array)
            .ok_or_else(|| embedding::invalid("no `embeddings` list"))?;
        let tokens = v
            .get("prompt_eval_count")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let model = embedding::model_name(&v, meta);
        let (out, usage) = embedding::openai_list(vectors, model, tokens, false)?;
        Ok(Translated {
            body: to_vec(&out)?,
            usage: Some(usage),
        })
    }

    fn response(&self, body: &[u8], meta: &ResponseMeta) -> Result<Translated, GatewayError> {
        translate_response(body, meta)
    }

    fn stream(&self, meta: ResponseMeta) -> Box<dyn StreamTranslator> {
        Box::new(OllamaStream {
            decoder: NdjsonDecoder::new(),
            w: ChunkWriter::new(meta),
            tool_calls: 0,
            usage: None,
        })
    }

    fn error(&self, status: u16, body: &[u8]) -> GatewayError {
        let mut e = openai_style_error(status, body);
        if e.message.starts_with("upstream returned") {
            e.message = e.message.replacen("upstream", PROVIDER, 1);
        }
        e
    }
}

fn headers(dep: &Deployment) -> Vec<(String, String)> {
    let mut h = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(key) = &dep.api_key {
        h.push(("authorization".to_string(), format!("Bearer {key}")));
    }
    h
}

fn to_vec(v: &Value) -> Result<Vec<u8>, GatewayError> {
    serde_json::to_vec(v).map_err(|e| GatewayError::new(500, ErrorKind::Internal, e.to_string()))
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

/// What `tool_choice` asks of Ollama.
enum Choice {
    /// Send the tools (auto or no choice).
    Auto,
    /// Leave the tools out.
    None,
    /// Cannot be expressed (`required`, a named function).
    Forced,
}

fn tool_choice(tc: Option<&Value>) -> Result<Choice, GatewayError> {
    let bad = || {
        GatewayError::bad_param(
            "tool_choice",
            "'tool_choice' must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \
             \"function\": {\"name\": ...}}",
        )
    };
    match tc {
        None | Some(Value::Null) => Ok(Choice::Auto),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Ok(Choice::Auto),
            "none" => Ok(Choice::None),
            "required" => Ok(Choice::Forced),
            _ => Err(bad()),
        },
        Some(Value::Object(o)) if o.get("function").and_then(|f| f.get("name")).is_some() => {
            Ok(Choice::Forced)
        }
        Some(_) => Err(bad()),
    }
}

fn check_params(
    req: &ParsedRequest,
    dep: &Deployment,
    drop_params: bool,
) -> Result<(), GatewayError> {
    let choice = tool_choice(req.chat.tool_choice.as_ref())?;
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
    if matches!(choice, Choice::Forced) && req.chat.tools.is_some() {
        return Err(unsupported(
            "tool_choice",
            "forcing a tool call with parameter",
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

fn request_body(
    req: &ParsedRequest,
    dep: &Deployment,
    drop_params: bool,
) -> Result<Value, GatewayError> {
    check_params(req, dep, drop_params)?;
    let chat = &req.chat;
    let raw = |k: &str| req.raw.get(k).filter(|v| !v.is_null()).cloned();
    let mut body = Map::new();
    body.insert("model".into(), Value::String(dep.model.clone()));
    body.insert("messages".into(), Value::Array(convert_messages(req)?));
    body.insert("stream".into(), Value::Bool(chat.is_stream()));

    let mut options = Map::new();
    for key in [
        "temperature",
        "top_p",
        "top_k",
        "seed",
        "frequency_penalty",
        "presence_penalty",
    ] {
        if let Some(v) = raw(key) {
            options.insert(key.into(), v);
        }
    }
    if let Some(n) = chat.max_output_tokens() {
        options.insert("num_predict".into(), Value::from(n));
    }
    if let Some(stop) = &chat.stop {
        let list = stop.to_vec();
        if !list.is_empty() {
            options.insert("stop".into(), json!(list));
        }
    }
    match raw("options") {
        Some(Value::Object(native)) => options.extend(native),
        Some(_) => {
            return Err(GatewayError::bad_param(
                "options",
                "'options' (Ollama's model options) must be an object",
            ))
        }
        None => {}
    }
    if !options.is_empty() {
        body.insert("options".into(), Value::Object(options));
    }

    if let Some(format) = response_format(chat.response_format.as_ref())? {
        body.insert("format".into(), format);
    }
    match raw("reasoning_effort") {
        None => {}
        Some(Value::String(s)) if s == "none" => {
            body.insert("think".into(), Value::Bool(false));
        }
        Some(Value::String(s)) if ["minimal", "low", "medium", "high"].contains(&s.as_str()) => {
            body.insert("think".into(), Value::Bool(true));
        }
        Some(_) => {
            return Err(GatewayError::bad_param(
                "reasoning_effort",
                "'reasoning_effort' must be one of \"none\", \"minimal\", \"low\", \"medium\", \
                 \"high\"",
            ))
        }
    }
    if let Some(defs) = &chat.tools {
        if !matches!(tool_choice(chat.tool_choice.as_ref())?, Choice::None) {
            let mut tools = Vec::with_capacity(defs.len());
            for (i, t) in defs.iter().enumerate() {
                if t.kind != "function" {
                    return Err(GatewayError::bad_param(
                        &format!("tools[{i}].type"),
                        format!(
                            "tool type `{}` is not supported by provider {PROVIDER}; only \
                             `function` tools are",
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
            if !tools.is_empty() {
                body.insert("tools".into(), Value::Array(tools));
            }
        }
    }
    for key in PASSTHROUGH_PARAMS {
        if let Some(v) = raw(key) {
            body.insert((*key).into(), v);
        }
    }
    Ok(Value::Object(body))
}

fn response_format(rf: Option<&Value>) -> Result<Option<Value>, GatewayError> {
    let Some(rf) = rf.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    match rf.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(Value::from("json"))),
        Some("json_schema") => Ok(Some(
            rf.get("json_schema")
                .and_then(|j| j.get("schema"))
                .filter(|s| s.is_object())
                .cloned()
                .unwrap_or_else(|| Value::from("json")),
        )),
        _ => Err(GatewayError::bad_param(
            "response_format",
            "'response_format.type' must be \"text\", \"json_object\" or \"json_schema\"",
        )),
    }
}

/// Text and base64 images of a message's content.
fn text_and_images(
    content: Option<&Content>,
    i: usize,
    images_allowed: bool,
) -> Result<(String, Vec<String>), GatewayError> {
    let parts = match content {
        None => return Ok((String::new(), Vec::new())),
        Some(Content::Text(s)) => return Ok((s.clone(), Vec::new())),
        Some(Content::Parts(parts)) => parts,
    };
    let mut text = String::new();
    let mut images = Vec::new();
    for (j, p) in parts.iter().enumerate() {
        let at = format!("messages[{i}].content[{j}]");
        match p.kind.as_str() {
            "text" => text.push_str(p.text.as_deref().unwrap_or("")),
            "refusal" => {}
            "image_url" if images_allowed => {
                let url = p.image_url.as_ref().map(|u| u.url()).ok_or_else(|| {
                    GatewayError::bad_param(&at, "image_url part without `image_url`")
                })?;
                images.push(base64_image(url, &at)?);
            }
            other => {
                return Err(GatewayError::bad_param(
                    &at,
                    format!(
                        "content part type `{other}` is not supported in this message by provider \
                         {PROVIDER}"
                    ),
                ))
            }
        }
    }
    Ok((text, images))
}

/// The bare base64 of a `data:` image URL; other URLs are refused.
fn base64_image(url: &str, at: &str) -> Result<String, GatewayError> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Err(GatewayError::bad_param(
            at,
            format!(
                "provider {PROVIDER} takes images as base64 only: send the image as a \
                 `data:image/...;base64,` URL (the gateway does not fetch image URLs)"
            ),
        )
        .with_code("unsupported_image_url"));
    }
    match url
        .strip_prefix("data:")
        .and_then(|r| r.split_once(";base64,"))
    {
        Some((mime, data))
            if mime.to_ascii_lowercase().starts_with("image/") && !data.is_empty() =>
        {
            Ok(data.to_string())
        }
        _ => Err(GatewayError::bad_param(
            at,
            "image URLs must be base64 `data:image/...;base64,` URLs",
        )),
    }
}

fn convert_messages(req: &ParsedRequest) -> Result<Vec<Value>, GatewayError> {
    let raw_messages = req.raw.get("messages").and_then(Value::as_array);
    let mut out = Vec::with_capacity(req.chat.messages.len());
    // tool_call_id -> function name, from the assistant turns seen so far.
    let mut call_names: Vec<(String, String)> = Vec::new();
    for (i, m) in req.chat.messages.iter().enumerate() {
        match m.role {
            Role::System | Role::Developer => {
                let (text, _) = text_and_images(m.content.as_ref(), i, false)?;
                out.push(json!({"role": "system", "content": text}));
            }
            Role::User => {
                let (text, images) = text_and_images(m.content.as_ref(), i, true)?;
                let mut msg = json!({"role": "user", "content": text});
                if !images.is_empty() {
                    msg["images"] = json!(images);
                }
                out.push(msg);
            }
            Role::Assistant => {
                let (text, _) = text_and_images(m.content.as_ref(), i, false)?;
                let mut msg = json!({"role": "assistant", "content": text});
                if let Some(calls) = m.tool_calls.as_ref().filter(|c| !c.is_empty()) {
                    let mut list = Vec::with_capacity(calls.len());
                    for (j, c) in calls.iter().enumerate() {
                        let args = if c.function.arguments.trim().is_empty() {
                            json!({})
                        } else {
                            serde_json::from_str::<Value>(&c.function.arguments).map_err(|e| {
                                GatewayError::bad_param(
                                    &format!("messages[{i}].tool_calls[{j}].function.arguments"),
                                    format!("tool call arguments are not valid JSON: {e}"),
                                )
                            })?
                        };
                        call_names.push((c.id.clone(), c.function.name.clone()));
                        list.push(
                            json!({"function": {"name": c.function.name, "arguments": args}}),
                        );
                    }
                    msg["tool_calls"] = Value::Array(list);
                }
                let reasoning = raw_messages
                    .and_then(|l| l.get(i))
                    .and_then(|r| r.get("reasoning_content"))
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty());
                if let Some(r) = reasoning {
                    msg["thinking"] = Value::from(r);
                }
                out.push(msg);
            }
            Role::Tool | Role::Function => {
                let (text, _) = text_and_images(m.content.as_ref(), i, false)?;
                let mut msg = json!({"role": "tool", "content": text});
                let name = match m.role {
                    Role::Function => m.name.clone(),
                    _ => m.tool_call_id.as_ref().and_then(|id| {
                        call_names
                            .iter()
                            .rev()
                            .find(|(c, _)| c == id)
                            .map(|(_, n)| n.clone())
                    }),
                };
                if let Some(n) = name {
                    msg["tool_name"] = Value::String(n);
                }
                out.push(msg);
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

/// A tool call id for Ollama calls without one: `call_<id>_<index>`.
fn call_id(meta: &ResponseMeta, index: usize) -> String {
    let base = meta.id.strip_prefix("chatcmpl-").unwrap_or(&meta.id);
    format!("call_{base}_{index}")
}

/// One Ollama tool call as (id, name, arguments string).
fn tool_call(c: &Value, meta: &ResponseMeta, index: usize) -> Option<(String, String, String)> {
    let f = c.get("function")?;
    let name = f.get("name")?.as_str()?.to_string();
    let arguments = match f.get("arguments") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => "{}".to_string(),
        Some(v) => v.to_string(),
    };
    let id = c
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| call_id(meta, index));
    Some((id, name, arguments))
}

fn usage_of(v: &Value) -> Usage {
    let get = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    Usage::new(get("prompt_eval_count"), get("eval_count"))
}

fn finish_reason(done_reason: Option<&str>, called_tools: bool) -> &'static str {
    if called_tools {
        "tool_calls"
    } else if done_reason == Some("length") {
        "length"
    } else {
        "stop"
    }
}

fn translate_response(body: &[u8], meta: &ResponseMeta) -> Result<Translated, GatewayError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| invalid_response(format!("not JSON ({e}): {}", snippet(body))))?;
    if let Some(err) = v.get("error").and_then(Value::as_str) {
        return Err(GatewayError::new(502, ErrorKind::Upstream, err.to_string()));
    }
    let message = v
        .get("message")
        .filter(|m| m.is_object())
        .ok_or_else(|| invalid_response("no `message` object"))?;
    let text = message.get("content").and_then(Value::as_str).unwrap_or("");
    let mut calls = Vec::new();
    for (i, c) in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let (id, name, arguments) = tool_call(c, meta, i)
            .ok_or_else(|| invalid_response(format!("tool_calls[{i}] has no function name")))?;
        calls.push(json!({
            "id": id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }));
    }
    let mut msg = Map::new();
    msg.insert("role".into(), Value::from("assistant"));
    msg.insert(
        "content".into(),
        if text.is_empty() && !calls.is_empty() {
            Value::Null
        } else {
            Value::from(text)
        },
    );
    let finish = finish_reason(
        v.get("done_reason").and_then(Value::as_str),
        !calls.is_empty(),
    );
    if !calls.is_empty() {
        msg.insert("tool_calls".into(), Value::Array(calls));
    }
    if let Some(t) = message
        .get("thinking")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        msg.insert("reasoning_content".into(), Value::from(t));
    }
    let usage = usage_of(&v);
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or(&meta.model);
    let out = json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": model,
        "choices": [{"index": 0, "message": Value::Object(msg), "finish_reason": finish}],
        "usage": usage,
    });
    Ok(Translated {
        body: to_vec(&out)?,
        usage: Some(usage),
    })
}

// ---------------------------------------------------------------------------
// Stream
// ---------------------------------------------------------------------------

/// Translates Ollama's NDJSON stream into OpenAI chunks line by line.
struct OllamaStream {
    decoder: NdjsonDecoder,
    w: ChunkWriter,
    /// Tool calls sent so far (the next `tool_calls` index).
    tool_calls: u32,
    usage: Option<Usage>,
}

impl OllamaStream {
    fn line(&mut self, item: crate::codec::ndjson::Item, at_end: bool, out: &mut Vec<u8>) {
        if self.w.is_done() {
            return;
        }
        let line = match item {
            Ok(l) => l,
            Err(e) => {
                let err = invalid_response(e);
                self.w.fail(out, &err);
                return;
            }
        };
        let v: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            // A last line cut short: `finish` reports the truncation.
            Err(_) if at_end => return,
            Err(e) => {
                self.w.fail(
                    out,
                    &invalid_response(format!("stream line is not JSON ({e})")),
                );
                return;
            }
        };
        if let Some(err) = v.get("error") {
            let msg = err
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| err.to_string());
            let e = GatewayError::new(502, ErrorKind::Upstream, format!("{PROVIDER}: {msg}"))
                .with_code("upstream_stream_error");
            self.w.fail(out, &e);
            return;
        }
        if let Some(m) = v.get("model").and_then(Value::as_str) {
            self.w.set_model(m);
        }
        self.w.start(out);
        let message = v.get("message");
        let field = |k: &str| {
            message
                .and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let thinking = field("thinking");
        if !thinking.is_empty() {
            self.w.delta(out, Delta::reasoning(thinking), None);
        }
        let content = field("content");
        if !content.is_empty() {
            self.w.delta(out, Delta::content(content), None);
        }
        for c in message
            .and_then(|m| m.get("tool_calls"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = self.tool_calls;
            let meta = self.w.meta().clone();
            if let Some((id, name, arguments)) = tool_call(c, &meta, index as usize) {
                self.tool_calls = self.tool_calls.saturating_add(1);
                self.w
                    .delta(out, Delta::tool_start(index, id, name, arguments), None);
            }
        }
        if v.get("done").and_then(Value::as_bool) == Some(true) {
            let usage = usage_of(&v);
            self.usage = Some(usage);
            let finish = finish_reason(
                v.get("done_reason").and_then(Value::as_str),
                self.tool_calls > 0,
            );
            self.w.delta(out, Delta::default(), Some(finish));
            self.w.end(out, Some(usage));
        }
    }
}

impl StreamTranslator for OllamaStream {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        for item in self.decoder.feed(bytes) {
            self.line(item, false, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        for item in self.decoder.finish() {
            self.line(item, true, out);
        }
        if !self.w.is_done() {
            let err = GatewayError::new(
                502,
                ErrorKind::Upstream,
                "the upstream stream ended before it was complete",
            )
            .with_code("upstream_stream_truncated");
            self.w.fail(out, &err);
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
            id: "chatcmpl-abc".into(),
            created: 1,
            model: "llama3.2".into(),
            include_usage: true,
        }
    }

    #[test]
    fn images_need_base64() {
        assert_eq!(
            base64_image("data:image/png;base64,AAAA", "p").unwrap(),
            "AAAA"
        );
        let e = base64_image("https://x.test/a.png", "p").unwrap_err();
        assert!(e.message.contains("base64"), "{}", e.message);
        assert!(base64_image("data:text/plain;base64,AAAA", "p").is_err());
        assert!(base64_image("data:image/png,raw", "p").is_err());
        assert!(base64_image("", "p").is_err());
    }

    #[test]
    fn deterministic_call_ids() {
        assert_eq!(call_id(&meta(), 2), "call_abc_2");
    }

    #[test]
    fn odd_shapes_do_not_panic() {
        for body in [
            &b"null"[..],
            b"[]",
            b"{\"message\": []}",
            b"{\"message\": {\"content\": 5, \"tool_calls\": [1, {\"function\": 3}]}}",
            b"{\"error\": {\"x\": 1}}",
        ] {
            let _ = translate_response(body, &meta());
            let _ = Ollama.error(500, body);
        }
        for line in [
            "{\"message\":{\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":[1]}}]},\"done\":\"yes\"}",
            "{\"error\":{\"nested\":true}}",
            "[1]",
            "\"s\"",
            "not json",
            "{\"done\":true,\"prompt_eval_count\":-1}",
        ] {
            let mut s = Ollama.stream(meta());
            let mut out = Vec::new();
            s.feed(format!("{line}\n").as_bytes(), &mut out);
            s.finish(&mut out);
            assert_eq!(String::from_utf8(out).unwrap().matches("[DONE]").count(), 1, "{line}");
        }
    }

    #[test]
    fn overlong_line_ends_the_stream() {
        let mut s = OllamaStream {
            decoder: NdjsonDecoder::with_max_line(64),
            w: ChunkWriter::new(meta()),
            tool_calls: 0,
            usage: None,
        };
        let mut out = Vec::new();
        s.feed(&[b'x'; 100], &mut out);
        s.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("longer than 64 bytes"), "{text}");
        assert_eq!(text.matches("[DONE]").count(), 1);
    }
}
