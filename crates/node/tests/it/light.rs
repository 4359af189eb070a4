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
