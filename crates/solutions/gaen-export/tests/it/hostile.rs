//! Hostile and broken input: typed errors, never a panic; zip bombs refused.

use std::io::{Cursor, Write as _};

use proptest::prelude::*;
use trustedge_gaen_export::{
    EXPORT_HEADER, ExportError, ExportMeta, MAX_EXPORT_BIN_BYTES, MAX_ZIP_BYTES, MAX_ZIP_ENTRIES,
    build_export_zip, parse_export_bin, parse_export_zip,
};

use crate::{gaen_file, some_keys, test_signing_key};

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        w.start_file(*name, options).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn zip_bomb_entry_is_refused_before_inflating_it_all() {
    // 24 MiB + 1 of zeros deflates to a few KiB.
    let huge = vec![0u8; MAX_EXPORT_BIN_BYTES + 1];
    let bomb = zip_of(&[("export.bin", &huge), ("export.sig", b"")]);
    assert!(bomb.len() < 100_000, "{}", bomb.len());
    assert!(matches!(
        parse_export_zip(&bomb),
        Err(ExportError::EntryTooLarge {
            name: "export.bin",
            ..
        })
    ));
}

#[test]
fn too_many_entries_missing_entry_and_oversize_zip_are_refused() {
    let names: Vec<String> = (0..=MAX_ZIP_ENTRIES).map(|i| format!("f{i}")).collect();
    let many: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    assert!(matches!(
        parse_export_zip(&zip_of(&many)),
        Err(ExportError::TooManyEntries { .. })
    ));
    assert!(matches!(
        parse_export_zip(&zip_of(&[("export.sig", b"")])),
        Err(ExportError::MissingEntry("export.bin"))
    ));
    assert!(matches!(
        parse_export_zip(&vec![0u8; MAX_ZIP_BYTES + 1]),
        Err(ExportError::ZipTooLarge { .. })
    ));
    assert!(matches!(
        parse_export_zip(b"PK\x03\x04"),
        Err(ExportError::Zip(_))
    ));
    assert!(matches!(
        parse_export_bin(b"EK Export v2    "),
        Err(ExportError::BadHeader)
    ));
    let mut bad_proto = EXPORT_HEADER.to_vec();
    bad_proto.extend_from_slice(&[0x3a, 0x05, 0x0a]); // keys: a 5-byte message cut short
    assert!(matches!(
        parse_export_bin(&bad_proto),
        Err(ExportError::Decode { .. })
    ));
    // A zip without export.sig reads, with no signature list.
    let bin = gaen_file("exports/app_raw_export.bin");
    let parsed = parse_export_zip(&zip_of(&[("export.bin", &bin)])).unwrap();
    assert_eq!(parsed.keys.len(), 110);
    assert_eq!(parsed.signature_list, None);
}

#[test]
fn every_truncation_of_every_sample_is_an_error_not_a_panic() {
    let own = build_export_zip(
        &some_keys(5),
        &ExportMeta::new(0, 1, "TE", "1", "v1"),
        &test_signing_key(2),
    )
    .unwrap();
    for file in [
        gaen_file("exports/sample_diagnosis_key_file.zip"),
        gaen_file("exports/testExport-2-records-1-of-1.zip"),
        own,
    ] {
        for len in 0..file.len() {
            // A zip missing its tail loses its central directory: always an error.
            assert!(parse_export_zip(&file[..len]).is_err(), "len {len}");
        }
    }
    let bin = gaen_file("exports/app_raw_export.bin");
    for len in 0..bin.len() {
        // Any result is acceptable (a cut can fall between two keys); a panic is not.
        let _ = parse_export_bin(&bin[..len]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_export_zip(&bytes);
        let _ = parse_export_bin(&bytes);
        let mut with_header = EXPORT_HEADER.to_vec();
        with_header.extend_from_slice(&bytes);
        let _ = parse_export_bin(&with_header);
    }

    #[test]
    fn corrupted_sample_zip_never_panics(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..8)
    ) {
        let mut zip = gaen_file("exports/testExport-2-records-1-of-1.zip");
        for (at, mask) in flips {
            let i = at.index(zip.len());
            zip[i] ^= mask;
        }
        if let Ok(parsed) = parse_export_zip(&zip) {
            let key = trustedge_gaen_export::parse_public_key_pem(
                &crate::gaen_text("exports/public.pem"),
            ).unwrap();
            let _ = parsed.verify(&key);
        }
    }
}
