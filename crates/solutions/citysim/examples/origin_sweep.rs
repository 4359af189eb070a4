//! Sweep of the ranking's import weight and origin rule over several seeded cities.
//! `cargo run --release -p trustedge-citysim --example origin_sweep -- population days seeds`
//! (seeds 0: the synthetic outbreaks instead). Prints, per setting, the share of the true
//! clusters whose origin the evidence reaches beside top-1 / top-3 and the baseline's.
#![allow(clippy::unwrap_used, missing_docs)]

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
    let seeds = arg(3, 5);
    if seeds == 0 {
        synthetic();
        return;
    }
    let cities: Vec<City> = (1..=seeds)
        .map(|s| City::generate(&cfg, s).unwrap())
        .collect();
    for import in [1e-3, 1e-2, 3e-2, 1e-1, 3e-1] {
        for rule in [
            trustedge_origin::OriginRule::EarliestImport,
            trustedge_origin::OriginRule::LargestSubtree,
        ] {
            let model = trustedge_origin::EpiModel {
                import_weight_per_day: import,
                ..Default::default()
            };
            let rank = trustedge_origin::RankParams {
                explain_top: 0,
                samples: 1000,
                model,
                origin_rule: rule,
                ..Default::default()
            };
            let (mut n, mut t1, mut t3, mut b1, mut b3, mut reach) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
            for (i, city) in cities.iter().enumerate() {
                let r =
                    evaluate_origins(city, &ObserveParams::default(), &rank, i as u64 + 1).unwrap();
                let c = r.score.clusters as f64;
                n += c;
                t1 += r.score.top1 * c;
                t3 += r.score.top3 * c;
                b1 += r.score.baseline_top1 * c;
                b3 += r.score.baseline_top3 * c;
                reach += r.score.reachable as f64;
            }
            println!(
                "import {import:<6} {rule:?}: clusters {n} reachable {:.3} top1 {:.3} top3 {:.3} baseline {:.3} {:.3}",
                reach / n,
                t1 / n,
                t3 / n,
                b1 / n,
                b3 / n
            );
        }
    }
}

/// The same rules on the synthetic outbreaks of `trustedge origin eval`.
fn synthetic() {
    for rule in [
        trustedge_origin::OriginRule::EarliestImport,
        trustedge_origin::OriginRule::LargestSubtree,
    ] {
        let spec = trustedge_origin::EvalSpec {
            rank: trustedge_origin::RankParams {
                origin_rule: rule,
                ..trustedge_origin::EvalSpec::default().rank
            },
            ..Default::default()
        };
        let r = trustedge_origin::evaluate(&spec, 1, 200).unwrap();
        println!(
            "synthetic {rule:?}: top1 {:.3} top3 {:.3} baseline {:.3} {:.3}",
            r.top1, r.top3, r.baseline_top1, r.baseline_top3
        );
    }
}
