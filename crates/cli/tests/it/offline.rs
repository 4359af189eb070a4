//! Commands that need no running node: keygen, init, verify-proof, bench.

use std::collections::BTreeSet;
use std::time::Duration;

use trustedge_chain::{Ledger, LedgerConfig, Proof};
use trustedge_contracts::{DevicesCall, Genesis, GenesisMember, GenesisOrg, GovernancePolicy};
use trustedge_execution::{DeviceClass, OrgKind, Role};
use trustedge_node::{KeyFile, NodeConfig, load_key};
use trustedge_types::{Address, Keypair, Payload, TxBody, Validator};

use crate::common::{free_ports, run};

const QUICK: Duration = Duration::from_secs(60);

#[test]
fn keygen_prints_a_key_file_and_writes_one() {
    let r = run(&["keygen"], QUICK);
    assert!(r.ok(), "{}", r.describe());
    let file: KeyFile = serde_json::from_str(&r.stdout).expect("key file JSON");
    let key = file.keypair().expect("consistent key file");
    assert_eq!(file.address, Address::of_member(&key.public()));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.json");
    let p = path.to_str().unwrap();
    let r = run(&["keygen", "--out", p], QUICK);
    assert!(r.ok(), "{}", r.describe());
    let key = load_key(&path).expect("written key file loads");
    assert!(
        r.stdout.contains(&key.public().to_hex()),
        "{}",
        r.describe()
    );
    assert!(
        r.stdout
            .contains(&Address::of_member(&key.public()).to_string())
    );
    // Never overwrites a key.
    let again = run(&["keygen", "--out", p], QUICK);
    assert!(
        !again.ok() && again.stderr.contains("exists"),
        "{}",
        again.describe()
    );
}

#[test]
fn init_light_edges_makes_only_the_edges_light() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("net");
    let h = home.to_str().unwrap();
    let base = free_ports(3).to_string();
    let r = run(
        &[
            "init",
            "--edges",
            "1",
            "--clouds",
            "1",
            "--light-edges",
            "--home",
            h,
            "--base-port",
            &base,
        ],
        QUICK,
    );
    assert!(r.ok(), "{}", r.describe());
    for (name, light) in [("validator-0", false), ("edge-0", true), ("cloud-0", false)] {
        let c = NodeConfig::load(&home.join(name)).unwrap();
        assert_eq!(c.light, light, "{name}");
    }
}

#[test]
fn init_aerosol_edges_give_edges_mqtt_and_aerosol_with_their_own_operator_key() {
    let dir = tempfile::tempdir().unwrap();
    for (sub, tracing) in [("a", false), ("at", true)] {
        let home = dir.path().join(sub);
        let h = home.to_str().unwrap();
        let base = free_ports(6).to_string();
        let mut args = vec![
            "init",
            "--edges",
            "2",
            "--aerosol-edges",
            "--home",
            h,
            "--base-port",
            &base,
        ];
        if tracing {
            args.push("--tracing-edges");
        }
        let r = run(&args, QUICK);
        assert!(r.ok(), "{}", r.describe());
        let genesis: Genesis =
            serde_json::from_str(&std::fs::read_to_string(home.join("genesis.json")).unwrap())
                .unwrap();
        let operators: BTreeSet<_> = genesis
            .organisations
            .iter()
            .find(|o| o.id == "edge-operator-1")
            .unwrap()
            .members
            .iter()
            .filter(|m| m.role == Role::Operator)
            .map(|m| m.public_key)
            .collect();
        let mut brokers = BTreeSet::new();
        for name in ["edge-0", "edge-1"] {
            let c = NodeConfig::load(&home.join(name)).unwrap();
            let mqtt = c.mqtt.as_ref().expect("an aerosol edge has [mqtt]");
            assert!(
                brokers.insert(mqtt.listen.clone()),
                "{name} shares a broker port"
            );
            let a = c.aerosol.as_ref().expect("[aerosol]");
            assert!(a.enabled && a.rooms.is_empty());
            assert_eq!(
                a.key_path.as_deref(),
                Some(std::path::Path::new("aerosol-key.json"))
            );
            let key = load_key(&home.join(name).join("aerosol-key.json")).unwrap();
            let node_key = load_key(&home.join(name).join("key.json")).unwrap();
            assert_ne!(key.public(), node_key.public());
            assert!(
                operators.contains(&key.public()),
                "{name}'s aerosol key is no operator"
            );
            assert_eq!(c.tracing.is_some(), tracing, "{name}");
            if tracing {
                let t = load_key(&home.join(name).join("tracing-key.json")).unwrap();
                assert_ne!(t.public(), key.public());
            }
        }
        let v = NodeConfig::load(&home.join("validator-0")).unwrap();
        assert!(v.aerosol.is_none() && v.mqtt.is_none());
    }
    let h = dir.path().join("light");
    let r = run(
        &[
            "init",
            "--edges",
            "1",
            "--aerosol-edges",
            "--light-edges",
            "--home",
            h.to_str().unwrap(),
        ],
        QUICK,
    );
    assert!(
        !r.ok() && r.stderr.contains("--aerosol-edges"),
        "{}",
        r.describe()
    );
}

#[test]
fn init_lays_out_a_network_with_a_valid_genesis() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("net");
    let h = home.to_str().unwrap();
    let base = free_ports(4).to_string();
    let r = run(
        &[
            "init",
            "--validators",
            "2",
            "--edges",
            "1",
            "--clouds",
            "1",
            "--home",
            h,
            "--base-port",
            &base,
        ],
        QUICK,
    );
    assert!(r.ok(), "{}", r.describe());

    let text = std::fs::read(home.join("genesis.json")).unwrap();
    let genesis = Genesis::from_json(&text).expect("genesis validates");
    let ids: Vec<&str> = genesis
        .organisations
        .iter()
        .map(|o| o.id.as_str())
        .collect();
    for id in [
        "health-authority-1",
        "health-authority-2",
        "hospital-1",
        "laboratory-1",
        "manufacturer-1",
        "distributor-1",
        "clinic-1",
        "edge-operator-1",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
        let admin = load_key(&home.join("keys").join(format!("{id}-admin.json"))).unwrap();
        let org = genesis.organisations.iter().find(|o| o.id == id).unwrap();
        assert!(
            org.members
                .iter()
                .any(|m| m.public_key == admin.public() && m.role == Role::Admin),
            "{id}'s admin key file is not its admin"
        );
    }
    assert!(
        !ids.contains(&"health-authority-3"),
        "one health authority per validator"
    );
    assert_eq!(genesis.policy.admission_approvals, 2);
    assert_eq!(genesis.validators.len(), 2);

    let mut urls = BTreeSet::new();
    let v0 = NodeConfig::load(&home.join("validator-0")).unwrap();
    for name in ["validator-0", "validator-1", "edge-0", "cloud-0"] {
        let node = home.join(name);
        let c = NodeConfig::load(&node).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.name, name);
        assert!(c.api_url.starts_with("http://127.0.0.1:"), "{}", c.api_url);
        assert!(
            urls.insert(c.api_url.clone()),
            "duplicate URL {}",
            c.api_url
        );
        let copy = Genesis::from_json(&std::fs::read(node.join("genesis.json")).unwrap()).unwrap();
        assert_eq!(copy, genesis);
        let key = load_key(&node.join("key.json")).unwrap();
        assert!(
            !c.light,
            "{name}: edges are full replicas unless --light-edges"
        );
        if name == "validator-0" {
            assert!(c.upstream.is_empty());
        } else {
            assert_eq!(c.upstream, vec![v0.api_url.clone()], "{name}");
        }
        if name.starts_with("validator") {
            assert!(
                genesis
                    .validators
                    .iter()
                    .any(|v| v.public_key == key.public())
            );
            // Two validators run consensus: each listens on its own p2p port and names the
            // other as its peer.
            assert!(
                urls.insert(c.consensus.p2p_listen.clone()),
                "duplicate p2p address {}",
                c.consensus.p2p_listen
            );
            assert_eq!(c.consensus.persistent_peers.len(), 1, "{name}");
        }
        if name == "edge-0" {
            let ops = &genesis
                .organisations
                .iter()
                .find(|o| o.id == "edge-operator-1")
                .unwrap();
            assert!(
                ops.members
                    .iter()
                    .any(|m| m.public_key == key.public() && m.role == Role::Operator),
                "edge key must be an operator of edge-operator-1"
            );
        }
    }
    assert_eq!(v0.api_url, format!("http://127.0.0.1:{base}"));

    // A second init into the same home is refused and changes nothing.
    let again = run(&["init", "--validators", "1", "--home", h], QUICK);
    assert!(!again.ok(), "{}", again.describe());
    assert!(
        again.stderr.contains("genesis.json exists"),
        "{}",
        again.describe()
    );
    assert_eq!(std::fs::read(home.join("genesis.json")).unwrap(), text);
}

#[test]
fn init_refuses_nonsense() {
    let dir = tempfile::tempdir().unwrap();
    let h = dir.path().join("n");
    let h = h.to_str().unwrap();
    for args in [
        vec!["init", "--validators", "0", "--home", h],
        vec![
            "init",
            "--validators",
            "1",
            "--home",
            h,
            "--base-port",
            "65535",
            "--edges",
            "2",
        ],
        vec![
            "init",
            "--validators",
            "1",
            "--home",
            h,
            "--chain-id",
            "bad chain id!",
        ],
        vec!["init", "--validators", "x", "--home", h],
    ] {
        let r = run(&args, QUICK);
        assert!(!r.ok(), "{args:?} should fail: {}", r.describe());
        assert!(r.stderr.contains("error"), "{}", r.describe());
        assert!(!r.stderr.contains("panicked"), "{}", r.describe());
    }
}

/// A one-block chain in a temporary directory: its genesis and a transaction proof.
fn proofs() -> (tempfile::TempDir, Genesis, Proof, Proof) {
    let dir = tempfile::tempdir().unwrap();
    let v = Keypair::from_seed([1; 32]);
    let admin = Keypair::from_seed([2; 32]);
    let op = Keypair::from_seed([3; 32]);
    let genesis = Genesis {
        chain_id: "proof-test".into(),
        genesis_time_ms: 1,
        validators: vec![Validator {
            name: "v".into(),
            address: Address::of_member(&v.public()),
            public_key: v.public(),
            power: 1,
        }],
        organisations: vec![
            GenesisOrg {
                id: "ha".into(),
                name: "HA".into(),
                kind: OrgKind::HealthAuthority,
                members: vec![GenesisMember {
                    public_key: admin.public(),
                    role: Role::Admin,
                }],
            },
            GenesisOrg {
                id: "hospital".into(),
                name: "Hospital".into(),
                kind: OrgKind::Hospital,
                members: vec![GenesisMember {
                    public_key: op.public(),
                    role: Role::Admin,
                }],
            },
        ],
        policy: GovernancePolicy {
            admission_approvals: 1,
        },
    };
    let ledger = Ledger::open(
        &dir.path().join("l.redb"),
        genesis.clone(),
        LedgerConfig::default(),
    )
    .unwrap();
    let device = Keypair::from_seed([4; 32]);
    let tx = TxBody {
        chain_id: "proof-test".into(),
        signer: op.public(),
        nonce: 1,
        expiry_height: 10,
        payload: Payload::new(
            "devices",
            &DevicesCall::Register {
                key: device.public(),
                class: DeviceClass::Thermometer,
                model: "T".into(),
                attributes: vec![],
            },
        ),
    }
    .sign(&op);
    let id = ledger.submit(tx).unwrap();
    let block = ledger
        .propose_block(10, Address::of_member(&v.public()))
        .unwrap();
    let cert = ledger.solo_certificate(&block, &v);
    ledger.commit_block(&block, &cert).unwrap();
    let trustedge_chain::TxStatus::Committed(p) = ledger.tx_status(&id).unwrap() else {
        panic!("not committed")
    };
    let state = ledger.state_proof(b"devices/count/hospital", None).unwrap();
    (dir, genesis, Proof::Tx(*p), Proof::State(state))
}

#[test]
fn verify_proof_accepts_valid_and_rejects_tampered_proofs() {
    let (dir, genesis, tx_proof, state_proof) = proofs();
    let g = dir.path().join("genesis.json");
    std::fs::write(&g, genesis.to_json()).unwrap();
    let g = g.to_str().unwrap();
    let write = |name: &str, v: &serde_json::Value| {
        let p = dir.path().join(name);
        std::fs::write(&p, serde_json::to_string_pretty(v).unwrap()).unwrap();
        p.to_str().unwrap().to_string()
    };
    let tx_json = serde_json::to_value(&tx_proof).unwrap();
    let state_json = serde_json::to_value(&state_proof).unwrap();

    for (name, json, kind) in [
        ("tx.json", &tx_json, "tx"),
        ("state.json", &state_json, "state"),
    ] {
        let f = write(name, json);
        for extra in [vec![], vec!["--genesis", g]] {
            let mut args = vec!["verify-proof", f.as_str()];
            args.extend(extra.iter());
            let r = run(&args, QUICK);
            assert!(r.ok(), "{args:?}: {}", r.describe());
            let v = r.json();
            assert_eq!(v["valid"], true, "{v}");
            assert_eq!(v["kind"], kind, "{v}");
        }
    }

    // A different nonce changes the transaction id: it is not in the block's tx_root.
    let mut t = tx_json.clone();
    t["tx"]["body"]["nonce"] = serde_json::json!(2);
    let f = write("tampered-tx.json", &t);
    let r = run(&["verify-proof", &f], QUICK);
    assert_eq!(r.code, Some(1), "{}", r.describe());
    assert_eq!(r.json()["valid"], false);
    assert!(
        r.json()["reason"].as_str().unwrap().contains("tx_root"),
        "{}",
        r.describe()
    );

    // A different recorded result is not in results_root.
    let mut t = tx_json.clone();
    t["result"]["outcome"] = serde_json::json!({"status": "failed", "code": "x", "message": "y"});
    let f = write("tampered-result.json", &t);
    let r = run(&["verify-proof", &f], QUICK);
    assert!(!r.ok() && r.json()["valid"] == false, "{}", r.describe());

    // A header with another state root passes the Merkle checks but not the certificate.
    let mut t = tx_json.clone();
    t["header"]["state_root"] = serde_json::json!("00".repeat(32));
    let f = write("tampered-header.json", &t);
    let r = run(&["verify-proof", &f, "--genesis", g], QUICK);
    assert!(!r.ok() && r.json()["valid"] == false, "{}", r.describe());

    // A state value that was not stored.
    let mut s = state_json.clone();
    s["value"] = serde_json::json!("ff");
    let f = write("tampered-state.json", &s);
    let r = run(&["verify-proof", &f], QUICK);
    assert!(!r.ok() && r.json()["valid"] == false, "{}", r.describe());

    // Not a proof at all, and a missing file: invalid with a reason, no panic.
    let f = write("junk.json", &serde_json::json!({"kind": "tx", "hello": 1}));
    for path in [f.as_str(), "/nonexistent/proof.json"] {
        let r = run(&["verify-proof", path], QUICK);
        assert!(!r.ok(), "{}", r.describe());
        let v = r.json();
        assert_eq!(v["valid"], false);
        assert!(!v["reason"].as_str().unwrap().is_empty());
    }
}

#[test]
fn bench_execution_prints_the_rates_as_json() {
    let r = run(
        &["bench", "execution", "--txs", "2000", "--json"],
        Duration::from_secs(600),
    );
    assert!(r.ok(), "{}", r.describe());
    let v = r.json();
    for k in [
        "verify_sigs_per_s",
        "tx_per_s",
        "ratio",
        "execute_tx_per_s",
        "commit_blocks_per_s",
    ] {
        let x = v[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} missing or not a number: {v}"));
        assert!(x.is_finite() && x > 0.0, "{k} = {x}");
    }
    assert_eq!(v["txs"], 2000);
    assert_eq!(v["failed_txs"], 0, "{v}");
    let ratio = v["tx_per_s"].as_f64().unwrap() / v["verify_sigs_per_s"].as_f64().unwrap();
    assert!((ratio - v["ratio"].as_f64().unwrap()).abs() < 1e-9);
}
