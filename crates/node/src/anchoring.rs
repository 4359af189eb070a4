//! The edge's anchoring and retention loop: cuts batches of stored records, submits their
//! `anchor.anchor_batch` transactions signed by the edge's key, watches the ledger until
//! each is anchored, and deletes records past retention.
//!
//! One batch is in flight at a time, so the edge key's nonces never race: a batch is cut
//! only when the previous one is anchored. A batch whose transaction is refused, fails or
//! does not land within [`RESUBMIT_AFTER`] is submitted again (same root, same ledger id,
//! fresh nonce); a batch once cut is never changed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use trustedge_chain::{Ledger, TxStatus};
use trustedge_types::{Address, Keypair, Payload, TxBody};

use crate::client::Client;
use crate::clock::Clock;
use crate::edge_store::{BatchMeta, BatchStatus, EdgeStore};
use crate::metrics::Metrics;
use crate::mqtt::MqttConfig;

/// How long a submitted anchor may take to land before it is submitted again.
pub const RESUBMIT_AFTER: Duration = Duration::from_secs(30);
/// How often the loop looks at the store and the ledger.
pub const TICK: Duration = Duration::from_millis(200);
/// Blocks an anchoring transaction stays valid for.
pub const EXPIRY_BLOCKS: u64 = 100;
/// Most records deleted per retention pass.
const PRUNE_BATCH: usize = 10_000;

/// The anchoring loop's inputs.
pub struct Anchorer {
    /// The store.
    pub store: Arc<EdgeStore>,
    /// The node's ledger replica.
    pub ledger: Arc<Ledger>,
    /// The edge's member key (an operator or admin of an edge-operator organisation).
    pub key: Keypair,
    /// The node's own API, through which transactions are admitted and forwarded.
    pub api: Client,
    /// Settings.
    pub config: MqttConfig,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The clock retention and batch intervals read.
    pub clock: Arc<dyn Clock>,
}

struct InFlight {
    first_id: u64,
    submitted_ms: Option<u64>,
}

impl Anchorer {
    /// Runs until `stop`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let edge = Address::of_member(&self.key.public());
        let mut last_cut_ms = self.clock.now_ms();
        let mut in_flight: Option<InFlight> = None;
        let mut last_prune_ms = 0u64;
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                () = tokio::time::sleep(TICK) => {}
            }
            let now = self.clock.now_ms();
            if let Err(e) = self
                .step(&edge, now, &mut last_cut_ms, &mut in_flight)
                .await
            {
                self.metrics.edge.anchor_errors.inc();
                tracing::warn!(error = %e, "edge anchoring step failed");
            }
            if now.saturating_sub(last_prune_ms) >= 60_000 || last_prune_ms == 0 {
                last_prune_ms = now;
                self.prune(now).await;
            }
            self.gauges().await;
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&EdgeStore, &Ledger) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let store = self.store.clone();
        let ledger = self.ledger.clone();
        tokio::task::spawn_blocking(move || f(&store, &ledger))
            .await
            .map_err(|e| e.to_string())?
    }

    async fn step(
        &self,
        edge: &Address,
        now: u64,
        last_cut_ms: &mut u64,
        in_flight: &mut Option<InFlight>,
    ) -> Result<(), String> {
        let pending = self
            .blocking(|s, _| s.pending_batches().map_err(|e| e.to_string()))
            .await?;
        let Some(batch) = pending.into_iter().next() else {
            *in_flight = None;
            // Nothing in flight: cut a batch when enough records wait or the interval passed.
            let stats = self
                .blocking(|s, _| s.stats().map_err(|e| e.to_string()))
                .await?;
            let due = now.saturating_sub(*last_cut_ms) >= self.config.anchor_interval_ms;
            if stats.unbatched == 0 || (stats.unbatched < self.config.anchor_max_records && !due) {
                return Ok(());
            }
            let rt = self.config.anchor_record_type.clone();
            let max = self.config.anchor_max_records;
            let cut = self
                .blocking(move |s, _| s.cut_batch(&rt, max).map_err(|e| e.to_string()))
                .await?;
            *last_cut_ms = now;
            if let Some(b) = cut {
                tracing::info!(first_id = b.first_id, count = b.count, root = %b.merkle_root, "cut an edge batch");
            }
            return Ok(());
        };
        // Is it on the ledger?
        let id = batch.anchor_id(edge);
        let anchored = self
            .blocking(move |_, l| {
                let snap = l.store().snapshot().map_err(|e| e.to_string())?;
                trustedge_contracts::anchor::batch(&snap, &id).map_err(|e| e.to_string())
            })
            .await?;
        if let Some(record) = anchored {
            let mut b = batch;
            b.status = BatchStatus::Anchored(record.height);
            b.tx_hash = Some(record.tx_hash);
            let b2 = b.clone();
            self.blocking(move |s, _| s.update_batch(&b2).map_err(|e| e.to_string()))
                .await?;
            self.metrics.edge.anchors_committed.inc();
            tracing::info!(
                first_id = b.first_id,
                count = b.count,
                height = record.height,
                "edge batch anchored"
            );
            *in_flight = None;
            return Ok(());
        }
        let fresh = match in_flight {
            Some(f) if f.first_id == batch.first_id => f.submitted_ms,
            _ => None,
        };
        let resubmit = match (fresh, batch.tx_hash) {
            (Some(at), Some(tx)) => {
                let status = self
                    .blocking(move |_, l| l.tx_status(&tx).map_err(|e| e.to_string()))
                    .await?;
                match status {
                    // Committed without an anchor: it failed (the snapshot above may also
                    // be a moment older than this status; the next tick settles that).
                    TxStatus::Committed(p) if !p.result.is_success() => {
                        self.metrics.edge.anchor_errors.inc();
                        tracing::warn!(outcome = ?p.result.outcome, "an anchoring transaction failed");
                        now.saturating_sub(at) >= RESUBMIT_AFTER.as_millis() as u64 / 6
                    }
                    _ => now.saturating_sub(at) >= RESUBMIT_AFTER.as_millis() as u64,
                }
            }
            _ => true,
        };
        if resubmit {
            self.submit(batch, now, in_flight).await?;
        }
        Ok(())
    }

    async fn submit(
        &self,
        mut batch: BatchMeta,
        now: u64,
        in_flight: &mut Option<InFlight>,
    ) -> Result<(), String> {
        let public = self.key.public();
        let (last, height, chain) = self
            .blocking(move |_, l| {
                Ok((
                    l.last_nonce(&public).map_err(|e| e.to_string())?,
                    l.height().map_err(|e| e.to_string())?,
                    l.chain_id().to_string(),
                ))
            })
            .await?;
        let tx = TxBody {
            chain_id: chain,
            signer: public,
            nonce: last.saturating_add(1),
            expiry_height: height.saturating_add(EXPIRY_BLOCKS),
            payload: Payload::new(trustedge_contracts::anchor::NAME, &batch.anchor_call()),
        }
        .sign(&self.key);
        *in_flight = Some(InFlight {
            first_id: batch.first_id,
            submitted_ms: Some(now),
        });
        match self.api.submit_tx(&tx).await {
            Ok(hash) => {
                self.metrics.edge.anchors_submitted.inc();
                batch.tx_hash = Some(hash);
                tracing::info!(first_id = batch.first_id, tx = %hash, "submitted an edge anchor");
                self.blocking(move |s, _| s.update_batch(&batch).map_err(|e| e.to_string()))
                    .await
            }
            Err(e) => Err(format!("anchor submission refused: {e}")),
        }
    }

    async fn prune(&self, now: u64) {
        let cutoff = now.saturating_sub(self.config.retention_days * 86_400_000);
        match self
            .blocking(move |s, _| {
                s.prune_before(cutoff, PRUNE_BATCH)
                    .map_err(|e| e.to_string())
            })
            .await
        {
            Ok(n) if n > 0 => {
                self.metrics.edge.records_pruned.inc_by(n as u64);
                tracing::info!(records = n, "retention deleted old edge records");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "edge retention failed"),
        }
    }

    async fn gauges(&self) {
        if let Ok(s) = self
            .blocking(|s, _| s.stats().map_err(|e| e.to_string()))
            .await
        {
            let m = &self.metrics.edge;
            m.store_records
                .set(i64::try_from(s.records).unwrap_or(i64::MAX));
            m.store_bytes
                .set(i64::try_from(s.file_bytes).unwrap_or(i64::MAX));
        }
    }
}
