//! Claude on Bedrock through InvokeModel (`bedrock/invoke/anthropic.claude-...`,
//! LiteLLM's `invoke/` route and its `AmazonAnthropicClaudeConfig`):
//! Anthropic's Messages body, SigV4-signed like every Bedrock request.
//!
//! - `POST {api_base}/model/{modelId}/invoke`, or
//!   `/invoke-with-response-stream` when the client streams (the id
//!   percent-encoded as for Converse, without the `invoke/` selector);
//! - the body is the Anthropic translation ([`anthropic::hosted_body`]: every
//!   rule of the Anthropic mapping) without `model` and `stream` (the path
//!   says both), with `anthropic_version: bedrock-2023-05-31` and beta
//!   features in the body's `anthropic_beta` list; structured outputs go as
//!   Bedrock's `output_config.format` (what LiteLLM sends for models that
//!   take them), not `output_format` and its beta;
//! - answers and errors: the answer is Anthropic's Messages response, read
//!   by the Anthropic translator; errors are Bedrock's (`{"message"}`);
//! - streams: an AWS event stream whose `chunk` events carry one Anthropic
//!   stream event each, base64 in `{"bytes": ...}`; each is handed to the
//!   Anthropic stream translator as the SSE event it would have been, and
//!   exception messages end the stream as ConverseStream's do.
//!
//! Only Claude is served on `invoke/` (Llama, Titan text, Mistral ... take
//! other bodies): any other model there is refused at load. LiteLLM also
//! sends `bedrock/<id>` to InvokeModel when its model map does not list the
//! id for Converse; without a map, the gateway serves every `bedrock/<id>`
//! through Converse.

use super::*;
use crate::api::request::ClientRequest;
use crate::provider::anthropic::{self, Anthropic};

/// `anthropic_version` Bedrock requires in an InvokeModel Claude body.
pub const BEDROCK_ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// The InvokeModel Claude translator.
pub struct InvokeClaude;

/// Whether a Bedrock model id (without `invoke/`) is Anthropic's, with or
/// without a cross-region profile prefix (`us.`, `eu.`, `global.` ...).
fn is_claude(id: &str) -> bool {
    id.starts_with("anthropic.")
        || id
            .split_once('.')
            .is_some_and(|(_, rest)| rest.starts_with("anthropic."))
}

impl Translator for InvokeClaude {
    fn validate(&self, dep: &Deployment) -> Result<(), String> {
        Bedrock.validate(dep)?;
        let id = model_id(dep);
        if is_claude(id) {
            return Ok(());
        }
        Err(format!(
            "bedrock model `{}`: only Claude (`invoke/anthropic.<model>`) is served through \
             InvokeModel; other models go through Converse (bedrock/<model id>)",
            dep.model
        ))
    }

    fn request(
        &self,
        req: &ClientRequest,
        dep: &Deployment,
        ctx: &RequestContext,
    ) -> Result<UpstreamRequest, GatewayError> {
        let mut body = anthropic::hosted_body(req, dep, ctx, BEDROCK_ANTHROPIC_VERSION)?;
        body.remove("stream");
        if let Some(format) = body.remove("output_format") {
            body.insert("output_config".into(), json!({ "format": format }));
            if let Some(Value::Array(betas)) = body.get_mut("anthropic_beta") {
                betas.retain(|b| b.as_str() != Some(anthropic::STRUCTURED_OUTPUTS_BETA));
                if betas.is_empty() {
                    body.remove("anthropic_beta");
                }
            }
        }
        let body = serde_json::to_vec(&body).map_err(anthropic::internal)?;
        let op = if req.head.is_stream() {
            "invoke-with-response-stream"
        } else {
            "invoke"
        };
        let headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("accept".to_string(), "application/json".to_string()),
        ];
        signed(dep, ctx, model_path(dep, op), headers, body)
    }

    fn response(&self, body: &[u8], meta: &ResponseMeta) -> Result<Translated, GatewayError> {
        Anthropic.response(body, meta)
    }

    fn stream(&self, meta: ResponseMeta) -> Box<dyn StreamTranslator> {
        Box::new(InvokeStream {
            decoder: Decoder::new(),
            claude: Anthropic.stream(meta),
            failed: false,
        })
    }

    fn error(&self, status: u16, body: &[u8]) -> GatewayError {
        error_from_body(status, body)
    }
}

/// InvokeModelWithResponseStream's event stream, unwrapped into the
/// Anthropic SSE events it carries for the Anthropic stream translator.
struct InvokeStream {
    decoder: Decoder,
    claude: Box<dyn StreamTranslator>,
    /// An exception or a malformed message ended the stream.
    failed: bool,
}

impl InvokeStream {
    fn fail(&mut self, out: &mut Vec<u8>, err: &GatewayError) {
        stream_error_event(err, out);
        write_done(out);
        self.failed = true;
    }

    /// One `chunk` event: its `bytes` decoded, fed as `event: <type>` /
    /// `data: <json>`.
    fn chunk(&mut self, msg: &EsMessage, out: &mut Vec<u8>) {
        let event = serde_json::from_slice::<Value>(&msg.payload)
            .ok()
            .and_then(|v| v.get("bytes")?.as_str().and_then(embedding::base64_decode))
            .and_then(|b| String::from_utf8(b).ok());
        let Some(event) = event else {
            let err = invalid_response("a stream chunk without base64 `bytes`");
            return self.fail(out, &err);
        };
        let kind = serde_json::from_str::<Value>(&event)
            .ok()
            .and_then(|v| Some(v.get("type")?.as_str()?.to_string()))
            .unwrap_or_default();
        let mut sse = Vec::with_capacity(event.len() + kind.len() + 16);
        sse.extend_from_slice(b"event: ");
        sse.extend_from_slice(kind.as_bytes());
        sse.extend_from_slice(b"\ndata: ");
        sse.extend_from_slice(event.as_bytes());
        sse.extend_from_slice(b"\n\n");
        self.claude.feed(&sse, out);
    }
}

impl StreamTranslator for InvokeStream {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if self.failed {
            return;
        }
        let (messages, broken) = decode(&mut self.decoder, bytes);
        for m in &messages {
            if self.failed {
                return;
            }
            match message_failure(m) {
                Some(err) => self.fail(out, &err),
                None if m.header_str(":event-type") == Some("chunk") => self.chunk(m, out),
                None => {}
            }
        }
        if let Some(err) = broken.filter(|_| !self.failed) {
            self.fail(out, &err);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.failed {
            return;
        }
        if let Some(err) = decode_end(&mut self.decoder) {
            return self.fail(out, &err);
        }
        self.claude.finish(out);
    }

    fn usage(&self) -> Option<Usage> {
        self.claude.usage()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(model: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
        let cfg = json!({"model_list": [{"model_name": "c", "litellm_params": {
            "model": format!("bedrock/{model}"), "aws_access_key_id": "AKID",
            "aws_secret_access_key": "s", "aws_region_name": "us-east-1"}}],
            "gateway": {"clusters": {"bedrock": "bedrock"}}});
        crate::provider::parse_config(cfg.to_string().as_bytes(), &|_| None)
    }

    #[test]
    fn only_claude_is_served_through_invoke() {
        for ok in [
            "invoke/anthropic.claude-sonnet-4-5-20250929-v1:0",
            "invoke/eu.anthropic.claude-haiku-4-5-20251001-v1:0",
        ] {
            assert!(load(ok).is_ok(), "{ok}");
        }
        let e = load("invoke/meta.llama3-70b-instruct-v1:0").unwrap_err();
        assert_eq!(e.field, "model_list[0].litellm_params");
        assert!(e.reason.contains("only Claude"), "{}", e.reason);
    }
}
