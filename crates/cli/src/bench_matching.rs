//! `trustedge bench matching`: how fast diagnosis keys are expanded and matched against
//! observed RPIs, on one core, beside the crypto ceiling of the same run.
//!
//! 1. Workload, from a seed: `--observed` RPIs (100k by default) in a
//!    `trustedge_tracing::matching::RpiIndex`, of which `--planted` are RPIs of the
//!    diagnosis keys observed within their interval ±2 h (they must match) and as many
//!    again are RPIs of the keys observed just outside ±2 h (they must not); the rest are
//!    random. `--keys` diagnosis keys (20k by default; a daily GAEN file holds 10–40k)
//!    spread over 14 days.
//! 2. Ceiling: `expand_only`, the same HKDF-SHA256 + 144 AES-128 blocks per key, no lookup.
//! 3. Matching: `match_keys` over the same keys and the index.
//!
//! Both run single-threaded, alternating, `--rounds` times; the best pass of each gives the
//! rate (the least disturbed by other processes), and `ratio` = matching / ceiling. The
//! run fails unless exactly the planted observations match.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use trustedge_tracing::matching::{DEFAULT_SKEW_S, Observation, RpiIndex, expand_only, match_keys};
use trustedge_tracing::{
    DiagnosisKey, EnIntervalNumber, INTERVAL_LENGTH_S, Rpi, TEK_ROLLING_PERIOD,
    TemporaryExposureKey,
};

/// Most observed RPIs (each is 32 bytes in the index, plus the table).
const MAX_OBSERVED: usize = 10_000_000;
/// Most diagnosis keys (16 bytes each, plus the fields).
const MAX_KEYS: usize = 1_000_000;
/// Most rounds.
const MAX_ROUNDS: usize = 100;
/// The last day of keys: a rolling start in 2021 (a multiple of 144).
const LAST_DAY: u32 = 2_700_000;

/// Arguments of `trustedge bench matching`.
#[derive(Args, Debug, Clone)]
pub struct MatchingArgs {
    /// Observed RPIs in the index.
    #[arg(long, default_value_t = 100_000)]
    pub observed: usize,
    /// Diagnosis keys to expand and match.
    #[arg(long, default_value_t = 20_000)]
    pub keys: usize,
    /// Observations planted within ±2 h of their key's interval (each must match once);
    /// as many are planted just outside (none may match).
    #[arg(long, default_value_t = 100)]
    pub planted: usize,
    /// Passes of each measurement; the best is reported.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Seed of the workload.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// splitmix64: a seeded stream for the workload (not for keys anyone uses).
struct Stream(u64);

impl Stream {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes16(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next().to_le_bytes());
        out[8..].copy_from_slice(&self.next().to_le_bytes());
        out
    }
}

/// (key index, interval, observation id) of a match.
type Expected = BTreeSet<(usize, u32, u64)>;

struct Workload {
    keys: Vec<DiagnosisKey>,
    observations: Vec<Observation>,
    expected: Expected,
    decoys: usize,
}

fn workload(args: &MatchingArgs) -> anyhow::Result<Workload> {
    let mut s = Stream(args.seed);
    let keys: Vec<DiagnosisKey> = (0..args.keys)
        .map(|i| {
            let day = LAST_DAY - (i as u32 % 14) * TEK_ROLLING_PERIOD;
            DiagnosisKey::confirmed(
                TemporaryExposureKey::from_random_bytes(s.bytes16()),
                EnIntervalNumber(day),
            )
        })
        .collect();
    let mut observations = Vec::with_capacity(args.observed);
    let mut expected = Expected::new();
    let skew = DEFAULT_SKEW_S;
    let window = 2 * skew + INTERVAL_LENGTH_S;
    for p in 0..args.planted {
        let k = p * args.keys / args.planted;
        let key = &keys[k];
        let i = (s.next() % u64::from(TEK_ROLLING_PERIOD)) as u32;
        let enin = EnIntervalNumber(key.rolling_start_interval_number + i);
        let rpi = key.tek().rpik().context("RPIK")?.rpi(enin);
        let start_s = enin.unix_seconds();
        // Inside: anywhere in [start − skew, start + 600 + skew].
        let id = observations.len() as u64;
        observations.push(Observation {
            rpi,
            time_s: start_s - skew + s.next() % (window + 1),
            id,
        });
        expected.insert((k, enin.0, id));
        // Outside: the same RPI replayed later than + skew (up to 1 h more).
        observations.push(Observation {
            rpi,
            time_s: start_s + INTERVAL_LENGTH_S + skew + 1 + s.next() % 3600,
            id: id + 1,
        });
    }
    let decoys = args.planted;
    let base_s = EnIntervalNumber(LAST_DAY - 13 * TEK_ROLLING_PERIOD).unix_seconds();
    while observations.len() < args.observed {
        let id = observations.len() as u64;
        observations.push(Observation {
            rpi: Rpi(s.bytes16()),
            time_s: base_s + s.next() % (14 * 86_400),
            id,
        });
    }
    Ok(Workload {
        keys,
        observations,
        expected,
        decoys,
    })
}

/// Runs `trustedge bench matching`.
pub fn run(args: &MatchingArgs) -> anyhow::Result<()> {
    ensure!(
        (1..=MAX_KEYS).contains(&args.keys),
        "--keys must be 1..={MAX_KEYS}"
    );
    ensure!(
        args.observed <= MAX_OBSERVED,
        "--observed must be at most {MAX_OBSERVED}"
    );
    ensure!(
        args.planted <= args.keys && 2 * args.planted <= args.observed,
        "--planted must be at most --keys and half of --observed"
    );
    ensure!(
        (1..=MAX_ROUNDS).contains(&args.rounds),
        "--rounds must be 1..={MAX_ROUNDS}"
    );

    let w = workload(args)?;
    let build = Instant::now();
    let index = RpiIndex::new(w.observations);
    let index_build = build.elapsed();

    let bar = ProgressBar::new(2 * args.rounds as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} passes, {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("matching");
    let mut ceiling_best = Duration::MAX;
    let mut matching_best = Duration::MAX;
    let mut report = None;
    for _ in 0..args.rounds {
        let t = Instant::now();
        let expanded = expand_only(std::hint::black_box(&w.keys));
        ceiling_best = ceiling_best.min(t.elapsed());
        ensure!(expanded == w.keys.len(), "the ceiling skipped keys");
        bar.inc(1);

        let t = Instant::now();
        let r = match_keys(std::hint::black_box(&w.keys), &index, DEFAULT_SKEW_S);
        matching_best = matching_best.min(t.elapsed());
        report = Some(r);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let Some(report) = report else {
        bail!("no round ran");
    };

    let found: Expected = report
        .matches
        .iter()
        .map(|m| (m.key_index, m.enin.0, m.observation_id))
        .collect();
    if found.len() != report.matches.len() || found != w.expected {
        bail!(
            "matching found {} matches, {} planted; {} planted missing, {} unexpected",
            report.matches.len(),
            w.expected.len(),
            w.expected.difference(&found).count(),
            found.difference(&w.expected).count()
        );
    }
    ensure!(
        report.skipped.is_empty(),
        "keys were skipped: {:?}",
        report.skipped
    );

    let rate = |d: Duration| args.keys as f64 / d.as_secs_f64().max(1e-9);
    let keys_per_s = rate(matching_best);
    let ceiling_per_s = rate(ceiling_best);
    let ratio = keys_per_s / ceiling_per_s;
    let out = json!({
        "observed_rpis": index.len(),
        "keys": args.keys,
        "planted": w.expected.len(),
        "decoys_outside_skew": w.decoys,
        "matches": report.matches.len(),
        "skew_s": DEFAULT_SKEW_S,
        "rounds": args.rounds,
        "seed": args.seed,
        "index_build_s": index_build.as_secs_f64(),
        "matching_best_pass_s": matching_best.as_secs_f64(),
        "ceiling_best_pass_s": ceiling_best.as_secs_f64(),
        "keys_per_s_per_core": keys_per_s,
        "rpis_per_s_per_core": keys_per_s * f64::from(TEK_ROLLING_PERIOD),
        "ceiling_keys_per_s_per_core": ceiling_per_s,
        "ratio": ratio,
        "daily_file_40k_keys_s": 40_000.0 / keys_per_s,
    });
    if args.json {
        println!("{out}");
    } else {
        println!(
            "observed RPIs        {:>12}   (index built in {:.3} s)",
            index.len(),
            index_build.as_secs_f64()
        );
        println!("diagnosis keys       {:>12}", args.keys);
        println!(
            "matches              {:>12}   (= planted; {} decoys outside ±2 h refused)",
            report.matches.len(),
            w.decoys
        );
        println!("matching             {keys_per_s:>12.0} keys/s/core");
        println!("ceiling (HKDF+AES)   {ceiling_per_s:>12.0} keys/s/core");
        println!("ratio                {ratio:>12.3}");
        println!("40k-key daily file   {:>12.3} s", 40_000.0 / keys_per_s);
    }
    Ok(())
}
