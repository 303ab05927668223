//! Attempts: plan them, admit the request, send the first one through
//! Envoy's router, and the next ones (retries, fallbacks) as out-of-band
//! calls; count each against its deployment.

use std::collections::VecDeque;
use std::rc::Rc;

use log::{debug, warn};

use super::super::hooks::Admit;
use super::super::host::{random_u64, Action, HeaderMap, Host, Span};
use super::super::telemetry::{self, keys, Event};
use super::super::Exchange;
use super::{RequestFlow, Try};
use crate::api::error::{ErrorKind, GatewayError};
use crate::config::Deployment;
use crate::routing::{self, ErrorClass, FailureKind};

impl RequestFlow {
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

    /// Headers that tell the client what happened.
    pub(super) fn served_headers(&self) -> Vec<(String, String)> {
        let mut h: Vec<(String, String)> =
            self.hooks.guardrails.applied_header().into_iter().collect();
        h.extend(self.hooks.cache.headers());
        let Some(idx) = self.record.deployment else {
            return h;
        };
        h.push((
            "x-llm-gateway-attempts".to_string(),
            self.record.attempts.to_string(),
        ));
        if let Some(d) = self.deployment(idx) {
            h.push((
                "x-llm-gateway-deployment".to_string(),
                super::super::deployment_label(d),
            ));
        }
        h.push((
            "x-llm-gateway-fallback".to_string(),
            self.record.fallback.to_string(),
        ));
        h
    }

    /// Start counting an attempt on `t`.
    fn begin_attempt(&mut self, t: Try, host: &mut dyn Host) {
        let started = host.span_start();
        self.end_in_flight(host);
        let cfg = Rc::clone(&self.cfg);
        let Some(dep) = cfg.deployments.get(t.idx) else {
            return;
        };
        let now = host.now_ms();
        if cfg.router.routing_strategy.reads_load() {
            if let Err(e) = routing::begin(host.store(), dep, now) {
                warn!("llm-gateway: in-flight count not updated: {e}");
            }
            self.in_flight = Some(t.idx);
        }
        self.attempt_started_ms = now;
        self.first_byte_ms = None;
        telemetry::count(host, Event::Attempts, dep);
        if self.record.attempts > 0 {
            telemetry::count(host, Event::Retries, dep);
        }
        if t.fallback {
            telemetry::count(host, Event::Fallbacks, dep);
        }
        self.record.attempts += 1;
        self.record.deployment = Some(t.idx);
        self.record.fallback = t.fallback;
        host.set_filter_state(keys::MODEL_ALIAS, &dep.alias);
        host.set_filter_state(keys::DEPLOYMENT, &dep.id);
        host.set_filter_state(keys::PROVIDER, dep.provider.family_name());
        host.set_filter_state(keys::ATTEMPTS, &self.record.attempts.to_string());
        host.span_stop(Span::BeginAttempt, started);
    }

    /// Release the in-flight count, exactly once per attempt.
    pub(super) fn end_in_flight(&mut self, host: &mut dyn Host) {
        if let Some(idx) = self.in_flight.take() {
            if let Some(dep) = self.cfg.deployments.get(idx) {
                if let Err(e) = routing::end(host.store(), dep) {
                    warn!("llm-gateway: in-flight count not released: {e}");
                }
            }
        }
    }

    /// The current attempt failed in a way that counts against its deployment.
    pub(super) fn attempt_failed(&mut self, kind: FailureKind, host: &mut dyn Host) {
        let cfg = Rc::clone(&self.cfg);
        if let Some(dep) = self.record.deployment.and_then(|i| cfg.deployments.get(i)) {
            telemetry::count_failure(host, kind, dep);
            let now = host.now_ms();
            let wait_ms = self.provider_wait_s.unwrap_or(0).saturating_mul(1000);
            match routing::record_failure_waiting(
                host.store(),
                dep,
                now,
                kind,
                &cfg.router,
                wait_ms,
            ) {
                Ok(o) if o.cooled_down => {
                    telemetry::count(host, Event::Cooldowns, dep);
                    debug!("llm-gateway: {} cooled down until {}", dep.id, o.until_ms);
                }
                Ok(_) => {}
                Err(e) => warn!("llm-gateway: failure not recorded: {e}"),
            }
        }
        self.end_in_flight(host);
    }

    /// The current attempt succeeded; record latency and tokens.
    pub(super) fn attempt_succeeded(&mut self, host: &mut dyn Host) {
        let started = host.span_start();
        let cfg = Rc::clone(&self.cfg);
        if let Some(dep) = self.record.deployment.and_then(|i| cfg.deployments.get(i)) {
            let now = host.now_ms();
            let latency = now.saturating_sub(self.attempt_started_ms);
            let ttft = self
                .first_byte_ms
                .map(|t| t.saturating_sub(self.attempt_started_ms));
            let tokens = self
                .exchange
                .as_ref()
                .and_then(|e| e.usage())
                .map_or(0, |u| u.total_tokens);
            let observed = host.span_start();
            let (hooks, mut cx) = self.hook_cx(host);
            hooks.attempt_succeeded(&mut cx, latency, ttft);
            host.span_stop(Span::Observe, observed);
            // The attempt's in-flight count is released in the same write.
            let ends = self.in_flight == self.record.deployment;
            let outcome = routing::Success {
                latency_ms: latency,
                ttft_ms: ttft,
                tokens,
                ends_in_flight: ends,
            };
            if !cfg.router.routing_strategy.reads_load() {
                // Nothing to record: the shuffle reads no load.
            } else if let Err(e) = routing::record_success(host.store(), dep, now, outcome) {
                warn!("llm-gateway: success not recorded: {e}");
            } else if ends {
                self.in_flight = None;
            }
        }
        self.end_in_flight(host);
        host.span_stop(Span::AttemptSucceeded, started);
    }

    /// A hook's out-of-band call (a fleet lease) answered: admit again
    /// with what it obtained, then let the request go on or refuse it.
    pub(super) fn admission_answered(&mut self, host: &mut dyn Host) {
        self.waiting = false;
        match self.admit_and_route(self.record.body_len, host) {
            Ok(()) if self.waiting || self.replied => {}
            Ok(()) => host.resume_request(),
            Err(e) => {
                let _: Action = self.reply_error(&e, host);
            }
        }
    }

    /// Parse the client's request, check the caller may use its model, and
    /// plan the attempts; then admit and route.
    pub(super) fn route_chat(
        &mut self,
        body: Vec<u8>,
        host: &mut dyn Host,
    ) -> Result<(), GatewayError> {
        let cfg = Rc::clone(&self.cfg);
        let header_overrides: Vec<(&str, String)> = std::mem::take(&mut self.client.overrides);
        let body_len = body.len();
        let started = host.span_start();
        let anthropic = std::mem::take(&mut self.client.anthropic);
        let body = match self.edge.ingress {
            crate::ingress::Ingress::Chat => body,
            _ if self.count_tokens => {
                let c = crate::ingress::messages::request::count_request(body, &anthropic)?;
                self.native = Some((c.native, 0));
                c.chat
            }
            ingress => {
                let c = ingress.to_chat(body, &anthropic)?;
                self.native = Some((c.native, 0));
                c.chat
            }
        };
        let (mut parsed, overrides) =
            super::super::prepare(self.record.op, body, &header_overrides)?;
        if let Some((_, fp)) = self.native.as_mut() {
            *fp = fingerprint(parsed.body());
        }
        host.span_stop(Span::Prepare, started);
        let started = host.span_start();
        self.record.requested_alias = Some(parsed.head.model.clone());
        crate::config::keys::authorize_model(&self.record.caller.caller(&cfg), &parsed.head.model)?;
        self.record.body_len = body_len;
        let now_ms = host.now_ms();
        // One random draw (a host call) for the routing pick and the id.
        let mut random = [0u8; 20];
        host.random_bytes(&mut random);
        let mut pick = [0u8; 8];
        pick.copy_from_slice(&random[..8]);
        let rand = u64::from_le_bytes(pick);
        self.record.id = format!("chatcmpl-{}", crate::cache::hex(&random[8..]));
        self.record.created = now_ms / 1000;
        self.record.stream = parsed.head.is_stream();
        let plan = routing::plan_attempts(
            &cfg,
            &parsed.head.model,
            self.record.stream,
            host.store(),
            now_ms,
            rand,
            &overrides,
        )?;
        let allowed = self.callers_own(&cfg, plan.attempts);
        if self.count_tokens {
            let first = allowed.first().map(|a| a.deployment);
            self.count_tokens_answer(&parsed, first, body_len, host);
            return Ok(());
        }
        let planned: Vec<&Deployment> = allowed.iter().map(|a| a.deployment).collect();
        let cache_control = self.client.cache_control.take();
        let traceparent = self.client.traceparent.take();
        let (hooks, mut cx) = self.hook_cx(host);
        hooks.request_accepted(
            &mut cx,
            &mut parsed,
            &planned,
            cache_control.as_deref(),
            traceparent.as_deref(),
        )?;
        self.remaining = self.plan_tries(allowed);
        self.overrides = overrides;
        self.parsed = Some(parsed);
        host.span_stop(Span::Plan, started);
        self.admit_and_route(body_len, host)
    }

    /// The admission hook point (budgets and limits), then the first
    /// attempt. A request the admission makes wait (a fleet lease: one
    /// Redis round trip) comes back through [`Self::admission_answered`].
    fn admit_and_route(
        &mut self,
        body_len: usize,
        host: &mut dyn Host,
    ) -> Result<(), GatewayError> {
        let cfg = Rc::clone(&self.cfg);
        let Some(mut parsed) = self.parsed.take() else {
            return Err(GatewayError::new(
                500,
                ErrorKind::Internal,
                "request state lost before routing",
            ));
        };
        let (hooks, mut cx) = self.hook_cx(host);
        match hooks.admission(&mut cx, &mut parsed) {
            Admit::Go => {}
            Admit::Wait => {
                self.parsed = Some(parsed);
                self.waiting = true;
                return Ok(());
            }
            Admit::Refuse(e) => return Err(e),
            Admit::Serve(served) => {
                self.serve_cached(&served, host);
                return Ok(());
            }
        }
        if let Some((native, fp)) = self.native.as_mut() {
            // A hook rewrote the request (a guardrail masked it): only the
            // translation carries that, so nothing is passed through.
            native.pass = native.pass && *fp == fingerprint(parsed.body());
            // A completions answer is no chat answer for the guardrails to read.
            if native.ingress == crate::ingress::Ingress::Completions
                && self.hooks.guardrails.acts_on_answers()
            {
                native.pass = false;
            }
        }
        // Usage is read from every answer when it is charged or routes by tokens.
        self.need_usage = self.hooks.needs_usage()
            || cfg.router.routing_strategy == crate::config::RoutingStrategy::UsageBased;
        if self.need_usage {
            super::super::request_stream_usage(&mut parsed);
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
            match super::super::attempt_with(
                &cfg,
                &parsed,
                dep,
                &self.record.id,
                self.record.created,
                &self.overrides,
                self.native.as_ref().map(|(n, _)| n),
            ) {
                Ok(a) => break (t, a),
                Err(e) => {
                    debug!("llm-gateway: {} cannot take the request: {e}", dep.id);
                    first_error.get_or_insert(e);
                }
            }
        };
        let started = host.span_start();
        let up = &attempt.upstream;
        let traceparent = self.hooks.trace.upstream_traceparent();
        let mut set: Vec<(&str, &str)> = Vec::with_capacity(3);
        if let Some(tp) = &traceparent {
            set.push(("traceparent", tp));
        }
        let per_try = t.timeout_ms.to_string();
        let whole;
        if self.record.stream {
            // `stream_timeout` bounds the wait for the stream to start (Envoy's
            // per-try timeout ends when response headers arrive); `timeout`
            // bounds the whole stream, so a stalled stream is cut, never hangs.
            set.push(("x-envoy-upstream-rq-per-try-timeout-ms", &per_try));
            let limit = self.overrides.timeout_ms.unwrap_or(
                attempt
                    .deployment
                    .timeout_ms
                    .unwrap_or(cfg.router.timeout_ms),
            );
            whole = limit.max(t.timeout_ms).to_string();
            set.push(("x-envoy-upstream-rq-timeout-ms", &whole));
        } else {
            set.push(("x-envoy-upstream-rq-timeout-ms", &per_try));
        }
        self.rewrite_request(up, attempt.deployment, &set, host);
        host.replace_request_body(body_len, &up.body);
        host.clear_route_cache();
        host.span_stop(Span::RequestEdits, started);
        debug!(
            "llm-gateway: routed to {}",
            super::super::describe(attempt.deployment)
        );
        let mut exchange = attempt.exchange;
        self.arm(&mut exchange, attempt.deployment, host);
        self.exchange = Some(exchange);
        self.parsed = Some(parsed);
        self.begin_attempt(t, host);
        Ok(())
    }

    /// Rewrite the client's request into `up` for `dep` (and `extra`), to go
    /// through Envoy's router (the body is replaced by the caller): one
    /// header-map edit.
    pub(super) fn rewrite_request(
        &self,
        up: &crate::provider::UpstreamRequest,
        dep: &Deployment,
        extra: &[(&str, &str)],
        host: &mut dyn Host,
    ) {
        let mut set: Vec<(&str, &str)> = Vec::with_capacity(up.headers.len() + 6 + extra.len());
        // Kept as Envoy keeps it for its own path rewrites, so access logs
        // (`%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%`) show what the client asked for.
        if !self.client.path.is_empty() {
            let logged = self.client.log_path.as_ref().unwrap_or(&self.client.path);
            set.push(("x-envoy-original-path", logged));
        }
        set.push((":path", &up.path));
        set.push((":authority", &dep.api_base.authority));
        for (k, v) in &up.headers {
            set.push((k, v));
        }
        let length = up.body.len().to_string();
        set.push(("content-length", &length));
        set.push((&self.cfg.cluster_header, &dep.cluster));
        set.extend_from_slice(extra);
        // Client credentials and routing overrides never reach a provider,
        // and the provider must answer uncompressed (translation reads the
        // bytes): `strip` lists those present.
        host.edit_headers(HeaderMap::Request, &self.client.strip, &set);
    }

    /// Make the next planned attempt with an out-of-band call. Returns false
    /// when there is none left (or none could be dispatched).
    pub(super) fn dispatch_next(&mut self, host: &mut dyn Host) -> bool {
        let cfg = Rc::clone(&self.cfg);
        let Some(parsed) = self.parsed.take() else {
            return false;
        };
        let mut dispatched = false;
        while let Some(t) = self.remaining.pop_front() {
            let Some(dep) = cfg.deployments.get(t.idx) else {
                continue;
            };
            if !t.cooled_down && routing::is_cooled_down(host.store(), dep, host.now_ms()) {
                debug!("llm-gateway: skipping {}: cooled down meanwhile", dep.id);
                continue;
            }
            let attempt = match super::super::attempt_with(
                &cfg,
                &parsed,
                dep,
                &self.record.id,
                self.record.created,
                &self.overrides,
                self.native.as_ref().map(|(n, _)| n),
            ) {
                Ok(a) => a,
                Err(e) => {
                    // This deployment cannot take the request (e.g. a parameter its
                    // provider lacks): remember why, try the next one.
                    self.last_error = Some(e);
                    continue;
                }
            };
            let up = &attempt.upstream;
            let headers = super::super::call_headers(up, dep);
            // The answer arrives whole, so a stream's attempt gets the whole-response timeout.
            let timeout_ms = if self.record.stream {
                self.overrides
                    .timeout_ms
                    .unwrap_or(dep.timeout_ms.unwrap_or(cfg.router.timeout_ms))
            } else {
                t.timeout_ms
            };
            match host.dispatch_http_call(&dep.cluster, &headers, &up.body, timeout_ms) {
                Some(_) => {
                    debug!(
                        "llm-gateway: next attempt on {}",
                        super::super::describe(dep)
                    );
                    let mut exchange = attempt.exchange;
                    self.arm(&mut exchange, dep, host);
                    self.exchange = Some(exchange);
                    self.begin_attempt(t, host);
                    dispatched = true;
                    break;
                }
                None => {
                    warn!("llm-gateway: cannot dispatch to cluster {}", dep.cluster);
                }
            }
        }
        self.parsed = Some(parsed);
        dispatched
    }

    /// After a non-retryable provider error: the context-window or
    /// content-policy fallbacks, if the error is of that kind and some are
    /// configured. Returns true when an attempt was dispatched.
    pub(super) fn try_error_fallbacks(
        &mut self,
        status: u16,
        body: &[u8],
        host: &mut dyn Host,
    ) -> bool {
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
        let rand = random_u64(host);
        let now = host.now_ms();
        let plan = routing::plan_error_fallbacks(
            &cfg,
            &alias,
            class,
            self.record.stream,
            host.store(),
            now,
            rand,
            &self.overrides,
        );
        match plan {
            Ok(Some(plan)) => {
                let allowed = self.callers_own(&cfg, plan.attempts);
                if allowed.is_empty() {
                    return false;
                }
                self.remaining = self.plan_tries(allowed);
                self.end_in_flight(host);
                self.dispatch_next(host)
            }
            _ => false,
        }
    }

    /// The attempts on aliases the caller may use itself: a key falls back
    /// (retries, `fallbacks`, context-window and content-policy fallbacks,
    /// from the config or the request) only to models it may call directly.
    fn callers_own<'c>(
        &self,
        cfg: &crate::config::Config,
        attempts: Vec<routing::Attempt<'c>>,
    ) -> Vec<routing::Attempt<'c>> {
        attempts
            .into_iter()
            .filter(|a| self.record.caller.may_use(cfg, &a.deployment.alias))
            .collect()
    }

    /// Set up an attempt's exchange for what the request needs (usage read
    /// from every answer), then let the hooks arm it.
    fn arm(&mut self, exchange: &mut Exchange, dep: &Deployment, host: &mut dyn Host) {
        if self.need_usage {
            exchange.require_usage();
        }
        let (hooks, mut cx) = self.hook_cx(host);
        hooks.before_provider_call(&mut cx, exchange, dep);
    }
}

/// FNV-1a over a request body: whether a hook rewrote it.
fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
