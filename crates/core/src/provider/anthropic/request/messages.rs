//! OpenAI messages as Anthropic blocks cut into alternating turns: system
//! text, user parts and images, tool calls and tool results.

#[allow(unused_imports)]
use super::*;

/// Messages converted to Anthropic's shape: one list of blocks, cut into
/// alternating turns.
pub(super) struct Converted<'a> {
    pub(super) system: Vec<Text<'a>>,
    pub(super) blocks: Vec<Block<'a>>,
    /// Each turn: its role and the index of its first block.
    pub(super) turns: Vec<(&'static str, usize)>,
    /// Some turn carries `tool_use` or `tool_result` blocks.
    pub(super) has_tool_blocks: bool,
}

/// LiteLLM's text for empty user content (`_EMPTY_TEXT_PLACEHOLDER`).
pub(super) const EMPTY_PLACEHOLDER: &str =
    "[System: Empty message content sanitised to satisfy protocol]";

/// LiteLLM's note before a system message turned into user text
/// (`CONVERTED_SYSTEM_NOTE`), so the model can tell it from the user's words.
pub(super) const SYSTEM_NOTE: &str = "Operator note (not from the user): the following was \
     originally a mid-conversation system-role reminder.";

impl<'a> Converted<'a> {
    /// Append `blocks` (taken) as a user turn.
    pub(super) fn user_blocks(&mut self, blocks: &mut Vec<Block<'a>>) {
        let from = self.blocks.len();
        self.blocks.append(blocks);
        self.close_turn("user", from);
    }

    /// Append blocks (those from `from` on, already pushed) as a turn of
    /// `role`, merging with the last turn when it has the same role (the API
    /// requires alternation).
    pub(super) fn close_turn(&mut self, role: &'static str, from: usize) {
        if self.blocks.len() == from {
            return;
        }
        if self.turns.last().is_none_or(|(last, _)| *last != role) {
            self.turns.push((role, from));
        }
    }
}

pub(super) fn convert_messages<'a>(
    messages: &'a [MessageIn<'a>],
) -> Result<Converted<'a>, GatewayError> {
    let mut c = Converted {
        system: Vec::new(),
        blocks: Vec::with_capacity(messages.len() + 4),
        turns: Vec::with_capacity(messages.len()),
        has_tool_blocks: false,
    };
    // (name, id) of every tool_use so far, to pair legacy `function` results.
    let mut tool_uses: Vec<(Cow<'a, str>, Text<'a>)> = Vec::new();
    // System text after the conversation started, waiting for its user turn.
    let mut reminders: Vec<Block<'a>> = Vec::new();
    let mut started = false;

    for (i, m) in messages.iter().enumerate() {
        let at = |what: &str| format!("messages[{i}]{what}");
        let is_system = matches!(m.role, Role::System | Role::Developer);
        if !is_system && !matches!(m.role, Role::Tool | Role::Function) {
            c.user_blocks(&mut reminders);
        }
        started |= !is_system;
        let from = c.blocks.len();
        match m.role {
            // The leading system messages are the top-level `system`; later
            // ones become user text in place, after LiteLLM's operator note
            // (and after the tool results they sit among, which must open
            // their turn), as LiteLLM does for models that take no system
            // role in `messages`.
            Role::System | Role::Developer => {
                let mut noted = !started;
                for text in text_only(i, m.content)? {
                    if text.is_blank() {
                        continue;
                    }
                    if !started {
                        c.system.push(text);
                        continue;
                    }
                    if !noted {
                        reminders.push(Block::Text(Text::Owned(SYSTEM_NOTE.into())));
                        noted = true;
                    }
                    reminders.push(Block::Text(text));
                }
            }
            // Empty text (and an empty message) is LiteLLM's placeholder:
            // Anthropic refuses empty text blocks and empty turns.
            Role::User => {
                match content(i, m.content)? {
                    None => {}
                    Some(ContentIn::Text(s)) => c.blocks.push(Block::Text(Text::Raw(s))),
                    Some(ContentIn::Parts(parts)) => user_parts(i, &parts, &mut c.blocks)?,
                }
                for b in &mut c.blocks[from..] {
                    if matches!(b, Block::Text(t) if t.is_blank()) {
                        *b = Block::Text(Text::Owned(EMPTY_PLACEHOLDER.into()));
                    }
                }
                if c.blocks.len() == from {
                    c.blocks
                        .push(Block::Text(Text::Owned(EMPTY_PLACEHOLDER.into())));
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
                    if !text.is_blank() {
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

    c.user_blocks(&mut reminders);

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
pub(super) fn text_only(i: usize, raw: Option<&str>) -> Result<Vec<Text<'_>>, GatewayError> {
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
pub(super) fn user_parts<'a>(
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

pub(super) fn unsupported_part(kind: &str, param: &str, text_only_role: bool) -> GatewayError {
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
pub(super) fn image_block<'a>(url: &Cow<'a, str>, param: &str) -> Result<Block<'a>, GatewayError> {
    if let Some(parsed) = data_url(url) {
        let DataUrl { media_type, data } = parsed.map_err(|e| {
            GatewayError::bad_param(
                param,
                format!(
                    "image data URL {}; expected data:<media type>;base64,<data>",
                    e.why()
                ),
            )
        })?;
        let mime = canonical_media_type(media_type);
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
    if is_http_url(url) {
        return Ok(Block::Url(url.clone()));
    }
    Err(GatewayError::bad_param(
        param,
        "image_url must be an http(s) URL or a base64 data URL",
    ))
}

/// An assistant tool call as a `tool_use` block. Its arguments must be a JSON
/// object (an empty string counts as `{}`); they are passed on as written.
pub(super) fn tool_use_block<'a>(
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
