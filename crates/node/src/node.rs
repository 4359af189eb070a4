//! Starting and stopping a node: configuration, genesis and key in; ledger, API and sealer
//! or follower out.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use trustedge_chain::Ledger;
use trustedge_consensus::{ConsensusHandle, EngineOptions};
use trustedge_contracts::genesis::Genesis;
use trustedge_types::{Address, Keypair, ValidatorSet};

use crate::NodeError;
use crate::anchoring::Anchorer;
use crate::api::types::Mode;
use crate::api::{self, ApiContext};
use crate::clock::{Clock, SystemClock};
use crate::config::{NodeConfig, Role, load_key, read_small};
use crate::edge_store::{EdgeStore, load_or_create_data_key};
use crate::follower::{Follower, Forwarder};
use crate::gossip::Gossip;
use crate::ingest::{Ingest, ReadingIndexer, TimeOnlyIndexer};
use crate::metrics::Metrics;
use crate::mqtt::{Broker, MqttConfig};
use crate::sealer::{SealRefusal, Sealer, check_can_seal};

/// What the caller injects into a node.
#[derive(Clone)]
pub struct NodeOptions {
    /// The clock block times (and an edge's record times) come from.
    pub clock: Arc<dyn Clock>,
    /// How an edge node with `[mqtt]` indexes the readings it stores (a solution's
    /// decoder of its payloads); by default, by time only.
    pub indexer: Arc<dyn ReadingIndexer>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            clock: Arc::new(SystemClock),
            indexer: Arc::new(TimeOnlyIndexer),
        }
    }
}

/// The MQTT ingest, store and anchoring of an edge node.
struct EdgeParts {
    broker: Broker,
    store: Arc<EdgeStore>,
    tasks: Vec<JoinHandle<()>>,
}

/// Reads and validates a genesis file.
pub fn load_genesis(path: &Path) -> Result<Genesis, NodeError> {
    let err = |message: String| NodeError::Genesis {
        path: path.to_path_buf(),
        message,
    };
    let text = read_small(path).map_err(err)?;
    Genesis::from_json(text.as_bytes()).map_err(|e| err(e.to_string()))
}

/// How a node with this configuration, validator set and key makes progress.
///
/// A validator seals if the set is exactly its key, and runs BFT consensus with the others
/// if its key is one of several in the set (its `upstream` is then ignored). A validator
/// whose key is not in the set follows its upstream if it has one, and refuses to start if
/// not; edge and cloud nodes always follow.
///
/// The mode is chosen at start from the validator set of the next height; a node whose set
/// changes between one and several validators by governance is restarted to switch.
pub fn choose_mode(
    config: &NodeConfig,
    validators: &ValidatorSet,
    key: Option<&Keypair>,
) -> Result<Mode, NodeError> {
    if config.role != Role::Validator {
        return if config.upstream.is_empty() {
            Err(NodeError::Role(format!(
                "an {} node follows an upstream; configure `upstream`",
                config.role
            )))
        } else {
            Ok(Mode::Follower)
        };
    }
    let Some(key) = key else {
        return Err(NodeError::Role(
            "a validator needs its key (key_path)".into(),
        ));
    };
    match check_can_seal(validators, key) {
        Ok(()) => {
            if !config.upstream.is_empty() {
                tracing::warn!("this node seals the chain; its `upstream` setting is ignored");
            }
            Ok(Mode::Sealer)
        }
        Err(SealRefusal::MultiValidator(_))
            if validators.get(&Address::of_member(&key.public())).is_some() =>
        {
            if !config.upstream.is_empty() {
                tracing::info!(
                    "this validator takes part in consensus; `upstream` is followed only by a \
                     key outside the validator set"
                );
            }
            Ok(Mode::Consensus)
        }
        Err(SealRefusal::MultiValidator(n)) if config.upstream.is_empty() => {
            Err(NodeError::Role(format!(
                "this key is not one of the {n} validators, and with no `upstream` there is \
                 nothing to follow"
            )))
        }
        Err(refusal) if config.upstream.is_empty() => Err(NodeError::Role(format!(
            "cannot seal: {refusal}; and with no `upstream` there is nothing to follow"
        ))),
        Err(refusal) => {
            tracing::warn!(%refusal, "not sealing; following upstream instead");
            Ok(Mode::Follower)
        }
    }
}

/// A node running in this process.
pub struct RunningNode {
    addr: SocketAddr,
    ledger: Arc<Ledger>,
    mode: Mode,
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    server: JoinHandle<Result<(), NodeError>>,
    worker: JoinHandle<()>,
    gossip: Option<JoinHandle<()>>,
    edge: Option<EdgeParts>,
    contacts: Option<JoinHandle<()>>,
    origin: Option<JoinHandle<()>>,
}

impl RunningNode {
    /// Where the edge's MQTT broker listens (nodes with `[mqtt]`).
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.edge.as_ref().map(|e| e.broker.local_addr())
    }

    /// The edge store (nodes with `[mqtt]`).
    pub fn edge_store(&self) -> Option<&Arc<EdgeStore>> {
        self.edge.as_ref().map(|e| &e.store)
    }

    /// The address the API listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// How the node makes progress.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stops the sealer or follower and the API (finishing requests in flight), and waits
    /// for both. The ledger is closed once the last reference to it is dropped.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        // Receivers may be gone if a task already ended; there is nothing to tell then.
        let _ = self.stop.send(true);
        let worker = self.worker.await;
        if let Some(g) = self.gossip {
            // Gossip senders only stop; a failed one has nothing left to report.
            let _ = g.await;
        }
        if let Some(edge) = self.edge {
            stop_edge(edge).await;
        }
        if let Some(c) = self.contacts {
            // The contact index only stops; a failed one has nothing left to report.
            let _ = c.await;
        }
        if let Some(o) = self.origin {
            // The origin worker only stops, too.
            let _ = o.await;
        }
        let server = self.server.await;
        worker.map_err(|e| NodeError::Task {
            task: "sealer/follower",
            message: e.to_string(),
        })?;
        server.map_err(|e| NodeError::Task {
            task: "api",
            message: e.to_string(),
        })?
    }
}

/// Starts the node whose home directory is `home` (see [`NodeConfig::load`]).
pub async fn start_node(home: &Path, options: NodeOptions) -> Result<RunningNode, NodeError> {
    let config = NodeConfig::load(home)?;
    start_with_config(home, config, options).await
}

/// Starts a node from an already loaded configuration; paths in it are relative to `home`.
pub async fn start_with_config(
    home: &Path,
    config: NodeConfig,
    options: NodeOptions,
) -> Result<RunningNode, NodeError> {
    config.validate().map_err(|message| NodeError::Config {
        path: home.join(crate::config::CONFIG_FILE),
        message,
    })?;
    if config.light {
        return Err(NodeError::Role(
            "a light edge node keeps no ledger; start it with light::start_light_node".into(),
        ));
    }
    let genesis = load_genesis(&NodeConfig::resolve(home, &config.genesis_path))?;
    let key = config
        .key_path
        .as_ref()
        .map(|p| load_key(&NodeConfig::resolve(home, p)))
        .transpose()?;
    let db_path = NodeConfig::resolve(home, &config.db_path);
    if let Some(dir) = db_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| NodeError::Config {
            path: db_path.clone(),
            message: format!("cannot create the database directory: {e}"),
        })?;
    }
    let ledger_config = config.ledger_config();
    let ledger =
        tokio::task::spawn_blocking(move || Ledger::open(&db_path, genesis, ledger_config))
            .await
            .map_err(|e| NodeError::Task {
                task: "open ledger",
                message: e.to_string(),
            })??;
    let ledger = Arc::new(ledger);
    let validators = ledger.validator_set()?;
    let mode = choose_mode(&config, &validators, key.as_ref())?;

    let metrics = Arc::new(Metrics::new());
    metrics
        .height
        .set(i64::try_from(ledger.height()?).unwrap_or(i64::MAX));

    let addr = config.listen_addr().map_err(|message| NodeError::Config {
        path: home.join(crate::config::CONFIG_FILE),
        message,
    })?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| NodeError::Bind {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
    let local_addr = listener.local_addr().map_err(|e| NodeError::Bind {
        addr: addr.to_string(),
        message: e.to_string(),
    })?;

    let edge_key = key.clone();
    let (stop, stop_rx) = watch::channel(false);
    let timeout = Duration::from_millis(config.upstream_timeout_ms);
    let gossip = (!config.gossip_peers.is_empty()).then(|| {
        Gossip::new(
            &config.gossip_peers,
            config.gossip,
            timeout,
            metrics.clone(),
        )
    });
    let (forward, sync, worker) = match (mode, key) {
        (Mode::Sealer, Some(key)) => {
            let sealer = Sealer::new(
                ledger.clone(),
                key,
                options.clock.clone(),
                metrics.clone(),
                config.block_interval_ms,
                config.empty_block_interval_ms,
            )?;
            (None, None, tokio::spawn(sealer.run(stop_rx.clone())))
        }
        (Mode::Consensus, Some(key)) => {
            let clock = options.clock.clone();
            let m = metrics.clone();
            let consensus = trustedge_consensus::start(
                ledger.clone(),
                key,
                &config.name,
                home,
                &config.consensus,
                EngineOptions {
                    now_ms: Arc::new(move || clock.now_ms()),
                    on_commit: Some(Arc::new(move |info, took| m.committed(info, took))),
                    ..EngineOptions::default()
                },
            )
            .await?;
            let worker = run_consensus(consensus, ledger.clone(), metrics.clone(), stop_rx.clone());
            (None, None, tokio::spawn(worker))
        }
        _ => {
            let follower = Follower::new(
                ledger.clone(),
                &config.upstream,
                timeout,
                Duration::from_millis(config.follow_interval_ms),
                metrics.clone(),
            );
            let sync = follower.sync_handle();
            // Gossip reaches every validator, the upstream included: no forwarding then.
            let forward = gossip
                .is_none()
                .then(|| Forwarder::new(&config.upstream, timeout));
            (
                forward,
                Some(sync),
                tokio::spawn(follower.run(stop_rx.clone())),
            )
        }
    };

    let tracing = config.tracing.clone().filter(|t| t.enabled);
    let tracing_export = match &tracing {
        Some(t) => Some(Arc::new(
            crate::tracing_worker::start_export_signer(home, t).await?,
        )),
        None => None,
    };
    let mut options = options;
    if tracing.is_some() && config.mqtt.is_some() {
        // The edge stores encounter uploads indexed by RPI and checks diagnosis uploads.
        options.indexer = Arc::new(crate::tracing_worker::TracingIndexer);
    }
    let edge = match &config.mqtt {
        Some(m) => Some(
            start_edge(
                home,
                m,
                ledger.clone(),
                edge_key,
                local_addr,
                &metrics,
                &options,
                stop_rx.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let mut edge = edge;
    if let (Some(t), Some(e)) = (&tracing, edge.as_mut()) {
        let task = crate::tracing_worker::start_worker(
            home,
            &config,
            t,
            e.store.clone(),
            ledger.clone(),
            e.broker.local_addr(),
            local_addr,
            metrics.clone(),
            stop_rx.clone(),
        )
        .await?;
        e.tasks.push(task);
    }
    let mut aerosol_rooms = None;
    if let (Some(a), Some(e)) = (config.aerosol.as_ref().filter(|a| a.enabled), edge.as_mut()) {
        let rooms = crate::aerosol_worker::AerosolRooms::new(a);
        aerosol_rooms = Some(rooms.clone());
        let task = crate::aerosol_worker::start_worker(
            home,
            &config,
            a,
            e.store.clone(),
            ledger.clone(),
            e.broker.local_addr(),
            local_addr,
            metrics.clone(),
            rooms,
            stop_rx.clone(),
        )
        .await?;
        e.tasks.push(task);
    }
    let (contacts, contacts_task) = match config.contacts.as_ref().filter(|c| c.enabled) {
        Some(c) => {
            let (handle, task) =
                crate::contacts_service::start(c, ledger.clone(), metrics.clone(), stop_rx.clone());
            (Some(handle), Some(task))
        }
        None => (None, None),
    };
    let (origin, origin_task) = match config.origin.as_ref().filter(|c| c.enabled) {
        Some(c) => {
            let (handle, task) =
                crate::origin_service::start(c, ledger.clone(), metrics.clone(), stop_rx.clone());
            (Some(handle), Some(task))
        }
        None => (None, None),
    };
    let app = api::router(ApiContext {
        ledger: ledger.clone(),
        metrics: metrics.clone(),
        name: config.name.clone(),
        role: config.role,
        mode,
        forward,
        sync,
        gossip: gossip.clone(),
        max_request_bytes: config.max_request_bytes,
        edge_store: edge.as_ref().map(|e| e.store.clone()),
        tracing_export,
        contacts,
        origin,
        aerosol: aerosol_rooms,
    });
    let gossip_task = gossip.as_ref().map(|g| g.start(stop_rx.clone()));
    let mut server_stop = stop_rx;
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                // Stop when told to, or when the sender is dropped.
                let _ = server_stop.wait_for(|stop| *stop).await;
            })
            .await
            .map_err(|e| NodeError::Serve(e.to_string()))
    });
    tracing::info!(
        name = %config.name,
        role = %config.role,
        mode = ?mode,
        api = %local_addr,
        gossip_peers = config.gossip_peers.len(),
        chain = %ledger.chain_id(),
        "node started"
    );
    Ok(RunningNode {
        addr: local_addr,
        ledger,
        mode,
        metrics,
        stop,
        server,
        worker,
        gossip: gossip_task,
        edge,
        contacts: contacts_task,
        origin: origin_task,
    })
}

/// Opens the edge store (creating its data key at first start), starts the broker, the
/// ingest subscriber and the anchoring loop.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site, all parts of the node"
)]
async fn start_edge(
    home: &Path,
    config: &MqttConfig,
    ledger: Arc<Ledger>,
    key: Option<Keypair>,
    api_addr: SocketAddr,
    metrics: &Arc<Metrics>,
    options: &NodeOptions,
    stop: watch::Receiver<bool>,
) -> Result<EdgeParts, NodeError> {
    let key =
        key.ok_or_else(|| NodeError::Role("an edge node with [mqtt] needs its key".into()))?;
    let config_err = |message: String| NodeError::Config {
        path: home.join(crate::config::CONFIG_FILE),
        message,
    };
    let key_path = NodeConfig::resolve(home, &config.data_key_path);
    let store_path = NodeConfig::resolve(home, &config.store_path);
    let store = tokio::task::spawn_blocking(move || {
        let data_key = load_or_create_data_key(&key_path, || {
            use rand_core::RngCore;
            let mut k = [0; 32];
            rand_core::OsRng.fill_bytes(&mut k);
            k
        })?;
        EdgeStore::open(&store_path, data_key)
    })
    .await
    .map_err(|e| NodeError::Task {
        task: "open edge store",
        message: e.to_string(),
    })?
    .map_err(|e| config_err(e.to_string()))?;
    let store = Arc::new(store);
    if let Ok(s) = store.stats() {
        metrics
            .edge
            .store_records
            .set(i64::try_from(s.records).unwrap_or(i64::MAX));
    }
    let broker = crate::mqtt::start_broker(config)
        .await
        .map_err(|e| NodeError::Bind {
            addr: config.listen.clone(),
            message: e.to_string(),
        })?;
    let ingest = Arc::new(Ingest::new(
        store.clone(),
        ledger.clone(),
        options.indexer.clone(),
        metrics.clone(),
    ));
    let subscriber = crate::mqtt::spawn_subscriber(
        broker.local_addr(),
        config.max_payload_bytes,
        ingest,
        options.clock.clone(),
        stop.clone(),
    );
    let anchorer = Anchorer {
        store: store.clone(),
        ledger,
        key,
        api: crate::Client::new(format!("http://{api_addr}")),
        config: config.clone(),
        metrics: metrics.clone(),
        clock: options.clock.clone(),
    };
    let anchoring = tokio::spawn(anchorer.run(stop));
    Ok(EdgeParts {
        broker,
        store,
        tasks: vec![subscriber, anchoring],
    })
}

async fn stop_edge(edge: EdgeParts) {
    for t in edge.tasks {
        // Both loops only stop; a failed one has nothing left to report.
        let _ = t.await;
    }
    let broker = edge.broker;
    // Joining the broker's thread blocks.
    let _ = tokio::task::spawn_blocking(move || broker.shutdown()).await;
}

/// How often a consensus node refreshes its height and mempool gauges.
const CONSENSUS_METRICS_INTERVAL: Duration = Duration::from_millis(250);

/// Keeps a consensus node's mempool gauges current until `stop` (blocks are committed, and
/// counted, inside the engine's application loop), then stops the engine gracefully.
async fn run_consensus(
    consensus: ConsensusHandle,
    ledger: Arc<Ledger>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(CONSENSUS_METRICS_INTERVAL);
    let mut reported_stop = false;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = tick.tick() => {}
        }
        let (txs, bytes) = ledger.mempool_size();
        metrics.mempool(txs, bytes);
        if consensus.is_finished() && !reported_stop {
            // The engine or its application failed; the API keeps serving the ledger.
            reported_stop = true;
            metrics.chain_errors.inc();
            tracing::error!("consensus has stopped; this validator no longer takes part");
        }
    }
    if let Err(e) = consensus.shutdown().await {
        tracing::error!(error = %e, "stopping consensus failed");
    }
}

/// Runs the node in `home` until `shutdown` completes (the binary passes Ctrl-C), then stops
/// it gracefully. Returns early with the error if the API server fails.
pub async fn run_node(home: &Path, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
    let config = NodeConfig::load(home)?;
    if config.light {
        // A light edge keeps no ledger: it is a different node (see crate::light).
        return crate::light::run_light_node(home, config, shutdown).await;
    }
    let mut node = start_with_config(home, config, NodeOptions::default()).await?;
    tokio::select! {
        () = shutdown => {
            tracing::info!("shutting down");
            node.shutdown().await
        }
        r = &mut node.server => {
            let _ = node.stop.send(true);
            let _ = (&mut node.worker).await;
            if let Some(g) = node.gossip.take() {
                let _ = g.await;
            }
            if let Some(edge) = node.edge.take() {
                stop_edge(edge).await;
            }
            if let Some(c) = node.contacts.take() {
                let _ = c.await;
            }
            if let Some(o) = node.origin.take() {
                let _ = o.await;
            }
            r.map_err(|e| NodeError::Task { task: "api", message: e.to_string() })?
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustedge_types::{Address, Validator};

    fn set(keys: &[&Keypair]) -> ValidatorSet {
        ValidatorSet::new(
            keys.iter()
                .enumerate()
                .map(|(i, k)| Validator {
                    name: format!("v{i}"),
                    address: Address::of_member(&k.public()),
                    public_key: k.public(),
                    power: 1,
                })
                .collect(),
        )
        .unwrap()
    }

    fn config(role: Role, upstream: &[&str]) -> NodeConfig {
        let mut c = NodeConfig::new("n", role, "127.0.0.1:0", "http://127.0.0.1:1");
        c.key_path = Some("key.json".into());
        c.upstream = upstream.iter().map(|s| s.to_string()).collect();
        c
    }

    #[test]
    fn mode_follows_the_rules() {
        let a = Keypair::from_seed([1; 32]);
        let b = Keypair::from_seed([2; 32]);
        let up = ["http://127.0.0.1:2"];
        let one = set(&[&a]);
        let two = set(&[&a, &b]);
        let v = config(Role::Validator, &[]);
        assert_eq!(choose_mode(&v, &one, Some(&a)).unwrap(), Mode::Sealer);
        assert_eq!(choose_mode(&v, &two, Some(&a)).unwrap(), Mode::Consensus);
        assert!(choose_mode(&v, &one, Some(&b)).is_err());
        let c = Keypair::from_seed([3; 32]);
        let e = choose_mode(&v, &two, Some(&c)).unwrap_err().to_string();
        assert!(e.contains("not one of the 2 validators"), "{e}");
        let vu = config(Role::Validator, &up);
        assert_eq!(choose_mode(&vu, &two, Some(&a)).unwrap(), Mode::Consensus);
        assert_eq!(choose_mode(&vu, &two, Some(&c)).unwrap(), Mode::Follower);
        assert_eq!(choose_mode(&vu, &one, Some(&b)).unwrap(), Mode::Follower);
        assert_eq!(
            choose_mode(&config(Role::Edge, &up), &one, None).unwrap(),
            Mode::Follower
        );
        assert!(choose_mode(&config(Role::Cloud, &[]), &one, None).is_err());
    }
}
