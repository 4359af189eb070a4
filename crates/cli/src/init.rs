//! `trustedge init`: a genesis, the founding organisations' admin keys and one home per node.
//!
//! Layout of `--home DIR`:
//! ```text
//! DIR/genesis.json
//! DIR/keys/<org>-admin.json          one admin key per founding organisation
//! DIR/validator-0/{config.toml, key.json, genesis.json}
//! DIR/edge-0/…   DIR/cloud-0/…
//! ```
//!
//! With `--tracing-edges`, each edge also gets `[mqtt]` (a broker on the port after the
//! API and p2p ports) and `[tracing]` signing with its own `tracing-key.json` (an Operator
//! of the edge operator, so relays and notices never share nonces with the anchoring
//! loop, which signs with `key.json`), and the laboratory gets a Clinician whose key,
//! `DIR/keys/laboratory-1-clinician.json`, issues verification certificates.
//!
//! With `--aerosol-edges`, each edge also gets `[mqtt]` and `[aerosol]` signing with its own
//! `aerosol-key.json` (another Operator of the edge operator): it pushes committed aerosol
//! alerts to devices and relays confirmed cases' presences. The table has no rooms: whoever
//! installs a room's air-quality device and beacon adds it (`AerosolRoom`: volume, venue
//! secret, device addresses).
//!
//! Cloud nodes get `[contacts]`: they index contact chains among confirmed cases from the
//! ledger and serve `GET /v1/contacts/chains` (`trustedge tracing chains`); and `[origin]`:
//! they rank outbreak-origin candidates from the ledger (`GET /v1/origin`, `trustedge origin
//! --node`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use trustedge_contracts::{Genesis, GenesisMember, GenesisOrg, GovernancePolicy};
use trustedge_execution::{OrgKind, Role};
use trustedge_types::{Address, Keypair, Validator};

use trustedge_node::config::{NodeConfig, Role as NodeRole};

use crate::keys;

/// Most health-authority organisations `init` creates.
const MAX_HEALTH_AUTHORITIES: usize = 3;
/// Most nodes of one kind `init` lays out; a local network, not a deployment tool.
const MAX_NODES_PER_KIND: usize = 64;

/// The founding organisations other than the health authorities: id, public name, kind.
pub const FOUNDING_ORGS: &[(&str, &str, OrgKind)] = &[
    ("hospital-1", "City General Hospital", OrgKind::Hospital),
    (
        "laboratory-1",
        "Central Diagnostic Laboratory",
        OrgKind::Laboratory,
    ),
    (
        "manufacturer-1",
        "MedDevice Manufacturing",
        OrgKind::Manufacturer,
    ),
    (
        "distributor-1",
        "Cold Chain Distribution",
        OrgKind::Distributor,
    ),
    ("clinic-1", "Riverside Clinic", OrgKind::Clinic),
    (
        "edge-operator-1",
        "Metro Edge Networks",
        OrgKind::EdgeOperator,
    ),
];

/// Id of the organisation whose operators the edge nodes' keys are.
pub const EDGE_OPERATOR_ORG: &str = "edge-operator-1";
/// Id of the laboratory whose clinician issues verification certificates.
pub const LABORATORY_ORG: &str = "laboratory-1";
/// File, in `DIR/keys`, of the laboratory clinician's key (with `--tracing-edges`).
pub const LAB_CLINICIAN_KEY_FILE: &str = "laboratory-1-clinician.json";
/// File, in an edge's home, of its tracing key (with `--tracing-edges`).
pub const TRACING_KEY_FILE: &str = "tracing-key.json";
/// File, in an edge's home, of its aerosol key (with `--aerosol-edges`).
pub const AEROSOL_KEY_FILE: &str = "aerosol-key.json";

/// Arguments of `trustedge init`.
#[derive(Args, Debug, Clone)]
pub struct InitArgs {
    /// Number of validator nodes (1 seals blocks alone; more run BFT consensus together).
    #[arg(long, default_value_t = 1)]
    pub validators: usize,
    /// Number of edge nodes.
    #[arg(long, default_value_t = 0)]
    pub edges: usize,
    /// Number of cloud nodes.
    #[arg(long, default_value_t = 0)]
    pub clouds: usize,
    /// Directory to create the network in.
    #[arg(long)]
    pub home: PathBuf,
    /// Chain id.
    #[arg(long, default_value = "trustedge-local")]
    pub chain_id: String,
    /// First API port; nodes get consecutive ports from here, then the validators of a
    /// multi-validator network get their p2p (consensus) ports after the API ports.
    #[arg(long, default_value_t = 26650)]
    pub base_port: u16,
    /// Number of health-authority organisations (default: one per validator, at most 3).
    #[arg(long)]
    pub health_authorities: Option<usize>,
    /// Make the edge nodes light (`light = true`): they keep verified headers only and check
    /// proofs from their upstream, instead of being full replicas. Off by default because
    /// the demo drives load through the edge node's full API (nonces, transaction status,
    /// blocks), which a light node does not serve.
    #[arg(long)]
    pub light_edges: bool,
    /// Make the edge nodes trace contacts: an MQTT broker (`[mqtt]`, on the ports after
    /// the API and p2p ports) and `[tracing]` with its own key, an Operator of the edge
    /// operator; and give the laboratory a Clinician key that issues certificates.
    #[arg(long)]
    pub tracing_edges: bool,
    /// Make the edge nodes deliver aerosol alerts: an MQTT broker (`[mqtt]`, as for
    /// `--tracing-edges`) and `[aerosol]` (no rooms yet) with its own key, an Operator of
    /// the edge operator.
    #[arg(long)]
    pub aerosol_edges: bool,
}

/// One node of the layout.
#[derive(Clone, Debug)]
pub struct NodeHome {
    /// `validator-0`, `edge-0`, `cloud-0`, …
    pub name: String,
    /// Its role.
    pub role: NodeRole,
    /// Its home directory.
    pub home: PathBuf,
    /// Its API URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// Its key.
    pub key: Keypair,
    /// Its `[tracing]` key (tracing edges only).
    pub tracing_key: Option<Keypair>,
    /// Its `[aerosol]` key (aerosol edges only).
    pub aerosol_key: Option<Keypair>,
}

/// What `init` created.
#[derive(Clone, Debug)]
pub struct Network {
    /// The genesis written to `home/genesis.json`.
    pub genesis: Genesis,
    /// The nodes, validators first.
    pub nodes: Vec<NodeHome>,
    /// Admin key of each founding organisation, by organisation id.
    pub org_admins: Vec<(String, Keypair)>,
}

impl Network {
    /// The admin key of an organisation.
    pub fn admin(&self, org: &str) -> Option<&Keypair> {
        self.org_admins
            .iter()
            .find(|(id, _)| id == org)
            .map(|(_, k)| k)
    }

    /// The health-authority organisation ids.
    pub fn health_authorities(&self) -> Vec<String> {
        self.genesis
            .organisations
            .iter()
            .filter(|o| o.kind == OrgKind::HealthAuthority)
            .map(|o| o.id.clone())
            .collect()
    }
}

/// Marker file `init` leaves in a home, so that `demo` only ever deletes what it created.
pub const MARKER_FILE: &str = ".trustedge-network";

impl Network {
    /// Reads back a network `init` created in `home`.
    pub fn load(home: &Path) -> anyhow::Result<Network> {
        let genesis = crate::inspect::read_genesis(&home.join("genesis.json"))?;
        let mut org_admins = Vec::new();
        for org in &genesis.organisations {
            let path = home.join("keys").join(format!("{}-admin.json", org.id));
            if path.exists() {
                org_admins.push((org.id.clone(), keys::load(&path)?));
            }
        }
        let mut nodes = Vec::new();
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(home)
            .with_context(|| format!("cannot list {}", home.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join(trustedge_node::config::CONFIG_FILE).is_file())
            .collect();
        dirs.sort();
        for dir in dirs {
            let config = NodeConfig::load(&dir)?;
            let key_path = config
                .key_path
                .as_ref()
                .map(|p| NodeConfig::resolve(&dir, p))
                .unwrap_or_else(|| dir.join("key.json"));
            let tracing_key = match config.tracing.as_ref().and_then(|t| t.key_path.as_ref()) {
                Some(p) => Some(keys::load(&NodeConfig::resolve(&dir, p))?),
                None => None,
            };
            let aerosol_key = match config.aerosol.as_ref().and_then(|a| a.key_path.as_ref()) {
                Some(p) => Some(keys::load(&NodeConfig::resolve(&dir, p))?),
                None => None,
            };
            nodes.push(NodeHome {
                name: config.name.clone(),
                role: config.role,
                home: dir,
                url: config.api_url.clone(),
                key: keys::load(&key_path)?,
                tracing_key,
                aerosol_key,
            });
        }
        // Validators first, then edges, then clouds, as `create` orders them.
        nodes.sort_by_key(|n| match n.role {
            NodeRole::Validator => 0,
            NodeRole::Edge => 1,
            NodeRole::Cloud => 2,
        });
        Ok(Network {
            genesis,
            nodes,
            org_admins,
        })
    }
}

/// `trustedge init`: creates the network and prints a summary.
pub fn run(args: &InitArgs) -> anyhow::Result<Network> {
    let net = create(args)?;
    print_summary(args, &net);
    Ok(net)
}

fn print_summary(args: &InitArgs, net: &Network) {
    let g = &net.genesis;
    println!(
        "initialised chain {:?} in {}",
        g.chain_id,
        args.home.display()
    );
    println!("  genesis: {}", args.home.join("genesis.json").display());
    println!(
        "  organisations: {} (admitting one needs {} of {} health-authority approvals)",
        g.organisations.len(),
        g.policy.admission_approvals,
        net.health_authorities().len()
    );
    for org in &g.organisations {
        println!(
            "    {:<20} {:<16} admin key {}",
            org.id,
            format!("{:?}", org.kind),
            args.home
                .join("keys")
                .join(format!("{}-admin.json", org.id))
                .display()
        );
    }
    println!("  nodes:");
    for n in &net.nodes {
        println!(
            "    {:<12} {:<9} {:<24} {}",
            n.name,
            n.role.to_string(),
            n.url,
            n.home.display()
        );
    }
    if args.tracing_edges {
        println!(
            "  tracing: edges run [mqtt] and [tracing] (own tracing-key.json); lab clinician key {}",
            args.home
                .join("keys")
                .join(LAB_CLINICIAN_KEY_FILE)
                .display()
        );
    }
    if args.aerosol_edges {
        println!(
            "  aerosol: edges run [mqtt] and [aerosol] (own {AEROSOL_KEY_FILE}; add rooms to [aerosol])"
        );
    }
    if let Some(first) = net.nodes.first() {
        println!(
            "start a node with: trustedge node --home {}",
            first.home.display()
        );
    }
}

/// Creates the network without printing.
pub fn create(args: &InitArgs) -> anyhow::Result<Network> {
    if args.validators == 0 {
        anyhow::bail!("--validators must be at least 1");
    }
    for (what, n) in [
        ("validators", args.validators),
        ("edges", args.edges),
        ("clouds", args.clouds),
    ] {
        if n > MAX_NODES_PER_KIND {
            anyhow::bail!("--{what} {n} is more than the {MAX_NODES_PER_KIND} init lays out");
        }
    }
    if args.tracing_edges && args.light_edges {
        anyhow::bail!(
            "--tracing-edges needs full edges (an MQTT edge keeps a replica): drop --light-edges"
        );
    }
    if args.aerosol_edges && args.light_edges {
        anyhow::bail!(
            "--aerosol-edges needs full edges (an MQTT edge keeps a replica): drop --light-edges"
        );
    }
    let n_ha = args
        .health_authorities
        .unwrap_or(args.validators.min(MAX_HEALTH_AUTHORITIES));
    if n_ha == 0 || n_ha > MAX_HEALTH_AUTHORITIES * 3 {
        anyhow::bail!(
            "--health-authorities must be 1..={}",
            MAX_HEALTH_AUTHORITIES * 3
        );
    }
    let total_nodes = args.validators + args.edges + args.clouds;
    // Validators of a multi-validator network run consensus: one p2p port each.
    let p2p_ports = if args.validators > 1 {
        args.validators
    } else {
        0
    };
    let mqtt_edges = args.tracing_edges || args.aerosol_edges;
    let mqtt_ports = if mqtt_edges { args.edges } else { 0 };
    let total_ports = total_nodes + p2p_ports + mqtt_ports;
    let last_port = u32::from(args.base_port) + total_ports as u32 - 1;
    if args.base_port == 0 || last_port > u32::from(u16::MAX) {
        anyhow::bail!(
            "--base-port {} leaves no room for {total_ports} consecutive ports",
            args.base_port
        );
    }
    let genesis_path = args.home.join("genesis.json");
    if genesis_path.exists() {
        anyhow::bail!(
            "{} exists already; refusing to overwrite a network (choose another --home)",
            genesis_path.display()
        );
    }

    // Keys first: the genesis names them.
    let mut nodes = Vec::with_capacity(total_nodes);
    let kinds = [
        (NodeRole::Validator, "validator", args.validators),
        (NodeRole::Edge, "edge", args.edges),
        (NodeRole::Cloud, "cloud", args.clouds),
    ];
    let mut port = args.base_port;
    for (role, prefix, count) in kinds {
        for i in 0..count {
            let name = format!("{prefix}-{i}");
            nodes.push(NodeHome {
                home: args.home.join(&name),
                url: format!("http://127.0.0.1:{port}"),
                name,
                role,
                key: keys::generate(),
                tracing_key: (args.tracing_edges && role == NodeRole::Edge).then(keys::generate),
                aerosol_key: (args.aerosol_edges && role == NodeRole::Edge).then(keys::generate),
            });
            port = port.saturating_add(1);
        }
    }

    let lab_clinician = keys::generate();
    let mut orgs = Vec::new();
    let mut org_admins = Vec::new();
    let mut add_org = |id: String, name: String, kind: OrgKind, extra: Vec<GenesisMember>| {
        let admin = keys::generate();
        let mut members = vec![GenesisMember {
            public_key: admin.public(),
            role: Role::Admin,
        }];
        members.extend(extra);
        orgs.push(GenesisOrg {
            id: id.clone(),
            name,
            kind,
            members,
        });
        org_admins.push((id, admin));
    };
    for i in 1..=n_ha {
        add_org(
            format!("health-authority-{i}"),
            format!("Public Health Authority {i}"),
            OrgKind::HealthAuthority,
            Vec::new(),
        );
    }
    for (id, name, kind) in FOUNDING_ORGS {
        let extra = if *id == EDGE_OPERATOR_ORG {
            nodes
                .iter()
                .filter(|n| n.role == NodeRole::Edge)
                .flat_map(|n| {
                    std::iter::once(&n.key)
                        .chain(n.tracing_key.as_ref())
                        .chain(n.aerosol_key.as_ref())
                })
                .map(|k| GenesisMember {
                    public_key: k.public(),
                    role: Role::Operator,
                })
                .collect()
        } else if *id == LABORATORY_ORG && args.tracing_edges {
            vec![GenesisMember {
                public_key: lab_clinician.public(),
                role: Role::Clinician,
            }]
        } else {
            Vec::new()
        };
        add_org(id.to_string(), name.to_string(), *kind, extra);
    }

    let validators = nodes
        .iter()
        .filter(|n| n.role == NodeRole::Validator)
        .map(|n| Validator {
            name: n.name.clone(),
            address: Address::of_member(&n.key.public()),
            public_key: n.key.public(),
            power: 1,
        })
        .collect();
    let genesis = Genesis {
        chain_id: args.chain_id.clone(),
        genesis_time_ms: now_ms(),
        validators,
        organisations: orgs,
        policy: GovernancePolicy {
            admission_approvals: n_ha.min(2) as u32,
        },
    };
    genesis
        .validate()
        .context("the generated genesis is invalid")?;

    // Write everything.
    std::fs::create_dir_all(&args.home)
        .with_context(|| format!("cannot create {}", args.home.display()))?;
    let genesis_json = genesis.to_json();
    write_new(&genesis_path, genesis_json.as_bytes())?;
    for (org, key) in &org_admins {
        keys::save(
            &args.home.join("keys").join(format!("{org}-admin.json")),
            key,
        )?;
    }
    if args.tracing_edges {
        keys::save(
            &args.home.join("keys").join(LAB_CLINICIAN_KEY_FILE),
            &lab_clinician,
        )?;
    }
    write_new(&args.home.join(MARKER_FILE), b"created by trustedge init\n")?;
    let upstream = nodes.first().map(|n| n.url.clone()).unwrap_or_default();
    // Validator `i` (validators come first) listens for consensus on the `i`-th port after
    // the API ports and keeps the others as persistent peers.
    let p2p_addr = |i: usize| {
        format!(
            "/ip4/127.0.0.1/tcp/{}",
            usize::from(args.base_port) + total_nodes + i
        )
    };
    let mut mqtt_port = usize::from(args.base_port) + total_nodes + p2p_ports;
    for (i, n) in nodes.iter().enumerate() {
        std::fs::create_dir_all(&n.home)
            .with_context(|| format!("cannot create {}", n.home.display()))?;
        write_new(&n.home.join("genesis.json"), genesis_json.as_bytes())?;
        keys::save(&n.home.join("key.json"), &n.key)?;
        let consensus = n.role == NodeRole::Validator && p2p_ports > 0;
        // Everybody but the first validator names it as upstream: edge and cloud nodes follow
        // it; a consensus validator follows it only if its key leaves the validator set.
        let upstream = if i == 0 {
            Vec::new()
        } else {
            vec![upstream.clone()]
        };
        // Every validator pushes the transactions it admits to every other validator.
        let gossip_peers = if n.role == NodeRole::Validator {
            nodes
                .iter()
                .filter(|o| o.role == NodeRole::Validator && o.name != n.name)
                .map(|o| o.url.clone())
                .collect()
        } else {
            Vec::new()
        };
        let p2p = consensus.then(|| {
            let peers = (0..args.validators)
                .filter(|j| *j != i)
                .map(p2p_addr)
                .collect();
            (p2p_addr(i), peers)
        });
        if let Some(k) = &n.tracing_key {
            keys::save(&n.home.join(TRACING_KEY_FILE), k)?;
        }
        if let Some(k) = &n.aerosol_key {
            keys::save(&n.home.join(AEROSOL_KEY_FILE), k)?;
        }
        let mqtt = (mqtt_edges && n.role == NodeRole::Edge).then(|| {
            mqtt_port += 1;
            format!("127.0.0.1:{}", mqtt_port - 1)
        });
        write_config(n, upstream, gossip_peers, args.light_edges, p2p, mqtt)?;
    }
    Ok(Network {
        genesis,
        nodes,
        org_admins,
    })
}

fn write_config(
    n: &NodeHome,
    upstream: Vec<String>,
    gossip_peers: Vec<String>,
    light_edges: bool,
    p2p: Option<(String, Vec<String>)>,
    mqtt_listen: Option<String>,
) -> anyhow::Result<()> {
    let listen = n.url.trim_start_matches("http://");
    let mut config = NodeConfig::new(&n.name, n.role, listen, &n.url);
    config.key_path = Some(PathBuf::from("key.json"));
    config.upstream = upstream;
    config.gossip_peers = gossip_peers;
    config.light = light_edges && n.role == NodeRole::Edge;
    if let Some((listen, peers)) = p2p {
        config.consensus.p2p_listen = listen;
        config.consensus.persistent_peers = peers;
    }
    if let Some(listen) = mqtt_listen {
        config.mqtt = Some(trustedge_node::mqtt::MqttConfig::new(&listen));
    }
    if n.tracing_key.is_some() {
        config.tracing = Some(trustedge_node::tracing_worker::TracingConfig {
            key_path: Some(PathBuf::from(TRACING_KEY_FILE)),
            ..Default::default()
        });
    }
    if n.aerosol_key.is_some() {
        config.aerosol = Some(trustedge_node::aerosol_worker::AerosolConfig {
            key_path: Some(PathBuf::from(AEROSOL_KEY_FILE)),
            ..Default::default()
        });
    }
    if n.role == NodeRole::Cloud {
        // Cloud nodes index contact chains among confirmed cases from the ledger.
        config.contacts = Some(trustedge_node::contacts_service::ContactsConfig::default());
        // ... and infer outbreak origins from them (`GET /v1/origin`).
        config.origin = Some(trustedge_node::origin_service::OriginConfig::default());
    }
    if n.home.join(trustedge_node::config::CONFIG_FILE).exists() {
        anyhow::bail!(
            "{} has a config.toml already; refusing to overwrite it",
            n.home.display()
        );
    }
    config.save(&n.home)?;
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if path.exists() {
        anyhow::bail!(
            "{} exists already; refusing to overwrite it",
            path.display()
        );
    }
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Wall-clock time, Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
