//! What is read from the client's request: the members this translator uses,
//! messages, content parts, tool definitions and stop lists, each as slices of
//! the client's bytes.

#[allow(unused_imports)]
use super::*;

/// The members this translator reads, found in one pass over the request
/// (the last of duplicates wins), as JSON text; `null` counts as absent.
#[derive(Default)]
pub(super) struct Fields<'a> {
    pub(super) messages: Option<&'a str>,
    pub(super) temperature: Option<&'a str>,
    pub(super) top_p: Option<&'a str>,
    pub(super) top_k: Option<&'a str>,
    pub(super) stop: Option<&'a str>,
    pub(super) tools: Option<&'a str>,
    pub(super) tool_choice: Option<&'a str>,
    pub(super) parallel_tool_calls: Option<&'a str>,
    pub(super) user: Option<&'a str>,
    pub(super) response_format: Option<&'a str>,
    pub(super) thinking: Option<&'a str>,
    pub(super) reasoning_effort: Option<&'a str>,
    pub(super) metadata: Option<&'a str>,
    pub(super) safety_identifier: Option<&'a str>,
    /// The first (by name) parameter Anthropic cannot take, if any.
    pub(super) refused: Option<Cow<'a, str>>,
}

impl<'a> Fields<'a> {
    pub(super) fn read(req: &'a ClientRequest) -> Self {
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
        // LiteLLM's own `metadata` (never sent as it is): its `user_id` is
        // Anthropic's, as LiteLLM reads it.
        f.metadata = present(req.gateway_member("metadata"));
        f
    }
}

/// Whether an extra member is one Anthropic can do without: `null`, a
/// known field, one accepted and ignored or mapped, or a value that asks
/// for nothing (`logprobs: false`, `modalities: ["text"]`).
pub(super) fn asks_nothing(key: &str, value: &str) -> bool {
    KNOWN_FIELDS.contains(&key) || PARAMS.accepts(key) || asks_nothing_text(key, value)
}

/// The 400 for a member of the wrong type.
pub(super) fn wrong_type(param: &str, value: &str, expected: &str) -> GatewayError {
    GatewayError::bad_param(
        param,
        format!(
            "invalid request: invalid type: {}, expected {expected}",
            type_name(value)
        ),
    )
}

/// A string member (absent or `null`: `None`).
pub(super) fn opt_str<'a>(
    param: &str,
    value: Option<&'a str>,
) -> Result<Option<RawStr<'a>>, GatewayError> {
    match present(value) {
        None => Ok(None),
        Some(v) => RawStr::from_json(v)
            .map(Some)
            .ok_or_else(|| wrong_type(param, v, "a string")),
    }
}

/// A numeric member, kept as written.
pub(super) fn number<'a>(
    key: &str,
    value: Option<&'a str>,
) -> Result<Option<&'a str>, GatewayError> {
    match value {
        Some(v) if !is_number(v) => Err(wrong_type(key, v, "f64")),
        v => Ok(v),
    }
}

/// A member read as a `Value` (small, rare ones).
pub(super) fn value(key: &str, text: Option<&str>) -> Result<Option<Value>, GatewayError> {
    text.map(|t| serde_json::from_str(t).map_err(|e| crate::api::request::field_error(key, &e)))
        .transpose()
}

/// One message, borrowing from the request bytes.
pub(super) struct MessageIn<'a> {
    pub(super) role: Role,
    /// A string or a list of parts; checked when converted.
    pub(super) content: Option<&'a str>,
    pub(super) name: Option<RawStr<'a>>,
    pub(super) tool_calls: Vec<ToolCallIn<'a>>,
    pub(super) tool_call_id: Option<RawStr<'a>>,
    /// LiteLLM's field (assistant turns): read leniently.
    pub(super) thinking_blocks: Option<&'a str>,
    /// The legacy single call of an assistant message.
    pub(super) function_call: Option<&'a str>,
}

pub(super) struct ToolCallIn<'a> {
    pub(super) id: RawStr<'a>,
    pub(super) kind: Option<RawStr<'a>>,
    pub(super) name: RawStr<'a>,
    pub(super) arguments: Option<RawStr<'a>>,
}

/// The error every malformed message gets.
pub(super) fn bad_message(i: usize, detail: impl std::fmt::Display) -> GatewayError {
    GatewayError::bad_param(
        &format!("messages[{i}]"),
        format!("invalid message at messages[{i}]: {detail}"),
    )
}

/// `messages`, each checked as an OpenAI message; a bad one is named by
/// index (`messages[3]`).
pub(super) fn messages(text: Option<&str>) -> Result<Vec<MessageIn<'_>>, GatewayError> {
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
pub(super) fn message(
    i: usize,
    text: &str,
    start: usize,
) -> Result<(MessageIn<'_>, usize), GatewayError> {
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
pub(super) fn message_str<'a>(
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

pub(super) fn tool_call(i: usize, text: &str) -> Result<ToolCallIn<'_>, GatewayError> {
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
pub(super) enum ContentIn<'a> {
    Text(RawStr<'a>),
    Parts(Vec<PartIn<'a>>),
}

/// One content part.
pub(super) struct PartIn<'a> {
    pub(super) kind: Cow<'a, str>,
    pub(super) text: Option<RawStr<'a>>,
    /// `image_url.url`, or `image_url` itself when it is a string.
    pub(super) image_url: Option<Cow<'a, str>>,
}

pub(super) fn content(i: usize, raw: Option<&str>) -> Result<Option<ContentIn<'_>>, GatewayError> {
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
pub(super) fn part_text<'a>(p: &PartIn<'a>) -> Text<'a> {
    match p.text {
        None => Text::Owned(String::new()),
        Some(t) => Text::Raw(t),
    }
}

/// A function tool declaration.
pub(super) struct ToolDefIn<'a> {
    pub(super) kind: Option<Cow<'a, str>>,
    pub(super) name: RawStr<'a>,
    pub(super) description: Option<RawStr<'a>>,
    pub(super) parameters: Option<&'a str>,
}

pub(super) fn tool_defs(text: &str) -> Result<Vec<ToolDefIn<'_>>, GatewayError> {
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
pub(super) fn stop_list(text: Option<&str>) -> Result<Vec<RawStr<'_>>, GatewayError> {
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
