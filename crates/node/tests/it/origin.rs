//! Origin inference on a cloud node from ledger data alone: a laboratory confirms cases A,
//! B, C and D (symptom onsets in the keys); an edge operator publishes an exposure notice for
//! an RPI of B with source A (a close contact of A and B, day d−6), an aerosol alert for a
//! room (day d−6, 10:00–10:15) and the presences of A and C during it. A cloud follower with
//! `[origin]` (and nothing but its upstream validator) infers the cluster {A, B, C} with A
//! as the origin, explained by the contact A→B and the room A→C; D is a cluster of its own.

use std::time::{Duration, Instant};

use trustedge_contracts::aerosol::{AerosolAlertTx, AerosolCall, AlertKind, CaseVisit};
use trustedge_contracts::diagnosis::{DiagnosisCall, VerificationCertificate, keys_digest};
use trustedge_contracts::exposure::{ExposureCall, ExposureNotice};
use trustedge_contracts::genesis::{GenesisMember, GenesisOrg};
use trustedge_execution::{OrgKind, Role as MemberRole};
use trustedge_node::Role;
use trustedge_node::origin_service::{OriginConfig, OriginView};
use trustedge_tracing::{DiagnosisKey, EnIntervalNumber, ReportType, TemporaryExposureKey};
use trustedge_types::{Hash, Keypair};

use crate::common::{
    CHAIN_ID, WAIT, committed, genesis, get_raw, keys, start_home, tx, write_home,
};

const DAY: u64 = 86_400;

/// Keys of `days` (one whole-day key each) with `days_since_onset` from `onset`.
fn case_keys(seed: u8, days: std::ops::RangeInclusive<u32>, onset: u32) -> Vec<DiagnosisKey> {
    days.map(|d| DiagnosisKey {
        key_data: [seed, d as u8, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, seed],
        rolling_start_interval_number: d * 144,
        rolling_period: 144,
        report_type: ReportType::ConfirmedTest,
        days_since_onset: Some(d as i32 - onset as i32),
    })
    .collect()
}

fn rpi(k: &DiagnosisKey, interval: u32) -> [u8; 16] {
    TemporaryExposureKey(k.key_data)
        .rpik()
        .unwrap()
        .rpi(EnIntervalNumber(k.rolling_start_interval_number + interval))
        .0
}

fn publish(lab: &Keypair, cert_id: u8, keys: &[DiagnosisKey], now_s: u64) -> DiagnosisCall {
    DiagnosisCall::PublishKeys {
        keys: keys.to_vec(),
        certificate: VerificationCertificate::issue(
            lab,
            CHAIN_ID,
            [cert_id; 16],
            keys,
            ReportType::ConfirmedTest,
            now_s,
            3600,
        ),
    }
}

async fn origin_until(
    cloud: &trustedge_node::Client,
    done: impl Fn(&OriginView) -> bool,
) -> OriginView {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(v) = cloud.origin(false, None).await
            && done(&v)
        {
            return v;
        }
        assert!(Instant::now() < deadline, "no origin answer in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_node_ranks_the_origin_from_contacts_and_rooms_on_the_ledger() {
    let k = keys();
    let lab = Keypair::from_seed([80; 32]);
    let mut g = genesis();
    g.organisations.push(GenesisOrg {
        id: "lab".into(),
        name: "Laboratory".into(),
        kind: OrgKind::Laboratory,
        members: vec![
            GenesisMember {
                public_key: Keypair::from_seed([81; 32]).public(),
                role: MemberRole::Admin,
            },
            GenesisMember {
                public_key: lab.public(),
                role: MemberRole::Clinician,
            },
        ],
    });
    let vhome = write_home(&g, Role::Validator, Some(&k.validator), &[], |_| {});
    let validator = start_home(vhome, None).await;
    let chome = write_home(&g, Role::Cloud, None, &[validator.url()], |c| {
        c.origin = Some(OriginConfig {
            poll_interval_ms: 20,
            min_interval_ms: 0,
            samples: 500,
            ..OriginConfig::default()
        });
    });
    let cloud = start_home(chome, None).await;

    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let d = u32::try_from(now_s / DAY).unwrap();
    // A fell ill first (onset d−7), met B on d−6 (B's onset d−2) and shared a badly
    // ventilated room with C on d−6 (C's onset d−1). D has no link to anyone.
    let ka = case_keys(1, d - 8..=d - 5, d - 7);
    let kb = case_keys(2, d - 6..=d - 3, d - 2);
    let kc = case_keys(3, d - 6..=d - 2, d - 1);
    let kd = case_keys(4, d - 4..=d - 2, d - 3);
    let (a, b, c, dd) = (
        keys_digest(&ka),
        keys_digest(&kb),
        keys_digest(&kc),
        keys_digest(&kd),
    );
    let venue = [0xab; 16];
    let room_start = u64::from(d - 6) * DAY + 10 * 3600;
    let alert = AerosolAlertTx {
        venue,
        start_s: room_start,
        end_s: room_start + 900,
        risk_ppm: 80_000,
        kind: AlertKind::VentilationFailure,
    };
    let visit = |from: u64, to: u64| CaseVisit {
        venue,
        start_s: room_start + from,
        end_s: room_start + to,
    };
    let op = &k.operator;
    let steps = vec![
        tx(op, 1, "diagnosis", &publish(&lab, 1, &ka, now_s)),
        // B's phone heard A on d−6: the edge notifies B's RPI (B not confirmed yet).
        tx(
            op,
            2,
            "exposure",
            &ExposureCall::PublishNotices {
                notices: vec![ExposureNotice {
                    rpis: vec![rpi(&kb[0], 60)],
                    risk_score: 300,
                    day: d - 6,
                    source_upload: a,
                }],
            },
        ),
        tx(
            op,
            3,
            "aerosol",
            &AerosolCall::PublishAlerts {
                alerts: vec![alert],
            },
        ),
        tx(op, 4, "diagnosis", &publish(&lab, 2, &kb, now_s)),
        tx(op, 5, "diagnosis", &publish(&lab, 3, &kc, now_s)),
        tx(op, 6, "diagnosis", &publish(&lab, 4, &kd, now_s)),
        // The edges relay the cases' presences during the alert.
        tx(
            op,
            7,
            "aerosol",
            &AerosolCall::ReportCasePresence {
                upload: a,
                visits: vec![visit(0, 3600)],
            },
        ),
        tx(
            op,
            8,
            "aerosol",
            &AerosolCall::ReportCasePresence {
                upload: c,
                visits: vec![visit(300, 1800)],
            },
        ),
    ];
    for t in &steps {
        let h = validator.client.submit_tx(t).await.unwrap();
        let p = committed(&validator.client, &h).await;
        assert!(p.result.is_success(), "step failed: {:?}", p.result);
    }

    let v = origin_until(&cloud.client, |v| {
        v.cases == 4 && v.contacts == 1 && v.rooms == 1
    })
    .await;
    let hex = |h: &Hash| h.to_hex();
    let mut abc = vec![hex(&a), hex(&b), hex(&c)];
    abc.sort();
    assert_eq!(v.clusters.len(), 2, "{v:#?}");
    let cl = &v.clusters[0];
    assert_eq!(cl.cases, abc);
    assert_eq!(v.clusters[1].cases, vec![hex(&dd)]);
    // Nothing links D to the others: another evidence component.
    assert_eq!((cl.component, v.clusters[1].component), (0, 1));
    assert_eq!(v.clusters[1].candidates[0].case, hex(&dd));
    assert_eq!(v.clusters[1].candidates[0].probability, 1.0);
    // A leads; the probabilities of a cluster sum to 1.
    let top = &cl.candidates[0];
    assert_eq!(top.case, hex(&a), "{cl:#?}");
    assert!(top.probability > 0.8, "{cl:#?}");
    let sum: f64 = cl.candidates.iter().map(|c| c.probability).sum();
    assert!((sum - 1.0).abs() < 1e-9);
    assert_eq!(top.onset_s, Some(u64::from(d - 7) * DAY + 12 * 3600));
    assert!(top.confirmation_s >= now_s - 5 && top.confirmation_s <= now_s + 60);
    // Explained by the contact A→B and the room A→C.
    let x = top.explanation.as_ref().unwrap();
    assert_eq!(x.contacts.len(), 1);
    assert_eq!(
        (x.contacts[0].from.as_str(), x.contacts[0].to.as_str()),
        (hex(&a).as_str(), hex(&b).as_str())
    );
    assert_eq!(x.contacts[0].start_s, u64::from(d - 6) * DAY + 12 * 3600);
    // A 300 weighted-second notice: 5 weighted minutes, the model's unit.
    assert_eq!(x.contacts[0].score, 5.0);
    assert_eq!(x.rooms.len(), 1);
    let r = &x.rooms[0];
    assert_eq!(
        (r.from.as_str(), r.to.as_str()),
        (hex(&a).as_str(), hex(&c).as_str())
    );
    assert_eq!(r.venue, "ab".repeat(16));
    assert_eq!((r.start_s, r.end_s), (alert.start_s, alert.end_s));
    assert!((r.probability - 0.08).abs() < 1e-12);
    assert!(x.unexplained.is_empty());
    assert_eq!((x.contact_count, x.room_count), (1, 1));
    assert!(x.chains.contains(&vec![hex(&a), hex(&b)]), "{:?}", x.chains);
    // The most likely tree: A imported, A→B by contact, A→C by room.
    let mut tree: Vec<(Option<String>, String, String)> = cl
        .tree
        .iter()
        .map(|e| (e.from.clone(), e.to.clone(), e.kind.clone()))
        .collect();
    tree.sort();
    let mut want = vec![
        (None, hex(&a), "import".to_string()),
        (Some(hex(&a)), hex(&b), "contact".to_string()),
        (Some(hex(&a)), hex(&c), "room".to_string()),
    ];
    want.sort();
    assert_eq!(tree, want);
    // The earliest-onset baseline agrees here (A's onset is the earliest).
    assert_eq!(cl.baseline[0], hex(&a));
    assert_eq!(v.baseline, vec![hex(&a), hex(&dd)]);
    assert!(v.height >= 8);

    // The raw JSON has the shape the simulation driver reads; filters and refusals.
    let (status, raw) = get_raw(&cloud.url(), "/v1/origin?min_cluster_size=2").await;
    assert_eq!(status, 200);
    assert_eq!(raw["clusters"].as_array().unwrap().len(), 1);
    assert_eq!(raw["clusters"][0]["candidates"][0]["case"], hex(&a));
    assert!(raw["clusters"][0]["candidates"][0]["probability"].is_f64());
    assert_eq!(raw["clusters"][0]["cases"].as_array().unwrap().len(), 3);
    assert_eq!(raw["baseline"], serde_json::json!([hex(&a)]));
    let (status, raw) = get_raw(&cloud.url(), "/v1/origin?min_cluster_size=0").await;
    assert_eq!((status, raw["code"].as_str()), (400, Some("invalid_query")));
    let (status, raw) = get_raw(&cloud.url(), "/v1/origin?size=2").await;
    assert_eq!(status, 400, "{raw}");
    let (status, raw) = get_raw(&validator.url(), "/v1/origin").await;
    assert_eq!(
        (status, raw["code"].as_str()),
        (404, Some("origin_disabled"))
    );

    // The same ledger and seed give the same answer (a refresh recomputes nothing new).
    let again = cloud.client.origin(true, None).await.unwrap();
    assert_eq!(again.clusters, v.clusters);

    // Metrics.
    let text = reqwest::get(format!("{}/metrics", cloud.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "trustedge_origin_cases 4",
        "trustedge_origin_clusters 1",
        "trustedge_origin_contacts 1",
        "trustedge_origin_rooms 1",
        "trustedge_origin_errors_total 0",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }

    // Revoking B removes it: A and C remain linked by the room, B's contact is gone.
    let revoke: Vec<DiagnosisKey> = kb
        .iter()
        .map(|k| DiagnosisKey {
            report_type: ReportType::Revoked,
            ..*k
        })
        .collect();
    let h = validator
        .client
        .submit_tx(&tx(
            op,
            9,
            "diagnosis",
            &DiagnosisCall::PublishKeys {
                keys: revoke.clone(),
                certificate: VerificationCertificate::issue(
                    &lab,
                    CHAIN_ID,
                    [5; 16],
                    &revoke,
                    ReportType::Revoked,
                    now_s,
                    3600,
                ),
            },
        ))
        .await
        .unwrap();
    assert!(committed(&validator.client, &h).await.result.is_success());
    let v = origin_until(&cloud.client, |v| v.cases == 3).await;
    let mut ac = vec![hex(&a), hex(&c)];
    ac.sort();
    assert_eq!(v.contacts, 0);
    assert_eq!(v.clusters[0].cases, ac);
    assert_eq!(v.clusters[0].candidates[0].case, hex(&a));
    validator.stop().await;
    cloud.stop().await;
}
