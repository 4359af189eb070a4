//! `trustedge simulate --seed S --population N --days D --json OUT`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;

use super::{CityRunOptions, NoObserver};

/// Arguments of `trustedge simulate`.
#[derive(Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Seed of the city, its devices and their keys.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// People in the city.
    #[arg(long, default_value_t = 10_000)]
    pub population: u32,
    /// Simulated days (1..=14: the ledger keeps keys and alerts 14 days).
    #[arg(long, default_value_t = 14)]
    pub days: u32,
    /// Write the metrics JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Directory for the network (a temporary one, deleted afterwards, if omitted).
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// Simulated seconds per wall second (as fast as possible if omitted).
    #[arg(long)]
    pub pace: Option<f64>,
    /// Seconds between two BLE scans of a phone.
    #[arg(long, default_value_t = 240)]
    pub scan_interval_s: u64,
    /// MQTT connections per edge shared by its devices.
    #[arg(long, default_value_t = 16)]
    pub pool: usize,
    /// Index cases (default: citysim's, scaled to the population).
    #[arg(long)]
    pub index_cases: Option<u32>,
    /// Probability a person runs the app (default: citysim's).
    #[arg(long)]
    pub app_adoption: Option<f64>,
    /// Longest wait, after the last hour is played, for the edges to finish matching and
    /// publishing (1 ..= 3600 s); notices still on their way then are not counted.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub drain_s: u64,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Bytes the network's stores in the scratch directory take per simulated person-day
/// (measured with encounter batches: the whole network's directory reached 6.94 GB at
/// 10,000 people × 14 days, 49.6 KB per person-day, of which the edges' stores 4.56 GB).
const STORE_BYTES_PER_PERSON_DAY: u64 = 50_000;
/// Resident memory of the run per simulated person-day (measured: 10.2 GB peak for
/// 10,000 × 14 days, 72.8 KB per person-day).
const RSS_BYTES_PER_PERSON_DAY: u64 = 75_000;

/// Where a temporary network goes: `/dev/shm` when it is there and the memory available
/// holds the stores with room to spare beside the run itself (the edges' stores commit
/// every batch of readings durably, which on a disk costs an fsync per batch; /dev/shm is
/// memory, so a big city there would exhaust it), else the system's temporary directory.
pub fn scratch_dir(population: u32, days: u32) -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    let person_days = u64::from(population) * u64::from(days);
    let need = person_days
        .saturating_mul(STORE_BYTES_PER_PERSON_DAY)
        .saturating_mul(3)
        / 2
        + person_days.saturating_mul(RSS_BYTES_PER_PERSON_DAY);
    let fits = mem_available_bytes().is_some_and(|avail| avail >= need);
    if fits && shm.is_dir() && std::fs::metadata(&shm).is_ok_and(|m| !m.permissions().readonly()) {
        shm
    } else {
        std::env::temp_dir()
    }
}

/// `MemAvailable` of /proc/meminfo, in bytes (`None` where there is no such file).
fn mem_available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

/// Runs `trustedge simulate`.
pub async fn run(args: &SimulateArgs) -> anyhow::Result<()> {
    // Logs only when asked for (RUST_LOG=info shows the run's phases).
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .with_target(false)
            .try_init();
    }
    let (home, temporary) = match &args.home {
        Some(h) => (h.clone(), false),
        None => (
            scratch_dir(args.population, args.days).join(format!(
                "trustedge-simulate-{}-{}",
                std::process::id(),
                args.seed
            )),
            true,
        ),
    };
    if temporary && home.exists() {
        std::fs::remove_dir_all(&home)
            .with_context(|| format!("cannot clear {}", home.display()))?;
    }
    let opts = CityRunOptions {
        seed: args.seed,
        population: args.population,
        days: args.days,
        home: home.clone(),
        pace: args.pace,
        progress: !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        scan_interval_s: args.scan_interval_s,
        pool: args.pool,
        index_cases: args.index_cases,
        app_adoption: args.app_adoption,
        drain_timeout_s: args.drain_s,
    };
    // Ctrl-C or SIGTERM stops the run; a temporary network is removed either way (it can
    // hold gigabytes in /dev/shm, which is memory).
    let result = super::run(&opts, Arc::new(NoObserver), crate::shutdown_signal()).await;
    if temporary {
        if result.is_ok() {
            // The network is shut down: nothing writes into it any more.
            let _ = std::fs::remove_dir_all(&home);
        }
        // Once every task has stopped (an interrupted run's nodes are still running), and
        // again if the removal above met a file created meanwhile.
        crate::remove_at_exit(home.clone());
    }
    let m = result?;
    let json = serde_json::to_string_pretty(&m)?;
    if let Some(out) = &args.json {
        std::fs::write(out, format!("{json}\n"))
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.2}"));
    // Rates: "-" when undefined (nothing predicted, or nothing to find).
    let r = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.3}"));
    println!(
        "{} people ({} with the app), {} days, seed {}: wall {:.1} s",
        m.counts.people, m.counts.app_users, m.days, m.seed, m.wall_s
    );
    println!(
        "close contacts: precision {:.3} recall {:.3} nDCF {:.3} ({} true pair-days)",
        m.close_contact.precision,
        m.close_contact.recall,
        m.close_contact.ndcf,
        m.close_contact.true_pair_days
    );
    println!(
        "notifications: {} confirmed ({} relayed), precision {} recall {}, latency p50 {} s p95 {} s",
        m.counts.confirmed,
        m.counts.confirmed_relayed,
        r(m.notification.precision),
        r(m.notification.recall),
        f(m.notification.latency_s.p50),
        f(m.notification.latency_s.p95)
    );
    println!(
        "  missed exposures: {} not judged close, {} judged close but not delivered; notices: {} unresolved, {} dropped by this driver, {} pushes dropped and {} pushed again by the edges{}",
        m.notification.missed.not_judged_close,
        m.notification.missed.judged_close_not_delivered,
        m.notification.unresolved_notices,
        m.notification.dropped_by_driver,
        m.notification.pushes_dropped_by_edges,
        m.notification.repushed_by_edges,
        if m.notification.drain_timed_out {
            "; the drain timed out with the edges still working (--drain-s)"
        } else {
            ""
        }
    );
    println!(
        "aerosol alerts: precision {} recall {} ({} truly elevated windows)",
        r(m.aerosol_alerts.precision),
        r(m.aerosol_alerts.recall),
        m.aerosol_alerts.true_windows
    );
    match &m.origin {
        Some(o) => println!(
            "origin: top-1 {} top-3 {} (earliest onset {} / {}) over {} clusters; origin reachable in {}, linked whole {}",
            r(o.top1),
            r(o.top3),
            r(o.baseline_top1),
            r(o.baseline_top3),
            o.clusters,
            r(o.reachable),
            r(o.linked)
        ),
        None => println!("origin: not served by the cloud (null)"),
    }
    println!(
        "ledger: {} bytes, {} txs, {:.1} tx/s; edges keep {} bytes",
        m.ledger.bytes, m.ledger.txs, m.ledger.tx_per_s, m.edge.raw_bytes
    );
    if !args.quiet && args.json.is_none() {
        println!("{json}");
    }
    Ok(())
}
