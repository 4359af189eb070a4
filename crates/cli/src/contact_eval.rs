//! `trustedge tracing city-eval`: the close-contact decision of the real path, scored on a
//! simulated city against its ground truth.
//!
//! For every ordered pair of app users co-present within BLE range on a day (observer =
//! the exposed device, heard = the case), as the real path does it:
//! 1. citysim's encounter pieces → the observer's RSSI samples of the heard phone at the
//!    city's scan cadence (GAEN: every ~4.5 min, a few adverts per scan; thinned, never
//!    the full advertising stream), plus UWB ranges when both phones have UWB;
//! 2. the device's [`SightingLog`] (default [`SightingFilter`]) keyed by the heard phone's
//!    RPI of each 10-minute interval, ranges attached with `record_range`; its encounters;
//! 3. the edge: encounters of one case key on one day merged
//!    ([`trustedge_edge::exposure::merge_key_encounters`]) and scored by the edge's
//!    default [`DistanceScorer`] (GAEN v2 windows, learned distance, UWB fusion, the
//!    close-contact rule) as [`ExposureEngine`](trustedge_edge::exposure::ExposureEngine)
//!    does;
//! 4. precision, recall and nDCF against `Truth`'s close contacts (app users only), also
//!    by true distance class and by carry state.
//!
//! With `--train-seed T`, a city of seed T calibrates the decision's distance bound (the
//! largest recall at precision ≥ 0.9 on T) which is then scored on seed S: no truth of S
//! is looked at by the decision.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use clap::Args;
use serde::Serialize;
use trustedge_citysim::{City, CityConfig, PersonId};
use trustedge_distance::channel::Carry;
use trustedge_edge::exposure::{DistanceScorer, EncounterInput, merge_key_encounters};
use trustedge_tracing::sightings::{Encounter, RangeSource, Sighting, SightingFilter, SightingLog};
use trustedge_tracing::{Aem, ReportType, Rpi};

/// Options of `trustedge tracing city-eval`.
#[derive(Args, Debug)]
pub struct CityEvalArgs {
    /// People in the city.
    #[arg(long, default_value_t = 2000)]
    population: u32,
    /// Simulated days.
    #[arg(long, default_value_t = 3)]
    days: u32,
    /// Seed of the evaluated city.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seed of a training city that calibrates the decision's distance bound.
    #[arg(long)]
    train_seed: Option<u64>,
    /// Seconds between two BLE scans (default: the city's default).
    #[arg(long)]
    scan_interval_s: Option<u64>,
    /// Chunk length of the edge's distance estimation, s (default: the edge's default).
    #[arg(long)]
    chunk_s: Option<u64>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// True distance classes of a pair-day (the class holding most of its co-present time).
const CLASSES: [(&str, f64); 5] = [
    ("lt_1m", 1.0),
    ("1_2m", 2.0),
    ("2_3m", 3.0),
    ("3_5m", 5.0),
    ("gt_5m", f64::INFINITY),
];

fn class_of(d: f64) -> usize {
    CLASSES.iter().position(|c| d < c.1).unwrap_or(4)
}

/// Carry state of a pair-day (of its longest piece).
fn carry_of(ctx: &trustedge_distance::channel::LinkContext) -> &'static str {
    let bag = ctx.tx_carry == Carry::Bag || ctx.rx_carry == Carry::Bag;
    let pocket = ctx.tx_carry == Carry::Pocket || ctx.rx_carry == Carry::Pocket;
    match (bag, pocket, ctx.body_between) {
        (_, _, true) => "body_between",
        (true, _, false) => "bag",
        (false, true, false) => "pocket",
        _ => "hand",
    }
}

/// One ordered pair-day as the edge saw it.
#[derive(Debug, Clone)]
pub struct PairDay {
    /// Day of the city.
    pub day: u32,
    /// The exposed device's owner (who heard).
    pub observer: PersonId,
    /// The owner of the phone heard (the case, were it confirmed).
    pub heard: PersonId,
    /// The GAEN v2 score the edge gives the day's encounter (weighted seconds, what an
    /// exposure notice carries as its risk score); computed only by [`play_among`].
    pub score_s: f64,
    /// Whether the truth has the pair as a close contact that day.
    pub truth: bool,
    /// True distance class index into [`CLASSES`].
    pub class: usize,
    /// Carry state.
    pub carry: &'static str,
    /// Whether both phones have UWB.
    pub uwb: bool,
    /// `(estimated m, credited s)` of each contact interval the edge scored.
    pub intervals: Vec<(f64, u32)>,
}

impl PairDay {
    /// Seconds credited to contact intervals estimated within `bound_m`.
    pub fn close_s(&self, bound_m: f64) -> u64 {
        self.intervals
            .iter()
            .filter(|i| i.0 <= bound_m)
            .map(|i| u64::from(i.1))
            .sum()
    }

    /// The decision with this distance bound and minutes.
    pub fn decide(&self, bound_m: f64, min_minutes: f64) -> bool {
        self.close_s(bound_m) as f64 >= min_minutes * 60.0
    }
}

#[derive(Default)]
struct Acc {
    secs: [u64; 5],
    longest: (u64, Option<trustedge_distance::channel::LinkContext>),
    samples: Vec<(u64, i8)>,
    ranges: Vec<(u64, u32)>,
}

fn rpi_of(heard: PersonId, t: u64) -> Rpi {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&heard.0.to_le_bytes());
    b[4..12].copy_from_slice(&(t / 600).to_le_bytes());
    b[15] = 0xa5;
    Rpi(b)
}

/// Plays a city through the device filter and the edge scorer: one [`PairDay`] per ordered
/// co-present app pair-day.
pub fn play(city: &City, scorer: &DistanceScorer) -> anyhow::Result<Vec<PairDay>> {
    play_filtered(city, scorer, None)
}

/// [`play`] over the pairs of `people` only, each pair-day with its GAEN score
/// ([`PairDay::score_s`]).
pub fn play_among(
    city: &City,
    scorer: &DistanceScorer,
    people: &std::collections::BTreeSet<PersonId>,
) -> anyhow::Result<Vec<PairDay>> {
    play_filtered(city, scorer, Some(people))
}

fn play_filtered(
    city: &City,
    scorer: &DistanceScorer,
    people: Option<&std::collections::BTreeSet<PersonId>>,
) -> anyhow::Result<Vec<PairDay>> {
    use trustedge_edge::exposure::ExposureScorer as _;
    let cfg = city.config();
    let truth = city.truth().app_close_contacts();
    let pop = city.population();
    let mut out = Vec::new();
    for day in 0..cfg.days {
        let plan = city.day_plan(day);
        let pieces = city.encounter_pieces(&plan);
        let mut acc: HashMap<(PersonId, PersonId), Acc> = HashMap::new();
        for piece in &pieces {
            if people.is_some_and(|p| !(p.contains(&piece.a) && p.contains(&piece.b))) {
                continue;
            }
            let secs = piece.end_s - piece.start_s;
            for (observer, heard) in [(piece.a, piece.b), (piece.b, piece.a)] {
                let batch = city.sightings(piece, observer)?;
                let a = acc.entry((observer, heard)).or_default();
                a.secs[class_of(f64::from(piece.distance_m))] += secs;
                if secs > a.longest.0 {
                    a.longest = (secs, Some(city.link_context(piece, observer)));
                }
                a.samples.extend(batch.samples);
                a.ranges.extend(batch.ranges);
            }
        }
        let day_end = cfg.start_s + u64::from(day + 1) * trustedge_citysim::DAY_S;
        let mut keys: Vec<_> = acc.keys().copied().collect();
        keys.sort_unstable();
        for key in keys {
            let Some(a) = acc.get_mut(&key) else { continue };
            let (observer, heard) = key;
            a.samples.sort_by_key(|s| s.0);
            a.ranges.sort_by_key(|s| s.0);
            // the observer's device: its sighting log, filtered as on the phone
            let mut log = SightingLog::new(SightingFilter::default())?;
            for &(t, rssi) in &a.samples {
                let _ = log.record(
                    Sighting {
                        rpi: rpi_of(heard, t),
                        aem: Aem([0; 4]),
                        rssi_dbm: rssi,
                        time_s: t,
                    },
                    day_end,
                );
            }
            for &(t, cm) in &a.ranges {
                let _ = log.record_range(rpi_of(heard, t), t, cm, RangeSource::Uwb, day_end);
            }
            let encounters: Vec<Encounter> = log.encounters(day_end);
            let (ox, hx) = (
                pop.person(observer).device_model(),
                pop.person(heard).device_model(),
            );
            let mut intervals = Vec::new();
            let mut score_s = 0.0;
            let refs: Vec<&Encounter> = encounters.iter().collect();
            if let Some(merged) = merge_key_encounters(&refs) {
                let input = EncounterInput {
                    rx_model: ox.name,
                    rx_tx_power_dbm: ox.tx_power_dbm as i8,
                    tx_power_dbm: hx.tx_power_dbm as i8,
                    first_seen_s: merged.first_seen_s,
                    last_seen_s: merged.last_seen_s,
                    samples: &merged.samples,
                    ranges: &merged.ranges,
                    report_type: ReportType::ConfirmedTest,
                    days_since_onset: None,
                };
                intervals.extend(
                    scorer
                        .intervals(&input)
                        .iter()
                        .map(|i| (i.distance.meters, i.duration_s)),
                );
                if people.is_some() {
                    score_s = scorer.score(&input).score;
                }
            }
            let (x, y) = if observer < heard {
                (observer, heard)
            } else {
                (heard, observer)
            };
            let dominant = (0..5).max_by_key(|&i| (a.secs[i], 5 - i)).unwrap_or(4);
            out.push(PairDay {
                day,
                observer,
                heard,
                score_s,
                truth: truth.contains(&(day, x, y)),
                class: dominant,
                carry: a.longest.1.as_ref().map_or("hand", carry_of),
                uwb: ox.uwb && hx.uwb,
                intervals,
            });
        }
    }
    Ok(out)
}

/// Precision, recall and nDCF of a set of decisions.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Scores {
    /// Pair-days that are close contacts.
    pub positives: u64,
    /// Co-present pair-days that are not.
    pub negatives: u64,
    /// Decided close, truly close.
    pub true_positives: u64,
    /// Decided close, not close.
    pub false_positives: u64,
    /// TP / (TP + FP).
    pub precision: f64,
    /// TP / positives.
    pub recall: f64,
    /// NIST TC4TL nDCF with unit costs: P_miss + P_false_alarm.
    pub ndcf: f64,
    /// Share of the pair-days decided close.
    pub flagged_share: f64,
}

fn scores<'a>(items: impl Iterator<Item = (&'a PairDay, bool)>) -> Scores {
    let mut s = Scores::default();
    let mut n = 0u64;
    let mut flagged = 0u64;
    for (p, d) in items {
        n += 1;
        flagged += u64::from(d);
        if p.truth {
            s.positives += 1;
            s.true_positives += u64::from(d);
        } else {
            s.negatives += 1;
            s.false_positives += u64::from(d);
        }
    }
    let ratio = |a: u64, b: u64| {
        if b == 0 {
            f64::NAN
        } else {
            a as f64 / b as f64
        }
    };
    s.precision = ratio(s.true_positives, s.true_positives + s.false_positives);
    s.recall = ratio(s.true_positives, s.positives);
    s.ndcf = (1.0 - if s.positives == 0 { 1.0 } else { s.recall })
        + if s.negatives == 0 {
            0.0
        } else {
            ratio(s.false_positives, s.negatives)
        };
    s.flagged_share = ratio(flagged, n);
    s
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Decision distance bound used, m.
    pub bound_m: f64,
    /// Minutes a day within the bound.
    pub min_minutes: f64,
    /// Over every ordered co-present app pair-day.
    pub overall: Scores,
    /// By true distance class.
    pub by_distance: BTreeMap<&'static str, Scores>,
    /// By carry state of the pair-day's longest piece.
    pub by_carry: BTreeMap<&'static str, Scores>,
    /// Pairs where both phones have UWB, and the others.
    pub by_uwb: BTreeMap<&'static str, Scores>,
}

/// Scores the pair-days with a bound.
pub fn report(pairs: &[PairDay], bound_m: f64, min_minutes: f64) -> Report {
    let decided: Vec<(&PairDay, bool)> = pairs
        .iter()
        .map(|p| (p, p.decide(bound_m, min_minutes)))
        .collect();
    let by = |f: &dyn Fn(&PairDay) -> &'static str| {
        let mut keys: Vec<&'static str> = decided.iter().map(|(p, _)| f(p)).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter()
            .map(|k| {
                (
                    k,
                    scores(decided.iter().copied().filter(|(p, _)| f(p) == k)),
                )
            })
            .collect()
    };
    Report {
        bound_m,
        min_minutes,
        overall: scores(decided.iter().copied()),
        by_distance: by(&|p| CLASSES[p.class].0),
        by_carry: by(&|p| p.carry),
        by_uwb: by(&|p| if p.uwb { "uwb" } else { "ble_only" }),
    }
}

/// The bound with the largest recall at precision ≥ `min_precision` on `pairs` (the
/// largest precision when none reaches it), from 1.5 to 3.5 m by 5 cm.
pub fn calibrate(pairs: &[PairDay], min_minutes: f64, min_precision: f64) -> f64 {
    let mut best: Option<(bool, f64, f64)> = None; // (meets, key, bound)
    for k in 0..=40 {
        let bound = 1.5 + 0.05 * f64::from(k);
        let s = report(pairs, bound, min_minutes).overall;
        let meets = s.precision >= min_precision;
        let key = if meets { s.recall } else { s.precision };
        if best.is_none_or(|(m, b, _)| (meets, key) > (m, b)) {
            best = Some((meets, key, bound));
        }
    }
    best.map_or(2.0, |b| b.2)
}

fn city(args: &CityEvalArgs, seed: u64) -> anyhow::Result<City> {
    let mut cfg = CityConfig {
        population: args.population,
        days: args.days,
        materialize_sightings: false,
        ..CityConfig::default()
    };
    if let Some(s) = args.scan_interval_s {
        cfg.scan_interval_s = s;
    }
    Ok(City::generate(&cfg, seed)?)
}

/// Runs the evaluation and prints it.
pub fn run(args: &CityEvalArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=100_000).contains(&args.population) && (1..=30).contains(&args.days),
        "population must be in 1..=100000 and days in 1..=30"
    );
    let started = Instant::now();
    let mut scorer = trustedge_edge::exposure::default_scorer()?;
    if let Some(c) = args.chunk_s {
        anyhow::ensure!(
            (60..=86_400).contains(&c),
            "--chunk-s must be in 60..=86400"
        );
        scorer.chunk_s = c;
    }
    let rule = scorer.rule;
    let train_s = started.elapsed().as_secs_f64();
    let mut calibrated = None;
    if let Some(t) = args.train_seed {
        anyhow::ensure!(t != args.seed, "--train-seed must differ from --seed");
        let pairs = play(&city(args, t)?, &scorer)?;
        calibrated = Some(calibrate(&pairs, rule.min_minutes_per_day, 0.9));
    }
    let c = city(args, args.seed)?;
    let pairs = play(&c, &scorer)?;
    let default = report(&pairs, rule.max_distance_m, rule.min_minutes_per_day);
    let tuned = calibrated.map(|b| report(&pairs, b, rule.min_minutes_per_day));
    let wall_s = started.elapsed().as_secs_f64();
    if args.json {
        let v = serde_json::json!({
            "population": args.population,
            "days": args.days,
            "seed": args.seed,
            "train_seed": args.train_seed,
            "scan_interval_s": c.config().scan_interval_s,
            "chunk_s": scorer.chunk_s,
            "adverts_per_scan": c.config().adverts_per_scan,
            "pair_days": pairs.len(),
            "default": default,
            "calibrated": tuned,
            "model_train_s": train_s,
            "wall_s": wall_s,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let print = |name: &str, r: &Report| {
        let o = &r.overall;
        println!(
            "{name}: bound {:.2} m, {} min: precision {:.3} recall {:.3} nDCF {:.3} ({} positives, {} negatives)",
            r.bound_m, r.min_minutes, o.precision, o.recall, o.ndcf, o.positives, o.negatives
        );
        for (title, m) in [
            ("distance", &r.by_distance),
            ("carry", &r.by_carry),
            ("uwb", &r.by_uwb),
        ] {
            let mut line = format!("  by {title}:");
            for (k, s) in m {
                line += &format!(
                    "  {k} flagged {:.3} (P {:.2} R {:.2})",
                    s.flagged_share, s.precision, s.recall
                );
            }
            println!("{line}");
        }
    };
    println!(
        "city: {} people, {} days, seed {}, scans every {} s x {} adverts; {} ordered co-present app pair-days",
        args.population,
        args.days,
        args.seed,
        c.config().scan_interval_s,
        c.config().adverts_per_scan,
        pairs.len()
    );
    print("default", &default);
    if let Some(r) = &tuned {
        print("calibrated", r);
    }
    println!("{wall_s:.1} s");
    Ok(())
}
