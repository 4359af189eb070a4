//! Criterion benchmarks of the contact-chain index: 2-hop queries over 10 million encounters
//! among 1 million cases with skewed degrees (generated here from a fixed seed).
//!
//! `cargo bench -p trustedge-contacts` (set `CONTACTS_BENCH_ENCOUNTERS` for another size).
//! Criterion reports means; `trustedge bench contacts` prints the p50/p99/max latencies
//! against the 10 ms p99 target.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use trustedge_contacts::synth::{SyntheticSpec, synthetic_encounters};
use trustedge_contacts::{CaseId, ChainQuery, ContactGraph, Direction, EncounterFilter};

fn bench(c: &mut Criterion) {
    let n: usize = std::env::var("CONTACTS_BENCH_ENCOUNTERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let spec = SyntheticSpec {
        cases: u32::try_from(n / 10).unwrap().max(2),
        ..SyntheticSpec::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let encounters = synthetic_encounters(&mut rng, &spec, n);
    let graph = ContactGraph::build(&encounters, EncounterFilter::default()).unwrap();
    drop(encounters);
    let cases: Vec<CaseId> = graph.cases().collect();
    let sources: Vec<CaseId> = (0..4096)
        .map(|_| cases[(rng.next_u64() % cases.len() as u64) as usize])
        .collect();

    let mut group = c.benchmark_group("contacts");
    group.measurement_time(Duration::from_secs(10));
    for (name, q) in [
        (
            "2hop_forward_time_respecting",
            ChainQuery {
                max_hops: 2,
                direction: Direction::Forward,
                time_respecting: true,
                ..ChainQuery::default()
            },
        ),
        (
            "2hop_untimed",
            ChainQuery {
                max_hops: 2,
                time_respecting: false,
                ..ChainQuery::default()
            },
        ),
    ] {
        let mut i = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % sources.len();
                black_box(graph.chains(sources[i], &q).unwrap())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
