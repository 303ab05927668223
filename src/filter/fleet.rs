//! Fleet counters at the edge: the webdis calls (a worker's lease for a
//! cold scope; the counter service's syncs) and the wake-up queue. The
//! bookkeeping is pure, in [`crate::fleet`].

use std::time::Duration;

use log::{info, warn};
use proxy_wasm::hostcalls;

use super::host::{self, WasmStore};
use crate::config::Config;
use crate::fleet::{self, CallItem, FleetSettings, Grants};

/// This Envoy's instance id in Redis (made by whoever needs it first).
pub fn instance() -> String {
    fleet::instance_id(&WasmStore, || {
        let b = host::random_bytes::<8>();
        b.iter().map(|x| format!("{x:02x}")).collect()
    })
}

/// POST a body to webdis; the token of the call, or `None` when it could
/// not even be dispatched (unknown cluster ...).
pub fn post(settings: &FleetSettings, body: &[u8]) -> Option<u32> {
    let headers = vec![
        (":method", "POST"),
        (":path", "/"),
        (":authority", settings.cluster.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    match hostcalls::dispatch_http_call(
        &settings.cluster,
        headers,
        Some(body),
        vec![],
        Duration::from_millis(settings.timeout_ms),
    ) {
        Ok(token) => Some(token),
        Err(s) => {
            warn!(
                "llm-gateway: cannot call the fleet counters (cluster `{}`): {s:?}",
                settings.cluster
            );
            None
        }
    }
}

/// A worker leases what one request needs (one Redis round trip).
pub fn lease(cfg: &Config, needs: &[CallItem]) -> Option<u32> {
    let settings = cfg.fleet.as_ref()?;
    let body = fleet::call_body(
        &settings.key_prefix,
        "grow",
        &instance(),
        0,
        settings.lease_ttl_ms,
        needs,
    );
    super::metrics::add("llm_gateway.fleet.lease_calls", 1);
    post(settings, &body)
}

/// What a worker's lease call granted.
pub fn grants_from_answer(needs: &[CallItem], num_headers: usize, body_size: usize) -> Grants {
    let (status, body) = host::call_response(num_headers, body_size);
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
            super::metrics::add("llm_gateway.fleet.lease_call_failures", 1);
            Grants::Failed
        }
    }
}

/// Ask the counter service to sync these scopes now (a worker just leased
/// for them, so they are active).
pub fn wake<'a>(scopes: impl Iterator<Item = &'a str>) {
    let queue = host::shared_queue(fleet::WAKE_QUEUE);
    if let Some(q) = queue {
        for s in scopes {
            let _ = hostcalls::enqueue_shared_queue(q, Some(s.as_bytes()));
        }
    }
}
