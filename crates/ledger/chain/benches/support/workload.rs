//! The fixed workload of the ledger's benchmarks and the `commit_cost` example: a one-validator
//! genesis with a hospital admin, and that admin's `devices.register` transactions.
//! Included with `#[path]` by `benches/ledger.rs` and `examples/commit_cost.rs`.

use trustedge_contracts::{DevicesCall, Genesis, GenesisMember, GenesisOrg, GovernancePolicy};
use trustedge_execution::{DeviceClass, OrgKind, Role};
use trustedge_types::{Address, Keypair, Payload, SignedTx, TxBody, Validator};

/// A one-validator genesis; `admin` administers `hospital-1`.
pub fn genesis(validator: &Keypair, admin: &Keypair) -> Genesis {
    Genesis {
        chain_id: "bench".into(),
        genesis_time_ms: 1,
        validators: vec![Validator {
            name: "v0".into(),
            address: Address::of_member(&validator.public()),
            public_key: validator.public(),
            power: 1,
        }],
        organisations: vec![
            GenesisOrg {
                id: "health-authority-1".into(),
                name: "HA".into(),
                kind: OrgKind::HealthAuthority,
                members: vec![GenesisMember {
                    public_key: Keypair::from_seed([3; 32]).public(),
                    role: Role::Admin,
                }],
            },
            GenesisOrg {
                id: "hospital-1".into(),
                name: "Hospital".into(),
                kind: OrgKind::Hospital,
                members: vec![GenesisMember {
                    public_key: admin.public(),
                    role: Role::Admin,
                }],
            },
        ],
        policy: GovernancePolicy {
            admission_approvals: 1,
        },
    }
}

/// The admin's `i`-th registration (nonce `i + 1`) of a fresh thermometer.
pub fn registration(admin: &Keypair, i: u64) -> SignedTx {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i + 1).to_le_bytes());
    seed[31] = 0xde;
    let device = Keypair::from_seed(seed);
    TxBody {
        chain_id: "bench".into(),
        signer: admin.public(),
        nonce: i + 1,
        expiry_height: 1_000_000,
        payload: Payload::new(
            "devices",
            &DevicesCall::Register {
                key: device.public(),
                class: DeviceClass::Thermometer,
                model: "thermo-1".into(),
                attributes: vec![],
            },
        ),
    }
    .sign(admin)
}
