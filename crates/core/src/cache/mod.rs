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

pub use crate::config::cache::Controls;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::api::openai::Operation;
use crate::api::request::ClientRequest;

/// Top-level request members that do not change the answer, left out of the
/// key: how it is delivered (`stream`, `stream_options`), who asks (`user`;
/// the caller's scope is in the key instead) and bookkeeping (`metadata`).
/// The gateway's own keys (`cache`, `tags`, `num_retries` ...) never count.
pub const NOT_IN_KEY: &[&str] = &["stream", "stream_options", "user", "metadata"];

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

/// The digest of every top-level member that decides the answer (sorted by
/// name, the value's JSON text as sent; [`NOT_IN_KEY`] and the gateway's
/// own keys left out). Taken before the guardrails mask the request, so two
/// requests share an answer only when the client sent the same text.
/// `model` is the alias the client asked for, so every deployment of an
/// alias shares answers, as in LiteLLM.
pub fn request_digest(req: &ClientRequest) -> [u8; 32] {
    digest_without(req, &[])
}

/// The semantic cache's scope: [`request_digest`] without the prompt
/// (`messages`, `input`), so differently worded prompts with the same model
/// and parameters share a bucket and are told apart by their embeddings
/// (LiteLLM leaves the same parameters out of its semantic scope).
pub fn semantic_digest(req: &ClientRequest) -> [u8; 32] {
    digest_without(req, &["messages", "input"])
}

fn digest_without(req: &ClientRequest, skip: &[&str]) -> [u8; 32] {
    let mut members: Vec<(std::borrow::Cow<'_, str>, &str)> = req
        .members()
        .filter(|(k, _)| !NOT_IN_KEY.contains(&k.as_ref()) && !skip.contains(&k.as_ref()))
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
    h.update(match req.op {
        Operation::Chat => b"chat\0".as_slice(),
        Operation::Embeddings => b"embeddings\0".as_slice(),
    });
    for (k, v) in &members {
        h.update(k.as_bytes());
        h.update(b"\0");
        h.update(v.as_bytes());
        h.update(b"\0");
    }
    h.finalize().into()
}

/// The cache key: `[namespace:]<sha256 hex>` (LiteLLM's shape) of the
/// request's [`request_digest`], the caller's scope and the guardrails that
/// ran on the request (another set of guardrails may answer differently).
pub fn cache_key(
    digest: &[u8; 32],
    scope: &str,
    guardrails: &[String],
    namespace: Option<&str>,
) -> String {
    let mut h = Sha256::new();
    h.update(b"llm-gateway cache v1\0");
    h.update(digest);
    h.update(scope.as_bytes());
    h.update(b"\0");
    for g in guardrails {
        h.update(g.as_bytes());
        h.update(b",");
    }
    let hex = hex(&h.finalize());
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}:{hex}"),
        _ => hex,
    }
}

/// The text a semantic cache embeds, as LiteLLM's
/// `get_semantic_cache_prompt_from_messages`: every message's text content
/// (string content, or the `text` of its parts; a `tool_result` part's own
/// content), joined without separators; `None` when there is none.
pub fn prompt_text(req: &ClientRequest) -> Option<String> {
    fn text_of(content: &Value, out: &mut String) {
        match content {
            Value::String(s) => out.push_str(s),
            Value::Array(parts) => {
                for p in parts {
                    if p.get("type").and_then(Value::as_str) == Some("tool_result") {
                        if let Some(c) = p.get("content") {
                            text_of(c, out);
                        }
                    } else if let Some(t) = p.get("text").and_then(Value::as_str) {
                        out.push_str(t);
                    }
                }
            }
            _ => {}
        }
    }
    let messages: Vec<Value> = serde_json::from_str(req.member("messages")?).ok()?;
    let mut out = String::new();
    for m in &messages {
        if let Some(c) = m.get("content") {
            text_of(c, &mut out);
        }
    }
    (!out.trim().is_empty()).then_some(out)
}

/// The first embedding of an OpenAI embeddings answer.
pub fn first_embedding(answer: &[u8]) -> Option<Vec<f32>> {
    let v: Value = serde_json::from_slice(answer).ok()?;
    let e = v.get("data")?.get(0)?.get("embedding")?.as_array()?;
    let out: Vec<f32> = e
        .iter()
        .filter_map(|x| x.as_f64().map(|f| f as f32))
        .collect();
    (!out.is_empty() && out.len() == e.len()).then_some(out)
}

/// How many messages the request carries (`max_messages`).
pub fn message_count(req: &ClientRequest) -> usize {
    req.member("messages")
        .and_then(|m| serde_json::from_str::<Vec<&serde_json::value::RawValue>>(m).ok())
        .map_or(0, |v| v.len())
}

pub fn hex(bytes: &[u8]) -> String {
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
