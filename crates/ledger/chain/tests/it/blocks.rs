use trustedge_chain::BlockError;
use trustedge_types::{Address, Hash, Keypair, TxOutcome};

use crate::support::*;

#[test]
fn proposal_validates_and_commits_identically_on_a_second_store() {
    let k = keys();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(d1.path(), &k), open(d2.path(), &k));
    assert_eq!(
        a.status().unwrap().state_root,
        b.status().unwrap().state_root
    );

    for round in 0..3u64 {
        let txs: Vec<_> = (0..20u64)
            .map(|i| {
                register_device(
                    &k.hospital_admin,
                    round * 20 + i + 1,
                    (round * 20 + i + 10) as u8,
                )
            })
            .collect();
        for r in a.submit_batch(txs) {
            r.unwrap();
        }
        let block = a
            .propose_block(
                1_700_000_001_000 + round,
                Address::of_member(&k.validator.public()),
            )
            .unwrap();
        assert_eq!(block.txs.len(), 20);
        b.validate_block(&block).unwrap();
        let cert = a.solo_certificate(&block, &k.validator);
        let ia = a.commit_block(&block, &cert).unwrap();
        let ib = b.commit_block(&block, &cert).unwrap();
        assert_eq!(ia, ib);
        let (sa, sb) = (a.status().unwrap(), b.status().unwrap());
        assert_eq!(sa.height, round + 1);
        assert_eq!(
            (sa.block_hash, sa.state_root),
            (sb.block_hash, sb.state_root)
        );
        assert_eq!(sa.state_root, block.header.state_root);
    }
    assert_eq!(a.mempool_size().0, 0);
}

#[test]
fn a_failed_transaction_is_recorded_and_changes_only_the_nonce() {
    let k = keys();
    let d = tempfile::tempdir().unwrap();
    let l = open(d.path(), &k);
    // the auditor may not register devices: committed as a failure with its reason
    let denied = register_device(&k.hospital_auditor, 1, 50);
    let id = l.submit(denied).unwrap();
    let root_before = l.status().unwrap().state_root;
    let block = seal(&l, &k, 1_700_000_001_000);
    let proof = match l.tx_status(&id).unwrap() {
        trustedge_chain::TxStatus::Committed(p) => p,
        other => panic!("not committed: {other:?}"),
    };
    match &proof.result.outcome {
        TxOutcome::Failed(f) => assert_eq!(f.code, "access_denied", "{f:?}"),
        TxOutcome::Success => panic!("auditor registered a device"),
    }
    assert!(proof.result.events.is_empty());
    // the nonce moved (so the state root moved), but no device exists
    assert_ne!(block.header.state_root, root_before);
    assert_eq!(l.last_nonce(&k.hospital_auditor.public()).unwrap(), 1);
    let dev = Address::of_device(&Keypair::from_seed([50; 32]).public());
    let q = l.query("devices", &format!("device/{dev}"), &Default::default());
    assert!(q.is_err(), "device should not exist: {q:?}");
}

fn proposal_and_peer() -> (
    tempfile::TempDir,
    tempfile::TempDir,
    Keys,
    trustedge_chain::Ledger,
    trustedge_chain::Ledger,
    trustedge_types::Block,
) {
    let k = keys();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(d1.path(), &k), open(d2.path(), &k));
    for i in 1..=3u64 {
        a.submit(register_device(&k.hospital_admin, i, 60 + i as u8))
            .unwrap();
    }
    let block = a
        .propose_block(1_700_000_001_000, Address::of_member(&k.validator.public()))
        .unwrap();
    (d1, d2, k, a, b, block)
}

fn assert_invalid(b: &trustedge_chain::Ledger, block: &trustedge_types::Block, what: &str) {
    match b.validate_block(block) {
        Err(BlockError::Invalid(msg)) => {
            assert!(msg.contains(what), "expected {what:?} in {msg:?}")
        }
        other => panic!("expected invalid block ({what}), got {other:?}"),
    }
}

#[test]
fn tampered_blocks_are_rejected_with_the_reason() {
    let (_d1, _d2, k, _a, b, block) = proposal_and_peer();
    b.validate_block(&block).unwrap();

    let mut x = block.clone();
    x.header.state_root = Hash([9; 32]);
    assert_invalid(&b, &x, "state_root");

    let mut x = block.clone();
    x.header.results_root = Hash([9; 32]);
    assert_invalid(&b, &x, "results_root");

    let mut x = block.clone();
    x.header.tx_root = Hash([9; 32]);
    assert_invalid(&b, &x, "tx_root");

    let mut x = block.clone();
    x.header.prev_hash = Hash([9; 32]);
    assert_invalid(&b, &x, "prev_hash");

    let mut x = block.clone();
    x.header.height = 2;
    assert_invalid(&b, &x, "height");

    let mut x = block.clone();
    x.header.time_ms = 1_000;
    assert_invalid(&b, &x, "time");

    let mut x = block.clone();
    x.header.proposer = Address::of_member(&Keypair::from_seed([77; 32]).public());
    assert_invalid(&b, &x, "proposer");

    let mut x = block.clone();
    x.header.validator_set_hash = Hash([9; 32]);
    assert_invalid(&b, &x, "validator_set_hash");

    let mut x = block.clone();
    x.header.chain_id = "other".into();
    assert_invalid(&b, &x, "chain id");

    // a transaction with a bad signature (tx_root recomputed so the check is reached)
    let mut x = block.clone();
    x.txs[1].signature.0[0] ^= 1;
    x.header.tx_root = trustedge_types::Block::tx_root_of(&x.txs);
    assert_invalid(&b, &x, "bad signature");

    // a replayed transaction inside the block
    let mut x = block.clone();
    x.txs.push(x.txs[0].clone());
    x.header.tx_root = trustedge_types::Block::tx_root_of(&x.txs);
    assert_invalid(&b, &x, "nonce");

    let _ = k;
}

#[test]
fn commit_requires_a_certificate_from_the_validator_set() {
    let (_d1, _d2, k, a, b, block) = proposal_and_peer();
    let outsider = Keypair::from_seed([66; 32]);
    let forged = a.solo_certificate(&block, &outsider);
    assert!(matches!(
        b.commit_block(&block, &forged),
        Err(BlockError::BadCertificate(_))
    ));
    let mut other = block.clone();
    other.header.time_ms += 1;
    let wrong_block = a.solo_certificate(&other, &k.validator);
    assert!(matches!(
        b.commit_block(&block, &wrong_block),
        Err(BlockError::BadCertificate(_))
    ));
    assert_eq!(b.height().unwrap(), 0);
    let good = a.solo_certificate(&block, &k.validator);
    b.commit_block(&block, &good).unwrap();
    assert_eq!(b.height().unwrap(), 1);
}

#[test]
fn reopening_continues_from_the_last_block_and_refuses_another_genesis() {
    let k = keys();
    let d = tempfile::tempdir().unwrap();
    let (hash, root) = {
        let l = open(d.path(), &k);
        for i in 1..=2u64 {
            l.submit(register_device(&k.hospital_admin, i, 80 + i as u8))
                .unwrap();
            seal(&l, &k, 1_700_000_001_000 + i);
        }
        let s = l.status().unwrap();
        (s.block_hash, s.state_root)
    };
    let l = open(d.path(), &k);
    let s = l.status().unwrap();
    assert_eq!((s.height, s.block_hash, s.state_root), (2, hash, root));
    l.submit(register_device(&k.hospital_admin, 3, 90)).unwrap();
    seal(&l, &k, 1_700_000_002_000);
    assert_eq!(l.height().unwrap(), 3);
    drop(l);

    let mut g = genesis(&k);
    g.genesis_time_ms += 1;
    let err = trustedge_chain::Ledger::open(&d.path().join("ledger.redb"), g, Default::default());
    assert!(
        matches!(
            err,
            Err(trustedge_chain::LedgerError::GenesisMismatch { .. })
        ),
        "{:?}",
        err.err()
    );
}

#[test]
fn mempool_drops_transactions_whose_nonce_another_block_used() {
    let (_d1, _d2, k, a, b, block) = proposal_and_peer();
    // b holds a different transaction with nonce 1 of the same signer
    let rival = register_device(&k.hospital_admin, 1, 99);
    b.submit(rival.clone()).unwrap();
    assert_eq!(b.mempool_size().0, 1);
    let cert = a.solo_certificate(&block, &k.validator);
    let info = b.commit_block(&block, &cert).unwrap();
    assert_eq!(info.evicted, 1);
    assert_eq!(b.mempool_size().0, 0);
    assert!(matches!(
        b.tx_status(&rival.hash()).unwrap(),
        trustedge_chain::TxStatus::Unknown
    ));
}

#[test]
fn a_proposal_within_a_budget_takes_what_fits_and_leaves_the_rest_for_the_next_block() {
    let k = keys();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(d1.path(), &k), open(d2.path(), &k));
    let txs: Vec<_> = (0..10u64)
        .map(|i| register_device(&k.hospital_admin, i + 1, (i + 10) as u8))
        .collect();
    for r in a.submit_batch(txs) {
        r.unwrap();
    }
    let proposer = Address::of_member(&k.validator.public());
    // The budget allows two more after the first.
    let mut left = 2;
    let mut more = || {
        left -= 1;
        left >= 0
    };
    let block = a
        .propose_block_within(1_700_000_001_000, proposer, &mut more)
        .unwrap();
    assert_eq!(block.txs.len(), 3);
    // A valid block like any other; the rest stays for the next ones, in nonce order.
    b.validate_block(&block).unwrap();
    let cert = a.solo_certificate(&block, &k.validator);
    a.commit_block(&block, &cert).unwrap();
    b.commit_block(&block, &cert).unwrap();
    assert_eq!(a.mempool_size().0, 7);
    // An exhausted budget still takes one transaction: the chain always moves on.
    let one = a
        .propose_block_within(1_700_000_002_000, proposer, &mut || false)
        .unwrap();
    assert_eq!(one.txs.len(), 1);
    let rest = a.propose_block(1_700_000_003_000, proposer).unwrap();
    assert_eq!(rest.txs.len(), 7);
}
