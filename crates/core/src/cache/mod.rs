//! The response cache's pure rules: which requests use it and how
//! ([`Controls`], LiteLLM's per-request `cache` object and the
//! `Cache-Control` header), the cache key ([`cache_key`]), the stored entry
//! ([`entry`]), a stored answer replayed as a stream ([`replay`]) and a
//! stream assembled into the answer to store ([`assemble`]).
//!
//! The stores (this Envoy's shared data, Redis through webdis) and the
//! hook that looks up at admission and stores at response complete are in
//! `pipeline/hooks/cache/`.

pub mod assemble;
pub mod entry;
pub mod replay;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::api::error::GatewayError;
use crate::api::openai::Operation;
use crate::api::request::ClientRequest;

/// Top-level request members that do not change the answer, left out of the
/// key: how it is delivered (`stream`, `stream_options`), who asks (`user`;
/// the caller's scope is in the key instead) and bookkeeping (`metadata`).
/// The gateway's own keys (`cache`, `tags`, `num_retries` ...) never count.
pub const NOT_IN_KEY: &[&str] = &["stream", "stream_options", "user", "metadata"];

/// What one request asks of the cache: LiteLLM's `cache` object
/// (`no-cache`, `no-store`, `ttl`, `s-maxage`, `namespace`, `use-cache`),
/// merged with the `Cache-Control` header and the key's own controls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Controls {
    /// Do not read the cache (the answer may still be stored).
    pub no_cache: bool,
    /// Do not store the answer.
    pub no_store: bool,
    /// Opt in when the cache runs `mode: default_off`.
    pub use_cache: bool,
    /// Seconds the stored answer lives (over the configured `ttl`).
    pub ttl_s: Option<u64>,
    /// Only accept an entry at most this old (seconds).
    pub max_age_s: Option<u64>,
    pub namespace: Option<String>,
}

impl Controls {
    /// The body's `cache` object (JSON text). A wrong type is the client's 400.
    pub fn from_body(json: &str) -> Result<Controls, GatewayError> {
        let v: Value = serde_json::from_str(json)
            .map_err(|e| GatewayError::bad_param("cache", format!("`cache` cannot be read: {e}")))?;
        Controls::from_value(&v, "cache")
    }

    /// A `cache` mapping from a request or a key's configuration
    /// (`field`: where it came from, for the error).
    pub fn from_value(v: &Value, field: &str) -> Result<Controls, GatewayError> {
        let bad = |k: &str, what: &str| {
            GatewayError::bad_param(field, format!("`{field}.{k}` must be {what}"))
        };
        let Value::Object(m) = v else {
            return Err(GatewayError::bad_param(
                field,
                format!("`{field}` must be an object such as {{\"no-cache\": true}}"),
            ));
        };
        let mut c = Controls::default();
        for (k, v) in m {
            let flag = || v.as_bool().ok_or_else(|| bad(k, "a boolean"));
            let secs = || {
                v.as_f64()
                    .filter(|s| *s >= 0.0 && *s < 1e10)
                    .map(|s| s.ceil() as u64)
                    .ok_or_else(|| bad(k, "a number of seconds"))
            };
            match k.as_str() {
                "no-cache" => c.no_cache = flag()?,
                "no-store" => c.no_store = flag()?,
                "use-cache" => c.use_cache = flag()?,
                "ttl" => c.ttl_s = Some(secs()?),
                "s-maxage" | "s-max-age" => c.max_age_s = Some(secs()?),
                "namespace" => {
                    c.namespace = Some(v.as_str().ok_or_else(|| bad(k, "a string"))?.to_string())
                }
                _ => {
                    return Err(GatewayError::bad_param(
                        field,
                        format!(
                            "`{field}.{k}` is not a cache control; use no-cache, no-store, \
                             ttl, s-maxage, namespace or use-cache"
                        ),
                    ))
                }
            }
        }
        Ok(c)
    }

    /// The `Cache-Control` request header: `no-cache`, `no-store` and
    /// `s-maxage=N` (or `max-age=N`) as HTTP means them; others are ignored.
    pub fn from_header(value: &str) -> Controls {
        let mut c = Controls::default();
        for d in value.split(',') {
            let d = d.trim().to_ascii_lowercase();
            let (name, arg) = d.split_once('=').map_or((d.as_str(), None), |(n, a)| {
                (n.trim(), Some(a.trim().trim_matches('"')))
            });
            match name {
                "no-cache" => c.no_cache = true,
                "no-store" => c.no_store = true,
                "s-maxage" | "max-age" => c.max_age_s = arg.and_then(|a| a.parse().ok()),
                _ => {}
            }
        }
        c
    }

    /// `self` with what `over` sets on top (a key's controls over a
    /// request's, as LiteLLM's key-level `cache` replaces the request's).
    pub fn overlay(mut self, over: &Controls) -> Controls {
        self.no_cache |= over.no_cache;
        self.no_store |= over.no_store;
        self.use_cache |= over.use_cache;
        if over.ttl_s.is_some() {
            self.ttl_s = over.ttl_s;
        }
        if over.max_age_s.is_some() {
            self.max_age_s = over.max_age_s;
        }
        if over.namespace.is_some() {
            self.namespace.clone_from(&over.namespace);
        }
        self
    }
}

/// Who shares cached answers: requests of one team (or one key without a
/// team) never read another's; the master key and an open gateway share one
/// scope.
pub fn scope_of(team: Option<&str>, key_alias: Option<&str>) -> String {
    match (team, key_alias) {
        (Some(t), _) => format!("team:{t}"),
        (None, Some(k)) => format!("key:{k}"),
        (None, None) => String::new(),
    }
}

/// The cache key: `[namespace:]<sha256 hex>` (LiteLLM's shape) of the
/// operation, the caller's scope, the guardrails that ran on the request,
/// and every top-level member that decides the answer (sorted by name, the
/// value's JSON text as sent; [`NOT_IN_KEY`] and the gateway's own keys
/// left out). `model` is the alias the client asked for, so every
/// deployment of an alias shares answers, as in LiteLLM.
pub fn cache_key(
    req: &ClientRequest,
    scope: &str,
    guardrails: &[&str],
    namespace: Option<&str>,
) -> String {
    let mut members: Vec<(std::borrow::Cow<'_, str>, &str)> = req
        .members()
        .filter(|(k, _)| !NOT_IN_KEY.contains(&k.as_ref()))
        .collect();
    members.sort_by(|a, b| a.0.cmp(&b.0));
    // A duplicate key: the last one is the value (as JSON objects read).
    members.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            earlier.1 = later.1;
            true
        } else {
            false
        }
    });
    let mut h = Sha256::new();
    h.update(b"llm-gateway cache v1\0");
    h.update(match req.op {
        Operation::Chat => b"chat\0".as_slice(),
        Operation::Embeddings => b"embeddings\0".as_slice(),
    });
    h.update(scope.as_bytes());
    h.update(b"\0");
    for g in guardrails {
        h.update(g.as_bytes());
        h.update(b",");
    }
    h.update(b"\0");
    for (k, v) in &members {
        h.update(k.as_bytes());
        h.update(b"\0");
        h.update(v.as_bytes());
        h.update(b"\0");
    }
    let hex = hex(&h.finalize());
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}:{hex}"),
        _ => hex,
    }
}

/// How many messages the request carries (`max_messages`).
pub fn message_count(req: &ClientRequest) -> usize {
    req.member("messages")
        .and_then(|m| serde_json::from_str::<Vec<&serde_json::value::RawValue>>(m).ok())
        .map_or(0, |v| v.len())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests;
