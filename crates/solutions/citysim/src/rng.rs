//! Seeded random streams keyed by purpose and ids.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

/// Purposes of the random streams (distinct keys, so streams never overlap).
pub(crate) mod tag {
    pub const POPULATION: u64 = 1;
    pub const PLAN: u64 = 2;
    pub const EPI_DAY: u64 = 3;
    pub const PERSON_EPI: u64 = 4;
    pub const LINK: u64 = 5;
    pub const AIR: u64 = 6;
    pub const SEEDS: u64 = 7;
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The stream of `(seed, tag, a, b)`.
pub(crate) fn stream(seed: u64, tag: u64, a: u64, b: u64) -> ChaCha8Rng {
    let k = splitmix(splitmix(splitmix(seed ^ splitmix(tag)) ^ a) ^ b.rotate_left(17));
    ChaCha8Rng::seed_from_u64(k)
}

/// Uniform in [0, 1).
pub(crate) fn u01<R: RngCore + ?Sized>(rng: &mut R) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Uniform in [lo, hi).
pub(crate) fn range<R: RngCore + ?Sized>(rng: &mut R, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * u01(rng)
}

/// Uniform integer in [lo, hi] (inclusive; `lo` when empty).
pub(crate) fn int<R: RngCore + ?Sized>(rng: &mut R, lo: u64, hi: u64) -> u64 {
    if hi <= lo {
        return lo;
    }
    lo + rng.next_u64() % (hi - lo + 1)
}

/// Bernoulli draw.
pub(crate) fn chance<R: RngCore + ?Sized>(rng: &mut R, p: f64) -> bool {
    u01(rng) < p
}

/// Lognormal draw with the given mean and σ of the log.
pub(crate) fn lognormal_mean<R: RngCore + ?Sized>(rng: &mut R, mean: f64, sigma: f64) -> f64 {
    let mu = mean.ln() - sigma * sigma / 2.0;
    let z: f64 = StandardNormal.sample(rng);
    (mu + sigma * z).exp()
}

/// Standard normal draw.
pub(crate) fn normal<R: RngCore + ?Sized>(rng: &mut R) -> f64 {
    StandardNormal.sample(rng)
}
