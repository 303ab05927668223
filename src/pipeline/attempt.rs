//! One attempt: the client's request translated (or passed through) for
//! one deployment, with the deployment's defaults, and the [`Exchange`]
//! that will read its answer.

use super::{ingress, Exchange};
use crate::api::error::GatewayError;
use crate::api::overrides::Overrides;
use crate::api::request::ClientRequest;
use crate::config::{Config, Deployment};
use crate::provider::{translator, Operation, RequestContext, ResponseMeta, UpstreamRequest};

/// One attempt of a chat request on one deployment.
pub struct Attempt<'a> {
    /// The deployment tried.
    pub deployment: &'a Deployment,
    /// The native request to send.
    pub upstream: UpstreamRequest,
    /// How the response must be handled.
    pub exchange: Exchange,
}

/// The headers of an out-of-band call carrying `up` to `dep`
/// (`dispatch_http_call`: pseudo-headers first, then the provider's).
pub fn call_headers<'h>(up: &'h UpstreamRequest, dep: &'h Deployment) -> Vec<(&'h str, &'h str)> {
    let mut headers: Vec<(&str, &str)> = vec![
        (":method", "POST"),
        (":path", &up.path),
        (":authority", &dep.api_base.authority),
    ];
    for (k, v) in &up.headers {
        headers.push((k.as_str(), v.as_str()));
    }
    headers
}

/// Translate the request for one deployment. Called again for each retry or
/// fallback: `parsed` is never changed, so every attempt starts from the
/// client's original request, in its own provider's format. `drop_params`
/// is the request's, else the deployment's, else `litellm_settings`'; the
/// parameters in the request's and the deployment's
/// `additional_drop_params` are never sent.
pub fn attempt<'a>(
    cfg: &Config,
    parsed: &ClientRequest,
    deployment: &'a Deployment,
    id: &str,
    now: u64,
    overrides: &Overrides,
) -> Result<Attempt<'a>, GatewayError> {
    attempt_with(cfg, parsed, deployment, id, now, overrides, None)
}

/// [`attempt`] for a client speaking another API than chat (`native`, the
/// request as it came): a passthrough when the deployment speaks that API
/// ([`ingress::passthrough`]), else the chat translation, unless the
/// request has something chat cannot say.
pub fn attempt_with<'a>(
    cfg: &Config,
    parsed: &ClientRequest,
    deployment: &'a Deployment,
    id: &str,
    now: u64,
    overrides: &Overrides,
    native: Option<&crate::ingress::NativeRequest>,
) -> Result<Attempt<'a>, GatewayError> {
    let t = translator(deployment);
    let ctx = RequestContext {
        drop_params: overrides
            .drop_params
            .or(deployment.drop_params)
            .unwrap_or(cfg.drop_params),
        now_ms: now.saturating_mul(1000),
    };
    let rethought;
    let parsed = match native.and_then(|n| ingress::thinking_as_effort(n, parsed, deployment)) {
        Some(r) => {
            rethought = r;
            &rethought
        }
        None => parsed,
    };
    let defaulted;
    let defaults = match parsed.op {
        Operation::Chat => &deployment.defaults.chat,
        Operation::Embeddings => &deployment.defaults.embeddings,
    };
    let parsed = match parsed.with_defaults(defaults) {
        Some(r) => {
            defaulted = r;
            &defaulted
        }
        None => parsed,
    };
    let trimmed;
    let parsed = if overrides.additional_drop_params.is_empty()
        && deployment.additional_drop_params.is_empty()
    {
        parsed
    } else {
        let mut names = overrides.additional_drop_params.clone();
        names.extend(deployment.additional_drop_params.iter().cloned());
        trimmed = parsed.without(&names);
        &trimmed
    };
    let translate = || t.request(parsed, deployment, &ctx);
    let passed = native
        .and_then(|n| ingress::passthrough(n, deployment, parsed.asks_stream_usage(), &translate));
    let passthrough = passed.as_ref().and(native).map(|n| n.ingress);
    if let Some(e) = native
        .filter(|_| passthrough.is_none())
        .and_then(|n| n.untranslatable.clone())
    {
        return Err(e);
    }
    let mut upstream = match (passed, parsed.op) {
        (Some(up), _) => up?,
        (None, Operation::Chat) => translate()?,
        (None, Operation::Embeddings) => t.embeddings_request(parsed, deployment, &ctx)?,
    };
    if !deployment.defaults.is_empty() {
        apply_extra_headers(&mut upstream, &deployment.defaults);
        if deployment.provider != crate::config::providers::ProviderKind::Bedrock {
            upstream.body = crate::provider::with_extra_body(upstream.body, deployment);
        }
    }
    let meta = ResponseMeta {
        id: id.to_string(),
        created: now,
        model: deployment.model.clone(),
        include_usage: parsed.head.include_usage(),
    };
    let mut exchange = Exchange::new(t, meta, parsed.head.is_stream());
    exchange.op = parsed.op;
    exchange.passthrough = passthrough;
    exchange.base64_embeddings = parsed.encoding_format.as_deref() == Some("base64");
    // Credentials short enough to occur by chance in a message are not secrets worth a scan.
    let params = [
        "aws_secret_access_key",
        "aws_session_token",
        "vertex_credentials",
    ];
    let mut secrets = Vec::new();
    for s in [deployment.api_key.as_ref()]
        .into_iter()
        .chain(params.map(|k| deployment.params.get(k)))
        .flatten()
    {
        if s.len() >= 8 {
            secrets.push(s.clone());
        }
    }
    exchange.secrets = secrets;
    Ok(Attempt {
        deployment,
        upstream,
        exchange,
    })
}

/// A deployment's `extra_headers`, over the translator's own (Bedrock's
/// signature covers only the headers it lists, so these may be added after
/// signing; its body is final, so Bedrock merges `extra_body` itself).
fn apply_extra_headers(up: &mut UpstreamRequest, d: &crate::config::defaults::Defaults) {
    for (name, value) in &d.headers {
        match up
            .headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(h) => h.1.clone_from(value),
            None => up.headers.push((name.clone(), value.clone())),
        }
    }
}
