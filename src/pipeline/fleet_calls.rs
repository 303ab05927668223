//! Fleet counters' calls: a worker's lease for a cold scope, the counter
//! service's syncs (both POSTs to webdis), and the wake-up queue. The
//! bookkeeping is pure, in [`crate::accounting::fleet`]; this is where it meets the host.

use log::{info, warn};

use super::host::{add_counter, Host};
use crate::accounting::fleet::{self, CallItem, FleetSettings, Grants};
use crate::config::Config;

/// This Envoy's instance id in Redis (made by whoever needs it first).
pub fn instance(host: &mut dyn Host) -> String {
    let mut b = [0u8; 8];
    host.random_bytes(&mut b);
    fleet::instance_id(host.store(), || {
        b.iter().map(|x| format!("{x:02x}")).collect()
    })
}

/// POST a body to webdis; the token of the call, or `None` when it could
/// not even be dispatched (unknown cluster ...).
pub fn post(host: &mut dyn Host, settings: &FleetSettings, body: &[u8]) -> Option<u32> {
    let headers = [
        (":method", "POST"),
        (":path", "/"),
        (":authority", settings.cluster.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let token = host.dispatch_http_call(&settings.cluster, &headers, body, settings.timeout_ms);
    if token.is_none() {
        warn!(
            "llm-gateway: cannot call the fleet counters (cluster `{}`)",
            settings.cluster
        );
    }
    token
}

/// A worker leases what one request needs (one Redis round trip).
pub fn lease(host: &mut dyn Host, cfg: &Config, needs: &[CallItem]) -> Option<u32> {
    let settings = cfg.fleet.as_ref()?;
    let instance = instance(host);
    let body = fleet::call_body(
        &settings.key_prefix,
        "grow",
        &instance,
        0,
        settings.lease_ttl_ms,
        needs,
    );
    add_counter(host, "llm_gateway.fleet.lease_calls", 1);
    post(host, settings, &body)
}

/// What a worker's lease call granted.
pub fn grants_from_answer(
    host: &mut dyn Host,
    needs: &[CallItem],
    num_headers: usize,
    body_size: usize,
) -> Grants {
    let (status, body) = host.call_response(num_headers, body_size);
    match fleet::parse_reply(status.unwrap_or(0), &body, needs.len()) {
        Ok(replies) => Grants::Got(
            needs
                .iter()
                .zip(replies)
                .map(|(n, r)| (n.scope.clone(), n.res, r.granted, r))
                .collect(),
        ),
        Err(e) => {
            info!("llm-gateway: lease call failed: {e}");
            add_counter(host, "llm_gateway.fleet.lease_call_failures", 1);
            Grants::Failed
        }
    }
}

/// Ask the counter service to sync these scopes now (a worker just leased
/// for them, so they are active).
pub fn wake<'a>(host: &mut dyn Host, scopes: impl Iterator<Item = &'a str>) {
    for s in scopes {
        if !host.enqueue(fleet::WAKE_QUEUE, s.as_bytes()) {
            break;
        }
    }
}
