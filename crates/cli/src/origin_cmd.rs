//! `trustedge origin`: outbreak-origin inference (`trustedge-origin`). For now `eval`, which
//! measures the inference against the "earliest symptom onset" baseline over seeded
//! synthetic outbreaks; ranking a running cloud node's confirmed cases
//! (`trustedge origin --node URL`) waits for the node-side data path and will call
//! `trustedge_origin::rank_origins`.

use clap::{Args, Subcommand};
use trustedge_origin::{EvalSpec, evaluate};

/// Outbreak-origin inference.
#[derive(Args, Debug)]
pub struct OriginArgs {
    #[command(subcommand)]
    command: OriginCommand,
}

#[derive(Subcommand, Debug)]
enum OriginCommand {
    /// Generate seeded outbreaks with a known transmission tree, rank each one's origin
    /// candidates and report top-1 / top-3 accuracy beside the earliest-onset baseline.
    Eval {
        /// Seed of the outbreaks and of the tree sampling.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Outbreaks to evaluate (1 ..= 100,000).
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        outbreaks: u32,
        /// Trees sampled per cluster (1 ..= 1,000,000).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        samples: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `trustedge origin ...`.
pub fn run(args: &OriginArgs) -> anyhow::Result<()> {
    match &args.command {
        OriginCommand::Eval {
            seed,
            outbreaks,
            samples,
            json,
        } => {
            let mut spec = EvalSpec::default();
            spec.rank.samples = *samples;
            let started = std::time::Instant::now();
            let r = evaluate(&spec, *seed, *outbreaks)?;
            let wall_s = started.elapsed().as_secs_f64();
            if *json {
                let out = serde_json::json!({
                    "seed": seed,
                    "outbreaks": r.outbreaks,
                    "redrawn": r.redrawn,
                    "top1": r.top1,
                    "top3": r.top3,
                    "baseline_top1": r.baseline_top1,
                    "baseline_top3": r.baseline_top3,
                    "mean_cases": r.mean_cases,
                    "mean_cluster_cases": r.mean_cluster_cases,
                    "mean_infections": r.mean_infections,
                    "samples": samples,
                    "wall_s": wall_s,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "{} outbreaks (seed {seed}; {} redrawn with a cluster under {} cases), mean {:.1} confirmed cases, {:.1} in the evaluated cluster",
                    r.outbreaks,
                    r.redrawn,
                    spec.min_cluster_cases,
                    r.mean_cases,
                    r.mean_cluster_cases
                );
                println!("inference: top-1 {:.3}  top-3 {:.3}", r.top1, r.top3);
                println!(
                    "earliest-onset baseline: top-1 {:.3}  top-3 {:.3}",
                    r.baseline_top1, r.baseline_top3
                );
                println!("{wall_s:.2} s");
            }
            Ok(())
        }
    }
}
