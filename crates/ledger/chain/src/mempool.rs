//! The bounded, deduplicating mempool.
//!
//! Holds admitted transactions until a block includes them or they can no longer be
//! included (expired, or their nonce was used). It is bounded in count and bytes: a full
//! mempool refuses new transactions with [`MempoolError::Full`] (the API answers 429) and
//! never silently drops one it accepted, except for the two reasons above.

use std::collections::{BTreeMap, HashMap};

use trustedge_types::{Hash, Height, PublicKey, SignedTx};

/// Limits of a mempool.
#[derive(Clone, Copy, Debug)]
pub struct MempoolConfig {
    /// Most transactions held.
    pub max_txs: usize,
    /// Most encoded bytes held.
    pub max_bytes: usize,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_txs: 200_000,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Why the mempool refused a transaction.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MempoolError {
    /// It holds this transaction already.
    #[error("transaction {0} is already in the mempool")]
    Duplicate(Hash),
    /// It is full.
    #[error("mempool is full ({txs} transactions, {bytes} bytes); retry later")]
    Full {
        /// Transactions held.
        txs: usize,
        /// Bytes held.
        bytes: usize,
    },
}

struct Entry {
    tx: SignedTx,
    size_bytes: usize,
    seq: u64,
}

/// The mempool. Not synchronised: the ledger wraps it in a lock.
pub struct Mempool {
    config: MempoolConfig,
    by_id: HashMap<Hash, Entry>,
    /// Arrival order.
    arrivals: BTreeMap<u64, Hash>,
    next_seq: u64,
    bytes: usize,
}

impl Mempool {
    /// An empty mempool.
    pub fn new(config: MempoolConfig) -> Mempool {
        Mempool {
            config,
            by_id: HashMap::new(),
            arrivals: BTreeMap::new(),
            next_seq: 0,
            bytes: 0,
        }
    }

    /// Number of transactions.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Encoded bytes held.
    pub fn size_bytes(&self) -> usize {
        self.bytes
    }

    /// Whether it holds `id`.
    pub fn contains(&self, id: &Hash) -> bool {
        self.by_id.contains_key(id)
    }

    /// Adds an admitted transaction.
    pub fn insert(
        &mut self,
        id: Hash,
        tx: SignedTx,
        size_bytes: usize,
    ) -> Result<(), MempoolError> {
        if self.by_id.contains_key(&id) {
            return Err(MempoolError::Duplicate(id));
        }
        if self.by_id.len() >= self.config.max_txs
            || self.bytes + size_bytes > self.config.max_bytes
        {
            return Err(MempoolError::Full {
                txs: self.by_id.len(),
                bytes: self.bytes,
            });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.arrivals.insert(seq, id);
        self.bytes += size_bytes;
        self.by_id.insert(
            id,
            Entry {
                tx,
                size_bytes,
                seq,
            },
        );
        Ok(())
    }

    /// Removes a transaction.
    pub fn remove(&mut self, id: &Hash) -> Option<SignedTx> {
        let e = self.by_id.remove(id)?;
        self.arrivals.remove(&e.seq);
        self.bytes -= e.size_bytes;
        Some(e.tx)
    }

    /// Up to `max_txs` candidates (and `max_bytes`) for a block, oldest first, with each
    /// signer's transactions in nonce order (so a signer's later nonce never blocks its
    /// earlier one).
    pub fn candidates(&self, max_txs: usize, max_bytes: usize) -> Vec<(Hash, SignedTx)> {
        let mut picked: Vec<(u64, &Entry, Hash)> = Vec::new();
        let mut bytes = 0usize;
        for (&seq, id) in &self.arrivals {
            if picked.len() >= max_txs {
                break;
            }
            let Some(e) = self.by_id.get(id) else {
                continue;
            };
            if bytes + e.size_bytes > max_bytes {
                break;
            }
            bytes += e.size_bytes;
            picked.push((seq, e, *id));
        }
        // Order: by each signer's first arrival, then by nonce within the signer.
        let mut first_seen: HashMap<PublicKey, u64> = HashMap::new();
        for (seq, e, _) in &picked {
            first_seen.entry(e.tx.body.signer).or_insert(*seq);
        }
        picked.sort_by_key(|(seq, e, _)| {
            (
                first_seen.get(&e.tx.body.signer).copied().unwrap_or(*seq),
                e.tx.body.nonce,
            )
        });
        picked
            .into_iter()
            .map(|(_, e, id)| (id, e.tx.clone()))
            .collect()
    }

    /// Drops transactions that can no longer be included: expired before `next_height`, or
    /// whose nonce is not above `last_nonce(signer)`. Returns how many were dropped.
    pub fn evict(
        &mut self,
        next_height: Height,
        mut last_nonce: impl FnMut(&PublicKey) -> Option<u64>,
    ) -> usize {
        let dead: Vec<Hash> = self
            .by_id
            .iter()
            .filter(|(_, e)| {
                let b = &e.tx.body;
                b.expiry_height < next_height || last_nonce(&b.signer).is_some_and(|n| b.nonce <= n)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &dead {
            self.remove(id);
        }
        dead.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustedge_types::{Keypair, Payload, TxBody};

    fn tx(seed: u8, nonce: u64, expiry: u64) -> SignedTx {
        let k = Keypair::from_seed([seed; 32]);
        TxBody {
            chain_id: "c".into(),
            signer: k.public(),
            nonce,
            expiry_height: expiry,
            payload: Payload {
                module: "orgs".into(),
                call: vec![],
            },
        }
        .sign(&k)
    }

    #[test]
    fn bounded_dedup_and_full() {
        let mut m = Mempool::new(MempoolConfig {
            max_txs: 2,
            max_bytes: 1 << 20,
        });
        let a = tx(1, 1, 9);
        m.insert(a.hash(), a.clone(), 100).unwrap();
        assert_eq!(
            m.insert(a.hash(), a.clone(), 100),
            Err(MempoolError::Duplicate(a.hash()))
        );
        let b = tx(1, 2, 9);
        m.insert(b.hash(), b, 100).unwrap();
        let c = tx(1, 3, 9);
        assert!(matches!(
            m.insert(c.hash(), c, 100),
            Err(MempoolError::Full { .. })
        ));
        assert_eq!(m.len(), 2);
        assert_eq!(m.size_bytes(), 200);
        let mut m = Mempool::new(MempoolConfig {
            max_txs: 10,
            max_bytes: 150,
        });
        let a = tx(2, 1, 9);
        m.insert(a.hash(), a, 100).unwrap();
        let b = tx(2, 2, 9);
        assert!(matches!(
            m.insert(b.hash(), b, 100),
            Err(MempoolError::Full { .. })
        ));
    }

    #[test]
    fn candidates_keep_nonce_order_per_signer() {
        let mut m = Mempool::new(MempoolConfig::default());
        for t in [tx(1, 3, 9), tx(2, 1, 9), tx(1, 1, 9), tx(1, 2, 9)] {
            m.insert(t.hash(), t, 10).unwrap();
        }
        let order: Vec<(u8, u64)> = m
            .candidates(10, usize::MAX)
            .iter()
            .map(|(_, t)| {
                (
                    if t.body.signer == Keypair::from_seed([1; 32]).public() {
                        1
                    } else {
                        2
                    },
                    t.body.nonce,
                )
            })
            .collect();
        assert_eq!(order, vec![(1, 1), (1, 2), (1, 3), (2, 1)]);
        assert_eq!(m.candidates(2, usize::MAX).len(), 2);
    }

    #[test]
    fn evicts_expired_and_used_nonces() {
        let mut m = Mempool::new(MempoolConfig::default());
        let keep = tx(1, 5, 20);
        for t in [tx(1, 1, 20), tx(2, 1, 3), keep.clone()] {
            m.insert(t.hash(), t, 10).unwrap();
        }
        let k1 = Keypair::from_seed([1; 32]).public();
        let dropped = m.evict(4, |k| if *k == k1 { Some(2) } else { None });
        assert_eq!(dropped, 2);
        assert!(m.contains(&keep.hash()));
        assert_eq!(m.len(), 1);
        assert_eq!(m.size_bytes(), 10);
    }
}
