//! What validators sign, and the signer and verifier Malachite calls.
//!
//! Keys are the ledger's ed25519 keys ([`trustedge_types::Keypair`]) and every check goes
//! through [`PublicKey::verify`], the ledger's one verification rule (the batch equation,
//! also for a single signature), so consensus and the store can never disagree about a
//! signature.
//!
//! # Signing bytes
//! Every message is a domain tag followed by the canonical (Borsh) encoding of its fields,
//! the chain id first, so a signature is valid for one kind of message on one chain only.
//! No tag is a prefix of another.
//!
//! - **Precommit for a block**: exactly [`CommitCertificate::sign_bytes`]`(chain_id, height,
//!   round, block_hash)`. A Malachite commit certificate is a list of such precommit
//!   signatures, so it converts one to one into the ledger's [`CommitCertificate`], which the
//!   store keeps and clients verify with [`CommitCertificate::verify`].
//! - **Prevote, and precommit for nil**: [`domain::VOTE`] ‖ `(chain_id, vote_type, height,
//!   round, Option<block_hash>)`.
//! - **Proposal**: [`domain::PROPOSAL`] ‖ `(chain_id, height, round, block_hash, pol_round,
//!   proposer)`.
//! - **Proposal parts**: [`domain::PROPOSAL_PARTS`], see [`crate::parts`].
//! - **Vote extension** (never produced; verified for completeness): [`domain::EXTENSION`] ‖
//!   `(chain_id, height, round, block_hash, validator)`.
//! - **Validator proof** (binds the libp2p peer id to the validator key): Malachite's
//!   [`ValidatorProof::signing_bytes`], unprefixed, as Malachite requires; it starts with
//!   `PoV`, which no TrustEdge tag does.
//!
//! Rounds are encoded as `i64` (`-1` for nil) in the TrustEdge-specific messages, and as
//! `u32` in the precommit (a vote's round is always defined; one that is not never gets a
//! certificate-compatible signature).

use std::fmt;
use std::sync::Arc;

use arc_malachitebft_app_channel::app::types::core::{
    self as mc, NilOrVal, Round, SignedMessage, ValidatorProof, VoteExtensionScope, VoteType,
};
use arc_malachitebft_app_channel::{Signer, Verifier};
use arc_malachitebft_signing as signing;
use async_trait::async_trait;
use trustedge_types::{CommitCertificate, Keypair, PublicKey, Signature, TypesError, encode};

use crate::context::{LedgerContext, Proposal, Vote};

/// Domain tags of consensus messages (besides [`trustedge_types::hash::domain::PRECOMMIT`]).
pub mod domain {
    /// Prevotes and nil precommits.
    pub const VOTE: &[u8] = b"trustedge/vote/v1";
    /// Proposal messages.
    pub const PROPOSAL: &[u8] = b"trustedge/proposal/v1";
    /// The signature closing a proposal's parts.
    pub const PROPOSAL_PARTS: &[u8] = b"trustedge/proposal-parts/v1";
    /// Vote extensions.
    pub const EXTENSION: &[u8] = b"trustedge/vote-extension/v1";
}

/// A consensus signature: the ledger's [`Signature`], ordered by its bytes (Malachite keeps
/// signatures in ordered collections).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ConsensusSignature(pub Signature);

impl PartialOrd for ConsensusSignature {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ConsensusSignature {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.0.cmp(&other.0.0)
    }
}

impl fmt::Debug for ConsensusSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The signing scheme: ed25519 with the ledger's keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerSigning;

impl mc::SigningScheme for LedgerSigning {
    type DecodingError = TypesError;
    type Signature = ConsensusSignature;
    type PublicKey = PublicKey;
    type PrivateKey = Keypair;

    fn decode_signature(bytes: &[u8]) -> Result<ConsensusSignature, TypesError> {
        let b: [u8; 64] = bytes.try_into().map_err(|_| {
            TypesError::Codec(format!("signature is {} bytes, not 64", bytes.len()))
        })?;
        Ok(ConsensusSignature(Signature(b)))
    }

    fn encode_signature(signature: &ConsensusSignature) -> Vec<u8> {
        signature.0.0.to_vec()
    }

    fn decode_public_key(bytes: &[u8]) -> Result<PublicKey, TypesError> {
        let b: [u8; 32] = bytes.try_into().map_err(|_| {
            TypesError::Codec(format!("public key is {} bytes, not 32", bytes.len()))
        })?;
        Ok(PublicKey(b))
    }

    fn encode_public_key(public_key: &PublicKey) -> Vec<u8> {
        public_key.0.to_vec()
    }
}

fn round_i64(r: Round) -> i64 {
    r.as_i64()
}

fn tagged(tag: &[u8], body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(tag.len() + body.len());
    out.extend_from_slice(tag);
    out.extend_from_slice(&body);
    out
}

/// What a validator signs for `vote` on chain `chain_id` (see the module documentation).
pub fn vote_sign_bytes(chain_id: &str, vote: &Vote) -> Vec<u8> {
    if let (VoteType::Precommit, NilOrVal::Val(id), Some(round)) =
        (vote.vote_type, &vote.value, vote.round.as_u32())
    {
        return CommitCertificate::sign_bytes(chain_id, vote.height.0, round, &id.0);
    }
    let kind: u8 = match vote.vote_type {
        VoteType::Prevote => 0,
        VoteType::Precommit => 1,
    };
    let value = match &vote.value {
        NilOrVal::Nil => None,
        NilOrVal::Val(id) => Some(id.0),
    };
    tagged(
        domain::VOTE,
        encode(&(chain_id, kind, vote.height.0, round_i64(vote.round), value)),
    )
}

/// What a proposer signs for `proposal` on chain `chain_id`.
pub fn proposal_sign_bytes(chain_id: &str, proposal: &Proposal) -> Vec<u8> {
    tagged(
        domain::PROPOSAL,
        encode(&(
            chain_id,
            proposal.height.0,
            round_i64(proposal.round),
            proposal.value.0,
            round_i64(proposal.pol_round),
            proposal.proposer.0,
        )),
    )
}

/// What a validator signs for a vote extension in `scope` (extensions carry no bytes).
pub fn extension_sign_bytes(chain_id: &str, scope: &VoteExtensionScope<LedgerContext>) -> Vec<u8> {
    tagged(
        domain::EXTENSION,
        encode(&(
            chain_id,
            scope.height.0,
            round_i64(scope.round),
            scope.value_id.0,
            scope.validator_address.0,
        )),
    )
}

fn verdict(
    key: &PublicKey,
    msg: &[u8],
    sig: &ConsensusSignature,
) -> arc_malachitebft_app_channel::app::types::core::Validity {
    mc::Validity::from_bool(key.verify(msg, &sig.0).is_ok())
}

/// Signs consensus messages with this validator's key.
#[derive(Clone)]
pub struct LedgerSigner {
    key: Keypair,
    chain_id: Arc<str>,
}

impl LedgerSigner {
    /// A signer for chain `chain_id`.
    pub fn new(key: Keypair, chain_id: &str) -> LedgerSigner {
        LedgerSigner {
            key,
            chain_id: Arc::from(chain_id),
        }
    }

    fn sign(&self, msg: &[u8]) -> ConsensusSignature {
        ConsensusSignature(self.key.sign(msg))
    }
}

/// Verifies consensus messages of chain `chain_id`.
#[derive(Clone)]
pub struct LedgerVerifier {
    chain_id: Arc<str>,
}

impl LedgerVerifier {
    /// A verifier for chain `chain_id`.
    pub fn new(chain_id: &str) -> LedgerVerifier {
        LedgerVerifier {
            chain_id: Arc::from(chain_id),
        }
    }
}

#[async_trait]
impl Signer<LedgerContext> for LedgerSigner {
    async fn sign_vote(
        &self,
        vote: Vote,
    ) -> Result<SignedMessage<LedgerContext, Vote>, signing::Error> {
        let sig = self.sign(&vote_sign_bytes(&self.chain_id, &vote));
        Ok(SignedMessage::new(vote, sig))
    }

    async fn sign_proposal(
        &self,
        proposal: Proposal,
    ) -> Result<SignedMessage<LedgerContext, Proposal>, signing::Error> {
        let sig = self.sign(&proposal_sign_bytes(&self.chain_id, &proposal));
        Ok(SignedMessage::new(proposal, sig))
    }

    async fn sign_vote_extension(
        &self,
        scope: VoteExtensionScope<LedgerContext>,
        extension: (),
    ) -> Result<SignedMessage<LedgerContext, ()>, signing::Error> {
        let sig = self.sign(&extension_sign_bytes(&self.chain_id, &scope));
        Ok(SignedMessage::new(extension, sig))
    }

    async fn sign_validator_proof(
        &self,
        public_key: Vec<u8>,
        peer_id: Vec<u8>,
    ) -> Result<ValidatorProof<LedgerContext>, signing::Error> {
        let sig = self.sign(&ValidatorProof::<LedgerContext>::signing_bytes(
            &public_key,
            &peer_id,
        ));
        Ok(ValidatorProof::new(public_key, peer_id, sig))
    }
}

#[async_trait]
impl Verifier<LedgerContext> for LedgerVerifier {
    async fn verify_signed_vote(
        &self,
        vote: &Vote,
        signature: &ConsensusSignature,
        public_key: &PublicKey,
    ) -> Result<signing::VerificationResult, signing::Error> {
        Ok(to_result(verdict(
            public_key,
            &vote_sign_bytes(&self.chain_id, vote),
            signature,
        )))
    }

    async fn verify_signed_proposal(
        &self,
        proposal: &Proposal,
        signature: &ConsensusSignature,
        public_key: &PublicKey,
    ) -> Result<signing::VerificationResult, signing::Error> {
        Ok(to_result(verdict(
            public_key,
            &proposal_sign_bytes(&self.chain_id, proposal),
            signature,
        )))
    }

    async fn verify_signed_vote_extension(
        &self,
        scope: &VoteExtensionScope<LedgerContext>,
        _extension: &(),
        signature: &ConsensusSignature,
        public_key: &PublicKey,
    ) -> Result<signing::VerificationResult, signing::Error> {
        Ok(to_result(verdict(
            public_key,
            &extension_sign_bytes(&self.chain_id, scope),
            signature,
        )))
    }

    async fn verify_validator_proof(
        &self,
        proof: &ValidatorProof<LedgerContext>,
    ) -> Result<signing::VerificationResult, signing::Error> {
        let Ok(key) = <LedgerSigning as mc::SigningScheme>::decode_public_key(&proof.public_key)
        else {
            return Ok(signing::VerificationResult::Invalid);
        };
        Ok(to_result(verdict(
            &key,
            &proof.preimage(),
            &proof.signature,
        )))
    }
}

fn to_result(v: mc::Validity) -> signing::VerificationResult {
    signing::VerificationResult::from_bool(v.is_valid())
}
