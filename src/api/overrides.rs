//! Per-request routing overrides: request body fields a client sends to
//! change how this one request is routed (LiteLLM's per-request
//! `num_retries`, `fallbacks`, ..., `timeout`). Parsed here with the rest of
//! the request; the router applies them (`crate::routing`).

use serde_json::{Map, Value};

use crate::api::error::GatewayError;

/// `[(alias, [fallback alias, ...]), ...]`, in configuration order.
pub type FallbackMap = Vec<(String, Vec<String>)>;

/// Request body fields the LiteLLM SDK and proxy accept as per-request
/// routing parameters, and this gateway honours. They are gateway
/// instructions, not model parameters: the filter removes them before the
/// provider sees the body ([`strip_overrides`]).
///
/// - `num_retries`: non-negative integer; replaces `router_settings.num_retries`.
/// - `fallbacks`: `["alias", ...]` (fallbacks for the requested alias) or
///   LiteLLM's `[{"alias": ["fallback", ...]}]`; `[]` turns fallbacks off.
/// - `context_window_fallbacks`, `content_policy_fallbacks`: the same shapes.
/// - `timeout`: positive seconds; replaces the per-attempt timeout
///   (`stream_timeout` too, for streams).
///
/// A malformed value is a 400 naming the field; a fallback alias this
/// gateway does not serve is a 400 when the plan is made.
pub const OVERRIDE_KEYS: &[&str] = &[
    "num_retries",
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "timeout",
];

/// A per-request fallback list, in either of LiteLLM's shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FallbackOverride {
    /// `["b", "c"]`: fallbacks for the requested alias.
    Aliases(Vec<String>),
    /// `[{"a": ["b"]}]`: the entry for the requested alias (or `"*"`) applies.
    PerAlias(FallbackMap),
}

/// Routing settings a request overrides (see [`OVERRIDE_KEYS`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `num_retries`.
    pub num_retries: Option<u32>,
    /// `fallbacks`.
    pub fallbacks: Option<FallbackOverride>,
    /// `context_window_fallbacks`.
    pub context_window_fallbacks: Option<FallbackOverride>,
    /// `content_policy_fallbacks`.
    pub content_policy_fallbacks: Option<FallbackOverride>,
    /// `timeout`, in milliseconds.
    pub timeout_ms: Option<u64>,
}

/// Read the overrides from a request body object. `null` means absent.
pub fn overrides_from_request(raw: &Map<String, Value>) -> Result<Overrides, GatewayError> {
    let present = |k: &str| raw.get(k).filter(|v| !v.is_null());
    let mut o = Overrides::default();
    if let Some(v) = present("num_retries") {
        o.num_retries = Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    GatewayError::bad_param(
                        "num_retries",
                        "num_retries must be a non-negative integer",
                    )
                })?,
        );
    }
    if let Some(v) = present("fallbacks") {
        o.fallbacks = Some(fallback_override(v, "fallbacks")?);
    }
    if let Some(v) = present("context_window_fallbacks") {
        o.context_window_fallbacks = Some(fallback_override(v, "context_window_fallbacks")?);
    }
    if let Some(v) = present("content_policy_fallbacks") {
        o.content_policy_fallbacks = Some(fallback_override(v, "content_policy_fallbacks")?);
    }
    if let Some(v) = present("timeout") {
        let secs = v
            .as_f64()
            .filter(|s| s.is_finite() && *s > 0.0 && *s <= 1e9)
            .ok_or_else(|| {
                GatewayError::bad_param("timeout", "timeout must be a positive number of seconds")
            })?;
        o.timeout_ms = Some(((secs * 1000.0).round() as u64).max(1));
    }
    Ok(o)
}

/// Remove the override fields from a request body before translation.
pub fn strip_overrides(raw: &mut Map<String, Value>) {
    for k in OVERRIDE_KEYS {
        raw.remove(*k);
    }
}

fn fallback_override(v: &Value, field: &str) -> Result<FallbackOverride, GatewayError> {
    let bad = || {
        GatewayError::bad_param(
            field,
            format!(
                "{field} must be a list of model names, or a list of single-key mappings \
                 {{\"model\": [\"fallback\", ...]}}"
            ),
        )
    };
    let Value::Array(items) = v else {
        return Err(bad());
    };
    if items.iter().all(Value::is_string) {
        return Ok(FallbackOverride::Aliases(
            items
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect(),
        ));
    }
    let mut map: FallbackMap = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(m) = item else {
            return Err(bad());
        };
        let (Some((k, Value::Array(list))), 1) = (m.iter().next(), m.len()) else {
            return Err(bad());
        };
        let names: Option<Vec<String>> = list
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect();
        map.push((k.clone(), names.ok_or_else(bad)?));
    }
    Ok(FallbackOverride::PerAlias(map))
}
