//! `trustedge bench matching --json` on a small workload: the JSON keys are there and
//! exactly the planted observations match (no speed is asserted).

use std::time::Duration;

use crate::common::run;

const QUICK: Duration = Duration::from_secs(120);

#[test]
fn bench_matching_reports_rates_and_finds_exactly_the_planted_matches() {
    let r = run(
        &[
            "bench",
            "matching",
            "--json",
            "--observed",
            "5000",
            "--keys",
            "300",
            "--planted",
            "40",
            "--rounds",
            "1",
            "--seed",
            "7",
        ],
        QUICK,
    );
    assert!(r.ok(), "{}", r.describe());
    let out = r.json();
    assert_eq!(out["matches"], 40, "{out}");
    assert_eq!(out["planted"], 40, "{out}");
    assert_eq!(out["decoys_outside_skew"], 40, "{out}");
    assert_eq!(out["observed_rpis"], 5000, "{out}");
    assert_eq!(out["keys"], 300, "{out}");
    for key in [
        "keys_per_s_per_core",
        "ceiling_keys_per_s_per_core",
        "ratio",
    ] {
        let v = out[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {out}"));
        assert!(v.is_finite() && v > 0.0, "{key} = {v}");
    }

    // Nonsense sizes are refused with a message, not a panic.
    let r = run(
        &["bench", "matching", "--keys", "10", "--planted", "20"],
        QUICK,
    );
    assert!(
        !r.ok() && r.stderr.contains("--planted"),
        "{}",
        r.describe()
    );
}
