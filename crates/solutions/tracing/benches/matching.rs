//! Criterion benchmarks of the matcher: 1000 diagnosis keys against 100k observed RPIs
//! (`match_keys`), beside the same expansion with no lookup (`expand_only`, the ceiling).
//! `trustedge bench matching` reports the same ratio from one run of the binary.

#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use trustedge_tracing::matching::{DEFAULT_SKEW_S, Observation, RpiIndex, expand_only, match_keys};
use trustedge_tracing::{DiagnosisKey, EnIntervalNumber, Rpi, TemporaryExposureKey};

fn stream(seed: &mut u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    for half in out.chunks_mut(8) {
        *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        half.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut seed = 42;
    let day = 2_700_000;
    let keys: Vec<DiagnosisKey> = (0..1000)
        .map(|_| {
            DiagnosisKey::confirmed(
                TemporaryExposureKey::from_random_bytes(stream(&mut seed)),
                EnIntervalNumber(day),
            )
        })
        .collect();
    let index = RpiIndex::new(
        (0..100_000u64)
            .map(|id| Observation {
                rpi: Rpi(stream(&mut seed)),
                time_s: u64::from(day) * 600 + id % 86_400,
                id,
            })
            .collect(),
    );
    let mut g = c.benchmark_group("matching_1000_keys_100k_rpis");
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("expand_only_ceiling", |b| b.iter(|| expand_only(&keys)));
    g.bench_function("match_keys", |b| {
        b.iter(|| match_keys(&keys, &index, DEFAULT_SKEW_S))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
