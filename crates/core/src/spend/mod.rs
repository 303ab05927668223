//! Spend records: one per finished request, in a documented JSON schema
//! close to LiteLLM's `SpendLogs` row (README, "Spend logs and reports").
//!
//! The record is written where the access log reads it
//! (`%FILTER_STATE(wasm.llm_gateway.spend_log:PLAIN)%`, rendered as its own
//! log line), and handed to the counter service, which folds it into the
//! daily totals per key, team and model and a ring of recent records in
//! shared data ([`ledger`]); the report endpoints read those.

pub mod ledger;

/// One finished request, as the spend log and the reports see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpendRecord {
    pub request_id: String,
    /// `chat` or `embeddings` (LiteLLM: `acompletion` / `aembedding`).
    pub call_type: &'static str,
    /// The key's reference as `/key/info` names it (`sha256:` + 8 hex), never the key.
    pub api_key: Option<String>,
    pub key_alias: Option<String>,
    pub team_id: Option<String>,
    /// The body's `user` (LiteLLM's `end_user`).
    pub end_user: Option<String>,
    /// The alias the client asked for (LiteLLM's `model_group`).
    pub model_group: String,
    /// The provider's model of the deployment that answered.
    pub model: Option<String>,
    /// The deployment's id.
    pub model_id: Option<String>,
    pub custom_llm_provider: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub spend_micro: u64,
    pub cache_hit: bool,
    /// HTTP status the client got (0: it went away first).
    pub status_code: u16,
    pub start_ms: u64,
    pub end_ms: u64,
    pub attempts: u32,
}

impl SpendRecord {
    /// `success` or `failure`, as LiteLLM's `status`.
    pub fn status(&self) -> &'static str {
        if (200..400).contains(&self.status_code) {
            "success"
        } else {
            "failure"
        }
    }

    /// The record as one JSON object (the spend log line), written
    /// directly (the module size: a `json!` tree of this costs kilobytes).
    pub fn to_line(&self) -> String {
        use crate::codec::json_out as j;
        let mut o = Vec::with_capacity(512);
        let opt = |o: &mut Vec<u8>, k: &str, v: &Option<String>| {
            j::key(o, k);
            match v {
                Some(v) => j::str(o, v),
                None => j::raw(o, "null"),
            }
            o.push(b',');
        };
        let text = |o: &mut Vec<u8>, k: &str, v: &str| {
            j::key(o, k);
            j::str(o, v);
            o.push(b',');
        };
        let num = |o: &mut Vec<u8>, k: &str, v: u64| {
            j::key(o, k);
            j::u64(o, v);
            o.push(b',');
        };
        o.push(b'{');
        text(&mut o, "request_id", &self.request_id);
        text(&mut o, "call_type", self.call_type);
        opt(&mut o, "api_key", &self.api_key);
        opt(&mut o, "key_alias", &self.key_alias);
        opt(&mut o, "team_id", &self.team_id);
        opt(&mut o, "end_user", &self.end_user);
        text(&mut o, "model_group", &self.model_group);
        opt(&mut o, "model", &self.model);
        opt(&mut o, "model_id", &self.model_id);
        opt(&mut o, "custom_llm_provider", &self.custom_llm_provider);
        num(&mut o, "prompt_tokens", self.prompt_tokens);
        num(&mut o, "completion_tokens", self.completion_tokens);
        num(
            &mut o,
            "total_tokens",
            self.prompt_tokens + self.completion_tokens,
        );
        j::key(&mut o, "spend");
        j::raw(&mut o, &usd(self.spend_micro));
        o.push(b',');
        num(&mut o, "spend_micro", self.spend_micro);
        j::key(&mut o, "cache_hit");
        j::raw(&mut o, if self.cache_hit { "true," } else { "false," });
        text(&mut o, "status", self.status());
        num(&mut o, "status_code", u64::from(self.status_code));
        text(&mut o, "startTime", &rfc3339(self.start_ms));
        text(&mut o, "endTime", &rfc3339(self.end_ms));
        num(
            &mut o,
            "request_duration_ms",
            self.end_ms.saturating_sub(self.start_ms),
        );
        j::key(&mut o, "attempts");
        j::u64(&mut o, u64::from(self.attempts));
        o.push(b'}');
        String::from_utf8(o).unwrap_or_default()
    }
}

/// Micro-USD as a decimal number of USD (`1234` -> `0.001234`).
pub fn usd(micro: u64) -> String {
    let s = format!("{}.{:06}", micro / 1_000_000, micro % 1_000_000);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's civil_from_days).
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `YYYY-MM-DD` of a unix time in milliseconds (UTC).
pub fn day(ms: u64) -> String {
    let (y, m, d) = civil((ms / 86_400_000) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of a unix time in milliseconds.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (h, mi, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{}T{h:02}:{mi:02}:{s:02}.{:03}Z", day(ms), ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        // 2026-12-07T20:03:27.5Z
        assert_eq!(rfc3339(1_796_673_807_500), "2026-12-07T20:03:27.500Z");
        assert_eq!(day(951_782_400_000), "2000-02-29");
        assert_eq!(
            (usd(1234), usd(0), usd(2_500_000)),
            ("0.001234".into(), "0".into(), "2.5".into())
        );
        let r = SpendRecord {
            request_id: "r\"1".into(),
            call_type: "chat",
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::from_str(&r.to_line()).unwrap();
        assert_eq!(
            (v["request_id"].as_str(), v["api_key"].is_null()),
            (Some("r\"1"), true)
        );
        assert_eq!(v["spend"], 0);
    }
}
