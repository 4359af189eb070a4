//! Node configuration (`config.toml` in the node's home directory) and key files.
//!
//! Relative paths in the configuration are relative to the home directory, so a home can be
//! moved or copied as a whole.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use trustedge_chain::{LedgerConfig, MempoolConfig};
use trustedge_consensus::ConsensusSettings;
use trustedge_types::tx::MAX_TX_BYTES;
use trustedge_types::{Address, Keypair, PublicKey};

use crate::NodeError;
use crate::gossip::GossipLimits;

/// Name of the configuration file inside the home directory.
pub const CONFIG_FILE: &str = "config.toml";
/// Largest configuration, genesis or key file read (they are small; a bigger one is a mistake).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Most upstream nodes a node may name.
pub const MAX_UPSTREAMS: usize = 16;
/// Smallest accepted `max_request_bytes`: one largest transaction in hex inside JSON.
pub const MIN_REQUEST_BYTES: usize = 2 * MAX_TX_BYTES + 1024;
/// Largest accepted `max_request_bytes`.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024 * 1024;
/// Largest accepted `checkpoint_interval` (blocks replayed at most after a crash).
pub const MAX_CHECKPOINT_INTERVAL: u64 = 4096;
/// Bounds of every `*_ms` interval in the configuration.
pub const INTERVAL_MS_RANGE: std::ops::RangeInclusive<u64> = 1..=3_600_000;

/// What a node does in the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Holds a validator key. Seals blocks while the validator set is exactly this node's key,
    /// runs BFT consensus (`[consensus]`) while the key is one of several validators, and
    /// otherwise follows `upstream`.
    Validator,
    /// An edge node (gateway, access point): follows `upstream` and forwards transactions.
    Edge,
    /// A cloud node (analytics, archive): follows `upstream` and forwards transactions.
    Cloud,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Validator => "validator",
            Role::Edge => "edge",
            Role::Cloud => "cloud",
        })
    }
}

/// Bounds of the node's mempool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MempoolLimits {
    /// Most transactions held; a full mempool answers submissions with 429.
    #[serde(default = "defaults::mempool_max_txs")]
    pub max_txs: usize,
    /// Most encoded transaction bytes held.
    #[serde(default = "defaults::mempool_max_bytes")]
    pub max_bytes: usize,
}

impl Default for MempoolLimits {
    fn default() -> Self {
        MempoolLimits {
            max_txs: defaults::mempool_max_txs(),
            max_bytes: defaults::mempool_max_bytes(),
        }
    }
}

/// The node's configuration, as stored in `config.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Display name of the node (in `/v1/status` and logs).
    pub name: String,
    /// What the node does.
    pub role: Role,
    /// Socket address the HTTP API listens on, e.g. `127.0.0.1:26657`.
    pub api_listen: String,
    /// URL under which this node's API is reached, e.g. `http://127.0.0.1:26657`.
    pub api_url: String,
    /// The ledger database, relative to the home directory unless absolute.
    #[serde(default = "defaults::db_path")]
    pub db_path: PathBuf,
    /// The genesis document (JSON), relative to the home directory unless absolute.
    #[serde(default = "defaults::genesis_path")]
    pub genesis_path: PathBuf,
    /// The node's key file (validators and edge nodes), relative to the home directory
    /// unless absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_path: Option<PathBuf>,
    /// API URLs of the nodes to follow and to forward transactions to, tried in order.
    /// Empty for the sealing validator.
    #[serde(default)]
    pub upstream: Vec<String>,
    /// How often a sealing validator seals a block while the mempool holds transactions.
    #[serde(default = "defaults::block_interval_ms")]
    pub block_interval_ms: u64,
    /// How often a sealing validator seals a block while the mempool is empty.
    #[serde(default = "defaults::empty_block_interval_ms")]
    pub empty_block_interval_ms: u64,
    /// How often a follower asks its upstream for new blocks.
    #[serde(default = "defaults::follow_interval_ms")]
    pub follow_interval_ms: u64,
    /// Timeout of one request to an upstream node.
    #[serde(default = "defaults::upstream_timeout_ms")]
    pub upstream_timeout_ms: u64,
    /// Largest HTTP request body the API accepts (larger ones get 413).
    #[serde(default = "defaults::max_request_bytes")]
    pub max_request_bytes: usize,
    /// Mempool bounds.
    #[serde(default)]
    pub mempool: MempoolLimits,
    /// Blocks per durable commit of the ledger's store; the blocks between are made durable
    /// by the block log beside it (`<db_path>.blocklog`) and replayed from it after a crash.
    /// `1` commits every block durably. See `trustedge_chain::LedgerConfig`.
    #[serde(default = "defaults::checkpoint_interval")]
    pub checkpoint_interval: u64,
    /// API URLs of the other validators: transactions admitted here are pushed to them
    /// (see [`crate::gossip`]). `init` fills it for validators; a node with gossip peers does
    /// not forward to its `upstream`, since gossip reaches every validator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gossip_peers: Vec<String>,
    /// Gossip bounds.
    #[serde(default)]
    pub gossip: GossipLimits,
    /// An edge node that keeps verified block headers only, not a replica of the ledger
    /// (see [`crate::light`]): it follows `upstream` through `/v1/headers` and checks state
    /// proofs against its headers. Edge nodes only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub light: bool,
    /// BFT consensus of a validator in a multi-validator chain: its p2p address, the other
    /// validators' addresses, round timeouts and where its WAL lives (the `[consensus]`
    /// table; see [`trustedge_consensus::ConsensusSettings`]). Unused by other nodes.
    #[serde(default, skip_serializing_if = "ConsensusSettings::is_default")]
    pub consensus: ConsensusSettings,
    /// An edge node's MQTT broker, encrypted record store and anchoring (the `[mqtt]`
    /// table; see [`crate::mqtt::MqttConfig`]). Full (not light) edge nodes with a key only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<crate::mqtt::MqttConfig>,
    /// Contact tracing (the `[tracing]` table; see
    /// [`crate::tracing_worker::TracingConfig`]): diagnosis relay and exposure matching on
    /// edge nodes with `[mqtt]`, GAEN exports on any node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<crate::tracing_worker::TracingConfig>,
    /// Aerosol alerts (the `[aerosol]` table; see [`crate::aerosol_worker::AerosolConfig`]):
    /// rooms scored from air-quality readings on edge nodes with `[mqtt]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aerosol: Option<crate::aerosol_worker::AerosolConfig>,
    /// Contact chains among confirmed cases (the `[contacts]` table; see
    /// [`crate::contacts_service::ContactsConfig`]): full nodes only, cloud nodes in
    /// practice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contacts: Option<crate::contacts_service::ContactsConfig>,
    /// Outbreak-origin inference (the `[origin]` table; see
    /// [`crate::origin_service::OriginConfig`]): full nodes only, cloud nodes in practice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<crate::origin_service::OriginConfig>,
}

mod defaults {
    use std::path::PathBuf;

    pub fn db_path() -> PathBuf {
        PathBuf::from("data/ledger.redb")
    }
    pub fn genesis_path() -> PathBuf {
        PathBuf::from("genesis.json")
    }
    pub fn block_interval_ms() -> u64 {
        200
    }
    pub fn empty_block_interval_ms() -> u64 {
        1000
    }
    pub fn follow_interval_ms() -> u64 {
        200
    }
    pub fn upstream_timeout_ms() -> u64 {
        10_000
    }
    pub fn checkpoint_interval() -> u64 {
        trustedge_chain::DEFAULT_CHECKPOINT_INTERVAL
    }
    pub fn max_request_bytes() -> usize {
        2 * 1024 * 1024
    }
    pub fn mempool_max_txs() -> usize {
        200_000
    }
    pub fn mempool_max_bytes() -> usize {
        256 * 1024 * 1024
    }
}

impl NodeConfig {
    /// A configuration with every optional field at its default.
    pub fn new(name: &str, role: Role, api_listen: &str, api_url: &str) -> NodeConfig {
        NodeConfig {
            name: name.to_string(),
            role,
            api_listen: api_listen.to_string(),
            api_url: api_url.to_string(),
            db_path: defaults::db_path(),
            genesis_path: defaults::genesis_path(),
            key_path: None,
            upstream: Vec::new(),
            block_interval_ms: defaults::block_interval_ms(),
            empty_block_interval_ms: defaults::empty_block_interval_ms(),
            follow_interval_ms: defaults::follow_interval_ms(),
            upstream_timeout_ms: defaults::upstream_timeout_ms(),
            max_request_bytes: defaults::max_request_bytes(),
            mempool: MempoolLimits::default(),
            checkpoint_interval: defaults::checkpoint_interval(),
            gossip_peers: Vec::new(),
            gossip: GossipLimits::default(),
            light: false,
            consensus: ConsensusSettings::default(),
            mqtt: None,
            tracing: None,
            aerosol: None,
            contacts: None,
            origin: None,
        }
    }

    /// Reads and validates `home/config.toml`.
    pub fn load(home: &Path) -> Result<NodeConfig, NodeError> {
        let path = home.join(CONFIG_FILE);
        let err = |message: String| NodeError::Config {
            path: path.clone(),
            message,
        };
        let text = read_small(&path).map_err(err)?;
        let config: NodeConfig = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        config.validate().map_err(err)?;
        Ok(config)
    }

    /// Validates and writes `home/config.toml` (creating `home` if needed).
    pub fn save(&self, home: &Path) -> Result<(), NodeError> {
        let path = home.join(CONFIG_FILE);
        let err = |message: String| NodeError::Config {
            path: path.clone(),
            message,
        };
        self.validate().map_err(err)?;
        let text = toml::to_string_pretty(self).map_err(|e| err(e.to_string()))?;
        std::fs::create_dir_all(home).map_err(|e| err(e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| err(e.to_string()))
    }

    /// Checks every field; the message names the field and the rule.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() || self.name.len() > 64 {
            return Err("name must be 1..=64 characters".into());
        }
        self.listen_addr()?;
        check_http_url("api_url", &self.api_url)?;
        if self.upstream.len() > MAX_UPSTREAMS {
            return Err(format!(
                "upstream lists {} nodes; at most {MAX_UPSTREAMS}",
                self.upstream.len()
            ));
        }
        for u in &self.upstream {
            check_http_url("upstream", u)?;
        }
        for (field, v) in [
            ("block_interval_ms", self.block_interval_ms),
            ("empty_block_interval_ms", self.empty_block_interval_ms),
            ("follow_interval_ms", self.follow_interval_ms),
            ("upstream_timeout_ms", self.upstream_timeout_ms),
        ] {
            if !INTERVAL_MS_RANGE.contains(&v) {
                return Err(format!(
                    "{field} is {v}; it must be in {}..={}",
                    INTERVAL_MS_RANGE.start(),
                    INTERVAL_MS_RANGE.end()
                ));
            }
        }
        if !(1..=MAX_CHECKPOINT_INTERVAL).contains(&self.checkpoint_interval) {
            return Err(format!(
                "checkpoint_interval is {}; it must be in 1..={MAX_CHECKPOINT_INTERVAL}",
                self.checkpoint_interval
            ));
        }
        if !(MIN_REQUEST_BYTES..=MAX_REQUEST_BYTES).contains(&self.max_request_bytes) {
            return Err(format!(
                "max_request_bytes is {}; it must be in {MIN_REQUEST_BYTES}..={MAX_REQUEST_BYTES}",
                self.max_request_bytes
            ));
        }
        if self.mempool.max_txs == 0 || self.mempool.max_bytes < MAX_TX_BYTES {
            return Err(format!(
                "mempool.max_txs must be positive and mempool.max_bytes at least {MAX_TX_BYTES}"
            ));
        }
        crate::gossip::check_peers(&self.gossip_peers, &self.api_url)?;
        self.gossip.validate(self.max_request_bytes)?;
        self.consensus.validate()?;
        if self.role == Role::Validator && self.key_path.is_none() {
            return Err("a validator needs key_path".into());
        }
        if self.light && self.role != Role::Edge {
            return Err(format!(
                "light = true is for edge nodes; this is a {} node",
                self.role
            ));
        }
        if let Some(m) = &self.mqtt {
            m.validate()?;
            if self.role != Role::Edge || self.light {
                return Err("[mqtt] is for full (not light) edge nodes".into());
            }
            if self.key_path.is_none() {
                return Err("an edge node with [mqtt] needs key_path (it signs anchors)".into());
            }
        }
        if let Some(t) = &self.tracing {
            t.validate()?;
        }
        if let Some(a) = &self.aerosol {
            a.validate()?;
            if a.enabled && self.mqtt.is_none() {
                return Err("[aerosol] needs [mqtt] (it reads the edge store)".into());
            }
        }
        if let Some(c) = &self.contacts {
            c.validate()?;
            if self.light {
                return Err("[contacts] needs a full replica; a light edge node has none".into());
            }
        }
        if let Some(o) = &self.origin {
            o.validate()?;
            if self.light {
                return Err("[origin] needs a full replica; a light edge node has none".into());
            }
        }
        if self.role != Role::Validator && self.upstream.is_empty() {
            return Err(format!("an {} node needs at least one upstream", self.role));
        }
        Ok(())
    }

    /// The parsed `api_listen`.
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.api_listen
            .parse()
            .map_err(|e| format!("api_listen {:?}: {e}", self.api_listen))
    }

    /// `path` resolved against `home` unless it is absolute.
    pub fn resolve(home: &Path, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            home.join(path)
        }
    }

    /// The ledger tunables this configuration implies.
    pub fn ledger_config(&self) -> LedgerConfig {
        LedgerConfig {
            mempool: MempoolConfig {
                max_txs: self.mempool.max_txs,
                max_bytes: self.mempool.max_bytes,
            },
            checkpoint_interval: self.checkpoint_interval,
            ..LedgerConfig::default()
        }
    }
}

fn check_http_url(field: &str, url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("{field} {url:?} must start with http:// (the node speaks plain HTTP)")
    })?;
    if rest.is_empty() || rest.len() > 256 || rest.chars().any(char::is_whitespace) {
        return Err(format!("{field} {url:?} is not a valid URL"));
    }
    Ok(())
}

/// Reads a small text file, refusing files over [`MAX_FILE_BYTES`].
pub(crate) fn read_small(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} bytes is over the limit of {MAX_FILE_BYTES}",
            meta.len()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

/// The JSON form of a key file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// The public key, hex.
    pub public_key: PublicKey,
    /// Its member address (`te1…`).
    pub address: Address,
    /// The secret seed, hex.
    pub secret_key: String,
}

impl KeyFile {
    /// The key file of `key`.
    pub fn of(key: &Keypair) -> KeyFile {
        KeyFile {
            public_key: key.public(),
            address: Address::of_member(&key.public()),
            secret_key: key.secret_hex(),
        }
    }

    /// The key pair, after checking that the public key and address belong to the secret.
    pub fn keypair(&self) -> Result<Keypair, String> {
        let key = Keypair::from_secret_hex(&self.secret_key).map_err(|e| e.to_string())?;
        if key.public() != self.public_key {
            return Err("public_key does not belong to secret_key".into());
        }
        if Address::of_member(&key.public()) != self.address {
            return Err("address is not derived from public_key".into());
        }
        Ok(key)
    }
}

/// Writes `key` to a new key file readable by its owner only (mode 0600). Refuses to
/// overwrite an existing file: a key lost that way cannot be recovered.
pub fn save_key(path: &Path, key: &Keypair) -> Result<(), NodeError> {
    use std::io::Write;
    let err = |message: String| NodeError::Key {
        path: path.to_path_buf(),
        message,
    };
    let json = serde_json::to_string_pretty(&KeyFile::of(key)).map_err(|e| err(e.to_string()))?;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            err("exists already; refusing to overwrite a key".into())
        } else {
            err(e.to_string())
        }
    })?;
    file.write_all(json.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(|e| err(e.to_string()))
}

/// Reads a key file written by [`save_key`].
pub fn load_key(path: &Path) -> Result<Keypair, NodeError> {
    let err = |message: String| NodeError::Key {
        path: path.to_path_buf(),
        message,
    };
    let text = read_small(path).map_err(err)?;
    let file: KeyFile = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    file.keypair().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NodeConfig {
        let mut c = NodeConfig::new(
            "v1",
            Role::Validator,
            "127.0.0.1:26657",
            "http://127.0.0.1:26657",
        );
        c.key_path = Some("key.json".into());
        c
    }

    #[test]
    fn save_load_round_trip_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let c = sample();
        c.save(dir.path()).unwrap();
        assert_eq!(NodeConfig::load(dir.path()).unwrap(), c);

        let minimal = "name = \"e\"\nrole = \"edge\"\napi_listen = \"127.0.0.1:1\"\n\
                       api_url = \"http://127.0.0.1:1\"\nupstream = [\"http://127.0.0.1:2\"]\n";
        std::fs::write(dir.path().join(CONFIG_FILE), minimal).unwrap();
        let e = NodeConfig::load(dir.path()).unwrap();
        assert_eq!(e.block_interval_ms, 200);
        assert_eq!(e.empty_block_interval_ms, 1000);
        assert_eq!(e.max_request_bytes, 2 * 1024 * 1024);
        assert_eq!(e.db_path, PathBuf::from("data/ledger.redb"));
    }

    #[test]
    fn invalid_configs_name_the_field() {
        let mut c = sample();
        c.api_listen = "nowhere".into();
        assert!(c.validate().unwrap_err().contains("api_listen"));
        let mut c = sample();
        c.upstream = vec!["https://x".into()];
        assert!(c.validate().unwrap_err().contains("http://"));
        let mut c = sample();
        c.block_interval_ms = 0;
        assert!(c.validate().unwrap_err().contains("block_interval_ms"));
        for bad in [0, MAX_CHECKPOINT_INTERVAL + 1] {
            let mut c = sample();
            c.checkpoint_interval = bad;
            assert!(c.validate().unwrap_err().contains("checkpoint_interval"));
        }
        let mut c = sample();
        c.checkpoint_interval = 1;
        assert_eq!(c.ledger_config().checkpoint_interval, 1);
        let mut c = sample();
        c.key_path = None;
        assert!(c.validate().unwrap_err().contains("key_path"));
        let mut c = sample();
        c.role = Role::Cloud;
        assert!(c.validate().unwrap_err().contains("upstream"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "name = \"x\"\nbogus = 1\n").unwrap();
        assert!(NodeConfig::load(dir.path()).is_err());
    }

    #[test]
    fn relative_paths_resolve_against_home() {
        let home = Path::new("/srv/node");
        assert_eq!(
            NodeConfig::resolve(home, Path::new("data/x")),
            PathBuf::from("/srv/node/data/x")
        );
        assert_eq!(
            NodeConfig::resolve(home, Path::new("/abs")),
            PathBuf::from("/abs")
        );
    }

    #[test]
    fn key_file_round_trip_mode_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/k.json");
        let key = Keypair::from_seed([4; 32]);
        save_key(&path, &key).unwrap();
        assert_eq!(load_key(&path).unwrap().public(), key.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(save_key(&path, &key).is_err(), "must not overwrite");
        let text = std::fs::read_to_string(&path).unwrap();
        let other = Keypair::from_seed([5; 32]).public().to_hex();
        let tampered = text.replace(&key.public().to_hex(), &other);
        std::fs::write(&path, tampered).unwrap();
        assert!(load_key(&path).is_err());
    }
}
