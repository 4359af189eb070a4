//! A light client: the partial ledger an edge node keeps.
//!
//! It holds block headers only, never blocks or state, and checks everything a full node
//! tells it against them:
//!
//! - **Headers.** [`LightClient::ingest`] takes `(header, certificate)` for consecutive
//!   heights. A header must name the chain, follow the previous one (height + 1, `prev_hash`,
//!   a later time) and be finalised by a certificate of more than two thirds of the voting
//!   power of the validator set of its height, proposed by a member of that set.
//! - **Validator-set changes.** The genesis module keeps, in the state after block `h`, the
//!   set that signs block `h + 1` (see `trustedge_contracts::genesis`). So when a header's
//!   `validator_set_hash` differs from the set the client knows, the client requires a
//!   [`ValidatorSetProof`]: the validator-set value with its Jellyfish Merkle proof against
//!   the *previous* verified header's `state_root` (the genesis state root at height 1). It
//!   adopts the proven set only if its hash is the one the header names, and only then checks
//!   the certificate against it. No header is skipped, so trust moves from the genesis set to
//!   each later set one verified step at a time.
//! - **State and transactions.** [`LightClient::verify_state`] checks a state value (or its
//!   absence) against the state root of a held header; [`LightClient::verify_tx`] checks a
//!   transaction and its result against a held header's `tx_root` and `results_root`. The
//!   header inside a full node's proof is never trusted: it must be the one the client
//!   verified at that height.
//!
//! # Bounds
//! The client keeps the last `window` headers (default [`DEFAULT_WINDOW_HEADERS`], at most
//! [`MAX_WINDOW_HEADERS`]) and, older than that, checkpoints: the header of every height that
//! is a multiple of [`CHECKPOINT_INTERVAL`] and of every height whose validator set changed,
//! at most [`MAX_CHECKPOINTS`] of them (the oldest is dropped first). Proofs about a height
//! neither in the window nor a checkpoint are refused ([`LightError::HeaderNotHeld`]). State
//! is one validator set and these headers; [`LightClient::snapshot`] and
//! [`LightClient::restore`] persist it.
//!
//! Pure: no clock, disk or network. Every input may come from an untrusted peer; every
//! failure is a [`LightError`], never a panic.

use std::collections::{BTreeMap, VecDeque};

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trustedge_contracts::genesis::{Genesis, validator_set_key};
use trustedge_store::StateProof;
use trustedge_types::block::MAX_VALIDATORS;
use trustedge_types::codec::hex_bytes;
use trustedge_types::{
    Address, BlockHeader, CommitCertificate, Hash, Height, MerkleProof, SignedTx, TxResult,
    ValidatorSet,
};

/// Headers kept in the window unless configured otherwise.
pub const DEFAULT_WINDOW_HEADERS: usize = 256;
/// Largest window.
pub const MAX_WINDOW_HEADERS: usize = 10_000;
/// Every height that is a multiple of this is kept as a checkpoint.
pub const CHECKPOINT_INTERVAL: u64 = 1000;
/// Most checkpoints kept.
pub const MAX_CHECKPOINTS: usize = 256;
/// Largest encoded validator set accepted in a proof (128 validators fit many times over).
pub const MAX_VALIDATOR_SET_BYTES: usize = 256 * 1024;
/// Largest encoded snapshot accepted by [`LightSnapshot::from_bytes`].
pub const MAX_SNAPSHOT_BYTES: usize = 32 * 1024 * 1024;

/// Why the light client refused something. `code()` is stable.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LightError {
    /// The trusted genesis or the configuration is unusable.
    #[error("invalid trust root: {0}")]
    InvalidTrust(String),
    /// The header is for another chain.
    #[error("header is for chain {got:?}, this client follows {expected:?}")]
    WrongChain {
        /// This chain.
        expected: String,
        /// The header's.
        got: String,
    },
    /// The header is not the next height.
    #[error("expected height {expected}, got {got}")]
    NotNext {
        /// The next height.
        expected: Height,
        /// The header's.
        got: Height,
    },
    /// `prev_hash` is not the hash of the verified previous header.
    #[error("header {height}: prev_hash is not the hash of the verified header {}", height.saturating_sub(1))]
    WrongPrevHash {
        /// The header's height.
        height: Height,
    },
    /// The header's time is not after its parent's.
    #[error("header {height}: time {time_ms} is not after the parent's {parent_ms}")]
    TimeNotAfter {
        /// The header's height.
        height: Height,
        /// Its time.
        time_ms: u64,
        /// The parent's time (genesis time at height 1).
        parent_ms: u64,
    },
    /// The header names a new validator set and no proof of it came with it.
    #[error(
        "header {height} names validator set {named}, not the known {known}; a proof of the \
         new set against the state root of height {} is needed",
        height.saturating_sub(1)
    )]
    MissingSetProof {
        /// The header's height.
        height: Height,
        /// The set hash the header names.
        named: Hash,
        /// The set hash the client knows.
        known: Hash,
    },
    /// The validator-set proof does not prove the set the header names.
    #[error("header {height}: bad validator-set proof: {reason}")]
    BadSetProof {
        /// The header's height.
        height: Height,
        /// Why.
        reason: String,
    },
    /// The proposer is not in the validator set of the height.
    #[error("header {height}: proposer {proposer} is not a validator of that height")]
    ProposerNotValidator {
        /// The header's height.
        height: Height,
        /// The proposer.
        proposer: Address,
    },
    /// The certificate does not finalise the header under the set of its height.
    #[error("header {height}: certificate does not verify: {reason}")]
    BadCertificate {
        /// The header's height.
        height: Height,
        /// Why.
        reason: String,
    },
    /// The client holds no header of that height (never verified, or no longer kept).
    #[error("no verified header of height {height} is held (held: {held})")]
    HeaderNotHeld {
        /// The height asked about.
        height: Height,
        /// What is held, for the message.
        held: String,
    },
    /// A proof's header is not the header the client verified at that height.
    #[error("the proof's header of height {height} is not the verified one")]
    HeaderMismatch {
        /// The height.
        height: Height,
    },
    /// A state proof does not verify against the verified state root.
    #[error("state proof at height {height} does not verify: {reason}")]
    BadStateProof {
        /// The height.
        height: Height,
        /// Why.
        reason: String,
    },
    /// A transaction inclusion proof does not verify against the verified header.
    #[error("transaction proof at height {height} does not verify: {reason}")]
    BadTxProof {
        /// The height.
        height: Height,
        /// Why.
        reason: String,
    },
    /// A persisted snapshot is damaged or does not fit the trust root.
    #[error("light client snapshot: {0}")]
    Snapshot(String),
}

impl LightError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            LightError::InvalidTrust(_) => "invalid_trust",
            LightError::WrongChain { .. } => "wrong_chain_id",
            LightError::NotNext { .. } => "not_next_height",
            LightError::WrongPrevHash { .. } => "wrong_prev_hash",
            LightError::TimeNotAfter { .. } => "time_not_after_parent",
            LightError::MissingSetProof { .. } => "missing_validator_set_proof",
            LightError::BadSetProof { .. } => "bad_validator_set_proof",
            LightError::ProposerNotValidator { .. } => "proposer_not_validator",
            LightError::BadCertificate { .. } => "bad_certificate",
            LightError::HeaderNotHeld { .. } => "header_not_held",
            LightError::HeaderMismatch { .. } => "header_mismatch",
            LightError::BadStateProof { .. } => "bad_state_proof",
            LightError::BadTxProof { .. } => "bad_tx_proof",
            LightError::Snapshot(_) => "bad_snapshot",
        }
    }
}

/// What the client trusts before the first block: from the genesis file, never from a peer.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct TrustedGenesis {
    /// Chain id.
    pub chain_id: String,
    /// Genesis time, Unix ms: the first block's time must be later.
    pub genesis_time_ms: u64,
    /// Root of the genesis state (the state "after block 0").
    pub state_root: Hash,
    /// The set that signs block 1.
    pub validators: ValidatorSet,
}

impl TrustedGenesis {
    /// The trust root of a genesis document: its chain id, time and validator set, and the
    /// root of the state it creates, computed here rather than asked of anyone.
    pub fn from_genesis(genesis: &Genesis) -> Result<TrustedGenesis, LightError> {
        let bad = |e: String| LightError::InvalidTrust(e);
        let writes = genesis.state_writes().map_err(|e| bad(e.to_string()))?;
        let state_root = trustedge_store::state_root_of(&writes).map_err(|e| bad(e.to_string()))?;
        Ok(TrustedGenesis {
            chain_id: genesis.chain_id.clone(),
            genesis_time_ms: genesis.genesis_time_ms,
            state_root,
            validators: genesis.validator_set().map_err(|e| bad(e.to_string()))?,
        })
    }
}

/// A validator-set value and its state proof, against the state root of the height before
/// the header it comes with. Built from the `/v1/state` answer for the validator-set key.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ValidatorSetProof {
    /// The canonical encoding of the [`ValidatorSet`].
    #[serde(with = "hex_bytes")]
    pub value: Vec<u8>,
    /// Its Jellyfish Merkle proof.
    pub proof: StateProof,
}

/// A transaction and its result in a block, as a full node reports them (the header is
/// compared with the verified one, not trusted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxInclusion {
    /// The block's header.
    pub header: BlockHeader,
    /// Position in the block.
    pub index: u32,
    /// The transaction.
    pub tx: SignedTx,
    /// Path from the transaction id to `tx_root`.
    pub tx_proof: MerkleProof,
    /// The recorded result.
    pub result: TxResult,
    /// Path from the result leaf to `results_root`.
    pub result_proof: MerkleProof,
}

/// What one successful [`LightClient::ingest`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ingested {
    /// The verified height.
    pub height: Height,
    /// Its hash.
    pub hash: Hash,
    /// Whether the validator set changed at this height.
    pub set_changed: bool,
}

/// The persistent form of a [`LightClient`]: headers and the current validator set.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct LightSnapshot {
    /// The window: consecutive verified headers, ascending.
    pub window: Vec<BlockHeader>,
    /// Checkpoints older than or inside the window, ascending.
    pub checkpoints: Vec<BlockHeader>,
    /// The set that signed the latest header (the genesis set before block 1).
    pub validators: ValidatorSet,
}

impl LightSnapshot {
    /// Canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        trustedge_types::encode(self)
    }

    /// Decodes bytes written by [`LightSnapshot::to_bytes`], refusing oversized input.
    pub fn from_bytes(bytes: &[u8]) -> Result<LightSnapshot, LightError> {
        trustedge_types::decode(bytes, MAX_SNAPSHOT_BYTES)
            .map_err(|e| LightError::Snapshot(e.to_string()))
    }
}

/// The light client. See the module documentation.
#[derive(Clone, Debug)]
pub struct LightClient {
    genesis: TrustedGenesis,
    window_len: usize,
    window: VecDeque<BlockHeader>,
    checkpoints: BTreeMap<Height, BlockHeader>,
    validators: ValidatorSet,
}

/// Checks that a set is canonical (sorted, valid keys, positive powers, no duplicates),
/// bounded, and that its quorum arithmetic cannot overflow, so that verifying a certificate
/// against it cannot panic.
fn check_set(set: &ValidatorSet) -> Result<(), String> {
    if set.validators.len() > MAX_VALIDATORS {
        return Err(format!("more than {MAX_VALIDATORS} validators"));
    }
    let canonical = ValidatorSet::new(set.validators.clone()).map_err(|e| e.to_string())?;
    if canonical != *set {
        return Err("validators are not in canonical order".into());
    }
    let total = set
        .validators
        .iter()
        .try_fold(0u64, |acc, v| acc.checked_add(v.power))
        .ok_or("total voting power overflows")?;
    total
        .checked_mul(2)
        .ok_or("quorum arithmetic overflows")
        .map(|_| ())
        .map_err(String::from)
}

impl LightClient {
    /// A client that trusts `genesis` and has verified no header yet. `window_len` is the
    /// number of recent headers kept (1..=[`MAX_WINDOW_HEADERS`]).
    pub fn new(genesis: TrustedGenesis, window_len: usize) -> Result<LightClient, LightError> {
        if !(1..=MAX_WINDOW_HEADERS).contains(&window_len) {
            return Err(LightError::InvalidTrust(format!(
                "window must be 1..={MAX_WINDOW_HEADERS} headers, got {window_len}"
            )));
        }
        check_set(&genesis.validators)
            .map_err(|e| LightError::InvalidTrust(format!("genesis validator set: {e}")))?;
        Ok(LightClient {
            validators: genesis.validators.clone(),
            genesis,
            window_len,
            window: VecDeque::new(),
            checkpoints: BTreeMap::new(),
        })
    }

    /// The trust root.
    pub fn genesis(&self) -> &TrustedGenesis {
        &self.genesis
    }

    /// The latest verified height (0 before the first header).
    pub fn height(&self) -> Height {
        self.window.back().map_or(0, |h| h.height)
    }

    /// The latest verified header.
    pub fn latest(&self) -> Option<&BlockHeader> {
        self.window.back()
    }

    /// The state root after the latest verified height (the genesis root at height 0).
    pub fn latest_state_root(&self) -> Hash {
        self.window
            .back()
            .map_or(self.genesis.state_root, |h| h.state_root)
    }

    /// The validator set that signed the latest verified header (the genesis set at 0).
    pub fn validators(&self) -> &ValidatorSet {
        &self.validators
    }

    /// The verified header of `height`, if held.
    pub fn header(&self, height: Height) -> Option<&BlockHeader> {
        let first = self.window.front()?.height;
        if height >= first {
            let i = usize::try_from(height - first).ok()?;
            if let Some(h) = self.window.get(i) {
                return Some(h);
            }
        }
        self.checkpoints.get(&height)
    }

    /// Heights held: the window's range and the number of checkpoints, for messages.
    pub fn held(&self) -> String {
        match (self.window.front(), self.window.back()) {
            (Some(a), Some(b)) => format!(
                "window {}..={} and {} checkpoints",
                a.height,
                b.height,
                self.checkpoints.len()
            ),
            _ => "nothing yet".into(),
        }
    }

    fn state_root_at(&self, height: Height) -> Result<Hash, LightError> {
        if height == 0 {
            return Ok(self.genesis.state_root);
        }
        self.header(height)
            .map(|h| h.state_root)
            .ok_or_else(|| LightError::HeaderNotHeld {
                height,
                held: self.held(),
            })
    }

    /// Verifies the next header and adopts it. `set_proof` is required when the header
    /// names a validator set other than the one that signed the previous header, and is
    /// checked whenever given. Nothing changes on `Err`.
    pub fn ingest(
        &mut self,
        header: BlockHeader,
        certificate: &CommitCertificate,
        set_proof: Option<&ValidatorSetProof>,
    ) -> Result<Ingested, LightError> {
        let height = header.height;
        if header.chain_id != self.genesis.chain_id {
            return Err(LightError::WrongChain {
                expected: self.genesis.chain_id.clone(),
                got: header.chain_id,
            });
        }
        let expected = self.height().saturating_add(1);
        if height != expected {
            return Err(LightError::NotNext {
                expected,
                got: height,
            });
        }
        let (prev_hash, parent_ms, prev_root) = match self.window.back() {
            Some(p) => (p.hash(), p.time_ms, p.state_root),
            None => (
                Hash::ZERO,
                self.genesis.genesis_time_ms,
                self.genesis.state_root,
            ),
        };
        if header.prev_hash != prev_hash {
            return Err(LightError::WrongPrevHash { height });
        }
        if header.time_ms <= parent_ms {
            return Err(LightError::TimeNotAfter {
                height,
                time_ms: header.time_ms,
                parent_ms,
            });
        }
        let known = self.validators.hash();
        let proven = match set_proof {
            Some(p) => Some(prove_set(height, &header, prev_root, p)?),
            None if header.validator_set_hash != known => {
                return Err(LightError::MissingSetProof {
                    height,
                    named: header.validator_set_hash,
                    known,
                });
            }
            None => None,
        };
        let set = proven.as_ref().unwrap_or(&self.validators);
        if set.get(&header.proposer).is_none() {
            return Err(LightError::ProposerNotValidator {
                height,
                proposer: header.proposer,
            });
        }
        certificate
            .verify(&header, set)
            .map_err(|e| LightError::BadCertificate {
                height,
                reason: e.to_string(),
            })?;
        let set_changed = header.validator_set_hash != known;
        if let Some(set) = proven {
            self.validators = set;
        }
        let hash = header.hash();
        if set_changed || height.is_multiple_of(CHECKPOINT_INTERVAL) {
            self.checkpoints.insert(height, header.clone());
            while self.checkpoints.len() > MAX_CHECKPOINTS {
                self.checkpoints.pop_first();
            }
        }
        self.window.push_back(header);
        while self.window.len() > self.window_len {
            self.window.pop_front();
        }
        Ok(Ingested {
            height,
            hash,
            set_changed,
        })
    }

    /// Verifies that under the verified state root of `height` (0 = genesis state), `key`
    /// has `value` (`Some`) or is absent (`None`).
    pub fn verify_state(
        &self,
        height: Height,
        key: &[u8],
        value: Option<&[u8]>,
        proof: &StateProof,
    ) -> Result<(), LightError> {
        let root = self.state_root_at(height)?;
        proof
            .verify(&root, key, value)
            .map_err(|e| LightError::BadStateProof {
                height,
                reason: e.to_string(),
            })
    }

    /// Verifies that a transaction and its recorded result are part of the verified block
    /// whose header the inclusion names.
    pub fn verify_tx(&self, inclusion: &TxInclusion) -> Result<(), LightError> {
        let height = inclusion.header.height;
        let held = self
            .header(height)
            .ok_or_else(|| LightError::HeaderNotHeld {
                height,
                held: self.held(),
            })?;
        if *held != inclusion.header {
            return Err(LightError::HeaderMismatch { height });
        }
        let bad = |reason: String| LightError::BadTxProof { height, reason };
        let index = u64::from(inclusion.index);
        if inclusion.tx_proof.leaf_index != index || inclusion.result_proof.leaf_index != index {
            return Err(bad(
                "proof index does not match the transaction index".into()
            ));
        }
        inclusion
            .tx_proof
            .verify(&inclusion.tx.hash().0, &held.tx_root)
            .map_err(|e| bad(format!("transaction not in tx_root: {e}")))?;
        inclusion
            .result_proof
            .verify(&inclusion.result.leaf().0, &held.results_root)
            .map_err(|e| bad(format!("result not in results_root: {e}")))
    }

    /// The client's persistent form.
    pub fn snapshot(&self) -> LightSnapshot {
        LightSnapshot {
            window: self.window.iter().cloned().collect(),
            checkpoints: self.checkpoints.values().cloned().collect(),
            validators: self.validators.clone(),
        }
    }

    /// A client from a snapshot taken by [`LightClient::snapshot`] under the same trust
    /// root. The snapshot comes from this node's own disk, so its certificates are not kept
    /// or re-checked; its shape is (chain, bounds, contiguous linked window, the set matching
    /// the latest header), so that damage is detected rather than believed.
    pub fn restore(
        genesis: TrustedGenesis,
        window_len: usize,
        snapshot: LightSnapshot,
    ) -> Result<LightClient, LightError> {
        let mut client = LightClient::new(genesis, window_len)?;
        let bad = |m: String| Err(LightError::Snapshot(m));
        if snapshot.window.len() > MAX_WINDOW_HEADERS
            || snapshot.checkpoints.len() > MAX_CHECKPOINTS
        {
            return bad("more headers than a client keeps".into());
        }
        let chain = &client.genesis.chain_id;
        if snapshot
            .window
            .iter()
            .chain(&snapshot.checkpoints)
            .any(|h| h.chain_id != *chain)
        {
            return bad(format!("a header is not of chain {chain:?}"));
        }
        for pair in snapshot.window.windows(2) {
            if pair[1].height != pair[0].height.saturating_add(1)
                || pair[1].prev_hash != pair[0].hash()
            {
                return bad(format!("window is not linked at height {}", pair[1].height));
            }
        }
        let latest = snapshot.window.last().map_or(0, |h| h.height);
        for pair in snapshot.checkpoints.windows(2) {
            if pair[1].height <= pair[0].height {
                return bad("checkpoints are not ascending".into());
            }
        }
        if snapshot
            .checkpoints
            .last()
            .is_some_and(|h| h.height > latest)
        {
            return bad("a checkpoint is above the latest header".into());
        }
        check_set(&snapshot.validators)
            .map_err(|e| LightError::Snapshot(format!("validator set: {e}")))?;
        let named = snapshot
            .window
            .last()
            .map_or(client.genesis.validators.hash(), |h| h.validator_set_hash);
        if snapshot.validators.hash() != named {
            return bad("the validator set is not the one the latest header names".into());
        }
        client.validators = snapshot.validators;
        client.checkpoints = snapshot
            .checkpoints
            .into_iter()
            .map(|h| (h.height, h))
            .collect();
        client.window = snapshot.window.into();
        while client.window.len() > client.window_len {
            client.window.pop_front();
        }
        Ok(client)
    }
}

/// Checks a validator-set proof against the previous state root and the header's set hash,
/// and returns the proven set.
fn prove_set(
    height: Height,
    header: &BlockHeader,
    prev_root: Hash,
    p: &ValidatorSetProof,
) -> Result<ValidatorSet, LightError> {
    let bad = |reason: String| LightError::BadSetProof { height, reason };
    p.proof
        .verify(&prev_root, &validator_set_key(), Some(&p.value))
        .map_err(|e| {
            bad(format!(
                "not the validator set in the state of height {}: {e}",
                height.saturating_sub(1)
            ))
        })?;
    let set: ValidatorSet = trustedge_types::decode(&p.value, MAX_VALIDATOR_SET_BYTES)
        .map_err(|e| bad(format!("the proven value is not a validator set: {e}")))?;
    check_set(&set).map_err(|e| bad(format!("the proven set is invalid: {e}")))?;
    if set.hash() != header.validator_set_hash {
        return Err(bad(format!(
            "the proven set {} is not the set {} the header names",
            set.hash(),
            header.validator_set_hash
        )));
    }
    Ok(set)
}
