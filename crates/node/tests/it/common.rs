//! Test harness: a small genesis, nodes in this process on loopback ports, transactions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use borsh::BorshSerialize;
use tempfile::TempDir;
use trustedge_chain::{TxInclusionProof, TxStatus};
use trustedge_contracts::genesis::{Genesis, GenesisMember, GenesisOrg, GovernancePolicy};
use trustedge_contracts::{AnchorCall, DevicesCall};
use trustedge_execution::{DeviceClass, OrgKind, Role as MemberRole};
use trustedge_node::{
    Client, Clock, NodeConfig, NodeOptions, Role, RunningNode, save_key, start_node,
};
use trustedge_types::{Address, Hash, Keypair, Payload, SignedTx, TxBody, Validator, ValidatorSet};

pub const CHAIN_ID: &str = "trustedge-test";
pub const GENESIS_TIME_MS: u64 = 1_700_000_000_000;
/// How long a test waits for something to happen on a node.
pub const WAIT: Duration = Duration::from_secs(20);

/// The keys of the test network.
pub struct Keys {
    /// Admin of the health authority `ha`.
    pub ha_admin: Keypair,
    /// Admin of the edge operator `edge-op`.
    pub edge_admin: Keypair,
    /// Operator of `edge-op`.
    pub operator: Keypair,
    /// The only validator.
    pub validator: Keypair,
}

pub fn keys() -> Keys {
    Keys {
        ha_admin: Keypair::from_seed([11; 32]),
        edge_admin: Keypair::from_seed([12; 32]),
        operator: Keypair::from_seed([13; 32]),
        validator: Keypair::from_seed([14; 32]),
    }
}

pub fn genesis_with(validators: &[&Keypair]) -> Genesis {
    let k = keys();
    Genesis {
        chain_id: CHAIN_ID.into(),
        genesis_time_ms: GENESIS_TIME_MS,
        validators: validators
            .iter()
            .enumerate()
            .map(|(i, v)| Validator {
                name: format!("validator-{i}"),
                address: Address::of_member(&v.public()),
                public_key: v.public(),
                power: 10,
            })
            .collect(),
        organisations: vec![
            GenesisOrg {
                id: "ha".into(),
                name: "Health Authority".into(),
                kind: OrgKind::HealthAuthority,
                members: vec![GenesisMember {
                    public_key: k.ha_admin.public(),
                    role: MemberRole::Admin,
                }],
            },
            GenesisOrg {
                id: "edge-op".into(),
                name: "Edge Operator".into(),
                kind: OrgKind::EdgeOperator,
                members: vec![
                    GenesisMember {
                        public_key: k.edge_admin.public(),
                        role: MemberRole::Admin,
                    },
                    GenesisMember {
                        public_key: k.operator.public(),
                        role: MemberRole::Operator,
                    },
                ],
            },
        ],
        policy: GovernancePolicy {
            admission_approvals: 1,
        },
    }
}

pub fn genesis() -> Genesis {
    genesis_with(&[&keys().validator])
}

pub fn validator_set() -> ValidatorSet {
    genesis().validator_set().unwrap()
}

/// A node running in this process, with its home directory.
pub struct TestNode {
    pub node: RunningNode,
    pub client: Client,
    pub home: TempDir,
}

impl TestNode {
    pub fn url(&self) -> String {
        self.node.url()
    }

    pub async fn stop(self) {
        self.node.shutdown().await.unwrap();
    }
}

/// Writes a home directory (genesis, key, config) and lets `tweak` change the config.
pub fn write_home(
    genesis: &Genesis,
    role: Role,
    key: Option<&Keypair>,
    upstream: &[String],
    tweak: impl FnOnce(&mut NodeConfig),
) -> TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("genesis.json"), genesis.to_json()).unwrap();
    let mut config = NodeConfig::new(
        &format!("{role}-node"),
        role,
        "127.0.0.1:0",
        "http://127.0.0.1:0",
    );
    if let Some(k) = key {
        save_key(&home.path().join("key.json"), k).unwrap();
        config.key_path = Some("key.json".into());
    }
    config.upstream = upstream.to_vec();
    // Fast blocks keep the tests short.
    config.block_interval_ms = 20;
    config.empty_block_interval_ms = 300;
    config.follow_interval_ms = 20;
    config.upstream_timeout_ms = 5_000;
    tweak(&mut config);
    config.save(home.path()).unwrap();
    home
}

pub async fn start_home(home: TempDir, clock: Option<Arc<dyn Clock>>) -> TestNode {
    let mut options = NodeOptions::default();
    if let Some(c) = clock {
        options.clock = c;
    }
    let node = start_node(home.path(), options).await.unwrap();
    let client = Client::new(node.url());
    TestNode { node, client, home }
}

/// The sealing validator of [`genesis`].
pub async fn sealer() -> TestNode {
    sealer_with(|_| {}).await
}

pub async fn sealer_with(tweak: impl FnOnce(&mut NodeConfig)) -> TestNode {
    let home = write_home(
        &genesis(),
        Role::Validator,
        Some(&keys().validator),
        &[],
        tweak,
    );
    start_home(home, None).await
}

/// An edge node following `upstream`.
pub async fn follower(upstream: &str) -> TestNode {
    let home = write_home(
        &genesis(),
        Role::Edge,
        Some(&Keypair::from_seed([40; 32])),
        &[upstream.to_string()],
        |_| {},
    );
    start_home(home, None).await
}

/// A transaction of `key` with `nonce`, calling `module`.
pub fn tx<C: BorshSerialize>(key: &Keypair, nonce: u64, module: &str, call: &C) -> SignedTx {
    tx_on(CHAIN_ID, key, nonce, module, call)
}

pub fn tx_on<C: BorshSerialize>(
    chain_id: &str,
    key: &Keypair,
    nonce: u64,
    module: &str,
    call: &C,
) -> SignedTx {
    TxBody {
        chain_id: chain_id.into(),
        signer: key.public(),
        nonce,
        expiry_height: 1_000_000,
        payload: Payload::new(module, call),
    }
    .sign(key)
}

/// Registers the device with key seed `seed`, signed by `signer`.
pub fn register_device(signer: &Keypair, nonce: u64, seed: u8) -> (SignedTx, Keypair) {
    let device = Keypair::from_seed([seed; 32]);
    let call = DevicesCall::Register {
        key: device.public(),
        class: DeviceClass::Wearable,
        model: "TE-Band 2".into(),
        attributes: vec![],
    };
    (tx(signer, nonce, "devices", &call), device)
}

/// Anchors a batch whose root is derived from `n`.
pub fn anchor_batch(signer: &Keypair, nonce: u64, n: u8) -> SignedTx {
    let call = AnchorCall::AnchorBatch {
        record_type: "contact".into(),
        merkle_root: Hash::sha256(&[n]),
        count: 3,
        from_ms: GENESIS_TIME_MS + u64::from(n) * 1000,
        to_ms: GENESIS_TIME_MS + u64::from(n) * 1000 + 500,
    };
    tx(signer, nonce, "anchor", &call)
}

/// Waits until the transaction is committed and returns its inclusion proof.
pub async fn committed(client: &Client, hash: &Hash) -> TxInclusionProof {
    let deadline = Instant::now() + WAIT;
    loop {
        match client.tx_status(hash).await.unwrap() {
            TxStatus::Committed(p) => return *p,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "transaction {hash} not committed in time: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Waits until the node's height is at least `height`.
pub async fn reach_height(client: &Client, height: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = client.status().await.unwrap();
        if s.height >= height {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} stuck at height {} (wanted {height}): {:?}",
            client.url(),
            s.height,
            s.sync
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// POSTs `body` to `path` with `content_type`; returns status and JSON body.
pub async fn post_raw(
    url: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{path} answered {status} with non-JSON {text:?}: {e}"));
    (status, json)
}

/// GETs `path`; returns status and JSON body.
pub async fn get_raw(url: &str, path: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::get(format!("{url}{path}")).await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{path} answered {status} with non-JSON {text:?}: {e}"));
    (status, json)
}

/// Asserts that an API call failed with `status` and `code`.
pub fn assert_refused<T: std::fmt::Debug>(
    r: Result<T, trustedge_node::ClientError>,
    status: u16,
    code: &str,
) {
    match r {
        Err(trustedge_node::ClientError::Api {
            status: s, code: c, ..
        }) if s == status && c == code => {}
        other => panic!("expected {status} {code}, got {other:?}"),
    }
}

/// POSTs only the head of a request that declares a `content_length` body, then reads the
/// answer. A server that refuses an oversized body from its declared length answers before
/// the body is sent; sending the body too would race the server closing the connection
/// (a client still writing gets a broken pipe instead of the answer).
pub async fn post_declared_length(
    url: &str,
    path: &str,
    content_type: &str,
    content_length: usize,
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {content_length}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("no answer to a request head declaring an oversized body")
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    // The body may be chunked: take the JSON object inside.
    let json = body
        .find('{')
        .and_then(|a| body.rfind('}').map(|b| &body[a..=b]))
        .unwrap_or_else(|| panic!("{path} answered {status} without JSON: {text:?}"));
    (status, serde_json::from_str(json).unwrap())
}

/// A free loopback port for a node's fixed listen address (below Linux's ephemeral range;
/// see `trustedge_node::ports`).
pub fn free_port() -> u16 {
    trustedge_node::ports::free_port().unwrap()
}
