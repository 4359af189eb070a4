//! The distribution of the sensor rooms' conditional risk (carried-over box model) in a
//! generated city: percentiles, and windows at or above thresholds by ventilation.
//! `cargo run --release -p trustedge-citysim --example risk_windows -- [population] [days] [seed]`
#![allow(clippy::unwrap_used, missing_docs)]

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
    let city = City::generate(&cfg, arg(3, 1)).unwrap();
    let pop = city.population();
    let windows = &city.truth().risk_windows;
    let mut p: Vec<f64> = windows
        .iter()
        .map(|w| f64::from(w.conditional_probability))
        .collect();
    p.sort_by(f64::total_cmp);
    let q = |f: f64| p[((p.len() - 1) as f64 * f).round() as usize];
    println!(
        "windows {} median {:.5} p90 {:.5} p99 {:.5} max {:.5}",
        p.len(),
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
    for t in [0.002, 0.005, 0.01] {
        let (mut bad, mut good) = (0, 0);
        for w in windows
            .iter()
            .filter(|w| f64::from(w.conditional_probability) >= t)
        {
            if pop.room(w.room).badly_ventilated {
                bad += 1;
            } else {
                good += 1;
            }
        }
        println!(
            "≥ {t}: {} windows ({bad} badly ventilated rooms, {good} others)",
            bad + good
        );
    }
    let rooms = |bad: bool| {
        windows
            .iter()
            .filter(|w| pop.room(w.room).badly_ventilated == bad)
            .count()
    };
    println!(
        "windows of badly ventilated rooms {}, others {}",
        rooms(true),
        rooms(false)
    );
}
