//! Budgets and limits at their hook points: reserve, admit (with fleet
//! leases), arm each attempt, settle once. The accounting itself is pure,
//! in [`crate::accounting::budget`] and [`crate::accounting::metering`].

use log::{debug, warn};

use super::{Admit, Cx};
use crate::accounting::budget::{self, Admission};
use crate::accounting::fleet::{CallItem, Grants, RedisStatus};
use crate::accounting::metering::{self, CallerId};
use crate::api::request::ClientRequest;
use crate::config::Deployment;
use crate::pipeline::host::{add_counter, Host, Span};
use crate::pipeline::telemetry;
use crate::pipeline::{fleet_calls, usage_sink, Exchange, MidStreamLimit};

/// A keyed request's holds, from admission to settling.
#[derive(Default)]
pub struct BudgetHook {
    /// The budget and limit holds of a keyed request, settled once.
    admission: Option<Admission>,
    /// The budget reservation of a keyed request (micro-USD).
    reserve: Option<u64>,
    /// Fleet counters: what this request's own lease call obtained.
    grants: Grants,
    /// Fleet counters: the lease call in the air (token, what it asks for).
    lease_call: Option<(u32, Vec<CallItem>)>,
}

impl BudgetHook {
    /// The request is charged (usage must be read from every answer).
    pub fn charges(&self) -> bool {
        self.admission.is_some()
    }

    /// A keyed request reserves what its planned deployments could cost.
    pub fn request_accepted(
        &mut self,
        cx: &mut Cx<'_>,
        req: &ClientRequest,
        planned: &[&Deployment],
    ) {
        if let CallerId::Key(_) = cx.record.caller {
            self.reserve = metering::reservation(cx.cfg, planned, cx.record.body_len, &req.head);
        }
    }

    /// Admit a keyed request against its budgets and limits. With fleet
    /// counters, a request whose scope holds no lease yet waits for one
    /// Redis round trip (`lease_call`).
    pub fn admission(&mut self, cx: &mut Cx<'_>, req: &ClientRequest) -> Admit {
        let CallerId::Key(_) = cx.record.caller else {
            return Admit::Go;
        };
        let started = cx.host.span_start();
        let verdict = self.admit(cx, req);
        cx.host.span_stop(Span::Admission, started);
        verdict
    }

    fn admit(&mut self, cx: &mut Cx<'_>, req: &ClientRequest) -> Admit {
        let cfg = cx.cfg;
        let caller = cx.record.caller.caller(cfg);
        let now_ms = cx.host.now_ms();
        let status = cfg.fleet.as_ref().map_or(RedisStatus::Up, |_| {
            crate::accounting::fleet::read_status(cx.host.store())
        });
        let fleet = cfg.fleet.as_ref().map(|settings| budget::FleetAdmit {
            settings,
            status,
            grants: &self.grants,
        });
        let model = &req.head.model;
        match budget::admit_fleet(
            cx.host.store(),
            cfg.keys.as_ref(),
            &caller,
            model,
            self.reserve,
            now_ms,
            fleet.as_ref(),
        ) {
            Ok(adm) => {
                if adm.fail_open() {
                    add_counter(cx.host, "llm_gateway.fleet.fail_open_admissions", 1);
                }
                if self.grants != Grants::None {
                    fleet_calls::wake(cx.host, adm.scopes());
                }
                if !adm.is_empty() {
                    self.admission = Some(adm);
                }
                Admit::Go
            }
            Err(r) if r.reason == budget::RefusalReason::Lease && self.grants == Grants::None => {
                match fleet_calls::lease(cx.host, cfg, &r.needs) {
                    Some(token) => {
                        self.lease_call = Some((token, r.needs));
                        Admit::Wait
                    }
                    None => {
                        // Not even dispatched: Redis is unreachable for this request.
                        self.grants = Grants::Failed;
                        debug!("llm-gateway: lease call for `{model}` not dispatched");
                        self.admit(cx, req)
                    }
                }
            }
            Err(r) => {
                telemetry::count_rejected(
                    cx.host,
                    Some(cx.record.caller.label()),
                    model,
                    r.reason.as_str(),
                );
                cx.record.retry_after = r.retry_after;
                Admit::Refuse(r.error)
            }
        }
    }

    /// The fleet lease call answered (or failed): keep what it granted.
    pub fn call_answered(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        host: &mut dyn Host,
    ) -> bool {
        match &self.lease_call {
            Some((t, _)) if *t == token => {}
            _ => return false,
        }
        let Some((_, needs)) = self.lease_call.take() else {
            return false;
        };
        self.grants = fleet_calls::grants_from_answer(host, &needs, num_headers, body_size);
        true
    }

    /// Set up an attempt's exchange: the mid-stream budget limit when enforced.
    pub fn before_provider_call(
        &mut self,
        cx: &mut Cx<'_>,
        exchange: &mut Exchange,
        dep: &Deployment,
    ) {
        let Some(adm) = self.admission.as_ref() else {
            return;
        };
        if cx.cfg.budget.enforce_mid_stream && cx.record.stream && adm.has_budget() {
            if let Some(left) = budget::remaining_micro(cx.host.store(), adm, cx.host.now_ms()) {
                exchange.set_mid_stream_limit(MidStreamLimit {
                    prompt_tokens: budget::prompt_estimate_tokens(cx.record.body_len),
                    price: dep.price,
                    limit_micro: left,
                });
            }
        }
    }

    /// Charge the request once: usage (or an estimate) -> cost -> a usage
    /// event for the counter service; release its parallel slot. Returns the
    /// cost (`None`: nothing is charged, the request holds no admission).
    /// Called when the answer is complete, and at the end for every other
    /// ending (client abort, reset), so holds are never leaked.
    pub fn settle(&mut self, cx: &mut Cx<'_>) -> Option<u64> {
        if cx.record.cost_micro.is_some() {
            return cx.record.cost_micro;
        }
        let adm = self.admission.as_ref()?;
        let started = cx.host.span_start();
        let usage = cx.exchange.and_then(|e| e.usage());
        let streamed = cx.exchange.map_or(0, |e| e.streamed_bytes());
        let complete = cx.exchange.is_some_and(|e| e.is_complete());
        let (cost, tokens) = match cx.deployment() {
            Some(d) if cx.record.attempts > 0 => {
                metering::charge(d, usage, cx.record.body_len, streamed, complete)
            }
            _ => (0, Default::default()),
        };
        let now = cx.host.now_ms();
        // What is left after this request, read before its usage event is
        // applied (the counter service may apply it any time after).
        cx.record.remaining_budget_micro =
            budget::remaining_micro(cx.host.store(), adm, now).map(|r| r.saturating_sub(cost));
        if let Some(event) = metering::settle(adm, cost, &tokens, now) {
            usage_sink::enqueue(cx.host, &event, now, adm.settles_limits());
        }
        if let Err(e) = budget::release(cx.host.store(), adm) {
            warn!("llm-gateway: parallel slot not released: {e}");
        }
        let model = adm.model();
        let key = adm.key_alias();
        telemetry::count_usage(cx.host, key, model, "requests", 1);
        telemetry::count_usage(cx.host, key, model, "tokens", tokens.total());
        telemetry::count_usage(cx.host, key, model, "cost_micro_usd", cost);
        if let Some(team) = cx
            .record
            .caller
            .caller(cx.cfg)
            .key()
            .and_then(|k| k.team.as_deref())
        {
            telemetry::count_team(cx.host, team, "requests", 1);
            telemetry::count_team(cx.host, team, "tokens", tokens.total());
            telemetry::count_team(cx.host, team, "cost_micro_usd", cost);
        }
        if let (Some(k), Some(left)) = (key, cx.record.remaining_budget_micro) {
            telemetry::remaining_budget(cx.host, k, left);
        }
        cx.record.cost_micro = Some(cost);
        cx.host.span_stop(Span::Settle, started);
        Some(cost)
    }
}
