//! `redis-semantic`: a prompt's embedding, from one of this gateway's own
//! deployments (`redis_semantic_cache_embedding_model`, translated like any
//! embeddings request and sent with `dispatch_http_call`), compared in Redis
//! with the embeddings of the answers stored in the same scope (the request
//! without its prompt, the caller's scope, the guardrails, the namespace:
//! another model, team or parameter set never shares an answer).
//!
//! The search runs as a Lua script through webdis, over plain Redis (no
//! module needed): each scope keeps its newest
//! [`crate::config::cache::SEMANTIC_MAX_ENTRIES`] entries, and the script
//! computes the cosine similarity of the prompt with each (exact, as
//! RediSearch's FLAT index does) and returns the best one at or above
//! `similarity_threshold`. Keys share a `{scope}` hash tag, so the script's
//! keys live in one slot of a Redis Cluster.

use crate::accounting::fleet::FleetSettings;
use crate::api::openai::Operation;
use crate::api::overrides::Overrides;
use crate::api::request::ClientRequest;
use crate::config::Config;
use crate::pipeline::host::Host;
use crate::pipeline::Exchange;

const SEARCH_SCRIPT: &str = "local q, qn = {}, 0 \
for x in string.gmatch(ARGV[1], '[^,]+') do local f = tonumber(x) q[#q+1] = f qn = qn + f*f end \
qn = math.sqrt(qn) \
if qn == 0 then return {'-2'} end \
local best, bestk = -2, nil \
for _, k in ipairs(redis.call('ZREVRANGE', KEYS[1], 0, -1)) do \
  local blob = redis.call('HGET', k, 'v') \
  if not blob then redis.call('ZREM', KEYS[1], k) \
  elseif #blob == 4 * #q then \
    local dot, n = 0, 0 \
    for i = 1, #q do local f = struct.unpack('<f', blob, 4*i-3) dot = dot + f*q[i] n = n + f*f end \
    if n > 0 then local s = dot / (math.sqrt(n) * qn) if s > best then best, bestk = s, k end end \
  end \
end \
if bestk and best >= tonumber(ARGV[2]) then return {tostring(best), redis.call('HGET', bestk, 'a')} end \
return {tostring(best)}";

const STORE_SCRIPT: &str = "local v = {} \
for x in string.gmatch(ARGV[1], '[^,]+') do v[#v+1] = struct.pack('<f', tonumber(x)) end \
redis.call('HSET', KEYS[2], 'v', table.concat(v), 'a', ARGV[2]) \
local ttl = tonumber(ARGV[3]) \
if ttl > 0 then redis.call('EXPIRE', KEYS[2], ttl) redis.call('EXPIRE', KEYS[1], ttl) end \
redis.call('ZADD', KEYS[1], tonumber(ARGV[5]), KEYS[2]) \
local n, max = redis.call('ZCARD', KEYS[1]), tonumber(ARGV[4]) \
if n > max then \
  for _, k in ipairs(redis.call('ZRANGE', KEYS[1], 0, n - max - 1)) do redis.call('DEL', k) end \
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - max - 1) \
end \
return n";

fn scope_key(settings: &FleetSettings, scope: &str) -> String {
    format!("{}:sem:{{{scope}}}", settings.key_prefix)
}

fn csv(vector: &[f32]) -> String {
    let mut s = String::with_capacity(vector.len() * 12);
    for (i, f) in vector.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&f.to_string());
    }
    s
}

/// The webdis body searching `scope` for `vector`.
pub fn search_body(
    settings: &FleetSettings,
    scope: &str,
    vector: &[f32],
    threshold: f64,
) -> Vec<u8> {
    super::redis::eval_keys(
        SEARCH_SCRIPT,
        &[&scope_key(settings, scope)],
        &[&csv(vector), &threshold.to_string()],
    )
}

/// The webdis body storing `entry` for `vector` in `scope` (`id`: the
/// exact key, so one prompt is stored once).
pub fn store_body(
    settings: &FleetSettings,
    scope: &str,
    id: &str,
    vector: &[f32],
    entry: &str,
    ttl_s: u64,
    now_ms: u64,
) -> Vec<u8> {
    let set = scope_key(settings, scope);
    let item = format!("{set}:{id}");
    super::redis::eval_keys(
        STORE_SCRIPT,
        &[&set, &item],
        &[
            &csv(vector),
            entry,
            &ttl_s.to_string(),
            &crate::config::cache::SEMANTIC_MAX_ENTRIES.to_string(),
            &now_ms.to_string(),
        ],
    )
}

/// Webdis's answer to a search: the best similarity, and the entry when it
/// is at or above the threshold.
pub fn read_search(status: Option<u16>, body: &[u8]) -> Result<(f64, Option<Vec<u8>>), String> {
    let v = super::redis::webdis_json(status, body)?;
    let Some(serde_json::Value::Array(a)) = v.get("EVAL") else {
        return Err(format!("the semantic search failed: {v}"));
    };
    let best = a
        .first()
        .and_then(serde_json::Value::as_str)
        .and_then(|s| s.parse::<f64>().ok())
        .ok_or("the semantic search answered no similarity")?;
    let entry = a
        .get(1)
        .and_then(serde_json::Value::as_str)
        .map(|s| s.as_bytes().to_vec());
    Ok((best, entry))
}

/// Send the prompt to the embedding alias's first deployment; the call's
/// token and the exchange that reads its answer.
pub fn embed(
    cfg: &Config,
    alias: &str,
    prompt: &str,
    host: &mut dyn Host,
) -> Option<(u32, Exchange)> {
    let dep = cfg.deployments.iter().find(|d| d.alias == alias)?;
    let body = serde_json::to_vec(&serde_json::json!({"model": alias, "input": prompt})).ok()?;
    let req = ClientRequest::parse(Operation::Embeddings, body).ok()?;
    let attempt = crate::pipeline::attempt(
        cfg,
        &req,
        dep,
        "cache-embedding",
        host.now_ms() / 1000,
        &Overrides::default(),
    )
    .ok()?;
    let up = &attempt.upstream;
    let headers = crate::pipeline::call_headers(up, dep);
    let timeout = dep.timeout_ms.unwrap_or(cfg.router.timeout_ms).min(10_000);
    let token = host.dispatch_http_call(&dep.cluster, &headers, &up.body, timeout)?;
    Some((token, attempt.exchange))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fleet::parse_settings;
    use serde_json::json;

    #[test]
    fn bodies_and_answers() {
        let s = parse_settings(Some(&json!({"redis": {"cluster": "webdis"}})))
            .unwrap()
            .unwrap();
        let b = String::from_utf8(search_body(&s, "abc", &[0.5, -1.0], 0.9)).unwrap();
        assert!(
            b.contains("/1/llmgw%3Asem%3A%7Babc%7D/0%2E5%2C-1/0%2E9"),
            "{b}"
        );
        let st = String::from_utf8(store_body(&s, "abc", "k1", &[1.0], "LGC1 x", 60, 5)).unwrap();
        assert!(
            st.contains(
                "/2/llmgw%3Asem%3A%7Babc%7D/llmgw%3Asem%3A%7Babc%7D%3Ak1/1/LGC1%20x/60/256/5"
            ),
            "{st}"
        );
        assert_eq!(
            read_search(Some(200), br#"{"EVAL":["0.97","LGC1 e"]}"#),
            Ok((0.97, Some(b"LGC1 e".to_vec())))
        );
        assert_eq!(
            read_search(Some(200), br#"{"EVAL":["0.2"]}"#),
            Ok((0.2, None))
        );
        assert!(read_search(Some(200), br#"{"EVAL":[false,"ERR x"]}"#).is_err());
        assert!(read_search(None, b"").is_err());
    }
}
