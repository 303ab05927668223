//! Parameter checks and the small mapped parameters: unsupported parameters,
//! `reasoning_effort`, the end-user id, tools and `tool_choice`.

#[allow(unused_imports)]
use super::*;

/// Reject (or, with `drop_params`, accept and drop) parameters Anthropic
/// cannot take: `n` > 1, then `refused` (see [`Fields`]).
pub(super) fn check_params(
    req: &ClientRequest,
    dep: &Deployment,
    drop_params: bool,
    refused: Option<&str>,
) -> Result<(), GatewayError> {
    if drop_params {
        return Ok(());
    }
    one_choice_only(req.head.n, PROVIDER, &dep.model)?;
    match refused {
        None => Ok(()),
        Some(key) => Err(PARAMS.refusal(key, PROVIDER, &dep.model)),
    }
}

/// `reasoning_effort` as a `thinking` object, with LiteLLM's budgets.
pub(super) fn reasoning_effort_thinking(
    member: Option<&str>,
) -> Result<Option<Value>, GatewayError> {
    let effort: Cow<str> = match member {
        None => return Ok(None),
        Some(text) => serde_json::from_str(text).map_err(|_| {
            GatewayError::bad_param("reasoning_effort", "'reasoning_effort' must be a string")
        })?,
    };
    claude_thinking(&effort, PROVIDER)
}

/// `metadata.user_id`: `user`, else OpenAI `metadata.user_id`, else
/// `safety_identifier`; values that look like personal data are skipped.
pub(super) fn user_id(f: &Fields<'_>, user: Option<&str>) -> Option<String> {
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
pub(super) fn looks_like_email(s: &str) -> bool {
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
pub(super) fn looks_like_phone(s: &str) -> bool {
    let rest = s.strip_prefix('+').unwrap_or(s);
    rest.chars().count() >= 7
        && rest
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_whitespace() || "()-".contains(c))
}

/// OpenAI function tools as Anthropic tools. A schema that already says
/// `"type": "object"` is passed through as written.
pub(super) fn map_tools<'a>(defs: &[ToolDefIn<'a>]) -> Result<Vec<ToolOut<'a>>, GatewayError> {
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

/// Whether `model` takes Anthropic's structured outputs (`output_format`):
/// Claude 4.5 and later, the models LiteLLM's model map flags with
/// `supports_native_structured_output` (Haiku, Sonnet and Opus 4.5, 4.6 ...,
/// 5). The version is the first one- or two-digit segments of the name, so
/// dates (`-20250929`) and the older `claude-3-5-sonnet` order both read
/// right.
pub(super) fn has_structured_outputs(model: &str) -> bool {
    // (major, minor): the first two numbers of one or two digits.
    let mut version = [0u32; 2];
    let mut found = 0;
    for part in model.split(['-', '@']) {
        let b = part.as_bytes();
        if found < 2
            && matches!(b, [d] | [d, _] if d.is_ascii_digit())
            && b.iter().all(u8::is_ascii_digit)
        {
            version[found] = b.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'));
            found += 1;
        }
    }
    model.contains("claude") && (version[0] > 4 || (version[0] == 4 && version[1] >= 5))
}

/// Keywords Anthropic's structured outputs refuse: constraints its decoding
/// grammar cannot enforce (LiteLLM's `filter_anthropic_output_schema` list)
/// and `oneOf`.
const REFUSED_KEYWORDS: &[&str] = &[
    "oneOf",
    "minItems",
    "maxItems",
    "uniqueItems",
    "contains",
    "minContains",
    "maxContains",
    "prefixItems",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "minProperties",
    "maxProperties",
    "patternProperties",
    "propertyNames",
    "dependentRequired",
    "dependentSchemas",
    "unevaluatedProperties",
    "if",
    "then",
    "else",
    "not",
];

/// Whether `output_format` takes `schema` as it means: every object closed
/// (`additionalProperties: false`, which the OpenAI SDKs' strict schemas
/// always have) and no keyword from [`REFUSED_KEYWORDS`] (`minItems` too,
/// though Anthropic takes 0 and 1). `json_object`'s open object never fits. LiteLLM rewrites such
/// schemas to fit (closes open objects, `oneOf` -> `anyOf`, constraints moved
/// into descriptions), which changes what the answer may be; here they keep
/// LiteLLM's JSON tool, whose input schema is the schema as written.
pub(super) fn fits_output_format(schema: &Value) -> bool {
    let Value::Object(m) = schema else {
        return true;
    };
    let is_object = m.get("type").and_then(Value::as_str) == Some("object");
    let closed = m
        .get("additionalProperties")
        .map(|a| matches!(a, Value::Bool(false)));
    if REFUSED_KEYWORDS.iter().any(|k| m.contains_key(*k))
        || closed == Some(false)
        || (is_object && closed.is_none())
    {
        return false;
    }
    m.iter().all(|(k, v)| match (k.as_str(), v) {
        ("properties" | "$defs" | "definitions", Value::Object(subs)) => {
            subs.values().all(fits_output_format)
        }
        ("items" | "anyOf" | "allOf", Value::Array(subs)) => subs.iter().all(fits_output_format),
        ("items", sub) => fits_output_format(sub),
        _ => true,
    })
}
