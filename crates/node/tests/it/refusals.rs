//! Every bad input gets its status and stable code, as JSON.

use trustedge_contracts::OrgsCall;
use trustedge_types::{Keypair, Payload, TxBody};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_transactions_get_their_status_and_code() {
    let n = sealer().await;
    let c = &n.client;
    let url = n.url();
    let k = keys();

    // Undecodable bodies: 400 malformed.
    for (ctype, body) in [
        ("application/json", br#"{"tx": "zz-not-hex"}"#.to_vec()),
        ("application/json", br#"{"tx": "0102"}"#.to_vec()),
        ("application/json", b"{not json".to_vec()),
        ("application/json", br#"{"body": 1}"#.to_vec()),
        ("application/octet-stream", vec![1, 2, 3]),
        ("application/octet-stream", Vec::new()),
    ] {
        let (status, e) = post_raw(&url, "/v1/txs", ctype, body.clone()).await;
        assert_eq!(
            (status, e["code"].as_str()),
            (400, Some("malformed")),
            "{body:?}: {e}"
        );
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    let (status, e) = post_raw(&url, "/v1/txs", "text/plain", b"hi".to_vec()).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );

    // A flipped signature byte.
    let (mut t, _) = register_device(&k.operator, 1, 60);
    t.signature.0[0] ^= 1;
    assert_refused(c.submit_tx(&t).await, 401, "bad_signature");

    // Signed for another chain.
    let (t, _) = register_device(&k.operator, 1, 60);
    let mut other = t.body.clone();
    other.chain_id = "another-chain".into();
    assert_refused(
        c.submit_tx(&other.sign(&k.operator)).await,
        422,
        "wrong_chain_id",
    );

    // Past its expiry height.
    let mut expired = t.body.clone();
    expired.expiry_height = 0;
    assert_refused(
        c.submit_tx(&expired.sign(&k.operator)).await,
        422,
        "expired",
    );

    // A key the ledger does not know.
    let stranger = Keypair::from_seed([99; 32]);
    let (t, _) = register_device(&stranger, 1, 61);
    assert_refused(c.submit_tx(&t).await, 401, "unknown_signer");

    // Unknown module and undecodable call.
    let bad_module = TxBody {
        chain_id: CHAIN_ID.into(),
        signer: k.operator.public(),
        nonce: 1,
        expiry_height: 1000,
        payload: Payload {
            module: "nosuch".into(),
            call: vec![0],
        },
    };
    assert_refused(
        c.submit_tx(&bad_module.clone().sign(&k.operator)).await,
        400,
        "unknown_module",
    );
    let mut bad_call = bad_module;
    bad_call.payload = Payload {
        module: "devices".into(),
        call: vec![0xff; 3],
    };
    assert_refused(
        c.submit_tx(&bad_call.sign(&k.operator)).await,
        400,
        "malformed_call",
    );

    // Replays: once committed, the same transaction and its nonce are spent.
    let (t1, _) = register_device(&k.operator, 1, 62);
    let h1 = c.submit_tx(&t1).await.unwrap();
    committed(c, &h1).await;
    assert_refused(c.submit_tx(&t1).await, 409, "already_committed");
    let (t1b, _) = register_device(&k.operator, 1, 63);
    assert_refused(c.submit_tx(&t1b).await, 409, "replayed_nonce");

    // A revoked key: the edge operator's admin revokes its operator.
    let revoke = tx(
        &k.edge_admin,
        1,
        "orgs",
        &OrgsCall::RevokeKey {
            key: k.operator.public(),
        },
    );
    let p = committed(c, &c.submit_tx(&revoke).await.unwrap()).await;
    assert!(p.result.is_success(), "{:?}", p.result);
    let (t2, _) = register_device(&k.operator, 2, 64);
    assert_refused(c.submit_tx(&t2).await, 403, "revoked_signer");

    // A body over max_request_bytes (2 MiB), and a transaction over its own limit.
    let (status, e) =
        post_declared_length(&url, "/v1/txs", "application/octet-stream", 3 * 1024 * 1024).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (413, Some("too_large")),
        "{e}"
    );
    let (status, e) = post_raw(
        &url,
        "/v1/txs",
        "application/octet-stream",
        vec![0u8; 100 * 1024],
    )
    .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (413, Some("too_large")),
        "{e}"
    );
    // Only the body limit can refuse this one: a 3 MiB batch of small (malformed) items
    // would otherwise be a 200 with an error per item.
    let (status, e) =
        post_declared_length(&url, "/v1/txs/batch", "application/json", 3 * 1024 * 1024).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (413, Some("too_large")),
        "a body over max_request_bytes was not refused"
    );
    let huge_batch = serde_json::to_vec(&serde_json::json!({"txs": vec!["00"; 10_001]})).unwrap();
    let (status, e) = post_raw(&url, "/v1/txs/batch", "application/json", huge_batch).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (413, Some("too_large")),
        "{e}"
    );

    // Nothing above was a server error.
    let metrics = c.metrics().await.unwrap();
    assert!(!metrics.contains("status=\"500\""), "{metrics}");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reads_get_their_status_and_code() {
    let n = sealer().await;
    let url = n.url();
    let zero = "00".repeat(32);
    let cases: Vec<(String, u16, &str)> = vec![
        ("/v1/blocks/abc".into(), 400, "invalid_path"),
        ("/v1/blocks/-1".into(), 400, "invalid_path"),
        ("/v1/blocks/999999".into(), 404, "not_found"),
        ("/v1/blocks/999999/raw".into(), 404, "not_found"),
        (format!("/v1/blocks/hash/{zero}"), 404, "not_found"),
        ("/v1/blocks/hash/xyz".into(), 400, "invalid_path"),
        ("/v1/txs/zz".into(), 400, "invalid_path"),
        (format!("/v1/txs/{zero}"), 404, "not_found"),
        (format!("/v1/txs/{zero}/proof"), 404, "not_found"),
        ("/v1/headers?from=x".into(), 400, "invalid_query"),
        ("/v1/headers?from=1&to=5000".into(), 400, "invalid_query"),
        ("/v1/headers?from=5&to=1".into(), 400, "invalid_query"),
        ("/v1/state".into(), 400, "invalid_query"),
        ("/v1/state?key=zz".into(), 400, "invalid_query"),
        ("/v1/state?key=00&path=a/b".into(), 400, "invalid_query"),
        ("/v1/state?path=nomodule".into(), 400, "invalid_query"),
        ("/v1/state?key=00&height=999999".into(), 404, "not_found"),
        ("/v1/events?limit=0".into(), 400, "invalid_query"),
        ("/v1/events?limit=5000".into(), 400, "invalid_query"),
        ("/v1/events?cursor=nope".into(), 400, "invalid_query"),
        ("/v1/events?attr=novalue".into(), 400, "invalid_query"),
        ("/v1/query/nosuch/x".into(), 404, "not_found"),
        ("/v1/query/orgs/nosuch".into(), 404, "not_found"),
        ("/v1/query/orgs/list?limit=0".into(), 400, "invalid_query"),
        ("/v1/orgs/nobody".into(), 404, "not_found"),
        ("/v1/devices/not-an-address".into(), 400, "invalid_query"),
        ("/v1/accounts/xyz/nonce".into(), 400, "invalid_path"),
        ("/v1/nothing/here".into(), 404, "not_found"),
    ];
    for (path, status, code) in cases {
        let (s, e) = get_raw(&url, &path).await;
        assert_eq!((s, e["code"].as_str()), (status, Some(code)), "{path}: {e}");
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{path}: {e}"
        );
    }
    // A known route with the wrong method: 405, still JSON.
    let resp = reqwest::Client::new()
        .delete(format!("{url}/v1/txs"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let e: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(e["code"], "method_not_allowed");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mempool_answers_429() {
    // A mempool of two and no sealing during the test.
    let n = sealer_with(|c| {
        c.mempool.max_txs = 2;
        c.block_interval_ms = 3_600_000;
        c.empty_block_interval_ms = 3_600_000;
    })
    .await;
    let c = &n.client;
    let k = keys();
    let (t1, _) = register_device(&k.operator, 1, 70);
    let (t2, _) = register_device(&k.operator, 2, 71);
    let (t3, _) = register_device(&k.operator, 3, 72);
    c.submit_tx(&t1).await.unwrap();
    c.submit_tx(&t2).await.unwrap();
    assert_refused(c.submit_tx(&t3).await, 429, "mempool_full");
    assert_refused(c.submit_tx(&t1).await, 409, "duplicate");
    assert!(matches!(
        c.tx_status(&t1.hash()).await.unwrap(),
        trustedge_chain::TxStatus::Pending
    ));
    let batch = c.submit_batch(std::slice::from_ref(&t3)).await.unwrap();
    assert_eq!((batch.accepted, batch.rejected), (0, 1));
    assert_eq!(
        batch.results[0].error.as_ref().unwrap().code,
        "mempool_full"
    );
    let (s, e) = get_raw(&n.url(), "/v1/blocks/latest").await;
    assert_eq!((s, e["code"].as_str()), (404, Some("not_found")));
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_reports_each_transaction() {
    let n = sealer().await;
    let k = keys();
    let (good, _) = register_device(&k.operator, 1, 80);
    let (mut bad, _) = register_device(&k.operator, 2, 81);
    bad.signature.0[1] ^= 1;
    let (s, body) = post_raw(
        &n.url(),
        "/v1/txs/batch",
        "application/json",
        serde_json::to_vec(&serde_json::json!({
            "txs": [hex::encode(good.to_bytes()), "nothex", hex::encode(bad.to_bytes())]
        }))
        .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["rejected"], 2);
    assert_eq!(body["results"][0]["hash"], good.hash().to_hex());
    assert_eq!(body["results"][1]["error"]["code"], "malformed");
    assert_eq!(body["results"][2]["error"]["code"], "bad_signature");
    committed(&n.client, &good.hash()).await;
    n.stop().await;
}
