//! Thin, non-panicking wrappers over the host calls the filter uses.

use log::warn;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, Status};
use std::cell::RefCell;

use crate::store::{CasMismatch, SharedStore};

use crate::error::GatewayError;

pub fn response_header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpResponseHeaders, name)
        .ok()
        .flatten()
}

pub fn set_request_header(name: &str, value: &str) {
    if let Err(s) = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value)) {
        warn!("llm-gateway: cannot set request header {name}: {s:?}");
    }
}

pub fn remove_request_header(name: &str) {
    let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
}

pub fn set_response_header(name: &str, value: &str) {
    if let Err(s) = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value)) {
        warn!("llm-gateway: cannot set response header {name}: {s:?}");
    }
}

pub fn remove_response_header(name: &str) {
    let _ = hostcalls::remove_map_value(MapType::HttpResponseHeaders, name);
}

pub fn body(kind: BufferType, size: usize) -> Vec<u8> {
    match hostcalls::get_buffer(kind, 0, size) {
        Ok(Some(b)) => b,
        _ => Vec::new(),
    }
}

pub fn replace_body(kind: BufferType, size: usize, bytes: &[u8]) {
    if let Err(s) = hostcalls::set_buffer(kind, 0, size, bytes) {
        warn!("llm-gateway: cannot replace body: {s:?}");
    }
}

/// Ask Envoy to pick the route again, now that the cluster header is set.
/// The Rust SDK has no wrapper for this foreign function.
pub fn clear_route_cache() {
    if let Err(s) = hostcalls::call_foreign_function("clear_route_cache", None) {
        warn!("llm-gateway: clear_route_cache failed ({s:?}); the route may not follow the chosen cluster");
    }
}

/// Request header set just before the filter's own local replies.
pub const LOCAL_REPLY_MARKER: &str = "x-llm-gateway-local-reply";

/// Answer the client directly with an OpenAI-shaped error.
pub fn send_error(err: &GatewayError, extra: &[(String, String)]) {
    send_json_with(err.status, "application/json", &err.to_body(), extra);
}

/// Answer the client directly (a local reply replaces any upstream response
/// not yet sent).
pub fn send_json_with(status: u16, content_type: &str, body: &[u8], extra: &[(String, String)]) {
    // Marks the reply as the filter's own, so the listener's local_reply_config
    // (which rewrites Envoy's upstream-failure replies) leaves it alone even
    // when an earlier attempt set an upstream failure flag.
    set_request_header(LOCAL_REPLY_MARKER, "1");
    let mut headers = vec![("content-type", content_type)];
    headers.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if let Err(s) = hostcalls::send_http_response(u32::from(status), headers, Some(body)) {
        warn!("llm-gateway: cannot send local reply: {s:?}");
    }
}

/// Unix seconds from the host clock.
pub fn now_unix() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Random bytes from WASI's random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    if getrandom::fill(&mut buf).is_err() {
        // A clock-derived fallback keeps ids unique enough and routing spread.
        let t = hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (t >> ((i % 16) * 8)) as u8;
        }
    }
    buf
}

/// Milliseconds since the Unix epoch from the host clock.
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Envoy shared data (one per VM id, shared by every worker thread) as the
/// routing code's store.
pub struct WasmStore;

impl SharedStore for WasmStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(bytes), cas)) => Some((bytes, cas.unwrap_or(0))),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(CasMismatch),
            Err(s) => {
                warn!("llm-gateway: shared data write failed: {s:?}");
                Err(CasMismatch)
            }
        }
    }
}

/// Status (`None`: no headers at all, the call failed to connect, was reset
/// or timed out) and body of the dispatched call whose answer is being
/// delivered.
pub fn call_response(num_headers: usize, body_size: usize) -> (Option<u16>, Vec<u8>) {
    let status = if num_headers > 0 {
        hostcalls::get_map(MapType::HttpCallResponseHeaders)
            .unwrap_or_default()
            .into_iter()
            .find(|(k, _)| k == ":status")
            .and_then(|(_, v)| v.parse::<u16>().ok())
    } else {
        None
    };
    let body = if body_size > 0 {
        body(BufferType::HttpCallResponseBody, body_size)
    } else {
        Vec::new()
    };
    (status, body)
}

/// The id of the shared queue `name` of this VM id, resolved once per VM.
pub fn shared_queue(name: &'static str) -> Option<u32> {
    thread_local! {
        static QUEUES: RefCell<Vec<(&'static str, u32)>> = const { RefCell::new(Vec::new()) };
    }
    QUEUES.with(|qs| {
        if let Some((_, id)) = qs.borrow().iter().find(|(n, _)| *n == name) {
            return Some(*id);
        }
        let id = hostcalls::resolve_shared_queue("llm_gateway", name)
            .ok()
            .flatten()?;
        qs.borrow_mut().push((name, id));
        Some(id)
    })
}
