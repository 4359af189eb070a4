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
    assert!(num(&v, "edge.raw_bytes") > 0.0);
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
    }
    // The close-contact decision finds real contacts.
    assert!(num(&v, "close_contact.recall") > 0.3, "{v:#}");
    assert!(num(&v, "close_contact.precision") > 0.3, "{v:#}");
    // The network is gone with the run only when it was temporary: this home stays.
    assert!(home.join("genesis.json").is_file());
}
