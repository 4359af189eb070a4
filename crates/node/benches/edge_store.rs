//! Criterion benchmark of the edge store's group commit: `EdgeStore::put_many` of one
//! ingest batch (`INGEST_BATCH` readings, each an encounter-sized payload indexed under one
//! own key and three observed keys, as a phone's per-RPI upload is) into a store that
//! already holds `PREFILL` records, so the index is a realistic, larger-than-cache-line tree.
//!
//! `cargo bench -p trustedge-node --bench edge_store`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use trustedge_device::{DeviceIdentity, SignedReading};
use trustedge_edge::store::DataKey;
use trustedge_node::edge_store::{EdgeStore, IndexKeys, PutItem};
use trustedge_node::mqtt::INGEST_BATCH;
use trustedge_types::Keypair;

/// Records in the store before timing starts.
const PREFILL: usize = 50_000;
/// Devices the readings come from.
const DEVICES: usize = 2_000;
/// Payload bytes of one reading (about an encounter upload's).
const PAYLOAD: usize = 400;

struct Feed {
    devices: Vec<DeviceIdentity>,
    rng: ChaCha8Rng,
    now_ms: u64,
}

impl Feed {
    fn new() -> Feed {
        Feed {
            devices: (0..DEVICES as u64)
                .map(|i| {
                    let mut seed = [0u8; 32];
                    seed[..8].copy_from_slice(&i.to_le_bytes());
                    DeviceIdentity::new(Keypair::from_seed(seed), 0)
                })
                .collect(),
            rng: ChaCha8Rng::seed_from_u64(7),
            now_ms: 1_000,
        }
    }

    /// One batch of readings from distinct devices, with random RPIs as index keys.
    fn batch(&mut self, n: usize) -> Vec<(SignedReading, IndexKeys, [u8; 24])> {
        (0..n)
            .map(|_| {
                let d = self.rng.next_u32() as usize % DEVICES;
                self.now_ms += 1;
                let mut payload = vec![0u8; PAYLOAD];
                self.rng.fill_bytes(&mut payload);
                let r = self.devices[d]
                    .sign_reading(self.now_ms, "encounters", payload)
                    .unwrap();
                let mut key = || {
                    let mut k = vec![0u8; 16];
                    self.rng.fill_bytes(&mut k);
                    k
                };
                let keys = IndexKeys {
                    own: key(),
                    observed: vec![key(), key(), key()],
                };
                let mut nonce = [0u8; 24];
                self.rng.fill_bytes(&mut nonce);
                (r, keys, nonce)
            })
            .collect()
    }
}

fn put(store: &EdgeStore, batch: &[(SignedReading, IndexKeys, [u8; 24])], now_ms: u64) {
    let items = batch
        .iter()
        .map(|(r, k, n)| PutItem {
            reading: r,
            now_ms,
            keys: k.clone(),
            nonce: *n,
        })
        .collect();
    for o in store.put_many(items).unwrap() {
        o.unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        EdgeStore::open(&dir.path().join("edge.redb"), DataKey::from_bytes([9; 32])).unwrap();
    let mut feed = Feed::new();
    for _ in 0..PREFILL / INGEST_BATCH {
        let b = feed.batch(INGEST_BATCH);
        put(&store, &b, feed.now_ms);
    }
    let mut g = c.benchmark_group("edge_store");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(8));
    // One reading per transaction (a quiet edge), an ingest batch, and eight of them.
    for n in [1, INGEST_BATCH, 8 * INGEST_BATCH] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("put_many/{n}"), |b| {
            b.iter_batched(
                || feed.batch(n),
                |batch| put(&store, &batch, 0),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
