//! The v2 Chat request body: parameter checks, tools and tool choice, response
//! format, reasoning, and messages with their content parts.

#[allow(unused_imports)]
use super::*;

pub(super) fn check_params(
    req: &ParsedRequest,
    dep: &Deployment,
    drop_params: bool,
) -> Result<(), GatewayError> {
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
    PARAMS.check(&req.chat.extra, PROVIDER, &dep.model, |_| false)?;
    Ok(())
}

/// The v2 Chat body for `req`.
pub(super) fn request_body(
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

    for key in PARAMS.native {
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
pub(super) fn tool_choice(
    tc: Option<&Value>,
) -> Result<(Option<&'static str>, Option<String>), GatewayError> {
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

pub(super) fn response_format(rf: Option<&Value>) -> Result<Option<Value>, GatewayError> {
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

pub(super) fn reasoning_effort_thinking(
    req: &ParsedRequest,
) -> Result<Option<Value>, GatewayError> {
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
pub(super) fn text_only(content: Option<&Content>, i: usize) -> Result<String, GatewayError> {
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

pub(super) fn user_content(content: Option<&Content>, i: usize) -> Result<Value, GatewayError> {
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
                let ok = is_http_url(url)
                    || matches!(data_url(url), Some(Ok(d)) if d.media_type.starts_with("image/"));
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

pub(super) fn convert_messages(req: &ParsedRequest) -> Result<Vec<Value>, GatewayError> {
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
