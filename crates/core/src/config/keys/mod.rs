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

mod parse;
pub use parse::*;

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
    /// `guardrails`: guardrail names that run on every request of this key
    /// (LiteLLM's per-key guardrails), besides the `default_on` ones.
    pub guardrails: Vec<String>,
    /// `cache`: the key's cache controls (`no-cache`, `no-store`,
    /// `namespace` ...), over each request's own (LiteLLM's key-level
    /// `cache` metadata).
    pub cache: Option<crate::config::cache::Controls>,
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

#[cfg(test)]
mod tests;
