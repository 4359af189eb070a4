//! `trustedge devnet`, `trustedge load` and `trustedge bench ledger` with real processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{BIN, eventually, free_ports, run, start_node};

const QUICK: Duration = Duration::from_secs(60);

/// A running `trustedge devnet`. Dropping it stops the devnet with SIGTERM and then makes
/// sure no node it listed is left running, whatever the test did.
pub struct DevnetProc {
    pub child: Option<Child>,
    pub home: PathBuf,
    pub output: PathBuf,
}

impl DevnetProc {
    /// Starts `trustedge devnet --home home args…`, its output going to `home.out`.
    pub fn start(home: &Path, args: &[&str]) -> DevnetProc {
        let output = home.with_extension("out");
        let out = std::fs::File::create(&output).unwrap();
        let child = Command::new(BIN)
            .arg("devnet")
            .arg("--home")
            .arg(home)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        DevnetProc {
            child: Some(child),
            home: home.to_path_buf(),
            output,
        }
    }

    /// `devnet.json`, once it exists.
    pub fn file(&self) -> Value {
        let path = self.home.join("devnet.json");
        eventually(QUICK, "devnet.json", || {
            let text = std::fs::read_to_string(&path).ok()?;
            serde_json::from_str(&text).ok()
        })
    }

    /// What the devnet printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// The node named `name` in `devnet.json`.
    pub fn node(&self, name: &str) -> Value {
        let f = self.file();
        f["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no node {name} in {f}"))
    }

    /// SIGTERM, then waits for the devnet to exit; returns its exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        signal("-TERM", c.id());
        let deadline = Instant::now() + QUICK;
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("devnet did not stop on SIGTERM:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for DevnetProc {
    fn drop(&mut self) {
        self.terminate();
        // Whatever happened, leave no node behind.
        if let Ok(text) = std::fs::read_to_string(self.home.join("devnet.json"))
            && let Ok(v) = serde_json::from_str::<Value>(&text)
        {
            for n in v["nodes"].as_array().cloned().unwrap_or_default() {
                if let Some(pid) = n["pid"].as_u64() {
                    signal("-KILL", pid as u32);
                }
            }
        }
    }
}

pub fn signal(sig: &str, pid: u32) {
    let _ = Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub fn alive(pid: u32) -> bool {
    Command::new("kill")
        .arg("-0")
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn status(url: &str) -> Option<Value> {
    let r = run(&["status", "--node", url, "--json"], QUICK);
    r.ok().then(|| r.json())
}

pub fn height(url: &str) -> u64 {
    status(url).and_then(|s| s["height"].as_u64()).unwrap_or(0)
}

#[test]
fn a_devnet_runs_supervises_and_stops_its_nodes_and_load_drives_it() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("net");
    let base = free_ports(2);
    let mut devnet = DevnetProc::start(
        &home,
        &[
            "--validators",
            "1",
            "--edges",
            "1",
            "--base-port",
            &base.to_string(),
        ],
    );
    let v_url = format!("http://127.0.0.1:{base}");
    let e_url = format!("http://127.0.0.1:{}", base + 1);
    for url in [&v_url, &e_url] {
        eventually(QUICK, "the node to answer", || status(url));
    }
    let f = devnet.file();
    assert_eq!(f["running"], true, "{f}");
    assert_eq!(f["nodes"].as_array().unwrap().len(), 2, "{f}");
    let v = devnet.node("validator-0");
    assert_eq!(
        (v["role"].as_str(), v["api_url"].as_str()),
        (Some("validator"), Some(v_url.as_str()))
    );
    let v_pid = v["pid"].as_u64().unwrap() as u32;
    assert!(alive(v_pid));

    // Load through both nodes (the edge forwards to the validator): all accepted, all
    // committed.
    let r = run(
        &[
            "load",
            "--node",
            &format!("{v_url},{e_url}"),
            "--home",
            home.to_str().unwrap(),
            "--tps",
            "40",
            "--seconds",
            "3",
            "--json",
        ],
        QUICK,
    );
    assert!(r.ok(), "{}", r.describe());
    let out = r.json();
    let submitted = out["submitted"].as_u64().unwrap();
    assert!(submitted >= 100, "{out}");
    assert_eq!(out["accepted"].as_u64(), Some(submitted), "{out}");
    assert_eq!(out["refused"], serde_json::json!({}), "{out}");
    assert_eq!(
        out["committed_ours_after_drain"].as_u64(),
        Some(submitted),
        "{out}"
    );
    assert!(out["committed_tx_per_s"].as_f64().unwrap() > 0.0, "{out}");
    assert!(out["p99_ms"].as_f64().is_some(), "{out}");

    // A node killed is reported and listed without a pid; restarted by hand, it catches up.
    let e_pid = devnet.node("edge-0")["pid"].as_u64().unwrap() as u32;
    signal("-KILL", e_pid);
    eventually(QUICK, "the exit to be listed", || {
        let e = devnet.node("edge-0");
        (e["pid"].is_null() && e["last_exit"].is_string()).then_some(())
    });
    assert!(
        devnet.output().contains("edge-0 exited"),
        "{}",
        devnet.output()
    );
    let _by_hand = start_node(&home.join("edge-0"));
    let target = height(&v_url);
    eventually(QUICK, "the edge to catch up", || {
        (height(&e_url) >= target).then_some(())
    });
    eventually(QUICK, "the devnet to notice", || {
        devnet
            .output()
            .contains("edge-0 answers again")
            .then_some(())
    });

    // SIGTERM stops the devnet and its children.
    assert_eq!(devnet.terminate(), Some(0), "{}", devnet.output());
    assert_eq!(devnet.file()["running"], false);
    eventually(QUICK, "the validator to stop", || {
        (!alive(v_pid)).then_some(())
    });
}

#[test]
fn a_devnet_restarts_a_node_that_exits_when_asked_to() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("net");
    let base = free_ports(1);
    let devnet = DevnetProc::start(
        &home,
        &[
            "--validators",
            "1",
            "--base-port",
            &base.to_string(),
            "--restart",
        ],
    );
    let url = format!("http://127.0.0.1:{base}");
    eventually(QUICK, "the node to answer", || status(&url));
    let pid = devnet.node("validator-0")["pid"].as_u64().unwrap();
    signal("-KILL", pid as u32);
    let new_pid = eventually(QUICK, "a new pid", || {
        let n = devnet.node("validator-0");
        n["pid"]
            .as_u64()
            .filter(|p| *p != pid)
            .map(|p| (p, n["restarts"].as_u64()))
    });
    assert_eq!(new_pid.1, Some(1));
    eventually(QUICK, "the restarted node to answer", || status(&url));
    assert!(
        devnet.output().contains("validator-0 restarted"),
        "{}",
        devnet.output()
    );
}

#[test]
fn bench_ledger_with_one_validator_reports_its_figures() {
    let r = run(
        &[
            "bench",
            "ledger",
            "--validators",
            "1",
            "--seconds",
            "3",
            "--max-txs",
            "1500",
            "--json",
        ],
        Duration::from_secs(300),
    );
    assert!(r.ok(), "{}", r.describe());
    let out = r.json();
    for key in [
        "tx_per_s",
        "p50_ms",
        "p99_ms",
        "blocks_per_s",
        "ceiling_tx_per_s",
        "ratio",
    ] {
        assert!(out[key].as_f64().is_some(), "{key} missing: {out}");
    }
    assert!(out["tx_per_s"].as_f64().unwrap() > 0.0, "{out}");
    assert!(out["ceiling_tx_per_s"].as_f64().unwrap() > 0.0, "{out}");
    assert!(out["agreed_height"].as_u64().unwrap() >= 1, "{out}");
    assert_eq!(out["refused"], serde_json::json!({}), "{out}");
}
