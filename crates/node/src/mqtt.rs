//! MQTT at the edge: the broker an edge node embeds (`rumqttd`), the node's own subscriber
//! that feeds [`crate::ingest`], and the device-side client ([`DeviceClient`], `rumqttc`).
//!
//! # Topics (see [`topics`])
//! - `te/v1/up/<kind>/<client>`: a device publishes one encoded
//!   [`trustedge_device::SignedReading`] of `kind` (QoS 1). `<client>` is a token the device
//!   chooses to receive its acknowledgements on (1..=64 characters of `[A-Za-z0-9_-]`): a
//!   random token per installation, NOT its ledger address, so that the topic links
//!   nothing; the edge learns who sent it from the signature only. Encounter uploads are
//!   keyed by the uploader's own RPI inside the upload itself (the indexer reads it).
//! - `te/v1/ack/<client>`: the edge answers each message with an [`Ack`] in JSON,
//!   after the reading is on disk.
//! - `te/v1/notices/<key>`: notices for devices (payloads defined by the solution);
//!   [`DeviceClient`] subscribes to `te/v1/notices/#`.
//!
//! # Limits
//! The broker refuses packets over `max_payload_bytes` by closing the connection (rumqttd);
//! messages under it but over an encoded reading's size are refused with `too_large`. The
//! subscriber hands messages to one ingest worker through a bounded queue; when it is full
//! a message is dropped unprocessed (counted as `busy`) and the device, with no ack,
//! retries.
//!
//! rumqttd has no ACLs on plain TCP: any client may subscribe to `te/v1/#`. Bind the broker
//! to a network only devices reach, and see ARCHITECTURE for what that exposes.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use trustedge_device::SignedReading;

use crate::ingest::Ingest;
pub use crate::ingest::{Ack, RefusalReason};

/// Topic names.
pub mod topics {
    use crate::ingest::RefusalReason;

    /// Prefix of upload topics.
    pub const UPLOAD_PREFIX: &str = "te/v1/up/";
    /// The filter the edge subscribes to.
    pub const UPLOAD_FILTER: &str = "te/v1/up/+/+";
    /// Prefix of acknowledgement topics.
    pub const ACK_PREFIX: &str = "te/v1/ack/";
    /// Prefix of notice topics.
    pub const NOTICES_PREFIX: &str = "te/v1/notices/";
    /// The filter devices subscribe to for notices.
    pub const NOTICES_FILTER: &str = "te/v1/notices/#";
    /// Longest client token.
    pub const MAX_CLIENT_CHARS: usize = 64;

    /// Whether `client` is a valid client token.
    pub fn is_valid_client(client: &str) -> bool {
        !client.is_empty()
            && client.len() <= MAX_CLIENT_CHARS
            && client
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    }

    fn is_valid_kind(kind: &str) -> bool {
        !kind.is_empty()
            && kind.len() <= trustedge_device::MAX_KIND_CHARS
            && kind
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
    }

    /// The upload topic of `kind` for `client`.
    pub fn upload(kind: &str, client: &str) -> String {
        format!("{UPLOAD_PREFIX}{kind}/{client}")
    }

    /// The acknowledgement topic of `client`.
    pub fn ack(client: &str) -> String {
        format!("{ACK_PREFIX}{client}")
    }

    /// The notice topic for `key`.
    pub fn notice(key: &str) -> String {
        format!("{NOTICES_PREFIX}{key}")
    }

    /// `(kind, client)` of an upload topic.
    pub fn parse_upload(topic: &str) -> Result<(&str, &str), RefusalReason> {
        let rest = topic
            .strip_prefix(UPLOAD_PREFIX)
            .ok_or(RefusalReason::BadTopic)?;
        let (kind, client) = rest.split_once('/').ok_or(RefusalReason::BadTopic)?;
        if is_valid_kind(kind) && is_valid_client(client) {
            Ok((kind, client))
        } else {
            Err(RefusalReason::BadTopic)
        }
    }
}

/// The `[mqtt]` table of an edge node's configuration: its broker, its store and how it
/// anchors. Paths are relative to the node's home.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Where the broker listens for devices (MQTT 3.1.1, plain TCP), e.g. `0.0.0.0:1883`.
    /// Port 0 picks a free port (tests).
    pub listen: String,
    /// Largest MQTT packet payload the broker takes; bigger ones close the connection.
    #[serde(default = "defaults::max_payload_bytes")]
    pub max_payload_bytes: usize,
    /// Most device connections at once.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// The edge store (redb).
    #[serde(default = "defaults::store_path")]
    pub store_path: std::path::PathBuf,
    /// The store's data key (32 bytes hex, created at first start with mode 0600).
    #[serde(default = "defaults::data_key_path")]
    pub data_key_path: std::path::PathBuf,
    /// Records older than this are deleted.
    #[serde(default = "defaults::retention_days")]
    pub retention_days: u64,
    /// A batch is anchored at least this often while records wait.
    #[serde(default = "defaults::anchor_interval_ms")]
    pub anchor_interval_ms: u64,
    /// A batch is cut as soon as this many records wait; the most in one batch.
    #[serde(default = "defaults::anchor_max_records")]
    pub anchor_max_records: u64,
    /// Record type of the anchors (`[a-z0-9_]`, 1..=32).
    #[serde(default = "defaults::anchor_record_type")]
    pub anchor_record_type: String,
}

mod defaults {
    use std::path::PathBuf;
    pub fn max_payload_bytes() -> usize {
        16 * 1024
    }
    pub fn max_connections() -> usize {
        10_000
    }
    pub fn store_path() -> PathBuf {
        PathBuf::from("data/edge.redb")
    }
    pub fn data_key_path() -> PathBuf {
        PathBuf::from("data/edge-store.key")
    }
    pub fn retention_days() -> u64 {
        14
    }
    pub fn anchor_interval_ms() -> u64 {
        10_000
    }
    pub fn anchor_max_records() -> u64 {
        1024
    }
    pub fn anchor_record_type() -> String {
        "device_readings".into()
    }
}

impl MqttConfig {
    /// A configuration listening on `listen`, every other field at its default.
    pub fn new(listen: &str) -> MqttConfig {
        MqttConfig {
            listen: listen.to_string(),
            max_payload_bytes: defaults::max_payload_bytes(),
            max_connections: defaults::max_connections(),
            store_path: defaults::store_path(),
            data_key_path: defaults::data_key_path(),
            retention_days: defaults::retention_days(),
            anchor_interval_ms: defaults::anchor_interval_ms(),
            anchor_max_records: defaults::anchor_max_records(),
            anchor_record_type: defaults::anchor_record_type(),
        }
    }

    /// Checks every field; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        self.listen
            .parse::<SocketAddr>()
            .map_err(|e| format!("mqtt.listen {:?}: {e}", self.listen))?;
        let min = trustedge_device::MAX_READING_BYTES + 256;
        if !(min..=1024 * 1024).contains(&self.max_payload_bytes) {
            return Err(format!(
                "mqtt.max_payload_bytes is {}; it must be in {min}..=1048576",
                self.max_payload_bytes
            ));
        }
        if !(1..=100_000).contains(&self.max_connections) {
            return Err("mqtt.max_connections must be in 1..=100000".into());
        }
        if !(1..=3650).contains(&self.retention_days) {
            return Err("mqtt.retention_days must be in 1..=3650".into());
        }
        if !crate::config::INTERVAL_MS_RANGE.contains(&self.anchor_interval_ms) {
            return Err("mqtt.anchor_interval_ms must be in 1..=3600000".into());
        }
        if !(1..=100_000).contains(&self.anchor_max_records) {
            return Err("mqtt.anchor_max_records must be in 1..=100000".into());
        }
        trustedge_edge::RecordBatch::new(&self.anchor_record_type, 1)
            .map_err(|e| format!("mqtt.anchor_record_type: {e}"))?;
        Ok(())
    }
}

/// Errors of the MQTT parts.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The broker could not start.
    #[error("mqtt broker: {0}")]
    Broker(String),
    /// The client could not connect or send.
    #[error("mqtt client: {0}")]
    Client(String),
    /// No acknowledgement came in time, after every retry.
    #[error("no acknowledgement after {attempts} attempts")]
    NoAck {
        /// Attempts made.
        attempts: u32,
    },
    /// The reading does not encode within the limits.
    #[error("reading: {0}")]
    Reading(String),
}

/// A running embedded broker.
pub struct Broker {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Broker {
    /// The address devices connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections and closes every connection of this broker.
    ///
    /// rumqttd's router thread has no shutdown: it stays, idle, until the process exits.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(s) = self.stop.take() {
            // The server thread may have ended already; nothing to tell then.
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the MQTT server thread panicked");
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn settings(
    config: &MqttConfig,
    addr: SocketAddr,
) -> (rumqttd::RouterConfig, rumqttd::ServerSettings) {
    let router = rumqttd::RouterConfig {
        max_connections: config.max_connections + 1,
        max_outgoing_packet_count: 200,
        // In-memory commit log per subscription filter: small, acknowledged uploads are
        // consumed at once by the edge's subscriber.
        max_segment_size: 4 * 1024 * 1024,
        max_segment_count: 4,
        ..Default::default()
    };
    let server = rumqttd::ServerSettings {
        name: "te-mqtt-v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: rumqttd::ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: config.max_payload_bytes,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            // Devices publish before anyone subscribes to their ack topic's filter.
            dynamic_filters: true,
        },
    };
    (router, server)
}

/// Starts the broker on its own thread and runtime (so that stopping it closes every
/// connection), and waits until it accepts connections.
pub async fn start_broker(config: &MqttConfig) -> Result<Broker, MqttError> {
    let mut addr: SocketAddr = config
        .listen
        .parse()
        .map_err(|e| MqttError::Broker(format!("listen {:?}: {e}", config.listen)))?;
    if addr.port() == 0 {
        // rumqttd binds inside its server and does not report the port: pick one first.
        let l = StdListener::bind(addr).map_err(|e| MqttError::Broker(e.to_string()))?;
        addr = l
            .local_addr()
            .map_err(|e| MqttError::Broker(e.to_string()))?;
    } else if let Err(e) = StdListener::bind(addr) {
        return Err(MqttError::Broker(format!("cannot listen on {addr}: {e}")));
    }
    let (router_config, server_settings) = settings(config, addr);
    let router_tx = rumqttd::Router::new(0, router_config).spawn();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("te-mqtt".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the MQTT runtime");
                    return;
                }
            };
            let mut server =
                rumqttd::Server::new(server_settings, router_tx, rumqttd::protocol::v4::V4);
            rt.block_on(async move {
                tokio::select! {
                    r = server.start(rumqttd::LinkType::Remote) => {
                        if let Err(e) = r {
                            tracing::error!(error = %e, "the MQTT server stopped");
                        }
                    }
                    _ = stop_rx => {}
                }
            });
            // Dropping the runtime cancels every connection task: their sockets close.
            drop(rt);
        })
        .map_err(|e| MqttError::Broker(e.to_string()))?;
    let broker = Broker {
        addr,
        stop: Some(stop),
        thread: Some(thread),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
            drop(s);
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(MqttError::Broker(format!("not listening on {addr}")));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::info!(%addr, "MQTT broker listening");
    Ok(broker)
}

/// Most messages waiting for the ingest worker.
pub const INGEST_QUEUE: usize = 1024;

/// The node's subscriber: reads uploads from the broker at `addr`, hands them to `ingest`
/// one at a time, and publishes the acknowledgements. Runs until `stop`.
pub fn spawn_subscriber(
    addr: SocketAddr,
    max_payload_bytes: usize,
    ingest: Arc<Ingest>,
    clock: Arc<dyn crate::Clock>,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let mut options = MqttOptions::new("trustedge-edge-ingest", addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(max_payload_bytes + 1024, max_payload_bytes + 1024);
    options.set_clean_session(true);
    // Room for several batches' acknowledgements (INGEST_BATCH each) in the request queue.
    let (client, eventloop) = low_latency_client(options, 4 * INGEST_BATCH);
    let (tx, rx) = mpsc::channel::<(String, Vec<u8>)>(INGEST_QUEUE);
    let metrics = ingest_metrics(&ingest);
    let worker = tokio::spawn(ingest_worker(rx, client.clone(), ingest, clock));
    tokio::spawn(async move {
        poll_uploads(eventloop, client, tx, metrics, stop).await;
        // The worker ends once the queue's sender is dropped and the queue drained.
        let _ = worker.await;
    })
}

/// An MQTT client whose socket sends at once (`TCP_NODELAY`). Every exchange here is a
/// small request answered by a small acknowledgement; with Nagle's algorithm on, each one
/// could wait for the peer's delayed ACK (40 ms on Linux) and a pipeline of publish →
/// ingest → acknowledgement ran at a few hundred messages a second with the CPU idle.
pub(crate) fn low_latency_client(options: MqttOptions, cap: usize) -> (AsyncClient, EventLoop) {
    let (client, mut eventloop) = AsyncClient::new(options, cap);
    let mut net = eventloop.network_options();
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);
    (client, eventloop)
}

fn ingest_metrics(ingest: &Ingest) -> Arc<crate::metrics::Metrics> {
    ingest.metrics()
}

async fn poll_uploads(
    mut eventloop: EventLoop,
    client: AsyncClient,
    tx: mpsc::Sender<(String, Vec<u8>)>,
    metrics: Arc<crate::metrics::Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let event = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(50);
                if let Err(e) = client.try_subscribe(topics::UPLOAD_FILTER, QoS::AtLeastOnce) {
                    tracing::error!(error = %e, "cannot subscribe to uploads");
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let topic = p.topic.clone();
                if let Err(e) = tx.try_send((topic, p.payload.to_vec())) {
                    metrics.edge.received.inc();
                    metrics.edge.refuse(RefusalReason::Busy);
                    // Tell the device at once (it may send again later) rather than let it
                    // wait out its acknowledgement timeout.
                    let (topic, message) = e.into_inner();
                    if let Ok((_, client_id)) = topics::parse_upload(&topic)
                        && let Ok(body) = serde_json::to_vec(&crate::ingest::Ack::busy(&message))
                        && client
                            .try_publish(topics::ack(client_id), QoS::AtLeastOnce, false, body)
                            .is_err()
                    {
                        metrics.edge.acks_dropped.inc();
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "edge MQTT subscriber disconnected; reconnecting");
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    // Nothing to do if the broker is already gone.
    let _ = client.try_disconnect();
}

async fn ingest_worker(
    mut rx: mpsc::Receiver<(String, Vec<u8>)>,
    client: AsyncClient,
    ingest: Arc<Ingest>,
    clock: Arc<dyn crate::Clock>,
) {
    use rand_core::RngCore;
    while let Some(first) = rx.recv().await {
        // What else is already queued goes with it: one transaction for the lot.
        let mut queued = vec![first];
        while queued.len() < INGEST_BATCH {
            match rx.try_recv() {
                Ok(m) => queued.push(m),
                Err(_) => break,
            }
        }
        let now_ms = clock.now_ms();
        let batch: Vec<crate::ingest::IngestMessage> = queued
            .into_iter()
            .map(|(topic, message)| {
                let mut nonce = [0; 24];
                rand_core::OsRng.fill_bytes(&mut nonce);
                crate::ingest::IngestMessage {
                    topic,
                    message,
                    now_ms,
                    nonce,
                }
            })
            .collect();
        let ingest2 = ingest.clone();
        let answers = match tokio::task::spawn_blocking(move || ingest2.handle_batch(batch)).await {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "ingest task failed");
                continue;
            }
        };
        for (ack_topic, ack) in answers {
            let Some(ack_topic) = ack_topic else { continue };
            let Ok(body) = serde_json::to_vec(&ack) else {
                continue;
            };
            // The event loop drains the request queue; a full one means the broker is gone
            // or stuck, and the device retries without an ack.
            if client
                .try_publish(ack_topic, QoS::AtLeastOnce, false, body)
                .is_err()
            {
                ingest.metrics().edge.acks_dropped.inc();
            }
        }
    }
}

/// Longest wait for room in an MQTT client's request queue before a push to devices is
/// given up (and counted by the caller): a burst (a case's notices, a batch of alerts) can
/// fill the queue for a moment; a broker gone for good must not stall the worker.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Publishes `body` on `topic` (QoS 1), waiting up to [`PUSH_TIMEOUT`] for room in the
/// client's queue; false if it could not be queued.
pub async fn push(client: &AsyncClient, topic: String, body: Vec<u8>) -> bool {
    matches!(
        tokio::time::timeout(
            PUSH_TIMEOUT,
            client.publish(topic, QoS::AtLeastOnce, false, body)
        )
        .await,
        Ok(Ok(()))
    )
}

/// Most queued uploads the edge stores in one transaction.
pub const INGEST_BATCH: usize = 128;

/// Most readings [`DeviceClient::publish_readings`] keeps awaiting acknowledgement at once
/// (below the device loop's acknowledgement queue of 64, which drops what overflows).
pub const PIPELINE_WINDOW: usize = 32;

/// How a [`DeviceClient`] connects and retries.
#[derive(Clone, Debug)]
pub struct DeviceClientOptions {
    /// How long to wait for an acknowledgement before sending again.
    pub ack_timeout: Duration,
    /// Most attempts per reading (the first included).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled after each further one.
    pub initial_backoff: Duration,
    /// Largest wait between attempts.
    pub max_backoff: Duration,
    /// Most notices held until read; further ones are dropped (and counted, see
    /// [`DeviceClient::notices_dropped`]).
    pub notice_queue: usize,
    /// Whether to subscribe to notices at all. A client publishing for many devices (a load
    /// or city driver) leaves them to one listening client: every subscriber receives every
    /// notice.
    pub notices: bool,
}

impl Default for DeviceClientOptions {
    fn default() -> Self {
        DeviceClientOptions {
            ack_timeout: Duration::from_secs(5),
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            notice_queue: 256,
            notices: true,
        }
    }
}

/// A notice received on `te/v1/notices/<key>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The full topic.
    pub topic: String,
    /// The payload, as the solution defines it.
    pub payload: Vec<u8>,
}

/// A device's connection to its edge node: publishes readings with QoS 1, waits for the
/// edge's acknowledgement and retries with backoff, and receives notices.
pub struct DeviceClient {
    client: AsyncClient,
    token: String,
    options: DeviceClientOptions,
    acks: mpsc::Receiver<Ack>,
    notices: mpsc::Receiver<Notice>,
    notices_dropped: Arc<std::sync::atomic::AtomicU64>,
    task: JoinHandle<()>,
}

impl DeviceClient {
    /// Connects to the broker at `addr` with client token `token` (see [`topics`]; a random
    /// token per installation, not the device's address).
    pub async fn connect(
        addr: SocketAddr,
        token: &str,
        options: DeviceClientOptions,
    ) -> Result<DeviceClient, MqttError> {
        if !topics::is_valid_client(token) {
            return Err(MqttError::Client(format!(
                "client token {token:?} must be 1..=64 characters of [A-Za-z0-9_-]"
            )));
        }
        let mut mqtt = MqttOptions::new(format!("dev-{token}"), addr.ip().to_string(), addr.port());
        mqtt.set_keep_alive(Duration::from_secs(30));
        mqtt.set_clean_session(true);
        mqtt.set_max_packet_size(1024 * 1024, 1024 * 1024);
        let (client, eventloop) = low_latency_client(mqtt, 64);
        let (ack_tx, acks) = mpsc::channel(64);
        let (notice_tx, notices) = mpsc::channel(options.notice_queue.max(1));
        let (ready_tx, mut ready) = watch::channel(false);
        let notices_dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = tokio::spawn(device_loop(
            eventloop,
            client.clone(),
            topics::ack(token),
            ack_tx,
            options.notices.then_some(NoticeSink {
                tx: notice_tx,
                dropped: notices_dropped.clone(),
            }),
            ready_tx,
        ));
        let connected = tokio::time::timeout(options.ack_timeout, ready.wait_for(|r| *r)).await;
        if !matches!(connected, Ok(Ok(_))) {
            task.abort();
            return Err(MqttError::Client(format!("cannot connect to {addr}")));
        }
        Ok(DeviceClient {
            client,
            token: token.to_string(),
            options,
            acks,
            notices,
            notices_dropped,
            task,
        })
    }

    /// Publishes `reading` and waits for its acknowledgement, retrying with backoff while
    /// none comes or the edge answers with a retryable refusal. Returns the last ack: an
    /// acceptance, or a refusal that retrying will not change.
    pub async fn publish_reading(&mut self, reading: &SignedReading) -> Result<Ack, MqttError> {
        let bytes = reading.to_bytes();
        let kind = reading.kind.clone();
        self.publish_raw(&kind, bytes).await
    }

    /// Publishes `readings` in order with up to [`PIPELINE_WINDOW`] awaiting their
    /// acknowledgements at once (one round trip per window instead of one per reading),
    /// and returns each one's outcome in order. A reading left without an answer, or
    /// refused with a reason worth retrying, is sent again alone as
    /// [`DeviceClient::publish_reading`] does, with its backoff. Readings of one device
    /// stay in order (one connection, one edge subscriber), so its sequence numbers still
    /// rise.
    pub async fn publish_readings(
        &mut self,
        readings: &[SignedReading],
    ) -> Vec<Result<Ack, MqttError>> {
        let mut out: Vec<Option<Result<Ack, MqttError>>> =
            (0..readings.len()).map(|_| None).collect();
        for (c, chunk) in readings.chunks(PIPELINE_WINDOW).enumerate() {
            let base = c * PIPELINE_WINDOW;
            // digest → indices waiting for it (a repeated reading has one digest)
            let mut waiting: std::collections::HashMap<String, Vec<usize>> =
                std::collections::HashMap::new();
            for (i, r) in chunk.iter().enumerate() {
                let bytes = r.to_bytes();
                let digest = Ack::digest_of(&bytes);
                let topic = topics::upload(&r.kind, &self.token);
                match self
                    .client
                    .publish(topic, QoS::AtLeastOnce, false, bytes)
                    .await
                {
                    Ok(()) => waiting.entry(digest).or_default().push(base + i),
                    Err(e) => out[base + i] = Some(Err(MqttError::Client(e.to_string()))),
                }
            }
            let deadline = tokio::time::Instant::now() + self.options.ack_timeout;
            while !waiting.is_empty() {
                match tokio::time::timeout_at(deadline, self.acks.recv()).await {
                    Ok(Some(ack)) => {
                        let Some(slots) = waiting.get_mut(&ack.digest) else {
                            continue; // an ack of an earlier message
                        };
                        let Some(i) = (!slots.is_empty()).then(|| slots.remove(0)) else {
                            continue;
                        };
                        if slots.is_empty() {
                            waiting.remove(&ack.digest);
                        }
                        if ack.accepted || !ack.retry {
                            out[i] = Some(Ok(ack));
                        }
                    }
                    Ok(None) => break,
                    Err(_) => break,
                }
            }
        }
        // What is still unanswered (or refused for now) goes again, one at a time.
        let mut results = Vec::with_capacity(readings.len());
        for (r, o) in readings.iter().zip(out) {
            results.push(match o {
                Some(x) => x,
                None => self.publish_reading(r).await,
            });
        }
        results
    }

    /// Publishes `message` on the upload topic of `kind` and waits for its acknowledgement,
    /// as [`DeviceClient::publish_reading`] does (for tests and other encodings).
    pub async fn publish_raw(&mut self, kind: &str, message: Vec<u8>) -> Result<Ack, MqttError> {
        let topic = topics::upload(kind, &self.token);
        let digest = Ack::digest_of(&message);
        let mut backoff = self.options.initial_backoff;
        let attempts = self.options.max_attempts.max(1);
        for attempt in 1..=attempts {
            self.client
                .publish(topic.clone(), QoS::AtLeastOnce, false, message.clone())
                .await
                .map_err(|e| MqttError::Client(e.to_string()))?;
            let deadline = tokio::time::Instant::now() + self.options.ack_timeout;
            let answer = loop {
                match tokio::time::timeout_at(deadline, self.acks.recv()).await {
                    Ok(Some(ack)) if ack.digest == digest => break Some(ack),
                    // An ack of an earlier message (a retry answered twice).
                    Ok(Some(_)) => continue,
                    Ok(None) => return Err(MqttError::Client("connection task ended".into())),
                    Err(_) => break None,
                }
            };
            match answer {
                Some(ack) if ack.accepted || !ack.retry => return Ok(ack),
                _ if attempt == attempts => {
                    return Err(MqttError::NoAck { attempts });
                }
                _ => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.options.max_backoff);
                }
            }
        }
        Err(MqttError::NoAck { attempts })
    }

    /// The next notice, waiting at most `timeout`.
    pub async fn next_notice(&mut self, timeout: Duration) -> Option<Notice> {
        tokio::time::timeout(timeout, self.notices.recv())
            .await
            .ok()
            .flatten()
    }

    /// Notices dropped because the queue was full (`notice_queue`).
    pub fn notices_dropped(&self) -> u64 {
        self.notices_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Disconnects.
    pub async fn disconnect(self) {
        // Already disconnected is fine.
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

/// Where a device connection puts the notices it receives.
struct NoticeSink {
    tx: mpsc::Sender<Notice>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

async fn device_loop(
    mut eventloop: EventLoop,
    client: AsyncClient,
    ack_topic: String,
    acks: mpsc::Sender<Ack>,
    notices: Option<NoticeSink>,
    ready: watch::Sender<bool>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(50);
                // A clean session forgets subscriptions: subscribe after every connect.
                let subscribed = client
                    .try_subscribe(ack_topic.clone(), QoS::AtLeastOnce)
                    .and_then(|()| match notices {
                        Some(_) => client.try_subscribe(topics::NOTICES_FILTER, QoS::AtLeastOnce),
                        None => Ok(()),
                    });
                if let Err(e) = subscribed {
                    tracing::warn!(error = %e, "device client cannot subscribe");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                let _ = ready.send(true);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let topic = p.topic.clone();
                if topic == ack_topic {
                    if let Ok(ack) = serde_json::from_slice::<Ack>(&p.payload) {
                        // A full queue means nobody waits for these acks.
                        let _ = acks.try_send(ack);
                    }
                } else if topic.starts_with(topics::NOTICES_PREFIX)
                    && let Some(sink) = &notices
                    && sink
                        .tx
                        .try_send(Notice {
                            topic,
                            payload: p.payload.to_vec(),
                        })
                        .is_err()
                {
                    sink.dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(e) => {
                if acks.is_closed() {
                    break;
                }
                tracing::debug!(error = %e, "device MQTT connection lost; reconnecting");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip_and_refuse() {
        let t = topics::upload("encounters", "tok-1");
        assert_eq!(t, "te/v1/up/encounters/tok-1");
        assert_eq!(topics::parse_upload(&t), Ok(("encounters", "tok-1")));
        for bad in [
            "te/v1/up/encounters",
            "te/v1/up/Enc/tok",
            "te/v1/up/enc/to/k",
            "te/v1/up/enc/",
            "te/v1/ack/x",
            "",
        ] {
            assert_eq!(
                topics::parse_upload(bad),
                Err(RefusalReason::BadTopic),
                "{bad}"
            );
        }
        assert_eq!(topics::ack("tok"), "te/v1/ack/tok");
    }

    #[test]
    fn config_defaults_and_validation() {
        let c = MqttConfig::new("127.0.0.1:0");
        c.validate().unwrap();
        let mut bad = c.clone();
        bad.max_payload_bytes = 100;
        assert!(bad.validate().unwrap_err().contains("max_payload_bytes"));
        let mut bad = c.clone();
        bad.anchor_record_type = "Bad".into();
        assert!(bad.validate().unwrap_err().contains("anchor_record_type"));
        let mut bad = c;
        bad.listen = "x".into();
        assert!(bad.validate().unwrap_err().contains("mqtt.listen"));
    }
}
