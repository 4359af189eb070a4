//! Generates a city and runs its whole event stream, printing timings and counts.
//! `cargo run --release -p trustedge-citysim --example generate -- [population] [days] [seed] [materialize 0|1]`
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Instant;

use trustedge_citysim::{City, CityConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let cfg = CityConfig {
        population: arg(1, 10_000) as u32,
        days: arg(2, 14) as u32,
        materialize_sightings: arg(4, 1) == 1,
        ..CityConfig::default()
    };
    let seed = arg(3, 1);
    let t0 = Instant::now();
    let city = City::generate(&cfg, seed).unwrap();
    let gen_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let summary = city.summary().unwrap();
    let stream_s = t1.elapsed().as_secs_f64();
    let truth = city.truth();
    println!("generate_s {gen_s:.2} stream_s {stream_s:.2}");
    println!(
        "infections {} confirmed {} close_contacts {} copresent_pair_days {} risk_windows {} clusters {}",
        truth.infections.len(),
        truth.confirmed_cases().len(),
        truth.close_contacts.len(),
        truth.copresent_pair_days,
        truth.risk_windows.len(),
        truth.clusters().len()
    );
    println!("{}", serde_json::to_string(&summary).unwrap());
    println!("{}", serde_json::to_string(&truth.epi_summary()).unwrap());
    let pop = city.population();
    let mut by_kind = std::collections::BTreeMap::new();
    for inf in &truth.infections {
        let (route, room) = match inf.route {
            trustedge_citysim::Route::Seed => continue,
            trustedge_citysim::Route::Contact { room, .. } => ("contact", room),
            trustedge_citysim::Route::Room { room } => ("room", room),
        };
        let r = pop.room(room);
        *by_kind
            .entry(format!(
                "{route}/{:?}{}",
                r.kind,
                if r.badly_ventilated { "/bad" } else { "" }
            ))
            .or_insert(0u32) += 1;
    }
    println!("infections by route/place: {by_kind:?}");
}
