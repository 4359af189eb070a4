//! The light client against a real chain built with the ledger engine: it follows headers
//! across a validator-set change and refuses forged certificates, broken links, set changes
//! without a valid proof, and tampered state and transaction proofs.

use trustedge_chain::{Ledger, LedgerConfig, TxStatus};
use trustedge_contracts::devices::device_state_key;
use trustedge_contracts::genesis::validator_set_key;
use trustedge_contracts::{
    DevicesCall, Genesis, GenesisCall, GenesisMember, GenesisOrg, GovernancePolicy, ValidatorChange,
};
use trustedge_edge::light::{
    CHECKPOINT_INTERVAL, LightClient, LightError, LightSnapshot, TrustedGenesis, TxInclusion,
    ValidatorSetProof,
};
use trustedge_execution::{DeviceClass, OrgKind, Role};
use trustedge_types::{
    Address, Block, BlockHeader, CommitCertificate, CommitSig, Hash, Keypair, Payload, TxBody,
    Validator, ValidatorSet,
};

const CHAIN: &str = "light-test";
const T0: u64 = 1_700_000_000_000;

fn key(label: &str) -> Keypair {
    Keypair::from_seed(Hash::sha256(label.as_bytes()).0)
}

fn genesis() -> Genesis {
    let org = |id: &str, kind| GenesisOrg {
        id: id.into(),
        name: id.into(),
        kind,
        members: vec![GenesisMember {
            public_key: key(&format!("{id}/admin")).public(),
            role: Role::Admin,
        }],
    };
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: T0,
        validators: vec![Validator {
            name: "v1".into(),
            address: Address::of_member(&key("v1").public()),
            public_key: key("v1").public(),
            power: 1,
        }],
        organisations: vec![
            org("ha", OrgKind::HealthAuthority),
            org("hospital", OrgKind::Hospital),
        ],
        policy: GovernancePolicy {
            admission_approvals: 1,
        },
    }
}

fn cert_by(header: &BlockHeader, signers: &[&Keypair]) -> CommitCertificate {
    let hash = header.hash();
    let msg = CommitCertificate::sign_bytes(&header.chain_id, header.height, 0, &hash);
    CommitCertificate {
        height: header.height,
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

/// A chain of `blocks` blocks in which governance adds v2 (effective at height 3) and a
/// device is registered in block 1; the headers, certificates and set proofs a full node
/// would serve.
struct Served {
    ledger: Ledger,
    _dir: tempfile::TempDir,
    blocks: Vec<(Block, CommitCertificate)>,
    device_tx: Hash,
}

impl Served {
    fn build(blocks: u64) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(
            &dir.path().join("l.redb"),
            genesis(),
            LedgerConfig::default(),
        )
        .unwrap();
        let ha = key("ha/admin");
        let tx = |signer: &Keypair, nonce, module: &str, call: Vec<u8>| {
            TxBody {
                chain_id: CHAIN.into(),
                signer: signer.public(),
                nonce,
                expiry_height: 1000,
                payload: Payload {
                    module: module.into(),
                    call,
                },
            }
            .sign(signer)
        };
        ledger
            .submit(tx(
                &ha,
                1,
                "genesis",
                borsh::to_vec(&GenesisCall::ProposeValidatorChange {
                    change: ValidatorChange::Add {
                        name: "v2".into(),
                        public_key: key("v2").public(),
                        power: 1,
                    },
                })
                .unwrap(),
            ))
            .unwrap();
        let device_tx = ledger
            .submit(tx(
                &key("hospital/admin"),
                1,
                "devices",
                borsh::to_vec(&DevicesCall::Register {
                    key: key("wearable").public(),
                    class: DeviceClass::Wearable,
                    model: "band".into(),
                    attributes: vec![],
                })
                .unwrap(),
            ))
            .unwrap();
        let (v1, v2) = (key("v1"), key("v2"));
        let mut out = Vec::new();
        for h in 1..=blocks {
            let block = ledger
                .propose_block(T0 + 1000 * h, Address::of_member(&v1.public()))
                .unwrap();
            let signers: Vec<&Keypair> = if h >= 3 { vec![&v1, &v2] } else { vec![&v1] };
            let cert = cert_by(&block.header, &signers);
            ledger.commit_block(&block, &cert).unwrap();
            out.push((block, cert));
        }
        Served {
            ledger,
            _dir: dir,
            blocks: out,
            device_tx,
        }
    }

    fn header(&self, h: u64) -> BlockHeader {
        self.blocks[h as usize - 1].0.header.clone()
    }

    fn cert(&self, h: u64) -> CommitCertificate {
        self.blocks[h as usize - 1].1.clone()
    }

    /// The proof a full node gives for the set of height `h`: the validator-set key in the
    /// state of `h - 1`.
    fn set_proof(&self, h: u64) -> ValidatorSetProof {
        let p = self
            .ledger
            .state_proof(&validator_set_key(), Some(h - 1))
            .unwrap();
        ValidatorSetProof {
            value: p.value.unwrap(),
            proof: p.proof,
        }
    }

    /// Feeds heights `from..=to`, with a set proof where the set changes.
    fn feed(&self, client: &mut LightClient, from: u64, to: u64) {
        for h in from..=to {
            let proof = (h == 3).then(|| self.set_proof(h));
            client
                .ingest(self.header(h), &self.cert(h), proof.as_ref())
                .unwrap_or_else(|e| panic!("height {h}: {e}"));
        }
    }
}

fn client() -> LightClient {
    LightClient::new(TrustedGenesis::from_genesis(&genesis()).unwrap(), 16).unwrap()
}

#[test]
fn follows_a_chain_across_a_validator_set_change() {
    let s = Served::build(6);
    let mut c = client();
    assert_eq!(
        c.latest_state_root(),
        s.ledger.store().state_root(0).unwrap(),
        "the genesis root is computed, not asked for"
    );
    s.feed(&mut c, 1, 2);
    // Height 3 names the new set: without a proof it is refused...
    let e = c.ingest(s.header(3), &s.cert(3), None).unwrap_err();
    assert_eq!(e.code(), "missing_validator_set_proof", "{e}");
    assert_eq!(c.height(), 2, "a refusal changes nothing");
    // ...with a proof of the set against the state root of height 2 it is adopted.
    let r = c
        .ingest(s.header(3), &s.cert(3), Some(&s.set_proof(3)))
        .unwrap();
    assert!(r.set_changed);
    assert_eq!(c.validators().validators.len(), 2);
    s.feed(&mut c, 4, 6);
    assert_eq!(c.height(), 6);
    assert_eq!(c.latest().unwrap().hash(), s.blocks[5].0.hash());
    assert_eq!(c.latest_state_root(), s.ledger.status().unwrap().state_root);
    // the set change height is a checkpoint
    assert!(c.header(3).is_some());
}

#[test]
fn refuses_forged_certificates_and_broken_links() {
    let s = Served::build(4);
    let mut c = client();
    s.feed(&mut c, 1, 1);
    // a certificate by an outsider, a flipped signature, a certificate of another block
    let outsider = key("mallory");
    let e = c
        .ingest(s.header(2), &cert_by(&s.header(2), &[&outsider]), None)
        .unwrap_err();
    assert_eq!(e.code(), "bad_certificate", "{e}");
    let mut flipped = s.cert(2);
    flipped.signatures[0].signature.0[7] ^= 1;
    assert_eq!(
        c.ingest(s.header(2), &flipped, None).unwrap_err().code(),
        "bad_certificate"
    );
    assert_eq!(
        c.ingest(s.header(2), &s.cert(1), None).unwrap_err().code(),
        "bad_certificate"
    );
    // a header whose state root was altered no longer matches its certificate
    let mut altered = s.header(2);
    altered.state_root = Hash([7; 32]);
    assert_eq!(
        c.ingest(altered, &s.cert(2), None).unwrap_err().code(),
        "bad_certificate"
    );
    // wrong prev_hash, even when validly signed by the set
    let mut forked = s.header(2);
    forked.prev_hash = Hash([1; 32]);
    let v1 = key("v1");
    let e = c
        .ingest(forked.clone(), &cert_by(&forked, &[&v1]), None)
        .unwrap_err();
    assert_eq!(e.code(), "wrong_prev_hash", "{e}");
    // skipping a height, another chain, time not moving forward
    assert_eq!(
        c.ingest(s.header(3), &s.cert(3), None).unwrap_err().code(),
        "not_next_height"
    );
    let mut other = s.header(2);
    other.chain_id = "elsewhere".into();
    assert_eq!(
        c.ingest(other, &s.cert(2), None).unwrap_err().code(),
        "wrong_chain_id"
    );
    let mut early = s.header(2);
    early.time_ms = s.header(1).time_ms;
    assert_eq!(
        c.ingest(early.clone(), &cert_by(&early, &[&v1]), None)
            .unwrap_err()
            .code(),
        "time_not_after_parent"
    );
    // a proposer outside the set
    let mut by_outsider = s.header(2);
    by_outsider.proposer = Address::of_member(&outsider.public());
    assert_eq!(
        c.ingest(by_outsider.clone(), &cert_by(&by_outsider, &[&v1]), None)
            .unwrap_err()
            .code(),
        "proposer_not_validator"
    );
    // and the genuine header still goes in
    s.feed(&mut c, 2, 2);
}

#[test]
fn refuses_a_set_change_without_a_valid_proof() {
    let s = Served::build(4);
    let mut c = client();
    s.feed(&mut c, 1, 2);
    let good = s.set_proof(3);
    // a proof of the set against another state root (height 1's, not height 2's)
    let stale = s.set_proof(2);
    let e = c.ingest(s.header(3), &s.cert(3), Some(&stale)).unwrap_err();
    assert_eq!(e.code(), "bad_validator_set_proof", "{e}");
    // a value that is not what the proof proves
    let mut tampered = good.clone();
    let last = tampered.value.len() - 1;
    tampered.value[last] ^= 1;
    assert_eq!(
        c.ingest(s.header(3), &s.cert(3), Some(&tampered))
            .unwrap_err()
            .code(),
        "bad_validator_set_proof"
    );
    // a forged set of the attacker's own, with a certificate it signed: the proof fails
    let mallory = key("mallory");
    let forged_set = ValidatorSet::new(vec![Validator {
        name: "m".into(),
        address: Address::of_member(&mallory.public()),
        public_key: mallory.public(),
        power: 1,
    }])
    .unwrap();
    let mut forged = s.header(3);
    forged.validator_set_hash = forged_set.hash();
    forged.proposer = Address::of_member(&mallory.public());
    let forged_proof = ValidatorSetProof {
        value: trustedge_types::encode(&forged_set),
        proof: good.proof.clone(),
    };
    assert_eq!(
        c.ingest(
            forged.clone(),
            &cert_by(&forged, &[&mallory]),
            Some(&forged_proof)
        )
        .unwrap_err()
        .code(),
        "bad_validator_set_proof"
    );
    // a corrupted proof
    let mut broken = good.clone();
    broken.proof.siblings.clear();
    assert!(c.ingest(s.header(3), &s.cert(3), Some(&broken)).is_err());
    // the genuine proof works
    c.ingest(s.header(3), &s.cert(3), Some(&good)).unwrap();
    // a proof offered where the set did not change is checked too
    let mut wrong = s.set_proof(4);
    wrong.value[0] ^= 1;
    assert_eq!(
        c.ingest(s.header(4), &s.cert(4), Some(&wrong))
            .unwrap_err()
            .code(),
        "bad_validator_set_proof"
    );
    let r = c
        .ingest(s.header(4), &s.cert(4), Some(&s.set_proof(4)))
        .unwrap();
    assert!(!r.set_changed);
}

#[test]
fn verifies_state_and_tx_proofs_against_verified_headers_only() {
    let s = Served::build(3);
    let mut c = client();
    s.feed(&mut c, 1, 3);
    // the device registered in block 1: its record is proven
    let device_key = device_state_key(&Address::of_device(&key("wearable").public()));
    let p = s.ledger.state_proof(&device_key, Some(3)).unwrap();
    assert!(p.value.is_some());
    c.verify_state(3, &device_key, p.value.as_deref(), &p.proof)
        .unwrap();
    // absence proofs verify too, and a claimed value for an absent key does not
    let unknown = device_state_key(&Address::of_device(&key("nobody").public()));
    let absent = s.ledger.state_proof(&unknown, Some(3)).unwrap();
    assert!(absent.value.is_none());
    c.verify_state(3, &unknown, None, &absent.proof).unwrap();
    assert!(
        c.verify_state(3, &unknown, Some(b"x"), &absent.proof)
            .is_err()
    );
    // a proof for one key does not prove another
    assert!(
        c.verify_state(3, &unknown, p.value.as_deref(), &p.proof)
            .is_err()
    );
    // tampered value, wrong height, unheld height
    let mut value = p.value.clone().unwrap();
    value[0] ^= 1;
    let e = c
        .verify_state(3, &p.key, Some(&value), &p.proof)
        .unwrap_err();
    assert_eq!(e.code(), "bad_state_proof", "{e}");
    // the state of height 1 held another validator set: a later proof does not fit its root
    let vp = s.ledger.state_proof(&validator_set_key(), Some(3)).unwrap();
    c.verify_state(3, &vp.key, vp.value.as_deref(), &vp.proof)
        .unwrap();
    assert!(
        c.verify_state(1, &vp.key, vp.value.as_deref(), &vp.proof)
            .is_err()
    );
    assert_eq!(
        c.verify_state(9, &p.key, p.value.as_deref(), &p.proof)
            .unwrap_err()
            .code(),
        "header_not_held"
    );
    // the genesis state is held implicitly
    let g = s.ledger.state_proof(&validator_set_key(), Some(0)).unwrap();
    c.verify_state(0, &g.key, g.value.as_deref(), &g.proof)
        .unwrap();

    // transaction inclusion
    let TxStatus::Committed(tp) = s.ledger.tx_status(&s.device_tx).unwrap() else {
        panic!("device registration not committed")
    };
    let inclusion = TxInclusion {
        header: tp.header.clone(),
        index: tp.index,
        tx: tp.tx.clone(),
        tx_proof: tp.tx_proof.clone(),
        result: tp.result.clone(),
        result_proof: tp.result_proof.clone(),
    };
    c.verify_tx(&inclusion).unwrap();
    let mut t = inclusion.clone();
    t.result.events.clear();
    assert_eq!(c.verify_tx(&t).unwrap_err().code(), "bad_tx_proof");
    let mut t = inclusion.clone();
    t.tx.body.nonce += 1;
    assert_eq!(c.verify_tx(&t).unwrap_err().code(), "bad_tx_proof");
    // a proof that brings its own (fake) header is refused even if self-consistent
    let mut t = inclusion.clone();
    t.header.time_ms += 1;
    assert_eq!(c.verify_tx(&t).unwrap_err().code(), "header_mismatch");
}

#[test]
fn keeps_a_bounded_window_and_survives_a_snapshot() {
    let s = Served::build(8);
    let g = TrustedGenesis::from_genesis(&genesis()).unwrap();
    let mut c = LightClient::new(g.clone(), 2).unwrap();
    s.feed(&mut c, 1, 5);
    assert!(c.header(5).is_some() && c.header(4).is_some());
    assert!(c.header(2).is_none(), "outside the window");
    assert!(c.header(3).is_some(), "the set change is a checkpoint");
    const { assert!(CHECKPOINT_INTERVAL > 8) };

    let bytes = c.snapshot().to_bytes();
    let mut back =
        LightClient::restore(g.clone(), 2, LightSnapshot::from_bytes(&bytes).unwrap()).unwrap();
    assert_eq!(back.height(), 5);
    s.feed(&mut back, 6, 8);
    assert_eq!(back.latest().unwrap().hash(), s.blocks[7].0.hash());

    // damaged snapshots are refused, not believed
    let mut snap = c.snapshot();
    snap.window[1].prev_hash = Hash::ZERO;
    assert_eq!(
        LightClient::restore(g.clone(), 2, snap).unwrap_err().code(),
        "bad_snapshot"
    );
    let mut snap = c.snapshot();
    snap.validators = g.validators.clone();
    assert!(LightClient::restore(g.clone(), 2, snap).is_err());
    assert!(LightSnapshot::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    assert!(LightClient::new(g, 0).is_err());
}

#[test]
fn arbitrary_headers_and_certificates_never_panic() {
    let s = Served::build(3);
    let mut c = client();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let base = trustedge_types::encode(&(s.header(1), s.cert(1)));
    for _ in 0..2000 {
        let mut bytes = base.clone();
        for _ in 0..(next() % 4 + 1) {
            let i = (next() as usize) % bytes.len();
            bytes[i] ^= (next() % 255 + 1) as u8;
        }
        if let Ok((h, cert)) =
            trustedge_types::decode::<(BlockHeader, CommitCertificate)>(&bytes, 1 << 20)
        {
            let r = c.ingest(h.clone(), &cert, None);
            if r.is_ok() {
                // only the genuine header can pass
                assert_eq!(h, s.header(1));
                c = client();
            }
        }
    }
    let _: Result<_, LightError> = c.ingest(s.header(1), &s.cert(1), None);
}
