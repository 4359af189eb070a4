//! Starting and stopping Malachite for a validator: settings in, a running engine and
//! application loop out.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use arc_malachitebft_app_channel::app::config::{
    self as mcfg, ConsensusConfig, DiscoveryConfig, GossipSubConfig, P2pConfig, PubSubProtocol,
    ValuePayload, ValueSyncConfig,
};
use arc_malachitebft_app_channel::app::net::Multiaddr;
use arc_malachitebft_app_channel::app::types::Keypair as NetworkKeypair;
use arc_malachitebft_app_channel::app::types::codec::Codec;
use arc_malachitebft_app_channel::app::types::core::LinearTimeouts;
use arc_malachitebft_app_channel::{
    ConsensusContext, EngineBuilder, EngineHandle, NetworkContext, NetworkIdentity, RequestContext,
    Signer, SyncContext, WalContext,
};
use bytesize::ByteSize;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use trustedge_chain::Ledger;
use trustedge_types::{Address, Hash, Keypair};

use crate::app::{AppParts, CommitHook, ConsensusApp, ConsensusStats, Faults, NowMs, system_now};
use crate::codec::{LedgerCodec, MAX_SYNC_RESPONSE_BYTES};
use crate::context::{LedgerContext, ValidatorAddress};
use crate::error::ConsensusError;
use crate::signing::{LedgerSigner, LedgerVerifier};
use crate::store::ProposalStore;

/// Most persistent peers a validator may name.
pub const MAX_PERSISTENT_PEERS: usize = 127;
/// Bounds of every `*_ms` consensus setting.
pub const TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 1..=600_000;
/// How long a stopping engine may take to stop its actors.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Capacity of the application's request channels to the engine.
const REQUEST_CHANNEL_CAPACITY: usize = 32;

/// A validator's consensus settings (the `[consensus]` table of a node's `config.toml`).
///
/// The defaults suit a local test network: short timeouts and a loopback address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusSettings {
    /// libp2p address to listen on, e.g. `/ip4/127.0.0.1/tcp/26656`.
    #[serde(default = "defaults::p2p_listen")]
    pub p2p_listen: String,
    /// libp2p addresses of the other validators, kept connected (redialled when lost).
    #[serde(default)]
    pub persistent_peers: Vec<String>,
    /// How long to wait for a proposal before prevoting nil (round 0).
    #[serde(default = "defaults::timeout_propose_ms")]
    pub timeout_propose_ms: u64,
    /// How long to wait for more prevotes after a quorum of mixed ones (round 0).
    #[serde(default = "defaults::timeout_vote_ms")]
    pub timeout_prevote_ms: u64,
    /// How long to wait for more precommits after a quorum of mixed ones (round 0).
    #[serde(default = "defaults::timeout_vote_ms")]
    pub timeout_precommit_ms: u64,
    /// How much each of the three timeouts grows per round.
    #[serde(default = "defaults::timeout_delta_ms")]
    pub timeout_delta_ms: u64,
    /// Longest any round timeout gets.
    #[serde(default = "defaults::timeout_max_ms")]
    pub timeout_max_ms: u64,
    /// Shortest time a height takes: after a decision, consensus waits this long from the
    /// height's start (collecting late precommits) before the next height. Paces block
    /// production; `0` commits back to back.
    #[serde(default = "defaults::target_block_time_ms")]
    pub target_block_time_ms: u64,
    /// How often a validator tells its peers its height (value sync).
    #[serde(default = "defaults::sync_status_interval_ms")]
    pub sync_status_interval_ms: u64,
    /// Timeout of a value-sync request.
    #[serde(default = "defaults::sync_request_timeout_ms")]
    pub sync_request_timeout_ms: u64,
    /// How far ahead of this node's clock a proposed block's time may be.
    #[serde(default = "defaults::max_block_time_ahead_ms")]
    pub max_block_time_ahead_ms: u64,
    /// Malachite's write-ahead log (a file), relative to the home directory unless absolute.
    #[serde(default = "defaults::wal_path")]
    pub wal_path: PathBuf,
    /// The store of undecided proposals, relative to the home directory unless absolute.
    #[serde(default = "defaults::proposals_path")]
    pub proposals_path: PathBuf,
}

mod defaults {
    use std::path::PathBuf;

    pub fn p2p_listen() -> String {
        "/ip4/127.0.0.1/tcp/26656".into()
    }
    pub fn timeout_propose_ms() -> u64 {
        1000
    }
    pub fn timeout_vote_ms() -> u64 {
        500
    }
    pub fn timeout_delta_ms() -> u64 {
        250
    }
    pub fn timeout_max_ms() -> u64 {
        10_000
    }
    pub fn target_block_time_ms() -> u64 {
        200
    }
    pub fn sync_status_interval_ms() -> u64 {
        1000
    }
    pub fn sync_request_timeout_ms() -> u64 {
        5000
    }
    pub fn max_block_time_ahead_ms() -> u64 {
        30_000
    }
    pub fn wal_path() -> PathBuf {
        PathBuf::from("data/consensus/consensus.wal")
    }
    pub fn proposals_path() -> PathBuf {
        PathBuf::from("data/consensus/proposals.redb")
    }
}

impl Default for ConsensusSettings {
    fn default() -> Self {
        ConsensusSettings {
            p2p_listen: defaults::p2p_listen(),
            persistent_peers: Vec::new(),
            timeout_propose_ms: defaults::timeout_propose_ms(),
            timeout_prevote_ms: defaults::timeout_vote_ms(),
            timeout_precommit_ms: defaults::timeout_vote_ms(),
            timeout_delta_ms: defaults::timeout_delta_ms(),
            timeout_max_ms: defaults::timeout_max_ms(),
            target_block_time_ms: defaults::target_block_time_ms(),
            sync_status_interval_ms: defaults::sync_status_interval_ms(),
            sync_request_timeout_ms: defaults::sync_request_timeout_ms(),
            max_block_time_ahead_ms: defaults::max_block_time_ahead_ms(),
            wal_path: defaults::wal_path(),
            proposals_path: defaults::proposals_path(),
        }
    }
}

fn parse_addr(field: &str, s: &str) -> Result<Multiaddr, String> {
    Multiaddr::from_str(s).map_err(|e| format!("{field} {s:?} is not a multiaddr: {e}"))
}

fn resolve(home: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        home.join(p)
    }
}

impl ConsensusSettings {
    /// Whether every field has its default value (a node's `config.toml` then omits the
    /// table).
    pub fn is_default(&self) -> bool {
        *self == ConsensusSettings::default()
    }

    /// Checks every field; the message names the field and the rule.
    pub fn validate(&self) -> Result<(), String> {
        parse_addr("consensus.p2p_listen", &self.p2p_listen)?;
        if self.persistent_peers.len() > MAX_PERSISTENT_PEERS {
            return Err(format!(
                "consensus.persistent_peers lists {}; at most {MAX_PERSISTENT_PEERS}",
                self.persistent_peers.len()
            ));
        }
        for p in &self.persistent_peers {
            parse_addr("consensus.persistent_peers", p)?;
        }
        for (field, v) in [
            ("timeout_propose_ms", self.timeout_propose_ms),
            ("timeout_prevote_ms", self.timeout_prevote_ms),
            ("timeout_precommit_ms", self.timeout_precommit_ms),
            ("timeout_max_ms", self.timeout_max_ms),
            ("sync_status_interval_ms", self.sync_status_interval_ms),
            ("sync_request_timeout_ms", self.sync_request_timeout_ms),
            ("max_block_time_ahead_ms", self.max_block_time_ahead_ms),
        ] {
            if !TIMEOUT_MS_RANGE.contains(&v) {
                return Err(format!(
                    "consensus.{field} is {v}; it must be in {}..={}",
                    TIMEOUT_MS_RANGE.start(),
                    TIMEOUT_MS_RANGE.end()
                ));
            }
        }
        for (field, v) in [
            ("timeout_delta_ms", self.timeout_delta_ms),
            ("target_block_time_ms", self.target_block_time_ms),
        ] {
            if v > *TIMEOUT_MS_RANGE.end() {
                return Err(format!(
                    "consensus.{field} is {v}; at most {}",
                    TIMEOUT_MS_RANGE.end()
                ));
            }
        }
        for (field, p) in [
            ("wal_path", &self.wal_path),
            ("proposals_path", &self.proposals_path),
        ] {
            if p.as_os_str().is_empty() {
                return Err(format!("consensus.{field} is empty"));
            }
        }
        Ok(())
    }

    /// The target duration of a height, if any.
    pub fn target_block_time(&self) -> Option<Duration> {
        (self.target_block_time_ms > 0).then(|| Duration::from_millis(self.target_block_time_ms))
    }

    /// The round timeouts these settings give.
    pub fn timeouts(&self) -> LinearTimeouts {
        let ms = Duration::from_millis;
        let (propose, prevote, precommit) = (
            ms(self.timeout_propose_ms),
            ms(self.timeout_prevote_ms),
            ms(self.timeout_precommit_ms),
        );
        LinearTimeouts {
            propose,
            propose_delta: ms(self.timeout_delta_ms),
            prevote,
            prevote_delta: ms(self.timeout_delta_ms),
            precommit,
            precommit_delta: ms(self.timeout_delta_ms),
            // Start re-broadcasting our votes once a round took as long as all its steps.
            rebroadcast: propose + prevote + precommit,
            max_timeout: ms(self.timeout_max_ms),
        }
    }
}

/// Malachite's view of the node configuration.
#[derive(Clone, Debug)]
struct EngineConfig {
    moniker: String,
    consensus: ConsensusConfig,
    value_sync: ValueSyncConfig,
}

impl mcfg::NodeConfig for EngineConfig {
    fn moniker(&self) -> &str {
        &self.moniker
    }

    fn consensus(&self) -> &ConsensusConfig {
        &self.consensus
    }

    fn consensus_mut(&mut self) -> &mut ConsensusConfig {
        &mut self.consensus
    }

    fn value_sync(&self) -> &ValueSyncConfig {
        &self.value_sync
    }

    fn value_sync_mut(&mut self) -> &mut ValueSyncConfig {
        &mut self.value_sync
    }
}

fn engine_config(moniker: &str, s: &ConsensusSettings) -> Result<EngineConfig, ConsensusError> {
    let listen_addr = parse_addr("p2p_listen", &s.p2p_listen).map_err(ConsensusError::Config)?;
    let persistent_peers = s
        .persistent_peers
        .iter()
        .map(|p| parse_addr("persistent_peers", p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ConsensusError::Config)?;
    let discovery = DiscoveryConfig {
        // Validators are named in the configuration; no discovery of strangers.
        enabled: false,
        // All validators of a local network share one IP: allow one connection each way
        // per peer, with room for reconnections.
        max_connections_per_ip: 2 * persistent_peers.len() + 4,
        ..DiscoveryConfig::default()
    };
    let p2p = P2pConfig {
        listen_addr,
        persistent_peers,
        discovery,
        // Explicit peering: every message goes to every configured validator, whatever the
        // gossip mesh looks like (a validator network is small and fully connected).
        protocol: PubSubProtocol::GossipSub(GossipSubConfig::new(6, 12, 4, 2, false, true, true)),
        rpc_max_size: ByteSize::b((MAX_SYNC_RESPONSE_BYTES + 1024 * 1024) as u64),
        ..P2pConfig::default()
    };
    let consensus = ConsensusConfig {
        enabled: true,
        p2p,
        value_payload: ValuePayload::ProposalAndParts,
        ..ConsensusConfig::default()
    };
    let value_sync = ValueSyncConfig {
        enabled: true,
        status_update_interval: Duration::from_millis(s.sync_status_interval_ms),
        request_timeout: Duration::from_millis(s.sync_request_timeout_ms),
        max_response_size: ByteSize::b(MAX_SYNC_RESPONSE_BYTES as u64),
        ..ValueSyncConfig::default()
    };
    Ok(EngineConfig {
        moniker: moniker.to_string(),
        consensus,
        value_sync,
    })
}

/// The libp2p key of a validator: derived from its consensus key under its own domain tag,
/// so the peer id is stable across restarts while the consensus key never signs for libp2p.
fn network_keypair(key: &Keypair) -> Result<NetworkKeypair, ConsensusError> {
    let secret = hex::decode(key.secret_hex())
        .map_err(|e| ConsensusError::Engine(format!("validator key: {e}")))?;
    let seed = Hash::tagged(b"trustedge/p2p-key/v1", &[&secret]);
    NetworkKeypair::ed25519_from_bytes(seed.0)
        .map_err(|e| ConsensusError::Engine(format!("network key: {e}")))
}

/// Refuses a TCP listen address that is taken. Malachite only logs a failed listen and runs
/// on, unreachable; a validator should rather not start. (The port is free again when this
/// returns; the window until the engine binds it is a few milliseconds.)
fn check_listen_addr(addr: &Multiaddr) -> Result<(), ConsensusError> {
    // The text form is `/ip4/<a>/tcp/<port>/…` (or ip6); only TCP listeners are checked.
    let text = addr.to_string();
    let parts: Vec<&str> = text.split('/').collect();
    let mut ip = None;
    let mut port = None;
    for w in parts.windows(2) {
        match w {
            ["ip4" | "ip6", a] => ip = a.parse::<std::net::IpAddr>().ok(),
            ["tcp", p] => port = p.parse::<u16>().ok(),
            _ => {}
        }
    }
    if let (Some(ip), Some(port)) = (ip, port)
        && port != 0
    {
        std::net::TcpListener::bind((ip, port)).map_err(|e| {
            ConsensusError::Config(format!("cannot listen on p2p address {addr}: {e}"))
        })?;
    }
    Ok(())
}

/// Byzantine behaviour for the consensus tests (feature `byzantine`).
#[cfg(feature = "byzantine")]
pub mod byzantine {
    pub use arc_malachitebft_engine_byzantine::{ByzantineConfig, Trigger};
}

/// What the caller injects.
#[derive(Clone)]
pub struct EngineOptions {
    /// The clock block times come from.
    pub now_ms: NowMs,
    /// Called after every block committed here.
    pub on_commit: Option<CommitHook>,
    /// Application-level misbehaviour (tests only).
    pub faults: Faults,
    /// Network-level misbehaviour through Malachite's Byzantine proxy (tests only).
    #[cfg(feature = "byzantine")]
    pub byzantine: Option<byzantine::ByzantineConfig>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            now_ms: system_now(),
            on_commit: None,
            faults: Faults::default(),
            #[cfg(feature = "byzantine")]
            byzantine: None,
        }
    }
}

/// A running consensus engine with its application loop.
pub struct ConsensusHandle {
    engine: EngineHandle,
    stats: Arc<ConsensusStats>,
    app: JoinHandle<Result<(), ConsensusError>>,
    stop: watch::Sender<bool>,
}

impl ConsensusHandle {
    /// What the application has seen so far.
    pub fn stats(&self) -> &Arc<ConsensusStats> {
        &self.stats
    }

    /// Whether the application loop has ended (the engine failed or was stopped).
    pub fn is_finished(&self) -> bool {
        self.app.is_finished()
    }

    /// Stops the engine's actors (network, consensus, WAL, sync) gracefully, then the
    /// application loop, and waits for both. The WAL and the proposal store stay on disk
    /// for the next start.
    pub async fn shutdown(self) -> Result<(), ConsensusError> {
        let node = self.engine.actor;
        // Children first and gracefully: the network actor closes its listener and
        // connections in its post-stop, so the port is free for a restart.
        node.get_cell()
            .stop_children_and_wait(Some("shutdown".into()), Some(STOP_TIMEOUT))
            .await;
        // An error here means the supervisor had stopped already (it stops itself when a
        // child fails); either way it is gone.
        let _ = node
            .stop_and_wait(Some("shutdown".into()), Some(STOP_TIMEOUT))
            .await;
        // The application answered consensus until here; now it may stop.
        let _ = self.stop.send(true);
        let app = self.app.await.map_err(|e| ConsensusError::Task {
            task: "consensus application",
            message: e.to_string(),
        })?;
        if !self.engine.handle.is_finished() {
            self.engine.handle.abort();
        }
        match app {
            Ok(()) | Err(ConsensusError::ChannelClosed) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Starts consensus for the validator `key` on `ledger`. Paths in `settings` are relative
/// to `home` unless absolute.
pub async fn start(
    ledger: Arc<Ledger>,
    key: Keypair,
    moniker: &str,
    home: &Path,
    settings: &ConsensusSettings,
    options: EngineOptions,
) -> Result<ConsensusHandle, ConsensusError> {
    settings.validate().map_err(ConsensusError::Config)?;
    let chain_id = ledger.chain_id().to_string();
    let ctx = LedgerContext::new(&chain_id);
    let address = ValidatorAddress(Address::of_member(&key.public()));
    let config = engine_config(moniker, settings)?;
    check_listen_addr(&config.consensus.p2p.listen_addr)?;

    let wal_path = resolve(home, &settings.wal_path);
    let proposals_path = resolve(home, &settings.proposals_path);
    for p in [&wal_path, &proposals_path] {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                ConsensusError::Config(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
    }
    let store = {
        let path = proposals_path.clone();
        tokio::task::spawn_blocking(move || ProposalStore::open(&path))
            .await
            .map_err(|e| ConsensusError::Task {
                task: "open proposal store",
                message: e.to_string(),
            })??
    };

    let net_key = network_keypair(&key)?;
    let signer = LedgerSigner::new(key.clone(), &chain_id);
    let peer_id = net_key.public().to_peer_id().to_bytes();
    let proof = signer
        .sign_validator_proof(key.public().0.to_vec(), peer_id)
        .await
        .map_err(|e| ConsensusError::Engine(format!("validator proof: {e}")))?;
    let proof_bytes = Codec::encode(&LedgerCodec, &proof)?;
    let identity = NetworkIdentity::new_validator(
        moniker.to_string(),
        net_key,
        address.to_string(),
        proof_bytes,
    );

    let builder =
        EngineBuilder::new(ctx, config).with_default_wal(WalContext::new(wal_path, LedgerCodec));
    let consensus_ctx = ConsensusContext::new_validator(
        address,
        Box::new(LedgerVerifier::new(&chain_id)),
        Box::new(signer.clone()),
    );

    #[cfg(feature = "byzantine")]
    let built = if let Some(byz) = options.byzantine.clone() {
        use arc_malachitebft_app_channel::ByzantineContext;
        tracing::warn!(?byz, "BYZANTINE: starting with Byzantine behaviour");
        builder
            .with_byzantine_network(ByzantineContext {
                identity,
                codec: LedgerCodec,
                config: byz,
                signer: Box::new(signer),
                address,
                conflicting_value_fn: Some(Box::new(|v: &crate::context::BlockHash| {
                    let mut h = v.0;
                    h.0[31] ^= 1;
                    crate::context::BlockHash(h)
                })),
                conflicting_vote_value_fn: Some(Box::new(
                    |v: Option<&crate::context::BlockHash>| {
                        let mut h = v.map(|b| b.0).unwrap_or(Hash([0x5A; 32]));
                        h.0[31] ^= 1;
                        crate::context::BlockHash(h)
                    },
                )),
            })
            .await
            .map_err(|e| ConsensusError::Engine(e.to_string()))?
            .with_default_sync(SyncContext::new(LedgerCodec))
            .with_default_consensus(consensus_ctx)
            .with_default_request(RequestContext::new(REQUEST_CHANNEL_CAPACITY))
            .build()
            .await
    } else {
        builder
            .with_default_network(NetworkContext::new(identity, LedgerCodec))
            .with_default_sync(SyncContext::new(LedgerCodec))
            .with_default_consensus(consensus_ctx)
            .with_default_request(RequestContext::new(REQUEST_CHANNEL_CAPACITY))
            .build()
            .await
    };
    #[cfg(not(feature = "byzantine"))]
    let built = builder
        .with_default_network(NetworkContext::new(identity, LedgerCodec))
        .with_default_sync(SyncContext::new(LedgerCodec))
        .with_default_consensus(consensus_ctx)
        .with_default_request(RequestContext::new(REQUEST_CHANNEL_CAPACITY))
        .build()
        .await;
    let (channels, engine) = built.map_err(|e| ConsensusError::Engine(e.to_string()))?;

    let stats = Arc::new(ConsensusStats::default());
    let app = ConsensusApp::new(AppParts {
        ledger,
        key,
        store: Arc::new(store),
        timeouts: settings.timeouts(),
        target_block_time: settings.target_block_time(),
        now_ms: options.now_ms,
        max_block_time_ahead_ms: settings.max_block_time_ahead_ms,
        faults: options.faults,
        stats: stats.clone(),
        on_commit: options.on_commit,
    });
    let (stop, stop_rx) = watch::channel(false);
    let span = tracing::info_span!("consensus", node = %moniker);
    let app = tokio::spawn(tracing::Instrument::instrument(
        async move {
            let r = app.run(channels, stop_rx).await;
            if let Err(e) = &r
                && !matches!(e, ConsensusError::ChannelClosed)
            {
                tracing::error!(error = %e, "the consensus application stopped");
            }
            r
        },
        span,
    ));
    tracing::info!(node = %moniker, p2p = %settings.p2p_listen, validator = %address, "consensus started");
    Ok(ConsensusHandle {
        engine,
        stats,
        app,
        stop,
    })
}
