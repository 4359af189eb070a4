//! Edge ingest: what an edge node does with a message a device published on an upload
//! topic ([`crate::mqtt::topics`]): decode, verify, check the device on the ledger, check
//! replay, store durably, and answer with an [`Ack`].
//!
//! Every refusal has a typed [`RefusalReason`], is counted by reason
//! (`trustedge_edge_mqtt_refused_total{reason}`) and logged at debug level; nothing a device
//! sends makes the node panic. An accepted reading is on disk (one durable redb
//! transaction, see [`crate::edge_store`]) before the acknowledgement is sent, so a device
//! that got `accepted` may forget the reading, and a device that got nothing retries: the
//! same reading sent again is recognised and acknowledged as accepted again.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use trustedge_chain::Ledger;
use trustedge_device::{DeviceError, MAX_READING_BYTES, SignedReading};
use trustedge_types::{Address, Hash, codec};

use crate::edge_store::{EdgeStore, EdgeStoreError, IndexKeys, PutItem};
use crate::mqtt::topics;

/// Why a message was refused. The JSON / label form is the snake_case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// The topic is not `te/v1/up/<kind>/<client>` with valid segments.
    BadTopic,
    /// The message is larger than an encoded reading may be.
    TooLarge,
    /// The bytes are not a reading.
    Malformed,
    /// The reading's kind or payload break the field rules.
    InvalidFields,
    /// The signature does not verify.
    BadSignature,
    /// The reading's kind is not the topic's.
    KindMismatch,
    /// No device with this key is registered on the ledger.
    Unregistered,
    /// The device is registered but suspended or revoked, or its organisation suspended.
    Unauthorised,
    /// The sequence number is not above the last one accepted from this device.
    Replayed,
    /// The payload does not yield valid index keys for its kind.
    BadPayload,
    /// The edge could not check or store it now (ledger or disk failure); retry later.
    Unavailable,
    /// The edge is overloaded and dropped it unprocessed; retry later.
    Busy,
}

impl RefusalReason {
    /// Every reason, for documentation and tests.
    pub const ALL: [RefusalReason; 12] = [
        RefusalReason::BadTopic,
        RefusalReason::TooLarge,
        RefusalReason::Malformed,
        RefusalReason::InvalidFields,
        RefusalReason::BadSignature,
        RefusalReason::KindMismatch,
        RefusalReason::Unregistered,
        RefusalReason::Unauthorised,
        RefusalReason::Replayed,
        RefusalReason::BadPayload,
        RefusalReason::Unavailable,
        RefusalReason::Busy,
    ];

    /// The stable name (metric label, JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::BadTopic => "bad_topic",
            RefusalReason::TooLarge => "too_large",
            RefusalReason::Malformed => "malformed",
            RefusalReason::InvalidFields => "invalid_fields",
            RefusalReason::BadSignature => "bad_signature",
            RefusalReason::KindMismatch => "kind_mismatch",
            RefusalReason::Unregistered => "unregistered",
            RefusalReason::Unauthorised => "unauthorised",
            RefusalReason::Replayed => "replayed",
            RefusalReason::BadPayload => "bad_payload",
            RefusalReason::Unavailable => "unavailable",
            RefusalReason::Busy => "busy",
        }
    }

    /// Whether sending the same message again later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, RefusalReason::Unavailable | RefusalReason::Busy)
    }
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to an uploaded message, published as JSON on `te/v1/ack/<client>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// SHA-256 of the message's bytes (hex): which message this answers.
    pub digest: String,
    /// The reading's sequence number, when it decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Whether the reading is stored.
    pub accepted: bool,
    /// Why not, when refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<RefusalReason>,
    /// Whether sending it again later may succeed (refusals only).
    #[serde(default)]
    pub retry: bool,
    /// The stored record's id at this edge, when accepted (for its proof:
    /// `GET /v1/edge/records/{id}/proof`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<u64>,
}

impl Ack {
    /// The digest an ack carries for `message`.
    pub fn digest_of(message: &[u8]) -> String {
        Hash::sha256(message).to_hex()
    }

    /// The answer to `message` when the edge's queue is full and it is dropped unread:
    /// refused as [`RefusalReason::Busy`], to be sent again later.
    pub fn busy(message: &[u8]) -> Ack {
        Ack::refused(Ack::digest_of(message), None, RefusalReason::Busy)
    }

    fn refused(digest: String, seq: Option<u64>, reason: RefusalReason) -> Ack {
        Ack {
            digest,
            seq,
            accepted: false,
            reason: Some(reason),
            retry: reason.is_retryable(),
            record_id: None,
        }
    }
}

/// A device's standing on the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceStanding {
    /// Registered, active, organisation active.
    Authorised,
    /// Not registered.
    Unregistered,
    /// Registered, but not to be trusted now.
    NotAuthorised,
}

/// The node's view of the devices contract (a full replica; a light client could answer
/// with state proofs).
pub trait DeviceRegistry: Send + Sync {
    /// The standing of the device at `addr`, or why it cannot be told now.
    fn standing(&self, addr: &Address) -> Result<DeviceStanding, String>;
}

impl DeviceRegistry for Ledger {
    fn standing(&self, addr: &Address) -> Result<DeviceStanding, String> {
        let snap = self.store().snapshot().map_err(|e| e.to_string())?;
        if trustedge_contracts::device(&snap, addr)
            .map_err(|e| e.to_string())?
            .is_none()
        {
            return Ok(DeviceStanding::Unregistered);
        }
        Ok(
            if trustedge_contracts::is_authorised(&snap, addr).map_err(|e| e.to_string())? {
                DeviceStanding::Authorised
            } else {
                DeviceStanding::NotAuthorised
            },
        )
    }
}

/// Turns a verified reading into the keys it is indexed under. Decoding the payload is the
/// solution's business (for `encounters`: the upload's own RPI and the RPIs heard), so the
/// node takes it as a plug-in ([`crate::NodeOptions::indexer`]).
pub trait ReadingIndexer: Send + Sync {
    /// The index keys of `reading`, published under the topic's `client` segment; an error
    /// refuses the reading as [`RefusalReason::BadPayload`].
    fn index_keys(&self, client: &str, reading: &SignedReading) -> Result<IndexKeys, String>;
}

/// The default indexer: readings are kept by time only.
#[derive(Clone, Copy, Debug, Default)]
pub struct TimeOnlyIndexer;

impl ReadingIndexer for TimeOnlyIndexer {
    fn index_keys(&self, _client: &str, _reading: &SignedReading) -> Result<IndexKeys, String> {
        Ok(IndexKeys::default())
    }
}

/// Label of a refusal.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The [`RefusalReason`] name.
    pub reason: String,
}

/// Metrics of edge ingest, the edge store and anchoring.
#[derive(Default)]
pub struct EdgeMetrics {
    /// Messages received on upload topics.
    pub received: Counter,
    /// Readings accepted (stored, or recognised as a retry of a stored one).
    pub accepted: Counter,
    /// Of the accepted, retries of a stored reading.
    pub duplicates: Counter,
    /// Messages refused, by reason.
    pub refused: Family<ReasonLabel, Counter>,
    /// Acknowledgements that could not be queued for sending.
    pub acks_dropped: Counter,
    /// Records held in the edge store.
    pub store_records: Gauge,
    /// Size of the edge store file.
    pub store_bytes: Gauge,
    /// Records deleted by retention.
    pub records_pruned: Counter,
    /// Anchoring transactions submitted.
    pub anchors_submitted: Counter,
    /// Batches seen anchored on the ledger.
    pub anchors_committed: Counter,
    /// Anchoring attempts that failed (submission refused, transaction failed).
    pub anchor_errors: Counter,
}

impl EdgeMetrics {
    /// Registers these metrics (names prefixed `edge_`).
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "edge_mqtt_received",
            "Messages received on MQTT upload topics",
            self.received.clone(),
        );
        r.register(
            "edge_mqtt_accepted",
            "Readings accepted and stored (retries of a stored reading included)",
            self.accepted.clone(),
        );
        r.register(
            "edge_mqtt_duplicates",
            "Accepted readings that were retries of a stored one",
            self.duplicates.clone(),
        );
        r.register(
            "edge_mqtt_refused",
            "Messages refused, by reason",
            self.refused.clone(),
        );
        r.register(
            "edge_mqtt_acks_dropped",
            "Acknowledgements that could not be queued for sending",
            self.acks_dropped.clone(),
        );
        r.register(
            "edge_store_records",
            "Records held in the edge store",
            self.store_records.clone(),
        );
        r.register(
            "edge_store_bytes",
            "Size of the edge store file",
            self.store_bytes.clone(),
        );
        r.register(
            "edge_records_pruned",
            "Records deleted by retention",
            self.records_pruned.clone(),
        );
        r.register(
            "edge_anchors_submitted",
            "Anchoring transactions submitted",
            self.anchors_submitted.clone(),
        );
        r.register(
            "edge_anchors_committed",
            "Batches seen anchored on the ledger",
            self.anchors_committed.clone(),
        );
        r.register(
            "edge_anchor_errors",
            "Anchoring attempts that failed",
            self.anchor_errors.clone(),
        );
    }

    /// Counts a refusal.
    pub fn refuse(&self, reason: RefusalReason) {
        self.refused
            .get_or_create(&ReasonLabel {
                reason: reason.as_str().to_string(),
            })
            .inc();
    }
}

/// The ingest pipeline of an edge node.
pub struct Ingest {
    store: Arc<EdgeStore>,
    registry: Arc<dyn DeviceRegistry>,
    indexer: Arc<dyn ReadingIndexer>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Ingest {
    /// A pipeline storing into `store`.
    pub fn new(
        store: Arc<EdgeStore>,
        registry: Arc<dyn DeviceRegistry>,
        indexer: Arc<dyn ReadingIndexer>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Ingest {
        Ingest {
            store,
            registry,
            indexer,
            metrics,
        }
    }

    /// The node's metrics.
    pub fn metrics(&self) -> Arc<crate::metrics::Metrics> {
        self.metrics.clone()
    }

    /// The store.
    pub fn store(&self) -> &Arc<EdgeStore> {
        &self.store
    }

    /// Handles one message published on `topic`, received at `now_ms`, with a fresh
    /// random `nonce` for its encryption. Returns the topic to acknowledge on (none if the
    /// topic names no client) and the acknowledgement. Blocks on the disk: call it on a
    /// blocking thread.
    pub fn handle(
        &self,
        topic: &str,
        message: &[u8],
        now_ms: u64,
        nonce: [u8; 24],
    ) -> (Option<String>, Ack) {
        let mut out = self.handle_batch(vec![IngestMessage {
            topic: topic.to_string(),
            message: message.to_vec(),
            now_ms,
            nonce,
        }]);
        out.pop().unwrap_or_else(|| {
            (
                None,
                Ack::refused(Ack::digest_of(message), None, RefusalReason::Unavailable),
            )
        })
    }

    /// Handles messages in arrival order as [`Ingest::handle`] does each, storing the
    /// accepted ones in one durable transaction ([`EdgeStore::put_many`]: one disk sync
    /// for the batch; every acknowledgement still means "on disk"). Returns one answer per
    /// message, in order. Blocks on the disk: call it on a blocking thread.
    pub fn handle_batch(&self, messages: Vec<IngestMessage>) -> Vec<(Option<String>, Ack)> {
        let m = &self.metrics.edge;
        // Per message: its ack topic, digest, and either a checked reading or a refusal.
        let mut decoded = Vec::with_capacity(messages.len());
        for msg in &messages {
            m.received.inc();
            let digest = Ack::digest_of(&msg.message);
            let parsed = topics::parse_upload(&msg.topic);
            let ack_topic = parsed.as_ref().ok().map(|(_, c)| topics::ack(c));
            let r = parsed.and_then(|(kind, client)| {
                decode_upload(&msg.message).map(|reading| (kind, client, reading))
            });
            decoded.push((ack_topic, digest, r.map_err(|reason| (None, reason))));
        }
        // Every signature of the batch in one ed25519 batch verification.
        let readings: Vec<&SignedReading> = decoded
            .iter()
            .filter_map(|(_, _, r)| r.as_ref().ok().map(|(_, _, reading)| reading))
            .collect();
        let mut verified = trustedge_device::verify_readings(&readings).into_iter();
        let mut checked = Vec::with_capacity(messages.len());
        for (ack_topic, digest, r) in decoded {
            let r = r.and_then(|(kind, client, reading)| {
                let v = verified.next().unwrap_or(Err(DeviceError::Types(
                    trustedge_types::TypesError::BadSignature,
                )));
                self.check(kind, client, reading, v)
            });
            checked.push((ack_topic, digest, r));
        }
        let items: Vec<PutItem<'_>> = checked
            .iter_mut()
            .zip(&messages)
            .filter_map(|((_, _, r), msg)| match r {
                Ok((reading, keys)) => Some(PutItem {
                    reading,
                    now_ms: msg.now_ms,
                    keys: std::mem::take(keys),
                    nonce: msg.nonce,
                }),
                Err(_) => None,
            })
            .collect();
        let stored = match self.store.put_many(items) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!(error = %e, "edge store write failed");
                None
            }
        };
        let mut stored = stored.map(Vec::into_iter);
        let mut out = Vec::with_capacity(checked.len());
        for (ack_topic, digest, r) in checked {
            let result = match r {
                Err(refusal) => Err(refusal),
                Ok((reading, _)) => {
                    let seq = Some(reading.seq);
                    match stored.as_mut().and_then(Iterator::next) {
                        Some(Ok(p)) => {
                            if !p.duplicate {
                                m.store_records.inc();
                            }
                            Ok((reading.seq, p.id, p.duplicate))
                        }
                        Some(Err(EdgeStoreError::Replayed { .. })) => {
                            Err((seq, RefusalReason::Replayed))
                        }
                        Some(Err(EdgeStoreError::IndexKeys(_))) => {
                            Err((seq, RefusalReason::BadPayload))
                        }
                        Some(Err(e)) => {
                            tracing::error!(error = %e, "edge store write failed");
                            Err((seq, RefusalReason::Unavailable))
                        }
                        // The batch's transaction failed: nothing of it was stored.
                        None => Err((seq, RefusalReason::Unavailable)),
                    }
                }
            };
            let ack = match result {
                Ok((seq, id, duplicate)) => {
                    m.accepted.inc();
                    if duplicate {
                        m.duplicates.inc();
                    }
                    Ack {
                        digest,
                        seq: Some(seq),
                        accepted: true,
                        reason: None,
                        retry: false,
                        record_id: Some(id),
                    }
                }
                Err((seq, reason)) => {
                    m.refuse(reason);
                    tracing::debug!(%reason, "refused an upload");
                    Ack::refused(digest, seq, reason)
                }
            };
            out.push((ack_topic, ack));
        }
        out
    }

    /// Checks a decoded upload of `kind` from `client` up to storage, given the outcome of
    /// its signature check `verified`: signature, kind, the device's standing on the
    /// ledger, index keys.
    fn check(
        &self,
        kind: &str,
        client: &str,
        reading: SignedReading,
        verified: Result<(), DeviceError>,
    ) -> Result<(SignedReading, IndexKeys), (Option<u64>, RefusalReason)> {
        let seq = Some(reading.seq);
        match verified {
            Ok(()) => {}
            Err(DeviceError::Types(_)) => return Err((seq, RefusalReason::BadSignature)),
            Err(_) => return Err((seq, RefusalReason::InvalidFields)),
        }
        if reading.kind != kind {
            return Err((seq, RefusalReason::KindMismatch));
        }
        match self.registry.standing(&reading.device_address()) {
            Ok(DeviceStanding::Authorised) => {}
            Ok(DeviceStanding::Unregistered) => return Err((seq, RefusalReason::Unregistered)),
            Ok(DeviceStanding::NotAuthorised) => {
                return Err((seq, RefusalReason::Unauthorised));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read device standing from the ledger");
                return Err((seq, RefusalReason::Unavailable));
            }
        }
        let keys = self
            .indexer
            .index_keys(client, &reading)
            .map_err(|_| (seq, RefusalReason::BadPayload))?;
        Ok((reading, keys))
    }
}

/// Decodes an upload's bytes: size, then the reading's canonical encoding.
fn decode_upload(message: &[u8]) -> Result<SignedReading, RefusalReason> {
    if message.len() > MAX_READING_BYTES {
        return Err(RefusalReason::TooLarge);
    }
    codec::decode(message, MAX_READING_BYTES).map_err(|_| RefusalReason::Malformed)
}

/// One message for [`Ingest::handle_batch`].
#[derive(Clone, Debug)]
pub struct IngestMessage {
    /// The topic it was published on.
    pub topic: String,
    /// Its payload.
    pub message: Vec<u8>,
    /// When it was received, Unix ms.
    pub now_ms: u64,
    /// A fresh random nonce for its encryption.
    pub nonce: [u8; 24],
}
