//! `trustedge tracing chains` against a cloud node laid out by `init` (which gives cloud
//! nodes `[contacts]`): typed refusals for an unknown case and a malformed id; a node without
//! `[contacts]` says so. The chains themselves are tested in the node's
//! `tests/it/contacts.rs`.

use std::time::Duration;

use trustedge_node::NodeConfig;

use crate::common::{eventually, free_ports, run, start_node};

const QUICK: Duration = Duration::from_secs(60);

#[test]
fn chains_asks_a_cloud_node_and_reports_typed_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("net");
    let h = home.to_str().unwrap();
    let base = free_ports(2);
    let r = run(
        &[
            "init",
            "--validators",
            "1",
            "--clouds",
            "1",
            "--home",
            h,
            "--base-port",
            &base.to_string(),
        ],
        QUICK,
    );
    assert!(r.ok(), "{}", r.describe());
    let cloud_config = NodeConfig::load(&home.join("cloud-0")).unwrap();
    assert!(cloud_config.contacts.is_some_and(|c| c.enabled));
    assert!(
        NodeConfig::load(&home.join("validator-0"))
            .unwrap()
            .contacts
            .is_none()
    );
    let _v = start_node(&home.join("validator-0"));
    let _c = start_node(&home.join("cloud-0"));
    let v_url = format!("http://127.0.0.1:{base}");
    let c_url = format!("http://127.0.0.1:{}", base + 1);
    for url in [&v_url, &c_url] {
        eventually(Duration::from_secs(60), "the node to answer", || {
            run(&["status", "--node", url, "--json"], QUICK)
                .ok()
                .then_some(())
        });
    }

    let case = "ab".repeat(32);
    let r = run(
        &[
            "tracing", "chains", "--node", &c_url, "--case", &case, "--json",
        ],
        QUICK,
    );
    assert!(!r.ok(), "{}", r.describe());
    assert!(r.stderr.contains("[unknown_case]"), "{}", r.describe());
    let r = run(
        &["tracing", "chains", "--node", &v_url, "--case", &case],
        QUICK,
    );
    assert!(r.stderr.contains("[contacts_disabled]"), "{}", r.describe());
    let r = run(
        &["tracing", "chains", "--node", &c_url, "--case", "zz"],
        QUICK,
    );
    assert!(!r.ok());
    assert!(r.stderr.contains("--case"), "{}", r.describe());
    let r = run(
        &[
            "tracing", "chains", "--node", &c_url, "--case", &case, "--hops", "17",
        ],
        QUICK,
    );
    assert!(!r.ok());
    assert!(r.stderr.contains("17"), "{}", r.describe());
}
