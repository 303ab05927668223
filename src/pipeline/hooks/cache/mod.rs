//! The response cache at its hook points: the key is taken when the request
//! is accepted (before guardrails mask it), the store is read at admission
//! (after guardrails and budgets: a key over its budget is refused even for
//! a cached answer, as in LiteLLM), and the answer is stored when it is
//! complete. A hit is answered by the flow without any provider call, costs
//! the key nothing (LiteLLM's `cache_hit` cost is 0) and leaves the
//! deployments' rpm/tpm untouched.
//!
//! Stores: [`local`] (this Envoy's shared data) and [`redis`] (the fleet's
//! Redis through webdis). A store that cannot be reached is a miss, logged
//! once per worker and counted (`llm_gateway_cache_errors`); it never
//! fails a request.

pub mod local;
pub mod redis;
pub mod semantic;

use std::sync::atomic::{AtomicBool, Ordering};

use log::warn;
use serde_json::Value;

use super::{Admit, Cx};
use crate::accounting::fleet::FleetSettings;
use crate::accounting::metering;
use crate::api::request::ClientRequest;
use crate::cache::{self, assemble::Assembler, entry, replay, Controls};
use crate::config::cache::{CacheMode, CacheSettings, CacheStore, MAX_ITEM_BYTES};
use crate::pipeline::fleet_calls;
use crate::pipeline::host::{add_counter, Host};
use crate::pipeline::telemetry::keys;
use crate::pipeline::Exchange;
use crate::provider::Operation;

/// One log line per worker when the Redis store fails, not one per request.
static REDIS_FAILURE_LOGGED: AtomicBool = AtomicBool::new(false);

/// A cached answer to send instead of calling a provider.
#[derive(Debug)]
pub struct Served {
    pub body: Vec<u8>,
    pub content_type: &'static str,
}

/// What the cache did for the request (the `x-llm-gateway-cache` header and
/// the access log's `cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Hit,
    Miss,
    /// `no-cache`: not read (the answer may still be stored).
    Bypass,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Hit => "hit",
            Verdict::Miss => "miss",
            Verdict::Bypass => "bypass",
        }
    }
}

/// A semantic lookup: the prompt, its scope and, once known, its embedding.
struct SemanticPlan {
    digest: [u8; 32],
    prompt: String,
    scope: String,
    vector: Option<Vec<f32>>,
}

/// The request uses the cache: its key and what it asked.
struct Plan {
    digest: [u8; 32],
    key: String,
    controls: Controls,
    /// The client asked for a stream (a hit is replayed as one).
    stream: bool,
    include_usage: bool,
    /// The client set `max_tokens` / `max_completion_tokens` (an answer cut
    /// at a limit the gateway chose is not stored).
    own_max_tokens: bool,
    /// `redis-semantic`.
    semantic: Option<SemanticPlan>,
}

#[derive(Default)]
enum Lookup {
    #[default]
    NotYet,
    /// The prompt's embedding call in the air (the exchange reads its answer).
    Embedding(u32, Box<Exchange>),
    /// The embedding arrived (or could not be had): search next.
    Embedded,
    /// The Redis read in the air.
    Waiting(u32),
    Done(Option<Vec<u8>>),
}

/// The cache's per-request state.
#[derive(Default)]
pub struct CacheHook {
    plan: Option<Plan>,
    lookup: Lookup,
    verdict: Option<Verdict>,
    /// A forwarded stream, put together to be stored.
    assembler: Option<Assembler>,
    /// Store calls sent to Redis (their answers are swallowed).
    store_calls: Vec<u32>,
    /// `redis-semantic`: the best similarity the search found.
    similarity: Option<f64>,
}

fn settings<'a>(cx: &Cx<'a>) -> Option<&'a CacheSettings> {
    cx.cfg.cache.as_ref()
}

impl CacheHook {
    /// Decide whether the request uses the cache and take its digest (before
    /// any guardrail rewrites it). `cache_control`: the request header.
    pub fn request_accepted(
        &mut self,
        cx: &mut Cx<'_>,
        req: &ClientRequest,
        cache_control: Option<&str>,
    ) -> Result<(), crate::api::error::GatewayError> {
        let Some(s) = settings(cx) else {
            return Ok(());
        };
        let served_op = match req.op {
            Operation::Chat => s.chat,
            Operation::Embeddings => s.embeddings,
        };
        let mut controls = match req.gateway_member("cache") {
            Some(json) => Controls::from_body(json)?,
            None => Controls::default(),
        };
        if let Some(h) = cache_control {
            controls = controls.overlay(&Controls::from_header(h));
        }
        let caller = cx.record.caller.caller(cx.cfg);
        let key_cfg = caller.key();
        if let Some(k) = key_cfg.and_then(|k| k.cache.as_ref()) {
            controls = controls.overlay(k);
        }
        if !served_op
            || (s.mode == CacheMode::DefaultOff && !controls.use_cache)
            || s.max_messages
                .is_some_and(|max| req.op == Operation::Chat && cache::message_count(req) > max)
            || (controls.no_cache && controls.no_store)
        {
            return Ok(());
        }
        let semantic = match &s.store {
            CacheStore::RedisSemantic { .. } => match cache::prompt_text(req) {
                Some(prompt) => Some(SemanticPlan {
                    digest: cache::semantic_digest(req),
                    prompt,
                    scope: String::new(),
                    vector: None,
                }),
                // Nothing to embed (embeddings requests, empty prompts).
                None => return Ok(()),
            },
            _ => None,
        };
        let head = &req.head;
        self.plan = Some(Plan {
            digest: cache::request_digest(req),
            key: String::new(),
            controls,
            stream: head.is_stream(),
            include_usage: head.include_usage(),
            own_max_tokens: head.max_tokens.is_some() || head.max_completion_tokens.is_some(),
            semantic,
        });
        Ok(())
    }

    /// The key, once the guardrails that run on the request are known.
    pub fn key_request(&mut self, cx: &mut Cx<'_>, guardrails: &[String]) {
        let Some(s) = settings(cx) else { return };
        let Some(plan) = self.plan.as_mut() else {
            return;
        };
        let caller = cx.record.caller.caller(cx.cfg);
        let scope = caller.key().map_or(String::new(), |k| {
            cache::scope_of(k.team.as_deref(), Some(&k.alias))
        });
        let namespace = plan
            .controls
            .namespace
            .as_deref()
            .or(s.namespace.as_deref());
        plan.key = cache::cache_key(&plan.digest, &scope, guardrails, namespace);
        if let Some(sem) = plan.semantic.as_mut() {
            // The namespace goes into the hash: the scope is a Redis hash tag.
            let scoped = format!("{scope}\0namespace:{}", namespace.unwrap_or(""));
            sem.scope = cache::cache_key(&sem.digest, &scoped, guardrails, None);
        }
    }

    /// What the cache did (`hit`, `miss`, `bypass`), once it decided.
    pub fn verdict(&self) -> Option<&'static str> {
        self.verdict.map(Verdict::as_str)
    }

    /// Read the store: a hit is served, a miss goes on to the provider.
    pub fn admission(&mut self, cx: &mut Cx<'_>) -> Result<Option<Served>, Admit> {
        let Some(s) = settings(cx) else {
            return Ok(None);
        };
        let Some(plan) = self.plan.as_ref() else {
            return Ok(None);
        };
        if plan.controls.no_cache {
            self.verdict = Some(Verdict::Bypass);
            return Ok(None);
        }
        let stored = match std::mem::take(&mut self.lookup) {
            Lookup::Done(v) => v,
            Lookup::Waiting(t) => {
                self.lookup = Lookup::Waiting(t);
                return Err(Admit::Wait);
            }
            Lookup::Embedding(t, ex) => {
                self.lookup = Lookup::Embedding(t, ex);
                return Err(Admit::Wait);
            }
            Lookup::Embedded => match self.search(cx) {
                Some(wait) => return Err(wait),
                None => None,
            },
            Lookup::NotYet => match &s.store {
                CacheStore::Local { .. } => local::get(cx.host.store(), &plan.key),
                CacheStore::Redis => {
                    let Some(fleet) = cx.cfg.fleet.as_ref() else {
                        return Ok(None);
                    };
                    let body = redis::get_body(fleet, &plan.key);
                    match fleet_calls::post(cx.host, fleet, &body) {
                        Some(t) => {
                            self.lookup = Lookup::Waiting(t);
                            return Err(Admit::Wait);
                        }
                        None => {
                            redis_failed(cx.host, "the cache read could not be sent");
                            None
                        }
                    }
                }
                CacheStore::RedisSemantic {
                    embedding_alias, ..
                } => {
                    let prompt = plan.semantic.as_ref().map_or("", |s| s.prompt.as_str());
                    match semantic::embed(cx.cfg, embedding_alias, prompt, cx.host) {
                        Some((t, ex)) => {
                            self.lookup = Lookup::Embedding(t, Box::new(ex));
                            return Err(Admit::Wait);
                        }
                        None => {
                            add_counter(cx.host, "llm_gateway.cache.embedding_failures", 1);
                            None
                        }
                    }
                }
            },
        };
        let Some(plan) = self.plan.as_ref() else {
            return Ok(None);
        };
        let key = match &plan.semantic {
            Some(sem) => sem.scope.as_str(),
            None => plan.key.as_str(),
        };
        let now = cx.host.now_ms();
        let found =
            stored.and_then(
                |b| match entry::decode(&b, key, now, plan.controls.max_age_s) {
                    Ok(e) => Some(e),
                    Err(entry::Miss::Corrupt) => {
                        add_counter(cx.host, "llm_gateway.cache.corrupt", 1);
                        None
                    }
                    Err(_) => None,
                },
            );
        let served = found.and_then(|e| {
            let served = match (cx.record.op, plan.stream) {
                (Operation::Chat, true) => Served {
                    body: replay::to_stream(&e.answer, plan.include_usage)?,
                    content_type: "text/event-stream",
                },
                _ => Served {
                    body: e.answer,
                    content_type: "application/json",
                },
            };
            add_counter(cx.host, "llm_gateway.cache.saved_micro_usd", e.cost_micro);
            Some(served)
        });
        let verdict = if served.is_some() {
            Verdict::Hit
        } else {
            Verdict::Miss
        };
        self.verdict = Some(verdict);
        add_counter(
            cx.host,
            match verdict {
                Verdict::Hit => "llm_gateway.cache.hits",
                _ => "llm_gateway.cache.misses",
            },
            1,
        );
        cx.host.set_filter_state(keys::CACHE, verdict.as_str());
        Ok(served)
    }

    /// A cache call answered; true when it was this hook's.
    pub fn call_answered(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        host: &mut dyn Host,
    ) -> bool {
        if let Some(i) = self.store_calls.iter().position(|t| *t == token) {
            self.store_calls.swap_remove(i);
            let (status, _) = host.call_response(num_headers, 0);
            if status != Some(200) {
                redis_failed(host, "an answer could not be stored");
            }
            return true;
        }
        if let Lookup::Embedding(t, _) = &self.lookup {
            if *t != token {
                return false;
            }
            let Lookup::Embedding(_, mut ex) = std::mem::take(&mut self.lookup) else {
                return false;
            };
            let (status, body) = host.call_response(num_headers, body_size);
            let w = ex.whole_response(status.unwrap_or(503), &body);
            let vector = (w.status == 200)
                .then(|| cache::first_embedding(&w.body))
                .flatten();
            if vector.is_none() {
                add_counter(host, "llm_gateway.cache.embedding_failures", 1);
            }
            if let Some(sem) = self.plan.as_mut().and_then(|p| p.semantic.as_mut()) {
                sem.vector = vector;
            }
            self.lookup = Lookup::Embedded;
            return true;
        }
        let Lookup::Waiting(t) = self.lookup else {
            return false;
        };
        if t != token {
            return false;
        }
        let (status, body) = host.call_response(num_headers, body_size);
        let semantic = self.plan.as_ref().is_some_and(|p| p.semantic.is_some());
        let found = if semantic {
            semantic::read_search(status, &body).map(|(best, entry)| {
                self.similarity = Some(best);
                entry
            })
        } else {
            redis::read_answer(status, &body)
        };
        self.lookup = Lookup::Done(match found {
            Ok(v) => v,
            Err(e) => {
                redis_failed(host, &e);
                None
            }
        });
        true
    }

    /// The prompt's embedding is known: search its scope (one webdis call).
    /// `None`: nothing to search with (a miss).
    fn search(&mut self, cx: &mut Cx<'_>) -> Option<Admit> {
        let threshold = match settings(cx).map(|s| &s.store) {
            Some(CacheStore::RedisSemantic { threshold, .. }) => *threshold,
            _ => return None,
        };
        let fleet = cx.cfg.fleet.as_ref()?;
        let sem = self.plan.as_ref()?.semantic.as_ref()?;
        let vector = sem.vector.as_ref()?;
        let body = semantic::search_body(fleet, &sem.scope, vector, threshold);
        match fleet_calls::post(cx.host, fleet, &body) {
            Some(t) => {
                self.lookup = Lookup::Waiting(t);
                Some(Admit::Wait)
            }
            None => {
                redis_failed(cx.host, "the semantic search could not be sent");
                None
            }
        }
    }

    /// Whether the hook wants each streamed chunk (to store the stream).
    fn stores(&self) -> bool {
        self.plan
            .as_ref()
            .is_some_and(|p| !p.controls.no_store && !p.key.is_empty())
            && self.verdict != Some(Verdict::Hit)
    }

    /// A chunk of a forwarded stream, as the client got it.
    pub fn chunk(&mut self, out: &[u8]) {
        if self.stores() {
            self.assembler
                .get_or_insert_with(Assembler::default)
                .feed(out);
        }
    }

    /// The answer is complete (`whole`: its status and body, `None` for a
    /// stream): store it, if it may be stored.
    pub fn response_complete(&mut self, cx: &mut Cx<'_>, whole: Option<(u16, &[u8])>) {
        if !self.stores() || cx.exchange.is_some_and(|e| !e.answer_is_chat()) {
            return;
        }
        let Some(s) = settings(cx) else { return };
        let answer = match whole {
            Some((200, body)) => Some(body.to_vec()),
            Some(_) => None,
            None => self.assembler.take().and_then(Assembler::finish),
        };
        let Some(plan) = self.plan.as_ref() else {
            return;
        };
        let Some(answer) = answer.filter(|a| storable(a, cx.record.op, plan.own_max_tokens)) else {
            return;
        };
        let now = cx.host.now_ms();
        let ttl_s = plan.controls.ttl_s.or(s.ttl_s).unwrap_or(0);
        if ttl_s == 0 && plan.controls.ttl_s == Some(0) {
            return;
        }
        let expires = if ttl_s > 0 {
            now.saturating_add(ttl_s.saturating_mul(1000))
        } else {
            0
        };
        let cost = cx.record.cost_micro.unwrap_or_else(|| {
            cx.deployment().map_or(0, |d| {
                let usage = cx.exchange.and_then(|e| e.usage());
                metering::charge(d, usage, cx.record.body_len, 0, true).0
            })
        });
        let entry_key = plan
            .semantic
            .as_ref()
            .map_or(plan.key.as_str(), |s| s.scope.as_str());
        let bytes = entry::encode(entry_key, now, expires, cost, &answer);
        match &s.store {
            CacheStore::Local { max_bytes } => {
                match local::put(cx.host.store(), &plan.key, &bytes, *max_bytes) {
                    local::Put::Stored => {
                        add_counter(cx.host, "llm_gateway.cache.stores", 1);
                        add_counter(
                            cx.host,
                            "llm_gateway.cache.stored_bytes",
                            bytes.len() as u64,
                        );
                    }
                    local::Put::Full | local::Put::Contended => {
                        add_counter(cx.host, "llm_gateway.cache.not_stored", 1)
                    }
                }
            }
            CacheStore::Redis => {
                let Some(fleet) = cx.cfg.fleet.as_ref() else {
                    return;
                };
                // Entries are JSON text, so the value is valid UTF-8.
                let text = String::from_utf8_lossy(&bytes);
                let body = redis::set_body(fleet, &plan.key, &text, ttl_s);
                self.send_store(cx, fleet, &body, bytes.len());
            }
            CacheStore::RedisSemantic { .. } => {
                let Some(fleet) = cx.cfg.fleet.as_ref() else {
                    return;
                };
                // Without the prompt's embedding there is nothing to find it by.
                let Some(sem) = plan.semantic.as_ref() else {
                    return;
                };
                let Some(vector) = sem.vector.as_ref() else {
                    return;
                };
                let exact = plan.key.rsplit(':').next().unwrap_or(&plan.key);
                let text = String::from_utf8_lossy(&bytes);
                let body =
                    semantic::store_body(fleet, &sem.scope, exact, vector, &text, ttl_s, now);
                self.send_store(cx, fleet, &body, bytes.len());
            }
        }
    }

    /// Send a store to Redis (its answer is only checked for failure).
    fn send_store(&mut self, cx: &mut Cx<'_>, fleet: &FleetSettings, body: &[u8], bytes: usize) {
        match fleet_calls::post(cx.host, fleet, body) {
            Some(t) => {
                self.store_calls.push(t);
                add_counter(cx.host, "llm_gateway.cache.stores", 1);
                add_counter(cx.host, "llm_gateway.cache.stored_bytes", bytes as u64);
            }
            None => redis_failed(cx.host, "an answer could not be stored"),
        }
    }

    /// The headers saying what the cache did: `x-litellm-cache-key` (as
    /// LiteLLM names it) and `x-llm-gateway-cache: hit | miss | bypass`.
    pub fn headers(&self) -> Vec<(String, String)> {
        let (Some(plan), Some(v)) = (self.plan.as_ref(), self.verdict) else {
            return Vec::new();
        };
        let mut h = vec![
            ("x-litellm-cache-key".to_string(), plan.key.clone()),
            ("x-llm-gateway-cache".to_string(), v.as_str().to_string()),
        ];
        if let Some(s) = self.similarity {
            h.push((
                "x-llm-gateway-cache-similarity".to_string(),
                format!("{s:.4}"),
            ));
        }
        h
    }
}

/// An answer worth keeping: small enough, a success of the right shape, and
/// not cut at a token limit the client did not set.
fn storable(answer: &[u8], op: Operation, own_max_tokens: bool) -> bool {
    if answer.len() > MAX_ITEM_BYTES {
        return false;
    }
    let Ok(Value::Object(v)) = serde_json::from_slice::<Value>(answer) else {
        return false;
    };
    if v.contains_key("error") {
        return false;
    }
    match op {
        Operation::Embeddings => v.get("data").is_some_and(Value::is_array),
        Operation::Chat => {
            let Some(Value::Array(choices)) = v.get("choices") else {
                return false;
            };
            !choices.is_empty()
                && choices
                    .iter()
                    .all(|c| match c.get("finish_reason").and_then(Value::as_str) {
                        Some("length") => own_max_tokens,
                        Some(_) => true,
                        None => false,
                    })
        }
    }
}

/// The Redis store failed: a miss, counted, logged once per worker.
fn redis_failed(host: &mut dyn Host, what: &str) {
    add_counter(host, "llm_gateway.cache.errors", 1);
    if !REDIS_FAILURE_LOGGED.swap(true, Ordering::Relaxed) {
        warn!("llm-gateway: response cache in Redis unavailable ({what}); requests go on uncached");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_stored() {
        let chat = |finish: &str| {
            format!(
                r#"{{"choices":[{{"index":0,"message":{{"content":"x"}},"finish_reason":"{finish}"}}]}}"#
            )
        };
        assert!(storable(chat("stop").as_bytes(), Operation::Chat, false));
        assert!(!storable(chat("length").as_bytes(), Operation::Chat, false));
        assert!(storable(chat("length").as_bytes(), Operation::Chat, true));
        assert!(!storable(br#"{"choices":[]}"#, Operation::Chat, false));
        assert!(!storable(
            br#"{"error":{"message":"x"}}"#,
            Operation::Chat,
            false
        ));
        assert!(!storable(b"not json", Operation::Chat, false));
        assert!(storable(
            br#"{"object":"list","data":[]}"#,
            Operation::Embeddings,
            false
        ));
        assert!(!storable(
            br#"{"object":"list"}"#,
            Operation::Embeddings,
            false
        ));
    }
}
