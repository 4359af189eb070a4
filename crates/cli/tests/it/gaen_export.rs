//! `trustedge tracing export inspect | build | keygen` on the published GAEN sample exports
//! (shared/testdata/gaen/exports), a tampered copy, and our own exports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::run;

const QUICK: Duration = Duration::from_secs(60);

fn sample(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata/gaen/exports")
        .join(name);
    assert!(path.exists(), "missing shared test file {}", path.display());
    path.display().to_string()
}

fn inspect(file: &str, public_key: Option<&str>) -> serde_json::Value {
    let mut args = vec!["tracing", "export", "inspect", file, "--json"];
    if let Some(pem) = public_key {
        args.extend(["--public-key", pem]);
    }
    let r = run(&args, QUICK);
    assert!(r.ok(), "{}", r.describe());
    r.json()
}

#[test]
fn inspect_reads_the_published_samples() {
    let out = inspect(
        &sample("sample_diagnosis_key_file.zip"),
        Some(&sample("public_310-v1.pem")),
    );
    assert_eq!(out["signature_valid"], true, "{out}");
    let keys = out["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 140);
    for k in keys {
        // No key in this file carries rolling_period: the default 144 applies.
        assert_eq!(k["rolling_period"], 144, "{k}");
        assert_eq!(k["key_data"].as_str().unwrap().len(), 32, "{k}");
        assert!(k["rolling_start_interval_number"].as_u64().unwrap() > 2_600_000);
        assert!(k.get("report_type").is_some() && k.get("days_since_onset").is_some());
    }

    let two = sample("testExport-2-records-1-of-1.zip");
    let out = inspect(&two, Some(&sample("public.pem")));
    assert_eq!(out["signature_valid"], true, "{out}");
    assert_eq!(out["keys"].as_array().unwrap().len(), 2);
    assert_eq!(out["region"], "US");
    assert_eq!(out["batch_num"], 1);
    assert_eq!(out["batch_size"], 1);
    assert!(out["start_timestamp"].as_u64().unwrap() < out["end_timestamp"].as_u64().unwrap());
    // The other authority's key: false, exit 0.
    let out = inspect(&two, Some(&sample("public_310-v1.pem")));
    assert_eq!(out["signature_valid"], false, "{out}");
    assert!(
        out["signature_reason"]
            .as_str()
            .unwrap()
            .contains("verifies")
    );

    // A raw export.bin (the legacy reserved field skipped): keys, no signature to check.
    let out = inspect(&sample("app_raw_export.bin"), Some(&sample("public.pem")));
    assert_eq!(out["keys"].as_array().unwrap().len(), 110);
    assert_eq!(out["format"], "export.bin");
    assert!(out["signature_valid"].is_null(), "{out}");
    assert!(
        out["signature_reason"]
            .as_str()
            .unwrap()
            .contains("raw export.bin")
    );
}

#[test]
fn inspect_reports_a_tampered_export_as_invalid_without_crashing() {
    use trustedge_gaen_export as gaen;
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read(sample("testExport-2-records-1-of-1.zip")).unwrap();
    let parsed = gaen::parse_export_zip(&original).unwrap();
    let sig = parsed.export_sig.clone().unwrap();
    let mut bin = parsed.export_bin.clone();
    let at = bin
        .windows(16)
        .position(|w| w == parsed.keys[1].key_data)
        .unwrap();
    bin[at + 3] ^= 0x10;
    let tampered = dir.path().join("tampered.zip");
    std::fs::write(&tampered, gaen::zip_export(&bin, &sig).unwrap()).unwrap();
    let out = inspect(tampered.to_str().unwrap(), Some(&sample("public.pem")));
    assert_eq!(out["signature_valid"], false, "{out}");
    assert_eq!(out["keys"].as_array().unwrap().len(), 2);

    // Garbage is an error with a message, not a crash.
    let junk = dir.path().join("junk.zip");
    std::fs::write(&junk, b"PK\x03\x04 not really a zip").unwrap();
    let r = run(
        &[
            "tracing",
            "export",
            "inspect",
            junk.to_str().unwrap(),
            "--json",
        ],
        QUICK,
    );
    assert_eq!(r.code, Some(1), "{}", r.describe());
    assert!(
        r.stderr.contains("not a readable GAEN export"),
        "{}",
        r.describe()
    );
}

fn keygen(dir: &Path) -> (String, String) {
    let r = run(
        &[
            "tracing",
            "export",
            "keygen",
            "--out",
            dir.to_str().unwrap(),
        ],
        QUICK,
    );
    assert!(r.ok(), "{}", r.describe());
    let out = r.json();
    (
        out["signing_key"].as_str().unwrap().to_string(),
        out["public_key"].as_str().unwrap().to_string(),
    )
}

#[test]
fn keygen_build_and_inspect_round_trip_our_own_export() {
    let dir = tempfile::tempdir().unwrap();
    let (signing, public) = keygen(dir.path());
    // keygen never overwrites a key.
    let again = run(
        &[
            "tracing",
            "export",
            "keygen",
            "--out",
            dir.path().to_str().unwrap(),
        ],
        QUICK,
    );
    assert!(
        !again.ok() && again.stderr.contains("not overwriting"),
        "{}",
        again.describe()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&signing).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "signing key readable by others: {mode:o}");
    }

    let keys: Vec<serde_json::Value> = (0..5u8)
        .map(|i| {
            serde_json::json!({
                "key_data": hex::encode([0xf0 - i * 16; 16]),
                "rolling_start_interval_number": 2_650_000 + u32::from(i) * 144,
                "rolling_period": if i == 2 { 72 } else { 144 },
                "report_type": "CONFIRMED_TEST",
                "days_since_onset": if i == 4 { serde_json::Value::Null } else { (i32::from(i) - 2).into() },
            })
        })
        .collect();
    let keys_path = dir.path().join("keys.json");
    std::fs::write(&keys_path, serde_json::to_vec(&keys).unwrap()).unwrap();
    let out_path = dir.path().join("day.zip");
    let build = |extra: &[&str]| {
        let mut args = vec![
            "tracing",
            "export",
            "build",
            "--keys",
            keys_path.to_str().unwrap(),
            "--signing-key",
            &signing,
            "--out",
            out_path.to_str().unwrap(),
            "--region",
            "CH",
        ];
        args.extend_from_slice(extra);
        let r = run(&args, QUICK);
        assert!(r.ok(), "{}", r.describe());
        r.json()
    };
    let built = build(&[]);
    assert_eq!(built["files"].as_array().unwrap().len(), 1);
    let first_bytes = std::fs::read(&out_path).unwrap();

    let out = inspect(out_path.to_str().unwrap(), Some(&public));
    assert_eq!(out["signature_valid"], true, "{out}");
    assert_eq!(out["region"], "CH");
    // Sorted by key_data, which reverses the input order here; every field survives.
    let mut expected = keys.clone();
    expected.reverse();
    assert_eq!(out["keys"].as_array().unwrap(), &expected);
    assert_eq!(out["start_timestamp"], 2_650_000u64 * 600);
    assert_eq!(out["end_timestamp"], (2_650_000u64 + 4 * 144 + 144) * 600);

    // Deterministic: the same keys and key give the same file.
    build(&[]);
    assert_eq!(std::fs::read(&out_path).unwrap(), first_bytes);

    // Another key pair's public key: false.
    let other = tempfile::tempdir().unwrap();
    let (_, other_public) = keygen(other.path());
    let out = inspect(out_path.to_str().unwrap(), Some(&other_public));
    assert_eq!(out["signature_valid"], false, "{out}");

    // Split into batches of 2: three files, numbered 1..3 of 3, each signed.
    let built = build(&["--max-keys-per-file", "2"]);
    let files = built["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    let mut total = 0;
    for (i, f) in files.iter().enumerate() {
        let out = inspect(f.as_str().unwrap(), Some(&public));
        assert_eq!(out["signature_valid"], true, "{out}");
        assert_eq!(out["batch_num"], i + 1);
        assert_eq!(out["batch_size"], 3);
        total += out["keys"].as_array().unwrap().len();
    }
    assert_eq!(total, 5);
}
