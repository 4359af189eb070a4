use trustedge_chain::{LedgerConfig, MempoolConfig, MempoolError, SubmitError};
use trustedge_execution::AdmissionError;
use trustedge_types::{Keypair, TxBody};

use crate::support::*;

fn rejected(r: Result<trustedge_types::Hash, SubmitError>) -> AdmissionError {
    match r {
        Err(SubmitError::Rejected(e)) => e,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn every_bad_transaction_gets_its_typed_error() {
    let k = keys();
    let d = tempfile::tempdir().unwrap();
    let l = open(d.path(), &k);

    let mut bad_sig = register_device(&k.hospital_admin, 1, 20);
    bad_sig.signature.0[10] ^= 1;
    assert_eq!(rejected(l.submit(bad_sig)), AdmissionError::BadSignature);

    let mut body = register_device(&k.hospital_admin, 1, 20).body;
    body.chain_id = "someone-elses-chain".into();
    let wrong_chain = body.sign(&k.hospital_admin);
    assert!(matches!(
        rejected(l.submit(wrong_chain)),
        AdmissionError::WrongChain { .. }
    ));

    let stranger = Keypair::from_seed([200; 32]);
    assert!(matches!(
        rejected(l.submit(register_device(&stranger, 1, 21))),
        AdmissionError::UnknownSigner(_)
    ));

    let mut body: TxBody = register_device(&k.hospital_admin, 1, 22).body;
    body.expiry_height = 0;
    assert!(matches!(
        rejected(l.submit(body.sign(&k.hospital_admin))),
        AdmissionError::Expired { .. }
    ));

    let mut body: TxBody = register_device(&k.hospital_admin, 1, 22).body;
    body.payload.module = "nosuchmodule".into();
    assert!(matches!(
        rejected(l.submit(body.sign(&k.hospital_admin))),
        AdmissionError::UnknownModule(_)
    ));

    let mut body: TxBody = register_device(&k.hospital_admin, 1, 22).body;
    body.payload.call = vec![0xff; 7];
    assert!(matches!(
        rejected(l.submit(body.sign(&k.hospital_admin))),
        AdmissionError::MalformedCall { .. }
    ));

    // commit nonce 1, then replay it exactly and with other content
    let first = register_device(&k.hospital_admin, 1, 23);
    l.submit(first.clone()).unwrap();
    assert!(matches!(
        l.submit(first.clone()),
        Err(SubmitError::Mempool(MempoolError::Duplicate(_)))
    ));
    seal(&l, &k, 1_700_000_001_000);
    assert!(matches!(
        l.submit(first),
        Err(SubmitError::AlreadyCommitted(_))
    ));
    assert!(matches!(
        rejected(l.submit(register_device(&k.hospital_admin, 1, 24))),
        AdmissionError::StaleNonce { last: 1, got: 1 }
    ));
    // the next nonce works
    l.submit(register_device(&k.hospital_admin, 2, 24)).unwrap();
}

#[test]
fn revoked_signer_is_refused() {
    let k = keys();
    let d = tempfile::tempdir().unwrap();
    let l = open(d.path(), &k);
    let revoke = tx(
        &k.hospital_admin,
        1,
        "orgs",
        &trustedge_contracts::OrgsCall::RevokeKey {
            key: k.hospital_auditor.public(),
        },
    );
    l.submit(revoke).unwrap();
    seal(&l, &k, 1_700_000_001_000);
    assert!(matches!(
        rejected(l.submit(register_device(&k.hospital_auditor, 1, 30))),
        AdmissionError::RevokedSigner(_)
    ));
}

#[test]
fn a_full_mempool_refuses_and_keeps_what_it_holds() {
    let k = keys();
    let d = tempfile::tempdir().unwrap();
    let config = LedgerConfig {
        mempool: MempoolConfig {
            max_txs: 3,
            max_bytes: 1 << 20,
        },
        ..LedgerConfig::default()
    };
    let l = open_with(d.path(), &k, config);
    let results = l.submit_batch(
        (1..=5u64)
            .map(|i| register_device(&k.hospital_admin, i, 40 + i as u8))
            .collect(),
    );
    assert!(results[..3].iter().all(|r| r.is_ok()));
    assert!(
        results[3..]
            .iter()
            .all(|r| matches!(r, Err(SubmitError::Mempool(MempoolError::Full { .. }))))
    );
    let block = seal(&l, &k, 1_700_000_001_000);
    assert_eq!(block.txs.len(), 3, "everything accepted is committed");
}
