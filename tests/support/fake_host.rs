//! An in-memory [`Host`]: what the request flow would ask of Envoy, held in
//! plain fields a test sets up and inspects.
//!
//! One `FakeHost` is one request's view of Envoy (its headers, bodies, local
//! reply, calls), over a [`FakeStore`] that many requests share (as the
//! workers of one Envoy share its shared data), so cooldowns, budgets and
//! limits carry from one request to the next.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::rc::Rc;

use llm_gateway::pipeline::telemetry::metric_name;
use llm_gateway::pipeline::{HeaderMap, Host, MetricKind, Part};
use llm_gateway::store::{FakeStore, SharedStore};

/// An out-of-band call the flow dispatched.
#[derive(Debug, Clone)]
pub struct Call {
    pub token: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

impl Call {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The flow's own answer to the client.
#[derive(Debug, Clone)]
pub struct LocalReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl LocalReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

pub struct FakeHost {
    pub now_ms: u64,
    /// The next random bytes come from this counter (deterministic).
    pub rng: u64,
    pub store: Rc<FakeStore>,
    /// Registered shared queues and what was put on them.
    pub queues: BTreeMap<&'static str, Vec<Vec<u8>>>,
    pub request_headers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
    pub response_headers: Vec<(String, String)>,
    /// The response body chunk being delivered (or the whole buffered body).
    pub response_body: Vec<u8>,
    pub local_reply: Option<LocalReply>,
    pub calls: Vec<Call>,
    /// Clusters `dispatch_http_call` refuses (as Envoy does for an unknown one).
    pub unknown_clusters: Vec<String>,
    /// The answer of the call being delivered: status (`None`: no headers)
    /// and body.
    pub call_answer: (Option<u16>, Vec<u8>),
    /// Headers of that answer (besides `:status`).
    pub call_headers: Vec<(String, String)>,
    pub counters: BTreeMap<String, u64>,
    pub histograms: BTreeMap<String, Vec<u64>>,
    pub filter_state: BTreeMap<String, String>,
    pub properties: BTreeMap<String, Vec<u8>>,
    pub route_cache_clears: u32,
    pub resumes: u32,
    pub tick_period_ms: Option<u64>,
    /// Host calls made, by trait method (the cost model: each is a trip
    /// out of the VM in Envoy; `tests/host_calls.rs` keeps them counted).
    pub host_calls: std::cell::RefCell<BTreeMap<&'static str, u32>>,
}

impl FakeHost {
    pub fn new(store: Rc<FakeStore>) -> Self {
        FakeHost {
            now_ms: 1_700_000_000_000,
            rng: 7,
            store,
            queues: BTreeMap::new(),
            request_headers: Vec::new(),
            request_body: Vec::new(),
            response_headers: Vec::new(),
            response_body: Vec::new(),
            local_reply: None,
            calls: Vec::new(),
            unknown_clusters: Vec::new(),
            call_answer: (None, Vec::new()),
            call_headers: Vec::new(),
            counters: BTreeMap::new(),
            histograms: BTreeMap::new(),
            filter_state: BTreeMap::new(),
            properties: BTreeMap::new(),
            route_cache_clears: 0,
            resumes: 0,
            tick_period_ms: None,
            host_calls: Default::default(),
        }
    }

    pub fn request_header(&self, name: &str) -> Option<&str> {
        self.request_headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn tally(&self, call: &'static str) {
        *self.host_calls.borrow_mut().entry(call).or_default() += 1;
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// The sum of every counter whose name starts with `prefix`.
    pub fn counters_with_prefix(&self, prefix: &str) -> u64 {
        self.counters
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| *v)
            .sum()
    }
}

fn set(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
    match headers.iter_mut().find(|(k, _)| k == name) {
        Some(h) => h.1 = value.to_string(),
        None => headers.push((name.to_string(), value.to_string())),
    }
}

fn splice(buf: &mut Vec<u8>, size: usize, with: &[u8]) {
    let size = size.min(buf.len());
    buf.splice(..size, with.iter().copied());
}

impl Host for FakeHost {
    fn now_ms(&self) -> u64 {
        self.tally("now_ms");
        self.now_ms
    }

    fn random_bytes(&mut self, buf: &mut [u8]) {
        self.tally("random_bytes");
        for b in buf.iter_mut() {
            // xorshift: deterministic, spread.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            *b = self.rng as u8;
        }
    }

    fn store(&self) -> &dyn SharedStore {
        self.tally("store");
        &*self.store
    }

    fn enqueue(&mut self, queue: &'static str, message: &[u8]) -> bool {
        self.tally("enqueue");
        match self.queues.get_mut(queue) {
            Some(q) => {
                q.push(message.to_vec());
                true
            }
            None => false,
        }
    }

    fn dequeue(&mut self, queue: &'static str) -> Option<Vec<u8>> {
        self.tally("dequeue");
        let q = self.queues.get_mut(queue)?;
        if q.is_empty() {
            None
        } else {
            Some(q.remove(0))
        }
    }

    fn set_tick_period(&mut self, period_ms: u64) {
        self.tally("set_tick_period");
        self.tick_period_ms = Some(period_ms);
    }

    fn request_headers(&self) -> Vec<(String, String)> {
        self.tally("request_headers");
        self.request_headers.clone()
    }

    fn set_request_header(&mut self, name: &str, value: &str) {
        self.tally("set_request_header");
        set(&mut self.request_headers, name, value);
    }

    fn remove_request_header(&mut self, name: &str) {
        self.tally("remove_request_header");
        self.request_headers.retain(|(k, _)| k != name);
    }

    /// As the Wasm host does it: one read and one write of the whole map
    /// (two edits or fewer: one by one).
    fn edit_headers(&mut self, map: HeaderMap, remove: &[&str], set_: &[(&str, &str)]) {
        if remove.len() + set_.len() > 2 {
            self.tally("header_map_read");
            self.tally("header_map_write");
        } else {
            for _ in 0..remove.len() + set_.len() {
                self.tally("header_edit");
            }
        }
        let headers = match map {
            HeaderMap::Request => &mut self.request_headers,
            HeaderMap::Response => &mut self.response_headers,
        };
        headers.retain(|(k, _)| !remove.contains(&k.as_str()));
        for (name, value) in set_ {
            set(headers, name, value);
        }
    }

    fn request_body(&self, size: usize) -> Vec<u8> {
        self.tally("request_body");
        self.request_body[..size.min(self.request_body.len())].to_vec()
    }

    fn replace_request_body(&mut self, size: usize, body: &[u8]) {
        self.tally("replace_request_body");
        splice(&mut self.request_body, size, body);
    }

    fn clear_route_cache(&mut self) {
        self.tally("clear_route_cache");
        self.route_cache_clears += 1;
    }

    fn resume_request(&mut self) {
        self.tally("resume_request");
        self.resumes += 1;
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.tally("property");
        self.properties.get(&path.join(".")).cloned()
    }

    fn response_header(&self, name: &str) -> Option<String> {
        self.tally("response_header");
        self.response_headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn set_response_header(&mut self, name: &str, value: &str) {
        self.tally("set_response_header");
        set(&mut self.response_headers, name, value);
    }

    fn remove_response_header(&mut self, name: &str) {
        self.tally("remove_response_header");
        self.response_headers.retain(|(k, _)| k != name);
    }

    fn response_body(&self, size: usize) -> Vec<u8> {
        self.tally("response_body");
        self.response_body[..size.min(self.response_body.len())].to_vec()
    }

    fn replace_response_body(&mut self, size: usize, body: &[u8]) {
        self.tally("replace_response_body");
        splice(&mut self.response_body, size, body);
    }

    fn send_local_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        self.tally("send_local_reply");
        self.local_reply = Some(LocalReply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        });
    }

    fn dispatch_http_call(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Option<u32> {
        self.tally("dispatch_http_call");
        if self.unknown_clusters.iter().any(|c| c == cluster) {
            return None;
        }
        let token = self.calls.len() as u32 + 1;
        self.calls.push(Call {
            token,
            cluster: cluster.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
            timeout_ms,
        });
        Some(token)
    }

    fn call_response(&self, _num_headers: usize, _body_size: usize) -> (Option<u16>, Vec<u8>) {
        self.tally("call_response");
        self.call_answer.clone()
    }

    fn call_response_header(&self, name: &str) -> Option<String> {
        self.tally("call_response_header");
        self.call_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    fn counter_add(&mut self, parts: &[Part<'_>], n: u64) {
        self.tally("counter_add");
        *self.counters.entry(metric_name(parts)).or_default() += n;
    }

    fn metric_record(&mut self, _kind: MetricKind, parts: &[Part<'_>], value: u64) {
        self.tally("metric_record");
        self.histograms
            .entry(metric_name(parts))
            .or_default()
            .push(value);
    }

    fn set_filter_state(&mut self, key: &str, value: &str) {
        self.tally("set_filter_state");
        self.filter_state.insert(key.to_string(), value.to_string());
    }
}
