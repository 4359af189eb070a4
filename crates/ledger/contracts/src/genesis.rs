//! The genesis file and the `genesis` module, which holds what the genesis file fixes: the
//! chain id, the governance policy and the validator set.
//!
//! The validator set is kept in state (not only in the genesis file) so that it is covered
//! by the state root: a light client that trusts a state root can prove which validators
//! must sign the next block.
//!
//! # Validator-set governance
//! Health authorities change the set by proposal and approval ([`GenesisCall`]). An approved
//! change is scheduled for a height [`VALIDATOR_CHANGE_DELAY`] blocks after its approval,
//! and this module's end-of-block hook applies it. *Invariant:* the value at
//! [`KEY_VALIDATORS`] (read by [`validator_set`]) is always the set of the **next** height:
//! the state after block `h` holds the set that signs block `h + 1`, and the hook of block
//! `h` applies the changes scheduled for `h + 1`. A light client that trusts block `h`'s
//! state root can therefore prove the set of `h + 1`.
//!
//! # What is stored (besides the genesis values)
//! - `vchange/next-id` → `u64`: the next proposal id.
//! - `vchange/pending/<id>` → [`ValidatorChangeProposal`] (at most
//!   [`MAX_PENDING_VALIDATOR_CHANGES`], lapsing after [`VALIDATOR_CHANGE_TTL_BLOCKS`]).
//! - `vchange/scheduled/<height><id>` → [`ScheduledValidatorChange`] (at most
//!   [`MAX_SCHEDULED_VALIDATOR_CHANGES`]).
//! - `vretired/<key>` → height: keys of removed validators, never to be reused.

use std::collections::{BTreeMap, BTreeSet};

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trustedge_execution::module::{module_key, read_value};
use trustedge_execution::state::prefix_end;
use trustedge_execution::{
    Access, BlockContext, Module, OrgKind, Principal, QueryError, Role, StateError, StateRead,
    StateWrites, TxContext, TxError,
};
use trustedge_types::block::MAX_VALIDATORS;
use trustedge_types::tx::MAX_CHAIN_ID_BYTES;
use trustedge_types::{Address, Hash, Height, PublicKey, Validator, ValidatorSet, codec};

use crate::error::GenesisError;
use crate::orgs::{self, MAX_MEMBERS_PER_ORG};
use crate::util::{decode_stored, is_valid_id, key_in_use, only_params, to_json};

/// Name of the module.
pub const NAME: &str = "genesis";
/// Most organisations a genesis file may create (more are admitted by governance).
pub const MAX_GENESIS_ORGS: usize = 1000;
/// Largest genesis file accepted, so that reading it cannot exhaust memory.
pub const MAX_GENESIS_JSON_BYTES: usize = 16 * 1024 * 1024;

/// Domain tag of the genesis hash.
const GENESIS_HASH_TAG: &[u8] = b"trustedge/genesis/v1";

/// State key (relative to the module) of the [`ChainInfo`].
pub const KEY_CHAIN: &[u8] = b"chain";
/// State key of the [`GovernancePolicy`].
pub const KEY_PARAMS: &[u8] = b"params";
/// State key of the [`ValidatorSet`] of the next height (see the module documentation).
pub const KEY_VALIDATORS: &[u8] = b"validators";

/// How the consortium governs itself.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernancePolicy {
    /// Approvals from distinct health-authority organisations needed to admit an
    /// organisation (the proposer's counts as the first).
    pub admission_approvals: u32,
}

/// A member key created at genesis. People are not named on the ledger: a member is its key
/// and its role.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisMember {
    /// The member's key.
    pub public_key: PublicKey,
    /// Its role in the organisation.
    pub role: Role,
}

/// An organisation created at genesis.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisOrg {
    /// Id: 1..=32 characters of `[a-z0-9-]`.
    pub id: String,
    /// Public name of the organisation.
    pub name: String,
    /// Kind.
    pub kind: OrgKind,
    /// Initial members; at least one admin.
    pub members: Vec<GenesisMember>,
}

/// The genesis file (`genesis.json`): everything the first block builds on.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Chain id; transactions signed for another chain are refused.
    pub chain_id: String,
    /// Genesis time, Unix milliseconds; the first block's time must be later.
    pub genesis_time_ms: u64,
    /// The initial validators.
    pub validators: Vec<Validator>,
    /// The founding organisations.
    pub organisations: Vec<GenesisOrg>,
    /// The governance policy.
    pub policy: GovernancePolicy,
}

/// The chain's identity as stored in state.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ChainInfo {
    /// Chain id.
    pub chain_id: String,
    /// Genesis time, Unix milliseconds.
    pub genesis_time_ms: u64,
}

impl Genesis {
    /// Parses and validates a genesis file.
    pub fn from_json(bytes: &[u8]) -> Result<Genesis, GenesisError> {
        if bytes.len() > MAX_GENESIS_JSON_BYTES {
            return Err(GenesisError::TooMany {
                what: "genesis bytes",
                count: bytes.len(),
                limit: MAX_GENESIS_JSON_BYTES,
            });
        }
        let g: Genesis =
            serde_json::from_slice(bytes).map_err(|e| GenesisError::Json(e.to_string()))?;
        g.validate()?;
        Ok(g)
    }

    /// Pretty JSON, as written to `genesis.json`.
    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Hash of the canonical encoding; nodes compare it to make sure they start from the
    /// same genesis.
    pub fn hash(&self) -> Hash {
        Hash::tagged(GENESIS_HASH_TAG, &[&codec::encode(self)])
    }

    /// Checks every rule a genesis must satisfy (see [`GenesisError`]).
    pub fn validate(&self) -> Result<(), GenesisError> {
        let c = &self.chain_id;
        if c.is_empty()
            || c.len() > MAX_CHAIN_ID_BYTES
            || !c
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(GenesisError::Invalid {
                field: "chain_id",
                reason: format!(
                    "must be 1..={MAX_CHAIN_ID_BYTES} characters of [A-Za-z0-9._-], got {c:?}"
                ),
            });
        }
        if self.organisations.len() > MAX_GENESIS_ORGS {
            return Err(GenesisError::TooMany {
                what: "organisations",
                count: self.organisations.len(),
                limit: MAX_GENESIS_ORGS,
            });
        }
        let mut ids = BTreeSet::new();
        let mut keys = BTreeSet::new();
        for org in &self.organisations {
            if !is_valid_id(&org.id) {
                return Err(GenesisError::InvalidId {
                    what: "organisation id",
                    id: org.id.clone(),
                });
            }
            if !ids.insert(org.id.as_str()) {
                return Err(GenesisError::DuplicateOrg(org.id.clone()));
            }
            orgs::check_org_name(&org.name).map_err(|reason| GenesisError::Invalid {
                field: "organisation name",
                reason,
            })?;
            if org.members.len() > MAX_MEMBERS_PER_ORG as usize {
                return Err(GenesisError::TooMany {
                    what: "members of one organisation",
                    count: org.members.len(),
                    limit: MAX_MEMBERS_PER_ORG as usize,
                });
            }
            if !org.members.iter().any(|m| m.role == Role::Admin) {
                return Err(GenesisError::NoAdmin(org.id.clone()));
            }
            for m in &org.members {
                m.public_key
                    .validate()
                    .map_err(|error| GenesisError::InvalidKey {
                        whose: format!("a member of {}", org.id),
                        error,
                    })?;
                if !keys.insert(m.public_key) {
                    return Err(GenesisError::DuplicateKey(m.public_key));
                }
            }
        }
        let health_authorities = self
            .organisations
            .iter()
            .filter(|o| o.kind == OrgKind::HealthAuthority)
            .count();
        if health_authorities == 0 {
            return Err(GenesisError::NoHealthAuthority);
        }
        let approvals = self.policy.admission_approvals;
        if approvals == 0 || approvals as usize > health_authorities {
            return Err(GenesisError::AdmissionApprovals {
                approvals,
                health_authorities,
            });
        }
        for v in &self.validators {
            v.public_key
                .validate()
                .map_err(|error| GenesisError::InvalidKey {
                    whose: format!("validator {:?}", v.name),
                    error,
                })?;
            if !keys.insert(v.public_key) {
                return Err(GenesisError::DuplicateKey(v.public_key));
            }
        }
        self.validator_set()?;
        Ok(())
    }

    /// The initial validator set (sorted by address).
    pub fn validator_set(&self) -> Result<ValidatorSet, GenesisError> {
        ValidatorSet::new(self.validators.clone()).map_err(GenesisError::Validators)
    }

    /// The state before the first block: chain info, policy and validator set in this
    /// module's namespace, and the founding organisations and members in `orgs`'s.
    pub fn state_writes(&self) -> Result<StateWrites, GenesisError> {
        self.validate()?;
        let mut w = StateWrites::new();
        let mut put = |module: &str, key: &[u8], value: Vec<u8>| {
            w.insert(module_key(module, key), Some(value));
        };
        put(
            NAME,
            KEY_CHAIN,
            codec::encode(&ChainInfo {
                chain_id: self.chain_id.clone(),
                genesis_time_ms: self.genesis_time_ms,
            }),
        );
        put(NAME, KEY_PARAMS, codec::encode(&self.policy));
        put(NAME, KEY_VALIDATORS, codec::encode(&self.validator_set()?));
        for org in &self.organisations {
            for (key, value) in orgs::genesis_entries(org) {
                put(orgs::NAME, &key, value);
            }
        }
        Ok(w)
    }
}

/// The full state key of the validator set: what a light client asks a proof of.
pub fn validator_set_key() -> Vec<u8> {
    module_key(NAME, KEY_VALIDATORS)
}

/// The authenticated validator set of the **next** height: in the state after block `h`,
/// the set that must sign block `h + 1` (at genesis, the set of block 1). Written at genesis
/// and by the end-of-block hook that applies scheduled changes.
pub fn validator_set(state: &dyn StateRead) -> Result<Option<ValidatorSet>, StateError> {
    read_value(state, &module_key(NAME, KEY_VALIDATORS))
}

/// The governance policy.
pub fn policy(state: &dyn StateRead) -> Result<Option<GovernancePolicy>, StateError> {
    read_value(state, &module_key(NAME, KEY_PARAMS))
}

/// The chain id and genesis time.
pub fn chain_info(state: &dyn StateRead) -> Result<Option<ChainInfo>, StateError> {
    read_value(state, &module_key(NAME, KEY_CHAIN))
}

// ---------------------------------------------------------------------------------------
// Validator-set governance

/// Blocks between the approval of a validator-set change and the height it takes effect at:
/// a change approved in block `h` applies to the set that signs block
/// `h + VALIDATOR_CHANGE_DELAY`. Consensus must know the validator set of a height before
/// that height starts; with a delay of 2, committing block `h` already fixes the sets of
/// `h + 1` (in state, see [`validator_set`]) and `h + 2` (scheduled), so an engine that
/// prepares a height ahead never sees its set change under it.
pub const VALIDATOR_CHANGE_DELAY: u64 = 2;
/// Most validator-set change proposals pending (awaiting approvals) at once.
pub const MAX_PENDING_VALIDATOR_CHANGES: usize = 8;
/// Most approved changes waiting for their height at once. Bounds the end-of-block work and
/// the projection every new proposal is checked against.
pub const MAX_SCHEDULED_VALIDATOR_CHANGES: usize = 16;
/// Blocks after which an unfinished validator-set change proposal lapses.
pub const VALIDATOR_CHANGE_TTL_BLOCKS: u64 = 100_000;
/// Largest voting power of one validator. With at most [`MAX_VALIDATORS`] validators the
/// total (and the quorum arithmetic on it) stays far from `u64` overflow.
pub const MAX_VALIDATOR_POWER: u64 = 1_000_000_000;
/// Longest validator name.
pub const MAX_VALIDATOR_NAME_BYTES: usize = 64;

/// State key of the next validator-set change proposal id (`u64`).
pub const KEY_NEXT_CHANGE_ID: &[u8] = b"vchange/next-id";
/// Prefix of pending proposals: `vchange/pending/<id: u64 BE>` → [`ValidatorChangeProposal`].
pub const PENDING_CHANGE_PREFIX: &[u8] = b"vchange/pending/";
/// Prefix of approved changes: `vchange/scheduled/<effective height: u64 BE><id: u64 BE>` →
/// [`ScheduledValidatorChange`]. Big-endian, so a prefix scan returns them in the order
/// they apply.
pub const SCHEDULED_CHANGE_PREFIX: &[u8] = b"vchange/scheduled/";
/// Prefix of keys of removed validators: `vretired/<key: 32 bytes>` → height removed at.
/// Kept so that a validator key is never reused for another identity.
pub const RETIRED_VALIDATOR_PREFIX: &[u8] = b"vretired/";

/// A change to the validator set.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ValidatorChange {
    /// Adds a validator. Its key must never have had an identity on this ledger.
    Add {
        /// Display name (1..=64 bytes, no control characters).
        name: String,
        /// Consensus key.
        public_key: PublicKey,
        /// Voting power, 1..=[`MAX_VALIDATOR_POWER`].
        power: u64,
    },
    /// Removes a validator; the set may not become empty. The key stays retired.
    Remove {
        /// The validator's (member) address.
        address: Address,
    },
    /// Changes a validator's voting power.
    SetPower {
        /// The validator's address.
        address: Address,
        /// New power, 1..=[`MAX_VALIDATOR_POWER`].
        power: u64,
    },
}

impl ValidatorChange {
    /// The address of the validator the change is about.
    pub fn address(&self) -> Address {
        match self {
            ValidatorChange::Add { public_key, .. } => Address::of_member(public_key),
            ValidatorChange::Remove { address } | ValidatorChange::SetPower { address, .. } => {
                *address
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ValidatorChange::Add { .. } => "add",
            ValidatorChange::Remove { .. } => "remove",
            ValidatorChange::SetPower { .. } => "set_power",
        }
    }

    /// The key an `Add` introduces.
    fn new_key(&self) -> Option<&PublicKey> {
        match self {
            ValidatorChange::Add { public_key, .. } => Some(public_key),
            _ => None,
        }
    }
}

/// A validator-set change waiting for approvals.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ValidatorChangeProposal {
    /// Id (assigned in proposal order).
    pub id: u64,
    /// The change.
    pub change: ValidatorChange,
    /// Health-authority organisations that approved, in order; the proposer's first.
    pub approvals: Vec<String>,
    /// Height it was proposed at.
    pub proposed_height: Height,
    /// Last height at which it can still be approved.
    pub expires_height: Height,
}

/// An approved validator-set change waiting for its height.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ScheduledValidatorChange {
    /// Id of the proposal.
    pub id: u64,
    /// The change.
    pub change: ValidatorChange,
    /// The organisations that approved it.
    pub approvals: Vec<String>,
    /// Height of the block whose transaction completed the approvals.
    pub approved_height: Height,
    /// First height whose block is signed by the changed set:
    /// `approved_height + VALIDATOR_CHANGE_DELAY`.
    pub effective_height: Height,
}

fn pending_change_key(id: u64) -> Vec<u8> {
    [PENDING_CHANGE_PREFIX, &id.to_be_bytes()].concat()
}

fn scheduled_change_key(effective_height: Height, id: u64) -> Vec<u8> {
    [
        SCHEDULED_CHANGE_PREFIX,
        &effective_height.to_be_bytes(),
        &id.to_be_bytes(),
    ]
    .concat()
}

fn retired_key(key: &PublicKey) -> Vec<u8> {
    [RETIRED_VALIDATOR_PREFIX, &key.0].concat()
}

fn scan_decoded<T: BorshDeserialize>(
    state: &dyn StateRead,
    prefix: &[u8],
    limit: usize,
    what: &str,
) -> Result<Vec<T>, StateError> {
    let lower = module_key(NAME, prefix);
    let upper = prefix_end(&lower);
    state
        .scan(&lower, &upper, false, limit)?
        .iter()
        .map(|(k, v)| {
            decode_stored(v).ok_or_else(|| {
                StateError(format!(
                    "undecodable {what} at {}",
                    String::from_utf8_lossy(k)
                ))
            })
        })
        .collect()
}

/// The validator-set change proposals awaiting approvals (lapsed ones included until the
/// next proposal clears them), by id.
pub fn pending_validator_changes(
    state: &dyn StateRead,
) -> Result<Vec<ValidatorChangeProposal>, StateError> {
    scan_decoded(
        state,
        PENDING_CHANGE_PREFIX,
        MAX_PENDING_VALIDATOR_CHANGES + 1,
        "validator change proposal",
    )
}

/// The approved validator-set changes not yet applied, in the order they apply.
pub fn scheduled_validator_changes(
    state: &dyn StateRead,
) -> Result<Vec<ScheduledValidatorChange>, StateError> {
    scan_decoded(
        state,
        SCHEDULED_CHANGE_PREFIX,
        MAX_SCHEDULED_VALIDATOR_CHANGES + 1,
        "scheduled validator change",
    )
}

/// The height a validator key was removed at, if it was a validator once.
pub fn retired_validator(
    state: &dyn StateRead,
    key: &PublicKey,
) -> Result<Option<Height>, StateError> {
    read_value(state, &module_key(NAME, &retired_key(key)))
}

/// What a key is reserved for by validator-set governance (a pending or scheduled
/// addition, or a removed validator), if anything. Part of the one-identity-per-key rule.
pub(crate) fn validator_key_reserved(
    state: &dyn StateRead,
    key: &PublicKey,
) -> Result<Option<String>, StateError> {
    if retired_validator(state, key)?.is_some() {
        return Ok(Some(format!("key {key} was a validator key")));
    }
    if let Some(p) = pending_validator_changes(state)?
        .iter()
        .find(|p| p.change.new_key() == Some(key))
    {
        return Ok(Some(format!(
            "key {key} is the key of pending validator change {}",
            p.id
        )));
    }
    if let Some(s) = scheduled_validator_changes(state)?
        .iter()
        .find(|s| s.change.new_key() == Some(key))
    {
        return Ok(Some(format!(
            "key {key} is the key of validator change {} scheduled for height {}",
            s.id, s.effective_height
        )));
    }
    Ok(None)
}

fn check_power(power: u64) -> Result<(), TxError> {
    if power == 0 || power > MAX_VALIDATOR_POWER {
        return Err(TxError::Invalid(format!(
            "validator power must be in 1..={MAX_VALIDATOR_POWER}, got {power}"
        )));
    }
    Ok(())
}

/// The set after `change`, or why the change cannot apply to `set`. Pure: the same rules
/// hold when a change is proposed, when it is approved and when it takes effect.
pub fn apply_validator_change(
    set: &ValidatorSet,
    change: &ValidatorChange,
) -> Result<ValidatorSet, TxError> {
    let mut validators = set.validators.clone();
    match change {
        ValidatorChange::Add {
            name,
            public_key,
            power,
        } => {
            if name.trim().is_empty()
                || name.len() > MAX_VALIDATOR_NAME_BYTES
                || name.chars().any(char::is_control)
            {
                return Err(TxError::Invalid(format!(
                    "validator name must be 1..={MAX_VALIDATOR_NAME_BYTES} bytes, not blank, \
                     without control characters"
                )));
            }
            public_key
                .validate()
                .map_err(|e| TxError::Invalid(format!("validator key {public_key}: {e}")))?;
            check_power(*power)?;
            let address = Address::of_member(public_key);
            if set.get(&address).is_some() {
                return Err(TxError::AlreadyExists(format!(
                    "{address} is a validator already"
                )));
            }
            if validators.len() >= MAX_VALIDATORS {
                return Err(TxError::Conflict(format!(
                    "the set would exceed {MAX_VALIDATORS} validators"
                )));
            }
            validators.push(Validator {
                name: name.clone(),
                address,
                public_key: *public_key,
                power: *power,
            });
        }
        ValidatorChange::Remove { address } => {
            if set.get(address).is_none() {
                return Err(TxError::NotFound(format!("validator {address}")));
            }
            if validators.len() <= 1 {
                return Err(TxError::Conflict(format!(
                    "removing {address} would leave the validator set empty"
                )));
            }
            validators.retain(|v| v.address != *address);
        }
        ValidatorChange::SetPower { address, power } => {
            check_power(*power)?;
            let Some(v) = validators.iter_mut().find(|v| v.address == *address) else {
                return Err(TxError::NotFound(format!("validator {address}")));
            };
            if v.power == *power {
                return Err(TxError::Conflict(format!(
                    "validator {address} has power {power} already"
                )));
            }
            v.power = *power;
        }
    }
    ValidatorSet::new(validators).map_err(|e| TxError::Invalid(format!("validator set: {e}")))
}

/// The set once every scheduled change has applied: what a new change is checked against.
fn projected_set(state: &dyn StateRead) -> Result<ValidatorSet, TxError> {
    let mut set = validator_set(state)?.ok_or_else(|| {
        TxError::Storage(StateError(
            "no validator set in state: genesis was not applied".into(),
        ))
    })?;
    for s in scheduled_validator_changes(state)? {
        // A scheduled change that no longer applies is skipped when its height comes; the
        // projection skips it the same way.
        if let Ok(next) = apply_validator_change(&set, &s.change) {
            set = next;
        }
    }
    Ok(set)
}

fn ha_signer_org(ctx: &TxContext<'_, '_>) -> Result<String, TxError> {
    match ctx.signer {
        Principal::Member { org, .. } => Ok(org.clone()),
        // Unreachable after the access check, which only admits health-authority admins.
        other => Err(TxError::Denied(format!(
            "requires an organisation member; signer is {other}"
        ))),
    }
}

fn required_approvals(state: &dyn StateRead) -> Result<usize, TxError> {
    let p = policy(state)?.ok_or_else(|| {
        TxError::Storage(StateError(
            "no governance policy: genesis was not applied".into(),
        ))
    })?;
    Ok(p.admission_approvals as usize)
}

fn change_attributes(change: &ValidatorChange) -> Vec<(&'static str, String)> {
    let mut a = vec![
        ("change", change.kind().to_string()),
        ("address", change.address().to_string()),
    ];
    match change {
        ValidatorChange::Add {
            name,
            public_key,
            power,
        } => {
            a.push(("name", name.clone()));
            a.push(("key", public_key.to_hex()));
            a.push(("power", power.to_string()));
        }
        ValidatorChange::SetPower { power, .. } => a.push(("power", power.to_string())),
        ValidatorChange::Remove { .. } => {}
    }
    a
}

fn propose_validator_change(
    ctx: &mut TxContext<'_, '_>,
    change: ValidatorChange,
) -> Result<(), TxError> {
    let org = ha_signer_org(ctx)?;
    // Clear lapsed proposals first, so that they neither count against the bound nor keep
    // reserving their keys. The list is bounded, so this is bounded work.
    let mut pending = 0;
    for p in pending_validator_changes(ctx.world())? {
        if p.expires_height < ctx.height {
            ctx.delete(&pending_change_key(p.id));
            ctx.emit(
                "validator_change_expired",
                &[("proposal_id", p.id.to_string())],
            )?;
        } else {
            pending += 1;
        }
    }
    if pending >= MAX_PENDING_VALIDATOR_CHANGES {
        return Err(TxError::Conflict(format!(
            "{MAX_PENDING_VALIDATOR_CHANGES} validator changes are pending already; approve \
             or let them lapse"
        )));
    }
    if let Some(key) = change.new_key() {
        key.validate()
            .map_err(|e| TxError::Invalid(format!("validator key {key}: {e}")))?;
        if let Some(why) = key_in_use(ctx.world(), key)? {
            return Err(TxError::AlreadyExists(why));
        }
    }
    apply_validator_change(&projected_set(ctx.world())?, &change)?;
    let id: u64 = ctx.get(KEY_NEXT_CHANGE_ID)?.unwrap_or(1);
    ctx.put(KEY_NEXT_CHANGE_ID, &id.saturating_add(1))?;
    let required = required_approvals(ctx.world())?;
    let proposal = ValidatorChangeProposal {
        id,
        change,
        approvals: vec![org.clone()],
        proposed_height: ctx.height,
        expires_height: ctx.height.saturating_add(VALIDATOR_CHANGE_TTL_BLOCKS),
    };
    let mut attrs = vec![
        ("proposal_id", id.to_string()),
        ("proposer_org", org),
        ("approvals", "1".to_string()),
        ("required", required.to_string()),
    ];
    attrs.extend(change_attributes(&proposal.change));
    ctx.emit("validator_change_proposed", &attrs)?;
    if proposal.approvals.len() >= required {
        schedule_validator_change(ctx, proposal)
    } else {
        ctx.put(&pending_change_key(id), &proposal)
    }
}

fn approve_validator_change(ctx: &mut TxContext<'_, '_>, proposal_id: u64) -> Result<(), TxError> {
    let org = ha_signer_org(ctx)?;
    let mut proposal: ValidatorChangeProposal =
        ctx.get(&pending_change_key(proposal_id))?.ok_or_else(|| {
            TxError::NotFound(format!("pending validator change proposal {proposal_id}"))
        })?;
    if ctx.height > proposal.expires_height {
        return Err(TxError::Conflict(format!(
            "validator change proposal {proposal_id} lapsed at height {}",
            proposal.expires_height
        )));
    }
    if proposal.approvals.contains(&org) {
        return Err(TxError::AlreadyExists(format!(
            "organisation {org:?} has already approved validator change {proposal_id}"
        )));
    }
    proposal.approvals.push(org.clone());
    let required = required_approvals(ctx.world())?;
    ctx.emit(
        "validator_change_approved",
        &[
            ("proposal_id", proposal_id.to_string()),
            ("approver_org", org),
            ("approvals", proposal.approvals.len().to_string()),
            ("required", required.to_string()),
        ],
    )?;
    if proposal.approvals.len() >= required {
        schedule_validator_change(ctx, proposal)
    } else {
        ctx.put(&pending_change_key(proposal_id), &proposal)
    }
}

/// Schedules a fully approved change for `height + VALIDATOR_CHANGE_DELAY`, after checking
/// it again against the state as it is now (other changes may have been scheduled since it
/// was proposed).
fn schedule_validator_change(
    ctx: &mut TxContext<'_, '_>,
    p: ValidatorChangeProposal,
) -> Result<(), TxError> {
    // The proposal reserves its key; drop it before checking that the key is free.
    ctx.delete(&pending_change_key(p.id));
    if scheduled_validator_changes(ctx.world())?.len() >= MAX_SCHEDULED_VALIDATOR_CHANGES {
        return Err(TxError::Conflict(format!(
            "{MAX_SCHEDULED_VALIDATOR_CHANGES} validator changes are scheduled already; \
             approve again once they have taken effect"
        )));
    }
    if let Some(key) = p.change.new_key()
        && let Some(why) = key_in_use(ctx.world(), key)?
    {
        return Err(TxError::Conflict(why));
    }
    let next = apply_validator_change(&projected_set(ctx.world())?, &p.change)?;
    let effective_height = ctx.height.saturating_add(VALIDATOR_CHANGE_DELAY);
    let scheduled = ScheduledValidatorChange {
        id: p.id,
        change: p.change,
        approvals: p.approvals,
        approved_height: ctx.height,
        effective_height,
    };
    ctx.put(&scheduled_change_key(effective_height, p.id), &scheduled)?;
    ctx.emit(
        "validator_change_scheduled",
        &[
            ("proposal_id", p.id.to_string()),
            ("effective_height", effective_height.to_string()),
            ("approvals", scheduled.approvals.join(",")),
            ("projected_set_hash", next.hash().to_hex()),
        ],
    )
}

/// The end-of-block hook: applies the changes scheduled for the next height, so that the
/// validator-set key always holds the set of the next height.
fn apply_scheduled(ctx: &mut BlockContext<'_, '_>) -> Result<(), TxError> {
    let next_height = ctx.height.saturating_add(1);
    let due: Vec<ScheduledValidatorChange> = scheduled_validator_changes(ctx.world())?
        .into_iter()
        // Entries are in height order; anything at or below the next height is due (an
        // entry below it can only exist if a hook failed before, and must not linger).
        .take_while(|s| s.effective_height <= next_height)
        .collect();
    if due.is_empty() {
        return Ok(());
    }
    let mut set = validator_set(ctx.world())?.ok_or_else(|| {
        TxError::Storage(StateError(
            "no validator set in state: genesis was not applied".into(),
        ))
    })?;
    for s in due {
        ctx.delete(&scheduled_change_key(s.effective_height, s.id));
        match apply_validator_change(&set, &s.change) {
            Ok(next) => {
                if let ValidatorChange::Remove { address } = &s.change
                    && let Some(v) = set.get(address)
                {
                    let height = ctx.height;
                    ctx.put(&retired_key(&v.public_key), &height)?;
                }
                set = next;
                let mut attrs = vec![
                    ("proposal_id", s.id.to_string()),
                    ("effective_height", next_height.to_string()),
                ];
                attrs.extend(change_attributes(&s.change));
                ctx.emit("validator_change_applied", &attrs)?;
            }
            Err(e) => ctx.emit(
                "validator_change_skipped",
                &[
                    ("proposal_id", s.id.to_string()),
                    ("code", e.code().to_string()),
                    ("reason", e.to_string()),
                ],
            )?,
        }
    }
    ctx.put(KEY_VALIDATORS, &set)?;
    ctx.emit(
        "validator_set_changed",
        &[
            ("effective_height", next_height.to_string()),
            ("set_hash", set.hash().to_hex()),
            ("validators", set.validators.len().to_string()),
            ("total_power", set.total_power().to_string()),
        ],
    )
}

/// The calls of the genesis module: validator-set governance. JSON form: externally tagged,
/// snake_case, e.g. `{"propose_validator_change": {"change": {"remove": {"address":
/// "te1…"}}}}`.
///
/// Approval rule: a change needs approvals from `policy.admission_approvals` distinct
/// health-authority organisations (the same number that admits an organisation: both decide
/// who takes part in the consortium). The proposer's organisation is the first approval.
/// The last approval schedules the change for `height + VALIDATOR_CHANGE_DELAY`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum GenesisCall {
    /// Proposes a change. Signer: admin of a health authority.
    ProposeValidatorChange {
        /// The change.
        change: ValidatorChange,
    },
    /// Approves a pending change. Signer: admin of a health authority that has not
    /// approved it yet.
    ApproveValidatorChange {
        /// The proposal's id.
        proposal_id: u64,
    },
}

/// Call kinds, as in the JSON form.
pub const CALL_KINDS: &[&str] = &["propose_validator_change", "approve_validator_change"];

const HA_ADMIN: Access = Access::Members {
    org_kinds: &[OrgKind::HealthAuthority],
    roles: &[Role::Admin],
};

/// The `genesis` module. Queries: `chain`, `params`, `validators` (the set of the next
/// height), `validator_changes` (pending and scheduled).
#[derive(Clone, Copy, Debug, Default)]
pub struct GenesisModule;

fn required<T>(v: Option<T>, what: &str) -> Result<T, QueryError> {
    v.ok_or_else(|| QueryError::NotFound(format!("no {what} in state: genesis was not applied")))
}

impl Module for GenesisModule {
    type Call = GenesisCall;
    const NAME: &'static str = NAME;

    fn access(&self, call: &GenesisCall) -> Access {
        match call {
            GenesisCall::ProposeValidatorChange { .. }
            | GenesisCall::ApproveValidatorChange { .. } => HA_ADMIN,
        }
    }

    fn execute(&self, ctx: &mut TxContext<'_, '_>, call: GenesisCall) -> Result<(), TxError> {
        match call {
            GenesisCall::ProposeValidatorChange { change } => propose_validator_change(ctx, change),
            GenesisCall::ApproveValidatorChange { proposal_id } => {
                approve_validator_change(ctx, proposal_id)
            }
        }
    }

    fn end_block(&self, ctx: &mut BlockContext<'_, '_>) -> Result<(), TxError> {
        apply_scheduled(ctx)
    }

    fn query(
        &self,
        state: &dyn StateRead,
        path: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<serde_json::Value, QueryError> {
        only_params(params, &[])?;
        match path {
            "chain" => to_json(&required(chain_info(state)?, "chain info")?),
            "params" => to_json(&required(policy(state)?, "governance policy")?),
            "validators" => {
                let set = required(validator_set(state)?, "validator set")?;
                Ok(serde_json::json!({
                    "hash": set.hash(),
                    "total_power": set.total_power(),
                    "quorum_power": set.quorum_power(),
                    "validators": set.validators,
                }))
            }
            "validator_changes" => Ok(serde_json::json!({
                "delay_blocks": VALIDATOR_CHANGE_DELAY,
                "pending": pending_validator_changes(state)?,
                "scheduled": scheduled_validator_changes(state)?,
            })),
            _ => Err(QueryError::NotFound(format!(
                "no query {path:?}; genesis answers chain, params, validators, validator_changes"
            ))),
        }
    }

    fn call_kinds(&self) -> &'static [&'static str] {
        CALL_KINDS
    }

    fn describe_value(&self, key: &[u8], value: &[u8]) -> Option<serde_json::Value> {
        match key {
            KEY_CHAIN => serde_json::to_value(decode_stored::<ChainInfo>(value)?).ok(),
            KEY_PARAMS => serde_json::to_value(decode_stored::<GovernancePolicy>(value)?).ok(),
            KEY_VALIDATORS => serde_json::to_value(decode_stored::<ValidatorSet>(value)?).ok(),
            KEY_NEXT_CHANGE_ID => serde_json::to_value(decode_stored::<u64>(value)?).ok(),
            k if k.starts_with(PENDING_CHANGE_PREFIX) => {
                serde_json::to_value(decode_stored::<ValidatorChangeProposal>(value)?).ok()
            }
            k if k.starts_with(SCHEDULED_CHANGE_PREFIX) => {
                serde_json::to_value(decode_stored::<ScheduledValidatorChange>(value)?).ok()
            }
            k if k.starts_with(RETIRED_VALIDATOR_PREFIX) => {
                let pk: [u8; 32] = k.get(RETIRED_VALIDATOR_PREFIX.len()..)?.try_into().ok()?;
                let pk = PublicKey(pk);
                Some(serde_json::json!({
                    "key": pk,
                    "address": Address::of_member(&pk),
                    "removed_at_height": decode_stored::<Height>(value)?,
                }))
            }
            _ => None,
        }
    }
}
