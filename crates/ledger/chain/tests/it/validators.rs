//! Validator-set changes by governance, end to end through the ledger: the change takes
//! effect exactly at its scheduled height, certificates must then come from the new set,
//! and a node that syncs the old blocks later checks each against the set of its height.

use trustedge_chain::{BlockError, Ledger, LedgerError};
use trustedge_contracts::genesis::validator_set_key;
use trustedge_contracts::{GenesisCall, VALIDATOR_CHANGE_DELAY, ValidatorChange};
use trustedge_store::state_root_of;
use trustedge_store::{BLOCK_EVENTS_TX_INDEX, EventFilter};
use trustedge_types::{
    Address, Block, CommitCertificate, CommitSig, Keypair, TxOutcome, ValidatorSet,
};

use crate::support::*;

const T0: u64 = 1_700_000_001_000;

/// A certificate for `block` signed by each of `signers`.
fn cert_by(block: &Block, signers: &[&Keypair]) -> CommitCertificate {
    let h = &block.header;
    let hash = h.hash();
    let msg = CommitCertificate::sign_bytes(&h.chain_id, h.height, 0, &hash);
    CommitCertificate {
        height: h.height,
        round: 0,
        block_hash: hash,
        signatures: signers
            .iter()
            .map(|k| CommitSig {
                validator: Address::of_member(&k.public()),
                signature: k.sign(&msg),
            })
            .collect(),
    }
}

fn val(seed: u8) -> Keypair {
    Keypair::from_seed([seed; 32])
}

fn add(seed: u8) -> GenesisCall {
    GenesisCall::ProposeValidatorChange {
        change: ValidatorChange::Add {
            name: format!("validator-{seed}"),
            public_key: val(seed).public(),
            power: 1,
        },
    }
}

struct Driver {
    ledger: Ledger,
    blocks: Vec<(Block, CommitCertificate)>,
    nonce: u64,
}

impl Driver {
    /// Proposes the next block (by `proposer`) with whatever is in the mempool.
    fn propose(&self, proposer: &Keypair) -> Block {
        let t = T0 + 1000 * (self.ledger.height().unwrap() + 1);
        self.ledger
            .propose_block(t, Address::of_member(&proposer.public()))
            .unwrap()
    }

    fn commit(&mut self, block: Block, signers: &[&Keypair]) {
        let cert = cert_by(&block, signers);
        self.ledger.commit_block(&block, &cert).unwrap();
        self.blocks.push((block, cert));
    }

    fn governance(&mut self, k: &Keys, call: &GenesisCall) -> trustedge_types::Hash {
        self.nonce += 1;
        self.ledger
            .submit(tx(&k.ha_admin, self.nonce, "genesis", call))
            .unwrap()
    }
}

fn outcome(l: &Ledger, id: &trustedge_types::Hash) -> TxOutcome {
    match l.tx_status(id).unwrap() {
        trustedge_chain::TxStatus::Committed(p) => p.result.outcome,
        other => panic!("not committed: {other:?}"),
    }
}

#[test]
fn governance_adds_and_removes_validators_at_the_scheduled_heights() {
    let k = keys();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Driver {
        ledger: open(d1.path(), &k),
        blocks: Vec::new(),
        nonce: 0,
    };
    let v1 = k.validator.clone();
    let (v2, v3) = (val(42), val(43));
    let genesis_set = a.ledger.validator_set().unwrap();
    // the light-client premise: the genesis root can be computed from the genesis file
    assert_eq!(
        state_root_of(&genesis(&k).state_writes().unwrap()).unwrap(),
        a.ledger.status().unwrap().state_root
    );

    // Height 1: propose v2 (one approval suffices in this genesis) → effective at 3.
    a.governance(&k, &add(42));
    let b1 = a.propose(&v1);
    assert_eq!(b1.header.validator_set_hash, genesis_set.hash());
    a.commit(b1, &[&v1]);
    let effective = 1 + VALIDATOR_CHANGE_DELAY;
    assert_eq!(effective, 3);

    // Height 2: still the genesis set; after it, the state holds the set of height 3.
    let b2 = a.propose(&v1);
    assert_eq!(b2.header.validator_set_hash, genesis_set.hash());
    a.commit(b2, &[&v1]);
    let set3 = a.ledger.validator_set().unwrap();
    assert_eq!(set3.validators.len(), 2);
    assert_eq!(a.ledger.validator_set_at(3).unwrap(), set3);
    assert_eq!(a.ledger.validator_set_at(2).unwrap(), genesis_set);
    assert_eq!(a.ledger.validator_set_at(1).unwrap(), genesis_set);
    assert!(matches!(
        a.ledger.validator_set_at(4),
        Err(LedgerError::NotFound(_))
    ));
    assert!(matches!(
        a.ledger.validator_set_at(0),
        Err(LedgerError::NotFound(_))
    ));
    // the end-of-block event of block 2 is indexed at tx index u32::MAX
    let page = a
        .ledger
        .events(
            &EventFilter {
                kind: Some("validator_set_changed".into()),
                ..Default::default()
            },
            None,
            10,
        )
        .unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].height, 2);
    assert_eq!(page.events[0].tx_index, BLOCK_EVENTS_TX_INDEX);
    assert_eq!(
        page.events[0].event.attr("set_hash"),
        Some(&*set3.hash().to_hex())
    );

    // Height 3: signed by the new set; v1 alone (1 of 2) is no longer a quorum.
    let id = a.governance(&k, &add(43));
    let b3 = a.propose(&v1);
    assert_eq!(b3.header.validator_set_hash, set3.hash());
    let e = a
        .ledger
        .commit_block(&b3, &cert_by(&b3, &[&v1]))
        .unwrap_err();
    assert!(
        matches!(&e, BlockError::BadCertificate(m) if m.contains("below the quorum")),
        "{e}"
    );
    a.commit(b3, &[&v1, &v2]);
    assert!(matches!(outcome(&a.ledger, &id), TxOutcome::Success));

    // Height 4: set3 still; the third validator joins at 5.
    let b4 = a.propose(&v2);
    a.commit(b4, &[&v1, &v2]);
    let set5 = a.ledger.validator_set().unwrap();
    assert_eq!(set5.validators.len(), 3);
    // Height 5: quorum of three equal powers is all three.
    let id = a.governance(
        &k,
        &GenesisCall::ProposeValidatorChange {
            change: ValidatorChange::Remove {
                address: Address::of_member(&v1.public()),
            },
        },
    );
    let b5 = a.propose(&v3);
    assert_eq!(b5.header.validator_set_hash, set5.hash());
    assert!(
        a.ledger
            .commit_block(&b5, &cert_by(&b5, &[&v1, &v2]))
            .is_err()
    );
    a.commit(b5, &[&v1, &v2, &v3]);
    assert!(matches!(outcome(&a.ledger, &id), TxOutcome::Success));

    // Height 6: still three; v1 leaves at 7.
    let b6 = a.propose(&v1);
    a.commit(b6, &[&v1, &v2, &v3]);
    let set7 = a.ledger.validator_set().unwrap();
    assert_eq!(set7.validators.len(), 2);
    assert!(set7.get(&Address::of_member(&v1.public())).is_none());
    // v1 can no longer propose, and its signature is refused
    let e = a
        .ledger
        .propose_block(T0 + 7_000, Address::of_member(&v1.public()))
        .unwrap_err();
    assert!(
        matches!(&e, BlockError::Invalid(m) if m.contains("not a validator")),
        "{e}"
    );
    let b7 = a.propose(&v2);
    let e = a
        .ledger
        .commit_block(&b7, &cert_by(&b7, &[&v1, &v2, &v3]))
        .unwrap_err();
    assert!(
        matches!(&e, BlockError::BadCertificate(m) if m.contains("not a validator")),
        "{e}"
    );
    a.commit(b7, &[&v2, &v3]);

    // A bad proposal is refused with a clear code: the HA admin's own member key.
    let id = a.governance(
        &k,
        &GenesisCall::ProposeValidatorChange {
            change: ValidatorChange::Add {
                name: "member key".into(),
                public_key: k.ha_admin.public(),
                power: 1,
            },
        },
    );
    let b8 = a.propose(&v3);
    a.commit(b8, &[&v2, &v3]);
    match outcome(&a.ledger, &id) {
        TxOutcome::Failed(f) => assert_eq!(f.code, "already_exists", "{f:?}"),
        TxOutcome::Success => panic!("a member key became a validator"),
    }

    // The header's validator_set_hash changes exactly at the effective heights.
    let hashes: Vec<_> = a
        .blocks
        .iter()
        .map(|(b, _)| b.header.validator_set_hash)
        .collect();
    let changes: Vec<u64> = (1..hashes.len())
        .filter(|&i| hashes[i] != hashes[i - 1])
        .map(|i| i as u64 + 1)
        .collect();
    assert_eq!(changes, [3, 5, 7]);

    // The set of each height is provable from the previous block's state root.
    for h in 2..=a.blocks.len() as u64 {
        let p = a
            .ledger
            .state_proof(&validator_set_key(), Some(h - 1))
            .unwrap();
        p.verify(Some(&a.ledger.validator_set_at(h - 1).unwrap()))
            .unwrap();
        let set: ValidatorSet =
            trustedge_types::decode(p.value.as_ref().unwrap(), 1 << 20).unwrap();
        assert_eq!(
            set.hash(),
            a.blocks[h as usize - 1].0.header.validator_set_hash
        );
    }

    // A node syncing later commits the old blocks, each against the set of its height.
    let b = open(d2.path(), &k);
    for (block, cert) in &a.blocks {
        b.commit_block(block, cert).unwrap();
    }
    assert_eq!(b.status().unwrap(), {
        let mut s = a.ledger.status().unwrap();
        s.mempool_txs = 0;
        s
    });
    assert_eq!(
        b.validator_set().unwrap(),
        a.ledger.validator_set().unwrap()
    );
}
