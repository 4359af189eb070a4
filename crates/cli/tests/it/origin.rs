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
