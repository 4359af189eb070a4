//! The built-in smart contracts of the TrustEdge ledger.
//!
//! Every contract is a [`trustedge_execution::Module`]; [`runtime`] registers them all together
//! with [`LedgerIdentity`], the resolver that turns a signing key into a member or device
//! principal. This crate is pure: no I/O, no clock, no randomness. Time and height come from
//! the block being executed.
//!
//! | module | state it owns | calls |
//! |---|---|---|
//! | [`genesis`] (`genesis`) | chain id, governance policy, validator set, validator-set changes | propose / approve validator change |
//! | [`orgs`] (`orgs`) | organisations, member keys, admission proposals | admission, members, keys, suspension |
//! | [`devices`] (`devices`) | devices under their pseudonymous addresses | register, suspend, reinstate, revoke |
//! | [`anchor`] (`anchor`) | Merkle roots of record batches held at the edge | anchor_batch |
//! | [`diagnosis`] (`diagnosis`) | diagnosis keys (embargoed until their validity ends, revocable), used verification certificates, uploads | publish_keys |
//! | [`exposure`] (`exposure`) | exposure notices (the exposed device's own RPIs, score, day, source upload) by day and by RPI | publish_notices |
//! | [`aerosol`] (`aerosol`) | aerosol alerts (per-day pseudonymous venue id, window, risk, kind) by day and by venue id; confirmed cases' presences in alerted windows by upload and by day | publish_alerts, report_case_presence |
//!
//! # Invariants that hold across the modules
//! - A public key has at most one identity, ever: a member key, a device key, a validator key
//!   or the admin key of a pending admission proposal. Revoked and rotated keys stay recorded
//!   and are never reused, so a signature can always be attributed to exactly one identity.
//! - No personal data is stored: members are known by key, role and organisation only;
//!   devices by pseudonymous address, class, model and whitelisted technical attributes;
//!   anchors carry only Merkle roots of data that stays at the edge; diagnosis keys carry
//!   only what GAEN publishes anyway (plus the certificate id and issuing organisation);
//!   exposure notices carry only the exposed party's own RPIs, a score, a day and an upload id;
//!   aerosol alerts only a per-day venue pseudonym, a window, a risk and a kind (no room
//!   name, place, occupancy or sensor reading); case presences only a confirmed case's
//!   upload id, a venue pseudonym and a window overlapping an alert.
//! - Every list a query or a transaction reads is bounded (see the `MAX_*` constants).

pub mod aerosol;
pub mod anchor;
pub mod devices;
pub mod diagnosis;
pub mod error;
pub mod exposure;
pub mod genesis;
pub mod identity;
pub mod orgs;
mod util;

use std::sync::Arc;

use trustedge_execution::{Module, Runtime};

pub use aerosol::{
    AerosolAlertTx, AerosolCall, AerosolError, AerosolModule, AerosolStats, AlertKind, AlertRecord,
    CaseVisit, PresenceRecord,
};
pub use anchor::{AnchorCall, AnchorModule, AnchorRecord, record_leaf, verify_record_anchored};
pub use devices::{
    DeviceAttribute, DeviceRecord, DeviceStatus, DevicesCall, DevicesModule, device, is_authorised,
};
pub use diagnosis::{
    DiagnosisCall, DiagnosisError, DiagnosisModule, DiagnosisStats, PublishedKey, UploadRecord,
    VerificationCertificate, keys_digest,
};
pub use error::{AnchorError, GenesisError};
pub use exposure::{ExposureCall, ExposureError, ExposureModule, ExposureNotice, NoticeRecord};
pub use genesis::{
    ChainInfo, Genesis, GenesisCall, GenesisMember, GenesisModule, GenesisOrg, GovernancePolicy,
    ScheduledValidatorChange, VALIDATOR_CHANGE_DELAY, ValidatorChange, ValidatorChangeProposal,
    validator_set,
};
pub use identity::LedgerIdentity;
pub use orgs::{
    AdmissionProposal, MemberRecord, MemberStatus, OrgRecord, OrgStatus, OrgsCall, OrgsModule,
};

/// Names of the registered modules, in registration order.
pub const MODULES: &[&str] = &[
    <GenesisModule as Module>::NAME,
    <OrgsModule as Module>::NAME,
    <DevicesModule as Module>::NAME,
    <AnchorModule as Module>::NAME,
    <DiagnosisModule as Module>::NAME,
    <ExposureModule as Module>::NAME,
    <AerosolModule as Module>::NAME,
];

/// A runtime for `chain_id` with every built-in module and [`LedgerIdentity`].
pub fn runtime(chain_id: &str) -> Runtime {
    let mut rt = Runtime::new(chain_id, Arc::new(LedgerIdentity));
    // Registration fails only on a duplicate or reserved name; the names are distinct
    // constants, which `tests::runtime_registers_every_module` pins.
    let registered = [
        rt.register(GenesisModule),
        rt.register(OrgsModule),
        rt.register(DevicesModule),
        rt.register(AnchorModule),
        rt.register(DiagnosisModule),
        rt.register(ExposureModule),
        rt.register(AerosolModule),
    ];
    debug_assert!(registered.iter().all(Result::is_ok), "{registered:?}");
    rt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_registers_every_module() {
        let rt = runtime("t");
        let names: Vec<&str> = rt.modules().map(|m| m.name()).collect();
        let mut expected = MODULES.to_vec();
        expected.sort_unstable();
        assert_eq!(names, expected);
        assert_eq!(rt.chain_id(), "t");
    }
}
