//! Metering at its hook points: usage and cost where the access log reads
//! them, and the finished request's metrics.

use super::Cx;
use crate::accounting::budget;
use crate::accounting::metering::CallerId;
use crate::api::openai::Usage;
use crate::pipeline::telemetry::{self, keys};

/// What this request already published.
#[derive(Default)]
pub struct MeteringHook {
    /// What `publish_usage` last wrote (tokens, cost), so unchanged values
    /// are not written again: each write is a host call that builds a
    /// filter-state object in Envoy.
    published: Option<(Option<(u64, u64)>, u64)>,
}

impl MeteringHook {
    /// An attempt's answer arrived: its latency, and its usage as soon as it
    /// is known (the access log may be written before `on_log`).
    pub fn attempt_succeeded(&mut self, cx: &mut Cx<'_>, latency_ms: u64, ttft_ms: Option<u64>) {
        if let Some(dep) = cx.deployment() {
            let id = dep.id.clone();
            telemetry::latency(cx.host, &id, latency_ms, ttft_ms);
        }
        self.publish_usage(cx);
    }

    /// Put usage, cost and key alias where the access log can read them.
    pub fn publish_usage(&mut self, cx: &mut Cx<'_>) -> (Option<Usage>, u64) {
        let usage = cx.exchange.and_then(|e| e.usage());
        let cost = match (cx.record.cost_micro, cx.deployment()) {
            (Some(c), _) => c,
            (None, Some(d)) => usage.map_or(0, |u| {
                crate::config::pricing::cost_micro(d.price.as_ref(), &u.into())
            }),
            (None, None) => 0,
        };
        let tokens = usage.map(|u| (u.prompt_tokens, u.completion_tokens));
        let before = self.published.replace((tokens, cost));
        if before == Some((tokens, cost)) {
            return (usage, cost);
        }
        let host = &mut *cx.host;
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
            if let CallerId::Key(k) = &cx.record.caller {
                host.set_filter_state(keys::KEY_ALIAS, k);
            }
        }
        (usage, cost)
    }

    /// Metrics of the finished request (`status`: what the client got).
    pub fn finished(&mut self, cx: &mut Cx<'_>, status: u16) {
        let cfg = cx.cfg;
        let dep = cx.deployment();
        // Labels only from the configuration: an unknown alias is "unknown".
        let alias = match (dep, cx.record.requested_alias.as_deref()) {
            (Some(d), _) => d.alias.clone(),
            (None, Some(a)) if !cfg.deployments_for(a).is_empty() => a.to_string(),
            _ => "unknown".to_string(),
        };
        let (provider, deployment) = dep.map_or(("none", "none".to_string()), |d| {
            (d.provider.family_name(), d.id.clone())
        });
        let has_deployment = dep.is_some();
        if cx.record.api_request {
            telemetry::request_done(cx.host, &alias, provider, &deployment, status);
        }
        if !has_deployment {
            return;
        }
        let (usage, cost) = self.publish_usage(cx);
        if let Some(u) = usage {
            telemetry::tokens(cx.host, &alias, u.prompt_tokens, u.completion_tokens);
        }
        telemetry::cost(cx.host, &alias, cost);
    }
}
