//! Accounting: what a request costs, charged once however it ends; the
//! metrics and access-log values of the finished request.

use std::rc::Rc;

use log::warn;

use super::super::host::{Host, Span};
use super::super::telemetry::{self, keys};
use super::super::{usage_sink, Exchange, MidStreamLimit};
use super::{reply, response_status, RequestFlow};
use crate::budget;
use crate::config::Deployment;
use crate::error::{ErrorKind, GatewayError};
use crate::metering::{self, CallerId};
use crate::openai::Usage;

impl RequestFlow {
    /// Charge the request once: usage (or an estimate) -> cost -> a usage
    /// event for the counter service; release its parallel slot. Returns the
    /// cost. Called when the answer is complete, and from `on_log` for every
    /// other ending (client abort, reset), so holds are never leaked.
    pub(super) fn settle(&mut self, host: &mut dyn Host) -> Option<u64> {
        if self.charged.is_some() {
            return self.charged;
        }
        let adm = self.admission.as_ref()?;
        let started = host.span_start();
        let cfg = Rc::clone(&self.cfg);
        let dep = self.current.and_then(|t| cfg.deployments.get(t.idx));
        let usage = self.exchange.as_ref().and_then(|e| e.usage());
        let streamed = self.exchange.as_ref().map_or(0, |e| e.streamed_bytes());
        let complete = self.exchange.as_ref().is_some_and(|e| e.is_complete());
        let (cost, tokens) = match dep {
            Some(d) if self.attempts > 0 => {
                metering::charge(d, usage, self.body_len, streamed, complete)
            }
            _ => (0, Default::default()),
        };
        let now = host.now_ms();
        // What is left after this request, read before its usage event is
        // applied (the counter service may apply it any time after).
        self.remaining_after =
            budget::remaining_micro(host.store(), adm, now).map(|r| r.saturating_sub(cost));
        if let Some(event) = metering::settle(adm, cost, &tokens, now) {
            usage_sink::enqueue(host, &event, now, adm.settles_limits());
        }
        if let Err(e) = budget::release(host.store(), adm) {
            warn!("llm-gateway: parallel slot not released: {e}");
        }
        let model = adm.model().to_string();
        let key = adm.key_alias().map(str::to_string);
        telemetry::count_usage(host, key.as_deref(), &model, "requests", 1);
        telemetry::count_usage(host, key.as_deref(), &model, "tokens", tokens.total());
        telemetry::count_usage(host, key.as_deref(), &model, "cost_micro_usd", cost);
        self.charged = Some(cost);
        self.publish_usage(host);
        host.span_stop(Span::Settle, started);
        Some(cost)
    }

    /// Metrics and access-log values for the finished request.
    pub(super) fn observe_end(&mut self, host: &mut dyn Host) {
        let cfg = Rc::clone(&self.cfg);
        let status = response_status(host).unwrap_or(0);
        let dep = self.current.and_then(|t| cfg.deployments.get(t.idx));
        // Labels only from the configuration: an unknown alias is "unknown".
        let alias = match (dep, self.requested_alias.as_deref()) {
            (Some(d), _) => d.alias.clone(),
            (None, Some(a)) if !cfg.deployments_for(a).is_empty() => a.to_string(),
            _ => "unknown".to_string(),
        };
        let (provider, deployment) = dep.map_or(("none", "none".to_string()), |d| {
            (d.provider.family_name(), d.id.clone())
        });
        if self.api_request {
            telemetry::request_done(host, &alias, provider, &deployment, status);
        }
        if dep.is_none() {
            return;
        }
        let (usage, cost) = self.publish_usage(host);
        if let Some(u) = usage {
            telemetry::tokens(host, &alias, u.prompt_tokens, u.completion_tokens);
        }
        telemetry::cost(host, &alias, cost);
    }

    /// Put usage, cost and key alias where the access log can read them; as
    /// soon as they are known (the access log may be written before
    /// `on_log`), and again when the request is settled.
    pub(super) fn publish_usage(&mut self, host: &mut dyn Host) -> (Option<Usage>, u64) {
        let dep = self.current.and_then(|t| self.cfg.deployments.get(t.idx));
        let usage = self.exchange.as_ref().and_then(|e| e.usage());
        let cost = match (self.charged, dep) {
            (Some(c), _) => c,
            (None, Some(d)) => usage.map_or(0, |u| {
                crate::pricing::cost_micro(d.price.as_ref(), &u.into())
            }),
            (None, None) => 0,
        };
        let tokens = usage.map(|u| (u.prompt_tokens, u.completion_tokens));
        let before = self.published.replace((tokens, cost));
        if before == Some((tokens, cost)) {
            return (usage, cost);
        }
        if let Some((prompt, completion)) = tokens.filter(|t| before.map(|b| b.0) != Some(Some(*t)))
        {
            host.set_filter_state(keys::PROMPT_TOKENS, &prompt.to_string());
            host.set_filter_state(keys::COMPLETION_TOKENS, &completion.to_string());
        }
        if before.map(|b| b.1) != Some(cost) {
            host.set_filter_state(
                keys::COST_USD,
                budget::format_usd(cost).trim_start_matches('$'),
            );
        }
        if before.is_none() {
            if let CallerId::Key(k) = &self.caller {
                host.set_filter_state(keys::KEY_ALIAS, k);
            }
        }
        (usage, cost)
    }

    /// Set up an attempt's exchange for what the request needs: usage read
    /// from every answer, and the mid-stream budget limit when enforced.
    pub(super) fn arm(&self, exchange: &mut Exchange, dep: &Deployment, host: &mut dyn Host) {
        if self.need_usage {
            exchange.require_usage();
        }
        let Some(adm) = self.admission.as_ref() else {
            return;
        };
        if self.cfg.budget.enforce_mid_stream && self.stream && adm.has_budget() {
            if let Some(left) = budget::remaining_micro(host.store(), adm, host.now_ms()) {
                exchange.set_mid_stream_limit(MidStreamLimit {
                    prompt_tokens: budget::prompt_estimate_tokens(self.body_len),
                    price: dep.price,
                    limit_micro: left,
                });
            }
        }
    }

    /// Cost and remaining-budget headers, settling the request.
    pub(super) fn cost_headers(&mut self, host: &mut dyn Host) -> Vec<(String, String)> {
        let Some(cost) = self.settle(host) else {
            return Vec::new();
        };
        metering::cost_headers(cost, self.remaining_after)
    }

    /// Reply with a translated whole answer.
    pub(super) fn reply_whole(&mut self, status: u16, body: &[u8], host: &mut dyn Host) {
        let served = self.served_headers();
        let reply = match self.exchange.as_mut() {
            Some(ex) => ex.whole_response(status, body),
            None => {
                let err = self.last_error.clone().unwrap_or_else(|| {
                    GatewayError::new(
                        502,
                        ErrorKind::Upstream,
                        "no deployment could serve the request",
                    )
                });
                self.replied = true;
                reply::send_error(host, &err, &served);
                return;
            }
        };
        let mut served = served;
        served.extend(self.cost_headers(host));
        self.replied = true;
        reply::send_json_with(host, reply.status, reply.content_type, &reply.body, &served);
    }
}
