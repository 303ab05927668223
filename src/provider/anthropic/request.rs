//! OpenAI chat request -> Anthropic Messages request (the mapping is
//! described in the module docs of [`super`]).
//!
//! The request is read from the client's bytes, checked when it arrived:
//! each member and message is a slice of them, walked with
//! [`crate::codec::json_in`] (no serde structs, no second parse). Message text is
//! kept as the JSON string literal the client wrote ([`RawStr`]) and copied
//! into the output once, never decoded, allocated and escaped again. Tool
//! schemas pass through as written when they need no change. The body is
//! written straight into one buffer. Only small, rare parts
//! (`tool_choice`, `response_format`, `thinking`, thinking blocks) go
//! through `serde_json::Value`.

use std::borrow::Cow;

use serde_json::{json, Map, Value};

use super::{
    DEFAULT_MAX_TOKENS, IGNORED_PARAMS, JSON_TOOL_NAME, MAPPED_EXTRA_PARAMS, PASSTHROUGH_PARAMS,
    PROVIDER, UNSUPPORTED_PARAMS,
};
use crate::api::error::GatewayError;
use crate::api::openai::Role;
use crate::api::request::{serde_message, ClientRequest};
use crate::codec::json_in::{
    self, elements, is_array, is_number, is_object, members, members_at, present, type_name,
};
use crate::codec::json_out::{self, RawStr};
use crate::config::Deployment;

/// Top-level fields of the OpenAI request this translator knows; any other
/// member is an extra parameter (see [`check_params`]).
const KNOWN_FIELDS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "n",
    "response_format",
];

// ---------------------------------------------------------------------------
// What is read from the client's request
// ---------------------------------------------------------------------------

/// The members this translator reads, found in one pass over the request
/// (the last of duplicates wins), as JSON text; `null` counts as absent.
#[derive(Default)]
struct Fields<'a> {
    messages: Option<&'a str>,
    temperature: Option<&'a str>,
    top_p: Option<&'a str>,
    top_k: Option<&'a str>,
    stop: Option<&'a str>,
    tools: Option<&'a str>,
    tool_choice: Option<&'a str>,
    parallel_tool_calls: Option<&'a str>,
    user: Option<&'a str>,
    response_format: Option<&'a str>,
    thinking: Option<&'a str>,
    reasoning_effort: Option<&'a str>,
    metadata: Option<&'a str>,
    safety_identifier: Option<&'a str>,
    /// The first (by name) parameter Anthropic cannot take, if any.
    refused: Option<Cow<'a, str>>,
}

impl<'a> Fields<'a> {
    fn read(req: &'a ClientRequest) -> Self {
        let mut f = Fields::default();
        for (key, value) in req.members() {
            let slot = match key.as_ref() {
                "messages" => &mut f.messages,
                "temperature" => &mut f.temperature,
                "top_p" => &mut f.top_p,
                "top_k" => &mut f.top_k,
                "stop" => &mut f.stop,
                "tools" => &mut f.tools,
                "tool_choice" => &mut f.tool_choice,
                "parallel_tool_calls" => &mut f.parallel_tool_calls,
                "user" => &mut f.user,
                "response_format" => &mut f.response_format,
                "thinking" => &mut f.thinking,
                "reasoning_effort" => &mut f.reasoning_effort,
                "metadata" => &mut f.metadata,
                "safety_identifier" => &mut f.safety_identifier,
                k => {
                    if !asks_nothing(k, value) && f.refused.as_ref().is_none_or(|r| k < r.as_ref())
                    {
                        f.refused = Some(key);
                    }
                    continue;
                }
            };
            *slot = present(Some(value));
        }
        f
    }
}

/// Whether an extra member is one Anthropic can do without: `null`, a
/// known field, one accepted and ignored or mapped, or a value that asks
/// for nothing (`logprobs: false`, `modalities: ["text"]`).
fn asks_nothing(key: &str, value: &str) -> bool {
    value == "null"
        || KNOWN_FIELDS.contains(&key)
        || IGNORED_PARAMS.contains(&key)
        || PASSTHROUGH_PARAMS.contains(&key)
        || MAPPED_EXTRA_PARAMS.contains(&key)
        || match key {
            "logprobs" => value == "false",
            "modalities" => {
                let mut items = elements(value);
                items.next() == Some(r#""text""#) && items.next().is_none()
            }
            _ => false,
        }
}

/// The 400 for a member of the wrong type.
fn wrong_type(param: &str, value: &str, expected: &str) -> GatewayError {
    GatewayError::bad_param(
        param,
        format!(
            "invalid request: invalid type: {}, expected {expected}",
            type_name(value)
        ),
    )
}

/// A string member (absent or `null`: `None`).
fn opt_str<'a>(param: &str, value: Option<&'a str>) -> Result<Option<RawStr<'a>>, GatewayError> {
    match present(value) {
        None => Ok(None),
        Some(v) => RawStr::from_json(v)
            .map(Some)
            .ok_or_else(|| wrong_type(param, v, "a string")),
    }
}

/// A numeric member, kept as written.
fn number<'a>(key: &str, value: Option<&'a str>) -> Result<Option<&'a str>, GatewayError> {
    match value {
        Some(v) if !is_number(v) => Err(wrong_type(key, v, "f64")),
        v => Ok(v),
    }
}

/// A member read as a `Value` (small, rare ones).
fn value(key: &str, text: Option<&str>) -> Result<Option<Value>, GatewayError> {
    text.map(|t| serde_json::from_str(t).map_err(|e| crate::api::request::field_error(key, &e)))
        .transpose()
}

/// One message, borrowing from the request bytes.
struct MessageIn<'a> {
    role: Role,
    /// A string or a list of parts; checked when converted.
    content: Option<&'a str>,
    name: Option<RawStr<'a>>,
    tool_calls: Vec<ToolCallIn<'a>>,
    tool_call_id: Option<RawStr<'a>>,
    /// LiteLLM's field (assistant turns): read leniently.
    thinking_blocks: Option<&'a str>,
    /// The legacy single call of an assistant message.
    function_call: Option<&'a str>,
}

struct ToolCallIn<'a> {
    id: RawStr<'a>,
    kind: Option<RawStr<'a>>,
    name: RawStr<'a>,
    arguments: Option<RawStr<'a>>,
}

/// The error every malformed message gets.
fn bad_message(i: usize, detail: impl std::fmt::Display) -> GatewayError {
    GatewayError::bad_param(
        &format!("messages[{i}]"),
        format!("invalid message at messages[{i}]: {detail}"),
    )
}

/// `messages`, each checked as an OpenAI message; a bad one is named by
/// index (`messages[3]`).
fn messages(text: Option<&str>) -> Result<Vec<MessageIn<'_>>, GatewayError> {
    let text = text.unwrap_or("[]");
    let mut out = Vec::with_capacity(16);
    // One pass: each message is walked where it stands, not skipped first.
    let mut items = elements(text);
    while let Some(start) = items.start() {
        let (m, end) = message(out.len(), text, start)?;
        out.push(m);
        items.resume(end);
    }
    Ok(out)
}

/// Message `i`, the value at `text[start..]`, and where it ends.
fn message(i: usize, text: &str, start: usize) -> Result<(MessageIn<'_>, usize), GatewayError> {
    let rest = text.get(start..).unwrap_or("");
    if !is_object(rest) {
        return Err(bad_message(
            i,
            format!("invalid type: {}, expected struct Message", type_name(rest)),
        ));
    }
    let (mut role, mut content, mut name, mut tool_calls, mut tool_call_id) =
        (None, None, None, None, None);
    let (mut thinking_blocks, mut function_call) = (None, None);
    let mut walk = members_at(text, start);
    while let Some(key) = walk.key() {
        let slot = match key.text().as_ref() {
            "role" => &mut role,
            "content" => &mut content,
            "name" => &mut name,
            "tool_calls" => &mut tool_calls,
            "tool_call_id" => &mut tool_call_id,
            "thinking_blocks" => &mut thinking_blocks,
            "function_call" => &mut function_call,
            _ => {
                walk.value();
                continue;
            }
        };
        *slot = present(Some(walk.value()));
    }
    let end = walk.end();
    let role = match role {
        None => return Err(bad_message(i, "missing field `role`")),
        Some(r) => match RawStr::from_json(r).map(|s| s.text()).as_deref() {
            Some("system") => Role::System,
            Some("developer") => Role::Developer,
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            Some("tool") => Role::Tool,
            Some("function") => Role::Function,
            _ => {
                return Err(bad_message(
                    i,
                    format!(
                        "unknown variant {r}, expected one of `system`, `developer`, `user`, \
                         `assistant`, `tool`, `function`"
                    ),
                ))
            }
        },
    };
    let name = message_str(i, "name", name)?;
    let tool_call_id = message_str(i, "tool_call_id", tool_call_id)?;
    let tool_calls = match tool_calls {
        None => Vec::new(),
        Some(list) if is_array(list) => elements(list)
            .map(|call| tool_call(i, call))
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(bad_message(
                i,
                format!("invalid type: {}, expected a sequence", type_name(other)),
            ))
        }
    };
    let message = MessageIn {
        role,
        content,
        name,
        tool_calls,
        tool_call_id,
        thinking_blocks,
        function_call,
    };
    Ok((message, end))
}

/// A string field of message `i`.
fn message_str<'a>(
    i: usize,
    field: &str,
    value: Option<&'a str>,
) -> Result<Option<RawStr<'a>>, GatewayError> {
    value
        .map(|v| {
            RawStr::from_json(v).ok_or_else(|| {
                bad_message(
                    i,
                    format!(
                        "invalid type: {}, expected a string for `{field}`",
                        type_name(v)
                    ),
                )
            })
        })
        .transpose()
}

fn tool_call(i: usize, text: &str) -> Result<ToolCallIn<'_>, GatewayError> {
    let bad = |what: &str| bad_message(i, format!("invalid tool call: {what}"));
    if !is_object(text) {
        return Err(bad("expected an object"));
    }
    let (mut id, mut kind, mut function) = (None, None, None);
    for (key, value) in members(text) {
        let slot = match key.text().as_ref() {
            "id" => &mut id,
            "type" => &mut kind,
            "function" => &mut function,
            _ => continue,
        };
        *slot = present(Some(value));
    }
    let id = id
        .and_then(RawStr::from_json)
        .ok_or_else(|| bad("`id` must be a string"))?;
    let kind = match kind {
        None => None,
        Some(k) => Some(RawStr::from_json(k).ok_or_else(|| bad("`type` must be a string"))?),
    };
    let function = function
        .filter(|f| is_object(f))
        .ok_or_else(|| bad("missing field `function`"))?;
    let name = json_in::string(json_in::get(function, "name"))
        .ok_or_else(|| bad("`function.name` must be a string"))?;
    let arguments = match present(json_in::get(function, "arguments")) {
        None => None,
        Some(a) => {
            Some(RawStr::from_json(a).ok_or_else(|| bad("`function.arguments` must be a string"))?)
        }
    };
    Ok(ToolCallIn {
        id,
        kind,
        name,
        arguments,
    })
}

/// A message's content, as the client wrote it.
enum ContentIn<'a> {
    Text(RawStr<'a>),
    Parts(Vec<PartIn<'a>>),
}

/// One content part.
struct PartIn<'a> {
    kind: Cow<'a, str>,
    text: Option<RawStr<'a>>,
    /// `image_url.url`, or `image_url` itself when it is a string.
    image_url: Option<Cow<'a, str>>,
}

fn content(i: usize, raw: Option<&str>) -> Result<Option<ContentIn<'_>>, GatewayError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if let Some(s) = RawStr::from_json(raw) {
        return Ok(Some(ContentIn::Text(s)));
    }
    if !is_array(raw) {
        return Err(bad_message(
            i,
            "data did not match any variant of untagged enum Content",
        ));
    }
    let mut parts = Vec::new();
    for p in elements(raw) {
        let bad = |what: &str| bad_message(i, format!("invalid content part: {what}"));
        if !is_object(p) {
            return Err(bad("expected an object"));
        }
        let (mut kind, mut text, mut image_url) = (None, None, None);
        for (key, value) in members(p) {
            let slot = match key.text().as_ref() {
                "type" => &mut kind,
                "text" => &mut text,
                "image_url" => &mut image_url,
                _ => continue,
            };
            *slot = present(Some(value));
        }
        let kind = kind
            .and_then(RawStr::from_json)
            .ok_or_else(|| bad("missing field `type`"))?
            .text();
        let text = match text {
            None => None,
            Some(t) => Some(RawStr::from_json(t).ok_or_else(|| bad("`text` must be a string"))?),
        };
        let image_url = match image_url {
            None => None,
            Some(u) => {
                let url = if is_object(u) {
                    json_in::string(json_in::get(u, "url"))
                } else {
                    RawStr::from_json(u)
                };
                Some(
                    url.ok_or_else(|| bad("`image_url` must have a string `url`"))?
                        .text(),
                )
            }
        };
        parts.push(PartIn {
            kind,
            text,
            image_url,
        });
    }
    Ok(Some(ContentIn::Parts(parts)))
}

/// A part's `text` (absent or `null` is empty).
fn part_text<'a>(p: &PartIn<'a>) -> Text<'a> {
    match p.text {
        None => Text::Owned(String::new()),
        Some(t) => Text::Raw(t),
    }
}

/// A function tool declaration.
struct ToolDefIn<'a> {
    kind: Option<Cow<'a, str>>,
    name: RawStr<'a>,
    description: Option<RawStr<'a>>,
    parameters: Option<&'a str>,
}

fn tool_defs(text: &str) -> Result<Vec<ToolDefIn<'_>>, GatewayError> {
    let bad = |what: &str| GatewayError::bad_param("tools", format!("invalid request: {what}"));
    if !is_array(text) {
        return Err(wrong_type("tools", text, "a sequence"));
    }
    let mut out = Vec::new();
    for (i, t) in elements(text).enumerate() {
        if !is_object(t) {
            return Err(bad(&format!("tools[{i}] must be an object")));
        }
        let kind = match present(json_in::get(t, "type")) {
            None => None,
            Some(k) => Some(
                RawStr::from_json(k)
                    .ok_or_else(|| bad(&format!("tools[{i}].type must be a string")))?
                    .text(),
            ),
        };
        let function = present(json_in::get(t, "function"))
            .filter(|f| is_object(f))
            .ok_or_else(|| bad(&format!("tools[{i}] has no `function` object")))?;
        let (mut name, mut description, mut parameters) = (None, None, None);
        for (key, value) in members(function) {
            let slot = match key.text().as_ref() {
                "name" => &mut name,
                "description" => &mut description,
                "parameters" => &mut parameters,
                _ => continue,
            };
            *slot = present(Some(value));
        }
        let name = name
            .and_then(RawStr::from_json)
            .ok_or_else(|| bad(&format!("tools[{i}].function.name must be a string")))?;
        let description = match description {
            None => None,
            Some(d) => Some(RawStr::from_json(d).ok_or_else(|| {
                bad(&format!("tools[{i}].function.description must be a string"))
            })?),
        };
        out.push(ToolDefIn {
            kind,
            name,
            description,
            parameters,
        });
    }
    Ok(out)
}

/// `stop`: one string or a list of strings.
fn stop_list(text: Option<&str>) -> Result<Vec<RawStr<'_>>, GatewayError> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    if let Some(s) = RawStr::from_json(text) {
        return Ok(vec![s]);
    }
    if !is_array(text) {
        return Err(wrong_type("stop", text, "a string or a list of strings"));
    }
    elements(text)
        .map(|s| RawStr::from_json(s).ok_or_else(|| wrong_type("stop", s, "a list of strings")))
        .collect()
}

// ---------------------------------------------------------------------------
// What is written
// ---------------------------------------------------------------------------

/// Text for a block: the client's literal, or text the gateway changed.
#[derive(Clone)]
enum Text<'a> {
    Raw(RawStr<'a>),
    Owned(String),
}

impl<'a> Text<'a> {
    fn text(&self) -> Cow<'_, str> {
        match self {
            Text::Raw(r) => r.text(),
            Text::Owned(s) => Cow::Borrowed(s),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Text::Raw(r) => r.is_empty(),
            Text::Owned(s) => s.is_empty(),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Text::Raw(r) => r.write_as_sent(out),
            Text::Owned(s) => json_out::str(out, s),
        }
    }
}

/// One Anthropic content block.
enum Block<'a> {
    Text(Text<'a>),
    /// A base64 `image` or `document`.
    Base64 {
        kind: &'static str,
        media_type: String,
        data: Cow<'a, str>,
    },
    /// An image by URL.
    Url(Cow<'a, str>),
    ToolResult {
        id: Text<'a>,
        content: ResultContent<'a>,
    },
    ToolUse {
        id: Text<'a>,
        name: Text<'a>,
        /// The arguments: a JSON object's text.
        input: Cow<'a, str>,
    },
    /// A thinking block sent back as it was received.
    Value(Value),
}

enum ResultContent<'a> {
    Text(Text<'a>),
    Blocks(Vec<Block<'a>>),
}

impl Block<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Block::Text(t) => write_text_block(out, t),
            Block::Base64 {
                kind,
                media_type,
                data,
            } => {
                out.extend_from_slice(br#"{"type":"#);
                json_out::str(out, kind);
                out.extend_from_slice(br#","source":{"type":"base64","media_type":"#);
                json_out::str(out, media_type);
                out.extend_from_slice(br#","data":"#);
                json_out::str(out, data);
                out.extend_from_slice(b"}}");
            }
            Block::Url(url) => {
                out.extend_from_slice(br#"{"type":"image","source":{"type":"url","url":"#);
                json_out::str(out, url);
                out.extend_from_slice(b"}}");
            }
            Block::ToolResult { id, content } => {
                out.extend_from_slice(br#"{"type":"tool_result","tool_use_id":"#);
                id.write(out);
                out.extend_from_slice(br#","content":"#);
                match content {
                    ResultContent::Text(t) => t.write(out),
                    ResultContent::Blocks(blocks) => write_blocks(out, blocks),
                }
                out.push(b'}');
            }
            Block::ToolUse { id, name, input } => {
                out.extend_from_slice(br#"{"type":"tool_use","id":"#);
                id.write(out);
                out.extend_from_slice(br#","name":"#);
                name.write(out);
                out.extend_from_slice(br#","input":"#);
                json_out::raw(out, input);
                out.push(b'}');
            }
            Block::Value(v) => json_out::value(out, v),
        }
    }
}

fn write_text_block(out: &mut Vec<u8>, t: &Text<'_>) {
    out.extend_from_slice(br#"{"type":"text","text":"#);
    t.write(out);
    out.push(b'}');
}

fn write_blocks(out: &mut Vec<u8>, blocks: &[Block<'_>]) {
    out.push(b'[');
    for (i, b) in blocks.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        b.write(out);
    }
    out.push(b']');
}

/// A tool's `input_schema`.
enum Schema<'a> {
    /// The client's schema, unchanged.
    Raw(&'a str),
    Value(Value),
}

struct ToolOut<'a> {
    name: Text<'a>,
    description: Option<Text<'a>>,
    schema: Schema<'a>,
}

// ---------------------------------------------------------------------------
// Translation
// ---------------------------------------------------------------------------

/// The Messages API body for `req`.
pub(super) fn request_body(
    req: &ClientRequest,
    dep: &Deployment,
    drop_params: bool,
) -> Result<Vec<u8>, GatewayError> {
    // Everything is read (and so checked) first, in the order a full parse
    // reported errors: the messages, then the other known fields.
    let f = Fields::read(req);
    let messages = messages(f.messages)?;
    let temperature = number("temperature", f.temperature)?;
    let top_p = number("top_p", f.top_p)?;
    let stop = stop_list(f.stop)?;
    let tool_defs = f.tools.map(tool_defs).transpose()?;
    let tool_choice = value("tool_choice", f.tool_choice)?;
    let parallel_tool_calls = match f.parallel_tool_calls {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => return Err(wrong_type("parallel_tool_calls", other, "a boolean")),
    };
    let user = opt_str("user", f.user)?.map(|u| u.text());
    let response_format = value("response_format", f.response_format)?;
    check_params(req, dep, drop_params, f.refused.as_deref())?;

    let converted = convert_messages(&messages)?;

    // Thinking: native `thinking` wins over `reasoning_effort`.
    let thinking = match f.thinking {
        None => reasoning_effort_thinking(f.reasoning_effort)?,
        Some(t) if t.starts_with('{') => serde_json::from_str::<Value>(t).ok(),
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
    let max_tokens = req
        .head
        .max_output_tokens()
        .unwrap_or_else(|| DEFAULT_MAX_TOKENS.saturating_add(thinking_budget.unwrap_or(0)));

    // Tools, the JSON-mode tool, and the choice between them.
    let mut tools = match &tool_defs {
        Some(defs) => map_tools(defs)?,
        None => Vec::new(),
    };
    let mut tool_choice = map_tool_choice(tool_choice.as_ref(), parallel_tool_calls)?;
    if let Some(schema) = crate::provider::json_mode_schema(response_format.as_ref(), PROVIDER)? {
        tools.push(ToolOut {
            name: Text::Owned(JSON_TOOL_NAME.to_string()),
            description: None,
            schema: Schema::Value(schema),
        });
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

    let mut out = Vec::with_capacity(req.body().len() + 256);
    out.push(b'{');
    json_out::key(&mut out, "model");
    json_out::str(&mut out, &dep.model);
    out.extend_from_slice(br#","messages":["#);
    for (t, (role, start)) in converted.turns.iter().enumerate() {
        let end = converted
            .turns
            .get(t + 1)
            .map_or(converted.blocks.len(), |(_, s)| *s);
        if t > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"role":"#);
        json_out::str(&mut out, role);
        out.extend_from_slice(br#","content":"#);
        write_blocks(&mut out, &converted.blocks[*start..end]);
        out.push(b'}');
    }
    out.push(b']');
    if !converted.system.is_empty() {
        out.extend_from_slice(br#","system":["#);
        for (i, text) in converted.system.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_text_block(&mut out, text);
        }
        out.push(b']');
    }
    out.extend_from_slice(br#","max_tokens":"#);
    json_out::u64(&mut out, max_tokens);
    if let Some(t) = &thinking {
        out.extend_from_slice(br#","thinking":"#);
        json_out::value(&mut out, t);
    }
    for (key, value) in [
        ("temperature", temperature),
        ("top_p", top_p),
        ("top_k", f.top_k),
    ] {
        if let Some(v) = value {
            out.push(b',');
            json_out::key(&mut out, key);
            json_out::raw(&mut out, v);
        }
    }
    let mut wrote_stop = false;
    for s in &stop {
        // Whitespace-only sequences (which Anthropic refuses) are dropped with drop_params.
        if drop_params && !s.is_empty() && s.text().trim().is_empty() {
            continue;
        }
        out.extend_from_slice(if wrote_stop {
            b","
        } else {
            br#","stop_sequences":["#
        });
        s.write_as_sent(&mut out);
        wrote_stop = true;
    }
    if wrote_stop {
        out.push(b']');
    }
    if req.head.is_stream() {
        out.extend_from_slice(br#","stream":true"#);
    }
    if let Some(user_id) = user_id(&f, user.as_deref()) {
        out.extend_from_slice(br#","metadata":{"user_id":"#);
        json_out::str(&mut out, &user_id);
        out.push(b'}');
    }
    if !tools.is_empty() {
        out.extend_from_slice(br#","tools":["#);
        for (i, tool) in tools.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"name":"#);
            tool.name.write(&mut out);
            if let Some(d) = &tool.description {
                out.extend_from_slice(br#","description":"#);
                d.write(&mut out);
            }
            out.extend_from_slice(br#","input_schema":"#);
            match &tool.schema {
                Schema::Raw(text) => json_out::raw(&mut out, text),
                Schema::Value(v) => json_out::value(&mut out, v),
            }
            out.push(b'}');
        }
        out.push(b']');
        if let Some(tc) = &tool_choice {
            out.extend_from_slice(br#","tool_choice":"#);
            json_out::value(&mut out, tc);
        }
    }
    out.push(b'}');
    Ok(out)
}

/// Reject (or, with `drop_params`, accept and drop) parameters Anthropic
/// cannot take: `n` > 1, then `refused` (see [`Fields`]).
fn check_params(
    req: &ClientRequest,
    dep: &Deployment,
    drop_params: bool,
    refused: Option<&str>,
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
    if req.head.n.is_some_and(|n| n > 1) {
        return Err(unsupported("n", "parameter"));
    }
    match refused {
        None => Ok(()),
        Some(key) => {
            let what = if UNSUPPORTED_PARAMS.contains(&key) {
                "parameter"
            } else {
                "unknown parameter"
            };
            Err(unsupported(key, what))
        }
    }
}

/// `reasoning_effort` as a `thinking` object, with LiteLLM's budgets.
fn reasoning_effort_thinking(member: Option<&str>) -> Result<Option<Value>, GatewayError> {
    let effort: Cow<str> = match member {
        None => return Ok(None),
        Some(text) => serde_json::from_str(text).map_err(|_| {
            GatewayError::bad_param("reasoning_effort", "'reasoning_effort' must be a string")
        })?,
    };
    let budget = match effort.as_ref() {
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
fn user_id(f: &Fields<'_>, user: Option<&str>) -> Option<String> {
    let string_at = |member: Option<&str>, path: &[&str]| -> Option<String> {
        let v: Value = serde_json::from_str(member?).ok()?;
        let mut at = &v;
        for p in path {
            at = at.get(p)?;
        }
        at.as_str().map(str::to_string)
    };
    let chosen = match user {
        Some(u) => Some(u.to_string()),
        None => string_at(f.metadata, &["user_id"]).or_else(|| string_at(f.safety_identifier, &[])),
    };
    chosen.filter(|u| !u.is_empty() && valid_user_id(u))
}

/// False for strings shaped like an e-mail address or a phone number
/// (LiteLLM's `_valid_user_id`, without regexes).
pub(super) fn valid_user_id(s: &str) -> bool {
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

/// OpenAI function tools as Anthropic tools. A schema that already says
/// `"type": "object"` is passed through as written.
fn map_tools<'a>(defs: &[ToolDefIn<'a>]) -> Result<Vec<ToolOut<'a>>, GatewayError> {
    let mut out = Vec::with_capacity(defs.len() + 1);
    for (i, def) in defs.iter().enumerate() {
        let kind = def.kind.as_deref().unwrap_or("function");
        if kind != "function" {
            return Err(GatewayError::bad_param(
                &format!("tools[{i}].type"),
                format!(
                    "tool type `{kind}` is not supported by provider {PROVIDER}; only `function` tools are",
                ),
            ));
        }
        let schema = match def.parameters {
            None => Schema::Value(json!({ "type": "object", "properties": {} })),
            Some(text) if is_object(text) => {
                let says_object = json_in::string(json_in::get(text, "type"))
                    .is_some_and(|t| t.text() == "object");
                if says_object {
                    Schema::Raw(text)
                } else {
                    let mut o: Map<String, Value> = serde_json::from_str(text).unwrap_or_default();
                    if o.get("type").and_then(Value::as_str) != Some("object") {
                        o.insert("type".into(), Value::from("object"));
                        o.entry("properties").or_insert_with(|| json!({}));
                    }
                    Schema::Value(Value::Object(o))
                }
            }
            Some(_) => {
                return Err(GatewayError::bad_param(
                    &format!("tools[{i}].function.parameters"),
                    "function parameters must be a JSON Schema object",
                ))
            }
        };
        out.push(ToolOut {
            name: Text::Raw(def.name),
            description: def.description.map(Text::Raw),
            schema,
        });
    }
    Ok(out)
}

/// OpenAI `tool_choice` and `parallel_tool_calls` as Anthropic `tool_choice`.
pub(super) fn map_tool_choice(
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

/// Messages converted to Anthropic's shape: one list of blocks, cut into
/// alternating turns.
struct Converted<'a> {
    system: Vec<Text<'a>>,
    blocks: Vec<Block<'a>>,
    /// Each turn: its role and the index of its first block.
    turns: Vec<(&'static str, usize)>,
    /// Some turn carries `tool_use` or `tool_result` blocks.
    has_tool_blocks: bool,
}

impl<'a> Converted<'a> {
    /// Append blocks (those from `from` on, already pushed) as a turn of
    /// `role`, merging with the last turn when it has the same role (the API
    /// requires alternation).
    fn close_turn(&mut self, role: &'static str, from: usize) {
        if self.blocks.len() == from {
            return;
        }
        if self.turns.last().is_none_or(|(last, _)| *last != role) {
            self.turns.push((role, from));
        }
    }
}

fn convert_messages<'a>(messages: &'a [MessageIn<'a>]) -> Result<Converted<'a>, GatewayError> {
    let mut c = Converted {
        system: Vec::new(),
        blocks: Vec::with_capacity(messages.len() + 4),
        turns: Vec::with_capacity(messages.len()),
        has_tool_blocks: false,
    };
    // (name, id) of every tool_use so far, to pair legacy `function` results.
    let mut tool_uses: Vec<(Cow<'a, str>, Text<'a>)> = Vec::new();

    for (i, m) in messages.iter().enumerate() {
        let at = |what: &str| format!("messages[{i}]{what}");
        let from = c.blocks.len();
        match m.role {
            Role::System | Role::Developer => {
                for text in text_only(i, m.content)? {
                    if !text.is_empty() {
                        c.system.push(text);
                    }
                }
            }
            Role::User => {
                match content(i, m.content)? {
                    None => {}
                    Some(ContentIn::Text(s)) => c.blocks.push(Block::Text(Text::Raw(s))),
                    Some(ContentIn::Parts(parts)) => user_parts(i, &parts, &mut c.blocks)?,
                }
                c.close_turn("user", from);
            }
            Role::Tool | Role::Function => {
                let id = match (m.tool_call_id, m.role) {
                    (Some(id), _) => Text::Raw(id),
                    (None, Role::Function) => m
                        .name
                        .map(|n| n.text())
                        .and_then(|n| tool_uses.iter().rev().find(|(name, _)| *name == n))
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
                let content = match content(i, m.content)? {
                    None => ResultContent::Text(Text::Owned(String::new())),
                    Some(ContentIn::Text(s)) => ResultContent::Text(Text::Raw(s)),
                    Some(ContentIn::Parts(parts)) => {
                        let mut blocks = Vec::with_capacity(parts.len());
                        user_parts(i, &parts, &mut blocks)?;
                        ResultContent::Blocks(blocks)
                    }
                };
                c.has_tool_blocks = true;
                c.blocks.push(Block::ToolResult { id, content });
                c.close_turn("user", from);
            }
            Role::Assistant => {
                if let Some(raw) = m.thinking_blocks {
                    if let Ok(Value::Array(thinking)) = serde_json::from_str(raw) {
                        c.blocks.extend(
                            thinking
                                .into_iter()
                                .filter(|b| {
                                    matches!(
                                        b.get("type").and_then(Value::as_str),
                                        Some("thinking" | "redacted_thinking")
                                    )
                                })
                                .map(Block::Value),
                        );
                    }
                }
                for text in text_only(i, m.content)? {
                    if !text.is_empty() {
                        c.blocks.push(Block::Text(text));
                    }
                }
                for (j, call) in m.tool_calls.iter().enumerate() {
                    let block = tool_use_block(
                        Text::Raw(call.id),
                        call.kind.map(|k| k.text()).as_deref().unwrap_or("function"),
                        Text::Raw(call.name),
                        call.arguments.map_or(Cow::Borrowed(""), |a| a.text()),
                        &|| at(&format!(".tool_calls[{j}]")),
                    )?;
                    tool_uses.push((call.name.text(), Text::Raw(call.id)));
                    c.has_tool_blocks = true;
                    c.blocks.push(block);
                }
                if let Some(fc) = m.function_call {
                    let crate::api::openai::FunctionCall { name, arguments } =
                        serde_json::from_str(fc).map_err(|e| {
                            GatewayError::bad_param(
                                &at(".function_call"),
                                format!("invalid function_call: {}", serde_message(&e)),
                            )
                        })?;
                    let id = format!("toolu_function_call_{i}");
                    let block = tool_use_block(
                        Text::Owned(id.clone()),
                        "function",
                        Text::Owned(name.clone()),
                        Cow::Owned(arguments),
                        &|| at(".function_call"),
                    )?;
                    tool_uses.push((Cow::Owned(name), Text::Owned(id)));
                    c.has_tool_blocks = true;
                    c.blocks.push(block);
                }
                c.close_turn("assistant", from);
            }
        }
    }

    // A final assistant turn (a prefill) must not end in whitespace.
    if let Some(&("assistant", start)) = c.turns.last() {
        let mut kept = start;
        for k in start..c.blocks.len() {
            if let Block::Text(t) = &c.blocks[k] {
                let trimmed = match t {
                    Text::Raw(r) => {
                        let text = r.text();
                        let trimmed = text.trim_end();
                        (trimmed.len() != text.len()).then(|| trimmed.to_string())
                    }
                    Text::Owned(s) => Some(s.trim_end().to_string()),
                };
                if let Some(s) = trimmed {
                    c.blocks[k] = Block::Text(Text::Owned(s));
                }
                if matches!(&c.blocks[k], Block::Text(t) if t.is_empty()) {
                    continue;
                }
            }
            c.blocks.swap(kept, k);
            kept += 1;
        }
        c.blocks.truncate(kept);
        if kept == start {
            c.turns.pop();
        }
    }
    if c.turns.is_empty() {
        return Err(GatewayError::bad_param(
            "messages",
            format!(
                "provider {PROVIDER} needs at least one user or assistant message besides \
                 system messages"
            ),
        ));
    }
    Ok(c)
}

/// The texts of a message that may only hold text (system, developer,
/// assistant). Other part types are refused, naming the part.
fn text_only(i: usize, raw: Option<&str>) -> Result<Vec<Text<'_>>, GatewayError> {
    match content(i, raw)? {
        None => Ok(Vec::new()),
        Some(ContentIn::Text(s)) => Ok(vec![Text::Raw(s)]),
        Some(ContentIn::Parts(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| {
                if p.kind == "text" {
                    Ok(part_text(p))
                } else {
                    Err(unsupported_part(
                        &p.kind,
                        &format!("messages[{i}].content[{j}]"),
                        true,
                    ))
                }
            })
            .collect(),
    }
}

/// User (and tool-result) content parts as Anthropic blocks, appended to `out`.
fn user_parts<'a>(
    i: usize,
    parts: &[PartIn<'a>],
    out: &mut Vec<Block<'a>>,
) -> Result<(), GatewayError> {
    for (j, p) in parts.iter().enumerate() {
        let param = || format!("messages[{i}].content[{j}]");
        let block = match p.kind.as_ref() {
            "text" => Block::Text(part_text(p)),
            "image_url" => match &p.image_url {
                Some(url) => image_block(url, &format!("{}.image_url", param()))?,
                None => {
                    return Err(GatewayError::bad_param(
                        &format!("{}.image_url", param()),
                        "an image_url part needs an `image_url`",
                    ))
                }
            },
            other => return Err(unsupported_part(other, &param(), false)),
        };
        out.push(block);
    }
    Ok(())
}

fn unsupported_part(kind: &str, param: &str, text_only_role: bool) -> GatewayError {
    let detail = if text_only_role {
        "this role takes text parts only"
    } else {
        "supported part types are `text` and `image_url`"
    };
    GatewayError::bad_param(
        param,
        format!(
            "content part type `{kind}` is not supported by provider {PROVIDER} here ({detail})"
        ),
    )
    .with_code("unsupported_content_type")
}

/// An `image_url` part: a `data:` URL becomes a base64 source, an http(s)
/// URL a url source. The base64 data is borrowed from the request.
fn image_block<'a>(url: &Cow<'a, str>, param: &str) -> Result<Block<'a>, GatewayError> {
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
        let data = match url {
            Cow::Borrowed(u) => Cow::Borrowed(&u[u.len() - data.len()..]),
            Cow::Owned(_) => Cow::Owned(data.to_string()),
        };
        return Ok(Block::Base64 {
            kind,
            media_type: mime,
            data,
        });
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(Block::Url(url.clone()));
    }
    Err(GatewayError::bad_param(
        param,
        "image_url must be an http(s) URL or a base64 data URL",
    ))
}

/// An assistant tool call as a `tool_use` block. Its arguments must be a JSON
/// object (an empty string counts as `{}`); they are passed on as written.
fn tool_use_block<'a>(
    id: Text<'a>,
    kind: &str,
    name: Text<'a>,
    arguments: Cow<'a, str>,
    param: &dyn Fn() -> String,
) -> Result<Block<'a>, GatewayError> {
    if kind != "function" {
        return Err(GatewayError::bad_param(
            &format!("{}.type", param()),
            format!("tool call type `{kind}` is not supported"),
        ));
    }
    let input = match arguments {
        Cow::Borrowed(a) => Cow::Borrowed(a.trim()),
        Cow::Owned(a) => Cow::Owned(a.trim().to_string()),
    };
    if input.is_empty() {
        return Ok(Block::ToolUse {
            id,
            name,
            input: Cow::Borrowed("{}"),
        });
    }
    let id_text = || id.text().into_owned();
    match json_in::check(&input) {
        Ok(()) if is_object(&input) => {}
        Ok(()) => {
            return Err(GatewayError::bad_param(
                &format!("{}.function.arguments", param()),
                format!(
                    "the arguments of tool call `{}` must encode a JSON object",
                    id_text()
                ),
            ))
        }
        Err(e) => {
            return Err(GatewayError::bad_param(
                &format!("{}.function.arguments", param()),
                format!(
                    "the arguments of tool call `{}` are not valid JSON: {e}",
                    id_text()
                ),
            ))
        }
    }
    Ok(Block::ToolUse { id, name, input })
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

    fn image(url: &str) -> Result<Value, GatewayError> {
        let b = image_block(&Cow::Borrowed(url), "p")?;
        let mut out = Vec::new();
        b.write(&mut out);
        Ok(serde_json::from_slice(&out).unwrap())
    }

    #[test]
    fn image_urls() {
        let b = image("data:image/png;base64,AAAA").unwrap();
        assert_eq!(b["source"]["media_type"], "image/png");
        assert_eq!(b["source"]["data"], "AAAA");
        let b = image("data:application/pdf;base64,JVBE").unwrap();
        assert_eq!(b["type"], "document");
        let b = image("HTTPS://x.test/a.png").unwrap();
        assert_eq!(b["source"]["type"], "url");
        assert!(image("data:image/png,raw").is_err());
        assert!(image("data:text/plain;base64,AAAA").is_err());
        assert!(image("ftp://x/a.png").is_err());
        assert!(image("data:").is_err());
    }

    #[test]
    fn text_is_copied_as_written_and_escapes_survive() {
        let req = ClientRequest::parse(
            crate::provider::Operation::Chat,
            br#"{"model":"m","messages":[{"role":"user","content":"caf\u00e9 \"q\"\n"},{"role":"assistant","content":"ok \t "}]}"#.to_vec(),
        )
        .unwrap();
        let dep = crate::pipeline::load_config(
            br#"{"model_list":[{"model_name":"m","litellm_params":{"model":"anthropic/claude-x"}}],"gateway":{"clusters":{"anthropic":"c"}}}"#,
            &|_| None,
        )
        .unwrap()
        .deployments
        .remove(0);
        let body = request_body(&req, &dep, false).unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains(r#""text":"caf\u00e9 \"q\"\n""#), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v["messages"][1]["content"][0]["text"], "ok",
            "prefill trimmed"
        );
    }
}
