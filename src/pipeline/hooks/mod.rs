//! Hook points: the named moments in a request's life where features act,
//! and the features that act there today (budgets, metering).
//!
//! | point | when | who acts today |
//! |---|---|---|
//! | [`Hooks::request_accepted`] | the body is parsed, the caller may use the model, the attempts are planned | trace: the span opens; spend: the end user; cache: does it apply, the request's digest (before masking); guardrails: the content filter (block or mask); cache: the key; budget: the reservation |
//! | [`Hooks::admission`] | before any provider sees the request | guardrails: the guardrail services, one call each (wait, then block, rewrite or fail open/closed); budget: budgets, rpm/tpm/parallel limits, fleet leases; cache: the lookup (a hit is served, `Admit::Serve`) |
//! | [`Hooks::before_provider_call`] | each attempt, its exchange set up | guardrails: the answer's guard (`post_call`); budget: usage required, mid-stream limit |
//! | [`Hooks::attempt_succeeded`] | an attempt's answer arrived in full | metering: latency, usage for the access log |
//! | [`Hooks::chunk`] | each chunk of a forwarded stream | guardrails: a stream the answer's guard blocked is counted now; budget: a stream cut at the budget is charged now; cache: the stream is put together |
//! | [`Hooks::answer_ready`] | a whole answer is translated, before the client sees it | guardrails: the guardrail services on answers (wait, then rewrite, block or fail open/closed) |
//! | [`Hooks::response_complete`] | the answer is complete, before its last bytes leave | budget: settle (cost headers); cache: store the answer |
//! | [`Hooks::failed`] | the gateway answers with an error | budget: settle, release holds |
//! | [`Hooks::finished`] | the request is over however it ended (`on_log`) | budget: settle what is left; guardrails: count what the answer's guard did; metering: request metrics; spend: the spend record; trace: the span is finished and queued |
//!
//! Each point is a method here that calls every feature in a fixed order;
//! a feature is a struct with its own per-request state (so the flow's
//! routing state stays the flow's). Features read and fill in the
//! [`ExchangeRecord`]. A new feature (guardrails, cache ...) adds its struct
//! and its calls at the points it needs: see `docs/architecture.md`.

mod budget;
pub mod cache;
mod guardrail_services;
mod guardrails;
mod metering;
pub mod spend;
mod trace;

use super::host::Host;
use super::record::ExchangeRecord;
use super::Exchange;
use crate::api::error::GatewayError;
use crate::api::request::ClientRequest;
use crate::config::{Config, Deployment};

pub use budget::BudgetHook;
pub use cache::{CacheHook, Served};
pub use guardrail_services::Step as ServiceStep;
pub use guardrails::GuardrailHook;
pub use metering::MeteringHook;
pub use trace::TraceHook;

/// What a hook point hands every feature: the configuration, the record,
/// the attempt's exchange (when there is one), and the host.
pub struct Cx<'a> {
    pub cfg: &'a Config,
    pub record: &'a mut ExchangeRecord,
    pub exchange: Option<&'a Exchange>,
    pub host: &'a mut dyn Host,
}

impl Cx<'_> {
    /// The deployment of the current attempt.
    pub fn deployment(&self) -> Option<&Deployment> {
        self.record
            .deployment
            .and_then(|i| self.cfg.deployments.get(i))
    }
}

/// The admission's verdict.
#[derive(Debug)]
pub enum Admit {
    /// Go on to the provider.
    Go,
    /// Waiting for an out-of-band call (a fleet lease); the flow is resumed
    /// through [`Hooks::call_answered`].
    Wait,
    /// Refuse the request with this error.
    Refuse(GatewayError),
    /// Answer with this stored answer; no provider is called.
    Serve(Served),
}

/// The features acting at hook points, with their per-request state.
#[derive(Default)]
pub struct Hooks {
    pub guardrails: GuardrailHook,
    pub budget: BudgetHook,
    pub metering: MeteringHook,
    pub cache: CacheHook,
    pub trace: TraceHook,
    pub spend: spend::SpendHook,
    /// Admission features that already let the request through (they are
    /// not asked again when a later one waited for a call).
    admitted: u8,
}

impl Hooks {
    /// The body is parsed, the caller may use the model, the attempts are
    /// planned (`planned`: their deployments, in order).
    pub fn request_accepted(
        &mut self,
        cx: &mut Cx<'_>,
        req: &mut ClientRequest,
        planned: &[&Deployment],
        cache_control: Option<&str>,
        traceparent: Option<&str>,
    ) -> Result<(), GatewayError> {
        self.trace.request_accepted(cx, req, traceparent);
        self.spend.request_accepted(req);
        self.cache.request_accepted(cx, req, cache_control)?;
        self.guardrails.request_accepted(cx, req)?;
        self.cache.key_request(cx, self.guardrails.applied());
        self.budget.request_accepted(cx, req, planned);
        Ok(())
    }

    /// Before any provider sees the request.
    pub fn admission(&mut self, cx: &mut Cx<'_>, req: &mut ClientRequest) -> Admit {
        if self.admitted < 1 {
            match self.guardrails.admission(cx, req) {
                Admit::Go => self.admitted = 1,
                other => return other,
            }
        }
        if self.admitted < 2 {
            match self.budget.admission(cx, req) {
                Admit::Go => self.admitted = 2,
                other => return other,
            }
        }
        let verdict = match self.cache.admission(cx) {
            Ok(Some(served)) => Admit::Serve(served),
            Ok(None) => Admit::Go,
            Err(wait) => return wait,
        };
        self.trace.admitted(cx, req);
        verdict
    }

    /// An out-of-band call answered; true when it was a hook's own (and
    /// [`Hooks::admission`] should run again).
    pub fn call_answered(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        host: &mut dyn Host,
    ) -> bool {
        self.guardrails
            .call_answered(token, num_headers, body_size, host)
            || self
                .budget
                .call_answered(token, num_headers, body_size, host)
            || self
                .cache
                .call_answered(token, num_headers, body_size, host)
    }

    /// A translated whole answer, before the client sees it (guardrail
    /// services on answers): `Ok(body)` to send now, else wait or refuse.
    pub fn answer_ready(&mut self, cx: &mut Cx<'_>, body: Vec<u8>) -> Result<Vec<u8>, ServiceStep> {
        self.guardrails.answer_ready(cx, body)
    }

    /// A call checking the answer answered: go on.
    pub fn answer_resumed(&mut self, cx: &mut Cx<'_>) -> Result<Vec<u8>, ServiceStep> {
        self.guardrails.answer_resumed(cx)
    }

    /// Whether whole answers wait for [`Hooks::answer_ready`].
    pub fn checks_answers(&self) -> bool {
        self.guardrails.checks_answers()
    }

    /// Whether the out-of-band call that answered was checking the answer
    /// (else it was the admission's).
    pub fn checking_answer(&self) -> bool {
        self.guardrails.checking_answer()
    }

    /// Usage must be read from every answer (it is charged).
    pub fn needs_usage(&self) -> bool {
        self.budget.charges()
    }

    /// Each attempt, its exchange set up, before its request leaves.
    pub fn before_provider_call(
        &mut self,
        cx: &mut Cx<'_>,
        exchange: &mut Exchange,
        dep: &Deployment,
    ) {
        self.guardrails.before_provider_call(exchange);
        self.budget.before_provider_call(cx, exchange, dep);
    }

    /// An attempt's answer arrived in full (`latency_ms`, `ttft_ms` from
    /// its start).
    pub fn attempt_succeeded(&mut self, cx: &mut Cx<'_>, latency_ms: u64, ttft_ms: Option<u64>) {
        self.metering.attempt_succeeded(cx, latency_ms, ttft_ms);
        self.trace.attempt_succeeded(ttft_ms);
    }

    /// Each chunk of a forwarded stream, after it was translated (`out`:
    /// what the client is sent).
    pub fn chunk(&mut self, cx: &mut Cx<'_>, out: &[u8]) {
        self.guardrails.chunk(cx);
        self.cache.chunk(out);
        cx.record.read_answer_id(out);
        let started = cx.record.started_ms;
        let host = &mut *cx.host;
        self.trace
            .chunk(out, || host.now_ms().saturating_sub(started));
        if cx.exchange.is_some_and(Exchange::was_cut) {
            // Ended at the budget: charge what was streamed, now.
            self.settle(cx);
        }
    }

    /// The answer is complete (`whole`: a whole answer's status and body as
    /// the client gets it; `None`: a stream); returns the headers to add to
    /// it (cost, remaining budget).
    pub fn response_complete(
        &mut self,
        cx: &mut Cx<'_>,
        whole: Option<(u16, &[u8])>,
    ) -> Vec<(String, String)> {
        cx.record.outcome = super::record::Outcome::Completed;
        if let Some((_, body)) = whole {
            cx.record.read_answer_id(body);
        }
        let cost = self.settle(cx);
        self.cache.response_complete(cx, whole);
        self.trace.response_complete(cx, whole);
        match cost {
            Some(cost) => {
                crate::accounting::metering::cost_headers(cost, cx.record.remaining_budget_micro)
            }
            None => Vec::new(),
        }
    }

    /// The gateway answers with an error.
    pub fn failed(&mut self, cx: &mut Cx<'_>) {
        cx.record.outcome = super::record::Outcome::Failed;
        self.settle(cx);
    }

    /// The request is over, however it ended (`status`: the client's;
    /// `traceparent`: the client's, for a span not opened yet).
    pub fn finished(&mut self, cx: &mut Cx<'_>, status: u16, traceparent: Option<&str>) {
        self.trace.start(cx, traceparent);
        self.settle(cx);
        self.guardrails.finished(cx);
        let started = cx.host.span_start();
        self.metering.finished(cx, status);
        cx.host.span_stop(super::host::Span::Observe, started);
        let cache = self.cache.verdict();
        self.spend.finished(cx, status, cache);
        self.trace
            .finished(cx, status, cache, self.guardrails.applied());
    }

    /// Charge the request once (budget), then publish what it cost (metering).
    fn settle(&mut self, cx: &mut Cx<'_>) -> Option<u64> {
        let newly = cx.record.cost_micro.is_none();
        let cost = self.budget.settle(cx);
        if newly && cost.is_some() {
            self.metering.publish_usage(cx);
        }
        cost
    }
}
