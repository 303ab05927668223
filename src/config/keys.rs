//! Virtual keys, teams and the master key: configuration and authentication.
//!
//! # Configuration
//!
//! ```yaml
//! virtual_keys:
//!   - key_hash: "sha256:<64 hex>"   # sha256 of the plain key; plain keys never in config
//!     key_alias: team-search        # required, unique: logs, metrics, errors, /key/info
//!     models: [smart, cheap]        # allowed model aliases; absent/empty = all
//!     max_budget: 25.0              # USD
//!     budget_duration: 30d          # Ns, Nm, Nh, Nd, Nw
//!     rpm_limit: 120
//!     tpm_limit: 200000
//!     max_parallel_requests: 4
//!     team: search                  # (or team_id) must be listed in `teams`
//!     model_max_budget: {smart: {budget_limit: 10.0, time_period: 1d}}
//! teams:
//!   - team_id: search
//!     models: [smart]               # optional: narrows every member key's models
//!     max_budget: 100.0
//!     budget_duration: 30d
//!     rpm_limit / tpm_limit / max_parallel_requests
//! general_settings:
//!   master_key: os.environ/GATEWAY_MASTER_KEY   # plain (from env) or "sha256:<hex>"
//! gateway:
//!   budget_reservation: true        # default true
//!   default_max_tokens: 4096        # reservation output estimate without max_tokens
//!   enforce_mid_stream: false       # default false
//! ```
//!
//! - With neither `virtual_keys` nor `general_settings.master_key`, the
//!   gateway runs **open**: every request is admitted, nothing is counted.
//!   With either (even `virtual_keys: []`), every request needs a key.
//! - `key_alias` and `team_id` are 1-64 characters of `A-Z a-z 0-9 . _ -`:
//!   they become parts of shared-data keys, metric tags and headers.
//! - Every field is checked strictly: an unknown or mistyped field fails the
//!   load with its path (`virtual_keys[2].rpm_limit`). `models`, `teams[].models`
//!   and `model_max_budget` keys must be `model_name`s of `model_list`
//!   (`all-proxy-models` or `*` in `models` mean all, as in LiteLLM).
//! - Limits: `max_budget` is USD >= 0 (kept as integer micro-USD, 0 refuses
//!   everything); `rpm_limit`, `tpm_limit`, `max_parallel_requests` are
//!   integers >= 0; absent or null = unlimited.
//! - `budget_duration` / `time_period`: a positive integer and a unit, `s`,
//!   `m`, `h`, `d` or `w` (LiteLLM's `mo` is refused: months are not a fixed
//!   length, and windows must be; use `30d`). No duration: one window forever.
//!
//! # Authentication
//!
//! [`authenticate`] takes `Authorization: Bearer <key>` (scheme
//! case-insensitive) or, when that header is absent or not Bearer,
//! `x-api-key: <key>` (Anthropic clients). The presented key is hashed with
//! SHA-256 and looked up by digest in a map; the master key's digest is
//! compared the same way. Errors never contain the key: at most
//! [`key_ref`] (`sha256:` + the first 8 hex digits of its digest).
//!
//! | case | status | `type` | `code` |
//! |---|---|---|---|
//! | no key | 401 | `authentication_error` | `missing_api_key` |
//! | unknown key / not Bearer | 401 | `authentication_error` | `invalid_api_key` (OpenAI's code) |
//! | model not in the key's (or its team's) `models` | 403 | `permission_error` | `model_not_allowed` |

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::api::error::{ErrorKind, GatewayError};
use crate::config::ConfigError;

/// Default `gateway.default_max_tokens`: the output estimate a reservation
/// uses when the request sets no `max_tokens` / `max_completion_tokens`.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
/// Largest `max_budget` accepted, USD (keeps micro-USD sums far from `u64::MAX`).
pub const MAX_BUDGET_USD: f64 = 1e9;
/// `models` entries meaning "every alias" (LiteLLM's special name, and `*`).
pub const ALL_MODELS: &[&str] = &["all-proxy-models", "*"];

fn err(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A SHA-256 digest.
pub type KeyDigest = [u8; 32];

/// SHA-256 of a presented key.
pub fn digest(plain: &str) -> KeyDigest {
    Sha256::digest(plain.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

/// `sha256:<64 hex>` as written in config (`key_hash`).
pub fn digest_string(d: &KeyDigest) -> String {
    format!("sha256:{}", hex(d))
}

/// A short reference to a presented key for logs: `sha256:` and the first
/// 8 hex digits of its digest. Never the key.
pub fn key_ref(plain: &str) -> String {
    let d = digest(plain);
    format!("sha256:{}", hex(&d[..4]))
}

/// Parse `sha256:<64 hex>` (either case).
pub fn parse_digest(s: &str) -> Option<KeyDigest> {
    let h = s.strip_prefix("sha256:")?.as_bytes();
    if h.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in h.chunks(2).enumerate() {
        let v = |c: u8| (c as char).to_digit(16);
        out[i] = (v(pair[0])? * 16 + v(pair[1])?) as u8;
    }
    Some(out)
}

/// Budget and limits of one key or team. `None`: unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// `max_budget` in micro-USD.
    pub max_budget_micro: Option<u64>,
    /// `budget_duration` in milliseconds; `None`: one window forever.
    pub budget_duration_ms: Option<u64>,
    /// Requests per minute.
    pub rpm_limit: Option<u64>,
    /// Tokens (prompt + completion) per minute.
    pub tpm_limit: Option<u64>,
    /// Requests in flight at once.
    pub max_parallel_requests: Option<u64>,
}

/// A key's budget for one model alias (`model_max_budget`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelBudget {
    /// `budget_limit` in micro-USD.
    pub budget_micro: u64,
    /// `time_period` in milliseconds; `None`: one window forever.
    pub duration_ms: Option<u64>,
}

/// One virtual key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyConfig {
    /// `key_alias`: the key's name everywhere it shows.
    pub alias: String,
    /// SHA-256 of the plain key.
    pub digest: KeyDigest,
    /// Allowed aliases; empty: all.
    pub models: Vec<String>,
    /// The team's allowed aliases (copied from the team); empty: all.
    pub team_models: Vec<String>,
    /// The key's own budget and limits.
    pub limits: Limits,
    /// `team`: the team id, if any.
    pub team: Option<String>,
    /// `model_max_budget`, by model alias.
    pub model_budgets: BTreeMap<String, ModelBudget>,
    /// `principals`: mTLS peer identities (Envoy's `source.principal`, e.g.
    /// `spiffe://cluster.local/ns/search/sa/indexer`) that act as this key
    /// when a request carries no key, so mesh workloads need no bearer secret.
    pub principals: Vec<String>,
}

/// One team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamConfig {
    /// `team_id`.
    pub id: String,
    /// Allowed aliases for every member key; empty: all.
    pub models: Vec<String>,
    /// The team's budget and limits (shared by its keys).
    pub limits: Limits,
}

/// Every virtual key, team and the master key, indexed for lookup.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: Vec<KeyConfig>,
    by_digest: HashMap<KeyDigest, usize>,
    teams: Vec<TeamConfig>,
    master: Option<KeyDigest>,
}

impl KeyRing {
    /// A ring from parts (tests, tools). Later duplicates of a digest are
    /// ignored; `parse` refuses them instead.
    pub fn new(keys: Vec<KeyConfig>, teams: Vec<TeamConfig>, master: Option<KeyDigest>) -> Self {
        let mut by_digest = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            by_digest.entry(k.digest).or_insert(i);
        }
        KeyRing {
            keys,
            by_digest,
            teams,
            master,
        }
    }

    /// Every key, in config order.
    pub fn keys(&self) -> &[KeyConfig] {
        &self.keys
    }

    /// Every team, in config order.
    pub fn teams(&self) -> &[TeamConfig] {
        &self.teams
    }

    /// The key with this digest.
    pub fn key_by_digest(&self, d: &KeyDigest) -> Option<&KeyConfig> {
        self.by_digest.get(d).and_then(|i| self.keys.get(*i))
    }

    /// The key whose plain value is `plain` (e.g. `/key/info?key=`).
    pub fn key_by_plain(&self, plain: &str) -> Option<&KeyConfig> {
        self.key_by_digest(&digest(plain))
    }

    /// The key with this `key_alias`.
    pub fn key_by_alias(&self, alias: &str) -> Option<&KeyConfig> {
        self.keys.iter().find(|k| k.alias == alias)
    }

    /// The team with this id.
    pub fn team(&self, id: &str) -> Option<&TeamConfig> {
        self.teams.iter().find(|t| t.id == id)
    }

    /// Whether `plain` is the master key.
    pub fn is_master(&self, plain: &str) -> bool {
        self.master.is_some_and(|m| m == digest(plain))
    }

    /// Whether a master key is configured.
    pub fn has_master(&self) -> bool {
        self.master.is_some()
    }

    /// Whether any key, team or per-model budget is set (then a deployment
    /// without a price makes budgets blind to it; `config` warns).
    pub fn has_budgets(&self) -> bool {
        self.keys
            .iter()
            .any(|k| k.limits.max_budget_micro.is_some() || !k.model_budgets.is_empty())
            || self
                .teams
                .iter()
                .any(|t| t.limits.max_budget_micro.is_some())
    }
}

/// The gateway's budget switches (`gateway` section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetSettings {
    /// `budget_reservation`: reserve each request's maximum cost at
    /// admission (default true). Off: admit while spend < budget.
    pub reservation: bool,
    /// `default_max_tokens`: output estimate for the reservation when the
    /// request has no `max_tokens` (default [`DEFAULT_MAX_TOKENS`]).
    pub default_max_tokens: u64,
    /// `enforce_mid_stream`: cut a stream when its running cost reaches
    /// what is left of the budget (default false).
    pub enforce_mid_stream: bool,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        BudgetSettings {
            reservation: true,
            default_max_tokens: DEFAULT_MAX_TOKENS,
            enforce_mid_stream: false,
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller<'a> {
    /// No keys configured: the gateway runs open.
    Open,
    /// The master key: passes every check, may read every key's info.
    Master,
    /// A virtual key.
    Key(&'a KeyConfig),
}

impl<'a> Caller<'a> {
    /// The virtual key, if the caller is one.
    pub fn key(&self) -> Option<&'a KeyConfig> {
        match self {
            Caller::Key(k) => Some(k),
            _ => None,
        }
    }

    /// What logs and metrics call the caller: `open`, `master` or the key alias.
    pub fn key_ref(&self) -> &str {
        match self {
            Caller::Open => "open",
            Caller::Master => "master",
            Caller::Key(k) => &k.alias,
        }
    }
}

/// The key a request presents: `Authorization: Bearer <key>`, else
/// `x-api-key`. `Err(())` when Authorization is present, not Bearer, and
/// there is no `x-api-key`.
fn presented<'h>(
    authorization: Option<&'h str>,
    x_api_key: Option<&'h str>,
) -> Result<Option<&'h str>, ()> {
    let bearer = authorization
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| match a.split_once(char::is_whitespace) {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => {
                Some(rest.trim()).filter(|t| !t.is_empty())
            }
            _ => None,
        });
    let x = x_api_key.map(str::trim).filter(|k| !k.is_empty());
    match (bearer, x) {
        (Some(Some(k)), _) => Ok(Some(k)),
        (_, Some(k)) => Ok(Some(k)),
        (Some(None), None) => Err(()),
        (None, None) => Ok(None),
    }
}

/// The key reference ([`key_ref`]) of whatever key a request presents, for
/// logging a refused request. `None` if it presents none.
pub fn presented_key_ref(authorization: Option<&str>, x_api_key: Option<&str>) -> Option<String> {
    presented(authorization, x_api_key)
        .ok()
        .flatten()
        .map(key_ref)
}

fn unauthorized(code: &str, message: String) -> GatewayError {
    GatewayError::new(401, ErrorKind::Authentication, message).with_code(code)
}

/// Who the request is from. No ring: [`Caller::Open`]. The request's
/// `Authorization` / `x-api-key` header values are passed as received
/// (the filter must remove both before the request goes upstream).
pub fn authenticate<'a>(
    ring: Option<&'a KeyRing>,
    authorization: Option<&str>,
    x_api_key: Option<&str>,
) -> Result<Caller<'a>, GatewayError> {
    authenticate_with_principal(ring, authorization, x_api_key, None)
}

/// [`authenticate`], also accepting the connection's mTLS peer identity
/// (`source.principal`) for requests that carry no key: a key listing that
/// principal in `principals` is used. A presented key always wins, so a
/// workload can still use another key explicitly.
pub fn authenticate_with_principal<'a>(
    ring: Option<&'a KeyRing>,
    authorization: Option<&str>,
    x_api_key: Option<&str>,
    principal: Option<&str>,
) -> Result<Caller<'a>, GatewayError> {
    let Some(ring) = ring else {
        return Ok(Caller::Open);
    };
    let plain = match presented(authorization, x_api_key) {
        Ok(Some(k)) => k,
        Ok(None) => {
            if let Some(p) = principal.filter(|p| !p.is_empty()) {
                if let Some(k) = ring
                    .keys()
                    .iter()
                    .find(|k| k.principals.iter().any(|q| q == p))
                {
                    return Ok(Caller::Key(k));
                }
            }
            return Err(unauthorized(
                "missing_api_key",
                "Missing API key: send `Authorization: Bearer <key>` (or `x-api-key: <key>`)."
                    .to_string(),
            ));
        }
        Err(()) => {
            return Err(unauthorized(
                "invalid_api_key",
                "The Authorization header must use the Bearer scheme: \
                 `Authorization: Bearer <key>`."
                    .to_string(),
            ))
        }
    };
    let d = digest(plain);
    if ring.master == Some(d) {
        return Ok(Caller::Master);
    }
    match ring.key_by_digest(&d) {
        Some(k) => Ok(Caller::Key(k)),
        None => Err(unauthorized(
            "invalid_api_key",
            format!(
                "Invalid API key ({}): not a virtual key of this gateway.",
                digest_string(&d).get(..15).unwrap_or("sha256:")
            ),
        )),
    }
}

fn allows(list: &[String], alias: &str) -> bool {
    list.is_empty()
        || list
            .iter()
            .any(|m| m == alias || ALL_MODELS.contains(&m.as_str()))
}

/// Whether the caller may use model alias `alias`: a key's `models` and its
/// team's `models` must both allow it. 403 naming the key alias, the model
/// and what the key may use.
pub fn authorize_model(caller: &Caller<'_>, alias: &str) -> Result<(), GatewayError> {
    let Caller::Key(k) = caller else {
        return Ok(());
    };
    let refuse = |whose: String, list: &[String]| {
        GatewayError::new(
            403,
            ErrorKind::Permission,
            format!(
                "{whose} is not allowed to use model `{alias}`; allowed models: {}",
                list.join(", ")
            ),
        )
        .with_param("model")
        .with_code("model_not_allowed")
    };
    if !allows(&k.models, alias) {
        return Err(refuse(format!("Key `{}`", k.alias), &k.models));
    }
    if !allows(&k.team_models, alias) {
        let team = k.team.as_deref().unwrap_or("");
        return Err(refuse(
            format!("Key `{}` (team `{team}`)", k.alias),
            &k.team_models,
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

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

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

const NAME_RULE: &str = "must be 1-64 characters of A-Z a-z 0-9 . _ -";

fn money(v: &Value, field: &str) -> Result<u64, ConfigError> {
    v.as_f64()
        .and_then(usd_to_micro)
        .ok_or_else(|| err(field, "must be a number of USD, 0 or more"))
}

fn duration(v: &Value, field: &str) -> Result<u64, ConfigError> {
    v.as_str().and_then(parse_duration_ms).ok_or_else(|| {
        err(
            field,
            "must be a duration like 30s, 5m, 1h, 1d, 30d or 1w (months are not a fixed \
             length: use 30d)",
        )
    })
}

fn limit(v: &Value, field: &str) -> Result<u64, ConfigError> {
    v.as_u64()
        .ok_or_else(|| err(field, "must be an integer, 0 or more"))
}

fn non_null<'v>(m: &'v Map<String, Value>, k: &str) -> Option<&'v Value> {
    m.get(k).filter(|v| !v.is_null())
}

fn model_list(
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

fn limits(
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

const LIMIT_FIELDS: &[&str] = &[
    "max_budget",
    "budget_duration",
    "rpm_limit",
    "tpm_limit",
    "max_parallel_requests",
];
const KEY_FIELDS: &[&str] = &[
    "key_hash",
    "key_alias",
    "models",
    "team",
    "team_id",
    "model_max_budget",
    "principals",
];
const TEAM_FIELDS: &[&str] = &["team_id", "models"];

fn check_fields(m: &Map<String, Value>, path: &str, own: &[&str]) -> Result<(), ConfigError> {
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

fn name_field(m: &Map<String, Value>, path: &str, k: &str) -> Result<String, ConfigError> {
    match non_null(m, k) {
        None => Err(err(format!("{path}.{k}"), "missing (required)")),
        Some(Value::String(s)) if valid_name(s) => Ok(s.clone()),
        Some(_) => Err(err(format!("{path}.{k}"), NAME_RULE)),
    }
}

fn parse_teams(
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

fn parse_key(
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
    })
}

fn parse_settings(root: &Map<String, Value>) -> Result<BudgetSettings, ConfigError> {
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

#[cfg(test)]
mod tests {
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
        let (ring, _, _) =
            parse_v(json!({"general_settings": {"master_key": h("sk-m2")}})).unwrap();
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
}
