//! Mempool dissemination: transactions admitted here are pushed to the other validators.
//!
//! A transaction a client submits to any node must reach the validator that proposes the
//! next block. After local admission ([`trustedge_chain::Ledger::submit_batch`]) the API
//! hands the accepted transactions to [`Gossip::push`], which appends them to one bounded
//! queue per peer (`gossip_peers` in the configuration: the other validators' API URLs).
//! One task per peer sends the head of its queue as a batch to the peer's
//! `POST /v1/txs/batch`, marked with the header [`GOSSIP_HEADER`]; the peer admits them
//! (their signatures are checked once and then hit its signature cache when the block
//! arrives) and does **not** push them on.
//!
//! *One hop suffices.* The validator set is permissioned and small, and `init` makes every
//! validator a direct peer of every other one, so a transaction admitted by any validator
//! is pushed straight to all the others; relaying what arrived by gossip would only repeat
//! it. A node that is not a validator (edge, cloud) forwards to its upstream instead (see
//! [`crate::follower::Forwarder`]), and the validator that receives it pushes it on.
//!
//! *Order.* Each peer has at most one push in flight, and a push that must be retried is
//! retried before anything newer is sent, so each signer's transactions reach every peer in
//! the order this node admitted them. (A signer's later nonce committed first would make its
//! earlier ones stale.)
//!
//! *Bounds and losses.* Everything is bounded: the batch (`max_batch_txs`,
//! `max_batch_bytes`), the queue per peer (`max_queue_txs`, `max_queue_bytes`), requests in
//! flight (one per peer), the wait between retries (`retry_base_ms` doubling up to
//! `retry_max_ms`) and how long one batch is retried (`give_up_ms`). A peer whose mempool is
//! full answers 429 (or `mempool_full` for some items): those transactions are retried with
//! backoff, not dropped. Nothing is dropped silently: a transaction that does not fit in a
//! peer's queue, or whose push is given up after `give_up_ms` (the peer is down or stays
//! full), is counted in `trustedge_gossip_txs_dropped_total{peer,reason}` and logged. Such a
//! transaction is still in this node's mempool and in every other peer's; a peer that was
//! down catches up through blocks.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use trustedge_types::Hash;
use trustedge_types::tx::MAX_TX_BYTES;

use crate::api::types::MAX_BATCH_TXS;
use crate::client::{Client, ClientError};
use crate::metrics::Metrics;

/// The header that marks a batch pushed by gossip; its receiver does not push it on.
pub const GOSSIP_HEADER: &str = "x-trustedge-gossip";
/// Most gossip peers a node may name.
pub const MAX_GOSSIP_PEERS: usize = 64;
/// Shortest time between two "queue full" warnings about one peer (the metric counts all).
const QUEUE_FULL_WARN_EVERY: Duration = Duration::from_secs(10);
/// Bytes a batch request carries per transaction besides its hex (JSON framing).
const PER_TX_FRAMING_BYTES: usize = 3;

/// Bounds of gossip (the `[gossip]` table of `config.toml`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GossipLimits {
    /// Most transactions in one push.
    #[serde(default = "defaults::max_batch_txs")]
    pub max_batch_txs: usize,
    /// Most encoded transaction bytes in one push (sent as hex: twice this on the wire).
    #[serde(default = "defaults::max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// Most transactions waiting for one peer.
    #[serde(default = "defaults::max_queue_txs")]
    pub max_queue_txs: usize,
    /// Most encoded transaction bytes waiting for one peer.
    #[serde(default = "defaults::max_queue_bytes")]
    pub max_queue_bytes: usize,
    /// Wait after the first failed push; doubled after each further failure.
    #[serde(default = "defaults::retry_base_ms")]
    pub retry_base_ms: u64,
    /// Longest wait between retries.
    #[serde(default = "defaults::retry_max_ms")]
    pub retry_max_ms: u64,
    /// How long one batch is retried (peer unreachable, busy or full) before the peer's
    /// waiting transactions are dropped for it (counted).
    #[serde(default = "defaults::give_up_ms")]
    pub give_up_ms: u64,
}

mod defaults {
    pub fn max_batch_txs() -> usize {
        2_000
    }
    pub fn max_batch_bytes() -> usize {
        512 * 1024
    }
    pub fn max_queue_txs() -> usize {
        100_000
    }
    pub fn max_queue_bytes() -> usize {
        64 * 1024 * 1024
    }
    pub fn retry_base_ms() -> u64 {
        50
    }
    pub fn retry_max_ms() -> u64 {
        2_000
    }
    pub fn give_up_ms() -> u64 {
        30_000
    }
}

impl Default for GossipLimits {
    fn default() -> Self {
        GossipLimits {
            max_batch_txs: defaults::max_batch_txs(),
            max_batch_bytes: defaults::max_batch_bytes(),
            max_queue_txs: defaults::max_queue_txs(),
            max_queue_bytes: defaults::max_queue_bytes(),
            retry_base_ms: defaults::retry_base_ms(),
            retry_max_ms: defaults::retry_max_ms(),
            give_up_ms: defaults::give_up_ms(),
        }
    }
}

impl GossipLimits {
    /// Checks every bound; `max_request_bytes` is the largest body a peer accepts (assumed
    /// to be configured like this node). The message names the field.
    pub fn validate(&self, max_request_bytes: usize) -> Result<(), String> {
        if !(1..=MAX_BATCH_TXS).contains(&self.max_batch_txs) {
            return Err(format!(
                "gossip.max_batch_txs is {}; it must be in 1..={MAX_BATCH_TXS}",
                self.max_batch_txs
            ));
        }
        // One largest transaction must fit, and a full batch in hex must fit in a request.
        let wire = |bytes: usize, txs: usize| {
            bytes
                .saturating_mul(2)
                .saturating_add(txs.saturating_mul(PER_TX_FRAMING_BYTES))
                .saturating_add(64)
        };
        if self.max_batch_bytes < MAX_TX_BYTES
            || wire(self.max_batch_bytes, self.max_batch_txs) > max_request_bytes
        {
            return Err(format!(
                "gossip.max_batch_bytes is {}; it must be at least {MAX_TX_BYTES} (one largest \
                 transaction), and twice it (hex) must fit in max_request_bytes ({max_request_bytes})",
                self.max_batch_bytes
            ));
        }
        if self.max_queue_txs < self.max_batch_txs || self.max_queue_bytes < self.max_batch_bytes {
            return Err(
                "gossip.max_queue_txs and gossip.max_queue_bytes must be at least one batch \
                 (max_batch_txs, max_batch_bytes)"
                    .into(),
            );
        }
        for (field, v) in [
            ("gossip.retry_base_ms", self.retry_base_ms),
            ("gossip.retry_max_ms", self.retry_max_ms),
            ("gossip.give_up_ms", self.give_up_ms),
        ] {
            if !crate::config::INTERVAL_MS_RANGE.contains(&v) {
                return Err(format!(
                    "{field} is {v}; it must be in {}..={}",
                    crate::config::INTERVAL_MS_RANGE.start(),
                    crate::config::INTERVAL_MS_RANGE.end()
                ));
            }
        }
        if self.retry_max_ms < self.retry_base_ms {
            return Err("gossip.retry_max_ms must be at least gossip.retry_base_ms".into());
        }
        Ok(())
    }

    /// The wait after failure number `failure` (0-based).
    pub fn delay(&self, failure: u32) -> Duration {
        let factor = 1u64.checked_shl(failure.min(20)).unwrap_or(u64::MAX);
        Duration::from_millis(
            self.retry_base_ms
                .saturating_mul(factor)
                .min(self.retry_max_ms),
        )
    }
}

/// Checks a list of gossip peers: plain-HTTP URLs, no duplicates, not `own_url`.
pub fn check_peers(peers: &[String], own_url: &str) -> Result<(), String> {
    if peers.len() > MAX_GOSSIP_PEERS {
        return Err(format!(
            "gossip_peers lists {} nodes; at most {MAX_GOSSIP_PEERS}",
            peers.len()
        ));
    }
    let norm = |u: &str| u.trim_end_matches('/').to_string();
    let mut seen = std::collections::BTreeSet::new();
    for p in peers {
        if !p.starts_with("http://") || p.len() <= "http://".len() || p.len() > 256 {
            return Err(format!(
                "gossip_peers entry {p:?} must be an http:// URL (the node speaks plain HTTP)"
            ));
        }
        if norm(p) == norm(own_url) {
            return Err(format!(
                "gossip_peers names this node's own api_url {p:?}; list the other validators"
            ));
        }
        if !seen.insert(norm(p)) {
            return Err(format!("gossip_peers names {p:?} twice"));
        }
    }
    Ok(())
}

/// A transaction on its way to the peers: its id and canonical bytes in hex, shared by
/// every peer's queue.
#[derive(Debug)]
pub struct GossipTx {
    /// Transaction id.
    pub id: Hash,
    /// Hex of the canonical encoding, as `POST /v1/txs/batch` takes it.
    pub hex: String,
}

impl GossipTx {
    /// A transaction from its id and the hex of its canonical bytes.
    pub fn new(id: Hash, hex: String) -> Arc<GossipTx> {
        Arc::new(GossipTx { id, hex })
    }

    /// Encoded size in bytes.
    fn size_bytes(&self) -> usize {
        self.hex.len() / 2
    }
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Arc<GossipTx>>,
    bytes: usize,
    /// Dropped because the queue was full, since the last warning.
    dropped_unwarned: u64,
    last_warning: Option<Instant>,
}

/// One peer: its queue and how to reach it.
struct Peer {
    url: String,
    client: Client,
    queue: Mutex<Queue>,
    notify: Notify,
}

impl Peer {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue is consistent between statements; a panic elsewhere does not spoil it.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Gossip to a fixed set of peers. Cheap to share (`Arc<Gossip>`).
pub struct Gossip {
    peers: Vec<Arc<Peer>>,
    limits: GossipLimits,
    metrics: Arc<Metrics>,
}

impl Gossip {
    /// Gossip to `peers` (API URLs), each request timing out after `timeout`. Nothing is
    /// sent until [`Gossip::start`].
    pub fn new(
        peers: &[String],
        limits: GossipLimits,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Arc<Gossip> {
        let peers = peers
            .iter()
            .map(|u| {
                let url = u.trim_end_matches('/').to_string();
                Arc::new(Peer {
                    client: Client::with_timeout(url.clone(), timeout),
                    url,
                    queue: Mutex::new(Queue::default()),
                    notify: Notify::new(),
                })
            })
            .collect();
        Arc::new(Gossip {
            peers,
            limits,
            metrics,
        })
    }

    /// Starts one sending task per peer; they stop when `shutdown` turns true (what is still
    /// queued then is not sent). The handle completes when all have stopped.
    pub fn start(self: &Arc<Self>, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        let tasks: Vec<JoinHandle<()>> = self
            .peers
            .iter()
            .map(|p| {
                let sender = PeerSender {
                    peer: p.clone(),
                    limits: self.limits,
                    metrics: self.metrics.clone(),
                };
                tokio::spawn(sender.run(shutdown.clone()))
            })
            .collect();
        tokio::spawn(async move {
            for t in tasks {
                // A sender cannot panic on any input; if one did, the others still stop.
                let _ = t.await;
            }
        })
    }

    /// The peers' URLs.
    pub fn peers(&self) -> Vec<String> {
        self.peers.iter().map(|p| p.url.clone()).collect()
    }

    /// Transactions waiting for each peer, in the order of [`Gossip::peers`].
    pub fn queued(&self) -> Vec<usize> {
        self.peers.iter().map(|p| p.lock().items.len()).collect()
    }

    /// Queues transactions (admitted here, in admission order) for every peer. A peer whose
    /// queue is full does not get the ones that do not fit: they are counted as dropped
    /// (reason `queue_full`) and stay in this node's mempool.
    pub fn push(&self, txs: &[Arc<GossipTx>]) {
        if txs.is_empty() {
            return;
        }
        let g = &self.metrics.gossip;
        for p in &self.peers {
            let (queued, dropped, len, warn) = {
                let mut q = p.lock();
                let mut queued = 0u64;
                let mut dropped = 0u64;
                for tx in txs {
                    let size = tx.size_bytes();
                    if q.items.len() < self.limits.max_queue_txs
                        && q.bytes + size <= self.limits.max_queue_bytes
                    {
                        q.bytes += size;
                        q.items.push_back(tx.clone());
                        queued += 1;
                    } else {
                        dropped += 1;
                    }
                }
                // Warn at most every QUEUE_FULL_WARN_EVERY per peer: a peer that is down
                // fills its queue on every push.
                q.dropped_unwarned += dropped;
                let due = q
                    .last_warning
                    .is_none_or(|t| t.elapsed() >= QUEUE_FULL_WARN_EVERY);
                let warn = (q.dropped_unwarned > 0 && due).then(|| {
                    q.last_warning = Some(Instant::now());
                    std::mem::take(&mut q.dropped_unwarned)
                });
                (queued, dropped, q.items.len(), warn)
            };
            g.queued(&p.url, queued, len);
            if dropped > 0 {
                g.dropped(&p.url, "queue_full", dropped);
            }
            if let Some(dropped) = warn {
                tracing::warn!(
                    peer = %p.url,
                    dropped,
                    "gossip queue full: transactions not pushed to this peer (they stay in this \
                     node's mempool and the other peers'); counted in \
                     trustedge_gossip_txs_dropped_total"
                );
            }
            if queued > 0 {
                p.notify.notify_one();
            }
        }
    }
}

/// Why a push is retried; the metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    /// 429, or items refused with `mempool_full`.
    Full,
    /// 503 (`busy`, `timeout`).
    Busy,
    /// Cannot connect, or the connection failed.
    Unreachable,
    /// Another 5xx.
    Error,
    /// An answer that does not decode or does not match the batch.
    BadResponse,
}

impl Retry {
    fn label(self) -> &'static str {
        match self {
            Retry::Full => "full",
            Retry::Busy => "busy",
            Retry::Unreachable => "unreachable",
            Retry::Error => "error",
            Retry::BadResponse => "bad_response",
        }
    }

    /// The reason a batch given up after this failure is dropped with.
    fn gave_up_label(self) -> &'static str {
        match self {
            Retry::Full => "gave_up_full",
            Retry::Busy => "gave_up_busy",
            Retry::Unreachable => "gave_up_unreachable",
            Retry::Error => "gave_up_error",
            Retry::BadResponse => "gave_up_bad_response",
        }
    }
}

/// What one push achieved.
enum Pushed {
    /// Every transaction was taken or refused for good.
    Done,
    /// These must be sent again (in this order), for this reason.
    Again(Vec<Arc<GossipTx>>, Retry),
    /// The peer refused the request itself for good (4xx other than 429): dropped.
    Refused(ClientError),
}

struct PeerSender {
    peer: Arc<Peer>,
    limits: GossipLimits,
    metrics: Arc<Metrics>,
}

impl PeerSender {
    /// Takes the next batch off the queue.
    fn take_batch(&self) -> Vec<Arc<GossipTx>> {
        let mut q = self.peer.lock();
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        while batch.len() < self.limits.max_batch_txs {
            let Some(size) = q.items.front().map(|t| t.size_bytes()) else {
                break;
            };
            if !batch.is_empty() && bytes + size > self.limits.max_batch_bytes {
                break;
            }
            if let Some(tx) = q.items.pop_front() {
                q.bytes = q.bytes.saturating_sub(size);
                bytes += size;
                batch.push(tx);
            }
        }
        self.metrics.gossip.queue_len(&self.peer.url, q.items.len());
        batch
    }

    /// Empties the queue (giving up on a peer); returns how many were dropped.
    fn clear_queue(&self) -> usize {
        let mut q = self.peer.lock();
        let n = q.items.len();
        q.items.clear();
        q.bytes = 0;
        self.metrics.gossip.queue_len(&self.peer.url, 0);
        n
    }

    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut pending: Vec<Arc<GossipTx>> = Vec::new();
        let mut failures: u32 = 0;
        let mut first_failure: Option<Instant> = None;
        loop {
            if *shutdown.borrow() {
                return;
            }
            if pending.is_empty() {
                pending = self.take_batch();
                if pending.is_empty() {
                    tokio::select! {
                        _ = shutdown.changed() => {}
                        () = self.peer.notify.notified() => {}
                    }
                    continue;
                }
            }
            let outcome = tokio::select! {
                _ = shutdown.changed() => return,
                o = self.push(&pending) => o,
            };
            match outcome {
                Pushed::Done => {
                    pending.clear();
                    failures = 0;
                    first_failure = None;
                }
                Pushed::Refused(e) => {
                    self.metrics.gossip.dropped(
                        &self.peer.url,
                        "refused_batch",
                        pending.len() as u64,
                    );
                    tracing::warn!(
                        peer = %self.peer.url, error = %e, txs = pending.len(),
                        "gossip batch refused by the peer; not retried"
                    );
                    pending.clear();
                    failures = 0;
                    first_failure = None;
                }
                Pushed::Again(rest, why) => {
                    self.metrics.gossip.retry(&self.peer.url, why.label());
                    pending = rest;
                    let since = *first_failure.get_or_insert_with(Instant::now);
                    if since.elapsed() >= Duration::from_millis(self.limits.give_up_ms) {
                        let dropped = pending.len() + self.clear_queue();
                        self.metrics.gossip.dropped(
                            &self.peer.url,
                            why.gave_up_label(),
                            dropped as u64,
                        );
                        tracing::warn!(
                            peer = %self.peer.url,
                            reason = why.label(),
                            dropped,
                            give_up_ms = self.limits.give_up_ms,
                            "gossip to this peer failed for too long; its waiting transactions \
                             are dropped for it (they stay in this node's mempool)"
                        );
                        pending.clear();
                        failures = 0;
                        first_failure = None;
                        continue;
                    }
                    let pause = self.limits.delay(failures);
                    failures = failures.saturating_add(1);
                    tracing::debug!(peer = %self.peer.url, reason = why.label(), ?pause, "gossip retry");
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// Sends one batch and sorts its transactions into done and to be sent again.
    async fn push(&self, batch: &[Arc<GossipTx>]) -> Pushed {
        let body = batch_body(batch);
        let g = &self.metrics.gossip;
        let resp = match self.peer.client.submit_gossip(body).await {
            Ok(r) => r,
            Err(e) => {
                let why = match &e {
                    ClientError::Transport { .. } => Retry::Unreachable,
                    ClientError::Decode { .. } => Retry::BadResponse,
                    ClientError::Api { status: 429, .. } => Retry::Full,
                    ClientError::Api { status: 503, .. } => Retry::Busy,
                    ClientError::Api { status, .. } if *status >= 500 => Retry::Error,
                    ClientError::Api { .. } => return Pushed::Refused(e),
                };
                return Pushed::Again(batch.to_vec(), why);
            }
        };
        if resp.results.len() != batch.len() {
            return Pushed::Again(batch.to_vec(), Retry::BadResponse);
        }
        let mut again = Vec::new();
        let mut sent = 0u64;
        for (tx, item) in batch.iter().zip(resp.results) {
            match (item.hash, item.error) {
                (Some(_), _) => sent += 1,
                (None, Some(e)) if e.code == "mempool_full" => again.push(tx.clone()),
                (None, Some(e)) => g.refused(&self.peer.url, &e.code),
                (None, None) => g.refused(&self.peer.url, "empty_item"),
            }
        }
        g.sent(&self.peer.url, sent);
        if again.is_empty() {
            Pushed::Done
        } else {
            Pushed::Again(again, Retry::Full)
        }
    }
}

/// The body of `POST /v1/txs/batch` for `batch`.
fn batch_body(batch: &[Arc<GossipTx>]) -> Vec<u8> {
    crate::client::batch_body(batch.iter().map(|t| t.hex.as_str()))
}

/// Whether a request carries [`GOSSIP_HEADER`].
pub fn is_gossip(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key(GOSSIP_HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_and_name_the_field() {
        let max_request =
            crate::config::NodeConfig::new("n", crate::Role::Edge, "a", "b").max_request_bytes;
        assert_eq!(GossipLimits::default().validate(max_request), Ok(()));
        let d = GossipLimits::default;
        let cases = [
            (
                GossipLimits {
                    max_batch_txs: 0,
                    ..d()
                },
                "max_batch_txs",
            ),
            (
                GossipLimits {
                    max_batch_bytes: max_request,
                    ..d()
                },
                "max_batch_bytes",
            ),
            (
                GossipLimits {
                    max_queue_txs: 1,
                    ..d()
                },
                "max_queue_txs",
            ),
            (
                GossipLimits {
                    retry_max_ms: 1,
                    ..d()
                },
                "retry_max_ms",
            ),
            (
                GossipLimits {
                    give_up_ms: 0,
                    ..d()
                },
                "give_up_ms",
            ),
        ];
        for (l, field) in cases {
            let e = l.validate(max_request).unwrap_err();
            assert!(e.contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn peers_are_checked() {
        let own = "http://127.0.0.1:1";
        assert!(check_peers(&["http://127.0.0.1:2".into()], own).is_ok());
        assert!(
            check_peers(&["http://127.0.0.1:1/".into()], own)
                .unwrap_err()
                .contains("own api_url")
        );
        assert!(
            check_peers(&["https://x".into()], own)
                .unwrap_err()
                .contains("http://")
        );
        let twice = vec!["http://a:1".to_string(), "http://a:1/".to_string()];
        assert!(check_peers(&twice, own).unwrap_err().contains("twice"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let l = GossipLimits {
            retry_base_ms: 50,
            retry_max_ms: 300,
            ..GossipLimits::default()
        };
        let d: Vec<u128> = (0..5).map(|i| l.delay(i).as_millis()).collect();
        assert_eq!(d, vec![50, 100, 200, 300, 300]);
        assert_eq!(l.delay(u32::MAX), Duration::from_millis(300));
    }

    #[test]
    fn the_body_is_the_batch_request() {
        let batch = vec![
            GossipTx::new(Hash::ZERO, "00ff".into()),
            GossipTx::new(Hash::ZERO, "aa".into()),
        ];
        let body = batch_body(&batch);
        let req: crate::api::types::SubmitBatchRequest = serde_json::from_slice(&body).unwrap();
        assert_eq!(req.txs, vec!["00ff".to_string(), "aa".to_string()]);
        assert_eq!(batch_body(&[]), b"{\"txs\":[]}");
    }

    #[tokio::test]
    async fn a_full_queue_drops_what_does_not_fit_and_counts_it() {
        let metrics = Arc::new(Metrics::new());
        let limits = GossipLimits {
            max_batch_txs: 2,
            max_queue_txs: 3,
            ..GossipLimits::default()
        };
        let g = Gossip::new(
            &["http://127.0.0.1:9".into()],
            limits,
            Duration::from_secs(1),
            metrics.clone(),
        );
        let txs: Vec<_> = (0..5u8)
            .map(|i| GossipTx::new(Hash::sha256(&[i]), "00".repeat(100)))
            .collect();
        g.push(&txs);
        assert_eq!(g.queued(), vec![3]);
        let text = metrics.encode();
        assert!(
            text.contains(
                "trustedge_gossip_txs_dropped_total{peer=\"http://127.0.0.1:9\",reason=\"queue_full\"} 2"
            ),
            "{text}"
        );
    }
}
