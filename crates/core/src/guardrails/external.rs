//! Guardrails that are services: LiteLLM's generic guardrail API
//! (`guardrail: generic_guardrail_api`), the OpenAI moderation API
//! (`guardrail: openai_moderation`) and Presidio's analyzer
//! (`guardrail: presidio`), called with `dispatch_http_call` on the
//! request's texts before any provider sees them.
//!
//! Presidio: the analyzer finds the entities (one call for all the texts,
//! joined by blank lines); what its anonymizer's default `replace`
//! operator would write (`<ENTITY_TYPE>`) is written here, so a request
//! costs one round trip instead of LiteLLM's two, with the same text.
//!
//! Everything here is pure: reading an entry ([`parse`]), the call to make
//! ([`ExternalGuard::call_body`]) and what its answer means ([`ExternalGuard::verdict`]).
//! The hook (`crate::pipeline::hooks`) dispatches and waits.
//!
//! Failure policy, as LiteLLM's: `unreachable_fallback` (`fail_closed`, the
//! default, or `fail_open`) for a service that cannot be reached, timed out
//! or answered 502/503/504; `fail_on_error` (default true) for any other
//! failure (another status, an answer that is not the documented shape).
//! Closed refuses the request with 503; open lets it through unchecked and
//! counts the guardrail `errored`.

use serde_json::{json, Map, Value};

use super::spec::SpecError;
use super::vault::Vault;

/// Which service API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalApi {
    /// `POST {api_base}/beta/litellm_basic_guardrail_api`.
    Generic,
    /// `POST {api_base}/moderations` (OpenAI's).
    OpenAiModeration,
    /// `POST {presidio_analyzer_api_base}/analyze`.
    Presidio,
}

/// Presidio's settings (`pii_entities_config` and friends).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PresidioSettings {
    /// `pii_entities_config`: entity type -> block (true) or mask; empty:
    /// every entity the analyzer finds is masked.
    pub entities: Vec<(String, bool)>,
    /// `presidio_language` (default `en`).
    pub language: String,
    /// `presidio_score_thresholds`: entity type (or `ALL`) -> least score.
    pub thresholds: Vec<(String, f64)>,
    /// `presidio_entities_deny_list`: entity types never acted on.
    pub deny: Vec<String>,
}

/// One guardrail service and how to call it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalGuard {
    pub api: ExternalApi,
    /// `api_base`'s `host[:port]` (the calls' `:authority`) and path.
    pub authority: String,
    pub base_path: String,
    /// The Envoy cluster the calls go to (`gateway.clusters`, by host).
    pub cluster: String,
    /// `api_key` (or `os.environ/NAME`), resolved when the configuration loads.
    pub api_key: Option<String>,
    /// `headers`: sent with every call.
    pub headers: Vec<(String, String)>,
    /// `additional_provider_specific_params` (generic API).
    pub params: Map<String, Value>,
    /// `model` (moderation).
    pub model: String,
    /// Presidio's settings.
    pub presidio: PresidioSettings,
    /// `timeout`, ms (default [`DEFAULT_TIMEOUT_MS`]).
    pub timeout_ms: u64,
    /// `unreachable_fallback: fail_open`.
    pub fail_open: bool,
    /// `fail_on_error` (default true).
    pub fail_on_error: bool,
}

/// A guardrail call's default timeout (LiteLLM has none of its own: its
/// HTTP client's default is 5 s of connect and read).
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;

/// The service types this module implements.
pub const EXTERNAL_KINDS: &[&str] = &["generic_guardrail_api", "openai_moderation", "presidio"];

/// What an answer means for the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to change.
    Pass,
    /// The texts, rewritten (same number, same order).
    Rewrite(Vec<String>),
    /// Refused, and why (the service's words).
    Block(String),
    /// The call failed: `unreachable` (no answer, timeout, 502-504) or
    /// another failure, and a description for the log.
    Failed { unreachable: bool, why: String },
}

/// The parts of an entry read before the configuration resolves secrets
/// and clusters (`crate::config`).
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalEntry {
    pub api: ExternalApi,
    /// `api_base` as written (a default for OpenAI moderation).
    pub api_base: String,
    /// `api_key` as written (`os.environ/NAME` still unresolved).
    pub api_key: Option<String>,
    pub headers: Vec<(String, String)>,
    pub params: Map<String, Value>,
    pub model: String,
    pub presidio: PresidioSettings,
    pub timeout_ms: u64,
    pub fail_open: bool,
    pub fail_on_error: bool,
}

/// Read the service part of an entry of type `kind` (`p`: its
/// `litellm_params`). `Err(Ok(why))` is a field this gateway does not
/// enforce; `Err(Err(e))` a malformed one.
pub fn parse(
    kind: &str,
    p: &Map<String, Value>,
    pp: &dyn Fn(&str) -> String,
) -> Result<ExternalEntry, Result<String, SpecError>> {
    // The error part of a malformed field (`Err(bad(..))`).
    let bad = |k: &str, reason: &str| -> Result<String, SpecError> {
        Err(SpecError {
            field: pp(k),
            reason: reason.to_string(),
        })
    };
    let api = match kind {
        "generic_guardrail_api" => ExternalApi::Generic,
        "openai_moderation" => ExternalApi::OpenAiModeration,
        "presidio" => ExternalApi::Presidio,
        other => {
            return Err(Ok(format!(
                "`{other}` is not a guardrail service this gateway calls"
            )))
        }
    };
    let known: &[&str] = match api {
        ExternalApi::Generic => &[
            "api_base",
            "api_key",
            "headers",
            "additional_provider_specific_params",
            "unreachable_fallback",
            "fail_on_error",
            "timeout",
        ],
        ExternalApi::OpenAiModeration => &["api_base", "api_key", "model", "timeout"],
        ExternalApi::Presidio => &[
            "presidio_analyzer_api_base",
            "presidio_anonymizer_api_base",
            "pii_entities_config",
            "presidio_language",
            "presidio_score_thresholds",
            "presidio_entities_deny_list",
            "output_parse_pii",
            "unreachable_fallback",
            "fail_on_error",
            "timeout",
        ],
    };
    for k in p.keys() {
        let common = matches!(
            k.as_str(),
            "guardrail" | "mode" | "default_on" | "guardrail_info" | "description"
        );
        if !common && !known.contains(&k.as_str()) {
            return Err(Ok(format!(
                "`litellm_params.{k}` is not enforced by this gateway's `{kind}` guardrail"
            )));
        }
    }
    let text = |k: &str| -> Result<Option<String>, Result<String, SpecError>> {
        match p.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(bad(k, "must be a non-empty string")),
        }
    };
    let base_key = if api == ExternalApi::Presidio {
        "presidio_analyzer_api_base"
    } else {
        "api_base"
    };
    let api_base = match (text(base_key)?, api) {
        (Some(b), _) => b,
        (None, ExternalApi::OpenAiModeration) => "https://api.openai.com/v1".to_string(),
        (None, _) => return Err(bad(base_key, "missing: the guardrail service's URL")),
    };
    let presidio = if api == ExternalApi::Presidio {
        presidio_settings(p, &text, &bad)?
    } else {
        PresidioSettings::default()
    };
    let mut headers = Vec::new();
    match p.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => {
            for (k, v) in h {
                let Some(v) = v.as_str() else {
                    return Err(bad(&format!("headers.{k}"), "must be a string"));
                };
                headers.push((k.to_ascii_lowercase(), v.to_string()));
            }
        }
        Some(_) => {
            return Err(bad(
                "headers",
                "must be a mapping of header names to values",
            ))
        }
    }
    let params = match p.get("additional_provider_specific_params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(bad(
                "additional_provider_specific_params",
                "must be a mapping",
            ))
        }
    };
    let timeout_ms = match p.get("timeout") {
        None | Some(Value::Null) => DEFAULT_TIMEOUT_MS,
        Some(v) => match v.as_f64() {
            Some(s) if s > 0.0 && s <= 600.0 => (s * 1000.0).round() as u64,
            _ => {
                return Err(bad(
                    "timeout",
                    "must be a number of seconds (0 < timeout <= 600)",
                ))
            }
        },
    };
    let fail_open = match text("unreachable_fallback")?.as_deref() {
        None | Some("fail_closed") => false,
        Some("fail_open") => true,
        Some(_) => {
            return Err(bad(
                "unreachable_fallback",
                "must be fail_closed or fail_open",
            ))
        }
    };
    let fail_on_error = match p.get("fail_on_error") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("fail_on_error", "must be a boolean")),
    };
    Ok(ExternalEntry {
        api,
        api_base,
        api_key: text("api_key")?,
        headers,
        params,
        model: text("model")?.unwrap_or_else(|| "omni-moderation-latest".to_string()),
        presidio,
        timeout_ms,
        fail_open,
        fail_on_error,
    })
}

type TextField<'a> = dyn Fn(&str) -> Result<Option<String>, Result<String, SpecError>> + 'a;
type BadField<'a> = dyn Fn(&str, &str) -> Result<String, SpecError> + 'a;

/// `pii_entities_config`, `presidio_language`, `presidio_score_thresholds`,
/// `presidio_entities_deny_list`.
fn presidio_settings(
    p: &Map<String, Value>,
    text: &TextField<'_>,
    bad: &BadField<'_>,
) -> Result<PresidioSettings, Result<String, SpecError>> {
    let mut entities = Vec::new();
    match p.get("pii_entities_config") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (entity, action) in m {
                let block = match action.as_str().map(str::to_ascii_uppercase).as_deref() {
                    Some("BLOCK") => true,
                    Some("MASK") => false,
                    _ => {
                        let field = format!("pii_entities_config.{entity}");
                        return Err(bad(&field, "must be MASK or BLOCK"));
                    }
                };
                entities.push((entity.clone(), block));
            }
        }
        Some(_) => {
            let why = "must be a mapping of entity types to MASK or BLOCK";
            return Err(bad("pii_entities_config", why));
        }
    }
    let mut thresholds = Vec::new();
    match p.get("presidio_score_thresholds") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (entity, v) in m {
                match v.as_f64() {
                    Some(t) if (0.0..=1.0).contains(&t) => thresholds.push((entity.clone(), t)),
                    _ => {
                        let field = format!("presidio_score_thresholds.{entity}");
                        return Err(bad(&field, "must be a score between 0 and 1"));
                    }
                }
            }
        }
        Some(_) => {
            let why = "must be a mapping of entity types to scores";
            return Err(bad("presidio_score_thresholds", why));
        }
    }
    let list_bad = || {
        bad(
            "presidio_entities_deny_list",
            "must be a list of entity types",
        )
    };
    let deny = match p.get("presidio_entities_deny_list") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => {
            let mut out = Vec::new();
            for v in a {
                match v.as_str() {
                    Some(s) => out.push(s.to_string()),
                    None => return Err(list_bad()),
                }
            }
            out
        }
        Some(_) => return Err(list_bad()),
    };
    Ok(PresidioSettings {
        entities,
        language: text("presidio_language")?.unwrap_or_else(|| "en".to_string()),
        thresholds,
        deny,
    })
}

/// Between the texts of one Presidio call (Presidio counts characters, not
/// bytes, in the spans it answers with).
const JOIN: &str = "\n\n";

/// Who is calling, for the generic API's `request_data`.
#[derive(Debug, Clone, Default)]
pub struct CallContext<'a> {
    pub key_alias: Option<&'a str>,
    pub team_id: Option<&'a str>,
    /// The request's id (`chatcmpl-...`), LiteLLM's `litellm_call_id`.
    pub call_id: &'a str,
    /// What is checked: `request` or `response` (the generic API's
    /// `input_type`).
    pub input_type: &'a str,
}

impl ExternalGuard {
    /// The path the call goes to.
    pub fn path(&self) -> String {
        let base = self.base_path.trim_end_matches('/');
        let endpoint = match self.api {
            ExternalApi::Generic => "/beta/litellm_basic_guardrail_api",
            ExternalApi::OpenAiModeration => "/moderations",
            ExternalApi::Presidio => "/analyze",
        };
        // LiteLLM accepts an api_base that already ends with the endpoint.
        if base.ends_with(endpoint) {
            base.to_string()
        } else {
            format!("{base}{endpoint}")
        }
    }

    /// Headers (besides the pseudo-headers) of a call.
    pub fn call_headers(&self) -> Vec<(String, String)> {
        let mut h = vec![("content-type".to_string(), "application/json".to_string())];
        if let Some(k) = &self.api_key {
            match self.api {
                // LiteLLM sends the generic API's key as `x-api-key`.
                ExternalApi::Generic => h.push(("x-api-key".into(), k.clone())),
                ExternalApi::OpenAiModeration => {
                    h.push(("authorization".into(), format!("Bearer {k}")))
                }
                ExternalApi::Presidio => {}
            }
        }
        h.extend(self.headers.iter().cloned());
        h
    }

    /// The body of a call checking `texts` (the request's, in order).
    pub fn call_body(&self, texts: &[String], who: &CallContext<'_>) -> Vec<u8> {
        let v = match self.api {
            ExternalApi::Generic => {
                let mut request_data = Map::new();
                if let Some(a) = who.key_alias {
                    request_data.insert("user_api_key_alias".into(), json!(a));
                }
                if let Some(t) = who.team_id {
                    request_data.insert("user_api_key_team_id".into(), json!(t));
                }
                json!({
                    "texts": texts,
                    "request_data": request_data,
                    "input_type": who.input_type,
                    "litellm_call_id": who.call_id,
                    "additional_provider_specific_params": self.params,
                })
            }
            ExternalApi::OpenAiModeration => json!({"model": self.model, "input": texts}),
            ExternalApi::Presidio => {
                let mut v = json!({"text": texts.join(JOIN), "language": self.presidio.language});
                if !self.presidio.entities.is_empty() {
                    let names: Vec<&str> = self
                        .presidio
                        .entities
                        .iter()
                        .map(|(e, _)| e.as_str())
                        .collect();
                    v["entities"] = json!(names);
                }
                v
            }
        };
        serde_json::to_vec(&v).unwrap_or_default()
    }

    /// What the service's answer means: `status` `None` is no answer at all
    /// (connection refused, reset, timeout). `texts`: what was sent.
    /// `vault`: Presidio's findings become numbered tokens kept there
    /// (`output_parse_pii`).
    pub fn verdict(
        &self,
        status: Option<u16>,
        body: &[u8],
        texts: &[String],
        vault: Option<&mut Vault>,
    ) -> Verdict {
        let failed = |unreachable: bool, why: String| Verdict::Failed { unreachable, why };
        match status {
            None => return failed(true, "no answer (unreachable or timed out)".into()),
            Some(s @ (502..=504)) => return failed(true, format!("answered HTTP {s}")),
            Some(200) => {}
            Some(s) => return failed(false, format!("answered HTTP {s}")),
        }
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return failed(false, "answered something that is not JSON".into());
        };
        match self.api {
            ExternalApi::Generic => match v.get("action").and_then(Value::as_str) {
                Some("NONE") => Verdict::Pass,
                Some("BLOCKED") => Verdict::Block(
                    v.get("blocked_reason")
                        .and_then(Value::as_str)
                        .unwrap_or("Content violates policy")
                        .to_string(),
                ),
                Some("GUARDRAIL_INTERVENED") => match v.get("texts").and_then(Value::as_array) {
                    None => Verdict::Pass,
                    Some(t) => {
                        let out: Option<Vec<String>> =
                            t.iter().map(|x| x.as_str().map(str::to_string)).collect();
                        match out {
                            Some(out) if out.len() == texts.len() => {
                                if out == texts {
                                    Verdict::Pass
                                } else {
                                    Verdict::Rewrite(out)
                                }
                            }
                            _ => failed(
                                false,
                                format!(
                                    "rewrote {} texts into something else than {} strings",
                                    texts.len(),
                                    texts.len()
                                ),
                            ),
                        }
                    }
                },
                _ => failed(false, "answered without a known `action`".into()),
            },
            ExternalApi::Presidio => self.presidio_verdict(&v, texts, vault),
            ExternalApi::OpenAiModeration => {
                let Some(results) = v.get("results").and_then(Value::as_array) else {
                    return failed(false, "answered without `results`".into());
                };
                let mut flagged: Vec<String> = Vec::new();
                let mut any = false;
                for r in results {
                    if r.get("flagged").and_then(Value::as_bool) == Some(true) {
                        any = true;
                        if let Some(c) = r.get("categories").and_then(Value::as_object) {
                            for (name, on) in c {
                                if on.as_bool() == Some(true) && !flagged.contains(name) {
                                    flagged.push(name.clone());
                                }
                            }
                        }
                    }
                }
                if any {
                    Verdict::Block(format!(
                        "Violated OpenAI moderation policy ({})",
                        if flagged.is_empty() {
                            "flagged".to_string()
                        } else {
                            flagged.join(", ")
                        }
                    ))
                } else {
                    Verdict::Pass
                }
            }
        }
    }

    /// The analyzer's findings on the joined texts: a blocked entity
    /// refuses; the others are replaced by `<ENTITY_TYPE>` in each text
    /// (Presidio's `replace` operator), overlapping findings once; with a
    /// `vault`, by `<ENTITY_TYPE_n>` tokens it remembers.
    fn presidio_verdict(
        &self,
        v: &Value,
        texts: &[String],
        mut vault: Option<&mut Vault>,
    ) -> Verdict {
        let Some(items) = v.as_array() else {
            return Verdict::Failed {
                unreachable: false,
                why: "answered something else than a list of findings".into(),
            };
        };
        let cfg = &self.presidio;
        // (start, end, entity) in chars of the joined text.
        let mut found: Vec<(usize, usize, &str)> = Vec::new();
        for it in items {
            let (Some(entity), Some(start), Some(end)) = (
                it.get("entity_type").and_then(Value::as_str),
                it.get("start").and_then(Value::as_u64),
                it.get("end").and_then(Value::as_u64),
            ) else {
                continue;
            };
            if cfg.deny.iter().any(|d| d == entity) {
                continue;
            }
            let least = cfg
                .thresholds
                .iter()
                .find(|(e, _)| e == entity)
                .or_else(|| cfg.thresholds.iter().find(|(e, _)| e == "ALL"))
                .map(|(_, t)| *t);
            let score = it.get("score").and_then(Value::as_f64);
            if least.is_some_and(|t| score.is_none_or(|s| s < t)) {
                continue;
            }
            if cfg.entities.iter().any(|(e, block)| e == entity && *block) {
                return Verdict::Block(format!("PII entity `{entity}` detected"));
            }
            if start < end {
                found.push((start as usize, end as usize, entity));
            }
        }
        if found.is_empty() {
            return Verdict::Pass;
        }
        let found =
            crate::sort::sorted_by(found, &|a: &(usize, usize, _), b: &(usize, usize, _)| {
                a.0.cmp(&b.0).then(b.1.cmp(&a.1)).is_lt()
            });
        let sep = JOIN.chars().count();
        let mut out = Vec::with_capacity(texts.len());
        let mut offset = 0;
        for t in texts {
            let chars: Vec<char> = t.chars().collect();
            let mut rewritten = String::with_capacity(t.len());
            let mut at = 0;
            for (start, end, entity) in &found {
                // Findings inside this text, not overlapping one replaced.
                if *start < offset + at || *end > offset + chars.len() {
                    continue;
                }
                let (s, e) = (start - offset, end - offset);
                rewritten.extend(&chars[at..s]);
                let tag = format!("<{entity}>");
                match vault.as_deref_mut() {
                    Some(v) => {
                        let original: String = chars[s..e].iter().collect();
                        rewritten.push_str(&v.token(&tag, &original));
                    }
                    None => rewritten.push_str(&tag),
                }
                at = e;
            }
            rewritten.extend(&chars[at..]);
            out.push(rewritten);
            offset += chars.len() + sep;
        }
        if out == texts {
            Verdict::Pass
        } else {
            Verdict::Rewrite(out)
        }
    }
}
