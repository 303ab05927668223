//! Governance of spend: budgets and rpm/tpm/parallel limits in Envoy shared
//! data ([`budget`]), fleet-wide leases from Redis ([`fleet`]), what a
//! request costs and how it is charged ([`metering`]), and usage events
//! batched per worker for the counter service ([`usage_batch`]).
//!
//! Keys, teams and prices are configuration (`crate::config::keys`,
//! `crate::config::pricing`); this is what is done with them per request.

pub mod budget;
pub mod fleet;
pub mod metering;
pub mod scope;
pub mod usage_batch;
