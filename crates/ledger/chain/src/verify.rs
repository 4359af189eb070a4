//! Signature verification: batched, spread over the cores, and cached per node.
//!
//! A transaction id covers its signature, so "this id verified" is a sound cache key: a
//! transaction reaches the node through the API, gossip and again inside a block, and its
//! signature is checked only the first time.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::thread;

use trustedge_types::crypto::verify_many;
use trustedge_types::{Hash, SignedTx};

/// Fewest signatures worth handing to another thread.
const MIN_PER_THREAD: usize = 64;

/// A bounded set of transaction ids whose signatures verified (oldest evicted first).
pub struct SigCache {
    inner: Mutex<CacheInner>,
    capacity: usize,
}

struct CacheInner {
    set: HashSet<Hash>,
    order: VecDeque<Hash>,
}

impl SigCache {
    /// A cache holding at most `capacity` ids.
    pub fn new(capacity: usize) -> SigCache {
        SigCache {
            inner: Mutex::new(CacheInner {
                set: HashSet::new(),
                order: VecDeque::new(),
            }),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        // A poisoned lock only means another thread panicked mid-insert; the set is still a
        // set of verified ids, so keep using it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `id` verified before.
    pub fn contains(&self, id: &Hash) -> bool {
        self.lock().set.contains(id)
    }

    /// Number of cached ids.
    pub fn len(&self) -> usize {
        self.lock().set.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert_all(&self, ids: impl Iterator<Item = Hash>) {
        let mut g = self.lock();
        for id in ids {
            if g.set.insert(id) {
                g.order.push_back(id);
                if g.order.len() > self.capacity
                    && let Some(old) = g.order.pop_front()
                {
                    g.set.remove(&old);
                }
            }
        }
    }

    /// Verifies the signatures of `txs` (whose ids are `ids`), using the cache, and returns
    /// one flag per transaction. Valid ones are added to the cache.
    pub fn verify(&self, txs: &[&SignedTx], ids: &[Hash]) -> Vec<bool> {
        let mut ok = vec![false; txs.len()];
        let todo: Vec<usize> = {
            let g = self.lock();
            (0..txs.len())
                .filter(|&i| {
                    let hit = g.set.contains(&ids[i]);
                    ok[i] = hit;
                    !hit
                })
                .collect()
        };
        if todo.is_empty() {
            return ok;
        }
        let sign_bytes: Vec<Vec<u8>> = todo.iter().map(|&i| txs[i].body.sign_bytes()).collect();
        let items: Vec<_> = todo
            .iter()
            .zip(&sign_bytes)
            .map(|(&i, m)| (txs[i].body.signer, m.as_slice(), txs[i].signature))
            .collect();
        let flags = verify_parallel(&items);
        for (k, &i) in todo.iter().enumerate() {
            ok[i] = flags[k];
        }
        self.insert_all(
            todo.iter()
                .zip(&flags)
                .filter(|(_, f)| **f)
                .map(|(&i, _)| ids[i]),
        );
        ok
    }
}

/// Batch-verifies on all cores: one batch per thread.
pub fn verify_parallel(
    items: &[(
        trustedge_types::PublicKey,
        &[u8],
        trustedge_types::Signature,
    )],
) -> Vec<bool> {
    let threads = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let per = items.len().div_ceil(threads).max(MIN_PER_THREAD);
    if items.len() <= per {
        return verify_many(items);
    }
    thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(per)
            .map(|chunk| s.spawn(move || verify_many(chunk)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                // A verifier thread cannot panic on any input; if it somehow did, treat its
                // chunk as unverified rather than bring the node down.
                h.join().unwrap_or_default()
            })
            .collect::<Vec<bool>>()
    })
    .into_iter()
    .chain(std::iter::repeat(false))
    .take(items.len())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustedge_types::{Keypair, Payload, TxBody};

    fn tx(seed: u8, nonce: u64) -> SignedTx {
        let k = Keypair::from_seed([seed; 32]);
        TxBody {
            chain_id: "c".into(),
            signer: k.public(),
            nonce,
            expiry_height: 10,
            payload: Payload {
                module: "orgs".into(),
                call: vec![],
            },
        }
        .sign(&k)
    }

    #[test]
    fn caches_valid_and_rejects_invalid() {
        let cache = SigCache::new(1000);
        let mut txs: Vec<SignedTx> = (0..300).map(|i| tx((i % 7) as u8, i)).collect();
        txs[17].signature.0[0] ^= 1;
        txs[250].body.nonce += 1;
        let refs: Vec<&SignedTx> = txs.iter().collect();
        let ids: Vec<Hash> = txs.iter().map(|t| t.hash()).collect();
        let ok = cache.verify(&refs, &ids);
        for (i, f) in ok.iter().enumerate() {
            assert_eq!(*f, i != 17 && i != 250, "tx {i}");
        }
        assert_eq!(cache.len(), 298);
        assert!(cache.contains(&ids[0]) && !cache.contains(&ids[17]));
        // second call is answered from the cache and agrees
        assert_eq!(cache.verify(&refs, &ids), ok);
    }

    #[test]
    fn cache_is_bounded() {
        let cache = SigCache::new(10);
        let txs: Vec<SignedTx> = (0..25).map(|i| tx(1, i)).collect();
        let refs: Vec<&SignedTx> = txs.iter().collect();
        let ids: Vec<Hash> = txs.iter().map(|t| t.hash()).collect();
        cache.verify(&refs, &ids);
        assert_eq!(cache.len(), 10);
        assert!(cache.contains(&ids[24]) && !cache.contains(&ids[0]));
    }
}
