//! `router_settings` (and their `litellm_settings` aliases): strategy, retries, fallbacks, cooldowns, checked against the configured aliases.

#[allow(unused_imports)]
use super::*;

/// `router_settings` keys this gateway implements.
pub(super) const ROUTER_KEYS: &[&str] = &[
    "routing_strategy",
    "num_retries",
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "allowed_fails",
    "cooldown_time",
    "disable_cooldowns",
    "timeout",
    "stream_timeout",
    "default_litellm_params",
];

/// `litellm_settings` keys the LiteLLM Router reads when `router_settings`
/// lacks them: the proxy sets each `litellm_settings` key as a `litellm.<key>`
/// module attribute, and `Router.__init__` does `num_retries` ->
/// `litellm.num_retries`, `timeout or litellm.request_timeout`, `fallbacks or
/// litellm.fallbacks` (same for the two special fallback lists) and
/// `allowed_fails` -> `litellm.allowed_fails` (`litellm/router.py`).
pub(super) const LITELLM_ROUTER_KEYS: &[&str] = &[
    "num_retries",
    "request_timeout",
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "allowed_fails",
];

/// Build [`RouterSettings`]: `router_settings` first, then the
/// `litellm_settings` alias, then LiteLLM's default.
pub(super) fn parse_router(
    router: &Map<String, Value>,
    litellm: &Map<String, Value>,
    aliases: &[&str],
    use_cooled_down_when_all_cooled: bool,
) -> Result<RouterSettings, ConfigError> {
    // The value and the dotted field it came from.
    let pick = |rkey: &'static str, lkey: &'static str| -> Option<(&Value, String)> {
        match router.get(rkey) {
            Some(v) if !v.is_null() => Some((v, format!("router_settings.{rkey}"))),
            _ => match litellm.get(lkey) {
                Some(v) if !v.is_null() => Some((v, format!("litellm_settings.{lkey}"))),
                _ => None,
            },
        }
    };
    let mut s = RouterSettings {
        use_cooled_down_when_all_cooled,
        ..RouterSettings::default()
    };
    if let Some(v) = router.get("routing_strategy").filter(|v| !v.is_null()) {
        let name = v.as_str().unwrap_or_default();
        s.routing_strategy = RoutingStrategy::from_litellm(name).ok_or_else(|| {
            err(
                "router_settings.routing_strategy",
                format!(
                    "unknown strategy {v}; supported: simple-shuffle, least-busy, \
                     latency-based-routing, usage-based-routing (usage-based-routing-v2)"
                ),
            )
        })?;
    }
    if let Some((v, f)) = pick("num_retries", "num_retries") {
        s.num_retries = count(v, &f)?;
    }
    if let Some((v, f)) = pick("allowed_fails", "allowed_fails") {
        s.allowed_fails = count(v, &f)?;
    }
    if let Some(v) = router.get("cooldown_time").filter(|v| !v.is_null()) {
        s.cooldown_time_ms = seconds_ms(v, "router_settings.cooldown_time")?;
    }
    match router.get("disable_cooldowns") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => s.disable_cooldowns = *b,
        Some(_) => {
            return Err(err(
                "router_settings.disable_cooldowns",
                "must be a boolean",
            ))
        }
    }
    if let Some((v, f)) = pick("timeout", "request_timeout") {
        s.timeout_ms = seconds_ms(v, &f)?;
    }
    if let Some(v) = router.get("stream_timeout").filter(|v| !v.is_null()) {
        s.stream_timeout_ms = Some(seconds_ms(v, "router_settings.stream_timeout")?);
    }
    if let Some((v, f)) = pick("fallbacks", "fallbacks") {
        s.fallbacks = fallback_map(v, &f, aliases)?;
    }
    if let Some((v, f)) = pick("context_window_fallbacks", "context_window_fallbacks") {
        s.context_window_fallbacks = fallback_map(v, &f, aliases)?;
    }
    if let Some((v, f)) = pick("content_policy_fallbacks", "content_policy_fallbacks") {
        s.content_policy_fallbacks = fallback_map(v, &f, aliases)?;
    }
    Ok(s)
}

/// A non-negative integer that fits `u32`.
pub(super) fn count(v: &Value, field: &str) -> Result<u32, ConfigError> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| err(field, "must be a non-negative integer"))
}

/// Positive seconds (LiteLLM takes floats) as whole milliseconds, at least 1.
pub(crate) fn seconds_ms(v: &Value, field: &str) -> Result<u64, ConfigError> {
    let secs = v
        .as_f64()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 1e9)
        .ok_or_else(|| err(field, "must be a positive number of seconds"))?;
    Ok(((secs * 1000.0).round() as u64).max(1))
}

/// LiteLLM's fallback shape: a list of single-key mappings
/// `[{alias: [fallback_alias, ...]}, ...]`. Every alias named must be served
/// here (`"*"` may stand as the key: the entry for every other alias).
pub(super) fn fallback_map(
    v: &Value,
    field: &str,
    aliases: &[&str],
) -> Result<FallbackMap, ConfigError> {
    let Value::Array(items) = v else {
        return Err(err(
            field,
            "must be a list of single-key mappings, e.g. [{smart: [cheap]}]",
        ));
    };
    let mut out: FallbackMap = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("{field}[{i}]");
        let entry = match item {
            Value::Object(m) if m.len() == 1 => m.iter().next(),
            _ => None,
        };
        let Some((key, targets)) = entry else {
            return Err(err(
                path,
                "must be a mapping with exactly one key: {alias: [fallback, ...]}",
            ));
        };
        if key != ANY_ALIAS && !aliases.contains(&key.as_str()) {
            return Err(err(
                path,
                format!("`{key}` is not a model_name in model_list"),
            ));
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err(err(path, format!("`{key}` has two fallback entries")));
        }
        let Value::Array(targets) = targets else {
            return Err(err(
                format!("{path}.{key}"),
                "must be a list of model names",
            ));
        };
        let mut list = Vec::with_capacity(targets.len());
        for t in targets {
            let name = t
                .as_str()
                .ok_or_else(|| err(format!("{path}.{key}"), "must be a list of model names"))?;
            if !aliases.contains(&name) {
                return Err(err(
                    format!("{path}.{key}"),
                    format!("fallback `{name}` is not a model_name in model_list"),
                ));
            }
            if name == key {
                return Err(err(
                    format!("{path}.{key}"),
                    format!("`{name}` cannot fall back to itself"),
                ));
            }
            list.push(name.to_string());
        }
        out.push((key.clone(), list));
    }
    Ok(out)
}
