//! Blocks, validator sets, commit certificates and transaction results.

use std::collections::BTreeSet;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::crypto::verify_many;
use crate::hash::domain;
use crate::merkle::root_of;
use crate::{Address, Hash, Height, PublicKey, SignedTx, TypesError};

/// Most transactions in one block.
pub const MAX_BLOCK_TXS: usize = 50_000;
/// Largest encoded block.
pub const MAX_BLOCK_BYTES: usize = 16 * 1024 * 1024;
/// Most validators in a set.
pub const MAX_VALIDATORS: usize = 128;

/// A block header. Its hash identifies the block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct BlockHeader {
    /// Chain id.
    pub chain_id: String,
    /// Height (the first block is 1).
    pub height: Height,
    /// Proposer's time, Unix milliseconds; strictly greater than the parent's.
    pub time_ms: u64,
    /// Hash of the previous block's header ([`Hash::ZERO`] for height 1).
    pub prev_hash: Hash,
    /// Merkle root over the transaction ids, in block order.
    pub tx_root: Hash,
    /// Root of the authenticated state after executing this block.
    pub state_root: Hash,
    /// Merkle root over the transaction results (outcome and events), in block order.
    pub results_root: Hash,
    /// Hash of the validator set that must sign this block's certificate.
    pub validator_set_hash: Hash,
    /// Address of the proposing validator.
    pub proposer: Address,
}

impl BlockHeader {
    /// The block hash.
    pub fn hash(&self) -> Hash {
        Hash::tagged(domain::BLOCK, &[&encode(self)])
    }
}

/// A block: header and transactions.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Block {
    /// The header.
    pub header: BlockHeader,
    /// The transactions, in execution order.
    pub txs: Vec<SignedTx>,
}

impl Block {
    /// The block hash (the header's).
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    /// Canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes a block and checks every transaction's static rules.
    pub fn from_bytes(bytes: &[u8]) -> Result<Block, TypesError> {
        let b: Block = decode(bytes, MAX_BLOCK_BYTES)?;
        if b.txs.len() > MAX_BLOCK_TXS {
            return Err(TypesError::TooLarge {
                what: "block transaction count",
                size_bytes: b.txs.len(),
                limit_bytes: MAX_BLOCK_TXS,
            });
        }
        for tx in &b.txs {
            tx.check_static()?;
        }
        Ok(b)
    }

    /// Merkle root over the ids of `txs`.
    pub fn tx_root_of(txs: &[SignedTx]) -> Hash {
        root_of(txs.iter().map(|t| t.hash().0))
    }
}

/// A validator: a key with voting power.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Validator {
    /// Display name (the operating organisation's choice).
    pub name: String,
    /// Member address of the key.
    pub address: Address,
    /// Consensus public key.
    pub public_key: PublicKey,
    /// Voting power.
    pub power: u64,
}

/// The validators of a height, sorted by address.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct ValidatorSet {
    /// Validators, sorted by address, no duplicates.
    pub validators: Vec<Validator>,
}

impl ValidatorSet {
    /// Builds a set, sorting by address and checking keys, powers and uniqueness.
    pub fn new(mut validators: Vec<Validator>) -> Result<ValidatorSet, TypesError> {
        if validators.is_empty() || validators.len() > MAX_VALIDATORS {
            return Err(TypesError::Invalid {
                field: "validators",
                reason: format!("need 1..={MAX_VALIDATORS} validators"),
            });
        }
        validators.sort_by_key(|v| v.address);
        let mut seen = BTreeSet::new();
        for v in &validators {
            v.public_key.validate()?;
            if v.address != Address::of_member(&v.public_key) {
                return Err(TypesError::Invalid {
                    field: "validator.address",
                    reason: format!("{} is not derived from its public key", v.address),
                });
            }
            if v.power == 0 {
                return Err(TypesError::Invalid {
                    field: "validator.power",
                    reason: "must be positive".into(),
                });
            }
            if !seen.insert(v.address) {
                return Err(TypesError::Invalid {
                    field: "validators",
                    reason: format!("duplicate validator {}", v.address),
                });
            }
        }
        Ok(ValidatorSet { validators })
    }

    /// Hash of the canonical encoding.
    pub fn hash(&self) -> Hash {
        Hash::tagged(domain::VALIDATOR_SET, &[&encode(self)])
    }

    /// Sum of voting power.
    pub fn total_power(&self) -> u64 {
        self.validators.iter().map(|v| v.power).sum()
    }

    /// Smallest power that is more than two thirds of the total.
    pub fn quorum_power(&self) -> u64 {
        self.total_power() * 2 / 3 + 1
    }

    /// The validator with this address.
    pub fn get(&self, address: &Address) -> Option<&Validator> {
        self.validators
            .binary_search_by_key(address, |v| v.address)
            .ok()
            .map(|i| &self.validators[i])
    }
}

/// One validator's precommit signature in a certificate.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CommitSig {
    /// The validator.
    pub validator: Address,
    /// Its signature over [`CommitCertificate::sign_bytes`].
    pub signature: crate::Signature,
}

/// Proof that a block is final: precommits for its hash from more than two thirds of the
/// voting power of the validator set named in its header.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CommitCertificate {
    /// Height of the block.
    pub height: Height,
    /// Consensus round in which it was decided.
    pub round: u32,
    /// Hash of the block.
    pub block_hash: Hash,
    /// Signatures, one per validator at most.
    pub signatures: Vec<CommitSig>,
}

impl CommitCertificate {
    /// What each validator signs: a domain tag and (chain id, height, round, block hash).
    pub fn sign_bytes(chain_id: &str, height: Height, round: u32, block_hash: &Hash) -> Vec<u8> {
        let mut out = domain::PRECOMMIT.to_vec();
        out.extend_from_slice(&encode(&(chain_id, height, round, block_hash)));
        out
    }

    /// Verifies that the certificate finalises `header` under `set`.
    pub fn verify(&self, header: &BlockHeader, set: &ValidatorSet) -> Result<(), TypesError> {
        let invalid = |reason: String| {
            Err(TypesError::Invalid {
                field: "commit certificate",
                reason,
            })
        };
        if self.height != header.height {
            return invalid(format!(
                "height {} != block height {}",
                self.height, header.height
            ));
        }
        if self.block_hash != header.hash() {
            return invalid("block hash does not match the header".into());
        }
        if set.hash() != header.validator_set_hash {
            return invalid("validator set does not match the header's validator_set_hash".into());
        }
        let msg = Self::sign_bytes(&header.chain_id, self.height, self.round, &self.block_hash);
        let mut seen = BTreeSet::new();
        let mut items = Vec::with_capacity(self.signatures.len());
        let mut powers = Vec::with_capacity(self.signatures.len());
        for s in &self.signatures {
            let Some(v) = set.get(&s.validator) else {
                return invalid(format!("{} is not a validator", s.validator));
            };
            if !seen.insert(s.validator) {
                return invalid(format!("{} signed twice", s.validator));
            }
            items.push((v.public_key, msg.as_slice(), s.signature));
            powers.push(v.power);
        }
        let ok = verify_many(&items);
        if let Some(i) = ok.iter().position(|v| !v) {
            return invalid(format!(
                "signature of {} does not verify",
                self.signatures[i].validator
            ));
        }
        let power: u64 = powers.iter().sum();
        if power < set.quorum_power() {
            return invalid(format!(
                "signed power {power} is below the quorum {} of {}",
                set.quorum_power(),
                set.total_power()
            ));
        }
        Ok(())
    }
}

/// One key/value attribute of an event.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct EventAttribute {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// Something a transaction did that others may want to find: indexed by kind and attributes.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Event {
    /// Module that emitted it.
    pub module: String,
    /// Kind, e.g. `device_registered`.
    pub kind: String,
    /// Attributes.
    pub attributes: Vec<EventAttribute>,
}

impl Event {
    /// A new event with no attributes.
    pub fn new(module: &str, kind: &str) -> Event {
        Event {
            module: module.into(),
            kind: kind.into(),
            attributes: Vec::new(),
        }
    }

    /// Adds an attribute.
    pub fn with(mut self, key: &str, value: impl ToString) -> Event {
        self.attributes.push(EventAttribute {
            key: key.into(),
            value: value.to_string(),
        });
        self
    }

    /// The value of an attribute.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.key == key)
            .map(|a| a.value.as_str())
    }
}

/// Why a transaction failed. `code` is stable and machine-readable.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct TxFailure {
    /// Stable code, e.g. `access_denied`, `not_found`, `conflict`.
    pub code: String,
    /// Human-readable reason.
    pub message: String,
}

/// Success or a typed failure.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TxOutcome {
    /// The transaction's effects were applied.
    Success,
    /// Nothing was applied except the nonce.
    Failed(TxFailure),
}

/// The recorded result of one transaction in a block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct TxResult {
    /// Outcome.
    pub outcome: TxOutcome,
    /// Events (empty on failure).
    pub events: Vec<Event>,
}

impl TxResult {
    /// The leaf of the results root for this result.
    pub fn leaf(&self) -> Hash {
        Hash::tagged(domain::TX_RESULT, &[&encode(self)])
    }

    /// Merkle root over results in block order.
    pub fn root_of(results: &[TxResult]) -> Hash {
        root_of(results.iter().map(|r| r.leaf().0))
    }

    /// Whether the transaction succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self.outcome, TxOutcome::Success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;

    fn set(n: u8) -> (Vec<Keypair>, ValidatorSet) {
        let keys: Vec<Keypair> = (1..=n).map(|i| Keypair::from_seed([i; 32])).collect();
        let vs = ValidatorSet::new(
            keys.iter()
                .enumerate()
                .map(|(i, k)| Validator {
                    name: format!("v{i}"),
                    address: Address::of_member(&k.public()),
                    public_key: k.public(),
                    power: 1,
                })
                .collect(),
        )
        .unwrap();
        (keys, vs)
    }

    fn header(vs: &ValidatorSet) -> BlockHeader {
        BlockHeader {
            chain_id: "c".into(),
            height: 3,
            time_ms: 1,
            prev_hash: Hash::ZERO,
            tx_root: Hash::ZERO,
            state_root: Hash::ZERO,
            results_root: Hash::ZERO,
            validator_set_hash: vs.hash(),
            proposer: vs.validators[0].address,
        }
    }

    fn cert(keys: &[Keypair], h: &BlockHeader) -> CommitCertificate {
        let msg = CommitCertificate::sign_bytes(&h.chain_id, h.height, 0, &h.hash());
        CommitCertificate {
            height: h.height,
            round: 0,
            block_hash: h.hash(),
            signatures: keys
                .iter()
                .map(|k| CommitSig {
                    validator: Address::of_member(&k.public()),
                    signature: k.sign(&msg),
                })
                .collect(),
        }
    }

    #[test]
    fn certificate_needs_more_than_two_thirds() {
        let (keys, vs) = set(4);
        let h = header(&vs);
        assert_eq!(vs.quorum_power(), 3);
        cert(&keys[..3], &h).verify(&h, &vs).unwrap();
        let e = cert(&keys[..2], &h).verify(&h, &vs).unwrap_err();
        assert!(e.to_string().contains("below the quorum"), "{e}");
    }

    #[test]
    fn certificate_rejects_duplicates_outsiders_and_bad_signatures() {
        let (keys, vs) = set(4);
        let h = header(&vs);
        let mut c = cert(&keys[..3], &h);
        c.signatures.push(c.signatures[0].clone());
        assert!(c.verify(&h, &vs).is_err());

        let outsider = Keypair::from_seed([99; 32]);
        let mut c = cert(&keys[..2], &h);
        c.signatures
            .extend(cert(std::slice::from_ref(&outsider), &h).signatures);
        assert!(c.verify(&h, &vs).is_err());

        let mut c = cert(&keys[..3], &h);
        c.signatures[1].signature.0[3] ^= 1;
        assert!(c.verify(&h, &vs).is_err());

        let mut other = h.clone();
        other.state_root = Hash([1; 32]);
        assert!(cert(&keys, &h).verify(&other, &vs).is_err());
    }

    #[test]
    fn block_round_trip() {
        let (_, vs) = set(1);
        let b = Block {
            header: header(&vs),
            txs: vec![],
        };
        assert_eq!(Block::from_bytes(&b.to_bytes()).unwrap(), b);
        let mut bytes = b.to_bytes();
        bytes.truncate(bytes.len() - 1);
        assert!(Block::from_bytes(&bytes).is_err());
    }
}
