//! Model alias -> deployment.
//!
//! An alias may be served by several deployments; one is chosen at random in
//! proportion to its `weight` (LiteLLM's `simple-shuffle`). The random number
//! is an input, so the choice is deterministic in tests.

use crate::config::{Config, Deployment};
use crate::error::{ErrorKind, GatewayError};

/// The deployment that serves `alias` for random draw `rand`.
pub fn choose<'a>(cfg: &'a Config, alias: &str, rand: u64) -> Result<&'a Deployment, GatewayError> {
    let candidates = cfg.deployments_for(alias);
    if candidates.is_empty() {
        return Err(GatewayError::new(
            404,
            ErrorKind::NotFound,
            format!(
                "The model `{alias}` does not exist on this gateway. Available models: {}. \
                 GET /v1/models lists them.",
                cfg.aliases().join(", ")
            ),
        )
        .with_param("model")
        .with_code("model_not_found"));
    }
    Ok(weighted_pick(&candidates, rand))
}

/// Pick from non-empty `candidates` by weight.
fn weighted_pick<'a>(candidates: &[&'a Deployment], rand: u64) -> &'a Deployment {
    let total: u64 = candidates.iter().map(|d| u64::from(d.weight)).sum();
    let mut ticket = if total == 0 { 0 } else { rand % total };
    for d in candidates {
        let w = u64::from(d.weight);
        if ticket < w {
            return d;
        }
        ticket -= w;
    }
    candidates[candidates.len() - 1] // ok: unreachable for non-empty candidates (ticket < total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        crate::config::parse(
            br#"{"model_list":[
              {"model_name":"m","litellm_params":{"model":"openai/a","api_base":"http://h:1/v1","weight":3}},
              {"model_name":"m","litellm_params":{"model":"openai/b","api_base":"http://h:1/v1","weight":1}}],
              "gateway":{"clusters":{"openai":"c"}}}"#,
            &|_| None,
        )
        .unwrap()
    }

    #[test]
    fn weights_split_draws() {
        let c = cfg();
        let picks: Vec<&str> = (0..8)
            .map(|r| choose(&c, "m", r).unwrap().model.as_str())
            .collect();
        assert_eq!(picks, ["a", "a", "a", "b", "a", "a", "a", "b"]);
    }

    #[test]
    fn unknown_alias_is_404_naming_models() {
        let e = choose(&cfg(), "gpt-5", 0).unwrap_err();
        assert_eq!(e.status, 404);
        assert_eq!(e.code.as_deref(), Some("model_not_found"));
        assert!(e.message.contains("`m`") || e.message.contains(": m"));
    }
}
