//! Mempool gossip: a transaction submitted to any node reaches the sealing validator; a full
//! peer's 429 is retried, not lost; gossip is not relayed; an unreachable peer is given up
//! on, counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use trustedge_node::api::types::{BatchItem, SubmitBatchRequest, SubmitBatchResponse};
use trustedge_node::gossip::{GOSSIP_HEADER, Gossip, GossipLimits, GossipTx};
use trustedge_node::metrics::Metrics;
use trustedge_node::{Mode, NodeConfig, Role};
use trustedge_types::{Hash, Keypair};

use crate::common::*;

/// A validator that does not seal (the genesis names another key) and follows `upstream`.
async fn peer_validator(seed: u8, upstream: &str, tweak: impl FnOnce(&mut NodeConfig)) -> TestNode {
    let home = write_home(
        &genesis(),
        Role::Validator,
        Some(&Keypair::from_seed([seed; 32])),
        &[upstream.to_string()],
        tweak,
    );
    start_home(home, None).await
}

/// Polls `metrics` until one line starts with `prefix` and its value satisfies `ok`.
async fn metric_eventually(
    client: &trustedge_node::Client,
    prefix: &str,
    ok: impl Fn(f64) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = client.metrics().await.unwrap();
        let value = text
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        if value.is_some_and(&ok) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: no {prefix} with the wanted value; metrics:\n{text}",
            client.url()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_submitted_to_a_non_sealing_node_is_committed_through_gossip() {
    let s = sealer().await;
    let b = peer_validator(41, &s.url(), |c| c.gossip_peers = vec![s.url()]).await;
    let a = peer_validator(42, &s.url(), |c| c.gossip_peers = vec![s.url(), b.url()]).await;
    assert_eq!(
        (a.node.mode(), b.node.mode()),
        (Mode::Follower, Mode::Follower)
    );
    let k = keys();

    // One at a time, then a batch: each reaches the sealer only by gossip (a node with
    // gossip peers does not forward).
    let (t1, _) = register_device(&k.operator, 1, 120);
    let h1 = a.client.submit_tx(&t1).await.unwrap();
    let batch: Vec<_> = (2..=6u8)
        .map(|n| register_device(&k.operator, u64::from(n), 120 + n).0)
        .collect();
    let r = a.client.submit_batch(&batch).await.unwrap();
    assert_eq!(r.accepted, batch.len(), "{r:?}");
    for h in std::iter::once(h1).chain(batch.iter().map(|t| t.hash())) {
        let on_sealer = committed(&s.client, &h).await;
        assert!(on_sealer.result.is_success(), "{:?}", on_sealer.result);
        assert_eq!(committed(&a.client, &h).await, on_sealer);
        assert_eq!(committed(&b.client, &h).await, on_sealer);
    }

    // The submitting node pushed all six to both peers; the peer that received them by
    // gossip did not push them on to the sealer.
    let sealer_label = format!("trustedge_gossip_txs_sent_total{{peer=\"{}\"}}", s.url());
    metric_eventually(&a.client, &sealer_label, |v| v == 6.0).await;
    metric_eventually(&b.client, "trustedge_gossip_txs_received_total", |v| {
        v == 6.0
    })
    .await;
    let b_metrics = b.client.metrics().await.unwrap();
    assert_eq!(
        metric(&b_metrics, "trustedge_gossip_txs_queued_total"),
        None,
        "{b_metrics}"
    );
    let a_metrics = a.client.metrics().await.unwrap();
    assert_eq!(
        metric(&a_metrics, "trustedge_gossip_txs_dropped_total"),
        None
    );
    assert_eq!(
        metric(&a_metrics, "trustedge_txs_accepted_total"),
        Some(6.0)
    );

    // Refusals are still the submitting node's own, before any gossip.
    let (stale, _) = register_device(&k.operator, 1, 140);
    assert_refused(a.client.submit_tx(&stale).await, 409, "replayed_nonce");

    a.stop().await;
    b.stop().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gossip_batch_to_a_full_peer_is_retried_not_lost() {
    // The sealer holds at most 3 transactions: a push of 12 is mostly refused with
    // `mempool_full` until blocks drain it.
    let s = sealer_with(|c| c.mempool.max_txs = 3).await;
    let o = peer_validator(43, &s.url(), |c| {
        c.gossip_peers = vec![s.url()];
        c.gossip.retry_base_ms = 10;
        c.gossip.retry_max_ms = 50;
    })
    .await;
    let k = keys();
    let txs: Vec<_> = (1..=12u8)
        .map(|n| anchor_batch(&k.operator, u64::from(n), 150 + n))
        .collect();
    let r = o.client.submit_batch(&txs).await.unwrap();
    assert_eq!(r.accepted, 12, "{r:?}");
    for t in &txs {
        let p = committed(&s.client, &t.hash()).await;
        assert!(p.result.is_success(), "{:?}", p.result);
    }
    let text = o.client.metrics().await.unwrap();
    let retries = metric(
        &text,
        &format!(
            "trustedge_gossip_retries_total{{peer=\"{}\",reason=\"full\"}}",
            s.url()
        ),
    );
    assert!(retries.is_some_and(|r| r >= 1.0), "{text}");
    assert_eq!(
        metric(&text, "trustedge_gossip_txs_dropped_total"),
        None,
        "{text}"
    );
    o.stop().await;
    s.stop().await;
}

/// A fake peer that answers 429 to its first `refuse` batches, then takes everything.
async fn fake_peer(refuse: usize) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let taken = Arc::new(AtomicUsize::new(0));
    let (c, t) = (calls.clone(), taken.clone());
    let app = axum::Router::new().route(
        "/v1/txs/batch",
        axum::routing::post(
            move |headers: HeaderMap, Json(req): Json<SubmitBatchRequest>| {
                let (c, t) = (c.clone(), t.clone());
                async move {
                    assert!(headers.contains_key(GOSSIP_HEADER), "gossip must be marked");
                    if c.fetch_add(1, Ordering::SeqCst) < refuse {
                        let body = serde_json::json!({"code": "mempool_full", "message": "full"});
                        return (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
                    }
                    t.fetch_add(req.txs.len(), Ordering::SeqCst);
                    let results = req
                        .txs
                        .iter()
                        .map(|_| BatchItem {
                            hash: Some(Hash::ZERO),
                            error: None,
                        })
                        .collect();
                    Json(SubmitBatchResponse {
                        results,
                        accepted: req.txs.len(),
                        rejected: 0,
                    })
                    .into_response()
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls, taken)
}

fn items(n: u8) -> Vec<Arc<GossipTx>> {
    (0..n)
        .map(|i| GossipTx::new(Hash::sha256(&[i]), "ab".repeat(50)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_answering_429_is_retried_with_backoff_and_counted() {
    let (url, calls, taken) = fake_peer(3).await;
    let metrics = Arc::new(Metrics::new());
    let limits = GossipLimits {
        max_batch_txs: 4,
        retry_base_ms: 10,
        retry_max_ms: 40,
        ..GossipLimits::default()
    };
    let g = Gossip::new(
        std::slice::from_ref(&url),
        limits,
        Duration::from_secs(5),
        metrics.clone(),
    );
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = g.start(stop_rx);
    g.push(&items(10));
    let deadline = Instant::now() + WAIT;
    while taken.load(Ordering::SeqCst) < 10 {
        assert!(
            Instant::now() < deadline,
            "not delivered: {}",
            metrics.encode()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The peer counts a batch before its answer reaches the gossip worker, which counts it
    // as sent only then: wait for the worker too.
    let sent = format!("trustedge_gossip_txs_sent_total{{peer=\"{url}\"}} 10");
    while !metrics.encode().contains(&sent) {
        assert!(
            Instant::now() < deadline,
            "delivered but not counted as sent: {}",
            metrics.encode()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // 3 refusals, then 3 batches of at most 4.
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    let text = metrics.encode();
    assert!(
        text.contains(&format!(
            "trustedge_gossip_retries_total{{peer=\"{url}\",reason=\"full\"}} 3"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "trustedge_gossip_txs_sent_total{{peer=\"{url}\"}} 10"
        )),
        "{text}"
    );
    assert!(!text.contains("gossip_txs_dropped_total{"), "{text}");
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_peer_is_given_up_on_and_counted() {
    // Port 9 on loopback: nothing listens there.
    let url = "http://127.0.0.1:9".to_string();
    let metrics = Arc::new(Metrics::new());
    let limits = GossipLimits {
        retry_base_ms: 10,
        retry_max_ms: 20,
        give_up_ms: 150,
        ..GossipLimits::default()
    };
    let g = Gossip::new(
        std::slice::from_ref(&url),
        limits,
        Duration::from_secs(1),
        metrics.clone(),
    );
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = g.start(stop_rx);
    g.push(&items(5));
    let label = format!(
        "trustedge_gossip_txs_dropped_total{{peer=\"{url}\",reason=\"gave_up_unreachable\"}} 5"
    );
    let deadline = Instant::now() + WAIT;
    while !metrics.encode().contains(&label) {
        assert!(Instant::now() < deadline, "{}", metrics.encode());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(g.queued(), vec![0]);
    // Later transactions are tried again from scratch.
    g.push(&items(2));
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[test]
fn gossip_peers_are_validated_in_the_config() {
    let mut c = NodeConfig::new("v", Role::Validator, "127.0.0.1:1", "http://127.0.0.1:1");
    c.key_path = Some("key.json".into());
    c.gossip_peers = vec!["http://127.0.0.1:2".into()];
    assert_eq!(c.validate(), Ok(()));
    c.gossip_peers = vec!["http://127.0.0.1:1".into()];
    assert!(c.validate().unwrap_err().contains("own api_url"));
    c.gossip_peers = vec!["ftp://x".into()];
    assert!(c.validate().unwrap_err().contains("gossip_peers"));
    let dir = tempfile::tempdir().unwrap();
    c.gossip_peers = vec!["http://127.0.0.1:2".into(), "http://127.0.0.1:3".into()];
    c.save(dir.path()).unwrap();
    assert_eq!(NodeConfig::load(dir.path()).unwrap(), c);
}
