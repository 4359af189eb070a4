//! `trustedge bench execution`: the ledger alone, in-process, on a temporary directory.
//!
//! 1. ed25519 batch verification over all cores (`verify_parallel`) of the very transactions
//!    used next: the ceiling any pipeline that checks every signature is measured against.
//! 2. Transaction throughput: `submit_batch` (signature verification + admission into the
//!    mempool), then `propose_block` (execution + state-tree update) and `commit_block` with
//!    a solo certificate (redb write), until every transaction is committed.
//! 3. Block commit rate for blocks of 1 and of 1000 transactions.
//!
//! Every rate is printed beside the batch-verification rate of the same run, with the
//! ratio, so that figures from different machines can be compared.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use trustedge_chain::verify::verify_parallel;
use trustedge_chain::{Ledger, LedgerConfig};
use trustedge_contracts::{
    AnchorCall, DevicesCall, Genesis, GenesisMember, GenesisOrg, GovernancePolicy,
};
use trustedge_execution::{DeviceClass, OrgKind, Role};
use trustedge_types::{Address, Hash, Keypair, Payload, SignedTx, TxBody, Validator};

/// Most transactions one run takes: pre-signed transactions are held in memory.
const MAX_BENCH_TXS: usize = 1_000_000;
/// Signers the transactions are spread over (each signer's nonces must be consecutive).
const SIGNERS: usize = 16;
/// Chunk handed to `submit_batch` at once (the API's batch limit is 10,000).
const SUBMIT_CHUNK: usize = 1000;
/// Blocks of one transaction committed to measure the per-block cost.
const SMALL_BLOCKS: usize = 50;
/// Transactions per large block.
const LARGE_BLOCK_TXS: usize = 1000;
/// Large blocks committed.
const LARGE_BLOCKS: usize = 5;
/// Least time spent measuring batch verification, so that small runs still give a rate.
const MIN_VERIFY_TIME: Duration = Duration::from_millis(500);
/// Most verification rounds.
const MAX_VERIFY_ROUNDS: usize = 20;

const CHAIN_ID: &str = "trustedge-bench";

/// Arguments of `trustedge bench execution`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Number of transactions for the throughput measurement.
    #[arg(long, default_value_t = 20_000)]
    pub txs: usize,
    /// What the transactions do.
    #[arg(long, value_enum, default_value_t = Workload::Register)]
    pub workload: Workload,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The kind of transaction the throughput run uses.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// `devices.register` of a fresh device each (several state writes and key checks).
    Register,
    /// `anchor.anchor_batch` of a fresh Merkle root each (overlap check by range scan).
    Anchor,
}

/// A directory removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> anyhow::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p =
            std::env::temp_dir().join(format!("trustedge-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
        Ok(TempDir(p))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The chain the benchmark runs on: one validator, one health authority, and an
/// edge-operator organisation whose operators sign everything.
struct Fixture {
    validator: Keypair,
    signers: Vec<Keypair>,
    nonces: Vec<u64>,
    genesis: Genesis,
    next_item: u64,
    workload: Workload,
}

impl Fixture {
    fn new(workload: Workload) -> Fixture {
        let validator = Keypair::from_seed(seed(1, 0));
        let ha_admin = Keypair::from_seed(seed(2, 0));
        let signers: Vec<Keypair> = (0..SIGNERS)
            .map(|i| Keypair::from_seed(seed(3, i as u64)))
            .collect();
        let genesis = Genesis {
            chain_id: CHAIN_ID.into(),
            genesis_time_ms: 1_000,
            validators: vec![Validator {
                name: "bench-validator".into(),
                address: Address::of_member(&validator.public()),
                public_key: validator.public(),
                power: 1,
            }],
            organisations: vec![
                GenesisOrg {
                    id: "health-authority-1".into(),
                    name: "Bench Health Authority".into(),
                    kind: OrgKind::HealthAuthority,
                    members: vec![GenesisMember {
                        public_key: ha_admin.public(),
                        role: Role::Admin,
                    }],
                },
                GenesisOrg {
                    id: "edge-operator-1".into(),
                    name: "Bench Edge Operator".into(),
                    kind: OrgKind::EdgeOperator,
                    members: signers
                        .iter()
                        .enumerate()
                        .map(|(i, k)| GenesisMember {
                            public_key: k.public(),
                            role: if i == 0 { Role::Admin } else { Role::Operator },
                        })
                        .collect(),
                },
            ],
            policy: GovernancePolicy {
                admission_approvals: 1,
            },
        };
        Fixture {
            validator,
            nonces: vec![0; signers.len()],
            signers,
            genesis,
            next_item: 0,
            workload,
        }
    }

    /// `n` fresh signed transactions, spread round-robin over the signers.
    fn sign(&mut self, n: usize, progress: &ProgressBar) -> Vec<SignedTx> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let item = self.next_item;
            self.next_item += 1;
            let s = (item % self.signers.len() as u64) as usize;
            self.nonces[s] += 1;
            let payload = match self.workload {
                Workload::Register => {
                    let device = Keypair::from_seed(seed(4, item));
                    Payload::new(
                        trustedge_contracts::devices::NAME,
                        &DevicesCall::Register {
                            key: device.public(),
                            class: DeviceClass::Wearable,
                            model: "bench-band".into(),
                            attributes: Vec::new(),
                        },
                    )
                }
                Workload::Anchor => Payload::new(
                    trustedge_contracts::anchor::NAME,
                    &AnchorCall::AnchorBatch {
                        record_type: "vital_signs".into(),
                        merkle_root: Hash::tagged(b"bench-root", &[&item.to_le_bytes()]),
                        count: 64,
                        // Disjoint ranges per signer: item numbers are distinct.
                        from_ms: 10_000 + item * 10,
                        to_ms: 10_000 + item * 10 + 5,
                    },
                ),
            };
            let body = TxBody {
                chain_id: CHAIN_ID.into(),
                signer: self.signers[s].public(),
                nonce: self.nonces[s],
                expiry_height: u64::MAX,
                payload,
            };
            out.push(body.sign(&self.signers[s]));
            progress.inc(1);
        }
        out
    }
}

fn seed(domain: u8, i: u64) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[0] = domain;
    s[1..9].copy_from_slice(&i.to_le_bytes());
    s[31] = 0x5a;
    s
}

fn bar(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    let style = ProgressStyle::with_template("{msg:>28} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb.set_message(what.to_string());
    pb
}

fn rate(count: usize, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        count as f64 / s
    } else {
        f64::INFINITY
    }
}

/// The measured figures.
#[derive(Debug, Clone)]
struct Figures {
    txs: usize,
    threads: usize,
    verify_sigs_per_s: f64,
    admit_tx_per_s: f64,
    execute_tx_per_s: f64,
    commit_tx_per_s: f64,
    tx_per_s: f64,
    blocks: usize,
    commit_blocks_per_s: f64,
    commit_blocks_per_s_1000: f64,
    failed: usize,
}

/// Runs the benchmark and prints the figures.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if args.txs == 0 || args.txs > MAX_BENCH_TXS {
        anyhow::bail!("--txs must be 1..={MAX_BENCH_TXS}");
    }
    let f = measure(args)?;
    let ratio = |r: f64| r / f.verify_sigs_per_s;
    if args.json {
        let out = json!({
            "txs": f.txs,
            "workload": format!("{:?}", args.workload).to_lowercase(),
            "threads": f.threads,
            "debug_build": cfg!(debug_assertions),
            "verify_sigs_per_s": f.verify_sigs_per_s,
            "admit_tx_per_s": f.admit_tx_per_s,
            "execute_tx_per_s": f.execute_tx_per_s,
            "commit_tx_per_s": f.commit_tx_per_s,
            "tx_per_s": f.tx_per_s,
            "ratio": ratio(f.tx_per_s),
            "admit_ratio": ratio(f.admit_tx_per_s),
            "execute_ratio": ratio(f.execute_tx_per_s),
            "blocks": f.blocks,
            "failed_txs": f.failed,
            "commit_blocks_per_s": f.commit_blocks_per_s,
            "commit_blocks_per_s_1000_txs": f.commit_blocks_per_s_1000,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "bench execution: {} {:?} transactions, {} threads{}",
        f.txs,
        args.workload,
        f.threads,
        if cfg!(debug_assertions) {
            " (DEBUG BUILD: use --release for real figures)"
        } else {
            ""
        }
    );
    println!("{:<44} {:>16} {:>15}", "measure", "rate", "vs batch verify");
    let row = |name: &str, r: f64, unit: &str| {
        println!("{name:<44} {:>10.0} {unit:<5} {:>14.3}x", r, ratio(r));
    };
    row(
        "ed25519 batch verification (all cores)",
        f.verify_sigs_per_s,
        "sig/s",
    );
    row("submit_batch (verify + admit)", f.admit_tx_per_s, "tx/s");
    row(
        "propose_block (execute + state tree)",
        f.execute_tx_per_s,
        "tx/s",
    );
    row(
        "commit_block (certificate + redb)",
        f.commit_tx_per_s,
        "tx/s",
    );
    row("end to end (admit + execute + commit)", f.tx_per_s, "tx/s");
    println!(
        "{:<44} {:>10.1} blk/s   (blocks of 1 tx)",
        "block propose + commit", f.commit_blocks_per_s
    );
    println!(
        "{:<44} {:>10.1} blk/s   (blocks of {LARGE_BLOCK_TXS} txs)",
        "block propose + commit", f.commit_blocks_per_s_1000
    );
    println!("{} blocks, {} failed transactions", f.blocks, f.failed);
    Ok(())
}

fn measure(args: &BenchArgs) -> anyhow::Result<Figures> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut fx = Fixture::new(args.workload);
    let dir = TempDir::new()?;
    let ledger = Ledger::open(
        &dir.path().join("bench.redb"),
        fx.genesis.clone(),
        LedgerConfig::default(),
    )
    .context("cannot open the benchmark ledger")?;
    let proposer = Address::of_member(&fx.validator.public());

    // Pre-sign everything before any timing.
    let small_txs = SMALL_BLOCKS;
    let large_txs = LARGE_BLOCK_TXS * LARGE_BLOCKS;
    let pb = bar(args.txs + small_txs + large_txs, "signing transactions");
    let main_txs = fx.sign(args.txs, &pb);
    let small = fx.sign(small_txs, &pb);
    let large = fx.sign(large_txs, &pb);
    pb.finish_and_clear();

    // 1. Batch verification of the same transactions.
    let sign_bytes: Vec<Vec<u8>> = main_txs.iter().map(|t| t.body.sign_bytes()).collect();
    let items: Vec<_> = main_txs
        .iter()
        .zip(&sign_bytes)
        .map(|(t, m)| (t.body.signer, m.as_slice(), t.signature))
        .collect();
    let pb = bar(MAX_VERIFY_ROUNDS, "batch-verifying signatures");
    let (mut verified, mut spent, mut rounds) = (0usize, Duration::ZERO, 0usize);
    while rounds < MAX_VERIFY_ROUNDS && (rounds == 0 || spent < MIN_VERIFY_TIME) {
        let t = Instant::now();
        let ok = verify_parallel(&items);
        spent += t.elapsed();
        if ok.iter().any(|v| !v) {
            anyhow::bail!("a pre-signed transaction did not verify: the benchmark is broken");
        }
        verified += items.len();
        rounds += 1;
        pb.inc(1);
    }
    pb.finish_and_clear();
    let verify_sigs_per_s = rate(verified, spent);

    // 2. Throughput: admit everything, then propose and commit until the mempool is empty.
    let pb = bar(args.txs, "submit_batch");
    let mut admit_time = Duration::ZERO;
    let mut refused = 0usize;
    let mut first_refusal = None;
    for chunk in main_txs.chunks(SUBMIT_CHUNK) {
        let t = Instant::now();
        let results = ledger.submit_batch(chunk.to_vec());
        admit_time += t.elapsed();
        for r in results {
            if let Err(e) = r {
                refused += 1;
                first_refusal.get_or_insert_with(|| e.to_string());
            }
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    if let Some(e) = first_refusal {
        anyhow::bail!("{refused} transactions were refused at admission, e.g.: {e}");
    }

    let pb = bar(args.txs, "propose + commit");
    let (mut execute_time, mut commit_time) = (Duration::ZERO, Duration::ZERO);
    let (mut committed, mut blocks, mut failed) = (0usize, 0usize, 0usize);
    while committed < args.txs {
        let t = Instant::now();
        let block = ledger
            .propose_block(crate::init::now_ms(), proposer)
            .context("propose_block failed")?;
        execute_time += t.elapsed();
        if block.txs.is_empty() {
            anyhow::bail!(
                "the ledger proposed an empty block with {} of {} transactions committed",
                committed,
                args.txs
            );
        }
        let t = Instant::now();
        let cert = ledger.solo_certificate(&block, &fx.validator);
        let info = ledger
            .commit_block(&block, &cert)
            .context("commit_block failed")?;
        commit_time += t.elapsed();
        committed += info.txs;
        failed += info.failed;
        blocks += 1;
        pb.inc(info.txs as u64);
    }
    pb.finish_and_clear();
    let admit_tx_per_s = rate(args.txs, admit_time);
    let execute_tx_per_s = rate(args.txs, execute_time);
    let commit_tx_per_s = rate(args.txs, commit_time);
    let tx_per_s = rate(args.txs, admit_time + execute_time + commit_time);

    // 3. Block commit rate, blocks of one and of LARGE_BLOCK_TXS transactions (admission
    // is not timed: this measures what a block costs).
    let mut per_block = |txs: Vec<SignedTx>, per: usize, what: &str| -> anyhow::Result<f64> {
        let n_blocks = txs.len() / per;
        let pb = bar(n_blocks, what);
        let mut spent = Duration::ZERO;
        for chunk in txs.chunks(per) {
            for r in ledger.submit_batch(chunk.to_vec()) {
                r.map_err(|e| anyhow::anyhow!("admission failed: {e}"))?;
            }
            let t = Instant::now();
            let block = ledger.propose_block(crate::init::now_ms(), proposer)?;
            let cert = ledger.solo_certificate(&block, &fx.validator);
            let info = ledger.commit_block(&block, &cert)?;
            spent += t.elapsed();
            failed += info.failed;
            blocks += 1;
            pb.inc(1);
        }
        pb.finish_and_clear();
        Ok(rate(n_blocks, spent))
    };
    let commit_blocks_per_s = per_block(small, 1, "blocks of 1 tx")?;
    let commit_blocks_per_s_1000 = per_block(large, LARGE_BLOCK_TXS, "blocks of 1000 txs")?;

    Ok(Figures {
        txs: args.txs,
        threads,
        verify_sigs_per_s,
        admit_tx_per_s,
        execute_tx_per_s,
        commit_tx_per_s,
        tx_per_s,
        blocks,
        commit_blocks_per_s,
        commit_blocks_per_s_1000,
        failed,
    })
}
