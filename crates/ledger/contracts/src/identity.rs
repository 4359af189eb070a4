//! [`LedgerIdentity`]: who a signing key is, according to the `orgs` and `devices` state.

use trustedge_execution::identity::Inactive;
use trustedge_execution::{IdentityResolver, Principal, StateError, StateRead};
use trustedge_types::{Address, PublicKey};

use crate::devices::{self, DeviceStatus};
use crate::orgs::{self, MemberStatus, OrgRecord, OrgStatus};

/// Resolves a key to a member of an organisation or a registered device.
///
/// - A member key resolves to [`Principal::Member`] while both it and its organisation are
///   active; a removed, revoked or rotated-away key is [`Inactive::Revoked`]; a key of a
///   suspended organisation is [`Inactive::Suspended`].
/// - A device key resolves to [`Principal::Device`] (under its pseudonymous address) while
///   the device and its organisation are active; a suspended device or organisation gives
///   [`Inactive::Suspended`], a revoked device [`Inactive::Revoked`].
/// - Anything else, validator keys included, is [`Inactive::Unknown`]: validators sign blocks,
///   not transactions, and a key has only one identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct LedgerIdentity;

fn org_of(state: &dyn StateRead, id: &str) -> Result<OrgRecord, StateError> {
    orgs::org(state, id)?.ok_or_else(|| {
        StateError(format!(
            "state names organisation {id:?} but it does not exist"
        ))
    })
}

impl IdentityResolver for LedgerIdentity {
    fn resolve(
        &self,
        state: &dyn StateRead,
        key: &PublicKey,
    ) -> Result<Result<Principal, Inactive>, StateError> {
        if let Some(m) = orgs::member(state, key)? {
            if m.status != MemberStatus::Active {
                return Ok(Err(Inactive::Revoked));
            }
            let org = org_of(state, &m.org)?;
            if org.status == OrgStatus::Suspended {
                return Ok(Err(Inactive::Suspended));
            }
            return Ok(Ok(Principal::Member {
                address: Address::of_member(key),
                key: *key,
                org: m.org,
                org_kind: org.kind,
                role: m.role,
            }));
        }
        let address = Address::of_device(key);
        if let Some(d) = devices::device(state, &address)? {
            match d.status {
                DeviceStatus::Revoked => return Ok(Err(Inactive::Revoked)),
                DeviceStatus::Suspended => return Ok(Err(Inactive::Suspended)),
                DeviceStatus::Active => {}
            }
            if org_of(state, &d.org)?.status == OrgStatus::Suspended {
                return Ok(Err(Inactive::Suspended));
            }
            return Ok(Ok(Principal::Device {
                address,
                key: *key,
                org: d.org,
                class: d.class,
            }));
        }
        Ok(Err(Inactive::Unknown))
    }
}
