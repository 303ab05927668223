//! Native test support: the in-memory host and a driver that plays Envoy's
//! part around one [`RequestFlow`] (the callbacks in Envoy's order, the
//! router's forwarding, the provider's answer).

pub mod deployments;
pub mod fake_host;

use std::rc::Rc;

use llm_gateway::config::Config;
use llm_gateway::pipeline::{Action, Host, RequestFlow};
use llm_gateway::store::FakeStore;
use serde_json::Value;

pub use fake_host::{FakeHost, LocalReply};

/// One Envoy: a configuration and the shared data its workers share.
pub struct Gateway {
    pub cfg: Rc<Config>,
    pub store: Rc<FakeStore>,
    pub now_ms: u64,
    rng: u64,
    /// A counter service runs: requests find its usage queue registered.
    pub counter_service: bool,
    unknown_clusters: Vec<String>,
}

/// What the client got.
#[derive(Debug, Clone)]
pub struct ClientGot {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ClientGot {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the provider received through Envoy's router (the first attempt).
#[derive(Debug, Clone)]
pub struct ProviderGot {
    pub cluster: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl ProviderGot {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Gateway {
    pub fn new(config: Value) -> Gateway {
        let bytes = serde_json::to_vec(&config).unwrap();
        let cfg = llm_gateway::pipeline::load_config(&bytes, &|_| None)
            .unwrap_or_else(|e| panic!("config: {e}"));
        Gateway {
            cfg: Rc::new(cfg),
            store: Rc::new(FakeStore::new()),
            now_ms: 1_700_000_000_000,
            rng: 0x9e37_79b9_7f4a_7c15,
            counter_service: false,
            unknown_clusters: Vec::new(),
        }
    }

    /// Clusters every later request's `dispatch_http_call` refuses.
    pub fn unknown_clusters(&mut self, clusters: &[&str]) {
        self.unknown_clusters = clusters.iter().map(|c| c.to_string()).collect();
    }

    /// Start a request: headers then body, as Envoy delivers them.
    pub fn send(&mut self, path: &str, headers: &[(&str, &str)], body: &Value) -> Request {
        self.send_raw(path, headers, serde_json::to_vec(body).unwrap())
    }

    /// [`Self::send`] with the body's bytes as given.
    pub fn send_raw(&mut self, path: &str, headers: &[(&str, &str)], bytes: Vec<u8>) -> Request {
        self.rng = self.rng.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut host = FakeHost::new(Rc::clone(&self.store));
        host.now_ms = self.now_ms;
        host.rng = self.rng | 1;
        host.unknown_clusters = self.unknown_clusters.clone();
        if self.counter_service {
            host.queues.insert(
                llm_gateway::pipeline::counter_service::USAGE_QUEUE,
                Vec::new(),
            );
            host.queues.insert(
                llm_gateway::pipeline::counter_service::SPEND_QUEUE,
                Vec::new(),
            );
        }
        host.request_headers = vec![
            (":method".into(), "POST".into()),
            (":path".into(), path.into()),
            (":authority".into(), "gateway.local".into()),
        ];
        for (k, v) in headers {
            host.request_headers.push((k.to_string(), v.to_string()));
        }
        host.request_headers
            .push(("content-length".into(), bytes.len().to_string()));
        host.request_body = bytes;
        let mut flow = RequestFlow::new(Rc::clone(&self.cfg));
        let header_action = flow.on_request_headers(false, &mut host);
        let mut body_action = None;
        if host.local_reply.is_none() {
            let n = host.request_body.len();
            body_action = Some(flow.on_request_body(n, true, &mut host));
        }
        Request {
            flow,
            host,
            header_action,
            body_action,
            streamed: Vec::new(),
        }
    }

    /// A chat completion to `/v1/chat/completions`.
    pub fn chat(&mut self, headers: &[(&str, &str)], body: &Value) -> Request {
        self.send("/v1/chat/completions", headers, body)
    }
}

/// One request in flight.
#[allow(dead_code)]
pub struct Request {
    pub flow: RequestFlow,
    pub host: FakeHost,
    pub header_action: Action,
    pub body_action: Option<Action>,
    /// What the client received of a forwarded body, chunk by chunk.
    pub streamed: Vec<u8>,
}

impl Request {
    /// The flow answered locally before anything went upstream.
    pub fn refused(&self) -> Option<&LocalReply> {
        match self.body_action {
            Some(Action::Continue) => None,
            _ => self.host.local_reply.as_ref(),
        }
    }

    /// What Envoy's router forwards: the rewritten request.
    pub fn upstream(&self) -> ProviderGot {
        assert_eq!(
            self.body_action,
            Some(Action::Continue),
            "the request was not forwarded: {:?}",
            self.host.local_reply
        );
        let h = &self.host;
        ProviderGot {
            cluster: h
                .request_header(&self.flow_cluster_header())
                .unwrap_or_default()
                .to_string(),
            path: h.request_header(":path").unwrap_or_default().to_string(),
            headers: h.request_headers.clone(),
            body: serde_json::from_slice(&h.request_body).unwrap_or(Value::Null),
        }
    }

    fn flow_cluster_header(&self) -> String {
        llm_gateway::config::DEFAULT_CLUSTER_HEADER.to_string()
    }

    /// The provider answers the routed attempt with a whole body.
    pub fn respond(&mut self, status: u16, content_type: &str, body: &[u8]) -> Action {
        self.respond_with(status, content_type, &[], body)
    }

    /// [`Self::respond`] with more response headers (`retry-after` ...).
    pub fn respond_with(
        &mut self,
        status: u16,
        content_type: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Action {
        self.host.response_headers = vec![
            (":status".into(), status.to_string()),
            ("content-type".into(), content_type.into()),
            ("content-length".into(), body.len().to_string()),
        ];
        self.host
            .response_headers
            .extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let a = self
            .flow
            .on_response_headers(body.is_empty(), &mut self.host);
        if self.host.local_reply.is_some() || body.is_empty() {
            return a;
        }
        self.host.response_body = body.to_vec();
        let a = self.flow.on_response_body(body.len(), true, &mut self.host);
        if a == Action::Continue && self.host.local_reply.is_none() {
            self.streamed.extend_from_slice(&self.host.response_body);
        }
        a
    }

    /// The provider starts a streamed answer.
    pub fn respond_stream_headers(&mut self, status: u16, content_type: &str) -> Action {
        self.host.response_headers = vec![
            (":status".into(), status.to_string()),
            ("content-type".into(), content_type.into()),
        ];
        self.flow.on_response_headers(false, &mut self.host)
    }

    /// One chunk of a streamed answer reaches the filter; returns what the
    /// client gets of it.
    pub fn chunk(&mut self, bytes: &[u8], end_of_stream: bool) -> Vec<u8> {
        self.host.response_body = bytes.to_vec();
        let a = self
            .flow
            .on_response_body(bytes.len(), end_of_stream, &mut self.host);
        assert_eq!(a, Action::Continue, "a stream chunk was held");
        let out = self.host.response_body.clone();
        self.streamed.extend_from_slice(&out);
        out
    }

    /// The out-of-band call `token` answers. A request held for it that
    /// the flow resumes goes on to Envoy's router.
    pub fn answer_call(&mut self, token: u32, status: Option<u16>, body: &[u8]) {
        self.host.call_answer = (status, body.to_vec());
        let resumes = self.host.resumes;
        self.flow.on_http_call_response(
            token,
            usize::from(status.is_some()),
            body.len(),
            &mut self.host,
        );
        if self.host.resumes > resumes && self.body_action == Some(Action::Pause) {
            self.body_action = Some(Action::Continue);
        }
    }

    /// The request went on to the provider (nothing held, no local reply).
    pub fn forwarded(&self) -> bool {
        self.body_action == Some(Action::Continue)
    }

    /// The request ends (Envoy's `on_log`).
    pub fn finish(&mut self) {
        self.flow.on_log(&mut self.host);
    }

    /// What the client got: the flow's local reply, or the forwarded answer.
    pub fn client(&self) -> ClientGot {
        if let Some(r) = &self.host.local_reply {
            return ClientGot {
                status: r.status,
                headers: r.headers.clone(),
                body: r.body.clone(),
            };
        }
        ClientGot {
            status: self
                .host
                .response_header(":status")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            headers: self.host.response_headers.clone(),
            body: self.streamed.clone(),
        }
    }
}

/// `sha256:<hex>` of a key, as `virtual_keys[].key_hash` takes it.
pub fn key_hash(key: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(key.as_bytes());
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The SSE `data:` payloads of a stream, in order.
pub fn sse_data(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .split("\n\n")
        .filter_map(|ev| {
            ev.lines()
                .find_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                .map(|d| d.trim().to_string())
        })
        .collect()
}

/// An Anthropic Messages stream whose one text block is written in `texts`,
/// one event per piece.
pub fn anthropic_text_stream(texts: &[&str]) -> Vec<String> {
    let mut ev = vec![
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n".to_string(),
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n".to_string(),
    ];
    for t in texts {
        let delta = serde_json::json!({"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": t}});
        ev.push(format!("event: content_block_delta\ndata: {delta}\n\n"));
    }
    ev.push(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n".into(),
    );
    ev.push("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":7}}\n\n".into());
    ev.push("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".into());
    ev
}

/// The text of choice 0 of an OpenAI stream's `data:` payloads.
pub fn streamed_text(data: &[String]) -> String {
    data.iter()
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}
