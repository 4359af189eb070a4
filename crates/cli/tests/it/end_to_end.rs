//! Real node processes: init, node, tx, status, block, query, verify-proof (the demo: see
//! `dashboard.rs`).

use std::time::Duration;

use serde_json::Value;
use trustedge_node::Client;
use trustedge_types::Hash;

use crate::common::{eventually, free_ports, run, start_node};

const QUICK: Duration = Duration::from_secs(60);

fn status(url: &str) -> Option<Value> {
    let r = run(&["status", "--node", url, "--json"], QUICK);
    r.ok().then(|| r.json())
}

#[test]
fn a_validator_and_an_edge_agree_on_a_registered_device() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("net");
    let h = home.to_str().unwrap();
    let base = free_ports(2);
    let r = run(
        &[
            "init",
            "--validators",
            "1",
            "--edges",
            "1",
            "--home",
            h,
            "--base-port",
            &base.to_string(),
        ],
        QUICK,
    );
    assert!(r.ok(), "{}", r.describe());
    let _v = start_node(&home.join("validator-0"));
    let _e = start_node(&home.join("edge-0"));
    let v_url = format!("http://127.0.0.1:{base}");
    let e_url = format!("http://127.0.0.1:{}", base + 1);
    for url in [&v_url, &e_url] {
        eventually(Duration::from_secs(60), "the node to answer", || {
            status(url)
        });
    }

    // Register a phone through the edge node, which forwards to the validator.
    let device_key = dir.path().join("phone.json");
    let r = run(&["keygen", "--out", device_key.to_str().unwrap()], QUICK);
    assert!(r.ok(), "{}", r.describe());
    let admin = home.join("keys/hospital-1-admin.json");
    let admin = admin.to_str().unwrap();
    let r = run(
        &[
            "tx",
            "device",
            "register",
            "--class",
            "phone",
            "--model",
            "X",
            "--device-key",
            device_key.to_str().unwrap(),
            "--attr",
            "firmware=1.0",
            "--node",
            &e_url,
            "--key",
            admin,
            "--wait",
        ],
        QUICK,
    );
    assert!(r.ok(), "{}", r.describe());
    let out = r.json();
    assert_eq!(out["status"], "committed", "{out}");
    assert_eq!(out["result"]["outcome"]["status"], "success", "{out}");
    assert!(
        out["result"]["events"]
            .to_string()
            .contains("device_registered"),
        "{out}"
    );
    let tx_height = out["height"].as_u64().unwrap();
    let tx_hash = out["hash"].as_str().unwrap().to_string();

    // Both nodes reach a common height with the same block hash and state root.
    let (vs, es) = eventually(Duration::from_secs(60), "the edge to catch up", || {
        let v = status(&v_url)?;
        let e = status(&e_url)?;
        (v["height"] == e["height"] && v["height"].as_u64()? >= tx_height).then_some((v, e))
    });
    for k in ["height", "block_hash", "state_root"] {
        assert!(!vs[k].is_null(), "status lacks {k}: {vs}");
    }
    // The sealer keeps sealing; compare again at the height they shared.
    let height = vs["height"].as_u64().unwrap();
    let mut seen = Vec::new();
    for url in [&v_url, &e_url] {
        let r = run(
            &[
                "block",
                "--node",
                url,
                "--height",
                &height.to_string(),
                "--json",
            ],
            QUICK,
        );
        assert!(r.ok(), "{}", r.describe());
        let b = r.json();
        assert_eq!(b["height"], height);
        assert_eq!(b["hash"].as_str().unwrap().len(), 64, "{b}");
        assert_eq!(b["state_root"].as_str().unwrap().len(), 64, "{b}");
        seen.push((b["hash"].clone(), b["state_root"].clone()));
    }
    assert_eq!(
        seen[0], seen[1],
        "validator and edge differ at height {height}"
    );
    if vs["height"] == es["height"] {
        assert_eq!(vs["block_hash"], es["block_hash"]);
        assert_eq!(vs["state_root"], es["state_root"]);
    }

    // The device is on the ledger, as seen from the edge.
    let key = trustedge_node::load_key(&device_key).unwrap();
    let addr = trustedge_types::Address::of_device(&key.public()).to_string();
    let r = run(
        &[
            "query",
            "--node",
            &e_url,
            "devices",
            &format!("device/{addr}"),
        ],
        QUICK,
    );
    assert!(r.ok(), "{}", r.describe());
    assert!(r.stdout.contains("\"phone\""), "{}", r.describe());

    // The served inclusion proof verifies offline, also against the genesis validators.
    let hash = Hash::from_hex(&tx_hash).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proof = rt
        .block_on(Client::new(v_url.clone()).tx_proof(&hash))
        .unwrap();
    let pf = dir.path().join("proof.json");
    std::fs::write(&pf, serde_json::to_string(&proof).unwrap()).unwrap();
    let g = home.join("genesis.json");
    let r = run(
        &[
            "verify-proof",
            pf.to_str().unwrap(),
            "--genesis",
            g.to_str().unwrap(),
        ],
        QUICK,
    );
    assert!(r.ok(), "{}", r.describe());
    assert_eq!(r.json()["valid"], true);

    // A replayed nonce is refused with its code and a non-zero exit.
    let r = run(
        &[
            "tx",
            "--node",
            &v_url,
            "--key",
            admin,
            "--nonce",
            "1",
            "send",
            "--module",
            "devices",
            "--call",
            &format!(r#"{{"suspend": {{"device": "{addr}"}}}}"#),
        ],
        QUICK,
    );
    assert!(!r.ok(), "{}", r.describe());
    assert!(
        r.stderr.contains("error [replayed_nonce]"),
        "{}",
        r.describe()
    );

    // An unauthorised call is committed as a failure and reported with its code.
    let r = run(
        &[
            "tx",
            "org",
            "propose-admission",
            "--org-id",
            "rogue",
            "--name",
            "Rogue",
            "--kind",
            "clinic",
            "--admin-key",
            &"11".repeat(32),
            "--node",
            &v_url,
            "--key",
            admin,
            "--wait",
        ],
        QUICK,
    );
    assert!(!r.ok(), "{}", r.describe());
    assert!(
        r.stderr.contains("error [access_denied]"),
        "{}",
        r.describe()
    );

    // A transaction from a file: the hospital adds an operator key.
    let operator = trustedge_types::Keypair::from_seed([42; 32])
        .public()
        .to_hex();
    let f = dir.path().join("add-member.json");
    std::fs::write(
        &f,
        format!(r#"{{"module": "orgs", "call": {{"add_member": {{"key": "{operator}", "role": "operator"}}}}}}"#),
    )
    .unwrap();
    let r = run(
        &[
            "tx",
            "file",
            f.to_str().unwrap(),
            "--node",
            &v_url,
            "--key",
            admin,
            "--wait",
        ],
        QUICK,
    );
    assert!(r.ok(), "{}", r.describe());
    assert!(r.stdout.contains("member_added"), "{}", r.describe());
    let r = run(
        &[
            "query",
            "--node",
            &v_url,
            "orgs",
            &format!("member/{operator}"),
        ],
        QUICK,
    );
    assert!(
        r.ok() && r.stdout.contains("hospital-1"),
        "{}",
        r.describe()
    );

    // Malformed input is an error, not a panic.
    for args in [
        vec![
            "tx", "--node", &v_url, "--key", admin, "send", "--module", "devices", "--call", "{",
        ],
        vec![
            "tx", "--node", &v_url, "--key", admin, "send", "--module", "nope", "--call", "{}",
        ],
        vec![
            "tx",
            "--node",
            "nonsense",
            "--key",
            admin,
            "anchor",
            "--record-type",
            "x",
            "--root",
            "zz",
            "--count",
            "1",
            "--from-ms",
            "1",
            "--to-ms",
            "2",
        ],
        vec!["block", "--node", &v_url, "--height", "999999", "--json"],
        vec!["query", "--node", &v_url, "devices", "nothing/here"],
        vec!["status", "--node", "http://127.0.0.1:9", "--json"],
    ] {
        let r = run(&args, QUICK);
        assert!(!r.ok(), "{args:?}: {}", r.describe());
        assert!(r.stderr.starts_with("error"), "{args:?}: {}", r.describe());
        assert!(!r.stderr.contains("panicked"), "{args:?}: {}", r.describe());
    }
}
