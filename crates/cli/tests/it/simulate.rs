//! `trustedge simulate`: a small city through the real stack (4 validators, 2 MQTT edges,
//! 1 cloud, in one process), its metrics JSON checked for every key and sane values.

use std::time::Duration;

use crate::common::*;

fn num(v: &serde_json::Value, path: &str) -> f64 {
    let mut cur = v;
    for k in path.split('.') {
        cur = &cur[k];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number: {cur}\n{v:#}"))
}

/// A rate in [0, 1], or null when undefined (nothing predicted / nothing to find).
fn fraction(v: &serde_json::Value, path: &str) -> Option<f64> {
    let mut cur = v;
    for k in path.split('.') {
        cur = &cur[k];
    }
    if cur.is_null() {
        return None;
    }
    let x = num(v, path);
    assert!(
        (0.0..=1.0).contains(&x),
        "{path} = {x} is not in [0, 1]\n{v:#}"
    );
    Some(x)
}

#[test]
fn small_city_through_the_real_stack() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sim.json");
    let home = dir.path().join("net");
    let run = run(
        &[
            "simulate",
            "--seed",
            "7",
            "--population",
            "60",
            "--days",
            "3",
            "--index-cases",
            "30",
            "--app-adoption",
            "0.5",
            "--quiet",
            "--home",
            home.to_str().unwrap(),
            "--json",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(600),
    );
    assert!(run.ok(), "{}", run.describe());
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();

    for p in [
        "close_contact.precision",
        "close_contact.recall",
        "notification.precision",
        "notification.recall",
        "aerosol_alerts.precision",
        "aerosol_alerts.recall",
    ] {
        fraction(&v, p);
    }
    let ndcf = num(&v, "close_contact.ndcf");
    assert!((0.0..=2.0).contains(&ndcf), "nDCF {ndcf}");
    assert!(
        v["origin"].is_null()
            || v["origin"]["top1"].is_number()
            || (v["origin"]["top1"].is_null() && v["origin"]["clusters"] == 0),
        "{v:#}"
    );
    // No ranking scores above the share of clusters whose origin the evidence reaches.
    if let Some(reach) = v["origin"]["reachable"].as_f64() {
        for k in ["top1", "top3", "baseline_top1", "baseline_top3"] {
            let x = num(&v, &format!("origin.{k}"));
            assert!(x <= reach + 1e-12, "origin.{k} {x} above reachable {reach}");
        }
    }
    for k in ["p50", "p95"] {
        let l = &v["notification"]["latency_s"][k];
        assert!(
            l.is_null() || l.as_f64().unwrap() >= 0.0,
            "latency {k}: {l}"
        );
    }

    // The devices really went through the edges and the ledger.
    let people = num(&v, "counts.people");
    let apps = num(&v, "counts.app_users");
    assert_eq!(people, 60.0);
    assert!(apps > 0.0 && apps < people, "{apps} app users of {people}");
    assert!(num(&v, "counts.encounter_uploads") > 0.0, "{v:#}");
    // Phones send their uploads in batches: never more readings than uploads.
    let readings = num(&v, "counts.encounter_readings");
    assert!(
        readings > 0.0 && readings <= num(&v, "counts.encounter_uploads"),
        "{v:#}"
    );
    assert!(num(&v, "counts.air_readings") > 0.0, "{v:#}");
    assert_eq!(
        num(&v, "counts.refused"),
        0.0,
        "the edges refused readings: {v:#}"
    );
    assert!(num(&v, "close_contact.true_pair_days") > 0.0, "{v:#}");
    assert!(
        num(&v, "ledger.bytes") > 0.0 && num(&v, "ledger.txs") > apps,
        "{v:#}"
    );
    assert!(num(&v, "ledger.tx_per_s") > 0.0);
    // The sealed readings kept, within the store files that hold them with their indexes.
    assert!(num(&v, "edge.raw_bytes") > 0.0);
    assert!(
        num(&v, "edge.raw_bytes") < num(&v, "edge.file_bytes"),
        "{v:#}"
    );
    assert!(num(&v, "wall_s") > 0.0);
    // Confirmed app users' keys were relayed, and their contacts heard about it.
    let relayed = num(&v, "counts.confirmed_relayed");
    assert!(relayed > 0.0, "no confirmed app user in this city: {v:#}");
    if num(&v, "notification.true_exposures") > 0.0 {
        assert!(
            num(&v, "counts.notices") > 0.0,
            "no notice delivered: {v:#}"
        );
        assert!(num(&v, "notification.recall") > 0.0, "{v:#}");
        // Every missed exposure is put down to one place.
        let truly = num(&v, "notification.true_exposures");
        let found = (num(&v, "notification.recall") * truly).round();
        assert_eq!(
            num(&v, "notification.missed.not_judged_close")
                + num(&v, "notification.missed.judged_close_not_delivered"),
            truly - found,
            "{v:#}"
        );
    }
    assert!(v["notification"]["unresolved_notices"].is_u64(), "{v:#}");
    // The close-contact decision finds real contacts.
    assert!(num(&v, "close_contact.recall") > 0.3, "{v:#}");
    assert!(num(&v, "close_contact.precision") > 0.3, "{v:#}");
    // The network is gone with the run only when it was temporary: this home stays.
    assert!(home.join("genesis.json").is_file());
}

/// SIGTERM stops a simulation and removes its temporary network (it lives in /dev/shm when
/// that exists, which is memory).
#[cfg(unix)]
#[test]
fn a_terminated_simulation_removes_its_temporary_network() {
    use std::process::{Command, Stdio};
    let child = Command::new(BIN)
        .args([
            "simulate",
            "--seed",
            "11",
            "--population",
            "200",
            "--days",
            "14",
            "--quiet",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Killed on drop if an assertion fails first.
    let mut guard = Guard(Some(child));
    // In /dev/shm when memory allows, else in the temporary directory.
    let name = format!("trustedge-simulate-{pid}-11");
    let candidates = [
        std::path::PathBuf::from("/dev/shm").join(&name),
        std::env::temp_dir().join(&name),
    ];
    // The nodes are running (and writing into the network's directory) once the last
    // edge has opened its store.
    let home = eventually(Duration::from_secs(120), "the temporary network", || {
        candidates
            .iter()
            .find(|h| h.join("edge-1/data/edge.redb").is_file())
            .cloned()
    });
    std::thread::sleep(Duration::from_millis(500));
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let child = guard.0.as_mut().unwrap();
    let exited = eventually(Duration::from_secs(60), "the simulation to exit", || {
        child.try_wait().unwrap()
    });
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!exited.success(), "a stopped run must not report success");
    assert!(err.contains("interrupted"), "stderr: {err}");
    // The network was shut down in order, not dropped under its nodes' tasks.
    assert!(!err.contains("panicked"), "stderr: {err}");
    assert!(!home.exists(), "{} was left behind", home.display());
}
