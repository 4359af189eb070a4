//! `trustedge tx`: build, sign and submit transactions.
//!
//! Every form ends in the same place: a module name and the module's call, encoded
//! canonically, signed with the `--key` file with nonce = last committed nonce + 1 and an
//! expiry 100 blocks after the current height.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use trustedge_contracts::{AnchorCall, DeviceAttribute, DevicesCall, OrgsCall};
use trustedge_execution::{DeviceClass, OrgKind, Role};
use trustedge_node::client::Client;
use trustedge_types::{Address, Hash, Keypair, Payload, PublicKey, SignedTx};

use crate::keys;
use crate::remote::{self, ApiFailure};

/// Largest `tx file` read.
const MAX_TX_FILE_BYTES: u64 = 1024 * 1024;

/// Arguments of `trustedge tx`.
#[derive(Args, Debug)]
pub struct TxArgs {
    /// Node URL, signing key and waiting.
    #[command(flatten)]
    pub signer: SignerArgs,
    /// What to send.
    #[command(subcommand)]
    pub command: TxCommand,
}

/// Node URL, signing key and waiting, shared by every `tx` form.
#[derive(Args, Debug, Clone)]
pub struct SignerArgs {
    /// Node API URL, e.g. http://127.0.0.1:26650.
    #[arg(long, global = true, env = "TRUSTEDGE_NODE")]
    pub node: Option<String>,
    /// Key file of the signer.
    #[arg(long, global = true)]
    pub key: Option<PathBuf>,
    /// Wait until the transaction is committed and print its result.
    #[arg(long, global = true)]
    pub wait: bool,
    /// Use this nonce instead of the signer's last committed nonce + 1.
    #[arg(long, global = true)]
    pub nonce: Option<u64>,
}

/// The forms of `trustedge tx`.
#[derive(Subcommand, Debug)]
pub enum TxCommand {
    /// Any call: a module and the JSON form of its call, e.g.
    /// --module devices --call '{"suspend": {"device": "te1…"}}'.
    Send {
        /// Module name (orgs, devices, anchor).
        #[arg(long)]
        module: String,
        /// The call's JSON form.
        #[arg(long)]
        call: String,
    },
    /// A transaction described by a JSON file `{"module": …, "call": …}`.
    File {
        /// The file.
        file: PathBuf,
    },
    /// Device registry calls.
    Device {
        /// The call.
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Anchor the Merkle root of a batch of records held at the edge.
    Anchor {
        /// Record type, e.g. `vital_signs`.
        #[arg(long)]
        record_type: String,
        /// Merkle root of the batch, hex.
        #[arg(long)]
        root: String,
        /// Number of records in the batch.
        #[arg(long)]
        count: u64,
        /// Time of the first record, Unix ms.
        #[arg(long)]
        from_ms: u64,
        /// Time of the last record, Unix ms.
        #[arg(long)]
        to_ms: u64,
    },
    /// Organisation and member calls.
    Org {
        /// The call.
        #[command(subcommand)]
        command: OrgCommand,
    },
}

/// `trustedge tx device …`.
#[derive(Subcommand, Debug)]
pub enum DeviceCommand {
    /// Register a device for the signer's organisation.
    Register {
        /// Class: wearable, phone, ble_beacon, thermometer, air_quality_sensor, rfid_reader,
        /// cold_chain_logger, drone, robot.
        #[arg(long, value_parser = parse_serde::<DeviceClass>)]
        class: DeviceClass,
        /// Model name.
        #[arg(long)]
        model: String,
        /// The device's public key: hex, or a key file.
        #[arg(long, value_name = "HEX|FILE")]
        device_key: String,
        /// Technical attribute `key=value` (firmware, hardware_rev, protocol, …); repeatable.
        #[arg(long = "attr", value_name = "KEY=VALUE")]
        attrs: Vec<String>,
    },
    /// Suspend a device of the signer's organisation.
    Suspend {
        /// The device's address (te1…).
        #[arg(long)]
        device: String,
    },
    /// Reinstate a suspended device.
    Reinstate {
        /// The device's address (te1…).
        #[arg(long)]
        device: String,
    },
    /// Revoke a device for good.
    Revoke {
        /// The device's address (te1…).
        #[arg(long)]
        device: String,
    },
}

/// `trustedge tx org …`.
#[derive(Subcommand, Debug)]
pub enum OrgCommand {
    /// Add a member key to the signer's organisation (signer: an admin).
    AddMember {
        /// The new member's public key: hex, or a key file.
        #[arg(long, value_name = "HEX|FILE")]
        member_key: String,
        /// Role: admin, operator, clinician, auditor.
        #[arg(long, value_parser = parse_serde::<Role>)]
        role: Role,
    },
    /// Remove a member from the signer's organisation (signer: an admin).
    RemoveMember {
        /// The member's public key: hex, or a key file.
        #[arg(long, value_name = "HEX|FILE")]
        member_key: String,
    },
    /// Propose admitting an organisation (signer: a health-authority admin).
    ProposeAdmission {
        /// Id of the new organisation ([a-z0-9-], at most 32).
        #[arg(long)]
        org_id: String,
        /// Its public name.
        #[arg(long)]
        name: String,
        /// Kind: health_authority, hospital, laboratory, manufacturer, distributor, clinic,
        /// edge_operator.
        #[arg(long, value_parser = parse_serde::<OrgKind>)]
        kind: OrgKind,
        /// Key of its first admin: hex, or a key file.
        #[arg(long, value_name = "HEX|FILE")]
        admin_key: String,
    },
    /// Approve a pending admission (signer: an admin of another health authority).
    ApproveAdmission {
        /// Id of the proposed organisation.
        #[arg(long)]
        org_id: String,
    },
    /// Replace the signer's own key by a new one.
    RotateKey {
        /// The new key: hex, or a key file.
        #[arg(long, value_name = "HEX|FILE")]
        new_key: String,
    },
    /// Revoke a key: the signer's own (default) or, as an admin, a member's.
    RevokeKey {
        /// The key to revoke: hex, or a key file. Default: the signer's own key.
        #[arg(long, value_name = "HEX|FILE")]
        member_key: Option<String>,
    },
    /// Suspend an organisation (signer: a health-authority admin).
    SuspendOrg {
        /// The organisation.
        #[arg(long)]
        org_id: String,
    },
    /// Reinstate a suspended organisation (signer: a health-authority admin).
    ReinstateOrg {
        /// The organisation.
        #[arg(long)]
        org_id: String,
    },
}

/// Parses a value by its serde (snake_case) name, listing the accepted names on error.
pub fn parse_serde<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(Value::String(s.trim().to_string())).map_err(|e| e.to_string())
}

/// A public key given as hex or as a key file.
pub fn public_key_arg(s: &str) -> anyhow::Result<PublicKey> {
    if let Ok(k) = PublicKey::from_hex(s) {
        return Ok(k);
    }
    let path = Path::new(s);
    if path.exists() {
        return Ok(keys::load(path)?.public());
    }
    anyhow::bail!("{s:?} is neither a 64-character hex public key nor a key file")
}

fn address_arg(s: &str) -> anyhow::Result<Address> {
    Address::parse(s).with_context(|| format!("{s:?} is not a TrustEdge address (te1…)"))
}

/// Parses `key=value` device attributes.
pub fn attributes(attrs: &[String]) -> anyhow::Result<Vec<DeviceAttribute>> {
    attrs
        .iter()
        .map(|a| {
            let (k, v) = a
                .split_once('=')
                .with_context(|| format!("--attr {a:?} is not of the form key=value"))?;
            Ok(DeviceAttribute {
                key: k.trim().to_string(),
                value: v.trim().to_string(),
            })
        })
        .collect()
}

/// The payload a `tx` form describes. `signer` is the signing key (for defaults).
fn payload_of(command: &TxCommand, signer: &Keypair) -> anyhow::Result<Payload> {
    Ok(match command {
        TxCommand::Send { module, call } => {
            let json: Value = serde_json::from_str(call).context("--call is not JSON")?;
            payload_from_json(module, json)?
        }
        TxCommand::File { file } => payload_from_file(file)?,
        TxCommand::Device { command } => {
            let call = match command {
                DeviceCommand::Register {
                    class,
                    model,
                    device_key,
                    attrs,
                } => DevicesCall::Register {
                    key: public_key_arg(device_key)?,
                    class: *class,
                    model: model.clone(),
                    attributes: attributes(attrs)?,
                },
                DeviceCommand::Suspend { device } => DevicesCall::Suspend {
                    device: address_arg(device)?,
                },
                DeviceCommand::Reinstate { device } => DevicesCall::Reinstate {
                    device: address_arg(device)?,
                },
                DeviceCommand::Revoke { device } => DevicesCall::Revoke {
                    device: address_arg(device)?,
                },
            };
            Payload::new(trustedge_contracts::devices::NAME, &call)
        }
        TxCommand::Anchor {
            record_type,
            root,
            count,
            from_ms,
            to_ms,
        } => {
            let merkle_root =
                Hash::from_hex(root).with_context(|| format!("--root {root:?} is not a hash"))?;
            let call = AnchorCall::AnchorBatch {
                record_type: record_type.clone(),
                merkle_root,
                count: *count,
                from_ms: *from_ms,
                to_ms: *to_ms,
            };
            Payload::new(trustedge_contracts::anchor::NAME, &call)
        }
        TxCommand::Org { command } => {
            let call = match command {
                OrgCommand::AddMember { member_key, role } => OrgsCall::AddMember {
                    key: public_key_arg(member_key)?,
                    role: *role,
                },
                OrgCommand::RemoveMember { member_key } => OrgsCall::RemoveMember {
                    key: public_key_arg(member_key)?,
                },
                OrgCommand::ProposeAdmission {
                    org_id,
                    name,
                    kind,
                    admin_key,
                } => OrgsCall::ProposeAdmission {
                    org_id: org_id.clone(),
                    name: name.clone(),
                    kind: *kind,
                    admin_key: public_key_arg(admin_key)?,
                },
                OrgCommand::ApproveAdmission { org_id } => OrgsCall::ApproveAdmission {
                    org_id: org_id.clone(),
                },
                OrgCommand::RotateKey { new_key } => OrgsCall::RotateKey {
                    new_key: public_key_arg(new_key)?,
                },
                OrgCommand::RevokeKey { member_key } => OrgsCall::RevokeKey {
                    key: match member_key {
                        Some(k) => public_key_arg(k)?,
                        None => signer.public(),
                    },
                },
                OrgCommand::SuspendOrg { org_id } => OrgsCall::SuspendOrg {
                    org_id: org_id.clone(),
                },
                OrgCommand::ReinstateOrg { org_id } => OrgsCall::ReinstateOrg {
                    org_id: org_id.clone(),
                },
            };
            Payload::new(trustedge_contracts::orgs::NAME, &call)
        }
    })
}

/// Converts a call's JSON form to its canonical bytes with the module's own decoder.
pub fn payload_from_json(module: &str, call: Value) -> anyhow::Result<Payload> {
    // The chain id does not affect how calls encode.
    let runtime = trustedge_contracts::runtime("trustedge");
    let Some(m) = runtime.module(module) else {
        anyhow::bail!(
            "unknown module {module:?}; the modules are {}",
            trustedge_contracts::MODULES.join(", ")
        );
    };
    let bytes = m.call_from_json(call).map_err(|e| {
        anyhow::anyhow!(
            "not a valid {module} call: {e} (call kinds: {})",
            m.call_kinds().join(", ")
        )
    })?;
    Ok(Payload {
        module: module.to_string(),
        call: bytes,
    })
}

fn payload_from_file(file: &Path) -> anyhow::Result<Payload> {
    let meta =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    if meta.len() > MAX_TX_FILE_BYTES {
        anyhow::bail!("{} is over {MAX_TX_FILE_BYTES} bytes", file.display());
    }
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let module = v
        .get("module")
        .and_then(Value::as_str)
        .with_context(|| format!("{} has no string field \"module\"", file.display()))?;
    let call = v
        .get("call")
        .cloned()
        .with_context(|| format!("{} has no field \"call\"", file.display()))?;
    payload_from_json(module, call)
}

/// `trustedge tx`.
pub async fn run(args: TxArgs) -> anyhow::Result<()> {
    let node = args
        .signer
        .node
        .as_deref()
        .context("--node URL is required (or set TRUSTEDGE_NODE)")?;
    let key_path = args
        .signer
        .key
        .as_deref()
        .context("--key FILE (the signer's key file) is required")?;
    let key = keys::load(key_path)?;
    let payload = payload_of(&args.command, &key)?;
    let client = remote::client(node)?;
    let (tx, id) = match args.signer.nonce {
        None => remote::submit(&client, &key, payload).await?,
        Some(nonce) => {
            let head = remote::head(&client).await?;
            let tx = remote::sign(&key, &head, nonce, payload);
            let id = remote::call(client.submit_tx(&tx)).await?;
            (tx, id)
        }
    };
    if !args.signer.wait {
        let out = json!({
            "hash": id,
            "status": "submitted",
            "signer": Address::of_member(&tx.body.signer),
            "nonce": tx.body.nonce,
            "module": tx.body.payload.module,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    wait_and_print(&client, &tx, &id).await
}

async fn wait_and_print(client: &Client, tx: &SignedTx, id: &Hash) -> anyhow::Result<()> {
    let proof = remote::wait_committed(client, id, remote::WAIT_TIMEOUT).await?;
    let failure = remote::outcome_failure(&proof);
    let out = json!({
        "hash": id,
        "status": "committed",
        "height": proof.header.height,
        "index": proof.index,
        "nonce": tx.body.nonce,
        "module": tx.body.payload.module,
        "result": proof.result,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    match failure {
        None => Ok(()),
        Some(ApiFailure { code, message }) => Err(ApiFailure {
            code,
            message: format!(
                "committed at height {} but failed: {message}",
                proof.header.height
            ),
        }
        .into()),
    }
}
