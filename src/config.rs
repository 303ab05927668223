//! Plugin configuration: parse, validate, resolve `os.environ/NAME`.
//!
//! The JSON comes from Envoy's plugin `configuration` (Istio: a `WasmPlugin`'s
//! `pluginConfig`). `model_list`, `router_settings`, `litellm_settings` and
//! `general_settings` follow the LiteLLM proxy's `config.yaml`, so a LiteLLM
//! config moves over unchanged: LiteLLM keys this gateway does not use are
//! reported as warnings (logged at start) and ignored. Keys in the gateway's own
//! `gateway` section are checked strictly. Any error names the field and the
//! reason, and the plugin refuses to start: a config never half-works.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::provider::{self, ProviderKind};

/// Default limit on a request body: 10 MiB, room for a few base64 images.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Request header the filter sets to name the upstream Envoy cluster.
pub const DEFAULT_CLUSTER_HEADER: &str = "x-llm-gateway-cluster";

/// A configuration error: the field path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the offending field, e.g. `model_list[2].litellm_params.model`.
    pub field: String,
    /// Why it is rejected.
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid configuration at `{}`: {}",
            self.field, self.reason
        )
    }
}

impl std::error::Error for ConfigError {}

fn err(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Where a provider's API lives: scheme, `host[:port]` and a path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiBase {
    /// `http` or `https`.
    pub scheme: String,
    /// Host and optional port, used as the upstream `:authority`.
    pub authority: String,
    /// Path without a trailing slash (may be empty).
    pub path: String,
}

impl ApiBase {
    /// Parse `scheme://host[:port][/path]`.
    pub fn parse(url: &str) -> Result<ApiBase, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("`{url}` is not an absolute http(s) URL"))?;
        if scheme != "http" && scheme != "https" {
            return Err(format!("`{url}`: scheme must be http or https"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        if path.contains('?') || path.contains('#') {
            return Err(format!(
                "`{url}`: api_base must not carry a query or fragment"
            ));
        }
        Ok(ApiBase {
            scheme: scheme.to_string(),
            authority: authority.to_string(),
            path: path.trim_end_matches('/').to_string(),
        })
    }

    /// The host without a port (the TLS server name for a provider).
    pub fn host(&self) -> &str {
        let a = self.authority.as_str();
        if a.starts_with('[') {
            return match a.find(']') {
                Some(i) => &a[..=i],
                None => a,
            };
        }
        match a.rsplit_once(':') {
            Some((h, p)) if !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) => h,
            _ => a,
        }
    }
}

/// One deployment: an alias served by one provider model at one place.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// The `model_name` clients ask for.
    pub alias: String,
    /// The `litellm_params.model` as written (`anthropic/claude-...`).
    pub litellm_model: String,
    /// Provider family that decides the wire format.
    pub provider: ProviderKind,
    /// The provider-side model id (prefix removed).
    pub model: String,
    /// Where the API lives.
    pub api_base: ApiBase,
    /// Resolved credential, if any. Never logged.
    pub api_key: Option<String>,
    /// `api_version` (Azure, or Anthropic's `anthropic-version` override).
    pub api_version: Option<String>,
    /// The Envoy cluster requests for this deployment go to.
    pub cluster: String,
    /// Weight for balancing among deployments of the same alias.
    pub weight: u32,
}

/// The validated, immutable configuration shared by every request.
#[derive(Debug, Clone)]
pub struct Config {
    /// Deployments in config order.
    pub deployments: Vec<Deployment>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Header used to pass the chosen cluster to the Envoy route.
    pub cluster_header: String,
    /// LiteLLM's `drop_params`: drop parameters a provider cannot take instead of failing.
    pub drop_params: bool,
    /// Things worth a log line at start (ignored LiteLLM keys ...).
    pub warnings: Vec<String>,
}

impl Config {
    /// Distinct aliases in config order (for `GET /v1/models`).
    pub fn aliases(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for d in &self.deployments {
            if !out.contains(&d.alias.as_str()) {
                out.push(&d.alias);
            }
        }
        out
    }

    /// The deployments serving an alias, in config order.
    pub fn deployments_for(&self, alias: &str) -> Vec<&Deployment> {
        self.deployments
            .iter()
            .filter(|d| d.alias == alias)
            .collect()
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GatewaySection {
    /// Provider name or `host[:port]` of an api_base -> Envoy cluster name.
    #[serde(default)]
    clusters: BTreeMap<String, String>,
    #[serde(default)]
    cluster_header: Option<String>,
    #[serde(default)]
    max_request_body_bytes: Option<usize>,
}

/// Top-level keys of a LiteLLM config that this gateway knows it ignores.
const IGNORED_TOP_LEVEL: &[&str] = &[
    "environment_variables",
    "callback_settings",
    "credential_list",
];

/// Parse the plugin configuration.
///
/// `env` resolves `os.environ/NAME` references and provider default key
/// variables; in the filter it reads the VM environment, in tests a map.
pub fn parse(bytes: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let root: Value =
        serde_json::from_slice(bytes).map_err(|e| err("<root>", format!("not valid JSON: {e}")))?;
    let Value::Object(root) = root else {
        return Err(err("<root>", "the configuration must be a JSON object"));
    };
    let mut warnings = Vec::new();

    for (key, _) in root.iter() {
        match key.as_str() {
            "model_list" | "router_settings" | "litellm_settings" | "general_settings"
            | "gateway" => {}
            "virtual_keys" => {
                return Err(err(
                    "virtual_keys",
                    "virtual keys and budgets are not implemented in this version; \
                     remove the section (the gateway would otherwise run open while you \
                     believe it enforces keys)",
                ))
            }
            k if IGNORED_TOP_LEVEL.contains(&k) => {
                warnings.push(format!("`{k}` is a LiteLLM setting this gateway ignores"))
            }
            k => warnings.push(format!("unknown top-level key `{k}` ignored")),
        }
    }

    let gateway: GatewaySection = match root.get("gateway") {
        None | Some(Value::Null) => GatewaySection::default(),
        Some(v) => GatewaySection::deserialize(v).map_err(|e| err("gateway", e.to_string()))?,
    };

    let general = object_or_empty(&root, "general_settings")?;
    for (k, v) in general.iter() {
        match k.as_str() {
            "max_request_size_mb" => {}
            "master_key" if v.is_null() => {}
            "master_key" => {
                return Err(err(
                    "general_settings.master_key",
                    "key authentication is not implemented in this version; remove \
                     master_key (the gateway would otherwise run open while you believe it \
                     checks keys)",
                ))
            }
            k => warnings.push(format!("general_settings.{k} is ignored by this gateway")),
        }
    }
    let mut max_body_bytes = DEFAULT_MAX_BODY_BYTES;
    if let Some(mb) = general.get("max_request_size_mb") {
        let mb = mb.as_f64().filter(|m| *m > 0.0).ok_or_else(|| {
            err(
                "general_settings.max_request_size_mb",
                "must be a positive number",
            )
        })?;
        max_body_bytes = (mb * 1024.0 * 1024.0) as usize;
    }
    if let Some(b) = gateway.max_request_body_bytes {
        if b == 0 {
            return Err(err("gateway.max_request_body_bytes", "must be positive"));
        }
        max_body_bytes = b;
    }

    let litellm = object_or_empty(&root, "litellm_settings")?;
    let drop_params = match litellm.get("drop_params") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(err("litellm_settings.drop_params", "must be a boolean")),
    };
    for k in litellm.keys() {
        if k != "drop_params" {
            warnings.push(format!("litellm_settings.{k} is ignored by this gateway"));
        }
    }
    let router = object_or_empty(&root, "router_settings")?;
    for k in router.keys() {
        warnings.push(format!(
            "router_settings.{k} is not implemented in this version and is ignored"
        ));
    }

    let list = match root.get("model_list") {
        Some(Value::Array(list)) => list,
        None | Some(Value::Null) => {
            return Err(err("model_list", "missing: list at least one model"))
        }
        Some(_) => return Err(err("model_list", "must be a list")),
    };
    let mut deployments = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let path = format!("model_list[{i}]");
        deployments.push(parse_deployment(
            entry,
            &path,
            &gateway,
            env,
            &mut warnings,
        )?);
    }
    if deployments.is_empty() {
        return Err(err("model_list", "is empty: list at least one model"));
    }

    let cluster_header = gateway
        .cluster_header
        .unwrap_or_else(|| DEFAULT_CLUSTER_HEADER.into());
    if cluster_header.is_empty()
        || cluster_header.starts_with(':')
        || cluster_header != cluster_header.to_ascii_lowercase()
    {
        return Err(err(
            "gateway.cluster_header",
            "must be a lowercase regular header name",
        ));
    }
    Ok(Config {
        deployments,
        max_body_bytes,
        cluster_header,
        drop_params,
        warnings,
    })
}

fn object_or_empty<'a>(
    root: &'a Map<String, Value>,
    key: &str,
) -> Result<&'a Map<String, Value>, ConfigError> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    match root.get(key) {
        None | Some(Value::Null) => Ok(EMPTY.get_or_init(Map::new)),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(err(key, "must be a mapping")),
    }
}

/// `litellm_params` keys that LiteLLM knows and this gateway does not use yet.
const IGNORED_PARAMS: &[&str] = &[
    "rpm",
    "tpm",
    "timeout",
    "stream_timeout",
    "max_retries",
    "organization",
    "input_cost_per_token",
    "output_cost_per_token",
    "max_budget",
    "budget_duration",
    "tags",
    "order",
    "region_name",
    "vertex_project",
    "vertex_location",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_region_name",
    "aws_session_token",
    "max_parallel_requests",
    "custom_llm_provider",
    "use_in_pass_through",
    "merge_reasoning_content_in_choices",
    "drop_params",
];

fn parse_deployment(
    entry: &Value,
    path: &str,
    gateway: &GatewaySection,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Deployment, ConfigError> {
    let Value::Object(entry) = entry else {
        return Err(err(path, "each model_list entry must be a mapping"));
    };
    let alias = match entry.get("model_name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(err(
                format!("{path}.model_name"),
                "missing or not a non-empty string",
            ))
        }
    };
    let params = match entry.get("litellm_params") {
        Some(Value::Object(p)) => p,
        _ => {
            return Err(err(
                format!("{path}.litellm_params"),
                "missing or not a mapping",
            ))
        }
    };
    for k in entry.keys() {
        if !matches!(k.as_str(), "model_name" | "litellm_params" | "model_info") {
            warnings.push(format!("{path}.{k} is ignored"));
        }
    }
    let pp = |k: &str| format!("{path}.litellm_params.{k}");
    let string_param = |k: &str| -> Result<Option<String>, ConfigError> {
        match params.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => resolve_env(s, &pp(k), env).map(Some),
            Some(_) => Err(err(pp(k), "must be a string")),
        }
    };
    let litellm_model = string_param("model")?.ok_or_else(|| err(pp("model"), "missing"))?;
    let (prefix, model) = match litellm_model.split_once('/') {
        Some((p, m)) => (p.to_string(), m.to_string()),
        None => (
            provider::infer_prefix(&litellm_model).to_string(),
            litellm_model.clone(),
        ),
    };
    if model.is_empty() {
        return Err(err(
            pp("model"),
            "the model id after the provider prefix is empty",
        ));
    }
    let spec = provider::spec_for_prefix(&prefix).ok_or_else(|| {
        err(
            pp("model"),
            format!(
                "unknown provider prefix `{prefix}/`; supported: {}",
                provider::supported_prefixes().join(", ")
            ),
        )
    })?;
    let api_base_raw = match string_param("api_base")? {
        Some(b) => b,
        None => match spec.default_base {
            Some(b) => b.to_string(),
            None => {
                return Err(err(
                    pp("api_base"),
                    format!("provider `{prefix}` has no public endpoint: set api_base"),
                ))
            }
        },
    };
    let api_base = ApiBase::parse(&api_base_raw).map_err(|r| err(pp("api_base"), r))?;
    let api_key = match string_param("api_key")? {
        Some(k) => Some(k),
        None => spec.key_env.and_then(env),
    };
    let api_version = string_param("api_version")?;
    let weight = match params.get("weight") {
        None | Some(Value::Null) => 1,
        Some(v) => {
            v.as_u64()
                .filter(|w| *w > 0 && *w <= u32::MAX as u64)
                .ok_or_else(|| err(pp("weight"), "must be a positive integer"))? as u32
        }
    };
    for k in params.keys() {
        match k.as_str() {
            "model" | "api_base" | "api_key" | "api_version" | "weight" => {}
            k if IGNORED_PARAMS.contains(&k) => warnings.push(format!(
                "{} is not implemented in this version and is ignored",
                pp(k)
            )),
            k => warnings.push(format!("{} is ignored", pp(k))),
        }
    }
    let cluster = gateway
        .clusters
        .get(&api_base.authority)
        .or_else(|| gateway.clusters.get(api_base.host()))
        .or_else(|| gateway.clusters.get(&prefix))
        .or_else(|| gateway.clusters.get(spec.kind.family_name()))
        .cloned()
        .ok_or_else(|| {
            err(
                format!("{path}.litellm_params"),
                format!(
                    "no Envoy cluster for `{}`: add `gateway.clusters.\"{}\"` (by api_base host) \
                     or `gateway.clusters.{prefix}` (by provider)",
                    api_base.authority, api_base.authority
                ),
            )
        })?;
    Ok(Deployment {
        alias,
        litellm_model,
        provider: spec.kind,
        model,
        api_base,
        api_key,
        api_version,
        cluster,
        weight,
    })
}

/// Resolve `os.environ/NAME` (LiteLLM's reference syntax) through `env`.
fn resolve_env(
    value: &str,
    field: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    match value.strip_prefix("os.environ/") {
        None => Ok(value.to_string()),
        Some(name) => env(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            err(
                field,
                format!(
                    "environment variable `{name}` is not set in the Wasm VM (Envoy: \
                     vm_config.environment_variables; Istio: WasmPlugin vmConfig.env)"
                ),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn parses_litellm_model_list() {
        let cfg = br#"{
          "model_list": [
            {"model_name": "smart", "litellm_params": {"model": "anthropic/claude-sonnet-4-5", "api_key": "os.environ/AK"}},
            {"model_name": "local", "litellm_params": {"model": "openai/qwen", "api_base": "http://127.0.0.1:8000/v1", "rpm": 5}}
          ],
          "gateway": {"clusters": {"anthropic": "anthropic_api", "127.0.0.1:8000": "vllm"}}
        }"#;
        let env = |k: &str| (k == "AK").then(|| "sk-ant".to_string());
        let c = parse(cfg, &env).unwrap();
        assert_eq!(c.deployments[0].provider, ProviderKind::Anthropic);
        assert_eq!(c.deployments[0].model, "claude-sonnet-4-5");
        assert_eq!(c.deployments[0].api_key.as_deref(), Some("sk-ant"));
        assert_eq!(c.deployments[0].api_base.authority, "api.anthropic.com");
        assert_eq!(c.deployments[0].cluster, "anthropic_api");
        assert_eq!(c.deployments[1].cluster, "vllm");
        assert_eq!(c.deployments[1].api_base.path, "/v1");
        assert!(c.warnings.iter().any(|w| w.contains("rpm")));
        assert_eq!(c.aliases(), vec!["smart", "local"]);
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse(
            br#"{"model_list":[{"model_name":"a","litellm_params":{"model":"nope/x"}}]}"#,
            &no_env,
        )
        .unwrap_err();
        assert_eq!(e.field, "model_list[0].litellm_params.model");
        let e = parse(
            br#"{"model_list":[{"model_name":"a","litellm_params":{"model":"openai/x","api_key":"os.environ/MISSING"}}],"gateway":{"clusters":{"openai":"o"}}}"#,
            &no_env,
        )
        .unwrap_err();
        assert_eq!(e.field, "model_list[0].litellm_params.api_key");
        assert!(e.reason.contains("MISSING"));
        let e = parse(
            br#"{"model_list":[{"model_name":"a","litellm_params":{"model":"openai/x"}}]}"#,
            &no_env,
        )
        .unwrap_err();
        assert!(e.reason.contains("no Envoy cluster"), "{e}");
        let e = parse(br#"{"model_list":[],"gateway":{"bogus":1}}"#, &no_env).unwrap_err();
        assert_eq!(e.field, "gateway");
        let e = parse(br#"{"model_list":{}}"#, &no_env).unwrap_err();
        assert_eq!(e.field, "model_list");
    }

    #[test]
    fn api_base_parsing() {
        let b = ApiBase::parse("https://api.groq.com/openai/v1/").unwrap();
        assert_eq!(
            (b.scheme.as_str(), b.authority.as_str(), b.path.as_str()),
            ("https", "api.groq.com", "/openai/v1")
        );
        assert_eq!(
            ApiBase::parse("http://127.0.0.1:9/").unwrap().host(),
            "127.0.0.1"
        );
        assert_eq!(ApiBase::parse("http://[::1]:9").unwrap().host(), "[::1]");
        assert!(ApiBase::parse("ftp://x").is_err());
        assert!(ApiBase::parse("localhost:8000").is_err());
    }
}
