//! The Converse request body: parameter checks, inference config, reasoning, tools and tool choice.

#[allow(unused_imports)]
use super::*;

/// The model family a model id belongs to, for model-specific fields: the id
/// without a cross-region inference prefix (`us.`, `eu.`, `apac.`, `global.`
/// ...: a short first segment before the provider name).
pub(super) fn base_model(dep: &Deployment) -> &str {
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

/// Reject (or, with `drop_params`, accept) parameters Converse cannot take.
pub(super) fn check_params(req: &ParsedRequest, dep: &Deployment) -> Result<(), GatewayError> {
    one_choice_only(req.chat.n, PROVIDER, &dep.model)?;
    // `parallel_tool_calls: false` with one tool or none asks nothing
    // Converse could do otherwise (LiteLLM sends the request without it);
    // with several it cannot be honoured.
    let several_tools = req.chat.tools.as_ref().is_some_and(|t| t.len() > 1);
    if req.chat.parallel_tool_calls == Some(false) && several_tools {
        return Err(unsupported_param(
            PROVIDER,
            &dep.model,
            "parallel_tool_calls",
            "parameter",
        ));
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
    PARAMS.check(&req.chat.extra, PROVIDER, &dep.model, |_| false)?;
    Ok(())
}

/// The Converse body for `req`.
pub(super) fn converse_body(
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
            return Err(unsupported_param(
                PROVIDER,
                &dep.model,
                "top_k",
                "parameter",
            ));
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
    // `tool_choice: none` (let through only under drop_params: Converse has
    // no such choice): the tools are left out so none can be called, unless
    // the conversation holds tool blocks, which Converse accepts only with
    // the tools listed (LiteLLM keeps the tools and drops the choice).
    let none_chosen = chat.tool_choice.as_ref().and_then(Value::as_str) == Some("none");
    let mut tools = match &chat.tools {
        Some(_) if none_chosen && !converted.has_tool_blocks => Vec::new(),
        Some(defs) => map_tools(defs)?,
        None => Vec::new(),
    };
    let mut tool_choice = map_tool_choice(chat.tool_choice.as_ref())?;
    if let Some(schema) =
        crate::provider::json_mode_schema(chat.response_format.as_ref(), PROVIDER)?
    {
        tools.push(json!({ "toolSpec": {
            "name": JSON_TOOL_NAME,
            "description": JSON_TOOL_NAME,
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
    for key in PARAMS.native {
        if let Some(v) = req.raw.get(*key).filter(|v| !v.is_null()) {
            body.insert((*key).into(), v.clone());
        }
    }
    Ok(Value::Object(body))
}

/// `reasoning_effort` as an Anthropic `thinking` object (LiteLLM's budgets),
/// for Anthropic models; other models refuse it (or drop it).
pub(super) fn reasoning_effort_thinking(
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
            Err(unsupported_param(
                PROVIDER,
                &dep.model,
                "reasoning_effort",
                "parameter",
            ))
        };
    }
    claude_thinking(effort, PROVIDER)
}

/// OpenAI function tools as Converse `toolSpec`s.
pub(super) fn map_tools(defs: &[crate::api::openai::ToolDef]) -> Result<Vec<Value>, GatewayError> {
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
pub(super) fn map_tool_choice(choice: Option<&Value>) -> Result<Option<Value>, GatewayError> {
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
