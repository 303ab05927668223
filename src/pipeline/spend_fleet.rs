//! Spend totals across the fleet: with `counters.redis`, the counter
//! service adds what this Envoy's requests spent into one Redis hash per
//! day (batched per tick, one webdis call in the air, never per request),
//! and `/global/spend/report` reads those hashes back (one call). The rows
//! are `crate::spend::ledger`'s; this module is the webdis side.

use crate::accounting::fleet::FleetSettings;
use crate::pipeline::hooks::cache::redis::{eval_keys, webdis_json};
use crate::spend::ledger::{self, Row};

/// Rows sent per flush call (the rest wait for the next tick).
pub const MAX_ROWS_PER_CALL: usize = 200;
/// Rows kept while Redis is away (then the oldest are dropped, counted).
pub const MAX_PENDING_ROWS: usize = 10_000;
/// Redis keeps a day's totals 400 days.
const EXPIRE_S: &str = "34560000";

// `#ARGV - 1`: the last argument is the expiry, not a triple (a loop to
// `#ARGV` would run once more on it, fail the script after its increments
// landed, and the retry would add them again).
const FLUSH_SCRIPT: &str = "for i = 1, #ARGV - 1, 3 do \
     local k = KEYS[tonumber(ARGV[i])] \
     redis.call('HINCRBY', k, ARGV[i+1], ARGV[i+2]) \
     redis.call('EXPIRE', k, ARGV[#ARGV]) end return 1";

const READ_SCRIPT: &str = "local out = {} \
     for i, k in ipairs(KEYS) do \
       local h = redis.call('HGETALL', k) \
       for j = 1, #h, 2 do out[#out+1] = ARGV[i] .. '\\t' .. h[j] .. '\\t' .. h[j+1] end \
     end return table.concat(out, '\\n')";

/// The webdis body adding `rows` (each with its day) to Redis.
pub fn flush_body(settings: &FleetSettings, rows: &[(String, Row)]) -> Vec<u8> {
    let mut keys: Vec<String> = Vec::new();
    let mut args: Vec<String> = Vec::new();
    for (day, row) in rows {
        let key = ledger::redis_day_key(&settings.key_prefix, day);
        let idx = match keys.iter().position(|k| *k == key) {
            Some(i) => i + 1,
            None => {
                keys.push(key);
                keys.len()
            }
        };
        for (field, v) in ledger::redis_fields(row) {
            args.push(idx.to_string());
            args.push(field);
            args.push(v.to_string());
        }
    }
    // The last argument is the expiry (the loop stops before it: #ARGV is 3n+1).
    args.push(EXPIRE_S.to_string());
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    eval_keys(FLUSH_SCRIPT, &keys, &args)
}

/// The webdis body reading the totals of `days`.
pub fn read_body(settings: &FleetSettings, days: &[String]) -> Vec<u8> {
    let keys: Vec<String> = days
        .iter()
        .map(|d| ledger::redis_day_key(&settings.key_prefix, d))
        .collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let args: Vec<&str> = days.iter().map(String::as_str).collect();
    eval_keys(READ_SCRIPT, &keys, &args)
}

/// The totals read back, per day; `Err` when Redis could not answer.
pub fn read_answer(status: Option<u16>, body: &[u8]) -> Result<Vec<(String, Vec<Row>)>, String> {
    let v = webdis_json(status, body)?;
    match v.get("EVAL") {
        Some(serde_json::Value::String(s)) => Ok(ledger::rows_from_redis(s)),
        _ => Err("webdis answer has no EVAL text".into()),
    }
}

/// Whether a flush call succeeded.
pub fn flushed(status: Option<u16>, body: &[u8]) -> bool {
    webdis_json(status, body).is_ok_and(|v| v.get("EVAL").is_some_and(|e| e.as_i64() == Some(1)))
}

/// Add `add` (rows of `day`) to the pending rows.
pub fn pend(pending: &mut Vec<(String, Row)>, day: &str, add: &[Row]) {
    for a in add {
        match pending
            .iter_mut()
            .find(|(d, r)| d == day && r.dim == a.dim && r.name == a.name && r.model == a.model)
        {
            Some((_, r)) => {
                for (x, n) in r.n.iter_mut().zip(a.n) {
                    *x = x.saturating_add(n);
                }
            }
            None => pending.push((day.to_string(), a.clone())),
        }
    }
}
