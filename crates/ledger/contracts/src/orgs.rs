//! The `orgs` module: organisations of the consortium, their member keys and the admission of
//! new organisations by the health authorities.
//!
//! # What is stored
//! - `org/<id>` → [`OrgRecord`]: id, public name, kind, status, active member count.
//! - `member/<key: 32 bytes>` → [`MemberRecord`]: organisation, role, status and heights.
//!   Members are stored by key only; no person is named on the ledger. Records of removed,
//!   revoked and rotated keys are kept, so that old signatures stay attributable and keys are
//!   never reused.
//! - `roster/<org>/<role code: 1 byte><key: 32 bytes>` → [`Role`]: the *active* members of an
//!   organisation, grouped by role, so that "is there another active admin" and "list the
//!   members" are bounded prefix scans. Role codes: admin 0, operator 1, clinician 2,
//!   auditor 3.
//! - `proposal/<org id>` → [`AdmissionProposal`]: pending admissions (at most
//!   [`MAX_PENDING_PROPOSALS`], each expiring after [`ADMISSION_TTL_BLOCKS`]).
//!
//! Organisation ids are `[a-z0-9-]`, so `/` separates key parts unambiguously.

use std::collections::BTreeMap;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trustedge_execution::module::{module_key, read_value};
use trustedge_execution::state::prefix_end;
use trustedge_execution::{
    Access, Module, OrgKind, Principal, QueryError, Role, StateError, StateRead, TxContext, TxError,
};
use trustedge_types::{Address, Height, PublicKey};

use crate::genesis::{self, GenesisOrg};
use crate::util::{
    decode_stored, is_valid_id, key_in_use, only_params, page, query_limit, to_json,
};

/// Name of the module.
pub const NAME: &str = "orgs";
/// Most active members of one organisation.
pub const MAX_MEMBERS_PER_ORG: u32 = 10_000;
/// Most admission proposals pending at once; bounds what every key-freshness check scans.
pub const MAX_PENDING_PROPOSALS: usize = 32;
/// Blocks after which an unfinished admission proposal lapses (about a day at one block a
/// second), so that abandoned proposals cannot fill the pending list for ever.
pub const ADMISSION_TTL_BLOCKS: u64 = 100_000;
/// Longest organisation name.
pub const MAX_ORG_NAME_BYTES: usize = 128;

/// Whether an organisation may act.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum OrgStatus {
    /// Its members and devices may sign.
    Active,
    /// Suspended by a health authority: none of its members or devices may sign.
    Suspended,
}

/// The state of a member key.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    /// May sign.
    Active,
    /// Removed from the organisation by an admin.
    Removed,
    /// Revoked (by itself or an admin) or rotated to a new key.
    Revoked,
}

/// An organisation.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct OrgRecord {
    /// Id.
    pub id: String,
    /// Public name.
    pub name: String,
    /// Kind.
    pub kind: OrgKind,
    /// Status.
    pub status: OrgStatus,
    /// Height it was admitted at (0 for genesis organisations).
    pub admitted_height: Height,
    /// Height of the last status change.
    pub changed_height: Height,
    /// Number of active member keys.
    pub active_members: u32,
}

/// A member key. Deliberately holds nothing about the person behind it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The key.
    pub key: PublicKey,
    /// Organisation.
    pub org: String,
    /// Role.
    pub role: Role,
    /// Status.
    pub status: MemberStatus,
    /// Height the key was added at (0 for genesis members).
    pub added_height: Height,
    /// Height of the last status change.
    pub changed_height: Height,
    /// The key this one replaced by rotation, if any.
    pub replaces: Option<PublicKey>,
    /// The key this one was rotated to, if any.
    pub replaced_by: Option<PublicKey>,
}

/// A pending admission of an organisation.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AdmissionProposal {
    /// Id of the organisation to admit.
    pub org_id: String,
    /// Its public name.
    pub name: String,
    /// Its kind.
    pub kind: OrgKind,
    /// The key that becomes its first admin.
    pub admin_key: PublicKey,
    /// Health-authority organisations that approved, in order; the proposer's first.
    pub approvals: Vec<String>,
    /// Height it was proposed at.
    pub proposed_height: Height,
    /// Last height at which it can still be approved.
    pub expires_height: Height,
}

/// The transactions of the `orgs` module. JSON form: externally tagged, snake_case, e.g.
/// `{"add_member": {"key": "<hex>", "role": "operator"}}`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum OrgsCall {
    /// Proposes to admit an organisation. Signer: admin of a health authority; the
    /// proposer's organisation is the first approval.
    ProposeAdmission {
        /// Id of the new organisation.
        org_id: String,
        /// Its public name.
        name: String,
        /// Its kind.
        kind: OrgKind,
        /// Key of its first admin.
        admin_key: PublicKey,
    },
    /// Approves a pending admission. Signer: admin of a health authority that has not
    /// approved it yet.
    ApproveAdmission {
        /// Id of the proposed organisation.
        org_id: String,
    },
    /// Adds a member key to the signer's organisation. Signer: admin.
    AddMember {
        /// The new key; it must never have been used on this ledger.
        key: PublicKey,
        /// Its role.
        role: Role,
    },
    /// Removes a member from the signer's organisation. Signer: admin. The last active
    /// admin cannot be removed.
    RemoveMember {
        /// The member's key.
        key: PublicKey,
    },
    /// Replaces the signer's own key by a new one with the same organisation and role.
    RotateKey {
        /// The new key; it must never have been used on this ledger.
        new_key: PublicKey,
    },
    /// Revokes a key. Signer: the key itself, or an admin of its organisation. A key may
    /// always revoke itself, even the last admin's: whoever holds a compromised key must be
    /// able to kill it at once. Others can never revoke the last active admin.
    RevokeKey {
        /// The key.
        key: PublicKey,
    },
    /// Suspends an organisation. Signer: admin of a health authority other than it.
    SuspendOrg {
        /// The organisation.
        org_id: String,
    },
    /// Reinstates a suspended organisation. Signer: admin of a health authority.
    ReinstateOrg {
        /// The organisation.
        org_id: String,
    },
}

/// Call kinds, as in the JSON form.
pub const CALL_KINDS: &[&str] = &[
    "propose_admission",
    "approve_admission",
    "add_member",
    "remove_member",
    "rotate_key",
    "revoke_key",
    "suspend_org",
    "reinstate_org",
];

// ---------------------------------------------------------------------------------------
// Keys and public read functions

const ORG_PREFIX: &[u8] = b"org/";
const MEMBER_PREFIX: &[u8] = b"member/";
const ROSTER_PREFIX: &[u8] = b"roster/";
const PROPOSAL_PREFIX: &[u8] = b"proposal/";

fn org_key(id: &str) -> Vec<u8> {
    [ORG_PREFIX, id.as_bytes()].concat()
}

fn member_key(key: &PublicKey) -> Vec<u8> {
    [MEMBER_PREFIX, &key.0].concat()
}

fn proposal_key(org_id: &str) -> Vec<u8> {
    [PROPOSAL_PREFIX, org_id.as_bytes()].concat()
}

/// Stable one-byte code of a role in roster keys (never reorder).
fn role_code(role: Role) -> u8 {
    match role {
        Role::Admin => 0,
        Role::Operator => 1,
        Role::Clinician => 2,
        Role::Auditor => 3,
    }
}

fn roster_org_prefix(org: &str) -> Vec<u8> {
    [ROSTER_PREFIX, org.as_bytes(), b"/"].concat()
}

fn roster_role_prefix(org: &str, role: Role) -> Vec<u8> {
    let mut k = roster_org_prefix(org);
    k.push(role_code(role));
    k
}

fn roster_key(org: &str, role: Role, key: &PublicKey) -> Vec<u8> {
    let mut k = roster_role_prefix(org, role);
    k.extend_from_slice(&key.0);
    k
}

/// The organisation `id`.
pub fn org(state: &dyn StateRead, id: &str) -> Result<Option<OrgRecord>, StateError> {
    read_value(state, &module_key(NAME, &org_key(id)))
}

/// The member record of `key` (whatever its status).
pub fn member(state: &dyn StateRead, key: &PublicKey) -> Result<Option<MemberRecord>, StateError> {
    read_value(state, &module_key(NAME, &member_key(key)))
}

/// The admission proposals in state (at most [`MAX_PENDING_PROPOSALS`]), by organisation id.
/// Lapsed ones are included until the next proposal clears them.
pub fn pending_proposals(state: &dyn StateRead) -> Result<Vec<AdmissionProposal>, StateError> {
    let lower = module_key(NAME, PROPOSAL_PREFIX);
    let upper = prefix_end(&lower);
    state
        .scan(&lower, &upper, false, MAX_PENDING_PROPOSALS + 1)?
        .iter()
        .map(|(k, v)| {
            decode_stored(v).ok_or_else(|| {
                StateError(format!(
                    "undecodable admission proposal at {}",
                    String::from_utf8_lossy(k)
                ))
            })
        })
        .collect()
}

/// Checks an organisation name: 1..=128 bytes, not blank, no control characters. Names are
/// public, so any script is allowed, but nothing that could garble logs or terminals.
pub fn check_org_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() || name.len() > MAX_ORG_NAME_BYTES {
        return Err(format!(
            "organisation name must be 1..={MAX_ORG_NAME_BYTES} bytes and not blank"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("organisation name must not contain control characters".into());
    }
    Ok(())
}

/// The relative keys and encoded values that create a genesis organisation.
pub(crate) fn genesis_entries(g: &GenesisOrg) -> Vec<(Vec<u8>, Vec<u8>)> {
    use trustedge_types::encode as enc;
    let mut out = Vec::with_capacity(1 + 2 * g.members.len());
    out.push((
        org_key(&g.id),
        enc(&OrgRecord {
            id: g.id.clone(),
            name: g.name.clone(),
            kind: g.kind,
            status: OrgStatus::Active,
            admitted_height: 0,
            changed_height: 0,
            // validate() bounds members by MAX_MEMBERS_PER_ORG, which fits a u32
            active_members: u32::try_from(g.members.len()).unwrap_or(u32::MAX),
        }),
    ));
    for m in &g.members {
        out.push((
            member_key(&m.public_key),
            enc(&MemberRecord {
                key: m.public_key,
                org: g.id.clone(),
                role: m.role,
                status: MemberStatus::Active,
                added_height: 0,
                changed_height: 0,
                replaces: None,
                replaced_by: None,
            }),
        ));
        out.push((roster_key(&g.id, m.role, &m.public_key), enc(&m.role)));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Execution

/// The signing member: key, organisation, organisation kind, role.
struct Signer {
    key: PublicKey,
    org: String,
    role: Role,
}

fn signer(ctx: &TxContext<'_, '_>) -> Result<Signer, TxError> {
    match ctx.signer {
        Principal::Member { key, org, role, .. } => Ok(Signer {
            key: *key,
            org: org.clone(),
            role: *role,
        }),
        // Unreachable after the access check, which only admits members to this module.
        other => Err(TxError::Denied(format!(
            "requires an organisation member; signer is {other}"
        ))),
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Operator => "operator",
        Role::Clinician => "clinician",
        Role::Auditor => "auditor",
    }
}

/// JSON name of an organisation kind (as in calls and genesis files).
pub(crate) fn kind_name(kind: OrgKind) -> &'static str {
    match kind {
        OrgKind::HealthAuthority => "health_authority",
        OrgKind::Hospital => "hospital",
        OrgKind::Laboratory => "laboratory",
        OrgKind::Manufacturer => "manufacturer",
        OrgKind::Distributor => "distributor",
        OrgKind::Clinic => "clinic",
        OrgKind::EdgeOperator => "edge_operator",
    }
}

fn check_fresh_key(ctx: &TxContext<'_, '_>, key: &PublicKey) -> Result<(), TxError> {
    key.validate()
        .map_err(|e| TxError::Invalid(format!("key {key}: {e}")))?;
    match key_in_use(ctx.world(), key)? {
        Some(why) => Err(TxError::AlreadyExists(why)),
        None => Ok(()),
    }
}

fn load_org(ctx: &TxContext<'_, '_>, id: &str) -> Result<OrgRecord, TxError> {
    ctx.get(&org_key(id))?
        .ok_or_else(|| TxError::NotFound(format!("organisation {id:?}")))
}

fn load_member(ctx: &TxContext<'_, '_>, key: &PublicKey) -> Result<MemberRecord, TxError> {
    ctx.get(&member_key(key))?
        .ok_or_else(|| TxError::NotFound(format!("member key {key}")))
}

fn required_approvals(ctx: &TxContext<'_, '_>) -> Result<usize, TxError> {
    let policy = genesis::policy(ctx.world())?.ok_or_else(|| {
        TxError::Storage(StateError(
            "no governance policy: genesis was not applied".into(),
        ))
    })?;
    Ok(policy.admission_approvals as usize)
}

/// Whether `org` has an active admin other than `except`.
fn has_other_admin(
    ctx: &TxContext<'_, '_>,
    org: &str,
    except: &PublicKey,
) -> Result<bool, TxError> {
    let admins = ctx.scan_prefix(&roster_role_prefix(org, Role::Admin), false, 2)?;
    Ok(admins.iter().any(|(k, _)| !k.ends_with(&except.0)))
}

fn member_added_event(
    ctx: &mut TxContext<'_, '_>,
    org: &str,
    key: &PublicKey,
    role: Role,
) -> Result<(), TxError> {
    ctx.emit(
        "member_added",
        &[
            ("org_id", org.to_string()),
            ("address", Address::of_member(key).to_string()),
            ("key", key.to_hex()),
            ("role", role_name(role).to_string()),
        ],
    )
}

fn propose_admission(
    ctx: &mut TxContext<'_, '_>,
    org_id: String,
    name: String,
    kind: OrgKind,
    admin_key: PublicKey,
) -> Result<(), TxError> {
    let who = signer(ctx)?;
    if !is_valid_id(&org_id) {
        return Err(TxError::Invalid(format!(
            "organisation id {org_id:?} must be 1..=32 characters of [a-z0-9-]"
        )));
    }
    check_org_name(&name).map_err(TxError::Invalid)?;
    if ctx.contains(&org_key(&org_id))? {
        return Err(TxError::AlreadyExists(format!("organisation {org_id:?}")));
    }
    // Clear lapsed proposals first, so that they neither count against the bound nor keep
    // reserving their admin keys. The list is bounded, so this is bounded work.
    let mut pending = Vec::new();
    for p in pending_proposals(ctx.world())? {
        if p.expires_height < ctx.height {
            ctx.delete(&proposal_key(&p.org_id));
            ctx.emit("admission_expired", &[("org_id", p.org_id.clone())])?;
        } else {
            pending.push(p);
        }
    }
    if pending.iter().any(|p| p.org_id == org_id) {
        return Err(TxError::AlreadyExists(format!(
            "an admission of {org_id:?} is already pending"
        )));
    }
    if pending.len() >= MAX_PENDING_PROPOSALS {
        return Err(TxError::Conflict(format!(
            "{MAX_PENDING_PROPOSALS} admissions are pending already; approve or let them lapse"
        )));
    }
    check_fresh_key(ctx, &admin_key)?;
    let required = required_approvals(ctx)?;
    let proposal = AdmissionProposal {
        org_id,
        name,
        kind,
        admin_key,
        approvals: vec![who.org.clone()],
        proposed_height: ctx.height,
        expires_height: ctx.height.saturating_add(ADMISSION_TTL_BLOCKS),
    };
    ctx.emit(
        "admission_proposed",
        &[
            ("org_id", proposal.org_id.clone()),
            ("kind", kind_name(kind).to_string()),
            ("proposer_org", who.org),
            ("approvals", "1".to_string()),
            ("required", required.to_string()),
        ],
    )?;
    if proposal.approvals.len() >= required {
        admit(ctx, proposal)
    } else {
        ctx.put(&proposal_key(&proposal.org_id), &proposal)
    }
}

fn approve_admission(ctx: &mut TxContext<'_, '_>, org_id: String) -> Result<(), TxError> {
    let who = signer(ctx)?;
    let mut proposal: AdmissionProposal = ctx
        .get(&proposal_key(&org_id))?
        .ok_or_else(|| TxError::NotFound(format!("pending admission of {org_id:?}")))?;
    if ctx.height > proposal.expires_height {
        return Err(TxError::Conflict(format!(
            "the admission of {org_id:?} lapsed at height {}",
            proposal.expires_height
        )));
    }
    if proposal.approvals.contains(&who.org) {
        return Err(TxError::AlreadyExists(format!(
            "organisation {:?} has already approved the admission of {org_id:?}",
            who.org
        )));
    }
    proposal.approvals.push(who.org.clone());
    let required = required_approvals(ctx)?;
    ctx.emit(
        "admission_approved",
        &[
            ("org_id", org_id.clone()),
            ("approver_org", who.org),
            ("approvals", proposal.approvals.len().to_string()),
            ("required", required.to_string()),
        ],
    )?;
    if proposal.approvals.len() >= required {
        admit(ctx, proposal)
    } else {
        ctx.put(&proposal_key(&org_id), &proposal)
    }
}

/// Creates the organisation of a proposal that has enough approvals.
fn admit(ctx: &mut TxContext<'_, '_>, p: AdmissionProposal) -> Result<(), TxError> {
    // The proposal reserves its admin key; drop it before checking that the key is free.
    ctx.delete(&proposal_key(&p.org_id));
    if ctx.contains(&org_key(&p.org_id))? {
        return Err(TxError::AlreadyExists(format!(
            "organisation {:?}",
            p.org_id
        )));
    }
    if let Some(why) = key_in_use(ctx.world(), &p.admin_key)? {
        return Err(TxError::Conflict(why));
    }
    let org = OrgRecord {
        id: p.org_id.clone(),
        name: p.name,
        kind: p.kind,
        status: OrgStatus::Active,
        admitted_height: ctx.height,
        changed_height: ctx.height,
        active_members: 1,
    };
    ctx.put(&org_key(&org.id), &org)?;
    put_new_member(ctx, &org.id, p.admin_key, Role::Admin, None)?;
    ctx.emit(
        "org_admitted",
        &[
            ("org_id", org.id.clone()),
            ("kind", kind_name(org.kind).to_string()),
            ("approvals", p.approvals.join(",")),
        ],
    )?;
    member_added_event(ctx, &org.id, &p.admin_key, Role::Admin)
}

/// Writes a new active member record and its roster entry (not the organisation's count).
fn put_new_member(
    ctx: &mut TxContext<'_, '_>,
    org: &str,
    key: PublicKey,
    role: Role,
    replaces: Option<PublicKey>,
) -> Result<(), TxError> {
    let rec = MemberRecord {
        key,
        org: org.to_string(),
        role,
        status: MemberStatus::Active,
        added_height: ctx.height,
        changed_height: ctx.height,
        replaces,
        replaced_by: None,
    };
    ctx.put(&member_key(&key), &rec)?;
    ctx.put(&roster_key(org, role, &key), &role)
}

/// Ends an active member: sets its status, drops it from the roster, lowers the count.
fn end_member(
    ctx: &mut TxContext<'_, '_>,
    mut rec: MemberRecord,
    status: MemberStatus,
) -> Result<(), TxError> {
    let mut org = load_org(ctx, &rec.org)?;
    org.active_members = org.active_members.saturating_sub(1);
    ctx.put(&org_key(&org.id), &org)?;
    ctx.delete(&roster_key(&rec.org, rec.role, &rec.key));
    rec.status = status;
    rec.changed_height = ctx.height;
    ctx.put(&member_key(&rec.key), &rec)
}

fn add_member(ctx: &mut TxContext<'_, '_>, key: PublicKey, role: Role) -> Result<(), TxError> {
    let who = signer(ctx)?;
    check_fresh_key(ctx, &key)?;
    let mut org = load_org(ctx, &who.org)?;
    if org.active_members >= MAX_MEMBERS_PER_ORG {
        return Err(TxError::Conflict(format!(
            "organisation {:?} has the maximum of {MAX_MEMBERS_PER_ORG} active members",
            org.id
        )));
    }
    org.active_members += 1;
    ctx.put(&org_key(&org.id), &org)?;
    put_new_member(ctx, &who.org, key, role, None)?;
    member_added_event(ctx, &who.org, &key, role)
}

fn remove_member(ctx: &mut TxContext<'_, '_>, key: PublicKey) -> Result<(), TxError> {
    let who = signer(ctx)?;
    let rec = load_member(ctx, &key)?;
    if rec.org != who.org {
        return Err(TxError::Denied(format!(
            "key {key} is a member of {:?}; an admin of {:?} may only remove its own members",
            rec.org, who.org
        )));
    }
    if rec.status != MemberStatus::Active {
        return Err(TxError::Conflict(format!(
            "member key {key} is already {:?}",
            rec.status
        )));
    }
    if rec.role == Role::Admin && !has_other_admin(ctx, &rec.org, &key)? {
        return Err(TxError::Conflict(format!(
            "key {key} is the last active admin of {:?}",
            rec.org
        )));
    }
    let (org, role) = (rec.org.clone(), rec.role);
    end_member(ctx, rec, MemberStatus::Removed)?;
    ctx.emit(
        "member_removed",
        &[
            ("org_id", org),
            ("address", Address::of_member(&key).to_string()),
            ("key", key.to_hex()),
            ("role", role_name(role).to_string()),
        ],
    )
}

fn rotate_key(ctx: &mut TxContext<'_, '_>, new_key: PublicKey) -> Result<(), TxError> {
    let who = signer(ctx)?;
    check_fresh_key(ctx, &new_key)?;
    let mut old = load_member(ctx, &who.key)?;
    // The count stays: one active key replaces another.
    ctx.delete(&roster_key(&old.org, old.role, &old.key));
    old.status = MemberStatus::Revoked;
    old.changed_height = ctx.height;
    old.replaced_by = Some(new_key);
    ctx.put(&member_key(&old.key), &old)?;
    put_new_member(ctx, &old.org, new_key, old.role, Some(old.key))?;
    ctx.emit(
        "key_rotated",
        &[
            ("org_id", old.org.clone()),
            ("old_address", Address::of_member(&old.key).to_string()),
            ("old_key", old.key.to_hex()),
            ("new_address", Address::of_member(&new_key).to_string()),
            ("new_key", new_key.to_hex()),
            ("role", role_name(old.role).to_string()),
        ],
    )
}

fn revoke_key(ctx: &mut TxContext<'_, '_>, key: PublicKey) -> Result<(), TxError> {
    let who = signer(ctx)?;
    let rec = load_member(ctx, &key)?;
    let by_self = key == who.key;
    if !by_self {
        if who.role != Role::Admin || rec.org != who.org {
            return Err(TxError::Denied(format!(
                "only the key itself or an admin of {:?} may revoke key {key}",
                rec.org
            )));
        }
        // Implied by the signer being another active admin of the same organisation; kept
        // so that the rule holds even if that ever changes.
        if rec.role == Role::Admin && !has_other_admin(ctx, &rec.org, &key)? {
            return Err(TxError::Conflict(format!(
                "key {key} is the last active admin of {:?}",
                rec.org
            )));
        }
    }
    if rec.status != MemberStatus::Active {
        return Err(TxError::Conflict(format!(
            "member key {key} is already {:?}",
            rec.status
        )));
    }
    let org = rec.org.clone();
    end_member(ctx, rec, MemberStatus::Revoked)?;
    ctx.emit(
        "key_revoked",
        &[
            ("org_id", org),
            ("address", Address::of_member(&key).to_string()),
            ("key", key.to_hex()),
            ("by", if by_self { "self" } else { "admin" }.to_string()),
        ],
    )
}

fn set_org_status(
    ctx: &mut TxContext<'_, '_>,
    org_id: String,
    status: OrgStatus,
) -> Result<(), TxError> {
    let who = signer(ctx)?;
    let mut org = load_org(ctx, &org_id)?;
    if status == OrgStatus::Suspended && org_id == who.org {
        return Err(TxError::Denied(format!(
            "a health authority cannot suspend itself ({org_id:?})"
        )));
    }
    if org.status == status {
        return Err(TxError::Conflict(format!(
            "organisation {org_id:?} is already {status:?}"
        )));
    }
    org.status = status;
    org.changed_height = ctx.height;
    ctx.put(&org_key(&org_id), &org)?;
    let kind = match status {
        OrgStatus::Suspended => "org_suspended",
        OrgStatus::Active => "org_reinstated",
    };
    ctx.emit(kind, &[("org_id", org_id), ("by_org", who.org)])
}

// ---------------------------------------------------------------------------------------
// The module

/// The `orgs` module. Queries: `list?after=<id>&limit=`, `org/<id>`,
/// `members/<id>?after=<key hex>&limit=`, `member/<key hex>`, `proposals`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OrgsModule;

const HA_ADMIN: Access = Access::Members {
    org_kinds: &[OrgKind::HealthAuthority],
    roles: &[Role::Admin],
};

impl Module for OrgsModule {
    type Call = OrgsCall;
    const NAME: &'static str = NAME;

    fn access(&self, call: &OrgsCall) -> Access {
        match call {
            OrgsCall::ProposeAdmission { .. }
            | OrgsCall::ApproveAdmission { .. }
            | OrgsCall::SuspendOrg { .. }
            | OrgsCall::ReinstateOrg { .. } => HA_ADMIN,
            OrgsCall::AddMember { .. } | OrgsCall::RemoveMember { .. } => Access::Members {
                org_kinds: &[],
                roles: &[Role::Admin],
            },
            // Every member must be able to rotate or revoke its own key, auditors included:
            // key hygiene is not a state change of the organisation's business. Revoking
            // someone else's key is narrowed to admins in `revoke_key`.
            OrgsCall::RotateKey { .. } | OrgsCall::RevokeKey { .. } => Access::Members {
                org_kinds: &[],
                roles: &Role::ALL,
            },
        }
    }

    fn execute(&self, ctx: &mut TxContext<'_, '_>, call: OrgsCall) -> Result<(), TxError> {
        match call {
            OrgsCall::ProposeAdmission {
                org_id,
                name,
                kind,
                admin_key,
            } => propose_admission(ctx, org_id, name, kind, admin_key),
            OrgsCall::ApproveAdmission { org_id } => approve_admission(ctx, org_id),
            OrgsCall::AddMember { key, role } => add_member(ctx, key, role),
            OrgsCall::RemoveMember { key } => remove_member(ctx, key),
            OrgsCall::RotateKey { new_key } => rotate_key(ctx, new_key),
            OrgsCall::RevokeKey { key } => revoke_key(ctx, key),
            OrgsCall::SuspendOrg { org_id } => set_org_status(ctx, org_id, OrgStatus::Suspended),
            OrgsCall::ReinstateOrg { org_id } => set_org_status(ctx, org_id, OrgStatus::Active),
        }
    }

    fn query(
        &self,
        state: &dyn StateRead,
        path: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<serde_json::Value, QueryError> {
        if path == "list" {
            only_params(params, &["after", "limit"])?;
            let limit = query_limit(params)?;
            let after = params.get("after").map(|a| org_key(a));
            let (entries, more) = page(state, NAME, ORG_PREFIX, after.as_deref(), limit)?;
            let orgs = entries
                .iter()
                .map(|(k, v)| decode_org(k, v))
                .collect::<Result<Vec<_>, _>>()?;
            let next = if more {
                orgs.last().map(|o| o.id.clone())
            } else {
                None
            };
            return Ok(serde_json::json!({ "orgs": orgs, "next": next }));
        }
        if path == "proposals" {
            only_params(params, &[])?;
            return to_json(&pending_proposals(state)?);
        }
        if let Some(id) = path.strip_prefix("org/") {
            only_params(params, &[])?;
            let rec = org(state, id)?
                .ok_or_else(|| QueryError::NotFound(format!("organisation {id:?}")))?;
            return to_json(&rec);
        }
        if let Some(hex) = path.strip_prefix("member/") {
            only_params(params, &[])?;
            let key = PublicKey::from_hex(hex)
                .map_err(|e| QueryError::Invalid(format!("member key: {e}")))?;
            let rec = member(state, &key)?
                .ok_or_else(|| QueryError::NotFound(format!("member key {key}")))?;
            return member_json(&rec);
        }
        if let Some(id) = path.strip_prefix("members/") {
            only_params(params, &["after", "limit"])?;
            return list_members(state, id, params);
        }
        Err(QueryError::NotFound(format!(
            "no query {path:?}; orgs answers list, org/<id>, members/<id>, member/<key>, proposals"
        )))
    }

    fn call_kinds(&self) -> &'static [&'static str] {
        CALL_KINDS
    }

    fn describe_value(&self, key: &[u8], value: &[u8]) -> Option<serde_json::Value> {
        if key.starts_with(ORG_PREFIX) {
            serde_json::to_value(decode_stored::<OrgRecord>(value)?).ok()
        } else if key.starts_with(MEMBER_PREFIX) {
            member_json(&decode_stored::<MemberRecord>(value)?).ok()
        } else if key.starts_with(ROSTER_PREFIX) {
            let role: Role = decode_stored(value)?;
            let pk: [u8; 32] = key.get(key.len().checked_sub(32)?..)?.try_into().ok()?;
            let pk = PublicKey(pk);
            Some(serde_json::json!({
                "role": role,
                "key": pk,
                "address": Address::of_member(&pk),
            }))
        } else if key.starts_with(PROPOSAL_PREFIX) {
            serde_json::to_value(decode_stored::<AdmissionProposal>(value)?).ok()
        } else {
            None
        }
    }
}

fn decode_org(k: &[u8], v: &[u8]) -> Result<OrgRecord, QueryError> {
    decode_stored(v).ok_or_else(|| {
        QueryError::Storage(StateError(format!(
            "undecodable organisation at {}",
            String::from_utf8_lossy(k)
        )))
    })
}

/// A member record with its address added.
fn member_json(rec: &MemberRecord) -> Result<serde_json::Value, QueryError> {
    let mut v = to_json(rec)?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "address".into(),
            serde_json::Value::String(Address::of_member(&rec.key).to_string()),
        );
    }
    Ok(v)
}

/// Active members of an organisation, admins first, then by key.
fn list_members(
    state: &dyn StateRead,
    id: &str,
    params: &BTreeMap<String, String>,
) -> Result<serde_json::Value, QueryError> {
    let limit = query_limit(params)?;
    if org(state, id)?.is_none() {
        return Err(QueryError::NotFound(format!("organisation {id:?}")));
    }
    let after = match params.get("after") {
        None => None,
        Some(hex) => {
            let key =
                PublicKey::from_hex(hex).map_err(|e| QueryError::Invalid(format!("after: {e}")))?;
            let rec = member(state, &key)?
                .filter(|m| m.org == id)
                .ok_or_else(|| {
                    QueryError::Invalid(format!("after: {key} is not a member of {id:?}"))
                })?;
            Some(roster_key(id, rec.role, &key))
        }
    };
    let (entries, more) = page(state, NAME, &roster_org_prefix(id), after.as_deref(), limit)?;
    let mut members = Vec::with_capacity(entries.len());
    for (k, _) in &entries {
        let pk: Option<[u8; 32]> = k
            .len()
            .checked_sub(32)
            .and_then(|i| k.get(i..))
            .and_then(|s| s.try_into().ok());
        let Some(pk) = pk else {
            return Err(QueryError::Storage(StateError(format!(
                "malformed roster key {}",
                String::from_utf8_lossy(k)
            ))));
        };
        let rec = member(state, &PublicKey(pk))?.ok_or_else(|| {
            QueryError::Storage(StateError(format!(
                "roster names unknown member {}",
                PublicKey(pk)
            )))
        })?;
        members.push(member_json(&rec)?);
    }
    let next = if more {
        entries
            .last()
            .and_then(|(k, _)| k.get(k.len().saturating_sub(32)..))
            .map(hex::encode)
    } else {
        None
    };
    Ok(serde_json::json!({ "members": members, "next": next }))
}
