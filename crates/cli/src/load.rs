//! `trustedge load`: valid signed transactions at a steady rate against running nodes.
//!
//! Every transaction is a `devices.register` of a fresh device, signed by one of the given
//! keys (`--key FILE`, or every organisation admin key of a network home, `--home DIR`).
//! A background thread signs ahead of the submission (a couple of seconds' worth); a token
//! bucket releases them at `--tps`; each signer submits to one node, in nonce order, through
//! `POST /v1/txs/batch`. The summary counts what was submitted, accepted and refused (by
//! code) and the committed throughput seen in the blocks of the first node.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use trustedge_types::Keypair;

use crate::keys;
use crate::loadgen::{self, Pace, Signers, Submitter, Tally};
use crate::remote;

/// Highest rate accepted.
const MAX_TPS: f64 = 1_000_000.0;
/// Longest run.
const MAX_SECONDS: u64 = 24 * 3600;
/// How far ahead the signing thread works, in seconds of load.
const SIGN_AHEAD_S: f64 = 2.0;
/// Most transactions signed ahead.
const MAX_SIGN_AHEAD: usize = 200_000;
/// How long the start waits for the signing thread to get ahead.
const SIGN_AHEAD_WAIT: Duration = Duration::from_secs(10);
/// How often the block watcher polls.
const WATCH_POLL: Duration = Duration::from_millis(100);

/// Arguments of `trustedge load`.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Node API URLs, comma-separated; each signer submits to one of them.
    #[arg(
        long,
        value_delimiter = ',',
        required = true,
        value_name = "URL[,URL…]"
    )]
    pub node: Vec<String>,
    /// Transactions per second.
    #[arg(long, default_value_t = 100.0)]
    pub tps: f64,
    /// How long to submit.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Signing key file (a member of an organisation, Admin or Operator).
    #[arg(long, conflicts_with = "home")]
    pub key: Option<PathBuf>,
    /// A network home made by `init`/`devnet`: every organisation admin key in DIR/keys signs.
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// After submitting, wait at most this long for accepted transactions to be committed.
    #[arg(long, default_value_t = 10)]
    pub drain_seconds: u64,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// The signing keys of a run.
fn signing_keys(args: &LoadArgs) -> anyhow::Result<Vec<Keypair>> {
    match (&args.key, &args.home) {
        (Some(k), None) => Ok(vec![keys::load(k)?]),
        (None, Some(home)) => admin_keys(home),
        _ => anyhow::bail!("give --key FILE or --home DIR"),
    }
}

/// Every organisation admin key in `home/keys` (`<org>-admin.json`), in name order.
pub fn admin_keys(home: &std::path::Path) -> anyhow::Result<Vec<Keypair>> {
    let dir = home.join("keys");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with("-admin.json"))
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        anyhow::bail!("{} holds no <org>-admin.json key", dir.display());
    }
    paths.iter().map(|p| keys::load(p)).collect()
}

/// `trustedge load`.
pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    if !(args.tps > 0.0 && args.tps <= MAX_TPS) {
        anyhow::bail!("--tps must be in (0, {MAX_TPS}]");
    }
    if args.seconds == 0 || args.seconds > MAX_SECONDS {
        anyhow::bail!("--seconds must be 1..={MAX_SECONDS}");
    }
    let clients = args
        .node
        .iter()
        .map(|u| remote::client(u))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let urls: Vec<String> = clients.iter().map(|c| c.url().to_string()).collect();
    let first = clients.first().context("give at least one --node")?;
    let signers = Signers::new(signing_keys(&args)?, first).await?;
    let n_signers = signers.len();
    let total = (args.tps * args.seconds as f64).ceil() as usize;
    let ahead = ((args.tps * SIGN_AHEAD_S).ceil() as usize).clamp(1, MAX_SIGN_AHEAD);

    // Sign ahead on a background thread; the bounded channel is the lead.
    let (src_tx, mut source) = mpsc::channel(ahead);
    // A little more than the run needs, so that running dry means the signer fell behind.
    let to_sign = total.saturating_add(ahead);
    let signer_thread = std::thread::spawn(move || {
        let mut signers = signers;
        for i in 0..to_sign {
            let p = signers.prepare(i % n_signers);
            if src_tx.blocking_send(p).is_err() {
                return;
            }
        }
    });
    let lead_deadline = Instant::now() + SIGN_AHEAD_WAIT;
    while source.len() < ahead.min(total) && Instant::now() < lead_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let start_height = remote::call(first.status()).await?.height;
    let tally = Arc::new(Tally::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (height_tx, height_rx) = watch::channel(start_height);
    let watcher = tokio::spawn(loadgen::watch_blocks(
        first.clone(),
        start_height,
        tally.clone(),
        WATCH_POLL,
        stop_rx.clone(),
        height_tx,
    ));
    let mut submitter = Submitter::new(&urls, tally.clone());
    if !args.json {
        eprintln!(
            "load: {n_signers} signers over {} node(s), {} tx/s for {} s ({total} transactions)",
            urls.len(),
            args.tps,
            args.seconds
        );
    }
    let pb = ProgressBar::new(total as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} submitted ({per_sec}) {msg}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let mut ctrl_c = Box::pin(crate::shutdown_signal());
    let mut stop_dispatch = stop_rx.clone();
    let mut last_draw = Instant::now();
    let mut on_tick = {
        let tally = tally.clone();
        let pb = pb.clone();
        let height_rx = height_rx.clone();
        move || {
            if last_draw.elapsed() < Duration::from_millis(200) {
                return;
            }
            last_draw = Instant::now();
            let c = tally.counts();
            pb.set_position(c.submitted);
            pb.set_message(format!(
                "accepted {} refused {} committed {} height {}",
                c.accepted,
                c.refused_total(),
                c.committed,
                *height_rx.borrow()
            ));
        }
    };
    let (interrupted, ran_dry) = tokio::select! {
        ran_dry = loadgen::dispatch(
            &mut submitter, &mut source, Pace::Rate(args.tps), until, &mut stop_dispatch,
            &mut on_tick,
        ) => (false, ran_dry),
        () = &mut ctrl_c => (true, false),
    };
    let submit_end = Instant::now();
    drop(source);
    // The thread sees the closed channel at its next send.
    let _ = signer_thread.join();
    let tally = submitter.finish().await;
    let window_end = Instant::now();
    // Drain: wait for what was accepted to be committed.
    let drain_until = Instant::now() + Duration::from_secs(args.drain_seconds);
    while !interrupted && Instant::now() < drain_until {
        let c = tally.counts();
        if c.committed >= c.accepted {
            break;
        }
        on_tick();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(true);
    let blocks = watcher.await.unwrap_or_default();
    pb.finish_and_clear();

    let counts = tally.counts();
    let seconds = submit_end.duration_since(started).as_secs_f64().max(0.001);
    let in_window: Vec<_> = blocks.iter().filter(|b| b.seen <= window_end).collect();
    let committed_window: u64 = in_window.iter().map(|b| b.txs).sum();
    let window_s = window_end.duration_since(started).as_secs_f64().max(0.001);
    let mut lat = tally.latencies_ms();
    lat.sort_by(f64::total_cmp);
    let summary = json!({
        "nodes": urls,
        "signers": n_signers,
        "target_tps": args.tps,
        "seconds": seconds,
        "interrupted": interrupted,
        "signing_kept_up": !ran_dry,
        "submitted": counts.submitted,
        "accepted": counts.accepted,
        "refused": counts.refused,
        "submit_tx_per_s": counts.submitted as f64 / seconds,
        "blocks": in_window.len(),
        "committed_txs": committed_window,
        "committed_tx_per_s": committed_window as f64 / window_s,
        "committed_ours_after_drain": counts.committed,
        "uncommitted": counts.accepted.saturating_sub(counts.committed),
        "p50_ms": loadgen::percentile(&lat, 50.0),
        "p99_ms": loadgen::percentile(&lat, 99.0),
        "debug_build": cfg!(debug_assertions),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&counts.refused, &summary);
    }
    if counts.submitted > 0 && counts.accepted == 0 {
        anyhow::bail!(
            "no transaction was accepted (refusals by code: {:?})",
            counts.refused
        );
    }
    Ok(())
}

fn print_summary(refused: &BTreeMap<String, u64>, s: &serde_json::Value) {
    let f = |k: &str| s[k].as_f64().unwrap_or(0.0);
    let u = |k: &str| s[k].as_u64().unwrap_or(0);
    println!("load summary ({:.1} s)", f("seconds"));
    println!(
        "  submitted          {} ({:.1} tx/s, target {})",
        u("submitted"),
        f("submit_tx_per_s"),
        f("target_tps")
    );
    println!("  accepted           {}", u("accepted"));
    if s["signing_kept_up"] == serde_json::Value::Bool(false) {
        println!("  note               the signing thread fell behind the target rate");
    }
    let refused_text = if refused.is_empty() {
        "none".to_string()
    } else {
        refused
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("  refused by code    {refused_text}");
    println!(
        "  committed          {} tx in {} blocks ({:.1} tx/s)",
        u("committed_txs"),
        u("blocks"),
        f("committed_tx_per_s")
    );
    println!(
        "  of ours committed  {} ({} not yet after the drain)",
        u("committed_ours_after_drain"),
        u("uncommitted")
    );
    if let (Some(p50), Some(p99)) = (s["p50_ms"].as_f64(), s["p99_ms"].as_f64()) {
        println!("  submit to commit   p50 {p50:.0} ms, p99 {p99:.0} ms");
    }
}
