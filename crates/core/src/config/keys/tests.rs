//! Unit tests of `config::keys` (a `#[cfg(test)]` module of its `mod.rs`).

use super::*;
use serde_json::json;

const ALIASES: &[&str] = &["smart", "cheap"];

fn resolve(v: &str, field: &str) -> Result<String, ConfigError> {
    match v.strip_prefix("os.environ/") {
        None => Ok(v.to_string()),
        Some("MASTER") => Ok("sk-master".to_string()),
        Some(n) => Err(err(field, format!("`{n}` not set"))),
    }
}

fn h(plain: &str) -> String {
    digest_string(&digest(plain))
}

fn parse_v(v: Value) -> Result<(Option<KeyRing>, BudgetSettings, Vec<String>), ConfigError> {
    let Value::Object(root) = v else {
        unreachable!()
    };
    let mut w = Vec::new();
    let (r, s) = parse(&root, ALIASES, &resolve, &mut w)?;
    Ok((r, s, w))
}

fn full() -> Value {
    json!({
        "virtual_keys": [
            {"key_hash": h("sk-search"), "key_alias": "team-search", "models": ["smart", "cheap"],
             "max_budget": 25.0, "budget_duration": "30d", "rpm_limit": 120, "tpm_limit": 200000,
             "max_parallel_requests": 4, "team": "search",
             "model_max_budget": {"smart": {"budget_limit": 10.0, "time_period": "1d"}}},
            {"key_hash": h("sk-other").to_uppercase().replace("SHA256", "sha256"), "key_alias": "other",
             "principals": ["spiffe://cluster.local/ns/search/sa/indexer"]}
        ],
        "teams": [{"team_id": "search", "max_budget": 100.0, "budget_duration": "30d",
                   "rpm_limit": 1000, "models": ["smart", "cheap"]}],
        "general_settings": {"master_key": "os.environ/MASTER"},
        "gateway": {"budget_reservation": false, "default_max_tokens": 1000, "enforce_mid_stream": true}
    })
}

#[test]
fn parses_keys_teams_master_and_settings() {
    let (ring, s, w) = parse_v(full()).unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        s,
        BudgetSettings {
            reservation: false,
            default_max_tokens: 1000,
            enforce_mid_stream: true
        }
    );
    let ring = ring.unwrap();
    let k = ring.key_by_plain("sk-search").unwrap();
    assert_eq!(k.alias, "team-search");
    assert_eq!(k.models, ["smart", "cheap"]);
    assert_eq!(
        k.limits,
        Limits {
            max_budget_micro: Some(25_000_000),
            budget_duration_ms: Some(30 * 86_400_000),
            rpm_limit: Some(120),
            tpm_limit: Some(200_000),
            max_parallel_requests: Some(4),
        }
    );
    assert_eq!(k.team.as_deref(), Some("search"));
    assert_eq!(k.team_models, ["smart", "cheap"]);
    assert_eq!(
        k.model_budgets["smart"],
        ModelBudget {
            budget_micro: 10_000_000,
            duration_ms: Some(86_400_000)
        }
    );
    assert_eq!(
        ring.key_by_plain("sk-other").unwrap().alias,
        "other",
        "upper-case hex accepted"
    );
    assert!(ring.key_by_plain("sk-nope").is_none());
    assert_eq!(
        ring.key_by_alias("other").unwrap().limits,
        Limits::default()
    );
    assert_eq!(
        ring.team("search").unwrap().limits.max_budget_micro,
        Some(100_000_000)
    );
    assert!(ring.is_master("sk-master") && ring.has_master() && ring.has_budgets());
}

#[test]
fn defaults_and_open_mode() {
    let (ring, s, w) = parse_v(json!({})).unwrap();
    assert!(ring.is_none() && w.is_empty());
    assert_eq!(
        s,
        BudgetSettings {
            reservation: true,
            default_max_tokens: 4096,
            enforce_mid_stream: false
        }
    );
    let (ring, _, _) = parse_v(json!({"virtual_keys": []})).unwrap();
    let ring = ring.unwrap();
    assert!(ring.keys().is_empty() && !ring.has_master() && !ring.has_budgets());
    let (ring, _, _) = parse_v(json!({"general_settings": {"master_key": "sk-m"}})).unwrap();
    assert!(ring.unwrap().is_master("sk-m"));
    let (ring, _, _) = parse_v(json!({"general_settings": {"master_key": h("sk-m2")}})).unwrap();
    assert!(ring.unwrap().is_master("sk-m2"), "master given as a digest");
    let (ring, _, w) = parse_v(json!({"teams": [{"team_id": "t"}]})).unwrap();
    assert!(ring.is_none());
    assert_eq!(w.len(), 1);
}

#[test]
fn errors_name_the_field() {
    let k = |extra: Value| {
        let mut key = json!({"key_hash": h("k"), "key_alias": "a"});
        for (f, v) in extra.as_object().unwrap() {
            if v.is_null() {
                key.as_object_mut().unwrap().remove(f);
            } else {
                key[f] = v.clone();
            }
        }
        json!({"virtual_keys": [key], "teams": [{"team_id": "t"}]})
    };
    let cases = [
        (k(json!({"key_hash": "abc"})), "virtual_keys[0].key_hash"),
        (
            k(json!({"key_hash": format!("sha256:{}", "0".repeat(63))})),
            "virtual_keys[0].key_hash",
        ),
        (
            k(json!({"key_hash": format!("sha256:{}", "g".repeat(64))})),
            "virtual_keys[0].key_hash",
        ),
        (
            k(json!({"key_hash": format!("md5:{}", "0".repeat(64))})),
            "virtual_keys[0].key_hash",
        ),
        (k(json!({"key_hash": null})), "virtual_keys[0].key_hash"),
        (k(json!({"key_alias": null})), "virtual_keys[0].key_alias"),
        (
            k(json!({"key_alias": "has space"})),
            "virtual_keys[0].key_alias",
        ),
        (k(json!({"models": ["gpt-9"]})), "virtual_keys[0].models[0]"),
        (k(json!({"models": "smart"})), "virtual_keys[0].models"),
        (k(json!({"max_budget": -1})), "virtual_keys[0].max_budget"),
        (k(json!({"max_budget": "10"})), "virtual_keys[0].max_budget"),
        (
            k(json!({"budget_duration": "1mo"})),
            "virtual_keys[0].budget_duration",
        ),
        (
            k(json!({"budget_duration": "0s"})),
            "virtual_keys[0].budget_duration",
        ),
        (
            k(json!({"budget_duration": 30})),
            "virtual_keys[0].budget_duration",
        ),
        (k(json!({"rpm_limit": 1.5})), "virtual_keys[0].rpm_limit"),
        (k(json!({"tpm_limit": -3})), "virtual_keys[0].tpm_limit"),
        (
            k(json!({"max_parallel_requests": "4"})),
            "virtual_keys[0].max_parallel_requests",
        ),
        (k(json!({"team": "nope"})), "virtual_keys[0].team"),
        (k(json!({"team_id": "nope"})), "virtual_keys[0].team_id"),
        (
            k(json!({"team": "t", "team_id": "t"})),
            "virtual_keys[0].team_id",
        ),
        (k(json!({"spend": 3})), "virtual_keys[0].spend"),
        (
            k(json!({"model_max_budget": {"gpt-9": {"budget_limit": 1}}})),
            "virtual_keys[0].model_max_budget.gpt-9",
        ),
        (
            k(json!({"model_max_budget": {"smart": {"time_period": "1d"}}})),
            "virtual_keys[0].model_max_budget.smart.budget_limit",
        ),
        (
            k(json!({"model_max_budget": {"smart": {"budget_limit": 1, "time_period": "x"}}})),
            "virtual_keys[0].model_max_budget.smart.time_period",
        ),
        (
            k(json!({"model_max_budget": {"smart": {"budget_limit": 1, "tpm": 3}}})),
            "virtual_keys[0].model_max_budget.smart.tpm",
        ),
        (
            k(json!({"model_max_budget": [1]})),
            "virtual_keys[0].model_max_budget",
        ),
        (json!({"virtual_keys": {}}), "virtual_keys"),
        (json!({"virtual_keys": [1]}), "virtual_keys[0]"),
        (
            json!({"virtual_keys": [{"key_hash": h("a"), "key_alias": "x"}, {"key_hash": h("b"), "key_alias": "x"}]}),
            "virtual_keys[1].key_alias",
        ),
        (
            json!({"virtual_keys": [{"key_hash": h("a"), "key_alias": "x"}, {"key_hash": h("a"), "key_alias": "y"}]}),
            "virtual_keys[1].key_hash",
        ),
        (
            json!({"virtual_keys": [{"key_hash": h("m"), "key_alias": "x"}], "general_settings": {"master_key": "m"}}),
            "virtual_keys[0].key_hash",
        ),
        (
            json!({"teams": [{"team_id": "t"}, {"team_id": "t"}]}),
            "teams[1].team_id",
        ),
        (json!({"teams": [{"max_budget": 1}]}), "teams[0].team_id"),
        (
            json!({"teams": [{"team_id": "t", "models": ["x"]}]}),
            "teams[0].models[0]",
        ),
        (
            json!({"teams": [{"team_id": "t", "members": []}]}),
            "teams[0].members",
        ),
        (json!({"teams": {}}), "teams"),
        (
            json!({"general_settings": {"master_key": "os.environ/UNSET"}}),
            "general_settings.master_key",
        ),
        (
            json!({"general_settings": {"master_key": "sha256:12"}}),
            "general_settings.master_key",
        ),
        (
            json!({"general_settings": {"master_key": ""}}),
            "general_settings.master_key",
        ),
        (
            json!({"general_settings": {"master_key": 5}}),
            "general_settings.master_key",
        ),
        (
            json!({"gateway": {"budget_reservation": "yes"}}),
            "gateway.budget_reservation",
        ),
        (
            json!({"gateway": {"enforce_mid_stream": 1}}),
            "gateway.enforce_mid_stream",
        ),
        (
            json!({"gateway": {"default_max_tokens": 0}}),
            "gateway.default_max_tokens",
        ),
    ];
    for (cfg, field) in cases {
        let e = parse_v(cfg.clone())
            .err()
            .unwrap_or_else(|| panic!("accepted: {cfg}"));
        assert_eq!(e.field, field, "{cfg}: {e}");
        assert!(!e.reason.contains("sk-"), "{e}");
    }
}

#[test]
fn durations() {
    assert_eq!(parse_duration_ms("30s"), Some(30_000));
    assert_eq!(parse_duration_ms("5m"), Some(300_000));
    assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
    assert_eq!(parse_duration_ms("30d"), Some(2_592_000_000));
    assert_eq!(parse_duration_ms("2w"), Some(1_209_600_000));
    for bad in ["", "d", "30", "1mo", "-1d", "1.5h", "0m", "99999999999999d"] {
        assert_eq!(parse_duration_ms(bad), None, "{bad}");
    }
    assert_eq!(format_duration(2_592_000_000), "30d");
    assert_eq!(format_duration(90_000), "90s");
    assert_eq!(format_duration(1_500), "1500ms");
    assert_eq!(format_duration(604_800_000), "1w");
}

fn ring() -> KeyRing {
    let (r, _, _) = parse_v(full()).unwrap();
    r.unwrap()
}

#[test]
fn a_workload_principal_acts_as_its_key_when_no_key_is_sent() {
    let r = ring();
    let p = Some("spiffe://cluster.local/ns/search/sa/indexer");
    assert_eq!(
        authenticate_with_principal(Some(&r), None, None, p)
            .unwrap()
            .key_ref(),
        "other"
    );
    // an explicit key wins over the principal
    assert_eq!(
        authenticate_with_principal(Some(&r), Some("Bearer sk-search"), None, p)
            .unwrap()
            .key_ref(),
        "team-search"
    );
    // an unknown principal is not a key
    let e = authenticate_with_principal(Some(&r), None, None, Some("spiffe://x/ns/y/sa/z"))
        .unwrap_err();
    assert_eq!(e.code.as_deref(), Some("missing_api_key"));
    // a bad principals entry is named
    let mut cfg = full();
    cfg["virtual_keys"][1]["principals"] = serde_json::json!([""]);
    let e = parse_v(cfg).err().unwrap();
    assert_eq!(e.field, "virtual_keys[1].principals[0]");
}

#[test]
fn authenticates_bearer_and_x_api_key() {
    let r = ring();
    let who = |a: Option<&str>, x: Option<&str>| authenticate(Some(&r), a, x);
    assert_eq!(
        who(Some("Bearer sk-search"), None).unwrap().key_ref(),
        "team-search"
    );
    assert_eq!(
        who(Some("bearer   sk-search "), None).unwrap().key_ref(),
        "team-search"
    );
    assert_eq!(who(None, Some("sk-other")).unwrap().key_ref(), "other");
    assert_eq!(
        who(Some("Basic abc"), Some("sk-other")).unwrap().key_ref(),
        "other"
    );
    assert_eq!(
        who(Some("Bearer sk-search"), Some("sk-other"))
            .unwrap()
            .key_ref(),
        "team-search"
    );
    assert_eq!(who(Some("Bearer sk-master"), None).unwrap(), Caller::Master);
    assert_eq!(authenticate(None, None, None).unwrap(), Caller::Open);
    assert_eq!(
        authenticate(None, Some("Bearer whatever"), None).unwrap(),
        Caller::Open
    );
}

#[test]
fn refusals_are_401_and_never_echo_the_key() {
    let r = ring();
    for (a, x, code) in [
        (None, None, "missing_api_key"),
        (Some(""), Some("  "), "missing_api_key"),
        (Some("Bearer "), None, "invalid_api_key"),
        (Some("Basic sk-secret-123"), None, "invalid_api_key"),
        (Some("sk-secret-123"), None, "invalid_api_key"),
        (Some("Bearer sk-secret-123"), None, "invalid_api_key"),
        (None, Some("sk-secret-123"), "invalid_api_key"),
    ] {
        let e = authenticate(Some(&r), a, x).unwrap_err();
        assert_eq!(
            (e.status, e.kind, e.code.as_deref()),
            (401, ErrorKind::Authentication, Some(code)),
            "{a:?} {x:?}"
        );
        assert!(!e.message.contains("secret"), "{}", e.message);
    }
    let e = authenticate(Some(&r), Some("Bearer sk-secret-123"), None).unwrap_err();
    assert!(
        e.message.contains(&key_ref("sk-secret-123")),
        "{}",
        e.message
    );
    assert_eq!(key_ref("sk-secret-123").len(), "sha256:".len() + 8);
    assert_eq!(
        presented_key_ref(Some("Bearer sk-x"), None),
        Some(key_ref("sk-x"))
    );
    assert_eq!(presented_key_ref(None, None), None);
}

#[test]
fn authorizes_models() {
    let r = ring();
    let search = Caller::Key(r.key_by_alias("team-search").unwrap());
    assert!(authorize_model(&search, "smart").is_ok());
    let other = Caller::Key(r.key_by_alias("other").unwrap());
    assert!(
        authorize_model(&other, "anything").is_ok(),
        "empty models = all"
    );
    assert!(authorize_model(&Caller::Master, "x").is_ok());
    assert!(authorize_model(&Caller::Open, "x").is_ok());
    let mut k = r.key_by_alias("team-search").unwrap().clone();
    k.models = vec!["cheap".into()];
    let e = authorize_model(&Caller::Key(&k), "smart").unwrap_err();
    assert_eq!(
        (e.status, e.code.as_deref()),
        (403, Some("model_not_allowed"))
    );
    assert!(
        e.message.contains("team-search") && e.message.contains("`smart`"),
        "{}",
        e.message
    );
    k.models = vec![];
    k.team_models = vec!["cheap".into()];
    let e = authorize_model(&Caller::Key(&k), "smart").unwrap_err();
    assert!(e.message.contains("team `search`"), "{}", e.message);
    k.models = vec!["all-proxy-models".into()];
    k.team_models = vec![];
    assert!(authorize_model(&Caller::Key(&k), "smart").is_ok());
}

#[test]
fn digest_roundtrip() {
    let d = digest("sk-1");
    assert_eq!(parse_digest(&digest_string(&d)), Some(d));
    // sha256("abc")
    assert_eq!(
        digest_string(&digest("abc")),
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
