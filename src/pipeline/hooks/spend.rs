//! The spend record at `finished`: one per chat or embeddings request,
//! however it ended, written where the access log reads it and gathered
//! for the counter service's spend queue (`usage_sink`, batched per worker:
//! one enqueue per request cost ~15 µs), which keeps the daily totals and
//! the recent records (`spend::ledger`). With no counter service running,
//! the filter folds them in itself.

use super::Cx;
use crate::accounting::metering::CallerId;
use crate::api::request::ClientRequest;
use crate::config::keys;
use crate::pipeline::telemetry::keys as fs;
use crate::pipeline::usage_sink;
use crate::spend::SpendRecord;

/// What the record needs from the request body.
#[derive(Default)]
pub struct SpendHook {
    /// The body's `user` (the end user), at most 256 bytes.
    end_user: Option<String>,
}

impl SpendHook {
    pub fn request_accepted(&mut self, req: &ClientRequest) {
        self.end_user = req
            .member("user")
            .and_then(|u| serde_json::from_str::<String>(u).ok())
            .filter(|u| u.len() <= 256);
    }

    /// The request is over: write and send its record.
    pub fn finished(&mut self, cx: &mut Cx<'_>, status: u16, cache: Option<&'static str>) {
        let rec = &*cx.record;
        if !rec.api_request || !cx.cfg.spend_logs {
            return;
        }
        let dep = rec.deployment.and_then(|i| cx.cfg.deployments.get(i));
        let key = rec.caller.caller(cx.cfg).key();
        let usage = cx.exchange.and_then(|e| e.usage());
        let record = SpendRecord {
            request_id: rec.answer_id().to_string(),
            // LiteLLM's call types for the other client APIs.
            call_type: match (rec.op, rec.ingress) {
                (crate::provider::Operation::Embeddings, _) => "embeddings",
                (_, crate::ingress::Ingress::Messages) => "anthropic_messages",
                (_, crate::ingress::Ingress::Completions) => "text_completion",
                _ => "chat",
            },
            api_key: key.map(|k| {
                let d = keys::digest_string(&k.digest);
                d.get(..15).unwrap_or("").to_string()
            }),
            key_alias: match &rec.caller {
                CallerId::Key(a) => Some(a.clone()),
                _ => None,
            },
            team_id: key.and_then(|k| k.team.clone()),
            end_user: self.end_user.take(),
            model_group: rec
                .requested_alias
                .clone()
                .filter(|a| !cx.cfg.deployments_for(a).is_empty())
                .unwrap_or_else(|| "unknown".into()),
            model: dep.map(|d| d.model.clone()),
            model_id: dep.map(|d| d.id.clone()),
            custom_llm_provider: dep.map(|d| {
                d.litellm_model
                    .split_once('/')
                    .map_or(d.provider.family_name(), |(p, _)| p)
                    .to_string()
            }),
            prompt_tokens: usage.map_or(0, |u| u.prompt_tokens),
            completion_tokens: usage.map_or(0, |u| u.completion_tokens),
            spend_micro: rec.cost_micro.unwrap_or(0),
            cache_hit: cache == Some("hit"),
            status_code: status,
            start_ms: rec.started_ms,
            end_ms: cx.host.now_ms(),
            attempts: rec.attempts,
        };
        let line = record.to_line();
        if cx.cfg.spend_log_filter_state {
            cx.host.set_filter_state(fs::SPEND_LOG, &line);
        }
        let now = record.end_ms;
        usage_sink::enqueue_spend(cx.host, line.as_bytes(), now);
    }
}
