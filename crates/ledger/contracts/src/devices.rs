//! The `devices` module: the registry of IoMT devices (wearables, beacons, sensors, …).
//!
//! A device is stored only under its pseudonymous address ([`Address::of_device`]), with its
//! class, model, a few whitelisted technical attributes and the organisation responsible for
//! it. There is deliberately no field for an owner, a wearer, a location or a serial number:
//! the ledger is replicated to every consortium member and kept for ever, so it must hold
//! nothing that identifies a person.
//!
//! # What is stored
//! - `device/<address: 20 bytes>` → [`DeviceRecord`].
//! - `by-org/<org>/<address: 20 bytes>` → [`DeviceClass`]: the devices of an organisation,
//!   for listing.
//! - `count/<org>` → `u64`: how many devices the organisation ever registered (bounded by
//!   [`MAX_DEVICES_PER_ORG`]; revoked records stay, so they count).

use std::collections::BTreeMap;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trustedge_execution::module::{module_key, read_value};
use trustedge_execution::{
    Access, DeviceClass, Module, Principal, QueryError, Role, StateError, StateRead, TxContext,
    TxError,
};
use trustedge_types::{Address, Height, PublicKey};

use crate::orgs::{self, OrgStatus};
use crate::util::{
    decode_stored, is_printable_ascii, is_valid_id, key_in_use, only_params, page, parse_address,
    query_limit, to_json,
};

/// Name of the module.
pub const NAME: &str = "devices";
/// Most attributes of one device.
pub const MAX_ATTRIBUTES: usize = 16;
/// Longest attribute value.
pub const MAX_ATTRIBUTE_VALUE_CHARS: usize = 64;
/// Longest model name.
pub const MAX_MODEL_CHARS: usize = 64;
/// Most devices one organisation may ever register.
pub const MAX_DEVICES_PER_ORG: u64 = 1_000_000;

/// The attribute keys a device may carry: technical facts about the device, nothing else.
pub const ATTRIBUTE_KEYS: &[&str] = &[
    "firmware",
    "hardware_rev",
    "protocol",
    "tx_power_dbm",
    "rssi_offset_db",
    "sampling_interval_s",
    "edge_node",
];

/// Attributes whose values must be decimal integers.
const NUMERIC_ATTRIBUTES: &[&str] = &["tx_power_dbm", "rssi_offset_db", "sampling_interval_s"];

/// One technical attribute of a device.
///
/// Attributes are how the ledger refuses free-text personal data: the key must be one of
/// [`ATTRIBUTE_KEYS`], the value at most [`MAX_ATTRIBUTE_VALUE_CHARS`] characters of
/// `[A-Za-z0-9._:+-]` (no spaces, so no sentences and no names with spaces), and numeric
/// attributes must be integers. A registration with anything else — an `owner`, a `ward`, a
/// `patient`, a note — is rejected with the reason, rather than stored for ever.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(deny_unknown_fields)]
pub struct DeviceAttribute {
    /// One of [`ATTRIBUTE_KEYS`].
    pub key: String,
    /// The value.
    pub value: String,
}

/// Whether a device may sign and be trusted.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// May sign; its data is trusted.
    Active,
    /// Temporarily not trusted (lost, under maintenance); can be reinstated.
    Suspended,
    /// Permanently not trusted. Final.
    Revoked,
}

/// A registered device, as stored under its pseudonymous address.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The device's public key.
    pub key: PublicKey,
    /// The organisation responsible for it.
    pub org: String,
    /// Class.
    pub class: DeviceClass,
    /// Model name.
    pub model: String,
    /// Technical attributes, sorted by key.
    pub attributes: Vec<DeviceAttribute>,
    /// Status.
    pub status: DeviceStatus,
    /// Height it was registered at.
    pub registered_height: Height,
    /// Height of the last status change.
    pub changed_height: Height,
}

/// The transactions of the `devices` module. JSON form: externally tagged, snake_case, e.g.
/// `{"suspend": {"device": "te1…"}}`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DevicesCall {
    /// Registers a device for the signer's organisation. Signer: admin or operator.
    Register {
        /// The device's key; it must never have been used on this ledger.
        key: PublicKey,
        /// Class.
        class: DeviceClass,
        /// Model: 1..=64 printable ASCII characters.
        model: String,
        /// At most 16 whitelisted technical attributes.
        attributes: Vec<DeviceAttribute>,
    },
    /// Suspends an active device. Signer: admin or operator of the owning organisation.
    Suspend {
        /// The device's address.
        device: Address,
    },
    /// Reinstates a suspended device. Signer: admin or operator of the owning organisation.
    Reinstate {
        /// The device's address.
        device: Address,
    },
    /// Revokes a device for good. Signer: admin or operator of the owning organisation.
    Revoke {
        /// The device's address.
        device: Address,
    },
}

/// Call kinds, as in the JSON form.
pub const CALL_KINDS: &[&str] = &["register", "suspend", "reinstate", "revoke"];

const DEVICE_PREFIX: &[u8] = b"device/";
const BY_ORG_PREFIX: &[u8] = b"by-org/";
const COUNT_PREFIX: &[u8] = b"count/";

fn device_key(addr: &Address) -> Vec<u8> {
    [DEVICE_PREFIX, &addr.0].concat()
}

fn by_org_prefix(org: &str) -> Vec<u8> {
    [BY_ORG_PREFIX, org.as_bytes(), b"/"].concat()
}

fn by_org_key(org: &str, addr: &Address) -> Vec<u8> {
    [by_org_prefix(org).as_slice(), &addr.0].concat()
}

fn count_key(org: &str) -> Vec<u8> {
    [COUNT_PREFIX, org.as_bytes()].concat()
}

/// The device at `addr`, whatever its status.
/// The full state key of a device's record: what a client asks a state proof of.
pub fn device_state_key(addr: &Address) -> Vec<u8> {
    module_key(NAME, &device_key(addr))
}

/// The device at `addr`.
pub fn device(state: &dyn StateRead, addr: &Address) -> Result<Option<DeviceRecord>, StateError> {
    read_value(state, &module_key(NAME, &device_key(addr)))
}

/// Whether the device at `addr` is registered, active, and its organisation not suspended:
/// whether other contracts should trust what it signs.
pub fn is_authorised(state: &dyn StateRead, addr: &Address) -> Result<bool, StateError> {
    let Some(d) = device(state, addr)? else {
        return Ok(false);
    };
    if d.status != DeviceStatus::Active {
        return Ok(false);
    }
    Ok(orgs::org(state, &d.org)?.is_some_and(|o| o.status == OrgStatus::Active))
}

/// Checks a model name and attributes, returning the attributes in canonical (sorted) order.
pub fn check_description(
    model: &str,
    mut attributes: Vec<DeviceAttribute>,
) -> Result<Vec<DeviceAttribute>, String> {
    if model.trim().is_empty() || model.len() > MAX_MODEL_CHARS || !is_printable_ascii(model) {
        return Err(format!(
            "model must be 1..={MAX_MODEL_CHARS} printable ASCII characters, not blank"
        ));
    }
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(format!(
            "a device has at most {MAX_ATTRIBUTES} attributes, got {}",
            attributes.len()
        ));
    }
    for a in &attributes {
        if !ATTRIBUTE_KEYS.contains(&a.key.as_str()) {
            return Err(format!(
                "attribute {:?} is not allowed: devices carry only the technical attributes \
                 {ATTRIBUTE_KEYS:?}, never personal data",
                a.key
            ));
        }
        let v = &a.value;
        if v.is_empty()
            || v.len() > MAX_ATTRIBUTE_VALUE_CHARS
            || !v
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"._:+-".contains(&c))
        {
            return Err(format!(
                "value of attribute {:?} must be 1..={MAX_ATTRIBUTE_VALUE_CHARS} characters of \
                 [A-Za-z0-9._:+-] (no free text)",
                a.key
            ));
        }
        if NUMERIC_ATTRIBUTES.contains(&a.key.as_str()) && v.parse::<i64>().is_err() {
            return Err(format!(
                "value of attribute {:?} must be an integer, got {v:?}",
                a.key
            ));
        }
    }
    attributes.sort();
    if let Some(w) = attributes.windows(2).find(|w| w[0].key == w[1].key) {
        return Err(format!("attribute {:?} is given twice", w[0].key));
    }
    Ok(attributes)
}

fn class_name(class: DeviceClass) -> String {
    serde_json::to_value(class)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{class:?}"))
}

fn signer_org(ctx: &TxContext<'_, '_>) -> Result<String, TxError> {
    match ctx.signer {
        Principal::Member { org, .. } => Ok(org.clone()),
        // Unreachable after the access check, which only admits members to this module.
        other => Err(TxError::Denied(format!(
            "requires an organisation member; signer is {other}"
        ))),
    }
}

fn register(
    ctx: &mut TxContext<'_, '_>,
    key: PublicKey,
    class: DeviceClass,
    model: String,
    attributes: Vec<DeviceAttribute>,
) -> Result<(), TxError> {
    let org = signer_org(ctx)?;
    let attributes = check_description(&model, attributes).map_err(TxError::Invalid)?;
    key.validate()
        .map_err(|e| TxError::Invalid(format!("device key {key}: {e}")))?;
    if let Some(why) = key_in_use(ctx.world(), &key)? {
        return Err(TxError::AlreadyExists(why));
    }
    let count: u64 = ctx.get(&count_key(&org))?.unwrap_or(0);
    if count >= MAX_DEVICES_PER_ORG {
        return Err(TxError::Conflict(format!(
            "organisation {org:?} has registered the maximum of {MAX_DEVICES_PER_ORG} devices"
        )));
    }
    let addr = Address::of_device(&key);
    let rec = DeviceRecord {
        key,
        org: org.clone(),
        class,
        model,
        attributes,
        status: DeviceStatus::Active,
        registered_height: ctx.height,
        changed_height: ctx.height,
    };
    ctx.put(&device_key(&addr), &rec)?;
    ctx.put(&by_org_key(&org, &addr), &class)?;
    ctx.put(&count_key(&org), &(count + 1))?;
    ctx.emit(
        "device_registered",
        &[
            ("device", addr.to_string()),
            ("org_id", org),
            ("class", class_name(class)),
        ],
    )
}

/// Moves a device of the signer's organisation from one of `from` to `to`.
fn set_status(
    ctx: &mut TxContext<'_, '_>,
    addr: Address,
    from: &[DeviceStatus],
    to: DeviceStatus,
    event: &str,
) -> Result<(), TxError> {
    let org = signer_org(ctx)?;
    let mut rec: DeviceRecord = ctx
        .get(&device_key(&addr))?
        .ok_or_else(|| TxError::NotFound(format!("device {addr}")))?;
    if rec.org != org {
        return Err(TxError::Denied(format!(
            "device {addr} belongs to {:?}; only its own organisation may change it",
            rec.org
        )));
    }
    if !from.contains(&rec.status) {
        return Err(TxError::Conflict(format!(
            "device {addr} is {:?}; this needs it to be one of {from:?}",
            rec.status
        )));
    }
    rec.status = to;
    rec.changed_height = ctx.height;
    ctx.put(&device_key(&addr), &rec)?;
    ctx.emit(event, &[("device", addr.to_string()), ("org_id", org)])
}

/// The `devices` module. Queries: `list?org=&after=&limit=`, `device/<address>`,
/// `authorised/<address>`.
#[derive(Clone, Copy, Debug, Default)]
pub struct DevicesModule;

impl Module for DevicesModule {
    type Call = DevicesCall;
    const NAME: &'static str = NAME;

    fn access(&self, _call: &DevicesCall) -> Access {
        // Registering and changing the status of a device are both operational work; the
        // owning-organisation rule is checked in execution.
        Access::Members {
            org_kinds: &[],
            roles: &[Role::Admin, Role::Operator],
        }
    }

    fn execute(&self, ctx: &mut TxContext<'_, '_>, call: DevicesCall) -> Result<(), TxError> {
        use DeviceStatus::{Active, Revoked, Suspended};
        match call {
            DevicesCall::Register {
                key,
                class,
                model,
                attributes,
            } => register(ctx, key, class, model, attributes),
            DevicesCall::Suspend { device } => {
                set_status(ctx, device, &[Active], Suspended, "device_suspended")
            }
            DevicesCall::Reinstate { device } => {
                set_status(ctx, device, &[Suspended], Active, "device_reinstated")
            }
            DevicesCall::Revoke { device } => {
                set_status(ctx, device, &[Active, Suspended], Revoked, "device_revoked")
            }
        }
    }

    fn query(
        &self,
        state: &dyn StateRead,
        path: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<serde_json::Value, QueryError> {
        if path == "list" {
            only_params(params, &["org", "after", "limit"])?;
            return list(state, params);
        }
        if let Some(a) = path.strip_prefix("device/") {
            only_params(params, &[])?;
            let addr = parse_address("device", a)?;
            let rec = device(state, &addr)?
                .ok_or_else(|| QueryError::NotFound(format!("device {addr}")))?;
            return device_json(&addr, &rec);
        }
        if let Some(a) = path.strip_prefix("authorised/") {
            only_params(params, &[])?;
            let addr = parse_address("device", a)?;
            return Ok(serde_json::json!({
                "device": addr,
                "authorised": is_authorised(state, &addr)?,
            }));
        }
        Err(QueryError::NotFound(format!(
            "no query {path:?}; devices answers list, device/<address>, authorised/<address>"
        )))
    }

    fn call_kinds(&self) -> &'static [&'static str] {
        CALL_KINDS
    }

    fn describe_value(&self, key: &[u8], value: &[u8]) -> Option<serde_json::Value> {
        if let Some(a) = key.strip_prefix(DEVICE_PREFIX) {
            let addr = Address(a.try_into().ok()?);
            device_json(&addr, &decode_stored(value)?).ok()
        } else if key.starts_with(BY_ORG_PREFIX) {
            let class: DeviceClass = decode_stored(value)?;
            let a: [u8; 20] = key.get(key.len().checked_sub(20)?..)?.try_into().ok()?;
            Some(serde_json::json!({ "device": Address(a), "class": class }))
        } else if key.starts_with(COUNT_PREFIX) {
            Some(serde_json::json!({ "registered": decode_stored::<u64>(value)? }))
        } else {
            None
        }
    }
}

/// A device record with its address added.
fn device_json(addr: &Address, rec: &DeviceRecord) -> Result<serde_json::Value, QueryError> {
    let mut v = to_json(rec)?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "address".into(),
            serde_json::Value::String(addr.to_string()),
        );
    }
    Ok(v)
}

fn list(
    state: &dyn StateRead,
    params: &BTreeMap<String, String>,
) -> Result<serde_json::Value, QueryError> {
    let limit = query_limit(params)?;
    let after = params
        .get("after")
        .map(|a| parse_address("after", a))
        .transpose()?;
    let mut devices = Vec::new();
    let (addrs, more) = match params.get("org") {
        Some(org) => {
            if !is_valid_id(org) {
                return Err(QueryError::Invalid(format!("org: invalid id {org:?}")));
            }
            let cursor = after.map(|a| by_org_key(org, &a));
            let (entries, more) = page(state, NAME, &by_org_prefix(org), cursor.as_deref(), limit)?;
            let addrs = entries
                .iter()
                .map(|(k, _)| address_suffix(k))
                .collect::<Result<Vec<_>, _>>()?;
            (addrs, more)
        }
        None => {
            let cursor = after.map(|a| device_key(&a));
            let (entries, more) = page(state, NAME, DEVICE_PREFIX, cursor.as_deref(), limit)?;
            let addrs = entries
                .iter()
                .map(|(k, _)| address_suffix(k))
                .collect::<Result<Vec<_>, _>>()?;
            (addrs, more)
        }
    };
    for addr in &addrs {
        let rec = device(state, addr)?.ok_or_else(|| {
            QueryError::Storage(StateError(format!("index names unknown device {addr}")))
        })?;
        devices.push(device_json(addr, &rec)?);
    }
    let next = if more { addrs.last().copied() } else { None };
    Ok(serde_json::json!({ "devices": devices, "next": next }))
}

fn address_suffix(k: &[u8]) -> Result<Address, QueryError> {
    k.len()
        .checked_sub(20)
        .and_then(|i| k.get(i..))
        .and_then(|s| <[u8; 20]>::try_from(s).ok())
        .map(Address)
        .ok_or_else(|| {
            QueryError::Storage(StateError(format!(
                "malformed device key {}",
                String::from_utf8_lossy(k)
            )))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(k: &str, v: &str) -> DeviceAttribute {
        DeviceAttribute {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn description_rules() {
        let ok = check_description(
            "TE-Band 2",
            vec![
                attr("tx_power_dbm", "-4"),
                attr("firmware", "1.2.3+build.7"),
            ],
        )
        .unwrap();
        assert_eq!(ok[0].key, "firmware", "attributes are sorted");
        for (model, attrs, needle) in [
            ("", vec![], "model"),
            ("bad\tmodel", vec![], "model"),
            ("m", vec![attr("owner", "Alice")], "not allowed"),
            ("m", vec![attr("firmware", "Alice Smith")], "no free text"),
            ("m", vec![attr("firmware", &"x".repeat(65))], "no free text"),
            ("m", vec![attr("tx_power_dbm", "high")], "integer"),
            (
                "m",
                vec![attr("firmware", "1"), attr("firmware", "2")],
                "twice",
            ),
            (
                "m",
                (0..17).map(|_| attr("firmware", "1")).collect(),
                "at most 16",
            ),
        ] {
            let e = check_description(model, attrs).unwrap_err();
            assert!(e.contains(needle), "{e} should mention {needle}");
        }
    }
}
