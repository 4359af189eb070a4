//! Followers: the same chain as upstream, forwarding, failures reported, sealing refused
//! for several validators.

use trustedge_node::{Mode, NodeOptions, Role, start_node};
use trustedge_types::Keypair;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_reaches_the_same_chain_and_forwards_transactions() {
    let s = sealer().await;
    let k = keys();
    let (t1, _) = register_device(&k.operator, 1, 100);
    committed(&s.client, &s.client.submit_tx(&t1).await.unwrap()).await;
    let t2 = anchor_batch(&k.operator, 2, 100);
    committed(&s.client, &s.client.submit_tx(&t2).await.unwrap()).await;

    let f = follower(&s.url()).await;
    assert_eq!(f.node.mode(), Mode::Follower);

    // Submitted to the follower, forwarded to the sealer, committed, followed back.
    let t3 = anchor_batch(&k.operator, 3, 101);
    let h3 = f.client.submit_tx(&t3).await.unwrap();
    assert_eq!(h3, t3.hash());
    let on_sealer = committed(&s.client, &h3).await;
    let on_follower = committed(&f.client, &h3).await;
    assert_eq!(on_sealer, on_follower);
    on_follower.verify(Some(&validator_set())).unwrap();

    // A bad transaction is refused by the follower itself, with the sealer's code.
    let (mut bad, _) = register_device(&k.operator, 4, 102);
    bad.signature.0[0] ^= 1;
    assert_refused(f.client.submit_tx(&bad).await, 401, "bad_signature");
    let (stale, _) = register_device(&k.operator, 1, 103);
    assert_refused(f.client.submit_tx(&stale).await, 409, "replayed_nonce");

    // Same blocks, same hashes, same state roots.
    let target = s.client.status().await.unwrap().height;
    reach_height(&f.client, target).await;
    for h in 1..=target {
        let (a, b) = (
            s.client.block(h).await.unwrap(),
            f.client.block(h).await.unwrap(),
        );
        assert_eq!((a.hash, a.state_root), (b.hash, b.state_root), "height {h}");
    }
    let fs = f.client.status().await.unwrap();
    assert_eq!((fs.role, fs.mode), (Role::Edge, Mode::Follower));
    let sync = fs.sync.unwrap();
    assert_eq!(sync.upstream.as_deref(), Some(s.url().as_str()));
    assert!(sync.upstream_height.unwrap() >= target);
    let metrics = f.client.metrics().await.unwrap();
    assert!(
        metrics.contains("trustedge_blocks_committed_total"),
        "{metrics}"
    );
    f.stop().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_without_a_reachable_upstream_says_so() {
    // Port 9 on loopback: nothing listens there.
    let f = follower("http://127.0.0.1:9").await;
    let k = keys();
    let (t, _) = register_device(&k.operator, 1, 110);
    let e = f.client.submit_tx(&t).await.unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(502), Some("forward_failed")),
        "{e}"
    );
    assert!(e.to_string().contains("127.0.0.1:9"), "{e}");
    // Local checks still come first.
    let stranger = Keypair::from_seed([98; 32]);
    let (t, _) = register_device(&stranger, 1, 111);
    assert_refused(f.client.submit_tx(&t).await, 401, "unknown_signer");
    // The follower reports why it is not following.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let sync = f.client.status().await.unwrap().sync.unwrap();
        if let Some(err) = sync.last_error {
            assert!(err.contains("127.0.0.1:9"), "{err}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no sync error reported"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let metrics = f.client.metrics().await.unwrap();
    assert!(
        metrics.contains("trustedge_txs_forward_failed_total 1"),
        "{metrics}"
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_validators_run_consensus_and_outsiders_follow() {
    let k = keys();
    let other = Keypair::from_seed([15; 32]);
    let two = genesis_with(&[&k.validator, &other]);
    // A validator of a multi-validator set takes part in consensus, upstream or not (with
    // the other validator down there is no quorum, so no block: only the mode is checked).
    for upstream in [vec![], vec!["http://127.0.0.1:9".to_string()]] {
        let port = free_port();
        let home = write_home(&two, Role::Validator, Some(&k.validator), &upstream, |c| {
            c.consensus.p2p_listen = format!("/ip4/127.0.0.1/tcp/{port}");
        });
        let n = start_node(home.path(), NodeOptions::default())
            .await
            .unwrap();
        assert_eq!(n.mode(), Mode::Consensus);
        n.shutdown().await.unwrap();
    }
    // A validator key outside the set cannot take part: it follows its upstream, and
    // without one it refuses to start.
    let outsider = Keypair::from_seed([16; 32]);
    let home = write_home(&two, Role::Validator, Some(&outsider), &[], |_| {});
    let e = start_node(home.path(), NodeOptions::default())
        .await
        .err()
        .expect("must refuse to start");
    assert!(e.to_string().contains("not one of the 2 validators"), "{e}");
    let home = write_home(
        &two,
        Role::Validator,
        Some(&outsider),
        &["http://127.0.0.1:9".into()],
        |_| {},
    );
    let n = start_node(home.path(), NodeOptions::default())
        .await
        .unwrap();
    assert_eq!(n.mode(), Mode::Follower);
    n.shutdown().await.unwrap();
}
