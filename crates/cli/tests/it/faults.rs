//! Process-level faults of a 4-validator devnet under load: one validator killed (the others
//! keep committing; restarted by hand it catches up with identical blocks and state roots),
//! two killed (the chain halts without forking and resumes when one returns).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use trustedge_node::{Client, NodeConfig};
use trustedge_types::Hash;

use crate::common::{Guard, eventually, free_ports, run, start_node};
use crate::devnet::{DevnetProc, alive, height, signal, status};

/// How long a fault test waits for the network to do something.
const WAIT: Duration = Duration::from_secs(90);
/// Validators of the fault tests.
const VALIDATORS: u16 = 4;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A 4-validator devnet whose validators all answer and have committed a few blocks. Round
/// timeouts are capped low, so that a chain that lost its quorum resumes soon after it is
/// back.
fn devnet(dir: &Path) -> (DevnetProc, Vec<String>) {
    let home = dir.join("net");
    // API ports, then one p2p port per validator.
    let base = free_ports(2 * VALIDATORS);
    let r = run(
        &[
            "init",
            "--validators",
            &VALIDATORS.to_string(),
            "--home",
            home.to_str().unwrap(),
            "--base-port",
            &base.to_string(),
        ],
        WAIT,
    );
    assert!(r.ok(), "{}", r.describe());
    for i in 0..VALIDATORS {
        let node_home = home.join(format!("validator-{i}"));
        let mut c = NodeConfig::load(&node_home).unwrap();
        c.consensus.timeout_max_ms = 2_000;
        c.save(&node_home).unwrap();
    }
    let devnet = DevnetProc::start(&home, &[]);
    let urls: Vec<String> = (0..VALIDATORS)
        .map(|i| format!("http://127.0.0.1:{}", base + i))
        .collect();
    for u in &urls {
        eventually(WAIT, "the validator to answer", || status(u));
    }
    for u in &urls {
        eventually(WAIT, "the first blocks", || (height(u) >= 2).then_some(()));
    }
    (devnet, urls)
}

/// `trustedge load` against every validator, in the background, for `seconds`.
fn background_load(home: &Path, urls: &[String], seconds: u64) -> Guard {
    let child: Child = Command::new(crate::common::BIN)
        .args(["load", "--node", &urls.join(","), "--home"])
        .arg(home)
        .args(["--tps", "30", "--seconds", &seconds.to_string(), "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Guard(Some(child))
}

fn pid_of(devnet: &DevnetProc, name: &str) -> u32 {
    devnet.node(name)["pid"].as_u64().unwrap() as u32
}

fn kill(devnet: &DevnetProc, name: &str) {
    let pid = pid_of(devnet, name);
    signal("-KILL", pid);
    eventually(WAIT, "the process to die", || (!alive(pid)).then_some(()));
}

/// Transactions in the blocks `from..=to` of a node.
fn txs_in_blocks(url: &str, from: u64, to: u64) -> u64 {
    rt().block_on(async {
        let c = Client::new(url);
        let mut n = 0;
        for h in from..=to {
            n += c.block(h).await.map(|b| b.txs.len() as u64).unwrap_or(0);
        }
        n
    })
}

/// (hash, state root) of every block 1..=to, read from `url`.
fn chain(url: &str, to: u64) -> Vec<(Hash, Hash)> {
    rt().block_on(async {
        let c = Client::new(url);
        let mut out = Vec::new();
        let mut from = 1;
        while from <= to {
            let upto = (from + 999).min(to);
            let h = c.headers(from, upto).await.unwrap();
            out.extend(h.headers.iter().map(|e| (e.hash, e.header.state_root)));
            from = upto + 1;
        }
        out
    })
}

/// Every node in `urls` has the same blocks and state roots up to their common height.
fn assert_same_chain(urls: &[&String]) -> u64 {
    let common = urls.iter().map(|u| height(u)).min().unwrap();
    let reference = chain(urls[0], common);
    assert_eq!(reference.len() as u64, common);
    for u in &urls[1..] {
        let other = chain(u, common);
        for (h, (a, b)) in reference.iter().zip(&other).enumerate() {
            assert_eq!(a, b, "{u} differs from {} at height {}", urls[0], h + 1);
        }
    }
    common
}

/// Waits until every node in `urls` has advanced `by` blocks past where it is now.
fn advance(urls: &[&String], by: u64, what: &str) {
    let start: Vec<u64> = urls.iter().map(|u| height(u)).collect();
    eventually(WAIT, what, || {
        urls.iter()
            .zip(&start)
            .all(|(u, h)| height(u) >= h + by)
            .then_some(())
    });
}

#[test]
fn one_validator_killed_the_others_commit_and_it_catches_up_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (devnet, urls) = devnet(dir.path());
    let home = dir.path().join("net");
    let _load = background_load(&home, &urls, 60);
    let alive_urls: Vec<&String> = urls[..3].iter().collect();
    let all: Vec<&String> = urls.iter().collect();

    kill(&devnet, "validator-3");
    let killed_at = height(&urls[0]);
    advance(&alive_urls, 3, "three validators to keep committing");
    eventually(WAIT, "transactions to keep being committed", || {
        (txs_in_blocks(&urls[0], killed_at + 1, height(&urls[0])) > 0).then_some(())
    });

    // Restarted by hand, it catches up with the very same blocks and state roots.
    let _v3 = start_node(&home.join("validator-3"));
    let target = height(&urls[0]);
    eventually(WAIT, "validator-3 to catch up", || {
        (height(&urls[3]) >= target).then_some(())
    });
    let common = assert_same_chain(&all);
    assert!(common >= target, "common height {common} < {target}");
    // And it takes part again: the chain goes on with all four.
    advance(&all, 2, "all four to commit again");
    assert_same_chain(&all);
    // The load reached every validator's mempool by gossip, not only the one it was sent to.
    for u in &urls[..3] {
        assert!(
            metric(u, "trustedge_gossip_txs_received_accepted_total") > 0.0,
            "{u}"
        );
    }
}

/// A metric's value on a node (0 if absent).
fn metric(url: &str, name: &str) -> f64 {
    rt().block_on(async {
        let text = Client::new(url).metrics().await.unwrap_or_default();
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    })
}

#[test]
fn two_validators_killed_the_chain_halts_without_forking_and_resumes_when_one_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (devnet, urls) = devnet(dir.path());
    let home = dir.path().join("net");
    let _load = background_load(&home, &urls, 90);
    let left: Vec<&String> = urls[..2].iter().collect();

    kill(&devnet, "validator-2");
    kill(&devnet, "validator-3");
    // A height already decided may still land; after that, nothing (2 of 4 is no quorum).
    std::thread::sleep(Duration::from_secs(3));
    let halted: Vec<u64> = left.iter().map(|u| height(u)).collect();
    let watch_until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < watch_until {
        for (u, h) in left.iter().zip(&halted) {
            assert_eq!(height(u), *h, "{u} committed without a quorum");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let common = assert_same_chain(&left);
    assert!(common + 1 >= *halted.iter().max().unwrap());

    // One comes back: three of four make a quorum again.
    let _v3 = start_node(&home.join("validator-3"));
    let three: Vec<&String> = [&urls[0], &urls[1], &urls[3]].into_iter().collect();
    advance(&left, 3, "the chain to resume");
    let target = height(&urls[0]);
    eventually(WAIT, "validator-3 to catch up", || {
        (height(&urls[3]) >= target).then_some(())
    });
    assert_same_chain(&three);
}
