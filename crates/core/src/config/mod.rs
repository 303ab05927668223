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

pub mod cache;
pub mod defaults;
pub mod fleet;
pub mod keys;
pub mod pricing;
pub mod providers;
pub mod telemetry;
pub mod unenforced;

use crate::guardrails::spec::{Endpoint, ServiceEnv, SpecError};
use keys::{BudgetSettings, KeyRing};
use pricing::ModelPrice;
use providers::ProviderKind;

/// Default limit on a request body: 10 MiB, room for a few base64 images.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Default limit on a whole (non-streamed) answer the filter holds to read:
/// 30 MiB, under the listener's buffer (`llm-gateway render` keeps that
/// above both limits), so the client gets an OpenAI error, not Envoy's
/// plain-text 500, when an upstream sends more.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 30 * 1024 * 1024;
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
    /// `drop_params` for this deployment (over `litellm_settings`'; a
    /// request's own wins over both).
    pub drop_params: Option<bool>,
    /// `additional_drop_params`: parameters never sent to this deployment.
    pub additional_drop_params: Vec<String>,
    /// Model parameters, headers and body members sent with every call to
    /// this deployment (the request's own values win).
    pub defaults: defaults::Defaults,
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

    /// Whether the strategy reads what attempts leave in the deployment
    /// records (in flight, latency, the minute's requests and tokens). The
    /// shuffle does not, so its attempts skip those shared-data writes (two
    /// reads and two CAS writes per request); failures and cooldowns are
    /// recorded for every strategy.
    pub fn reads_load(self) -> bool {
        self != RoutingStrategy::SimpleShuffle
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

mod router;
use router::*;
mod deployment;
pub use deployment::*;

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
    /// Largest whole answer read, in bytes (`general_settings.max_response_size_mb`).
    pub max_response_bytes: usize,
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
    /// The enforced `guardrails:` entries, in config order (shared with the
    /// answer's guard of each request).
    pub guardrails: Vec<std::sync::Arc<crate::guardrails::spec::GuardrailSpec>>,
    /// `gateway.guardrails_caller_may_disable`: the guardrails a request may
    /// switch off (`guardrails: {name: false}`); any other always runs.
    pub guardrails_caller_may_disable: Vec<String>,
    /// `litellm_settings.cache` / `cache_params`: the response cache;
    /// `None`: off.
    pub cache: Option<cache::CacheSettings>,
    /// `litellm_settings.callbacks` that export spans (`otel`, `langfuse`).
    pub traces: Option<telemetry::TraceSettings>,
    /// Spend records are written (`general_settings.disable_spend_logs: true`: not).
    pub spend_logs: bool,
    /// Each spend record is also a filter-state value for an access log
    /// (`wasm.llm_gateway.spend_log`; `gateway.spend_log_filter_state`,
    /// which `render --spend-log` sets): off, it is not written (Envoy keeps
    /// every value for the request's life; ~15 µs per request).
    pub spend_log_filter_state: bool,
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
    /// Guardrails a caller may switch off per request (default: none).
    #[serde(default)]
    guardrails_caller_may_disable: Vec<String>,
    /// Refused settings (`unenforced::REFUSED`) to load anyway (loudly).
    #[serde(default)]
    allow_unenforced_settings: Vec<String>,
    /// Bytes the local response cache may hold (`cache_params.type: local`).
    #[serde(default)]
    cache_max_bytes: Option<usize>,
    /// Load logging callbacks this gateway does not serve (loudly).
    #[serde(default)]
    allow_unexported_callbacks: bool,
    /// Write each spend record where an access log reads it.
    #[serde(default)]
    spend_log_filter_state: bool,
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

    let secret = |v: &str, field: &str| {
        resolve_env(v, field, env).map_err(|e| SpecError {
            field: e.field,
            reason: e.reason,
        })
    };
    let endpoint = |url: &str, field: &str| service_endpoint(url, field, &gateway.clusters);
    let services = ServiceEnv {
        secret: &secret,
        endpoint: &endpoint,
        env,
    };
    let guardrails = unenforced::check(
        &root,
        &unenforced::Allowances {
            guardrails: gateway.allow_unenforced_guardrails,
            settings: gateway.allow_unenforced_settings.clone(),
        },
        &services,
        &mut warnings,
    )?;

    let general = object_or_empty(&root, "general_settings")?;
    for k in general.keys() {
        match k.as_str() {
            "max_request_size_mb" | "max_response_size_mb" | "disable_spend_logs" => {}
            "master_key" => {}
            k if unenforced::is_handled(&format!("general_settings.{k}")) => {}
            k => warnings.push(format!("general_settings.{k} is ignored by this gateway")),
        }
    }
    let megabytes = |key: &str, default: usize| -> Result<usize, ConfigError> {
        let Some(mb) = general.get(key) else {
            return Ok(default);
        };
        let mb = mb
            .as_f64()
            .filter(|m| *m > 0.0 && *m <= 4096.0)
            .ok_or_else(|| {
                err(
                    format!("general_settings.{key}"),
                    "must be a positive number of MB, at most 4096",
                )
            })?;
        Ok((mb * 1024.0 * 1024.0) as usize)
    };
    let mut max_body_bytes = megabytes("max_request_size_mb", DEFAULT_MAX_BODY_BYTES)?;
    let max_response_bytes = megabytes("max_response_size_mb", DEFAULT_MAX_RESPONSE_BYTES)?;
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
            && !matches!(
                k.as_str(),
                "drop_params"
                    | "cache"
                    | "cache_params"
                    | "callbacks"
                    | "success_callback"
                    | "failure_callback"
                    | "turn_off_message_logging"
            )
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
    let router_defaults = match router_raw.get("default_litellm_params") {
        None | Some(Value::Null) => defaults::Defaults::default(),
        Some(Value::Object(m)) => {
            for k in m.keys().filter(|k| !defaults::is_default_key(k)) {
                warnings.push(format!(
                    "router_settings.default_litellm_params.{k} is ignored by this gateway"
                ));
            }
            defaults::parse(
                m,
                "router_settings.default_litellm_params",
                &defaults::Defaults::default(),
                env,
            )?
        }
        Some(_) => {
            return Err(err(
                "router_settings.default_litellm_params",
                "must be a mapping",
            ))
        }
    };
    let mut deployments = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let path = format!("model_list[{i}]");
        deployments.push(parse_deployment(
            i,
            entry,
            &path,
            &gateway,
            &router_defaults,
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

    check_guardrail_names(
        &root,
        &guardrails,
        keys.as_ref(),
        &gateway.guardrails_caller_may_disable,
        &mut warnings,
    )?;
    let guardrails = guardrails.into_iter().map(std::sync::Arc::new).collect();

    let fleet = fleet::parse_settings(root.get("counters"))?;
    if gateway.cache_max_bytes == Some(0) {
        return Err(err("gateway.cache_max_bytes", "must be positive"));
    }
    let cache = cache::parse(
        litellm,
        gateway.cache_max_bytes,
        fleet.is_some(),
        &mut warnings,
    )?;
    if let Some(cache::CacheStore::RedisSemantic {
        embedding_alias, ..
    }) = cache.as_ref().map(|c| &c.store)
    {
        if !aliases.contains(&embedding_alias.as_str()) {
            return Err(err(
                "litellm_settings.cache_params.redis_semantic_cache_embedding_model",
                format!(
                    "`{embedding_alias}` is not a model_name of model_list: the prompt is \
                     embedded through one of this gateway's own deployments"
                ),
            ));
        }
    }
    let spend_logs = match general.get("disable_spend_logs") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => !b,
        Some(_) => {
            return Err(err(
                "general_settings.disable_spend_logs",
                "must be a boolean",
            ))
        }
    };
    let traces = telemetry::parse(
        &root,
        env,
        &endpoint,
        gateway.allow_unexported_callbacks,
        &mut warnings,
    )?;
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
        max_response_bytes,
        cluster_header,
        drop_params,
        router,
        keys,
        budget,
        fleet,
        guardrails,
        guardrails_caller_may_disable: gateway.guardrails_caller_may_disable,
        cache,
        traces,
        spend_logs,
        spend_log_filter_state: gateway.spend_log_filter_state,
        warnings,
    })
}

/// A guardrail service's `api_base`: its authority, path and Envoy cluster
/// (`gateway.clusters` by `host:port`, then by host; `llm-gateway render`
/// adds one).
fn service_endpoint(
    url: &str,
    field: &str,
    clusters: &BTreeMap<String, String>,
) -> Result<Endpoint, SpecError> {
    let base = ApiBase::parse(url).map_err(|reason| SpecError {
        field: field.to_string(),
        reason,
    })?;
    let cluster = clusters
        .get(&base.authority)
        .or_else(|| clusters.get(base.host()))
        .cloned()
        .ok_or_else(|| SpecError {
            field: field.to_string(),
            reason: format!(
                "no Envoy cluster for `{}`: add it to gateway.clusters (`llm-gateway render` \
                 does)",
                base.authority
            ),
        })?;
    Ok(Endpoint {
        authority: base.authority,
        path: base.path,
        cluster,
    })
}

/// Guardrail names used by keys and by `gateway.guardrails_caller_may_disable`
/// must be `guardrails:` entries; one that is listed but not enforced (loaded
/// under `allow_unenforced_guardrails`) is said loudly.
fn check_guardrail_names(
    root: &Map<String, Value>,
    enforced: &[crate::guardrails::spec::GuardrailSpec],
    keys: Option<&KeyRing>,
    may_disable: &[String],
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let listed: Vec<&str> = root
        .get("guardrails")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|g| g.get("guardrail_name").and_then(Value::as_str))
        .collect();
    let mut uses: Vec<(String, &str)> = Vec::new();
    for (i, k) in keys
        .map(KeyRing::keys)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        for (j, g) in k.guardrails.iter().enumerate() {
            uses.push((format!("virtual_keys[{i}].guardrails[{j}]"), g));
        }
    }
    for (j, g) in may_disable.iter().enumerate() {
        uses.push((format!("gateway.guardrails_caller_may_disable[{j}]"), g));
    }
    for (field, name) in uses {
        if enforced.iter().any(|s| s.name == name) {
            continue;
        }
        if listed.contains(&name) {
            warnings.push(format!(
                "{field}: guardrail `{name}` is NOT enforced by this gateway (loaded because \
                 gateway.allow_unenforced_guardrails is true)"
            ));
            continue;
        }
        return Err(err(
            field,
            format!("unknown guardrail `{name}`: it is not a guardrail_name under `guardrails:`"),
        ));
    }
    Ok(())
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

#[cfg(test)]
mod tests;
