//! The request-level glue between keys, budgets and pricing: what the filter
//! asks at admission and at the end of a request.
//!
//! The request flow holds a [`CallerId`] (owned; the key ring lives in the shared
//! configuration) and the [`Admission`] its request was granted; everything
//! here is pure.

use serde_json::{json, Value};

use crate::accounting::budget::{self, Admission, Refusal};
use crate::api::error::{ErrorKind, GatewayError};
use crate::api::openai::{ChatRequest, Usage};
use crate::config::keys::{self, Caller};
use crate::config::pricing::{self, TokenUsage};
use crate::config::{Config, Deployment};
use crate::store::SharedStore;

/// Whether any key is bound to workload principals (then the filter reads
/// the connection's peer identity).
pub fn uses_principals(cfg: &Config) -> bool {
    cfg.keys
        .as_ref()
        .is_some_and(|r| r.keys().iter().any(|k| !k.principals.is_empty()))
}

/// Who is calling, without borrowing the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerId {
    /// No `virtual_keys` configured: the gateway runs open.
    Open,
    /// The master key.
    Master,
    /// A virtual key, by `key_alias`.
    Key(String),
}

impl CallerId {
    /// Authenticate the request's credentials (or, without any, the mTLS
    /// peer principal) against the configured keys.
    pub fn authenticate(
        cfg: &Config,
        authorization: Option<&str>,
        x_api_key: Option<&str>,
        principal: Option<&str>,
    ) -> Result<CallerId, GatewayError> {
        let caller = keys::authenticate_with_principal(
            cfg.keys.as_ref(),
            authorization,
            x_api_key,
            principal,
        )?;
        Ok(match caller {
            Caller::Open => CallerId::Open,
            Caller::Master => CallerId::Master,
            Caller::Key(k) => CallerId::Key(k.alias.clone()),
        })
    }

    /// The borrowed form the key and budget functions take.
    pub fn caller<'a>(&self, cfg: &'a Config) -> Caller<'a> {
        match self {
            CallerId::Open => Caller::Open,
            CallerId::Master => Caller::Master,
            CallerId::Key(alias) => match cfg.keys.as_ref().and_then(|r| r.key_by_alias(alias)) {
                Some(k) => Caller::Key(k),
                None => Caller::Open, // ok: aliases come from this same config
            },
        }
    }

    /// What logs and metrics call the caller: never the key itself.
    pub fn label(&self) -> &str {
        match self {
            CallerId::Open => "open",
            CallerId::Master => "master",
            CallerId::Key(a) => a,
        }
    }

    /// Whether this caller may use `alias`.
    pub fn may_use(&self, cfg: &Config, alias: &str) -> bool {
        keys::authorize_model(&self.caller(cfg), alias).is_ok()
    }
}

/// The reservation for a request that may be served by any of `deployments`:
/// its maximum cost at the priciest of them, so a fallback cannot overshoot.
/// `None` when reservation is off (`gateway.budget_reservation: false`).
pub fn reservation(
    cfg: &Config,
    deployments: &[&Deployment],
    body_len: usize,
    chat: &ChatRequest,
) -> Option<u64> {
    if !cfg.budget.reservation {
        return None;
    }
    let prompt = budget::prompt_estimate_tokens(body_len);
    // A deployment's defaults count where the request sets nothing.
    Some(
        deployments
            .iter()
            .map(|d| {
                let n = chat.n.or(d.defaults.n).unwrap_or(1).max(1);
                let max_out = chat
                    .max_output_tokens()
                    .or(d.defaults.max_output_tokens)
                    .unwrap_or(cfg.budget.default_max_tokens)
                    .saturating_mul(n);
                budget::reservation_micro(d.price.as_ref(), prompt, max_out)
            })
            .max()
            .unwrap_or(0),
    )
}

/// A budget refusal as the error and `retry-after` the client gets.
pub fn refusal_reply(r: &Refusal) -> (GatewayError, Option<u64>) {
    (r.error.clone(), r.retry_after)
}

/// What one request is charged, from what the provider reported. When the
/// answer did not complete (a client abort or upstream reset mid-stream) the
/// completion is at least an estimate from the bytes already streamed to the
/// client (4 bytes a token; the bytes include the SSE framing, so this
/// overestimates rather than under-charges): the provider may have reported
/// only its first counts (Anthropic's `message_start` says 1 output token),
/// and it bills what it generated. With no usage at all the prompt is
/// estimated from the body size too.
pub fn charge(
    dep: &Deployment,
    usage: Option<Usage>,
    body_len: usize,
    streamed_bytes: usize,
    complete: bool,
) -> (u64, TokenUsage) {
    let estimate = budget::prompt_estimate_tokens(streamed_bytes);
    let tokens = match usage {
        Some(u) => {
            let mut t = TokenUsage::from(u);
            if !complete {
                t.completion = t.completion.max(estimate);
            }
            t
        }
        None if streamed_bytes > 0 => TokenUsage {
            prompt: budget::prompt_estimate_tokens(body_len),
            completion: estimate,
            ..TokenUsage::default()
        },
        None => TokenUsage::default(),
    };
    (pricing::cost_micro(dep.price.as_ref(), &tokens), tokens)
}

/// `GET /v1/models` for a caller: the aliases it may use.
pub fn models_body(cfg: &Config, caller: &CallerId, created: u64) -> Vec<u8> {
    let data: Vec<_> = cfg
        .aliases()
        .into_iter()
        .filter(|a| caller.may_use(cfg, a))
        .map(|a| json!({"id": a, "object": "model", "created": created, "owned_by": "llm-gateway"}))
        .collect();
    json!({"object": "list", "data": data})
        .to_string()
        .into_bytes()
}

/// `GET /v1/models/{id}`: one alias the caller may use, as OpenAI's
/// `model` object; `None` for an alias it may not use or that is not
/// configured (the same 404 for both: no probing for aliases).
pub fn model_info(cfg: &Config, caller: &CallerId, id: &str, created: u64) -> Option<Vec<u8>> {
    cfg.aliases()
        .into_iter()
        .find(|a| *a == id && caller.may_use(cfg, a))
        .map(|a| {
            use crate::codec::json_out;
            let mut out = br#"{"id":"#.to_vec();
            json_out::str(&mut out, a);
            out.extend_from_slice(br#","object":"model","created":"#);
            json_out::u64(&mut out, created);
            out.extend_from_slice(br#","owned_by":"llm-gateway"}"#);
            out
        })
}

/// `GET /key/info`: the caller's own key; the master key may name any key
/// with `?key=<plain key>` or `?key_alias=<alias>` (LiteLLM's query).
pub fn key_info(
    cfg: &Config,
    store: &dyn SharedStore,
    caller: &CallerId,
    query: &str,
    now_ms: u64,
) -> Result<Vec<u8>, GatewayError> {
    let Some(ring) = cfg.keys.as_ref() else {
        return Err(GatewayError::new(
            404,
            ErrorKind::NotFound,
            "no virtual keys are configured on this gateway",
        ));
    };
    let param = |name: &str| {
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| percent_decode(v))
        })
    };
    let key = match caller {
        CallerId::Key(alias) => ring.key_by_alias(alias),
        CallerId::Master => {
            if let Some(plain) = param("key") {
                ring.key_by_plain(&plain)
            } else if let Some(alias) = param("key_alias") {
                ring.key_by_alias(&alias)
            } else {
                return Err(GatewayError::bad_param(
                    "key",
                    "the master key must name a key: ?key=<key> or ?key_alias=<alias>",
                ));
            }
        }
        CallerId::Open => None,
    };
    let Some(key) = key else {
        return Err(
            GatewayError::new(404, ErrorKind::NotFound, "no such key").with_code("key_not_found")
        );
    };
    let info = budget::key_info(store, ring, key, now_ms);
    Ok(
        json!({"key": keys::digest_string(&key.digest).get(..15).unwrap_or(""), "info": info})
            .to_string()
            .into_bytes(),
    )
}

/// `%xx` and `+` of a query value decoded.
pub fn percent_decode(s: &str) -> String {
    crate::codec::url::percent_decode(s, true)
}

/// Cost and remaining budget as response header values (USD).
pub fn cost_headers(cost_micro: u64, remaining_micro: Option<u64>) -> Vec<(String, String)> {
    // A plain decimal number of USD, as LiteLLM's x-litellm-response-cost.
    let usd = |m: u64| budget::format_usd(m).trim_start_matches('$').to_string();
    let mut h = vec![("x-llm-gateway-response-cost".to_string(), usd(cost_micro))];
    if let Some(r) = remaining_micro {
        h.push(("x-llm-gateway-remaining-budget".to_string(), usd(r)));
    }
    h
}

/// Settle an admission: the usage event for the counter service.
pub fn settle(
    adm: &Admission,
    cost_micro: u64,
    tokens: &TokenUsage,
    now_ms: u64,
) -> Option<Vec<u8>> {
    budget::usage_event(adm, cost_micro, tokens, now_ms)
}

/// JSON for logs and tests.
pub fn describe_charge(cost_micro: u64, tokens: &TokenUsage) -> Value {
    json!({"cost": budget::format_usd(cost_micro), "prompt_tokens": tokens.prompt, "completion_tokens": tokens.completion})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("sk-a%2Bb+c%zz"), "sk-a+b c%zz");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
