//! A light edge node (`light = true`) follows a sealing node over HTTP — across a
//! validator-set change — keeps headers only, and verifies state and transaction proofs
//! from its upstream against them.

use trustedge_contracts::devices::device_state_key;
use trustedge_contracts::{GenesisCall, ValidatorChange};
use trustedge_node::light::{HEADERS_FILE, start_light_node};
use trustedge_node::{Client, Mode, NodeConfig, NodeError, NodeOptions, Role, start_with_config};
use trustedge_types::{Address, Keypair};

use crate::common::*;

fn light_home(upstream: &str) -> tempfile::TempDir {
    write_home(&genesis(), Role::Edge, None, &[upstream.to_string()], |c| {
        c.light = true;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_light_edge_follows_a_sealer_and_verifies_proofs() {
    let s = sealer().await;
    let k = keys();
    let (reg, device) = register_device(&k.operator, 1, 150);
    committed(&s.client, &s.client.submit_tx(&reg).await.unwrap()).await;

    // A validator-set change the solo sealer can sign through: its own power changes, so
    // the header's validator_set_hash changes and the light node must fetch a set proof.
    let change = GenesisCall::ProposeValidatorChange {
        change: ValidatorChange::SetPower {
            address: Address::of_member(&k.validator.public()),
            power: 25,
        },
    };
    let gov = tx(&k.ha_admin, 1, "genesis", &change);
    let p = committed(&s.client, &s.client.submit_tx(&gov).await.unwrap()).await;
    assert!(p.result.is_success(), "{:?}", p.result);
    let effective = p.header.height + trustedge_contracts::VALIDATOR_CHANGE_DELAY;
    reach_height(&s.client, effective + 1).await;

    let home = light_home(&s.url());
    let config = NodeConfig::load(home.path()).unwrap();
    // the full-node start refuses a light configuration rather than opening a ledger
    assert!(matches!(
        start_with_config(home.path(), config.clone(), NodeOptions::default()).await,
        Err(NodeError::Role(_))
    ));
    let light = start_light_node(home.path(), config.clone()).await.unwrap();
    let lc = Client::new(light.url());
    let target = s.client.status().await.unwrap().height;
    reach_height(&lc, target).await;
    let st = lc.status().await.unwrap();
    assert_eq!((st.role, st.mode), (Role::Edge, Mode::Light));
    assert_eq!(st.chain_id, CHAIN_ID);
    let upstream_block = s.client.block(st.height).await.unwrap();
    assert_eq!(
        (st.block_hash, st.state_root),
        (upstream_block.hash, upstream_block.state_root)
    );
    // the set changed on the way, and the light node crossed it
    let before = s.client.block(effective - 1).await.unwrap().header;
    let after = s.client.block(effective).await.unwrap().header;
    assert_ne!(before.validator_set_hash, after.validator_set_hash);
    assert!(light.snapshot().validators.validators[0].power == 25);

    // The device record, proven against the light node's own verified header.
    let key = device_state_key(&Address::of_device(&device.public()));
    let v: serde_json::Value = lc
        .get_json("/v1/light/verify-state", &[("key", hex::encode(&key))])
        .await
        .unwrap();
    assert_eq!(v["verified"], true, "{v}");
    assert!(v["value"].is_string(), "{v}");
    assert_eq!(
        v["decoded"]["address"],
        Address::of_device(&device.public()).to_string(),
        "{v}"
    );
    assert!(v["height"].as_u64().unwrap() >= target);
    // and an unknown device is proven absent
    let nobody = device_state_key(&Address::of_device(&Keypair::from_seed([99; 32]).public()));
    let v: serde_json::Value = lc
        .get_json("/v1/light/verify-state", &[("key", hex::encode(&nobody))])
        .await
        .unwrap();
    assert_eq!(
        (v["verified"].clone(), v["value"].clone()),
        (true.into(), serde_json::Value::Null)
    );
    let e = lc
        .get_json::<serde_json::Value>("/v1/light/verify-state", &[("key", "zz".into())])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("invalid_query"));

    // The registration's inclusion, checked against the held header of its block.
    let v: serde_json::Value = lc
        .get_json(&format!("/v1/light/verify-tx/{}", reg.hash()), &[])
        .await
        .unwrap();
    assert_eq!(v["verified"], true, "{v}");

    // A transaction sent to the light node is forwarded, committed, and followed.
    let t = anchor_batch(&k.operator, 2, 77);
    let h = lc.submit_tx(&t).await.unwrap();
    let p = committed(&s.client, &h).await;
    reach_height(&lc, p.header.height).await;
    let v: serde_json::Value = lc
        .get_json(&format!("/v1/light/verify-tx/{h}"), &[])
        .await
        .unwrap();
    assert_eq!(v["height"], p.header.height);

    // Headers only: no ledger database, one small headers file; a restart resumes.
    let height = light.height();
    light.shutdown().await.unwrap();
    let data = home.path().join("data");
    let files: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, [HEADERS_FILE], "{files:?}");
    let again = start_light_node(home.path(), config).await.unwrap();
    assert!(again.height() >= height);
    again.shutdown().await.unwrap();
    s.stop().await;
}

#[test]
fn light_is_for_edge_nodes_only() {
    let mut c = NodeConfig::new("c", Role::Cloud, "127.0.0.1:1", "http://127.0.0.1:1");
    c.upstream = vec!["http://127.0.0.1:2".into()];
    c.light = true;
    assert!(c.validate().unwrap_err().contains("edge"));
    c.role = Role::Edge;
    c.validate().unwrap();
}

/// What the lying upstream of a light node falsifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lie {
    /// Every certificate carries a flipped signature.
    Certificates,
    /// State values are altered (the proofs are the real ones).
    StateValues,
}

#[derive(Clone)]
struct Liar {
    real: Client,
    lie: Lie,
}

async fn liar_status(
    axum::extract::State(f): axum::extract::State<Liar>,
) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::to_value(f.real.status().await.unwrap()).unwrap())
}

async fn liar_headers(
    axum::extract::State(f): axum::extract::State<Liar>,
    axum::extract::Query(q): axum::extract::Query<std::collections::BTreeMap<String, u64>>,
) -> axum::Json<serde_json::Value> {
    let mut r = f.real.headers(q["from"], q["to"]).await.unwrap();
    if f.lie == Lie::Certificates {
        for e in &mut r.headers {
            if let Some(c) = &mut e.certificate {
                c.signatures[0].signature.0[0] ^= 1;
            }
        }
    }
    axum::Json(serde_json::to_value(r).unwrap())
}

async fn liar_state(
    axum::extract::State(f): axum::extract::State<Liar>,
    axum::extract::Query(q): axum::extract::Query<std::collections::BTreeMap<String, String>>,
) -> axum::Json<serde_json::Value> {
    let key = hex::decode(&q["key"]).unwrap();
    let height = q.get("height").map(|h| h.parse().unwrap());
    let mut r = f.real.state_proof(&key, height).await.unwrap();
    if f.lie == Lie::StateValues
        && let trustedge_chain::Proof::State(p) = &mut r.proof
        && let Some(v) = &mut p.value
    {
        v[0] ^= 1;
    }
    axum::Json(serde_json::to_value(r).unwrap())
}

async fn liar(real: &str, lie: Lie) -> String {
    let app = axum::Router::new()
        .route("/v1/status", axum::routing::get(liar_status))
        .route("/v1/headers", axum::routing::get(liar_headers))
        .route("/v1/state", axum::routing::get(liar_state))
        .with_state(Liar {
            real: Client::new(real),
            lie,
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_light_edge_refuses_what_a_lying_upstream_serves() {
    let s = sealer().await;
    let k = keys();
    let (reg, device) = register_device(&k.operator, 1, 151);
    committed(&s.client, &s.client.submit_tx(&reg).await.unwrap()).await;

    // Forged certificates: the light node stays at genesis and says why.
    let home = light_home(&liar(&s.url(), Lie::Certificates).await);
    let light = start_light_node(home.path(), NodeConfig::load(home.path()).unwrap())
        .await
        .unwrap();
    let lc = Client::new(light.url());
    let deadline = std::time::Instant::now() + WAIT;
    let error = loop {
        let st = lc.status().await.unwrap();
        assert_eq!(st.height, 0, "accepted a forged certificate");
        if let Some(e) = st.sync.and_then(|s| s.last_error) {
            break e;
        }
        assert!(std::time::Instant::now() < deadline, "no error reported");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(error.contains("certificate"), "{error}");
    light.shutdown().await.unwrap();

    // Altered state values: headers are genuine, but the value is refused.
    let home = light_home(&liar(&s.url(), Lie::StateValues).await);
    let light = start_light_node(home.path(), NodeConfig::load(home.path()).unwrap())
        .await
        .unwrap();
    let lc = Client::new(light.url());
    reach_height(&lc, 1).await;
    let key = device_state_key(&Address::of_device(&device.public()));
    let e = lc
        .get_json::<serde_json::Value>("/v1/light/verify-state", &[("key", hex::encode(&key))])
        .await
        .unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(502), Some("proof_rejected")),
        "{e}"
    );
    light.shutdown().await.unwrap();
    s.stop().await;
}
