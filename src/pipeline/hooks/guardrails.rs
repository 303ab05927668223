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

use std::sync::Arc;

use serde_json::{Map, Value};

use super::guardrail_services::{Services, Step};
use super::{Admit, Cx};
use crate::api::error::GatewayError;
use crate::api::openai::Operation;
use crate::api::request::ClientRequest;
use crate::guardrails::output::OutputGuard;
use crate::guardrails::spec::GuardrailSpec;
use crate::guardrails::vault::Vault;
use crate::guardrails::{check_text, violation};
use crate::pipeline::host::Part;
use crate::pipeline::Exchange;

/// The guardrails applied to this request.
#[derive(Default)]
pub struct GuardrailHook {
    applied: Vec<String>,
    /// The `post_call` guardrails, for each attempt's answer.
    output: Vec<Arc<GuardrailSpec>>,
    /// The guardrail services of this request.
    services: Services,
    /// What `output_parse_pii` guardrails masked, to give back in the answer.
    vault: Vault,
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
    /// The guardrails applied to this request, so far.
    pub fn applied(&self) -> &[String] {
        &self.applied
    }

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
        let asks = req.gateway_member("guardrails").is_some()
            || req
                .gateway_member("metadata")
                .is_some_and(|m| m.contains("guardrails"));
        if cx.cfg.guardrails.is_empty() && !asks {
            // The common case: nothing to look up on the hot path.
            return Ok(());
        }
        let key_guardrails: Vec<String> = cx
            .record
            .caller
            .caller(cx.cfg)
            .key()
            .map(|k| k.guardrails.clone())
            .unwrap_or_default();
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
            if spec.output && spec.service.is_none() && cx.record.op == Operation::Chat {
                self.output.push(Arc::clone(spec));
            }
        }
        for spec in selected.iter().filter(|g| g.service.is_some()) {
            if spec.output && cx.record.stream && cx.record.op == Operation::Chat {
                self.publish(cx);
                return Err(GatewayError::bad_param(
                    "stream",
                    format!(
                        "guardrail `{}` checks answers with a service, which this gateway does \
                         for whole answers only; send the request with `stream: false`",
                        spec.name
                    ),
                )
                .with_code("guardrail_needs_whole_answer"));
            }
            self.services.add(spec, cx.record.op == Operation::Chat);
        }
        for spec in selected.iter().filter(|g| g.input && g.service.is_none()) {
            let vault = spec.output_parse_pii.then_some(&mut self.vault);
            let outcome = match apply(spec, &mut body, vault) {
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

    /// Before any provider sees the request: the guardrail services.
    pub fn admission(&mut self, cx: &mut Cx<'_>, req: &mut ClientRequest) -> Admit {
        match self.services.on_request(cx, req, &mut self.vault) {
            Step::Go => Admit::Go,
            Step::Wait => Admit::Wait,
            Step::Refuse(e) => Admit::Refuse(e),
        }
    }

    /// A service call answered; true when it was one of this hook's.
    pub fn call_answered(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        host: &mut dyn crate::pipeline::host::Host,
    ) -> bool {
        self.services
            .call_answered(token, num_headers, body_size, host)
    }

    /// Whether the call that answered was checking the answer.
    pub fn checking_answer(&self) -> bool {
        self.services.checking_answer()
    }

    /// A translated whole answer, before the client sees it: the `post_call`
    /// services. `Ok(body)` to send now; else wait or refuse.
    /// Last, the caller's masked values are given back (`output_parse_pii`).
    pub fn answer_ready(&mut self, cx: &mut Cx<'_>, body: Vec<u8>) -> Result<Vec<u8>, Step> {
        let checked = self.services.on_answer(cx, body)?;
        Ok(unmask_answer(&self.vault, checked))
    }

    /// Go on with the answer's services after a call answered.
    pub fn answer_resumed(&mut self, cx: &mut Cx<'_>) -> Result<Vec<u8>, Step> {
        let checked = self.services.resume_answer(cx)?;
        Ok(unmask_answer(&self.vault, checked))
    }

    /// Whether whole answers go through [`GuardrailHook::answer_ready`]: a
    /// guardrail service checks them, or masked values go back in them.
    pub fn checks_answers(&self) -> bool {
        self.services.check_answers() || !self.vault.is_empty()
    }

    /// Whether a guardrail may rewrite or hold the answer (so an answer
    /// the hooks cannot read as chat must not be passed through).
    pub fn acts_on_answers(&self) -> bool {
        self.checks_answers() || !self.output.is_empty() || !self.vault.is_empty()
    }

    /// Each attempt: its answer goes through the output guardrails (and a
    /// stream gets the masked values back as it passes).
    pub fn before_provider_call(&self, exchange: &mut Exchange) {
        if self.checks_answers() {
            exchange.hold_answer();
        }
        let unmask = !self.vault.is_empty() && exchange.is_stream();
        if !self.output.is_empty() || unmask {
            let guard = OutputGuard::new(self.output.clone());
            exchange.set_output_guard(if unmask {
                guard.with_vault(Arc::new(self.vault.clone()))
            } else {
                guard
            });
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

pub(super) fn count(cx: &mut Cx<'_>, outcome: &'static str, name: &str) {
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
pub(super) fn for_each_text<E>(
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

/// Run a content filter over the messages (masking into `vault`'s tokens
/// when given).
fn apply(
    spec: &GuardrailSpec,
    body: &mut Value,
    mut vault: Option<&mut Vault>,
) -> Result<Outcome, String> {
    let mut outcome = Outcome::Passed;
    for_each_text(body, |text| {
        match check_text(spec, text, vault.as_deref_mut()) {
            Ok(None) => Ok(()),
            Ok(Some(masked)) => {
                *text = masked;
                outcome = Outcome::Masked;
                Ok(())
            }
            Err(b) => Err(b.what),
        }
    })?;
    Ok(outcome)
}

/// A whole `chat.completion` with the caller's masked values given back:
/// in each choice's text and tool call arguments (LiteLLM's
/// `output_parse_pii` covers the same fields).
fn unmask_answer(vault: &Vault, body: Vec<u8>) -> Vec<u8> {
    if vault.is_empty() {
        return body;
    }
    let Ok(mut v) = serde_json::from_slice::<Value>(&body) else {
        return body;
    };
    let mut changed = false;
    let mut put = |s: &mut String, new: String| {
        if *s != new {
            *s = new;
            changed = true;
        }
    };
    let choices = v.get_mut("choices").and_then(Value::as_array_mut);
    for message in choices
        .into_iter()
        .flatten()
        .filter_map(|c| c.get_mut("message"))
    {
        match message.get_mut("content") {
            Some(Value::String(s)) => {
                let new = vault.unmask(s, true);
                put(s, new);
            }
            Some(Value::Array(parts)) => {
                for p in parts.iter_mut() {
                    if let Some(Value::String(s)) = p.get_mut("text") {
                        let new = vault.unmask(s, true);
                        put(s, new);
                    }
                }
            }
            _ => {}
        }
        let calls = message.get_mut("tool_calls").and_then(Value::as_array_mut);
        let functions = calls
            .into_iter()
            .flatten()
            .filter_map(|c| c.get_mut("function"))
            .collect::<Vec<_>>();
        for f in functions {
            if let Some(Value::String(s)) = f.get_mut("arguments") {
                let new = vault.unmask_json(s);
                put(s, new);
            }
        }
        if let Some(Value::String(s)) = message.pointer_mut("/function_call/arguments") {
            let new = vault.unmask_json(s);
            put(s, new);
        }
    }
    if changed {
        serde_json::to_vec(&v).unwrap_or(body)
    } else {
        body
    }
}
