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

/// `trustedge origin eval --city --contacts edge`: the inference given the edge's BLE
/// close-contact decisions between confirmed cases instead of the true close contacts. The
/// decisions are counted against the truth, and no top-k exceeds the evidence's ceiling.
#[test]
fn origin_eval_on_a_city_with_the_edges_contacts() {
    let base = [
        "origin",
        "eval",
        "--city",
        "--seed",
        "1",
        "--population",
        "3000",
        "--days",
        "14",
        "--samples",
        "200",
        "--json",
    ];
    let args = |contacts: &'static str| {
        let mut v = base.to_vec();
        v.extend(["--contacts", contacts]);
        v
    };
    let truth = run(&args("truth"), Duration::from_secs(300));
    assert!(truth.ok(), "{}", truth.describe());
    let edge = run(&args("edge"), Duration::from_secs(300));
    assert!(edge.ok(), "{}", edge.describe());
    let (t, e) = (truth.json(), edge.json());
    assert_eq!(t["contacts"], "truth");
    assert!(t["edge_decisions"].is_null());
    assert_eq!(e["contacts"], "edge");
    // Same city, same cases; only the contacts differ.
    assert_eq!(t["evidence"]["cases"], e["evidence"]["cases"]);
    assert_eq!(t["scored_clusters"], e["scored_clusters"]);
    let d = &e["edge_decisions"];
    let n = |k: &str| d[k].as_u64().unwrap_or_else(|| panic!("{k}: {d}"));
    assert!(n("pair_days") > 0, "{d}");
    assert!(
        n("true_positives") <= n("decided").min(n("positives")),
        "{d}"
    );
    assert!(n("decided") <= n("pair_days"), "{d}");
    assert_eq!(e["evidence"]["encounters"].as_u64(), Some(n("decided")));
    // The edge decides most true close contacts close.
    assert!(
        n("true_positives") as f64 >= 0.8 * n("positives") as f64,
        "{d}"
    );
    for out in [&t, &e] {
        let clusters = out["scored_clusters"].as_u64().unwrap();
        assert!(clusters > 0, "{out}");
        let ceiling = out["reachable_clusters"].as_u64().unwrap() as f64 / clusters as f64;
        for k in ["top1", "top3", "baseline_top1", "baseline_top3"] {
            let x = out[k].as_f64().unwrap();
            assert!(x <= ceiling + 1e-9, "{k} {x} above {ceiling}: {out}");
        }
    }
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
