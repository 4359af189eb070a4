//! Integration tests of consensus: networks of in-process validators on loopback, each with
//! its own store, WAL and engine, through relays a test can cut.
#![allow(clippy::unwrap_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::Cluster;

/// Four validators keep one history: identical blocks and state roots at every height, with
/// certificates that verify against the validator set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_validators_agree() {
    let _serial = support::serial().lock().await;
    let t = Instant::now();
    let mut c = Cluster::new(4).await;
    c.start_all().await;
    c.submit_everywhere(&support::device_txs(1, 20));
    c.wait_for_height(&[0, 1, 2, 3], 10, Duration::from_secs(60))
        .await;
    let common = c.assert_agree(&[0, 1, 2, 3]);
    assert!(common >= 10);
    // The transactions made it into the chain (whoever proposed first had them).
    let committed: usize = (1..=common)
        .map(|h| {
            c.nodes[0]
                .ledger()
                .store()
                .block(h)
                .unwrap()
                .unwrap()
                .txs
                .len()
        })
        .sum();
    assert_eq!(committed, 20, "all 20 transactions committed once");
    for i in 0..4 {
        let s = c.stats(i);
        assert_eq!(
            (s.commit_failures, s.invalid_proposals, s.refused_proposals),
            (0, 0, 0),
            "validator {i}: {s:?}"
        );
        assert!(
            s.committed >= 5,
            "validator {i} committed through consensus: {s:?}"
        );
    }
    c.stop_all().await;
    eprintln!("four_validators_agree: {:?}", t.elapsed());
}

/// A stopped validator does not stop the others; restarted from its WAL and stores, it
/// catches up through value sync and holds the same history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_validator_catches_up() {
    let _serial = support::serial().lock().await;
    let t = Instant::now();
    let mut c = Cluster::new(4).await;
    c.start_all().await;
    c.wait_for_height(&[0, 1, 2, 3], 3, Duration::from_secs(60))
        .await;

    c.stop(3).await;
    let at_stop = c.max_height(&[0, 1, 2]);
    c.submit_everywhere(&support::device_txs(1, 10));
    c.wait_for_height(&[0, 1, 2], at_stop + 6, Duration::from_secs(60))
        .await;
    c.assert_agree(&[0, 1, 2]);

    c.start(3).await;
    let target = c.max_height(&[0, 1, 2]) + 2;
    c.wait_for_height(&[0, 1, 2, 3], target, Duration::from_secs(60))
        .await;
    let common = c.assert_agree(&[0, 1, 2, 3]);
    assert!(common >= target);
    let s = c.stats(3);
    assert!(
        s.synced_blocks > 0,
        "the restarted validator caught up by value sync: {s:?}"
    );
    assert_eq!(s.commit_failures, 0, "{s:?}");
    c.stop_all().await;
    eprintln!("crashed_validator_catches_up: {:?}", t.elapsed());
}

/// With two of four validators down there is no quorum: no new height and no fork. When one
/// comes back, the chain moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_down_halts_then_resumes() {
    let _serial = support::serial().lock().await;
    let t = Instant::now();
    let mut c = Cluster::new(4).await;
    c.start_all().await;
    c.wait_for_height(&[0, 1, 2, 3], 3, Duration::from_secs(60))
        .await;

    c.stop(2).await;
    c.stop(3).await;
    // Let decisions already in flight land.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let halted = c.max_height(&[0, 1]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        c.max_height(&[0, 1]),
        halted,
        "two of four validators made progress"
    );
    c.assert_agree(&[0, 1]);

    c.start(2).await;
    c.wait_for_height(&[0, 1, 2], halted + 3, Duration::from_secs(60))
        .await;
    c.assert_agree(&[0, 1, 2]);
    c.stop_all().await;
    eprintln!("two_down_halts_then_resumes: {:?}", t.elapsed());
}

/// A Byzantine validator that proposes blocks the ledger refuses, and equivocates (two
/// conflicting votes per step, two conflicting proposals per round), causes neither a fork
/// nor the commit of any of its blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byzantine_validator_cannot_fork_or_commit_invalid_blocks() {
    use trustedge_consensus::engine::byzantine::{ByzantineConfig, Trigger};
    let _serial = support::serial().lock().await;
    let t = Instant::now();
    let mut c = Cluster::new(4).await;
    c.options[0].faults.invalid_proposals = true;
    c.options[0].byzantine = Some(
        ByzantineConfig::new(Some(7))
            .with_equivocate_votes(Trigger::Always)
            .with_equivocate_proposals(Trigger::Always),
    );
    c.start_all().await;
    c.submit_everywhere(&support::device_txs(1, 10));
    c.wait_for_height(&[1, 2, 3], 10, Duration::from_secs(90))
        .await;
    let common = c.assert_agree(&[1, 2, 3]);
    let byzantine = trustedge_types::Address::of_member(&support::validator_key(0).public());
    for h in 1..=common {
        let header = c.nodes[1].ledger().store().header(h).unwrap().unwrap();
        assert_ne!(
            header.proposer, byzantine,
            "a block of the Byzantine validator at {h}"
        );
    }
    // The Byzantine validator's own ledger follows the same history.
    c.assert_agree(&[0, 1, 2, 3]);
    // The faults happened and were caught where they should be: honest validators judged
    // its blocks invalid and saw its equivocations, and never decided a block they could
    // not commit.
    let honest: Vec<_> = [1, 2, 3].iter().map(|i| c.stats(*i)).collect();
    assert!(honest.iter().all(|s| s.commit_failures == 0), "{honest:?}");
    assert!(
        honest.iter().map(|s| s.invalid_proposals).sum::<u64>() > 0,
        "{honest:?}"
    );
    assert!(
        honest.iter().map(|s| s.misbehaviour_reports).sum::<u64>() > 0,
        "{honest:?}"
    );
    c.stop_all().await;
    eprintln!(
        "byzantine_validator_cannot_fork_or_commit_invalid_blocks: {:?}",
        t.elapsed()
    );
}

/// Partitions: an isolated validator falls behind while the other three go on; split two
/// against two nobody progresses; healed, everybody converges on one history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_heal_without_fork() {
    let _serial = support::serial().lock().await;
    let t = Instant::now();
    let mut c = Cluster::new(4).await;
    c.start_all().await;
    let all = [0, 1, 2, 3];
    c.wait_for_height(&all, 3, Duration::from_secs(60)).await;

    // One against three: the three go on.
    c.partition(&[3], &[0, 1, 2], true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let isolated = c.height(3);
    let majority = c.max_height(&[0, 1, 2]);
    c.wait_for_height(&[0, 1, 2], majority + 3, Duration::from_secs(60))
        .await;
    assert!(
        c.height(3) <= isolated + 1,
        "an isolated validator made progress"
    );
    c.assert_agree(&all);

    // Two against two: nobody does.
    c.heal_all();
    c.partition(&[0, 1], &[2, 3], true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let split = c.max_height(&all);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        c.max_height(&all),
        split,
        "a half of the network made progress"
    );
    c.assert_agree(&all);

    // Healed: one history again, and it grows.
    c.heal_all();
    c.wait_for_height(&all, split + 3, Duration::from_secs(90))
        .await;
    c.assert_agree(&all);
    c.stop_all().await;
    eprintln!("partitions_heal_without_fork: {:?}", t.elapsed());
}

/// The validator set changes at a height boundary, by governance: a fifth node, a full node
/// until then, becomes a validator at the height the ledger says, and its votes count: with
/// one of the original four stopped, only its precommits make the quorum of 4 out of 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_added_by_governance_votes_from_its_height() {
    use trustedge_contracts::{GenesisCall, ValidatorChange};
    let _serial = support::serial().lock().await;
    let t = Instant::now();
    let mut c = Cluster::with_genesis_validators(5, 4).await;
    c.start_all().await;
    let all = [0, 1, 2, 3, 4];
    c.wait_for_height(&all, 2, Duration::from_secs(60)).await;

    let newcomer = support::validator_key(4).public();
    let admin = support::ha_admin_key();
    let add = trustedge_types::TxBody {
        chain_id: support::CHAIN.into(),
        signer: admin.public(),
        nonce: 1,
        expiry_height: 10_000,
        payload: trustedge_types::Payload::new(
            "genesis",
            &GenesisCall::ProposeValidatorChange {
                change: ValidatorChange::Add {
                    name: "validator-4".into(),
                    public_key: newcomer,
                    power: 1,
                },
            },
        ),
    }
    .sign(&admin);
    c.submit_everywhere(&[add]);
    // Wait until the set of the next height has five validators.
    let deadline = Instant::now() + Duration::from_secs(60);
    let changed_at = loop {
        let l = c.nodes[0].ledger();
        let h = l.height().unwrap();
        if l.validator_set().unwrap().validators.len() == 5 {
            break h + 1;
        }
        assert!(Instant::now() < deadline, "the change was not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    c.wait_for_height(&all, changed_at, Duration::from_secs(60))
        .await;

    c.stop(3).await;
    let at = c.max_height(&[0, 1, 2, 4]);
    c.wait_for_height(&[0, 1, 2, 4], at + 3, Duration::from_secs(60))
        .await;
    let common = c.assert_agree(&[0, 1, 2, 4]);
    // Certificates after the change verify against five validators and hold the newcomer's
    // precommit once validator 3 was down.
    let newcomer_addr = trustedge_types::Address::of_member(&newcomer);
    let store = c.nodes[0].ledger().store();
    let cert = store.certificate(common).unwrap().unwrap();
    assert!(
        cert.signatures.iter().any(|s| s.validator == newcomer_addr),
        "the new validator's precommit is in the certificate of {common}"
    );
    assert_eq!(
        c.nodes[0]
            .ledger()
            .validator_set_at(common)
            .unwrap()
            .validators
            .len(),
        5
    );
    c.stop_all().await;
    eprintln!(
        "a_validator_added_by_governance_votes_from_its_height: {:?}",
        t.elapsed()
    );
}

/// A validator whose p2p port is taken does not start (Malachite alone would run on,
/// unreachable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_p2p_port_is_refused() {
    let _serial = support::serial().lock().await;
    let c = Cluster::new(1).await;
    let _taken = std::net::TcpListener::bind(format!("127.0.0.1:{}", c.ports[0])).unwrap();
    let ledger = support::open_ledger(&c.nodes[0].home, 1);
    let e = trustedge_consensus::start(
        ledger,
        support::validator_key(0),
        "validator-0",
        &c.nodes[0].home,
        &c.settings_of(0),
        Default::default(),
    )
    .await
    .err()
    .expect("must refuse");
    assert!(e.to_string().contains("cannot listen"), "{e}");
}
