//! Guardrail services at their hook points: the calls out of band (Envoy's
//! `dispatch_http_call`), one after the other, each on what the one before
//! left. On the request (`pre_call`, `during_call`) at `admission`, before
//! any provider sees it; on a whole answer (`post_call`) once it is
//! translated, before the client sees it. What a call is and what its
//! answer means is `crate::guardrails::external`; here is the waiting, the
//! rewriting and the failure policy.

use std::collections::VecDeque;
use std::sync::Arc;

use log::warn;
use serde_json::Value;

use super::guardrails::{count, for_each_text};
use super::Cx;
use crate::api::error::{ErrorKind, GatewayError};
use crate::api::request::ClientRequest;
use crate::guardrails::external::{CallContext, Verdict};
use crate::guardrails::spec::GuardrailSpec;
use crate::guardrails::vault::Vault;
use crate::guardrails::violation;
use crate::pipeline::host::Host;

/// What a run of service calls comes to.
pub enum Step {
    /// Every service passed (what they rewrote is in place).
    Go,
    /// A call is out; go on when it answers.
    Wait,
    /// Refused: blocked, or a service failed closed.
    Refuse(GatewayError),
}

/// Which text the services check.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Request,
    Answer,
}

impl Phase {
    /// The generic API's `input_type`.
    fn input_type(self) -> &'static str {
        match self {
            Phase::Request => "request",
            Phase::Answer => "response",
        }
    }
}

/// Reads the texts a service checks (`None`) or writes its rewrite back
/// (`Some(texts)`), on the request or on the answer.
type TextsIo<'a> = dyn FnMut(Option<&[String]>) -> Result<Vec<String>, GatewayError> + 'a;

/// One service call.
struct ServiceCall {
    token: u32,
    spec: Arc<GuardrailSpec>,
    texts: Vec<String>,
    /// The service's status and body, once it answered.
    answer: Option<(Option<u16>, Vec<u8>)>,
}

/// The services of one request and where they are.
#[derive(Default)]
pub struct Services {
    request: VecDeque<Arc<GuardrailSpec>>,
    answer: VecDeque<Arc<GuardrailSpec>>,
    in_flight: Option<ServiceCall>,
    /// The answer being checked (a `chat.completion`), while calls are out.
    checking: Option<Value>,
}

impl Services {
    /// A service guardrail that runs on this request.
    pub fn add(&mut self, spec: &Arc<GuardrailSpec>, answers: bool) {
        if spec.input {
            self.request.push_back(Arc::clone(spec));
        }
        if spec.output && answers {
            self.answer.push_back(Arc::clone(spec));
        }
    }

    /// Whether answers are checked by a service.
    pub fn check_answers(&self) -> bool {
        !self.answer.is_empty()
    }

    /// The request's services, from where they are. What an
    /// `output_parse_pii` service masks is kept in `vault`.
    pub fn on_request(
        &mut self,
        cx: &mut Cx<'_>,
        req: &mut ClientRequest,
        vault: &mut Vault,
    ) -> Step {
        let op = cx.record.op;
        let mut body: Option<Value> = None;
        self.run(cx, Phase::Request, Some(vault), &mut |texts| match texts {
            // Read: the texts of the request as it is now.
            None => Ok(request_texts(req)),
            // Write: the rewritten texts back into the request.
            Some(new) => {
                let v = body.get_or_insert_with(|| {
                    serde_json::from_slice(req.body()).unwrap_or(Value::Null)
                });
                put_texts(v, new);
                let bytes = serde_json::to_vec(v).unwrap_or_default();
                *req = ClientRequest::parse(op, bytes)?;
                Ok(Vec::new())
            }
        })
    }

    /// A translated whole answer: `Ok(body)` to send it now (checked, maybe
    /// rewritten), or the step the check is at.
    pub fn on_answer(&mut self, cx: &mut Cx<'_>, body: Vec<u8>) -> Result<Vec<u8>, Step> {
        if self.answer.is_empty() {
            return Ok(body);
        }
        let Ok(v) = serde_json::from_slice::<Value>(&body) else {
            return Ok(body);
        };
        self.checking = Some(v);
        self.resume_answer(cx)
    }

    /// Go on checking the answer after a call answered.
    pub fn resume_answer(&mut self, cx: &mut Cx<'_>) -> Result<Vec<u8>, Step> {
        let mut answer = self.checking.take().unwrap_or(Value::Null);
        let step = self.run(cx, Phase::Answer, None, &mut |texts| match texts {
            None => Ok(answer_texts(&answer)),
            Some(new) => {
                let mut it = new.iter();
                for_each_answer_text(&mut answer, |t| {
                    if let Some(n) = it.next() {
                        t.clone_from(n);
                    }
                });
                Ok(Vec::new())
            }
        });
        match step {
            Step::Go => Ok(serde_json::to_vec(&answer).unwrap_or_default()),
            Step::Wait => {
                self.checking = Some(answer);
                Err(Step::Wait)
            }
            refused => Err(refused),
        }
    }

    /// A call answered; true when it was one of these.
    pub fn call_answered(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        host: &mut dyn Host,
    ) -> bool {
        match self.in_flight.as_mut() {
            Some(call) if call.token == token => {
                call.answer = Some(host.call_response(num_headers, body_size));
                true
            }
            _ => false,
        }
    }

    /// Whether the call in flight checks the answer (else the request).
    pub fn checking_answer(&self) -> bool {
        self.checking.is_some()
    }

    /// Call the phase's services in turn. `texts(None)` reads the texts to
    /// check, `texts(Some(new))` writes a service's rewrite back.
    fn run(
        &mut self,
        cx: &mut Cx<'_>,
        phase: Phase,
        mut vault: Option<&mut Vault>,
        texts: &mut TextsIo<'_>,
    ) -> Step {
        loop {
            if let Some(call) = self.in_flight.take() {
                let Some((status, body)) = call.answer else {
                    self.in_flight = Some(call);
                    return Step::Wait;
                };
                let Some(service) = call.spec.service.as_ref() else {
                    continue;
                };
                let keep = vault.as_deref_mut().filter(|_| call.spec.output_parse_pii);
                let verdict = service.verdict(status, &body, &call.texts, keep);
                if let Err(e) = settle(cx, phase, &call.spec, verdict, texts) {
                    return Step::Refuse(e);
                }
                continue;
            }
            let queue = match phase {
                Phase::Request => &mut self.request,
                Phase::Answer => &mut self.answer,
            };
            let Some(spec) = queue.pop_front() else {
                return Step::Go;
            };
            let Some(service) = spec.service.as_ref() else {
                continue;
            };
            let checked = match texts(None) {
                Ok(t) => t,
                Err(e) => return Step::Refuse(e),
            };
            if checked.is_empty() {
                count(cx, "passed", &spec.name);
                continue;
            }
            let key = cx.record.caller.caller(cx.cfg).key();
            let who = CallContext {
                key_alias: key.map(|k| k.alias.as_str()),
                team_id: key.and_then(|k| k.team.as_deref()),
                call_id: &cx.record.id,
                input_type: phase.input_type(),
            };
            let body = service.call_body(&checked, &who);
            let path = service.path();
            let extra = service.call_headers();
            let mut headers: Vec<(&str, &str)> = vec![
                (":method", "POST"),
                (":path", &path),
                (":authority", &service.authority),
            ];
            headers.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let cluster = service.cluster.clone();
            match cx
                .host
                .dispatch_http_call(&cluster, &headers, &body, service.timeout_ms)
            {
                Some(token) => {
                    self.in_flight = Some(ServiceCall {
                        token,
                        spec,
                        texts: checked,
                        answer: None,
                    });
                    return Step::Wait;
                }
                None => {
                    let verdict = Verdict::Failed {
                        unreachable: true,
                        why: format!("cannot be called (cluster `{cluster}`)"),
                    };
                    if let Err(e) = settle(cx, phase, &spec, verdict, texts) {
                        return Step::Refuse(e);
                    }
                }
            }
        }
    }
}

/// Act on a service's verdict: rewrite, refuse, or (a failed call) follow
/// the guardrail's failure policy.
fn settle(
    cx: &mut Cx<'_>,
    phase: Phase,
    spec: &GuardrailSpec,
    verdict: Verdict,
    texts: &mut TextsIo<'_>,
) -> Result<(), GatewayError> {
    match verdict {
        Verdict::Pass => count(cx, "passed", &spec.name),
        Verdict::Rewrite(new) => {
            texts(Some(&new))?;
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
            let what = match phase {
                Phase::Request => ("request", "the request was not sent"),
                Phase::Answer => ("answer", "the answer was not sent"),
            };
            if open {
                warn!(
                    "llm-gateway: guardrail `{}` {why}; the {} goes on unchecked (its failure \
                     policy is open)",
                    spec.name, what.0
                );
            } else {
                return Err(GatewayError::new(
                    503,
                    ErrorKind::Unavailable,
                    format!(
                        "guardrail `{}` could not check the {}: the service {why}; {}",
                        spec.name, what.0, what.1
                    ),
                )
                .with_code("guardrail_unavailable"));
            }
        }
    }
    Ok(())
}

/// The texts a guardrail service checks on the request.
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

/// Put rewritten texts back into a request body, in the order taken.
fn put_texts(body: &mut Value, texts: &[String]) {
    let mut next = texts.iter();
    let _ = for_each_text::<()>(body, |t| {
        if let Some(n) = next.next() {
            t.clone_from(n);
        }
        Ok(())
    });
}

/// Visit each choice's `message.content` of an answer.
fn for_each_answer_text(answer: &mut Value, mut f: impl FnMut(&mut String)) {
    let choices = answer.get_mut("choices").and_then(Value::as_array_mut);
    for c in choices.into_iter().flatten() {
        if let Some(Value::String(s)) = c.pointer_mut("/message/content") {
            f(s);
        }
    }
}

fn answer_texts(answer: &Value) -> Vec<String> {
    let mut v = answer.clone();
    let mut out = Vec::new();
    for_each_answer_text(&mut v, |t| out.push(t.clone()));
    out
}
