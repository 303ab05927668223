//! Anthropic Messages API translator. (Being written; see the issue.)

use super::{ResponseMeta, StreamTranslator, Translated, Translator, UpstreamRequest};
use crate::config::Deployment;
use crate::error::{ErrorKind, GatewayError};
use crate::openai::ParsedRequest;

/// The Anthropic translator.
pub struct Anthropic;

impl Translator for Anthropic {
    fn request(
        &self,
        _req: &ParsedRequest,
        _dep: &Deployment,
        _drop: bool,
    ) -> Result<UpstreamRequest, GatewayError> {
        Err(GatewayError::new(
            500,
            ErrorKind::Internal,
            "anthropic translation not built yet",
        ))
    }
    fn response(&self, _body: &[u8], _meta: &ResponseMeta) -> Result<Translated, GatewayError> {
        Err(GatewayError::new(
            500,
            ErrorKind::Internal,
            "anthropic translation not built yet",
        ))
    }
    fn stream(&self, _meta: ResponseMeta) -> Box<dyn StreamTranslator> {
        unimplemented_stream()
    }
    fn error(&self, status: u16, body: &[u8]) -> GatewayError {
        super::openai_compat::openai_style_error(status, body)
    }
}

fn unimplemented_stream() -> Box<dyn StreamTranslator> {
    struct S;
    impl StreamTranslator for S {
        fn feed(&mut self, _b: &[u8], _o: &mut Vec<u8>) {}
        fn finish(&mut self, _o: &mut Vec<u8>) {}
        fn usage(&self) -> Option<crate::openai::Usage> {
            None
        }
    }
    Box::new(S)
}
