//! Ollama translator: being written (issue 3). Until it lands, requests for this
//! provider are refused with a 501 that says so.

use super::{
    RequestContext, ResponseMeta, StreamTranslator, Translated, Translator, UpstreamRequest,
};
use crate::config::Deployment;
use crate::error::{ErrorKind, GatewayError};
use crate::openai::ParsedRequest;

fn not_yet() -> GatewayError {
    GatewayError::new(
        501,
        ErrorKind::Internal,
        "the ollama translator is not implemented yet",
    )
}

/// The Ollama translator.
pub struct Ollama;

impl Translator for Ollama {
    fn request(
        &self,
        _req: &ParsedRequest,
        _dep: &Deployment,
        _ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError> {
        Err(not_yet())
    }
    fn response(&self, _body: &[u8], _meta: &ResponseMeta) -> Result<Translated, GatewayError> {
        Err(not_yet())
    }
    fn stream(&self, meta: ResponseMeta) -> Box<dyn StreamTranslator> {
        super::openai_compat::OpenAiCompat.stream(meta)
    }
    fn error(&self, status: u16, body: &[u8]) -> GatewayError {
        super::openai_compat::openai_style_error(status, body)
    }
}
