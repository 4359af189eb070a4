//! `trustedge aerosol`: the airborne-infection box model on the command line (to check it
//! against published scenarios) and the evaluation of the ventilation / particle detectors
//! on simulated rooms (`trustedge-aerosol`).

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use trustedge_aerosol::risk::{BoxModelInput, box_model};
use trustedge_aerosol::sim::{ChartFamily, EvalConfig, MAX_SIM_DAYS, evaluate};

/// Aerosol surveillance tools.
#[derive(Args, Debug)]
pub struct AerosolArgs {
    #[command(subcommand)]
    command: AerosolCommand,
}

#[derive(Subcommand, Debug)]
enum AerosolCommand {
    /// Probability of airborne infection of one susceptible person in a well-mixed room
    /// (Jimenez / Miller et al. box model: λ = ACH + 0.62 + 0.3 h⁻¹).
    Risk {
        /// Room volume, m³.
        #[arg(long)]
        volume_m3: f64,
        /// Air changes per hour with outdoor air.
        #[arg(long)]
        ach: f64,
        /// Quanta emission rate of one infected person, quanta/h.
        #[arg(long)]
        quanta_per_h: f64,
        /// Number of infected people.
        #[arg(long, default_value_t = 1.0)]
        infected: f64,
        /// Exhalation mask efficiency in [0, 1] (× fraction of people masked).
        #[arg(long, default_value_t = 0.0)]
        mask_out: f64,
        /// Inhalation mask efficiency in [0, 1] (× fraction of people masked).
        #[arg(long, default_value_t = 0.0)]
        mask_in: f64,
        /// Breathing rate of a susceptible person, m³/h.
        #[arg(long)]
        breathing_m3_per_h: f64,
        /// Duration, hours.
        #[arg(long)]
        hours: f64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Simulate a room for DAYS days from SEED (CO₂ box model with occupancy, noise, drift,
    /// glitches, injected ventilation failures and PM2.5 spikes) and report the detectors'
    /// detection delay and false alarms per day.
    DetectEval {
        /// Seed of the simulation.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Days to simulate.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Control chart of both detectors.
        #[arg(long, value_enum, default_value_t = ChartArg::Cusum)]
        chart: ChartArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ChartArg {
    Cusum,
    Ewma,
}

/// Runs `trustedge aerosol …`. Invalid input exits with status 2 and a message naming the
/// parameter, like a usage error.
pub fn run(args: &AerosolArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        AerosolCommand::Risk {
            volume_m3,
            ach,
            quanta_per_h,
            infected,
            mask_out,
            mask_in,
            breathing_m3_per_h,
            hours,
            json,
        } => {
            let input = BoxModelInput {
                volume_m3: *volume_m3,
                ach_per_h: *ach,
                quanta_per_h: *quanta_per_h,
                infected: *infected,
                mask_out: *mask_out,
                mask_in: *mask_in,
                breathing_m3_per_h: *breathing_m3_per_h,
                hours: *hours,
            };
            let r = match box_model(&input) {
                Ok(r) => r,
                Err(e) => return Ok(usage_error(&e)),
            };
            if *json {
                let out = serde_json::json!({
                    "probability": r.probability,
                    "mean_quanta_per_m3": r.mean_quanta_per_m3,
                    "quanta_inhaled": r.quanta_inhaled,
                    "lambda_per_h": r.lambda_per_h,
                    "emission_quanta_per_h": r.emission_quanta_per_h,
                    "inputs": input,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "probability of infection {:.4} ({:.2} %)\nquanta inhaled {:.4}\n\
                     mean quanta concentration {:.5} quanta/m3\nloss rate {:.3} /h, \
                     net emission {:.3} quanta/h",
                    r.probability,
                    100.0 * r.probability,
                    r.quanta_inhaled,
                    r.mean_quanta_per_m3,
                    r.lambda_per_h,
                    r.emission_quanta_per_h
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AerosolCommand::DetectEval {
            seed,
            days,
            chart,
            json,
        } => {
            if *days == 0 || *days > MAX_SIM_DAYS {
                eprintln!("error: --days must be in [1, {MAX_SIM_DAYS}], got {days}");
                return Ok(ExitCode::from(2));
            }
            let family = match chart {
                ChartArg::Cusum => ChartFamily::Cusum,
                ChartArg::Ewma => ChartFamily::Ewma,
            };
            let report = match evaluate(&EvalConfig::with_chart(family), *seed, *days) {
                Ok(r) => r,
                Err(e) => return Ok(usage_error(&e)),
            };
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let d = report.detection_delay_min;
                println!(
                    "{} days, {} events, {} detected; delay mean {:.1} min, p50 {:.1}, \
                     p95 {:.1}; {:.3} false alarms/day",
                    report.days,
                    report.events,
                    report.detected,
                    d.mean,
                    d.p50,
                    d.p95,
                    report.false_alarms_per_day
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn usage_error(e: &trustedge_aerosol::AerosolError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}
