//! `trustedge aerosol risk` on the Skagit Valley Chorale scenario (Miller et al., Indoor Air
//! 2021, doi:10.1111/ina.12751: 810 m³, 0.7 ACH, 970 quanta/h, 1 infected, no masks,
//! 1.1 m³/h singing, 2.5 h; 53 of 60 infected) and `trustedge aerosol detect-eval`.

use std::time::Duration;

use crate::common::run;

const QUICK: Duration = Duration::from_secs(60);

fn risk(extra: &[&str]) -> crate::common::Run {
    let mut args = vec![
        "aerosol",
        "risk",
        "--volume-m3",
        "810",
        "--ach",
        "0.7",
        "--quanta-per-h",
        "970",
        "--infected",
        "1",
        "--mask-out",
        "0",
        "--mask-in",
        "0",
        "--breathing-m3-per-h",
        "1.1",
        "--hours",
        "2.5",
        "--json",
    ];
    // Each override replaces the value after its flag (clap refuses a repeated flag).
    for pair in extra.chunks(2) {
        let i = args.iter().position(|a| *a == pair[0]).unwrap();
        args[i + 1] = pair[1];
    }
    run(&args, QUICK)
}

#[test]
fn aerosol_risk_reproduces_the_skagit_choir_scenario() {
    let r = risk(&[]);
    assert!(r.ok(), "{}", r.describe());
    let out = r.json();
    let p = out["probability"].as_f64().unwrap();
    // Hand computation of the formula (Python): P = 0.7855445714738242, n = 1.5396533546246618,
    // C̄ = 0.5598739471362406 quanta/m³, λ = 1.62 /h.
    assert!(
        (p - 0.785_544_571_473_824_2).abs() < 1e-9,
        "{}",
        r.describe()
    );
    assert!((out["quanta_inhaled"].as_f64().unwrap() - 1.539_653_354_624_661_8).abs() < 1e-9);
    assert!((out["mean_quanta_per_m3"].as_f64().unwrap() - 0.559_873_947_136_240_6).abs() < 1e-9);
    assert!((out["lambda_per_h"].as_f64().unwrap() - 1.62).abs() < 1e-9);
    // The published outcome, 53 of 60 infected, within the stated 0.10 tolerance.
    assert!((p - 53.0 / 60.0).abs() < 0.10);
    assert_eq!(out["inputs"]["volume_m3"], 810.0);
}

#[test]
fn aerosol_risk_refuses_bad_input_with_status_2() {
    let r = risk(&["--mask-in", "1.5"]);
    assert_eq!(r.code, Some(2), "{}", r.describe());
    assert!(r.stderr.contains("mask_in"), "{}", r.describe());
    assert!(!r.stderr.contains("panicked"), "{}", r.describe());
    let r = risk(&["--hours", "0"]);
    assert_eq!(r.code, Some(2), "{}", r.describe());
    assert!(r.stderr.contains("hours"), "{}", r.describe());
    let r = risk(&["--volume-m3", "NaN"]);
    assert_eq!(r.code, Some(2), "{}", r.describe());
}

#[test]
fn aerosol_detect_eval_reports_delays_and_false_alarms() {
    let r = run(
        &[
            "aerosol",
            "detect-eval",
            "--seed",
            "3",
            "--days",
            "14",
            "--json",
        ],
        QUICK,
    );
    assert!(r.ok(), "{}", r.describe());
    let out = r.json();
    let events = out["events"].as_u64().unwrap();
    let detected = out["detected"].as_u64().unwrap();
    assert!(events > 0 && detected <= events, "{}", r.describe());
    for k in ["mean", "p50", "p95"] {
        assert!(out["detection_delay_min"][k].as_f64().unwrap() >= 0.0);
    }
    assert!(out["false_alarms_per_day"].as_f64().unwrap() >= 0.0);
    // Replays from its seed.
    let again = run(
        &[
            "aerosol",
            "detect-eval",
            "--seed",
            "3",
            "--days",
            "14",
            "--json",
        ],
        QUICK,
    );
    assert_eq!(again.stdout, r.stdout);
    let r = run(&["aerosol", "detect-eval", "--days", "0"], QUICK);
    assert_eq!(r.code, Some(2), "{}", r.describe());
}
