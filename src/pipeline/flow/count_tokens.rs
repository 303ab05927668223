//! `POST /v1/messages/count_tokens`: the alias's first planned deployment
//! counts when it is Anthropic's (the request passed through, its answer
//! as it came); any other gets the gateway's estimate
//! ([`crate::ingress::messages::request::estimate_tokens`]), answered
//! locally. Nothing is charged: counting is free at Anthropic too.

use super::super::host::Host;
use super::{reply, RequestFlow};
use crate::api::request::ClientRequest;
use crate::config::providers::ProviderKind;
use crate::config::Deployment;

impl RequestFlow {
    pub(super) fn count_tokens_answer(
        &mut self,
        parsed: &ClientRequest,
        first: Option<&Deployment>,
        body_len: usize,
        host: &mut dyn Host,
    ) {
        let native = self.native.as_ref().map(|(n, _)| n);
        if let (Some(dep), Some(native)) = (first, native) {
            if dep.provider == ProviderKind::Anthropic {
                let none = || {
                    Err(crate::api::error::GatewayError::bad_request(
                        "no translation",
                    ))
                };
                if let Some(Ok(mut up)) =
                    super::super::ingress::passthrough(native, dep, false, &none)
                {
                    up.path = crate::provider::endpoint_path(
                        &dep.api_base.path,
                        "/v1/messages/count_tokens",
                    );
                    self.rewrite_request(&up, dep, &[], host);
                    host.replace_request_body(body_len, &up.body);
                    host.clear_route_cache();
                    return;
                }
            }
        }
        let n = crate::ingress::messages::request::estimate_tokens(parsed.body());
        self.replied = true;
        let body = format!("{{\"input_tokens\":{n}}}");
        reply::send_json_with(
            host,
            200,
            "application/json",
            body.as_bytes(),
            &[(
                "x-llm-gateway-token-count".to_string(),
                "estimate".to_string(),
            )],
        );
    }
}
