//! `GET /key/info`: a key's budgets and limits as LiteLLM's endpoint shows them.

#[allow(unused_imports)]
use super::*;

pub(super) fn usd(micro: u64) -> Value {
    json!(micro as f64 / 1e6)
}

pub(super) fn scope_info(
    store: &dyn SharedStore,
    scope: &str,
    l: &Limits,
    now_ms: u64,
) -> Map<String, Value> {
    let mut rec = read_record(store, scope);
    rec.roll(l.budget_duration_ms, now_ms);
    let mut m = Map::new();
    // Fleet counters: fleet-wide use as of the last sync plus what this
    // Envoy has not flushed yet; leases other Envoys hold count as held.
    let minute = rec.minute * MINUTE_MS;
    let budget_fleet = fleet::fleet_use(
        store,
        scope,
        Resource::Budget,
        rec.window_start_ms,
        rec.spend_micro,
    );
    let mut elsewhere = 0;
    if let Some((spend, held)) = budget_fleet {
        rec.spend_micro = spend;
        elsewhere = held;
        m.insert("fleet".into(), json!(true));
        m.insert("leased_elsewhere_micro".into(), json!(held));
    }
    if let Some((requests, _)) = fleet::fleet_use(store, scope, Resource::Rpm, minute, rec.requests)
    {
        rec.requests = requests;
    }
    if let Some((tokens, _)) = fleet::fleet_use(store, scope, Resource::Tpm, minute, rec.tokens) {
        rec.tokens = tokens;
    }
    m.insert("spend".into(), usd(rec.spend_micro));
    m.insert("spend_micro".into(), json!(rec.spend_micro));
    m.insert("reserved".into(), usd(rec.reserved_micro));
    m.insert("reserved_micro".into(), json!(rec.reserved_micro));
    m.insert(
        "max_budget".into(),
        l.max_budget_micro.map_or(Value::Null, usd),
    );
    m.insert(
        "budget_duration".into(),
        l.budget_duration_ms
            .map_or(Value::Null, |d| json!(format_duration(d))),
    );
    m.insert(
        "budget_reset_at".into(),
        window_reset_ms(l.budget_duration_ms, now_ms).map_or(Value::Null, |t| json!(format_utc(t))),
    );
    m.insert(
        "remaining_budget".into(),
        l.max_budget_micro.map_or(Value::Null, |b| {
            usd(b
                .saturating_sub(rec.spend_micro)
                .saturating_sub(rec.reserved_micro)
                .saturating_sub(elsewhere))
        }),
    );
    m.insert("rpm_limit".into(), json!(l.rpm_limit));
    m.insert("rpm_used".into(), json!(rec.requests));
    m.insert("tpm_limit".into(), json!(l.tpm_limit));
    m.insert("tpm_used".into(), json!(rec.tokens));
    m.insert(
        "max_parallel_requests".into(),
        json!(l.max_parallel_requests),
    );
    m.insert("parallel_requests".into(), json!(rec.parallel));
    m
}

/// `GET /key/info` for one key, as of `now_ms` (LiteLLM's `info` object
/// names where they exist): `key_alias`, `models`, `team_id`, `spend`
/// (USD) / `spend_micro`, `reserved` / `reserved_micro`, `max_budget`,
/// `budget_duration`, `budget_reset_at` (UTC ISO-8601), `remaining_budget`,
/// `rpm_limit` / `rpm_used` and `tpm_limit` / `tpm_used` (this minute),
/// `max_parallel_requests` / `parallel_requests`, `team` (the same fields
/// for the team, plus `team_id` and `models`; null without a team) and
/// `model_max_budget` (per model alias: `budget_limit`, `time_period`,
/// `spend`, `spend_micro`, `reserved_micro`, `budget_reset_at`).
/// A team's models, budget and limits (`/team/info`, and `/key/info`'s `team`).
pub fn team_info(
    store: &dyn SharedStore,
    t: &crate::config::keys::TeamConfig,
    now_ms: u64,
) -> Value {
    let mut m = Map::new();
    m.insert("team_id".into(), json!(t.id));
    m.insert("models".into(), json!(t.models));
    m.extend(scope_info(store, &team_scope(&t.id), &t.limits, now_ms));
    Value::Object(m)
}

pub fn key_info(store: &dyn SharedStore, ring: &KeyRing, key: &KeyConfig, now_ms: u64) -> Value {
    let mut info = Map::new();
    info.insert("key_alias".into(), json!(key.alias));
    info.insert("models".into(), json!(key.models));
    info.insert("team_id".into(), json!(key.team));
    info.extend(scope_info(
        store,
        &key_scope(&key.alias),
        &key.limits,
        now_ms,
    ));
    let team = key
        .team
        .as_deref()
        .and_then(|id| ring.team(id))
        .map(|t| team_info(store, t, now_ms));
    info.insert("team".into(), team.unwrap_or(Value::Null));
    let mut per_model = Map::new();
    for (model, b) in &key.model_budgets {
        let mut rec = read_record(store, &keymodel_scope(&key.alias, model));
        rec.roll(b.duration_ms, now_ms);
        per_model.insert(
            model.clone(),
            json!({
                "budget_limit": usd(b.budget_micro),
                "time_period": b.duration_ms.map(format_duration),
                "spend": usd(rec.spend_micro),
                "spend_micro": rec.spend_micro,
                "reserved_micro": rec.reserved_micro,
                "budget_reset_at": window_reset_ms(b.duration_ms, now_ms).map(format_utc),
            }),
        );
    }
    info.insert("model_max_budget".into(), Value::Object(per_model));
    Value::Object(info)
}
