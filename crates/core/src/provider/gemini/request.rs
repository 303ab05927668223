//! The `generateContent` body: parameter checks, generation config, thinking,
//! tools and tool choice.

#[allow(unused_imports)]
use super::*;

pub(super) fn chat_request(
    api: Api,
    req: &ParsedRequest,
    dep: &Deployment,
    ctx: &RequestContext,
) -> Result<UpstreamRequest, GatewayError> {
    let body = request_body(api, req, dep, ctx.drop_params)?;
    let method = if req.chat.is_stream() {
        ":streamGenerateContent?alt=sse"
    } else {
        ":generateContent"
    };
    Ok(UpstreamRequest {
        path: format!("{}{method}", model_path(api, dep)?),
        headers: headers(api, dep),
        body: to_body(&body)?,
    })
}

/// Whether `model` is a Gemini 3 model (LiteLLM's name test).
pub(super) fn is_gemini_3(model: &str) -> bool {
    model.contains("gemini-3")
}

/// Reject (or, with `drop_params`, accept and drop) parameters Gemini cannot
/// take. Values that ask for nothing always pass.
pub(super) fn check_params(
    api: Api,
    req: &ParsedRequest,
    dep: &Deployment,
    drop_params: bool,
) -> Result<(), GatewayError> {
    if drop_params {
        return Ok(());
    }
    PARAMS.check(&req.chat.extra, api.name(), &dep.model, |key| {
        key == "labels" && api == Api::Vertex
    })?;
    if req.chat.parallel_tool_calls == Some(false)
        && req.chat.tools.as_ref().is_some_and(|t| t.len() > 1)
    {
        return Err(GatewayError::bad_param(
            "parallel_tool_calls",
            format!(
                "`parallel_tool_calls: false` is not supported by provider {} when several tools \
                 are given (Gemini has no such switch); pass one tool, or set \
                 `litellm_settings.drop_params: true` to ignore it",
                api.name()
            ),
        )
        .with_code("unsupported_parameter"));
    }
    Ok(())
}

/// The `generateContent` body for `req`.
pub(super) fn request_body(
    api: Api,
    req: &ParsedRequest,
    dep: &Deployment,
    drop_params: bool,
) -> Result<Value, GatewayError> {
    check_params(api, req, dep, drop_params)?;
    let chat = &req.chat;
    let converted = convert_messages(api, req, dep)?;
    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(converted.contents));
    if !converted.system.is_empty() {
        body.insert(
            "systemInstruction".into(),
            json!({ "parts": converted.system }),
        );
    }

    let mut config = Map::new();
    let raw = |k: &str| req.raw.get(k).filter(|v| !v.is_null());
    if let Some(t) = raw("temperature") {
        config.insert("temperature".into(), t.clone());
    }
    if let Some(t) = raw("top_p") {
        config.insert("topP".into(), t.clone());
    }
    if let Some(t) = raw("top_k") {
        config.insert("topK".into(), t.clone());
    }
    if let Some(n) = chat.max_output_tokens() {
        config.insert("maxOutputTokens".into(), Value::from(n));
    }
    if let Some(stop) = &chat.stop {
        let list: Vec<String> = stop
            .to_vec()
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        if !list.is_empty() {
            config.insert("stopSequences".into(), json!(list));
        }
    }
    if let Some(n) = chat.n.filter(|n| *n > 1) {
        config.insert("candidateCount".into(), Value::from(n));
    }
    if let Some(s) = raw("seed") {
        config.insert("seed".into(), s.clone());
    }
    if !is_gemini_3(&dep.model) {
        for (openai, gemini) in [
            ("presence_penalty", "presencePenalty"),
            ("frequency_penalty", "frequencyPenalty"),
        ] {
            if let Some(v) = raw(openai) {
                config.insert(gemini.into(), v.clone());
            }
        }
    }
    response_format(api, chat.response_format.as_ref(), &mut config)?;
    if let Some(t) = thinking_config(api, req, dep)? {
        config.insert("thinkingConfig".into(), t);
    }
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }

    if let Some(defs) = chat.tools.as_ref().filter(|d| !d.is_empty()) {
        body.insert(
            "tools".into(),
            json!([{ "functionDeclarations": function_declarations(api, defs)? }]),
        );
        if let Some(tc) = tool_config(api, chat.tool_choice.as_ref())? {
            body.insert("toolConfig".into(), tc);
        }
    }
    for (openai, gemini) in [
        ("safety_settings", "safetySettings"),
        ("cached_content", "cachedContent"),
    ] {
        if let Some(v) = raw(openai) {
            body.insert(gemini.into(), v.clone());
        }
    }
    if api == Api::Vertex {
        if let Some(v) = raw("labels") {
            body.insert("labels".into(), v.clone());
        }
    }
    Ok(Value::Object(body))
}

/// `response_format` as `responseMimeType` / `responseJsonSchema`.
pub(super) fn response_format(
    api: Api,
    format: Option<&Value>,
    config: &mut Map<String, Value>,
) -> Result<(), GatewayError> {
    let Some(format) = format.filter(|f| !f.is_null()) else {
        return Ok(());
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(()),
        Some("json_object") => {
            config.insert("responseMimeType".into(), json!("application/json"));
            Ok(())
        }
        Some("json_schema") => {
            config.insert("responseMimeType".into(), json!("application/json"));
            match format.get("json_schema").and_then(|j| j.get("schema")) {
                Some(Value::Object(o)) => {
                    config.insert(
                        "responseJsonSchema".into(),
                        Value::Object(without_strict(o)),
                    );
                    Ok(())
                }
                None | Some(Value::Null) => Ok(()),
                Some(_) => Err(GatewayError::bad_param(
                    "response_format",
                    "response_format.json_schema.schema must be a JSON Schema object",
                )),
            }
        }
        _ => Err(GatewayError::bad_param(
            "response_format",
            format!(
                "response_format must have type `text`, `json_object` or `json_schema` for \
                 provider {}",
                api.name()
            ),
        )),
    }
}

/// A schema object without OpenAI's top-level `strict` flag.
pub(super) fn without_strict(o: &Map<String, Value>) -> Map<String, Value> {
    let mut o = o.clone();
    o.remove("strict");
    o
}

/// `reasoning_effort` or Anthropic-style `thinking` as a `thinkingConfig`
/// (LiteLLM's mapping; `thinking` wins).
pub(super) fn thinking_config(
    api: Api,
    req: &ParsedRequest,
    dep: &Deployment,
) -> Result<Option<Value>, GatewayError> {
    let model = dep.model.to_ascii_lowercase();
    let gemini_3 = is_gemini_3(&model);
    if let Some(t) = req.raw.get("thinking").filter(|v| !v.is_null()) {
        let Some(t) = t.as_object() else {
            return Err(GatewayError::bad_param(
                "thinking",
                "'thinking' must be an object such as {\"type\": \"enabled\", \"budget_tokens\": 2048}",
            ));
        };
        let enabled = t.get("type").and_then(Value::as_str) == Some("enabled");
        let budget = t.get("budget_tokens").and_then(Value::as_u64);
        let mut out = Map::new();
        if gemini_3 {
            out.insert(
                "includeThoughts".into(),
                Value::Bool(enabled && budget.is_some_and(|b| b > 0)),
            );
        } else {
            if enabled && budget != Some(0) {
                out.insert("includeThoughts".into(), Value::Bool(true));
            }
            if let Some(b) = budget {
                out.insert("thinkingBudget".into(), Value::from(b));
            }
        }
        return Ok((!out.is_empty()).then_some(Value::Object(out)));
    }
    let effort = match req.raw.get("reasoning_effort") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.as_str(),
        // The OpenAI Agents SDK sends {"effort": ..., "summary": ...}.
        Some(Value::Object(o)) => match o.get("effort").and_then(Value::as_str) {
            Some(e) => e,
            None => return Ok(None),
        },
        Some(_) => {
            return Err(GatewayError::bad_param(
                "reasoning_effort",
                "'reasoning_effort' must be a string",
            ))
        }
    };
    let bad = || {
        GatewayError::bad_param(
            "reasoning_effort",
            format!(
                "reasoning_effort `{effort}` is not supported by provider {}; use none, \
                 minimal, low, medium or high",
                api.name()
            ),
        )
    };
    if gemini_3 {
        let flash = model.contains("gemini-3-flash") || model.contains("gemini-3.1-flash");
        let pro_31 = model.contains("gemini-3.1-pro");
        let lowest = if flash { "minimal" } else { "low" };
        let (level, thoughts) = match effort {
            "minimal" => (lowest, true),
            "low" => ("low", true),
            "medium" => (if flash || pro_31 { "medium" } else { "high" }, true),
            "high" => ("high", true),
            "none" | "disable" => (lowest, false),
            _ => return Err(bad()),
        };
        return Ok(Some(
            json!({ "thinkingLevel": level, "includeThoughts": thoughts }),
        ));
    }
    let (budget, thoughts) = match effort {
        "minimal" if model.contains("gemini-2.5-flash-lite") => (512, true),
        "minimal" if model.contains("gemini-2.5-flash") => (1, true),
        "minimal" => (128, true),
        "low" => (1024, true),
        "medium" => (2048, true),
        "high" => (4096, true),
        "none" | "disable" => (0, false),
        _ => return Err(bad()),
    };
    Ok(Some(
        json!({ "thinkingBudget": budget, "includeThoughts": thoughts }),
    ))
}

/// OpenAI function tools as Gemini function declarations.
pub(super) fn function_declarations(
    api: Api,
    defs: &[crate::api::openai::ToolDef],
) -> Result<Vec<Value>, GatewayError> {
    let mut out = Vec::with_capacity(defs.len());
    for (i, def) in defs.iter().enumerate() {
        if def.kind != "function" {
            return Err(GatewayError::bad_param(
                &format!("tools[{i}].type"),
                format!(
                    "tool type `{}` is not supported by provider {}; only `function` tools are",
                    def.kind,
                    api.name()
                ),
            ));
        }
        let mut decl = Map::new();
        decl.insert("name".into(), Value::String(def.function.name.clone()));
        if let Some(d) = &def.function.description {
            decl.insert("description".into(), Value::String(d.clone()));
        }
        match &def.function.parameters {
            None | Some(Value::Null) => {}
            Some(Value::Object(o)) => {
                let schema = without_strict(o);
                // The OpenAPI field where the schema is within its subset
                // (what LiteLLM sends), JSON Schema otherwise.
                let field = if openapi_subset(&schema) {
                    "parameters"
                } else {
                    "parametersJsonSchema"
                };
                decl.insert(field.into(), Value::Object(schema));
            }
            Some(_) => {
                return Err(GatewayError::bad_param(
                    &format!("tools[{i}].function.parameters"),
                    "function parameters must be a JSON Schema object",
                ))
            }
        }
        out.push(Value::Object(decl));
    }
    Ok(out)
}

/// Keywords of Gemini's OpenAPI `Schema` that mean the same in JSON
/// Schema (`format` is not among them: Gemini takes only a few formats).
const OPENAPI_KEYS: &[&str] = &[
    "type",
    "description",
    "title",
    "enum",
    "properties",
    "required",
    "items",
    "nullable",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
];

/// Whether a function's JSON Schema reads the same as Gemini's OpenAPI
/// `parameters` (LiteLLM's field): only [`OPENAPI_KEYS`], one `type` of
/// the six, string enums, and no object without properties (which
/// `parameters` refuses). Such schemas go as `parameters`, as LiteLLM sends
/// them; any other goes as `parametersJsonSchema`, as written, which keeps
/// `anyOf`, `$ref`, `additionalProperties` and type lists that LiteLLM's
/// conversion rewrites or drops.
pub(super) fn openapi_subset(schema: &Map<String, Value>) -> bool {
    let sub = |v: &Value| v.as_object().is_some_and(openapi_subset);
    schema.iter().all(|(k, v)| match k.as_str() {
        "type" => matches!(
            v.as_str(),
            Some("string" | "number" | "integer" | "boolean" | "array" | "object")
        ),
        "properties" => v
            .as_object()
            .is_some_and(|p| !p.is_empty() && p.values().all(sub)),
        "items" => sub(v),
        "enum" => v.as_array().is_some_and(|e| e.iter().all(Value::is_string)),
        "required" => v.as_array().is_some_and(|r| r.iter().all(Value::is_string)),
        other => OPENAPI_KEYS.contains(&other),
    }) && (schema.get("type").and_then(Value::as_str) != Some("object")
        || schema.contains_key("properties"))
}

/// OpenAI `tool_choice` as `toolConfig.functionCallingConfig`.
pub(super) fn tool_config(api: Api, choice: Option<&Value>) -> Result<Option<Value>, GatewayError> {
    let bad = |detail: &str| {
        GatewayError::bad_param(
            "tool_choice",
            format!(
                "tool_choice {detail} for provider {}: use \"auto\", \"required\", \"none\" or \
                 {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}",
                api.name()
            ),
        )
    };
    let by_word = |w: &str| match w {
        "auto" => Some("AUTO"),
        "required" | "any" => Some("ANY"),
        "none" => Some("NONE"),
        _ => None,
    };
    let config = match choice {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => match by_word(s) {
            Some(mode) => json!({ "mode": mode }),
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
                    Some(name) => json!({ "mode": "ANY", "allowedFunctionNames": [name] }),
                    None => return Err(bad("names no function")),
                }
            } else {
                match by_word(kind) {
                    Some(mode) => json!({ "mode": mode }),
                    None => return Err(bad(&format!("type `{kind}` is not supported"))),
                }
            }
        }
        Some(_) => return Err(bad("must be a string or an object")),
    };
    Ok(Some(json!({ "functionCallingConfig": config })))
}
