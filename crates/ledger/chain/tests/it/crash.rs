//! Crash recovery of the ledger with deferred store commits and the block log, injected for
//! real.
//!
//! The parent re-executes this test binary as a child running only [`ledger_crash_child`]
//! (switched on by [`CHILD_ENV`]), which opens a ledger with a short checkpoint interval and
//! seals blocks of device registrations as fast as it can, writing `b<h>` before and
//! `e<h> <hash>` after each commit to a side file with one unbuffered `write` each (the
//! kernel keeps them across `SIGKILL`). The parent kills it with `SIGKILL` after a seeded
//! random delay and checks:
//! - the raw store alone may be behind (its last durable commit), and the ledger reopened on
//!   it replays the block log up to the last block whose commit returned (`e<h>`: latest is
//!   `h`; `b<h>`: latest is `h - 1` or `h`);
//! - every block the child saw committed has the same hash after the reopen (nothing lost,
//!   nothing rewritten), and the store's latest state root is the latest header's;
//! - the chain continues: the parent seals the next block itself before the next round;
//! - replay really ran: in some rounds the raw store was behind the committed height.
//!
//! Replay a failure with `TRUSTEDGE_CRASH_SEED=<seed printed by the failing run>`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use trustedge_chain::{Ledger, LedgerConfig, block_log_path};
use trustedge_contracts::DevicesCall;
use trustedge_execution::DeviceClass;
use trustedge_store::Store;
use trustedge_types::{Keypair, Payload, SignedTx, TxBody};

use crate::support::{CHAIN, Keys, genesis, keys, seal};

/// Set (to the ledger's directory) only in the child.
const CHILD_ENV: &str = "TRUSTEDGE_LEDGER_CRASH_CHILD";
/// Overrides the seed of the kill schedule.
const SEED_ENV: &str = "TRUSTEDGE_CRASH_SEED";
const ROUNDS: usize = 10;
/// Short, so that most kills find blocks that only the log holds.
const CHECKPOINT_INTERVAL: u64 = 4;
const TXS_PER_BLOCK: u64 = 3;
/// A child the parent forgot stops by itself after this long.
const CHILD_LIFETIME_MAX: Duration = Duration::from_secs(60);

fn config(checkpoint_interval: u64) -> LedgerConfig {
    LedgerConfig {
        checkpoint_interval,
        ..LedgerConfig::default()
    }
}

/// The ledger in `dir` with checkpoints every `checkpoint_interval` blocks.
fn open_with(dir: &Path, k: &Keys, checkpoint_interval: u64) -> Ledger {
    Ledger::open(
        &dir.join("ledger.redb"),
        genesis(k),
        config(checkpoint_interval),
    )
    .expect("open ledger")
}

fn open(dir: &Path, k: &Keys) -> Ledger {
    open_with(dir, k, CHECKPOINT_INTERVAL)
}

/// The hospital admin's registration with nonce `nonce` of a device of its own.
fn registration(k: &Keys, nonce: u64) -> SignedTx {
    let mut seed = [0x5e; 32];
    seed[..8].copy_from_slice(&nonce.to_be_bytes());
    TxBody {
        chain_id: CHAIN.into(),
        signer: k.hospital_admin.public(),
        nonce,
        expiry_height: u64::MAX,
        payload: Payload::new(
            "devices",
            &DevicesCall::Register {
                key: Keypair::from_seed(seed).public(),
                class: DeviceClass::Thermometer,
                model: "thermo-1".into(),
                attributes: vec![],
            },
        ),
    }
    .sign(&k.hospital_admin)
}

/// Submits a block's worth of registrations and seals them.
fn seal_next(ledger: &Ledger, k: &Keys) -> trustedge_types::Block {
    let first = ledger.last_nonce(&k.hospital_admin.public()).unwrap() + 1;
    for r in ledger.submit_batch(
        (first..first + TXS_PER_BLOCK)
            .map(|n| registration(k, n))
            .collect(),
    ) {
        r.unwrap();
    }
    let time = 1_700_000_000_000 + ledger.height().unwrap() * 1000 + 1000;
    seal(ledger, k, time)
}

/// The child's work; a no-op when run as an ordinary test.
#[test]
fn ledger_crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let k = keys();
    let ledger = open(&dir, &k);
    let mut markers = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(markers_path(&dir))
        .expect("child: markers");
    let started = Instant::now();
    while started.elapsed() < CHILD_LIFETIME_MAX {
        let h = ledger.height().expect("child: height") + 1;
        markers
            .write_all(format!("b{h}\n").as_bytes())
            .expect("child: markers");
        let block = seal_next(&ledger, &k);
        assert_eq!(block.header.height, h);
        markers
            .write_all(format!("e{h} {}\n", block.hash()).as_bytes())
            .expect("child: markers");
    }
}

fn markers_path(dir: &Path) -> PathBuf {
    dir.join("markers.txt")
}

/// What the child's markers say: the hash of every block whose commit returned, and the
/// last marker (height, whether its commit had returned).
fn read_markers(dir: &Path) -> (BTreeMap<u64, String>, Option<(u64, bool)>) {
    let text = std::fs::read_to_string(markers_path(dir)).unwrap_or_default();
    let mut done = BTreeMap::new();
    let mut last = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix('e') {
            let (h, hash) = rest.split_once(' ').unwrap();
            let h: u64 = h.parse().unwrap();
            done.insert(h, hash.to_string());
            last = Some((h, true));
        } else if let Some(h) = line.strip_prefix('b') {
            last = Some((h.parse().unwrap(), false));
        }
    }
    (done, last)
}

/// splitmix64: enough randomness for a kill schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Kills the child if the parent's assertions fail, so no writer outlives the test.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_child(dir: &Path) -> Guard {
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args([
            "crash::ledger_crash_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Guard(child)
}

#[test]
fn replays_the_block_log_after_sigkill_at_random_moments() {
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0B10_C106_u64);
    eprintln!("ledger crash test seed {seed} (set {SEED_ENV} to replay)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    // Genesis first, so that every round's child commits blocks.
    drop(open(dir.path(), &k));
    let mut parent_blocks: BTreeMap<u64, String> = BTreeMap::new();
    let mut replayed_rounds = 0;
    let mut latest = 0;
    for round in 0..ROUNDS {
        let mut child = spawn_child(dir.path());
        let delay_ms = 150 + rng.next() % 500;
        std::thread::sleep(Duration::from_millis(delay_ms));
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("round {round}: child exited by itself with {status} (seed {seed})");
        }
        child.0.kill().unwrap();
        assert!(!child.0.wait().unwrap().success());
        drop(child);

        // What the store alone holds: its last durable commit.
        let durable = {
            let store = Store::open(&dir.path().join("ledger.redb")).unwrap_or_else(|e| {
                panic!("round {round}: raw store reopen failed: {e} (seed {seed})")
            });
            store.latest_height().unwrap()
        };
        let ledger = Ledger::open(
            &dir.path().join("ledger.redb"),
            genesis(&k),
            config(CHECKPOINT_INTERVAL),
        )
        .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e} (seed {seed})"));
        let now = ledger.height().unwrap();
        assert!(
            now >= latest,
            "round {round}: height went back from {latest} to {now}"
        );
        let (done, last) = read_markers(dir.path());
        match last {
            Some((h, true)) => assert_eq!(
                now, h,
                "round {round}: commit of {h} returned but the ledger reopened at {now} (seed {seed})"
            ),
            Some((h, false)) => assert!(
                now == h || now + 1 == h,
                "round {round}: killed committing {h}, reopened at {now} (seed {seed})"
            ),
            None => {}
        }
        for (h, hash) in done.iter().chain(&parent_blocks) {
            if *h <= now {
                let stored = ledger.store().block(*h).unwrap().unwrap().hash();
                assert_eq!(
                    &stored.to_string(),
                    hash,
                    "round {round}: block {h} changed (seed {seed})"
                );
            }
        }
        let head = ledger.store().header(now).unwrap().unwrap();
        assert_eq!(ledger.store().state_root(now).unwrap(), head.state_root);
        if durable < now {
            replayed_rounds += 1;
        }
        assert!(
            log_len(dir.path()) <= 8,
            "round {round}: the log was not emptied after replay"
        );
        eprintln!(
            "round {round}: killed after {delay_ms} ms; store durable at {durable}, ledger at {now}"
        );
        // The chain continues from where the crash left it, through the log again.
        let next = seal_next(&ledger, &k);
        assert_eq!(next.header.height, now + 1);
        parent_blocks.insert(now + 1, next.hash().to_string());
        latest = now + 1;
    }
    eprintln!("{replayed_rounds} of {ROUNDS} reopens replayed the block log");
    assert!(
        replayed_rounds >= ROUNDS / 2,
        "the store was rarely behind: {replayed_rounds} of {ROUNDS} (seed {seed})"
    );
    assert!(latest > 2 * ROUNDS as u64, "too little progress: {latest}");
}

/// Length of the log file (8 bytes: the magic alone, when empty).
fn log_len(dir: &Path) -> u64 {
    std::fs::metadata(block_log_path(&dir.join("ledger.redb")))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// The height the store holds durably, read by reopening it raw after the ledger is gone.
fn raw_height(dir: &Path) -> u64 {
    Store::open(&dir.join("ledger.redb"))
        .unwrap()
        .latest_height()
        .unwrap()
}

#[test]
fn interval_one_commits_every_block_durably_and_logs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    let ledger = open_with(dir.path(), &k, 1);
    for _ in 0..3 {
        seal_next(&ledger, &k);
        assert_eq!(log_len(dir.path()), 8, "a block was logged");
    }
    drop(ledger);
    assert_eq!(raw_height(dir.path()), 3);
}

#[test]
fn deferred_blocks_are_logged_until_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    let ledger = open_with(dir.path(), &k, 1000);
    for _ in 0..3 {
        seal_next(&ledger, &k);
    }
    assert!(
        log_len(dir.path()) > 8,
        "deferred blocks are not in the log"
    );
    ledger.checkpoint().unwrap();
    assert_eq!(
        log_len(dir.path()),
        8,
        "the checkpoint did not empty the log"
    );
    seal_next(&ledger, &k);
    assert!(log_len(dir.path()) > 8);
    // A clean close makes redb persist the deferred commit too, so the reopen finds block 4
    // in both the store and the log: replay checks they are the same block and skips it.
    drop(ledger);
    assert_eq!(raw_height(dir.path()), 4);
    let ledger = open_with(dir.path(), &k, 1000);
    assert_eq!(ledger.height().unwrap(), 4);
    assert_eq!(log_len(dir.path()), 8);
}
