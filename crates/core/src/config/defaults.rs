//! Deployment defaults: model parameters written in a deployment's
//! `litellm_params` (`temperature`, `max_tokens`, `stop` ...), sent with every
//! call to that deployment unless the request sets them itself, as LiteLLM's
//! router does (`router_attempt.attempt_kwargs`: `{**litellm_params,
//! **request}`); `router_settings.default_litellm_params` is a default for
//! every deployment, over the deployment's own (LiteLLM merges it into the
//! request with `setdefault`). `extra_headers` are added to the provider
//! request; `extra_body` is merged into the native body the translator made.
//!
//! Values are type-checked here, at load, so a bad default is a configuration
//! error naming the key instead of a 400 on every request.

use serde_json::{Map, Value};

use super::{err, resolve_env, ConfigError};

/// What a default must look like.
#[derive(Clone, Copy)]
enum Shape {
    Number,
    PositiveInt,
    Int,
    Bool,
    Str,
    Stop,
    Object,
    Array,
    StrOrObject,
}

/// Chat parameters a deployment may default (OpenAI's, and the
/// provider-specific ones LiteLLM maps: `top_k`, `thinking`).
const CHAT: &[(&str, Shape)] = &[
    ("temperature", Shape::Number),
    ("top_p", Shape::Number),
    ("n", Shape::PositiveInt),
    ("stop", Shape::Stop),
    ("max_tokens", Shape::PositiveInt),
    ("max_completion_tokens", Shape::PositiveInt),
    ("presence_penalty", Shape::Number),
    ("frequency_penalty", Shape::Number),
    ("logit_bias", Shape::Object),
    ("logprobs", Shape::Bool),
    ("top_logprobs", Shape::Int),
    ("response_format", Shape::Object),
    ("seed", Shape::Int),
    ("tools", Shape::Array),
    ("tool_choice", Shape::StrOrObject),
    ("parallel_tool_calls", Shape::Bool),
    ("reasoning_effort", Shape::Str),
    ("thinking", Shape::Object),
    ("top_k", Shape::PositiveInt),
    ("modalities", Shape::Array),
    ("service_tier", Shape::Str),
    ("verbosity", Shape::Str),
    ("web_search_options", Shape::Object),
    ("safety_identifier", Shape::Str),
];

/// Embeddings parameters a deployment may default.
const EMBEDDINGS: &[(&str, Shape)] = &[
    ("dimensions", Shape::PositiveInt),
    ("encoding_format", Shape::Str),
    ("input_type", Shape::Str),
];

/// Defaults of both kinds of request.
const BOTH: &[(&str, Shape)] = &[("user", Shape::Str)];

/// Headers a deployment may not set: Envoy's and the body's framing.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "proxy-connection",
];

/// A deployment's defaults, ready to apply: JSON text per parameter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Defaults {
    /// Chat parameters: name and JSON value text.
    pub chat: Vec<(String, String)>,
    /// Embeddings parameters.
    pub embeddings: Vec<(String, String)>,
    /// `extra_headers`, lower-cased names, `os.environ/` resolved. Values
    /// may be secrets: never logged.
    pub headers: Vec<(String, String)>,
    /// `extra_body`: top-level members set on the native body.
    pub extra_body: Map<String, Value>,
    /// The default output cap (`max_completion_tokens`, else `max_tokens`)
    /// and `n`, which budget reservations must count for a request that
    /// sets neither.
    pub max_output_tokens: Option<u64>,
    pub n: Option<u64>,
}

impl Defaults {
    /// Nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.chat.is_empty()
            && self.embeddings.is_empty()
            && self.headers.is_empty()
            && self.extra_body.is_empty()
    }
}

/// Whether `key` is a deployment default (so the caller does not warn that
/// it is ignored).
pub fn is_default_key(key: &str) -> bool {
    key == "extra_headers" || key == "extra_body" || shape(key).is_some()
}

fn shape(key: &str) -> Option<(Shape, bool, bool)> {
    let find = |t: &[(&str, Shape)]| t.iter().find(|(k, _)| *k == key).map(|(_, s)| *s);
    if let Some(s) = find(CHAT) {
        return Some((s, true, false));
    }
    if let Some(s) = find(EMBEDDINGS) {
        return Some((s, false, true));
    }
    find(BOTH).map(|s| (s, true, true))
}

/// Read the defaults of one `litellm_params` mapping (`path` names it in
/// errors), over `base` (which wins: `router_settings.default_litellm_params`).
pub fn parse(
    params: &Map<String, Value>,
    path: &str,
    base: &Defaults,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Defaults, ConfigError> {
    let mut out = base.clone();
    for (key, value) in params {
        if value.is_null() {
            continue;
        }
        let field = format!("{path}.{key}");
        match key.as_str() {
            "extra_headers" => {
                for (name, v) in headers(value, &field, env)? {
                    if !out.headers.iter().any(|(n, _)| *n == name) {
                        out.headers.push((name, v));
                    }
                }
            }
            "extra_body" => {
                let Value::Object(m) = value else {
                    return Err(err(field, "must be a mapping of body members"));
                };
                for (k, v) in m {
                    out.extra_body.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            k => {
                let Some((s, chat, embeddings)) = shape(k) else {
                    continue;
                };
                check(s, value).map_err(|why| err(&field, why))?;
                match k {
                    "max_completion_tokens" => out.max_output_tokens = value.as_u64(),
                    "max_tokens" if out.max_output_tokens.is_none() => {
                        out.max_output_tokens = value.as_u64()
                    }
                    "n" => out.n = value.as_u64(),
                    _ => {}
                }
                let text = value.to_string();
                for (on, list) in [(chat, &mut out.chat), (embeddings, &mut out.embeddings)] {
                    if on && !list.iter().any(|(n, _)| n == k) {
                        list.push((k.to_string(), text.clone()));
                    }
                }
            }
        }
    }
    Ok(out)
}

fn headers(
    value: &Value,
    field: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let Value::Object(m) = value else {
        return Err(err(field, "must be a mapping of header names to strings"));
    };
    let mut out = Vec::with_capacity(m.len());
    for (name, v) in m {
        let lower = name.to_ascii_lowercase();
        let valid_name = !lower.is_empty()
            && lower
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.!#$%&'*+^`|~".contains(&b));
        if !valid_name || RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(err(
                format!("{field}.{name}"),
                "not a header a deployment may set (framing and hop-by-hop headers are Envoy's)",
            ));
        }
        let text = match v {
            Value::String(s) => resolve_env(s, &format!("{field}.{name}"), env)?,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(err(format!("{field}.{name}"), "must be a string")),
        };
        if text.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(err(format!("{field}.{name}"), "no line breaks in a header"));
        }
        out.push((lower, text));
    }
    Ok(out)
}

fn check(s: Shape, v: &Value) -> Result<(), &'static str> {
    let ok = match s {
        Shape::Number => v.is_number(),
        Shape::PositiveInt => v.as_u64().is_some_and(|n| n > 0),
        Shape::Int => v.is_i64() || v.is_u64(),
        Shape::Bool => v.is_boolean(),
        Shape::Str => v.is_string(),
        Shape::Stop => match v {
            Value::String(_) => true,
            Value::Array(a) => a.iter().all(Value::is_string),
            _ => false,
        },
        Shape::Object => v.is_object(),
        Shape::Array => v.is_array(),
        Shape::StrOrObject => v.is_string() || v.is_object(),
    };
    if ok {
        return Ok(());
    }
    Err(match s {
        Shape::Number => "must be a number",
        Shape::PositiveInt => "must be a positive integer",
        Shape::Int => "must be an integer",
        Shape::Bool => "must be a boolean",
        Shape::Str => "must be a string",
        Shape::Stop => "must be a string or a list of strings",
        Shape::Object => "must be a mapping",
        Shape::Array => "must be a list",
        Shape::StrOrObject => "must be a string or a mapping",
    })
}
