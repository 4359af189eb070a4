//! The edge's aerosol engine on simulated rooms: an injected ventilation failure alerts its
//! room and window, a clean series alerts nothing, refused readings are typed errors, the
//! contract accepts what the engine emits, and devices match their presence locally.

use trustedge_aerosol::alert::{HeardBeacon, VenueId, VenueSecret, day_of};
use trustedge_aerosol::detect::AlarmKind;
use trustedge_aerosol::risk::{
    BoxModelInput, CO2_GENERATION_M3_PER_H_PER_PERSON, CarryOver, OUTDOOR_CO2_PPM, Reading,
    box_model, conditional_probability,
};
use trustedge_aerosol::sim::{SimConfig, SimSeries, simulate};
use trustedge_contracts::aerosol::{AerosolAlertTx, AerosolCall, AlertKind, DAY_S, check_alert};
use trustedge_contracts::{Genesis, GenesisMember, GenesisOrg, GovernancePolicy, runtime};
use trustedge_edge::aerosol::{
    AerosolEdgeConfig, AerosolEdgeError, AerosolEngine, RoomConfig, alerts_for_device, batches,
};
use trustedge_execution::{BlockEnv, MemState, OrgKind, Role};
use trustedge_types::{Address, Hash, Keypair, Payload, TxBody};

/// The simulated series start on this UTC day, five days before the test chain's genesis
/// day (19,675), so the alerts are recent when published.
const BASE_DAY: u64 = 19_670;
const DAYS: u32 = 5;

fn secret(label: &str) -> VenueSecret {
    VenueSecret(Hash::sha256(label.as_bytes()).0)
}

fn room(label: &str, sim: &SimConfig) -> RoomConfig {
    RoomConfig {
        volume_m3: sim.volume_m3,
        nominal_ach_per_h: Some(sim.nominal_ach_per_h),
        secret: secret(label),
    }
}

fn series(failures: bool, seed: u64) -> (SimConfig, SimSeries) {
    let cfg = SimConfig {
        ventilation_failure_probability: if failures { 1.0 } else { 0.0 },
        particle_spike_probability: 0.0,
        ..SimConfig::default()
    };
    let mut s = simulate(&cfg, seed, DAYS).unwrap();
    for r in &mut s.readings {
        r.t_s += BASE_DAY * DAY_S;
    }
    for e in &mut s.events {
        e.start_s += BASE_DAY * DAY_S;
        e.end_s += BASE_DAY * DAY_S;
    }
    (cfg, s)
}

/// Feeds every reading and closes the last window; returns the alerts emitted.
fn run_room(engine: &mut AerosolEngine, name: &str, s: &SimSeries) -> Vec<AerosolAlertTx> {
    let mut out = Vec::new();
    for r in &s.readings {
        out.extend(engine.push(name, r).unwrap());
    }
    let end = s.readings.last().unwrap().t_s + 3600;
    out.extend(engine.close_until(name, end).unwrap());
    out
}

const GRACE_S: u64 = 2 * 3600;

#[test]
fn an_injected_ventilation_failure_alerts_that_room_and_window() {
    let (cfg, failing) = series(true, 11);
    let (_, clean) = series(false, 12);
    let mut engine = AerosolEngine::new(AerosolEdgeConfig::default()).unwrap();
    engine.add_room("lab 2", room("lab 2", &cfg)).unwrap();
    engine.add_room("hall", room("hall", &cfg)).unwrap();
    let alerts = run_room(&mut engine, "lab 2", &failing);
    let quiet = run_room(&mut engine, "hall", &clean);
    assert_eq!(quiet, vec![], "the clean room alerted");

    let events: Vec<_> = failing
        .events
        .iter()
        .filter(|e| e.kind == AlarmKind::VentilationFailure)
        .collect();
    assert!(events.len() >= 3, "{events:?}");
    let vf: Vec<_> = alerts
        .iter()
        .filter(|a| a.kind == AlertKind::VentilationFailure)
        .collect();
    // every alert is that room's venue id of its day, and every ventilation alert lies in
    // an injected failure (or the room's recovery after it)
    for a in &alerts {
        let day = day_of(a.start_s);
        assert_eq!(VenueId(a.venue), VenueId::derive(&secret("lab 2"), day));
        assert_ne!(VenueId(a.venue), VenueId::derive(&secret("hall"), day));
        assert_eq!(a.end_s - a.start_s, 900);
    }
    for a in &vf {
        assert!(
            events
                .iter()
                .any(|e| a.start_s < e.end_s + GRACE_S && a.end_s > e.start_s),
            "ventilation alert {a:?} outside every failure {events:?}"
        );
        assert!(a.risk_ppm > 0);
    }
    // most failures (all happen while the room is occupied) produce an alert overlapping them
    let detected = events
        .iter()
        .filter(|e| {
            vf.iter()
                .any(|a| a.start_s < e.end_s + GRACE_S && a.end_s > e.start_s)
        })
        .count();
    assert!(
        detected * 4 >= events.len() * 3,
        "{detected} of {} failures alerted",
        events.len()
    );
    // the engine's own record agrees
    assert!(engine.recent_decisions("lab 2").len() <= 96);
    assert_eq!(engine.recent_decisions("nowhere"), &[]);
}

#[test]
fn clean_series_alert_nothing() {
    for seed in [1, 2, 3] {
        let (cfg, s) = series(false, seed);
        let mut engine = AerosolEngine::new(AerosolEdgeConfig::default()).unwrap();
        engine.add_room("r", room("r", &cfg)).unwrap();
        assert_eq!(run_room(&mut engine, "r", &s), vec![], "seed {seed}");
        assert_eq!(engine.failure_active("r"), Some(false));
    }
}

#[test]
fn one_venue_alerts_once_even_with_two_sensors() {
    let (cfg, s) = series(true, 11);
    let mut engine = AerosolEngine::new(AerosolEdgeConfig::default()).unwrap();
    // two air-quality devices in one venue: the same secret, so the same venue ids
    engine.add_room("front", room("venue", &cfg)).unwrap();
    engine.add_room("back", room("venue", &cfg)).unwrap();
    let first = run_room(&mut engine, "front", &s);
    assert!(!first.is_empty());
    assert_eq!(engine.remembered_alerts(), first.len());
    assert_eq!(run_room(&mut engine, "back", &s), vec![]);
}

#[test]
fn refused_readings_are_typed_errors_and_change_nothing() {
    let cfg = SimConfig::default();
    let mut engine = AerosolEngine::new(AerosolEdgeConfig::default()).unwrap();
    engine.add_room("r", room("r", &cfg)).unwrap();
    let t0 = BASE_DAY * DAY_S + 9 * 3600;
    let ok = Reading {
        t_s: t0,
        co2_ppm: 700.0,
        pm25_ug_m3: 8.0,
        temperature_c: 21.0,
        humidity_pct: 40.0,
        occupancy: 10,
    };
    assert_eq!(engine.push("r", &ok).unwrap(), vec![]);
    assert!(matches!(
        engine.push("nope", &ok),
        Err(AerosolEdgeError::UnknownRoom(_))
    ));
    let earlier = Reading { t_s: t0 - 1, ..ok };
    assert!(matches!(
        engine.push("r", &earlier),
        Err(AerosolEdgeError::OutOfOrder { t_s, after_s, .. }) if t_s == t0 - 1 && after_s == t0
    ));
    for (bad, field) in [
        (
            Reading {
                co2_ppm: f64::NAN,
                ..ok
            },
            "co2_ppm",
        ),
        (
            Reading {
                co2_ppm: -1.0,
                ..ok
            },
            "co2_ppm",
        ),
        (
            Reading {
                pm25_ug_m3: f64::INFINITY,
                ..ok
            },
            "pm25_ug_m3",
        ),
        (
            Reading {
                temperature_c: 500.0,
                ..ok
            },
            "temperature_c",
        ),
        (
            Reading {
                humidity_pct: 101.0,
                ..ok
            },
            "humidity_pct",
        ),
        (
            Reading {
                occupancy: 1_000_000,
                ..ok
            },
            "occupancy",
        ),
    ] {
        let e = engine
            .push(
                "r",
                &Reading {
                    t_s: t0 + 60,
                    ..bad
                },
            )
            .unwrap_err();
        assert!(
            matches!(e, AerosolEdgeError::InvalidReading { field: f, .. } if f == field),
            "{e}"
        );
    }
    // equal times are in order
    assert_eq!(engine.push("r", &ok).unwrap(), vec![]);
    // closing the window refuses later readings inside it
    assert_eq!(engine.close_until("r", t0 + 60).unwrap(), vec![]);
    assert_eq!(engine.recent_decisions("r"), &[]);
    engine.close_until("r", t0 + 900).unwrap();
    assert_eq!(engine.recent_decisions("r").len(), 1);
    assert!(matches!(
        engine.push(
            "r",
            &Reading {
                t_s: t0 + 120,
                ..ok
            }
        ),
        Err(AerosolEdgeError::OutOfOrder { .. })
    ));
    assert!(
        engine
            .push(
                "r",
                &Reading {
                    t_s: t0 + 900,
                    ..ok
                }
            )
            .is_ok()
    );
    // room registration
    assert!(matches!(
        engine.add_room("r", room("r", &cfg)),
        Err(AerosolEdgeError::DuplicateRoom(_))
    ));
    assert!(matches!(
        engine.add_room("", room("x", &cfg)),
        Err(AerosolEdgeError::InvalidRoomName(_))
    ));
    let mut bad_room = room("x", &cfg);
    bad_room.volume_m3 = -3.0;
    assert!(matches!(
        engine.add_room("x", bad_room),
        Err(AerosolEdgeError::Model(_))
    ));
    let small = AerosolEdgeConfig {
        max_rooms: 1,
        ..AerosolEdgeConfig::default()
    };
    let mut e1 = AerosolEngine::new(small).unwrap();
    e1.add_room("a", room("a", &cfg)).unwrap();
    assert!(matches!(
        e1.add_room("b", room("b", &cfg)),
        Err(AerosolEdgeError::TooManyRooms(1))
    ));
    let mut bad = AerosolEdgeConfig::default();
    bad.params.window_s = 7 * 60;
    assert!(matches!(
        AerosolEngine::new(bad),
        Err(AerosolEdgeError::InvalidConfig(_))
    ));
}

#[test]
fn unknown_ventilation_estimates_from_co2_and_still_scores() {
    let (cfg, s) = series(false, 4);
    let mut engine = AerosolEngine::new(AerosolEdgeConfig::default()).unwrap();
    let mut r = room("unknown", &cfg);
    r.nominal_ach_per_h = None;
    engine.add_room("u", r).unwrap();
    let alerts = run_room(&mut engine, "u", &s);
    // no detector without a nominal ACH: never a ventilation alert
    assert!(alerts.iter().all(|a| a.kind == AlertKind::ElevatedRisk));
    let last = engine.recent_decisions("u");
    assert_eq!(last.len(), 96);
    assert!(last.iter().all(|d| !d.ventilation_failure));
}

/// One reading a minute of a 100 m³ room holding `people` from `from_s` to `to_s`, its CO₂
/// at the steady state of `ach` (what the ventilation detector expects at that ACH).
fn steady_room(people: u32, ach: f64, from_s: u64, to_s: u64) -> Vec<Reading> {
    let co2 = OUTDOOR_CO2_PPM
        + f64::from(people) * CO2_GENERATION_M3_PER_H_PER_PERSON * 1e6 / (100.0 * ach);
    (from_s..to_s)
        .step_by(60)
        .map(|t_s| Reading {
            t_s,
            co2_ppm: co2,
            pm25_ug_m3: 8.0,
            temperature_c: 21.0,
            humidity_pct: 40.0,
            occupancy: people,
        })
        .collect()
}

fn small_room(ach: f64) -> RoomConfig {
    RoomConfig {
        volume_m3: 100.0,
        nominal_ach_per_h: Some(ach),
        secret: secret("small"),
    }
}

/// 1 − exp(−E·B·T/(λV)): the steady-state conditional risk of a 15-minute window in a
/// 100 m³ room at `ach` (25 quanta/h, 0.72 m³/h).
fn steady_risk(ach: f64) -> f64 {
    -(-(25.0 * 0.72 * 0.25 / ((ach + 0.92) * 100.0))).exp_m1()
}

#[test]
fn a_badly_ventilated_occupied_room_crosses_the_threshold_after_some_windows() {
    let t0 = BASE_DAY * DAY_S + 8 * 3600;
    let mut engine = AerosolEngine::new(AerosolEdgeConfig::default()).unwrap();
    engine.add_room("bad", small_room(0.5)).unwrap();
    let mut alerts = Vec::new();
    for r in steady_room(4, 0.5, t0, t0 + 4 * 3600) {
        alerts.extend(engine.push("bad", &r).unwrap());
    }
    alerts.extend(engine.close_until("bad", t0 + 5 * 3600).unwrap());
    let d = engine.recent_decisions("bad");
    assert_eq!(d.len(), 16);
    assert!(d.iter().all(|d| !d.ventilation_failure));
    // the first window, from clean air, is the one-window box model and below 1 %
    let first = box_model(&BoxModelInput {
        volume_m3: 100.0,
        ach_per_h: 0.5,
        quanta_per_h: 25.0,
        infected: 1.0,
        mask_out: 0.0,
        mask_in: 0.0,
        breathing_m3_per_h: 0.72,
        hours: 0.25,
    })
    .unwrap()
    .probability;
    assert!((d[0].probability - first).abs() < 1e-12, "{:?}", d[0]);
    assert!(first < 0.01);
    assert_eq!(d[0].alert, None);
    // then it builds up to the steady state, alerting from the first window at 1 %
    assert!(d.windows(2).all(|p| p[1].probability > p[0].probability));
    let ss = steady_risk(0.5);
    assert!(ss > 0.02);
    let last = d[15].probability;
    assert!((last - ss).abs() < 0.01 * ss, "{last} vs {ss}");
    let crossing = d.iter().position(|d| d.probability >= 0.01).unwrap();
    assert!(crossing >= 1);
    assert_eq!(alerts.len(), 16 - crossing);
    for (a, d) in alerts.iter().zip(&d[crossing..]) {
        assert_eq!(a.kind, AlertKind::ElevatedRisk);
        assert_eq!((a.start_s, a.end_s), (d.start_s, d.end_s));
        assert_eq!(Some(*a), d.alert);
        assert_eq!(a.risk_ppm, trustedge_edge::aerosol::risk_ppm(d.probability));
    }
}

#[test]
fn a_well_ventilated_occupied_room_never_crosses_it() {
    let t0 = BASE_DAY * DAY_S + 8 * 3600;
    let mut engine = AerosolEngine::new(AerosolEdgeConfig::default()).unwrap();
    engine.add_room("good", small_room(6.0)).unwrap();
    let mut alerts = Vec::new();
    for r in steady_room(4, 6.0, t0, t0 + 8 * 3600) {
        alerts.extend(engine.push("good", &r).unwrap());
    }
    alerts.extend(engine.close_until("good", t0 + 9 * 3600).unwrap());
    assert_eq!(alerts, vec![]);
    let d = engine.recent_decisions("good");
    assert_eq!(d.len(), 32);
    let ss = steady_risk(6.0);
    assert!(ss < 0.01);
    assert!(d.iter().all(|d| d.probability <= ss * (1.0 + 1e-9)));
    assert!((d[31].probability - ss).abs() < 1e-6 * ss);
}

#[test]
fn carried_quanta_survive_a_quiet_gap_only_by_decay() {
    let t0 = BASE_DAY * DAY_S + 8 * 3600;
    let lambda: f64 = 0.5 + 0.92;
    let run = |gap_s: u64| {
        let mut engine = AerosolEngine::new(AerosolEdgeConfig::default()).unwrap();
        engine.add_room("bad", small_room(0.5)).unwrap();
        let mut readings = steady_room(4, 0.5, t0, t0 + 2 * 3600);
        let back = t0 + 2 * 3600 + gap_s;
        readings.extend(steady_room(4, 0.5, back, back + 900));
        for r in &readings {
            engine.push("bad", r).unwrap();
        }
        engine.close_until("bad", back + 900).unwrap();
        let d = engine.recent_decisions("bad").to_vec();
        assert_eq!(d.len(), 9);
        assert_eq!(d[8].start_s, back);
        d[8].probability
    };
    // expected: 8 occupied windows, the gap's decay, one occupied window
    let expected = |gap_h: f64| {
        let mut c = CarryOver::new(100.0, 25.0).unwrap();
        for _ in 0..8 {
            c.step(1.0, 0.5, 0.25).unwrap();
        }
        let before = c.quanta_per_m3();
        c.decay(0.5, gap_h).unwrap();
        assert!((c.quanta_per_m3() - before * (-lambda * gap_h).exp()).abs() < 1e-15);
        conditional_probability(c.step(1.0, 0.5, 0.25).unwrap(), 0.72, 0.25, 0.0).unwrap()
    };
    let no_gap = run(0);
    let hour = run(3600);
    let long = run(2 * DAY_S);
    assert!((no_gap - expected(0.0)).abs() < 1e-12);
    assert!(
        (hour - expected(1.0)).abs() < 1e-12,
        "{hour} vs {}",
        expected(1.0)
    );
    // decayed but not forgotten after an hour; clean air after more than a day
    let clean = expected(1e6);
    assert!(
        no_gap > hour && hour > clean * 1.5,
        "{no_gap} {hour} {clean}"
    );
    assert!((long - clean).abs() < 1e-12, "{long} vs {clean}");
}

fn key(label: &str) -> Keypair {
    Keypair::from_seed(Hash::sha256(label.as_bytes()).0)
}

/// The contract takes what the engine emits: every alert passes its checks at the time of
/// the last reading, and a publish of them all through the runtime succeeds.
#[test]
fn the_ledger_accepts_the_engines_alerts() {
    let (cfg, s) = series(true, 11);
    let mut engine = AerosolEngine::new(AerosolEdgeConfig::default()).unwrap();
    engine.add_room("r", room("r", &cfg)).unwrap();
    let alerts = run_room(&mut engine, "r", &s);
    assert!(!alerts.is_empty());
    let calls = batches(&alerts, 64);
    assert_eq!(calls.len(), alerts.len().div_ceil(64));
    let many: Vec<_> = (0..130).map(|_| alerts[0]).collect();
    let sizes: Vec<usize> = batches(&many, 1000)
        .iter()
        .map(|call| match call {
            AerosolCall::PublishAlerts { alerts } => alerts.len(),
            other => panic!("batches made a call other than publish_alerts: {other:?}"),
        })
        .collect();
    assert_eq!(sizes, [64, 64, 2]);

    let chain = "aerosol-edge-test";
    let op = key("edge operator");
    let genesis = Genesis {
        chain_id: chain.into(),
        genesis_time_ms: 1_700_000_000_000,
        validators: vec![trustedge_types::Validator {
            name: "v".into(),
            address: Address::of_member(&key("v").public()),
            public_key: key("v").public(),
            power: 1,
        }],
        organisations: vec![
            GenesisOrg {
                id: "ha".into(),
                name: "ha".into(),
                kind: OrgKind::HealthAuthority,
                members: vec![GenesisMember {
                    public_key: key("ha admin").public(),
                    role: Role::Admin,
                }],
            },
            GenesisOrg {
                id: "gateways".into(),
                name: "gateways".into(),
                kind: OrgKind::EdgeOperator,
                members: vec![
                    GenesisMember {
                        public_key: key("edge admin").public(),
                        role: Role::Admin,
                    },
                    GenesisMember {
                        public_key: op.public(),
                        role: Role::Operator,
                    },
                ],
            },
        ],
        policy: GovernancePolicy {
            admission_approvals: 1,
        },
    };
    let mut state = MemState::default();
    state.apply(&genesis.state_writes().unwrap());
    let rt = runtime(chain);
    let time_ms = 1_700_000_000_000 + 1000;
    for (i, a) in alerts.iter().enumerate() {
        check_alert(i, a, time_ms / 1000).unwrap();
    }
    for (i, call) in calls.into_iter().enumerate() {
        let height = i as u64 + 1;
        let tx = TxBody {
            chain_id: chain.into(),
            signer: op.public(),
            nonce: height,
            expiry_height: height,
            payload: Payload::new("aerosol", &call),
        }
        .sign(&op);
        let mut b = rt.begin_block(
            &state,
            BlockEnv {
                height,
                time_ms: time_ms + height * 1000,
            },
        );
        let r = b.apply(&tx, tx.hash(), true).unwrap().clone();
        assert!(r.is_success(), "{r:?}");
        let out = b.finish().unwrap();
        state.apply(&out.writes);
    }
    let stats = rt
        .module("aerosol")
        .unwrap()
        .query(&state, "stats", &Default::default())
        .unwrap();
    assert_eq!(stats["alerts"], alerts.len());
}

#[test]
fn devices_match_presence_from_the_venue_ids_they_heard() {
    let s = secret("cafe");
    let day = 19_700u32;
    let start = u64::from(day) * DAY_S + 10 * 3600;
    let alert = AerosolAlertTx {
        venue: VenueId::derive(&s, day).0,
        start_s: start,
        end_s: start + 900,
        risk_ppm: 20_000,
        kind: AlertKind::VentilationFailure,
    };
    let other = AerosolAlertTx {
        venue: VenueId::derive(&secret("office"), day).0,
        ..alert
    };
    let alerts = [alert, other];
    let heard = |venue: VenueId, t_s: u64| vec![HeardBeacon { venue, t_s }];
    // present: heard the cafe's id of that day during the window
    let present = heard(VenueId::derive(&s, day), start + 300);
    assert_eq!(alerts_for_device(&alerts, &present, 60), vec![alert]);
    // just outside the window, within and beyond the tolerance
    assert_eq!(
        alerts_for_device(&alerts, &heard(VenueId::derive(&s, day), start + 950), 60),
        vec![alert]
    );
    assert_eq!(
        alerts_for_device(&alerts, &heard(VenueId::derive(&s, day), start + 2000), 60),
        vec![]
    );
    // absent: heard nothing, or another venue at other times
    assert_eq!(alerts_for_device(&alerts, &[], 60), vec![]);
    // the cafe on another day: a different rolling id, even at the same time of day
    let yesterday = heard(VenueId::derive(&s, day - 1), start - DAY_S + 300);
    assert_eq!(alerts_for_device(&alerts, &yesterday, 60), vec![]);
    let ids_of_yesterday_at_the_window = heard(VenueId::derive(&s, day - 1), start + 300);
    assert_eq!(
        alerts_for_device(&alerts, &ids_of_yesterday_at_the_window, 60),
        vec![]
    );
    // both venues heard: both alerts
    let mut both = present.clone();
    both.push(HeardBeacon {
        venue: VenueId(other.venue),
        t_s: start + 600,
    });
    assert_eq!(alerts_for_device(&alerts, &both, 60), vec![alert, other]);
}
