//! The network of a city run, all in this process on loopback: `init` lays out 4 validators
//! (BFT consensus), 2 edges (MQTT + `[tracing]` + `[aerosol]`) and 1 cloud (`[contacts]`);
//! they are started with settings for an accelerated run, and the city's devices are
//! registered by the edge operator's admin.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use trustedge_contracts::DevicesCall;
use trustedge_execution::DeviceClass;
use trustedge_node::aerosol_worker::{AerosolConfig, AerosolRoom};
use trustedge_node::{Client, NodeConfig, NodeOptions, RunningNode, start_with_config};
use trustedge_types::{Address, Keypair, Payload, TxBody};

use super::play::DeviceKey;
use trustedge_node::config::Role as NodeRole;

use crate::init::{self, InitArgs};

/// Chain id of a city run.
pub const CHAIN_ID: &str = "trustedge-city";
/// Validators, edges, clouds.
pub const LAYOUT: (usize, usize, usize) = (4, 2, 1);

#[derive(Parser)]
struct InitCli {
    #[command(flatten)]
    args: InitArgs,
}

/// The running network.
pub struct Net {
    /// Validators, edges, clouds, in that order.
    pub validators: Vec<RunningNode>,
    /// Edge nodes.
    pub edges: Vec<RunningNode>,
    /// Cloud nodes.
    pub clouds: Vec<RunningNode>,
    /// The laboratory clinician's key (certifies confirmed cases' keys).
    pub lab: Keypair,
    /// The edge operator's admin (registers devices).
    pub edge_admin: Keypair,
    /// The `[tracing]` settings of the edges.
    pub tracing: trustedge_node::tracing_worker::TracingConfig,
}

/// One monitored room for an edge's `[aerosol]` table.
pub struct RoomSpec {
    /// Local label.
    pub name: String,
    /// Volume, m³.
    pub volume_m3: f64,
    /// Commissioned ACH.
    pub ach: f64,
    /// Venue secret.
    pub secret: [u8; 32],
    /// The room's sensor.
    pub device: Address,
    /// Which edge.
    pub edge: usize,
}

impl Net {
    /// Lays out the network in `home` and starts every node, with `rooms` monitored.
    pub async fn start(home: &Path, seed: u64, rooms: &[RoomSpec]) -> anyhow::Result<Net> {
        let (v, e, c) = LAYOUT;
        let total = (v + e + c + v + e) as u16;
        let base = trustedge_node::ports::free_consecutive(total, seed)?;
        let home_s = home.display().to_string();
        let argv = [
            "init".to_string(),
            "--validators".into(),
            v.to_string(),
            "--edges".into(),
            e.to_string(),
            "--clouds".into(),
            c.to_string(),
            "--home".into(),
            home_s,
            "--chain-id".into(),
            CHAIN_ID.into(),
            "--base-port".into(),
            base.to_string(),
            "--tracing-edges".into(),
            "--aerosol-edges".into(),
        ];
        let args = InitCli::try_parse_from(argv)
            .context("laying out the network")?
            .args;
        let net = init::create(&args)?;
        let lab = crate::keys::load(&home.join("keys").join(init::LAB_CLINICIAN_KEY_FILE))?;
        let edge_admin = net
            .admin(init::EDGE_OPERATOR_ORG)
            .context("no edge operator admin")?
            .clone();
        let mut validators = Vec::new();
        let mut edges = Vec::new();
        let mut clouds = Vec::new();
        let mut tracing = None;
        // Validators first (they must all be up to reach a quorum), then the others.
        for n in &net.nodes {
            let mut config = NodeConfig::load(&n.home)?;
            config.follow_interval_ms = 20;
            config.consensus.target_block_time_ms = 200;
            config.block_interval_ms = 50;
            config.empty_block_interval_ms = 1000;
            config.mempool.max_txs = config.mempool.max_txs.max(100_000);
            if let Some(m) = config.mqtt.as_mut() {
                m.anchor_interval_ms = 2000;
                // The city lies up to `days` in the past: keep its records.
                m.retention_days = m.retention_days.max(60);
            }
            if let Some(t) = config.tracing.as_mut() {
                t.poll_interval_ms = 20;
                tracing = Some(t.clone());
            }
            if n.role == NodeRole::Edge {
                let index = edges.len();
                let aerosol = config.aerosol.get_or_insert_with(AerosolConfig::default);
                aerosol.rooms = rooms
                    .iter()
                    .filter(|r| r.edge == index)
                    .map(|r| AerosolRoom {
                        name: r.name.clone(),
                        volume_m3: r.volume_m3,
                        nominal_ach: Some(r.ach),
                        venue_secret_hex: hex::encode(r.secret),
                        devices: vec![r.device],
                    })
                    .collect();
                aerosol.poll_interval_ms = 50;
                aerosol.close_interval_ms = 2000;
            }
            let node = start_with_config(&n.home, config, NodeOptions::default())
                .await
                .with_context(|| format!("cannot start {}", n.name))?;
            match n.role {
                NodeRole::Validator => validators.push(node),
                NodeRole::Edge => edges.push(node),
                NodeRole::Cloud => clouds.push(node),
            }
        }
        Ok(Net {
            validators,
            edges,
            clouds,
            lab,
            edge_admin,
            tracing: tracing.unwrap_or_default(),
        })
    }

    /// A client of the first validator.
    pub fn validator(&self) -> Client {
        Client::new(self.validators[0].url())
    }

    /// Registers `devices` (signed by the edge operator's admin) and waits until every
    /// node has the block that holds the last of them.
    pub async fn register(&self, devices: &[DeviceKey]) -> anyhow::Result<()> {
        let client = self.validator();
        let admin = &self.edge_admin;
        let mut nonce = client.last_nonce(&admin.public()).await.unwrap_or(0);
        let mut last = None;
        for chunk in devices.chunks(1000) {
            let txs: Vec<_> = chunk
                .iter()
                .map(|d| {
                    nonce += 1;
                    TxBody {
                        chain_id: CHAIN_ID.into(),
                        signer: admin.public(),
                        nonce,
                        expiry_height: 1_000_000,
                        payload: Payload::new(
                            "devices",
                            &DevicesCall::Register {
                                key: d.key.public(),
                                class: if d.sensor {
                                    DeviceClass::AirQualitySensor
                                } else {
                                    DeviceClass::Phone
                                },
                                model: d.model.clone(),
                                attributes: vec![],
                            },
                        ),
                    }
                    .sign(admin)
                })
                .collect();
            client.submit_batch(&txs).await?;
            last = txs.last().map(|t| t.hash());
            if let Some(h) = last {
                wait_committed(&client, &h).await?;
            }
        }
        if last.is_some() {
            let height = client.status().await?.height;
            for n in self.edges.iter().chain(&self.clouds) {
                let c = Client::new(n.url());
                let deadline = Instant::now() + Duration::from_secs(120);
                while c.status().await?.height < height {
                    if Instant::now() > deadline {
                        anyhow::bail!("{} did not catch up with the validators", n.url());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        Ok(())
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        for n in self
            .clouds
            .into_iter()
            .chain(self.edges)
            .chain(self.validators)
        {
            let _ = n.shutdown().await;
        }
    }
}

/// Waits until `hash` is committed (2 minutes at most).
pub async fn wait_committed(client: &Client, hash: &trustedge_types::Hash) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match client.tx_status(hash).await? {
            trustedge_chain::TxStatus::Committed(_) => return Ok(()),
            _ if Instant::now() > deadline => anyhow::bail!("transaction {hash} not committed"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
