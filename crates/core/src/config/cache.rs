//! `litellm_settings.cache` and `cache_params`: LiteLLM's response cache
//! settings, read with LiteLLM's names and defaults. What they drive is the
//! cache hook (`pipeline/hooks/cache/`) and `crate::cache`.
//!
//! | key | here |
//! |---|---|
//! | `cache: true` | the cache is on (else every other key is ignored, as LiteLLM does) |
//! | `cache_params.type` | `local` (default: this Envoy's shared data), `redis` (fleet-wide, through the `counters.redis` webdis), `redis-semantic` (refused until implemented); any other LiteLLM type is refused |
//! | `ttl`, `default_in_memory_ttl`, `default_in_redis_ttl` | seconds an entry lives; LiteLLM's defaults: 600 s in memory, no expiry in Redis |
//! | `namespace` | prefix of every key (a request's `cache.namespace` or its key's wins) |
//! | `supported_call_types` | `completion`/`acompletion` (chat), `embedding`/`aembedding` |
//! | `mode` | `default_on` (every request) or `default_off` (only `cache: {use-cache: true}`) |
//! | `max_messages` | requests with more messages are neither looked up nor stored (LiteLLM: 4) |
//! | `host`, `port`, `password` | Redis is reached through `counters.redis` (webdis holds the connection); a warning says so |

use serde_json::{Map, Value};

use super::ConfigError;
use crate::api::error::GatewayError;

/// LiteLLM's in-memory cache lives 10 minutes by default (`InMemoryCache`).
pub const DEFAULT_LOCAL_TTL_S: u64 = 600;
/// LiteLLM's `Cache(max_messages=4)`.
pub const DEFAULT_MAX_MESSAGES: usize = 4;
/// Largest answer stored (LiteLLM's in-memory `max_size_per_item`: 1 MB).
pub const MAX_ITEM_BYTES: usize = 1024 * 1024;
/// Bytes the local cache may hold in one Envoy (`gateway.cache_max_bytes`).
pub const DEFAULT_LOCAL_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Where answers are kept.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheStore {
    /// Shared data of this Envoy, bounded in bytes.
    Local { max_bytes: usize },
    /// Redis through the fleet counters' webdis cluster: every Envoy shares it.
    Redis,
    /// `redis-semantic`: answers for prompts whose embedding is at least
    /// `threshold` similar (cosine), in Redis through webdis.
    RedisSemantic {
        /// `similarity_threshold` (0..1).
        threshold: f64,
        /// `redis_semantic_cache_embedding_model`: an alias of `model_list`.
        embedding_alias: String,
    },
}

/// LiteLLM's default `redis_semantic_cache_embedding_model`.
pub const DEFAULT_EMBEDDING_MODEL: &str = "text-embedding-ada-002";
/// Entries one semantic scope keeps (the newest; the search compares the
/// prompt with each of them).
pub const SEMANTIC_MAX_ENTRIES: usize = 256;

/// Whether requests use the cache unless they say otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    DefaultOn,
    /// Only requests with `cache: {"use-cache": true}`.
    DefaultOff,
}

/// The cache as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    pub store: CacheStore,
    /// Seconds an entry lives; `None`: until Redis evicts it.
    pub ttl_s: Option<u64>,
    pub namespace: Option<String>,
    /// Chat completions are cached.
    pub chat: bool,
    /// Embeddings are cached.
    pub embeddings: bool,
    pub mode: CacheMode,
    /// Requests with more messages skip the cache; `None`: no limit.
    pub max_messages: Option<usize>,
}

fn cerr(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: format!("litellm_settings.{field}"),
        reason: reason.into(),
    }
}

/// `cache_params` keys that belong to a store type this gateway refuses or
/// to LiteLLM internals: ignored with the type they belong to (a refused
/// type fails first).
const OTHER_STORE_PREFIXES: &[&str] = &[
    "s3_",
    "gcs_",
    "azure_",
    "qdrant_",
    "valkey_",
    "redis_startup_nodes",
    "redis_flush_size",
    "gcp_",
    "disk_cache_dir",
];

/// LiteLLM's type names this gateway does not implement.
const REFUSED_TYPES: &[&str] = &[
    "s3",
    "gcs",
    "azure-blob",
    "qdrant-semantic",
    "valkey-semantic",
    "disk",
];

/// Read the cache settings. `None`: the cache is off. `has_redis`: the
/// gateway has a Redis connection (`counters.redis`).
pub fn parse(
    litellm: &Map<String, Value>,
    local_max_bytes: Option<usize>,
    has_redis: bool,
    warnings: &mut Vec<String>,
) -> Result<Option<CacheSettings>, ConfigError> {
    let on = match litellm.get("cache") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => return Err(cerr("cache", "must be a boolean")),
    };
    let params = match litellm.get("cache_params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(cerr("cache_params", "must be a mapping")),
    };
    if !on {
        if !params.is_empty() {
            warnings.push(
                "litellm_settings.cache_params is set but litellm_settings.cache is not true: \
                 nothing is cached (as in LiteLLM)"
                    .into(),
            );
        }
        return Ok(None);
    }
    let text = |k: &str| -> Result<Option<String>, ConfigError> {
        match params.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(cerr(&format!("cache_params.{k}"), "must be a string")),
        }
    };
    let kind = text("type")?.unwrap_or_else(|| "local".into());
    let store = match kind.as_str() {
        "local" => CacheStore::Local {
            max_bytes: local_max_bytes.unwrap_or(DEFAULT_LOCAL_MAX_BYTES),
        },
        "redis" if has_redis => CacheStore::Redis,
        "redis" => {
            return Err(cerr(
                "cache_params.type",
                "`redis` needs the gateway's Redis connection: set counters.redis (a webdis \
                 in front of your Redis; see the README's Response caching section), or use \
                 type: local",
            ))
        }
        "redis-semantic" if !has_redis => {
            return Err(cerr(
                "cache_params.type",
                "`redis-semantic` needs the gateway's Redis connection: set counters.redis (a \
                 webdis in front of your Redis)",
            ))
        }
        "redis-semantic" => {
            let threshold = params
                .get("similarity_threshold")
                .and_then(Value::as_f64)
                .filter(|t| (0.0..=1.0).contains(t))
                .ok_or_else(|| {
                    cerr(
                        "cache_params.similarity_threshold",
                        "required for redis-semantic: a number from 0 to 1",
                    )
                })?;
            CacheStore::RedisSemantic {
                threshold,
                embedding_alias: text("redis_semantic_cache_embedding_model")?
                    .unwrap_or_else(|| DEFAULT_EMBEDDING_MODEL.into()),
            }
        }
        t if REFUSED_TYPES.contains(&t) => {
            return Err(cerr(
                "cache_params.type",
                format!("`{t}` is not supported by this gateway; use `local` or `redis`"),
            ))
        }
        t => {
            return Err(cerr(
                "cache_params.type",
                format!("unknown cache type `{t}`; use `local` or `redis`"),
            ))
        }
    };
    let seconds = |k: &str| -> Result<Option<u64>, ConfigError> {
        match params.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|s| *s > 0.0 && *s <= 10.0 * 365.0 * 86_400.0)
                .map(|s| Some(s.ceil() as u64))
                .ok_or_else(|| {
                    cerr(
                        &format!("cache_params.{k}"),
                        "must be a positive number of seconds",
                    )
                }),
        }
    };
    let store_ttl_key = match store {
        CacheStore::Local { .. } => "default_in_memory_ttl",
        CacheStore::Redis | CacheStore::RedisSemantic { .. } => "default_in_redis_ttl",
    };
    let ttl_s = seconds(store_ttl_key)?.or(seconds("ttl")?).or(match store {
        CacheStore::Local { .. } => Some(DEFAULT_LOCAL_TTL_S),
        CacheStore::Redis | CacheStore::RedisSemantic { .. } => None,
    });
    let namespace = text("namespace")?;
    let (chat, embeddings) = match params.get("supported_call_types") {
        None | Some(Value::Null) => (true, true),
        Some(Value::Array(list)) => {
            let (mut chat, mut embeddings) = (false, false);
            for (i, t) in list.iter().enumerate() {
                match t.as_str() {
                    Some("completion" | "acompletion") => chat = true,
                    Some("embedding" | "aembedding") => embeddings = true,
                    Some(_) => {}
                    None => {
                        return Err(cerr(
                            &format!("cache_params.supported_call_types[{i}]"),
                            "must be a string",
                        ))
                    }
                }
            }
            (chat, embeddings)
        }
        Some(_) => {
            return Err(cerr(
                "cache_params.supported_call_types",
                "must be a list of call types",
            ))
        }
    };
    let mode = match text("mode")?.as_deref() {
        None | Some("default_on") => CacheMode::DefaultOn,
        Some("default_off") => CacheMode::DefaultOff,
        Some(m) => {
            return Err(cerr(
                "cache_params.mode",
                format!("unknown mode `{m}`; use default_on or default_off"),
            ))
        }
    };
    let max_messages = match params.get("max_messages") {
        None => Some(DEFAULT_MAX_MESSAGES),
        Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    cerr(
                        "cache_params.max_messages",
                        "must be a whole number (or null for no limit)",
                    )
                })?,
        ),
    };
    for k in params.keys() {
        match k.as_str() {
            "type"
            | "ttl"
            | "default_in_memory_ttl"
            | "default_in_redis_ttl"
            | "namespace"
            | "supported_call_types"
            | "mode"
            | "max_messages"
            | "similarity_threshold"
            | "redis_semantic_cache_embedding_model" => {}
            "host" | "port" | "password" | "username" | "ssl" | "url" => {
                if !matches!(store, CacheStore::Local { .. }) {
                    warnings.push(format!(
                        "litellm_settings.cache_params.{k}: Redis is reached through \
                         counters.redis (webdis holds the connection); this value is not used"
                    ));
                }
            }
            k if OTHER_STORE_PREFIXES.iter().any(|p| k.starts_with(p)) => {}
            k => warnings.push(format!(
                "litellm_settings.cache_params.{k} is ignored by this gateway"
            )),
        }
    }
    Ok(Some(CacheSettings {
        store,
        ttl_s,
        namespace,
        chat,
        embeddings,
        mode,
        max_messages,
    }))
}

/// What one request asks of the cache: LiteLLM's `cache` object
/// (`no-cache`, `no-store`, `ttl`, `s-maxage`, `namespace`, `use-cache`),
/// merged with the `Cache-Control` header and the key's own controls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
        let v: Value = serde_json::from_str(json).map_err(|e| {
            GatewayError::bad_param("cache", format!("`cache` cannot be read: {e}"))
        })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(v: Value, redis: bool) -> Result<Option<CacheSettings>, ConfigError> {
        let Value::Object(m) = v else { panic!() };
        parse(&m, None, redis, &mut Vec::new())
    }

    #[test]
    fn defaults_are_litellms() {
        let s = read(json!({"cache": true}), false).unwrap().unwrap();
        assert_eq!(
            s.store,
            CacheStore::Local {
                max_bytes: DEFAULT_LOCAL_MAX_BYTES
            }
        );
        assert_eq!(s.ttl_s, Some(600));
        assert_eq!(s.max_messages, Some(4));
        assert!(s.chat && s.embeddings);
        assert_eq!(s.mode, CacheMode::DefaultOn);
        let r = read(
            json!({"cache": true, "cache_params": {"type": "redis"}}),
            true,
        )
        .unwrap()
        .unwrap();
        assert_eq!((r.store, r.ttl_s), (CacheStore::Redis, None));
    }

    #[test]
    fn off_unless_true() {
        assert_eq!(read(json!({}), false).unwrap(), None);
        assert_eq!(
            read(
                json!({"cache": false, "cache_params": {"type": "s3"}}),
                false
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn settings_read() {
        let s = read(
            json!({"cache": true, "cache_params": {"ttl": 30, "namespace": "team-a",
                "supported_call_types": ["acompletion"], "mode": "default_off", "max_messages": null}}),
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.ttl_s, Some(30));
        assert_eq!(s.namespace.as_deref(), Some("team-a"));
        assert!(s.chat && !s.embeddings);
        assert_eq!(s.mode, CacheMode::DefaultOff);
        assert_eq!(s.max_messages, None);
    }

    #[test]
    fn refusals_name_the_field() {
        for (v, redis, field) in [
            (json!({"cache": "yes"}), false, "litellm_settings.cache"),
            (
                json!({"cache": true, "cache_params": {"type": "s3"}}),
                false,
                "litellm_settings.cache_params.type",
            ),
            (
                json!({"cache": true, "cache_params": {"type": "redis"}}),
                false,
                "litellm_settings.cache_params.type",
            ),
            (
                json!({"cache": true, "cache_params": {"type": "redis-semantic"}}),
                true,
                "litellm_settings.cache_params.similarity_threshold",
            ),
            (
                json!({"cache": true, "cache_params": {"type": "redis-semantic", "similarity_threshold": 0.9}}),
                false,
                "litellm_settings.cache_params.type",
            ),
            (
                json!({"cache": true, "cache_params": {"ttl": -1}}),
                false,
                "litellm_settings.cache_params.ttl",
            ),
            (
                json!({"cache": true, "cache_params": {"mode": "always"}}),
                false,
                "litellm_settings.cache_params.mode",
            ),
        ] {
            let e = read(v.clone(), redis).unwrap_err();
            assert_eq!(e.field, field, "{v}");
        }
    }
}
