//! The ledger's Malachite context ([`mc::Context`]): which types consensus runs on.
//!
//! | Malachite      | TrustEdge                                                          |
//! |----------------|--------------------------------------------------------------------|
//! | `Height`       | [`Height`]: the block height (`u64`; the first block is 1)         |
//! | `Address`      | [`ValidatorAddress`]: a validator's member [`Address`]             |
//! | `Value`        | [`BlockHash`]: the hash of the proposed block                      |
//! | `ValueId`      | [`BlockHash`] again                                                |
//! | `ProposalPart` | [`ProposalPart`]: the block's canonical bytes in signed chunks     |
//! | `ValidatorSet` | [`ConsensusValidatorSet`] over [`trustedge_types::ValidatorSet`]   |
//! | `SigningScheme`| [`LedgerSigning`]: ed25519 under the ledger's one verification rule|
//!
//! # Why the value is the block hash, not the block
//! Malachite runs in proposal-and-parts mode: the signed `Proposal` message carries the
//! value and the block itself travels as [`ProposalPart`]s. Every `Proposal`, every
//! `ProposedValue` in the write-ahead log and every vote carries the value or its id, so the
//! value is kept small: it is the block hash, which *is* the block's identity (the header
//! commits to the transactions, state and results). The block is held next to consensus, in
//! the [`crate::store::ProposalStore`], written before consensus ever sees its hash; a
//! decided hash is turned back into its block there. Value sync carries whole blocks
//! ([`crate::app`], `GetDecidedValues` / `ProcessSyncedValue`).
//!
//! # Proposer selection
//! Deterministic round-robin weighted by voting power: with `P` the total power and the
//! validators in address order (as in [`trustedge_types::ValidatorSet`]), the proposer of
//! `(height, round)` owns ticket `(height + round) mod P`, validator `i` owning the `power_i`
//! tickets after those of validators `0..i`. With equal powers this is plain round-robin
//! that moves one validator per height and per round, so a crashed proposer costs one
//! round and the next round has another proposer. Every node computes the same proposer
//! from the same validator set: nothing else goes in.

use std::fmt;
use std::sync::Arc;

use arc_malachitebft_app_channel::app::types::core::{
    self as mc, LinearTimeouts, NilOrVal, Round, SignedExtension, VoteType, VotingPower,
};
use trustedge_types::{Address, Hash, PublicKey, ValidatorSet};

use crate::error::ConsensusError;
use crate::parts::ProposalPart;
use crate::signing::LedgerSigning;

/// A block height, as Malachite sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Height(pub u64);

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl mc::Height for Height {
    const ZERO: Self = Height(0);
    const INITIAL: Self = Height(1);

    fn increment_by(&self, n: u64) -> Self {
        // Heights never get near u64::MAX; saturating keeps this total.
        Height(self.0.saturating_add(n))
    }

    fn decrement_by(&self, n: u64) -> Option<Self> {
        self.0.checked_sub(n).map(Height)
    }

    fn as_u64(&self) -> u64 {
        self.0
    }
}

/// A validator's address (its member address, `te1…`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValidatorAddress(pub Address);

impl fmt::Display for ValidatorAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for ValidatorAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl mc::Address for ValidatorAddress {}

/// The value consensus decides on: the hash of a block (see the module documentation).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockHash(pub Hash);

impl fmt::Display for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl mc::Value for BlockHash {
    type Id = BlockHash;

    fn id(&self) -> BlockHash {
        *self
    }
}

/// A proposal: "at `(height, round)`, `proposer` proposes the block `value`".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// Height.
    pub height: Height,
    /// Round (always defined for a proposal).
    pub round: Round,
    /// The proposed block's hash.
    pub value: BlockHash,
    /// The round of the polka this value is re-proposed under, or `Nil` for a fresh value.
    pub pol_round: Round,
    /// The proposer.
    pub proposer: ValidatorAddress,
}

impl mc::Proposal<LedgerContext> for Proposal {
    fn height(&self) -> Height {
        self.height
    }

    fn round(&self) -> Round {
        self.round
    }

    fn value(&self) -> &BlockHash {
        &self.value
    }

    fn take_value(self) -> BlockHash {
        self.value
    }

    fn pol_round(&self) -> Round {
        self.pol_round
    }

    fn validator_address(&self) -> &ValidatorAddress {
        &self.proposer
    }
}

/// A prevote or precommit.
///
/// Equality ignores the extension, as Malachite requires for write-ahead-log replay (an
/// extension is the application's and need not be deterministic). TrustEdge never produces
/// extensions and the wire format carries none.
#[derive(Clone, Debug)]
pub struct Vote {
    /// Prevote or precommit.
    pub vote_type: VoteType,
    /// Height.
    pub height: Height,
    /// Round (always defined for a vote that goes on the wire).
    pub round: Round,
    /// The block voted for, or nil.
    pub value: NilOrVal<BlockHash>,
    /// The voter.
    pub validator: ValidatorAddress,
    /// A vote extension (never produced by TrustEdge; see [`crate::app`]).
    pub extension: Option<SignedExtension<LedgerContext>>,
}

impl PartialEq for Vote {
    fn eq(&self, other: &Self) -> bool {
        self.vote_type == other.vote_type
            && self.height == other.height
            && self.round == other.round
            && self.value == other.value
            && self.validator == other.validator
    }
}

impl Eq for Vote {}

impl mc::Vote<LedgerContext> for Vote {
    fn height(&self) -> Height {
        self.height
    }

    fn round(&self) -> Round {
        self.round
    }

    fn value(&self) -> &NilOrVal<BlockHash> {
        &self.value
    }

    fn take_value(self) -> NilOrVal<BlockHash> {
        self.value
    }

    fn vote_type(&self) -> VoteType {
        self.vote_type
    }

    fn validator_address(&self) -> &ValidatorAddress {
        &self.validator
    }

    fn extension(&self) -> Option<&SignedExtension<LedgerContext>> {
        self.extension.as_ref()
    }

    fn take_extension(&mut self) -> Option<SignedExtension<LedgerContext>> {
        self.extension.take()
    }

    fn extend(mut self, extension: SignedExtension<LedgerContext>) -> Self {
        self.extension = Some(extension);
        self
    }
}

/// A validator as consensus sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsensusValidator {
    /// Its address.
    pub address: ValidatorAddress,
    /// Its consensus key.
    pub public_key: PublicKey,
    /// Its voting power (positive).
    pub power: u64,
}

impl mc::Validator<LedgerContext> for ConsensusValidator {
    fn address(&self) -> &ValidatorAddress {
        &self.address
    }

    fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    fn voting_power(&self) -> VotingPower {
        self.power
    }
}

/// The validator set of a height, built from the ledger's [`ValidatorSet`] (sorted by
/// address, non-empty, powers positive, total power without overflow).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsensusValidatorSet {
    validators: Vec<ConsensusValidator>,
    total_power: u64,
    ledger_set: ValidatorSet,
}

impl ConsensusValidatorSet {
    /// Wraps the ledger's set, refusing one consensus could not run on.
    pub fn new(set: ValidatorSet) -> Result<ConsensusValidatorSet, ConsensusError> {
        if set.validators.is_empty() {
            return Err(ConsensusError::ValidatorSet("no validators".into()));
        }
        if !set.validators.is_sorted_by_key(|v| v.address) {
            return Err(ConsensusError::ValidatorSet(
                "validators are not sorted by address".into(),
            ));
        }
        let mut total: u64 = 0;
        let mut validators = Vec::with_capacity(set.validators.len());
        for v in &set.validators {
            if v.power == 0 {
                return Err(ConsensusError::ValidatorSet(format!(
                    "{} has no voting power",
                    v.address
                )));
            }
            total = total.checked_add(v.power).ok_or_else(|| {
                ConsensusError::ValidatorSet("total voting power overflows".into())
            })?;
            validators.push(ConsensusValidator {
                address: ValidatorAddress(v.address),
                public_key: v.public_key,
                power: v.power,
            });
        }
        Ok(ConsensusValidatorSet {
            validators,
            total_power: total,
            ledger_set: set,
        })
    }

    /// The ledger's form of the set.
    pub fn ledger_set(&self) -> &ValidatorSet {
        &self.ledger_set
    }

    /// The validators, in address order.
    pub fn validators(&self) -> &[ConsensusValidator] {
        &self.validators
    }

    /// The proposer of `(height, round)` (see the module documentation).
    pub fn proposer(&self, height: Height, round: Round) -> &ConsensusValidator {
        // The set is non-empty and the total power positive by construction (`new`).
        let total = u128::from(self.total_power);
        let round = u128::from(round.as_u32().unwrap_or(0));
        let ticket = (u128::from(height.0) + round) % total;
        let mut upto: u128 = 0;
        for v in &self.validators {
            upto += u128::from(v.power);
            if ticket < upto {
                return v;
            }
        }
        // Unreachable: the tickets of all validators cover 0..total.
        &self.validators[self.validators.len() - 1]
    }
}

impl mc::ValidatorSet<LedgerContext> for ConsensusValidatorSet {
    fn count(&self) -> usize {
        self.validators.len()
    }

    fn total_voting_power(&self) -> VotingPower {
        self.total_power
    }

    fn get_by_address(&self, address: &ValidatorAddress) -> Option<&ConsensusValidator> {
        self.validators
            .binary_search_by_key(address, |v| v.address)
            .ok()
            .and_then(|i| self.validators.get(i))
    }

    fn get_by_index(&self, index: usize) -> Option<&ConsensusValidator> {
        self.validators.get(index)
    }
}

/// The consensus context of one chain. Cheap to clone.
#[derive(Clone, Debug)]
pub struct LedgerContext {
    chain_id: Arc<str>,
}

impl LedgerContext {
    /// The context of the chain `chain_id`.
    pub fn new(chain_id: &str) -> LedgerContext {
        LedgerContext {
            chain_id: Arc::from(chain_id),
        }
    }

    /// The chain id (bound into every signature).
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }
}

impl mc::Context for LedgerContext {
    type Address = ValidatorAddress;
    type Height = Height;
    type ProposalPart = ProposalPart;
    type Proposal = Proposal;
    type Validator = ConsensusValidator;
    type ValidatorSet = ConsensusValidatorSet;
    type Timeouts = LinearTimeouts;
    type Value = BlockHash;
    type Vote = Vote;
    type Extension = ();
    type SigningScheme = LedgerSigning;

    fn select_proposer<'a>(
        &self,
        validator_set: &'a ConsensusValidatorSet,
        height: Height,
        round: Round,
    ) -> &'a ConsensusValidator {
        validator_set.proposer(height, round)
    }

    fn new_proposal(
        &self,
        height: Height,
        round: Round,
        value: BlockHash,
        pol_round: Round,
        address: ValidatorAddress,
    ) -> Proposal {
        Proposal {
            height,
            round,
            value,
            pol_round,
            proposer: address,
        }
    }

    fn new_prevote(
        &self,
        height: Height,
        round: Round,
        value_id: NilOrVal<BlockHash>,
        address: ValidatorAddress,
    ) -> Vote {
        Vote {
            vote_type: VoteType::Prevote,
            height,
            round,
            value: value_id,
            validator: address,
            extension: None,
        }
    }

    fn new_precommit(
        &self,
        height: Height,
        round: Round,
        value_id: NilOrVal<BlockHash>,
        address: ValidatorAddress,
    ) -> Vote {
        Vote {
            vote_type: VoteType::Precommit,
            height,
            round,
            value: value_id,
            validator: address,
            extension: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustedge_types::{Keypair, Validator};

    fn set(powers: &[u64]) -> ConsensusValidatorSet {
        let vs = ValidatorSet::new(
            powers
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let k = Keypair::from_seed([i as u8 + 1; 32]);
                    Validator {
                        name: format!("v{i}"),
                        address: Address::of_member(&k.public()),
                        public_key: k.public(),
                        power: *p,
                    }
                })
                .collect(),
        )
        .unwrap();
        ConsensusValidatorSet::new(vs).unwrap()
    }

    #[test]
    fn equal_powers_rotate_per_height_and_round() {
        let s = set(&[1, 1, 1, 1]);
        let v = s.validators();
        assert_eq!(s.proposer(Height(1), Round::new(0)), &v[1]);
        assert_eq!(s.proposer(Height(2), Round::new(0)), &v[2]);
        assert_eq!(s.proposer(Height(2), Round::new(1)), &v[3]);
        assert_eq!(s.proposer(Height(3), Round::new(1)), &v[0]);
        assert_eq!(s.proposer(Height(3), Round::Nil), &v[3]);
    }

    #[test]
    fn weighted_powers_give_tickets_in_proportion() {
        let s = set(&[3, 1]);
        let mut count = [0usize; 2];
        for h in 0..400u64 {
            let p = s.proposer(Height(h), Round::new(0));
            let i = s.validators().iter().position(|v| v == p).unwrap();
            count[i] += 1;
        }
        assert_eq!(count, [300, 100]);
    }

    #[test]
    fn vote_equality_ignores_the_extension() {
        let ctx = LedgerContext::new("c");
        let a = ValidatorAddress(Address([1; 20]));
        let v = mc::Context::new_prevote(&ctx, Height(1), Round::new(0), NilOrVal::Nil, a);
        let mut w = v.clone();
        w.extension = Some(mc::SignedMessage::new(
            (),
            crate::signing::ConsensusSignature(trustedge_types::Signature([0; 64])),
        ));
        assert_eq!(v, w);
    }
}
