//! Claude on Vertex AI (`vertex_ai/claude-...`): Anthropic's Messages body
//! on Google's endpoint, as LiteLLM's `VertexAIAnthropicConfig` sends it.
//!
//! - `POST {api_base}/v1/projects/{vertex_project}/locations/{vertex_location}/
//!   publishers/anthropic/models/{model}:rawPredict` (`:streamRawPredict` for
//!   streams), the endpoint derived from `vertex_location` like Gemini's;
//! - the Anthropic body without `model` (it is in the path), with
//!   `anthropic_version: vertex-2023-10-16`; beta features the body names
//!   (`anthropic_beta: [...]`, e.g. structured outputs) instead of the
//!   `anthropic-beta` header;
//! - Vertex's bearer token (`api_key`, `VERTEXAI_ACCESS_TOKEN`, or a token
//!   in `vertex_credentials`), never `x-api-key`;
//! - answers, streams and errors are Anthropic's, read by the Anthropic
//!   translator (Vertex's own errors, `{"error": {"code", "message",
//!   "status"}}`, keep their message).

use super::{hosted_body, internal, Anthropic};
use crate::api::error::GatewayError;
use crate::api::request::ClientRequest;
use crate::config::Deployment;
use crate::provider::gemini::endpoint::{
    validate_vertex_target, vertex_headers, vertex_model_path,
};
use crate::provider::{
    RequestContext, ResponseMeta, StreamTranslator, Translated, Translator, UpstreamRequest,
};

/// `anthropic_version` for Claude on Vertex (Google's required value).
pub const VERTEX_ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// The Claude-on-Vertex translator.
pub struct VertexClaude;

impl Translator for VertexClaude {
    fn validate(&self, dep: &Deployment) -> Result<(), String> {
        validate_vertex_target(dep)
    }

    fn request(
        &self,
        req: &ClientRequest,
        dep: &Deployment,
        ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError> {
        let body = hosted_body(req, dep, ctx, VERTEX_ANTHROPIC_VERSION)?;
        let method = if req.head.is_stream() {
            "streamRawPredict"
        } else {
            "rawPredict"
        };
        Ok(UpstreamRequest {
            path: format!("{}:{method}", vertex_model_path(dep)?),
            headers: vertex_headers(dep),
            body: serde_json::to_vec(&body).map_err(internal)?,
        })
    }

    fn response(&self, body: &[u8], meta: &ResponseMeta) -> Result<Translated, GatewayError> {
        Anthropic.response(body, meta)
    }

    fn stream(&self, meta: ResponseMeta) -> Box<dyn StreamTranslator> {
        Anthropic.stream(meta)
    }

    fn error(&self, status: u16, body: &[u8]) -> GatewayError {
        Anthropic.error(status, body)
    }
}
