//! Criterion benchmarks of the ledger alone: signature verification (single, and batched over
//! all cores), block execution (proposal from a full mempool) and block commit on redb.
//!
//! `cargo bench -p trustedge-chain`. `trustedge bench execution` prints the same rates with
//! their ratio to the batch-verification rate measured in the same run.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use trustedge_chain::verify::verify_parallel;
use trustedge_chain::{Ledger, LedgerConfig};
use trustedge_types::{Address, Keypair, SignedTx};

#[path = "support/workload.rs"]
mod workload;
use workload::{genesis, registration};

const BLOCK_TXS: usize = 1_000;

fn registrations(admin: &Keypair, n: usize) -> Vec<SignedTx> {
    (0..n as u64).map(|i| registration(admin, i)).collect()
}

fn bench(c: &mut Criterion) {
    let validator = Keypair::from_seed([1; 32]);
    let admin = Keypair::from_seed([2; 32]);
    let txs = registrations(&admin, BLOCK_TXS);
    let sign_bytes: Vec<Vec<u8>> = txs.iter().map(|t| t.body.sign_bytes()).collect();
    let items: Vec<_> = txs
        .iter()
        .zip(&sign_bytes)
        .map(|(t, m)| (t.body.signer, m.as_slice(), t.signature))
        .collect();

    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));
    g.bench_function("single", |b| {
        b.iter(|| items[0].0.verify(items[0].1, &items[0].2).unwrap())
    });
    g.throughput(Throughput::Elements(BLOCK_TXS as u64));
    g.bench_function("batch_all_cores_1000", |b| {
        b.iter(|| verify_parallel(&items))
    });
    g.finish();

    let mut g = c.benchmark_group("ledger");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(BLOCK_TXS as u64));
    let proposer = Address::of_member(&validator.public());
    let fresh = || {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(
            &dir.path().join("l.redb"),
            genesis(&validator, &admin),
            LedgerConfig::default(),
        )
        .unwrap();
        (dir, l)
    };
    g.bench_function("submit_1000 (verify + admit)", |b| {
        b.iter_batched(
            fresh,
            |(_d, l)| {
                for r in l.submit_batch(txs.clone()) {
                    r.unwrap();
                }
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("propose_1000 (execute + state root)", |b| {
        b.iter_batched(
            || {
                let (d, l) = fresh();
                l.submit_batch(txs.clone());
                (d, l)
            },
            |(_d, l)| l.propose_block(2, proposer).unwrap(),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("commit_1000 (redb + jmt)", |b| {
        b.iter_batched(
            || {
                let (d, l) = fresh();
                l.submit_batch(txs.clone());
                let block = l.propose_block(2, proposer).unwrap();
                let cert = l.solo_certificate(&block, &validator);
                (d, l, block, cert)
            },
            |(_d, l, block, cert)| l.commit_block(&block, &cert).unwrap(),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
