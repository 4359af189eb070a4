//! `trustedge bench contacts`: contact-chain lookup at the cloud level (issue 4, part 7).
//!
//! Generates a seeded synthetic workload (`trustedge_contacts::synth`: skewed degrees, 28
//! days), builds the [`ContactGraph`] once, then times one k-hop chain query from each of
//! `--queries` random source cases and prints the latency percentiles against the target
//! (p99 at or under 10 ms for 2 hops over 10 million encounters): `ratio` = limit / measured
//! p99, so a ratio of 1 or more means the target is met.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde_json::json;
use trustedge_contacts::synth::{SyntheticSpec, synthetic_encounter};
use trustedge_contacts::{CaseId, ChainQuery, ContactGraph, Direction, EncounterFilter};

/// The p99 latency target of a 2-hop query, in milliseconds.
const LIMIT_P99_MS: f64 = 10.0;
/// Encounters generated between two progress-bar updates.
const CHUNK: usize = 100_000;

/// Arguments of `trustedge bench contacts`.
#[derive(Args, Debug, Clone)]
pub struct ContactsArgs {
    /// Stored encounters.
    #[arg(long, default_value_t = 10_000_000)]
    pub encounters: usize,
    /// Cases the encounters are spread over (default: one per 10 encounters).
    #[arg(long)]
    pub cases: Option<u32>,
    /// Queries timed, each from a random case.
    #[arg(long, default_value_t = 10_000)]
    pub queries: usize,
    /// Hops per chain.
    #[arg(long, default_value_t = 2)]
    pub hops: u8,
    /// Which chains: untimed (every contact within k hops), or time-respecting forward,
    /// backward or both.
    #[arg(long, value_enum, default_value_t = Mode::Untimed)]
    pub mode: Mode,
    /// Seed of the workload and of the choice of source cases.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The kind of chain query timed.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No time order between hops (the whole k-hop neighbourhood).
    Untimed,
    /// Time-respecting, onward in time.
    Forward,
    /// Time-respecting, back in time.
    Backward,
    /// Time-respecting, both ways.
    Any,
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb.set_message(what.to_string());
    pb
}

fn percentile_us(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e6
}

/// Runs the benchmark and prints its figures.
pub fn run(args: &ContactsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.encounters > 0, "--encounters must be at least 1");
    anyhow::ensure!(args.queries > 0, "--queries must be at least 1");
    let cases = match args.cases {
        Some(c) => c,
        None => u32::try_from(args.encounters / 10).unwrap_or(u32::MAX),
    }
    .max(2);
    let spec = SyntheticSpec {
        cases,
        ..SyntheticSpec::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);

    let t0 = Instant::now();
    let pb = bar(args.encounters as u64, "generating encounters");
    let mut encounters = Vec::with_capacity(args.encounters);
    while encounters.len() < args.encounters {
        let n = CHUNK.min(args.encounters - encounters.len());
        encounters.extend((0..n).map(|_| synthetic_encounter(&mut rng, &spec)));
        pb.inc(n as u64);
    }
    pb.finish_and_clear();
    let generate_s = t0.elapsed().as_secs_f64();

    let spinner = ProgressBar::new_spinner();
    spinner.set_message(format!(
        "building the index of {} encounters",
        encounters.len()
    ));
    spinner.enable_steady_tick(Duration::from_millis(200));
    let t1 = Instant::now();
    let graph = ContactGraph::build(&encounters, EncounterFilter::default())
        .context("building the contact graph")?;
    let build_s = t1.elapsed().as_secs_f64();
    spinner.finish_and_clear();
    drop(encounters);

    let ids: Vec<CaseId> = graph.cases().collect();
    anyhow::ensure!(!ids.is_empty(), "the workload has no case");
    let (direction, time_respecting) = match args.mode {
        Mode::Untimed => (Direction::Any, false),
        Mode::Forward => (Direction::Forward, true),
        Mode::Backward => (Direction::Backward, true),
        Mode::Any => (Direction::Any, true),
    };
    let query = ChainQuery {
        max_hops: args.hops,
        direction,
        time_respecting,
        ..ChainQuery::default()
    };
    let pb = bar(args.queries as u64, "querying");
    let mut latencies = Vec::with_capacity(args.queries);
    let mut results = 0usize;
    let mut truncated = 0usize;
    for i in 0..args.queries {
        let source = ids[(rng.next_u64() % ids.len() as u64) as usize];
        let t = Instant::now();
        let answer = graph.chains(source, &query)?;
        latencies.push(t.elapsed());
        results += answer.chains.len();
        truncated += usize::from(answer.truncated);
        if i % 100 == 99 {
            pb.inc(100);
        }
    }
    pb.finish_and_clear();
    latencies.sort_unstable();
    let p50_us = percentile_us(&latencies, 50.0);
    let p99_us = percentile_us(&latencies, 99.0);
    let max_us = percentile_us(&latencies, 100.0);
    let mean_results = results as f64 / args.queries as f64;
    let bytes_per_encounter = graph.memory_bytes() as f64 / graph.encounter_count().max(1) as f64;
    let ratio = if p99_us > 0.0 {
        LIMIT_P99_MS * 1000.0 / p99_us
    } else {
        f64::INFINITY
    };

    if args.json {
        let out = json!({
            "encounters": graph.encounter_count(),
            "cases": graph.case_count(),
            "hops": args.hops,
            "mode": format!("{:?}", args.mode).to_lowercase(),
            "queries": args.queries,
            "generate_s": generate_s,
            "build_s": build_s,
            "bytes_per_encounter": bytes_per_encounter,
            "p50_us": p50_us,
            "p99_us": p99_us,
            "max_us": max_us,
            "mean_results": mean_results,
            "truncated_queries": truncated,
            "limit_p99_ms": LIMIT_P99_MS,
            "ratio": ratio,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{} encounters among {} cases: generated in {generate_s:.2} s, indexed in {build_s:.2} s, {bytes_per_encounter:.1} bytes/encounter",
            graph.encounter_count(),
            graph.case_count()
        );
        println!(
            "{} {}-hop {:?} queries: p50 {p50_us:.0} µs, p99 {p99_us:.0} µs, max {max_us:.0} µs, {mean_results:.1} chains on average, {truncated} truncated",
            args.queries, args.hops, args.mode
        );
        println!(
            "target p99 <= {LIMIT_P99_MS} ms: ratio {ratio:.2} ({})",
            if ratio >= 1.0 { "met" } else { "NOT met" }
        );
    }
    Ok(())
}
