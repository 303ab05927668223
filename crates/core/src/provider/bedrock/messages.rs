//! OpenAI messages as Converse `system` and `messages`: turns, content parts,
//! media and documents, tool use blocks.

#[allow(unused_imports)]
use super::*;

/// Messages in Converse shape.
pub(super) struct Converted {
    pub(super) system: Vec<Value>,
    pub(super) turns: Vec<Value>,
    pub(super) has_tool_blocks: bool,
}

#[derive(Default)]
pub(super) struct Turns {
    pub(super) turns: Vec<(&'static str, Vec<Value>)>,
}

impl Turns {
    pub(super) fn push(&mut self, role: &'static str, blocks: Vec<Value>) {
        if blocks.is_empty() {
            return;
        }
        match self.turns.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => self.turns.push((role, blocks)),
        }
    }
}

pub(super) fn convert_messages(req: &ParsedRequest) -> Result<Converted, GatewayError> {
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
pub(super) fn reasoning_block(b: &Value) -> Option<Value> {
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

pub(super) fn text_only(
    content: Option<&Content>,
    param: &str,
) -> Result<Vec<String>, GatewayError> {
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

pub(super) fn user_parts(
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

pub(super) fn unsupported_part(p: &ContentPart, param: &str, text_only_role: bool) -> GatewayError {
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
pub(super) fn media_block(url: &str, param: &str, doc_name: &str) -> Result<Value, GatewayError> {
    let Some(parsed) = data_url(url) else {
        if is_http_url(url) {
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
    let DataUrl {
        media_type: mime,
        data,
    } = parsed.map_err(|e| {
        GatewayError::bad_param(
            param,
            format!(
                "image data URL {}; expected data:<media type>;base64,<data>",
                e.why()
            ),
        )
    })?;
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

pub(super) fn tool_use_block(call: &ToolCall, param: &str) -> Result<Value, GatewayError> {
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
