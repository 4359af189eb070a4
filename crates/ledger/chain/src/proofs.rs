//! Proofs a client verifies offline: transaction inclusion (with its result) and state values.
//!
//! Both are checked against a block header. A client that trusts a header's hash (or, with
//! the validator set, checks the header's commit certificate) needs nothing else.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trustedge_store::StateProof;
use trustedge_types::codec::hex_bytes;
use trustedge_types::{
    BlockHeader, CommitCertificate, Hash, Height, MerkleProof, SignedTx, TxResult, ValidatorSet,
};

/// Why a proof does not verify.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("proof does not verify: {0}")]
pub struct ProofError(pub String);

/// A transaction, its result and where both sit in a block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct TxInclusionProof {
    /// Header of the block that holds the transaction.
    pub header: BlockHeader,
    /// The block's commit certificate.
    pub certificate: Option<CommitCertificate>,
    /// Position in the block.
    pub index: u32,
    /// The transaction.
    pub tx: SignedTx,
    /// Path from the transaction id to `header.tx_root`.
    pub tx_proof: MerkleProof,
    /// The recorded result.
    pub result: TxResult,
    /// Path from the result leaf to `header.results_root`.
    pub result_proof: MerkleProof,
}

impl TxInclusionProof {
    /// Verifies inclusion of the transaction and its result in the header; with a validator
    /// set, also that the certificate finalises the header.
    pub fn verify(&self, validators: Option<&ValidatorSet>) -> Result<(), ProofError> {
        let e = |m: &str| ProofError(m.to_string());
        if self.tx_proof.leaf_index != u64::from(self.index)
            || self.result_proof.leaf_index != u64::from(self.index)
        {
            return Err(e("proof index does not match the transaction index"));
        }
        self.tx_proof
            .verify(&self.tx.hash().0, &self.header.tx_root)
            .map_err(|x| ProofError(format!("transaction not in tx_root: {x}")))?;
        self.result_proof
            .verify(&self.result.leaf().0, &self.header.results_root)
            .map_err(|x| ProofError(format!("result not in results_root: {x}")))?;
        verify_finality(&self.header, self.certificate.as_ref(), validators)
    }
}

fn verify_finality(
    header: &BlockHeader,
    certificate: Option<&CommitCertificate>,
    validators: Option<&ValidatorSet>,
) -> Result<(), ProofError> {
    match (validators, certificate) {
        (None, _) => Ok(()),
        (Some(_), None) => Err(ProofError("no certificate to check finality with".into())),
        (Some(set), Some(c)) => c.verify(header, set).map_err(|x| ProofError(x.to_string())),
    }
}

/// A state value (or its absence) at a height, with its authenticated-state proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct StateValueProof {
    /// Height the value was read at (0 = genesis state).
    pub height: Height,
    /// Header of that block (none for the genesis state).
    pub header: Option<BlockHeader>,
    /// Its certificate.
    pub certificate: Option<CommitCertificate>,
    /// State root the proof is against.
    pub state_root: Hash,
    /// The raw state key.
    #[serde(with = "hex_bytes")]
    pub key: Vec<u8>,
    /// The value, or none if the key is absent.
    #[serde(with = "opt_hex")]
    pub value: Option<Vec<u8>>,
    /// The Jellyfish Merkle proof.
    pub proof: StateProof,
}

impl StateValueProof {
    /// Verifies the value (or absence) against the state root, the root against the header,
    /// and with a validator set the header's finality.
    pub fn verify(&self, validators: Option<&ValidatorSet>) -> Result<(), ProofError> {
        if let Some(h) = &self.header {
            if h.state_root != self.state_root || h.height != self.height {
                return Err(ProofError(
                    "state root or height does not match the header".into(),
                ));
            }
            verify_finality(h, self.certificate.as_ref(), validators)?;
        } else if validators.is_some() && self.height != 0 {
            return Err(ProofError("no header to check finality with".into()));
        }
        self.proof
            .verify(&self.state_root, &self.key, self.value.as_deref())
            .map_err(|x| ProofError(x.to_string()))
    }
}

/// Any proof the API hands out, tagged by kind: what `trustedge verify-proof` reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Proof {
    /// Transaction inclusion.
    Tx(TxInclusionProof),
    /// State value.
    State(StateValueProof),
}

impl Proof {
    /// Verifies the proof.
    pub fn verify(&self, validators: Option<&ValidatorSet>) -> Result<(), ProofError> {
        match self {
            Proof::Tx(p) => p.verify(validators),
            Proof::State(p) => p.verify(validators),
        }
    }
}

mod opt_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let o = Option::<String>::deserialize(d)?;
        o.map(|s| hex::decode(s).map_err(serde::de::Error::custom))
            .transpose()
    }
}
