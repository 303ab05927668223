//! LiteLLM's logging callbacks (`litellm_settings.callbacks`,
//! `success_callback`, `failure_callback`) and `turn_off_message_logging`,
//! read with LiteLLM's names: what they drive is the trace hook
//! (`pipeline/hooks/trace.rs`), which sends one OpenTelemetry span per
//! request over OTLP/HTTP (protobuf).
//!
//! | callback | here |
//! |---|---|
//! | `otel` | spans to `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (as is), else `OTEL_EXPORTER_OTLP_ENDPOINT` (or LiteLLM's `OTEL_ENDPOINT`) + `/v1/traces`; headers from `OTEL_EXPORTER_OTLP_HEADERS` (or `OTEL_HEADERS`), `k=v,k=v`; only the `http/protobuf` / `otlp_http` protocol (`grpc` is refused) |
//! | `langfuse`, `langfuse_otel` | spans to `LANGFUSE_HOST` (default `https://cloud.langfuse.com`) + `/api/public/otel/v1/traces`, Basic auth `LANGFUSE_PUBLIC_KEY:LANGFUSE_SECRET_KEY` (both required, as LiteLLM requires them) |
//! | `prometheus` | nothing to do: Envoy serves the gateway's metrics at `/stats/prometheus` |
//! | guardrail names, `module.instance` | `config::unenforced` (refused unless allowed) |
//! | any other name (`datadog`, `s3`, `langsmith`, `lago` ...) | refused: the data the operator expects there would be lost; `gateway.allow_unexported_callbacks: true` loads it with a warning |
//!
//! `success_callback` exports spans of requests that got an answer,
//! `failure_callback` of those that failed, `callbacks` both. Message
//! content is left out of spans unless `turn_off_message_logging: false`
//! (LiteLLM logs it by default; here it is opt-in).

use serde_json::{Map, Value};

use super::ConfigError;
use crate::guardrails::spec::{Endpoint, SpecError};

/// The environment variables the exporters read (passed to the VM by render).
pub const ENV_NAMES: &[&str] = &[
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_HEADERS",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER",
    "OTEL_SERVICE_NAME",
    "LANGFUSE_HOST",
    "LANGFUSE_PUBLIC_KEY",
    "LANGFUSE_SECRET_KEY",
];

/// Langfuse's own default host (its SDK's, which LiteLLM's `langfuse` uses).
pub const LANGFUSE_DEFAULT_HOST: &str = "https://cloud.langfuse.com";
/// The service name when `OTEL_SERVICE_NAME` is not set.
pub const DEFAULT_SERVICE_NAME: &str = "llm-gateway";

/// Callback names accepted without exporting anything.
const NOTHING_TO_DO: &[&str] = &["prometheus"];

/// Which exporter a callback name means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Otel,
    Langfuse,
}

impl Sink {
    pub fn name(self) -> &'static str {
        match self {
            Sink::Otel => "otel",
            Sink::Langfuse => "langfuse",
        }
    }

    fn from_callback(name: &str) -> Option<Sink> {
        match name {
            "otel" | "opentelemetry" => Some(Sink::Otel),
            "langfuse" | "langfuse_otel" => Some(Sink::Langfuse),
            _ => None,
        }
    }
}

/// One OTLP/HTTP destination.
#[derive(Debug, Clone, PartialEq)]
pub struct Exporter {
    pub sink: Sink,
    /// Where spans are POSTed (`path` is the full traces path).
    pub endpoint: Endpoint,
    /// Extra request headers (authorization ...).
    pub headers: Vec<(String, String)>,
    /// Export spans of requests that got an answer.
    pub on_success: bool,
    /// Export spans of requests that failed.
    pub on_failure: bool,
}

/// What the trace hook exports.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    pub exporters: Vec<Exporter>,
    /// `service.name` of the spans' resource.
    pub service_name: String,
    /// Prompt and answer text in spans (`turn_off_message_logging: false`).
    pub log_content: bool,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A sink, exported on success, on failure.
type SinkUse = (Sink, bool, bool);

/// The sinks the callback lists name, each with (on success, on failure),
/// and the names that are neither a sink nor a guardrail (for the caller to
/// refuse or warn about), with their fields.
fn sinks(ls: &Map<String, Value>) -> (Vec<SinkUse>, Vec<(String, String)>) {
    let mut out: Vec<SinkUse> = Vec::new();
    let mut unknown = Vec::new();
    for (list, success, failure) in [
        ("callbacks", true, true),
        ("success_callback", true, false),
        ("failure_callback", false, true),
    ] {
        let Some(Value::Array(items)) = ls.get(list) else {
            continue;
        };
        for (i, c) in items.iter().enumerate() {
            let Some(name) = c.as_str() else { continue };
            match Sink::from_callback(name) {
                Some(sink) => match out.iter_mut().find(|(s, _, _)| *s == sink) {
                    Some(e) => {
                        e.1 |= success;
                        e.2 |= failure;
                    }
                    None => out.push((sink, success, failure)),
                },
                None if NOTHING_TO_DO.contains(&name)
                    || super::unenforced::is_guardrail_callback(name) => {}
                None => unknown.push((format!("litellm_settings.{list}[{i}]"), name.to_string())),
            }
        }
    }
    (out, unknown)
}

/// The URL each configured exporter sends to (for `llm-gateway render`,
/// which makes a cluster of each), read from `env`.
pub fn exporter_urls(
    root: &Map<String, Value>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ConfigError> {
    let Some(Value::Object(ls)) = root.get("litellm_settings") else {
        return Ok(Vec::new());
    };
    sinks(ls)
        .0
        .iter()
        .map(|(sink, _, _)| traces_url(*sink, env))
        .collect()
}

fn nonempty(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.trim().is_empty())
}

/// The traces URL of a sink.
fn traces_url(sink: Sink, env: &dyn Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    match sink {
        Sink::Otel => {
            let protocol = nonempty(env, "OTEL_EXPORTER_OTLP_PROTOCOL")
                .or_else(|| nonempty(env, "OTEL_EXPORTER"))
                .unwrap_or_default();
            if !matches!(
                protocol.as_str(),
                "" | "http/protobuf" | "otlp_http" | "http" | "otlp"
            ) {
                return Err(err(
                    "litellm_settings.callbacks",
                    format!(
                        "callback `otel`: OTEL_EXPORTER_OTLP_PROTOCOL / OTEL_EXPORTER `{protocol}` \
                         is not supported: the gateway exports OTLP over HTTP (`http/protobuf`)"
                    ),
                ));
            }
            if let Some(u) = nonempty(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
                return Ok(u);
            }
            let base = nonempty(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
                .or_else(|| nonempty(env, "OTEL_ENDPOINT"))
                .ok_or_else(|| {
                    err(
                        "litellm_settings.callbacks",
                        "callback `otel` needs OTEL_EXPORTER_OTLP_ENDPOINT (the collector's \
                         OTLP/HTTP base URL, e.g. http://collector:4318)",
                    )
                })?;
            let base = base.trim_end_matches('/');
            Ok(if base.ends_with("/v1/traces") {
                base.to_string()
            } else {
                format!("{base}/v1/traces")
            })
        }
        Sink::Langfuse => {
            let host =
                nonempty(env, "LANGFUSE_HOST").unwrap_or_else(|| LANGFUSE_DEFAULT_HOST.into());
            let host = if host.starts_with("http") {
                host
            } else {
                format!("https://{host}")
            };
            Ok(format!(
                "{}/api/public/otel/v1/traces",
                host.trim_end_matches('/')
            ))
        }
    }
}

/// `k1=v1,k2=v2` (values percent-decoded, as the OTel SDKs read them).
fn parse_headers(raw: &str) -> Vec<(String, String)> {
    raw.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), percent_decode(v.trim())))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

fn percent_decode(s: &str) -> String {
    crate::codec::url::percent_decode(s, false)
}

/// Read the callbacks: `Ok(None)` when none exports spans.
/// `endpoint` maps a URL to its Envoy cluster; `allow_unexported` loads
/// callbacks this gateway cannot serve, with a warning each.
pub fn parse(
    root: &Map<String, Value>,
    env: &dyn Fn(&str) -> Option<String>,
    endpoint: &dyn Fn(&str, &str) -> Result<Endpoint, SpecError>,
    allow_unexported: bool,
    warnings: &mut Vec<String>,
) -> Result<Option<TraceSettings>, ConfigError> {
    let Some(Value::Object(ls)) = root.get("litellm_settings") else {
        return Ok(None);
    };
    let log_content = match ls.get("turn_off_message_logging") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => !b,
        Some(_) => {
            return Err(err(
                "litellm_settings.turn_off_message_logging",
                "must be a boolean",
            ))
        }
    };
    let (found, unknown) = sinks(ls);
    for (field, name) in unknown {
        if allow_unexported {
            warnings.push(format!(
                "{field}: callback `{name}` is NOT served by this gateway: nothing is sent to it \
                 (gateway.allow_unexported_callbacks is true)"
            ));
        } else {
            return Err(err(
                field,
                format!(
                    "callback `{name}` is not served by this gateway: what it should receive \
                     would be lost; use `otel` (any OpenTelemetry backend) or `langfuse`, \
                     remove it, or set gateway.allow_unexported_callbacks: true"
                ),
            ));
        }
    }
    if found.is_empty() {
        return Ok(None);
    }
    let mut exporters = Vec::new();
    for (sink, on_success, on_failure) in found {
        let url = traces_url(sink, env)?;
        let field = format!("litellm_settings callback `{}`", sink.name());
        let ep = endpoint(&url, &field).map_err(|e| err(e.field, e.reason))?;
        let headers = match sink {
            Sink::Otel => nonempty(env, "OTEL_EXPORTER_OTLP_HEADERS")
                .or_else(|| nonempty(env, "OTEL_HEADERS"))
                .map(|h| parse_headers(&h))
                .unwrap_or_default(),
            Sink::Langfuse => {
                let (Some(pk), Some(sk)) = (
                    nonempty(env, "LANGFUSE_PUBLIC_KEY"),
                    nonempty(env, "LANGFUSE_SECRET_KEY"),
                ) else {
                    return Err(err(
                        field,
                        "LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY must be set (as LiteLLM \
                         requires)",
                    ));
                };
                let token = crate::codec::base64::encode(format!("{pk}:{sk}").as_bytes());
                vec![("authorization".to_string(), format!("Basic {token}"))]
            }
        };
        exporters.push(Exporter {
            sink,
            endpoint: ep,
            headers,
            on_success,
            on_failure,
        });
    }
    Ok(Some(TraceSettings {
        exporters,
        service_name: nonempty(env, "OTEL_SERVICE_NAME")
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.into()),
        log_content,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ep(url: &str, _: &str) -> Result<Endpoint, SpecError> {
        let b = crate::config::ApiBase::parse(url).map_err(|r| SpecError {
            field: "x".into(),
            reason: r,
        })?;
        Ok(Endpoint {
            authority: b.authority,
            path: b.path,
            cluster: "c".into(),
        })
    }

    fn run(ls: Value, vars: &[(&str, &str)]) -> Result<Option<TraceSettings>, ConfigError> {
        let root = json!({ "litellm_settings": ls });
        let env = |n: &str| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        };
        parse(root.as_object().unwrap(), &env, &ep, false, &mut Vec::new())
    }

    #[test]
    fn otel_endpoint_gets_the_traces_path_and_headers() {
        let t = run(
            json!({"callbacks": ["otel"]}),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://col:4318/"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "X-Tenant=a%20b,api-key=k"),
            ],
        )
        .unwrap()
        .unwrap();
        let e = &t.exporters[0];
        assert_eq!(e.endpoint.path, "/v1/traces");
        assert_eq!(
            e.headers,
            vec![
                ("x-tenant".to_string(), "a b".to_string()),
                ("api-key".to_string(), "k".to_string())
            ]
        );
        assert!(e.on_success && e.on_failure);
        assert!(!t.log_content);
    }

    #[test]
    fn langfuse_needs_both_keys_and_sends_basic_auth() {
        assert!(run(json!({"success_callback": ["langfuse"]}), &[]).is_err());
        let t = run(
            json!({"success_callback": ["langfuse"], "turn_off_message_logging": false}),
            &[
                ("LANGFUSE_PUBLIC_KEY", "pk"),
                ("LANGFUSE_SECRET_KEY", "sk"),
                ("LANGFUSE_HOST", "http://lf:3000"),
            ],
        )
        .unwrap()
        .unwrap();
        let e = &t.exporters[0];
        assert_eq!(e.endpoint.path, "/api/public/otel/v1/traces");
        assert_eq!(e.headers[0].1, "Basic cGs6c2s=");
        assert!(e.on_success && !e.on_failure);
        assert!(t.log_content);
    }

    #[test]
    fn unknown_callbacks_are_refused_and_prometheus_is_fine() {
        let e = run(json!({"success_callback": ["prometheus", "datadog"]}), &[]).unwrap_err();
        assert_eq!(e.field, "litellm_settings.success_callback[1]");
        assert!(run(json!({"callbacks": ["prometheus"]}), &[])
            .unwrap()
            .is_none());
        let grpc = run(
            json!({"callbacks": ["otel"]}),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
        );
        assert!(grpc.is_err());
    }
}
