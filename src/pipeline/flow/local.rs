//! The gateway's own endpoints, answered without a provider: `/v1/models`
//! and `/v1/models/{id}`, `/key/info`, the spend and team reports.

use std::rc::Rc;

use super::super::host::{Action, Host};
use super::super::Endpoint;
use super::{reply, RequestFlow};
use crate::accounting::metering;

impl RequestFlow {
    /// Answer one of the gateway's own endpoints (the caller is
    /// authenticated).
    pub(super) fn gateway_endpoint(
        &mut self,
        endpoint: Endpoint,
        path: &str,
        host: &mut dyn Host,
    ) -> Action {
        match endpoint {
            Endpoint::Models => {
                self.replied = true;
                let body =
                    metering::models_body(&self.cfg, &self.record.caller, host.now_ms() / 1000);
                reply::send_json_with(host, 200, "application/json", &body, &[]);
                Action::Pause
            }
            Endpoint::ModelInfo => {
                let id = path.split('?').next().unwrap_or("");
                let id = id
                    .trim_end_matches('/')
                    .rsplit_once("/models/")
                    .map_or("", |(_, m)| m);
                let id = crate::codec::url::percent_decode(id, false);
                match metering::model_info(
                    &self.cfg,
                    &self.record.caller,
                    &id,
                    host.now_ms() / 1000,
                ) {
                    Some(body) => {
                        self.replied = true;
                        reply::send_json_with(host, 200, "application/json", &body, &[]);
                        Action::Pause
                    }
                    None => {
                        let e = crate::routing::model_not_found(&self.cfg, &id);
                        self.reply_error(&e, host)
                    }
                }
            }
            Endpoint::KeyInfo => {
                let query = path.split_once('?').map_or("", |(_, q)| q);
                let now = host.now_ms();
                match metering::key_info(&self.cfg, host.store(), &self.record.caller, query, now) {
                    Ok(body) => {
                        self.replied = true;
                        reply::send_json_with(host, 200, "application/json", &body, &[]);
                        Action::Pause
                    }
                    Err(e) => self.reply_error(&e, host),
                }
            }
            Endpoint::Spend(which) => {
                let query = path.split_once('?').map_or("", |(_, q)| q);
                let now = host.now_ms();
                let cfg = Rc::clone(&self.cfg);
                if let (super::super::SpendEndpoint::Report, Some(fleet)) =
                    (which, cfg.fleet.as_ref())
                {
                    // Fleet-wide: the days' totals from Redis (one call).
                    match crate::spend::ledger::report_days(query, now) {
                        Ok(days) => {
                            let body = super::super::spend_fleet::read_body(fleet, &days);
                            if let Some(t) = super::super::fleet_calls::post(host, fleet, &body) {
                                self.spend_read = Some((t, query.to_string()));
                                return Action::Pause;
                            }
                        }
                        Err(e) => return self.reply_error(&e, host),
                    }
                }
                match super::super::spend_answer(
                    which,
                    &cfg,
                    host.store(),
                    &self.record.caller,
                    query,
                    now,
                ) {
                    Ok(body) => {
                        self.replied = true;
                        reply::send_json_with(host, 200, "application/json", &body, &[]);
                        Action::Pause
                    }
                    Err(e) => self.reply_error(&e, host),
                }
            }
            _ => Action::Continue,
        }
    }

    /// The fleet-wide spend report's read answered: the report from Redis,
    /// or (Redis unreachable) this Envoy's own totals, said in a header.
    pub(super) fn spend_read_answered(
        &mut self,
        num_headers: usize,
        body_size: usize,
        host: &mut dyn Host,
    ) {
        let Some((_, query)) = self.spend_read.take() else {
            return;
        };
        let (status, body) = host.call_response(num_headers, body_size);
        let cfg = Rc::clone(&self.cfg);
        let key = self.record.caller.caller(&cfg).key();
        let reader = key.map(|k| (k.alias.as_str(), k.team.as_deref()));
        let now = host.now_ms();
        let (per_day, scope) = match super::super::spend_fleet::read_answer(status, &body) {
            Ok(days) => (Ok(days), "fleet"),
            Err(e) => {
                log::warn!(
                    "llm-gateway: fleet spend totals unreadable ({e}); answering this Envoy's"
                );
                (
                    crate::spend::ledger::local_days(host.store(), &query, now),
                    "local",
                )
            }
        };
        let answer = per_day.and_then(|d| crate::spend::ledger::report_from(&d, &query, reader));
        match answer {
            Ok(body) => {
                self.replied = true;
                reply::send_json_with(
                    host,
                    200,
                    "application/json",
                    &body,
                    &[("x-llm-gateway-spend-scope".to_string(), scope.to_string())],
                );
            }
            Err(e) => {
                self.reply_error(&e, host);
            }
        }
    }
}
