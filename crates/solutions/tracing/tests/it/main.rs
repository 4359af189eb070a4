//! Integration tests of trustedge-tracing: the official GAEN v1.2 test vectors, two
//! live vectors captured from Android, and property tests.

// Test helpers outside #[test] functions panic on a malformed or missing vector file.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod device;
mod matching;
mod upload;

/// A deterministic stream of test bytes (splitmix64), so every test replays from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        out
    }
}

use std::path::PathBuf;

use proptest::prelude::*;
use serde_json::Value;
use trustedge_tracing::{
    Aem, EnIntervalNumber, Metadata, Rpi, TEK_ROLLING_PERIOD, TemporaryExposureKey,
    rolling_start_interval_number,
};

/// Reads a JSON file of /work/shared/testdata/gaen (beside the repository). A missing
/// file fails the test: the vectors are the point of these tests, never skip them.
fn vectors(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../../shared/testdata/gaen")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "GAEN test vector file {} is missing or unreadable ({e}); \
             the shared/ directory must be checked out beside the repository",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("test vector file is valid JSON")
}

fn hex_field(v: &Value, key: &str) -> Vec<u8> {
    let s = v[key]
        .as_str()
        .unwrap_or_else(|| panic!("field {key} is not a string in {v}"));
    hex::decode(s).unwrap_or_else(|e| panic!("field {key} is not hex: {e}"))
}

fn u64_field(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("field {key} is not an unsigned integer in {v}"))
}

fn enin_field(v: &Value, key: &str) -> EnIntervalNumber {
    EnIntervalNumber(u32::try_from(u64_field(v, key)).expect("interval number fits u32"))
}

#[test]
fn official_v1_2_vectors_key_schedule() {
    let v = vectors("gaen_internals_testvectors_v1.2.json");
    let tek = TemporaryExposureKey::from_slice(&hex_field(&v, "tek")).expect("16-byte TEK");
    assert_eq!(
        u64_field(&v, "tek_rolling_period"),
        u64::from(TEK_ROLLING_PERIOD)
    );
    assert_eq!(
        u64_field(&v, "id_rolling_period_minutes") * 60,
        trustedge_tracing::INTERVAL_LENGTH_S
    );
    let start = enin_field(&v, "rolling_start_interval_number");
    assert_eq!(
        rolling_start_interval_number(u64_field(&v, "key_generation_unix_seconds"))
            .expect("in range"),
        start
    );
    assert_eq!(tek.rpik().expect("rpik").0.to_vec(), hex_field(&v, "rpik"));
    assert_eq!(tek.aemk().expect("aemk").0.to_vec(), hex_field(&v, "aemk"));
}

#[test]
fn official_v1_2_vectors_every_rpi_and_aem() {
    let v = vectors("gaen_internals_testvectors_v1.2.json");
    let tek = TemporaryExposureKey::from_slice(&hex_field(&v, "tek")).expect("16-byte TEK");
    let start = enin_field(&v, "rolling_start_interval_number");
    let rpik = tek.rpik().expect("rpik");
    let aemk = tek.aemk().expect("aemk");
    let metadata = Metadata::from_slice(&hex_field(&v, "metadata")).expect("4-byte metadata");
    let intervals = v["intervals"].as_array().expect("intervals is an array");
    assert_eq!(
        intervals.len(),
        TEK_ROLLING_PERIOD as usize,
        "one vector per interval"
    );
    let expanded = tek.rpis(start).expect("period in range");
    assert_eq!(expanded.len(), intervals.len());
    for (iv, (enin, rpi)) in intervals.iter().zip(&expanded) {
        let i = u64_field(iv, "i");
        let want_enin = enin_field(iv, "en_interval_number");
        assert_eq!(
            u64::from(want_enin.0),
            u64::from(start.0) + i,
            "interval {i}"
        );
        assert_eq!(*enin, want_enin, "interval {i}");
        assert_eq!(rpi.0.to_vec(), hex_field(iv, "rpi"), "RPI of interval {i}");
        assert_eq!(rpik.rpi(want_enin), *rpi, "RPI of interval {i}");
        let aem = aemk.encrypt(rpi, metadata);
        assert_eq!(aem.0.to_vec(), hex_field(iv, "aem"), "AEM of interval {i}");
        let want_aem = Aem::from_slice(&hex_field(iv, "aem")).expect("4-byte AEM");
        assert_eq!(
            aemk.decrypt(rpi, &want_aem),
            metadata,
            "metadata of interval {i}"
        );
    }
}

#[test]
fn live_android_cwa_issue75_vectors() {
    let v = vectors("gaen_live_android_cwa_issue75.json");
    let list = v["vectors"].as_array().expect("vectors is an array");
    assert_eq!(list.len(), 2);
    for (n, lv) in list.iter().enumerate() {
        let tek = TemporaryExposureKey::from_slice(&hex_field(lv, "tek")).expect("16-byte TEK");
        let rpik = tek.rpik().expect("rpik");
        let aemk = tek.aemk().expect("aemk");
        assert_eq!(rpik.0.to_vec(), hex_field(lv, "rpik"), "RPIK of vector {n}");
        assert_eq!(aemk.0.to_vec(), hex_field(lv, "aemk"), "AEMK of vector {n}");
        let enin = enin_field(lv, "en_interval_number");
        if lv.get("padded_data").is_some() {
            assert_eq!(
                trustedge_tracing::Rpik::padded_data(enin).to_vec(),
                hex_field(lv, "padded_data"),
                "padded data of vector {n}"
            );
        }
        let rpi = rpik.rpi(enin);
        assert_eq!(
            rpi,
            Rpi::from_slice(&hex_field(lv, "rpi")).expect("16 bytes"),
            "RPI of vector {n}"
        );
        let aem = Aem::from_slice(&hex_field(lv, "aem")).expect("4-byte AEM");
        let metadata = aemk.decrypt(&rpi, &aem);
        let tx = lv["tx_power_dbm"]
            .as_i64()
            .expect("tx_power_dbm is an integer");
        assert_eq!(
            i64::from(metadata.tx_power_dbm),
            tx,
            "TX power of vector {n}"
        );
        if lv["metadata"].is_string() {
            assert_eq!(
                metadata.to_bytes().to_vec(),
                hex_field(lv, "metadata"),
                "metadata of vector {n}"
            );
            assert_eq!(aemk.encrypt(&rpi, metadata), aem, "AEM of vector {n}");
        }
    }
    // The facts the issue states, independent of the file's own fields.
    let tek1 = TemporaryExposureKey::from_slice(&hex_field(&list[0], "tek")).expect("TEK");
    let rpi1 = Rpi::from_slice(&hex_field(&list[0], "rpi")).expect("RPI");
    let aem1 = Aem::from_slice(&hex_field(&list[0], "aem")).expect("AEM");
    let m1 = tek1.aemk().expect("aemk").decrypt(&rpi1, &aem1);
    assert_eq!(m1.to_bytes(), [0x40, 0xf2, 0x00, 0x00]);
    assert_eq!(m1.tx_power_dbm, -14);
    let tek2 = TemporaryExposureKey::from_slice(&hex_field(&list[1], "tek")).expect("TEK");
    let rpi2 = Rpi::from_slice(&hex_field(&list[1], "rpi")).expect("RPI");
    let aem2 = Aem::from_slice(&hex_field(&list[1], "aem")).expect("AEM");
    assert_eq!(
        tek2.aemk()
            .expect("aemk")
            .decrypt(&rpi2, &aem2)
            .tx_power_dbm,
        12
    );
}

#[test]
fn interval_numbers_and_rolling_start() {
    assert_eq!(
        EnIntervalNumber::from_unix_seconds(1_585_785_600),
        Ok(EnIntervalNumber(2_642_976))
    );
    assert_eq!(
        EnIntervalNumber::from_unix_seconds(1_585_785_599),
        Ok(EnIntervalNumber(2_642_975))
    );
    assert_eq!(
        EnIntervalNumber(2_642_975).rolling_start(),
        EnIntervalNumber(2_642_976 - 144)
    );
    assert_eq!(
        EnIntervalNumber(2_642_976 + 143).rolling_start(),
        EnIntervalNumber(2_642_976)
    );
    assert!(EnIntervalNumber::from_unix_seconds(u64::MAX).is_err());
    let tek = TemporaryExposureKey::from_random_bytes([7; 16]);
    assert!(tek.rpis(EnIntervalNumber(u32::MAX - 10)).is_err());
    assert!(TemporaryExposureKey::from_slice(&[0; 15]).is_err());
    assert!(Metadata::from_slice(&[0; 5]).is_err());
}

proptest! {
    #[test]
    fn aem_decrypt_inverts_encrypt(tek in any::<[u8; 16]>(), enin in any::<u32>(), m in any::<[u8; 4]>()) {
        let tek = TemporaryExposureKey::from_random_bytes(tek);
        let rpi = tek.rpik().expect("rpik").rpi(EnIntervalNumber(enin));
        let aemk = tek.aemk().expect("aemk");
        let metadata = Metadata::from_bytes(m);
        prop_assert_eq!(aemk.decrypt(&rpi, &aemk.encrypt(&rpi, metadata)), metadata);
    }

    #[test]
    fn rpis_of_different_intervals_differ(tek in any::<[u8; 16]>(), a in any::<u32>(), b in any::<u32>()) {
        prop_assume!(a != b);
        let rpik = TemporaryExposureKey::from_random_bytes(tek).rpik().expect("rpik");
        // AES under one key is a permutation and the padded blocks differ, so the RPIs must.
        prop_assert_ne!(rpik.rpi(EnIntervalNumber(a)), rpik.rpi(EnIntervalNumber(b)));
    }
}
