//! (5) Crash recovery, injected for real.
//!
//! The parent test re-executes this test binary as a child process running only
//! [`crash_child`] (selected with `--exact`, switched on by [`CHILD_ENV`]). The child opens the
//! store and commits blocks of the deterministic chain as fast as it can. The parent kills it
//! with `SIGKILL` (`Child::kill`) after a random delay from a seeded generator, reopens the
//! store and checks that everything up to the latest height agrees (blocks, hashes,
//! certificates, results, transaction index, latest-state table, tree root = header's
//! `state_root`, proofs), that nothing was lost that a previous round had seen, and that the
//! chain continues: the parent commits the next block itself before the next round.
//!
//! The child also appends `b<h>` before and `e<h>` after each commit to a side log, with one
//! unbuffered `write` each (the kernel keeps them across `SIGKILL`). If the last line is
//! `e<h>`, the commit of `h` had returned, so `h` must be the latest height (durability); if it
//! is `b<h>`, the kill hit the commit of `h`, which must be all there or not at all.
//!
//! Replay a failure with `TRUSTEDGE_CRASH_SEED=<seed printed by the failing run>`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use trustedge_store::Store;

use crate::common::*;

/// Set (to the store path) only in the child.
const CHILD_ENV: &str = "TRUSTEDGE_STORE_CRASH_CHILD";
/// Overrides the seed of the kill schedule.
const SEED_ENV: &str = "TRUSTEDGE_CRASH_SEED";
const ROUNDS: usize = 8;
/// A child the parent forgot stops by itself after this long.
const CHILD_LIFETIME_MAX: Duration = Duration::from_secs(60);

/// The child's work; a no-op when run as an ordinary test.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = Store::open(Path::new(&path)).expect("child: open");
    if !store.is_initialised().expect("child: is_initialised") {
        store
            .init_genesis(CHAIN_ID, GENESIS_DOC, &genesis_writes())
            .expect("child: genesis");
    }
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(Path::new(&path)))
        .expect("child: log");
    let started = Instant::now();
    while started.elapsed() < CHILD_LIFETIME_MAX {
        let h = store.latest_height().expect("child: latest") + 1;
        log.write_all(format!("b{h}\n").as_bytes())
            .expect("child: log");
        commit_next(&store).expect("child: commit");
        log.write_all(format!("e{h}\n").as_bytes())
            .expect("child: log");
    }
}

fn log_path(store: &Path) -> PathBuf {
    store.with_extension("log")
}

/// The last marker the child wrote: (height, whether its commit had returned).
fn last_marker(store: &Path) -> Option<(u64, bool)> {
    let log = std::fs::read_to_string(log_path(store)).ok()?;
    let line = log.lines().last()?;
    let (tag, h) = line.split_at(1);
    Some((h.parse().ok()?, tag == "e"))
}

/// splitmix64: enough randomness for a kill schedule, and no dependency.
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

fn spawn_child(path: &Path) -> Guard {
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args([
            "crash::crash_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Guard(child)
}

#[test]
fn recovers_after_sigkill_at_random_moments() {
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7E57_C0DE_u64);
    eprintln!("crash test seed {seed} (set {SEED_ENV} to replay)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let mut seen = 0u64;
    let mut child_progress = Vec::new();
    let mut mid_commit = 0;
    for round in 0..ROUNDS {
        let mut child = spawn_child(&path);
        // The first rounds kill early (during open, genesis or the first commits), later
        // ones after longer runs.
        let delay_ms = if round < 2 {
            rng.next() % 40
        } else {
            20 + rng.next() % 400
        };
        std::thread::sleep(Duration::from_millis(delay_ms));
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("round {round}: child exited by itself with {status} (seed {seed})");
        }
        child.0.kill().unwrap();
        let status = child.0.wait().unwrap();
        assert!(!status.success(), "round {round}: child was not killed");
        drop(child);

        let store = Store::open(&path)
            .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e} (seed {seed})"));
        if !store.is_initialised().unwrap() {
            assert_eq!(seen, 0, "round {round}: genesis vanished");
            eprintln!("round {round}: killed after {delay_ms} ms, before genesis");
            continue;
        }
        let latest = verify_chain(&store);
        assert!(
            latest >= seen,
            "round {round}: height went back from {seen} to {latest} (seed {seed})"
        );
        child_progress.push(latest - seen);
        let marker = last_marker(&path);
        match marker {
            Some((h, true)) => assert_eq!(
                latest, h,
                "round {round}: commit of {h} returned but latest is {latest} (seed {seed})"
            ),
            Some((h, false)) => {
                mid_commit += 1;
                assert!(
                    latest == h || latest + 1 == h,
                    "round {round}: killed committing {h}, found latest {latest} (seed {seed})"
                );
            }
            None => {}
        }
        eprintln!(
            "round {round}: killed after {delay_ms} ms at height {latest}, last marker {marker:?}"
        );
        // The chain continues from where the crash left it.
        let next = commit_next(&store).unwrap();
        assert_eq!(next.header.height, latest + 1);
        assert_eq!(
            store.state_root(latest + 1).unwrap(),
            next.header.state_root
        );
        seen = verify_chain(&store);
        assert_eq!(seen, latest + 1);
    }
    eprintln!("{mid_commit} of {ROUNDS} kills landed inside a commit");
    assert!(seen > ROUNDS as u64 / 2, "too little progress: {seen}");
    assert!(
        child_progress.iter().filter(|&&p| p > 0).count() >= ROUNDS / 2,
        "children rarely committed anything: {child_progress:?}"
    );
}
