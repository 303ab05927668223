//! Guardrails at their hook point: the content filter runs on the request's
//! messages at `request_accepted`, before the budget's reservation and
//! before any provider sees the body. A block is a 400
//! `content_policy_violation` naming the guardrail and what it found (never
//! the matched text); a mask rewrites the body. The guardrails that ran are
//! named in `x-litellm-applied-guardrails` (LiteLLM's header), the access
//! log (`llm_gateway.guardrails`) and metrics
//! (`llm_gateway.guardrail.<passed|masked|blocked>.guardrail.<name>`).

use serde_json::Value;

use super::Cx;
use crate::api::error::{ErrorKind, GatewayError};
use crate::api::request::ClientRequest;
use crate::guardrails::check_text;
use crate::guardrails::spec::GuardrailSpec;
use crate::pipeline::host::Part;

/// The guardrails applied to this request.
#[derive(Default)]
pub struct GuardrailHook {
    applied: Vec<String>,
}

/// What one guardrail did to the request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Passed,
    Masked,
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

    /// Run the `pre_call` guardrails on the request's messages.
    pub fn request_accepted(
        &mut self,
        cx: &mut Cx<'_>,
        req: &mut ClientRequest,
    ) -> Result<(), GatewayError> {
        let named = req.member("guardrails").map(str::to_string);
        if cx.cfg.guardrails.is_empty() && named.is_none() {
            return Ok(());
        }
        let mut body: Value = serde_json::from_slice(req.body())
            .map_err(|_| GatewayError::bad_request("request body is not valid JSON"))?;
        let requested = requested_names(body.get("guardrails"))?;
        for n in &requested {
            if !cx.cfg.guardrails.iter().any(|g| &g.name == n) {
                return Err(GatewayError::bad_param(
                    "guardrails",
                    format!("unknown guardrail `{n}`"),
                ));
            }
        }
        // The gateway's instruction, not the model's: no provider sees it.
        let mut changed = body
            .as_object_mut()
            .and_then(|o| o.remove("guardrails"))
            .is_some();
        for spec in cx.cfg.guardrails.iter() {
            if !spec.default_on && !requested.contains(&spec.name) {
                continue;
            }
            self.applied.push(spec.name.clone());
            let outcome = match apply(spec, &mut body) {
                Ok(o) => o,
                Err(what) => {
                    count(cx, "blocked", &spec.name);
                    self.publish(cx);
                    return Err(GatewayError::new(
                        400,
                        ErrorKind::InvalidRequest,
                        format!("Content blocked by guardrail `{}`: {what}", spec.name),
                    )
                    .with_code("content_policy_violation"));
                }
            };
            count(
                cx,
                if outcome == Outcome::Masked {
                    "masked"
                } else {
                    "passed"
                },
                &spec.name,
            );
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

/// The guardrails a request asks for: `["a", "b"]` (LiteLLM's request
/// field). A mapping `{"a": false}` cannot switch a `default_on` guardrail
/// off here; its `true` entries are requests.
fn requested_names(v: Option<&Value>) -> Result<Vec<String>, GatewayError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str().map(str::to_string).ok_or_else(|| {
                    GatewayError::bad_param("guardrails", "must be a list of guardrail names")
                })
            })
            .collect(),
        Some(Value::Object(m)) => Ok(m
            .iter()
            .filter(|(_, on)| on.as_bool() == Some(true))
            .map(|(k, _)| k.clone())
            .collect()),
        Some(_) => Err(GatewayError::bad_param(
            "guardrails",
            "must be a list of guardrail names",
        )),
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
