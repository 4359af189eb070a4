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
use tokio::sync::watch;
use trustedge_contracts::{AnchorCall, AnchorRecord, DeviceAttribute, DevicesCall, OrgsCall};
use trustedge_execution::{DeviceClass, OrgKind};
use trustedge_node::client::Client;
use trustedge_node::config::Role as NodeRole;
use trustedge_types::merkle::MerkleTree;
use trustedge_types::{Address, Hash, Keypair, MerkleProof, Payload, SignedTx, TxOutcome, encode};

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
const MAX_REPORTING_DEVICES: usize = 32;
/// Recent events shown.
const EVENT_LINES: usize = 7;
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
    /// Devices that can sign readings, by class.
    devices: BTreeMap<String, Vec<Keypair>>,
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
    label: String,
    key: Keypair,
    next_nonce: u64,
}

impl Signer {
    async fn new(label: &str, key: Keypair, client: &Client) -> Result<Signer, ApiFailure> {
        let last = remote::call(client.last_nonce(&key.public())).await?;
        Ok(Signer {
            label: label.to_string(),
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
    stats: StatsSnapshot,
    checks_ok: u64,
    mismatches: Vec<String>,
    final_check: Agreement,
    node_names: Vec<String>,
}

struct StatsSnapshot {
    submitted: u64,
    refused: BTreeMap<String, (u64, u64)>,
    intended_failures: BTreeMap<String, u64>,
    scenario_problems: Vec<String>,
    scenario_done: bool,
    admitted: Vec<String>,
    batches_submitted: u64,
    records_proven: u64,
}

impl Summary {
    fn print(&self, home: &Path) {
        let line = |k: &str, v: String| println!("  {k:<26} {v}");
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

    let tasks = vec![
        tokio::spawn(registrations(
            shared.clone(),
            net.clone(),
            nodes.to_vec(),
            args.rate,
            stop_rx.clone(),
        )),
        tokio::spawn(anchoring(shared.clone(), net.clone(), nodes.to_vec(), stop_rx.clone())),
        tokio::spawn(scenario(shared.clone(), net.clone(), nodes.to_vec(), stop_rx.clone())),
    ];

    let started = Instant::now();
    let deadline = args.seconds.map(|s| started + Duration::from_secs(s));
    let mut mon = Monitor::new(nodes, start_status.height);
    let ui = Ui::new(nodes);
    let mut ctrl_c = Box::pin(tokio::signal::ctrl_c());
    let mut outcome: anyhow::Result<()> = Ok(());
    let mut last_plain = Instant::now();
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
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
    let target = remote::call(validator.client.status())
        .await
        .map(|s| s.height)
        .unwrap_or(0);
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
    let s = shared.stats();
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
        stats: StatsSnapshot {
            submitted: s.submitted,
            refused: s.refused.clone(),
            intended_failures: s.intended_failures.clone(),
            scenario_problems: s.scenario_problems.clone(),
            scenario_done: s.scenario_done,
            admitted: s.admitted.clone(),
            batches_submitted: s.batches_submitted,
            records_proven: s.records_proven,
        },
        checks_ok: mon.checks_ok,
        mismatches: mon.mismatches.clone(),
        final_check,
        node_names: nodes.iter().map(|n| n.name.clone()).collect(),
    })
}

// ---------------------------------------------------------------------------------------
// Monitor

/// Result of comparing the nodes.
#[derive(Clone, Debug)]
enum Agreement {
    /// All nodes have the same block hash and state root at this height.
    Agree(u64),
    /// They differ.
    Mismatch(String),
    /// A node could not be asked.
    Unavailable(String),
}

/// Compares block hash and state root of every node at their highest common height.
async fn agreement(nodes: &[DemoNode]) -> Agreement {
    let mut heights = Vec::with_capacity(nodes.len());
    for n in nodes {
        match remote::call(n.client.status()).await {
            Ok(s) => heights.push(s.height),
            Err(e) => return Agreement::Unavailable(format!("{}: {e}", n.name)),
        }
    }
    let common = heights.iter().copied().min().unwrap_or(0);
    if common == 0 {
        return Agreement::Unavailable("no block is committed on every node yet".into());
    }
    let mut first: Option<(String, Hash, Hash)> = None;
    for n in nodes {
        let b = match remote::call(n.client.block(common)).await {
            Ok(b) => b,
            Err(e) => return Agreement::Unavailable(format!("{} block {common}: {e}", n.name)),
        };
        match &first {
            None => first = Some((n.name.clone(), b.hash, b.state_root)),
            Some((name, hash, root)) => {
                if *hash != b.hash || *root != b.state_root {
                    return Agreement::Mismatch(format!(
                        "at height {common} {name} has block {} state {} but {} has block {} \
                         state {}",
                        short(hash),
                        short(root),
                        n.name,
                        short(&b.hash),
                        short(&b.state_root)
                    ));
                }
            }
        }
    }
    Agreement::Agree(common)
}

fn short(h: &Hash) -> String {
    h.to_hex()[..12].to_string()
}

struct NodeView {
    height: u64,
    block_hash: Hash,
    state_root: Hash,
    mode: String,
    error: Option<String>,
}

struct Monitor {
    nodes: Vec<DemoNode>,
    views: Vec<NodeView>,
    seen_height: u64,
    txs: u64,
    devices: u64,
    batches: u64,
    failed: BTreeMap<String, u64>,
    /// (time, committed transactions) samples for the rate.
    samples: VecDeque<(Instant, u64)>,
    last_check: Instant,
    last_agreement: Option<Agreement>,
    checks_ok: u64,
    mismatches: Vec<String>,
}

impl Monitor {
    fn new(nodes: &[DemoNode], start_height: u64) -> Monitor {
        Monitor {
            nodes: nodes.to_vec(),
            views: nodes
                .iter()
                .map(|_| NodeView {
                    height: 0,
                    block_hash: Hash::ZERO,
                    state_root: Hash::ZERO,
                    mode: String::new(),
                    error: None,
                })
                .collect(),
            seen_height: start_height,
            txs: 0,
            devices: 0,
            batches: 0,
            failed: BTreeMap::new(),
            samples: VecDeque::new(),
            last_check: Instant::now(),
            last_agreement: None,
            checks_ok: 0,
            mismatches: Vec::new(),
        }
    }

    async fn refresh(&mut self, validator: &DemoNode, shared: &Shared) {
        for (n, v) in self.nodes.iter().zip(self.views.iter_mut()) {
            match remote::call(n.client.status()).await {
                Ok(s) => {
                    v.height = s.height;
                    v.block_hash = s.block_hash;
                    v.state_root = s.state_root;
                    v.mode = serde_json::to_value(s.mode)
                        .ok()
                        .and_then(|m| m.as_str().map(str::to_string))
                        .unwrap_or_default();
                    v.error = None;
                }
                Err(e) => v.error = Some(e.to_string()),
            }
        }
        let top = self
            .nodes
            .iter()
            .zip(&self.views)
            .find(|(n, _)| n.name == validator.name)
            .map(|(_, v)| v.height)
            .unwrap_or(0);
        let until = top.min(self.seen_height + MAX_BLOCKS_PER_TICK);
        while self.seen_height < until {
            let h = self.seen_height + 1;
            let Ok(b) = remote::call(validator.client.block(h)).await else {
                break;
            };
            for t in &b.txs {
                self.txs += 1;
                let Some(r) = &t.result else { continue };
                if let TxOutcome::Failed(f) = &r.outcome {
                    *self.failed.entry(f.code.clone()).or_default() += 1;
                    shared.event(format!(
                        "h{h} x {} failed [{}]: {}",
                        t.tx.body.payload.module,
                        f.code,
                        clip(&f.message, 90)
                    ));
                }
                for e in &r.events {
                    match e.kind.as_str() {
                        "device_registered" => self.devices += 1,
                        "batch_anchored" => {
                            self.batches += 1;
                            shared.event(format!(
                                "h{h} anchored {} records of {} (root {})",
                                e.attr("count").unwrap_or("?"),
                                e.attr("record_type").unwrap_or("?"),
                                clip(e.attr("merkle_root").unwrap_or("?"), 12)
                            ));
                        }
                        _ => {
                            let attrs: Vec<String> = e
                                .attributes
                                .iter()
                                .filter(|a| a.key != "key")
                                .map(|a| format!("{}={}", a.key, clip(&a.value, 20)))
                                .collect();
                            shared.event(format!(
                                "h{h} {}.{} {}",
                                e.module,
                                e.kind,
                                attrs.join(" ")
                            ));
                        }
                    }
                }
            }
            self.seen_height = h;
        }
        let now = Instant::now();
        self.samples.push_back((now, self.txs));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(5))
        {
            self.samples.pop_front();
        }
    }

    fn tx_rate(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                (n1 - n0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    async fn check_agreement(&mut self, shared: &Shared) {
        self.last_check = Instant::now();
        let a = agreement(&self.nodes).await;
        match &a {
            Agreement::Agree(_) => self.checks_ok += 1,
            Agreement::Mismatch(m) => {
                self.mismatches.push(m.clone());
                shared.event(format!("!! DISAGREEMENT {m}"));
            }
            Agreement::Unavailable(_) => {}
        }
        self.last_agreement = Some(a);
    }

    fn agreement_text(&self) -> String {
        match &self.last_agreement {
            None => "agreement: not checked yet".into(),
            Some(Agreement::Agree(h)) => format!(
                "agreement: all {} nodes identical at h{h} ({} checks, {} mismatches)",
                self.nodes.len(),
                self.checks_ok,
                self.mismatches.len()
            ),
            Some(Agreement::Mismatch(m)) => format!("agreement: MISMATCH {m}"),
            Some(Agreement::Unavailable(m)) => format!("agreement: waiting ({m})"),
        }
    }

    fn plain_line(&self, elapsed: Duration) -> String {
        let heights: Vec<String> = self
            .nodes
            .iter()
            .zip(&self.views)
            .map(|(n, v)| format!("{}={}", n.name, v.height))
            .collect();
        format!(
            "[{:>5.1}s] heights {} | {} txs committed, {:.1} tx/s | {}",
            elapsed.as_secs_f64(),
            heights.join(" "),
            self.txs,
            self.tx_rate(),
            self.agreement_text()
        )
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n).collect();
        out.push('…');
        out
    }
}

// ---------------------------------------------------------------------------------------
// Display

struct Ui {
    multi: MultiProgress,
    header: ProgressBar,
    nodes: Vec<ProgressBar>,
    stats: ProgressBar,
    agreement: ProgressBar,
    events: Vec<ProgressBar>,
}

impl Ui {
    fn new(nodes: &[DemoNode]) -> Ui {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr_with_hz(4)
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let style =
            ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_bar());
        let spin = ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let line = |s: &ProgressStyle| {
            let b = multi.add(ProgressBar::new(1));
            b.set_style(s.clone());
            b
        };
        let header = line(&spin);
        let node_bars = nodes.iter().map(|_| line(&style)).collect();
        let stats = line(&style);
        let agreement = line(&style);
        let events = (0..EVENT_LINES + 1).map(|_| line(&style)).collect();
        Ui {
            multi,
            header,
            nodes: node_bars,
            stats,
            agreement,
            events,
        }
    }

    fn visible(&self) -> bool {
        !self.multi.is_hidden()
    }

    fn draw(&self, mon: &Monitor, shared: &Shared, elapsed: Duration, chain: &str) {
        if !self.visible() {
            return;
        }
        self.header.set_message(format!(
            "TrustEdge demo: chain {chain}, {:.0} s (Ctrl-C to stop)",
            elapsed.as_secs_f64()
        ));
        self.header.tick();
        for ((bar, n), v) in self.nodes.iter().zip(&mon.nodes).zip(&mon.views) {
            let text = match &v.error {
                Some(e) => format!("  {:<12} unreachable: {}", n.name, clip(e, 80)),
                None => format!(
                    "  {:<12} {:<9} height {:>6}  block {}  state {}  ({})",
                    n.name,
                    n.role.to_string(),
                    v.height,
                    short(&v.block_hash),
                    short(&v.state_root),
                    v.mode
                ),
            };
            bar.set_message(text);
        }
        let s = shared.stats();
        let refused: u64 = s.refused.values().map(|(a, b)| a + b).sum();
        let failed: u64 = mon.failed.values().sum();
        self.stats.set_message(format!(
            "  {:.1} tx/s committed | {} txs in {} blocks | {} devices | {} batches anchored, {} \
             records proven | {} refused, {} failed",
            mon.tx_rate(),
            mon.txs,
            mon.seen_height,
            mon.devices,
            mon.batches,
            s.records_proven,
            refused,
            failed
        ));
        self.agreement
            .set_message(format!("  {}", mon.agreement_text()));
        if let Some(first) = self.events.first() {
            first.set_message("  recent events:");
        }
        for (i, bar) in self.events.iter().skip(1).enumerate() {
            bar.set_message(
                s.events
                    .get(i)
                    .map(|e| format!("    {}", clip(e, 140)))
                    .unwrap_or_default(),
            );
        }
    }

    fn finish(&self) {
        let _ = self.multi.clear();
    }
}

// ---------------------------------------------------------------------------------------
// Load: device registrations

/// Which founding organisation registers which device classes.
const REGISTRARS: &[(&str, &[DeviceClass])] = &[
    (
        "hospital-1",
        &[DeviceClass::Wearable, DeviceClass::BleBeacon],
    ),
    (
        "clinic-1",
        &[DeviceClass::Thermometer, DeviceClass::Wearable],
    ),
    ("laboratory-1", &[DeviceClass::AirQualitySensor]),
    ("distributor-1", &[DeviceClass::ColdChainLogger]),
    (
        "manufacturer-1",
        &[DeviceClass::ColdChainLogger, DeviceClass::Thermometer],
    ),
];

fn class_name(c: DeviceClass) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{c:?}"))
}

fn model_of(c: DeviceClass) -> &'static str {
    match c {
        DeviceClass::Wearable => "VitalBand 3",
        DeviceClass::Thermometer => "ThermoScan IR-7",
        DeviceClass::BleBeacon => "ProxTag BLE-5",
        DeviceClass::AirQualitySensor => "AirSense CO2-PM",
        DeviceClass::ColdChainLogger => "ColdTrack 2",
        _ => "Generic IoMT",
    }
}

async fn wait_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        r = stop.changed() => r.is_err() || *stop.borrow(),
        () = tokio::time::sleep(d) => false,
    }
}

async fn registrations(
    shared: Arc<Shared>,
    net: Network,
    nodes: Vec<DemoNode>,
    rate: u32,
    mut stop: watch::Receiver<bool>,
) {
    let Some(first) = nodes.first().cloned() else {
        return;
    };
    let mut signers = Vec::new();
    for (org, classes) in REGISTRARS {
        let Some(key) = net.admin(org) else { continue };
        match Signer::new(org, key.clone(), &first.client).await {
            Ok(s) => signers.push((s, *classes)),
            Err(e) => shared.event(format!("!! cannot read the nonce of {org}: {e}")),
        }
    }
    if signers.is_empty() {
        shared.event("!! no organisation admin keys: no devices are registered".into());
        return;
    }
    let per_tick = (rate as usize).div_ceil(4).max(1);
    let mut round = 0usize;
    while !wait_or_stop(&mut stop, REGISTER_TICK).await {
        let head = match remote::head(&first.client).await {
            Ok(h) => h,
            Err(e) => {
                shared.event(format!("!! status: {e}"));
                continue;
            }
        };
        let mut txs = Vec::with_capacity(per_tick);
        let mut devices = Vec::with_capacity(per_tick);
        let n_signers = signers.len();
        for i in 0..per_tick {
            let k = (round + i) % n_signers;
            let (signer, classes) = &mut signers[k];
            let class = classes[(round / n_signers + i) % classes.len()];
            let device = crate::keys::generate();
            let call = DevicesCall::Register {
                key: device.public(),
                class,
                model: model_of(class).to_string(),
                attributes: vec![
                    DeviceAttribute {
                        key: "firmware".into(),
                        value: "1.4.2".into(),
                    },
                    DeviceAttribute {
                        key: "protocol".into(),
                        value: "ble5".into(),
                    },
                ],
            };
            txs.push(signer.sign(
                &head,
                Payload::new(trustedge_contracts::devices::NAME, &call),
            ));
            devices.push((k, class, device));
        }
        round += per_tick;
        // Spread the load over every node: followers forward to the validator.
        let node = &nodes[round / per_tick % nodes.len()];
        match node.client.submit_batch(&txs).await {
            Ok(resp) => {
                let mut resync = Vec::new();
                for ((item, (k, class, device)), _) in resp.results.iter().zip(devices).zip(&txs) {
                    match &item.error {
                        None => {
                            let mut s = shared.stats();
                            s.submitted += 1;
                            let list = s.devices.entry(class_name(class)).or_default();
                            if list.len() < MAX_DEVICES_PER_CLASS {
                                list.push(device);
                            }
                        }
                        Some(e) => {
                            shared.refused(&e.code, false);
                            shared.event(format!(
                                "!! registration refused [{}]: {}",
                                e.code,
                                clip(&e.message, 80)
                            ));
                            resync.push(k);
                        }
                    }
                }
                for k in resync {
                    signers[k].0.resync(&first.client).await;
                }
            }
            Err(e) => {
                let f = ApiFailure::from(e);
                shared.refused(&f.code, false);
                shared.event(format!(
                    "!! batch to {} refused [{}]: {}",
                    node.name,
                    f.code,
                    clip(&f.message, 80)
                ));
                for (s, _) in &mut signers {
                    s.resync(&first.client).await;
                }
            }
        }
    }
    let labels: Vec<String> = signers.iter().map(|(s, _)| s.label.clone()).collect();
    tracing::debug!(?labels, "registrations stopped");
}

// ---------------------------------------------------------------------------------------
// Load: the edge anchors batches of signed readings

/// Record types the edge anchors, and the device class that produces each.
const RECORD_TYPES: &[(&str, DeviceClass)] = &[
    ("vital_signs", DeviceClass::Wearable),
    ("body_temperature", DeviceClass::Thermometer),
    ("proximity", DeviceClass::BleBeacon),
    ("air_quality", DeviceClass::AirQualitySensor),
    ("cold_chain", DeviceClass::ColdChainLogger),
];

/// A reading as a device signs it: canonical (device address, time, record type, value).
fn reading(device: &Keypair, time_ms: u64, record_type: &str, value_milli: i64) -> Vec<u8> {
    let body = encode(&(
        Address::of_device(&device.public()),
        time_ms,
        record_type,
        value_milli,
    ));
    let sig = device.sign(&body);
    encode(&(body, sig))
}

/// An anchored batch waiting for its transaction to commit, with one record to prove.
struct PendingAnchor {
    tx: Hash,
    root: Hash,
    record: Vec<u8>,
    proof: MerkleProof,
}

async fn anchoring(
    shared: Arc<Shared>,
    net: Network,
    nodes: Vec<DemoNode>,
    mut stop: watch::Receiver<bool>,
) {
    // The edge node's own key is an operator of the edge-operator organisation.
    let edge = nodes
        .iter()
        .find(|n| n.role == NodeRole::Edge)
        .or(nodes.first())
        .cloned();
    let Some(edge) = edge else { return };
    let key = net
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Edge)
        .map(|n| n.key.clone())
        .or_else(|| net.admin(init::EDGE_OPERATOR_ORG).cloned());
    let Some(key) = key else {
        shared.event("!! no edge-operator key: nothing is anchored".into());
        return;
    };
    let mut signer = match Signer::new("edge", key, &edge.client).await {
        Ok(s) => s,
        Err(e) => {
            shared.event(format!("!! cannot read the edge key's nonce: {e}"));
            return;
        }
    };
    let mut last_to: BTreeMap<&str, u64> = BTreeMap::new();
    let mut pending: VecDeque<PendingAnchor> = VecDeque::new();
    let mut tick: u64 = 0;
    while !wait_or_stop(&mut stop, ANCHOR_EVERY).await {
        tick += 1;
        prove_committed(&shared, &edge.client, &mut pending).await;
        let head = match remote::head(&edge.client).await {
            Ok(h) => h,
            Err(_) => continue,
        };
        let now = init::now_ms();
        for (record_type, class) in RECORD_TYPES {
            let devices: Vec<Keypair> = shared
                .stats()
                .devices
                .get(&class_name(*class))
                .map(|d| {
                    d.iter()
                        .rev()
                        .take(MAX_REPORTING_DEVICES)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            if devices.is_empty() {
                continue;
            }
            let from = last_to
                .get(record_type)
                .map_or(now.saturating_sub(2_000), |t| t + 1);
            if from >= now {
                continue;
            }
            // Each device reports a few readings spread over the window.
            let mut records = Vec::new();
            for (i, d) in devices.iter().enumerate() {
                for j in 0..3u64 {
                    let t = from + (now - from) * (j + 1) / 4;
                    let value = 36_500 + ((i as i64 * 37 + j as i64 * 11 + tick as i64) % 900);
                    records.push(reading(d, t, record_type, value));
                }
            }
            let tree = MerkleTree::from_leaves(
                records
                    .iter()
                    .map(|r| trustedge_contracts::record_leaf(r).0),
            );
            let root = tree.root();
            let sample = (tick as usize) % records.len();
            let Some(proof) = tree.proof(sample as u64) else {
                continue;
            };
            let call = AnchorCall::AnchorBatch {
                record_type: record_type.to_string(),
                merkle_root: root,
                count: records.len() as u64,
                from_ms: from,
                to_ms: now,
            };
            let tx = signer.sign(
                &head,
                Payload::new(trustedge_contracts::anchor::NAME, &call),
            );
            match remote::call(edge.client.submit_tx(&tx)).await {
                Ok(id) => {
                    last_to.insert(record_type, now);
                    shared.stats().batches_submitted += 1;
                    shared.stats().submitted += 1;
                    pending.push_back(PendingAnchor {
                        tx: id,
                        root,
                        record: records.swap_remove(sample),
                        proof,
                    });
                    while pending.len() > 64 {
                        pending.pop_front();
                    }
                }
                Err(e) => {
                    shared.refused(&e.code, false);
                    shared.event(format!(
                        "!! anchor refused [{}]: {}",
                        e.code,
                        clip(&e.message, 80)
                    ));
                    signer.resync(&edge.client).await;
                }
            }
        }
    }
}

/// Proves one record of each committed batch against the root the ledger holds.
async fn prove_committed(shared: &Shared, client: &Client, pending: &mut VecDeque<PendingAnchor>) {
    let mut keep = VecDeque::new();
    while let Some(p) = pending.pop_front() {
        let committed = matches!(
            remote::call(client.tx_status(&p.tx)).await,
            Ok(trustedge_chain::TxStatus::Committed(_))
        );
        if !committed {
            keep.push_back(p);
            continue;
        }
        let path = format!("root/{}", p.root.to_hex());
        let anchored: Option<AnchorRecord> = remote::call(client.query("anchor", &path, &[]))
            .await
            .ok()
            .and_then(|v| serde_json::from_value(v).ok());
        match anchored {
            Some(a) => match trustedge_contracts::verify_record_anchored(&p.record, &p.proof, &a) {
                Ok(()) => shared.stats().records_proven += 1,
                Err(e) => {
                    shared.problem(format!("record proof against batch {} failed: {e}", a.id))
                }
            },
            None => {
                // Committed but failed (e.g. a refused batch): nothing to prove against.
            }
        }
    }
    *pending = keep;
}

// ---------------------------------------------------------------------------------------
// Scenario: governance and deliberate mistakes

async fn scenario(
    shared: Arc<Shared>,
    net: Network,
    nodes: Vec<DemoNode>,
    mut stop: watch::Receiver<bool>,
) {
    if let Err(e) = scenario_steps(&shared, &net, &nodes, &mut stop).await {
        if !*stop.borrow() {
            shared.problem(format!("scenario stopped: {e:#}"));
        }
        return;
    }
    shared.stats().scenario_done = true;
}

/// Waits until the node behind `client` has committed `height`: a follower admits
/// transactions against its own state, so a signer admitted at `height` is unknown to a
/// follower that has not reached it yet.
async fn reach(client: &Client, height: u64) -> Result<(), ApiFailure> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let head = remote::head(client).await?;
        if head.height >= height {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(ApiFailure {
                code: "timeout".into(),
                message: format!("{} did not reach height {height} in 30 s", client.url()),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Submits through `client` once it has reached `after` and waits for the commit; Err if
/// refused or not committed.
async fn commit(
    client: &Client,
    after: &mut u64,
    signer: &mut Signer,
    payload: Payload,
) -> Result<trustedge_chain::TxInclusionProof, ApiFailure> {
    reach(client, *after).await?;
    let r = commit_now(client, signer, payload).await;
    if let Ok(p) = &r {
        *after = (*after).max(p.header.height);
    }
    r
}

async fn commit_now(
    client: &Client,
    signer: &mut Signer,
    payload: Payload,
) -> Result<trustedge_chain::TxInclusionProof, ApiFailure> {
    let head = remote::head(client).await?;
    let tx = signer.sign(&head, payload);
    let id = remote::call(client.submit_tx(&tx)).await?;
    remote::wait_committed(client, &id, Duration::from_secs(30)).await
}

/// Expects a committed transaction to succeed.
fn expect_success(shared: &Shared, what: &str, p: &trustedge_chain::TxInclusionProof) -> bool {
    match remote::outcome_failure(p) {
        None => true,
        Some(f) => {
            shared.problem(format!("{what} failed [{}]: {}", f.code, f.message));
            false
        }
    }
}

/// Expects a committed transaction to have failed with `code`.
fn expect_failure(
    shared: &Shared,
    what: &str,
    code: &str,
    r: Result<trustedge_chain::TxInclusionProof, ApiFailure>,
) {
    match r.map(|p| remote::outcome_failure(&p)) {
        Ok(Some(f)) if f.code == code => {
            *shared
                .stats()
                .intended_failures
                .entry(code.to_string())
                .or_default() += 1;
            shared.event(format!(
                "on purpose: {what} -> error [{}]: {}",
                f.code,
                clip(&f.message, 90)
            ));
        }
        Ok(Some(f)) => shared.problem(format!(
            "{what}: expected [{code}], got [{}] {}",
            f.code, f.message
        )),
        Ok(None) => shared.problem(format!("{what}: expected [{code}], but it succeeded")),
        Err(e) => shared.problem(format!("{what}: expected [{code}] in a block, got {e}")),
    }
}

/// Expects the API to refuse a transaction with `code`.
async fn expect_refusal(shared: &Shared, client: &Client, what: &str, code: &str, tx: &SignedTx) {
    match remote::call(client.submit_tx(tx)).await {
        Err(e) if e.code == code => {
            shared.refused(code, true);
            shared.event(format!(
                "on purpose: {what} -> error [{}]: {}",
                e.code,
                clip(&e.message, 90)
            ));
        }
        Err(e) => {
            shared.refused(&e.code, false);
            shared.problem(format!("{what}: expected [{code}], got {e}"));
        }
        Ok(id) => shared.problem(format!(
            "{what}: expected [{code}], but it was accepted as {id}"
        )),
    }
}

async fn scenario_steps(
    shared: &Shared,
    net: &Network,
    nodes: &[DemoNode],
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let by_role = |r: NodeRole| {
        nodes
            .iter()
            .find(|n| n.role == r)
            .or(nodes.first())
            .map(|n| n.client.clone())
    };
    let validator = by_role(NodeRole::Validator).context("no nodes")?;
    let edge = by_role(NodeRole::Edge).context("no nodes")?;
    let cloud = by_role(NodeRole::Cloud).context("no nodes")?;
    if wait_or_stop(stop, Duration::from_secs(1)).await {
        return Ok(());
    }

    // 1. Admission of a new organisation by health-authority approvals.
    let has = net.health_authorities();
    let mut ha_signers = Vec::new();
    for id in &has {
        if let Some(k) = net.admin(id) {
            ha_signers.push(Signer::new(id, k.clone(), &validator).await?);
        }
    }
    if ha_signers.is_empty() {
        anyhow::bail!("no health-authority admin keys");
    }
    let required = net.genesis.policy.admission_approvals as usize;
    let mut org_id = String::new();
    for n in 2..100 {
        let id = format!("hospital-{n}");
        if remote::call(validator.query("orgs", &format!("org/{id}"), &[]))
            .await
            .is_err()
        {
            org_id = id;
            break;
        }
    }
    if org_id.is_empty() {
        anyhow::bail!("no free organisation id hospital-2..hospital-99");
    }
    let new_admin = crate::keys::generate();
    // Height of the last commit the next step depends on.
    let mut after = 0u64;
    let propose = OrgsCall::ProposeAdmission {
        org_id: org_id.clone(),
        name: "Northside Community Hospital".into(),
        kind: OrgKind::Hospital,
        admin_key: new_admin.public(),
    };
    let p = commit(
        &validator,
        &mut after,
        &mut ha_signers[0],
        Payload::new("orgs", &propose),
    )
    .await?;
    if !expect_success(shared, "admission proposal", &p) {
        return Ok(());
    }
    for (i, s) in ha_signers
        .iter_mut()
        .enumerate()
        .skip(1)
        .take(required.saturating_sub(1))
    {
        // Approvals go through the cloud node, which forwards them to the validator.
        let via = if i % 2 == 1 { &cloud } else { &edge };
        let approve = OrgsCall::ApproveAdmission {
            org_id: org_id.clone(),
        };
        let p = commit(via, &mut after, s, Payload::new("orgs", &approve)).await?;
        if !expect_success(shared, "admission approval", &p) {
            return Ok(());
        }
    }
    if remote::call(validator.query("orgs", &format!("org/{org_id}"), &[]))
        .await
        .is_ok()
    {
        shared
            .stats()
            .admitted
            .push(format!("{org_id} ({required} of {} approvals)", has.len()));
    } else {
        shared.problem(format!(
            "{org_id} is not an organisation after {required} approvals"
        ));
        return Ok(());
    }

    // 2. The new organisation registers a device through the edge node.
    let mut admin = Signer::new(&org_id, new_admin, &edge).await?;
    let device = crate::keys::generate();
    let register = DevicesCall::Register {
        key: device.public(),
        class: DeviceClass::Wearable,
        model: model_of(DeviceClass::Wearable).into(),
        attributes: vec![DeviceAttribute {
            key: "firmware".into(),
            value: "2.0.0".into(),
        }],
    };
    let p = commit(
        &edge,
        &mut after,
        &mut admin,
        Payload::new("devices", &register),
    )
    .await?;
    expect_success(shared, "first device of the new organisation", &p);
    if wait_or_stop(stop, Duration::from_millis(500)).await {
        return Ok(());
    }

    // 3. Mistakes that must fail, each with its code.
    let personal = DevicesCall::Register {
        key: crate::keys::generate().public(),
        class: DeviceClass::Wearable,
        model: model_of(DeviceClass::Wearable).into(),
        attributes: vec![DeviceAttribute {
            key: "owner".into(),
            value: "alice".into(),
        }],
    };
    let r = commit(
        &edge,
        &mut after,
        &mut admin,
        Payload::new("devices", &personal),
    )
    .await;
    expect_failure(
        shared,
        "a device attribute naming its owner (personal data)",
        "invalid_argument",
        r,
    );

    if let Some(k) = net.admin(init::EDGE_OPERATOR_ORG) {
        let mut op = Signer::new("edge-operator", k.clone(), &validator).await?;
        let overreach = OrgsCall::ProposeAdmission {
            org_id: "rogue-clinic".into(),
            name: "Rogue Clinic".into(),
            kind: OrgKind::Clinic,
            admin_key: crate::keys::generate().public(),
        };
        let r = commit(
            &validator,
            &mut after,
            &mut op,
            Payload::new("orgs", &overreach),
        )
        .await;
        expect_failure(
            shared,
            "an edge operator admitting an organisation",
            "access_denied",
            r,
        );
    }

    for c in [&validator, &edge, &cloud] {
        reach(c, after).await?;
    }
    let head = remote::head(&validator).await?;
    let ha = &mut ha_signers[0];
    let used = ha.next_nonce.saturating_sub(1);
    let replay = remote::sign(
        &ha.key,
        &head,
        used,
        Payload::new(
            "orgs",
            &OrgsCall::ApproveAdmission {
                org_id: org_id.clone(),
            },
        ),
    );
    let what = format!("a transaction reusing nonce {used}");
    expect_refusal(shared, &cloud, &what, "replayed_nonce", &replay).await;

    let mut forged = ha.sign(
        &head,
        Payload::new(
            "orgs",
            &OrgsCall::SuspendOrg {
                org_id: "hospital-1".into(),
            },
        ),
    );
    forged.signature.0[0] ^= 0x55;
    expect_refusal(
        shared,
        &validator,
        "a transaction with a forged signature",
        "bad_signature",
        &forged,
    )
    .await;
    // The forged transaction never reached a block: give its nonce back.
    ha.next_nonce -= 1;

    let stranger = crate::keys::generate();
    let intruder = remote::sign(
        &stranger,
        &head,
        1,
        Payload::new(
            "devices",
            &DevicesCall::Register {
                key: crate::keys::generate().public(),
                class: DeviceClass::Phone,
                model: "Unknown".into(),
                attributes: Vec::new(),
            },
        ),
    );
    expect_refusal(
        shared,
        &edge,
        "a key no organisation knows",
        "unknown_signer",
        &intruder,
    )
    .await;
    Ok(())
}
