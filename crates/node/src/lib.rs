//! The TrustEdge node: the I/O around the pure ledger.
//!
//! - [`config`]: `config.toml` ([`NodeConfig`]) and key files ([`load_key`], [`save_key`]).
//! - [`api`]: the HTTP API (axum), documented with OpenAPI at `GET /openapi.json`, with
//!   Prometheus metrics at `GET /metrics` ([`metrics`]).
//! - [`sealer`]: block production for a chain with exactly one validator, through the same
//!   propose / certify / commit interface the BFT consensus engine drives.
//! - consensus: a validator of a multi-validator chain runs Malachite BFT consensus with the
//!   other validators ([`trustedge_consensus`], configured by the `[consensus]` table of
//!   [`NodeConfig`]); see [`node::choose_mode`].
//! - [`follower`]: edge and cloud nodes fetch finalised blocks from an upstream node and
//!   commit them after checking certificate and state root; transactions they receive are
//!   checked locally and forwarded.
//! - [`gossip`]: transactions admitted by one validator are pushed to the others.
//! - [`light`]: an edge node with `light = true`: a light client
//!   ([`trustedge_edge::light::LightClient`]) that follows its upstream's headers and checks
//!   state proofs against them, keeping headers only.
//! - [`mqtt`], [`ingest`], [`edge_store`], [`anchoring`]: an edge node with an `[mqtt]`
//!   table embeds an MQTT broker, takes signed device readings in (verified, device checked
//!   on the ledger, replay-checked), keeps them encrypted at rest indexed by pseudonymous
//!   keys, anchors batches of their digests and serves record proofs
//!   (`GET /v1/edge/records/{id}/proof`).
//! - [`aerosol_worker`]: aerosol alerts on an edge node with `[aerosol]`: air-quality
//!   readings scored per room, alerts published with `aerosol.publish_alerts`.
//! - [`tracing_worker`]: contact tracing on an edge node with `[tracing]`: relays confirmed
//!   devices' diagnosis keys to the ledger, matches released keys against the stored
//!   encounters, publishes exposure notices and pushes them to devices over MQTT; any node
//!   with `[tracing]` serves signed GAEN exports (`GET /v1/tracing/exports/{day}.zip`).
//! - [`contacts_service`]: a node with `[contacts]` (a cloud follower) links the ledger's
//!   diagnosis uploads and exposure notices into encounters between confirmed cases and
//!   serves k-hop contact chains (`GET /v1/contacts/chains`).
//! - [`origin_service`]: a node with `[origin]` (a cloud follower) builds the origin
//!   inference's inputs from the ledger alone (diagnosis uploads, notices between cases,
//!   case presences in alerted rooms), ranks outbreak-origin candidates and serves them
//!   (`GET /v1/origin`).
//! - [`devsim`]: simulated phones (GAEN broadcaster, sighting log, signing identity, MQTT
//!   client) driven by a caller's clock and seeded RNG, for `trustedge tracing simulate`
//!   and tests.
//! - [`client`]: a typed client of the API, for the CLI, followers and tests.
//! - [`node`]: [`run_node`] / [`start_node`] put it together.
//!
//! Architecture invariant: nothing here decides what is valid. Admission, execution, block
//! validity and finality are the ledger's ([`trustedge_chain::Ledger`]); this crate moves
//! bytes between the network, the disk and the ledger, and every ledger call runs on a
//! blocking thread. The clock is injected ([`clock::Clock`]).

pub mod aerosol_worker;
pub mod anchoring;
pub mod api;
pub mod client;
pub mod clock;
pub mod config;
pub mod contacts_service;
pub mod devsim;
pub mod edge_store;
mod error;
pub mod follower;
pub mod gossip;
pub mod ingest;
pub mod light;
pub mod metrics;
pub mod mqtt;
pub mod node;
pub mod origin_service;
pub mod ports;
pub mod sealer;
mod submit;
pub mod tracing_worker;

pub use api::types::Mode;
pub use client::{Client, ClientError};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{KeyFile, MempoolLimits, NodeConfig, Role, load_key, save_key};
pub use error::NodeError;
pub use node::{NodeOptions, RunningNode, load_genesis, run_node, start_node, start_with_config};
