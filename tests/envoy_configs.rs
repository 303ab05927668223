#![allow(clippy::unwrap_used)]
//! The committed Envoy bootstraps in `envoy/` are exactly what
//! `llm-gateway render` makes of their `*-config.yaml` sources, so they can
//! never drift from the filter's config parser. (`make envoy-configs`
//! regenerates them; the end-to-end suite runs `envoy --mode validate` on them.)

use llm_gateway::render::{render, RenderOptions};
use serde_json::Value;

/// A bootstrap, as Envoy reads it.
fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

/// A LiteLLM config source, as `llm-gateway render` reads it.
fn source(path: &str) -> Value {
    llm_gateway::yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn committed_bootstraps_match_their_sources() {
    for name in ["demo", "providers"] {
        let source = source(&format!("envoy/{name}-config.yaml"));
        let rendered = render(&source, &RenderOptions::default()).unwrap();
        let committed = yaml(&format!("envoy/{name}.yaml"));
        assert_eq!(
            committed, rendered,
            "envoy/{name}.yaml is stale: run `make envoy-configs`"
        );
    }
}
