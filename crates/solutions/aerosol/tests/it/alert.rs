//! Venue ids, the threshold rule and presence matching.

use sha2::{Digest, Sha256};
use trustedge_aerosol::AerosolError;
use trustedge_aerosol::alert::{
    AlertRule, HeardBeacon, RiskWindow, VENUE_ID_TAG, VenueId, VenueSecret, day_of, was_present,
};

const DAY: u64 = 86_400;

fn secret(b: u8) -> VenueSecret {
    VenueSecret([b; 32])
}

#[test]
fn venue_id_is_the_documented_tagged_hash_and_rolls_daily() {
    let s = secret(7);
    let day = 19_800u32;
    let mut h = Sha256::new();
    h.update([VENUE_ID_TAG.len() as u8]);
    h.update(VENUE_ID_TAG);
    h.update([7u8; 32]);
    h.update(day.to_be_bytes());
    let d = h.finalize();
    assert_eq!(VenueId::derive(&s, day).0, d[..16]);
    // Same day, same id; next day or another venue, another id.
    let t = u64::from(day) * DAY;
    assert_eq!(VenueId::at(&s, t), VenueId::at(&s, t + DAY - 1));
    assert_ne!(VenueId::at(&s, t), VenueId::at(&s, t + DAY));
    assert_ne!(VenueId::derive(&s, day), VenueId::derive(&secret(8), day));
    assert_eq!(day_of(u64::MAX), u32::MAX);
    assert_eq!(
        format!("{s:?}"),
        "VenueSecret(..)",
        "the secret is never printed"
    );
}

fn window(venue: VenueId, start_s: u64, end_s: u64, probability: f64) -> RiskWindow {
    RiskWindow {
        venue,
        start_s,
        end_s,
        probability,
    }
}

#[test]
fn the_rule_alerts_at_the_threshold_and_refuses_bad_windows() {
    let v = VenueId::derive(&secret(1), 20_000);
    let t = 20_000 * DAY + 9 * 3600;
    let rule = AlertRule {
        threshold: 0.01,
        max_window_s: 6 * 3600,
    };
    assert_eq!(rule.decide(&window(v, t, t + 900, 0.009)).unwrap(), None);
    let a = rule.decide(&window(v, t, t + 900, 0.01)).unwrap().unwrap();
    assert_eq!(
        (a.venue, a.start_s, a.end_s, a.probability),
        (v, t, t + 900, 0.01)
    );
    for bad in [
        window(v, t, t, 0.5),
        window(v, t + 10, t, 0.5),
        window(v, t, t + 7 * 3600, 0.5),
        window(v, 20_001 * DAY - 60, 20_001 * DAY + 60, 0.5),
    ] {
        assert!(matches!(
            rule.decide(&bad),
            Err(AerosolError::InvalidWindow { .. })
        ));
    }
    assert!(rule.decide(&window(v, t, t + 900, f64::NAN)).is_err());
    assert!(rule.decide(&window(v, t, t + 900, 1.5)).is_err());
    // A window ending exactly at midnight is within its day.
    assert!(
        rule.decide(&window(v, 20_001 * DAY - 900, 20_001 * DAY, 0.5))
            .is_ok()
    );
}

#[test]
fn touching_elevated_windows_of_a_venue_merge_into_one_alert() {
    let v = VenueId::derive(&secret(1), 20_000);
    let w = VenueId::derive(&secret(2), 20_000);
    let t = 20_000 * DAY + 9 * 3600;
    let rule = AlertRule::default();
    let alerts = rule
        .alerts(&[
            window(v, t + 900, t + 1800, 0.02),
            window(w, t, t + 900, 0.05),
            window(v, t, t + 900, 0.02),
            window(v, t + 1800, t + 2700, 0.001), // below threshold: ends the run
            window(v, t + 2700, t + 3600, 0.03),
        ])
        .unwrap();
    let mut expect = vec![
        (v, t, t + 1800, 1.0 - 0.98 * 0.98),
        (v, t + 2700, t + 3600, 0.03),
        (w, t, t + 900, 0.05),
    ];
    expect.sort_by_key(|e| (e.0, e.1));
    assert_eq!(alerts.len(), 3);
    for (a, e) in alerts.iter().zip(&expect) {
        assert_eq!((a.venue, a.start_s, a.end_s), (e.0, e.1, e.2));
        assert!((a.probability - e.3).abs() < 1e-15);
    }
}

#[test]
fn presence_is_matched_on_heard_venue_ids_within_the_window() {
    let s = secret(9);
    let t = 20_000 * DAY + 14 * 3600;
    let v = VenueId::at(&s, t);
    let alert = AlertRule::default()
        .decide(&window(v, t, t + 3600, 0.2))
        .unwrap()
        .unwrap();
    let heard = |venue, t_s| [HeardBeacon { venue, t_s }];
    assert!(was_present(&alert, &heard(v, t + 1200), 0));
    assert!(
        !was_present(&alert, &heard(v, t + 3600), 0),
        "end is exclusive"
    );
    assert!(was_present(&alert, &heard(v, t + 3600 + 100), 300));
    assert!(!was_present(&alert, &heard(v, t - 1000), 300));
    // The same venue's id of another day does not match: ids roll daily.
    assert!(!was_present(
        &alert,
        &heard(VenueId::at(&s, t - DAY), t + 1200),
        0
    ));
    assert!(!was_present(&alert, &[], 0));
}
