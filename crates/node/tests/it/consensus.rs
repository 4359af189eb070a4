//! Validators of a multi-validator chain: each node runs BFT consensus (Malachite) with the
//! others instead of sealing or following.

use trustedge_node::{Mode, Role};
use trustedge_types::Keypair;

use crate::common::*;

fn p2p(port: u16) -> String {
    format!("/ip4/127.0.0.1/tcp/{port}")
}

/// Four validator nodes commit a transaction through consensus and agree on the block, its
/// certificate and the state after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_validator_nodes_commit_through_consensus() {
    let k = keys();
    let validators: Vec<Keypair> = (0..4u8).map(|i| Keypair::from_seed([50 + i; 32])).collect();
    let g = genesis_with(&validators.iter().collect::<Vec<_>>());
    let set = g.validator_set().unwrap();
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let mut nodes = Vec::new();
    for (i, key) in validators.iter().enumerate() {
        let home = write_home(&g, Role::Validator, Some(key), &[], |c| {
            c.consensus.p2p_listen = p2p(ports[i]);
            c.consensus.persistent_peers =
                (0..4).filter(|j| *j != i).map(|j| p2p(ports[j])).collect();
            c.consensus.target_block_time_ms = 100;
        });
        nodes.push(start_home(home, None).await);
    }
    for n in &nodes {
        assert_eq!(n.node.mode(), Mode::Consensus);
        assert_eq!(n.client.status().await.unwrap().mode, Mode::Consensus);
    }

    // No gossip peers are configured here: offer the transaction to every validator, so
    // that whoever proposes next has it.
    let (tx, _) = register_device(&k.edge_admin, 1, 7);
    for n in &nodes {
        n.client.submit_tx(&tx).await.unwrap();
    }
    let proof = committed(&nodes[0].client, &tx.hash()).await;
    let height = proof.header.height;
    let cert = proof.certificate.clone().expect("a certificate");
    cert.verify(&proof.header, &set).unwrap();
    assert!(cert.signatures.len() >= 3, "a quorum of 3 of 4 signed");
    for n in &nodes {
        reach_height(&n.client, height).await;
        let b = n.client.block(height).await.unwrap();
        assert_eq!(b.hash, proof.header.hash(), "{}", n.url());
        assert_eq!(
            n.node.ledger().store().state_root(height).unwrap(),
            nodes[0].node.ledger().store().state_root(height).unwrap()
        );
    }
    for n in nodes {
        n.stop().await;
    }
}
