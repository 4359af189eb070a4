//! Encounter uploads: round trip, size bound and splitting, arbitrary input, signing as a
//! device reading, grouping by own RPI.

use std::collections::HashMap;

use proptest::prelude::*;
use trustedge_device::{DeviceIdentity, MAX_READING_PAYLOAD_BYTES};
use trustedge_tracing::broadcast::Broadcaster;
use trustedge_tracing::sightings::{
    Encounter, MAX_RANGE_CM, MAX_RANGES_PER_ENCOUNTER, RangeSample, RangeSource, RssiSample,
    Sighting, SightingError, SightingFilter, SightingLog,
};
use trustedge_tracing::upload::{
    BATCH_READING_KIND, EncounterBatch, EncounterUpload, MAX_UPLOAD_BYTES, MAX_UPLOADS_PER_BATCH,
    READING_KIND, UploadError, uploads_by_own_rpi,
};
use trustedge_tracing::{Aem, EnIntervalNumber, Rpi};
use trustedge_types::Keypair;

use crate::Rng;

fn encounter(rng: &mut Rng, samples: usize) -> Encounter {
    let first = 1_600_000_000 + rng.next_u64() % 1000;
    Encounter {
        rpi: Rpi(rng.bytes()),
        aem: Aem(rng.bytes()),
        first_seen_s: first,
        last_seen_s: first + 10 * samples as u64,
        samples: (0..samples)
            .map(|i| RssiSample {
                offset_s: 10 * i as u32,
                rssi_dbm: -40 - (rng.next_u64() % 50) as i8,
            })
            .collect(),
        ranges: Vec::new(),
    }
}

fn upload(rng: &mut Rng, encounters: usize, samples: usize) -> EncounterUpload {
    EncounterUpload {
        own_rpi: Rpi(rng.bytes()),
        own_interval: EnIntervalNumber(2_700_000),
        device_model: "Pixel 7".into(),
        tx_power_dbm: -8,
        encounters: (0..encounters).map(|_| encounter(rng, samples)).collect(),
    }
}

#[test]
fn round_trip_and_encoded_len() {
    let mut rng = Rng::new(10);
    for (n, s) in [(0, 0), (1, 1), (5, 32), (12, 32)] {
        let u = upload(&mut rng, n, s);
        let bytes = u.to_bytes().unwrap();
        assert_eq!(bytes.len(), u.encoded_len());
        assert_eq!(EncounterUpload::from_bytes(&bytes).unwrap(), u);
    }
}

#[test]
fn limit_matches_the_device_reading_limit_and_uploads_sign() {
    assert_eq!(MAX_UPLOAD_BYTES, MAX_READING_PAYLOAD_BYTES);
    let mut rng = Rng::new(11);
    let big = upload(&mut rng, 60, 32);
    assert!(matches!(
        big.to_bytes(),
        Err(UploadError::TooLarge {
            max_bytes: 4096,
            ..
        })
    ));
    let parts = big.clone().split_to_fit(MAX_UPLOAD_BYTES).unwrap();
    assert!(parts.len() >= 2);
    let mut device = DeviceIdentity::new(Keypair::from_seed([7; 32]), 0);
    let mut rejoined = Vec::new();
    for p in &parts {
        assert_eq!(p.own_rpi, big.own_rpi);
        assert_eq!(p.own_interval, big.own_interval);
        let bytes = p.to_bytes().unwrap();
        assert!(bytes.len() <= MAX_UPLOAD_BYTES);
        let reading = device.sign_reading(1, READING_KIND, bytes.clone()).unwrap();
        assert_eq!(reading.payload, bytes);
        rejoined.extend(p.encounters.iter().cloned());
    }
    assert_eq!(rejoined, big.encounters);
    // A smaller bound splits more finely; one encounter that cannot fit is an error.
    let parts = big.clone().split_to_fit(1000).unwrap();
    assert!(parts.iter().all(|p| p.encoded_len() <= 1000));
    assert!(matches!(
        big.split_to_fit(100),
        Err(UploadError::EncounterTooLarge { index: 0, .. })
    ));
}

#[test]
fn invalid_fields_are_refused() {
    let mut rng = Rng::new(12);
    let mut u = upload(&mut rng, 2, 3);
    u.device_model = String::new();
    assert!(matches!(
        u.to_bytes(),
        Err(UploadError::InvalidDeviceModel(_))
    ));
    u.device_model = "x".repeat(33);
    assert!(matches!(
        u.to_bytes(),
        Err(UploadError::InvalidDeviceModel(_))
    ));
    u.device_model = "ok\n".into();
    assert!(matches!(
        u.to_bytes(),
        Err(UploadError::InvalidDeviceModel(_))
    ));
    u.device_model = "ok".into();
    u.encounters[1].last_seen_s = u.encounters[1].first_seen_s - 1;
    assert!(matches!(
        u.to_bytes(),
        Err(UploadError::InvalidEncounter { index: 1, .. })
    ));
    // Valid bytes of an invalid upload are refused on parsing too.
    let raw = borsh::to_vec(&u).unwrap();
    assert!(matches!(
        EncounterUpload::from_bytes(&raw),
        Err(UploadError::InvalidEncounter { index: 1, .. })
    ));
    let mut good = upload(&mut rng, 1, 3).to_bytes().unwrap();
    good.push(0);
    assert!(matches!(
        EncounterUpload::from_bytes(&good),
        Err(UploadError::Malformed(_))
    ));
}

#[test]
fn grouping_puts_each_heard_rpi_under_exactly_one_own_rpi() {
    let mut rng = Rng::new(13);
    let mut me = Broadcaster::new(-9);
    let mut log = SightingLog::new(SightingFilter::default()).unwrap();
    let t0 = 1_600_000_000;
    // One neighbour RPI heard for 50 minutes: across several of my rotations.
    let neighbour = Rpi(rng.bytes());
    for k in 0..50u64 {
        let t = t0 + k * 60;
        me.advertise(t, rng.bytes()).unwrap();
        log.record(
            Sighting {
                rpi: neighbour,
                aem: Aem([0; 4]),
                rssi_dbm: -60,
                time_s: t,
            },
            t,
        )
        .unwrap();
        if k % 5 == 0 {
            let other = Rpi(rng.bytes());
            for dt in [0, 150] {
                let s = Sighting {
                    rpi: other,
                    aem: Aem([0; 4]),
                    rssi_dbm: -70,
                    time_s: t + dt,
                };
                log.record(s, t + 150).unwrap();
            }
        }
    }
    let now = t0 + 3000;
    let encounters = log.encounters(now);
    let total = encounters.len();
    let uploads = uploads_by_own_rpi(me.log(), encounters, "Pixel 7", -9).unwrap();
    let mut seen: HashMap<Rpi, Rpi> = HashMap::new();
    let mut count = 0;
    for u in &uploads {
        let own = me.log().find(&u.own_rpi).unwrap();
        assert_eq!(own.enin, u.own_interval);
        for e in &u.encounters {
            count += 1;
            assert!(
                seen.insert(e.rpi, u.own_rpi).is_none(),
                "heard RPI in two uploads"
            );
            assert_eq!(me.log().at(e.first_seen_s).unwrap().rpi, u.own_rpi);
        }
    }
    assert_eq!(count, total);
    assert!(seen.contains_key(&neighbour));
}

/// `n` ranges spread over the encounter's span, alternating UWB and Wi-Fi RTT.
fn with_ranges(mut e: Encounter, n: usize) -> Encounter {
    let span = e.duration_s() as u32;
    e.ranges = (0..n as u32)
        .map(|i| RangeSample {
            offset_s: if n > 1 { span * i / (n as u32 - 1) } else { 0 },
            distance_cm: 50 + 37 * i,
            source: if i % 2 == 0 {
                RangeSource::Uwb
            } else {
                RangeSource::WifiRtt
            },
        })
        .collect();
    e
}

#[test]
fn ranges_round_trip_count_in_the_size_and_are_validated() {
    let mut rng = Rng::new(21);
    let mut u = upload(&mut rng, 3, 10);
    u.encounters = u
        .encounters
        .into_iter()
        .map(|e| with_ranges(e, MAX_RANGES_PER_ENCOUNTER))
        .collect();
    let bytes = u.to_bytes().unwrap();
    assert_eq!(bytes.len(), u.encoded_len());
    assert_eq!(EncounterUpload::from_bytes(&bytes).unwrap(), u);
    // Many ranged encounters: split into parts that each fit and keep everything.
    let mut big = upload(&mut rng, 40, 20);
    big.encounters = big
        .encounters
        .into_iter()
        .map(|e| with_ranges(e, 40))
        .collect();
    assert!(big.encoded_len() > MAX_UPLOAD_BYTES);
    let parts = big.clone().split_to_fit(MAX_UPLOAD_BYTES).unwrap();
    assert!(parts.len() > 1);
    for p in &parts {
        assert!(p.to_bytes().unwrap().len() <= MAX_UPLOAD_BYTES);
    }
    let all: Vec<Encounter> = parts.into_iter().flat_map(|p| p.encounters).collect();
    assert_eq!(all, big.encounters);

    let bad = |f: &dyn Fn(&mut Encounter)| {
        let mut v = u.clone();
        f(&mut v.encounters[2]);
        let refused = matches!(
            v.to_bytes(),
            Err(UploadError::InvalidEncounter { index: 2, .. })
        );
        let raw = borsh::to_vec(&v).unwrap();
        refused
            && matches!(
                EncounterUpload::from_bytes(&raw),
                Err(UploadError::InvalidEncounter { index: 2, .. })
            )
    };
    assert!(bad(&|e| e.ranges.swap(0, 1)));
    assert!(bad(&|e| e.ranges[3].distance_cm = 0));
    assert!(bad(&|e| e.ranges[3].distance_cm = MAX_RANGE_CM + 1));
    assert!(bad(&|e| {
        let last = e.ranges.len() - 1;
        e.ranges[last].offset_s = e.duration_s() as u32 + 1;
    }));
    assert!(bad(&|e| {
        let x = e.ranges[0];
        e.ranges.insert(0, x);
    }));
    // An unknown range source is malformed.
    let mut raw = upload(&mut rng, 1, 2);
    raw.encounters[0] = with_ranges(raw.encounters[0].clone(), 1);
    let mut bytes = raw.to_bytes().unwrap();
    let last = bytes.len() - 1;
    bytes[last] = 2;
    assert!(matches!(
        EncounterUpload::from_bytes(&bytes),
        Err(UploadError::Malformed(_))
    ));
}

#[test]
fn the_log_attaches_ranges_to_heard_rpis_within_their_span_and_bounded() {
    let mut log = SightingLog::new(SightingFilter::default()).unwrap();
    let t0 = 1_600_000_000u64;
    let rpi = Rpi([7; 16]);
    let now = t0 + 3600;
    assert_eq!(
        log.record_range(rpi, t0, 100, RangeSource::Uwb, now),
        Err(SightingError::UnknownRpi)
    );
    for k in 0..21u64 {
        let s = Sighting {
            rpi,
            aem: Aem([0; 4]),
            rssi_dbm: -80,
            time_s: t0 + 60 * k,
        };
        log.record(s, now).unwrap();
    }
    assert_eq!(
        log.record_range(rpi, t0, 0, RangeSource::Uwb, now),
        Err(SightingError::InvalidRange { distance_cm: 0 })
    );
    assert!(matches!(
        log.record_range(rpi, now + 1, 100, RangeSource::Uwb, now),
        Err(SightingError::OutOfWindow { .. })
    ));
    // 200 ranges, one every 6 s over the BLE span (t0..=t0 + 1200), and a few outside it
    // (before the first and after the last sighting).
    for k in 0..200u64 {
        log.record_range(rpi, t0 + 6 * k, 100 + k as u32, RangeSource::Uwb, now)
            .unwrap();
    }
    for t in [t0 - 5, t0 + 1201, t0 + 1500] {
        log.record_range(rpi, t, 999, RangeSource::WifiRtt, now)
            .unwrap();
    }
    let e = log.encounters(now).pop().unwrap();
    assert!(!e.ranges.is_empty() && e.ranges.len() <= MAX_RANGES_PER_ENCOUNTER);
    assert!(e.ranges.windows(2).all(|w| w[0].offset_s <= w[1].offset_s));
    assert!(
        e.ranges
            .iter()
            .all(|r| u64::from(r.offset_s) <= e.duration_s())
    );
    // Thinning kept the whole span covered, not only the latest ranges.
    assert!(e.ranges[0].offset_s < 60, "{:?}", e.ranges[0]);
    assert!(e.ranges.last().unwrap().offset_s > 1000);
    // A log's encounters upload as they are.
    let u = EncounterUpload {
        own_rpi: Rpi([1; 16]),
        own_interval: EnIntervalNumber(1),
        device_model: "Pixel 7".into(),
        tx_power_dbm: -9,
        encounters: vec![e],
    };
    assert_eq!(
        EncounterUpload::from_bytes(&u.to_bytes().unwrap()).unwrap(),
        u
    );
}

#[test]
fn batches_pack_uploads_in_order_within_the_limit_and_round_trip() {
    let mut rng = Rng::new(40);
    // Small uploads share batches; one too large for a batch is split for its own RPI.
    let mut uploads: Vec<EncounterUpload> =
        (0..9).map(|i| upload(&mut rng, 1 + i % 3, 20)).collect();
    uploads.push(upload(&mut rng, 60, 32));
    uploads.extend((0..4).map(|_| upload(&mut rng, 2, 10)));
    let total_bytes: usize = uploads.iter().map(EncounterUpload::encoded_len).sum();
    let batches = EncounterBatch::pack(uploads.clone()).unwrap();
    // As few as fit, give or take the splits: far fewer readings than uploads.
    assert!(
        batches.len() < uploads.len() / 2,
        "{} batches",
        batches.len()
    );
    assert!(batches.len() >= total_bytes.div_ceil(MAX_UPLOAD_BYTES));
    let mut device = DeviceIdentity::new(Keypair::from_seed([8; 32]), 0);
    let mut rejoined: Vec<(Rpi, Encounter)> = Vec::new();
    for b in &batches {
        let bytes = b.to_bytes().unwrap();
        assert!(bytes.len() <= MAX_UPLOAD_BYTES);
        assert_eq!(bytes.len(), b.encoded_len());
        assert_eq!(&EncounterBatch::from_bytes(&bytes).unwrap(), b);
        device.sign_reading(1, BATCH_READING_KIND, bytes).unwrap();
        for u in &b.uploads {
            rejoined.extend(u.encounters.iter().map(|e| (u.own_rpi, e.clone())));
        }
    }
    let expected: Vec<(Rpi, Encounter)> = uploads
        .iter()
        .flat_map(|u| u.encounters.iter().map(|e| (u.own_rpi, e.clone())))
        .collect();
    assert_eq!(rejoined, expected);
    assert!(EncounterBatch::pack(Vec::new()).unwrap().is_empty());
    // The count bound holds even for uploads without encounters.
    let many: Vec<_> = (0..MAX_UPLOADS_PER_BATCH + 1)
        .map(|_| upload(&mut rng, 0, 0))
        .collect();
    let packed = EncounterBatch::pack(many).unwrap();
    assert_eq!(packed.len(), 2);
    assert_eq!(packed[0].uploads.len(), MAX_UPLOADS_PER_BATCH);
}

#[test]
fn invalid_batches_are_refused() {
    let mut rng = Rng::new(41);
    assert!(matches!(
        EncounterBatch { uploads: vec![] }.to_bytes(),
        Err(UploadError::InvalidBatch(_))
    ));
    // A heard RPI under two own RPIs would link them.
    let a = upload(&mut rng, 2, 3);
    let mut b = upload(&mut rng, 1, 3);
    b.encounters[0].rpi = a.encounters[1].rpi;
    let linked = EncounterBatch {
        uploads: vec![a.clone(), b],
    };
    assert!(matches!(
        linked.to_bytes(),
        Err(UploadError::InvalidBatch(_))
    ));
    assert!(matches!(
        EncounterBatch::from_bytes(&borsh::to_vec(&linked).unwrap()),
        Err(UploadError::InvalidBatch(_))
    ));
    // One own RPI with two intervals.
    let mut c = a.clone();
    c.own_interval = EnIntervalNumber(a.own_interval.0 + 1);
    c.encounters.clear();
    assert!(matches!(
        EncounterBatch {
            uploads: vec![a.clone(), c]
        }
        .to_bytes(),
        Err(UploadError::InvalidBatch(_))
    ));
    // An invalid upload inside is named by its position.
    let mut bad = upload(&mut rng, 1, 3);
    bad.device_model = String::new();
    assert!(matches!(
        EncounterBatch {
            uploads: vec![a.clone(), bad]
        }
        .to_bytes(),
        Err(UploadError::InBatch { index: 1, .. })
    ));
    // Too large, and trailing bytes.
    let big = EncounterBatch {
        uploads: vec![upload(&mut rng, 60, 32)],
    };
    assert!(matches!(big.to_bytes(), Err(UploadError::TooLarge { .. })));
    let mut good = EncounterBatch { uploads: vec![a] }.to_bytes().unwrap();
    good.push(0);
    assert!(matches!(
        EncounterBatch::from_bytes(&good),
        Err(UploadError::Malformed(_))
    ));
}

proptest! {
    #[test]
    fn batch_from_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
        let _ = EncounterBatch::from_bytes(&bytes);
    }

    #[test]
    fn mutated_batches_never_panic_and_valid_ones_round_trip(
        seed in any::<u64>(), n in 1usize..5, flip in any::<(usize, u8)>()
    ) {
        let mut rng = Rng::new(seed);
        let uploads: Vec<_> = (0..n).map(|_| upload(&mut rng, 2, 4)).collect();
        let batches = EncounterBatch::pack(uploads).unwrap();
        prop_assert_eq!(batches.len(), 1);
        let mut bytes = batches[0].to_bytes().unwrap();
        let i = flip.0 % bytes.len();
        bytes[i] ^= flip.1 | 1;
        if let Ok(v) = EncounterBatch::from_bytes(&bytes) {
            prop_assert!(v.validate().is_ok());
            prop_assert_eq!(v.to_bytes().unwrap(), bytes);
        }
    }

    #[test]
    fn mutated_ranged_uploads_never_panic(
        seed in any::<u64>(), n in 1usize..4, r in 0usize..65, flip in any::<(usize, u8)>()
    ) {
        let mut rng = Rng::new(seed);
        let mut u = upload(&mut rng, n, 5);
        u.encounters = u.encounters.into_iter().map(|e| with_ranges(e, r)).collect();
        let mut bytes = u.to_bytes().unwrap();
        prop_assert_eq!(bytes.len(), u.encoded_len());
        let i = flip.0 % bytes.len();
        bytes[i] ^= flip.1 | 1;
        if let Ok(v) = EncounterUpload::from_bytes(&bytes) {
            prop_assert!(v.validate().is_ok());
            prop_assert_eq!(v.to_bytes().unwrap(), bytes);
        }
    }
    #[test]
    fn from_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
        let _ = EncounterUpload::from_bytes(&bytes);
    }

    #[test]
    fn mutated_uploads_never_panic_and_valid_ones_round_trip(
        seed in any::<u64>(), n in 0usize..8, s in 0usize..20, flip in any::<(usize, u8)>()
    ) {
        let mut rng = Rng::new(seed);
        let u = upload(&mut rng, n, s);
        let mut bytes = u.to_bytes().unwrap();
        prop_assert_eq!(bytes.len(), u.encoded_len());
        prop_assert_eq!(&EncounterUpload::from_bytes(&bytes).unwrap(), &u);
        let i = flip.0 % bytes.len();
        bytes[i] ^= flip.1 | 1;
        if let Ok(v) = EncounterUpload::from_bytes(&bytes) {
            prop_assert!(v.validate().is_ok());
            prop_assert_eq!(v.to_bytes().unwrap(), bytes);
        }
    }
}
