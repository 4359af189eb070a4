//! `trustedge tracing simulate`: a small seeded run notifies every planted close contact,
//! reports consistent figures, and refuses a population it cannot simulate.

use std::time::Duration;

use crate::common::run;

#[test]
fn simulate_notifies_the_planted_close_contacts() {
    let args = [
        "tracing",
        "simulate",
        "--devices",
        "30",
        "--seed",
        "3",
        "--json",
    ];
    let r = run(&args, Duration::from_secs(300));
    assert!(r.ok(), "{}", r.describe());
    let out = r.json();
    assert_eq!(out["devices"], 30);
    let truth = out["true_close_contacts"].as_u64().unwrap();
    // A tenth of the 29 others are planted close contacts (20-60 min within 1.8 m).
    assert_eq!(truth, 2, "{out}");
    assert_eq!(out["recall"].as_f64().unwrap(), 1.0, "{out}");
    let notified = out["notified"].as_u64().unwrap();
    assert!(notified >= truth, "{out}");
    assert_eq!(out["notified_true"].as_u64().unwrap(), truth);
    let precision = out["precision"].as_f64().unwrap();
    assert!(
        (precision - truth as f64 / notified as f64).abs() < 1e-9,
        "{out}"
    );
    let lat = &out["latency_ms"];
    let (p50, p95, max) = (
        lat["p50"].as_u64().unwrap(),
        lat["p95"].as_u64().unwrap(),
        lat["max"].as_u64().unwrap(),
    );
    assert!(p50 <= p95 && p95 <= max && max > 0, "{out}");
    // The device matching the signed export itself reaches the same set.
    assert_eq!(out["export_signature_valid"], true);
    assert_eq!(out["pure_gaen_mode_agrees"], true, "{out}");
    assert_eq!(out["pure_gaen_mode_notified"].as_u64().unwrap(), notified);
    // 30 registrations, the relayed keys and at least one notice transaction.
    assert!(out["ledger_txs"].as_u64().unwrap() >= 32, "{out}");
    assert!(out["uploads"].as_u64().unwrap() > 0);
    assert!(out["wall_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn simulate_refuses_too_few_devices() {
    let r = run(
        &["tracing", "simulate", "--devices", "1", "--json"],
        Duration::from_secs(60),
    );
    assert!(!r.ok());
    assert!(r.describe().contains("--devices"), "{}", r.describe());
}
