//! Criterion benchmarks of the ledger alone: signature verification (single, and batched over
//! all cores), block execution (proposal from a full mempool) and block commit on redb.
//!
//! `cargo bench -p trustedge-chain`. `trustedge bench execution` prints the same rates with
//! their ratio to the batch-verification rate measured in the same run.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use trustedge_chain::verify::verify_parallel;
use trustedge_chain::{Ledger, LedgerConfig};
use trustedge_contracts::{DevicesCall, Genesis, GenesisMember, GenesisOrg, GovernancePolicy};
use trustedge_execution::{DeviceClass, OrgKind, Role};
use trustedge_types::{Address, Keypair, Payload, SignedTx, TxBody, Validator};

const BLOCK_TXS: usize = 1_000;

fn genesis(validator: &Keypair, admin: &Keypair) -> Genesis {
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

fn registrations(admin: &Keypair, n: usize) -> Vec<SignedTx> {
    (0..n)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            seed[31] = 0xde;
            let device = Keypair::from_seed(seed);
            TxBody {
                chain_id: "bench".into(),
                signer: admin.public(),
                nonce: i as u64 + 1,
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
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let validator = Keypair::from_seed([1; 32]);
    let admin = Keypair::from_seed([2; 32]);
    let txs = registrations(&admin, BLOCK_TXS);
    let sign_bytes: Vec<Vec<u8>> = txs.iter().map(|t| t.body.sign_bytes()).collect();
    let items: Vec<_> = txs
        .iter()
        .zip(&sign_bytes)
        .map(|(t, m)| (t.body.signer, m.as_slice(), t.signature))
        .collect();

    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));
    g.bench_function("single", |b| {
        b.iter(|| items[0].0.verify(items[0].1, &items[0].2).unwrap())
    });
    g.throughput(Throughput::Elements(BLOCK_TXS as u64));
    g.bench_function("batch_all_cores_1000", |b| {
        b.iter(|| verify_parallel(&items))
    });
    g.finish();

    let mut g = c.benchmark_group("ledger");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(BLOCK_TXS as u64));
    let proposer = Address::of_member(&validator.public());
    let fresh = || {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(
            &dir.path().join("l.redb"),
            genesis(&validator, &admin),
            LedgerConfig::default(),
        )
        .unwrap();
        (dir, l)
    };
    g.bench_function("submit_1000 (verify + admit)", |b| {
        b.iter_batched(
            fresh,
            |(_d, l)| {
                for r in l.submit_batch(txs.clone()) {
                    r.unwrap();
                }
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("propose_1000 (execute + state root)", |b| {
        b.iter_batched(
            || {
                let (d, l) = fresh();
                l.submit_batch(txs.clone());
                (d, l)
            },
            |(_d, l)| l.propose_block(2, proposer).unwrap(),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("commit_1000 (redb + jmt)", |b| {
        b.iter_batched(
            || {
                let (d, l) = fresh();
                l.submit_batch(txs.clone());
                let block = l.propose_block(2, proposer).unwrap();
                let cert = l.solo_certificate(&block, &validator);
                (d, l, block, cert)
            },
            |(_d, l, block, cert)| l.commit_block(&block, &cert).unwrap(),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
