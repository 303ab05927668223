//! Per-request routing overrides: request body fields a client sends to
//! change how this one request is routed (LiteLLM's per-request
//! `num_retries`, `fallbacks`, ..., `timeout`). Parsed here with the rest of
//! the request; the router applies them (`crate::routing`).

use serde_json::{Map, Value};

use crate::api::error::GatewayError;
use crate::api::litellm_keys::{litellm_key, LiteLlmKey};

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
    /// `drop_params`: drop what the provider cannot take instead of a 400
    /// (over the deployment's and `litellm_settings`' setting).
    pub drop_params: Option<bool>,
    /// `additional_drop_params`: top-level parameters never sent, for
    /// this request (besides the deployment's).
    pub additional_drop_params: Vec<String>,
}

/// Read the overrides from a request body object (the gateway's own keys
/// of it), and refuse what LiteLLM's keys may not ask of it. `null` means
/// absent.
pub fn overrides_from_request(raw: &Map<String, Value>) -> Result<Overrides, GatewayError> {
    let present = |k: &str| raw.get(k).filter(|v| !v.is_null());
    let mut o = Overrides::default();
    for k in raw.keys() {
        if let Some(LiteLlmKey::Refused(why)) = litellm_key(k) {
            return Err(GatewayError::bad_param(k, format!("`{k}` {why}")));
        }
    }
    if let Some(v) = present("drop_params") {
        o.drop_params = Some(v.as_bool().ok_or_else(|| {
            GatewayError::bad_param("drop_params", "drop_params must be a boolean")
        })?);
    }
    if let Some(v) = present("additional_drop_params") {
        o.additional_drop_params = drop_list(v).map_err(|why| {
            GatewayError::bad_param(
                "additional_drop_params",
                format!("additional_drop_params {why}"),
            )
        })?;
    }
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
    let gateways: Vec<String> = raw
        .keys()
        .filter(|k| OVERRIDE_KEYS.contains(&k.as_str()) || litellm_key(k).is_some())
        .cloned()
        .collect();
    for k in gateways {
        raw.remove(&k);
    }
}

/// An `additional_drop_params` list: top-level parameter names. (LiteLLM
/// also takes paths into nested values; those are refused here rather than
/// sent.)
pub fn drop_list(v: &Value) -> Result<Vec<String>, &'static str> {
    let items = v.as_array().ok_or("must be a list of parameter names")?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let name = item.as_str().ok_or("must be a list of parameter names")?;
        if name.is_empty() || name.contains(['.', '[', ']']) {
            return Err("takes top-level parameter names only (no paths into nested values)");
        }
        if matches!(name, "model" | "messages" | "input") {
            return Err("cannot drop what every request needs (`model`, `messages`, `input`)");
        }
        out.push(name.to_string());
    }
    Ok(out)
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
