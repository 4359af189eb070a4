//! The device SDK: key schedule and broadcast (rotation boundaries, derivation, retention),
//! sighting filtering, and the end-to-end path A broadcasts → B logs → A's keys match.

use std::collections::{HashMap, HashSet};

use trustedge_tracing::broadcast::{
    Broadcaster, DAY_S, MAX_ROTATION_S, MIN_ROTATION_S, RETENTION_DAYS,
};
use trustedge_tracing::matching::{DEFAULT_SKEW_S, match_keys, match_notices};
use trustedge_tracing::sightings::{Sighting, SightingError, SightingFilter, SightingLog};
use trustedge_tracing::{EnIntervalNumber, ReportType, Rpi, TEK_ROLLING_PERIOD};

use crate::Rng;

/// A day start (rolling start × 600) in 2020, plus 5040 s (a multiple of every step used)
/// so the run begins mid-day.
const T0: u64 = 2_642_976 * 600 + 5040;

/// Advertises every `step_s` from `from_s` to `to_s`; returns (time, RPI, current key's
/// rolling start) per call.
fn run(
    b: &mut Broadcaster,
    rng: &mut Rng,
    from_s: u64,
    to_s: u64,
    step_s: u64,
) -> Vec<(u64, Rpi, u32)> {
    let mut out = Vec::new();
    let mut t = from_s;
    while t < to_s {
        let ad = b.advertise(t, rng.bytes()).unwrap();
        let (_, start) = b.keys().last().unwrap();
        out.push((t, ad.rpi, start.0));
        t += step_s;
    }
    out
}

#[test]
fn tek_changes_exactly_at_each_day_boundary() {
    let mut rng = Rng::new(1);
    let mut b = Broadcaster::new(-10);
    let calls = run(&mut b, &mut rng, T0, T0 + 3 * DAY_S, 30);
    let mut teks_by_day: HashMap<u32, _> = HashMap::new();
    for &(t, _, start) in &calls {
        let day = EnIntervalNumber::from_unix_seconds(t)
            .unwrap()
            .rolling_start()
            .0;
        assert_eq!(start, day, "key of time {t} has the wrong rolling start");
    }
    for (tek, start) in b.keys() {
        assert_eq!(start.0 % TEK_ROLLING_PERIOD, 0);
        assert!(teks_by_day.insert(start.0, tek).is_none());
    }
    assert_eq!(teks_by_day.len(), 4, "3 days from mid-day span 4 TEK days");
    let distinct: HashSet<_> = teks_by_day.values().map(|t| t.0).collect();
    assert_eq!(distinct.len(), 4, "a TEK was reused across days");

    // The RPI changes at the boundary itself, from the new day's key.
    let boundary = (T0 / DAY_S + 1) * DAY_S;
    let before = calls.iter().rfind(|c| c.0 < boundary).unwrap();
    let at = calls.iter().find(|c| c.0 >= boundary).unwrap();
    assert_eq!(at.0, boundary);
    assert_ne!(before.1, at.1);
    assert_eq!(at.2, before.2 + TEK_ROLLING_PERIOD);
}

#[test]
fn rpi_rotates_every_10_to_20_minutes_from_that_days_tek() {
    let mut rng = Rng::new(2);
    let mut b = Broadcaster::new(-10);
    let step_s = 10;
    let calls = run(&mut b, &mut rng, T0, T0 + 2 * DAY_S, step_s);
    let records: Vec<_> = b.log().records().copied().collect();
    assert!(
        records.len() > 2 * 72,
        "{} rotations in 2 days",
        records.len()
    );

    let mut gaps = HashSet::new();
    for pair in records.windows(2) {
        let gap = pair[1].from_s - pair[0].from_s;
        let crosses_day = pair[0].from_s / DAY_S != pair[1].from_s / DAY_S;
        if crosses_day {
            assert!(gap <= MAX_ROTATION_S + step_s);
        } else {
            assert!(
                (MIN_ROTATION_S..=MAX_ROTATION_S + step_s).contains(&gap),
                "rotation gap {gap} s"
            );
        }
        gaps.insert(gap);
    }
    assert!(gaps.len() > 10, "rotation offsets are not random: {gaps:?}");

    // Every RPI derives from its day's TEK for the interval it was rotated in; no RPI or
    // interval is used twice.
    let keys: HashMap<u32, _> = b.keys().map(|(tek, s)| (s.0, tek)).collect();
    let mut rpis = HashSet::new();
    let mut enins = HashSet::new();
    for r in &records {
        assert_eq!(
            r.enin,
            EnIntervalNumber::from_unix_seconds(r.from_s).unwrap()
        );
        let tek = keys[&r.enin.rolling_start().0];
        assert_eq!(tek.rpik().unwrap().rpi(r.enin), r.rpi);
        assert!(rpis.insert(r.rpi), "RPI broadcast in two rotations");
        assert!(enins.insert(r.enin), "two rotations in one interval");
    }
    // What was advertised at each call is the record on air at that time.
    for (t, rpi, _) in calls {
        assert_eq!(b.log().at(t).unwrap().rpi, rpi);
    }
}

#[test]
fn aem_carries_the_tx_power() {
    let mut rng = Rng::new(3);
    let mut b = Broadcaster::new(-17);
    let ad = b.advertise(T0, rng.bytes()).unwrap();
    let (tek, _) = b.keys().last().unwrap();
    let md = tek.aemk().unwrap().decrypt(&ad.rpi, &ad.aem);
    assert_eq!(md.tx_power_dbm, -17);
    assert_eq!(md.version, 0x40);
}

#[test]
fn keys_and_log_keep_14_days_and_diagnosis_keys_share_them() {
    let mut rng = Rng::new(4);
    let mut b = Broadcaster::new(0);
    let end = T0 + 20 * DAY_S;
    run(&mut b, &mut rng, T0, end, 300);
    let today = EnIntervalNumber::from_unix_seconds(end - 300)
        .unwrap()
        .rolling_start()
        .0;
    let starts: Vec<u32> = b.keys().map(|(_, s)| s.0).collect();
    assert_eq!(starts.len(), RETENTION_DAYS as usize);
    assert_eq!(starts[0], today - 13 * TEK_ROLLING_PERIOD);
    assert_eq!(*starts.last().unwrap(), today);
    let oldest_s = u64::from(starts[0]) * 600;
    assert!(b.log().records().all(|r| r.until_s >= oldest_s));
    assert!(b.log().records().next().unwrap().from_s < oldest_s + MAX_ROTATION_S);

    let onset = u64::from(today - 2 * TEK_ROLLING_PERIOD) * 600 + 100;
    let keys = b
        .diagnosis_keys(end - 300, ReportType::ConfirmedTest, Some(onset))
        .unwrap();
    assert_eq!(keys.len(), 14);
    for (k, (tek, start)) in keys.iter().zip(b.keys()) {
        assert_eq!(k.key_data, tek.0);
        assert_eq!(k.rolling_start_interval_number, start.0);
        assert_eq!(k.rolling_period, 144);
        assert_eq!(k.report_type, ReportType::ConfirmedTest);
    }
    let onsets: Vec<i32> = keys.iter().map(|k| k.days_since_onset.unwrap()).collect();
    assert_eq!(onsets, (-11..=2).collect::<Vec<_>>());
}

fn sighting(rpi: Rpi, rssi_dbm: i8, time_s: u64) -> Sighting {
    Sighting {
        rpi,
        aem: trustedge_tracing::Aem([1, 2, 3, 4]),
        rssi_dbm,
        time_s,
    }
}

#[test]
fn filter_drops_weak_short_single_scan_and_old_sightings() {
    let now = T0;
    let mut log = SightingLog::new(SightingFilter::default()).unwrap();
    let (a, b, c, d) = (Rpi([1; 16]), Rpi([2; 16]), Rpi([3; 16]), Rpi([4; 16]));
    assert_eq!(
        log.record(sighting(a, -91, now - 500), now),
        Err(SightingError::TooWeak {
            rssi_dbm: -91,
            min_rssi_dbm: -90
        })
    );
    // At the threshold, over 2 minutes with 2 scans: kept.
    log.record(sighting(a, -90, now - 500), now).unwrap();
    log.record(sighting(a, -70, now - 380), now).unwrap();
    // 3 scans over 119 s: too short.
    for t in [now - 300, now - 250, now - 181] {
        log.record(sighting(b, -50, t), now).unwrap();
    }
    // One scan: too few.
    log.record(sighting(c, -40, now - 100), now).unwrap();
    // Out of the 14-day window, and in the future.
    let old = now - 14 * 86_400 - 1;
    assert!(matches!(
        log.record(sighting(d, -40, old), now),
        Err(SightingError::OutOfWindow { .. })
    ));
    assert!(matches!(
        log.record(sighting(d, -40, now + 1), now),
        Err(SightingError::OutOfWindow { .. })
    ));
    let enc = log.encounters(now);
    assert_eq!(enc.len(), 1);
    assert_eq!(enc[0].rpi, a);
    assert_eq!(
        (enc[0].first_seen_s, enc[0].last_seen_s),
        (now - 500, now - 380)
    );
    assert_eq!(enc[0].samples.len(), 2);
    assert_eq!(enc[0].samples[1].offset_s, 120);
    assert_eq!(enc[0].samples[1].rssi_dbm, -70);

    // min_scans alone: duration rule off, 1 scan is still not enough.
    let f = SightingFilter {
        min_duration_s: 0,
        ..SightingFilter::default()
    };
    let mut log2 = SightingLog::new(f).unwrap();
    log2.record(sighting(c, -40, now), now).unwrap();
    assert!(log2.encounters(now).is_empty());
    log2.record(sighting(c, -40, now), now).unwrap();
    assert_eq!(log2.encounters(now).len(), 1);

    // The window moves on: 14 days later the encounter is gone, and pruning frees it.
    let later = now - 380 + 14 * 86_400 + 1;
    assert!(log.encounters(later).is_empty());
    log.prune(later);
    assert_eq!(log.len(), 2, "only the encounter expired");
    log.prune(now + 14 * 86_400);
    assert!(log.is_empty());
}

#[test]
fn log_is_bounded_and_evicts_non_qualifying_rpis_first() {
    let f = SightingFilter {
        max_rpis: 3,
        max_samples: 8,
        ..SightingFilter::default()
    };
    let now = T0;
    let mut log = SightingLog::new(f).unwrap();
    let r = |i: u8| Rpi([i; 16]);
    // Two qualifying encounters and one glimpse.
    for i in [1, 2] {
        log.record(sighting(r(i), -60, now - 1000), now).unwrap();
        log.record(sighting(r(i), -60, now - 800), now).unwrap();
    }
    log.record(sighting(r(3), -60, now - 900), now).unwrap();
    // A new RPI evicts the glimpse, not a real encounter.
    log.record(sighting(r(4), -60, now - 100), now).unwrap();
    assert_eq!(log.len(), 3);
    log.record(sighting(r(4), -60, now), now).unwrap();
    let kept: Vec<Rpi> = log.encounters(now).iter().map(|e| e.rpi).collect();
    assert_eq!(kept, vec![r(1), r(2)]);
    // Now every held RPI qualifies except r(4)... make it qualify: then the log is full.
    log.record(sighting(r(4), -60, now - 300), now).unwrap();
    assert_eq!(log.encounters(now).len(), 3);
    assert_eq!(
        log.record(sighting(r(5), -60, now), now),
        Err(SightingError::Full { capacity: 3 })
    );

    // Samples per RPI stay bounded and span the whole encounter, in time order.
    for k in 0..100u64 {
        log.record(
            sighting(r(1), -50 - (k % 20) as i8, now - 1000 + k * 10),
            now,
        )
        .unwrap();
    }
    let e = log
        .encounters(now)
        .into_iter()
        .find(|e| e.rpi == r(1))
        .unwrap();
    assert!(e.samples.len() <= 8, "{} samples", e.samples.len());
    assert_eq!(e.samples[0].offset_s, 0);
    assert!(e.samples.windows(2).all(|w| w[0].offset_s <= w[1].offset_s));
    assert!(e.samples.iter().all(|s| (-90..=-50).contains(&s.rssi_dbm)));
    assert_eq!(e.last_seen_s, now - 10);
    assert!(SightingLog::new(SightingFilter { max_rpis: 0, ..f }).is_err());
}

#[test]
fn end_to_end_a_broadcasts_b_logs_a_is_confirmed_b_matches() {
    let mut rng = Rng::new(5);
    let mut a = Broadcaster::new(-12);
    let mut b = Broadcaster::new(-5);
    let mut b_log = SightingLog::new(SightingFilter::default()).unwrap();

    // A and B advertise all day; B scans every 4 minutes. They are together for 40
    // minutes in the afternoon; B also hears strangers.
    let start = T0;
    let together = (start + 20_000)..(start + 22_400);
    let mut t = start;
    while t < start + DAY_S {
        let ad_a = a.advertise(t, rng.bytes()).unwrap();
        b.advertise(t, rng.bytes()).unwrap();
        if t.is_multiple_of(240) {
            if together.contains(&t) {
                b_log.record(sighting_of(ad_a, -65, t), t).unwrap();
            }
            let stranger = Rpi(rng.bytes());
            b_log.record(sighting(stranger, -70, t), t).unwrap();
        }
        t += 60;
    }
    let now = t;
    let encounters = b_log.encounters(now);
    assert!(!encounters.is_empty(), "A's RPIs were not kept");

    // A is confirmed and shares its keys; B matches them against its log (pure GAEN).
    let keys = a
        .diagnosis_keys(now, ReportType::ConfirmedTest, None)
        .unwrap();
    let (encounters, index) = b_log.index(now);
    let report = match_keys(&keys, &index, DEFAULT_SKEW_S);
    assert!(report.skipped.is_empty());
    let a_rpis: HashSet<Rpi> = a.log().records().map(|r| r.rpi).collect();
    let expected: HashSet<Rpi> = encounters
        .iter()
        .filter(|e| a_rpis.contains(&e.rpi))
        .map(|e| e.rpi)
        .collect();
    let found: HashSet<Rpi> = report.matches.iter().map(|m| m.rpi).collect();
    assert!(!expected.is_empty());
    assert_eq!(found, expected);
    for m in &report.matches {
        let e = &encounters[m.observation_id as usize];
        assert_eq!(e.rpi, m.rpi);
        assert!(together.contains(&e.first_seen_s));
        // The matched key opens the AEM: A's TX power, for B's distance estimate.
        let md = keys[m.key_index]
            .tek()
            .aemk()
            .unwrap()
            .decrypt(&e.rpi, &e.aem);
        assert_eq!(md.tx_power_dbm, -12);
    }
    // B's own keys match nothing B heard.
    let own = b
        .diagnosis_keys(now, ReportType::ConfirmedTest, None)
        .unwrap();
    assert!(match_keys(&own, &index, DEFAULT_SKEW_S).matches.is_empty());

    // Exposure notice for B carrying two of B's RPIs and a stranger's: B finds its own.
    let b_records: Vec<_> = b.log().records().copied().collect();
    let notice = [b_records[10].rpi, Rpi(rng.bytes()), b_records[40].rpi];
    let hits = match_notices(b.log(), &notice);
    assert_eq!(hits, vec![b_records[10], b_records[40]]);
    assert!(match_notices(a.log(), &notice).is_empty());
}

fn sighting_of(
    ad: trustedge_tracing::broadcast::Advertisement,
    rssi_dbm: i8,
    time_s: u64,
) -> Sighting {
    Sighting {
        rpi: ad.rpi,
        aem: ad.aem,
        rssi_dbm,
        time_s,
    }
}
