//! A synthetic encounter workload for benchmarks and tests, drawn from a random source the
//! caller provides (seed it for a reproducible run).
//!
//! Degrees are skewed like real contact networks: a case's share of encounter endpoints
//! falls off as `1 / sqrt(rank)` (each endpoint is `cases * u^2` for a uniform `u`, then
//! scrambled by a multiplicative permutation so that hubs are not the lowest ids). With 1M
//! cases and 10M encounters the mean degree is 20, the median about 14 and the largest
//! about 20,000.

use rand_core::RngCore;

use crate::graph::{CaseId, Encounter};

/// The shape of a synthetic workload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SyntheticSpec {
    /// Case ids are `0 .. cases` (at least 2 are used).
    pub cases: u32,
    /// Earliest encounter start, in seconds.
    pub start_s: u64,
    /// Encounter starts are uniform over `start_s .. start_s + span_s`.
    pub span_s: u32,
}

impl Default for SyntheticSpec {
    /// 1M cases over 28 days from 2020-06-01.
    fn default() -> Self {
        SyntheticSpec {
            cases: 1_000_000,
            start_s: 1_590_969_600,
            span_s: 28 * 24 * 3600,
        }
    }
}

/// Odd multiplier of the id permutation (a permutation whenever `cases` is not a multiple
/// of this prime).
const SCRAMBLE: u64 = 2_654_435_761;

fn unit(rng: &mut (impl RngCore + ?Sized)) -> f64 {
    // 53 random bits → [0, 1).
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn skewed_case(rng: &mut (impl RngCore + ?Sized), cases: u32) -> u32 {
    let u = unit(rng);
    let rank = ((f64::from(cases) * u * u) as u64).min(u64::from(cases) - 1);
    ((rank * SCRAMBLE) % u64::from(cases)) as u32
}

/// Draws one encounter: two different skewed-degree cases, a uniform start in the span, a
/// duration of 5 to 60 minutes and a score of 0 to 100.
pub fn synthetic_encounter(rng: &mut (impl RngCore + ?Sized), spec: &SyntheticSpec) -> Encounter {
    let cases = spec.cases.max(2);
    let a = skewed_case(rng, cases);
    let mut b = skewed_case(rng, cases);
    if b == a {
        b = (a + 1) % cases;
    }
    let start_s = spec.start_s + rng.next_u64() % u64::from(spec.span_s.max(1));
    let duration_s = 300 + (rng.next_u32() % 3301);
    let score = (unit(rng) * 100.0) as f32;
    Encounter {
        a: CaseId(a),
        b: CaseId(b),
        start_s,
        duration_s,
        score,
    }
}

/// Draws `n` encounters.
pub fn synthetic_encounters(
    rng: &mut (impl RngCore + ?Sized),
    spec: &SyntheticSpec,
    n: usize,
) -> Vec<Encounter> {
    (0..n).map(|_| synthetic_encounter(rng, spec)).collect()
}
