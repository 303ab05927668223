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
//! - `system` and `developer` messages, wherever they sit, become the top-level
//!   `system`, always as an array of text blocks (LiteLLM does the same; empty
//!   texts are skipped because Anthropic rejects empty text blocks).
//! - User, `tool` and legacy `function` messages become user turns, assistant
//!   messages assistant turns; consecutive turns of one role are merged because
//!   the API requires alternation. Tool results are `tool_result` blocks in a
//!   user turn. An assistant message with nothing to say (no text, no calls)
//!   adds nothing, so the turns around it merge too (LiteLLM would send two user
//!   turns in a row there).
//! - Trailing whitespace is trimmed from the text of a final assistant turn
//!   (a prefill), which Anthropic rejects otherwise (LiteLLM does the same).
//! - `max_tokens` is `max_completion_tokens` or `max_tokens`, else
//!   [`DEFAULT_MAX_TOKENS`] (LiteLLM's fallback when its model map has no entry;
//!   this gateway has no model map), plus the thinking budget when thinking is
//!   enabled without an explicit limit (LiteLLM: `budget_tokens + 4096`).
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
//! - `response_format` `json_schema` / `json_object`: LiteLLM's JSON mode, a
//!   tool named [`JSON_TOOL_NAME`] whose input schema is the requested schema,
//!   forced through `tool_choice` (not forced when thinking is on: Anthropic
//!   refuses forced tool use with thinking). Answers turn that tool call back
//!   into message content. Newer LiteLLM ignores `json_object` and uses
//!   Anthropic's beta `output_format` on the models that have it; this gateway
//!   knows no model capabilities, so it uses the tool for every model and for
//!   `json_object` too (with an open object schema, as older LiteLLM did).
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
//! - unsupported: [`UNSUPPORTED_PARAMS`], `n` > 1, and any other parameter the
//!   gateway does not know. LiteLLM forwards unknown parameters to Anthropic,
//!   which rejects them with a 400; refusing here names the parameter and lets
//!   `drop_params` work for them as well.
//! - accepted and ignored (they change nothing the client sees):
//!   [`IGNORED_PARAMS`], plus `stream_options` (used for the usage chunk).
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

use serde_json::{json, Map, Value};

use super::chunk::{
    Chunk, ChunkChoice, Delta, FunctionDelta, PromptTokensDetails, ToolCallDelta, UsageOut,
};
use super::openai_compat::{openai_style_error, snippet};
use super::{
    endpoint_path, stream_error_event, RequestContext, ResponseMeta, StreamTranslator, Translated,
    Translator, UpstreamRequest,
};
use crate::config::Deployment;
use crate::error::{upstream_status_kind, ErrorKind, GatewayError};
use crate::openai::{Content, ContentPart, ParsedRequest, Role, Stop, ToolCall, Usage};
use crate::sse::{write_data, write_done, SseDecoder};

/// The Anthropic translator.
pub struct Anthropic;

/// Provider name used in error messages.
const PROVIDER: &str = "anthropic";

/// `anthropic-version` sent when the deployment sets no `api_version`.
pub const DEFAULT_API_VERSION: &str = "2023-06-01";

/// `max_tokens` when the client sets none (Anthropic requires one). LiteLLM's
/// `DEFAULT_ANTHROPIC_CHAT_MAX_TOKENS`.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Name of the tool that carries `response_format` (LiteLLM's
/// `RESPONSE_FORMAT_TOOL_NAME`). A `tool_use` of this name in an answer is
/// turned back into message content. A client tool with this exact name would
/// be treated the same way.
pub const JSON_TOOL_NAME: &str = "json_tool_call";

/// OpenAI parameters the Messages API has no equivalent for: 400 unless
/// `drop_params`. (`logprobs: false` and `modalities: ["text"]` ask for
/// nothing and pass.)
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

/// OpenAI parameters accepted and ignored: they concern OpenAI's own storage,
/// caching or billing tier and change nothing in the answer. (`metadata` is
/// read for `user_id` only.)
pub const IGNORED_PARAMS: &[&str] = &["metadata", "prompt_cache_key", "service_tier", "store"];

/// Anthropic-native parameters passed through unchanged.
const PASSTHROUGH_PARAMS: &[&str] = &["thinking", "top_k"];

/// Parameters read by name from the request's extra fields.
const MAPPED_EXTRA_PARAMS: &[&str] = &["reasoning_effort", "safety_identifier"];

impl Translator for Anthropic {
    fn request(
        &self,
        req: &ParsedRequest,
        dep: &Deployment,
        ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError> {
        let body = request_body(req, dep, ctx.drop_params)?;
        let body = serde_json::to_vec(&body)
            .map_err(|e| GatewayError::new(500, ErrorKind::Internal, e.to_string()))?;
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
        Ok(UpstreamRequest {
            path: endpoint_path(&dep.api_base.path, "/v1/messages"),
            headers,
            body,
        })
    }

    fn response(&self, body: &[u8], meta: &ResponseMeta) -> Result<Translated, GatewayError> {
        translate_response(body, meta)
    }

    fn stream(&self, meta: ResponseMeta) -> Box<dyn StreamTranslator> {
        Box::new(AnthropicStream::new(meta))
    }

    fn error(&self, status: u16, body: &[u8]) -> GatewayError {
        error_from_body(status, body)
    }
}

// ---------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------

/// The Messages API body for `req`.
fn request_body(
    req: &ParsedRequest,
    dep: &Deployment,
    drop_params: bool,
) -> Result<Value, GatewayError> {
    let chat = &req.chat;
    check_params(req, dep, drop_params)?;

    let converted = convert_messages(req)?;
    let mut body = Map::new();
    body.insert("model".into(), Value::String(dep.model.clone()));
    body.insert("messages".into(), Value::Array(converted.turns));
    if !converted.system.is_empty() {
        body.insert("system".into(), Value::Array(converted.system));
    }

    // Thinking: native `thinking` wins over `reasoning_effort`.
    let thinking = match req.raw.get("thinking") {
        Some(Value::Null) | None => reasoning_effort_thinking(req)?,
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
    // Any thinking mode but `disabled` rules out forcing a tool.
    let thinking_on = thinking
        .as_ref()
        .is_some_and(|t| t.get("type").and_then(Value::as_str) != Some("disabled"));
    let max_tokens = chat
        .max_output_tokens()
        .unwrap_or_else(|| DEFAULT_MAX_TOKENS.saturating_add(thinking_budget.unwrap_or(0)));
    body.insert("max_tokens".into(), Value::from(max_tokens));
    if let Some(t) = thinking {
        body.insert("thinking".into(), t);
    }

    for key in ["temperature", "top_p", "top_k"] {
        if let Some(v) = req.raw.get(key).filter(|v| !v.is_null()) {
            body.insert(key.into(), v.clone());
        }
    }
    if let Some(stop) = &chat.stop {
        let list: Vec<String> = match stop {
            Stop::One(s) => vec![s.clone()],
            Stop::Many(v) => v.clone(),
        }
        .into_iter()
        .filter(|s| !(drop_params && !s.is_empty() && s.trim().is_empty()))
        .collect();
        if !list.is_empty() {
            body.insert("stop_sequences".into(), json!(list));
        }
    }
    if chat.is_stream() {
        body.insert("stream".into(), Value::Bool(true));
    }
    if let Some(user_id) = user_id(req) {
        body.insert("metadata".into(), json!({ "user_id": user_id }));
    }

    // Tools, the JSON-mode tool, and the choice between them.
    let mut tools = match &chat.tools {
        Some(defs) => map_tools(defs)?,
        None => Vec::new(),
    };
    let mut tool_choice = map_tool_choice(chat.tool_choice.as_ref(), chat.parallel_tool_calls)?;
    if let Some(schema) = json_mode_schema(chat.response_format.as_ref())? {
        tools.push(json!({ "name": JSON_TOOL_NAME, "input_schema": schema }));
        if !thinking_on {
            tool_choice = Some(json!({ "type": "tool", "name": JSON_TOOL_NAME }));
        }
    }
    if converted.has_tool_blocks && tools.is_empty() {
        return Err(GatewayError::bad_param(
            "tools",
            "anthropic does not accept tool calls or tool results in `messages` unless the \
             request also lists the tools in `tools`",
        ));
    }
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
        if let Some(tc) = tool_choice {
            body.insert("tool_choice".into(), tc);
        }
    }
    Ok(Value::Object(body))
}

/// Reject (or, with `drop_params`, accept and drop) parameters Anthropic
/// cannot take. Values that ask for nothing (`null`, `n: 1`, `logprobs:
/// false`, `modalities: ["text"]`) always pass.
fn check_params(
    req: &ParsedRequest,
    dep: &Deployment,
    drop_params: bool,
) -> Result<(), GatewayError> {
    if drop_params {
        return Ok(());
    }
    let unsupported = |param: &str, what: &str| {
        GatewayError::bad_param(
            param,
            format!(
                "{what} `{param}` is not supported by provider {PROVIDER} (model {}); remove it, \
                 or set `litellm_settings.drop_params: true` to drop unsupported parameters",
                dep.model
            ),
        )
        .with_code("unsupported_parameter")
    };
    if req.chat.n.is_some_and(|n| n > 1) {
        return Err(unsupported("n", "parameter"));
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
        return Err(unsupported(key, what));
    }
    Ok(())
}

/// `reasoning_effort` as a `thinking` object, with LiteLLM's budgets.
fn reasoning_effort_thinking(req: &ParsedRequest) -> Result<Option<Value>, GatewayError> {
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

/// `metadata.user_id`: `user`, else OpenAI `metadata.user_id`, else
/// `safety_identifier`; values that look like personal data are skipped.
fn user_id(req: &ParsedRequest) -> Option<String> {
    let from_metadata = req
        .raw
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str);
    let from_safety = req.raw.get("safety_identifier").and_then(Value::as_str);
    req.chat
        .user
        .as_deref()
        .or(from_metadata)
        .or(from_safety)
        .filter(|u| !u.is_empty() && valid_user_id(u))
        .map(str::to_string)
}

/// False for strings shaped like an e-mail address or a phone number
/// (LiteLLM's `_valid_user_id`, without regexes).
fn valid_user_id(s: &str) -> bool {
    !(looks_like_email(s) || looks_like_phone(s))
}

/// `^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}$`
fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let Some((host, tld)) = domain.rsplit_once('.') else {
        return false;
    };
    !local.is_empty()
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._%+-".contains(c))
        && !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && tld.len() >= 2
        && tld.chars().all(|c| c.is_ascii_alphabetic())
}

/// `^\+?[\d\s\(\)-]{7,}$`
fn looks_like_phone(s: &str) -> bool {
    let rest = s.strip_prefix('+').unwrap_or(s);
    rest.chars().count() >= 7
        && rest
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_whitespace() || "()-".contains(c))
}

/// OpenAI function tools as Anthropic tools.
fn map_tools(defs: &[crate::openai::ToolDef]) -> Result<Vec<Value>, GatewayError> {
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
        let mut tool = Map::new();
        tool.insert("name".into(), Value::String(def.function.name.clone()));
        if let Some(d) = &def.function.description {
            tool.insert("description".into(), Value::String(d.clone()));
        }
        tool.insert("input_schema".into(), schema);
        out.push(Value::Object(tool));
    }
    Ok(out)
}

/// OpenAI `tool_choice` and `parallel_tool_calls` as Anthropic `tool_choice`.
fn map_tool_choice(
    choice: Option<&Value>,
    parallel: Option<bool>,
) -> Result<Option<Value>, GatewayError> {
    let bad = |detail: &str| {
        GatewayError::bad_param(
            "tool_choice",
            format!("tool_choice {detail}: use \"auto\", \"required\", \"none\" or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}"),
        )
    };
    let by_word = |w: &str| match w {
        "auto" => Some("auto"),
        "required" | "any" => Some("any"),
        "none" => Some("none"),
        _ => None,
    };
    let mapped = match choice {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match by_word(s) {
            Some(t) => Some(json!({ "type": t })),
            None => return Err(bad(&format!("`{s}` is not supported"))),
        },
        Some(Value::Object(o)) => {
            let kind = o.get("type").and_then(Value::as_str).unwrap_or("function");
            if kind == "function" || o.contains_key("function") {
                match o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                {
                    Some(name) => Some(json!({ "type": "tool", "name": name })),
                    None => return Err(bad("names no function")),
                }
            } else {
                match by_word(kind) {
                    Some(t) => Some(json!({ "type": t })),
                    None => return Err(bad(&format!("type `{kind}` is not supported"))),
                }
            }
        }
        Some(_) => return Err(bad("must be a string or an object")),
    };
    let Some(parallel) = parallel else {
        return Ok(mapped);
    };
    Ok(match mapped {
        Some(v) if v["type"] == "none" => Some(v),
        Some(Value::Object(mut o)) => {
            o.insert("disable_parallel_tool_use".into(), Value::Bool(!parallel));
            Some(Value::Object(o))
        }
        _ => Some(json!({ "type": "auto", "disable_parallel_tool_use": !parallel })),
    })
}

/// The input schema of the JSON-mode tool, when `response_format` asks for JSON.
fn json_mode_schema(format: Option<&Value>) -> Result<Option<Value>, GatewayError> {
    let open_object =
        || json!({ "type": "object", "properties": {}, "additionalProperties": true });
    let Some(format) = format.filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(open_object())),
        Some("json_schema") => match format.get("json_schema").and_then(|j| j.get("schema")) {
            Some(Value::Object(o)) => Ok(Some(Value::Object(o.clone()))),
            None | Some(Value::Null) => Ok(Some(open_object())),
            Some(_) => Err(GatewayError::bad_param(
                "response_format",
                "response_format.json_schema.schema must be a JSON Schema object",
            )),
        },
        _ => Err(GatewayError::bad_param(
            "response_format",
            format!(
                "response_format must have type `text`, `json_object` or `json_schema` for \
                 provider {PROVIDER}"
            ),
        )),
    }
}

/// Messages converted to Anthropic's shape.
struct Converted {
    system: Vec<Value>,
    turns: Vec<Value>,
    /// Some turn carries `tool_use` or `tool_result` blocks.
    has_tool_blocks: bool,
}

/// Alternating turns under construction.
#[derive(Default)]
struct Turns {
    turns: Vec<(&'static str, Vec<Value>)>,
}

impl Turns {
    /// Append blocks to the conversation, merging with the last turn when it
    /// has the same role.
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
    // (name, id) of every tool_use so far, to pair legacy `function` results.
    let mut tool_uses: Vec<(String, String)> = Vec::new();

    for (i, m) in req.chat.messages.iter().enumerate() {
        let raw = raw_messages.and_then(|list| list.get(i));
        let at = |what: &str| format!("messages[{i}]{what}");
        match m.role {
            Role::System | Role::Developer => {
                for text in text_only(m.content.as_ref(), &at(".content"))? {
                    if !text.is_empty() {
                        system.push(json!({ "type": "text", "text": text }));
                    }
                }
            }
            Role::User => {
                let blocks = match &m.content {
                    None => Vec::new(),
                    Some(Content::Text(s)) => vec![json!({ "type": "text", "text": s })],
                    Some(Content::Parts(parts)) => user_parts(parts, &at(".content"))?,
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
                    None => Value::String(String::new()),
                    Some(Content::Text(s)) => Value::String(s.clone()),
                    Some(Content::Parts(parts)) => {
                        Value::Array(user_parts(parts, &at(".content"))?)
                    }
                };
                has_tool_blocks = true;
                turns.push(
                    "user",
                    vec![json!({ "type": "tool_result", "tool_use_id": id, "content": content })],
                );
            }
            Role::Assistant => {
                let mut blocks = Vec::new();
                if let Some(Value::Array(thinking)) = raw.and_then(|r| r.get("thinking_blocks")) {
                    blocks.extend(
                        thinking
                            .iter()
                            .filter(|b| {
                                matches!(
                                    b.get("type").and_then(Value::as_str),
                                    Some("thinking" | "redacted_thinking")
                                )
                            })
                            .cloned(),
                    );
                }
                for text in text_only(m.content.as_ref(), &at(".content"))? {
                    if !text.is_empty() {
                        blocks.push(json!({ "type": "text", "text": text }));
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
                    let call: crate::openai::FunctionCall = serde_json::from_value(fc.clone())
                        .map_err(|e| {
                            GatewayError::bad_param(
                                &at(".function_call"),
                                format!("invalid function_call: {e}"),
                            )
                        })?;
                    let call = ToolCall {
                        id: format!("toolu_function_call_{i}"),
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
                if b["type"] == "text" {
                    if let Some(t) = b["text"].as_str() {
                        let trimmed = t.trim_end().to_string();
                        b["text"] = Value::String(trimmed);
                    }
                }
            }
            blocks.retain(|b| !(b["type"] == "text" && b["text"] == ""));
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

/// The texts of a message that may only hold text (system, developer,
/// assistant). Other part types are refused, naming the part.
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

/// User (and tool-result) content parts as Anthropic blocks.
fn user_parts(parts: &[ContentPart], param: &str) -> Result<Vec<Value>, GatewayError> {
    parts
        .iter()
        .enumerate()
        .map(|(j, p)| {
            let param = format!("{param}[{j}]");
            match p.kind.as_str() {
                "text" => Ok(json!({ "type": "text", "text": p.text.clone().unwrap_or_default() })),
                "image_url" => match &p.image_url {
                    Some(img) => image_block(img.url(), &format!("{param}.image_url")),
                    None => Err(GatewayError::bad_param(
                        &format!("{param}.image_url"),
                        "an image_url part needs an `image_url`",
                    )),
                },
                _ => Err(unsupported_part(p, &param, false)),
            }
        })
        .collect()
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

/// An `image_url` part: a `data:` URL becomes a base64 source, an http(s)
/// URL a url source.
fn image_block(url: &str, param: &str) -> Result<Value, GatewayError> {
    if let Some(rest) = url.strip_prefix("data:") {
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
        let mime = if mime == "image/jpg" {
            "image/jpeg".to_string()
        } else {
            mime
        };
        let kind = match mime.as_str() {
            "image/jpeg" | "image/png" | "image/gif" | "image/webp" => "image",
            "application/pdf" => "document",
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
        return Ok(json!({
            "type": kind,
            "source": { "type": "base64", "media_type": mime, "data": data },
        }));
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(json!({ "type": "image", "source": { "type": "url", "url": url } }));
    }
    Err(GatewayError::bad_param(
        param,
        "image_url must be an http(s) URL or a base64 data URL",
    ))
}

/// An assistant tool call as a `tool_use` block. Its arguments must be a JSON
/// object (an empty string counts as `{}`).
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
    Ok(json!({
        "type": "tool_use",
        "id": call.id,
        "name": call.function.name,
        "input": input,
    }))
}

// ---------------------------------------------------------------------------
// Response
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

/// Anthropic token counts, as reported so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct TokenCounts {
    input: u64,
    output: u64,
    cache_creation: Option<u64>,
    cache_read: Option<u64>,
}

impl TokenCounts {
    /// Take the counts present (and not null) in an Anthropic `usage` object.
    fn merge(&mut self, usage: &Value) {
        let get = |k: &str| usage.get(k).and_then(Value::as_u64);
        if let Some(n) = get("input_tokens") {
            self.input = n;
        }
        if let Some(n) = get("output_tokens") {
            self.output = n;
        }
        if let Some(n) = get("cache_creation_input_tokens") {
            self.cache_creation = Some(n);
        }
        if let Some(n) = get("cache_read_input_tokens") {
            self.cache_read = Some(n);
        }
    }

    fn usage(&self) -> Usage {
        let prompt = self
            .input
            .saturating_add(self.cache_creation.unwrap_or(0))
            .saturating_add(self.cache_read.unwrap_or(0));
        Usage {
            prompt_tokens: prompt,
            completion_tokens: self.output,
            total_tokens: prompt.saturating_add(self.output),
        }
    }

    /// The OpenAI `usage` object.
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
    GatewayError::new(
        502,
        ErrorKind::Upstream,
        format!("{PROVIDER} returned a response the gateway could not read: {detail}"),
    )
    .with_code("upstream_invalid_response")
}

/// A successful Messages API body as an OpenAI `chat.completion`.
fn translate_response(body: &[u8], meta: &ResponseMeta) -> Result<Translated, GatewayError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| invalid_response(format!("not JSON ({e}): {}", snippet(body))))?;
    if v.get("type").and_then(Value::as_str) == Some("error") {
        return Err(error_from_body(502, body));
    }
    let content = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid_response("no `content` array"))?;

    let mut text = String::new();
    let mut json_text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    for (i, block) in content.iter().enumerate() {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => {
                let field = |k: &str| {
                    block
                        .get(k)
                        .and_then(Value::as_str)
                        .ok_or_else(|| invalid_response(format!("content[{i}] has no `{k}`")))
                };
                let (id, name) = (field("id")?, field("name")?);
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                let arguments = input.to_string();
                if name == JSON_TOOL_NAME {
                    json_text = Some(arguments);
                } else {
                    tool_calls.push(json!({
                        "id": id,
                        "type": "function",
                        "function": { "name": name, "arguments": arguments },
                    }));
                }
            }
            Some("thinking") => {
                let t = block.get("thinking").and_then(Value::as_str).unwrap_or("");
                reasoning.get_or_insert_with(String::new).push_str(t);
                thinking_blocks.push(block.clone());
            }
            Some("redacted_thinking") => thinking_blocks.push(block.clone()),
            // Server tools (web search, code execution ...) are not requested by
            // this gateway; anything else new is skipped rather than refused.
            Some(_) => {}
            None => return Err(invalid_response(format!("content[{i}] has no `type`"))),
        }
    }
    let stop_reason = v.get("stop_reason").and_then(Value::as_str);
    let mut finish = finish_reason(stop_reason);
    // LiteLLM's JSON mode: the JSON tool's input is the message.
    if let Some(json_text) = json_text {
        text = json_text;
        if tool_calls.is_empty() && finish == "tool_calls" {
            finish = "stop";
        }
    }

    let mut message = Map::new();
    message.insert("role".into(), Value::from("assistant"));
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
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(&meta.model);
    let mut out = json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": Value::Object(message),
            "finish_reason": finish,
        }],
    });
    let usage = match v.get("usage").filter(|u| u.is_object()) {
        Some(u) => {
            let mut counts = TokenCounts::default();
            counts.merge(u);
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

// ---------------------------------------------------------------------------
// Stream
// ---------------------------------------------------------------------------

/// What an open content block is, for the deltas that follow it.
#[derive(Debug, Clone, Copy)]
enum Block {
    Text,
    /// A client tool call: its OpenAI `tool_calls` index and how many argument
    /// bytes were sent.
    Tool {
        index: u32,
        args: usize,
    },
    /// The JSON-mode tool: its input is streamed as content.
    JsonTool {
        args: usize,
    },
    Thinking,
    Other,
}

/// Translates Anthropic stream events into OpenAI chunks as they complete.
///
/// Holds only the SSE decoder's unfinished line and a few counters.
struct AnthropicStream {
    decoder: SseDecoder,
    meta: ResponseMeta,
    /// The model `message_start` reported.
    model: Option<String>,
    /// The role chunk was sent.
    started: bool,
    /// `[DONE]` was written: nothing more may follow.
    done: bool,
    /// Open content blocks by Anthropic index (one at a time in practice).
    blocks: Vec<(u64, Block)>,
    /// Client tool calls started so far (the next `tool_calls` index).
    tool_calls: u32,
    /// A JSON-mode tool block was seen.
    json_mode: bool,
    counts: TokenCounts,
    saw_usage: bool,
}

impl AnthropicStream {
    fn new(meta: ResponseMeta) -> Self {
        AnthropicStream {
            decoder: SseDecoder::new(),
            meta,
            model: None,
            started: false,
            done: false,
            blocks: Vec::new(),
            tool_calls: 0,
            json_mode: false,
            counts: TokenCounts::default(),
            saw_usage: false,
        }
    }

    fn write_chunk(&self, out: &mut Vec<u8>, choices: Vec<ChunkChoice>, usage: Option<UsageOut>) {
        let chunk = Chunk {
            id: &self.meta.id,
            object: "chat.completion.chunk",
            created: self.meta.created,
            model: self.model.as_deref().unwrap_or(&self.meta.model),
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

    /// The first chunk carries the role (OpenAI streams start this way).
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

    /// End the client stream with an error event and `[DONE]`.
    fn fail(&mut self, out: &mut Vec<u8>, err: &GatewayError) {
        stream_error_event(err, out);
        write_done(out);
        self.done = true;
    }

    fn block(&mut self, index: u64) -> Option<&mut Block> {
        self.blocks
            .iter_mut()
            .find(|(i, _)| *i == index)
            .map(|(_, b)| b)
    }

    /// Translate one event. `at_end`: the event was cut off by the end of the
    /// upstream stream (no closing blank line), so unreadable data means
    /// truncation, reported by `finish`, not a malformed event.
    fn handle(&mut self, event: &str, data: &str, at_end: bool, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let v: Value = if data.trim().is_empty() {
            json!({ "type": event })
        } else {
            match serde_json::from_str(data) {
                Ok(v) => v,
                Err(_) if at_end => return,
                Err(e) => {
                    let err = invalid_response(format!("stream event `{event}` is not JSON: {e}"));
                    self.fail(out, &err);
                    return;
                }
            }
        };
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(event)
            .to_string();
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match kind.as_str() {
            "message_start" => {
                let msg = v.get("message");
                if let Some(m) = msg.and_then(|m| m.get("model")).and_then(Value::as_str) {
                    self.model = Some(m.to_string());
                }
                if let Some(u) = msg.and_then(|m| m.get("usage")).filter(|u| u.is_object()) {
                    self.counts.merge(u);
                    self.saw_usage = true;
                }
                self.ensure_started(out);
            }
            "content_block_start" => {
                let cb = v.get("content_block");
                let cb_type = cb.and_then(|c| c.get("type")).and_then(Value::as_str);
                let field = |k: &str| {
                    cb.and_then(|c| c.get(k))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                let block = match cb_type {
                    Some("text") => {
                        let text = field("text");
                        if !text.is_empty() {
                            self.write_delta(out, Delta::content(text), None);
                        }
                        Block::Text
                    }
                    Some("tool_use") if field("name") == JSON_TOOL_NAME => {
                        self.json_mode = true;
                        Block::JsonTool { args: 0 }
                    }
                    Some("tool_use") => {
                        let i = self.tool_calls;
                        self.tool_calls = self.tool_calls.saturating_add(1);
                        let call = ToolCallDelta {
                            index: i,
                            id: Some(field("id")),
                            kind: Some("function"),
                            function: FunctionDelta {
                                name: Some(field("name")),
                                arguments: Some(String::new()),
                            },
                        };
                        self.write_delta(out, Delta::tool(call), None);
                        Block::Tool { index: i, args: 0 }
                    }
                    Some("thinking") => Block::Thinking,
                    _ => Block::Other,
                };
                self.blocks.retain(|(i, _)| *i != index);
                self.blocks.push((index, block));
            }
            "content_block_delta" => {
                let delta = v.get("delta");
                let get = |k: &str| {
                    delta
                        .and_then(|d| d.get(k))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                match delta.and_then(|d| d.get("type")).and_then(Value::as_str) {
                    Some("text_delta") => {
                        let text = get("text");
                        if !text.is_empty() {
                            self.write_delta(out, Delta::content(text), None);
                        }
                    }
                    Some("thinking_delta") => {
                        let thinking = get("thinking");
                        if !thinking.is_empty() {
                            let d = Delta {
                                reasoning_content: Some(thinking),
                                ..Delta::default()
                            };
                            self.write_delta(out, d, None);
                        }
                    }
                    Some("input_json_delta") => {
                        let partial = get("partial_json");
                        if partial.is_empty() {
                            return;
                        }
                        let target = match self.block(index) {
                            Some(Block::Tool { index: i, args }) => {
                                *args = args.saturating_add(partial.len());
                                Some(*i)
                            }
                            Some(Block::JsonTool { args }) => {
                                *args = args.saturating_add(partial.len());
                                None
                            }
                            _ => return,
                        };
                        let d = match target {
                            Some(i) => Delta::tool(ToolCallDelta {
                                index: i,
                                id: None,
                                kind: None,
                                function: FunctionDelta {
                                    name: None,
                                    arguments: Some(partial),
                                },
                            }),
                            None => Delta::content(partial),
                        };
                        self.write_delta(out, d, None);
                    }
                    // signature_delta, citations_delta and future kinds carry
                    // nothing an OpenAI client reads.
                    _ => {}
                }
            }
            "content_block_stop" => {
                let pos = self.blocks.iter().position(|(i, _)| *i == index);
                let Some(pos) = pos else { return };
                let (_, block) = self.blocks.remove(pos);
                // A call without arguments still gets a parseable `{}` (LiteLLM
                // does the same on content_block_stop).
                match block {
                    Block::Tool { index: i, args: 0 } => {
                        let d = Delta::tool(ToolCallDelta {
                            index: i,
                            id: None,
                            kind: None,
                            function: FunctionDelta {
                                name: None,
                                arguments: Some("{}".into()),
                            },
                        });
                        self.write_delta(out, d, None);
                    }
                    Block::JsonTool { args: 0 } => {
                        self.write_delta(out, Delta::content("{}"), None);
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                    self.counts.merge(u);
                    self.saw_usage = true;
                }
                let stop = v
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str);
                let mut finish = finish_reason(stop);
                if finish == "tool_calls" && self.json_mode && self.tool_calls == 0 {
                    finish = "stop";
                }
                self.write_delta(out, Delta::default(), Some(finish));
            }
            "message_stop" => {
                self.ensure_started(out);
                if self.meta.include_usage {
                    self.write_chunk(out, Vec::new(), Some(self.counts.openai()));
                }
                write_done(out);
                self.done = true;
            }
            "error" => {
                let err = match v.get("error").filter(|e| e.is_object()) {
                    Some(e) => {
                        let status = status_for_error_type(
                            e.get("type").and_then(Value::as_str).unwrap_or(""),
                        );
                        anthropic_error(status, &v).unwrap_or_else(|| {
                            GatewayError::new(502, ErrorKind::Upstream, "upstream stream error")
                        })
                    }
                    None => invalid_response("stream `error` event without an error object"),
                };
                self.fail(out, &err);
            }
            // ping and event types added later carry nothing to translate.
            _ => {}
        }
    }
}

impl StreamTranslator for AnthropicStream {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        for ev in self.decoder.feed(bytes) {
            self.handle(&ev.event, &ev.data, false, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        for ev in self.decoder.finish() {
            self.handle(&ev.event, &ev.data, true, out);
        }
        if !self.done {
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
        self.saw_usage.then(|| self.counts.usage())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_filter_matches_litellm() {
        assert!(valid_user_id("user-1234"));
        assert!(valid_user_id("team:search"));
        assert!(!valid_user_id("jane.doe@example.com"));
        assert!(!valid_user_id("+1 (555) 123-4567"));
        assert!(valid_user_id("12345"));
        assert!(valid_user_id("a@b"));
    }

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
    fn tool_choice_forms() {
        let parallel_off = map_tool_choice(None, Some(false)).unwrap();
        assert_eq!(
            parallel_off,
            Some(json!({"type":"auto","disable_parallel_tool_use":true}))
        );
        let none = map_tool_choice(Some(&json!("none")), Some(false)).unwrap();
        assert_eq!(none, Some(json!({"type":"none"})));
        let named = map_tool_choice(
            Some(&json!({"type":"function","function":{"name":"f"}})),
            None,
        )
        .unwrap();
        assert_eq!(named, Some(json!({"type":"tool","name":"f"})));
        assert!(map_tool_choice(Some(&json!("sometimes")), None).is_err());
        assert!(map_tool_choice(Some(&json!({"type":"function"})), None).is_err());
    }

    #[test]
    fn image_urls() {
        let b = image_block("data:image/png;base64,AAAA", "p").unwrap();
        assert_eq!(b["source"]["media_type"], "image/png");
        assert_eq!(b["source"]["data"], "AAAA");
        let b = image_block("data:application/pdf;base64,JVBE", "p").unwrap();
        assert_eq!(b["type"], "document");
        let b = image_block("HTTPS://x.test/a.png", "p").unwrap();
        assert_eq!(b["source"]["type"], "url");
        assert!(image_block("data:image/png,raw", "p").is_err());
        assert!(image_block("data:text/plain;base64,AAAA", "p").is_err());
        assert!(image_block("ftp://x/a.png", "p").is_err());
        assert!(image_block("data:", "p").is_err());
    }

    #[test]
    fn token_counts_include_cache() {
        let mut c = TokenCounts::default();
        c.merge(&json!({"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 5, "cache_creation_input_tokens": null}));
        c.merge(&json!({"output_tokens": 7}));
        assert_eq!(c.usage(), Usage::new(15, 7));
        assert_eq!(
            json!(c.openai())["prompt_tokens_details"]["cached_tokens"],
            5
        );
    }

    #[test]
    fn stream_error_types_map_to_statuses() {
        let e = anthropic_error(
            status_for_error_type("overloaded_error"),
            &json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
        )
        .unwrap();
        assert_eq!((e.status, e.kind), (503, ErrorKind::Unavailable));
        assert_eq!(e.code.as_deref(), Some("overloaded_error"));
    }

    fn test_meta(include_usage: bool) -> ResponseMeta {
        ResponseMeta {
            id: "x".into(),
            created: 1,
            model: "m".into(),
            include_usage,
        }
    }

    #[test]
    fn stream_holds_no_more_than_a_partial_line() {
        let mut s = AnthropicStream::new(test_meta(true));
        let mut out = Vec::new();
        let delta = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"abc\"}}\n\n";
        s.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"m\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n", &mut out);
        for _ in 0..1000 {
            s.feed(delta.as_bytes(), &mut out);
            assert_eq!(s.decoder.pending_bytes(), 0);
            assert!(s.blocks.len() <= 1);
        }
        s.feed(&delta.as_bytes()[..10], &mut out);
        assert_eq!(s.decoder.pending_bytes(), 10);
        assert_eq!(String::from_utf8(out).unwrap().matches("abc").count(), 1000);
    }

    #[test]
    fn nothing_follows_done() {
        let mut s = AnthropicStream::new(test_meta(false));
        let mut out = Vec::new();
        s.feed(
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            &mut out,
        );
        let done_len = out.len();
        s.feed(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"x\"}}\n\n", &mut out);
        s.finish(&mut out);
        assert_eq!(out.len(), done_len);
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn malformed_event_ends_the_stream() {
        let mut s = AnthropicStream::new(test_meta(false));
        let mut out = Vec::new();
        s.feed(
            b"event: content_block_delta\ndata: {not json}\n\n",
            &mut out,
        );
        s.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("upstream_invalid_response"), "{text}");
        assert_eq!(text.matches("[DONE]").count(), 1);
    }

    #[test]
    fn odd_shapes_do_not_panic() {
        let meta = test_meta(true);
        for body in [
            &b"null"[..],
            b"[]",
            b"{\"content\": [1, \"x\", null, {\"type\": 5}]}",
            b"{\"content\": [{\"type\": \"text\", \"text\": 7}], \"usage\": [1], \"model\": 3}",
            b"{\"content\": [{\"type\": \"tool_use\", \"id\": \"a\", \"name\": \"b\", \"input\": \"str\"}], \"stop_reason\": 9}",
            b"{\"type\": \"error\", \"error\": \"boom\"}",
        ] {
            let _ = translate_response(body, &meta);
            let _ = error_from_body(500, body);
        }
        let events = [
            "{\"type\":\"content_block_start\",\"index\":\"x\",\"content_block\":5}",
            "{\"type\":\"content_block_delta\",\"index\":-1,\"delta\":null}",
            "{\"type\":\"content_block_delta\",\"index\":99,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}",
            "{\"type\":\"content_block_stop\",\"index\":99}",
            "{\"type\":\"message_delta\",\"delta\":null,\"usage\":[1]}",
            "{\"type\":\"message_start\",\"message\":[]}",
            "[1,2]",
            "\"str\"",
            "{\"type\":\"error\",\"error\":7}",
        ];
        for ev in events {
            let mut s = AnthropicStream::new(meta.clone());
            let mut out = Vec::new();
            s.feed(format!("data: {ev}\n\n").as_bytes(), &mut out);
            s.finish(&mut out);
            assert_eq!(String::from_utf8(out).unwrap().matches("[DONE]").count(), 1);
        }
    }

    #[test]
    fn finish_is_idempotent() {
        let mut s = AnthropicStream::new(test_meta(false));
        let mut out = Vec::new();
        s.finish(&mut out);
        s.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("[DONE]").count(), 1);
        assert!(text.contains("upstream_stream_truncated"));
    }
}
