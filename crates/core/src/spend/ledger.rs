//! Spend totals per day and per key, team and model, and the most recent
//! spend records, in shared data (this Envoy), written by the counter
//! service off the request path (or by the filter when no counter service
//! runs; compare-and-set either way); and the report endpoints' answers.
//!
//! Layout: `llm_gateway.spend.day.<YYYY-MM-DD>` holds one line per
//! (dimension, name, model alias): `k|t|m \t name \t model \t spend_micro
//! \t prompt_tokens \t completion_tokens \t requests` (`k` key alias, `t`
//! team, `m` model; plain text rather than JSON: the module stays small);
//! `llm_gateway.spend.log.<n>` (n < [`RECENT`]) the recent records, with
//! `llm_gateway.spend.log_next` the next slot.

use serde_json::Value;

use crate::api::error::{ErrorKind, GatewayError};
use crate::store::{update, SharedStore, StoreError};

/// Records `/spend/logs` can return (per Envoy).
pub const RECENT: u64 = 1000;
/// The longest report range, in days.
pub const MAX_DAYS: i64 = 366;

fn day_key(d: &str) -> String {
    format!("llm_gateway.spend.day.{d}")
}

/// One row of a day's totals.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Row {
    /// `k` (key alias), `t` (team), `m` (model alias).
    pub dim: String,
    pub name: String,
    /// The model alias the spend was on.
    pub model: String,
    /// spend_micro, prompt, completion, requests.
    pub n: [u64; 4],
}

fn rows(text: &str) -> Vec<Row> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (dim, name, model) = (f.next()?, f.next()?, f.next()?);
            let mut n = [0u64; 4];
            for slot in n.iter_mut() {
                *slot = f.next()?.parse().ok()?;
            }
            Some(Row {
                dim: dim.into(),
                name: name.into(),
                model: model.into(),
                n,
            })
        })
        .collect()
}

fn clean(s: &str) -> String {
    s.replace(['\t', '\n'], " ")
}

/// The rows one spend log line adds (key, team, model), and its day.
pub fn line_rows(line: &str) -> Option<(String, Vec<Row>)> {
    let v = serde_json::from_str::<Value>(line).ok()?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(clean);
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let model = s("model_group")?;
    let day = s("endTime")?.get(..10)?.to_string();
    let add = [
        n("spend_micro"),
        n("prompt_tokens"),
        n("completion_tokens"),
        1,
    ];
    let rows = [
        ("k", s("key_alias")),
        ("t", s("team_id")),
        ("m", Some(model.clone())),
    ]
    .into_iter()
    .filter_map(|(dim, name)| {
        Some(Row {
            dim: dim.into(),
            name: name?,
            model: model.clone(),
            n: add,
        })
    })
    .collect();
    Some((day, rows))
}

/// Add `add` into `all` (rows with the same dimension, name and model sum).
pub fn merge(all: &mut Vec<Row>, add: &[Row]) {
    for a in add {
        match all
            .iter_mut()
            .find(|r| r.dim == a.dim && r.name == a.name && r.model == a.model)
        {
            Some(r) => {
                for (x, d) in r.n.iter_mut().zip(a.n) {
                    *x = x.saturating_add(d);
                }
            }
            None => all.push(a.clone()),
        }
    }
}

fn rows_text(all: &[Row]) -> String {
    let mut out = String::new();
    for r in all {
        let [a, b, c, d] = r.n;
        out.push_str(&format!(
            "{}\t{}\t{}\t{a}\t{b}\t{c}\t{d}\n",
            r.dim, r.name, r.model
        ));
    }
    out
}

/// Fold one spend log line into its day's totals and the recent ring.
pub fn apply(store: &dyn SharedStore, line: &str) -> Result<(), StoreError> {
    apply_all(store, &[line]).map(|_| ())
}

/// [`apply`] for a batch of records (a worker's message): each day's
/// record is read and written once, the ring's position once, then one
/// write per record (per record alone it was five shared-data calls).
/// Returns the batch's rows per day (what the fleet's totals add).
pub fn apply_all(
    store: &dyn SharedStore,
    lines: &[&str],
) -> Result<Vec<(String, Vec<Row>)>, StoreError> {
    let mut per_day: Vec<(String, Vec<Row>)> = Vec::new();
    let mut kept: Vec<&str> = Vec::with_capacity(lines.len());
    for line in lines {
        let Some((day, add)) = line_rows(line) else {
            continue;
        };
        kept.push(line);
        match per_day.iter_mut().find(|(d, _)| *d == day) {
            Some((_, rows)) => merge(rows, &add),
            None => per_day.push((day, add)),
        }
    }
    for (day, add) in &per_day {
        update(store, &day_key(day), |old| {
            let mut all = rows(old.and_then(|b| std::str::from_utf8(b).ok()).unwrap_or(""));
            merge(&mut all, add);
            rows_text(&all).into_bytes()
        })?;
    }
    if kept.is_empty() {
        return Ok(per_day);
    }
    let mut first = 0;
    update(store, "llm_gateway.spend.log_next", |old| {
        first = old
            .and_then(|b| std::str::from_utf8(b).ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        ((first + kept.len() as u64) % RECENT)
            .to_string()
            .into_bytes()
    })?;
    for (i, line) in kept.iter().enumerate() {
        let slot = (first + i as u64) % RECENT;
        let _ = store.set(
            &format!("llm_gateway.spend.log.{slot}"),
            line.as_bytes(),
            None,
        );
    }
    Ok(per_day)
}

/// The Redis hash of a day's fleet-wide totals.
pub fn redis_day_key(prefix: &str, day: &str) -> String {
    format!("{prefix}:spend:{day}")
}

/// Increments of pending rows for Redis: per row four hash fields
/// `dim \t name \t model \t i` (i: spend, prompt, completion, requests).
pub fn redis_fields(row: &Row) -> impl Iterator<Item = (String, u64)> + '_ {
    (0..4).filter_map(move |i| {
        let v = *row.n.get(i)?;
        (v > 0).then(|| (format!("{}\t{}\t{}\t{i}", row.dim, row.name, row.model), v))
    })
}

/// Fleet-wide totals read back from Redis: lines `day \t dim \t name \t
/// model \t i \t value` (the read script's answer), per day.
pub fn rows_from_redis(text: &str) -> Vec<(String, Vec<Row>)> {
    let mut out: Vec<(String, Vec<Row>)> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [day, dim, name, model, i, v] = f.as_slice() else {
            continue;
        };
        let (Ok(i), Ok(v)) = (i.parse::<usize>(), v.parse::<u64>()) else {
            continue;
        };
        let mut n = [0u64; 4];
        let Some(slot) = n.get_mut(i) else { continue };
        *slot = v;
        let row = Row {
            dim: dim.to_string(),
            name: name.to_string(),
            model: model.to_string(),
            n,
        };
        match out.iter_mut().find(|(d, _)| d == day) {
            Some((_, rows)) => merge(rows, &[row]),
            None => out.push((day.to_string(), vec![row])),
        }
    }
    out
}

/// A query parameter (percent-decoding is not needed for dates, ids and aliases
/// beyond `%20`-free values; `+` and `%xx` are decoded).
pub fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| crate::codec::url::percent_decode(v, true))
    })
}

/// Days since the epoch of `YYYY-MM-DD`.
fn parse_day(s: &str, field: &str) -> Result<i64, GatewayError> {
    let bad = || GatewayError::bad_param(field, format!("`{s}` is not a date (YYYY-MM-DD)"));
    let mut it = s.split('-');
    let (Some(y), Some(m), Some(d), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(bad());
    };
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i64>(), m.parse::<i64>(), d.parse::<i64>()) else {
        return Err(bad());
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    // days_from_civil (H. Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    if super::civil(days) != (if m <= 2 { y + 1 } else { y }, m as u32, d as u32) {
        return Err(bad());
    }
    Ok(days)
}

/// The days of `start_date..=end_date` (default: today only).
fn days(query: &str, now_ms: u64) -> Result<Vec<String>, GatewayError> {
    let today = (now_ms / 86_400_000) as i64;
    let start = match param(query, "start_date") {
        Some(s) => parse_day(&s, "start_date")?,
        None => today,
    };
    let end = match param(query, "end_date") {
        Some(s) => parse_day(&s, "end_date")?,
        None => today.max(start),
    };
    if end < start || end - start >= MAX_DAYS {
        return Err(GatewayError::bad_param(
            "end_date",
            format!("the range must run forward and span at most {MAX_DAYS} days"),
        ));
    }
    Ok((start..=end)
        .map(|d| super::day(d as u64 * 86_400_000))
        .collect())
}

/// Who may read what: `None` everything (master key, open gateway), else
/// one key alias (and its team).
pub type Reader<'a> = Option<(&'a str, Option<&'a str>)>;

/// The days a report covers (`start_date..=end_date`, default today).
pub fn report_days(query: &str, now_ms: u64) -> Result<Vec<String>, GatewayError> {
    days(query, now_ms)
}

/// This Envoy's totals of each day in the report's range.
pub fn local_days(
    store: &dyn SharedStore,
    query: &str,
    now_ms: u64,
) -> Result<Vec<(String, Vec<Row>)>, GatewayError> {
    let mut out = Vec::new();
    for d in days(query, now_ms)? {
        if let Some((bytes, _)) = store.get(&day_key(&d)) {
            out.push((d, rows(std::str::from_utf8(&bytes).unwrap_or(""))));
        }
    }
    Ok(out)
}

/// [`report_from`] this Envoy's totals.
pub fn report(
    store: &dyn SharedStore,
    query: &str,
    reader: Reader<'_>,
    now_ms: u64,
) -> Result<Vec<u8>, GatewayError> {
    report_from(&local_days(store, query, now_ms)?, query, reader)
}

/// `GET /global/spend/report?start_date&end_date&group_by=team|api_key|model`:
/// per day, LiteLLM's shape (`group_by_day`, then the groups with
/// `total_spend` and a per-model `metadata` list). A key reads only itself.
pub fn report_from(
    per_day: &[(String, Vec<Row>)],
    query: &str,
    reader: Reader<'_>,
) -> Result<Vec<u8>, GatewayError> {
    use crate::codec::json_out as j;
    let group = param(query, "group_by").unwrap_or_else(|| "team".into());
    let (dim, list, name_field) = match group.as_str() {
        "team" => ("t", "teams", "team_name"),
        "api_key" | "key" => ("k", "api_keys", "key_alias"),
        "model" => ("m", "models", "model"),
        other => {
            return Err(GatewayError::bad_param(
                "group_by",
                format!("`{other}`: use team, api_key or model"),
            ))
        }
    };
    let mut o = b"[".to_vec();
    for (d, all) in per_day {
        let mut names: Vec<&str> = Vec::new();
        for r in all.iter().filter(|r| r.dim == dim) {
            let allowed = match reader {
                None => true,
                Some((key, team)) => match dim {
                    "k" => r.name == key,
                    "t" => Some(r.name.as_str()) == team,
                    _ => false,
                },
            };
            if allowed && !names.contains(&r.name.as_str()) {
                names.push(&r.name);
            }
        }
        if names.is_empty() {
            continue;
        }
        if o.len() > 1 {
            o.push(b',');
        }
        o.extend_from_slice(b"{\"group_by_day\":");
        j::str(&mut o, d);
        o.push(b',');
        j::key(&mut o, list);
        o.push(b'[');
        for (i, name) in names.iter().enumerate() {
            let mine: Vec<&Row> = all
                .iter()
                .filter(|r| r.dim == dim && r.name == *name)
                .collect();
            let mut t = [0u64; 4];
            for r in &mine {
                for (x, n) in t.iter_mut().zip(r.n) {
                    *x += n;
                }
            }
            if i > 0 {
                o.push(b',');
            }
            o.push(b'{');
            j::key(&mut o, name_field);
            j::str(&mut o, name);
            o.extend_from_slice(b",\"total_spend\":");
            j::raw(&mut o, &super::usd(t[0]));
            for (k, v) in [
                ("total_spend_micro", t[0]),
                ("prompt_tokens", t[1]),
                ("completion_tokens", t[2]),
                ("requests", t[3]),
            ] {
                o.push(b',');
                j::key(&mut o, k);
                j::u64(&mut o, v);
            }
            o.extend_from_slice(b",\"metadata\":[");
            for (m, r) in mine.iter().enumerate() {
                if m > 0 {
                    o.push(b',');
                }
                o.extend_from_slice(b"{\"model\":");
                j::str(&mut o, &r.model);
                o.extend_from_slice(b",\"spend\":");
                j::raw(&mut o, &super::usd(r.n[0]));
                o.extend_from_slice(b",\"spend_micro\":");
                j::u64(&mut o, r.n[0]);
                o.extend_from_slice(b",\"total_tokens\":");
                j::u64(&mut o, r.n[1] + r.n[2]);
                o.push(b'}');
            }
            o.extend_from_slice(b"]}");
        }
        o.extend_from_slice(b"]}");
    }
    o.push(b']');
    Ok(o)
}

/// `GET /spend/logs?request_id&api_key&start_date&end_date`: the recent
/// records (oldest first) this Envoy kept. A key reads only its own.
pub fn logs(
    store: &dyn SharedStore,
    query: &str,
    reader: Reader<'_>,
    now_ms: u64,
) -> Result<Vec<u8>, GatewayError> {
    let range = match (param(query, "start_date"), param(query, "end_date")) {
        (None, None) => None,
        _ => Some(days(query, now_ms)?),
    };
    let want_id = param(query, "request_id");
    let want_key = param(query, "api_key");
    let want_alias = param(query, "key_alias");
    let next = store
        .get("llm_gateway.spend.log_next")
        .and_then(|(b, _)| std::str::from_utf8(&b).ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    let mut out = Vec::new();
    for i in 0..RECENT {
        let slot = (next + i) % RECENT;
        let Some((bytes, _)) = store.get(&format!("llm_gateway.spend.log.{slot}")) else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        let s = |k: &str| v.get(k).and_then(Value::as_str);
        if reader.is_some_and(|(key, _)| s("key_alias") != Some(key))
            || want_id
                .as_deref()
                .is_some_and(|w| s("request_id") != Some(w))
            || want_key.as_deref().is_some_and(|w| s("api_key") != Some(w))
            || want_alias
                .as_deref()
                .is_some_and(|w| s("key_alias") != Some(w))
            || range.as_ref().is_some_and(|days| {
                !s("endTime").is_some_and(|t| days.iter().any(|d| t.starts_with(d.as_str())))
            })
        {
            continue;
        }
        out.push(bytes);
    }
    let mut o = b"[".to_vec();
    for (i, b) in out.iter().enumerate() {
        if i > 0 {
            o.push(b',');
        }
        o.extend_from_slice(b);
    }
    o.push(b']');
    Ok(o)
}

/// The error for a report a caller may not read.
pub fn forbidden(what: &str) -> GatewayError {
    GatewayError::new(
        403,
        ErrorKind::Permission,
        format!("{what} needs the master key"),
    )
}

#[cfg(test)]
mod tests {
    use super::super::SpendRecord;
    use super::*;
    use crate::store::FakeStore;

    fn rec(key: &str, team: Option<&str>, model: &str, micro: u64, end_ms: u64) -> SpendRecord {
        SpendRecord {
            request_id: format!("r-{key}-{micro}"),
            key_alias: Some(key.into()),
            team_id: team.map(str::to_string),
            model_group: model.into(),
            prompt_tokens: 10,
            completion_tokens: 5,
            spend_micro: micro,
            status_code: 200,
            start_ms: end_ms - 5,
            end_ms,
            ..Default::default()
        }
    }

    #[test]
    fn totals_add_up_per_day_key_team_and_model_and_keys_read_only_themselves() {
        let store = FakeStore::default();
        let day1 = 1_796_673_807_500; // 2026-12-07
        let day2 = day1 + 86_400_000;
        for r in [
            rec("a", Some("t"), "gpt", 100, day1),
            rec("a", Some("t"), "claude", 50, day1),
            rec("b", None, "gpt", 7, day2),
        ] {
            apply(&store, &r.to_line()).unwrap();
        }
        let q = "start_date=2026-12-07&end_date=2026-12-08&group_by=team";
        let v: Value = serde_json::from_slice(&report(&store, q, None, day2).unwrap()).unwrap();
        assert_eq!(v[0]["group_by_day"], "2026-12-07");
        assert_eq!(v[0]["teams"][0]["total_spend_micro"], 150);
        assert_eq!(v.as_array().unwrap().len(), 1, "day 2 has no team spend");
        let q = "start_date=2026-12-07&end_date=2026-12-08&group_by=api_key";
        let v: Value =
            serde_json::from_slice(&report(&store, q, Some(("b", None)), day2).unwrap()).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1);
        assert_eq!(v[0]["api_keys"][0]["key_alias"], "b");
        let logs: Value =
            serde_json::from_slice(&logs(&store, "", Some(("a", None)), day2).unwrap()).unwrap();
        assert_eq!(logs.as_array().unwrap().len(), 2);
        assert!(report(&store, "start_date=2026-02-30", None, day2).is_err());
        assert!(report(&store, "group_by=x", None, day2).is_err());
    }
}
