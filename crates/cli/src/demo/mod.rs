//! `trustedge demo`: the city simulation through the whole system on this machine, with a
//! live web dashboard.
//!
//! The city driver ([`crate::city::run`]) starts the network in this process (4 validators,
//! 2 edge nodes each with its MQTT broker, 1 cloud node) and streams the simulated city
//! through it at `--pace` simulated seconds per wall-clock second. The dashboard
//! ([`crate::dashboard`]) observes the run and serves its plots at
//! `http://127.0.0.1:<port>/`. When the demo stops (the city ends, Ctrl-C/SIGTERM, or
//! `--seconds`) it writes `report.html` and `report.json` into its home.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::sync::oneshot;

use crate::city::{self, CityRunOptions};
use crate::dashboard::{Dashboard, Phase, RunInfo, Server};

/// Default home of the demo, recreated on every run.
const DEFAULT_HOME: &str = "demo-home";
/// Marks a directory as a demo home, so that only such a directory is ever removed.
const HOME_MARKER: &str = ".trustedge-demo";
/// Bounds of the city (days: the ledger keeps keys and alerts 14 days).
const MAX_POPULATION: u32 = 200_000;
const MAX_DAYS: u32 = 14;

/// Arguments of `trustedge demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Port of the dashboard on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Home of the demo (network, logs, report). Default: ./demo-home, created afresh on
    /// every run.
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// People in the city.
    #[arg(long, default_value_t = 2_000)]
    pub population: u32,
    /// Simulated days.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Seed of the city (the same seed replays the same city).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated seconds per wall-clock second (the default, one simulated hour per second,
    /// plays 7 days in about 3 minutes when the machine keeps up).
    #[arg(long, default_value_t = 3_600.0)]
    pub pace: f64,
    /// Index cases (default: citysim's, scaled to the population), as in `simulate`.
    #[arg(long)]
    pub index_cases: Option<u32>,
    /// Probability a person runs the app (default: citysim's), as in `simulate`.
    #[arg(long)]
    pub app_adoption: Option<f64>,
    /// Stop after this many seconds. Without it the demo stops when the city ends (or on
    /// Ctrl-C); with it, a city that ends earlier stays on the dashboard until then.
    #[arg(long)]
    pub seconds: Option<u64>,
}

/// `trustedge demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if !(1..=MAX_POPULATION).contains(&args.population) {
        anyhow::bail!("--population must be 1..={MAX_POPULATION}");
    }
    if !(1..=MAX_DAYS).contains(&args.days) {
        anyhow::bail!("--days must be 1..={MAX_DAYS}");
    }
    if !(args.pace.is_finite() && args.pace >= 1.0) {
        anyhow::bail!("--pace must be at least 1 simulated second per second");
    }
    if args.seconds == Some(0) {
        anyhow::bail!("--seconds must be at least 1");
    }
    // The dashboard's port first: a port in use fails before anything is created.
    let server = Server::bind(args.port).await?;
    let url = format!("http://{}/", server.addr());
    let home = prepare_home(&args)?;
    let dashboard = Arc::new(Dashboard::new(RunInfo {
        seed: args.seed,
        population: args.population,
        days: args.days,
        pace: Some(args.pace),
    }));
    let (stop_server, server_stopped) = oneshot::channel::<()>();
    let server_task = tokio::spawn(server.serve(dashboard.clone(), async {
        let _ = server_stopped.await;
    }));
    println!(
        "dashboard: {url}  (home {}; Ctrl-C stops and writes the report)",
        home.display()
    );

    let opts = CityRunOptions {
        seed: args.seed,
        population: args.population,
        days: args.days,
        home: home.clone(),
        pace: Some(args.pace),
        progress: true,
        index_cases: args.index_cases,
        app_adoption: args.app_adoption,
        ..CityRunOptions::default()
    };
    let deadline = async {
        match args.seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let interrupted = crate::shutdown_signal();
    tokio::pin!(interrupted);

    let observer: Arc<dyn city::feed::CityObserver> = dashboard.clone();
    let stop = async {
        tokio::select! {
            () = &mut deadline => {}
            () = &mut interrupted => {}
        }
    };
    // Stopped (by --seconds or a signal): `None`, after the network was shut down.
    let outcome = match city::run(&opts, observer, stop).await {
        Err(e) if e.is::<city::Stopped>() => None,
        r => Some(r),
    };
    let mut failure = None;
    match outcome {
        Some(Ok(metrics)) => {
            dashboard.set_metrics(&metrics);
            dashboard.set_phase(Phase::Finished);
            crate::dashboard::write_report(&dashboard, &home)?;
            println!(
                "the city ended; report: {}",
                home.join("report.html").display()
            );
            if args.seconds.is_some() {
                // The final state stays on the dashboard until --seconds (or Ctrl-C).
                tokio::select! {
                    () = &mut deadline => {}
                    () = &mut interrupted => {}
                }
            }
        }
        Some(Err(e)) => {
            dashboard.set_error(format!("{e:#}"));
            failure = Some(e);
        }
        None => dashboard.set_phase(Phase::Stopped),
    }
    // A stopped city still leaves a report of what it showed so far.
    if dashboard.snapshot().phase != Phase::Finished {
        crate::dashboard::write_report(&dashboard, &home)?;
    }
    let _ = stop_server.send(());
    match tokio::time::timeout(Duration::from_secs(5), server_task).await {
        Ok(Ok(Err(e))) => eprintln!("dashboard: {e:#}"),
        Ok(Err(e)) => eprintln!("dashboard task: {e}"),
        _ => {}
    }
    println!(
        "report: {} and {}",
        home.join("report.html").display(),
        home.join("report.json").display()
    );
    match failure {
        Some(e) => Err(e.context("the city simulation failed")),
        None => Ok(()),
    }
}

/// Creates the demo home afresh: the default one (or a given one the demo made before) is
/// removed first; any other existing non-empty directory is refused rather than deleted.
fn prepare_home(args: &DemoArgs) -> anyhow::Result<PathBuf> {
    let home = args
        .home
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_HOME));
    if home.exists() {
        let empty = std::fs::read_dir(&home)
            .with_context(|| format!("cannot read {}", home.display()))?
            .next()
            .is_none();
        if !empty {
            if !home.join(HOME_MARKER).exists() && !home.join(crate::init::MARKER_FILE).exists() {
                anyhow::bail!(
                    "{} exists and was not created by `trustedge demo`; move it away or pass \
                     --home with a new directory",
                    home.display()
                );
            }
            std::fs::remove_dir_all(&home)
                .with_context(|| format!("cannot remove the previous {}", home.display()))?;
        }
    }
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    std::fs::write(home.join(HOME_MARKER), "created by trustedge demo\n")
        .with_context(|| format!("cannot write {}", home.join(HOME_MARKER).display()))?;
    Ok(home)
}
