//! The OpenAPI document and the metrics.

use trustedge_node::api::ROUTES;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_every_route() {
    let n = sealer().await;
    let doc = n.client.openapi().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in ROUTES {
        let op = &paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is not documented"))[*method];
        assert!(op.is_object(), "{method} {path} is not documented");
        assert!(
            op["responses"].is_object(),
            "{method} {path} has no responses"
        );
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    // The document is parseable again as an OpenAPI value.
    let documented = paths.len();
    let again: utoipa::openapi::OpenApi = serde_json::from_value(doc.clone()).unwrap();
    assert_eq!(again.paths.paths.len(), documented);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_transactions_blocks_and_requests() {
    let n = sealer().await;
    let k = keys();
    let (t, _) = register_device(&k.operator, 1, 120);
    let h = n.client.submit_tx(&t).await.unwrap();
    committed(&n.client, &h).await;
    let (mut bad, _) = register_device(&k.operator, 2, 121);
    bad.signature.0[0] ^= 1;
    assert!(n.client.submit_tx(&bad).await.is_err());
    let m = n.client.metrics().await.unwrap();
    for needle in [
        "trustedge_txs_submitted_total 2",
        "trustedge_txs_accepted_total 1",
        "trustedge_txs_rejected_total{code=\"bad_signature\"} 1",
        "trustedge_blocks_committed_total",
        "trustedge_block_txs_committed_total 1",
        "trustedge_height ",
        "trustedge_mempool_txs ",
        "trustedge_commit_duration_seconds_bucket",
        "trustedge_http_requests_total{method=\"POST\",route=\"/v1/txs\",status=\"202\"} 1",
        "trustedge_http_requests_total{method=\"POST\",route=\"/v1/txs\",status=\"401\"} 1",
        "route=\"/v1/txs/{hash}\"",
    ] {
        assert!(m.contains(needle), "metrics lack {needle:?}:\n{m}");
    }
    n.stop().await;
}
