//! Settings the gateway does not enforce and whose absence would be unsafe
//! are refused at load (naming the key), or load loudly when the operator
//! allows them (`config/unenforced.rs`). Table-driven over every refused
//! setting, so a new entry in the table is tested by construction.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_gateway::config::unenforced::REFUSED;
use llm_gateway::pipeline::load_config;
use serde_json::{json, Value};

fn base() -> Value {
    json!({"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "k"}}],
           "gateway": {"clusters": {"openai": "openai"}}})
}

/// A config with `path` set (`model_list[].` means the first entry).
fn with(path: &str, value: Value) -> (Value, String) {
    let mut cfg = base();
    let concrete = path.replace("model_list[]", "model_list[0]");
    let (section, key) = path.rsplit_once('.').unwrap();
    let target = if section.starts_with("model_list[]") {
        &mut cfg["model_list"][0]["litellm_params"]
    } else {
        let obj = cfg.as_object_mut().unwrap();
        obj.entry(section).or_insert(json!({}))
    };
    target[key] = value;
    (cfg, concrete)
}

fn load(cfg: &Value) -> Result<llm_gateway::config::Config, llm_gateway::config::ConfigError> {
    load_config(cfg.to_string().as_bytes(), &|_| None)
}

#[test]
fn every_refused_setting_is_refused_naming_it_and_loads_only_when_allowed() {
    assert!(
        REFUSED.len() >= 15,
        "the table lost entries: {}",
        REFUSED.len()
    );
    for r in REFUSED {
        let (cfg, concrete) = with(r.path, json!(100));
        let e = load(&cfg).expect_err(r.path);
        assert_eq!(e.field, concrete, "{}", r.path);
        assert!(
            e.reason.contains("not enforced"),
            "{}: {}",
            r.path,
            e.reason
        );
        assert!(
            e.reason.contains("allow_unenforced_settings"),
            "{}",
            e.reason
        );

        let mut allowed = cfg.clone();
        allowed["gateway"]["allow_unenforced_settings"] = json!([r.path]);
        let c = load(&allowed).unwrap_or_else(|e| panic!("{}: {e}", r.path));
        let loud: Vec<_> = c
            .warnings
            .iter()
            .filter(|w| w.contains("NOT enforced"))
            .collect();
        assert_eq!(loud.len(), 1, "{}: {:?}", r.path, c.warnings);
        assert!(loud[0].starts_with(&concrete), "{}", loud[0]);
        assert!(
            !c.warnings
                .iter()
                .any(|w| w.contains(&concrete) && w.contains("is ignored")),
            "one message, not also 'ignored': {:?}",
            c.warnings
        );
    }
}

#[test]
fn a_null_value_is_absent() {
    let (cfg, _) = with("litellm_settings.max_budget", Value::Null);
    load(&cfg).unwrap();
}

#[test]
fn listing_a_setting_that_is_not_refused_is_an_error() {
    let mut cfg = base();
    cfg["gateway"]["allow_unenforced_settings"] = json!(["litellm_settings.set_verbose"]);
    let e = load(&cfg).unwrap_err();
    assert_eq!(e.field, "gateway.allow_unenforced_settings");
    assert!(e.reason.contains("set_verbose"), "{}", e.reason);
}

/// Two guardrails of types this gateway does not run (Bedrock's, Lakera's).
fn unimplemented() -> Value {
    json!([
        {"guardrail_name": "pii-mask", "litellm_params": {"guardrail": "bedrock", "mode": "pre_call", "default_on": true}},
        {"guardrail_name": "injection", "litellm_params": {"guardrail": "lakera_v2", "mode": ["pre_call", "post_call"]}}
    ])
}

#[test]
fn guardrails_are_refused_naming_the_entry_and_its_type() {
    let mut cfg = base();
    cfg["guardrails"] = unimplemented();
    let e = load(&cfg).unwrap_err();
    assert_eq!(e.field, "guardrails[0]");
    assert!(
        e.reason.contains("`pii-mask`") && e.reason.contains("`bedrock`"),
        "{}",
        e.reason
    );
    assert!(
        e.reason.contains("allow_unenforced_guardrails"),
        "{}",
        e.reason
    );
}

#[test]
fn guardrails_load_loudly_with_the_override() {
    let mut cfg = base();
    cfg["guardrails"] = unimplemented();
    cfg["gateway"]["allow_unenforced_guardrails"] = json!(true);
    let c = load(&cfg).unwrap();
    let loud: Vec<_> = c
        .warnings
        .iter()
        .filter(|w| w.contains("NOT enforced"))
        .collect();
    assert_eq!(loud.len(), 2, "{:?}", c.warnings);
    assert!(
        loud[0].contains("pii-mask") && loud[1].contains("injection"),
        "{loud:?}"
    );
    assert!(
        !c.warnings
            .iter()
            .any(|w| w.contains("unknown top-level key")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn older_guardrail_forms_are_refused_too() {
    let cases = [
        (
            "litellm_settings.guardrails",
            json!({"guardrails": [{"prompt_injection": {"callbacks": ["lakera_prompt_injection"], "default_on": true}}]}),
        ),
        (
            "litellm_settings.callbacks[1]",
            json!({"callbacks": ["prometheus", "presidio"]}),
        ),
        (
            "litellm_settings.success_callback[0]",
            json!({"success_callback": ["hide_secrets"]}),
        ),
        (
            "litellm_settings.callbacks[0]",
            json!({"callbacks": ["custom_callbacks.proxy_handler_instance"]}),
        ),
    ];
    for (field, settings) in cases {
        let mut cfg = base();
        cfg["litellm_settings"] = settings.clone();
        let e = load(&cfg).expect_err(field);
        assert_eq!(e.field, field, "{settings}");
        cfg["gateway"]["allow_unenforced_guardrails"] = json!(true);
        let c = load(&cfg).unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.starts_with(field) && w.contains("NOT enforced")),
            "{:?}",
            c.warnings
        );
    }
}

#[test]
fn logging_callbacks_and_other_reviewed_keys_stay_warnings() {
    let mut cfg = base();
    cfg["litellm_settings"] =
        json!({"success_callback": ["prometheus"], "cache": true, "set_verbose": true});
    // `cache: true` and the logging callbacks are implemented now (`otel`,
    // `langfuse`; `prometheus` is Envoy's own): no warning for them.
    cfg["general_settings"] = json!({"database_url": "postgres://x", "public_routes": ["/health"]});
    cfg["router_settings"] = json!({"redis_host": "r", "enable_pre_call_checks": true});
    let c = load(&cfg).unwrap();
    for k in [
        "set_verbose",
        "database_url",
        "public_routes",
        "redis_host",
        "enable_pre_call_checks",
    ] {
        assert!(
            c.warnings.iter().any(|w| w.contains(k)),
            "{k}: {:?}",
            c.warnings
        );
    }
    assert!(!c.warnings.iter().any(|w| w.contains("NOT enforced")));
    assert!(
        !c.warnings
            .iter()
            .any(|w| w.contains("litellm_settings.cache")),
        "{:?}",
        c.warnings
    );
    assert!(c.cache.is_some());
}

#[test]
fn the_content_filter_loads_and_what_it_cannot_enforce_is_refused() {
    let entry = |params: Value| json!([{"guardrail_name": "cf", "litellm_params": params}]);
    let mut cfg = base();
    cfg["guardrails"] = entry(
        json!({"guardrail": "litellm_content_filter", "mode": "pre_call",
        "patterns": [{"pattern_type": "prebuilt", "pattern_name": "email", "action": "MASK"}]}),
    );
    let c = load(&cfg).unwrap();
    assert_eq!(c.guardrails.len(), 1);
    assert!(
        !c.warnings.iter().any(|w| w.contains("NOT enforced")),
        "{:?}",
        c.warnings
    );

    // Every mode the filter has: input (pre_call, during_call), output (post_call).
    for (mode, input, output) in [
        (json!("post_call"), false, true),
        (json!("during_call"), true, false),
        (json!(["pre_call", "post_call"]), true, true),
    ] {
        cfg["guardrails"] = entry(json!({"guardrail": "litellm_content_filter", "mode": mode,
            "patterns": [{"pattern_name": "email", "action": "MASK"}]}));
        let c = load(&cfg).unwrap();
        assert_eq!(
            (c.guardrails[0].input, c.guardrails[0].output),
            (input, output),
            "{mode}"
        );
    }

    for (params, needle) in [
        (
            json!({"guardrail": "litellm_content_filter", "mode": "logging_only", "patterns": [{"pattern_name": "email", "action": "MASK"}]}),
            "logging_only",
        ),
        (
            json!({"guardrail": "litellm_content_filter", "mode": ["post_call", "pre_mcp_call"], "patterns": [{"pattern_name": "email", "action": "MASK"}]}),
            "pre_mcp_call",
        ),
        (
            json!({"guardrail": "litellm_content_filter", "patterns": [{"pattern_name": "passport", "action": "MASK"}]}),
            "passport",
        ),
        (
            json!({"guardrail": "litellm_content_filter", "categories": [{"category": "harmful_violence"}], "patterns": [{"pattern_name": "email", "action": "MASK"}]}),
            "categories",
        ),
    ] {
        cfg["guardrails"] = entry(params);
        let e = load(&cfg).expect_err(needle);
        assert_eq!(e.field, "guardrails[0]");
        assert!(e.reason.contains(needle), "{needle}: {}", e.reason);
    }
    // Custom regex patterns load; one using what the engine does not have
    // is an error naming it.
    cfg["guardrails"] = entry(json!({"guardrail": "litellm_content_filter",
        "patterns": [{"pattern_type": "regex", "pattern": "\\b[A-Z]{3}-\\d{4}\\b", "name": "employee_id", "action": "MASK"}]}));
    assert!(load(&cfg).is_ok());
    cfg["guardrails"] = entry(json!({"guardrail": "litellm_content_filter",
        "patterns": [{"pattern_type": "regex", "pattern": "(?<=id )\\d+", "action": "MASK"}]}));
    let e = load(&cfg).unwrap_err();
    assert_eq!(e.field, "guardrails[0].litellm_params.patterns[0].pattern");
    assert!(e.reason.contains("look-around"), "{}", e.reason);
    // Malformed is an error in any case, override or not.
    cfg["guardrails"] = entry(
        json!({"guardrail": "litellm_content_filter", "patterns": [{"pattern_name": "email", "action": "HIDE"}]}),
    );
    cfg["gateway"]["allow_unenforced_guardrails"] = json!(true);
    let e = load(&cfg).unwrap_err();
    assert_eq!(e.field, "guardrails[0].litellm_params.patterns[0].action");
}

#[test]
fn guardrail_names_in_keys_and_switch_lists_must_be_configured() {
    let mut cfg = base();
    cfg["guardrails"] = json!([{"guardrail_name": "cf", "litellm_params": {
        "guardrail": "litellm_content_filter", "patterns": [{"pattern_name": "email", "action": "MASK"}]}}]);
    cfg["virtual_keys"] = json!([{"key_hash": format!("sha256:{}", "a".repeat(64)), "key_alias": "k",
        "guardrails": ["cf"]}]);
    cfg["gateway"]["guardrails_caller_may_disable"] = json!(["cf"]);
    let c = load(&cfg).unwrap();
    assert_eq!(c.keys.as_ref().unwrap().keys()[0].guardrails, vec!["cf"]);
    assert_eq!(c.guardrails_caller_may_disable, vec!["cf"]);

    cfg["virtual_keys"][0]["guardrails"] = json!(["cf", "nope"]);
    let e = load(&cfg).unwrap_err();
    assert_eq!(e.field, "virtual_keys[0].guardrails[1]");
    assert!(
        e.reason.contains("unknown guardrail `nope`"),
        "{}",
        e.reason
    );

    cfg["virtual_keys"][0]["guardrails"] = json!("cf");
    assert_eq!(load(&cfg).unwrap_err().field, "virtual_keys[0].guardrails");

    cfg["virtual_keys"][0]["guardrails"] = json!(["cf"]);
    cfg["gateway"]["guardrails_caller_may_disable"] = json!(["other"]);
    let e = load(&cfg).unwrap_err();
    assert_eq!(e.field, "gateway.guardrails_caller_may_disable[0]");
}
