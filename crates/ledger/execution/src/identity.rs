//! Who signs transactions, and the access rules modules declare against them.

use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trustedge_types::{Address, PublicKey};

use crate::{StateError, StateRead};

/// The kind of an organisation. Fixed at admission; it decides which contracts the
/// organisation's members may call.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum OrgKind {
    /// A public-health authority: admits organisations, governs the ledger.
    HealthAuthority,
    /// A hospital.
    Hospital,
    /// A diagnostic laboratory: confirms cases.
    Laboratory,
    /// A manufacturer of medicines, vaccines or devices.
    Manufacturer,
    /// A distributor in the supply chain.
    Distributor,
    /// A clinic or practice.
    Clinic,
    /// An operator of edge nodes (gateways, access points, base stations).
    EdgeOperator,
}

impl OrgKind {
    /// Every kind, in declaration order.
    pub const ALL: [OrgKind; 7] = [
        OrgKind::HealthAuthority,
        OrgKind::Hospital,
        OrgKind::Laboratory,
        OrgKind::Manufacturer,
        OrgKind::Distributor,
        OrgKind::Clinic,
        OrgKind::EdgeOperator,
    ];
}

/// The role of a member key within its organisation.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages the organisation's members and devices, and acts for it in governance.
    Admin,
    /// Runs the organisation's services: registers and operates devices, anchors data.
    Operator,
    /// A clinician (confirms cases, reads consented patient data in later modules).
    Clinician,
    /// Reads only; may submit no state-changing transaction.
    Auditor,
}

impl Role {
    /// Every role, in declaration order.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Clinician, Role::Auditor];
}

/// The class of a registered device.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DeviceClass {
    /// A wearable (wristband, patch).
    Wearable,
    /// A phone running the TrustEdge app.
    Phone,
    /// A BLE beacon or tag.
    BleBeacon,
    /// A thermometer.
    Thermometer,
    /// An air-quality sensor (CO₂, PM2.5, temperature, humidity, occupancy).
    AirQualitySensor,
    /// An RFID reader.
    RfidReader,
    /// A cold-chain logger.
    ColdChainLogger,
    /// A drone.
    Drone,
    /// A robot.
    Robot,
}

/// An authenticated signer, as resolved from its public key and the current state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A member key of an organisation.
    Member {
        /// Member address.
        address: Address,
        /// Key.
        key: PublicKey,
        /// Organisation id.
        org: String,
        /// Organisation kind.
        org_kind: OrgKind,
        /// Role.
        role: Role,
    },
    /// A registered, active device (under its pseudonymous address).
    Device {
        /// Pseudonymous device address.
        address: Address,
        /// Key.
        key: PublicKey,
        /// Owning organisation.
        org: String,
        /// Class.
        class: DeviceClass,
    },
}

impl Principal {
    /// The principal's ledger address.
    pub fn address(&self) -> Address {
        match self {
            Principal::Member { address, .. } | Principal::Device { address, .. } => *address,
        }
    }

    /// The organisation the principal acts for.
    pub fn org(&self) -> &str {
        match self {
            Principal::Member { org, .. } | Principal::Device { org, .. } => org,
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Member {
                address,
                org,
                org_kind,
                role,
                ..
            } => {
                write!(f, "member {address} ({role:?} of {org}, a {org_kind:?})")
            }
            Principal::Device {
                address,
                org,
                class,
                ..
            } => {
                write!(f, "device {address} ({class:?} of {org})")
            }
        }
    }
}

/// Who may submit a call. Declared per call by its module and checked by the executor before
/// the module runs; a module may narrow it further (for example to its own organisation's
/// admins) by returning [`crate::TxError::Denied`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// A member whose organisation kind is in `org_kinds` (all kinds if empty) and whose role
    /// is in `roles`.
    Members {
        /// Allowed organisation kinds; empty means any.
        org_kinds: &'static [OrgKind],
        /// Allowed roles.
        roles: &'static [Role],
    },
    /// A registered device of a class in `classes` (any class if empty).
    Devices {
        /// Allowed classes; empty means any.
        classes: &'static [DeviceClass],
    },
}

impl Access {
    /// Checks the rule; the error says who was required and who signed.
    pub fn check(&self, who: &Principal) -> Result<(), String> {
        match (self, who) {
            (Access::Members { org_kinds, roles }, Principal::Member { org_kind, role, .. }) => {
                if !org_kinds.is_empty() && !org_kinds.contains(org_kind) {
                    return Err(format!(
                        "requires a member of an organisation of kind {org_kinds:?}; signer is {who}"
                    ));
                }
                if !roles.contains(role) {
                    return Err(format!("requires role {roles:?}; signer is {who}"));
                }
                Ok(())
            }
            (Access::Devices { classes }, Principal::Device { class, .. }) => {
                if !classes.is_empty() && !classes.contains(class) {
                    return Err(format!(
                        "requires a device of class {classes:?}; signer is {who}"
                    ));
                }
                Ok(())
            }
            (Access::Members { .. }, Principal::Device { .. }) => {
                Err(format!("requires an organisation member; signer is {who}"))
            }
            (Access::Devices { .. }, Principal::Member { .. }) => {
                Err(format!("requires a registered device; signer is {who}"))
            }
        }
    }
}

/// Why a key cannot sign right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inactive {
    /// The key is not known to the ledger.
    Unknown,
    /// The key was revoked (or rotated away).
    Revoked,
    /// The key (or its device, or its organisation) is suspended.
    Suspended,
}

/// Resolves a signing key to a principal. Implemented by the organisations and devices
/// contracts, which own that state.
pub trait IdentityResolver: Send + Sync {
    /// The active principal for `key`, or why it cannot sign.
    fn resolve(
        &self,
        state: &dyn StateRead,
        key: &PublicKey,
    ) -> Result<Result<Principal, Inactive>, StateError>;
}
