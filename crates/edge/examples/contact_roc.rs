//! Close-contact decisions of the edge's [`DistanceScorer`] on simulated case contacts, in
//! seconds instead of a full `trustedge tracing simulate` run.
//!
//! `cargo run --release -p trustedge-edge --example contact_roc -- [SEED] [N] [MIN_RSSI]`
//!
//! Plays N contacts of each class of the tracing simulation (close: 20–60 min at
//! 0.5–1.8 m; far: 30–90 min at 12–20 m; short: 3–8 min at 0.5–1.5 m) and one class the
//! simulation leaves out (mid: 30–60 min at 2.5–5 m), one RSSI a minute per pair in an
//! office, between random calibrated models, as the simulated phones hear them: sightings
//! under `MIN_RSSI` (default −90 dBm) dropped, the case's RPI rotating every 10–20
//! minutes, encounters under 2 minutes or 2 scans dropped. The scorer is the edge's
//! default (model seed 1, 3000 sessions, 60 trees, 5-minute chunks). It prints, for
//! several distance bounds of the rule, the share of each class flagged as a close
//! contact, and for the default 2 m bound the reasons of each missed close contact.

use std::error::Error;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use trustedge_distance::channel::{DEVICE_MODELS, Environment, LinkContext, sample_rssi, uniform};
use trustedge_distance::exposure::CloseContactRule;
use trustedge_distance::model::{DistanceEstimator, ModelParams, TrainingConfig};
use trustedge_edge::exposure::{DistanceScorer, EncounterInput, ExposureScorer};
use trustedge_tracing::ReportType;
use trustedge_tracing::sightings::RssiSample;

const T0: u64 = 1_700_006_400 + 8 * 3600;
const BOUNDS_M: [f64; 5] = [2.0, 2.2, 2.4, 2.6, 3.0];

struct Contact {
    link: LinkContext,
    distance_m: f64,
    minutes: u64,
    /// The encounters the edge receives: `(time s, rssi)` per case RPI.
    encounters: Vec<Vec<(u64, i8)>>,
}

fn contact(rng: &mut ChaCha8Rng, minutes: (u64, u64), d: (f64, f64), min_rssi: i8) -> Contact {
    let pick = |rng: &mut ChaCha8Rng| DEVICE_MODELS[(rng.next_u64() % 12) as usize];
    let (tx, rx) = (pick(rng), pick(rng));
    let mut link = LinkContext::random(tx, rx, rng);
    link.environment = Environment::Office;
    let minutes = minutes.0 + rng.next_u64() % (minutes.1 - minutes.0 + 1);
    let distance_m = uniform(d.0, d.1, rng);
    let start = T0 + 60 * (rng.next_u64() % 600);
    let mut rotation = start + 600 + rng.next_u64() % 601 - rng.next_u64() % 1200;
    let mut encounters = vec![Vec::new()];
    for m in 0..minutes {
        let t = start + 60 * m;
        while t >= rotation {
            encounters.push(Vec::new());
            rotation += 600 + rng.next_u64() % 601;
        }
        let rssi = sample_rssi(distance_m, &link, rng);
        if rssi >= min_rssi
            && let Some(e) = encounters.last_mut()
        {
            e.push((t, rssi));
        }
    }
    encounters.retain(|e| match (e.first(), e.last()) {
        (Some(f), Some(l)) => e.len() >= 2 && l.0 - f.0 >= 120,
        _ => false,
    });
    Contact {
        link,
        distance_m,
        minutes,
        encounters,
    }
}

/// Seconds credited to the contact, and seconds within the scorer's bound.
fn score(scorer: &DistanceScorer, c: &Contact) -> (u64, u64) {
    let (mut credited, mut close) = (0, 0);
    for e in &c.encounters {
        let (Some(first), Some(last)) = (e.first(), e.last()) else {
            continue;
        };
        let samples: Vec<RssiSample> = e
            .iter()
            .map(|&(t, r)| RssiSample {
                offset_s: u32::try_from(t - first.0).unwrap_or(u32::MAX),
                rssi_dbm: r,
            })
            .collect();
        let input = EncounterInput {
            rx_model: c.link.rx.name,
            rx_tx_power_dbm: c.link.rx.tx_power_dbm as i8,
            tx_power_dbm: c.link.tx.tx_power_dbm as i8,
            first_seen_s: first.0,
            last_seen_s: last.0,
            samples: &samples,
            ranges: &[],
            report_type: ReportType::ConfirmedTest,
            days_since_onset: None,
        };
        close += scorer.score(&input).close_s;
        credited += 60 * e.len() as u64;
    }
    (credited, close)
}

fn main() -> Result<(), Box<dyn Error>> {
    let arg = |i: usize| std::env::args().nth(i);
    let seed: u64 = arg(1).map_or(Ok(13), |s| s.parse())?;
    let n: usize = arg(2).map_or(Ok(600), |s| s.parse())?;
    let min_rssi: i8 = arg(3).map_or(Ok(-90), |s| s.parse())?;
    let estimator = DistanceEstimator::train_synthetic(
        1,
        &TrainingConfig {
            sessions: 3000,
            ..TrainingConfig::default()
        },
        &ModelParams {
            n_trees: 60,
            ..ModelParams::default()
        },
    )?;
    let mut scorer = DistanceScorer {
        estimator,
        scoring: Default::default(),
        windows: Default::default(),
        rule: CloseContactRule::default(),
        chunk_s: 300,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let classes = [
        ("close", (20, 60), (0.5, 1.8)),
        ("far", (30, 90), (12.0, 20.0)),
        ("short", (3, 8), (0.5, 1.5)),
        ("mid", (30, 60), (2.5, 5.0)),
    ];
    let played: Vec<(&str, Vec<Contact>)> = classes
        .iter()
        .map(|&(name, m, d)| {
            let cs = (0..n).map(|_| contact(&mut rng, m, d, min_rssi)).collect();
            (name, cs)
        })
        .collect();
    let needed = (CloseContactRule::default().min_minutes_per_day * 60.0) as u64;
    println!("seed {seed}, {n} contacts a class, sightings >= {min_rssi} dBm");
    println!("share flagged as close contacts, by the rule's distance bound:");
    for bound in BOUNDS_M {
        scorer.rule.max_distance_m = bound;
        let mut line = format!("  <= {bound:.1} m:");
        for (name, cs) in &played {
            let flagged = cs.iter().filter(|c| score(&scorer, c).1 >= needed).count();
            line += &format!("  {name} {:.3}", flagged as f64 / n as f64);
        }
        println!("{line}");
    }
    scorer.rule.max_distance_m = CloseContactRule::default().max_distance_m;
    let (mut short_credit, mut estimated_far, mut body, mut bag) = (0, 0, 0, 0);
    for c in played.iter().filter(|p| p.0 == "close").flat_map(|p| &p.1) {
        let (credited, close) = score(&scorer, c);
        if close >= needed {
            continue;
        }
        if credited < needed {
            short_credit += 1;
        } else {
            estimated_far += 1;
        }
        body += usize::from(c.link.body_between);
        bag += usize::from(
            [c.link.tx_carry, c.link.rx_carry].contains(&trustedge_distance::channel::Carry::Bag),
        );
        println!(
            "  missed: {:.2} m for {} min, {} of {} min credited, {} within; {} -> {}, {:?}/{:?}, body {}",
            c.distance_m,
            c.minutes,
            credited / 60,
            c.minutes,
            close / 60,
            c.link.tx.name,
            c.link.rx.name,
            c.link.tx_carry,
            c.link.rx_carry,
            c.link.body_between,
        );
    }
    println!(
        "missed close contacts at 2 m: {} with under 15 min credited, {} estimated beyond 2 m; \
         {body} with a body between, {bag} with a phone in a bag",
        short_credit, estimated_far
    );
    Ok(())
}
