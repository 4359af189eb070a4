//! Integration tests of `trustedge-distance`, one test binary (see STYLE.md).

#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod calibration;
mod channel;
mod eval;
mod exposure;
mod fusion;
mod model;

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng as _;

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
    (m, var.sqrt())
}
