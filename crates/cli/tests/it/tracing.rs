//! `trustedge tracing derive` against the official GAEN v1.2 test vector (TEK
//! 75c734c6…, interval 0 of rolling start 2642976, metadata 40080000; see
//! shared/testdata/gaen/gaen_internals_testvectors_v1.2.json).

use std::time::Duration;

use crate::common::run;

const QUICK: Duration = Duration::from_secs(60);

#[test]
fn tracing_derive_matches_the_official_v1_2_vector() {
    let tek = "75c734c6dd1a782de7a965da5eb93125";
    let r = run(
        &[
            "tracing",
            "derive",
            "--tek",
            tek,
            "--interval",
            "2642976",
            "--metadata",
            "40080000",
        ],
        QUICK,
    );
    assert!(r.ok(), "{}", r.describe());
    let out = r.json();
    assert_eq!(out["rpik"], "185ad91db69ec7dd048960f1f3ba6175");
    assert_eq!(out["aemk"], "d57c46af7a1d83965b9bed8bd152936a");
    assert_eq!(out["rpi"], "8be6cd371c5c891604bfbe49df845096");
    assert_eq!(out["aem"], "72033874");

    // Interval 1 of the same key, without metadata: no "aem" key.
    let r = run(
        &["tracing", "derive", "--tek", tek, "--interval", "2642977"],
        QUICK,
    );
    assert!(r.ok(), "{}", r.describe());
    let out = r.json();
    assert_eq!(out["rpi"], "3c9a1de5dd6b02afa7fded7b570b3e56");
    assert!(out.get("aem").is_none(), "{}", r.describe());

    // A TEK of the wrong length is refused.
    let r = run(
        &["tracing", "derive", "--tek", "75c7", "--interval", "1"],
        QUICK,
    );
    assert!(!r.ok() && r.stderr.contains("TEK"), "{}", r.describe());
}
