//! Our own exports: round trip, GAEN encoding choices, determinism, batches, refusals.

use prost::Message as _;
use trustedge_gaen_export::{
    ECDSA_P256_SHA256_OID, EXPORT_HEADER, ExportError, ExportMeta, MAX_KEYS_PER_FILE,
    build_export_batches, build_export_bin, build_export_zip, key_from_proto, key_to_proto,
    parse_export_zip, parse_public_key_pem, parse_signing_key_pem, proto, public_key_to_pem,
    signing_key_to_pem, split_into_batches, verify_signature,
};
use trustedge_tracing::{DiagnosisKey, ReportType};

use crate::{some_keys, test_signing_key};

fn meta() -> ExportMeta {
    ExportMeta::new(1_700_000_000, 1_700_086_400, "TE", "999", "v1")
}

fn sorted(mut keys: Vec<DiagnosisKey>) -> Vec<DiagnosisKey> {
    keys.sort_by_key(|k| k.key_data);
    keys
}

#[test]
fn own_export_round_trips_and_verifies() {
    let keys = some_keys(40);
    let signing = test_signing_key(9);
    let zip = build_export_zip(&keys, &meta(), &signing).unwrap();
    let parsed = parse_export_zip(&zip).unwrap();
    assert!(parsed.export_bin.starts_with(EXPORT_HEADER));
    assert_eq!(parsed.header.region.as_deref(), Some("TE"));
    assert_eq!(parsed.header.start_timestamp, Some(1_700_000_000));
    assert_eq!(parsed.header.end_timestamp, Some(1_700_086_400));
    assert_eq!(
        (parsed.header.batch_num, parsed.header.batch_size),
        (Some(1), Some(1))
    );
    // Revoked keys are revisions; the others are first releases. Both in key_data order.
    let (revised, released): (Vec<_>, Vec<_>) = keys
        .iter()
        .partition(|k| k.report_type == ReportType::Revoked);
    assert!(!revised.is_empty() && !released.is_empty());
    assert_eq!(parsed.keys, sorted(released.into_iter().copied().collect()));
    assert_eq!(
        parsed.revised_keys,
        sorted(revised.into_iter().copied().collect())
    );
    assert_eq!(parsed.signature_infos.len(), 1);
    assert_eq!(
        parsed.signature_infos[0].signature_algorithm.as_deref(),
        Some(ECDSA_P256_SHA256_OID)
    );

    // Verifies with the PEM of its own public key, and not with a different key.
    let pem = public_key_to_pem(signing.verifying_key()).unwrap();
    let list = parsed.signature_list.as_ref().unwrap();
    let verdict = verify_signature(&parsed.export_bin, list, &pem).unwrap();
    assert!(verdict.valid);
    let matched = verdict.matched.unwrap();
    assert_eq!((matched.batch_num, matched.batch_size), (Some(1), Some(1)));
    assert_eq!(
        matched
            .signature_info
            .unwrap()
            .verification_key_id
            .as_deref(),
        Some("999")
    );
    let other = test_signing_key(10);
    assert!(!parsed.verify(other.verifying_key()).unwrap().valid);
}

#[test]
fn default_rolling_period_is_omitted_like_gaen_servers_do() {
    let keys = some_keys(10);
    let bin = build_export_bin(&keys, &meta()).unwrap();
    let raw = proto::TemporaryExposureKeyExport::decode(&bin[16..]).unwrap();
    let all: Vec<_> = raw.keys.iter().chain(&raw.revised_keys).collect();
    assert_eq!(all.len(), 10);
    for k in all {
        let dk = key_from_proto(k).unwrap();
        match dk.rolling_period {
            144 => assert_eq!(k.rolling_period, None),
            p => assert_eq!(k.rolling_period, Some(p as i32)),
        }
    }
}

#[test]
fn conversion_round_trips_and_refuses_what_gaen_refuses() {
    for key in some_keys(20) {
        assert_eq!(key_from_proto(&key_to_proto(&key).unwrap()).unwrap(), key);
    }
    let good = key_to_proto(&some_keys(1)[0]).unwrap();
    let bad = [
        proto::TemporaryExposureKey {
            key_data: Some(vec![1; 15]),
            ..good.clone()
        },
        proto::TemporaryExposureKey {
            key_data: None,
            ..good.clone()
        },
        proto::TemporaryExposureKey {
            rolling_period: Some(0),
            ..good.clone()
        },
        proto::TemporaryExposureKey {
            rolling_period: Some(145),
            ..good.clone()
        },
        proto::TemporaryExposureKey {
            rolling_start_interval_number: Some(-1),
            ..good.clone()
        },
    ];
    for b in bad {
        assert!(key_from_proto(&b).is_err(), "{b:?}");
    }
    // An unknown report type number reads as UNKNOWN (GAEN receivers treat it as absent).
    let odd = proto::TemporaryExposureKey {
        report_type: Some(42),
        ..good
    };
    assert_eq!(
        key_from_proto(&odd).unwrap().report_type,
        ReportType::Unknown
    );
    let too_late = DiagnosisKey {
        rolling_start_interval_number: u32::MAX,
        ..some_keys(1)[0]
    };
    assert!(key_to_proto(&too_late).is_err());
}

#[test]
fn same_keys_give_the_same_bytes_in_any_order() {
    let keys = some_keys(25);
    let signing = test_signing_key(3);
    let a = build_export_zip(&keys, &meta(), &signing).unwrap();
    let mut shuffled = keys.clone();
    shuffled.reverse();
    shuffled.rotate_left(7);
    let b = build_export_zip(&shuffled, &meta(), &signing).unwrap();
    assert_eq!(a, b);
    // And a different key set gives different bytes.
    let c = build_export_zip(&keys[1..], &meta(), &signing).unwrap();
    assert_ne!(a, c);
}

#[test]
fn a_day_above_the_file_limit_is_split_into_numbered_batches() {
    let keys = some_keys(11);
    let signing = test_signing_key(5);
    let batches = split_into_batches(&keys, 4);
    assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 3]);
    assert_eq!(batches.concat(), sorted(keys.clone()));
    assert_eq!(split_into_batches(&[], 4), vec![Vec::<DiagnosisKey>::new()]);

    let files = build_export_batches(&keys, &meta(), &signing, 4).unwrap();
    assert_eq!(files.len(), 3);
    let mut seen = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let parsed = parse_export_zip(file).unwrap();
        assert_eq!(parsed.header.batch_num, Some(i as i32 + 1));
        assert_eq!(parsed.header.batch_size, Some(3));
        let verdict = parsed.verify(signing.verifying_key()).unwrap();
        assert!(verdict.valid);
        assert_eq!(verdict.matched.unwrap().batch_num, Some(i as i32 + 1));
        seen.extend(parsed.keys.iter().chain(&parsed.revised_keys).copied());
    }
    assert_eq!(sorted(seen), sorted(keys));
}

#[test]
fn invalid_metadata_and_keys_are_refused() {
    let keys = some_keys(3);
    let signing = test_signing_key(1);
    let bad_metas = [
        ExportMeta {
            start_timestamp: 10,
            end_timestamp: 9,
            ..meta()
        },
        ExportMeta {
            batch_num: 0,
            ..meta()
        },
        ExportMeta {
            batch_num: 3,
            batch_size: 2,
            ..meta()
        },
        ExportMeta {
            verification_key_id: "31 0".into(),
            ..meta()
        },
        ExportMeta {
            signature_algorithm: "1.2.840.10045.4.3.4".into(),
            ..meta()
        },
    ];
    for m in bad_metas {
        assert!(
            matches!(
                build_export_zip(&keys, &m, &signing),
                Err(ExportError::InvalidMeta(_))
            ),
            "{m:?}"
        );
    }
    let zero_period = DiagnosisKey {
        rolling_period: 0,
        ..keys[0]
    };
    assert!(matches!(
        build_export_zip(&[zero_period], &meta(), &signing),
        Err(ExportError::UnexportableKey { .. })
    ));
    let too_many = vec![keys[0]; MAX_KEYS_PER_FILE + 1];
    assert!(matches!(
        build_export_bin(&too_many, &meta()),
        Err(ExportError::TooManyKeys { .. })
    ));
}

#[test]
fn signing_and_public_keys_round_trip_through_pem() {
    let signing = test_signing_key(42);
    let pem = signing_key_to_pem(&signing).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(parse_signing_key_pem(&pem).unwrap(), signing);
    let public = public_key_to_pem(signing.verifying_key()).unwrap();
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
    assert_eq!(
        &parse_public_key_pem(&public).unwrap(),
        signing.verifying_key()
    );
    assert!(parse_signing_key_pem(&public).is_err());
    assert!(parse_public_key_pem(&pem).is_err());
}
