//! Render a complete Envoy bootstrap from a LiteLLM-style gateway config.
//!
//! A LiteLLM user moves over with the `config.yaml` they already have: this
//! validates it with the filter's own parser (exact field and reason on error)
//! and emits a bootstrap with a listener, the filter with the config embedded,
//! and one cluster per provider endpoint (TLS for `https` endpoints, the
//! system CA bundle for verification). The provider -> cluster mapping it
//! generates is written into the embedded config's `gateway.clusters`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::config::{self, ApiBase, ConfigError};
use crate::provider;

/// Where the rendered Envoy listens and finds the module.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// Listener address (LiteLLM's proxy listens on port 4000).
    pub listen_address: String,
    /// Listener port.
    pub listen_port: u16,
    /// Admin interface port (bound to 127.0.0.1).
    pub admin_port: u16,
    /// Path of `llm_gateway.wasm` as Envoy will see it.
    pub wasm_path: String,
    /// CA bundle used to verify provider certificates.
    pub ca_bundle: String,
    /// Where the JSON access log goes: `None` for stdout.
    pub access_log_path: Option<String>,
    /// Where the spend log goes (one record per LLM request): `None` for stdout.
    pub spend_log_path: Option<String>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            listen_address: "127.0.0.1".into(),
            listen_port: 4000,
            admin_port: 9901,
            wasm_path: "target/wasm32-wasip1/release/llm_gateway.wasm".into(),
            ca_bundle: "/etc/ssl/certs/ca-certificates.crt".into(),
            access_log_path: None,
            spend_log_path: None,
        }
    }
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// An endpoint still an `os.environ/` reference after [`resolve_endpoints`].
const UNRESOLVED: &str = "an endpoint read from the environment must be set where `llm-gateway \
     render` runs: the Envoy cluster is made from it";

/// The settings an Envoy cluster is made from, when written as
/// `os.environ/NAME` (LiteLLM's way, e.g. `api_base: os.environ/AZURE_API_BASE`):
/// read from `env`, the environment `render` runs in, and written into the
/// config, so the cluster and the filter agree on the endpoint by
/// construction (the VM does not need the variable). A variable that is not
/// set is an error naming the field and the variable. Credentials are not
/// touched: they stay references, read from the VM environment.
pub fn resolve_endpoints(
    cfg: &mut Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let resolve = |v: &mut Value, field: String| -> Result<(), ConfigError> {
        let Some(name) = v.as_str().and_then(|s| s.strip_prefix("os.environ/")) else {
            return Ok(());
        };
        match env(name).filter(|x| !x.is_empty()) {
            Some(x) => {
                *v = Value::String(x);
                Ok(())
            }
            None => Err(err(
                field,
                format!(
                    "`{name}` is not set where `llm-gateway render` runs; the Envoy cluster is \
                     made from this endpoint, so render needs its value"
                ),
            )),
        }
    };
    let endpoint_keys = ["api_base", "aws_region_name", "vertex_location"];
    if let Some(list) = cfg.get_mut("model_list").and_then(Value::as_array_mut) {
        for (i, entry) in list.iter_mut().enumerate() {
            if let Some(p) = entry
                .get_mut("litellm_params")
                .and_then(Value::as_object_mut)
            {
                // Bedrock without a region: LiteLLM's environment fallbacks.
                let bedrock = p
                    .get("model")
                    .and_then(Value::as_str)
                    .is_some_and(|m| m.starts_with("bedrock/"));
                if bedrock && !p.contains_key("api_base") && !p.contains_key("aws_region_name") {
                    if let Some(r) = ["AWS_REGION_NAME", "AWS_REGION"]
                        .iter()
                        .find_map(|v| env(v).filter(|x| !x.is_empty()))
                    {
                        p.insert("aws_region_name".into(), Value::String(r));
                    }
                }
                for k in endpoint_keys {
                    if let Some(v) = p.get_mut(k) {
                        resolve(v, format!("model_list[{i}].litellm_params.{k}"))?;
                    }
                }
            }
        }
    }
    if let Some(list) = cfg.get_mut("guardrails").and_then(Value::as_array_mut) {
        for (i, g) in list.iter_mut().enumerate() {
            if let Some(p) = g.get_mut("litellm_params").and_then(Value::as_object_mut) {
                for k in ["api_base", "presidio_analyzer_api_base"] {
                    if let Some(v) = p.get_mut(k) {
                        resolve(v, format!("guardrails[{i}].litellm_params.{k}"))?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// The api_base a `model_list` entry will use, decided without the environment.
fn entry_api_base(entry: &Value, i: usize) -> Result<ApiBase, ConfigError> {
    let path = format!("model_list[{i}].litellm_params");
    let params = entry
        .get("litellm_params")
        .and_then(Value::as_object)
        .ok_or_else(|| err(&path, "missing or not a mapping"))?;
    let model = params
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("{path}.model"), "missing or not a string"))?;
    let prefix = match model.split_once('/') {
        Some((p, _)) => p,
        None => provider::infer_prefix(model),
    };
    let spec = provider::spec_for_prefix(prefix).ok_or_else(|| {
        err(
            format!("{path}.model"),
            format!("unknown provider prefix `{prefix}/`"),
        )
    })?;
    if spec.kind == provider::ProviderKind::Bedrock && params.get("api_base").is_none() {
        return match params.get("aws_region_name").and_then(Value::as_str) {
            Some(r) if !r.starts_with("os.environ/") => {
                ApiBase::parse(&config::bedrock_endpoint(r))
                    .map_err(|e| err(format!("{path}.aws_region_name"), e))
            }
            _ => Err(err(
                format!("{path}.api_base"),
                "Bedrock needs a region to render its cluster: set aws_region_name (or \
                 AWS_REGION_NAME / AWS_REGION where render runs), or api_base",
            )),
        };
    }
    let base = match params.get("api_base") {
        Some(Value::String(b)) if b.starts_with("os.environ/") => {
            return Err(err(format!("{path}.api_base"), UNRESOLVED))
        }
        Some(Value::String(b)) => b.clone(),
        None | Some(Value::Null) if spec.kind == provider::ProviderKind::VertexAi => {
            match params.get("vertex_location").and_then(Value::as_str) {
                Some(l) if l.starts_with("os.environ/") => {
                    return Err(err(format!("{path}.vertex_location"), UNRESOLVED))
                }
                Some(l) if !l.is_empty() => config::vertex_endpoint(l),
                _ => spec.default_base.unwrap_or_default().to_string(),
            }
        }
        None | Some(Value::Null) => spec
            .default_base
            .ok_or_else(|| err(format!("{path}.api_base"), "this provider needs api_base"))?
            .to_string(),
        Some(_) => return Err(err(format!("{path}.api_base"), "must be a string")),
    };
    ApiBase::parse(&base).map_err(|r| err(format!("{path}.api_base"), r))
}

/// Put the words of each content filter's `blocked_words_file` into its
/// `blocked_words` (the filter cannot read files; LiteLLM reads the file
/// at start). `read` parses a file (YAML) into a value; the file holds
/// `blocked_words: [{keyword, action, description?}]`, as LiteLLM's.
pub fn inline_blocked_words_files(
    cfg: &mut Value,
    read: &dyn Fn(&str) -> Result<Value, String>,
) -> Result<(), ConfigError> {
    let Some(list) = cfg.get_mut("guardrails").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    for (i, g) in list.iter_mut().enumerate() {
        let Some(params) = g.get_mut("litellm_params").and_then(Value::as_object_mut) else {
            continue;
        };
        let Some(file) = params.remove("blocked_words_file") else {
            continue;
        };
        let field = format!("guardrails[{i}].litellm_params.blocked_words_file");
        let path = file
            .as_str()
            .ok_or_else(|| err(&field, "must be a file path"))?;
        let words = read(path)
            .map_err(|e| err(&field, e))?
            .get("blocked_words")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| err(&field, format!("{path} has no `blocked_words` list")))?;
        let into = params
            .entry("blocked_words")
            .or_insert_with(|| Value::Array(Vec::new()));
        match into.as_array_mut() {
            Some(a) => a.extend(words),
            None => {
                return Err(err(
                    format!("guardrails[{i}].litellm_params.blocked_words"),
                    "must be a list",
                ))
            }
        }
    }
    Ok(())
}

/// The endpoints of the guardrail services (`guardrails[i]` of a type the
/// gateway calls), each with the field it came from.
fn guardrail_api_bases(cfg: &Value) -> Result<Vec<ApiBase>, ConfigError> {
    let mut out = Vec::new();
    let list = cfg.get("guardrails").and_then(Value::as_array);
    for (i, g) in list.into_iter().flatten().enumerate() {
        let params = g.get("litellm_params");
        let kind = params
            .and_then(|p| p.get("guardrail"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if !crate::guardrails::external::EXTERNAL_KINDS.contains(&kind) {
            continue;
        }
        let key = if kind == "presidio" {
            "presidio_analyzer_api_base"
        } else {
            "api_base"
        };
        let field = format!("guardrails[{i}].litellm_params.{key}");
        let base = match params.and_then(|p| p.get(key)) {
            Some(Value::String(b)) if b.starts_with("os.environ/") => {
                return Err(err(field, UNRESOLVED))
            }
            Some(Value::String(b)) => b.clone(),
            None | Some(Value::Null) if kind == "openai_moderation" => {
                "https://api.openai.com/v1".to_string()
            }
            // The configuration check names what is missing.
            _ => continue,
        };
        out.push(ApiBase::parse(&base).map_err(|r| err(field, r))?);
    }
    Ok(out)
}

/// A stable Envoy cluster name for an endpoint.
fn cluster_name(base: &ApiBase) -> String {
    let mut name = String::from("llm_");
    for c in base.authority.chars() {
        name.push(if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '_'
        });
    }
    name
}

/// Every `os.environ/NAME` in the config, plus provider key variables used
/// when `api_key` is absent: these are passed from Envoy's environment to the VM.
fn env_names(cfg: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => {
                if let Some(n) = s.strip_prefix("os.environ/") {
                    out.push(n.to_string());
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(cfg, &mut out);
    if let Some(list) = cfg.get("model_list").and_then(Value::as_array) {
        for entry in list {
            let params = entry.get("litellm_params");
            if params.and_then(|p| p.get("api_key")).is_some() {
                continue;
            }
            let model = params
                .and_then(|p| p.get("model"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let prefix = model
                .split_once('/')
                .map_or(provider::infer_prefix(model), |(p, _)| p);
            if let Some(k) = provider::spec_for_prefix(prefix).and_then(|s| s.key_env) {
                out.push(k.to_string());
            }
            if prefix == "bedrock" {
                for (param, vars) in config::BEDROCK_ENV {
                    if params.and_then(|p| p.get(*param)).is_none() {
                        out.extend(vars.iter().map(|v| v.to_string()));
                    }
                }
            }
        }
    }
    // Trace exporters read their endpoints and keys from the environment.
    let callbacks = ["callbacks", "success_callback", "failure_callback"];
    if let Some(ls) = cfg.get("litellm_settings") {
        if callbacks.iter().any(|c| ls.get(*c).is_some()) {
            out.extend(config::telemetry::ENV_NAMES.iter().map(|n| n.to_string()));
        }
    }
    // OpenAI moderation guardrails without api_key read OPENAI_API_KEY.
    for g in cfg
        .get("guardrails")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let p = g.get("litellm_params");
        let kind = p.and_then(|p| p.get("guardrail")).and_then(Value::as_str);
        if kind == Some("openai_moderation") && p.and_then(|p| p.get("api_key")).is_none() {
            out.push("OPENAI_API_KEY".to_string());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The plugin config the filter will get (with generated `gateway.clusters`),
/// the endpoints behind each cluster, and the parsed result with its warnings.
pub struct Prepared {
    /// The plugin configuration to embed.
    pub plugin: Value,
    /// Cluster name -> endpoint.
    pub clusters: BTreeMap<String, ApiBase>,
    /// The configuration as the filter parses it (variables as placeholders).
    pub parsed: config::Config,
}

/// Fill `gateway.clusters` and validate exactly as the filter will, with every
/// environment variable present.
pub fn prepare(cfg: &Value) -> Result<Prepared, ConfigError> {
    let Value::Object(root) = cfg else {
        return Err(err("<root>", "the configuration must be a mapping"));
    };
    let list = root
        .get("model_list")
        .and_then(Value::as_array)
        .ok_or_else(|| err("model_list", "missing or not a list"))?;
    let mut clusters: BTreeMap<String, ApiBase> = BTreeMap::new();
    for (i, entry) in list.iter().enumerate() {
        let base = entry_api_base(entry, i)?;
        clusters.insert(cluster_name(&base), base);
    }
    for base in guardrail_api_bases(cfg)? {
        clusters.insert(cluster_name(&base), base);
    }
    // Trace collectors: their URLs come from the environment render runs in
    // (the filter reads the same variables in Envoy's).
    let env = |n: &str| std::env::var(n).ok();
    for url in config::telemetry::exporter_urls(root, &env)? {
        let base = ApiBase::parse(&url).map_err(|r| err("litellm_settings.callbacks", r))?;
        clusters.insert(cluster_name(&base), base);
    }
    let mut plugin = root.clone();
    let gateway = plugin
        .entry("gateway")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(gateway) = gateway else {
        return Err(err("gateway", "must be a mapping"));
    };
    let mut mapping = Map::new();
    for (name, base) in &clusters {
        mapping.insert(base.authority.clone(), Value::String(name.clone()));
    }
    gateway.insert("clusters".into(), Value::Object(mapping));
    let plugin = Value::Object(plugin);
    // Secrets are placeholders here; the trace collectors' addresses are
    // read as the clusters above were.
    let parsed = crate::pipeline::load_config(plugin.to_string().as_bytes(), &|n| {
        match config::telemetry::ENV_NAMES.contains(&n) && !n.ends_with("_KEY") {
            true => std::env::var(n).ok(),
            false => Some("set-at-runtime".into()),
        }
    })?;
    Ok(Prepared {
        plugin,
        clusters,
        parsed,
    })
}

/// Render the Envoy bootstrap for a gateway config (already parsed from YAML
/// or JSON into a value).
pub fn render(cfg: &Value, opts: &RenderOptions) -> Result<Value, ConfigError> {
    let Prepared {
        mut plugin,
        clusters,
        parsed,
    } = prepare(cfg)?;
    if opts.spend_log_path.is_some() {
        // The spend log reads each record from the filter state.
        if let Some(g) = plugin.get_mut("gateway").and_then(Value::as_object_mut) {
            g.insert("spend_log_filter_state".into(), Value::Bool(true));
        }
    }
    let cluster_header = parsed.cluster_header.clone();
    let plugin_json = plugin.to_string();
    let mut envoy_clusters: Vec<Value> = clusters
        .iter()
        .map(|(name, base)| envoy_cluster(name, base, &opts.ca_bundle))
        .collect();
    // `counters.redis.url`: the webdis front of the fleet counters.
    if let Some(f) = parsed.fleet.as_ref() {
        if let Some(url) = f.url.as_deref() {
            let base = ApiBase::parse(url).map_err(|e| err("counters.redis.url", e))?;
            if !clusters.contains_key(&f.cluster) {
                envoy_clusters.push(envoy_cluster(&f.cluster, &base, &opts.ca_bundle));
            }
        }
    }
    let env = env_names(cfg);

    let vm_config = json!({
        "vm_id": "llm_gateway",
        "runtime": "envoy.wasm.runtime.v8",
        "code": {"local": {"filename": opts.wasm_path}},
        "environment_variables": {"host_env_keys": env}
    });
    let configuration = json!({
        "@type": "type.googleapis.com/google.protobuf.StringValue",
        "value": plugin_json
    });
    Ok(json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": opts.admin_port}}},
        "stats_config": {"stats_tags": stats_tags()},
        // The counter service: the same module as a singleton VM with the same
        // vm_id, so it shares the filters' shared data and drains their usage queue.
        "bootstrap_extensions": [{
            "name": "envoy.bootstrap.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.wasm.v3.WasmService",
                "singleton": true,
                "config": {
                    "name": "llm_gateway_counter",
                    "root_id": "llm_gateway_counter",
                    "vm_config": vm_config,
                    "configuration": configuration
                }
            }
        }],
        "static_resources": {
            "listeners": [{
                "name": "llm_gateway",
                "address": {"socket_address": {"address": opts.listen_address, "port_value": opts.listen_port}},
                // Above the filter's request and answer limits, so the filter answers in
                // OpenAI shape (413, 502) before Envoy's plain-text 413 / 500.
                "per_connection_buffer_limit_bytes": listener_buffer_limit(&parsed),
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "llm_gateway",
                        "local_reply_config": upstream_failure_reply(),
                        "access_log": access_logs(opts),
                        "route_config": {"virtual_hosts": [{
                            "name": "providers",
                            "domains": ["*"],
                            "routes": [{
                                "match": {"prefix": "/"},
                                "route": {"cluster_header": cluster_header, "timeout": "600s"},
                                "request_headers_to_remove": [cluster_header]
                            }]
                        }]},
                        "http_filters": [
                            {
                                "name": "envoy.filters.http.wasm",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                                    "config": {
                                        "name": "llm_gateway",
                                        "root_id": "llm_gateway",
                                        "allow_on_headers_stop_iteration": true,
                                        "vm_config": vm_config,
                                        "configuration": configuration
                                    }
                                }
                            },
                            {
                                "name": "envoy.filters.http.router",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                                    "suppress_envoy_headers": true
                                }
                            }
                        ]
                    }
                }]}]
            }],
            "clusters": envoy_clusters
        }
    }))
}

/// One JSON access-log line per request, with what the filter publishes
/// (`%FILTER_STATE(wasm.llm_gateway.*:PLAIN)%`) next to Envoy's own fields.
/// The access logs: requests, and with `--spend-log` the spend records
/// (`-`: stdout). Without it no spend log is rendered and the filter writes
/// no spend filter state (records still reach `/spend/logs` and the reports).
fn access_logs(opts: &RenderOptions) -> Value {
    let mut logs = vec![access_log(opts.access_log_path.as_deref())];
    if let Some(p) = opts.spend_log_path.as_deref() {
        logs.push(spend_log(Some(p).filter(|p| *p != "-")));
    }
    Value::Array(logs)
}

pub fn access_log(path: Option<&str>) -> Value {
    let format = json!({
        "start_time": "%START_TIME%",
        "method": "%REQ(:METHOD)%",
        "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
        "status": "%RESPONSE_CODE%",
        "duration_ms": "%DURATION%",
        "upstream_cluster": "%UPSTREAM_CLUSTER%",
        "response_flags": "%RESPONSE_FLAGS%",
        "request_id": "%REQ(X-REQUEST-ID)%",
        "model_alias": "%FILTER_STATE(wasm.llm_gateway.model_alias:PLAIN)%",
        "provider": "%FILTER_STATE(wasm.llm_gateway.provider:PLAIN)%",
        "deployment": "%FILTER_STATE(wasm.llm_gateway.deployment:PLAIN)%",
        "attempts": "%FILTER_STATE(wasm.llm_gateway.attempts:PLAIN)%",
        "prompt_tokens": "%FILTER_STATE(wasm.llm_gateway.prompt_tokens:PLAIN)%",
        "completion_tokens": "%FILTER_STATE(wasm.llm_gateway.completion_tokens:PLAIN)%",
        "cost_usd": "%FILTER_STATE(wasm.llm_gateway.cost_usd:PLAIN)%",
        "key_alias": "%FILTER_STATE(wasm.llm_gateway.key_alias:PLAIN)%",
        "cache": "%FILTER_STATE(wasm.llm_gateway.cache:PLAIN)%"
    });
    match path {
        None => json!({
            "name": "envoy.access_loggers.stdout",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                "log_format": {"json_format": format}
            }
        }),
        Some(p) => json!({
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": p,
                "log_format": {"json_format": format}
            }
        }),
    }
}

/// The spend log: each LLM request's spend record (`accounting::spend`)
/// as one JSON line, and nothing for other requests (a CEL filter on the
/// filter state being set).
pub fn spend_log(path: Option<&str>) -> Value {
    let format = json!({"text_format_source": {
        "inline_string": "%FILTER_STATE(wasm.llm_gateway.spend_log:PLAIN)%\n"
    }});
    let filter = json!({
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                "expression": "'wasm.llm_gateway.spend_log' in filter_state"
            }
        }
    });
    match path {
        None => json!({
            "name": "envoy.access_loggers.stdout",
            "filter": filter,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                "log_format": format
            }
        }),
        Some(p) => json!({
            "name": "envoy.access_loggers.file",
            "filter": filter,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": p,
                "log_format": format
            }
        }),
    }
}

/// Turn the label segments of the filter's metric names
/// (`llm_gateway.<metric>.<label>.<value>...`, see `filter/observe.rs`) into
/// Prometheus labels.
pub fn stats_tags() -> Value {
    let tags: Vec<Value> = [
        "alias",
        "provider",
        "deployment",
        "status_class",
        "token_type",
        "key_alias",
        "team",
        "guardrail",
        "kind",
    ]
    .iter()
    .map(|name| {
        json!({
            "tag_name": name,
            "regex": format!(r"^wasmcustom\.llm_gateway\..*?(\.{name}\.([^.]+))")
        })
    })
    .collect();
    Value::Array(tags)
}

/// Envoy's own replies for upstream failures the filter cannot see (a reset
/// after the response headers arrived, a refused connection or timeout on the
/// last attempt) in the OpenAI error shape. Only replies carrying an upstream
/// response flag are rewritten, and never the filter's own OpenAI-shaped
/// replies (marked by the request header `x-llm-gateway-local-reply`).
pub fn upstream_failure_reply() -> Value {
    json!({"mappers": [{
        "filter": {"and_filter": {"filters": [
            {"response_flag_filter": {"flags": ["UF", "UH", "UR", "UC", "UT", "URX", "UO", "NR", "UMSDR", "UPE"]}},
            // The filter's own replies (after a failed attempt flagged the stream) carry this.
            {"header_filter": {"header": {"name": "x-llm-gateway-local-reply", "present_match": true, "invert_match": true}}}
        ]}},
        "body_format_override": {"json_format": {"error": {
            "message": "upstream failure: %LOCAL_REPLY_BODY%",
            "type": "api_error",
            "param": null,
            "code": "%RESPONSE_CODE_DETAILS%"
        }}}
    }]})
}

/// The listener's buffer: 32 MiB, or more when the request or answer limit
/// is set higher (a megabyte of room above each).
fn listener_buffer_limit(cfg: &crate::config::Config) -> usize {
    const ROOM: usize = 1024 * 1024;
    (32 * ROOM)
        .max(cfg.max_body_bytes + ROOM)
        .max(cfg.max_response_bytes + ROOM)
}

fn envoy_cluster(name: &str, base: &ApiBase, ca_bundle: &str) -> Value {
    let host = base
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tls = base.scheme == "https";
    let port: u16 = base
        .authority
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(if tls { 443 } else { 80 });
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    let mut c = json!({
        "name": name,
        "type": if is_ip { "STATIC" } else { "LOGICAL_DNS" },
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "5s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": host, "port_value": port}}
        }}]}]}
    });
    if tls {
        if let Value::Object(m) = &mut c {
            m.insert(
                "transport_socket".into(),
                json!({
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                        "sni": host,
                        "common_tls_context": {"validation_context": {
                            "trusted_ca": {"filename": ca_bundle},
                            "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": host}}]
                        }}
                    }
                }),
            );
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_tls_clusters_and_env() {
        let cfg = json!({"model_list": [
            {"model_name": "smart", "litellm_params": {"model": "anthropic/claude-sonnet-4-5"}},
            {"model_name": "fast", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "os.environ/OAI"}},
            {"model_name": "local", "litellm_params": {"model": "hosted_vllm/qwen", "api_base": "http://127.0.0.1:8000/v1"}}
        ]});
        let out = render(&cfg, &RenderOptions::default()).unwrap();
        let clusters = out["static_resources"]["clusters"].as_array().unwrap();
        let names: Vec<&str> = clusters
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "llm_127_0_0_1_8000",
                "llm_api_anthropic_com",
                "llm_api_openai_com"
            ]
        );
        assert_eq!(
            clusters[1]["transport_socket"]["typed_config"]["sni"],
            "api.anthropic.com"
        );
        assert!(clusters[0].get("transport_socket").is_none());
        let wasm = &out["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["http_filters"][0]["typed_config"]["config"];
        let env = wasm["vm_config"]["environment_variables"]["host_env_keys"]
            .as_array()
            .unwrap();
        assert_eq!(
            env,
            &vec![
                json!("ANTHROPIC_API_KEY"),
                json!("HOSTED_VLLM_API_KEY"),
                json!("OAI")
            ]
        );
        let plugin: Value =
            serde_json::from_str(wasm["configuration"]["value"].as_str().unwrap()).unwrap();
        assert_eq!(
            plugin["gateway"]["clusters"]["api.anthropic.com"],
            "llm_api_anthropic_com"
        );
    }

    #[test]
    fn renders_a_regional_bedrock_cluster_and_passes_aws_variables() {
        let cfg = json!({"model_list": [{"model_name": "b", "litellm_params": {
            "model": "bedrock/amazon.nova-lite-v1:0", "aws_region_name": "us-east-1"}}]});
        let out = render(&cfg, &RenderOptions::default()).unwrap();
        let c = &out["static_resources"]["clusters"][0];
        assert_eq!(c["name"], "llm_bedrock_runtime_us_east_1_amazonaws_com");
        let wasm = &out["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["http_filters"][0]["typed_config"]["config"];
        let env = wasm["vm_config"]["environment_variables"]["host_env_keys"]
            .as_array()
            .unwrap();
        assert!(
            env.contains(&json!("AWS_ACCESS_KEY_ID"))
                && env.contains(&json!("AWS_SECRET_ACCESS_KEY"))
        );
        assert!(
            !env.contains(&json!("AWS_REGION")),
            "the region is given: {env:?}"
        );
    }

    #[test]
    fn renders_a_cluster_for_each_guardrail_service() {
        let cfg = json!({"model_list": [
            {"model_name": "fast", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "k"}}],
            "guardrails": [
                {"guardrail_name": "svc", "litellm_params": {"guardrail": "generic_guardrail_api",
                    "api_base": "https://guard.example:8443/v1"}},
                {"guardrail_name": "mod", "litellm_params": {"guardrail": "openai_moderation"}}]});
        let prepared = prepare(&cfg).unwrap();
        assert!(prepared.clusters.contains_key("llm_guard_example_8443"));
        assert!(prepared.clusters.contains_key("llm_api_openai_com"));
        let svc = prepared.parsed.guardrails[0].service.as_ref().unwrap();
        assert_eq!(svc.cluster, "llm_guard_example_8443");
        assert_eq!(svc.path(), "/v1/beta/litellm_basic_guardrail_api");
        assert!(env_names(&cfg).contains(&"OPENAI_API_KEY".to_string()));
    }

    #[test]
    fn blocked_words_files_are_put_in_the_config() {
        let mut cfg = json!({"guardrails": [{"guardrail_name": "kw", "litellm_params": {
            "guardrail": "litellm_content_filter", "blocked_words_file": "words.yaml",
            "blocked_words": [{"keyword": "alpha", "action": "BLOCK"}]}}]});
        let read = |p: &str| -> Result<Value, String> {
            assert_eq!(p, "words.yaml");
            Ok(json!({"blocked_words": [{"keyword": "beta", "action": "MASK"}]}))
        };
        inline_blocked_words_files(&mut cfg, &read).unwrap();
        let params = &cfg["guardrails"][0]["litellm_params"];
        assert!(params.get("blocked_words_file").is_none());
        assert_eq!(params["blocked_words"][1]["keyword"], "beta");
        let mut cfg = json!({"guardrails": [{"guardrail_name": "kw", "litellm_params": {
            "blocked_words_file": "missing.yaml"}}]});
        let e = inline_blocked_words_files(&mut cfg, &|_| Err("no such file".into())).unwrap_err();
        assert_eq!(e.field, "guardrails[0].litellm_params.blocked_words_file");
    }

    #[test]
    fn bad_config_names_the_field() {
        let cfg = json!({"model_list": [{"model_name": "x", "litellm_params": {"model": "anthropic/c", "weight": -1}}]});
        let e = render(&cfg, &RenderOptions::default()).unwrap_err();
        assert_eq!(e.field, "model_list[0].litellm_params.weight");
    }
}
