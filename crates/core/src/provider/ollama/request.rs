//! The `/api/chat` request body: parameter checks, options, tools, response
//! format, and messages with base64 images.

#[allow(unused_imports)]
use super::*;

/// What `tool_choice` asks of Ollama.
pub(super) enum Choice {
    /// Send the tools (auto or no choice).
    Auto,
    /// Leave the tools out.
    None,
    /// Cannot be expressed (`required`, a named function).
    Forced,
}

pub(super) fn tool_choice(tc: Option<&Value>) -> Result<Choice, GatewayError> {
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

pub(super) fn check_params(
    req: &ParsedRequest,
    dep: &Deployment,
    drop_params: bool,
) -> Result<(), GatewayError> {
    let choice = tool_choice(req.chat.tool_choice.as_ref())?;
    if drop_params {
        return Ok(());
    }
    one_choice_only(req.chat.n, PROVIDER, &dep.model)?;
    if req.chat.parallel_tool_calls == Some(false) {
        return Err(unsupported_param(
            PROVIDER,
            &dep.model,
            "parallel_tool_calls",
            "value false of parameter",
        ));
    }
    if matches!(choice, Choice::Forced) && req.chat.tools.is_some() {
        return Err(unsupported_param(
            PROVIDER,
            &dep.model,
            "tool_choice",
            "forcing a tool call with parameter",
        ));
    }
    PARAMS.check(&req.chat.extra, PROVIDER, &dep.model, |_| false)?;
    Ok(())
}

pub(super) fn request_body(
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
    for key in PARAMS.native {
        if let Some(v) = raw(key) {
            body.insert((*key).into(), v);
        }
    }
    Ok(Value::Object(body))
}

pub(super) fn response_format(rf: Option<&Value>) -> Result<Option<Value>, GatewayError> {
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
pub(super) fn text_and_images(
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
pub(super) fn base64_image(url: &str, at: &str) -> Result<String, GatewayError> {
    if is_http_url(url) {
        return Err(GatewayError::bad_param(
            at,
            format!(
                "provider {PROVIDER} takes images as base64 only: send the image as a \
                 `data:image/...;base64,` URL (the gateway does not fetch image URLs)"
            ),
        )
        .with_code("unsupported_image_url"));
    }
    match data_url(url) {
        Some(Ok(DataUrl { media_type, data }))
            if media_type.starts_with("image/") && !data.is_empty() =>
        {
            Ok(data.to_string())
        }
        _ => Err(GatewayError::bad_param(
            at,
            "image URLs must be base64 `data:image/...;base64,` URLs",
        )),
    }
}

pub(super) fn convert_messages(req: &ParsedRequest) -> Result<Vec<Value>, GatewayError> {
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
