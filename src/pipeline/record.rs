//! The exchange record: what is known about one request, in one place, for
//! every hook to read and the hooks that account for it to fill in.
//!
//! The flow writes the facts it decides (who calls, which alias, which
//! attempt on which deployment); hooks write what they settle (cost, what is
//! left of a budget). Hooks read the record rather than the flow's private
//! routing state, so a feature added at a hook point sees the same request
//! the budgets and metering see.

use crate::accounting::metering::CallerId;
use crate::provider::Operation;

/// How a request ended, as the hooks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Still in progress.
    Open,
    /// An answer reached its end (whole, or a stream to its end marker).
    Completed,
    /// The gateway answered with an error, or the provider's error was passed on.
    Failed,
}

/// One request's record.
#[derive(Debug)]
pub struct ExchangeRecord {
    /// The completion id the gateway made (`chatcmpl-...`): what the
    /// client sees of a translated answer.
    pub id: String,
    /// The `id` of the answer the client got, when it is not [`Self::id`]
    /// (a passthrough keeps the provider's).
    pub response_id: Option<String>,
    /// The `id` the client got in its own API, when that is not chat's (a
    /// Messages `msg_...`, a completions `cmpl-...`, a passthrough's own).
    pub client_id: Option<String>,
    /// Unix seconds when the request was accepted.
    pub created: u64,
    /// Unix milliseconds when its headers arrived (read only when traced).
    pub started_ms: u64,
    pub op: Operation,
    /// The client's API (`/v1/messages`, `/v1/completions` or chat).
    pub ingress: crate::ingress::Ingress,
    /// Who is calling (virtual key alias, master, or open).
    pub caller: CallerId,
    /// The alias the client asked for (labels only if it is configured).
    pub requested_alias: Option<String>,
    pub stream: bool,
    /// Bytes of the client's request body.
    pub body_len: usize,
    /// A chat or embeddings request (counted in the request metrics).
    pub api_request: bool,
    /// Attempts made so far.
    pub attempts: u32,
    /// Index into `Config::deployments` of the attempt in progress (or the last).
    pub deployment: Option<usize>,
    /// That deployment belongs to a fallback alias.
    pub fallback: bool,
    /// Cost charged (micro-USD), once settled.
    pub cost_micro: Option<u64>,
    /// Budget left after this request (micro-USD), once settled.
    pub remaining_budget_micro: Option<u64>,
    /// `retry-after` seconds of a rate-limit refusal.
    pub retry_after: Option<u64>,
    pub outcome: Outcome,
}

impl ExchangeRecord {
    /// The id of the answer as the client got it.
    pub fn answer_id(&self) -> &str {
        self.client_id
            .as_deref()
            .or(self.response_id.as_deref())
            .unwrap_or(&self.id)
    }

    /// Note the `id` from the first bytes the client gets in its own API
    /// (nothing to do for a chat client: [`Self::read_answer_id`] reads
    /// what it gets).
    pub fn read_client_id(&mut self, bytes: &[u8]) {
        if self.ingress == crate::ingress::Ingress::Chat || self.client_id.is_some() {
            return;
        }
        let mut ids = Vec::new();
        let head = bytes.get(..bytes.len().min(512)).unwrap_or(bytes);
        crate::codec::json_in::string_values(head, b"\"id\"", &mut ids);
        self.client_id = ids.into_iter().next();
    }

    /// Note the answer's `id` from the first bytes the client gets of it.
    pub fn read_answer_id(&mut self, bytes: &[u8]) {
        if self.response_id.is_some() || bytes.is_empty() {
            return;
        }
        let mut ids = Vec::new();
        let head = bytes.get(..bytes.len().min(512)).unwrap_or(bytes);
        crate::codec::json_in::string_values(head, b"\"id\"", &mut ids);
        self.response_id = ids.into_iter().next().filter(|i| *i != self.id);
    }
}

impl Default for ExchangeRecord {
    fn default() -> Self {
        ExchangeRecord {
            id: String::new(),
            response_id: None,
            client_id: None,
            created: 0,
            started_ms: 0,
            op: Operation::Chat,
            ingress: crate::ingress::Ingress::Chat,
            caller: CallerId::Open,
            requested_alias: None,
            stream: false,
            body_len: 0,
            api_request: false,
            attempts: 0,
            deployment: None,
            fallback: false,
            cost_micro: None,
            remaining_budget_micro: None,
            retry_after: None,
            outcome: Outcome::Open,
        }
    }
}
