//! Transactions through the API into sealed blocks, and every read route over them.

use std::sync::Arc;
use std::time::Duration;

use trustedge_node::api::types::EventsQuery;
use trustedge_node::{ManualClock, Mode, Role};
use trustedge_types::{Address, TxOutcome};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_transactions_are_committed_with_results_and_events() {
    let n = sealer().await;
    let c = &n.client;
    let k = keys();

    // Three body forms: hex JSON (the client), a JSON SignedTx, raw bytes.
    let (reg, device) = register_device(&k.operator, 1, 50);
    let h1 = c.submit_tx(&reg).await.unwrap();
    assert_eq!(h1, reg.hash());
    let anchor1 = anchor_batch(&k.operator, 2, 1);
    let (status, body) = post_raw(
        &n.url(),
        "/v1/txs",
        "application/json",
        serde_json::to_vec(&anchor1).unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["hash"].as_str()),
        (202, Some(anchor1.hash().to_hex().as_str()))
    );
    let anchor2 = anchor_batch(&k.operator, 3, 2);
    let h3 = c.submit_raw(anchor2.to_bytes()).await.unwrap();
    assert_eq!(h3, anchor2.hash());

    let p1 = committed(c, &h1).await;
    assert_eq!(p1.result.outcome, TxOutcome::Success);
    let device_addr = Address::of_device(&device.public());
    let ev = &p1.result.events[0];
    assert_eq!(
        (ev.module.as_str(), ev.kind.as_str()),
        ("devices", "device_registered")
    );
    assert_eq!(ev.attr("device"), Some(device_addr.to_string().as_str()));
    let p2 = committed(c, &anchor1.hash()).await;
    assert!(p2.result.is_success());
    assert_eq!(p2.result.events[0].kind, "batch_anchored");
    committed(c, &h3).await;

    // Block JSON: top-level height, hash, state_root; decoded calls and results.
    let height = p1.header.height;
    let block = c.block(height).await.unwrap();
    assert_eq!(block.height, height);
    assert_eq!(block.hash, p1.header.hash());
    assert_eq!(block.state_root, p1.header.state_root);
    let (_, raw_json) = get_raw(&n.url(), &format!("/v1/blocks/{height}")).await;
    for field in [
        "height",
        "hash",
        "state_root",
        "header",
        "txs",
        "certificate",
    ] {
        assert!(
            raw_json.get(field).is_some(),
            "block JSON lacks {field}: {raw_json}"
        );
    }
    let btx = block
        .txs
        .iter()
        .find(|t| t.hash == h1)
        .expect("tx in its block");
    assert!(
        btx.call.as_ref().unwrap().get("register").is_some(),
        "{:?}",
        btx.call
    );
    assert!(btx.result.as_ref().unwrap().is_success());
    assert!(block.certificate.is_some());

    // The same block by hash, raw, and among the headers.
    assert_eq!(c.block_by_hash(&block.hash).await.unwrap().height, height);
    let (raw_block, cert) = c.block_raw(height).await.unwrap();
    assert_eq!(raw_block.hash(), block.hash);
    cert.verify(&raw_block.header, &validator_set()).unwrap();
    let latest = c.latest_block().await.unwrap();
    assert!(latest.height >= height);
    let headers = c.headers(1, latest.height).await.unwrap().headers;
    assert_eq!(headers.len() as u64, latest.height);
    assert_eq!(headers[(height - 1) as usize].hash, block.hash);

    // Convenience routes over module queries.
    let (s, dev) = get_raw(&n.url(), &format!("/v1/devices/{device_addr}")).await;
    assert_eq!(s, 200, "{dev}");
    assert_eq!(dev["status"], "active", "{dev}");
    let (s, list) = get_raw(&n.url(), "/v1/devices?org=edge-op&limit=10").await;
    assert_eq!(s, 200, "{list}");
    assert!(
        list.to_string().contains(&device_addr.to_string()),
        "{list}"
    );
    let (s, orgs) = get_raw(&n.url(), "/v1/orgs").await;
    assert_eq!(s, 200);
    assert!(orgs.to_string().contains("edge-op") && orgs.to_string().contains("\"ha\""));
    let (s, org) = get_raw(&n.url(), "/v1/orgs/ha").await;
    assert_eq!(
        (s, org["kind"].as_str()),
        (200, Some("health_authority")),
        "{org}"
    );
    let q = c.query("anchor", "list", &[("limit", "10")]).await.unwrap();
    assert!(q.to_string().contains("contact"), "{q}");

    // Nonces: the client builds the next transaction with last + 1.
    assert_eq!(c.last_nonce(&k.operator.public()).await.unwrap(), 3);
    assert_eq!(c.last_nonce(&k.ha_admin.public()).await.unwrap(), 0);

    // Events, filtered and paged.
    let regs = c
        .events(&EventsQuery {
            module: Some("devices".into()),
            kind: Some("device_registered".into()),
            ..EventsQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(regs.events.len(), 1);
    assert_eq!(regs.events[0].tx_hash, h1);
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = c
            .events(&EventsQuery {
                attr: Some("org_id:edge-op".into()),
                limit: Some(1),
                cursor: cursor.clone(),
                ..EventsQuery::default()
            })
            .await
            .unwrap();
        seen.extend(page.events.into_iter().map(|e| e.event.kind));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(seen.len() <= 10, "paging does not end");
    }
    seen.sort();
    assert_eq!(
        seen,
        vec!["batch_anchored", "batch_anchored", "device_registered"]
    );

    // Status and genesis.
    let st = c.status().await.unwrap();
    assert_eq!(
        (st.role, st.mode, st.chain_id.as_str()),
        (Role::Validator, Mode::Sealer, CHAIN_ID)
    );
    assert!(st.height >= height);
    assert_eq!(c.genesis().await.unwrap(), genesis());
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorised_action_is_committed_as_a_failed_result() {
    let n = sealer().await;
    let k = keys();
    // Anchoring is for edge operators; the health authority's admin may not.
    let t = anchor_batch(&k.ha_admin, 1, 7);
    let h = n.client.submit_tx(&t).await.unwrap();
    let p = committed(&n.client, &h).await;
    match &p.result.outcome {
        TxOutcome::Failed(f) => {
            assert_eq!(f.code, "access_denied", "{f:?}");
            assert!(f.message.contains("requires"), "{f:?}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(p.result.events.is_empty());
    // The nonce is spent all the same: the same transaction can never run again.
    assert_eq!(n.client.last_nonce(&k.ha_admin.public()).await.unwrap(), 1);
    let block = n.client.block(p.header.height).await.unwrap();
    let r = block
        .txs
        .iter()
        .find(|t| t.hash == h)
        .unwrap()
        .result
        .clone()
        .unwrap();
    assert!(!r.is_success());
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_injected_clock_sets_block_times() {
    let start = GENESIS_TIME_MS + 10_000;
    let clock = Arc::new(ManualClock::new(start));
    let home = write_home(
        &genesis(),
        Role::Validator,
        Some(&keys().validator),
        &[],
        |c| {
            c.block_interval_ms = 10;
            c.empty_block_interval_ms = 1000;
        },
    );
    let n = start_home(home, Some(clock.clone())).await;
    // The clock stands still: no empty block is due.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(n.client.status().await.unwrap().height, 0);
    clock.advance(1000);
    reach_height(&n.client, 1).await;
    assert_eq!(
        n.client.block(1).await.unwrap().header.time_ms,
        start + 1000
    );
    // A waiting transaction makes a block due at once; its time is one past the parent's.
    let (t, _) = register_device(&keys().operator, 1, 51);
    let h = n.client.submit_tx(&t).await.unwrap();
    let p = committed(&n.client, &h).await;
    assert_eq!(p.header.height, 2);
    assert_eq!(p.header.time_ms, start + 1001);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_keeps_its_chain() {
    let n = sealer().await;
    let (t, _) = register_device(&keys().operator, 1, 52);
    let h = n.client.submit_tx(&t).await.unwrap();
    let p = committed(&n.client, &h).await;
    let TestNode { node, home, .. } = n;
    node.shutdown().await.unwrap();
    let n = start_home(home, None).await;
    let st = n.client.status().await.unwrap();
    assert!(st.height >= p.header.height);
    assert_eq!(
        n.client.block(p.header.height).await.unwrap().hash,
        p.header.hash()
    );
    assert_eq!(committed(&n.client, &h).await, p);
    n.stop().await;
}
