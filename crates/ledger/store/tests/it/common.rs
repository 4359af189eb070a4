//! Building blocks by hand: a one-validator chain whose content is a pure function of the
//! height, so that a test (or a crashed child process) can recompute what must be stored.

use std::collections::BTreeMap;
use std::path::Path;

use tempfile::TempDir;
use trustedge_execution::{MemState, StateWrites};
use trustedge_store::{PreparedState, Store, StoreError};
use trustedge_types::{
    Address, Block, BlockHeader, CommitCertificate, CommitSig, Event, Hash, Height, Keypair,
    Payload, SignedTx, TxBody, TxFailure, TxOutcome, TxResult, Validator, ValidatorSet,
};

pub const CHAIN_ID: &str = "trustedge-store-test";
pub const GENESIS_DOC: &[u8] = b"{\"genesis\":\"test\"}";

/// The validator key and its one-member set.
pub fn validator() -> (Keypair, ValidatorSet) {
    let key = Keypair::from_seed([1; 32]);
    let set = ValidatorSet::new(vec![Validator {
        name: "v0".into(),
        address: Address::of_member(&key.public()),
        public_key: key.public(),
        power: 10,
    }])
    .unwrap();
    (key, set)
}

/// A fresh store in a fresh temporary directory.
pub fn temp_store() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store.redb")).unwrap();
    (dir, store)
}

/// A fresh store with [`genesis_writes`] written.
pub fn genesis_store() -> (TempDir, Store) {
    let (dir, store) = temp_store();
    store
        .init_genesis(CHAIN_ID, GENESIS_DOC, &genesis_writes())
        .unwrap();
    (dir, store)
}

pub fn key(i: u64) -> Vec<u8> {
    format!("k/{i:03}").into_bytes()
}

pub fn genesis_writes() -> StateWrites {
    (0..20)
        .map(|i| (key(i), Some(format!("g{i}").into_bytes())))
        .collect()
}

/// The content of one block, apart from its header.
#[derive(Clone, Debug, PartialEq)]
pub struct Parts {
    pub txs: Vec<SignedTx>,
    pub results: Vec<TxResult>,
    pub writes: StateWrites,
}

/// The content of block `h` of the deterministic test chain.
pub fn content(h: Height) -> Parts {
    let user = Keypair::from_seed([2; 32]);
    let n = 1 + (h % 3) as usize;
    let mut txs = Vec::new();
    let mut results = Vec::new();
    for i in 0..n as u64 {
        txs.push(
            TxBody {
                chain_id: CHAIN_ID.into(),
                signer: user.public(),
                nonce: h * 10 + i,
                expiry_height: h + 100,
                payload: Payload {
                    module: "demo".into(),
                    call: vec![h as u8, i as u8],
                },
            }
            .sign(&user),
        );
        results.push(if (h + i) % 4 == 3 {
            TxResult {
                outcome: TxOutcome::Failed(TxFailure {
                    code: "conflict".into(),
                    message: format!("tx {i} of {h} conflicts"),
                }),
                events: vec![],
            }
        } else {
            let mut events = vec![
                Event::new("demo", if i % 2 == 0 { "put" } else { "touch" })
                    .with("height", h)
                    .with("tx", i),
            ];
            if i == 0 {
                events.push(Event::new("audit", "seen").with("parity", h % 2));
            }
            TxResult {
                outcome: TxOutcome::Success,
                events,
            }
        });
    }
    let mut writes = StateWrites::new();
    for j in 0..8u64 {
        let k = key((h * 7 + j * 13) % 60);
        let v = if (h + j).is_multiple_of(5) {
            None
        } else {
            Some(format!("v{h}/{j}").into_bytes())
        };
        writes.insert(k, v);
    }
    Parts {
        txs,
        results,
        writes,
    }
}

/// The state after genesis and blocks `1..=h` of the deterministic chain.
pub fn model_state(h: Height) -> MemState {
    let mut m = MemState::default();
    m.apply(&genesis_writes());
    for i in 1..=h {
        m.apply(&content(i).writes);
    }
    m
}

/// Everything `commit_block` takes.
pub struct Pending {
    pub block: Block,
    pub tx_hashes: Vec<Hash>,
    pub cert: CommitCertificate,
    pub results: Vec<TxResult>,
    pub writes: StateWrites,
    pub prepared: PreparedState,
}

impl Pending {
    pub fn commit(self, store: &Store) -> Result<Block, StoreError> {
        store.commit_block(
            &self.block,
            &self.tx_hashes,
            &self.cert,
            &self.results,
            &self.writes,
            self.prepared,
        )?;
        Ok(self.block)
    }
}

/// The certificate of the one validator for `header`.
pub fn sign_cert(key: &Keypair, header: &BlockHeader) -> CommitCertificate {
    let hash = header.hash();
    let msg = CommitCertificate::sign_bytes(&header.chain_id, header.height, 0, &hash);
    CommitCertificate {
        height: header.height,
        round: 0,
        block_hash: hash,
        signatures: vec![CommitSig {
            validator: Address::of_member(&key.public()),
            signature: key.sign(&msg),
        }],
    }
}

/// Builds the next block on top of the store's latest, with a correct header and certificate.
pub fn next_block(store: &Store, parts: &Parts) -> Result<Pending, StoreError> {
    let (key, set) = validator();
    let latest = store.latest_height()?;
    let prev_hash = match latest {
        0 => Hash::ZERO,
        h => store.header(h)?.map(|h| h.hash()).unwrap_or(Hash::ZERO),
    };
    let prepared = store.prepare_state(latest, &parts.writes)?;
    let header = BlockHeader {
        chain_id: CHAIN_ID.into(),
        height: latest + 1,
        time_ms: 1_000 * (latest + 1),
        prev_hash,
        tx_root: Block::tx_root_of(&parts.txs),
        state_root: prepared.root,
        results_root: TxResult::root_of(&parts.results),
        validator_set_hash: set.hash(),
        proposer: set.validators[0].address,
    };
    let cert = sign_cert(&key, &header);
    Ok(Pending {
        tx_hashes: parts.txs.iter().map(SignedTx::hash).collect(),
        block: Block {
            header,
            txs: parts.txs.clone(),
        },
        cert,
        results: parts.results.clone(),
        writes: parts.writes.clone(),
        prepared,
    })
}

/// Commits `parts` as the next block.
pub fn commit(store: &Store, parts: &Parts) -> Result<Block, StoreError> {
    next_block(store, parts)?.commit(store)
}

/// Commits the deterministic chain's next block.
pub fn commit_next(store: &Store) -> Result<Block, StoreError> {
    let h = store.latest_height()? + 1;
    commit(store, &content(h))
}

/// Commits a block with no transactions and the given writes.
pub fn commit_writes(store: &Store, writes: &StateWrites) -> Result<Block, StoreError> {
    commit(
        store,
        &Parts {
            txs: vec![],
            results: vec![],
            writes: writes.clone(),
        },
    )
}

/// Checks everything a store of the deterministic chain holds, from genesis to its latest
/// height, and returns that height.
pub fn verify_chain(store: &Store) -> Height {
    let (_, set) = validator();
    let latest = store.latest_height().unwrap();
    assert_eq!(store.chain_id().unwrap().as_deref(), Some(CHAIN_ID));
    assert_eq!(store.genesis_doc().unwrap().as_deref(), Some(GENESIS_DOC));
    let mut prev = Hash::ZERO;
    for h in 1..=latest {
        let parts = content(h);
        let block = store
            .block(h)
            .unwrap()
            .unwrap_or_else(|| panic!("block {h}"));
        assert_eq!(block.header.height, h);
        assert_eq!(block.header.prev_hash, prev, "prev_hash of {h}");
        assert_eq!(block.txs, parts.txs, "txs of {h}");
        assert_eq!(store.header(h).unwrap().as_ref(), Some(&block.header));
        assert_eq!(store.height_of_block(&block.hash()).unwrap(), Some(h));
        let cert = store.certificate(h).unwrap().expect("certificate");
        cert.verify(&block.header, &set).unwrap();
        for (i, (tx, result)) in parts.txs.iter().zip(&parts.results).enumerate() {
            assert_eq!(store.tx_location(&tx.hash()).unwrap(), Some((h, i as u32)));
            assert_eq!(store.tx_result(h, i as u32).unwrap().as_ref(), Some(result));
        }
        assert_eq!(store.tx_result(h, parts.txs.len() as u32).unwrap(), None);
        assert_eq!(
            store.state_root(h).unwrap(),
            block.header.state_root,
            "state root at {h}"
        );
        prev = block.hash();
    }
    assert!(store.block(latest + 1).unwrap().is_none());
    assert!(store.certificate(latest + 1).unwrap().is_none());
    assert!(store.header(latest + 1).unwrap().is_none());
    assert!(store.tx_result(latest + 1, 0).unwrap().is_none());
    verify_state(store, latest, &model_state(latest));
    latest
}

/// Checks the latest-state table against `model` and every key's proof at `height`.
pub fn verify_state(store: &Store, height: Height, model: &MemState) {
    use trustedge_execution::StateRead;
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.height(), height);
    let all = snap.scan(b"", b"", false, usize::MAX).unwrap();
    let expected: Vec<(Vec<u8>, Vec<u8>)> = model
        .map
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(all, expected, "latest state at {height}");
    let root = store.state_root(height).unwrap();
    for (k, v) in &model.map {
        let (value, proof) = store.get_with_proof(k, height).unwrap();
        assert_eq!(value.as_ref(), Some(v));
        proof.verify(&root, k, Some(v)).unwrap();
    }
    for i in 60..64 {
        let (value, proof) = store.get_with_proof(&key(i), height).unwrap();
        assert_eq!(value, None);
        proof.verify(&root, &key(i), None).unwrap();
    }
}

/// Model of the event log of a store: every event of every result, in position order.
pub fn all_events(store: &Store) -> Vec<trustedge_store::IndexedEvent> {
    let latest = store.latest_height().unwrap();
    let mut out = Vec::new();
    for h in 1..=latest {
        let block = store.block(h).unwrap().unwrap();
        for (i, tx) in block.txs.iter().enumerate() {
            let r = store.tx_result(h, i as u32).unwrap().unwrap();
            for (j, e) in r.events.iter().enumerate() {
                out.push(trustedge_store::IndexedEvent {
                    height: h,
                    tx_index: i as u32,
                    event_index: j as u32,
                    tx_hash: tx.hash(),
                    event: e.clone(),
                });
            }
        }
    }
    out
}

/// Reopens a store from its path (the previous handle must be dropped).
pub fn reopen(path: &Path) -> Store {
    Store::open(path).unwrap()
}

/// A writes map from pairs.
pub fn writes<const N: usize>(pairs: [(&str, Option<&str>); N]) -> StateWrites {
    pairs
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
        .collect::<BTreeMap<_, _>>()
}
