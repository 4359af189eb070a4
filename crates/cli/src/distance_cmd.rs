//! `trustedge tracing distance-eval`: the BLE distance service of `trustedge-distance`
//! scored with NIST TC4TL's nDCF at 1.8 m on device models held out of training, against
//! GAEN's attenuation threshold and a path-loss inversion.

use std::time::Instant;

use clap::Args;
use trustedge_distance::eval::{self, EvalConfig};
use trustedge_distance::model::DistanceModel;

/// Options of `trustedge tracing distance-eval`.
#[derive(Args, Debug)]
pub struct DistanceEvalArgs {
    /// Seed of the whole run (calibration table, held-out split, sessions, forest).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated training sessions (between training models only).
    #[arg(long, default_value_t = EvalConfig::default().train.sessions)]
    train_sessions: usize,
    /// Simulated test sessions (between held-out models only).
    #[arg(long, default_value_t = EvalConfig::default().test_sessions)]
    test_sessions: usize,
    /// Device models held out of training.
    #[arg(long, default_value_t = EvalConfig::default().held_out_models)]
    held_out_models: usize,
    /// Trees in the random forest.
    #[arg(long, default_value_t = EvalConfig::default().model.n_trees)]
    trees: u16,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Most sessions the command simulates (each is a few hundred bytes of features).
const MAX_SESSIONS: usize = 1_000_000;

/// Runs the evaluation and prints it.
pub fn run(args: &DistanceEvalArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.train_sessions <= MAX_SESSIONS && args.test_sessions <= MAX_SESSIONS,
        "at most {MAX_SESSIONS} sessions"
    );
    let mut cfg = EvalConfig::default();
    cfg.train.sessions = args.train_sessions;
    cfg.test_sessions = args.test_sessions;
    cfg.held_out_models = args.held_out_models;
    cfg.model.n_trees = args.trees;

    let started = Instant::now();
    let dataset = eval::generate(&cfg, args.seed)?;
    let generate_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let model = DistanceModel::fit(&dataset.train, &cfg.model, args.seed)?;
    let train_s = started.elapsed().as_secs_f64();
    let report = eval::evaluate(&dataset, &model)?;

    let methods: serde_json::Map<String, serde_json::Value> = report
        .methods
        .iter()
        .map(|m| {
            (
                m.name.to_string(),
                serde_json::json!({
                    "ndcf": m.cost.ndcf,
                    "p_miss": m.cost.p_miss,
                    "p_false_alarm": m.cost.p_false_alarm,
                    "rule": m.rule,
                }),
            )
        })
        .collect();
    let positives = report.methods.first().map_or(0, |m| m.cost.positives);
    let negatives = report.methods.first().map_or(0, |m| m.cost.negatives);
    let out = serde_json::json!({
        "seed": args.seed,
        "metric": "nDCF = P_miss + P_false_alarm at 1.8 m (NIST TC4TL, unit weights)",
        "close_threshold_m": report.close_threshold_m,
        "train_sessions": report.train_sessions,
        "test_sessions": report.test_sessions,
        "test_positives": positives,
        "test_negatives": negatives,
        "train_models": report.train_models,
        "held_out_models": report.held_out_models,
        "residual_sigma_log10": model.residual_sigma_log10(),
        "generate_s": generate_s,
        "train_s": train_s,
        "methods": methods,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "nDCF at {} m on {} test sessions ({} close, {} not) of held-out models {}",
            report.close_threshold_m,
            report.test_sessions,
            positives,
            negatives,
            report.held_out_models.join(", ")
        );
        println!(
            "trained on {} sessions of {} models in {train_s:.2} s",
            report.train_sessions,
            report.train_models.len()
        );
        println!(
            "{:<28} {:>7} {:>7} {:>7}  rule",
            "method", "nDCF", "P_miss", "P_fa"
        );
        for m in &report.methods {
            println!(
                "{:<28} {:>7.3} {:>7.3} {:>7.3}  {}",
                m.name, m.cost.ndcf, m.cost.p_miss, m.cost.p_false_alarm, m.rule
            );
        }
    }
    Ok(())
}
