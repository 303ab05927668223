//! `guardrails:` entries this gateway enforces: LiteLLM's built-in content
//! filter (`guardrail: litellm_content_filter`) with prebuilt patterns and
//! blocked keywords, on the request (`pre_call`, `during_call`) and on the
//! answer (`post_call`). Anything an entry asks for that is not enforced
//! here (another mode, custom regex, categories, files) makes
//! [`parse_entry`] answer [`Parsed::Unenforced`], and the configuration
//! refuses the entry like any unenforced guardrail
//! (`crate::config::unenforced`, which reads these and maps [`SpecError`]).

use serde_json::{Map, Value};

use super::detect::{Prebuilt, PREBUILT};
use super::external::{self, ExternalApi, ExternalGuard, EXTERNAL_KINDS};
use super::regex::Regex;

/// A malformed entry: the dotted field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub field: String,
    pub reason: String,
}

/// What to do with a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterAction {
    /// Refuse the request (400 `content_policy_violation`).
    Block,
    /// Replace the match with a redaction tag and go on.
    Mask,
}

/// One thing the filter looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    Prebuilt(Prebuilt),
    /// A custom pattern (`pattern_type: regex`) and its `name`.
    Regex {
        name: String,
        re: Regex,
    },
    /// Case-insensitive, at word boundaries.
    Keyword(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRule {
    pub matcher: Matcher,
    pub action: FilterAction,
}

/// One enforced guardrail.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardrailSpec {
    /// `guardrail_name`: in errors, metrics and `x-litellm-applied-guardrails`.
    pub name: String,
    /// `default_on`: runs on every request; otherwise only when the request
    /// names it (`guardrails: [name]` in the body).
    pub default_on: bool,
    /// Checks the request before any provider sees it (`pre_call`,
    /// `during_call`).
    pub input: bool,
    /// Checks the answer before the client sees it (`post_call`), streams
    /// included.
    pub output: bool,
    pub rules: Vec<FilterRule>,
    /// `pattern_redaction_format` (`{pattern_name}` is the upper-cased name).
    pub pattern_redaction_format: String,
    /// `keyword_redaction_tag`.
    pub keyword_redaction_tag: String,
    /// A guardrail service to call instead of local rules (`rules` is then
    /// empty).
    pub service: Option<Box<ExternalGuard>>,
    /// `output_parse_pii`: what this guardrail masks in the request is
    /// given back in the answer ([`super::vault`]).
    pub output_parse_pii: bool,
}

/// The outcome of reading one `guardrails:` entry.
#[derive(Debug)]
pub enum Parsed {
    Enforced(GuardrailSpec),
    /// Well formed, but asks for something not enforced here (the reason).
    Unenforced(String),
}

/// The built-in type this gateway enforces.
pub const CONTENT_FILTER: &str = "litellm_content_filter";

fn err(field: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        reason: reason.into(),
    }
}

fn action(v: Option<&Value>, field: &str) -> Result<FilterAction, SpecError> {
    match v
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        Some("BLOCK") => Ok(FilterAction::Block),
        Some("MASK") => Ok(FilterAction::Mask),
        _ => Err(err(field, "action must be BLOCK or MASK")),
    }
}

/// Where a guardrail service's calls go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`, the calls' `:authority`.
    pub authority: String,
    /// The `api_base` path (may be empty).
    pub path: String,
    /// The Envoy cluster.
    pub cluster: String,
}

/// What reading a guardrail service's entry needs from the configuration
/// (which this module does not import): secrets, clusters, the environment.
pub struct ServiceEnv<'a> {
    /// A value as written (`os.environ/NAME` resolved), naming `field` in
    /// its error.
    pub secret: &'a dyn Fn(&str, &str) -> Result<String, SpecError>,
    /// An `api_base`: where its calls go.
    pub endpoint: &'a dyn Fn(&str, &str) -> Result<Endpoint, SpecError>,
    /// An environment variable (a service's usual key variable).
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl ServiceEnv<'static> {
    /// For reading content filters alone: any service entry is an error.
    pub fn none() -> Self {
        fn no_secret(_: &str, field: &str) -> Result<String, SpecError> {
            Err(err(field, "no configuration to resolve it"))
        }
        fn no_endpoint(_: &str, field: &str) -> Result<Endpoint, SpecError> {
            Err(err(field, "no configuration to resolve it"))
        }
        fn no_env(_: &str) -> Option<String> {
            None
        }
        ServiceEnv {
            secret: &no_secret,
            endpoint: &no_endpoint,
            env: &no_env,
        }
    }
}

/// `mode`: (input, output), or why a mode is not enforced. `output_ok`:
/// the type can check answers.
fn modes(
    p: &Map<String, Value>,
    pp: &dyn Fn(&str) -> String,
    kind: &str,
    output_ok: bool,
) -> Result<Result<(bool, bool), String>, SpecError> {
    let modes: Vec<&str> = match p.get("mode") {
        None | Some(Value::Null) => vec!["pre_call"],
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        Some(_) => return Err(err(pp("mode"), "must be a mode or a list of modes")),
    };
    let supported = if output_ok {
        "pre_call, during_call and post_call"
    } else {
        "pre_call and during_call"
    };
    let (mut input, mut output) = (false, false);
    for m in &modes {
        match *m {
            // A check that runs before the provider call gains nothing from
            // racing it (LiteLLM's during_call), and run first it can mask.
            "pre_call" | "during_call" => input = true,
            "post_call" if output_ok => output = true,
            other => {
                return Ok(Err(format!(
                    "mode `{other}` (this gateway enforces `{kind}` in {supported} modes)"
                )))
            }
        }
    }
    if !(input || output) {
        return Err(err(pp("mode"), "lists no mode"));
    }
    Ok(Ok((input, output)))
}

fn default_on(p: &Map<String, Value>, pp: &dyn Fn(&str) -> String) -> Result<bool, SpecError> {
    match p.get("default_on") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(err(pp("default_on"), "must be a boolean")),
    }
}

/// `output_parse_pii` (off unless `true`).
fn output_parse_pii(
    p: &Map<String, Value>,
    pp: &dyn Fn(&str) -> String,
) -> Result<bool, SpecError> {
    match p.get("output_parse_pii") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(err(pp("output_parse_pii"), "must be a boolean")),
    }
}

/// Read `guardrails[i]`, of one of the types this gateway enforces
/// ([`CONTENT_FILTER`], or a service of [`EXTERNAL_KINDS`]).
pub fn parse_entry(
    i: usize,
    entry: &Value,
    services: &ServiceEnv<'_>,
) -> Result<Parsed, SpecError> {
    let path = format!("guardrails[{i}]");
    let name = entry
        .get("guardrail_name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| err(format!("{path}.guardrail_name"), "missing or not a string"))?
        .to_string();
    let empty = Map::new();
    let p = entry
        .get("litellm_params")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let pp = |k: &str| format!("{path}.litellm_params.{k}");
    let kind = p
        .get("guardrail")
        .and_then(Value::as_str)
        .unwrap_or(CONTENT_FILTER);
    if EXTERNAL_KINDS.contains(&kind) {
        return parse_service(name, kind, p, &pp, services);
    }
    let (input, output) = match modes(p, &pp, CONTENT_FILTER, true)? {
        Ok(m) => m,
        Err(why) => return Ok(Parsed::Unenforced(why)),
    };
    for k in p.keys() {
        match k.as_str() {
            "guardrail"
            | "mode"
            | "default_on"
            | "patterns"
            | "blocked_words"
            | "pattern_redaction_format"
            | "keyword_redaction_tag"
            | "output_parse_pii" => {}
            "blocked_words_file" => {
                return Ok(Parsed::Unenforced(
                    "`litellm_params.blocked_words_file` (the filter cannot read files; \
                     `llm-gateway render` and `check` put the file's words in the config)"
                        .to_string(),
                ))
            }
            other => {
                return Ok(Parsed::Unenforced(format!(
                    "`litellm_params.{other}` is not enforced by this gateway's content filter"
                )))
            }
        }
    }
    let default_on = default_on(p, &pp)?;
    let mut rules = Vec::new();
    for (j, pat) in p
        .get("patterns")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let f = pp(&format!("patterns[{j}]"));
        match pat.get("pattern_type").and_then(Value::as_str) {
            Some("prebuilt") | None => {}
            Some("regex") => {
                let source = pat
                    .get("pattern")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| err(format!("{f}.pattern"), "missing (required for regex)"))?;
                let re = Regex::new(source).map_err(|e| err(format!("{f}.pattern"), e.0))?;
                let name = match pat.get("name") {
                    None | Some(Value::Null) => "custom_regex".to_string(),
                    Some(Value::String(s)) if !s.is_empty() => s.clone(),
                    Some(_) => return Err(err(format!("{f}.name"), "must be a string")),
                };
                rules.push(FilterRule {
                    matcher: Matcher::Regex { name, re },
                    action: action(pat.get("action"), &format!("{f}.action"))?,
                });
                continue;
            }
            Some(other) => {
                return Ok(Parsed::Unenforced(format!(
                    "pattern_type `{other}` at {f} (this gateway has prebuilt and regex patterns)"
                )))
            }
        }
        let pname = pat
            .get("pattern_name")
            .and_then(Value::as_str)
            .ok_or_else(|| err(format!("{f}.pattern_name"), "missing"))?;
        let Some(pre) = Prebuilt::by_name(pname) else {
            return Ok(Parsed::Unenforced(format!(
                "prebuilt pattern `{pname}` at {f} is not one of this gateway's: {}",
                PREBUILT
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        rules.push(FilterRule {
            matcher: Matcher::Prebuilt(pre),
            action: action(pat.get("action"), &format!("{f}.action"))?,
        });
    }
    for (j, w) in p
        .get("blocked_words")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let f = pp(&format!("blocked_words[{j}]"));
        let kw = w
            .get("keyword")
            .and_then(Value::as_str)
            .filter(|k| !k.trim().is_empty())
            .ok_or_else(|| err(format!("{f}.keyword"), "missing or empty"))?;
        rules.push(FilterRule {
            matcher: Matcher::Keyword(kw.to_lowercase()),
            action: action(w.get("action"), &format!("{f}.action"))?,
        });
    }
    if rules.is_empty() {
        return Err(err(
            pp("patterns"),
            "a content filter needs patterns or blocked_words",
        ));
    }
    let text = |k: &str, default: &str| -> Result<String, SpecError> {
        match p.get(k) {
            None | Some(Value::Null) => Ok(default.to_string()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(err(pp(k), "must be a string")),
        }
    };
    let pattern_redaction_format = text("pattern_redaction_format", "[{pattern_name}_REDACTED]")?;
    if !pattern_redaction_format.contains("{pattern_name}") {
        return Err(err(
            pp("pattern_redaction_format"),
            "must contain the {pattern_name} placeholder",
        ));
    }
    Ok(Parsed::Enforced(GuardrailSpec {
        name,
        default_on,
        input,
        output,
        rules,
        pattern_redaction_format,
        keyword_redaction_tag: text("keyword_redaction_tag", "[KEYWORD_REDACTED]")?,
        service: None,
        output_parse_pii: output_parse_pii(p, &pp)?,
    }))
}

/// A guardrail service's entry, its secrets and cluster resolved.
fn parse_service(
    name: String,
    kind: &str,
    p: &Map<String, Value>,
    pp: &dyn Fn(&str) -> String,
    services: &ServiceEnv<'_>,
) -> Result<Parsed, SpecError> {
    let (input, output) = match modes(p, pp, kind, true)? {
        Ok(m) => m,
        Err(why) => return Ok(Parsed::Unenforced(why)),
    };
    let default_on = default_on(p, pp)?;
    let output_parse_pii = output_parse_pii(p, pp)?;
    let e = match external::parse(kind, p, pp) {
        Ok(e) => e,
        Err(Ok(why)) => return Ok(Parsed::Unenforced(why)),
        Err(Err(e)) => return Err(e),
    };
    let base_field = pp(if e.api == ExternalApi::Presidio {
        "presidio_analyzer_api_base"
    } else {
        "api_base"
    });
    let api_base = (services.secret)(&e.api_base, &base_field)?;
    let Endpoint {
        authority,
        path: base_path,
        cluster,
    } = (services.endpoint)(&api_base, &base_field)?;
    let api_key = match (&e.api_key, e.api) {
        (Some(k), _) => Some((services.secret)(k, &pp("api_key"))?),
        (None, ExternalApi::OpenAiModeration) => {
            Some((services.env)("OPENAI_API_KEY").ok_or_else(|| {
                err(
                    pp("api_key"),
                    "missing: the OpenAI API key (or set OPENAI_API_KEY)",
                )
            })?)
        }
        (None, ExternalApi::Generic | ExternalApi::Presidio) => None,
    };
    Ok(Parsed::Enforced(GuardrailSpec {
        name,
        default_on,
        input,
        output,
        rules: Vec::new(),
        pattern_redaction_format: String::new(),
        keyword_redaction_tag: String::new(),
        service: Some(Box::new(ExternalGuard {
            api: e.api,
            authority,
            base_path,
            cluster,
            api_key,
            headers: e.headers,
            params: e.params,
            model: e.model,
            presidio: e.presidio,
            timeout_ms: e.timeout_ms,
            fail_open: e.fail_open,
            fail_on_error: e.fail_on_error,
        })),
        output_parse_pii,
    }))
}
