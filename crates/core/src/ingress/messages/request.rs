//! A Messages request as an OpenAI chat request (the mapping is in the
//! module doc of [`super`]).

use serde_json::Value;

use crate::api::error::GatewayError;
use crate::codec::json_out;

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
    let req = crate::ingress::json_object(body)?;
    let model = match req.get("model") {
        Some(Value::String(m)) => m,
        Some(_) => return Err(bad("model", "`model` must be a string")),
        None => return Err(bad("model", "`model`: field required")),
    };
    let max_tokens = match req.get("max_tokens") {
        Some(v) if v.as_u64().is_some() => v.clone(),
        Some(_) => return Err(bad("max_tokens", "`max_tokens` must be an integer")),
        None if require_max_tokens => {
            return Err(bad("max_tokens", "`max_tokens`: field required"))
        }
        None => Value::from(1),
    };
    let Some(Value::Array(turns)) = req.get("messages") else {
        return Err(bad("messages", "`messages` must be an array"));
    };
    let mut cx = Cx {
        out: Vec::with_capacity(body.len() + 256),
        messages: 0,
        untranslatable: None,
    };
    cx.out.extend_from_slice(br#"{"model":"#);
    json_out::str(&mut cx.out, model);
    cx.out.extend_from_slice(br#","max_tokens":"#);
    json_out::value(&mut cx.out, &max_tokens);
    cx.out.extend_from_slice(br#","messages":["#);
    if let Some(system) = req.get("system") {
        cx.system(system)?;
    }
    let before = cx.messages;
    for (i, m) in turns.iter().enumerate() {
        cx.turn(i, m)?;
    }
    if cx.messages == before {
        return Err(bad(
            "messages",
            "`messages`: at least one message is required",
        ));
    }
    cx.out.push(b']');
    for (k, v) in &req {
        let out = &mut cx.out;
        match k.as_str() {
            "model" | "max_tokens" | "messages" | "system" => {}
            "stop_sequences" => member(out, "stop", v),
            "metadata" => {
                if let Some(u) = v.get("user_id").filter(|u| u.is_string()) {
                    member(out, "user", u);
                }
            }
            "tools" => {
                let Value::Array(tools) = v else {
                    return Err(bad("tools", "`tools` must be an array"));
                };
                cx.out.extend_from_slice(br#","tools":["#);
                for (i, t) in tools.iter().enumerate() {
                    if i > 0 {
                        cx.out.push(b',');
                    }
                    cx.tool(t);
                }
                cx.out.push(b']');
            }
            "tool_choice" => tool_choice(v, out)?,
            "output_format" => response_format(v, out),
            "output_config" => match v.get("format") {
                Some(f) if !req.contains_key("output_format") => response_format(f, out),
                _ => {}
            },
            "stream" => {
                if *v == Value::Bool(true) {
                    out.extend_from_slice(br#","stream_options":{"include_usage":true}"#);
                }
                member(out, k, v);
            }
            _ => member(out, k, v),
        }
    }
    cx.out.push(b'}');
    Ok((cx.out, cx.untranslatable))
}

fn bad(param: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::bad_param(param, message)
}

/// `,"key":value`.
fn member(out: &mut Vec<u8>, key: &str, v: &Value) {
    out.push(b',');
    json_out::key(out, key);
    json_out::value(out, v);
}

/// The chat body being written, one message at a time.
struct Cx {
    out: Vec<u8>,
    /// Messages written so far.
    messages: usize,
    untranslatable: Option<GatewayError>,
}

fn str_of<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
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

    /// Open a message of `role`: `{"role":"<role>"`, comma-separated.
    fn open(&mut self, role: &str) {
        if self.messages > 0 {
            self.out.push(b',');
        }
        self.messages += 1;
        self.out.extend_from_slice(br#"{"role":"#);
        json_out::str(&mut self.out, role);
    }

    /// `system`: a string, or text blocks.
    fn system(&mut self, v: &Value) -> Result<(), GatewayError> {
        let mut parts = Parts::default();
        match v {
            Value::String(s) => parts.text(s),
            Value::Array(blocks) => {
                for b in blocks {
                    parts.text(str_of(b, "text"));
                }
            }
            _ => {
                return Err(bad(
                    "system",
                    "`system` must be a string or an array of text blocks",
                ))
            }
        }
        self.open("system");
        parts.write_content(&mut self.out);
        self.out.push(b'}');
        Ok(())
    }

    /// One Messages turn, written as chat messages.
    fn turn(&mut self, i: usize, m: &Value) -> Result<(), GatewayError> {
        let at = format!("messages[{i}]");
        let role = m.get("role").and_then(Value::as_str);
        if !matches!(role, Some("user" | "assistant")) {
            return Err(bad(
                &at,
                format!("`{at}.role` must be `user` or `assistant`"),
            ));
        }
        let role = role.unwrap_or("user");
        match m.get("content") {
            Some(Value::String(s)) => {
                self.open(role);
                self.out.extend_from_slice(br#","content":"#);
                json_out::str(&mut self.out, s);
                self.out.push(b'}');
                Ok(())
            }
            Some(Value::Array(blocks)) if role == "user" => self.user(&at, blocks),
            Some(Value::Array(blocks)) => {
                self.assistant(&at, blocks);
                Ok(())
            }
            _ => Err(bad(
                &at,
                format!("`{at}.content` must be a string or an array of content blocks"),
            )),
        }
    }

    fn user(&mut self, at: &str, blocks: &[Value]) -> Result<(), GatewayError> {
        let mut parts = Parts::default();
        for (j, b) in blocks.iter().enumerate() {
            let here = format!("{at}.content[{j}]");
            match str_of(b, "type") {
                "text" => parts.text(str_of(b, "text")),
                kind @ ("image" | "document") => self.media(b, kind, &here, &mut parts),
                "tool_result" => {
                    let mut text = String::new();
                    match b.get("content") {
                        Some(Value::String(s)) => text.push_str(s),
                        Some(Value::Array(inner)) => {
                            for c in inner {
                                match str_of(c, "type") {
                                    "text" => {
                                        if !text.is_empty() {
                                            text.push('\n');
                                        }
                                        text.push_str(str_of(c, "text"));
                                    }
                                    kind @ ("image" | "document") => {
                                        self.media(c, kind, &here, &mut parts)
                                    }
                                    _ => self.refuse(&here, "this tool_result content block"),
                                }
                            }
                        }
                        _ => {}
                    }
                    self.open("tool");
                    self.out.extend_from_slice(br#","tool_call_id":"#);
                    json_out::str(&mut self.out, str_of(b, "tool_use_id"));
                    self.out.extend_from_slice(br#","content":"#);
                    json_out::str(&mut self.out, &text);
                    self.out.push(b'}');
                }
                "" => return Err(bad(&here, format!("`{here}.type` is required"))),
                other => self.refuse(&here, &format!("a `{other}` block")),
            }
        }
        if parts.n > 0 {
            self.open("user");
            parts.write_content(&mut self.out);
            self.out.push(b'}');
        }
        Ok(())
    }

    fn assistant(&mut self, at: &str, blocks: &[Value]) {
        let mut text = String::new();
        let mut calls = Vec::new();
        let mut thinking = Vec::new();
        let mut reasoning = String::new();
        for b in blocks {
            let kind = str_of(b, "type");
            match kind {
                "text" => text.push_str(str_of(b, "text")),
                "tool_use" => {
                    calls.push(if calls.is_empty() { b'[' } else { b',' });
                    calls.extend_from_slice(br#"{"id":"#);
                    json_out::str(&mut calls, str_of(b, "id"));
                    calls.extend_from_slice(br#","type":"function","function":{"name":"#);
                    json_out::str(&mut calls, str_of(b, "name"));
                    calls.extend_from_slice(br#","arguments":"#);
                    let input = b
                        .get("input")
                        .map_or_else(|| "{}".to_string(), Value::to_string);
                    json_out::str(&mut calls, &input);
                    calls.extend_from_slice(b"}}");
                }
                "thinking" | "redacted_thinking" => {
                    reasoning.push_str(str_of(b, "thinking"));
                    thinking.push(if thinking.is_empty() { b'[' } else { b',' });
                    json_out::value(&mut thinking, b);
                }
                other => self.refuse(at, &format!("a `{other}` block")),
            }
        }
        self.open("assistant");
        self.out.extend_from_slice(br#","content":"#);
        if text.is_empty() && !calls.is_empty() {
            self.out.extend_from_slice(b"null");
        } else {
            json_out::str(&mut self.out, &text);
        }
        for (key, list) in [("tool_calls", calls), ("thinking_blocks", thinking)] {
            if !list.is_empty() {
                self.out.push(b',');
                json_out::key(&mut self.out, key);
                self.out.extend_from_slice(&list);
                self.out.push(b']');
            }
        }
        if !reasoning.is_empty() {
            self.out.extend_from_slice(br#","reasoning_content":"#);
            json_out::str(&mut self.out, &reasoning);
        }
        self.out.push(b'}');
    }

    /// An `image` or `document` block as a chat part.
    fn media(&mut self, b: &Value, kind: &str, at: &str, parts: &mut Parts) {
        let src = b.get("source").unwrap_or(&Value::Null);
        let url = match str_of(src, "type") {
            "base64" => format!(
                "data:{};base64,{}",
                str_of(src, "media_type"),
                str_of(src, "data")
            ),
            "url" if kind == "image" => str_of(src, "url").to_string(),
            "text" if kind == "document" => return parts.text(str_of(src, "data")),
            other => return self.refuse(at, &format!("a `{kind}` block with a `{other}` source")),
        };
        parts.image(&url);
    }

    /// A Messages tool as a chat function.
    fn tool(&mut self, t: &Value) {
        if let Some(kind) = t
            .get("type")
            .and_then(Value::as_str)
            .filter(|k| *k != "custom")
        {
            self.refuse("tools", &format!("the server tool `{kind}`"));
        }
        let out = &mut self.out;
        out.extend_from_slice(br#"{"type":"function","function":{"name":"#);
        json_out::str(out, str_of(t, "name"));
        if let Some(d) = t.get("description") {
            member(out, "description", d);
        }
        match t.get("input_schema") {
            Some(schema) => member(out, "parameters", schema),
            None => out.extend_from_slice(br#","parameters":{"type":"object","properties":{}}"#),
        }
        out.extend_from_slice(b"}}");
    }
}

/// A user or system message's parts, written as chat content: a string
/// when there is one plain text part, else a list.
#[derive(Default)]
struct Parts {
    list: Vec<u8>,
    n: usize,
    /// The only part so far is this plain text.
    single: Option<String>,
}

impl Parts {
    fn next(&mut self) {
        self.list.push(if self.n == 0 { b'[' } else { b',' });
        self.n += 1;
    }

    fn text(&mut self, text: &str) {
        self.single = (self.n == 0).then(|| text.to_string());
        self.next();
        self.list.extend_from_slice(br#"{"type":"text","text":"#);
        json_out::str(&mut self.list, text);
        self.list.push(b'}');
    }

    fn image(&mut self, url: &str) {
        self.single = None;
        self.next();
        self.list
            .extend_from_slice(br#"{"type":"image_url","image_url":{"url":"#);
        json_out::str(&mut self.list, url);
        self.list.extend_from_slice(b"}}");
    }

    /// `,"content":...`.
    fn write_content(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#","content":"#);
        match (&self.single, self.n) {
            (Some(t), 1) => json_out::str(out, t),
            (_, 0) => out.extend_from_slice(b"\"\""),
            _ => {
                out.extend_from_slice(&self.list);
                out.push(b']');
            }
        }
    }
}

/// Anthropic's structured output as chat's `response_format`.
fn response_format(v: &Value, out: &mut Vec<u8>) {
    if let (Some("json_schema"), Some(schema)) =
        (v.get("type").and_then(Value::as_str), v.get("schema"))
    {
        out.extend_from_slice(br#","response_format":{"type":"json_schema","json_schema":{"name":"structured_output","schema":"#);
        json_out::value(out, schema);
        out.extend_from_slice(b"}}");
    }
}

fn tool_choice(v: &Value, out: &mut Vec<u8>) -> Result<(), GatewayError> {
    out.extend_from_slice(br#","tool_choice":"#);
    match v.get("type").and_then(Value::as_str) {
        Some("auto") => out.extend_from_slice(br#""auto""#),
        Some("any") => out.extend_from_slice(br#""required""#),
        Some("none") => out.extend_from_slice(br#""none""#),
        Some("tool") => {
            let Some(name) = v.get("name").and_then(Value::as_str) else {
                return Err(bad(
                    "tool_choice",
                    "`tool_choice.name` is required for type `tool`",
                ));
            };
            out.extend_from_slice(br#"{"type":"function","function":{"name":"#);
            json_out::str(out, name);
            out.extend_from_slice(b"}}");
        }
        _ => {
            return Err(bad(
                "tool_choice",
                "`tool_choice.type` must be `auto`, `any`, `tool` or `none`",
            ))
        }
    }
    if v.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
        out.extend_from_slice(br#","parallel_tool_calls":false"#);
    }
    Ok(())
}
