//! [`Host`] over proxy-wasm: each method one fallible host call, failures
//! logged and read as "nothing there" (a panic would take the VM down).
//! No decisions here; they are in [`crate::pipeline`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use log::warn;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};

use super::timing;
use crate::pipeline::host::{HeaderMap, Host, MetricKind, Part, Span};
use crate::pipeline::telemetry::{metric_name, parts_hash};
use crate::store::{CasMismatch, SharedStore};

/// The host of every context of this VM (host calls need no handle). One
/// is made per callback: it keeps the clock read once for the callback (a
/// request reads it about seven times; each read is a host call).
#[derive(Default)]
pub struct WasmHost {
    now_ms: std::cell::Cell<Option<u64>>,
}

impl WasmHost {
    /// The host for one callback.
    pub fn new() -> Self {
        WasmHost::default()
    }
}

/// Envoy shared data (one per VM id, shared by every worker thread).
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

fn buffer(kind: BufferType, size: usize) -> Vec<u8> {
    match hostcalls::get_buffer(kind, 0, size) {
        Ok(Some(b)) => b,
        _ => Vec::new(),
    }
}

fn set_buffer(kind: BufferType, size: usize, bytes: &[u8]) {
    if let Err(s) = hostcalls::set_buffer(kind, 0, size, bytes) {
        warn!("llm-gateway: cannot replace body: {s:?}");
    }
}

// The SDK's wrappers for these panic on any status but `Ok` (and a panic
// takes the VM down); Envoy refuses a change to a header map that is gone or
// no longer writable (the request's headers once its response is under
// way; the response's before there is one), and a header value need not be
// UTF-8, which the SDK's getter unwraps: so they are called raw here, a
// refusal logged and read as "nothing there".
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_set_header_map_pairs(map_type: u32, map_data: *const u8, map_size: usize) -> u32;
}

/// proxy-wasm's `Status::Ok`.
const STATUS_OK: u32 = 0;

fn get_header(map: MapType, name: &str) -> Option<String> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: `name` is live for the call; on `Ok` the host wrote a buffer
    // it allocated through this module's allocator (proxy_on_memory_allocate),
    // of `size` bytes, whose ownership passes to us.
    let status = unsafe {
        proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut data, &mut size)
    };
    if status != STATUS_OK {
        return None;
    }
    if data.is_null() {
        return Some(String::new());
    }
    // SAFETY: see above.
    let bytes = unsafe { Vec::from_raw_parts(data, size, size) };
    Some(lossy(bytes))
}

/// A whole header map. As bytes: the SDK's string form unwraps UTF-8, and a
/// client may send any byte above 0x7f in a header value (HTTP's obs-text),
/// so one such header would take the VM down; here it reads lossily.
fn header_pairs(map: MapType) -> Vec<(String, String)> {
    hostcalls::get_map_bytes(map)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, lossy(v)))
        .collect()
}

/// [`Host::edit_headers`] on `map`: one read, one write.
fn edit_header_map(map_type: MapType, remove: &[&str], set: &[(&str, &str)]) {
    // Two edits or fewer: as cheap one by one as a read and a write.
    let whole = remove.len() + set.len() > 2;
    let read = whole
        .then(|| hostcalls::get_map_bytes(map_type).ok())
        .flatten();
    let Some(mut map) = read else {
        // One edit at a time (each logs its refusal).
        for name in remove {
            remove_header(map_type, name);
        }
        for (name, value) in set {
            set_header(map_type, name, value);
        }
        return;
    };
    let named = |k: &str, n: &str| k.eq_ignore_ascii_case(n);
    map.retain(|(k, _)| {
        !remove.iter().any(|n| named(k, n)) && !set.iter().any(|(n, _)| named(k, n))
    });
    let kept = map.len();
    let mut pairs: Vec<(&str, &[u8])> = map
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    for (name, value) in set {
        // A name set twice keeps its last value, as single edits would.
        match pairs[kept..].iter_mut().find(|(k, _)| named(k, name)) {
            Some(p) => p.1 = value.as_bytes(),
            None => pairs.push((name, value.as_bytes())),
        }
    }
    set_header_map(map_type, &pairs);
}

/// Replace a whole header map (the proxy-wasm pairs encoding: count, then
/// each name and value length, then each name and value NUL-terminated).
fn set_header_map(map: MapType, pairs: &[(&str, &[u8])]) {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| k.len() + v.len() + 10)
        .sum::<usize>();
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        bytes.extend_from_slice(&(k.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        bytes.extend_from_slice(k.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(v);
        bytes.push(0);
    }
    // SAFETY: `bytes` is live for the call; the host only reads it.
    let status = unsafe { proxy_set_header_map_pairs(map as u32, bytes.as_ptr(), bytes.len()) };
    if status != STATUS_OK {
        warn!("llm-gateway: header map not replaced (status {status})");
    }
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn set_header(map: MapType, name: &str, value: &str) {
    // SAFETY: the pointers and lengths are of live `&str`s, which the host
    // only reads during the call.
    let status = unsafe {
        proxy_replace_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    };
    if status == STATUS_OK {
        return;
    }
    if name == crate::pipeline::flow::reply::LOCAL_REPLY_MARKER {
        // Refused in a response's body callbacks, where it is not needed.
        log::debug!("llm-gateway: local reply marker not set (status {status})");
    } else {
        warn!("llm-gateway: cannot set header {name} (status {status})");
    }
}

fn remove_header(map: MapType, name: &str) {
    // SAFETY: as in `set_header`.
    let status = unsafe { proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()) };
    if status != STATUS_OK {
        warn!("llm-gateway: cannot remove header {name} (status {status})");
    }
}

thread_local! {
    /// Shared queue ids by name: registered (the counter service) or resolved.
    static QUEUES: RefCell<Vec<(&'static str, u32)>> = const { RefCell::new(Vec::new()) };
}

/// The counter service registered `name` as `id`.
pub fn remember_queue(name: &'static str, id: u32) {
    QUEUES.with(|qs| qs.borrow_mut().push((name, id)));
}

/// The id of the shared queue `name` of this VM id, resolved once per VM.
fn shared_queue(name: &'static str) -> Option<u32> {
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

thread_local! {
    /// Metric ids by a 64-bit FNV-1a hash of (kind, name parts): a request's
    /// dozen metric updates look their ids up without formatting a name
    /// (formatting and hashing the full names cost about 0.5 µs per update).
    /// A name is built only the first time, to define the metric. With at
    /// most thousands of metric names per VM, a 64-bit collision is not a
    /// practical concern.
    static METRIC_IDS: RefCell<HashMap<u64, u32>> = RefCell::new(HashMap::new());
    /// Counter increments not yet handed to Envoy, by metric id: a request
    /// makes about a dozen, and each host call costs about as much as a
    /// request's whole translation, so they are summed here and sent by
    /// [`flush_counters`] from the root context (the worker's tick, every
    /// 50 ms at most; after each counter-service callback). Scrapes see a
    /// counter at most one tick late; it is defined (and listed) at once.
    static PENDING_COUNTS: RefCell<Vec<(u32, u64)>> = const { RefCell::new(Vec::new()) };
}

/// Hand the summed counter increments to Envoy.
pub fn flush_counters() {
    let pending = PENDING_COUNTS.with(|p| std::mem::take(&mut *p.borrow_mut()));
    for (id, n) in &pending {
        let _ = hostcalls::increment_metric(*id, (*n).min(i64::MAX as u64) as i64);
    }
    // The vector's room is kept for the next interval.
    PENDING_COUNTS.with(|p| {
        let mut p = p.borrow_mut();
        if p.is_empty() {
            let mut v = pending;
            v.clear();
            *p = v;
        }
    });
}

/// The id of the metric of `kind` named by `parts`, defined on first use.
fn metric_id(kind: MetricType, parts: &[Part<'_>]) -> Option<u32> {
    let h = parts_hash(kind as u8, parts);
    METRIC_IDS.with(|ids| {
        if let Some(id) = ids.borrow().get(&h) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(kind, &metric_name(parts)).ok()?;
        ids.borrow_mut().insert(h, id);
        Some(id)
    })
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
}

impl Host for WasmHost {
    fn now_ms(&self) -> u64 {
        if let Some(t) = self.now_ms.get() {
            return t;
        }
        let t = hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.now_ms.set(Some(t));
        t
    }

    fn random_bytes(&mut self, buf: &mut [u8]) {
        if getrandom::fill(buf).is_err() {
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
    }

    fn store(&self) -> &dyn SharedStore {
        &WasmStore
    }

    fn enqueue(&mut self, queue: &'static str, message: &[u8]) -> bool {
        match shared_queue(queue) {
            Some(q) => hostcalls::enqueue_shared_queue(q, Some(message)).is_ok(),
            None => false,
        }
    }

    fn dequeue(&mut self, queue: &'static str) -> Option<Vec<u8>> {
        let q = shared_queue(queue)?;
        match hostcalls::dequeue_shared_queue(q) {
            Ok(m) => m,
            Err(s) => {
                warn!("llm-gateway counter: dequeue failed: {s:?}");
                None
            }
        }
    }

    fn set_tick_period(&mut self, period_ms: u64) {
        let _ = hostcalls::set_tick_period(Duration::from_millis(period_ms));
    }

    fn request_headers(&self) -> Vec<(String, String)> {
        header_pairs(MapType::HttpRequestHeaders)
    }

    fn set_request_header(&mut self, name: &str, value: &str) {
        set_header(MapType::HttpRequestHeaders, name, value);
    }

    fn remove_request_header(&mut self, name: &str) {
        remove_header(MapType::HttpRequestHeaders, name);
    }

    fn edit_headers(&mut self, map: HeaderMap, remove: &[&str], set: &[(&str, &str)]) {
        let map = match map {
            HeaderMap::Request => MapType::HttpRequestHeaders,
            HeaderMap::Response => MapType::HttpResponseHeaders,
        };
        edit_header_map(map, remove, set);
    }

    fn request_body(&self, size: usize) -> Vec<u8> {
        buffer(BufferType::HttpRequestBody, size)
    }

    fn replace_request_body(&mut self, size: usize, body: &[u8]) {
        set_buffer(BufferType::HttpRequestBody, size, body);
    }

    /// The Rust SDK has no wrapper for this foreign function.
    fn clear_route_cache(&mut self) {
        if let Err(s) = hostcalls::call_foreign_function("clear_route_cache", None) {
            warn!("llm-gateway: clear_route_cache failed ({s:?}); the route may not follow the chosen cluster");
        }
    }

    fn resume_request(&mut self) {
        let _ = hostcalls::resume_http_request();
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    fn response_header(&self, name: &str) -> Option<String> {
        get_header(MapType::HttpResponseHeaders, name)
    }

    fn set_response_header(&mut self, name: &str, value: &str) {
        set_header(MapType::HttpResponseHeaders, name, value);
    }

    fn remove_response_header(&mut self, name: &str) {
        remove_header(MapType::HttpResponseHeaders, name);
    }

    fn response_body(&self, size: usize) -> Vec<u8> {
        buffer(BufferType::HttpResponseBody, size)
    }

    fn replace_response_body(&mut self, size: usize, body: &[u8]) {
        set_buffer(BufferType::HttpResponseBody, size, body);
    }

    fn send_local_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        if let Err(s) =
            hostcalls::send_http_response(u32::from(status), headers.to_vec(), Some(body))
        {
            warn!("llm-gateway: cannot send local reply: {s:?}");
        }
    }

    fn dispatch_http_call(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Option<u32> {
        match hostcalls::dispatch_http_call(
            cluster,
            headers.to_vec(),
            Some(body),
            vec![],
            Duration::from_millis(timeout_ms),
        ) {
            Ok(token) => Some(token),
            Err(s) => {
                warn!("llm-gateway: cannot dispatch a call to cluster {cluster}: {s:?}");
                None
            }
        }
    }

    fn call_response(&self, num_headers: usize, body_size: usize) -> (Option<u16>, Vec<u8>) {
        let status = if num_headers > 0 {
            header_pairs(MapType::HttpCallResponseHeaders)
                .into_iter()
                .find(|(k, _)| k == ":status")
                .and_then(|(_, v)| v.parse::<u16>().ok())
        } else {
            None
        };
        let body = if body_size > 0 {
            buffer(BufferType::HttpCallResponseBody, body_size)
        } else {
            Vec::new()
        };
        (status, body)
    }

    fn call_response_header(&self, name: &str) -> Option<String> {
        get_header(MapType::HttpCallResponseHeaders, name)
    }

    fn counter_add(&mut self, parts: &[Part<'_>], n: u64) {
        let Some(id) = metric_id(MetricType::Counter, parts) else {
            return;
        };
        if n == 0 {
            return;
        }
        PENDING_COUNTS.with(|p| {
            let mut p = p.borrow_mut();
            match p.iter_mut().find(|(i, _)| *i == id) {
                Some((_, sum)) => *sum = sum.saturating_add(n),
                None => p.push((id, n)),
            }
        });
    }

    fn metric_record(&mut self, kind: MetricKind, parts: &[Part<'_>], value: u64) {
        let kind = match kind {
            MetricKind::Histogram => MetricType::Histogram,
            MetricKind::Gauge => MetricType::Gauge,
        };
        if let Some(id) = metric_id(kind, parts) {
            let _ = hostcalls::record_metric(id, value);
        }
    }

    /// Uses the raw ABI call: the SDK's wrapper panics on any status but Ok,
    /// and a failed write must not take the VM down.
    fn set_filter_state(&mut self, key: &str, value: &str) {
        // SAFETY: both slices outlive the call; the host copies them.
        let _ = unsafe { proxy_set_property(key.as_ptr(), key.len(), value.as_ptr(), value.len()) };
    }

    fn span_start(&self) -> u64 {
        timing::start()
    }

    fn span_stop(&mut self, span: Span, started: u64) {
        timing::stop(span, started);
    }
}
