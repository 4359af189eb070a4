//! A network of in-process validators for the consensus tests.
//!
//! Each validator has its own home directory (ledger store, WAL, proposal store) and its own
//! Malachite engine listening on a loopback port. Validators never dial each other directly:
//! validator `i` reaches validator `j` through a TCP relay `i→j` on loopback, so a test can
//! cut any link (closing its connections and refusing new ones) and heal it again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use trustedge_chain::{Ledger, LedgerConfig};
use trustedge_consensus::{ConsensusHandle, ConsensusSettings, EngineOptions, StatsSnapshot};
use trustedge_contracts::{DevicesCall, Genesis, GenesisMember, GenesisOrg, GovernancePolicy};
use trustedge_execution::{DeviceClass, OrgKind, Role};
use trustedge_types::{Address, Hash, Keypair, Payload, SignedTx, TxBody, Validator};

pub const CHAIN: &str = "trustedge-consensus-it";

/// Every test runs alone: a network of validators wants both cores.
pub fn serial() -> &'static tokio::sync::Mutex<()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

pub fn validator_key(i: usize) -> Keypair {
    Keypair::from_seed([10 + i as u8; 32])
}

pub fn admin_key() -> Keypair {
    Keypair::from_seed([99; 32])
}

/// Admin of the genesis health authority (validator-set governance).
pub fn ha_admin_key() -> Keypair {
    Keypair::from_seed([98; 32])
}

pub fn genesis(n: usize) -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 1_700_000_000_000,
        validators: (0..n)
            .map(|i| {
                let k = validator_key(i);
                Validator {
                    name: format!("validator-{i}"),
                    address: Address::of_member(&k.public()),
                    public_key: k.public(),
                    power: 1,
                }
            })
            .collect(),
        organisations: vec![
            GenesisOrg {
                id: "health-authority-1".into(),
                name: "health-authority-1".into(),
                kind: OrgKind::HealthAuthority,
                members: vec![GenesisMember {
                    public_key: ha_admin_key().public(),
                    role: Role::Admin,
                }],
            },
            GenesisOrg {
                id: "hospital-1".into(),
                name: "hospital-1".into(),
                kind: OrgKind::Hospital,
                members: vec![GenesisMember {
                    public_key: admin_key().public(),
                    role: Role::Admin,
                }],
            },
        ],
        policy: GovernancePolicy {
            admission_approvals: 1,
        },
    }
}

/// Device registrations by the hospital admin (nonces `from..from+count`).
pub fn device_txs(from: u64, count: u64) -> Vec<SignedTx> {
    let admin = admin_key();
    (from..from + count)
        .map(|nonce| {
            let device = Keypair::from_seed(Hash::sha256(&nonce.to_le_bytes()).0);
            TxBody {
                chain_id: CHAIN.into(),
                signer: admin.public(),
                nonce,
                expiry_height: 10_000,
                payload: Payload::new(
                    "devices",
                    &DevicesCall::Register {
                        key: device.public(),
                        class: DeviceClass::Wearable,
                        model: "band".into(),
                        attributes: vec![],
                    },
                ),
            }
            .sign(&admin)
        })
        .collect()
}

/// Short timeouts: a test network on loopback answers in milliseconds.
pub fn settings(listen: u16, peers: Vec<SocketAddr>) -> ConsensusSettings {
    ConsensusSettings {
        p2p_listen: format!("/ip4/127.0.0.1/tcp/{listen}"),
        persistent_peers: peers
            .iter()
            .map(|a| format!("/ip4/127.0.0.1/tcp/{}", a.port()))
            .collect(),
        timeout_propose_ms: 1000,
        timeout_prevote_ms: 500,
        timeout_precommit_ms: 500,
        timeout_delta_ms: 250,
        timeout_max_ms: 3000,
        target_block_time_ms: 100,
        sync_status_interval_ms: 500,
        sync_request_timeout_ms: 2000,
        ..ConsensusSettings::default()
    }
}

/// A free loopback port for a validator's p2p listener, which Malachite binds later itself.
///
/// Taken below Linux's ephemeral range (32768–60999), so that a relay or any other socket
/// bound to port 0 between now and the validator's start can never be handed the same port
/// (that race once failed a test with "address already in use"). A process-wide counter keeps
/// the tests of this binary apart; the process id spreads concurrent test processes.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let spread = std::process::id().wrapping_mul(97);
    for _ in 0..SPAN {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + spread.wrapping_add(offset) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + SPAN);
}

// ---------------------------------------------------------------- relays

/// A cuttable TCP relay from a local port to a target.
pub struct Relay {
    pub addr: SocketAddr,
    cut: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let (cut, cut_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if *cut_rx.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut cut_rx = cut_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Relay { addr, cut, task }
    }

    pub fn set_cut(&self, cut: bool) {
        let _ = self.cut.send(cut);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------- nodes

pub struct Node {
    pub home: PathBuf,
    pub ledger: Option<Arc<Ledger>>,
    pub handle: Option<ConsensusHandle>,
}

impl Node {
    pub fn ledger(&self) -> &Arc<Ledger> {
        self.ledger.as_ref().expect("node is running")
    }

    pub fn is_running(&self) -> bool {
        self.handle.is_some()
    }
}

pub struct Cluster {
    _dir: TempDir,
    pub n: usize,
    /// Validators in the genesis (the first `genesis_validators` nodes).
    pub genesis_validators: usize,
    pub ports: Vec<u16>,
    /// `relays[(i, j)]`: how `i` reaches `j`.
    pub relays: BTreeMap<(usize, usize), Relay>,
    pub nodes: Vec<Node>,
    pub options: Vec<EngineOptions>,
}

pub fn open_ledger(home: &Path, genesis_validators: usize) -> Arc<Ledger> {
    std::fs::create_dir_all(home.join("data")).expect("mkdir");
    Arc::new(
        Ledger::open(
            &home.join("data/ledger.redb"),
            genesis(genesis_validators),
            LedgerConfig::default(),
        )
        .expect("open ledger"),
    )
}

impl Cluster {
    /// `n` validators, none started.
    pub async fn new(n: usize) -> Cluster {
        Cluster::with_genesis_validators(n, n).await
    }

    /// `n` nodes with validator keys, of which the first `genesis_validators` are in the
    /// genesis validator set, none started.
    pub async fn with_genesis_validators(n: usize, genesis_validators: usize) -> Cluster {
        init_tracing();
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut relays = BTreeMap::new();
        for i in 0..n {
            for (j, port) in ports.iter().enumerate() {
                if i != j {
                    let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
                    relays.insert((i, j), Relay::start(target).await);
                }
            }
        }
        let nodes = (0..n)
            .map(|i| Node {
                home: dir.path().join(format!("validator-{i}")),
                ledger: None,
                handle: None,
            })
            .collect();
        Cluster {
            _dir: dir,
            n,
            genesis_validators,
            ports,
            relays,
            nodes,
            options: (0..n).map(|_| EngineOptions::default()).collect(),
        }
    }

    pub fn settings_of(&self, i: usize) -> ConsensusSettings {
        let peers = (0..self.n)
            .filter(|j| *j != i)
            .map(|j| self.relays[&(i, j)].addr)
            .collect();
        settings(self.ports[i], peers)
    }

    /// Starts validator `i` from whatever its home holds.
    pub async fn start(&mut self, i: usize) {
        assert!(!self.nodes[i].is_running(), "validator {i} runs already");
        let ledger = open_ledger(&self.nodes[i].home, self.genesis_validators);
        let handle = trustedge_consensus::start(
            ledger.clone(),
            validator_key(i),
            &format!("validator-{i}"),
            &self.nodes[i].home,
            &self.settings_of(i),
            self.options[i].clone(),
        )
        .await
        .expect("start consensus");
        self.nodes[i].ledger = Some(ledger);
        self.nodes[i].handle = Some(handle);
    }

    pub async fn start_all(&mut self) {
        for i in 0..self.n {
            self.start(i).await;
        }
    }

    /// Stops validator `i` (engine and application) and closes its ledger.
    pub async fn stop(&mut self, i: usize) {
        let handle = self.nodes[i].handle.take().expect("running");
        handle.shutdown().await.expect("shutdown");
        let ledger = self.nodes[i].ledger.take().expect("ledger");
        // The ledger's database is closed when the last reference goes.
        assert_eq!(Arc::strong_count(&ledger), 1, "ledger still referenced");
        drop(ledger);
    }

    pub async fn stop_all(&mut self) {
        for i in 0..self.n {
            if self.nodes[i].is_running() {
                self.stop(i).await;
            }
        }
    }

    /// Cuts (or heals) every link between a validator of `a` and one of `b`.
    pub fn partition(&self, a: &[usize], b: &[usize], cut: bool) {
        for &i in a {
            for &j in b {
                self.relays[&(i, j)].set_cut(cut);
                self.relays[&(j, i)].set_cut(cut);
            }
        }
    }

    pub fn heal_all(&self) {
        for r in self.relays.values() {
            r.set_cut(false);
        }
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.n)
            .filter(|i| self.nodes[*i].is_running())
            .collect()
    }

    pub fn height(&self, i: usize) -> u64 {
        self.nodes[i].ledger().height().expect("height")
    }

    pub fn heights(&self, of: &[usize]) -> Vec<u64> {
        of.iter().map(|i| self.height(*i)).collect()
    }

    /// What validator `i`'s consensus application counted since it (re)started.
    pub fn stats(&self, i: usize) -> StatsSnapshot {
        self.nodes[i]
            .handle
            .as_ref()
            .expect("running")
            .stats()
            .snapshot()
    }

    pub fn max_height(&self, of: &[usize]) -> u64 {
        self.heights(of).into_iter().max().unwrap_or(0)
    }

    /// Offers transactions to every running validator's mempool (whoever proposes next
    /// includes them).
    pub fn submit_everywhere(&self, txs: &[SignedTx]) {
        for i in self.running() {
            let _ = self.nodes[i].ledger().submit_batch(txs.to_vec());
        }
    }

    /// Waits until every validator in `of` has committed `height`.
    pub async fn wait_for_height(&self, of: &[usize], height: u64, within: Duration) {
        let started = Instant::now();
        loop {
            let hs = self.heights(of);
            if hs.iter().all(|h| *h >= height) {
                return;
            }
            for i in of {
                let h = self.nodes[*i].handle.as_ref().expect("running");
                assert!(!h.is_finished(), "validator {i}'s consensus stopped");
            }
            assert!(
                started.elapsed() < within,
                "validators {of:?} at heights {hs:?}, not all at {height} after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Checks that the validators in `of` hold the same blocks and state roots at every height
    /// they all have, and that every certificate verifies against the validator set; returns
    /// the common height.
    pub fn assert_agree(&self, of: &[usize]) -> u64 {
        let common = self.heights(of).into_iter().min().unwrap_or(0);
        for h in 1..=common {
            let set = self.nodes[of[0]].ledger().validator_set_at(h).expect("set");
            let reference = {
                let s = self.nodes[of[0]].ledger().store();
                (
                    s.header(h).unwrap().expect("header"),
                    s.state_root(h).unwrap(),
                )
            };
            for &i in of {
                let s = self.nodes[i].ledger().store();
                let header = s.header(h).unwrap().expect("header");
                assert_eq!(
                    header.hash(),
                    reference.0.hash(),
                    "validators {} and {i} differ at height {h}",
                    of[0]
                );
                assert_eq!(s.state_root(h).unwrap(), reference.1, "state root at {h}");
                let cert = s.certificate(h).unwrap().expect("certificate");
                cert.verify(&header, &set)
                    .unwrap_or_else(|e| panic!("certificate of {h} at validator {i}: {e}"));
            }
        }
        common
    }
}
