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

pub mod fleet;
pub mod keys;
pub mod pricing;
pub mod providers;
pub mod unenforced;

use keys::{BudgetSettings, KeyRing};
use pricing::ModelPrice;
use providers::ProviderKind;

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
    /// Stable identity, `<alias>#<index in model_list>`: the key component of
    /// this deployment's health and load record in Envoy shared data, and the
    /// value of the `x-llm-gateway-deployment` response header. It never
    /// contains the key or the upstream URL.
    pub id: String,
    /// `litellm_params.weight`: share of `simple-shuffle` traffic among the
    /// alias's deployments. `None` when not configured.
    pub weight: Option<u32>,
    /// `litellm_params.rpm`: requests per minute this deployment takes; the
    /// `simple-shuffle` proportion when no weights are set, and a ceiling for
    /// `usage-based-routing`.
    pub rpm: Option<u64>,
    /// `litellm_params.tpm`: tokens per minute this deployment takes; the
    /// `usage-based-routing` denominator.
    pub tpm: Option<u64>,
    /// `litellm_params.timeout` in milliseconds: overrides `router_settings.timeout`.
    pub timeout_ms: Option<u64>,
    /// `litellm_params.stream_timeout` in milliseconds: overrides
    /// `router_settings.stream_timeout` for streaming requests.
    pub stream_timeout_ms: Option<u64>,
    /// `litellm_params.cooldown_time` in milliseconds: overrides
    /// `router_settings.cooldown_time` for this deployment (LiteLLM reads it
    /// from `model_info` or `litellm_params`, `router_utils/cooldown_handlers.py`).
    pub cooldown_time_ms: Option<u64>,
    /// Token prices: `litellm_params.input_cost_per_token`,
    /// `output_cost_per_token`, `cache_read_input_token_cost`,
    /// `cache_creation_input_token_cost` over the built-in table entry for
    /// the model (see [`pricing`]). `None`: unknown, requests cost 0.
    pub price: Option<ModelPrice>,
    /// Provider-specific settings ([`PROVIDER_PARAMS`]), resolved. Secrets
    /// among them are never logged.
    pub params: BTreeMap<String, String>,
}

/// `router_settings.routing_strategy`: how one deployment of an alias is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoutingStrategy {
    /// `simple-shuffle` (LiteLLM's default): weighted random by `weight`,
    /// else by `rpm`, else by `tpm`, else uniform.
    #[default]
    SimpleShuffle,
    /// `least-busy`: fewest requests in flight across every worker thread.
    LeastBusy,
    /// `latency-based-routing`: lowest decayed latency (time to first token
    /// for streams).
    LatencyBased,
    /// `usage-based-routing` (and `usage-based-routing-v2`, the same here):
    /// lowest share of its `tpm` used in the current minute.
    UsageBased,
}

impl RoutingStrategy {
    /// Parse LiteLLM's name for a strategy.
    pub fn from_litellm(name: &str) -> Option<RoutingStrategy> {
        match name {
            "simple-shuffle" => Some(RoutingStrategy::SimpleShuffle),
            "least-busy" => Some(RoutingStrategy::LeastBusy),
            "latency-based-routing" => Some(RoutingStrategy::LatencyBased),
            "usage-based-routing" | "usage-based-routing-v2" => Some(RoutingStrategy::UsageBased),
            _ => None,
        }
    }
}

/// LiteLLM's default `num_retries`: `openai.DEFAULT_MAX_RETRIES`, 2 (the
/// Router uses it when neither `router_settings.num_retries` nor
/// `litellm_settings.num_retries` is set, `litellm/router.py` `__init__`;
/// `litellm/constants.py` has the same `DEFAULT_MAX_RETRIES = 2`).
pub const DEFAULT_NUM_RETRIES: u32 = 2;
/// LiteLLM's default `allowed_fails`: `litellm.allowed_fails = 3`
/// (`litellm/__init__.py`; `DEFAULT_ALLOWED_FAILS = 3` in `litellm/constants.py`).
pub const DEFAULT_ALLOWED_FAILS: u32 = 3;
/// LiteLLM's default `cooldown_time`: `DEFAULT_COOLDOWN_TIME_SECONDS = 5`
/// (`litellm/constants.py`; `router.py` does `cooldown_time or DEFAULT_COOLDOWN_TIME_SECONDS`).
pub const DEFAULT_COOLDOWN_TIME_MS: u64 = 5_000;
/// LiteLLM's default request timeout: `litellm.request_timeout = 6000`
/// seconds (`litellm/__init__.py`; `router.py` does `timeout or litellm.request_timeout`).
pub const DEFAULT_TIMEOUT_MS: u64 = 6_000_000;
/// LiteLLM's cap on fallback aliases tried for one request:
/// `ROUTER_MAX_FALLBACKS = 5` (`litellm/constants.py`).
pub const MAX_FALLBACKS: usize = 5;
/// The key of a fallback entry that applies to every alias without its own
/// entry (LiteLLM: `default_fallbacks` become `{"*": [...]}` in `router.py`).
pub const ANY_ALIAS: &str = "*";

/// Fallback aliases per alias, in config order: `[{alias: [fallback, ...]}, ...]`.
pub use crate::api::overrides::FallbackMap;

/// The implemented part of LiteLLM's `router_settings` (with the
/// `litellm_settings` keys the LiteLLM Router falls back to) and the
/// gateway's own reliability switches.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterSettings {
    /// How a deployment is chosen among an alias's healthy ones.
    pub routing_strategy: RoutingStrategy,
    /// Further attempts on other deployments of the same alias after the first fails.
    pub num_retries: u32,
    /// Aliases tried, in order, once the alias's own attempts are spent.
    pub fallbacks: FallbackMap,
    /// Aliases tried when the provider says the prompt exceeds its context window.
    pub context_window_fallbacks: FallbackMap,
    /// Aliases tried when the provider refuses on content policy.
    pub content_policy_fallbacks: FallbackMap,
    /// Failures within a minute a deployment may have before it cools down
    /// (it cools down on the failure that makes the count exceed this).
    pub allowed_fails: u32,
    /// How long a cooled-down deployment is skipped, in milliseconds.
    pub cooldown_time_ms: u64,
    /// LiteLLM's `disable_cooldowns`: never cool a deployment down.
    pub disable_cooldowns: bool,
    /// Per-attempt timeout, in milliseconds.
    pub timeout_ms: u64,
    /// Per-attempt timeout for streaming requests (to the first byte), in
    /// milliseconds; `None`: `timeout_ms`.
    pub stream_timeout_ms: Option<u64>,
    /// `gateway.use_cooled_down_when_all_cooled`: when every candidate is
    /// cooling down, try them anyway instead of failing fast with 503.
    pub use_cooled_down_when_all_cooled: bool,
}

impl Default for RouterSettings {
    fn default() -> Self {
        RouterSettings {
            routing_strategy: RoutingStrategy::SimpleShuffle,
            num_retries: DEFAULT_NUM_RETRIES,
            fallbacks: Vec::new(),
            context_window_fallbacks: Vec::new(),
            content_policy_fallbacks: Vec::new(),
            allowed_fails: DEFAULT_ALLOWED_FAILS,
            cooldown_time_ms: DEFAULT_COOLDOWN_TIME_MS,
            disable_cooldowns: false,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            stream_timeout_ms: None,
            use_cooled_down_when_all_cooled: false,
        }
    }
}

/// The fallback aliases configured for `alias` in `map`: its own entry, else
/// the `"*"` entry, else none.
pub fn fallbacks_in<'a>(map: &'a FallbackMap, alias: &str) -> &'a [String] {
    map.iter()
        .find(|(k, _)| k == alias)
        .or_else(|| map.iter().find(|(k, _)| k == ANY_ALIAS))
        .map(|(_, v)| v.as_slice())
        .unwrap_or(&[])
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
    /// Balancing, retries, fallbacks, cooldowns and timeouts.
    pub router: RouterSettings,
    /// Virtual keys, teams and the master key; `None`: the gateway runs
    /// open (no `virtual_keys` and no `general_settings.master_key`).
    pub keys: Option<KeyRing>,
    /// `gateway.budget_reservation`, `default_max_tokens`, `enforce_mid_stream`.
    pub budget: BudgetSettings,
    /// `counters.redis`: fleet-wide budgets and limits through Redis
    /// (webdis); `None`: counters are per Envoy.
    pub fleet: Option<fleet::FleetSettings>,
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
    #[serde(default)]
    use_cooled_down_when_all_cooled: bool,
    /// Load `guardrails:` entries this gateway does not enforce (loudly).
    #[serde(default)]
    allow_unenforced_guardrails: bool,
    /// Refused settings (`unenforced::REFUSED`) to load anyway (loudly).
    #[serde(default)]
    allow_unenforced_settings: Vec<String>,
    // Budget switches: accepted here, checked (with their field names) by `keys::parse`.
    #[serde(default)]
    #[allow(dead_code)]
    budget_reservation: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    default_max_tokens: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    enforce_mid_stream: Option<Value>,
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
            | "gateway" | "virtual_keys" | "teams" | "counters" | "guardrails" => {}
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

    unenforced::check(
        &root,
        &unenforced::Allowances {
            guardrails: gateway.allow_unenforced_guardrails,
            settings: gateway.allow_unenforced_settings.clone(),
        },
        &mut warnings,
    )?;

    let general = object_or_empty(&root, "general_settings")?;
    for k in general.keys() {
        match k.as_str() {
            "max_request_size_mb" => {}
            "master_key" => {}
            k if unenforced::is_handled(&format!("general_settings.{k}")) => {}
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
        if !LITELLM_ROUTER_KEYS.contains(&k.as_str())
            && k != "drop_params"
            && !unenforced::is_handled(&format!("litellm_settings.{k}"))
        {
            warnings.push(format!("litellm_settings.{k} is ignored by this gateway"));
        }
    }
    let router_raw = object_or_empty(&root, "router_settings")?;
    for k in router_raw.keys() {
        if !ROUTER_KEYS.contains(&k.as_str())
            && !unenforced::is_handled(&format!("router_settings.{k}"))
        {
            warnings.push(format!(
                "router_settings.{k} is not implemented in this version and is ignored"
            ));
        }
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
            i,
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
    let aliases: Vec<&str> = deployments.iter().map(|d| d.alias.as_str()).collect();
    let router = parse_router(
        router_raw,
        litellm,
        &aliases,
        gateway.use_cooled_down_when_all_cooled,
    )?;

    let (keys, budget) = crate::config::keys::parse(
        &root,
        &aliases,
        &|v: &str, field: &str| resolve_env(v, field, env),
        &mut warnings,
    )?;
    if keys.as_ref().is_some_and(KeyRing::has_budgets) {
        for d in deployments.iter().filter(|d| d.price.is_none()) {
            warnings.push(format!(
                "model_list[{}] (`{}`, model `{}`) has no price: its requests cost 0 and budgets \
                 do not count them; set litellm_params.input_cost_per_token and \
                 output_cost_per_token",
                d.id.rsplit('#').next().unwrap_or(""),
                d.alias,
                d.litellm_model
            ));
        }
    }

    let fleet = fleet::parse_settings(root.get("counters"))?;
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
        router,
        keys,
        budget,
        fleet,
        warnings,
    })
}

/// `router_settings` keys this gateway implements.
const ROUTER_KEYS: &[&str] = &[
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
];

/// `litellm_settings` keys the LiteLLM Router reads when `router_settings`
/// lacks them: the proxy sets each `litellm_settings` key as a `litellm.<key>`
/// module attribute, and `Router.__init__` does `num_retries` ->
/// `litellm.num_retries`, `timeout or litellm.request_timeout`, `fallbacks or
/// litellm.fallbacks` (same for the two special fallback lists) and
/// `allowed_fails` -> `litellm.allowed_fails` (`litellm/router.py`).
const LITELLM_ROUTER_KEYS: &[&str] = &[
    "num_retries",
    "request_timeout",
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "allowed_fails",
];

/// Build [`RouterSettings`]: `router_settings` first, then the
/// `litellm_settings` alias, then LiteLLM's default.
fn parse_router(
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
fn count(v: &Value, field: &str) -> Result<u32, ConfigError> {
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
fn fallback_map(v: &Value, field: &str, aliases: &[&str]) -> Result<FallbackMap, ConfigError> {
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
/// Bedrock params and the environment variables LiteLLM falls back to for
/// them, in order (also read by `llm-gateway render` to pass them to the VM).
pub const BEDROCK_ENV: &[(&str, &[&str])] = &[
    ("aws_access_key_id", &["AWS_ACCESS_KEY_ID"]),
    ("aws_secret_access_key", &["AWS_SECRET_ACCESS_KEY"]),
    ("aws_session_token", &["AWS_SESSION_TOKEN"]),
    ("aws_region_name", &["AWS_REGION_NAME", "AWS_REGION"]),
];

/// The Bedrock runtime endpoint of a region.
pub fn bedrock_endpoint(region: &str) -> String {
    format!("https://bedrock-runtime.{region}.amazonaws.com")
}

/// Provider-specific `litellm_params` (LiteLLM's names) kept as strings, with
/// `os.environ/NAME` resolved, for the translators that need them.
pub const PROVIDER_PARAMS: &[&str] = &[
    "vertex_project",
    "vertex_location",
    "vertex_credentials",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "aws_region_name",
    "region_name",
];

const IGNORED_PARAMS: &[&str] = &[
    "max_retries",
    "organization",
    "max_budget",
    "budget_duration",
    "tags",
    "order",
    "max_parallel_requests",
    "custom_llm_provider",
    "use_in_pass_through",
    "merge_reasoning_content_in_choices",
    "drop_params",
];

fn parse_deployment(
    index: usize,
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
            providers::infer_prefix(&litellm_model).to_string(),
            litellm_model.clone(),
        ),
    };
    if model.is_empty() {
        return Err(err(
            pp("model"),
            "the model id after the provider prefix is empty",
        ));
    }
    let spec = providers::spec_for_prefix(&prefix).ok_or_else(|| {
        err(
            pp("model"),
            format!(
                "unknown provider prefix `{prefix}/`; supported: {}",
                providers::supported_prefixes().join(", ")
            ),
        )
    })?;
    // Bedrock: LiteLLM's environment fallbacks for credentials and region,
    // and the regional endpoint when no api_base is given.
    let mut bedrock_env = BTreeMap::new();
    if spec.kind == ProviderKind::Bedrock {
        for (param, vars) in BEDROCK_ENV {
            if string_param(param)?.is_none() {
                if let Some(v) = vars.iter().find_map(|v| env(v).filter(|x| !x.is_empty())) {
                    bedrock_env.insert((*param).to_string(), v);
                }
            }
        }
    }
    let bedrock_region = match string_param("aws_region_name")? {
        Some(r) => Some(r),
        None => bedrock_env.get("aws_region_name").cloned(),
    };
    let api_base_raw =
        match string_param("api_base")? {
            Some(b) => b,
            None if spec.kind == ProviderKind::Bedrock => match &bedrock_region {
                Some(region) => bedrock_endpoint(region),
                None => return Err(err(
                    pp("aws_region_name"),
                    "Bedrock needs a region: set aws_region_name (or AWS_REGION_NAME / AWS_REGION \
                     in the VM environment), or api_base",
                )),
            },
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
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|w| *w > 0 && *w <= u32::MAX as u64)
                .ok_or_else(|| err(pp("weight"), "must be a positive integer"))? as u32,
        ),
    };
    let positive = |k: &str| -> Result<Option<u64>, ConfigError> {
        match params.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(|| err(pp(k), "must be a positive integer")),
        }
    };
    let seconds = |k: &str| -> Result<Option<u64>, ConfigError> {
        match params.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => seconds_ms(v, &pp(k)).map(Some),
        }
    };
    let rpm = positive("rpm")?;
    let tpm = positive("tpm")?;
    let timeout_ms = seconds("timeout")?;
    let stream_timeout_ms = seconds("stream_timeout")?;
    let cooldown_time_ms = seconds("cooldown_time")?;
    let price = parse_price(params, &model, &pp)?;
    for k in params.keys() {
        match k.as_str() {
            k if PROVIDER_PARAMS.contains(&k) => {}
            "model" | "api_base" | "api_key" | "api_version" | "weight" | "rpm" | "tpm"
            | "timeout" | "stream_timeout" | "cooldown_time" => {}
            k if PRICE_PARAMS.contains(&k) => {}
            k if unenforced::is_handled(&pp(k)) => {}
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
    let mut provider_params = bedrock_env;
    for k in PROVIDER_PARAMS {
        if let Some(v) = string_param(k)? {
            provider_params.insert((*k).to_string(), v);
        }
    }
    let dep = Deployment {
        id: format!("{alias}#{index}"),
        alias,
        litellm_model,
        provider: spec.kind,
        model,
        api_base,
        api_key,
        api_version,
        cluster,
        weight,
        rpm,
        tpm,
        timeout_ms,
        stream_timeout_ms,
        cooldown_time_ms,
        price,
        params: provider_params,
    };
    Ok(dep)
}

/// `litellm_params` price keys (USD per token, LiteLLM's names).
const PRICE_PARAMS: &[&str] = &[
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
];

/// A deployment's prices: the built-in table entry for `model`, with each
/// configured `litellm_params` price replacing its field. `None` when the
/// table does not know the model and neither input nor output price is set.
fn parse_price(
    params: &Map<String, Value>,
    model: &str,
    pp: &dyn Fn(&str) -> String,
) -> Result<Option<ModelPrice>, ConfigError> {
    let mut got = [None; 4];
    for (i, k) in PRICE_PARAMS.iter().enumerate() {
        match params.get(*k) {
            None | Some(Value::Null) => {}
            Some(v) => {
                got[i] = Some(
                    v.as_f64()
                        .and_then(pricing::usd_per_token_to_pico)
                        .ok_or_else(|| {
                            err(
                                pp(k),
                                "must be a price in USD per token: a number from 0 to 1",
                            )
                        })?,
                );
            }
        }
    }
    let table = pricing::lookup(model);
    if table.is_none() && got[0].is_none() && got[1].is_none() {
        return Ok(None);
    }
    let mut p = table.unwrap_or_default();
    if let Some(v) = got[0] {
        p.input = v;
    }
    if let Some(v) = got[1] {
        p.output = v;
    }
    if got[2].is_some() {
        p.cache_read = got[2];
    }
    if got[3].is_some() {
        p.cache_creation = got[3];
    }
    Ok(Some(p))
}

/// Resolve `os.environ/NAME` (LiteLLM's reference syntax) through `env`.
pub(crate) fn resolve_env(
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
        assert_eq!(c.deployments[1].rpm, Some(5));
        assert_eq!(c.deployments[0].weight, None);
        assert_eq!(
            (c.deployments[0].id.as_str(), c.deployments[1].id.as_str()),
            ("smart#0", "local#1")
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.aliases(), vec!["smart", "local"]);
        assert_eq!(c.router, RouterSettings::default());
    }

    const TWO: &str = r#""model_list": [
        {"model_name": "smart", "litellm_params": {"model": "openai/a", "api_base": "http://h:1/v1"}},
        {"model_name": "cheap", "litellm_params": {"model": "openai/b", "api_base": "http://h:1/v1"}}
      ],
      "gateway": {"clusters": {"openai": "c"}"#;

    fn with(extra: &str) -> Result<Config, ConfigError> {
        parse(format!("{{{TWO}{extra}}}").as_bytes(), &no_env)
    }

    #[test]
    fn router_defaults_follow_litellm() {
        let r = with("}").unwrap().router;
        assert_eq!(r.routing_strategy, RoutingStrategy::SimpleShuffle);
        assert_eq!(r.num_retries, 2);
        assert_eq!(r.allowed_fails, 3);
        assert_eq!(r.cooldown_time_ms, 5_000);
        assert_eq!(r.timeout_ms, 6_000_000);
        assert_eq!(r.stream_timeout_ms, None);
        assert!(!r.use_cooled_down_when_all_cooled && !r.disable_cooldowns);
    }

    #[test]
    fn parses_router_settings() {
        let c = with(
            r#", "use_cooled_down_when_all_cooled": true},
            "router_settings": {"routing_strategy": "usage-based-routing-v2", "num_retries": 4,
              "fallbacks": [{"smart": ["cheap"]}, {"*": ["smart"]}],
              "context_window_fallbacks": [{"cheap": ["smart"]}],
              "content_policy_fallbacks": [{"smart": ["cheap"]}],
              "allowed_fails": 1, "cooldown_time": 0.5, "timeout": 30, "stream_timeout": 2,
              "redis_host": "x"}"#,
        )
        .unwrap();
        let r = &c.router;
        assert_eq!(r.routing_strategy, RoutingStrategy::UsageBased);
        assert_eq!((r.num_retries, r.allowed_fails), (4, 1));
        assert_eq!((r.cooldown_time_ms, r.timeout_ms), (500, 30_000));
        assert_eq!(r.stream_timeout_ms, Some(2_000));
        assert!(r.use_cooled_down_when_all_cooled);
        assert_eq!(fallbacks_in(&r.fallbacks, "smart"), ["cheap"]);
        assert_eq!(fallbacks_in(&r.fallbacks, "cheap"), ["smart"], "`*` entry");
        assert_eq!(
            fallbacks_in(&r.context_window_fallbacks, "cheap"),
            ["smart"]
        );
        assert!(fallbacks_in(&r.context_window_fallbacks, "smart").is_empty());
        assert_eq!(
            fallbacks_in(&r.content_policy_fallbacks, "smart"),
            ["cheap"]
        );
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("router_settings.redis_host"));
        for (name, want) in [
            ("simple-shuffle", RoutingStrategy::SimpleShuffle),
            ("least-busy", RoutingStrategy::LeastBusy),
            ("latency-based-routing", RoutingStrategy::LatencyBased),
            ("usage-based-routing", RoutingStrategy::UsageBased),
        ] {
            let c = with(&format!(
                r#"}}, "router_settings": {{"routing_strategy": "{name}"}}"#
            ))
            .unwrap();
            assert_eq!(c.router.routing_strategy, want);
        }
    }

    #[test]
    fn litellm_settings_aliases_and_precedence() {
        let c = with(
            r#"}, "litellm_settings": {"num_retries": 5, "request_timeout": 10, "allowed_fails": 0,
                 "fallbacks": [{"smart": ["cheap"]}], "set_verbose": true}"#,
        )
        .unwrap();
        assert_eq!(c.router.num_retries, 5);
        assert_eq!(c.router.timeout_ms, 10_000);
        assert_eq!(c.router.allowed_fails, 0);
        assert_eq!(fallbacks_in(&c.router.fallbacks, "smart"), ["cheap"]);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        let c = with(
            r#"}, "litellm_settings": {"num_retries": 5, "request_timeout": 10},
                 "router_settings": {"num_retries": 1, "timeout": 3}"#,
        )
        .unwrap();
        assert_eq!((c.router.num_retries, c.router.timeout_ms), (1, 3_000));
    }

    #[test]
    fn router_errors_name_the_field() {
        let cases = [
            (
                r#"{"routing_strategy": "cost-based-routing"}"#,
                "router_settings.routing_strategy",
            ),
            (
                r#"{"routing_strategy": 3}"#,
                "router_settings.routing_strategy",
            ),
            (r#"{"num_retries": -1}"#, "router_settings.num_retries"),
            (r#"{"allowed_fails": 1.5}"#, "router_settings.allowed_fails"),
            (r#"{"cooldown_time": 0}"#, "router_settings.cooldown_time"),
            (r#"{"timeout": "30"}"#, "router_settings.timeout"),
            (
                r#"{"fallbacks": {"smart": ["cheap"]}}"#,
                "router_settings.fallbacks",
            ),
            (
                r#"{"fallbacks": [{"smart": ["gpt-9"]}]}"#,
                "router_settings.fallbacks[0].smart",
            ),
            (
                r#"{"fallbacks": [{"gpt-9": ["smart"]}]}"#,
                "router_settings.fallbacks[0]",
            ),
            (
                r#"{"fallbacks": [{"smart": ["cheap"], "cheap": ["smart"]}]}"#,
                "router_settings.fallbacks[0]",
            ),
            (
                r#"{"fallbacks": [{"smart": ["cheap"]}, {"smart": ["cheap"]}]}"#,
                "router_settings.fallbacks[1]",
            ),
            (
                r#"{"fallbacks": [{"smart": ["smart"]}]}"#,
                "router_settings.fallbacks[0].smart",
            ),
            (
                r#"{"context_window_fallbacks": [{"smart": "cheap"}]}"#,
                "router_settings.context_window_fallbacks[0].smart",
            ),
            (
                r#"{"content_policy_fallbacks": [{"smart": ["nope"]}]}"#,
                "router_settings.content_policy_fallbacks[0].smart",
            ),
            (
                r#"{"disable_cooldowns": "yes"}"#,
                "router_settings.disable_cooldowns",
            ),
        ];
        for (router, field) in cases {
            let e = with(&format!(r#"}}, "router_settings": {router}"#)).unwrap_err();
            assert_eq!(e.field, field, "{router}: {e}");
        }
        let e = with(r#"}, "litellm_settings": {"fallbacks": [{"smart": ["x"]}]}"#).unwrap_err();
        assert_eq!(e.field, "litellm_settings.fallbacks[0].smart");
        let e = with(r#", "use_cooled_down_when_all_cooled": 1}"#).unwrap_err();
        assert_eq!(e.field, "gateway");
    }

    #[test]
    fn deployment_limits_and_timeouts() {
        let c = parse(
            br#"{"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/a",
                 "api_base": "http://h:1/v1", "weight": 2, "rpm": 60, "tpm": 1000, "timeout": 12.5,
                 "stream_timeout": 3, "cooldown_time": 9}}],
               "gateway": {"clusters": {"openai": "c"}}}"#,
            &no_env,
        )
        .unwrap();
        let d = &c.deployments[0];
        assert_eq!((d.weight, d.rpm, d.tpm), (Some(2), Some(60), Some(1000)));
        assert_eq!(
            (d.timeout_ms, d.stream_timeout_ms, d.cooldown_time_ms),
            (Some(12_500), Some(3_000), Some(9_000))
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        for (param, field) in [
            (r#""rpm": 0"#, "rpm"),
            (r#""tpm": "1k""#, "tpm"),
            (r#""timeout": -1"#, "timeout"),
            (r#""stream_timeout": true"#, "stream_timeout"),
        ] {
            let e = parse(
                format!(
                    r#"{{"model_list": [{{"model_name": "m", "litellm_params": {{"model": "openai/a",
                       "api_base": "http://h:1/v1", {param}}}}}], "gateway": {{"clusters": {{"openai": "c"}}}}}}"#
                )
                .as_bytes(),
                &no_env,
            )
            .unwrap_err();
            assert_eq!(
                e.field,
                format!("model_list[0].litellm_params.{field}"),
                "{param}"
            );
        }
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
    fn deployment_prices_from_params_and_table() {
        let c = parse(
            br#"{"model_list": [
                 {"model_name": "a", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": "http://h:1/v1"}},
                 {"model_name": "b", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": "http://h:1/v1",
                   "input_cost_per_token": 1e-6, "cache_read_input_token_cost": 0}},
                 {"model_name": "c", "litellm_params": {"model": "openai/qwen", "api_base": "http://h:1/v1",
                   "input_cost_per_token": 0.15e-6, "output_cost_per_token": 0.6e-6,
                   "cache_creation_input_token_cost": 0.3e-6}},
                 {"model_name": "d", "litellm_params": {"model": "openai/qwen", "api_base": "http://h:1/v1"}},
                 {"model_name": "e", "litellm_params": {"model": "anthropic/claude-sonnet-4-5-20250929"}}],
               "gateway": {"clusters": {"openai": "c", "anthropic": "a"}}}"#,
            &no_env,
        )
        .unwrap();
        let p = |i: usize| c.deployments[i].price;
        assert_eq!(p(0), crate::config::pricing::lookup("gpt-4o-mini"));
        assert_eq!(
            p(1),
            Some(ModelPrice {
                input: 1_000_000,
                output: 600_000,
                cache_read: Some(0),
                cache_creation: None
            }),
            "each configured price replaces the table's"
        );
        assert_eq!(
            p(2),
            Some(ModelPrice {
                input: 150_000,
                output: 600_000,
                cache_read: None,
                cache_creation: Some(300_000)
            })
        );
        assert_eq!(p(3), None);
        assert_eq!(p(4).map(|p| p.output), Some(15_000_000));
        assert!(
            c.warnings.is_empty(),
            "no budgets, no price warning: {:?}",
            c.warnings
        );
        assert!(c.keys.is_none());
        assert_eq!(c.budget, BudgetSettings::default());
        for (param, field) in [
            (r#""input_cost_per_token": -1"#, "input_cost_per_token"),
            (r#""output_cost_per_token": "0.1""#, "output_cost_per_token"),
            (
                r#""cache_read_input_token_cost": 5"#,
                "cache_read_input_token_cost",
            ),
            (
                r#""cache_creation_input_token_cost": true"#,
                "cache_creation_input_token_cost",
            ),
        ] {
            let e = parse(
                format!(
                    r#"{{"model_list": [{{"model_name": "m", "litellm_params": {{"model": "openai/a",
                       "api_base": "http://h:1/v1", {param}}}}}], "gateway": {{"clusters": {{"openai": "c"}}}}}}"#
                )
                .as_bytes(),
                &no_env,
            )
            .unwrap_err();
            assert_eq!(
                e.field,
                format!("model_list[0].litellm_params.{field}"),
                "{param}"
            );
        }
    }

    #[test]
    fn keys_budgets_and_master_key_are_parsed() {
        let hash = crate::config::keys::digest_string(&crate::config::keys::digest("sk-1"));
        let c = with(&format!(
            r#", "budget_reservation": false, "default_max_tokens": 512, "enforce_mid_stream": true}},
               "general_settings": {{"master_key": "os.environ/MK"}},
               "virtual_keys": [{{"key_hash": "{hash}", "key_alias": "k", "models": ["smart"], "max_budget": 1}}]"#
        ));
        let e = c.unwrap_err();
        assert_eq!(e.field, "general_settings.master_key", "unset env var");
        let env = |k: &str| (k == "MK").then(|| "sk-master".to_string());
        let c = parse(
            format!(
                r#"{{{TWO}, "budget_reservation": false, "default_max_tokens": 512, "enforce_mid_stream": true}},
                   "general_settings": {{"master_key": "os.environ/MK"}},
                   "virtual_keys": [{{"key_hash": "{hash}", "key_alias": "k", "models": ["smart"], "max_budget": 1}}]}}"#
            )
            .as_bytes(),
            &env,
        )
        .unwrap();
        let ring = c.keys.as_ref().unwrap();
        assert!(ring.is_master("sk-master"));
        assert_eq!(ring.key_by_plain("sk-1").unwrap().alias, "k");
        assert_eq!(
            c.budget,
            BudgetSettings {
                reservation: false,
                default_max_tokens: 512,
                enforce_mid_stream: true
            }
        );
        // openai/a and openai/b have no price while a budget is set: one warning each.
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("model_list[0]") && c.warnings[0].contains("cost 0"));
        let e =
            with(r#"}, "virtual_keys": [{"key_hash": "sk-plain", "key_alias": "k"}]"#).unwrap_err();
        assert_eq!(e.field, "virtual_keys[0].key_hash");
        let e = with(r#", "budget_reservation": 1}"#).unwrap_err();
        assert_eq!(e.field, "gateway.budget_reservation");
    }

    #[test]
    fn bedrock_reads_aws_environment_and_derives_its_endpoint() {
        let cfg = br#"{"model_list":[{"model_name":"b","litellm_params":{"model":"bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0"}}],
                       "gateway":{"clusters":{"bedrock":"bedrock_api"}}}"#;
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("AKIDEXAMPLE".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".to_string()),
            "AWS_REGION" => Some("eu-west-1".to_string()),
            _ => None,
        };
        let c = parse(cfg, &env).unwrap();
        let d = &c.deployments[0];
        assert_eq!(
            d.api_base.authority,
            "bedrock-runtime.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            d.params.get("aws_region_name").map(String::as_str),
            Some("eu-west-1")
        );
        assert_eq!(
            d.params.get("aws_access_key_id").map(String::as_str),
            Some("AKIDEXAMPLE")
        );
        let e = parse(cfg, &|_| None).unwrap_err();
        assert_eq!(e.field, "model_list[0].litellm_params.aws_region_name");
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
