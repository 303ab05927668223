//! `counters:`, the fleet counters' settings (Redis through webdis),
//! parsed and checked. What they drive is `crate::accounting::fleet`.

use serde_json::Value;

use super::ConfigError;

/// Default time between syncs.
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 1_000;

/// What to do while Redis cannot be reached and no valid lease covers a
/// request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnavailable {
    /// Admit against the last fleet totals known plus local use; flushed
    /// when Redis returns. A metric and a log line say so.
    FailOpen,
    /// Refuse budgeted requests with 503.
    FailClosed,
}

/// `counters.redis` of the plugin configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSettings {
    /// Envoy cluster of the webdis HTTP front to Redis.
    pub cluster: String,
    /// Prefix of every Redis key (`llmgw`).
    pub key_prefix: String,
    /// Time between syncs (lease renewals and flushes), ms.
    pub sync_interval_ms: u64,
    /// Fail open (default) or closed.
    pub on_unavailable: OnUnavailable,
    /// Share of a limit one lease asks for (0 < f <= 1, default 0.05).
    pub lease_fraction: f64,
    /// How long a lease lives without renewal, ms (default 10 x sync interval).
    pub lease_ttl_ms: u64,
    /// Return a scope's lease after this long without requests, ms
    /// (default 5 x sync interval).
    pub idle_return_ms: u64,
    /// Timeout of one webdis call, ms (default 1000).
    pub timeout_ms: u64,
    /// `url` (for `llm-gateway render`, which makes the cluster), if given.
    pub url: Option<String>,
}

/// The cluster `llm-gateway render` makes for `counters.redis.url`.
pub const DEFAULT_CLUSTER: &str = "llm_gateway_counters";

fn cerr(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: format!("counters.redis.{field}"),
        reason: reason.into(),
    }
}

/// A duration setting: a number of milliseconds, or `250ms`, `1s`, `2m`.
fn millis(v: &Value, field: &str) -> Result<u64, ConfigError> {
    let bad = || cerr(field, "must be a duration like 500ms, 1s or 2m");
    let ms = match v {
        Value::Number(n) => n.as_u64().ok_or_else(bad)?,
        Value::String(s) => {
            let s = s.trim();
            let (n, mult) = if let Some(n) = s.strip_suffix("ms") {
                (n, 1)
            } else if let Some(n) = s.strip_suffix('s') {
                (n, 1_000)
            } else if let Some(n) = s.strip_suffix('m') {
                (n, 60_000)
            } else {
                return Err(bad());
            };
            n.parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(mult))
                .ok_or_else(bad)?
        }
        _ => return Err(bad()),
    };
    if ms == 0 || ms > 3_600_000 {
        return Err(cerr(field, "must be more than 0 and at most 1h"));
    }
    Ok(ms)
}

/// Parse `counters` (the top-level plugin-config key). `None`: no fleet
/// counters (budgets are per Envoy).
pub fn parse_settings(counters: Option<&Value>) -> Result<Option<FleetSettings>, ConfigError> {
    let Some(counters) = counters.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Value::Object(c) = counters else {
        return Err(ConfigError {
            field: "counters".into(),
            reason: "must be an object with a `redis` entry".into(),
        });
    };
    if let Some(k) = c.keys().find(|k| *k != "redis") {
        return Err(ConfigError {
            field: format!("counters.{k}"),
            reason: "unknown key (only `redis` is known)".into(),
        });
    }
    let Some(r) = c.get("redis").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Value::Object(r) = r else {
        return Err(ConfigError {
            field: "counters.redis".into(),
            reason: "must be an object".into(),
        });
    };
    const KNOWN: &[&str] = &[
        "cluster",
        "url",
        "key_prefix",
        "sync_interval",
        "on_unavailable",
        "lease_fraction",
        "lease_ttl",
        "idle_return",
        "timeout",
    ];
    if let Some(k) = r.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(cerr(k, format!("unknown key; known: {}", KNOWN.join(", "))));
    }
    let text = |field: &str| -> Result<Option<String>, ConfigError> {
        match r.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
            Some(_) => Err(cerr(field, "must be a non-empty string")),
        }
    };
    let url = text("url")?;
    if let Some(u) = &url {
        crate::config::ApiBase::parse(u).map_err(|e| cerr("url", e))?;
    }
    let cluster = match (text("cluster")?, &url) {
        (Some(c), _) => c,
        (None, Some(_)) => DEFAULT_CLUSTER.to_string(),
        (None, None) => {
            return Err(cerr(
                "cluster",
                "missing: name the Envoy cluster of the webdis front to Redis (or give `url` \
                 and let `llm-gateway render` make the cluster)",
            ))
        }
    };
    let key_prefix = text("key_prefix")?.unwrap_or_else(|| "llmgw".to_string());
    if key_prefix.len() > 64 {
        return Err(cerr("key_prefix", "must be at most 64 characters"));
    }
    let opt_ms = |field: &str| {
        r.get(field)
            .filter(|v| !v.is_null())
            .map(|v| millis(v, field))
    };
    let sync_interval_ms = opt_ms("sync_interval")
        .transpose()?
        .unwrap_or(DEFAULT_SYNC_INTERVAL_MS);
    let lease_ttl_ms = opt_ms("lease_ttl")
        .transpose()?
        .unwrap_or(sync_interval_ms * 10);
    if lease_ttl_ms < sync_interval_ms * 2 {
        return Err(cerr(
            "lease_ttl",
            "must be at least twice sync_interval (a lease must outlive a missed renewal)",
        ));
    }
    let idle_return_ms = opt_ms("idle_return")
        .transpose()?
        .unwrap_or(sync_interval_ms * 5);
    let timeout_ms = opt_ms("timeout").transpose()?.unwrap_or(1_000);
    let on_unavailable = match text("on_unavailable")?.as_deref() {
        None | Some("fail_open") => OnUnavailable::FailOpen,
        Some("fail_closed") => OnUnavailable::FailClosed,
        Some(_) => return Err(cerr("on_unavailable", "must be fail_open or fail_closed")),
    };
    let lease_fraction = match r.get("lease_fraction") {
        None | Some(Value::Null) => 0.05,
        Some(v) => v
            .as_f64()
            .filter(|f| *f > 0.0 && *f <= 1.0)
            .ok_or_else(|| cerr("lease_fraction", "must be a number above 0 and at most 1"))?,
    };
    Ok(Some(FleetSettings {
        cluster,
        key_prefix,
        sync_interval_ms,
        on_unavailable,
        lease_fraction,
        lease_ttl_ms,
        idle_return_ms,
        timeout_ms,
        url,
    }))
}
