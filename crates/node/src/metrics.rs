//! Prometheus metrics (OpenMetrics text format, served at `GET /metrics`).
//!
//! Every label takes values from a bounded set (stable error codes, route templates, HTTP
//! status codes), so the number of series is bounded whatever clients send.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use trustedge_chain::CommitInfo;

/// Label of a rejected transaction: its stable error code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The code (`bad_signature`, `mempool_full`, …).
    pub code: String,
}

/// Labels of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Method.
    pub method: String,
    /// Route template (`/v1/blocks/{height}`), or `unmatched`.
    pub route: String,
    /// Response status.
    pub status: u16,
}

/// Labels of a gossip peer and why something happened.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerReasonLabels {
    /// The peer's API URL (one of the configured `gossip_peers`).
    pub peer: String,
    /// A reason from a fixed set, or a stable error code.
    pub reason: String,
}

/// Label of a gossip peer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    /// The peer's API URL (one of the configured `gossip_peers`).
    pub peer: String,
}

/// Metrics of mempool gossip ([`crate::gossip`]).
#[derive(Default)]
pub struct GossipMetrics {
    /// Transactions queued for a peer.
    pub txs_queued: Family<PeerLabel, Counter>,
    /// Transactions a peer admitted.
    pub txs_sent: Family<PeerLabel, Counter>,
    /// Transactions a peer refused for good, by its code (`duplicate`, `replayed_nonce`, …).
    pub txs_refused: Family<PeerReasonLabels, Counter>,
    /// Pushes retried, by reason (`full`, `busy`, `unreachable`, `error`, `bad_response`).
    pub retries: Family<PeerReasonLabels, Counter>,
    /// Transactions not delivered to a peer, by reason (`queue_full`, `gave_up_*`,
    /// `refused_batch`).
    pub txs_dropped: Family<PeerReasonLabels, Counter>,
    /// Transactions waiting for a peer.
    pub queue_txs: Family<PeerLabel, Gauge>,
    /// Transactions received by gossip.
    pub txs_received: Counter,
    /// Of which admitted here.
    pub txs_received_accepted: Counter,
}

/// Codes a peer may answer that are kept as label values; others become `other`, so that a
/// misbehaving peer cannot create unbounded series.
const KNOWN_CODES: &[&str] = &[
    "malformed",
    "malformed_call",
    "unknown_module",
    "bad_signature",
    "unknown_signer",
    "revoked_signer",
    "suspended_signer",
    "replayed_nonce",
    "duplicate",
    "already_committed",
    "too_large",
    "wrong_chain_id",
    "expired",
    "mempool_full",
    "storage",
    "internal",
    "empty_item",
];

impl GossipMetrics {
    fn labels(peer: &str, reason: &str) -> PeerReasonLabels {
        PeerReasonLabels {
            peer: peer.to_string(),
            reason: reason.to_string(),
        }
    }

    fn peer(peer: &str) -> PeerLabel {
        PeerLabel {
            peer: peer.to_string(),
        }
    }

    /// `n` transactions queued for `peer`, whose queue now holds `len`.
    pub fn queued(&self, peer: &str, n: u64, len: usize) {
        self.txs_queued.get_or_create(&Self::peer(peer)).inc_by(n);
        self.queue_len(peer, len);
    }

    /// The queue of `peer` holds `len` transactions.
    pub fn queue_len(&self, peer: &str, len: usize) {
        self.queue_txs
            .get_or_create(&Self::peer(peer))
            .set(i64::try_from(len).unwrap_or(i64::MAX));
    }

    /// `n` transactions admitted by `peer`.
    pub fn sent(&self, peer: &str, n: u64) {
        self.txs_sent.get_or_create(&Self::peer(peer)).inc_by(n);
    }

    /// One transaction refused for good by `peer` with `code`.
    pub fn refused(&self, peer: &str, code: &str) {
        let code = if KNOWN_CODES.contains(&code) {
            code
        } else {
            "other"
        };
        self.txs_refused
            .get_or_create(&Self::labels(peer, code))
            .inc();
    }

    /// One push to `peer` retried for `reason`.
    pub fn retry(&self, peer: &str, reason: &str) {
        self.retries
            .get_or_create(&Self::labels(peer, reason))
            .inc();
    }

    /// `n` transactions not delivered to `peer` for `reason`.
    pub fn dropped(&self, peer: &str, reason: &str, n: u64) {
        self.txs_dropped
            .get_or_create(&Self::labels(peer, reason))
            .inc_by(n);
    }
}

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    /// Transactions received through the API.
    pub txs_submitted: Counter,
    /// Transactions admitted into the mempool (or forwarded upstream and accepted there).
    pub txs_accepted: Counter,
    /// Transactions refused, by code.
    pub txs_rejected: Family<CodeLabel, Counter>,
    /// Transactions a follower could not forward upstream.
    pub txs_forward_failed: Counter,
    /// Blocks committed (sealed here or followed).
    pub blocks_committed: Counter,
    /// Transactions in committed blocks.
    pub block_txs_committed: Counter,
    /// Failed transactions in committed blocks.
    pub block_txs_failed: Counter,
    /// Latest committed height.
    pub height: Gauge,
    /// Transactions in the mempool.
    pub mempool_txs: Gauge,
    /// Bytes in the mempool.
    pub mempool_bytes: Gauge,
    /// Time to propose (if sealing) and commit one block.
    pub commit_duration_seconds: Histogram,
    /// Errors while sealing or following.
    pub chain_errors: Counter,
    /// HTTP requests by method, route and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Mempool gossip.
    pub gossip: GossipMetrics,
    /// Edge ingest, store and anchoring ([`crate::ingest`]).
    pub edge: crate::ingest::EdgeMetrics,
    /// Contact tracing ([`crate::tracing_worker`]).
    pub tracing: crate::tracing_worker::TracingMetrics,
    /// Aerosol alerts ([`crate::aerosol_worker`]).
    pub aerosol: crate::aerosol_worker::AerosolMetrics,
    /// Contact chains ([`crate::contacts_service`]).
    pub contacts: crate::contacts_service::ContactsMetrics,
    /// Origin inference ([`crate::origin_service`]).
    pub origin: crate::origin_service::OriginMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Fresh metrics, registered under the `trustedge` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("trustedge");
        let m = Metrics {
            txs_submitted: Counter::default(),
            txs_accepted: Counter::default(),
            txs_rejected: Family::default(),
            txs_forward_failed: Counter::default(),
            blocks_committed: Counter::default(),
            block_txs_committed: Counter::default(),
            block_txs_failed: Counter::default(),
            height: Gauge::default(),
            mempool_txs: Gauge::default(),
            mempool_bytes: Gauge::default(),
            // 1 ms .. ~16 s
            commit_duration_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            chain_errors: Counter::default(),
            http_requests: Family::default(),
            gossip: GossipMetrics::default(),
            edge: crate::ingest::EdgeMetrics::default(),
            tracing: crate::tracing_worker::TracingMetrics::default(),
            aerosol: crate::aerosol_worker::AerosolMetrics::default(),
            contacts: crate::contacts_service::ContactsMetrics::default(),
            origin: crate::origin_service::OriginMetrics::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "txs_submitted",
            "Transactions received through the API",
            m.txs_submitted.clone(),
        );
        r.register(
            "txs_accepted",
            "Transactions admitted into the mempool or accepted upstream",
            m.txs_accepted.clone(),
        );
        r.register(
            "txs_rejected",
            "Transactions refused, by error code",
            m.txs_rejected.clone(),
        );
        r.register(
            "txs_forward_failed",
            "Transactions a follower could not forward upstream",
            m.txs_forward_failed.clone(),
        );
        r.register(
            "blocks_committed",
            "Blocks committed",
            m.blocks_committed.clone(),
        );
        r.register(
            "block_txs_committed",
            "Transactions in committed blocks",
            m.block_txs_committed.clone(),
        );
        r.register(
            "block_txs_failed",
            "Transactions in committed blocks whose result is a failure",
            m.block_txs_failed.clone(),
        );
        r.register("height", "Latest committed height", m.height.clone());
        r.register(
            "mempool_txs",
            "Transactions in the mempool",
            m.mempool_txs.clone(),
        );
        r.register(
            "mempool_bytes",
            "Encoded bytes in the mempool",
            m.mempool_bytes.clone(),
        );
        r.register(
            "commit_duration_seconds",
            "Time to propose (when sealing) and commit one block",
            m.commit_duration_seconds.clone(),
        );
        r.register(
            "chain_errors",
            "Errors while sealing or following blocks",
            m.chain_errors.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests by method, route and status",
            m.http_requests.clone(),
        );
        let g = &m.gossip;
        r.register(
            "gossip_txs_queued",
            "Transactions queued for a gossip peer",
            g.txs_queued.clone(),
        );
        r.register(
            "gossip_txs_sent",
            "Transactions a gossip peer admitted",
            g.txs_sent.clone(),
        );
        r.register(
            "gossip_txs_refused",
            "Transactions a gossip peer refused for good, by its code",
            g.txs_refused.clone(),
        );
        r.register(
            "gossip_retries",
            "Gossip pushes retried, by reason (full, busy, unreachable, error, bad_response)",
            g.retries.clone(),
        );
        r.register(
            "gossip_txs_dropped",
            "Transactions not delivered to a gossip peer, by reason",
            g.txs_dropped.clone(),
        );
        r.register(
            "gossip_queue_txs",
            "Transactions waiting for a gossip peer",
            g.queue_txs.clone(),
        );
        r.register(
            "gossip_txs_received",
            "Transactions received by gossip",
            g.txs_received.clone(),
        );
        r.register(
            "gossip_txs_received_accepted",
            "Transactions received by gossip and admitted here",
            g.txs_received_accepted.clone(),
        );
        m.edge.register(r);
        m.tracing.register(r);
        m.aerosol.register(r);
        m.contacts.register(r);
        m.origin.register(r);
        Metrics { registry, ..m }
    }

    /// Records a refused transaction.
    pub fn rejected(&self, code: &str) {
        self.txs_rejected
            .get_or_create(&CodeLabel {
                code: code.to_string(),
            })
            .inc();
    }

    /// Records a committed block.
    pub fn committed(&self, info: &CommitInfo, took: Duration) {
        self.blocks_committed.inc();
        self.block_txs_committed.inc_by(info.txs as u64);
        self.block_txs_failed.inc_by(info.failed as u64);
        self.height
            .set(i64::try_from(info.height).unwrap_or(i64::MAX));
        self.commit_duration_seconds.observe(took.as_secs_f64());
    }

    /// Sets the mempool gauges.
    pub fn mempool(&self, txs: usize, bytes: usize) {
        self.mempool_txs.set(i64::try_from(txs).unwrap_or(i64::MAX));
        self.mempool_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Records an HTTP request.
    pub fn http_request(&self, method: &str, route: &str, status: u16) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.to_string(),
                route: route.to_string(),
                status,
            })
            .inc();
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters_with_labels() {
        let m = Metrics::new();
        m.txs_submitted.inc();
        m.rejected("bad_signature");
        m.http_request("GET", "/v1/status", 200);
        let text = m.encode();
        assert!(text.contains("trustedge_txs_submitted_total 1"), "{text}");
        assert!(
            text.contains("trustedge_txs_rejected_total{code=\"bad_signature\"} 1"),
            "{text}"
        );
        assert!(text.contains("route=\"/v1/status\""), "{text}");
        assert!(text.contains("trustedge_commit_duration_seconds_bucket"));
    }
}
