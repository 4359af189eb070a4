//! Integration tests of trustedge-origin: Edmonds against brute force, the model's
//! densities and constraints, the ranking (normalisation, explanations, determinism,
//! robustness), Wilson sampling against exact enumeration, the outbreak generator.

#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod edmonds;
mod model;
mod outbreak;
mod rank;

/// A tiny deterministic generator for test inputs.
pub struct Mix(pub u64);

impl Mix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
