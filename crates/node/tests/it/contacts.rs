//! Contact chains on a cloud node: a ledger history built directly on one validator (a
//! laboratory confirms cases A, B, C; an edge operator publishes notices: one for an RPI of
//! B with source A before B is confirmed, one for an RPI of C with source B after C is
//! confirmed), a cloud follower with `[contacts]` links them into A→B→C and answers chain
//! queries; bad parameters and unknown cases are typed 4xx; a revocation removes B.

use std::time::{Duration, Instant};

use trustedge_contracts::diagnosis::{DiagnosisCall, VerificationCertificate, keys_digest};
use trustedge_contracts::exposure::{ExposureCall, ExposureNotice};
use trustedge_contracts::genesis::{GenesisMember, GenesisOrg};
use trustedge_execution::{OrgKind, Role as MemberRole};
use trustedge_node::Role;
use trustedge_node::contacts_service::ContactsConfig;
use trustedge_tracing::{DiagnosisKey, EnIntervalNumber, ReportType, TemporaryExposureKey};
use trustedge_types::{Hash, Keypair};

use crate::common::{
    CHAIN_ID, WAIT, committed, genesis, get_raw, keys, start_home, tx, write_home,
};

fn key(seed: u8, day: u32, report_type: ReportType) -> DiagnosisKey {
    DiagnosisKey {
        key_data: [seed; 16],
        rolling_start_interval_number: day * 144,
        rolling_period: 144,
        report_type,
        days_since_onset: None,
    }
}

fn rpi(k: &DiagnosisKey, interval: u32) -> [u8; 16] {
    TemporaryExposureKey(k.key_data)
        .rpik()
        .unwrap()
        .rpi(EnIntervalNumber(k.rolling_start_interval_number + interval))
        .0
}

fn publish(lab: &Keypair, cert_id: u8, keys: &[DiagnosisKey], now_s: u64) -> DiagnosisCall {
    let certificate = VerificationCertificate::issue(
        lab,
        CHAIN_ID,
        [cert_id; 16],
        keys,
        keys[0].report_type,
        now_s,
        3600,
    );
    DiagnosisCall::PublishKeys {
        keys: keys.to_vec(),
        certificate,
    }
}

fn notice(rpi: [u8; 16], day: u32, risk_score: u32, source_upload: Hash) -> ExposureCall {
    ExposureCall::PublishNotices {
        notices: vec![ExposureNotice {
            rpis: vec![rpi],
            risk_score,
            day,
            source_upload,
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_follower_serves_two_hop_chains_from_ledger_records() {
    let k = keys();
    let lab = Keypair::from_seed([70; 32]);
    let mut g = genesis();
    g.organisations.push(GenesisOrg {
        id: "lab".into(),
        name: "Laboratory".into(),
        kind: OrgKind::Laboratory,
        members: vec![
            GenesisMember {
                public_key: Keypair::from_seed([71; 32]).public(),
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
        c.contacts = Some(ContactsConfig {
            poll_interval_ms: 20,
            ..ContactsConfig::default()
        });
    });
    let cloud = start_home(chome, None).await;

    // Block times follow the system clock: keys of two days and one day ago are released at
    // once (their validity has ended).
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let today = u32::try_from(now_s / 86_400).unwrap();
    let (d2, d1) = (today - 2, today - 1);
    let ka = [key(1, d2, ReportType::ConfirmedTest)];
    let kb = [
        key(2, d2, ReportType::ConfirmedTest),
        key(3, d1, ReportType::ConfirmedTest),
    ];
    let kc = [key(4, d1, ReportType::ConfirmedTest)];
    let (a, b, c) = (keys_digest(&ka), keys_digest(&kb), keys_digest(&kc));

    // The edge operator's member relays uploads and publishes notices, in this order:
    // A confirmed; a notice for B's RPI (B not yet confirmed); B confirmed; C confirmed;
    // a notice for C's RPI with source B (C's keys already known).
    let op = &k.operator;
    let steps: Vec<trustedge_types::SignedTx> = vec![
        tx(op, 1, "diagnosis", &publish(&lab, 1, &ka, now_s)),
        tx(op, 2, "exposure", &notice(rpi(&kb[0], 60), d2, 300, a)),
        tx(op, 3, "diagnosis", &publish(&lab, 2, &kb, now_s)),
        tx(op, 4, "diagnosis", &publish(&lab, 3, &kc, now_s)),
        tx(op, 5, "exposure", &notice(rpi(&kc[0], 70), d1, 200, b)),
        // A second RPI of C, same source and day: the hop's score adds up.
        tx(op, 6, "exposure", &notice(rpi(&kc[0], 71), d1, 50, b)),
    ];
    for t in &steps {
        let h = validator.client.submit_tx(t).await.unwrap();
        let p = committed(&validator.client, &h).await;
        assert!(p.result.is_success(), "step failed: {:?}", p.result);
    }

    // The cloud links them: A → B (day d2) → C (day d1).
    let deadline = Instant::now() + WAIT;
    let answer = loop {
        let r = cloud
            .client
            .contact_chains(&a, Some(2), Some("forward"), None, None)
            .await;
        // Every notice applied: two chains, the second one's last hop with both notices.
        if let Ok(r) = r
            && r.chains.len() == 2
            && r.chains[1].hops.last().is_some_and(|h| h.score == 250.0)
        {
            break r;
        }
        assert!(Instant::now() < deadline, "no 2-hop chain in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(answer.case, a.to_hex());
    assert!(!answer.truncated);
    let one = &answer.chains[0];
    assert_eq!(one.target, b.to_hex());
    assert_eq!(one.hops.len(), 1);
    assert_eq!((one.hops[0].day, one.hops[0].score), (d2, 300.0));
    let two = &answer.chains[1];
    assert_eq!(two.target, c.to_hex());
    assert_eq!(two.direction, "forward");
    let hops: Vec<(String, String, u32, f32)> = two
        .hops
        .iter()
        .map(|h| (h.from.clone(), h.to.clone(), h.day, h.score))
        .collect();
    assert_eq!(
        hops,
        vec![
            (a.to_hex(), b.to_hex(), d2, 300.0),
            (b.to_hex(), c.to_hex(), d1, 250.0)
        ]
    );
    assert_eq!(two.hops[0].start_s, u64::from(d2) * 86_400 + 12 * 3600);
    assert_eq!(two.score, 250.0);

    // One hop reaches only B; backward from C reaches B then A; forward from C only B
    // (time-respecting), but ignoring time it reaches B and A.
    let r = cloud
        .client
        .contact_chains(&a, Some(1), None, None, None)
        .await
        .unwrap();
    assert_eq!(r.chains.len(), 1);
    let r = cloud
        .client
        .contact_chains(&c, Some(2), Some("backward"), None, None)
        .await
        .unwrap();
    let targets: Vec<&str> = r.chains.iter().map(|c| c.target.as_str()).collect();
    assert_eq!(targets, vec![b.to_hex().as_str(), a.to_hex().as_str()]);
    assert_eq!(r.chains[1].hops[1].to, a.to_hex());
    let r = cloud
        .client
        .contact_chains(&c, Some(2), Some("forward"), None, None)
        .await
        .unwrap();
    // Forward from C: its contact with B (day d1), but not on to A (day d2 is earlier).
    let targets: Vec<&str> = r.chains.iter().map(|c| c.target.as_str()).collect();
    assert_eq!(targets, vec![b.to_hex().as_str()]);
    let r = cloud
        .client
        .contact_chains(&c, Some(2), Some("any"), Some(false), None)
        .await
        .unwrap();
    assert_eq!(r.chains.len(), 2);
    assert_eq!(r.chains[0].direction, "any");

    // A cloud node started afterwards replays the history from genesis to the same answer.
    let late_home = write_home(&g, Role::Cloud, None, &[validator.url()], |c| {
        c.contacts = Some(ContactsConfig {
            poll_interval_ms: 20,
            ..ContactsConfig::default()
        });
    });
    let late = start_home(late_home, None).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let r = late
            .client
            .contact_chains(&a, Some(2), Some("forward"), None, None)
            .await;
        if let Ok(r) = r
            && r == answer
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the late cloud node did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    late.stop().await;

    // Typed refusals.
    let url = cloud.url();
    let path = |q: &str| format!("/v1/contacts/chains?{q}");
    for q in [
        "case=zz".to_string(),
        format!("case={}&hops=0", a.to_hex()),
        format!("case={}&hops=17", a.to_hex()),
        format!("case={}&direction=sideways", a.to_hex()),
        format!("case={}&max_results=0", a.to_hex()),
        format!("case={}&time_respecting=maybe", a.to_hex()),
        "hops=2".to_string(),
    ] {
        let (status, body) = get_raw(&url, &path(&q)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_query")),
            "{q}: {body}"
        );
    }
    let (status, body) = get_raw(&url, &path(&format!("case={}", Hash([9; 32]).to_hex()))).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("unknown_case")));
    let (status, body) = get_raw(&validator.url(), &path(&format!("case={}", a.to_hex()))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("contacts_disabled"))
    );

    // B's keys are revoked: B's case answers 410 and A reaches nobody through it.
    let revoked: Vec<DiagnosisKey> = kb
        .iter()
        .map(|k| DiagnosisKey {
            report_type: ReportType::Revoked,
            ..*k
        })
        .collect();
    let h = validator
        .client
        .submit_tx(&tx(op, 7, "diagnosis", &publish(&lab, 4, &revoked, now_s)))
        .await
        .unwrap();
    assert!(committed(&validator.client, &h).await.result.is_success());
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = get_raw(&url, &path(&format!("case={}", b.to_hex()))).await;
        if status == 410 {
            assert_eq!(body["code"], "case_revoked");
            break;
        }
        assert!(Instant::now() < deadline, "revocation not applied in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = cloud
        .client
        .contact_chains(&a, Some(2), None, None, None)
        .await
        .unwrap();
    assert!(r.chains.is_empty());

    cloud.stop().await;
    validator.stop().await;
}
