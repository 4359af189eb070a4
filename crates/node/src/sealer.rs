//! Block sealing for a chain with exactly one validator.
//!
//! The only validator of a single-validator chain seals blocks itself, through the same
//! interface consensus drives:
//! [`Ledger::propose_block`] → [`Ledger::solo_certificate`] → [`Ledger::commit_block`].
//! (Running one validator through Malachite would work too, but would add a WAL, a p2p port
//! and round timeouts for nothing.) With more than one validator no single node may do this
//! (its certificate would not reach the two-thirds quorum), so validators of such a chain run
//! BFT consensus instead ([`trustedge_consensus`], see [`crate::node::choose_mode`]).
//!
//! Pacing: every `block_interval_ms` while the mempool holds transactions, otherwise every
//! `empty_block_interval_ms` (an empty block still advances time and proves liveness). Block
//! times come from the injected [`Clock`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use trustedge_chain::{CommitInfo, Ledger};
use trustedge_types::{Address, Keypair, ValidatorSet};

use crate::NodeError;
use crate::clock::Clock;
use crate::metrics::Metrics;

/// Longest pause after repeated sealing failures.
pub const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(5);

/// Why a node may not seal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealRefusal {
    /// The genesis names several validators.
    #[error(
        "multi-validator networks need the consensus engine: the validator set has {0} \
         validators, and a single node can only seal for a set of one"
    )]
    MultiValidator(usize),
    /// The only validator is another key.
    #[error("this node's key {key} is not the chain's validator {validator}")]
    NotTheValidator {
        /// This node's address.
        key: Address,
        /// The validator's address.
        validator: Address,
    },
}

/// Whether `key` may seal for `set`: the set must be exactly that key.
pub fn check_can_seal(set: &ValidatorSet, key: &Keypair) -> Result<(), SealRefusal> {
    match set.validators.as_slice() {
        [only] if only.public_key == key.public() => Ok(()),
        [only] => Err(SealRefusal::NotTheValidator {
            key: Address::of_member(&key.public()),
            validator: only.address,
        }),
        many => Err(SealRefusal::MultiValidator(many.len())),
    }
}

/// Seals blocks for a single-validator chain.
pub struct Sealer {
    ledger: Arc<Ledger>,
    key: Keypair,
    address: Address,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    block_interval: Duration,
    empty_block_interval_ms: u64,
    last_seal_ms: AtomicU64,
}

impl Sealer {
    /// A sealer, if `key` is the chain's only validator.
    pub fn new(
        ledger: Arc<Ledger>,
        key: Keypair,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        block_interval_ms: u64,
        empty_block_interval_ms: u64,
    ) -> Result<Sealer, NodeError> {
        let set = ledger.validator_set()?;
        check_can_seal(&set, &key).map_err(|e| NodeError::Role(e.to_string()))?;
        let now = clock.now_ms();
        Ok(Sealer {
            ledger,
            address: Address::of_member(&key.public()),
            key,
            clock,
            metrics,
            block_interval: Duration::from_millis(block_interval_ms),
            empty_block_interval_ms,
            last_seal_ms: AtomicU64::new(now),
        })
    }

    /// Whether a block is due at `now_ms` with `mempool_txs` waiting.
    pub fn is_due(&self, now_ms: u64, mempool_txs: usize) -> bool {
        mempool_txs > 0
            || now_ms.saturating_sub(self.last_seal_ms.load(Ordering::SeqCst))
                >= self.empty_block_interval_ms
    }

    /// Proposes, certifies and commits one block at the clock's time. Blocks on disk: call
    /// from a blocking thread.
    pub fn seal(&self) -> Result<CommitInfo, NodeError> {
        let started = Instant::now();
        let now = self.clock.now_ms();
        let block = self.ledger.propose_block(now, self.address)?;
        let cert = self.ledger.solo_certificate(&block, &self.key);
        let info = self.ledger.commit_block(&block, &cert)?;
        self.last_seal_ms.store(now, Ordering::SeqCst);
        self.metrics.committed(&info, started.elapsed());
        let (txs, bytes) = self.ledger.mempool_size();
        self.metrics.mempool(txs, bytes);
        tracing::debug!(
            height = info.height,
            txs = info.txs,
            failed = info.failed,
            "sealed"
        );
        Ok(info)
    }

    /// Seals a block if one is due. Blocks on disk.
    pub fn tick(&self) -> Result<Option<CommitInfo>, NodeError> {
        let (mempool_txs, _) = self.ledger.mempool_size();
        if !self.is_due(self.clock.now_ms(), mempool_txs) {
            return Ok(None);
        }
        self.seal().map(Some)
    }

    /// Seals until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let mut failures: u32 = 0;
        loop {
            let pause = if failures == 0 {
                this.block_interval
            } else {
                this.block_interval
                    .saturating_mul(1u32.checked_shl(failures.min(16)).unwrap_or(u32::MAX))
                    .min(MAX_FAILURE_BACKOFF)
            };
            tokio::select! {
                _ = shutdown.changed() => {}
                () = tokio::time::sleep(pause) => {}
            }
            if *shutdown.borrow() {
                return;
            }
            let s = this.clone();
            match tokio::task::spawn_blocking(move || s.tick()).await {
                Ok(Ok(_)) => failures = 0,
                Ok(Err(e)) => {
                    failures = failures.saturating_add(1);
                    this.metrics.chain_errors.inc();
                    tracing::error!(error = %e, failures, "sealing a block failed");
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    this.metrics.chain_errors.inc();
                    tracing::error!(error = %e, "sealing task failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustedge_types::Validator;

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

    #[test]
    fn only_the_single_validator_may_seal() {
        let a = Keypair::from_seed([1; 32]);
        let b = Keypair::from_seed([2; 32]);
        assert_eq!(check_can_seal(&set(&[&a]), &a), Ok(()));
        assert!(matches!(
            check_can_seal(&set(&[&a]), &b),
            Err(SealRefusal::NotTheValidator { .. })
        ));
        let e = check_can_seal(&set(&[&a, &b]), &a).unwrap_err();
        assert_eq!(e, SealRefusal::MultiValidator(2));
        assert!(
            e.to_string()
                .contains("multi-validator networks need the consensus engine")
        );
    }
}
