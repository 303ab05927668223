//! OpenAI Chat Completions and Embeddings wire types, as clients send them.
//!
//! The client's bytes are not parsed into these up front: `api::request`
//! indexes the body in one pass and decodes only the fields routing and
//! admission need (its [`ChatRequest`] head). Translators that rebuild the
//! body read the members they need, or the whole request parsed once on
//! first use; an OpenAI-compatible upstream gets the client's own bytes back
//! with only `model` rewritten. [`Usage`] is the OpenAI usage block every
//! translator reports; responses and chunks are built as JSON by each
//! translator.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Which OpenAI API a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Operation {
    /// `POST /v1/chat/completions`.
    #[default]
    Chat,
    /// `POST /v1/embeddings`.
    Embeddings,
}

use crate::api::error::GatewayError;

/// `POST /v1/chat/completions` body, the fields translators read.
///
/// Unknown fields are kept in `extra` so a translator can decide to forward,
/// drop or reject them.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub stop: Option<Stop>,
    #[serde(default)]
    pub tools: Option<Vec<ToolDef>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub n: Option<u64>,
    #[serde(default)]
    pub response_format: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatRequest {
    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether a streamed answer must end with a usage chunk.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// `max_completion_tokens` (the newer name) wins over `max_tokens`.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    /// The stop sequences as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s.clone()],
            Stop::Many(v) => v.clone(),
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub role: Role,
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
}

/// Message roles. `developer` is OpenAI's newer name for `system`;
/// `function` is the legacy tool-result role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

/// Message content: a plain string or a list of typed parts.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

impl Content {
    /// All text parts joined (image parts skipped), for roles that only take text.
    pub fn joined_text(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Parts(parts) => parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join(""),
        }
    }
}

/// One content part: `{"type":"text","text":..}` or
/// `{"type":"image_url","image_url":{"url":..}}`; other types are kept by name
/// so a translator can say which one it does not support.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub image_url: Option<ImageUrl>,
}

/// `image_url` of an image part: a URL, or a `data:` URL with base64 bytes.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ImageUrl {
    Object {
        url: String,
        #[serde(default)]
        detail: Option<String>,
    },
    Bare(String),
}

impl ImageUrl {
    /// The URL string.
    pub fn url(&self) -> &str {
        match self {
            ImageUrl::Object { url, .. } => url,
            ImageUrl::Bare(url) => url,
        }
    }
}

/// An assistant message's tool call.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".to_string()
}

/// Name and JSON-encoded arguments of a tool call.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FunctionCall {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

/// A tool the model may call.
#[derive(Debug, Clone, Deserialize)]
pub struct ToolDef {
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionDef,
}

/// A function tool's declaration.
#[derive(Debug, Clone, Deserialize)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<Value>,
}

/// Token usage in OpenAI's shape. (Embeddings usage has no
/// `completion_tokens`: absent counts are 0.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

impl Usage {
    /// Usage from prompt and completion counts.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// A request body parsed and checked: the raw object (for passthrough) and its
/// typed view (for translation).
#[derive(Debug, Clone)]
pub struct ParsedRequest {
    pub raw: Map<String, Value>,
    /// The chat view. For embeddings only `model` is meaningful (messages
    /// empty), so routing and keys read the alias the same way.
    pub chat: ChatRequest,
    /// Which API the request is for.
    pub op: Operation,
    /// The embeddings view, for [`Operation::Embeddings`](Operation).
    pub embeddings: Option<EmbeddingsRequest>,
}

/// `POST /v1/embeddings` body.
#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: EmbeddingInput,
    /// `float` (default) or `base64`.
    #[serde(default)]
    pub encoding_format: Option<String>,
    #[serde(default)]
    pub dimensions: Option<u64>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `input`: one text, several, or token ids.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
    Tokens(Vec<u32>),
    ManyTokens(Vec<Vec<u32>>),
}

impl EmbeddingInput {
    /// The inputs as texts; token-id inputs have none (providers other than
    /// OpenAI-compatible ones cannot take them).
    pub fn texts(&self) -> Option<Vec<String>> {
        match self {
            EmbeddingInput::One(s) => Some(vec![s.clone()]),
            EmbeddingInput::Many(v) => Some(v.clone()),
            _ => None,
        }
    }
}

/// Parse and validate an embeddings request body.
pub fn parse_embeddings_request(body: &[u8]) -> Result<ParsedRequest, GatewayError> {
    validate_embeddings_request(parse_json_object(body)?)
}

/// Validate a parsed embeddings request object.
pub fn validate_embeddings_request(raw: Map<String, Value>) -> Result<ParsedRequest, GatewayError> {
    let model = required_model(&raw)?;
    match raw.get("input") {
        None | Some(Value::Null) => {
            return Err(GatewayError::bad_param(
                "input",
                "missing required parameter: 'input'",
            ))
        }
        Some(Value::String(s)) if s.is_empty() => {
            return Err(GatewayError::bad_param(
                "input",
                "'input' must not be empty",
            ))
        }
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(GatewayError::bad_param(
                "input",
                "'input' must not be empty",
            ))
        }
        _ => {}
    }
    if let Some(f) = raw.get("encoding_format").filter(|v| !v.is_null()) {
        if !matches!(f.as_str(), Some("float") | Some("base64")) {
            return Err(GatewayError::bad_param(
                "encoding_format",
                "'encoding_format' must be \"float\" or \"base64\"",
            ));
        }
    }
    let embeddings = EmbeddingsRequest::deserialize(&Value::Object(raw.clone())).map_err(|e| {
        GatewayError::bad_param(
            "input",
            format!("invalid embeddings request: 'input' must be a string, a list of strings or token ids ({e})"),
        )
    })?;
    let chat = ChatRequest::deserialize(&serde_json::json!({"model": model, "messages": []}))
        .map_err(|e| GatewayError::bad_request(e.to_string()))?;
    Ok(ParsedRequest {
        raw,
        chat,
        op: Operation::Embeddings,
        embeddings: Some(embeddings),
    })
}

/// Parse and validate a chat completion request body.
///
/// Checks the fields every provider needs with errors that name them, so a
/// client learns exactly what is wrong: malformed JSON, a body that is not an
/// object, missing or mistyped `model` / `messages` / `stream`, and any
/// message that does not fit the schema.
pub fn parse_chat_request(body: &[u8]) -> Result<ParsedRequest, GatewayError> {
    validate_chat_request(parse_json_object(body)?)
}

/// Parse a body that must be a JSON object.
pub fn parse_json_object(body: &[u8]) -> Result<Map<String, Value>, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::bad_request(format!("request body is not valid JSON: {e}"))
            .with_code("invalid_json")
    })?;
    match value {
        Value::Object(raw) => Ok(raw),
        _ => Err(GatewayError::bad_request(
            "request body must be a JSON object",
        )),
    }
}

/// Validate a parsed chat completion request object (see [`parse_chat_request`]).
pub fn validate_chat_request(raw: Map<String, Value>) -> Result<ParsedRequest, GatewayError> {
    required_model(&raw)?;
    match raw.get("messages") {
        Some(Value::Array(list)) if !list.is_empty() => {}
        Some(Value::Array(_)) => {
            return Err(GatewayError::bad_param(
                "messages",
                "'messages' must not be empty",
            ))
        }
        None | Some(Value::Null) => {
            return Err(GatewayError::bad_param(
                "messages",
                "missing required parameter: 'messages'",
            ))
        }
        Some(_) => {
            return Err(GatewayError::bad_param(
                "messages",
                "'messages' must be an array",
            ))
        }
    }
    if let Some(s) = raw.get("stream") {
        if !(s.is_boolean() || s.is_null()) {
            return Err(GatewayError::bad_param(
                "stream",
                "'stream' must be a boolean",
            ));
        }
    }
    // Read in place (the map lent to a `Value` and taken back, not cloned).
    let whole = Value::Object(raw);
    let read = ChatRequest::deserialize(&whole);
    let Value::Object(raw) = whole else {
        return Err(GatewayError::bad_request("invalid request"));
    };
    let chat = read.map_err(|e| invalid_chat_request(&raw, &e.to_string()))?;
    Ok(ParsedRequest {
        raw,
        chat,
        op: Operation::Chat,
        embeddings: None,
    })
}

/// The 400 for a request [`ChatRequest`] cannot read: the message at fault
/// named with its index when it is a message (read alone again: a cold
/// path), else the member serde names or the first that fails alone.
fn invalid_chat_request(raw: &Map<String, Value>, msg: &str) -> GatewayError {
    if let Some(Value::Array(list)) = raw.get("messages") {
        for (i, m) in list.iter().enumerate() {
            if let Err(e) = Message::deserialize(m) {
                return GatewayError::bad_param(
                    &format!("messages[{i}]"),
                    format!("invalid message at messages[{i}]: {e}"),
                );
            }
        }
    }
    let param = field_in_serde_message(msg).or_else(|| mistyped_member(raw));
    let err = GatewayError::bad_request(format!("invalid request: {msg}"));
    match param {
        Some(p) => err.with_param(&p),
        None => err,
    }
}

/// Which member a failed [`ChatRequest`] read is about, when serde's message
/// does not say (`invalid type: string "hot", expected f64`): the first
/// member that fails the same read alone, beside the messages (a cold path:
/// only a refused request comes here).
fn mistyped_member(raw: &Map<String, Value>) -> Option<String> {
    let base: Map<String, Value> = ["model", "messages"]
        .iter()
        .filter_map(|k| Some((k.to_string(), raw.get(*k)?.clone())))
        .collect();
    raw.iter()
        .filter(|(k, _)| !base.contains_key(k.as_str()))
        .find(|(k, v)| {
            let mut one = base.clone();
            one.insert(k.to_string(), (*v).clone());
            ChatRequest::deserialize(&Value::Object(one)).is_err()
        })
        .map(|(k, _)| k.clone())
}

/// `model`: present, a non-empty string (chat and embeddings alike).
fn required_model(raw: &Map<String, Value>) -> Result<String, GatewayError> {
    match raw.get("model") {
        Some(Value::String(m)) if !m.is_empty() => Ok(m.clone()),
        None | Some(Value::Null) => Err(GatewayError::bad_param(
            "model",
            "missing required parameter: 'model'",
        )),
        Some(_) => Err(GatewayError::bad_param(
            "model",
            "'model' must be a non-empty string",
        )),
    }
}

/// Serde says "... for field `x`" in some messages; use it as `param`.
fn field_in_serde_message(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let end = start + msg[start..].find('`')?;
    Some(msg[start..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_malformed_json() {
        let e = parse_chat_request(b"{\"model\": ").unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("not valid JSON"));
    }

    #[test]
    fn rejects_missing_model_and_wrong_types() {
        let e =
            parse_chat_request(br#"{"messages":[{"role":"user","content":"hi"}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = parse_chat_request(br#"{"model":"m","messages":"hi"}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e = parse_chat_request(br#"{"model":"m","messages":[{"role":"wizard"}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0]"));
        let e = parse_chat_request(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("invalid type"), "{}", e.message);
    }

    #[test]
    fn keeps_unknown_fields() {
        let p = parse_chat_request(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}],"seed":7}"#,
        )
        .unwrap();
        assert_eq!(p.chat.extra.get("seed"), Some(&Value::from(7)));
        assert_eq!(p.raw.get("seed"), Some(&Value::from(7)));
    }
}
