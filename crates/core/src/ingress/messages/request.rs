//! A Messages request as an OpenAI chat request (the mapping is in the
//! module doc of [`super`]).

use serde_json::{json, Map, Value};

use crate::api::error::GatewayError;

/// The chat body for a Messages body, and the reason it cannot be
/// translated for a non-Anthropic provider, if there is one (a passthrough
/// still can take it). Errors are the client's 400s: not JSON, no `model`,
/// `messages` or `max_tokens`, a malformed turn.
pub fn to_chat(body: &[u8]) -> Result<(Vec<u8>, Option<GatewayError>), GatewayError> {
    convert(body, true)
}

/// A `count_tokens` body (Messages without `max_tokens`) as a chat request
/// (with `max_tokens: 1`, never sent), and what a passthrough needs.
pub fn count_request(
    body: Vec<u8>,
    headers: &[(String, String)],
) -> Result<crate::ingress::Converted, GatewayError> {
    let (chat, untranslatable) = convert(&body, false)?;
    Ok(crate::ingress::Converted {
        chat,
        native: crate::ingress::NativeRequest {
            ingress: crate::ingress::Ingress::Messages,
            body,
            headers: headers.to_vec(),
            untranslatable,
            pass: true,
        },
    })
}

/// The gateway's token estimate for a chat request (a count for a
/// deployment that cannot count): a token per 4 bytes of the text of every
/// message (tool arguments and results included) and of the tool
/// definitions, and 85 per image (OpenAI's low-detail image price), as
/// OpenAI-style tokenizers average on English text. An estimate, said so in
/// the answer's `x-llm-gateway-token-count: estimate` header.
pub fn estimate_tokens(chat: &[u8]) -> u64 {
    fn walk(v: &Value, bytes: &mut usize, images: &mut u64) {
        match v {
            Value::String(s) => *bytes += s.len(),
            Value::Array(a) => a.iter().for_each(|x| walk(x, bytes, images)),
            Value::Object(o) => {
                if o.get("type").and_then(Value::as_str) == Some("image_url") {
                    *images += 1;
                    return;
                }
                for (k, x) in o {
                    if k != "type" && k != "role" && k != "id" && k != "tool_call_id" {
                        walk(x, bytes, images);
                    }
                }
            }
            _ => {}
        }
    }
    let v: Value = serde_json::from_slice(chat).unwrap_or_default();
    let (mut bytes, mut images) = (0, 0);
    walk(&v["messages"], &mut bytes, &mut images);
    bytes += v.get("tools").map_or(0, |t| t.to_string().len());
    (bytes as u64).div_ceil(4) + images * 85
}

fn convert(
    body: &[u8],
    require_max_tokens: bool,
) -> Result<(Vec<u8>, Option<GatewayError>), GatewayError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::bad_request(format!("request body is not valid JSON: {e}"))
            .with_code("invalid_json")
    })?;
    let Value::Object(req) = v else {
        return Err(GatewayError::bad_request(
            "request body must be a JSON object",
        ));
    };
    let mut cx = Cx::default();
    let mut out = Map::new();
    let mut messages = Vec::new();
    for (k, v) in req {
        match k.as_str() {
            "model" if v.is_string() => {
                out.insert(k, v);
            }
            "model" => return Err(bad("model", "`model` must be a string")),
            "max_tokens" if v.as_u64().is_some() => {
                out.insert(k, v);
            }
            "max_tokens" => return Err(bad("max_tokens", "`max_tokens` must be an integer")),
            "system" => messages.insert(0, system(&v)?),
            "messages" => {
                let Value::Array(turns) = v else {
                    return Err(bad("messages", "`messages` must be an array"));
                };
                for (i, m) in turns.iter().enumerate() {
                    cx.turn(i, m, &mut messages)?;
                }
            }
            "stop_sequences" => {
                out.insert("stop".into(), v);
            }
            "metadata" => {
                if let Some(u) = v.get("user_id").filter(|u| u.is_string()) {
                    out.insert("user".into(), u.clone());
                }
            }
            "tools" => {
                let Value::Array(tools) = v else {
                    return Err(bad("tools", "`tools` must be an array"));
                };
                let tools: Vec<Value> = tools.iter().map(|t| cx.tool(t)).collect();
                out.insert("tools".into(), Value::Array(tools));
            }
            "tool_choice" => tool_choice(&v, &mut out)?,
            "stream" => {
                if v == Value::Bool(true) {
                    out.insert("stream_options".into(), json!({"include_usage": true}));
                }
                out.insert(k, v);
            }
            _ => {
                out.insert(k, v);
            }
        }
    }
    if !require_max_tokens {
        out.insert("max_tokens".into(), 1.into());
    }
    for field in ["model", "max_tokens"] {
        if !out.contains_key(field) {
            return Err(bad(field, format!("`{field}`: field required")));
        }
    }
    if messages.iter().all(|m| m["role"] == "system") {
        return Err(bad(
            "messages",
            "`messages`: at least one message is required",
        ));
    }
    // Chat's `messages` first, as clients write it.
    let mut chat = Map::new();
    chat.insert("model".into(), out.remove("model").unwrap_or_default());
    chat.insert("messages".into(), Value::Array(messages));
    chat.extend(out);
    let bytes = serde_json::to_vec(&chat).unwrap_or_default();
    Ok((bytes, cx.untranslatable))
}

fn bad(param: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::bad_param(param, message)
}

#[derive(Default)]
struct Cx {
    untranslatable: Option<GatewayError>,
}

impl Cx {
    /// Remember the first reason the request cannot go to another provider.
    fn refuse(&mut self, param: &str, what: &str) {
        if self.untranslatable.is_none() {
            self.untranslatable = Some(
                GatewayError::bad_param(
                    param,
                    format!(
                        "{what} has no OpenAI chat equivalent: only an Anthropic deployment \
                         (passthrough) can serve this request"
                    ),
                )
                .with_code("unsupported_parameter"),
            );
        }
    }

    /// One Messages turn, appended as chat messages.
    fn turn(&mut self, i: usize, m: &Value, out: &mut Vec<Value>) -> Result<(), GatewayError> {
        let at = format!("messages[{i}]");
        let role = m.get("role").and_then(Value::as_str);
        let content = m.get("content").unwrap_or(&Value::Null);
        let blocks: Vec<Value> = match content {
            Value::String(s) => {
                out.push(json!({"role": role, "content": s}));
                return match role {
                    Some("user" | "assistant") => Ok(()),
                    _ => Err(bad(
                        &at,
                        format!("`{at}.role` must be `user` or `assistant`"),
                    )),
                };
            }
            Value::Array(b) => b.clone(),
            _ => {
                return Err(bad(
                    &at,
                    format!("`{at}.content` must be a string or an array of content blocks"),
                ))
            }
        };
        match role {
            Some("user") => self.user(&at, &blocks, out),
            Some("assistant") => {
                self.assistant(&at, &blocks, out);
                Ok(())
            }
            _ => Err(bad(
                &at,
                format!("`{at}.role` must be `user` or `assistant`"),
            )),
        }
    }

    fn user(
        &mut self,
        at: &str,
        blocks: &[Value],
        out: &mut Vec<Value>,
    ) -> Result<(), GatewayError> {
        let mut parts = Vec::new();
        for (j, b) in blocks.iter().enumerate() {
            let kind = b.get("type").and_then(Value::as_str).unwrap_or("");
            match kind {
                "text" => parts.push(text_part(b)),
                "image" | "document" => {
                    if let Some(p) = self.media(b, kind, &format!("{at}.content[{j}]")) {
                        parts.push(p);
                    }
                }
                "tool_result" => {
                    let mut text = String::new();
                    match b.get("content") {
                        Some(Value::String(s)) => text.push_str(s),
                        Some(Value::Array(inner)) => {
                            for c in inner {
                                match c.get("type").and_then(Value::as_str) {
                                    Some("text") => {
                                        if !text.is_empty() {
                                            text.push('\n');
                                        }
                                        text.push_str(
                                            c.get("text").and_then(Value::as_str).unwrap_or(""),
                                        );
                                    }
                                    Some(k @ ("image" | "document")) => {
                                        let p = self.media(c, k, at);
                                        parts.extend(p);
                                    }
                                    _ => self.refuse(at, "this tool_result content block"),
                                }
                            }
                        }
                        _ => {}
                    }
                    let id = b.get("tool_use_id").and_then(Value::as_str).unwrap_or("");
                    out.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
                }
                "" => return Err(bad(at, format!("`{at}.content[{j}].type` is required"))),
                other => self.refuse(at, &format!("a `{other}` block")),
            }
        }
        if parts.is_empty() {
            return Ok(());
        }
        let single = parts.len() == 1
            && parts[0]["type"] == "text"
            && parts[0].get("cache_control").is_none();
        let content = if single {
            parts[0]["text"].clone()
        } else {
            Value::Array(parts)
        };
        out.push(json!({"role": "user", "content": content}));
        Ok(())
    }

    fn assistant(&mut self, at: &str, blocks: &[Value], out: &mut Vec<Value>) {
        let mut text = String::new();
        let mut calls = Vec::new();
        let mut thinking = Vec::new();
        let mut reasoning = String::new();
        for b in blocks {
            match b.get("type").and_then(Value::as_str).unwrap_or("") {
                "text" => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
                "tool_use" => {
                    let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                    calls.push(json!({
                        "id": b.get("id").cloned().unwrap_or_default(),
                        "type": "function",
                        "function": {"name": b.get("name").cloned().unwrap_or_default(),
                                     "arguments": input.to_string()},
                    }));
                }
                "thinking" => {
                    reasoning.push_str(b.get("thinking").and_then(Value::as_str).unwrap_or(""));
                    thinking.push(b.clone());
                }
                "redacted_thinking" => thinking.push(b.clone()),
                other => self.refuse(at, &format!("a `{other}` block")),
            }
        }
        let mut m = Map::new();
        m.insert("role".into(), "assistant".into());
        m.insert(
            "content".into(),
            if text.is_empty() && !calls.is_empty() {
                Value::Null
            } else {
                text.into()
            },
        );
        if !calls.is_empty() {
            m.insert("tool_calls".into(), Value::Array(calls));
        }
        if !thinking.is_empty() {
            m.insert("thinking_blocks".into(), Value::Array(thinking));
        }
        if !reasoning.is_empty() {
            m.insert("reasoning_content".into(), reasoning.into());
        }
        out.push(Value::Object(m));
    }

    /// An `image` or `document` block as a chat part.
    fn media(&mut self, b: &Value, kind: &str, at: &str) -> Option<Value> {
        let src = b.get("source").unwrap_or(&Value::Null);
        let field = |k: &str| src.get(k).and_then(Value::as_str).unwrap_or("");
        let url = match field("type") {
            "base64" => format!("data:{};base64,{}", field("media_type"), field("data")),
            "url" if kind == "image" => field("url").to_string(),
            "text" if kind == "document" => {
                return Some(json!({"type": "text", "text": field("data")}));
            }
            other => {
                self.refuse(at, &format!("a `{kind}` block with a `{other}` source"));
                return None;
            }
        };
        Some(json!({"type": "image_url", "image_url": {"url": url}}))
    }

    /// A Messages tool as a chat function.
    fn tool(&mut self, t: &Value) -> Value {
        if let Some(kind) = t
            .get("type")
            .and_then(Value::as_str)
            .filter(|k| *k != "custom")
        {
            self.refuse("tools", &format!("the server tool `{kind}`"));
        }
        let mut f = Map::new();
        f.insert("name".into(), t.get("name").cloned().unwrap_or_default());
        if let Some(d) = t.get("description") {
            f.insert("description".into(), d.clone());
        }
        f.insert(
            "parameters".into(),
            t.get("input_schema")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        );
        json!({"type": "function", "function": f})
    }
}

/// `system`: a string, or text blocks.
fn system(v: &Value) -> Result<Value, GatewayError> {
    let content = match v {
        Value::String(_) => v.clone(),
        Value::Array(blocks) => {
            let parts: Vec<Value> = blocks.iter().map(text_part).collect();
            if parts.len() == 1 && parts[0].get("cache_control").is_none() {
                parts[0]["text"].clone()
            } else {
                Value::Array(parts)
            }
        }
        _ => {
            return Err(bad(
                "system",
                "`system` must be a string or an array of text blocks",
            ))
        }
    };
    Ok(json!({"role": "system", "content": content}))
}

/// A text block as a chat text part (its `cache_control` kept).
fn text_part(b: &Value) -> Value {
    let mut p = Map::new();
    p.insert("type".into(), "text".into());
    p.insert(
        "text".into(),
        b.get("text").cloned().unwrap_or_else(|| "".into()),
    );
    if let Some(c) = b.get("cache_control") {
        p.insert("cache_control".into(), c.clone());
    }
    Value::Object(p)
}

fn tool_choice(v: &Value, out: &mut Map<String, Value>) -> Result<(), GatewayError> {
    let choice = match v.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => match v.get("name").and_then(Value::as_str) {
            Some(name) => json!({"type": "function", "function": {"name": name}}),
            None => {
                return Err(bad(
                    "tool_choice",
                    "`tool_choice.name` is required for type `tool`",
                ))
            }
        },
        _ => {
            return Err(bad(
                "tool_choice",
                "`tool_choice.type` must be `auto`, `any`, `tool` or `none`",
            ))
        }
    };
    if v.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
        out.insert("parallel_tool_calls".into(), Value::Bool(false));
    }
    out.insert("tool_choice".into(), choice);
    Ok(())
}
