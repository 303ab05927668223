//! Configuration checks, request paths and credentials: what differs between
//! the Gemini API and Vertex AI.

#[allow(unused_imports)]
use super::*;

/// A model id must fit in a URL path segment as is.
pub(super) fn validate_model_id(model: &str) -> Result<(), String> {
    if let Some(c) = model
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.@/".contains(*c)))
    {
        return Err(format!(
            "model id `{model}` has the character `{c}`, which cannot be sent in the request path"
        ));
    }
    Ok(())
}

/// A project id or location: letters, digits, `-`, `_`, `.`.
pub(super) fn valid_path_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

pub(super) fn validate_vertex(dep: &Deployment) -> Result<(), String> {
    validate_model_id(&dep.model)?;
    let model = dep.model.as_str();
    if model.contains('/') {
        return Err(format!(
            "vertex_ai model `{model}`: only Google's publisher models (`vertex_ai/gemini-...`, \
             `vertex_ai/text-embedding-...`) are served; partner models and endpoint ids \
             need other request bodies this gateway does not send"
        ));
    }
    validate_vertex_target(dep)
}

/// The checks every Vertex AI deployment passes, whatever its publisher
/// (Google's models here, Anthropic's in `provider::anthropic::vertex`):
/// project, location, endpoint, credential.
pub(crate) fn validate_vertex_target(dep: &Deployment) -> Result<(), String> {
    let project = dep.params.get("vertex_project").map(String::as_str);
    let location = dep.params.get("vertex_location").map(String::as_str);
    let project = project.ok_or_else(|| {
        "vertex_project is required for vertex_ai deployments (the Google Cloud project id)"
            .to_string()
    })?;
    if !valid_path_word(project) {
        return Err(format!(
            "vertex_project `{project}` is not a Google Cloud project id"
        ));
    }
    let location = location.ok_or_else(|| {
        "vertex_location is required for vertex_ai deployments (a region such as \
         `us-central1`, or `global`)"
            .to_string()
    })?;
    if !valid_path_word(location) {
        return Err(format!(
            "vertex_location `{location}` is not a Vertex AI location"
        ));
    }
    if location != "global"
        && dep
            .api_base
            .authority
            .eq_ignore_ascii_case("aiplatform.googleapis.com")
    {
        return Err(format!(
            "api_base: vertex_location `{location}` is served at \
             https://{location}-aiplatform.googleapis.com; set api_base to it (the Envoy cluster \
             is chosen from api_base, so the gateway cannot switch hosts per request). \
             `https://aiplatform.googleapis.com` serves vertex_location `global` only"
        ));
    }
    if dep.api_key.is_none() {
        if let Some(c) = dep.params.get("vertex_credentials") {
            if !credential_is_token(c) {
                return Err(
                    "vertex_credentials: a service-account JSON (or a path to one) needs an \
                     OAuth token exchange, which this gateway does not do on the request path; \
                     put an access token in api_key (or the VERTEXAI_ACCESS_TOKEN variable), or \
                     leave the credential out and let Envoy inject Authorization on the Vertex \
                     cluster"
                        .to_string(),
                );
            }
        }
    }
    Ok(())
}

/// A `vertex_credentials` value usable as a bearer token (not JSON, not a path).
pub(super) fn credential_is_token(c: &str) -> bool {
    let c = c.trim();
    !c.is_empty()
        && !c.starts_with('{')
        && !c.contains('/')
        && !c.ends_with(".json")
        && !c.chars().any(char::is_whitespace)
}

/// `api_base`'s path with the API version appended, unless it already ends
/// with a version segment (`/v1`, `/v1beta`, `/v1beta1` ...).
pub(super) fn versioned_base(path: &str, version: &str) -> String {
    let last = path.rsplit('/').next().unwrap_or("");
    let is_version = last
        .strip_prefix('v')
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
    if is_version {
        path.to_string()
    } else {
        format!("{path}/{version}")
    }
}

/// The model resource path without the method: `.../models/{model}`.
pub(super) fn model_path(api: Api, dep: &Deployment) -> Result<String, GatewayError> {
    match api {
        Api::Gemini => {
            let base = versioned_base(
                &dep.api_base.path,
                dep.api_version.as_deref().unwrap_or("v1beta"),
            );
            if dep.model.starts_with("models/") || dep.model.starts_with("tunedModels/") {
                Ok(format!("{base}/{}", dep.model))
            } else {
                Ok(format!("{base}/models/{}", dep.model))
            }
        }
        Api::Vertex => {
            let base = versioned_base(
                &dep.api_base.path,
                dep.api_version.as_deref().unwrap_or("v1"),
            );
            let param = |k: &str| {
                dep.params.get(k).ok_or_else(|| {
                    GatewayError::new(
                        500,
                        ErrorKind::Internal,
                        format!("deployment {} has no {k}", dep.id),
                    )
                })
            };
            Ok(format!(
                "{base}/projects/{}/locations/{}/publishers/{}/models/{}",
                param("vertex_project")?,
                param("vertex_location")?,
                vertex_publisher(&dep.model),
                dep.model
            ))
        }
    }
}

/// The publisher of a Vertex model: Anthropic's Claude, else Google.
fn vertex_publisher(model: &str) -> &'static str {
    if model.starts_with("claude") {
        "anthropic"
    } else {
        "google"
    }
}

/// The Vertex model path of a deployment (`.../publishers/<p>/models/<m>`),
/// for other translators on Vertex.
pub(crate) fn vertex_model_path(dep: &Deployment) -> Result<String, GatewayError> {
    model_path(Api::Vertex, dep)
}

/// Vertex's content type and bearer token headers, for other translators.
pub(crate) fn vertex_headers(dep: &Deployment) -> Vec<(String, String)> {
    headers(Api::Vertex, dep)
}

/// Content type and credential headers.
pub(super) fn headers(api: Api, dep: &Deployment) -> Vec<(String, String)> {
    let mut h = vec![("content-type".to_string(), "application/json".to_string())];
    match api {
        Api::Gemini => {
            if let Some(key) = &dep.api_key {
                h.push(("x-goog-api-key".to_string(), key.clone()));
            }
        }
        Api::Vertex => {
            let token = dep.api_key.clone().or_else(|| {
                dep.params
                    .get("vertex_credentials")
                    .filter(|c| credential_is_token(c))
                    .map(|c| c.trim().to_string())
            });
            if let Some(t) = token {
                h.push(("authorization".to_string(), format!("Bearer {t}")));
            }
        }
    }
    h
}

pub(super) fn to_body(v: &Value) -> Result<Vec<u8>, GatewayError> {
    serde_json::to_vec(v).map_err(|e| GatewayError::new(500, ErrorKind::Internal, e.to_string()))
}
