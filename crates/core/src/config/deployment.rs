//! One `model_list` entry: provider prefix, endpoint, credentials (Bedrock's environment fallbacks), limits, timeouts, prices; every `litellm_params` key accounted for.

#[allow(unused_imports)]
use super::*;

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

/// The Vertex AI endpoint of a location (`global`: the global endpoint).
pub fn vertex_endpoint(location: &str) -> String {
    if location == "global" {
        "https://aiplatform.googleapis.com".to_string()
    } else {
        format!("https://{location}-aiplatform.googleapis.com")
    }
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

/// `litellm_params` keys that LiteLLM knows and this gateway does not use yet.
pub(super) const IGNORED_PARAMS: &[&str] = &[
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
];

pub(super) fn parse_deployment(
    index: usize,
    entry: &Value,
    path: &str,
    gateway: &GatewaySection,
    router_defaults: &defaults::Defaults,
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
        if let Some(why) = providers::not_served(&prefix) {
            return err(pp("model"), format!("`{prefix}/` is not served: {why}"));
        }
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
            // Vertex: the regional endpoint of vertex_location (LiteLLM's
            // `get_vertex_base_url`); the translator checks the location.
            None if spec.kind == ProviderKind::VertexAi => match string_param("vertex_location")? {
                Some(loc) if !loc.is_empty() => vertex_endpoint(&loc),
                _ => spec.default_base.unwrap_or_default().to_string(),
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
    let drop_params = match params.get("drop_params") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(err(pp("drop_params"), "must be a boolean")),
    };
    let additional_drop_params = match params.get("additional_drop_params") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => crate::api::overrides::drop_list(v)
            .map_err(|why| err(pp("additional_drop_params"), why))?,
    };
    for k in params.keys() {
        match k.as_str() {
            k if PROVIDER_PARAMS.contains(&k) => {}
            "model"
            | "api_base"
            | "api_key"
            | "api_version"
            | "weight"
            | "rpm"
            | "tpm"
            | "timeout"
            | "stream_timeout"
            | "cooldown_time"
            | "drop_params"
            | "additional_drop_params" => {}
            k if PRICE_PARAMS.contains(&k) => {}
            k if defaults::is_default_key(k) => {}
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
    let defaults = defaults::parse(
        params,
        &format!("{path}.litellm_params"),
        router_defaults,
        env,
    )?;
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
        drop_params,
        additional_drop_params,
        defaults,
    };
    Ok(dep)
}

/// `litellm_params` price keys (USD per token, LiteLLM's names).
pub(super) const PRICE_PARAMS: &[&str] = &[
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
];

/// A deployment's prices: the built-in table entry for `model`, with each
/// configured `litellm_params` price replacing its field. `None` when the
/// table does not know the model and neither input nor output price is set.
pub(super) fn parse_price(
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
