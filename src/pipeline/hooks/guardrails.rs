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

use super::Cx;
use crate::api::error::GatewayError;
use crate::api::openai::Operation;
use crate::api::request::ClientRequest;
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
        for spec in selected.iter().filter(|g| g.input) {
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

    /// Each attempt: its answer goes through the output guardrails.
    pub fn before_provider_call(&self, exchange: &mut Exchange) {
        if !self.output.is_empty() {
            exchange.set_output_guard(OutputGuard::new(self.output.clone()));
        }
    }

    /// The request is over: count what the output guardrails did to the
    /// answer that was sent.
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

/// Every text of the messages: string contents and `text` parts.
fn apply(spec: &GuardrailSpec, body: &mut Value) -> Result<Outcome, String> {
    let mut outcome = Outcome::Passed;
    let Some(messages) = body.get_mut("messages").and_then(Value::as_array_mut) else {
        return Ok(outcome);
    };
    let mut one = |text: &mut String| -> Result<(), String> {
        match check_text(spec, text) {
            Ok(None) => Ok(()),
            Ok(Some(masked)) => {
                *text = masked;
                outcome = Outcome::Masked;
                Ok(())
            }
            Err(b) => Err(b.what),
        }
    };
    for m in messages.iter_mut() {
        match m.get_mut("content") {
            Some(Value::String(s)) => one(s)?,
            Some(Value::Array(parts)) => {
                for p in parts.iter_mut() {
                    if let Some(Value::String(s)) = p.get_mut("text") {
                        one(s)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(outcome)
}
