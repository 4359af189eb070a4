//! A follower refuses what a lying upstream serves, says why, and stays where it was.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use trustedge_node::Client;
use trustedge_types::{CommitCertificate, CommitSig, Hash};

use crate::common::*;

#[derive(Clone, Copy, Debug)]
enum Lie {
    /// Bytes that are no block at all.
    Garbage,
    /// The real block with a forged certificate signature.
    ForgedCertificate,
    /// A block whose state root is wrong, with a certificate the validator really signed:
    /// only re-executing the block can catch it.
    WrongStateRoot,
    /// No lie: serve the real blocks.
    None,
}

#[derive(Clone)]
struct Fake {
    real: Client,
    lie: Lie,
}

async fn status(State(f): State<Fake>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::to_value(f.real.status().await.unwrap()).unwrap())
}

async fn raw(State(f): State<Fake>, Path(h): Path<u64>) -> Vec<u8> {
    let (mut block, mut cert) = f.real.block_raw(h).await.unwrap();
    match f.lie {
        Lie::None => {}
        Lie::Garbage => return vec![0xde, 0xad, 0xbe, 0xef],
        Lie::ForgedCertificate => cert.signatures[0].signature.0[0] ^= 1,
        Lie::WrongStateRoot => {
            block.header.state_root = Hash([9; 32]);
            let v = keys().validator;
            let hash = block.header.hash();
            let msg = CommitCertificate::sign_bytes(CHAIN_ID, h, 0, &hash);
            cert = CommitCertificate {
                height: h,
                round: 0,
                block_hash: hash,
                signatures: vec![CommitSig {
                    validator: trustedge_types::Address::of_member(&v.public()),
                    signature: v.sign(&msg),
                }],
            };
        }
    }
    trustedge_types::encode(&(block, cert))
}

async fn lying_upstream(real: &str, lie: Lie) -> String {
    let app = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/blocks/{h}/raw", get(raw))
        .with_state(Fake {
            real: Client::new(real),
            lie,
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_refuses_what_a_lying_upstream_serves() {
    let s = sealer().await;
    reach_height(&s.client, 1).await;
    for (lie, expect) in [
        (Lie::Garbage, "bad response"),
        (Lie::ForgedCertificate, "invalid certificate"),
        (Lie::WrongStateRoot, "state_root"),
    ] {
        let fake = lying_upstream(&s.url(), lie).await;
        let f = follower(&fake).await;
        let deadline = Instant::now() + WAIT;
        let err = loop {
            let st = f.client.status().await.unwrap();
            if let Some(e) = st.sync.and_then(|s| s.last_error) {
                break e;
            }
            assert!(Instant::now() < deadline, "{lie:?}: no error reported");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(err.contains(expect), "{lie:?}: {err}");
        assert_eq!(
            f.client.status().await.unwrap().height,
            0,
            "{lie:?} was accepted"
        );
        f.stop().await;
    }
    s.stop().await;
}

async fn refuse_tx() -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    (
        axum::http::StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({"code": "revoked_signer", "message": "revoked upstream"})),
    )
}

/// An upstream that follows the real chain but refuses every forwarded transaction (as a
/// validator would once the signer's revocation is committed there first).
async fn refusing_upstream(real: &str) -> String {
    let app = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/blocks/{h}/raw", get(raw))
        .route("/v1/txs", axum::routing::post(refuse_tx))
        .with_state(Fake {
            real: Client::new(real),
            lie: Lie::None,
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_the_upstream_refuses_does_not_stay_pending_on_the_follower() {
    let s = sealer().await;
    let fake = refusing_upstream(&s.url()).await;
    let f = follower(&fake).await;
    let (tx, _) = register_device(&keys().ha_admin, 1, 77);
    let err = f.client.submit_tx(&tx).await.unwrap_err();
    assert!(err.to_string().contains("revoked_signer"), "{err}");
    let status = f.client.tx_status(&tx.hash()).await.unwrap();
    assert!(
        matches!(status, trustedge_chain::TxStatus::Unknown),
        "refused transaction still reported as {status:?}"
    );
    f.stop().await;
    s.stop().await;
}
