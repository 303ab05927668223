//! Guardrails at their hook points. Which guardrails run on a request is
//! decided once, at `request_accepted`: the `default_on` ones, the
//! caller's key's (`virtual_keys[].guardrails`), and the ones the request
//! names (LiteLLM's `guardrails` field, top level or in `metadata`, as a
//! list or a `{name: true}` mapping). A request may switch one off
//! (`{name: false}`) only if `gateway.guardrails_caller_may_disable` lists
//! it; otherwise the guardrail runs anyway.
//!
//! The input guardrails (`pre_call`, `during_call`) run on the request's
//! messages right then, before the budget's reservation and before any
//! provider sees the body: a block is a 400 `content_policy_violation`
//! naming the guardrail and what it found (never the matched text); a mask
//! rewrites the body. The output guardrails (`post_call`) are handed to
//! each attempt's exchange at `before_provider_call`
//! ([`crate::guardrails::output`]). Every guardrail that runs is named in
//! `x-litellm-applied-guardrails` (LiteLLM's header) and the access log
//! (`llm_gateway.guardrails`), and counted per outcome
//! (`llm_gateway.guardrail.<passed|masked|blocked>.guardrail.<name>`).

use std::collections::VecDeque;
use std::sync::Arc;

use log::warn;
use serde_json::{Map, Value};

use super::{Admit, Cx};
use crate::api::error::{ErrorKind, GatewayError};
use crate::api::openai::Operation;
use crate::api::request::ClientRequest;
use crate::guardrails::external::{CallContext, Verdict};
use crate::guardrails::output::OutputGuard;
use crate::guardrails::spec::GuardrailSpec;
use crate::guardrails::{check_text, violation};
use crate::pipeline::host::Part;
use crate::pipeline::Exchange;

/// The guardrails applied to this request.
#[derive(Default)]
pub struct GuardrailHook {
    applied: Vec<String>,
    /// The `post_call` guardrails, for each attempt's answer.
    output: Vec<Arc<GuardrailSpec>>,
    /// Guardrail services still to call on the request, in order.
    services: VecDeque<Arc<GuardrailSpec>>,
    /// The service call in flight: its token, its guardrail, what it checks.
    in_flight: Option<ServiceCall>,
}

/// One guardrail service call.
struct ServiceCall {
    token: u32,
    spec: Arc<GuardrailSpec>,
    texts: Vec<String>,
    /// The service's status and body, once it answered.
    answer: Option<(Option<u16>, Vec<u8>)>,
}

/// What one guardrail did to the request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Passed,
    Masked,
}

/// What the request says about guardrails.
#[derive(Default)]
struct Asked {
    on: Vec<String>,
    off: Vec<String>,
}

impl GuardrailHook {
    /// `x-litellm-applied-guardrails`, when any ran.
    pub fn applied_header(&self) -> Option<(String, String)> {
        (!self.applied.is_empty()).then(|| {
            (
                "x-litellm-applied-guardrails".to_string(),
                self.applied.join(","),
            )
        })
    }

    /// Decide which guardrails run; run the input ones on the messages.
    pub fn request_accepted(
        &mut self,
        cx: &mut Cx<'_>,
        req: &mut ClientRequest,
    ) -> Result<(), GatewayError> {
        let key_guardrails: Vec<String> = cx
            .record
            .caller
            .caller(cx.cfg)
            .key()
            .map(|k| k.guardrails.clone())
            .unwrap_or_default();
        let asks = req.member("guardrails").is_some()
            || req
                .member("metadata")
                .is_some_and(|m| m.contains("guardrails"));
        let any_default = cx.cfg.guardrails.iter().any(|g| g.default_on);
        if !asks && !any_default && key_guardrails.is_empty() {
            return Ok(());
        }
        let mut body: Value = serde_json::from_slice(req.body())
            .map_err(|_| GatewayError::bad_request("request body is not valid JSON"))?;
        // The gateway's instruction, not the model's: no provider sees it.
        let (asked, changed) = take_asked(&mut body)?;
        let mut changed = changed;
        for n in asked.on.iter().chain(&asked.off) {
            if !cx.cfg.guardrails.iter().any(|g| &g.name == n) {
                return Err(GatewayError::bad_param(
                    "guardrails",
                    format!("unknown guardrail `{n}`"),
                ));
            }
        }
        let cfg = cx.cfg;
        let selected: Vec<&Arc<GuardrailSpec>> = cfg
            .guardrails
            .iter()
            .filter(|g| {
                let wanted =
                    g.default_on || asked.on.contains(&g.name) || key_guardrails.contains(&g.name);
                let switched_off = asked.off.contains(&g.name)
                    && cfg.guardrails_caller_may_disable.contains(&g.name);
                wanted && !switched_off
            })
            .collect();
        for spec in &selected {
            self.applied.push(spec.name.clone());
            if spec.output && cx.record.op == Operation::Chat {
                self.output.push(Arc::clone(spec));
            }
        }
        for spec in selected.iter().filter(|g| g.input && g.service.is_some()) {
            self.services.push_back(Arc::clone(spec));
        }
        for spec in selected.iter().filter(|g| g.input && g.service.is_none()) {
            let outcome = match apply(spec, &mut body) {
                Ok(o) => o,
                Err(what) => {
                    count(cx, "blocked", &spec.name);
                    self.publish(cx);
                    return Err(violation(&spec.name, &what));
                }
            };
            let label = if outcome == Outcome::Masked {
                "masked"
            } else {
                "passed"
            };
            count(cx, label, &spec.name);
            changed |= outcome == Outcome::Masked;
        }
        self.publish(cx);
        if changed {
            // `record.body_len` stays the client's: it is the size of Envoy's
            // buffer the rewritten request replaces.
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            *req = ClientRequest::parse(cx.record.op, bytes)?;
        }
        Ok(())
    }

    /// Before any provider sees the request: call the guardrail services,
    /// one after the other (each on what the one before left), waiting for
    /// each answer.
    pub fn admission(&mut self, cx: &mut Cx<'_>, req: &mut ClientRequest) -> Admit {
        loop {
            if let Some(call) = self.in_flight.take() {
                let Some((status, body)) = call.answer else {
                    self.in_flight = Some(call);
                    return Admit::Wait;
                };
                let Some(service) = call.spec.service.as_ref() else {
                    continue;
                };
                let verdict = service.verdict(status, &body, &call.texts);
                if let Err(e) = self.settle_verdict(cx, req, &call.spec, verdict) {
                    return Admit::Refuse(e);
                }
                continue;
            }
            let Some(spec) = self.services.pop_front() else {
                return Admit::Go;
            };
            let Some(service) = spec.service.as_ref() else {
                continue;
            };
            let texts = request_texts(req);
            if texts.is_empty() {
                count(cx, "passed", &spec.name);
                continue;
            }
            let key = cx.record.caller.caller(cx.cfg).key();
            let who = CallContext {
                key_alias: key.map(|k| k.alias.as_str()),
                team_id: key.and_then(|k| k.team.as_deref()),
                call_id: &cx.record.id,
            };
            let body = service.call_body(&texts, &who);
            let path = service.path();
            let extra = service.call_headers();
            let mut headers: Vec<(&str, &str)> = vec![
                (":method", "POST"),
                (":path", &path),
                (":authority", &service.authority),
            ];
            headers.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            match cx
                .host
                .dispatch_http_call(&service.cluster, &headers, &body, service.timeout_ms)
            {
                Some(token) => {
                    self.in_flight = Some(ServiceCall {
                        token,
                        spec,
                        texts,
                        answer: None,
                    });
                    return Admit::Wait;
                }
                None => {
                    let verdict = Verdict::Failed {
                        unreachable: true,
                        why: format!("cannot be called (cluster `{}`)", service.cluster),
                    };
                    if let Err(e) = self.settle_verdict(cx, req, &spec, verdict) {
                        return Admit::Refuse(e);
                    }
                }
            }
        }
    }

    /// A service call answered; true when it was this hook's.
    pub fn call_answered(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        host: &mut dyn crate::pipeline::host::Host,
    ) -> bool {
        match self.in_flight.as_mut() {
            Some(call) if call.token == token => {
                call.answer = Some(host.call_response(num_headers, body_size));
                true
            }
            _ => false,
        }
    }

    /// Act on a service's verdict: rewrite the request, refuse it, or (a
    /// failed call) follow the guardrail's failure policy.
    fn settle_verdict(
        &mut self,
        cx: &mut Cx<'_>,
        req: &mut ClientRequest,
        spec: &GuardrailSpec,
        verdict: Verdict,
    ) -> Result<(), GatewayError> {
        match verdict {
            Verdict::Pass => count(cx, "passed", &spec.name),
            Verdict::Rewrite(texts) => {
                rewrite_texts(cx, req, &texts)?;
                count(cx, "masked", &spec.name);
            }
            Verdict::Block(reason) => {
                count(cx, "blocked", &spec.name);
                return Err(violation(&spec.name, &reason));
            }
            Verdict::Failed { unreachable, why } => {
                count(cx, "errored", &spec.name);
                let open = spec.service.as_ref().is_some_and(|s| {
                    if unreachable {
                        s.fail_open
                    } else {
                        !s.fail_on_error
                    }
                });
                if open {
                    warn!(
                        "llm-gateway: guardrail `{}` {why}; the request goes on unchecked \
                         (its failure policy is open)",
                        spec.name
                    );
                } else {
                    return Err(GatewayError::new(
                        503,
                        ErrorKind::Unavailable,
                        format!(
                            "guardrail `{}` could not check the request: the service {why}; \
                             the request was not sent",
                            spec.name
                        ),
                    )
                    .with_code("guardrail_unavailable"));
                }
            }
        }
        Ok(())
    }

    /// Each attempt: its answer goes through the output guardrails.
    pub fn before_provider_call(&self, exchange: &mut Exchange) {
        if !self.output.is_empty() {
            exchange.set_output_guard(OutputGuard::new(self.output.clone()));
        }
    }

    /// Each chunk of a stream: a block is counted at once (the request
    /// itself ends only when the provider's stream does).
    pub fn chunk(&mut self, cx: &mut Cx<'_>) {
        if cx
            .exchange
            .and_then(Exchange::output_guard)
            .is_some_and(OutputGuard::is_blocked)
        {
            self.finished(cx);
        }
    }

    /// The request is over: count what the output guardrails did to the
    /// answer that was sent (once).
    pub fn finished(&mut self, cx: &mut Cx<'_>) {
        if self.output.is_empty() {
            return;
        }
        self.output.clear();
        let Some(guard) = cx.exchange.and_then(Exchange::output_guard) else {
            return;
        };
        let outcomes: Vec<(String, &'static str)> = guard
            .outcomes()
            .map(|(name, o)| (name.to_string(), o.as_str()))
            .collect();
        for (name, outcome) in outcomes {
            count(cx, outcome, &name);
        }
    }

    fn publish(&self, cx: &mut Cx<'_>) {
        if !self.applied.is_empty() {
            cx.host
                .set_filter_state("llm_gateway.guardrails", &self.applied.join(","));
        }
    }
}

fn count(cx: &mut Cx<'_>, outcome: &'static str, name: &str) {
    cx.host.counter_add(
        &[
            Part::Text("llm_gateway.guardrail."),
            Part::Text(outcome),
            Part::Text(".guardrail."),
            Part::Label(name),
        ],
        1,
    );
}

/// Take LiteLLM's `guardrails` (top level, and in `metadata`) out of the
/// body; returns what they ask and whether the body changed.
fn take_asked(body: &mut Value) -> Result<(Asked, bool), GatewayError> {
    let mut asked = Asked::default();
    let mut changed = false;
    let Some(obj) = body.as_object_mut() else {
        return Ok((asked, false));
    };
    if let Some(v) = obj.remove("guardrails") {
        read_asked(&v, &mut asked)?;
        changed = true;
    }
    if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
        if let Some(v) = meta.remove("guardrails") {
            read_asked(&v, &mut asked)?;
            changed = true;
        }
    }
    Ok((asked, changed))
}

/// `["a", "b"]` asks for guardrails; `{"a": true, "b": false}` asks for
/// `a` and to switch `b` off.
fn read_asked(v: &Value, asked: &mut Asked) -> Result<(), GatewayError> {
    let bad = || GatewayError::bad_param("guardrails", "must be a list of guardrail names");
    match v {
        Value::Null => Ok(()),
        Value::Array(a) => {
            for x in a {
                asked.on.push(x.as_str().ok_or_else(bad)?.to_string());
            }
            Ok(())
        }
        Value::Object(m) => {
            read_switches(m, asked);
            Ok(())
        }
        _ => Err(bad()),
    }
}

fn read_switches(m: &Map<String, Value>, asked: &mut Asked) {
    for (name, on) in m {
        match on.as_bool() {
            Some(true) => asked.on.push(name.clone()),
            Some(false) => asked.off.push(name.clone()),
            None => {}
        }
    }
}

/// Visit every text of the messages, in order: string contents and `text`
/// parts (what the guardrails check).
fn for_each_text<E>(
    body: &mut Value,
    mut f: impl FnMut(&mut String) -> Result<(), E>,
) -> Result<(), E> {
    let Some(messages) = body.get_mut("messages").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    for m in messages.iter_mut() {
        match m.get_mut("content") {
            Some(Value::String(s)) => f(s)?,
            Some(Value::Array(parts)) => {
                for p in parts.iter_mut() {
                    if let Some(Value::String(s)) = p.get_mut("text") {
                        f(s)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Run a content filter over the messages.
fn apply(spec: &GuardrailSpec, body: &mut Value) -> Result<Outcome, String> {
    let mut outcome = Outcome::Passed;
    for_each_text(body, |text| match check_text(spec, text) {
        Ok(None) => Ok(()),
        Ok(Some(masked)) => {
            *text = masked;
            outcome = Outcome::Masked;
            Ok(())
        }
        Err(b) => Err(b.what),
    })?;
    Ok(outcome)
}

/// The texts a guardrail service checks.
fn request_texts(req: &ClientRequest) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(mut body) = serde_json::from_slice::<Value>(req.body()) {
        let _ = for_each_text::<()>(&mut body, |t| {
            out.push(t.clone());
            Ok(())
        });
    }
    out
}

/// Put a service's rewritten texts back, in the order they were taken.
fn rewrite_texts(
    cx: &mut Cx<'_>,
    req: &mut ClientRequest,
    texts: &[String],
) -> Result<(), GatewayError> {
    let mut body: Value = serde_json::from_slice(req.body())
        .map_err(|_| GatewayError::bad_request("request body is not valid JSON"))?;
    let mut next = texts.iter();
    let _ = for_each_text::<()>(&mut body, |t| {
        if let Some(n) = next.next() {
            t.clone_from(n);
        }
        Ok(())
    });
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    *req = ClientRequest::parse(cx.record.op, bytes)?;
    Ok(())
}
