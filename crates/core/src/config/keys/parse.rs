//! Parsing `virtual_keys`, `teams`, `general_settings.master_key` and the budget switches, every field checked strictly.

#[allow(unused_imports)]
use super::*;

/// Parse a duration: `<positive integer><s|m|h|d|w>`, in milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let unit_at = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(unit_at);
    let n: u64 = n.parse().ok().filter(|n| *n > 0)?;
    let ms: u64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        _ => return None,
    };
    n.checked_mul(ms).filter(|v| *v <= 100 * 365 * 86_400_000)
}

/// A duration in the largest unit that divides it: `30d`, `90s`, `1500ms`.
pub fn format_duration(ms: u64) -> String {
    for (unit, len) in [
        ("w", 604_800_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= len && ms.is_multiple_of(len) {
            return format!("{}{unit}", ms / len);
        }
    }
    format!("{ms}ms")
}

/// USD (config float) to micro-USD.
pub fn usd_to_micro(usd: f64) -> Option<u64> {
    if !usd.is_finite() || !(0.0..=MAX_BUDGET_USD).contains(&usd) {
        return None;
    }
    Some((usd * 1e6).round() as u64)
}

pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub(super) const NAME_RULE: &str = "must be 1-64 characters of A-Z a-z 0-9 . _ -";

pub(super) fn money(v: &Value, field: &str) -> Result<u64, ConfigError> {
    v.as_f64()
        .and_then(usd_to_micro)
        .ok_or_else(|| err(field, "must be a number of USD, 0 or more"))
}

pub(super) fn duration(v: &Value, field: &str) -> Result<u64, ConfigError> {
    v.as_str().and_then(parse_duration_ms).ok_or_else(|| {
        err(
            field,
            "must be a duration like 30s, 5m, 1h, 1d, 30d or 1w (months are not a fixed \
             length: use 30d)",
        )
    })
}

pub(super) fn limit(v: &Value, field: &str) -> Result<u64, ConfigError> {
    v.as_u64()
        .ok_or_else(|| err(field, "must be an integer, 0 or more"))
}

pub(super) fn non_null<'v>(m: &'v Map<String, Value>, k: &str) -> Option<&'v Value> {
    m.get(k).filter(|v| !v.is_null())
}

pub(super) fn model_list(
    v: Option<&Value>,
    field: &str,
    aliases: &[&str],
) -> Result<Vec<String>, ConfigError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let Value::Array(items) = v else {
        return Err(err(field, "must be a list of model names"));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, m) in items.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let name = m.as_str().ok_or_else(|| err(&f, "must be a model name"))?;
        if !ALL_MODELS.contains(&name) && !aliases.contains(&name) {
            return Err(err(
                f,
                format!("`{name}` is not a model_name in model_list"),
            ));
        }
        out.push(name.to_string());
    }
    Ok(out)
}

pub(super) fn limits(
    m: &Map<String, Value>,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<Limits, ConfigError> {
    let f = |k: &str| format!("{path}.{k}");
    let mut l = Limits::default();
    if let Some(v) = non_null(m, "max_budget") {
        l.max_budget_micro = Some(money(v, &f("max_budget"))?);
    }
    if let Some(v) = non_null(m, "budget_duration") {
        l.budget_duration_ms = Some(duration(v, &f("budget_duration"))?);
        if l.max_budget_micro.is_none() {
            warnings.push(format!(
                "{} is set without max_budget and has no effect",
                f("budget_duration")
            ));
        }
    }
    if let Some(v) = non_null(m, "rpm_limit") {
        l.rpm_limit = Some(limit(v, &f("rpm_limit"))?);
    }
    if let Some(v) = non_null(m, "tpm_limit") {
        l.tpm_limit = Some(limit(v, &f("tpm_limit"))?);
    }
    if let Some(v) = non_null(m, "max_parallel_requests") {
        l.max_parallel_requests = Some(limit(v, &f("max_parallel_requests"))?);
    }
    Ok(l)
}

pub(super) const LIMIT_FIELDS: &[&str] = &[
    "max_budget",
    "budget_duration",
    "rpm_limit",
    "tpm_limit",
    "max_parallel_requests",
];
pub(super) const KEY_FIELDS: &[&str] = &[
    "key_hash",
    "key_alias",
    "models",
    "team",
    "team_id",
    "model_max_budget",
    "principals",
    "guardrails",
    "cache",
];
pub(super) const TEAM_FIELDS: &[&str] = &["team_id", "models"];

pub(super) fn check_fields(
    m: &Map<String, Value>,
    path: &str,
    own: &[&str],
) -> Result<(), ConfigError> {
    for k in m.keys() {
        if !own.contains(&k.as_str()) && !LIMIT_FIELDS.contains(&k.as_str()) {
            let mut known: Vec<&str> = own.to_vec();
            known.extend_from_slice(LIMIT_FIELDS);
            return Err(err(
                format!("{path}.{k}"),
                format!("unknown field; known: {}", known.join(", ")),
            ));
        }
    }
    Ok(())
}

pub(super) fn name_field(
    m: &Map<String, Value>,
    path: &str,
    k: &str,
) -> Result<String, ConfigError> {
    match non_null(m, k) {
        None => Err(err(format!("{path}.{k}"), "missing (required)")),
        Some(Value::String(s)) if valid_name(s) => Ok(s.clone()),
        Some(_) => Err(err(format!("{path}.{k}"), NAME_RULE)),
    }
}

pub(super) fn parse_teams(
    root: &Map<String, Value>,
    aliases: &[&str],
    warnings: &mut Vec<String>,
) -> Result<Vec<TeamConfig>, ConfigError> {
    let list = match non_null(root, "teams") {
        None => return Ok(Vec::new()),
        Some(Value::Array(l)) => l,
        Some(_) => return Err(err("teams", "must be a list")),
    };
    let mut teams: Vec<TeamConfig> = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let path = format!("teams[{i}]");
        let Value::Object(m) = t else {
            return Err(err(path, "must be a mapping"));
        };
        check_fields(m, &path, TEAM_FIELDS)?;
        let id = name_field(m, &path, "team_id")?;
        if teams.iter().any(|t| t.id == id) {
            return Err(err(
                format!("{path}.team_id"),
                format!("duplicate team `{id}`"),
            ));
        }
        let models = model_list(non_null(m, "models"), &format!("{path}.models"), aliases)?;
        let limits = limits(m, &path, warnings)?;
        teams.push(TeamConfig { id, models, limits });
    }
    Ok(teams)
}

pub(super) fn parse_key(
    i: usize,
    v: &Value,
    aliases: &[&str],
    teams: &[TeamConfig],
    warnings: &mut Vec<String>,
) -> Result<KeyConfig, ConfigError> {
    let path = format!("virtual_keys[{i}]");
    let Value::Object(m) = v else {
        return Err(err(path, "must be a mapping"));
    };
    check_fields(m, &path, KEY_FIELDS)?;
    let digest = match non_null(m, "key_hash") {
        None => {
            return Err(err(
                format!("{path}.key_hash"),
                "missing: the sha256 of the key, `sha256:<64 hex>` (e.g. \
                 `printf %s \"$KEY\" | sha256sum`)",
            ))
        }
        Some(v) => v.as_str().and_then(parse_digest).ok_or_else(|| {
            err(
                format!("{path}.key_hash"),
                "must be `sha256:` followed by 64 hex digits (the digest of the key, never \
                 the key itself)",
            )
        })?,
    };
    let alias = name_field(m, &path, "key_alias")?;
    let models = model_list(non_null(m, "models"), &format!("{path}.models"), aliases)?;
    let principals = match non_null(m, "principals") {
        None => Vec::new(),
        Some(Value::Array(a)) => {
            let mut out = Vec::new();
            for (j, p) in a.iter().enumerate() {
                match p.as_str() {
                    Some(s) if !s.trim().is_empty() => out.push(s.to_string()),
                    _ => {
                        return Err(err(
                            format!("{path}.principals[{j}]"),
                            "must be a non-empty string (a peer identity such as spiffe://...)",
                        ))
                    }
                }
            }
            out
        }
        Some(_) => {
            return Err(err(
                format!("{path}.principals"),
                "must be a list of strings",
            ))
        }
    };
    let guardrails = match non_null(m, "guardrails") {
        None => Vec::new(),
        Some(Value::Array(a)) => {
            let mut out = Vec::new();
            for (j, g) in a.iter().enumerate() {
                match g.as_str() {
                    Some(s) if !s.is_empty() => out.push(s.to_string()),
                    _ => {
                        return Err(err(
                            format!("{path}.guardrails[{j}]"),
                            "must be a guardrail_name",
                        ))
                    }
                }
            }
            out
        }
        Some(_) => {
            return Err(err(
                format!("{path}.guardrails"),
                "must be a list of guardrail names",
            ))
        }
    };
    let team = match (non_null(m, "team"), non_null(m, "team_id")) {
        (Some(_), Some(_)) => {
            return Err(err(
                format!("{path}.team_id"),
                "set either team or team_id, not both",
            ))
        }
        (Some(v), None) | (None, Some(v)) => {
            let field = if m.contains_key("team") && !m["team"].is_null() {
                format!("{path}.team")
            } else {
                format!("{path}.team_id")
            };
            let id = v.as_str().ok_or_else(|| err(&field, "must be a team_id"))?;
            if !teams.iter().any(|t| t.id == id) {
                return Err(err(field, format!("team `{id}` is not listed in `teams`")));
            }
            Some(id.to_string())
        }
        (None, None) => None,
    };
    let team_models = team
        .as_deref()
        .and_then(|id| teams.iter().find(|t| t.id == id))
        .map(|t| t.models.clone())
        .unwrap_or_default();
    let mut model_budgets = BTreeMap::new();
    match non_null(m, "model_max_budget") {
        None => {}
        Some(Value::Object(mb)) => {
            for (model, b) in mb {
                let f = format!("{path}.model_max_budget.{model}");
                if !aliases.contains(&model.as_str()) {
                    return Err(err(
                        f,
                        format!("`{model}` is not a model_name in model_list"),
                    ));
                }
                let Value::Object(b) = b else {
                    return Err(err(f, "must be {budget_limit: USD, time_period: 1d}"));
                };
                for k in b.keys() {
                    if k != "budget_limit" && k != "time_period" {
                        return Err(err(
                            format!("{f}.{k}"),
                            "unknown field; known: budget_limit, time_period",
                        ));
                    }
                }
                let budget_micro = match non_null(b, "budget_limit") {
                    Some(v) => money(v, &format!("{f}.budget_limit"))?,
                    None => return Err(err(format!("{f}.budget_limit"), "missing (required)")),
                };
                let duration_ms = match non_null(b, "time_period") {
                    Some(v) => Some(duration(v, &format!("{f}.time_period"))?),
                    None => None,
                };
                model_budgets.insert(
                    model.clone(),
                    ModelBudget {
                        budget_micro,
                        duration_ms,
                    },
                );
            }
        }
        Some(_) => {
            return Err(err(
                format!("{path}.model_max_budget"),
                "must be a mapping {model_name: {budget_limit, time_period}}",
            ))
        }
    }
    let cache = match non_null(m, "cache") {
        None => None,
        Some(v) => Some(
            crate::config::cache::Controls::from_value(v, &format!("{path}.cache")).map_err(
                |e| {
                    err(
                        e.param.clone().unwrap_or_else(|| format!("{path}.cache")),
                        e.message,
                    )
                },
            )?,
        ),
    };
    let limits = limits(m, &path, warnings)?;
    Ok(KeyConfig {
        alias,
        digest,
        models,
        team_models,
        limits,
        team,
        model_budgets,
        principals,
        guardrails,
        cache,
    })
}

pub(super) fn parse_settings(root: &Map<String, Value>) -> Result<BudgetSettings, ConfigError> {
    let mut s = BudgetSettings::default();
    let Some(Value::Object(g)) = root.get("gateway") else {
        return Ok(s);
    };
    match non_null(g, "budget_reservation") {
        None => {}
        Some(Value::Bool(b)) => s.reservation = *b,
        Some(_) => return Err(err("gateway.budget_reservation", "must be a boolean")),
    }
    match non_null(g, "enforce_mid_stream") {
        None => {}
        Some(Value::Bool(b)) => s.enforce_mid_stream = *b,
        Some(_) => return Err(err("gateway.enforce_mid_stream", "must be a boolean")),
    }
    if let Some(v) = non_null(g, "default_max_tokens") {
        s.default_max_tokens = v
            .as_u64()
            .filter(|n| *n > 0)
            .ok_or_else(|| err("gateway.default_max_tokens", "must be a positive integer"))?;
    }
    Ok(s)
}

/// Parse `virtual_keys`, `teams`, `general_settings.master_key` and the
/// `gateway` budget switches from the config root. `aliases` are the
/// `model_name`s of `model_list`; `resolve` resolves `os.environ/NAME`
/// (config's resolver, naming `field` in its error). No `virtual_keys` and
/// no master key: `None` (the gateway runs open).
pub fn parse(
    root: &Map<String, Value>,
    aliases: &[&str],
    resolve: &dyn Fn(&str, &str) -> Result<String, ConfigError>,
    warnings: &mut Vec<String>,
) -> Result<(Option<KeyRing>, BudgetSettings), ConfigError> {
    let settings = parse_settings(root)?;
    let master = match root.get("general_settings") {
        Some(Value::Object(g)) => match non_null(g, "master_key") {
            None => None,
            Some(Value::String(s)) => {
                let field = "general_settings.master_key";
                let v = resolve(s, field)?;
                if v.is_empty() {
                    return Err(err(field, "must not be empty"));
                }
                Some(match v.strip_prefix("sha256:") {
                    Some(_) => parse_digest(&v)
                        .ok_or_else(|| err(field, "`sha256:` must be followed by 64 hex digits"))?,
                    None => digest(&v),
                })
            }
            Some(_) => return Err(err("general_settings.master_key", "must be a string")),
        },
        _ => None,
    };
    let teams = parse_teams(root, aliases, warnings)?;
    let list = match non_null(root, "virtual_keys") {
        None => None,
        Some(Value::Array(l)) => Some(l),
        Some(_) => return Err(err("virtual_keys", "must be a list")),
    };
    if list.is_none() && master.is_none() {
        if !teams.is_empty() {
            warnings.push(
                "`teams` has no effect without `virtual_keys`: the gateway runs open".to_string(),
            );
        }
        return Ok((None, settings));
    }
    let mut keys: Vec<KeyConfig> = Vec::new();
    for (i, v) in list.into_iter().flatten().enumerate() {
        let k = parse_key(i, v, aliases, &teams, warnings)?;
        if let Some(j) = keys.iter().position(|o| o.alias == k.alias) {
            return Err(err(
                format!("virtual_keys[{i}].key_alias"),
                format!("`{}` is also the alias of virtual_keys[{j}]", k.alias),
            ));
        }
        if let Some(j) = keys.iter().position(|o| o.digest == k.digest) {
            return Err(err(
                format!("virtual_keys[{i}].key_hash"),
                format!("the same key as virtual_keys[{j}]"),
            ));
        }
        if master == Some(k.digest) {
            return Err(err(
                format!("virtual_keys[{i}].key_hash"),
                "is the master key's hash",
            ));
        }
        keys.push(k);
    }
    if let Some(unused) = teams
        .iter()
        .find(|t| !keys.iter().any(|k| k.team.as_deref() == Some(&t.id)))
    {
        warnings.push(format!("team `{}` has no virtual keys", unused.id));
    }
    Ok((Some(KeyRing::new(keys, teams, master)), settings))
}
