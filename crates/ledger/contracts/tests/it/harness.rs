//! A tiny chain driver: genesis state in a `MemState`, one-block-at-a-time execution through
//! `Runtime::begin_block(..).apply(..)`, writes applied between blocks.

use std::collections::BTreeMap;

use trustedge_contracts::{
    AnchorCall, DevicesCall, DiagnosisCall, ExposureCall, Genesis, GenesisMember, GenesisOrg,
    GovernancePolicy, OrgsCall, runtime,
};
use trustedge_execution::identity::Inactive;
use trustedge_execution::{
    AdmissionError, BlockEnv, BlockExecution, ExecError, MemState, OrgKind, Principal, Role,
    Runtime,
};
use trustedge_types::{
    Address, Hash, Keypair, Payload, PublicKey, SignedTx, TxBody, TxOutcome, TxResult, Validator,
};

pub const CHAIN: &str = "trustedge-test";
pub const GENESIS_TIME_MS: u64 = 1_700_000_000_000;
/// Block time step.
pub const BLOCK_MS: u64 = 1_000;

/// A deterministic key named by a label.
pub fn kp(label: &str) -> Keypair {
    Keypair::from_seed(Hash::sha256(label.as_bytes()).0)
}

/// The id the fixtures give the organisation of a kind: its JSON name with dashes.
pub fn org_id(kind: OrgKind) -> String {
    serde_json::to_value(kind)
        .unwrap()
        .as_str()
        .unwrap()
        .replace('_', "-")
}

/// The key of the fixture member with `role` in `org`.
pub fn member(org: &str, role: Role) -> Keypair {
    kp(&format!("{org}/{role:?}"))
}

pub fn validator(label: &str) -> Validator {
    let k = kp(label);
    Validator {
        name: label.into(),
        address: Address::of_member(&k.public()),
        public_key: k.public(),
        power: 10,
    }
}

pub fn org(id: &str, kind: OrgKind, roles: &[Role]) -> GenesisOrg {
    GenesisOrg {
        id: id.into(),
        name: format!("The {id} organisation"),
        kind,
        members: roles
            .iter()
            .map(|&role| GenesisMember {
                public_key: member(id, role).public(),
                role,
            })
            .collect(),
    }
}

/// One organisation of every kind with one member of every role, plus a second health
/// authority `ha-2` (an admin only), admission needing 2 approvals.
pub fn matrix_genesis() -> Genesis {
    let mut organisations: Vec<GenesisOrg> = OrgKind::ALL
        .iter()
        .map(|&k| org(&org_id(k), k, &Role::ALL))
        .collect();
    organisations.push(org("ha-2", OrgKind::HealthAuthority, &[Role::Admin]));
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: GENESIS_TIME_MS,
        validators: vec![validator("val-1"), validator("val-2")],
        organisations,
        policy: GovernancePolicy {
            admission_approvals: 2,
        },
    }
}

pub fn orgs(call: OrgsCall) -> Payload {
    Payload::new("orgs", &call)
}

pub fn devices(call: DevicesCall) -> Payload {
    Payload::new("devices", &call)
}

pub fn anchor(call: AnchorCall) -> Payload {
    Payload::new("anchor", &call)
}

pub fn diagnosis(call: DiagnosisCall) -> Payload {
    Payload::new("diagnosis", &call)
}

pub fn exposure(call: ExposureCall) -> Payload {
    Payload::new("exposure", &call)
}

/// "ok" for a success, else the failure code.
pub fn code(r: &TxResult) -> &str {
    match &r.outcome {
        TxOutcome::Success => "ok",
        TxOutcome::Failed(f) => &f.code,
    }
}

/// The failure message ("" on success).
pub fn message(r: &TxResult) -> &str {
    match &r.outcome {
        TxOutcome::Success => "",
        TxOutcome::Failed(f) => &f.message,
    }
}

pub struct Net {
    pub rt: Runtime,
    pub state: MemState,
    /// Height of the last executed block (0 = genesis).
    pub height: u64,
    /// Added to every later block's time: jumps the clock forward (embargoes, expiry).
    pub clock_offset_ms: u64,
    nonces: BTreeMap<PublicKey, u64>,
}

impl Net {
    pub fn new(genesis: &Genesis) -> Net {
        let mut state = MemState::default();
        state.apply(&genesis.state_writes().unwrap());
        Net {
            rt: runtime(&genesis.chain_id),
            state,
            height: 0,
            clock_offset_ms: 0,
            nonces: BTreeMap::new(),
        }
    }

    pub fn time_ms(height: u64) -> u64 {
        GENESIS_TIME_MS + height * BLOCK_MS
    }

    /// Block time of the next block, Unix milliseconds.
    pub fn next_time_ms(&self) -> u64 {
        Self::time_ms(self.height + 1) + self.clock_offset_ms
    }

    /// A signed transaction with the signer's next nonce.
    pub fn tx(&mut self, signer: &Keypair, payload: Payload) -> SignedTx {
        let last = Runtime::last_nonce(&self.state, &signer.public()).unwrap();
        let n = self.nonces.entry(signer.public()).or_insert(0);
        *n = (*n).max(last) + 1;
        TxBody {
            chain_id: CHAIN.into(),
            signer: signer.public(),
            nonce: *n,
            expiry_height: self.height + 1_000_000,
            payload,
        }
        .sign(signer)
    }

    /// Executes one block of `txs` and applies its writes.
    pub fn block(&mut self, txs: &[SignedTx]) -> Result<BlockExecution, ExecError> {
        let height = self.height + 1;
        let mut b = self.rt.begin_block(
            &self.state,
            BlockEnv {
                height,
                time_ms: Self::time_ms(height) + self.clock_offset_ms,
            },
        );
        for tx in txs {
            assert!(tx.verify_signature().is_ok());
            b.apply(tx, tx.hash(), true)?;
        }
        let out = b.finish()?;
        self.state.apply(&out.writes);
        self.height = height;
        Ok(out)
    }

    /// Executes `payload` signed by `signer` alone in a block; panics if inadmissible.
    pub fn exec(&mut self, signer: &Keypair, payload: Payload) -> TxResult {
        let tx = self.tx(signer, payload);
        match self.block(std::slice::from_ref(&tx)) {
            Ok(mut out) => out.results.remove(0),
            Err(e) => panic!("transaction not admissible: {e}"),
        }
    }

    /// Executes and asserts success.
    pub fn ok(&mut self, signer: &Keypair, payload: Payload) -> TxResult {
        let r = self.exec(signer, payload.clone());
        assert_eq!(code(&r), "ok", "{}: {payload:?}", message(&r));
        r
    }

    /// Executes and asserts failure with `expected` code.
    pub fn fails(&mut self, signer: &Keypair, payload: Payload, expected: &str) -> TxResult {
        let r = self.exec(signer, payload.clone());
        assert_eq!(code(&r), expected, "{}: {payload:?}", message(&r));
        assert!(r.events.is_empty(), "a failed transaction emits no events");
        r
    }

    /// What admission says about `payload` signed by `signer` at the next height.
    pub fn admit(
        &mut self,
        signer: &Keypair,
        payload: Payload,
    ) -> Result<Principal, AdmissionError> {
        let tx = self.tx(signer, payload);
        self.rt
            .admit(&self.state, &tx, self.height + 1, true)
            .unwrap()
    }

    pub fn resolve(&self, key: &PublicKey) -> Result<Principal, Inactive> {
        self.rt.identity().resolve(&self.state, key).unwrap()
    }

    pub fn query(&self, module: &str, path: &str, params: &[(&str, &str)]) -> serde_json::Value {
        self.try_query(module, path, params)
            .unwrap_or_else(|e| panic!("query {module}/{path}: {e}"))
    }

    pub fn try_query(
        &self,
        module: &str,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<serde_json::Value, trustedge_execution::QueryError> {
        let p: BTreeMap<String, String> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.rt.module(module).unwrap().query(&self.state, path, &p)
    }
}
