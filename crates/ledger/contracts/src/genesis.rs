//! The genesis file and the `genesis` module, which holds what the genesis file fixes: the
//! chain id, the governance policy and the validator set.
//!
//! The validator set is kept in state (not only in the genesis file) so that it is covered
//! by the state root: a light client that trusts a state root can prove which validators
//! must sign the next block. Validator-set governance (calls of this module) comes later;
//! until then [`GenesisCall`] has no variants.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trustedge_execution::module::{module_key, read_value};
use trustedge_execution::{
    Access, Module, OrgKind, QueryError, Role, StateError, StateRead, StateWrites, TxContext,
    TxError,
};
use trustedge_types::tx::MAX_CHAIN_ID_BYTES;
use trustedge_types::{Hash, PublicKey, Validator, ValidatorSet, codec};

use crate::error::GenesisError;
use crate::orgs::{self, MAX_MEMBERS_PER_ORG};
use crate::util::{decode_stored, is_valid_id, only_params, to_json};

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
/// State key of the [`ValidatorSet`].
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

/// The authenticated validator set stored at genesis (and, later, by governance).
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

/// The calls of the genesis module: none yet. The type has no values, so no transaction for
/// this module can be decoded and every one is refused at admission as a malformed call.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum GenesisCall {}

impl BorshSerialize for GenesisCall {
    fn serialize<W: io::Write>(&self, _writer: &mut W) -> io::Result<()> {
        match *self {}
    }
}

impl BorshDeserialize for GenesisCall {
    fn deserialize_reader<R: io::Read>(_reader: &mut R) -> io::Result<Self> {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the genesis module has no transactions",
        ))
    }
}

/// The `genesis` module. Queries: `chain`, `params`, `validators`.
#[derive(Clone, Copy, Debug, Default)]
pub struct GenesisModule;

fn required<T>(v: Option<T>, what: &str) -> Result<T, QueryError> {
    v.ok_or_else(|| QueryError::NotFound(format!("no {what} in state: genesis was not applied")))
}

impl Module for GenesisModule {
    type Call = GenesisCall;
    const NAME: &'static str = NAME;

    fn access(&self, call: &GenesisCall) -> Access {
        match *call {}
    }

    fn execute(&self, _ctx: &mut TxContext<'_, '_>, call: GenesisCall) -> Result<(), TxError> {
        match call {}
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
            _ => Err(QueryError::NotFound(format!(
                "no query {path:?}; genesis answers chain, params, validators"
            ))),
        }
    }

    fn call_kinds(&self) -> &'static [&'static str] {
        &[]
    }

    fn describe_value(&self, key: &[u8], value: &[u8]) -> Option<serde_json::Value> {
        match key {
            KEY_CHAIN => serde_json::to_value(decode_stored::<ChainInfo>(value)?).ok(),
            KEY_PARAMS => serde_json::to_value(decode_stored::<GovernancePolicy>(value)?).ok(),
            KEY_VALIDATORS => serde_json::to_value(decode_stored::<ValidatorSet>(value)?).ok(),
            _ => None,
        }
    }
}
