//! Azure OpenAI deployments (`azure/<deployment>`).
//!
//! Reference: Azure OpenAI "Data plane - inference" REST reference
//! (`POST {endpoint}/openai/deployments/{deployment-id}/chat/completions?api-version=...`).
//! LiteLLM serves this prefix with the `openai` SDK's `AzureOpenAI` client
//! (`litellm/llms/azure/`); this translator sends what that client sends.
//!
//! # Request
//!
//! - Path `{api_base path}/openai/deployments/{deployment}/chat/completions`
//!   with `?api-version={api_version}`; embeddings the same with
//!   `/embeddings`. The deployment is the part of `litellm_params.model`
//!   after `azure/`. `api_version` is required ([`Translator::validate`]
//!   refuses a deployment without it at config load; LiteLLM would fall back
//!   to its own default version, which changes with LiteLLM releases), and so
//!   is `api_base` (the resource endpoint, which has no default).
//! - The key goes in the `api-key` header (Entra ID tokens are not
//!   supported). The client's own credentials never reach Azure.
//! - The body is the client's, unknown fields included, with `model` set to
//!   the deployment name: the `AzureOpenAI` client sends `model` too, and
//!   Azure ignores it in favour of the path. Parameters are not checked here:
//!   Azure answers what it does not take with its own 400, mapped like every
//!   error (`drop_params` does not apply to passthrough providers, as for the
//!   OpenAI-compatible family).
//!
//! # Response
//!
//! Answers are OpenAI-shaped and pass through untouched, so Azure's content
//! filter annotations reach the client: `prompt_filter_results` on the
//! answer, `content_filter_results` on each choice, and `finish_reason:
//! "content_filter"` when the completion was filtered. Streams are forwarded
//! event by event: Azure's first chunk (empty `choices`, only
//! `prompt_filter_results`) is passed on; the usage-only chunk that the
//! gateway asked for (`stream_options.include_usage`, to charge the request)
//! is taken out unless the client asked for it too. A stream that ends before
//! `data: [DONE]` ends with an error event and `[DONE]`.
//!
//! # Errors
//!
//! Azure errors are OpenAI-shaped (`{"error": {"code", "message", "param",
//! "innererror"}}`) and keep their message, code and param. A prompt blocked
//! by the content filter (400, `code: content_filter`, inner code
//! `ResponsibleAIPolicyViolation`) becomes a 400 with `code:
//! "content_filter"`; `routing::classify_error` already counts that body as a
//! content-policy error, so `content_policy_fallbacks` apply (LiteLLM raises
//! `ContentPolicyViolationError` for it).

use serde_json::Value;

use super::openai_compat::openai_style_error;
use super::{
    endpoint_path, RequestContext, ResponseMeta, StreamTranslator, Translated, Translator,
    UpstreamRequest,
};
use crate::api::error::{ErrorKind, GatewayError};
use crate::api::openai::Usage;
use crate::codec::sse::{write_data, write_done, SseDecoder};
use crate::config::Deployment;

/// The Azure OpenAI translator.
pub struct Azure;

/// Percent-encode everything but RFC 3986 unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `{base}/openai/deployments/{deployment}/{endpoint}?api-version={version}`.
fn azure_path(dep: &Deployment, endpoint: &str) -> Result<String, GatewayError> {
    let version = dep.api_version.as_deref().ok_or_else(|| {
        GatewayError::new(
            500,
            ErrorKind::Internal,
            "azure deployment without api_version",
        )
    })?;
    let tail = format!("/openai/deployments/{}/{endpoint}", encode(&dep.model));
    Ok(format!(
        "{}?api-version={}",
        endpoint_path(&dep.api_base.path, &tail),
        encode(version)
    ))
}

fn passthrough_request(
    req: &crate::api::request::ClientRequest,
    dep: &Deployment,
    endpoint: &str,
    chat_rules: Option<bool>,
) -> Result<UpstreamRequest, GatewayError> {
    // The client's bytes with `model` replaced (see `ClientRequest::openai_body`);
    // chat requests to reasoning deployments take OpenAI's rules for them.
    let body = match chat_rules {
        Some(drop_params) => super::openai_compat::azure_body(req, &dep.model, drop_params)?,
        None => req.openai_body(&dep.model),
    };
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(key) = &dep.api_key {
        headers.push(("api-key".to_string(), key.clone()));
    }
    Ok(UpstreamRequest {
        path: azure_path(dep, endpoint)?,
        headers,
        body,
    })
}

impl Translator for Azure {
    fn request(
        &self,
        req: &crate::api::request::ClientRequest,
        dep: &Deployment,
        ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError> {
        passthrough_request(req, dep, "chat/completions", Some(ctx.drop_params))
    }

    fn validate(&self, dep: &Deployment) -> Result<(), String> {
        match dep.api_version.as_deref() {
            Some(v) if !v.trim().is_empty() => Ok(()),
            _ => Err(
                "provider `azure` needs `litellm_params.api_version` (the Azure OpenAI API \
                 version, e.g. \"2024-10-21\")"
                    .to_string(),
            ),
        }
    }

    fn embeddings_request(
        &self,
        req: &crate::api::request::ClientRequest,
        dep: &Deployment,
        _ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError> {
        passthrough_request(req, dep, "embeddings", None)
    }

    fn passes_embeddings_through(&self) -> bool {
        true
    }

    fn embeddings_response(
        &self,
        body: &[u8],
        _meta: &ResponseMeta,
    ) -> Result<Translated, GatewayError> {
        Ok(Translated {
            body: body.to_vec(),
            usage: super::openai_compat::checked_answer(body, "data")?,
        })
    }

    fn response(&self, body: &[u8], _meta: &ResponseMeta) -> Result<Translated, GatewayError> {
        Ok(Translated {
            body: body.to_vec(),
            usage: super::openai_compat::checked_answer(body, "choices")?,
        })
    }

    fn stream(&self, meta: ResponseMeta) -> Box<dyn StreamTranslator> {
        Box::new(AzureStream {
            decoder: SseDecoder::new(),
            hide_usage_chunk: !meta.include_usage,
            done: false,
            usage: None,
        })
    }

    fn error(&self, status: u16, body: &[u8]) -> GatewayError {
        openai_style_error(status, body)
    }
}

/// Forwards an Azure stream event by event (see the module docs).
struct AzureStream {
    decoder: SseDecoder,
    hide_usage_chunk: bool,
    done: bool,
    usage: Option<Usage>,
}

impl AzureStream {
    fn event(&mut self, data: &str, out: &mut Vec<u8>) {
        if self.done || data.is_empty() {
            return;
        }
        if data == "[DONE]" {
            write_done(out);
            self.done = true;
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            super::openai_compat::malformed(out);
            self.done = true;
            return;
        };
        {
            let usage = v.get("usage").filter(|u| u.is_object());
            if let Some(u) = usage.and_then(|u| serde_json::from_value::<Usage>(u.clone()).ok()) {
                self.usage = Some(u);
            }
            let no_choices = v
                .get("choices")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty);
            if self.hide_usage_chunk && usage.is_some() && no_choices {
                return;
            }
        }
        write_data(out, data);
    }
}

impl StreamTranslator for AzureStream {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        for ev in self.decoder.feed(bytes) {
            self.event(&ev.data, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        // An event the stream did not close is cut short: only a final
        // `[DONE]` missing its blank line counts.
        for ev in self.decoder.finish() {
            if ev.data == "[DONE]" {
                self.event(&ev.data, out);
            }
        }
        if !self.done {
            super::openai_compat::truncated(out);
            self.done = true;
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_without_api_version_is_refused() {
        let cfg = serde_json::json!({
            "model_list": [{"model_name": "a", "litellm_params": {
                "model": "azure/gpt4o", "api_base": "https://r.openai.azure.com", "api_key": "k"}}],
            "gateway": {"clusters": {"azure": "c"}},
        });
        let err = crate::provider::parse_config(cfg.to_string().as_bytes(), &|_| None).unwrap_err();
        assert!(err.to_string().contains("api_version"), "{err}");
        let cfg = serde_json::json!({
            "model_list": [{"model_name": "a", "litellm_params": {"model": "azure/gpt4o", "api_key": "k",
                "api_version": "2024-10-21"}}],
            "gateway": {"clusters": {"azure": "c"}},
        });
        let err = crate::provider::parse_config(cfg.to_string().as_bytes(), &|_| None).unwrap_err();
        assert!(err.to_string().contains("api_base"), "{err}");
    }

    #[test]
    fn encodes_path_parts() {
        assert_eq!(encode("gpt-4o_mini.v2"), "gpt-4o_mini.v2");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn usage_chunk_hidden_unless_asked() {
        let meta = ResponseMeta {
            id: "x".into(),
            created: 1,
            model: "m".into(),
            include_usage: false,
        };
        let mut s = Azure.stream(meta);
        let mut out = Vec::new();
        s.feed(b"data: {\"choices\":[],\"prompt_filter_results\":[],\"usage\":null}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\ndata: [DONE]\n\n", &mut out);
        s.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("prompt_filter_results"));
        assert!(!text.contains("total_tokens"));
        assert_eq!(s.usage(), Some(Usage::new(1, 2)));
        assert_eq!(text.matches("[DONE]").count(), 1);
    }
}
