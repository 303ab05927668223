//! LiteLLM's spend and team read endpoints, answered by the filter from
//! the spend ledger (`crate::spend::ledger`) and the budget records.

use crate::api::error::{ErrorKind, GatewayError};
use crate::config::Config;

/// The spend and team read endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendEndpoint {
    TeamInfo,
    Report,
    Logs,
}

/// Answer a spend endpoint for `caller` (`query`: after `?`): the master
/// key (or an open gateway) reads everything, a key only itself and its team.
pub fn spend_answer(
    which: SpendEndpoint,
    cfg: &Config,
    store: &dyn crate::store::SharedStore,
    caller: &crate::accounting::metering::CallerId,
    query: &str,
    now_ms: u64,
) -> Result<Vec<u8>, GatewayError> {
    use crate::spend::ledger;
    let key = caller.caller(cfg).key();
    let reader = key.map(|k| (k.alias.as_str(), k.team.as_deref()));
    match which {
        SpendEndpoint::Report => ledger::report(store, query, reader, now_ms),
        SpendEndpoint::Logs => ledger::logs(store, query, reader, now_ms),
        SpendEndpoint::TeamInfo => {
            let ring = cfg.keys.as_ref().ok_or_else(|| {
                GatewayError::new(404, ErrorKind::NotFound, "no teams are configured")
            })?;
            let id = ledger::param(query, "team_id")
                .or_else(|| key.and_then(|k| k.team.clone()))
                .ok_or_else(|| GatewayError::bad_param("team_id", "name a team: ?team_id=<id>"))?;
            if reader.is_some_and(|(_, team)| team != Some(id.as_str())) {
                return Err(ledger::forbidden("another team's info"));
            }
            let team = ring.team(&id).ok_or_else(|| {
                GatewayError::new(404, ErrorKind::NotFound, "no such team")
                    .with_code("team_not_found")
            })?;
            let info = crate::accounting::budget::team_info(store, team, now_ms);
            Ok(serde_json::json!({"team_id": id, "team_info": info})
                .to_string()
                .into_bytes())
        }
    }
}
