//! `trustedge bench contacts`, tiny: the JSON report has every figure, consistent with the
//! workload asked for (no speed assertion: speed is what the benchmark measures).

use std::time::Duration;

use crate::common::run;

#[test]
fn bench_contacts_reports_latency_figures_as_json() {
    let r = run(
        &[
            "bench",
            "contacts",
            "--encounters",
            "10000",
            "--queries",
            "200",
            "--json",
        ],
        Duration::from_secs(120),
    );
    assert!(r.ok(), "{}", r.describe());
    let out = r.json();
    for key in [
        "encounters",
        "cases",
        "build_s",
        "bytes_per_encounter",
        "p50_us",
        "p99_us",
        "max_us",
        "mean_results",
        "limit_p99_ms",
        "ratio",
    ] {
        assert!(out.get(key).is_some(), "missing {key}: {}", r.describe());
    }
    assert_eq!(out["encounters"], 10_000);
    assert_eq!(out["limit_p99_ms"], 10.0);
    // 1,000 cases by default (one per 10 encounters); nearly all of them are met.
    let cases = out["cases"].as_u64().unwrap();
    assert!(cases > 500 && cases <= 1000, "{cases}");
    let p50 = out["p50_us"].as_f64().unwrap();
    let p99 = out["p99_us"].as_f64().unwrap();
    let max = out["max_us"].as_f64().unwrap();
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{}", r.describe());
    let ratio = out["ratio"].as_f64().unwrap();
    assert!(
        (ratio - 10_000.0 / p99).abs() <= 1e-6 * ratio,
        "{}",
        r.describe()
    );
    // A 2-hop neighbourhood in a graph of mean degree 20 holds many cases.
    assert!(
        out["mean_results"].as_f64().unwrap() > 20.0,
        "{}",
        r.describe()
    );
    let bytes = out["bytes_per_encounter"].as_f64().unwrap();
    assert!((32.0..40.0).contains(&bytes), "{bytes}");

    // A bad argument is refused with a message, not a panic.
    let r = run(
        &["bench", "contacts", "--encounters", "0", "--json"],
        Duration::from_secs(60),
    );
    assert!(
        !r.ok() && r.stderr.contains("--encounters"),
        "{}",
        r.describe()
    );
}
