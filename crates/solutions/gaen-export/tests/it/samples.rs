//! The published sample exports of `shared/testdata/gaen/exports/`.

use std::io::{Cursor, Read as _};

use prost::Message as _;
use trustedge_gaen_export::{
    EXPORT_HEADER, parse_export_bin, parse_export_zip, parse_public_key_pem, proto,
    verify_signature, zip_export,
};

use crate::{gaen_file, gaen_text};

/// The raw entries of a zip, by name.
fn unzip(bytes: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    let mut read = |name: &str| {
        let mut out = Vec::new();
        archive
            .by_name(name)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    };
    (read("export.bin"), read("export.sig"))
}

#[test]
fn sample_diagnosis_key_file_has_140_keys_with_default_period_and_a_valid_signature() {
    let zip = gaen_file("exports/sample_diagnosis_key_file.zip");
    let parsed = parse_export_zip(&zip).unwrap();
    assert_eq!(parsed.keys.len(), 140);
    assert!(parsed.revised_keys.is_empty());
    // None of the file's keys carries rolling_period: all take the .proto default 144.
    let raw = proto::TemporaryExposureKeyExport::decode(&parsed.export_bin[16..]).unwrap();
    assert!(raw.keys.iter().all(|k| k.rolling_period.is_none()));
    assert!(parsed.keys.iter().all(|k| k.rolling_period == 144));
    assert!(parsed.export_bin.starts_with(EXPORT_HEADER));

    let list = parsed.signature_list.as_ref().unwrap();
    let verdict = verify_signature(
        &parsed.export_bin,
        list,
        &gaen_text("exports/public_310-v1.pem"),
    )
    .unwrap();
    assert!(verdict.valid);
    let matched = verdict.matched.unwrap();
    assert_eq!(matched.index, 0);
    let info = matched.signature_info.unwrap();
    assert_eq!(info.verification_key_id.as_deref(), Some("310"));
    assert_eq!(info.verification_key_version.as_deref(), Some("v1"));
    // The same file under the other published key does not verify.
    let other = parse_public_key_pem(&gaen_text("exports/public.pem")).unwrap();
    assert!(!parsed.verify(&other).unwrap().valid);
}

#[test]
fn server_example_export_has_2_keys_and_verifies_with_its_key() {
    let zip = gaen_file("exports/testExport-2-records-1-of-1.zip");
    let parsed = parse_export_zip(&zip).unwrap();
    assert_eq!(parsed.keys.len(), 2);
    assert_eq!(parsed.header.batch_num, Some(1));
    assert_eq!(parsed.header.batch_size, Some(1));
    assert!(parsed.header.start_timestamp <= parsed.header.end_timestamp);
    let key = parse_public_key_pem(&gaen_text("exports/public.pem")).unwrap();
    let verdict = parsed.verify(&key).unwrap();
    assert!(verdict.valid, "{verdict:?}");
    // The file's own export.bin and export.sig equal the entries in the zip, byte for byte.
    let (bin, sig) = unzip(&zip);
    assert_eq!(bin, parsed.export_bin);
    assert_eq!(Some(sig), parsed.export_sig);
    // Wrong key: false, not an error.
    let wrong = parse_public_key_pem(&gaen_text("exports/public_310-v1.pem")).unwrap();
    let verdict = parsed.verify(&wrong).unwrap();
    assert!(!verdict.valid);
    assert_eq!(verdict.matched, None);
    assert_eq!(verdict.checked, 1);
}

#[test]
fn raw_export_bin_with_reserved_signature_info_field_2_decodes_110_keys() {
    let bin = gaen_file("exports/app_raw_export.bin");
    // The file really carries SignatureInfo's reserved field 2 (android_package, 44 bytes).
    let legacy: Vec<u8> = [
        &[0x12u8, 44][..],
        b"com.google.android.apps.exposurenotification",
    ]
    .concat();
    assert!(bin.windows(legacy.len()).any(|w| w == legacy.as_slice()));
    let parsed = parse_export_bin(&bin).unwrap();
    assert_eq!(parsed.keys.len(), 110);
    assert_eq!(parsed.signature_list, None);
    assert_eq!(parsed.signature_infos.len(), 1);
    // Skipped, not kept: the re-encoded SignatureInfo no longer holds it.
    let reencoded = parsed.signature_infos[0].encode_to_vec();
    assert!(
        !reencoded
            .windows(legacy.len())
            .any(|w| w == legacy.as_slice())
    );
    assert_eq!(parsed.header.region.as_deref(), Some("US"));
    assert!(
        parsed
            .keys
            .iter()
            .all(|k| (1..=144).contains(&k.rolling_period))
    );
}

#[test]
fn tampered_export_bin_reports_invalid_signature_without_error() {
    let zip = gaen_file("exports/testExport-2-records-1-of-1.zip");
    let key = parse_public_key_pem(&gaen_text("exports/public.pem")).unwrap();
    let (bin, sig) = unzip(&zip);
    // Flip one byte of the first key's key_data (still a well-formed file), then re-zip.
    let first = parse_export_bin(&bin).unwrap().keys[0].key_data;
    let at = bin.windows(16).position(|w| w == first).unwrap();
    let mut tampered = bin.clone();
    tampered[at] ^= 0x01;
    let rezipped = zip_export(&tampered, &sig).unwrap();
    let parsed = parse_export_zip(&rezipped).unwrap();
    assert_eq!(parsed.keys.len(), 2);
    assert_ne!(parsed.keys[0].key_data, first);
    assert!(!parsed.verify(&key).unwrap().valid);
    // Untampered bytes through the same re-zip path still verify: the flip is what fails.
    let parsed = parse_export_zip(&zip_export(&bin, &sig).unwrap()).unwrap();
    assert!(parsed.verify(&key).unwrap().valid);
    // Every flipped byte of the DER signature: invalid (malformed DER or a wrong value),
    // never an error or a panic.
    let der = proto::TekSignatureList::decode(sig.as_slice())
        .unwrap()
        .signatures[0]
        .signature
        .clone()
        .unwrap();
    let der_at = sig.windows(der.len()).position(|w| w == der).unwrap();
    for i in der_at..der_at + der.len() {
        let mut bad_sig = sig.clone();
        bad_sig[i] ^= 0x01;
        let parsed = parse_export_zip(&zip_export(&bin, &bad_sig).unwrap()).unwrap();
        let verdict = parsed.verify(&key).unwrap();
        assert!(!verdict.valid, "flip at byte {i}");
        assert_eq!(verdict.checked, 1);
    }
}

#[test]
fn unparseable_public_key_is_an_error() {
    let parsed = parse_export_zip(&gaen_file("exports/testExport-2-records-1-of-1.zip")).unwrap();
    let list = parsed.signature_list.unwrap();
    assert!(verify_signature(&parsed.export_bin, &list, "not a pem").is_err());
}
