//! `trustedge bench ledger`: a whole network of node processes under maximum load.
//!
//! 1. Creates a network of `--validators` validators in a temporary directory.
//! 2. Measures the ceiling in the same run: ed25519 batch verification over all cores
//!    ([`verify_parallel`]) of transactions like the load's, divided by the number of
//!    validators (every validator checks every signature once; they share the cores).
//! 3. Pre-signs the whole load before anything is timed: `devices.register` transactions of
//!    every organisation admin, enough for `--seconds` at 1.5 × the ceiling.
//! 4. Starts every node as a process ([`Devnet`]) and submits through `POST /v1/txs/batch`,
//!    each signer to one validator (spread over all of them), as fast as the chain commits:
//!    a closed loop keeps at most `--window` transactions accepted and not yet committed, so
//!    the rate found is the sustainable one (an open loop above it would only fill mempools).
//! 5. Watches the first validator's blocks: committed tx/s and blocks/s over the window, and
//!    for every transaction the time from its submission to the moment its block was seen
//!    committed (p50, p99).
//! 6. Checks that every validator reports the same block hash at their common height.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use trustedge_chain::verify::verify_parallel;
use trustedge_node::client::Client;
use trustedge_node::config::NodeConfig;
use trustedge_types::SignedTx;

use crate::bench::TempDir;
use crate::devnet::{self, Devnet};
use crate::init::{self, InitArgs};
use crate::loadgen::{self, Pace, Signers, Submitter, Tally};

/// Most validators the benchmark starts.
const MAX_VALIDATORS: usize = 16;
/// Longest measurement.
const MAX_SECONDS: u64 = 3600;
/// Transactions signed to measure the verification ceiling.
const CEILING_SAMPLE: usize = 4096;
/// Least time spent measuring the ceiling.
const MIN_VERIFY_TIME: Duration = Duration::from_secs(1);
/// Pre-signed load relative to the ceiling × seconds.
const HEADROOM: f64 = 1.5;
/// How often the block watcher polls.
const WATCH_POLL: Duration = Duration::from_millis(20);
/// How long the end waits for accepted transactions to be committed.
const DRAIN: Duration = Duration::from_secs(30);
/// Least outstanding transactions of the closed loop (before any commit is seen).
const MIN_WINDOW: u64 = 1000;
/// The throughput the project aims at with 4 validators on 2 cores.
const TARGET_TX_PER_S: f64 = 20_000.0;

/// Arguments of `trustedge bench ledger`.
#[derive(Args, Debug, Clone)]
pub struct LedgerArgs {
    /// Number of validators (more than one run BFT consensus).
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Length of the measurement window.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Outstanding work the closed loop keeps (submitted and not yet committed), in
    /// milliseconds at the recent commit rate.
    #[arg(long, default_value_t = 1000)]
    pub backlog_ms: u64,
    /// Most transactions outstanding at once.
    #[arg(long, default_value_t = 100_000)]
    pub window: u64,
    /// Most transactions pre-signed (held in memory, about 0.5 KB each; enough for 30 s at
    /// 33,000 tx/s; `presigned_used_up` in the output says if a run needed more).
    #[arg(long, default_value_t = 1_000_000)]
    pub max_txs: usize,
    /// Block pacing: the sealer's `block_interval_ms` and consensus'
    /// `target_block_time_ms` (default: the node's defaults).
    #[arg(long)]
    pub block_time_ms: Option<u64>,
    /// Blocks per durable store commit of every node (`checkpoint_interval` in its
    /// `config.toml`; default: the node's default; 1 = every block durable).
    #[arg(long)]
    pub checkpoint_interval: Option<u64>,
    /// First API port (default: a free range).
    #[arg(long)]
    pub base_port: Option<u16>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The measured figures.
struct Figures {
    validators: usize,
    threads: usize,
    seconds: f64,
    presigned: usize,
    counts: loadgen::Counts,
    ran_dry: bool,
    blocks: usize,
    committed_txs: u64,
    tx_per_s: f64,
    blocks_per_s: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    verify_sigs_per_s: f64,
    ceiling_tx_per_s: f64,
    agreement: Result<u64, String>,
}

/// `trustedge bench ledger`.
pub async fn run(args: LedgerArgs) -> anyhow::Result<()> {
    if args.validators == 0 || args.validators > MAX_VALIDATORS {
        anyhow::bail!("--validators must be 1..={MAX_VALIDATORS}");
    }
    if args.seconds == 0 || args.seconds > MAX_SECONDS {
        anyhow::bail!("--seconds must be 1..={MAX_SECONDS}");
    }
    if args.window < MIN_WINDOW {
        anyhow::bail!("--window must be at least {MIN_WINDOW}");
    }
    if !(1..=60_000).contains(&args.backlog_ms) {
        anyhow::bail!("--backlog-ms must be 1..=60000");
    }
    let f = measure(&args).await?;
    print(&args, &f)?;
    if let Err(e) = &f.agreement {
        anyhow::bail!("the validators disagree: {e}");
    }
    Ok(())
}

fn say(args: &LedgerArgs, line: &str) {
    if !args.json {
        eprintln!("{line}");
    }
}

async fn measure(args: &LedgerArgs) -> anyhow::Result<Figures> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let dir = TempDir::new()?;
    let home = dir.path().join("net");
    // API ports, then (with consensus) one p2p port per validator.
    let ports = if args.validators > 1 {
        2 * args.validators
    } else {
        1
    };
    let base_port = match args.base_port {
        Some(p) => p,
        None => trustedge_node::ports::free_consecutive(
            u16::try_from(ports).context("too many ports")?,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::from(d.subsec_nanos())),
        )?,
    };
    let net = init::create(&InitArgs {
        validators: args.validators,
        edges: 0,
        clouds: 0,
        home: home.clone(),
        chain_id: "trustedge-bench".into(),
        base_port,
        health_authorities: None,
        light_edges: false,
        tracing_edges: false,
        aerosol_edges: false,
    })?;
    if args.block_time_ms.is_some() || args.checkpoint_interval.is_some() {
        for n in &net.nodes {
            let mut c = NodeConfig::load(&n.home)?;
            if let Some(ms) = args.block_time_ms {
                c.block_interval_ms = ms.max(1);
                c.consensus.target_block_time_ms = ms;
            }
            if let Some(blocks) = args.checkpoint_interval {
                c.checkpoint_interval = blocks;
            }
            c.save(&n.home)?;
        }
    }
    let keys: Vec<_> = net.org_admins.iter().map(|(_, k)| k.clone()).collect();
    let mut signers = Signers::fresh(keys, &net.genesis.chain_id);

    // The ceiling, on transactions like the load's (a clone: the load's nonces stay fresh).
    say(args, "measuring the ed25519 batch-verification ceiling …");
    let verify_sigs_per_s = tokio::task::spawn_blocking({
        let mut sample_signers = signers.clone();
        move || verify_rate(&mut sample_signers)
    })
    .await
    .context("the verification thread failed")??;
    let ceiling_tx_per_s = verify_sigs_per_s / args.validators as f64;

    // Pre-sign the whole load.
    let wanted = (ceiling_tx_per_s * HEADROOM * args.seconds as f64) as usize + MIN_WINDOW as usize;
    let per_signer = wanted.min(args.max_txs).div_ceil(signers.len()).max(1);
    say(
        args,
        &format!(
            "pre-signing {} transactions on {threads} threads …",
            per_signer * signers.len()
        ),
    );
    let load = tokio::task::spawn_blocking(move || {
        let txs = signers.presign(per_signer, threads);
        (txs, signers)
    })
    .await
    .context("the signing threads failed")?
    .0;
    let presigned = load.len();

    // The network.
    let exe = std::env::current_exe().context("cannot find the trustedge executable")?;
    say(args, &format!("starting {} validators …", args.validators));
    let mut devnet = Devnet::start(&home, net, &exe, false)?;
    devnet.wait_ready(devnet::STARTUP_TIMEOUT).await?;
    let urls = devnet.validator_urls();
    let first = Client::with_timeout(urls[0].clone(), Duration::from_secs(5));
    let start_height = crate::remote::call(first.status()).await?.height;

    let (src_tx, mut source) = mpsc::channel(presigned.max(1));
    for p in load {
        // The channel holds them all; it cannot be full or closed here.
        let _ = src_tx.try_send(p);
    }
    drop(src_tx);
    let tally = std::sync::Arc::new(Tally::default());
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
    let pb = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.seconds)
    };
    pb.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {msg}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let mut stop_dispatch = stop_rx.clone();
    let mut last_draw = Instant::now();
    let mut on_tick = {
        let tally = tally.clone();
        let pb = pb.clone();
        move || {
            if last_draw.elapsed() < Duration::from_millis(250) {
                return;
            }
            last_draw = Instant::now();
            let c = tally.counts();
            let s = started.elapsed().as_secs_f64();
            pb.set_position(s as u64);
            pb.set_message(format!(
                "height {} · committed {} ({:.0} tx/s) · accepted {} · refused {}",
                *height_rx.borrow(),
                c.committed,
                c.committed as f64 / s.max(0.001),
                c.accepted,
                c.refused_total()
            ));
        }
    };
    let mut exits = Vec::new();
    let ran_dry = tokio::select! {
        r = loadgen::dispatch(
            &mut submitter, &mut source, backlog(args), until,
            &mut stop_dispatch, &mut on_tick,
        ) => r,
        () = crate::shutdown_signal() => anyhow::bail!("interrupted"),
    };
    let window_end = Instant::now();
    drop(source);
    let tally = submitter.finish().await;
    let drain_until = Instant::now() + DRAIN;
    while Instant::now() < drain_until {
        let c = tally.counts();
        if c.committed >= c.accepted {
            break;
        }
        exits.extend(devnet.poll());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(true);
    let blocks = watcher.await.unwrap_or_default();
    pb.finish_and_clear();
    exits.extend(devnet.poll());
    let agreement = agreement(&urls).await;
    devnet.stop();
    if !exits.is_empty() {
        let lines: Vec<String> = exits.iter().map(ToString::to_string).collect();
        anyhow::bail!("nodes failed during the benchmark: {}", lines.join("; "));
    }

    let seconds = window_end.duration_since(started).as_secs_f64().max(0.001);
    let in_window: Vec<_> = blocks
        .iter()
        .filter(|b| b.seen > started && b.seen <= window_end)
        .collect();
    let committed_txs: u64 = in_window.iter().map(|b| b.txs).sum();
    let mut lat = tally.latencies_ms();
    lat.sort_by(f64::total_cmp);
    Ok(Figures {
        validators: args.validators,
        threads,
        seconds,
        presigned,
        counts: tally.counts(),
        ran_dry,
        blocks: in_window.len(),
        committed_txs,
        tx_per_s: committed_txs as f64 / seconds,
        blocks_per_s: in_window.len() as f64 / seconds,
        p50_ms: loadgen::percentile(&lat, 50.0),
        p99_ms: loadgen::percentile(&lat, 99.0),
        max_ms: lat.last().copied(),
        verify_sigs_per_s,
        ceiling_tx_per_s,
        agreement,
    })
}

fn backlog(args: &LedgerArgs) -> Pace {
    Pace::Backlog {
        backlog: Duration::from_millis(args.backlog_ms),
        min: MIN_WINDOW,
        max: args.window,
    }
}

/// Batch-verification rate over all cores, signatures per second.
fn verify_rate(signers: &mut Signers) -> anyhow::Result<f64> {
    let n = signers.len();
    let txs: Vec<SignedTx> = (0..CEILING_SAMPLE).map(|i| signers.sign(i % n)).collect();
    let sign_bytes: Vec<Vec<u8>> = txs.iter().map(|t| t.body.sign_bytes()).collect();
    let items: Vec<_> = txs
        .iter()
        .zip(&sign_bytes)
        .map(|(t, m)| (t.body.signer, m.as_slice(), t.signature))
        .collect();
    let (mut verified, mut spent) = (0usize, Duration::ZERO);
    while spent < MIN_VERIFY_TIME {
        let t = Instant::now();
        let ok = verify_parallel(&items);
        spent += t.elapsed();
        if ok.iter().any(|v| !v) {
            anyhow::bail!("a freshly signed transaction did not verify: the benchmark is broken");
        }
        verified += items.len();
    }
    Ok(verified as f64 / spent.as_secs_f64())
}

/// The common height of all validators, if they report the same block hash there.
async fn agreement(urls: &[String]) -> Result<u64, String> {
    let clients: Vec<Client> = urls
        .iter()
        .map(|u| Client::with_timeout(u.clone(), Duration::from_secs(10)))
        .collect();
    let mut heights = Vec::with_capacity(clients.len());
    for c in &clients {
        heights.push(c.status().await.map_err(|e| e.to_string())?.height);
    }
    let common = heights.iter().copied().min().unwrap_or(0);
    if common == 0 {
        return Ok(0);
    }
    let mut first = None;
    for (c, u) in clients.iter().zip(urls) {
        let h = c.headers(common, common).await.map_err(|e| e.to_string())?;
        let hash = h
            .headers
            .first()
            .map(|e| e.hash)
            .ok_or_else(|| format!("{u} has no header at {common}"))?;
        match first {
            None => first = Some(hash),
            Some(f) if f != hash => {
                return Err(format!("{u} has block {hash} at height {common}, not {f}"));
            }
            Some(_) => {}
        }
    }
    Ok(common)
}

fn print(args: &LedgerArgs, f: &Figures) -> anyhow::Result<()> {
    let ratio = if f.ceiling_tx_per_s > 0.0 {
        f.tx_per_s / f.ceiling_tx_per_s
    } else {
        0.0
    };
    let out = json!({
        "validators": f.validators,
        "seconds": f.seconds,
        "threads": f.threads,
        "debug_build": cfg!(debug_assertions),
        "window_max": args.window,
        "backlog_ms": args.backlog_ms,
        "presigned": f.presigned,
        "presigned_used_up": f.ran_dry,
        "submitted": f.counts.submitted,
        "accepted": f.counts.accepted,
        "refused": f.counts.refused,
        "committed_txs": f.committed_txs,
        "uncommitted_after_drain": f.counts.accepted.saturating_sub(f.counts.committed),
        "blocks": f.blocks,
        "tx_per_s": f.tx_per_s,
        "blocks_per_s": f.blocks_per_s,
        "mean_block_txs": if f.blocks > 0 { f.committed_txs as f64 / f.blocks as f64 } else { 0.0 },
        "p50_ms": f.p50_ms,
        "p99_ms": f.p99_ms,
        "max_ms": f.max_ms,
        "verify_sigs_per_s": f.verify_sigs_per_s,
        "ceiling_tx_per_s": f.ceiling_tx_per_s,
        "ratio": ratio,
        "target_tx_per_s": TARGET_TX_PER_S,
        "agreed_height": f.agreement.as_ref().ok(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "bench ledger: {} validator(s), {:.1} s, {} threads{}",
        f.validators,
        f.seconds,
        f.threads,
        if cfg!(debug_assertions) {
            " (DEBUG BUILD: use --release for real figures)"
        } else {
            ""
        }
    );
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0} ms"));
    println!(
        "  committed            {:>10.0} tx/s ({} tx)",
        f.tx_per_s, f.committed_txs
    );
    println!(
        "  blocks               {:>10.2} blk/s ({} blocks, {:.0} tx each)",
        f.blocks_per_s,
        f.blocks,
        out["mean_block_txs"].as_f64().unwrap_or(0.0)
    );
    println!(
        "  submit to finality   p50 {}, p99 {}, max {}",
        ms(f.p50_ms),
        ms(f.p99_ms),
        ms(f.max_ms)
    );
    println!(
        "  ceiling              {:>10.0} tx/s (batch verification {:.0} sig/s ÷ {} validators)",
        f.ceiling_tx_per_s, f.verify_sigs_per_s, f.validators
    );
    println!("  ratio                {ratio:>10.3}");
    println!(
        "  submitted {} · accepted {} · refused {:?} · pre-signed {}{}",
        f.counts.submitted,
        f.counts.accepted,
        f.counts.refused,
        f.presigned,
        if f.ran_dry { " (used up)" } else { "" }
    );
    match &f.agreement {
        Ok(h) => {
            println!("  agreement            all validators have the same block at height {h}")
        }
        Err(e) => println!("  agreement            FAILED: {e}"),
    }
    Ok(())
}
