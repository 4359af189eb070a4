//! `trustedge tracing distance-eval`: a small seeded run prints nDCF, P_miss and P_fa of
//! the learned model and both baselines, the session counts and the held-out models.

use std::time::Duration;

use crate::common::run;

#[test]
fn distance_eval_reports_every_method_on_held_out_models() {
    let args = [
        "tracing",
        "distance-eval",
        "--seed",
        "1",
        "--train-sessions",
        "800",
        "--test-sessions",
        "400",
        "--trees",
        "20",
        "--json",
    ];
    let r = run(&args, Duration::from_secs(300));
    assert!(r.ok(), "{}", r.describe());
    let out = r.json();
    assert_eq!(out["seed"], 1);
    assert_eq!(out["close_threshold_m"], 1.8);
    let train = out["train_sessions"].as_u64().unwrap();
    let test = out["test_sessions"].as_u64().unwrap();
    assert!(train > 700 && train <= 800, "{train}");
    assert!(test > 350 && test <= 400, "{test}");
    assert_eq!(
        out["test_positives"].as_u64().unwrap() + out["test_negatives"].as_u64().unwrap(),
        test
    );
    let held: Vec<&str> = out["held_out_models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let trained: Vec<&str> = out["train_models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(!held.is_empty() && held.iter().all(|h| !trained.contains(h)));
    assert!(out["train_s"].as_f64().unwrap() >= 0.0);
    for name in [
        "learned",
        "gaen_attenuation_threshold",
        "path_loss_inversion",
    ] {
        let m = &out["methods"][name];
        let (ndcf, p_miss, p_fa) = (
            m["ndcf"].as_f64().unwrap(),
            m["p_miss"].as_f64().unwrap(),
            m["p_false_alarm"].as_f64().unwrap(),
        );
        assert!((ndcf - p_miss - p_fa).abs() < 1e-9, "{name}");
        assert!((0.0..=2.0).contains(&ndcf), "{name}");
        assert!(m["rule"].is_string(), "{name}");
    }
    // the same seed replays the same figures
    let again = run(&args, Duration::from_secs(300));
    assert_eq!(again.json()["methods"], out["methods"]);
}
