//! LiteLLM settings this gateway does not enforce, and whose silent absence
//! would be unsafe: they are refused at load, naming the key, unless the
//! operator says in writing that running without them is intended.
//!
//! Two kinds:
//!
//! - **Guardrails** (`guardrails:`, LiteLLM's older `litellm_settings.guardrails`,
//!   guardrail callbacks such as `presidio` or `lakera_prompt_injection`, and
//!   their settings): a team that believes PII is masked would be sending it
//!   to the provider. Only the built-in content filter is enforced
//!   ([`implemented_guardrail`], `crate::guardrails::spec`), and only what it
//!   implements; `gateway.allow_unenforced_guardrails: true` loads the rest
//!   anyway, with a loud warning per entry.
//! - **Spend, security and privacy settings** ([`REFUSED`]): a budget or a
//!   cap that would not hold, an access rule that would not apply, a routing
//!   restriction that would not keep data where it must stay. Each may be
//!   allowed by listing its path in `gateway.allow_unenforced_settings`.
//!
//! Every other LiteLLM key the gateway does not use stays a warning: the
//! README lists the reviewed ones and why ignoring each is safe (it fails
//! closed, or it only costs observability or latency).

use serde_json::{Map, Value};

use super::ConfigError;
use crate::guardrails::spec::{parse_entry, GuardrailSpec, Parsed, ServiceEnv, CONTENT_FILTER};

/// Why ignoring a setting would be unsafe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Risk {
    /// More could be spent than the operator allowed.
    Spend,
    /// A caller could do what the operator forbade.
    Security,
    /// Data could go where the operator did not want it to.
    Privacy,
}

impl Risk {
    fn as_str(self) -> &'static str {
        match self {
            Risk::Spend => "spend",
            Risk::Security => "security",
            Risk::Privacy => "privacy",
        }
    }
}

/// One refused setting: its path (`model_list[].` stands for every entry),
/// the risk, and what ignoring it would mean.
pub struct Refused {
    pub path: &'static str,
    pub risk: Risk,
    pub why: &'static str,
}

/// The settings refused unless listed in `gateway.allow_unenforced_settings`.
pub const REFUSED: &[Refused] = &[
    Refused {
        path: "litellm_settings.max_budget",
        risk: Risk::Spend,
        why: "the proxy-wide budget would not be enforced; set per-key or per-team max_budget instead",
    },
    Refused {
        path: "litellm_settings.budget_duration",
        risk: Risk::Spend,
        why: "the proxy-wide budget window would not be enforced",
    },
    Refused {
        path: "litellm_settings.max_end_user_budget",
        risk: Risk::Spend,
        why: "end users (the `user` field) would have no budget",
    },
    Refused {
        path: "litellm_settings.max_internal_user_budget",
        risk: Risk::Spend,
        why: "internal users would have no budget",
    },
    Refused {
        path: "litellm_settings.tag_budget_config",
        risk: Risk::Spend,
        why: "per-tag budgets would not be enforced",
    },
    Refused {
        path: "router_settings.provider_budget_config",
        risk: Risk::Spend,
        why: "per-provider budgets would not be enforced",
    },
    Refused {
        path: "model_list[].litellm_params.max_budget",
        risk: Risk::Spend,
        why: "the deployment's budget would not be enforced",
    },
    Refused {
        path: "model_list[].litellm_params.budget_duration",
        risk: Risk::Spend,
        why: "the deployment's budget window would not be enforced",
    },
    Refused {
        path: "general_settings.enforce_user_param",
        risk: Risk::Security,
        why: "requests without `user` would be admitted",
    },
    Refused {
        path: "general_settings.enforced_params",
        risk: Risk::Security,
        why: "requests without the enforced parameters would be admitted",
    },
    Refused {
        path: "general_settings.allowed_routes",
        risk: Risk::Security,
        why: "routes outside the allowed list would not be blocked",
    },
    Refused {
        path: "general_settings.admin_only_routes",
        risk: Risk::Security,
        why: "admin-only routes would not be restricted",
    },
    Refused {
        path: "general_settings.allowed_ips",
        risk: Risk::Security,
        why: "clients outside the allowed IPs would not be refused (use Envoy's RBAC filter)",
    },
    Refused {
        path: "general_settings.max_parallel_requests",
        risk: Risk::Spend,
        why: "the proxy-wide concurrency cap would not hold; set it per key",
    },
    Refused {
        path: "general_settings.global_max_parallel_requests",
        risk: Risk::Spend,
        why: "the proxy-wide concurrency cap would not hold; set it per key",
    },
    Refused {
        path: "router_settings.enable_tag_filtering",
        risk: Risk::Privacy,
        why: "tagged requests could reach deployments without the tag (e.g. outside a required region)",
    },
];

/// LiteLLM callback names that are guardrails (content checks or rewrites
/// before or after the call), not loggers.
const GUARDRAIL_CALLBACKS: &[&str] = &[
    "presidio",
    "llamaguard_moderations",
    "llmguard_moderations",
    "llm_guard",
    "lakera_prompt_injection",
    "hide_secrets",
    "detect_prompt_injection",
    "google_text_moderation",
    "openai_moderations",
    "azure_content_safety",
    "aporia",
    "bedrock_guardrails",
    "secret_detection",
    "guardrails_ai",
];

/// Whether a callback name is a guardrail (or custom code that may be one).
pub fn is_guardrail_callback(name: &str) -> bool {
    GUARDRAIL_CALLBACKS.contains(&name) || name.contains('.')
}

/// `litellm_settings` keys that configure guardrails.
const GUARDRAIL_SETTINGS: &[&str] = &[
    "guardrails",
    "prompt_injection_params",
    "presidio_ad_hoc_recognizers",
    "presidio_logging_only",
];

/// Whether a guardrail type (`litellm_params.guardrail`) is enforced here
/// (an entry of that type may still ask for something that is not; see
/// `crate::guardrails::spec::parse_entry`). A type added here must be implemented
/// at the hook points (`docs/architecture.md`, "Add a hook").
pub fn implemented_guardrail(kind: &str) -> bool {
    kind == CONTENT_FILTER || crate::guardrails::external::EXTERNAL_KINDS.contains(&kind)
}

/// What the operator allowed to load unenforced (`gateway` section).
#[derive(Debug, Default)]
pub struct Allowances {
    pub guardrails: bool,
    pub settings: Vec<String>,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Whether `path` (a concrete one, `model_list[3].litellm_params.x`) is one
/// of [`REFUSED`]; its entry.
pub fn refused_entry(path: &str) -> Option<&'static Refused> {
    let generic = match path.strip_prefix("model_list[") {
        Some(rest) => match rest.split_once(']') {
            Some((_, tail)) => format!("model_list[]{tail}"),
            None => path.to_string(),
        },
        None => path.to_string(),
    };
    REFUSED.iter().find(|r| r.path == generic)
}

/// Whether `path` is handled here (so the caller does not also warn that it
/// is ignored).
pub fn is_handled(path: &str) -> bool {
    if refused_entry(path).is_some() || path == "guardrails" {
        return true;
    }
    match path.strip_prefix("litellm_settings.") {
        Some(k) => GUARDRAIL_SETTINGS.contains(&k) || k == "output_parse_pii",
        None => false,
    }
}

/// Refuse what cannot be enforced; with an allowance, warn loudly instead.
/// Returns the guardrails that are enforced.
pub fn check(
    root: &Map<String, Value>,
    allow: &Allowances,
    services: &ServiceEnv<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<GuardrailSpec>, ConfigError> {
    for listed in &allow.settings {
        if refused_entry(listed).is_none() {
            return Err(err(
                "gateway.allow_unenforced_settings",
                format!(
                    "`{listed}` is not a refused setting; the list takes: {}",
                    REFUSED
                        .iter()
                        .map(|r| r.path)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    let enforced = check_guardrails(root, allow.guardrails, services, warnings)?;
    for path in present_paths(root) {
        let Some(r) = refused_entry(&path) else {
            continue;
        };
        let generic_listed = allow.settings.iter().any(|l| l == r.path || *l == path);
        if generic_listed {
            warnings.push(format!(
                "{path} is NOT enforced ({} risk: {}); loaded because \
                 gateway.allow_unenforced_settings lists it",
                r.risk.as_str(),
                r.why
            ));
        } else {
            return Err(err(
                path,
                format!(
                    "not enforced by this gateway ({} risk: {}); remove it, or list `{}` in \
                     gateway.allow_unenforced_settings to run without it",
                    r.risk.as_str(),
                    r.why,
                    r.path
                ),
            ));
        }
    }
    Ok(enforced)
}

/// The dotted paths of the settings present (non-null) that [`REFUSED`]
/// could name.
fn present_paths(root: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for section in ["litellm_settings", "general_settings", "router_settings"] {
        if let Some(Value::Object(m)) = root.get(section) {
            for (k, v) in m {
                if !v.is_null() {
                    out.push(format!("{section}.{k}"));
                }
            }
        }
    }
    if let Some(Value::Array(list)) = root.get("model_list") {
        for (i, entry) in list.iter().enumerate() {
            if let Some(Value::Object(p)) = entry.get("litellm_params") {
                for (k, v) in p {
                    if !v.is_null() {
                        out.push(format!("model_list[{i}].litellm_params.{k}"));
                    }
                }
            }
        }
    }
    out
}

/// Guardrails in every form LiteLLM accepts.
fn check_guardrails(
    root: &Map<String, Value>,
    allowed: bool,
    services: &ServiceEnv<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<GuardrailSpec>, ConfigError> {
    let mut found: Vec<(String, String)> = Vec::new();
    let mut enforced: Vec<GuardrailSpec> = Vec::new();
    match root.get("guardrails") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, g) in list.iter().enumerate() {
                let name = g
                    .get("guardrail_name")
                    .and_then(Value::as_str)
                    .unwrap_or("(unnamed)");
                let kind = g
                    .pointer("/litellm_params/guardrail")
                    .and_then(Value::as_str)
                    .unwrap_or("(no type)");
                if !implemented_guardrail(kind) {
                    found.push((
                        format!("guardrails[{i}]"),
                        format!("guardrail `{name}` (type `{kind}`)"),
                    ));
                    continue;
                }
                match parse_entry(i, g, services).map_err(|e| err(e.field, e.reason))? {
                    Parsed::Enforced(spec) => {
                        if enforced.iter().any(|e| e.name == spec.name) {
                            return Err(err(
                                format!("guardrails[{i}].guardrail_name"),
                                format!("`{}` is used twice", spec.name),
                            ));
                        }
                        enforced.push(spec);
                    }
                    Parsed::Unenforced(why) => found.push((
                        format!("guardrails[{i}]"),
                        format!("guardrail `{name}` (type `{kind}`: {why})"),
                    )),
                }
            }
        }
        Some(_) => return Err(err("guardrails", "must be a list")),
    }
    if let Some(Value::Object(ls)) = root.get("litellm_settings") {
        match ls.get("output_parse_pii") {
            // LiteLLM's global switch: every Presidio guardrail gives the
            // masked values back in the answer.
            Some(Value::Bool(true)) => {
                for spec in enforced.iter_mut().filter(|s| {
                    s.service.as_ref().is_some_and(|g| {
                        g.api == crate::guardrails::external::ExternalApi::Presidio
                    })
                }) {
                    spec.output_parse_pii = true;
                }
            }
            None | Some(Value::Null | Value::Bool(false)) => {}
            Some(_) => {
                return Err(err(
                    "litellm_settings.output_parse_pii",
                    "must be a boolean",
                ))
            }
        }
        for k in GUARDRAIL_SETTINGS {
            if ls.get(*k).is_some_and(|v| !v.is_null()) {
                found.push((
                    format!("litellm_settings.{k}"),
                    format!("guardrail setting `{k}`"),
                ));
            }
        }
        for list in ["callbacks", "success_callback", "failure_callback"] {
            let Some(Value::Array(items)) = ls.get(list) else {
                continue;
            };
            for (i, c) in items.iter().enumerate() {
                let Some(name) = c.as_str() else { continue };
                // A Python path (`module.instance`) is custom code: it may be a
                // guardrail as well as a logger, and cannot run here.
                if is_guardrail_callback(name) {
                    found.push((
                        format!("litellm_settings.{list}[{i}]"),
                        format!("callback `{name}`"),
                    ));
                }
            }
        }
    }
    for (field, what) in found {
        if allowed {
            warnings.push(format!(
                "{field}: {what} is NOT enforced: requests reach the provider unchecked \
                 (gateway.allow_unenforced_guardrails is true)"
            ));
        } else {
            return Err(err(
                field,
                format!(
                    "{what} is not enforced by this gateway: requests would reach the provider \
                     unchecked; remove it, or set gateway.allow_unenforced_guardrails: true to \
                     run without it"
                ),
            ));
        }
    }
    Ok(enforced)
}
