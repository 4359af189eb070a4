//! The matcher: planted encounters found within the skew and refused outside it, revoked
//! and invalid keys skipped with their reason, partial periods, and the index against a
//! plain map.

use std::collections::HashMap;

use proptest::prelude::*;
use trustedge_tracing::matching::{
    DEFAULT_SKEW_S, Observation, RpiIndex, SkipReason, expand_only, match_keys,
};
use trustedge_tracing::{DiagnosisKey, EnIntervalNumber, ReportType, Rpi, TemporaryExposureKey};

use crate::Rng;

/// A rolling start (a multiple of 144) in 2021.
const DAY: u32 = 2_700_000;

fn key(rng: &mut Rng, day: u32) -> DiagnosisKey {
    DiagnosisKey::confirmed(
        TemporaryExposureKey::from_random_bytes(rng.bytes()),
        EnIntervalNumber(day),
    )
}

fn rpi_of(k: &DiagnosisKey, i: u32) -> Rpi {
    k.tek()
        .rpik()
        .unwrap()
        .rpi(EnIntervalNumber(k.rolling_start_interval_number + i))
}

fn interval_start_s(k: &DiagnosisKey, i: u32) -> u64 {
    u64::from(k.rolling_start_interval_number + i) * 600
}

fn noise(rng: &mut Rng, n: usize, id0: u64) -> Vec<Observation> {
    (0..n)
        .map(|i| Observation {
            rpi: Rpi(rng.bytes()),
            time_s: u64::from(DAY) * 600 + rng.next_u64() % 86_400,
            id: id0 + i as u64,
        })
        .collect()
}

#[test]
fn planted_encounters_match_within_skew_and_not_outside() {
    let mut rng = Rng::new(20);
    let keys: Vec<DiagnosisKey> = (0..50)
        .map(|d| key(&mut rng, DAY - (d % 14) * 144))
        .collect();
    let mut obs = noise(&mut rng, 10_000, 1_000_000);
    let skew = DEFAULT_SKEW_S;
    // (key, interval, time offset from the interval start, id, should match)
    let plants = [
        (3, 0, 0, 1, true),
        (3, 143, 599, 2, true),
        (7, 50, 600 + skew as i64, 3, true), // last second of +2 h
        (7, 51, -(skew as i64), 4, true),    // first second of −2 h
        (9, 80, 601 + skew as i64, 5, false), // one second past +2 h
        (9, 81, -(skew as i64) - 1, 6, false), // one second before −2 h
        (11, 10, 86_400, 7, false),          // a day later: a replayed RPI
    ];
    for &(k, i, dt, id, _) in &plants {
        obs.push(Observation {
            rpi: rpi_of(&keys[k], i),
            time_s: (interval_start_s(&keys[k], i) as i64 + dt) as u64,
            id,
        });
    }
    // The same RPI observed twice within the skew: two matches.
    obs.push(Observation {
        rpi: rpi_of(&keys[3], 0),
        time_s: interval_start_s(&keys[3], 0) + 300,
        id: 8,
    });
    let index = RpiIndex::new(obs);
    let report = match_keys(&keys, &index, skew);
    assert!(report.skipped.is_empty());
    let mut found: Vec<(usize, u32, u64)> = report
        .matches
        .iter()
        .map(|m| {
            (
                m.key_index,
                m.enin.0 - keys[m.key_index].rolling_start_interval_number,
                m.observation_id,
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![(3, 0, 1), (3, 0, 8), (3, 143, 2), (7, 50, 3), (7, 51, 4)]
    );
    for m in &report.matches {
        assert_eq!(
            m.rpi,
            rpi_of(
                &keys[m.key_index],
                m.enin.0 - keys[m.key_index].rolling_start_interval_number
            )
        );
    }
    // A configurable skew: with none, only observations inside their interval match.
    let strict = match_keys(&keys, &index, 0);
    let ids: Vec<u64> = strict.matches.iter().map(|m| m.observation_id).collect();
    assert_eq!(ids, vec![1, 8, 2]);
}

#[test]
fn revoked_and_invalid_keys_are_skipped_with_their_reason() {
    let mut rng = Rng::new(21);
    let mut keys: Vec<DiagnosisKey> = (0..5).map(|_| key(&mut rng, DAY)).collect();
    keys[1].report_type = ReportType::Revoked;
    keys[2].rolling_period = 0;
    keys[3].rolling_period = 145;
    keys[4].rolling_period = 10;
    let mut obs = noise(&mut rng, 100, 100);
    for (k, key) in keys.iter().enumerate() {
        for i in [5u32, 10] {
            obs.push(Observation {
                rpi: rpi_of(key, i),
                time_s: interval_start_s(key, i) + 10,
                id: k as u64 * 10 + u64::from(i),
            });
        }
    }
    let mut overflow = key(&mut rng, u32::MAX - 100);
    overflow.rolling_period = 144;
    keys.push(overflow);
    let index = RpiIndex::new(obs);
    let report = match_keys(&keys, &index, DEFAULT_SKEW_S);
    let skipped: Vec<(usize, SkipReason)> = report
        .skipped
        .iter()
        .map(|s| (s.key_index, s.reason))
        .collect();
    assert_eq!(
        skipped,
        vec![
            (1, SkipReason::Revoked),
            (2, SkipReason::InvalidPeriod { rolling_period: 0 }),
            (
                3,
                SkipReason::InvalidPeriod {
                    rolling_period: 145
                }
            ),
            (
                5,
                SkipReason::PeriodOutOfRange {
                    start: u32::MAX - 100,
                    period: 144
                }
            ),
        ]
    );
    // Key 0 matches both plants; key 4 (period 10) only its interval 5, not 10.
    let ids: Vec<u64> = report.matches.iter().map(|m| m.observation_id).collect();
    assert_eq!(ids, vec![5, 10, 45]);
    assert_eq!(expand_only(&keys), 2);
}

#[test]
fn index_handles_duplicates_shared_prefixes_and_a_zero_prefix() {
    let mut obs = Vec::new();
    let mut rpis = Vec::new();
    // Prefixes 0, 1, 2 (the natural empty marker values) and two RPIs sharing a prefix.
    for (p, tail) in [(0u64, 1u8), (1, 2), (2, 3), (7, 4), (7, 5)] {
        let mut b = [tail; 16];
        b[..8].copy_from_slice(&p.to_le_bytes());
        rpis.push(Rpi(b));
    }
    for (i, r) in rpis.iter().enumerate() {
        for t in [30u64, 10, 20] {
            obs.push(Observation {
                rpi: *r,
                time_s: t,
                id: i as u64,
            });
        }
    }
    let index = RpiIndex::new(obs);
    assert_eq!(index.len(), 15);
    for (i, r) in rpis.iter().enumerate() {
        let hits = index.lookup(r);
        assert_eq!(hits.len(), 3, "RPI {i}");
        assert!(hits.iter().all(|o| o.rpi == *r && o.id == i as u64));
        assert_eq!(
            hits.iter().map(|o| o.time_s).collect::<Vec<_>>(),
            vec![10, 20, 30]
        );
    }
    let mut absent = [5u8; 16];
    absent[..8].copy_from_slice(&7u64.to_le_bytes());
    absent[15] = 6;
    assert!(index.lookup(&Rpi(absent)).is_empty());
    assert!(index.lookup(&Rpi([0; 16])).is_empty());
    assert!(RpiIndex::new(Vec::new()).lookup(&Rpi([0; 16])).is_empty());
}

proptest! {
    #[test]
    fn index_agrees_with_a_map(seed in any::<u64>(), n in 0usize..300, probes in 0usize..300) {
        let mut rng = Rng::new(seed);
        let mut obs = Vec::new();
        let mut map: HashMap<Rpi, Vec<(u64, u64)>> = HashMap::new();
        let pool: Vec<Rpi> = (0..n.max(1)).map(|_| {
            // Short prefixes collide often, exercising the probe chains and prefix runs.
            let mut b: [u8; 16] = rng.bytes();
            b[1..8].fill(0);
            b[0] %= 8;
            Rpi(b)
        }).collect();
        for i in 0..n {
            let r = pool[(rng.next_u64() % pool.len() as u64) as usize];
            let t = rng.next_u64() % 1000;
            obs.push(Observation { rpi: r, time_s: t, id: i as u64 });
            map.entry(r).or_default().push((t, i as u64));
        }
        let index = RpiIndex::new(obs);
        for _ in 0..probes {
            let r = if rng.next_u64().is_multiple_of(2) { pool[(rng.next_u64() % pool.len() as u64) as usize] } else { Rpi(rng.bytes()) };
            let mut want = map.get(&r).cloned().unwrap_or_default();
            want.sort();
            let got: Vec<(u64, u64)> = index.lookup(&r).iter().map(|o| (o.time_s, o.id)).collect();
            prop_assert_eq!(got, want);
        }
    }
}
