//! Origin inference on a generated city against its true clusters.
//! `cargo run --release -p trustedge-citysim --example origin_eval -- [population] [days] [seed]`
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Instant;

use trustedge_citysim::evidence::{ObserveParams, evaluate_origins};
use trustedge_citysim::{City, CityConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let cfg = CityConfig {
        population: arg(1, 10_000) as u32,
        days: arg(2, 14) as u32,
        materialize_sightings: false,
        ..CityConfig::default()
    };
    let seed = arg(3, 1);
    let t0 = Instant::now();
    let city = City::generate(&cfg, seed).unwrap();
    let rank = trustedge_origin::RankParams {
        explain_top: 0,
        samples: 1000,
        ..Default::default()
    };
    let r = evaluate_origins(&city, &ObserveParams::default(), &rank, seed).unwrap();
    println!("{}", serde_json::to_string(&r).unwrap());
    println!("wall_s {:.2}", t0.elapsed().as_secs_f64());
}
