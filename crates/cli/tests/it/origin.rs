//! `trustedge origin eval`: a small seeded run prints the accuracy figures as JSON.

use std::time::Duration;

use crate::common::run;

#[test]
fn origin_eval_prints_rates_in_range() {
    let args = [
        "origin",
        "eval",
        "--seed",
        "3",
        "--outbreaks",
        "6",
        "--samples",
        "200",
        "--json",
    ];
    let r = run(&args, Duration::from_secs(120));
    assert!(r.ok(), "{}", r.describe());
    let out = r.json();
    for key in ["top1", "top3", "baseline_top1", "baseline_top3"] {
        let x = out[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key}: {}", r.describe()));
        assert!((0.0..=1.0).contains(&x), "{key} = {x}");
    }
    assert_eq!(out["outbreaks"], 6);
    assert!(
        out["mean_cases"].as_f64().unwrap() >= 5.0,
        "{}",
        r.describe()
    );
    // Same seed, same figures.
    let again = run(&args, Duration::from_secs(120));
    assert_eq!(again.json()["top1"], out["top1"]);
    assert_eq!(again.json()["top3"], out["top3"]);

    let bad = run(
        &["origin", "eval", "--outbreaks", "0"],
        Duration::from_secs(60),
    );
    assert!(!bad.ok(), "{}", bad.describe());
}

/// `trustedge origin --node` against a cloud node laid out by `init` (which gives cloud nodes
/// `[origin]`): an empty ledger has no cluster; a validator says it has no `[origin]`. The
/// inference on ledger data is tested in the node's `tests/it/origin.rs`.
#[test]
fn origin_asks_a_cloud_node_and_reports_typed_refusals() {
    use trustedge_node::NodeConfig;

    use crate::common::{eventually, free_ports, start_node};

    let quick = Duration::from_secs(60);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("net");
    let h = home.to_str().unwrap();
    let base = free_ports(2);
    let r = run(
        &[
            "init",
            "--validators",
            "1",
            "--clouds",
            "1",
            "--home",
            h,
            "--base-port",
            &base.to_string(),
        ],
        quick,
    );
    assert!(r.ok(), "{}", r.describe());
    let cloud_config = NodeConfig::load(&home.join("cloud-0")).unwrap();
    assert!(cloud_config.origin.is_some_and(|o| o.enabled));
    assert!(
        NodeConfig::load(&home.join("validator-0"))
            .unwrap()
            .origin
            .is_none()
    );
    let _v = start_node(&home.join("validator-0"));
    let _c = start_node(&home.join("cloud-0"));
    let v_url = format!("http://127.0.0.1:{base}");
    let c_url = format!("http://127.0.0.1:{}", base + 1);
    for url in [&v_url, &c_url] {
        eventually(Duration::from_secs(60), "the node to answer", || {
            run(&["status", "--node", url, "--json"], quick)
                .ok()
                .then_some(())
        });
    }
    let r = run(&["origin", "--node", &c_url, "--refresh", "--json"], quick);
    assert!(r.ok(), "{}", r.describe());
    let out = r.json();
    assert_eq!(out["cases"], 0);
    assert_eq!(out["clusters"], serde_json::json!([]));
    assert!(out["height"].as_u64().is_some());
    let r = run(&["origin", "--node", &c_url], quick);
    assert!(r.ok(), "{}", r.describe());
    assert!(r.stdout.contains("0 confirmed case(s)"), "{}", r.describe());
    let r = run(&["origin", "--node", &v_url], quick);
    assert!(!r.ok());
    assert!(r.stderr.contains("[origin_disabled]"), "{}", r.describe());
    let r = run(&["origin"], quick);
    assert!(!r.ok());
    assert!(r.stderr.contains("--node"), "{}", r.describe());
    let r = run(
        &["origin", "--node", &c_url, "--min-cluster-size", "0"],
        quick,
    );
    assert!(!r.ok(), "{}", r.describe());
}
