use std::path::Path;

use trustedge_chain::{Ledger, LedgerConfig};
use trustedge_contracts::{DevicesCall, Genesis, GenesisMember, GenesisOrg, GovernancePolicy};
use trustedge_execution::{DeviceClass, OrgKind, Role};
use trustedge_types::{Address, Block, Keypair, Payload, SignedTx, TxBody, Validator};

pub const CHAIN: &str = "trustedge-it";

pub struct Keys {
    pub validator: Keypair,
    pub ha_admin: Keypair,
    pub hospital_admin: Keypair,
    pub hospital_auditor: Keypair,
    pub edge_operator: Keypair,
    pub edge_admin: Keypair,
}

pub fn keys() -> Keys {
    Keys {
        validator: Keypair::from_seed([1; 32]),
        ha_admin: Keypair::from_seed([2; 32]),
        hospital_admin: Keypair::from_seed([3; 32]),
        hospital_auditor: Keypair::from_seed([4; 32]),
        edge_operator: Keypair::from_seed([5; 32]),
        edge_admin: Keypair::from_seed([6; 32]),
    }
}

pub fn genesis(k: &Keys) -> Genesis {
    let org = |id: &str, kind, members: Vec<(&Keypair, Role)>| GenesisOrg {
        id: id.into(),
        name: id.into(),
        kind,
        members: members
            .into_iter()
            .map(|(k, role)| GenesisMember {
                public_key: k.public(),
                role,
            })
            .collect(),
    };
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 1_700_000_000_000,
        validators: vec![Validator {
            name: "validator-0".into(),
            address: Address::of_member(&k.validator.public()),
            public_key: k.validator.public(),
            power: 1,
        }],
        organisations: vec![
            org(
                "health-authority-1",
                OrgKind::HealthAuthority,
                vec![(&k.ha_admin, Role::Admin)],
            ),
            org(
                "hospital-1",
                OrgKind::Hospital,
                vec![
                    (&k.hospital_admin, Role::Admin),
                    (&k.hospital_auditor, Role::Auditor),
                ],
            ),
            org(
                "edge-operator-1",
                OrgKind::EdgeOperator,
                vec![
                    (&k.edge_admin, Role::Admin),
                    (&k.edge_operator, Role::Operator),
                ],
            ),
        ],
        policy: GovernancePolicy {
            admission_approvals: 1,
        },
    }
}

pub fn open(dir: &Path, k: &Keys) -> Ledger {
    open_with(dir, k, LedgerConfig::default())
}

pub fn open_with(dir: &Path, k: &Keys, config: LedgerConfig) -> Ledger {
    Ledger::open(&dir.join("ledger.redb"), genesis(k), config).expect("open ledger")
}

pub fn tx<C: borsh::BorshSerialize>(key: &Keypair, nonce: u64, module: &str, call: &C) -> SignedTx {
    TxBody {
        chain_id: CHAIN.into(),
        signer: key.public(),
        nonce,
        expiry_height: 1_000,
        payload: Payload::new(module, call),
    }
    .sign(key)
}

/// A device registration by `owner`, for the device with key seed `seed`.
pub fn register_device(owner: &Keypair, nonce: u64, seed: u8) -> SignedTx {
    let device = Keypair::from_seed([seed; 32]);
    tx(
        owner,
        nonce,
        "devices",
        &DevicesCall::Register {
            key: device.public(),
            class: DeviceClass::Wearable,
            model: "wristband-v2".into(),
            attributes: vec![],
        },
    )
}

/// Proposes on `ledger`, certifies as the solo validator and commits.
pub fn seal(ledger: &Ledger, k: &Keys, time_ms: u64) -> Block {
    let block = ledger
        .propose_block(time_ms, Address::of_member(&k.validator.public()))
        .expect("propose");
    let cert = ledger.solo_certificate(&block, &k.validator);
    ledger.commit_block(&block, &cert).expect("commit");
    block
}
