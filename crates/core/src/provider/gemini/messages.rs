//! OpenAI messages as Gemini `contents` and `systemInstruction`: turns,
//! content parts, media, and tool call arguments.

#[allow(unused_imports)]
use super::*;

/// Messages converted to Gemini's shape.
pub(super) struct Converted {
    pub(super) system: Vec<Value>,
    pub(super) contents: Vec<Value>,
}

/// The kind of a turn under construction: turns of one kind are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Turn {
    User,
    Model,
    /// `functionResponse` parts (role `user`), kept apart from user text.
    Results,
}

#[derive(Default)]
pub(super) struct Turns {
    pub(super) turns: Vec<(Turn, Vec<Value>)>,
}

impl Turns {
    /// Adds parts to the turn of `kind`, merging with the turn before when it
    /// is of the same kind. An empty model turn is left out; an empty user
    /// turn is kept (the client sent a user message, `""` or `[]`) and sent
    /// as [`BLANK`] unless later user messages fill it.
    pub(super) fn push(&mut self, kind: Turn, parts: Vec<Value>) {
        match self.turns.last_mut() {
            Some((last, existing)) if *last == kind => existing.extend(parts),
            _ if parts.is_empty() && kind != Turn::User => {}
            _ => self.turns.push((kind, parts)),
        }
    }
}

/// The text of a user turn whose messages were all empty: LiteLLM's blank
/// for contents left empty. Gemini refuses an empty `text` ("empty text
/// parameter"), which is what LiteLLM sends for a `""` message.
const BLANK: &str = " ";

/// The user turn sent when only system messages were given: LiteLLM's
/// default user message (Gemini needs at least one turn).
const SYSTEM_ONLY: &str = ".";

/// A tool result's `functionResponse.response`: the result itself when its
/// text is a JSON object, else `{"content": <text>}` (arrays, other JSON
/// values and plain text alike), as LiteLLM's
/// `convert_to_gemini_tool_call_result`. An object holding a part reference
/// (`{"$ref": "<name>"}`, which Gemini reads as a pointer to one of its
/// parts) is wrapped too, as LiteLLM does.
pub(super) fn tool_response(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) if !has_part_ref(&v) => v,
        _ => json!({ "content": text }),
    }
}

/// Whether a JSON value holds `{"$ref": "<non-empty string>"}`, except under
/// a list nested directly in a list (where Gemini does not read it; LiteLLM's
/// `_contains_part_reference`).
fn has_part_ref(v: &Value) -> bool {
    match v {
        Value::Object(m) => {
            m.get("$ref")
                .and_then(Value::as_str)
                .is_some_and(|r| !r.is_empty())
                || m.values().any(has_part_ref)
        }
        Value::Array(a) => a.iter().filter(|c| !c.is_array()).any(has_part_ref),
        _ => false,
    }
}

pub(super) fn convert_messages(
    api: Api,
    req: &ParsedRequest,
    dep: &Deployment,
) -> Result<Converted, GatewayError> {
    let raw_messages = req.raw.get("messages").and_then(Value::as_array);
    let mut system = Vec::new();
    let mut turns = Turns::default();
    // (id, name) of every assistant tool call so far, to name the results.
    let mut calls: Vec<(String, String)> = Vec::new();
    let gemini_3 = is_gemini_3(&dep.model);

    for (i, m) in req.chat.messages.iter().enumerate() {
        let raw = raw_messages.and_then(|list| list.get(i));
        let at = |what: &str| format!("messages[{i}]{what}");
        match m.role {
            // One part per system message, its text parts joined, as
            // LiteLLM's `transform_system_message` (an empty one is left
            // out: Gemini refuses empty text, which LiteLLM sends).
            Role::System | Role::Developer => {
                let text = text_only(api, m.content.as_ref(), &at(".content"))?.concat();
                if !text.is_empty() {
                    system.push(json!({ "text": text }));
                }
            }
            Role::User => {
                let parts = match &m.content {
                    None => Vec::new(),
                    Some(Content::Text(s)) if s.is_empty() => Vec::new(),
                    Some(Content::Text(s)) => vec![json!({ "text": s })],
                    Some(Content::Parts(parts)) => {
                        let raw_parts =
                            raw.and_then(|r| r.get("content")).and_then(Value::as_array);
                        user_parts(api, parts, raw_parts, &at(".content"))?
                    }
                };
                turns.push(Turn::User, parts);
            }
            Role::Assistant => {
                let mut parts = Vec::new();
                for text in text_only(api, m.content.as_ref(), &at(".content"))? {
                    if !text.is_empty() {
                        parts.push(json!({ "text": text }));
                    }
                }
                let mut tool_calls: Vec<(String, crate::api::openai::FunctionCall, String)> = m
                    .tool_calls
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(|(j, c)| {
                        if c.kind != "function" {
                            return Err(GatewayError::bad_param(
                                &at(&format!(".tool_calls[{j}].type")),
                                format!("tool call type `{}` is not supported", c.kind),
                            ));
                        }
                        Ok((
                            c.id.clone(),
                            c.function.clone(),
                            at(&format!(".tool_calls[{j}]")),
                        ))
                    })
                    .collect::<Result<_, _>>()?;
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
                    tool_calls.push((String::new(), call, at(".function_call")));
                }
                let mut first_call = true;
                for (id, call, param) in tool_calls {
                    let args = function_args(&call, &id, &param)?;
                    let mut part = Map::new();
                    part.insert(
                        "functionCall".into(),
                        json!({ "name": call.name, "args": args }),
                    );
                    let signature = signature_from_id(&id)
                        .or_else(|| (gemini_3 && first_call).then(|| SKIP_SIGNATURE.to_string()));
                    if let Some(sig) = signature {
                        part.insert("thoughtSignature".into(), Value::String(sig));
                    }
                    first_call = false;
                    calls.push((id, call.name.clone()));
                    parts.push(Value::Object(part));
                }
                turns.push(Turn::Model, parts);
            }
            Role::Tool | Role::Function => {
                let by_id = m
                    .tool_call_id
                    .as_ref()
                    .and_then(|id| calls.iter().rev().find(|(cid, _)| cid == id))
                    .map(|(_, name)| name.clone());
                let name = by_id.or_else(|| m.name.clone()).ok_or_else(|| {
                    GatewayError::bad_param(
                        &at(".tool_call_id"),
                        format!(
                            "messages[{i}] is a tool result that matches no earlier tool call; \
                             provider {} needs the function name: set tool_call_id to the id of \
                             the assistant's tool call (or `name`)",
                            api.name()
                        ),
                    )
                })?;
                let text = match &m.content {
                    None => String::new(),
                    Some(c) => c.joined_text(),
                };
                turns.push(
                    Turn::Results,
                    vec![json!({
                        "functionResponse": { "name": name, "response": tool_response(&text) }
                    })],
                );
            }
        }
    }
    if turns.turns.is_empty() {
        turns
            .turns
            .push((Turn::User, vec![json!({ "text": SYSTEM_ONLY })]));
    }
    let contents = turns
        .turns
        .into_iter()
        .map(|(kind, mut parts)| {
            if parts.is_empty() {
                parts.push(json!({ "text": BLANK }));
            }
            let role = if kind == Turn::Model { "model" } else { "user" };
            json!({ "role": role, "parts": parts })
        })
        .collect();
    Ok(Converted { system, contents })
}

/// A tool call's arguments as a JSON object (an empty string counts as `{}`).
pub(super) fn function_args(
    call: &crate::api::openai::FunctionCall,
    id: &str,
    param: &str,
) -> Result<Value, GatewayError> {
    let args = call.arguments.trim();
    if args.is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(args) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(GatewayError::bad_param(
            &format!("{param}.function.arguments"),
            format!("the arguments of tool call `{id}` must encode a JSON object"),
        )),
        Err(e) => Err(GatewayError::bad_param(
            &format!("{param}.function.arguments"),
            format!("the arguments of tool call `{id}` are not valid JSON: {e}"),
        )),
    }
}

/// The texts of a message that may only hold text (system, developer,
/// assistant). Other part types are refused, naming the part.
pub(super) fn text_only(
    api: Api,
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
                    Err(unsupported_part(api, p, &format!("{param}[{j}]"), true))
                }
            })
            .collect(),
    }
}

pub(super) fn unsupported_part(
    api: Api,
    p: &ContentPart,
    param: &str,
    text_only_role: bool,
) -> GatewayError {
    let detail = if text_only_role {
        "this role takes text parts only"
    } else {
        "supported part types are `text`, `image_url` and `file`"
    };
    GatewayError::bad_param(
        param,
        format!(
            "content part type `{}` is not supported by provider {} here ({detail})",
            p.kind,
            api.name()
        ),
    )
    .with_code("unsupported_content_type")
}

/// User content parts as Gemini parts. `raw_parts` is the same list as sent,
/// for the fields the typed view does not keep (`format`, `file`).
pub(super) fn user_parts(
    api: Api,
    parts: &[ContentPart],
    raw_parts: Option<&Vec<Value>>,
    param: &str,
) -> Result<Vec<Value>, GatewayError> {
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let param = format!("{param}[{j}]");
        let raw = raw_parts.and_then(|r| r.get(j));
        match p.kind.as_str() {
            "text" => {
                let text = p.text.clone().unwrap_or_default();
                if !text.is_empty() {
                    out.push(json!({ "text": text }));
                }
            }
            "image_url" => {
                let Some(img) = &p.image_url else {
                    return Err(GatewayError::bad_param(
                        &format!("{param}.image_url"),
                        "an image_url part needs an `image_url`",
                    ));
                };
                let format = raw
                    .and_then(|r| r.get("image_url"))
                    .and_then(|i| i.get("format"))
                    .and_then(Value::as_str);
                out.push(media_part(
                    api,
                    img.url(),
                    format,
                    &format!("{param}.image_url"),
                )?);
            }
            "file" => {
                let file = raw.and_then(|r| r.get("file"));
                let field = |k: &str| file.and_then(|f| f.get(k)).and_then(Value::as_str);
                let format = field("format");
                let source = field("file_data")
                    .or_else(|| field("file_id"))
                    .ok_or_else(|| {
                        GatewayError::bad_param(
                        &format!("{param}.file"),
                        "a file part needs `file.file_data` (a data URL) or `file.file_id` (a URI)",
                    )
                    })?;
                out.push(media_part(api, source, format, &format!("{param}.file"))?);
            }
            _ => return Err(unsupported_part(api, p, &param, false)),
        }
    }
    Ok(out)
}

/// An image or file reference as an `inlineData` or `fileData` part.
pub(super) fn media_part(
    api: Api,
    url: &str,
    format: Option<&str>,
    param: &str,
) -> Result<Value, GatewayError> {
    if let Some(parsed) = data_url(url) {
        let bad = |why: &str| {
            GatewayError::bad_param(
                param,
                format!("data URL {why}; expected data:<media type>;base64,<data>"),
            )
        };
        let DataUrl { media_type, data } = parsed.map_err(|e| bad(e.why()))?;
        let mime = match format {
            Some(f) => f.to_string(),
            None if media_type.is_empty() => return Err(bad("has no media type")),
            None => canonical_media_type(media_type),
        };
        return Ok(json!({ "inlineData": { "mimeType": mime, "data": data } }));
    }
    let is_http = is_http_url(url);
    let is_gcs = url
        .get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case("gs://"));
    if is_gcs && api == Api::Gemini {
        return Err(GatewayError::bad_param(
            param,
            "provider gemini takes gs:// URIs only once registered with its Files API; send \
             the Files API URI, an https URL or a data URL",
        ));
    }
    if !(is_http || is_gcs) {
        return Err(GatewayError::bad_param(
            param,
            "must be an http(s) URL, a gs:// URI or a base64 data URL",
        ));
    }
    let mime = format
        .map(str::to_string)
        .or_else(|| mime_from_extension(url).map(str::to_string))
        .ok_or_else(|| {
            GatewayError::bad_param(
                param,
                format!(
                    "cannot tell the media type of `{}` from its name; set `format` (for example \
                     \"image/png\") or send a data URL",
                    snippet(url.as_bytes())
                ),
            )
        })?;
    Ok(json!({ "fileData": { "mimeType": mime, "fileUri": url } }))
}

/// The media type for a URL's file extension (LiteLLM's
/// `_get_image_mime_type_from_url` table, plus gif and heic).
pub(super) fn mime_from_extension(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    if ext.contains('/') {
        return None;
    }
    Some(match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "mp4" => "video/mp4",
        "mov" => "video/mov",
        "mpeg" | "mpg" => "video/mpeg",
        "avi" => "video/avi",
        "wmv" => "video/wmv",
        "flv" => "video/flv",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        _ => return None,
    })
}
