//! Per-request HTTP context: gather, decide (pipeline, routing), apply.
//!
//! The first attempt travels through Envoy's router like any request, to the
//! cluster of the deployment the routing strategy put first. If its answer is
//! a retryable failure (5xx, 429, 408, or the router's own 503/504 for a
//! refused connection, a reset before headers, or a timeout) and nothing has
//! reached the client yet, the failed response is held and the next attempt of
//! the plan (another deployment of the alias, then the fallback aliases) is
//! made with `dispatch_http_call`, translated for its own provider; its
//! complete answer is translated back and sent as the reply.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use log::{debug, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use super::host::{self, WasmStore};
use super::metrics::{self, Event};
use super::observe;
use super::timing::{self, Span};
use crate::budget::{self, Admission};
use crate::config::{Config, Deployment};
use crate::error::{ErrorKind, GatewayError};
use crate::metering::{self, CallerId};
use crate::pipeline::{self, Endpoint, Exchange};
use crate::provider::Operation;
use crate::request::ClientRequest;
use crate::routing::{self, ErrorClass, FailureKind, Overrides};
use crate::usage_batch::UsageBatch;

/// Request headers a client may send that must never reach a provider: the
/// client's own credentials (the gateway holds the provider's), and OpenAI
/// account headers that would not match the gateway's key.
const CLIENT_CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "x-api-key",
    "api-key",
    "openai-organization",
    "openai-project",
    "x-goog-api-key",
];

/// The client's request headers the filter reads, from one `get_map` host
/// call (instead of one call per header), and the names it must strip that
/// are actually present (so absent ones cost no `remove` call).
#[derive(Default)]
struct ClientHeaders {
    method: String,
    path: String,
    authorization: Option<String>,
    x_api_key: Option<String>,
    content_length: Option<String>,
    /// `pipeline::OVERRIDE_HEADERS` present, with their values.
    overrides: Vec<(&'static str, String)>,
    /// Present headers to remove before the request goes upstream: client
    /// credentials, `accept-encoding`, the routing overrides.
    strip: Vec<&'static str>,
    /// The filter's local-reply marker came from the client.
    has_local_reply_marker: bool,
}

impl ClientHeaders {
    fn from_pairs(pairs: Vec<(String, String)>) -> ClientHeaders {
        let mut h = ClientHeaders::default();
        for (name, value) in pairs {
            let strip = CLIENT_CREDENTIAL_HEADERS
                .iter()
                .chain(std::iter::once(&"accept-encoding"))
                .find(|s| **s == name);
            if let Some(s) = strip {
                if !h.strip.contains(s) {
                    h.strip.push(s);
                }
            }
            if let Some((o, _)) = pipeline::OVERRIDE_HEADERS.iter().find(|(o, _)| *o == name) {
                if !h.strip.contains(o) {
                    h.strip.push(o);
                    h.overrides.push((o, value.clone()));
                }
            }
            // The first value of a repeated header, as `get_map_value` gives.
            match name.as_str() {
                ":method" if h.method.is_empty() => h.method = value,
                ":path" if h.path.is_empty() => h.path = value,
                "authorization" if h.authorization.is_none() => h.authorization = Some(value),
                "x-api-key" if h.x_api_key.is_none() => h.x_api_key = Some(value),
                "content-length" if h.content_length.is_none() => h.content_length = Some(value),
                n if n == host::LOCAL_REPLY_MARKER => h.has_local_reply_marker = true,
                _ => {}
            }
        }
        h
    }
}

/// One planned attempt.
#[derive(Clone, Copy)]
struct Try {
    /// Index into `Config::deployments`.
    idx: usize,
    /// The deployment belongs to a fallback alias.
    fallback: bool,
    /// Planned although cooled down (`use_cooled_down_when_all_cooled`).
    cooled_down: bool,
    timeout_ms: u64,
}

pub struct GatewayHttp {
    cfg: Rc<Config>,
    /// A local reply was sent: response callbacks see our own reply, leave it.
    replied: bool,
    exchange: Option<Exchange>,
    buffer_response: bool,
    /// The client's request, kept to translate later attempts.
    parsed: Option<ClientRequest>,
    overrides: Overrides,
    stream: bool,
    id: String,
    created: u64,
    /// Attempts still to make, in order.
    remaining: VecDeque<Try>,
    /// The attempt in progress.
    current: Option<Try>,
    attempts: u32,
    /// A retry is in flight: hold the failed response.
    retrying: bool,
    /// Deployment whose in-flight count this request holds.
    in_flight: Option<usize>,
    attempt_started_ms: u64,
    first_byte_ms: Option<u64>,
    /// Context-window / content-policy fallbacks were already planned.
    error_fallbacks_planned: bool,
    last_error: Option<GatewayError>,
    /// Who is calling (virtual key alias, master, or open).
    caller: CallerId,
    /// The budget and limit holds of a keyed request, settled once.
    admission: Option<Admission>,
    /// `retry-after` seconds for a rate-limit refusal.
    retry_after: Option<u64>,
    body_len: usize,
    /// Cost charged, once settled.
    charged: Option<u64>,
    /// Usage must be read from every answer.
    need_usage: bool,
    /// Chat completions or embeddings.
    op: Operation,
    /// Budget left after this request (for the response header).
    remaining_after: Option<u64>,
    /// The alias the client asked for (labels only if it is configured).
    requested_alias: Option<String>,
    /// A chat or embeddings request (counted in the request metrics).
    api_request: bool,
    /// The budget reservation of a keyed request (micro-USD).
    reserve: Option<u64>,
    /// Fleet counters: what this request's own lease call obtained.
    grants: crate::fleet::Grants,
    /// Fleet counters: the lease call in the air (token, what it asks for).
    lease_call: Option<(u32, Vec<crate::fleet::CallItem>)>,
    /// The client's request headers.
    client: ClientHeaders,
    /// What `publish_usage` last wrote (tokens, cost), so unchanged values
    /// are not written again: each write is a host call that builds a
    /// filter-state object in Envoy.
    published: Option<(Option<(u64, u64)>, u64)>,
}

impl GatewayHttp {
    pub fn new(cfg: Rc<Config>) -> Self {
        GatewayHttp {
            cfg,
            replied: false,
            exchange: None,
            buffer_response: false,
            parsed: None,
            overrides: Overrides::default(),
            stream: false,
            id: String::new(),
            created: 0,
            remaining: VecDeque::new(),
            current: None,
            attempts: 0,
            retrying: false,
            in_flight: None,
            attempt_started_ms: 0,
            first_byte_ms: None,
            error_fallbacks_planned: false,
            last_error: None,
            caller: CallerId::Open,
            admission: None,
            retry_after: None,
            body_len: 0,
            charged: None,
            need_usage: false,
            op: Operation::Chat,
            remaining_after: None,
            requested_alias: None,
            api_request: false,
            reserve: None,
            grants: crate::fleet::Grants::None,
            lease_call: None,
            published: None,
            client: ClientHeaders::default(),
        }
    }

    fn reply_error(&mut self, err: &GatewayError) -> Action {
        debug!(
            "llm-gateway: refusing request from {}: {err}",
            self.caller.label()
        );
        self.replied = true;
        let mut headers = self.served_headers();
        if let Some(s) = self.retry_after {
            headers.push(("retry-after".to_string(), s.to_string()));
        }
        host::send_error(err, &headers);
        self.settle();
        Action::Pause
    }

    /// Charge the request once: usage (or an estimate) -> cost -> a usage
    /// event for the counter service; release its parallel slot. Returns the
    /// cost. Called when the answer is complete, and from `on_log` for every
    /// other ending (client abort, reset), so holds are never leaked.
    fn settle(&mut self) -> Option<u64> {
        if self.charged.is_some() {
            return self.charged;
        }
        let adm = self.admission.as_ref()?;
        let started = timing::start();
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
        let now = host::now_ms();
        // What is left after this request, read before its usage event is
        // applied (the counter service may apply it any time after).
        self.remaining_after =
            budget::remaining_micro(&WasmStore, adm, now).map(|r| r.saturating_sub(cost));
        if let Some(event) = metering::settle(adm, cost, &tokens, now) {
            enqueue_usage(&event, now, adm.settles_limits());
        }
        if let Err(e) = budget::release(&WasmStore, adm) {
            warn!("llm-gateway: parallel slot not released: {e}");
        }
        let model = adm.model().to_string();
        let key = adm.key_alias().map(str::to_string);
        metrics::count_usage(key.as_deref(), &model, "requests", 1);
        metrics::count_usage(key.as_deref(), &model, "tokens", tokens.total());
        metrics::count_usage(key.as_deref(), &model, "cost_micro_usd", cost);
        self.charged = Some(cost);
        self.publish_usage();
        timing::stop(Span::Settle, started);
        Some(cost)
    }

    /// Metrics and access-log values for the finished request.
    fn observe_end(&mut self) {
        let cfg = Rc::clone(&self.cfg);
        let status = host::response_header(":status")
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(0);
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
            observe::request_done(&alias, provider, &deployment, status);
        }
        if dep.is_none() {
            return;
        }
        let (usage, cost) = self.publish_usage();
        if let Some(u) = usage {
            observe::tokens(&alias, u.prompt_tokens, u.completion_tokens);
        }
        observe::cost(&alias, cost);
    }

    /// Put usage, cost and key alias where the access log can read them; as
    /// soon as they are known (the access log may be written before
    /// `on_log`), and again when the request is settled.
    fn publish_usage(&mut self) -> (Option<crate::openai::Usage>, u64) {
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
            observe::publish(observe::keys::PROMPT_TOKENS, &prompt.to_string());
            observe::publish(observe::keys::COMPLETION_TOKENS, &completion.to_string());
        }
        if before.map(|b| b.1) != Some(cost) {
            observe::publish(
                observe::keys::COST_USD,
                budget::format_usd(cost).trim_start_matches('$'),
            );
        }
        if before.is_none() {
            if let CallerId::Key(k) = &self.caller {
                observe::publish(observe::keys::KEY_ALIAS, k);
            }
        }
        (usage, cost)
    }

    /// Set up an attempt's exchange for what the request needs: usage read
    /// from every answer, and the mid-stream budget limit when enforced.
    fn arm(&self, exchange: &mut Exchange, dep: &Deployment) {
        if self.need_usage {
            exchange.require_usage();
        }
        let Some(adm) = self.admission.as_ref() else {
            return;
        };
        if self.cfg.budget.enforce_mid_stream && self.stream && adm.has_budget() {
            if let Some(left) = budget::remaining_micro(&WasmStore, adm, host::now_ms()) {
                exchange.set_mid_stream_limit(pipeline::MidStreamLimit {
                    prompt_tokens: budget::prompt_estimate_tokens(self.body_len),
                    price: dep.price,
                    limit_micro: left,
                });
            }
        }
    }

    /// Cost and remaining-budget headers, settling the request.
    fn cost_headers(&mut self) -> Vec<(String, String)> {
        let Some(cost) = self.settle() else {
            return Vec::new();
        };
        metering::cost_headers(cost, self.remaining_after)
    }

    fn deployment(&self, idx: usize) -> Option<&Deployment> {
        self.cfg.deployments.get(idx)
    }

    fn index_of(&self, dep: &Deployment) -> usize {
        self.cfg
            .deployments
            .iter()
            .position(|d| std::ptr::eq(d, dep))
            .unwrap_or(0)
    }

    /// Headers that tell the client what happened.
    fn served_headers(&self) -> Vec<(String, String)> {
        let Some(t) = self.current else {
            return Vec::new();
        };
        let mut h = vec![(
            "x-llm-gateway-attempts".to_string(),
            self.attempts.to_string(),
        )];
        if let Some(d) = self.deployment(t.idx) {
            h.push((
                "x-llm-gateway-deployment".to_string(),
                pipeline::deployment_label(d),
            ));
        }
        h.push(("x-llm-gateway-fallback".to_string(), t.fallback.to_string()));
        h
    }

    /// Start counting an attempt on `t`.
    fn begin_attempt(&mut self, t: Try) {
        let started = timing::start();
        self.end_in_flight();
        let cfg = Rc::clone(&self.cfg);
        let Some(dep) = cfg.deployments.get(t.idx) else {
            return;
        };
        let now = host::now_ms();
        if let Err(e) = routing::begin(&WasmStore, dep, now) {
            warn!("llm-gateway: in-flight count not updated: {e}");
        }
        self.in_flight = Some(t.idx);
        self.attempt_started_ms = now;
        self.first_byte_ms = None;
        metrics::count(Event::Attempts, dep);
        if self.attempts > 0 {
            metrics::count(Event::Retries, dep);
        }
        if t.fallback {
            metrics::count(Event::Fallbacks, dep);
        }
        self.attempts += 1;
        self.current = Some(t);
        observe::publish(observe::keys::MODEL_ALIAS, &dep.alias);
        observe::publish(observe::keys::DEPLOYMENT, &dep.id);
        observe::publish(observe::keys::PROVIDER, dep.provider.family_name());
        observe::publish(observe::keys::ATTEMPTS, &self.attempts.to_string());
        timing::stop(Span::BeginAttempt, started);
    }

    /// Release the in-flight count, exactly once per attempt.
    fn end_in_flight(&mut self) {
        if let Some(idx) = self.in_flight.take() {
            let cfg = Rc::clone(&self.cfg);
            if let Some(dep) = cfg.deployments.get(idx) {
                if let Err(e) = routing::end(&WasmStore, dep) {
                    warn!("llm-gateway: in-flight count not released: {e}");
                }
            }
        }
    }

    /// The current attempt failed in a way that counts against its deployment.
    fn attempt_failed(&mut self, kind: FailureKind) {
        let cfg = Rc::clone(&self.cfg);
        if let Some(dep) = self.current.and_then(|t| cfg.deployments.get(t.idx)) {
            metrics::count(Event::Failures, dep);
            match routing::record_failure(&WasmStore, dep, host::now_ms(), kind, &cfg.router) {
                Ok(o) if o.cooled_down => {
                    metrics::count(Event::Cooldowns, dep);
                    debug!("llm-gateway: {} cooled down until {}", dep.id, o.until_ms);
                }
                Ok(_) => {}
                Err(e) => warn!("llm-gateway: failure not recorded: {e}"),
            }
        }
        self.end_in_flight();
    }

    /// The current attempt succeeded; record latency and tokens.
    fn attempt_succeeded(&mut self) {
        let started = timing::start();
        let cfg = Rc::clone(&self.cfg);
        if let Some(dep) = self.current.and_then(|t| cfg.deployments.get(t.idx)) {
            let now = host::now_ms();
            let latency = now.saturating_sub(self.attempt_started_ms);
            let ttft = self
                .first_byte_ms
                .map(|t| t.saturating_sub(self.attempt_started_ms));
            let tokens = self
                .exchange
                .as_ref()
                .and_then(|e| e.usage())
                .map_or(0, |u| u.total_tokens);
            let started = timing::start();
            observe::latency(&dep.id, latency, ttft);
            self.publish_usage();
            timing::stop(Span::Observe, started);
            // The attempt's in-flight count is released in the same write.
            let ends = self.in_flight == self.current.map(|t| t.idx);
            let outcome = routing::Success {
                latency_ms: latency,
                ttft_ms: ttft,
                tokens,
                ends_in_flight: ends,
            };
            if let Err(e) = routing::record_success(&WasmStore, dep, now, outcome) {
                warn!("llm-gateway: success not recorded: {e}");
            } else if ends {
                self.in_flight = None;
            }
        }
        self.end_in_flight();
        timing::stop(Span::AttemptSucceeded, started);
    }

    fn plan_tries(&self, attempts: Vec<routing::Attempt<'_>>) -> VecDeque<Try> {
        attempts
            .into_iter()
            .map(|a| Try {
                idx: self.index_of(a.deployment),
                fallback: a.fallback,
                cooled_down: a.cooled_down,
                timeout_ms: a.timeout_ms,
            })
            .collect()
    }

    /// The fleet lease call answered (or failed): admit again with what it
    /// granted, then let the request go on or refuse it.
    fn lease_answered(&mut self, num_headers: usize, body_size: usize) {
        let Some((_, needs)) = self.lease_call.take() else {
            return;
        };
        self.grants = super::fleet::grants_from_answer(&needs, num_headers, body_size);
        match self.admit_and_route(self.body_len) {
            Ok(()) if self.lease_call.is_some() => {}
            Ok(()) => {
                let _ = hostcalls::resume_http_request();
            }
            Err(e) => {
                self.reply_error(&e);
            }
        }
    }

    fn route_chat(&mut self, body: Vec<u8>) -> Result<(), GatewayError> {
        let cfg = Rc::clone(&self.cfg);
        let header_overrides: Vec<(&str, String)> = std::mem::take(&mut self.client.overrides);
        let body_len = body.len();
        let started = timing::start();
        let (parsed, overrides) = pipeline::prepare(self.op, body, &header_overrides)?;
        timing::stop(Span::Prepare, started);
        let started = timing::start();
        self.requested_alias = Some(parsed.head.model.clone());
        crate::keys::authorize_model(&self.caller.caller(&cfg), &parsed.head.model)?;
        self.body_len = body_len;
        let now_ms = host::now_ms();
        // One random draw (a host call) for the routing pick and the id.
        let random = host::random_bytes::<20>();
        let mut pick = [0u8; 8];
        pick.copy_from_slice(&random[..8]);
        let rand = u64::from_le_bytes(pick);
        self.id = format!("chatcmpl-{}", hex(&random[8..]));
        self.created = now_ms / 1000;
        self.stream = parsed.head.is_stream();
        let plan = routing::plan_attempts(
            &cfg,
            &parsed.head.model,
            self.stream,
            &WasmStore,
            now_ms,
            rand,
            &overrides,
        )?;
        // A key may fall back only to aliases it may use itself.
        let allowed: Vec<_> = plan
            .attempts
            .into_iter()
            .filter(|a| self.caller.may_use(&cfg, &a.deployment.alias))
            .collect();
        if let CallerId::Key(_) = self.caller {
            let deps: Vec<&Deployment> = allowed.iter().map(|a| a.deployment).collect();
            self.reserve = metering::reservation(&cfg, &deps, body_len, &parsed.head);
        }
        self.remaining = self.plan_tries(allowed);
        self.overrides = overrides;
        self.parsed = Some(parsed);
        timing::stop(Span::Plan, started);
        self.admit_and_route(body_len)
    }

    /// Admit a keyed request (budgets and limits), then route its first
    /// attempt. With fleet counters, a request whose scope holds no lease
    /// yet waits here for one Redis round trip (`lease_call`); the answer
    /// comes back to [`Self::lease_answered`].
    fn admit_and_route(&mut self, body_len: usize) -> Result<(), GatewayError> {
        let cfg = Rc::clone(&self.cfg);
        let Some(mut parsed) = self.parsed.take() else {
            return Err(GatewayError::new(
                500,
                ErrorKind::Internal,
                "request state lost before routing",
            ));
        };
        let now_ms = host::now_ms();
        let started = timing::start();
        if let CallerId::Key(_) = self.caller {
            let caller = self.caller.caller(&cfg);
            let status = cfg
                .fleet
                .as_ref()
                .map_or(crate::fleet::RedisStatus::Up, |_| {
                    crate::fleet::read_status(&WasmStore)
                });
            let fleet = cfg.fleet.as_ref().map(|settings| budget::FleetAdmit {
                settings,
                status,
                grants: &self.grants,
            });
            match budget::admit_fleet(
                &WasmStore,
                cfg.keys.as_ref(),
                &caller,
                &parsed.head.model,
                self.reserve,
                now_ms,
                fleet.as_ref(),
            ) {
                Ok(adm) => {
                    if adm.fail_open() {
                        metrics::add("llm_gateway.fleet.fail_open_admissions", 1);
                    }
                    if self.grants != crate::fleet::Grants::None {
                        super::fleet::wake(adm.scopes());
                    }
                    if !adm.is_empty() {
                        self.admission = Some(adm);
                    }
                }
                Err(r)
                    if r.reason == budget::RefusalReason::Lease
                        && self.grants == crate::fleet::Grants::None =>
                {
                    let model = parsed.head.model.clone();
                    self.parsed = Some(parsed);
                    self.body_len = body_len;
                    return match super::fleet::lease(&cfg, &r.needs) {
                        Some(token) => {
                            self.lease_call = Some((token, r.needs));
                            Ok(())
                        }
                        None => {
                            // Not even dispatched: Redis is unreachable for this request.
                            self.grants = crate::fleet::Grants::Failed;
                            debug!("llm-gateway: lease call for `{model}` not dispatched");
                            self.admit_and_route(body_len)
                        }
                    };
                }
                Err(r) => {
                    metrics::count_rejected(
                        Some(self.caller.label()),
                        &parsed.head.model,
                        r.reason.as_str(),
                    );
                    self.retry_after = r.retry_after;
                    return Err(r.error);
                }
            }
        }
        timing::stop(Span::Admission, started);
        // Usage is read from every answer when it is charged or routes by tokens.
        self.need_usage = self.admission.is_some()
            || cfg.router.routing_strategy == crate::config::RoutingStrategy::UsageBased;
        if self.need_usage {
            pipeline::request_stream_usage(&mut parsed);
        }

        // The first attempt any deployment of the plan can take goes through the router.
        let mut first_error: Option<GatewayError> = None;
        let (t, attempt) = loop {
            let Some(t) = self.remaining.pop_front() else {
                return Err(first_error.unwrap_or_else(|| {
                    GatewayError::new(
                        503,
                        ErrorKind::Unavailable,
                        "no deployment can serve the request",
                    )
                }));
            };
            let Some(dep) = cfg.deployments.get(t.idx) else {
                continue;
            };
            match pipeline::attempt(&cfg, &parsed, dep, &self.id, self.created) {
                Ok(a) => break (t, a),
                Err(e) => {
                    debug!("llm-gateway: {} cannot take the request: {e}", dep.id);
                    first_error.get_or_insert(e);
                }
            }
        };
        let started = timing::start();
        let up = &attempt.upstream;
        // Client credentials and routing overrides never reach a provider,
        // and the provider must answer uncompressed (translation reads the
        // bytes): `strip` lists those present.
        for h in &self.client.strip {
            host::remove_request_header(h);
        }
        // Kept as Envoy keeps it for its own path rewrites, so access logs
        // (`%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%`) show what the client asked for.
        if !self.client.path.is_empty() {
            host::set_request_header("x-envoy-original-path", &self.client.path);
        }
        host::set_request_header(":path", &up.path);
        host::set_request_header(":authority", &attempt.deployment.api_base.authority);
        for (k, v) in &up.headers {
            host::set_request_header(k, v);
        }
        host::set_request_header("content-length", &up.body.len().to_string());
        host::set_request_header(&cfg.cluster_header, &attempt.deployment.cluster);
        if self.stream {
            // `stream_timeout` bounds the wait for the stream to start (Envoy's
            // per-try timeout ends when response headers arrive); `timeout`
            // bounds the whole stream, so a stalled stream is cut, never hangs.
            host::set_request_header(
                "x-envoy-upstream-rq-per-try-timeout-ms",
                &t.timeout_ms.to_string(),
            );
            let whole = self.overrides.timeout_ms.unwrap_or(
                attempt
                    .deployment
                    .timeout_ms
                    .unwrap_or(cfg.router.timeout_ms),
            );
            host::set_request_header(
                "x-envoy-upstream-rq-timeout-ms",
                &whole.max(t.timeout_ms).to_string(),
            );
        } else {
            host::set_request_header("x-envoy-upstream-rq-timeout-ms", &t.timeout_ms.to_string());
        }
        host::replace_body(BufferType::HttpRequestBody, body_len, &up.body);
        host::clear_route_cache();
        timing::stop(Span::RequestEdits, started);
        debug!(
            "llm-gateway: routed to {}",
            pipeline::describe(attempt.deployment)
        );
        let mut exchange = attempt.exchange;
        self.arm(&mut exchange, attempt.deployment);
        self.exchange = Some(exchange);
        self.parsed = Some(parsed);
        self.begin_attempt(t);
        Ok(())
    }

    /// Make the next planned attempt with an out-of-band call. Returns false
    /// when there is none left (or none could be dispatched).
    fn dispatch_next(&mut self) -> bool {
        let cfg = Rc::clone(&self.cfg);
        let Some(parsed) = self.parsed.take() else {
            return false;
        };
        let mut dispatched = false;
        while let Some(t) = self.remaining.pop_front() {
            let Some(dep) = cfg.deployments.get(t.idx) else {
                continue;
            };
            if !t.cooled_down && routing::is_cooled_down(&WasmStore, dep, host::now_ms()) {
                debug!("llm-gateway: skipping {}: cooled down meanwhile", dep.id);
                continue;
            }
            let attempt = match pipeline::attempt(&cfg, &parsed, dep, &self.id, self.created) {
                Ok(a) => a,
                Err(e) => {
                    // This deployment cannot take the request (e.g. a parameter its
                    // provider lacks): remember why, try the next one.
                    self.last_error = Some(e);
                    continue;
                }
            };
            let up = &attempt.upstream;
            let mut headers: Vec<(&str, &str)> = vec![
                (":method", "POST"),
                (":path", &up.path),
                (":authority", &dep.api_base.authority),
            ];
            for (k, v) in &up.headers {
                headers.push((k.as_str(), v.as_str()));
            }
            // The answer arrives whole, so a stream's attempt gets the whole-response timeout.
            let timeout_ms = if self.stream {
                self.overrides
                    .timeout_ms
                    .unwrap_or(dep.timeout_ms.unwrap_or(cfg.router.timeout_ms))
            } else {
                t.timeout_ms
            };
            match hostcalls::dispatch_http_call(
                &dep.cluster,
                headers,
                Some(&up.body),
                vec![],
                Duration::from_millis(timeout_ms),
            ) {
                Ok(_) => {
                    debug!("llm-gateway: next attempt on {}", pipeline::describe(dep));
                    let mut exchange = attempt.exchange;
                    self.arm(&mut exchange, dep);
                    self.exchange = Some(exchange);
                    self.begin_attempt(t);
                    dispatched = true;
                    break;
                }
                Err(s) => {
                    warn!(
                        "llm-gateway: cannot dispatch to cluster {}: {s:?}",
                        dep.cluster
                    );
                }
            }
        }
        self.parsed = Some(parsed);
        dispatched
    }

    /// After a non-retryable provider error: the context-window or
    /// content-policy fallbacks, if the error is of that kind and some are
    /// configured. Returns true when an attempt was dispatched.
    fn try_error_fallbacks(&mut self, status: u16, body: &[u8]) -> bool {
        if self.error_fallbacks_planned {
            return false;
        }
        let class = routing::classify_error(status, body);
        if class == ErrorClass::Other {
            return false;
        }
        self.error_fallbacks_planned = true;
        let cfg = Rc::clone(&self.cfg);
        let Some(alias) = self.parsed.as_ref().map(|p| p.head.model.clone()) else {
            return false;
        };
        let rand = u64::from_le_bytes(host::random_bytes::<8>());
        let plan = routing::plan_error_fallbacks(
            &cfg,
            &alias,
            class,
            self.stream,
            &WasmStore,
            host::now_ms(),
            rand,
            &self.overrides,
        );
        match plan {
            Ok(Some(plan)) => {
                self.remaining = self.plan_tries(plan.attempts);
                self.end_in_flight();
                self.dispatch_next()
            }
            _ => false,
        }
    }

    /// Reply with a translated whole answer.
    fn reply_whole(&mut self, status: u16, body: &[u8]) {
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
                host::send_error(&err, &served);
                return;
            }
        };
        let mut served = served;
        served.extend(self.cost_headers());
        self.replied = true;
        host::send_json_with(reply.status, reply.content_type, &reply.body, &served);
    }
}

thread_local! {
    /// This worker's usage events not yet handed to the counter service.
    static USAGE_BATCH: std::cell::RefCell<UsageBatch> = std::cell::RefCell::new(UsageBatch::default());
}

/// Gather a usage event for the counter service; `urgent` (it settles a
/// budget or tpm limit) sends it, and everything gathered, at once. See
/// [`crate::usage_batch`] for when the others go.
fn enqueue_usage(event: &[u8], now_ms: u64, urgent: bool) {
    if let Some(msg) = USAGE_BATCH.with(|b| b.borrow_mut().push(event, now_ms, urgent)) {
        send_usage(&msg, now_ms);
    }
}

/// Send what this worker has gathered (the worker's tick, and shutdown).
pub fn flush_usage() {
    if let Some(msg) = USAGE_BATCH.with(|b| b.borrow_mut().take()) {
        send_usage(&msg, host::now_ms());
    }
}

/// Hand a message of usage events to the counter service through the shared
/// queue, or, when no counter service runs (a `WasmPlugin` without the
/// bootstrap extension), apply them here: the CAS writes are exact either
/// way, the service only keeps the hot records off the request path.
fn send_usage(msg: &[u8], now_ms: u64) {
    let started = timing::start();
    // Per message, not per request: what batching saves is visible.
    metrics::add("llm_gateway.usage_messages", 1);
    metrics::add(
        "llm_gateway.usage_events",
        crate::usage_batch::events(msg).count() as u64,
    );
    let queue = host::shared_queue(super::root::USAGE_QUEUE);
    match queue.map(|q| hostcalls::enqueue_shared_queue(q, Some(msg))) {
        Some(Ok(())) => {}
        _ => {
            for event in crate::usage_batch::events(msg) {
                super::root::apply_usage_event(event, now_ms);
            }
        }
    }
    timing::stop(Span::UsageEnqueue, started);
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

impl Context for GatewayHttp {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if self.lease_call.as_ref().is_some_and(|(t, _)| *t == token) {
            self.lease_answered(num_headers, body_size);
            return;
        }
        let (status, body) = host::call_response(num_headers, body_size);
        // No headers at all: the call failed to connect, was reset or timed out.
        let (status, kind) = match status {
            Some(s) => (s, FailureKind::Status(s)),
            None => (503, FailureKind::ConnectFailure),
        };
        self.first_byte_ms = Some(host::now_ms());
        if routing::is_retryable(status) {
            self.attempt_failed(kind);
            if self.dispatch_next() {
                return;
            }
            self.reply_whole(status, &body);
            return;
        }
        if status >= 400 {
            self.end_in_flight();
            if self.try_error_fallbacks(status, &body) {
                return;
            }
            self.reply_whole(status, &body);
            return;
        }
        let served = self.served_headers();
        let Some(ex) = self.exchange.as_mut() else {
            self.reply_whole(502, &body);
            return;
        };
        let w = ex.whole_response(status, &body);
        self.attempt_succeeded();
        let mut served = served;
        served.extend(self.cost_headers());
        self.replied = true;
        host::send_json_with(w.status, w.content_type, &w.body, &served);
    }
}

/// The callbacks, timed in the timing build (`timing`); the work is in the
/// `handle_*` methods below.
impl HttpContext for GatewayHttp {
    fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        let started = timing::start();
        let action = self.handle_request_headers(num_headers, end_of_stream);
        timing::stop(Span::RequestHeaders, started);
        action
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let started = timing::start();
        let action = self.handle_request_body(body_size, end_of_stream);
        timing::stop(Span::RequestBody, started);
        action
    }

    fn on_http_response_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        let started = timing::start();
        let action = self.handle_response_headers(num_headers, end_of_stream);
        timing::stop(Span::ResponseHeaders, started);
        action
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let started = timing::start();
        let action = self.handle_response_body(body_size, end_of_stream);
        timing::stop(Span::ResponseBody, started);
        action
    }

    fn on_log(&mut self) {
        let started = timing::start();
        self.handle_log();
        timing::stop(Span::Log, started);
        timing::request_done();
    }
}

impl GatewayHttp {
    fn handle_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.client = ClientHeaders::from_pairs(
            hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default(),
        );
        if self.client.has_local_reply_marker {
            host::remove_request_header(host::LOCAL_REPLY_MARKER);
        }
        let method = self.client.method.clone();
        let path = self.client.path.clone();
        let endpoint = pipeline::classify(&method, &path);
        self.api_request = matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Embeddings);
        if matches!(
            endpoint,
            Endpoint::Models | Endpoint::KeyInfo | Endpoint::ChatCompletions | Endpoint::Embeddings
        ) {
            let authorization = self.client.authorization.take();
            let x_api_key = self.client.x_api_key.take();
            // The mTLS peer identity, for keys bound to workloads.
            // Istio exposes it as `source.principal`; plain Envoy as the peer
            // certificate's URI SAN (`connection.uri_san_peer_certificate`).
            let principal = if metering::uses_principals(&self.cfg) {
                [
                    vec!["source", "principal"],
                    vec!["connection", "uri_san_peer_certificate"],
                ]
                .into_iter()
                .find_map(|path| {
                    hostcalls::get_property(path)
                        .ok()
                        .flatten()
                        .filter(|b| !b.is_empty())
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                })
            } else {
                None
            };
            let started = timing::start();
            let who = CallerId::authenticate(
                &self.cfg,
                authorization.as_deref(),
                x_api_key.as_deref(),
                principal.as_deref(),
            );
            timing::stop(Span::Authenticate, started);
            match who {
                Ok(c) => self.caller = c,
                Err(e) => return self.reply_error(&e),
            }
        }
        match endpoint {
            Endpoint::Models => {
                self.replied = true;
                let body = metering::models_body(&self.cfg, &self.caller, host::now_unix());
                host::send_json_with(200, "application/json", &body, &[]);
                Action::Pause
            }
            Endpoint::KeyInfo => {
                let query = path.split_once('?').map_or("", |(_, q)| q);
                match metering::key_info(&self.cfg, &WasmStore, &self.caller, query, host::now_ms())
                {
                    Ok(body) => {
                        self.replied = true;
                        host::send_json_with(200, "application/json", &body, &[]);
                        Action::Pause
                    }
                    Err(e) => self.reply_error(&e),
                }
            }
            Endpoint::Unknown => self.reply_error(&pipeline::unknown_endpoint(&method, &path)),
            Endpoint::MethodNotAllowed => {
                self.reply_error(&pipeline::method_not_allowed(&method, &path))
            }
            Endpoint::ChatCompletions | Endpoint::Embeddings => {
                if endpoint == Endpoint::Embeddings {
                    self.op = Operation::Embeddings;
                }
                let declared = self
                    .client
                    .content_length
                    .as_deref()
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if declared.is_some_and(|n| n > self.cfg.max_body_bytes) {
                    return self.reply_error(&pipeline::body_too_large(self.cfg.max_body_bytes));
                }
                if end_of_stream {
                    return self.reply_error(&GatewayError::bad_request(
                        "request body is empty; send a JSON chat completion request",
                    ));
                }
                // Hold the headers until the body names the model (needs
                // `allow_on_headers_stop_iteration: true` in the plugin config).
                Action::Pause
            }
        }
    }

    fn handle_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Pause;
        }
        if body_size > self.cfg.max_body_bytes {
            return self.reply_error(&pipeline::body_too_large(self.cfg.max_body_bytes));
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = host::body(BufferType::HttpRequestBody, body_size);
        match self.route_chat(body) {
            // Waiting for a fleet lease: resumed when it arrives.
            Ok(()) if self.lease_call.is_some() => Action::Pause,
            Ok(()) => Action::Continue,
            Err(e) => self.reply_error(&e),
        }
    }

    fn handle_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.replied || self.exchange.is_none() {
            return Action::Continue;
        }
        self.first_byte_ms = Some(host::now_ms());
        let status = host::response_header(":status")
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(502);
        if routing::is_retryable(status) {
            self.attempt_failed(FailureKind::Status(status));
            if self.dispatch_next() {
                // Hold the failed answer; the next attempt's answer replaces it.
                self.retrying = true;
                return Action::Pause;
            }
        }
        let served = self.served_headers();
        let Some(exchange) = self.exchange.as_mut() else {
            return Action::Continue;
        };
        let edits = exchange.response_headers(status);
        if status < 400 {
            // The answer is being forwarded: no other attempt can follow, so
            // the client's request (as large as its body) is not kept for the
            // life of the stream.
            self.parsed = None;
        }
        if end_of_stream && edits.buffer_body {
            // No body will come: answer now with the translated (empty-body) result.
            let body = exchange
                .complete_body(b"")
                .map(|(b, _)| b)
                .unwrap_or_default();
            self.end_in_flight();
            self.replied = true;
            host::send_json_with(
                edits.status.unwrap_or(status),
                "application/json",
                &body,
                &served,
            );
            return Action::Pause;
        }
        if let Some(s) = edits.status {
            host::set_response_header(":status", &s.to_string());
        }
        if let Some(ct) = edits.content_type {
            host::set_response_header("content-type", ct);
        }
        if edits.remove_content_length {
            host::remove_response_header("content-length");
        }
        for (k, v) in &served {
            host::set_response_header(k, v);
        }
        self.buffer_response = edits.buffer_body;
        if end_of_stream && status < 400 {
            self.attempt_succeeded();
        }
        if edits.buffer_body {
            // Held until the body is translated, so the status can still change.
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn handle_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Continue;
        }
        if self.retrying {
            return Action::Pause;
        }
        if self.exchange.is_none() {
            return Action::Continue;
        }
        if self.buffer_response {
            if !end_of_stream {
                return Action::Pause;
            }
            let body = host::body(BufferType::HttpResponseBody, body_size);
            let status = host::response_header(":status").and_then(|s| s.parse::<u16>().ok());
            let upstream_status = self.exchange.as_ref().and_then(|e| e.error_status());
            if let Some(up) = upstream_status {
                self.end_in_flight();
                if self.try_error_fallbacks(up, &body) {
                    self.retrying = true;
                    return Action::Pause;
                }
            }
            let Some(exchange) = self.exchange.as_mut() else {
                return Action::Continue;
            };
            if let Some((out, new_status)) = exchange.complete_body(&body) {
                if let Some(s) = new_status.filter(|s| Some(*s) != status) {
                    host::set_response_header(":status", &s.to_string());
                }
                host::replace_body(BufferType::HttpResponseBody, body_size, &out);
            }
            if upstream_status.is_none() {
                self.attempt_succeeded();
            }
            // The headers are still held: the cost can go in them.
            for (k, v) in self.cost_headers() {
                host::set_response_header(&k, &v);
            }
            return Action::Continue;
        }
        let Some(exchange) = self.exchange.as_mut() else {
            return Action::Continue;
        };
        if !exchange.is_streaming_response() {
            // Passed through untouched: only its usage is read from the tail.
            exchange.passthrough_chunk(
                &host::body(BufferType::HttpResponseBody, body_size),
                end_of_stream,
            );
        }
        if exchange.is_streaming_response() {
            let chunk = if body_size > 0 {
                host::body(BufferType::HttpResponseBody, body_size)
            } else {
                Vec::new()
            };
            if let Some(out) = exchange.stream_chunk(&chunk, end_of_stream) {
                if out != chunk {
                    host::replace_body(BufferType::HttpResponseBody, body_size, &out);
                }
            }
            if exchange.was_cut() {
                // Ended at the budget: charge what was streamed, now.
                self.settle();
            }
        }
        if end_of_stream {
            self.attempt_succeeded();
            self.settle();
        }
        Action::Continue
    }

    fn handle_log(&mut self) {
        // Client gone, upstream reset mid-stream, or any ending not seen above.
        self.end_in_flight();
        self.settle();
        let started = timing::start();
        self.observe_end();
        timing::stop(Span::Observe, started);
    }
}
