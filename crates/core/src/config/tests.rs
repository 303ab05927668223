//! Unit tests of `config` (a `#[cfg(test)]` module of its `mod.rs`).

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
    let e = with(r#"}, "virtual_keys": [{"key_hash": "sk-plain", "key_alias": "k"}]"#).unwrap_err();
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
