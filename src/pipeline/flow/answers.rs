//! Answers sent as the flow's own reply (a checked answer, a cached one),
//! and the answer's conversion into the client's API for a reply.

use super::super::hooks::ServiceStep;
use super::super::host::{Action, Host};
use super::{reply, RequestFlow};

impl RequestFlow {
    /// An answer in OpenAI shape (what the hooks saw) as the client gets it.
    pub(super) fn for_client(&self, status: u16, content_type: &str, openai: Vec<u8>) -> Vec<u8> {
        self.edge
            .whole(status, content_type, &openai)
            .unwrap_or(openai)
    }

    /// The answer passed its guardrail services: send it (the cost
    /// headers with it).
    pub(super) fn send_checked_answer(&mut self, body: &[u8], host: &mut dyn Host) {
        let mut served = self.served_headers();
        served.extend(self.response_complete(host, Some((200, body))));
        self.replied = true;
        let client = self.edge.whole(200, "application/json", body);
        let body = client.as_deref().unwrap_or(body);
        self.record.read_client_id(body);
        reply::send_json_with(host, 200, "application/json", body, &served);
    }

    /// A stored answer (the response cache's hit): sent as the reply, no
    /// provider called, charged nothing.
    pub(super) fn serve_cached(
        &mut self,
        served: &super::super::hooks::Served,
        host: &mut dyn Host,
    ) {
        let mut headers = self.served_headers();
        headers.extend(self.response_complete(host, None));
        self.replied = true;
        let client = self.edge.whole(200, served.content_type, &served.body);
        let body = client.as_deref().unwrap_or(&served.body);
        self.record.read_client_id(body);
        reply::send_json_with(host, 200, served.content_type, body, &headers);
    }

    /// Where an answer's check is: waiting for a call, or refused.
    pub(super) fn answer_step(&mut self, step: ServiceStep, host: &mut dyn Host) -> Action {
        match step {
            ServiceStep::Refuse(e) => self.reply_error(&e, host),
            ServiceStep::Wait | ServiceStep::Go => Action::Pause,
        }
    }

    /// A guardrail service checking the answer answered.
    pub(super) fn answer_check_answered(&mut self, host: &mut dyn Host) {
        let (hooks, mut cx) = self.hook_cx(host);
        match hooks.answer_resumed(&mut cx) {
            Ok(b) => self.send_checked_answer(&b, host),
            Err(step) => {
                let _: Action = self.answer_step(step, host);
            }
        }
    }
}
