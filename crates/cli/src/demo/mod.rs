//! `trustedge demo`: a validator, an edge and a cloud node, each its own process, under
//! synthetic load through the real HTTP API.
//!
//! Three load tasks run beside a monitor:
//! - *registrations*: five founding organisations register simulated devices (wearables,
//!   thermometers, BLE beacons, air-quality sensors, cold-chain loggers), spread over all
//!   three nodes (followers forward to the validator);
//! - *anchoring*: the edge node's operator key anchors Merkle roots of batches of readings
//!   signed by those devices, and checks one record of each batch against the anchored root
//!   once it is committed;
//! - *scenario*: governance and mistakes, once: a new organisation admitted by approvals of
//!   two health authorities, then transactions that must fail (personal data in a device
//!   attribute, an unauthorised call, a replayed nonce, a bad signature, an unknown signer).
//!
//! The monitor reads every block from the validator (transactions, failures by code,
//! events), shows heights and throughput, and every few seconds checks that all nodes report
//! the same block hash and state root at their highest common height.

use std::collections::{BTreeMap, VecDeque};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{mpsc, watch};
use trustedge_contracts::{AnchorRecord, DeviceAttribute, DevicesCall, OrgsCall};
use trustedge_device::DeviceIdentity;
use trustedge_edge::{RecordBatch, RecordProof, SealedBatch};
use trustedge_execution::{DeviceClass, OrgKind};
use trustedge_node::client::Client;
use trustedge_node::config::Role as NodeRole;
use trustedge_types::{Hash, Keypair, Payload, SignedTx, TxOutcome};

mod load;
mod monitor;
mod scenario;

use load::*;
use monitor::*;
use scenario::*;

use crate::children::NodeProcess;
use crate::init::{self, InitArgs, Network};
use crate::remote::{self, ApiFailure, ChainHead};

/// Default home of the demo, recreated on every run.
const DEFAULT_HOME: &str = "demo-home";
/// How long the nodes get to answer after starting.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the monitor refreshes.
const MONITOR_TICK: Duration = Duration::from_millis(500);
/// How often all nodes are compared.
const AGREEMENT_EVERY: Duration = Duration::from_secs(3);
/// How often the edge anchors a batch of each record type.
const ANCHOR_EVERY: Duration = Duration::from_secs(2);
/// How often the registration task submits.
const REGISTER_TICK: Duration = Duration::from_millis(250);
/// Blocks the monitor reads per tick at most (it catches up over later ticks).
const MAX_BLOCKS_PER_TICK: u64 = 100;
/// Devices kept in memory to sign readings, per class.
const MAX_DEVICES_PER_CLASS: usize = 256;
/// Devices of one class that report in one batch.
const MAX_REPORTING_DEVICES: usize = 16;
/// Recent events shown.
const EVENT_LINES: usize = 10;
/// How long the end waits for followers to reach the validator's height.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(15);
/// Without a terminal, a plain progress line this often.
const PLAIN_LINE_EVERY: Duration = Duration::from_secs(5);

/// Arguments of `trustedge demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Home of the demo network. Default: ./demo-home, created afresh on every run; a home
    /// given here is reused if it exists.
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// First API port of a new network (nodes use consecutive ports).
    #[arg(long, default_value_t = 26650)]
    pub port: u16,
    /// Device registrations submitted per second.
    #[arg(long, default_value_t = 40)]
    pub rate: u32,
}

// ---------------------------------------------------------------------------------------
// Shared state

/// What the load tasks and the monitor tell each other and the summary.
#[derive(Default)]
struct Stats {
    /// Transactions accepted by a node's API.
    submitted: u64,
    /// Refusals at admission, by code: (intended, unintended).
    refused: BTreeMap<String, (u64, u64)>,
    /// Committed transactions that failed on purpose, by code.
    intended_failures: BTreeMap<String, u64>,
    /// Deliberate mistakes and the errors they got.
    on_purpose: Vec<String>,
    /// Scenario steps that did not go as they must.
    scenario_problems: Vec<String>,
    /// Scenario steps done.
    scenario_done: bool,
    /// Organisations admitted during the run.
    admitted: Vec<String>,
    /// Batches anchored (submitted) and records proven against anchored roots.
    batches_submitted: u64,
    records_proven: u64,
    /// Recent events, newest last.
    events: VecDeque<String>,
}

struct Shared {
    stats: Mutex<Stats>,
}

impl Shared {
    fn stats(&self) -> MutexGuard<'_, Stats> {
        // The stats stay consistent between statements; a panicked task does not spoil them.
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn event(&self, line: String) {
        let mut s = self.stats();
        s.events.push_back(line);
        while s.events.len() > EVENT_LINES {
            s.events.pop_front();
        }
    }

    fn refused(&self, code: &str, intended: bool) {
        let mut s = self.stats();
        let e = s.refused.entry(code.to_string()).or_default();
        if intended {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }

    /// A deliberate mistake and the error it got.
    fn on_purpose(&self, line: String) {
        self.event(format!("on purpose: {line}"));
        self.stats().on_purpose.push(line);
    }

    fn problem(&self, what: String) {
        self.event(format!("!! {what}"));
        self.stats().scenario_problems.push(what);
    }
}

/// A node as the demo sees it.
#[derive(Clone)]
struct DemoNode {
    name: String,
    role: NodeRole,
    client: Client,
}

/// A signing key with locally tracked nonces, so that several transactions of one signer
/// can be in flight in one block.
struct Signer {
    key: Keypair,
    next_nonce: u64,
}

impl Signer {
    async fn new(key: Keypair, client: &Client) -> Result<Signer, ApiFailure> {
        let last = remote::call(client.last_nonce(&key.public())).await?;
        Ok(Signer {
            key,
            next_nonce: last.saturating_add(1),
        })
    }

    fn sign(&mut self, head: &ChainHead, payload: Payload) -> SignedTx {
        let tx = remote::sign(&self.key, head, self.next_nonce, payload);
        self.next_nonce += 1;
        tx
    }

    async fn resync(&mut self, client: &Client) {
        if let Ok(last) = remote::call(client.last_nonce(&self.key.public())).await {
            self.next_nonce = self.next_nonce.max(last.saturating_add(1));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Entry point

/// `trustedge demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.rate == 0 || args.rate > 10_000 {
        anyhow::bail!("--rate must be 1..=10000 registrations per second");
    }
    let (home, net) = prepare(&args)?;
    if !net.nodes.iter().any(|n| n.role == NodeRole::Validator) {
        anyhow::bail!("{} has no validator node", home.display());
    }
    for n in &net.nodes {
        let listen = n.url.trim_start_matches("http://");
        if std::net::TcpListener::bind(listen).is_err() {
            anyhow::bail!(
                "{listen} (the API address of {}) is in use: is another demo running? Stop it, \
                 or pass --port with a free range (and no --home, or a new one)",
                n.name
            );
        }
    }
    let exe = std::env::current_exe().context("cannot find the trustedge executable")?;
    let mut procs = Vec::with_capacity(net.nodes.len());
    for n in &net.nodes {
        procs.push(NodeProcess::spawn(&exe, &n.name, &n.home)?);
    }
    let nodes: Vec<DemoNode> = net
        .nodes
        .iter()
        .map(|n| DemoNode {
            name: n.name.clone(),
            role: n.role,
            client: Client::with_timeout(n.url.clone(), Duration::from_secs(10)),
        })
        .collect();
    eprintln!("starting {} nodes from {} …", nodes.len(), home.display());
    wait_ready(&mut procs, &nodes, &net).await?;
    let result = drive(&args, &net, &nodes, &mut procs).await;
    // Stop the nodes before printing: the summary is the last thing the user sees.
    for p in &mut procs {
        p.stop();
    }
    let summary = result?;
    summary.print(&home);
    summary.verdict()
}

/// Creates or reuses the demo home.
fn prepare(args: &DemoArgs) -> anyhow::Result<(PathBuf, Network)> {
    let (home, reuse) = match &args.home {
        Some(h) => (h.clone(), h.join("genesis.json").exists()),
        None => {
            let h = PathBuf::from(DEFAULT_HOME);
            if h.exists() {
                if !h.join(init::MARKER_FILE).exists() {
                    anyhow::bail!(
                        "./{DEFAULT_HOME} exists but was not created by trustedge; move it away \
                         or pass --home"
                    );
                }
                std::fs::remove_dir_all(&h)
                    .with_context(|| format!("cannot remove the previous {}", h.display()))?;
            }
            (h, false)
        }
    };
    if reuse {
        eprintln!("reusing the network in {}", home.display());
        return Ok((home.clone(), Network::load(&home)?));
    }
    let init_args = InitArgs {
        validators: 1,
        edges: 1,
        clouds: 1,
        home: home.clone(),
        chain_id: "trustedge-demo".into(),
        base_port: args.port,
        // Three health authorities with one validator, so that admission shows 2-of-3.
        health_authorities: Some(3),
        // The demo submits through the edge and reads its nonces, transactions and blocks:
        // the edge must be a full replica.
        light_edges: false,
        tracing_edges: false,
    };
    let net = init::create(&init_args)?;
    eprintln!(
        "initialised {} with 1 validator, 1 edge, 1 cloud and {} organisations",
        home.display(),
        net.genesis.organisations.len()
    );
    Ok((home, net))
}

fn log_tail(home: &Path) -> String {
    let text = std::fs::read_to_string(home.join("node.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Waits until every node answers its status, failing early if a node process exits.
async fn wait_ready(
    procs: &mut [NodeProcess],
    nodes: &[DemoNode],
    net: &Network,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let mut ready = vec![false; nodes.len()];
    while ready.iter().any(|r| !r) {
        for (i, n) in nodes.iter().enumerate() {
            if let Some(status) = procs[i].exited() {
                let home = &net.nodes[i].home;
                anyhow::bail!(
                    "node {} exited ({status}) while starting; the end of {}:\n{}",
                    n.name,
                    home.join("node.log").display(),
                    log_tail(home)
                );
            }
            if !ready[i] && n.client.status().await.is_ok() {
                ready[i] = true;
            }
        }
        if Instant::now() > deadline {
            let waiting: Vec<&str> = nodes
                .iter()
                .zip(&ready)
                .filter(|(_, r)| !**r)
                .map(|(n, _)| n.name.as_str())
                .collect();
            anyhow::bail!(
                "nodes {waiting:?} did not answer within {} s (see node.log in their homes)",
                STARTUP_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The run

struct Summary {
    seconds: f64,
    chain_id: String,
    start_height: u64,
    end_height: u64,
    blocks_seen: u64,
    txs_committed: u64,
    failed_in_blocks: BTreeMap<String, u64>,
    devices_registered: u64,
    batches_anchored: u64,
    stats: Stats,
    checks_ok: u64,
    mismatches: Vec<String>,
    final_check: Agreement,
    node_names: Vec<String>,
}

impl Summary {
    fn print(&self, home: &Path) {
        let line = |k: &str, v: String| println!("  {k:<28} {v}");
        println!();
        println!(
            "TrustEdge demo summary ({:.1} s, chain {})",
            self.seconds, self.chain_id
        );
        line(
            "blocks",
            format!(
                "{} this run (validator height {} -> {})",
                self.blocks_seen, self.start_height, self.end_height
            ),
        );
        let failed: u64 = self.failed_in_blocks.values().sum();
        line(
            "transactions committed",
            format!(
                "{} ({:.1} tx/s), {failed} of them failed",
                self.txs_committed,
                self.txs_committed as f64 / self.seconds.max(0.001)
            ),
        );
        line("transactions submitted", self.stats.submitted.to_string());
        line("devices registered", self.devices_registered.to_string());
        line(
            "batches anchored",
            format!(
                "{} committed of {} submitted; {} record proofs verified against anchored roots",
                self.batches_anchored, self.stats.batches_submitted, self.stats.records_proven
            ),
        );
        line(
            "organisations admitted",
            if self.stats.admitted.is_empty() {
                "none".into()
            } else {
                self.stats.admitted.join(", ")
            },
        );
        line(
            "failed in blocks, by code",
            fmt_counts(&self.failed_in_blocks),
        );
        let refused: BTreeMap<String, u64> = self
            .stats
            .refused
            .iter()
            .map(|(k, (a, b))| (k.clone(), a + b))
            .collect();
        line("refused by the API, by code", fmt_counts(&refused));
        let intended: u64 = self.stats.intended_failures.values().sum::<u64>()
            + self.stats.refused.values().map(|(a, _)| a).sum::<u64>();
        let unintended: u64 = self.stats.refused.values().map(|(_, b)| b).sum::<u64>()
            + failed.saturating_sub(self.stats.intended_failures.values().sum::<u64>());
        line(
            "of which on purpose",
            format!("{intended} (the rest, {unintended}, were not planned)"),
        );
        for p in &self.stats.on_purpose {
            line("on purpose", p.clone());
        }
        if !self.stats.scenario_done {
            line("scenario", "did not finish in the time given".into());
        }
        for p in &self.stats.scenario_problems {
            line("scenario problem", p.clone());
        }
        let nodes = self.node_names.join(", ");
        match &self.final_check {
            Agreement::Agree(h) if self.mismatches.is_empty() => line(
                "agreement",
                format!(
                    "OK: {nodes} report identical block hashes and state roots at height {h} \
                     ({} checks during the run, 0 mismatches)",
                    self.checks_ok + 1
                ),
            ),
            Agreement::Agree(h) => line(
                "agreement",
                format!(
                    "FAILED: they agree at height {h} now, but {} checks found mismatches: {}",
                    self.mismatches.len(),
                    self.mismatches.join("; ")
                ),
            ),
            Agreement::Mismatch(m) => line("agreement", format!("FAILED: {m}")),
            Agreement::Unavailable(m) => line("agreement", format!("NOT CHECKED: {m}")),
        }
        println!("  node logs and data are in {}", home.display());
    }

    /// Ok only if the nodes agreed and the scenario did what it must.
    fn verdict(&self) -> anyhow::Result<()> {
        match &self.final_check {
            Agreement::Agree(_) if self.mismatches.is_empty() => {}
            Agreement::Agree(_) => anyhow::bail!("nodes disagreed during the run"),
            Agreement::Mismatch(m) => anyhow::bail!("nodes disagree: {m}"),
            Agreement::Unavailable(m) => anyhow::bail!("agreement could not be checked: {m}"),
        }
        if !self.stats.scenario_problems.is_empty() {
            anyhow::bail!(
                "the scenario did not go as it must: {}",
                self.stats.scenario_problems.join("; ")
            );
        }
        Ok(())
    }
}

fn fmt_counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn drive(
    args: &DemoArgs,
    net: &Network,
    nodes: &[DemoNode],
    procs: &mut [NodeProcess],
) -> anyhow::Result<Summary> {
    let shared = Arc::new(Shared {
        stats: Mutex::new(Stats::default()),
    });
    let validator = nodes
        .iter()
        .find(|n| n.role == NodeRole::Validator)
        .cloned()
        .context("no validator node")?;
    let start_status = remote::call(validator.client.status()).await?;
    let (stop_tx, stop_rx) = watch::channel(false);

    // New devices go from the registering organisations to the edge they report to.
    let (devices_tx, devices_rx) = mpsc::channel(MAX_DEVICES_PER_CLASS * RECORD_TYPES.len());
    let tasks = vec![
        tokio::spawn(registrations(
            shared.clone(),
            net.clone(),
            nodes.to_vec(),
            args.rate,
            devices_tx,
            stop_rx.clone(),
        )),
        tokio::spawn(anchoring(
            shared.clone(),
            net.clone(),
            nodes.to_vec(),
            devices_rx,
            stop_rx.clone(),
        )),
        tokio::spawn(scenario(
            shared.clone(),
            net.clone(),
            nodes.to_vec(),
            stop_rx.clone(),
        )),
    ];

    let started = Instant::now();
    let deadline = args.seconds.map(|s| started + Duration::from_secs(s));
    let mut mon = Monitor::new(nodes, start_status.height);
    let ui = Ui::new(nodes);
    // Ctrl-C or SIGTERM end the run with a summary, like --seconds.
    let mut ctrl_c = Box::pin(crate::shutdown_signal());
    let mut outcome: anyhow::Result<()> = Ok(());
    let mut last_plain = Instant::now();
    loop {
        tokio::select! {
            () = &mut ctrl_c => break,
            () = tokio::time::sleep(MONITOR_TICK) => {}
        }
        if let Some((i, status)) = procs
            .iter_mut()
            .enumerate()
            .find_map(|(i, p)| p.exited().map(|s| (i, s)))
        {
            outcome = Err(anyhow::anyhow!(
                "node {} exited unexpectedly ({status}); the end of its log:\n{}",
                nodes[i].name,
                log_tail(&net.nodes[i].home)
            ));
            break;
        }
        mon.refresh(&validator, &shared).await;
        if mon.last_check.elapsed() >= AGREEMENT_EVERY {
            mon.check_agreement(&shared).await;
        }
        ui.draw(&mon, &shared, started.elapsed(), &start_status.chain_id);
        if !ui.visible() && last_plain.elapsed() >= PLAIN_LINE_EVERY {
            last_plain = Instant::now();
            eprintln!("{}", mon.plain_line(started.elapsed()));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        // A load task that panicked or failed is reported through its events; the run still
        // ends with a summary.
        let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
    }
    ui.finish();
    outcome?;
    let seconds = started.elapsed().as_secs_f64();

    // Let the followers reach the validator, then compare once more.
    eprintln!("stopping load; waiting for all nodes to reach the same height …");
    let catch_up = Instant::now() + CATCH_UP_TIMEOUT;
    // At least one block, so that even a run of zero seconds compares something.
    let target = remote::call(validator.client.status())
        .await
        .map(|s| s.height)
        .unwrap_or(0)
        .max(1);
    while Instant::now() < catch_up {
        let mut all = true;
        for n in nodes {
            if remote::call(n.client.status())
                .await
                .map(|s| s.height)
                .unwrap_or(0)
                < target
            {
                all = false;
            }
        }
        if all {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    mon.refresh(&validator, &shared).await;
    let final_check = agreement(nodes).await;
    Ok(Summary {
        seconds,
        chain_id: start_status.chain_id,
        start_height: start_status.height,
        end_height: mon.seen_height,
        blocks_seen: mon.seen_height.saturating_sub(start_status.height),
        txs_committed: mon.txs,
        failed_in_blocks: mon.failed.clone(),
        devices_registered: mon.devices,
        batches_anchored: mon.batches,
        stats: std::mem::take(&mut *shared.stats()),
        checks_ok: mon.checks_ok,
        mismatches: mon.mismatches.clone(),
        final_check,
        node_names: nodes.iter().map(|n| n.name.clone()).collect(),
    })
}
