//! The work one validator does per block, in one process, with CPU time per phase: admit a
//! block's worth of `devices.register` transactions (signatures verified in a batch), propose
//! (execute + new state root), commit (one redb transaction); and what a second validator does
//! with the same block: admit the same transactions, validate the block (execute + state root
//! again, its own), commit. The workload is fixed, so `perf stat -e instructions:u` over two
//! builds compares them on a busy machine too.
//!
//! `cargo run --release -p trustedge-chain --example commit_cost -- [BLOCKS] [TXS_PER_BLOCK] [CHECKPOINT_INTERVAL]`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use trustedge_chain::{Ledger, LedgerConfig};
use trustedge_types::{Address, Keypair, SignedTx};

#[path = "../benches/support/workload.rs"]
mod workload;
use workload::{genesis, registration};

/// CPU time of this thread so far, seconds (Linux: utime + stime of /proc/thread-self/stat).
fn thread_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let blocks: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(40);
    let per_block: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(2500);
    let config = LedgerConfig {
        checkpoint_interval: args
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(trustedge_chain::DEFAULT_CHECKPOINT_INTERVAL),
        ..LedgerConfig::default()
    };
    let validator = Keypair::from_seed([1; 32]);
    let admin = Keypair::from_seed([2; 32]);
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(
        &dir.path().join("l.redb"),
        genesis(&validator, &admin),
        config,
    )
    .unwrap();
    let follower = Ledger::open(
        &dir.path().join("f.redb"),
        genesis(&validator, &admin),
        config,
    )
    .unwrap();
    let proposer = Address::of_member(&validator.public());
    let (mut submit, mut propose, mut commit) = (0.0, 0.0, 0.0);
    let (mut f_submit, mut f_validate, mut f_commit) = (0.0, 0.0, 0.0);
    let wall = Instant::now();
    // Wall time of the proposer's commits: the mean and the slowest (a checkpoint's).
    let mut commit_wall = Vec::with_capacity(blocks as usize);
    for b in 0..blocks {
        let txs: Vec<SignedTx> = (b * per_block..(b + 1) * per_block)
            .map(|i| registration(&admin, i))
            .collect();
        let f_txs = txs.clone();
        let t = thread_cpu_s();
        for r in ledger.submit_batch(txs) {
            r.unwrap();
        }
        let t1 = thread_cpu_s();
        let block = ledger.propose_block(2 + b, proposer).unwrap();
        assert_eq!(block.txs.len() as u64, per_block);
        let t2 = thread_cpu_s();
        let cert = ledger.solo_certificate(&block, &validator);
        let started = Instant::now();
        ledger.commit_block(&block, &cert).unwrap();
        commit_wall.push(started.elapsed().as_secs_f64() * 1e3);
        let t3 = thread_cpu_s();
        for r in follower.submit_batch(f_txs) {
            r.unwrap();
        }
        let t4 = thread_cpu_s();
        follower.validate_block(&block).unwrap();
        let t5 = thread_cpu_s();
        follower.commit_block(&block, &cert).unwrap();
        let t6 = thread_cpu_s();
        submit += t1 - t;
        propose += t2 - t1;
        commit += t3 - t2;
        f_submit += t4 - t3;
        f_validate += t5 - t4;
        f_commit += t6 - t5;
    }
    let n = (blocks * per_block) as f64;
    println!(
        "{blocks} blocks x {per_block} txs: main-thread CPU per tx: submit {:.1} us, propose {:.1} us, commit {:.1} us; wall {:.1} s",
        1e6 * submit / n,
        1e6 * propose / n,
        1e6 * commit / n,
        wall.elapsed().as_secs_f64()
    );
    println!(
        "  second validator: submit {:.1} us, validate {:.1} us, commit {:.1} us",
        1e6 * f_submit / n,
        1e6 * f_validate / n,
        1e6 * f_commit / n,
    );
    let mean = commit_wall.iter().sum::<f64>() / commit_wall.len().max(1) as f64;
    let max = commit_wall.iter().copied().fold(0.0, f64::max);
    println!("  proposer's commit wall time per block: mean {mean:.1} ms, max {max:.1} ms");
}
