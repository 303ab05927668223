//! The Redis store: answers in Redis, shared by every Envoy of the fleet,
//! reached through the fleet counters' webdis (`counters.redis`), with the
//! same `EVAL`-only access the counters use (webdis's ACL needs nothing
//! else). A read is one round trip at admission; a store is sent and not
//! waited for. Redis expires entries itself (`SET ... EX ttl`).

use serde_json::Value;

use crate::accounting::fleet::{webdis_arg, FleetSettings};

const GET_SCRIPT: &str = "return redis.call('GET', KEYS[1])";
const SET_SCRIPT: &str = "if tonumber(ARGV[2]) > 0 then \
     return redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) \
     else return redis.call('SET', KEYS[1], ARGV[1]) end";

fn redis_key(settings: &FleetSettings, key: &str) -> String {
    format!("{}:cache:{key}", settings.key_prefix)
}

fn eval(script: &str, args: &[&str]) -> Vec<u8> {
    match args.split_first() {
        Some((key, rest)) => eval_keys(script, &[key], rest),
        None => eval_keys(script, &[], &[]),
    }
}

/// A webdis `EVAL/<script>/<n>/<keys...>/<args...>` body.
pub fn eval_keys(script: &str, keys: &[&str], args: &[&str]) -> Vec<u8> {
    let mut s = String::with_capacity(
        script.len() * 2 + keys.iter().chain(args).map(|a| a.len() * 3).sum::<usize>(),
    );
    s.push_str("EVAL/");
    webdis_arg(script, &mut s);
    s.push('/');
    s.push_str(&keys.len().to_string());
    for a in keys.iter().chain(args) {
        s.push('/');
        webdis_arg(a, &mut s);
    }
    s.into_bytes()
}

/// The webdis body reading `key`.
pub fn get_body(settings: &FleetSettings, key: &str) -> Vec<u8> {
    eval(GET_SCRIPT, &[&redis_key(settings, key)])
}

/// The webdis body storing `entry` (text) under `key` for `ttl_s` (0: no expiry).
pub fn set_body(settings: &FleetSettings, key: &str, entry: &str, ttl_s: u64) -> Vec<u8> {
    eval(
        SET_SCRIPT,
        &[&redis_key(settings, key), entry, &ttl_s.to_string()],
    )
}

/// A webdis answer as JSON, or why there is none.
pub fn webdis_json(status: Option<u16>, body: &[u8]) -> Result<Value, String> {
    match status {
        Some(200) => {}
        Some(s) => return Err(format!("webdis answered HTTP {s}")),
        None => return Err("webdis unreachable".into()),
    }
    serde_json::from_slice(body).map_err(|e| format!("webdis answer: {e}"))
}

/// Webdis's answer to a read: `Ok(None)` when nothing is stored, `Err`
/// when Redis could not answer.
pub fn read_answer(status: Option<u16>, body: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let v = webdis_json(status, body)?;
    match v.get("EVAL") {
        Some(Value::String(s)) => Ok(Some(s.clone().into_bytes())),
        Some(Value::Null) | Some(Value::Bool(false)) => Ok(None),
        _ => Err("webdis answer has no EVAL value".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fleet::parse_settings;
    use serde_json::json;

    #[test]
    fn bodies_and_answers() {
        let s = parse_settings(Some(&json!({"redis": {"cluster": "webdis"}})))
            .unwrap()
            .unwrap();
        let b = String::from_utf8(get_body(&s, "ns:ab")).unwrap();
        assert!(b.starts_with("EVAL/return%20redis%2Ecall"), "{b}");
        assert!(b.ends_with("/1/llmgw%3Acache%3Ans%3Aab"), "{b}");
        let set = String::from_utf8(set_body(&s, "k", "LGC1 x/y.z\n{}", 30)).unwrap();
        assert!(set.ends_with("/LGC1%20x%2Fy%2Ez%0A%7B%7D/30"), "{set}");
        assert_eq!(
            read_answer(Some(200), br#"{"EVAL":"v"}"#),
            Ok(Some(b"v".to_vec()))
        );
        assert_eq!(read_answer(Some(200), br#"{"EVAL":null}"#), Ok(None));
        assert!(read_answer(Some(503), b"").is_err());
        assert!(read_answer(None, b"").is_err());
        assert!(read_answer(Some(200), b"<html>").is_err());
    }
}
