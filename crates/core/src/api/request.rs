//! The client's request as it arrived: its bytes, where each top-level member
//! sits in them, and the few top-level fields the gateway itself reads.
//!
//! Parsing a whole chat request into a `serde_json::Map` (and a typed view
//! beside it) was the largest cost of the filter: every message string is
//! copied twice, every object becomes a tree of allocations, and an
//! OpenAI-compatible upstream then gets all of it serialised back, only to
//! change `model`. Here one pass checks that the body is valid JSON and
//! records the byte range of each top-level key and value; only `model`,
//! `stream`, `stream_options`, `max_tokens`, `max_completion_tokens`, `n` and
//! the routing overrides are decoded, because routing, admission and
//! budgeting need them before a deployment is chosen. Then:
//!
//! - the OpenAI-compatible translator copies the client's bytes member by
//!   member, writing only the new `model` (and `stream_options` when the
//!   gateway must ask for usage): [`ClientRequest::openai_body`];
//! - translators that rebuild the body (Anthropic) parse only the members
//!   they read, borrowing from the bytes: [`ClientRequest::member`];
//! - the others get the whole request parsed once, on first use:
//!   [`ClientRequest::parsed`].

use std::borrow::Cow;
use std::cell::OnceCell;
use std::ops::Range;

use serde_json::{Map, Value};

use crate::api::error::GatewayError;
use crate::api::litellm_keys::litellm_key;
use crate::api::openai::Operation;
use crate::api::openai::{
    parse_json_object, validate_chat_request, validate_embeddings_request, ChatRequest,
    ParsedRequest, StreamOptions,
};
use crate::api::overrides::OVERRIDE_KEYS;
use crate::codec::json_in;
use crate::codec::json_out;

/// What a top-level key is to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Model,
    StreamOptions,
    /// The gateway's, not the model's: a routing override (`num_retries`,
    /// `fallbacks` ...) or another of LiteLLM's own keys
    /// (`crate::api::litellm_keys`). Never forwarded.
    Override,
    Other,
}

/// One top-level `"key": value` member, as byte ranges of the body.
#[derive(Debug, Clone)]
struct Member {
    /// The key's JSON string literal, quotes included.
    key: Range<usize>,
    /// The key has escapes (`"mod\u0065l"`): compare it decoded.
    key_escaped: bool,
    /// The value's JSON text (no surrounding whitespace).
    value: Range<usize>,
    kind: Kind,
}

/// A chat or embeddings request body, checked and indexed, not parsed.
#[derive(Debug)]
pub struct ClientRequest {
    /// The body, checked to be UTF-8 once, so members are sliced out as
    /// text without checking again.
    body: String,
    members: Vec<Member>,
    /// Which API the request is for.
    pub op: Operation,
    /// The top-level fields the gateway reads before choosing a deployment:
    /// `model`, `stream`, `stream_options`, `max_tokens`,
    /// `max_completion_tokens`, `n`. Nothing else is set: `messages` is
    /// empty and `extra` too (translators read the members or
    /// [`ClientRequest::parsed`]).
    pub head: ChatRequest,
    /// Embeddings: `encoding_format` as the client asked.
    pub encoding_format: Option<String>,
    /// Ask the provider for usage in a stream (`stream_options.include_usage`)
    /// although the client did not: the request is charged.
    stream_usage: bool,
    /// The whole request parsed, for translators that need all of it.
    full: OnceCell<Result<ParsedRequest, GatewayError>>,
    /// Parameters left out for this attempt (`additional_drop_params`).
    dropped: Vec<String>,
}

impl ClientRequest {
    /// Check and index `body` for `op`. Errors are the 400s a client gets for
    /// malformed JSON, a body that is not an object, and a missing or
    /// mistyped `model` / `messages` / `stream` (embeddings: the whole
    /// request is validated here, as it is small and rarely hot).
    pub fn parse(op: Operation, body: Vec<u8>) -> Result<ClientRequest, GatewayError> {
        let body = String::from_utf8(body).map_err(|e| {
            GatewayError::bad_request(format!("request body is not valid JSON: {e}"))
                .with_code("invalid_json")
        })?;
        let members = match index_members(&body) {
            Ok(m) => m,
            Err(()) => return Err(json_error(&body)),
        };
        let mut req = ClientRequest {
            body,
            members,
            op,
            head: empty_head(),
            encoding_format: None,
            stream_usage: false,
            full: OnceCell::new(),
            dropped: Vec::new(),
        };
        match op {
            Operation::Chat => req.head = req.read_chat_head()?,
            Operation::Embeddings => {
                let parsed = req.parsed()?;
                let model = parsed.chat.model.clone();
                let format = parsed
                    .embeddings
                    .as_ref()
                    .and_then(|e| e.encoding_format.clone());
                req.head.model = model;
                req.encoding_format = format;
            }
        }
        Ok(req)
    }

    /// The body as the client sent it.
    pub fn body(&self) -> &[u8] {
        self.body.as_bytes()
    }

    /// The JSON text of top-level member `key`'s value (the last one, as a
    /// JSON object's last duplicate wins), if present; checked JSON, to be
    /// deserialised borrowing from it. Routing overrides are never returned.
    pub fn member(&self, key: &str) -> Option<&str> {
        self.members
            .iter()
            .rev()
            .find(|m| self.forwarded(m) && self.key_is(m, key))
            .map(|m| self.raw_value(m))
    }

    /// [`ClientRequest::member`] for one of the gateway's own keys
    /// (`guardrails`, `metadata`), which no provider sees.
    pub fn gateway_member(&self, key: &str) -> Option<&str> {
        self.members
            .iter()
            .rev()
            .find(|m| m.kind == Kind::Override && self.key_is(m, key))
            .map(|m| self.raw_value(m))
    }

    /// This request without the top-level parameters `names`, for one
    /// attempt (LiteLLM's `additional_drop_params`).
    pub fn without(&self, names: &[String]) -> ClientRequest {
        ClientRequest {
            body: self.body.clone(),
            members: self.members.clone(),
            op: self.op,
            // Read again rather than cloned (a clone of the typed view costs
            // module size); an embeddings request has only its model.
            head: self.read_chat_head().unwrap_or_else(|_| {
                let mut h = empty_head();
                h.model.clone_from(&self.head.model);
                h
            }),
            encoding_format: self.encoding_format.clone(),
            stream_usage: self.stream_usage,
            full: OnceCell::new(),
            dropped: names.to_vec(),
        }
    }

    /// This request with `defaults` (parameter name, JSON text) for the
    /// parameters it does not set: a deployment's defaults, which the
    /// request's own values override (LiteLLM's `{**litellm_params,
    /// **request}`). `None` when the request sets them all.
    pub fn with_defaults(&self, defaults: &[(String, String)]) -> Option<ClientRequest> {
        let absent: Vec<&(String, String)> = defaults
            .iter()
            .filter(|(k, _)| !self.members.iter().any(|m| self.key_is(m, k)))
            .collect();
        if absent.is_empty() {
            return None;
        }
        let close = self.body.rfind('}')?;
        let mut body = String::with_capacity(self.body.len() + 32 * absent.len());
        body.push_str(self.body.get(..close)?);
        let mut first = self.members.is_empty();
        for (k, v) in absent {
            if !first {
                body.push(',');
            }
            first = false;
            let mut key = Vec::new();
            json_out::str(&mut key, k);
            body.push_str(std::str::from_utf8(&key).ok()?);
            body.push(':');
            body.push_str(v);
        }
        body.push('}');
        let mut req = ClientRequest::parse(self.op, body.into_bytes()).ok()?;
        req.stream_usage = self.stream_usage;
        req.dropped.clone_from(&self.dropped);
        Some(req)
    }

    /// Whether a member goes to the provider.
    fn forwarded(&self, m: &Member) -> bool {
        m.kind != Kind::Override
            && (self.dropped.is_empty() || !self.dropped.iter().any(|d| self.key_is(m, d)))
    }

    /// Every top-level member but the routing overrides, in the client's
    /// order: key and value JSON text.
    pub fn members(&self) -> impl Iterator<Item = (Cow<'_, str>, &str)> {
        self.members
            .iter()
            .filter(|m| self.forwarded(m))
            .map(|m| (self.key_text(m), self.raw_value(m)))
    }

    /// The routing overrides in the body, parsed (they are small). One
    /// that is valid JSON but no value (`1e309`, out of every number's
    /// range) is the client's 400, never taken as absent.
    pub fn overrides(&self) -> Result<Map<String, Value>, GatewayError> {
        let mut out = Map::new();
        for m in self.members.iter().filter(|m| m.kind == Kind::Override) {
            let key = self.key_text(m);
            let v = serde_json::from_str(self.raw_value(m)).map_err(|e| {
                GatewayError::bad_param(&key, format!("`{key}` cannot be read: {e}"))
            })?;
            out.insert(key.into_owned(), v);
        }
        Ok(out)
    }

    /// Ask an OpenAI-compatible provider for usage in a stream
    /// (`stream_options.include_usage: true`) so the request can be charged;
    /// the client's own choice stays in [`ClientRequest::head`] and decides
    /// whether it sees the usage chunk.
    pub fn request_stream_usage(&mut self) {
        if !self.head.is_stream() || self.head.include_usage() || self.stream_usage {
            return;
        }
        self.stream_usage = true;
        // A parsed view made before must show the change.
        self.full = OnceCell::new();
    }

    /// Whether the gateway asks the provider for stream usage
    /// ([`ClientRequest::request_stream_usage`]).
    pub fn asks_stream_usage(&self) -> bool {
        self.stream_usage
    }

    /// The body for an OpenAI-compatible upstream: the client's members as
    /// they were written, `model` replaced, routing overrides left out, and
    /// `stream_options.include_usage` set when the gateway asks for usage.
    pub fn openai_body(&self, model: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + model.len() + 48);
        out.push(b'{');
        let mut first = true;
        let mut wrote_stream_options = false;
        for m in &self.members {
            if !self.forwarded(m) {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            match m.kind {
                Kind::Model => {
                    out.extend_from_slice(self.text(&m.key).as_bytes());
                    out.push(b':');
                    json_out::str(&mut out, model);
                }
                Kind::StreamOptions if self.stream_usage => {
                    out.extend_from_slice(self.text(&m.key).as_bytes());
                    out.push(b':');
                    let mut opts: Map<String, Value> =
                        serde_json::from_str(self.raw_value(m)).unwrap_or_default();
                    opts.insert("include_usage".into(), Value::Bool(true));
                    json_out::value(&mut out, &opts);
                    wrote_stream_options = true;
                }
                _ => out.extend_from_slice(self.text(&(m.key.start..m.value.end)).as_bytes()),
            }
        }
        if self.stream_usage && !wrote_stream_options {
            if !first {
                out.push(b',');
            }
            out.extend_from_slice(br#""stream_options":{"include_usage":true}"#);
        }
        out.push(b'}');
        out
    }

    /// The whole request parsed into a JSON object and its typed view
    /// (routing overrides removed, the usage request applied), once; for
    /// translators that read most of it. Errors are the validation errors
    /// of the typed view (an invalid message, a mistyped field).
    pub fn parsed(&self) -> Result<&ParsedRequest, GatewayError> {
        self.full
            .get_or_init(|| {
                let mut raw = parse_json_object(self.body.as_bytes())?;
                crate::api::overrides::strip_overrides(&mut raw);
                for d in &self.dropped {
                    raw.remove(d);
                }
                if self.stream_usage {
                    let opts = raw
                        .entry("stream_options")
                        .or_insert_with(|| Value::Object(Map::new()));
                    if opts.is_null() {
                        *opts = Value::Object(Map::new());
                    }
                    if let Value::Object(o) = opts {
                        o.insert("include_usage".into(), Value::Bool(true));
                    }
                }
                match self.op {
                    Operation::Chat => validate_chat_request(raw),
                    Operation::Embeddings => validate_embeddings_request(raw),
                }
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// A member's value as JSON text. (Text, not `&RawValue`: making one
    /// would check the bytes again.)
    fn raw_value(&self, m: &Member) -> &str {
        self.body.get(m.value.clone()).unwrap_or("null")
    }

    /// A range the indexer cut (always on character boundaries).
    fn text(&self, r: &Range<usize>) -> &str {
        self.body.get(r.clone()).unwrap_or("")
    }

    fn key_text(&self, m: &Member) -> Cow<'_, str> {
        decode_key(self.body.get(m.key.clone()).unwrap_or("\"\""))
    }

    fn key_is(&self, m: &Member, key: &str) -> bool {
        if m.key_escaped {
            return self.key_text(m) == key;
        }
        // A key without escapes compares as bytes.
        m.key.len() == key.len() + 2 && self.text(&(m.key.start + 1..m.key.end - 1)) == key
    }

    /// The chat fields the gateway reads itself, checked with the errors a
    /// client has always got for them.
    fn read_chat_head(&self) -> Result<ChatRequest, GatewayError> {
        let mut head = empty_head();
        // One pass over the members; the last of duplicates wins.
        let (mut model, mut messages, mut stream) = (None, None, None);
        let (mut stream_options, mut max_tokens, mut max_completion_tokens, mut n) =
            (None, None, None, None);
        for m in self.members.iter().filter(|m| m.kind != Kind::Override) {
            let slot = match &*self.key_text(m) {
                "model" => &mut model,
                "messages" => &mut messages,
                "stream" => &mut stream,
                "stream_options" => &mut stream_options,
                "max_tokens" => &mut max_tokens,
                "max_completion_tokens" => &mut max_completion_tokens,
                "n" => &mut n,
                _ => continue,
            };
            *slot = Some(self.raw_value(m));
        }
        head.model = match model {
            None | Some("null") => {
                return Err(GatewayError::bad_param(
                    "model",
                    "missing required parameter: 'model'",
                ))
            }
            Some(text) => match serde_json::from_str::<String>(text) {
                Ok(m) if !m.is_empty() => m,
                _ => {
                    return Err(GatewayError::bad_param(
                        "model",
                        "'model' must be a non-empty string",
                    ))
                }
            },
        };
        match messages {
            None | Some("null") => {
                return Err(GatewayError::bad_param(
                    "messages",
                    "missing required parameter: 'messages'",
                ))
            }
            Some(text) if text.starts_with('[') => {
                if text[1..].trim_start().starts_with(']') {
                    return Err(GatewayError::bad_param(
                        "messages",
                        "'messages' must not be empty",
                    ));
                }
            }
            Some(_) => {
                return Err(GatewayError::bad_param(
                    "messages",
                    "'messages' must be an array",
                ))
            }
        }
        head.stream = match stream {
            None | Some("null") => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => {
                return Err(GatewayError::bad_param(
                    "stream",
                    "'stream' must be a boolean",
                ))
            }
        };
        head.stream_options = typed::<StreamOptions>("stream_options", stream_options)?;
        head.max_tokens = typed("max_tokens", max_tokens)?;
        head.max_completion_tokens = typed("max_completion_tokens", max_completion_tokens)?;
        head.n = typed("n", n)?;
        Ok(head)
    }
}

/// Member `key`'s JSON text as `T` (`null` and absent are `None`).
fn typed<T: serde::de::DeserializeOwned>(
    key: &str,
    text: Option<&str>,
) -> Result<Option<T>, GatewayError> {
    match text {
        None => Ok(None),
        Some(raw) => serde_json::from_str::<Option<T>>(raw).map_err(|e| field_error(key, &e)),
    }
}

/// A `ChatRequest` with nothing set.
fn empty_head() -> ChatRequest {
    ChatRequest {
        model: String::new(),
        messages: Vec::new(),
        stream: None,
        stream_options: None,
        max_tokens: None,
        max_completion_tokens: None,
        temperature: None,
        top_p: None,
        stop: None,
        tools: None,
        tool_choice: None,
        parallel_tool_calls: None,
        user: None,
        n: None,
        response_format: None,
        extra: Map::new(),
    }
}

/// serde_json's message for `e` without its "at line L column C" suffix
/// (positions inside one member mean nothing to the client).
pub fn serde_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if e.line() == 0 {
        return text;
    }
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// The 400 for a member of the wrong type.
pub fn field_error(key: &str, e: &serde_json::Error) -> GatewayError {
    GatewayError::bad_param(key, format!("invalid request: {}", serde_message(e)))
}

/// A decoded key literal.
fn decode_key(lit: &str) -> Cow<'_, str> {
    let inner = lit.get(1..lit.len().saturating_sub(1)).unwrap_or("");
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    serde_json::from_str::<String>(lit)
        .map(Cow::Owned)
        .unwrap_or(Cow::Borrowed(inner))
}

/// The 400 for a body the fast indexer refused: serde_json's own message
/// (with its line and column), or "not an object".
fn json_error(body: &str) -> GatewayError {
    match crate::codec::json_in::check(body) {
        Err(e) => GatewayError::bad_request(format!("request body is not valid JSON: {e}"))
            .with_code("invalid_json"),
        Ok(_) => GatewayError::bad_request("request body must be a JSON object"),
    }
}

/// The body's members as byte ranges, if it is a valid JSON object: one
/// pass checks the whole text ([`json_in::valid_object_with`]: strings,
/// escapes, numbers, nesting; UTF-8 was checked before) and notes the
/// top-level members on the way. `Err` for anything else; the caller asks
/// serde_json for the message.
fn index_members(text: &str) -> Result<Vec<Member>, ()> {
    if !text.trim_start().starts_with('{') {
        return Err(());
    }
    let mut members = Vec::with_capacity(16);
    let valid = json_in::valid_object_with(text, &mut |key, value| {
        let lit = text.get(key.clone()).unwrap_or("\"\"");
        members.push(Member {
            kind: kind_of(&decode_key(lit)),
            key_escaped: lit.contains('\\'),
            key,
            value,
        });
    });
    if valid {
        Ok(members)
    } else {
        Err(())
    }
}

fn kind_of(key: &str) -> Kind {
    match key {
        "model" => Kind::Model,
        "stream_options" => Kind::StreamOptions,
        k if OVERRIDE_KEYS.contains(&k) || litellm_key(k).is_some() => Kind::Override,
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<ClientRequest, GatewayError> {
        ClientRequest::parse(Operation::Chat, body.as_bytes().to_vec())
    }

    #[test]
    fn indexes_members_and_reads_the_head() {
        let r = chat(
            r#" { "model" : "fast", "messages": [{"role":"user","content":"hi"}],
                "stream": true, "stream_options": {"include_usage": false}, "max_tokens": 5,
                "n": 2, "x\u0079": [1, {"a": "}"}] } "#,
        )
        .unwrap();
        assert_eq!(r.head.model, "fast");
        assert!(r.head.is_stream());
        assert!(!r.head.include_usage());
        assert_eq!((r.head.max_tokens, r.head.n), (Some(5), Some(2)));
        assert_eq!(r.member("xy"), Some(r#"[1, {"a": "}"}]"#));
        let keys: Vec<_> = r.members().map(|(k, _)| k.into_owned()).collect();
        assert_eq!(
            keys,
            [
                "model",
                "messages",
                "stream",
                "stream_options",
                "max_tokens",
                "n",
                "xy"
            ]
        );
    }

    #[test]
    fn rewrites_model_and_drops_overrides_keeping_the_rest_verbatim() {
        let r = chat(
            r#"{"model":"fast","num_retries":2,"messages":[{"role":"user","content":"caf\u00e9 \"q\""}],"temperature":0.70,"fallbacks":["b"]}"#,
        )
        .unwrap();
        let out = String::from_utf8(r.openai_body("gpt-x\"y")).unwrap();
        assert_eq!(
            out,
            r#"{"model":"gpt-x\"y","messages":[{"role":"user","content":"caf\u00e9 \"q\""}],"temperature":0.70}"#
        );
        assert_eq!(r.overrides().unwrap().len(), 2);
        assert!(r.member("num_retries").is_none());
    }

    #[test]
    fn stream_usage_is_added_or_merged() {
        let mut r =
            chat(r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}"#)
                .unwrap();
        r.request_stream_usage();
        let v: Value = serde_json::from_slice(&r.openai_body("m")).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(
            r.parsed().unwrap().raw["stream_options"]["include_usage"],
            true
        );
        let mut r = chat(
            r#"{"model":"m","stream":true,"stream_options":{"other":1},"messages":[{"role":"user","content":"x"}]}"#,
        )
        .unwrap();
        r.request_stream_usage();
        assert!(!r.head.include_usage(), "the client's own choice is kept");
        let v: Value = serde_json::from_slice(&r.openai_body("m")).unwrap();
        assert_eq!(
            v["stream_options"],
            serde_json::json!({"other": 1, "include_usage": true})
        );
    }

    #[test]
    fn refuses_what_the_full_parse_refused() {
        for (body, param) in [
            (
                r#"{"messages":[{"role":"user","content":"x"}]}"#,
                Some("model"),
            ),
            (
                r#"{"model":5,"messages":[{"role":"user","content":"x"}]}"#,
                Some("model"),
            ),
            (
                r#"{"model":"","messages":[{"role":"user","content":"x"}]}"#,
                Some("model"),
            ),
            (r#"{"model":"m"}"#, Some("messages")),
            (r#"{"model":"m","messages":null}"#, Some("messages")),
            (r#"{"model":"m","messages":"hi"}"#, Some("messages")),
            (r#"{"model":"m","messages":[ ]}"#, Some("messages")),
            (
                r#"{"model":"m","messages":[1],"stream":"yes"}"#,
                Some("stream"),
            ),
            (
                r#"{"model":"m","messages":[1],"max_tokens":-1}"#,
                Some("max_tokens"),
            ),
            (
                r#"{"model":"m","messages":[1],"stream_options":5}"#,
                Some("stream_options"),
            ),
        ] {
            let e = chat(body).unwrap_err();
            assert_eq!((e.status, e.param.as_deref()), (400, param), "{body}");
        }
        for body in [
            "",
            "{",
            r#"{"model": "m", "messages": ["#,
            r#"{"model": "m",}"#,
            r#"{"model": "m"} x"#,
            r#"{"model": "m" "x": 1}"#,
            r#"{"model": "\x"}"#,
            r#"{model: 1}"#,
        ] {
            let e = chat(body).unwrap_err();
            assert_eq!(e.code.as_deref(), Some("invalid_json"), "{body}");
        }
        let e = chat("[1]").unwrap_err();
        assert!(e.message.contains("must be a JSON object"));
        let e =
            ClientRequest::parse(Operation::Chat, b"{\"model\": \"\xff\"}".to_vec()).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("invalid_json"));
    }

    #[test]
    fn escaped_keys_are_recognised() {
        let r = chat(r#"{"mod\u0065l":"m","messages":[1],"num_r\u0065tries":1}"#).unwrap();
        assert_eq!(r.head.model, "m");
        assert_eq!(
            r.overrides().unwrap().get("num_retries"),
            Some(&Value::from(1))
        );
        let v: Value = serde_json::from_slice(&r.openai_body("n")).unwrap();
        assert_eq!(v, serde_json::json!({"model": "n", "messages": [1]}));
    }
}
