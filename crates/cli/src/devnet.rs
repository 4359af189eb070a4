//! `trustedge devnet`: a local network of `trustedge node` processes, supervised.
//!
//! Runs `init` if the home has no genesis yet, starts every node as a child process
//! (`trustedge node --home DIR/<name>`, output appended to `DIR/<name>/node.log`), reports
//! every exit, optionally restarts nodes (`--restart`, with backoff), and keeps
//! `DIR/devnet.json` listing each node's name, role, home, API URL and pid, rewritten
//! whenever a pid changes. Ctrl-C or SIGTERM stop every child (SIGTERM, then SIGKILL after
//! a grace period).
//!
//! A stopped node is restarted by hand with `trustedge node --home DIR/<name>`; the devnet
//! notices that its API answers again and does not start a second copy. If the devnet itself
//! is killed with SIGKILL its children keep running; their pids are in `devnet.json`.
//!
//! [`Devnet`] is also what `trustedge bench ledger` runs its network with.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use trustedge_node::client::Client;
use trustedge_node::config::{NodeConfig, Role as NodeRole};

use crate::children::NodeProcess;
use crate::init::{self, InitArgs, Network, NodeHome};

/// The file listing the running nodes.
pub const DEVNET_FILE: &str = "devnet.json";
/// How often the supervisor looks at its children.
const SUPERVISE_TICK: Duration = Duration::from_millis(250);
/// First wait before restarting a node that exited; doubled while it keeps failing.
const RESTART_BASE: Duration = Duration::from_secs(1);
/// Longest wait before a restart.
const RESTART_MAX: Duration = Duration::from_secs(30);
/// A node that ran this long before exiting is restarted after the first wait again.
const RESTART_RESET_AFTER: Duration = Duration::from_secs(60);
/// How long the nodes get to answer after starting.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a line with every node's height is printed.
const HEIGHTS_EVERY: Duration = Duration::from_secs(10);
/// How often the API port of a node that is not running as a child is probed.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// Timeout of one probe (loopback: refused at once when nothing listens).
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// Arguments of `trustedge devnet`.
#[derive(Args, Debug, Clone)]
pub struct DevnetArgs {
    /// Number of validators (used only when the home has no network yet).
    #[arg(long, default_value_t = 1)]
    pub validators: usize,
    /// Number of edge nodes (used only when the home has no network yet).
    #[arg(long, default_value_t = 0)]
    pub edges: usize,
    /// Make the edge nodes of a new network light clients (headers only).
    #[arg(long)]
    pub light_edges: bool,
    /// Number of cloud nodes (used only when the home has no network yet).
    #[arg(long, default_value_t = 0)]
    pub clouds: usize,
    /// The network's directory: created with `init` if it holds no genesis.json.
    #[arg(long)]
    pub home: PathBuf,
    /// First API port of a new network (nodes use consecutive ports).
    #[arg(long, default_value_t = 26650)]
    pub base_port: u16,
    /// Chain id of a new network.
    #[arg(long, default_value = "trustedge-devnet")]
    pub chain_id: String,
    /// Restart a node that exits (after 1 s, doubling up to 30 s while it keeps failing).
    #[arg(long)]
    pub restart: bool,
    /// Stop everything after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub seconds: Option<u64>,
}

/// One node of `devnet.json`.
#[derive(Serialize, Debug, Clone)]
pub struct NodeEntry {
    /// `validator-0`, …
    pub name: String,
    /// `validator`, `edge` or `cloud`.
    pub role: String,
    /// Its home directory.
    pub home: PathBuf,
    /// Its API URL.
    pub api_url: String,
    /// Its process id while the devnet runs it (null if it is not running as a child).
    pub pid: Option<u32>,
    /// Its log file.
    pub log: PathBuf,
    /// How often the devnet restarted it.
    pub restarts: u32,
    /// How its last run ended, if it exited.
    pub last_exit: Option<String>,
}

/// The contents of `devnet.json`.
#[derive(Serialize, Debug, Clone)]
pub struct DevnetFile {
    /// The network's directory.
    pub home: PathBuf,
    /// Chain id.
    pub chain_id: String,
    /// The supervising `trustedge devnet` process.
    pub supervisor_pid: u32,
    /// Whether the devnet is running (false once it stopped its nodes).
    pub running: bool,
    /// The nodes, validators first.
    pub nodes: Vec<NodeEntry>,
}

/// Something the supervisor saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A child exited.
    Exited {
        /// The node.
        name: String,
        /// Its exit status.
        status: String,
    },
    /// A child was started again.
    Restarted {
        /// The node.
        name: String,
        /// Its new pid.
        pid: u32,
    },
    /// A node the devnet is not running answers on its API (restarted by hand).
    External {
        /// The node.
        name: String,
    },
    /// A node started outside the devnet no longer answers.
    ExternalGone {
        /// The node.
        name: String,
    },
    /// A restart failed.
    RestartFailed {
        /// The node.
        name: String,
        /// Why.
        error: String,
    },
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Exited { name, status } => write!(f, "{name} exited ({status})"),
            Event::Restarted { name, pid } => write!(f, "{name} restarted (pid {pid})"),
            Event::External { name } => write!(
                f,
                "{name} answers again (started outside the devnet, which leaves it be)"
            ),
            Event::ExternalGone { name } => {
                write!(f, "{name} (started outside the devnet) no longer answers")
            }
            Event::RestartFailed { name, error } => write!(f, "{name} could not restart: {error}"),
        }
    }
}

struct Supervised {
    node: NodeHome,
    proc: Option<NodeProcess>,
    started: Instant,
    restarts: u32,
    /// Consecutive quick failures, for the restart backoff.
    quick_failures: u32,
    restart_at: Option<Instant>,
    last_exit: Option<String>,
    /// The node's API answers though the devnet does not run it (restarted by hand).
    external: bool,
    last_probe: Option<Instant>,
}

/// A running local network of node processes.
pub struct Devnet {
    home: PathBuf,
    net: Network,
    exe: PathBuf,
    restart: bool,
    nodes: Vec<Supervised>,
}

impl Devnet {
    /// Starts every node of `net` (created in `home`) as a child of this process, running
    /// `exe node --home …`, and writes `devnet.json`. Refuses if an API port is taken.
    pub fn start(home: &Path, net: Network, exe: &Path, restart: bool) -> anyhow::Result<Devnet> {
        for n in &net.nodes {
            let mut addrs = vec![("API", n.url.trim_start_matches("http://").to_string())];
            if let Some(p2p) = p2p_address(&n.home)? {
                addrs.push(("p2p", p2p));
            }
            for (what, addr) in addrs {
                if std::net::TcpListener::bind(&addr).is_err() {
                    anyhow::bail!(
                        "{addr} (the {what} address of {}) is in use: is this network already \
                         running? Stop it first (see {}), or use another --home and --base-port",
                        n.name,
                        home.join(DEVNET_FILE).display()
                    );
                }
            }
        }
        let mut devnet = Devnet {
            home: home.to_path_buf(),
            exe: exe.to_path_buf(),
            restart,
            nodes: Vec::with_capacity(net.nodes.len()),
            net,
        };
        for n in devnet.net.nodes.clone() {
            let proc = NodeProcess::spawn(exe, &n.name, &n.home)?;
            devnet.nodes.push(Supervised {
                node: n,
                proc: Some(proc),
                started: Instant::now(),
                restarts: 0,
                quick_failures: 0,
                restart_at: None,
                last_exit: None,
                external: false,
                last_probe: None,
            });
        }
        devnet.write_file(true)?;
        Ok(devnet)
    }

    /// The validators' API URLs.
    pub fn validator_urls(&self) -> Vec<String> {
        self.net
            .nodes
            .iter()
            .filter(|n| n.role == NodeRole::Validator)
            .map(|n| n.url.clone())
            .collect()
    }

    /// The path of `devnet.json`.
    pub fn file(&self) -> PathBuf {
        self.home.join(DEVNET_FILE)
    }

    /// What `devnet.json` says now.
    pub fn describe(&self, running: bool) -> DevnetFile {
        DevnetFile {
            home: self.home.clone(),
            chain_id: self.net.genesis.chain_id.clone(),
            supervisor_pid: std::process::id(),
            running,
            nodes: self
                .nodes
                .iter()
                .map(|s| NodeEntry {
                    name: s.node.name.clone(),
                    role: s.node.role.to_string(),
                    home: s.node.home.clone(),
                    api_url: s.node.url.clone(),
                    pid: s.proc.as_ref().and_then(NodeProcess::pid),
                    log: s.node.home.join("node.log"),
                    restarts: s.restarts,
                    last_exit: s.last_exit.clone(),
                })
                .collect(),
        }
    }

    /// Rewrites `devnet.json` (through a temporary file, so readers never see half of it).
    fn write_file(&self, running: bool) -> anyhow::Result<()> {
        let path = self.file();
        let tmp = self.home.join(format!("{DEVNET_FILE}.tmp"));
        let json = serde_json::to_string_pretty(&self.describe(running))?;
        std::fs::write(&tmp, format!("{json}\n"))
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Waits until every node answers `/v1/status`, failing early (with the end of its log)
    /// if a node exits.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let clients: Vec<Client> = self
            .nodes
            .iter()
            .map(|s| Client::with_timeout(s.node.url.clone(), Duration::from_secs(2)))
            .collect();
        let deadline = Instant::now() + timeout;
        let mut ready = vec![false; clients.len()];
        while ready.iter().any(|r| !r) {
            for (i, c) in clients.iter().enumerate() {
                let s = &mut self.nodes[i];
                if let Some(status) = s.proc.as_mut().and_then(NodeProcess::exited) {
                    anyhow::bail!(
                        "node {} exited ({status}) while starting; the end of {}:\n{}",
                        s.node.name,
                        s.node.home.join("node.log").display(),
                        log_tail(&s.node.home, 15)
                    );
                }
                if !ready[i] && c.status().await.is_ok() {
                    ready[i] = true;
                }
            }
            if Instant::now() > deadline {
                let waiting: Vec<&str> = self
                    .nodes
                    .iter()
                    .zip(&ready)
                    .filter(|(_, r)| !**r)
                    .map(|(s, _)| s.node.name.as_str())
                    .collect();
                anyhow::bail!(
                    "nodes {waiting:?} did not answer within {} s (see node.log in their homes)",
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Looks at every child once: reports exits, restarts what is due, and rewrites
    /// `devnet.json` when a pid changed.
    pub fn poll(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        let mut changed = false;
        let now = Instant::now();
        for s in &mut self.nodes {
            if let Some(status) = s.proc.as_mut().and_then(NodeProcess::exited) {
                // Reap it (stop is a no-op for an exited child).
                s.proc = None;
                changed = true;
                let ran = now.duration_since(s.started);
                s.quick_failures = if ran >= RESTART_RESET_AFTER {
                    0
                } else {
                    s.quick_failures.saturating_add(1)
                };
                s.last_exit = Some(status.clone());
                events.push(Event::Exited {
                    name: s.node.name.clone(),
                    status,
                });
                if self.restart {
                    let factor = 1u32
                        .checked_shl(s.quick_failures.saturating_sub(1).min(16))
                        .unwrap_or(u32::MAX);
                    s.restart_at = Some(now + RESTART_BASE.saturating_mul(factor).min(RESTART_MAX));
                }
            }
            if s.proc.is_none()
                && s.last_probe
                    .is_none_or(|t| now.duration_since(t) >= PROBE_EVERY)
            {
                s.last_probe = Some(now);
                let answers = port_answers(&s.node.url);
                if answers && !s.external {
                    s.external = true;
                    events.push(Event::External {
                        name: s.node.name.clone(),
                    });
                } else if !answers && s.external {
                    s.external = false;
                    events.push(Event::ExternalGone {
                        name: s.node.name.clone(),
                    });
                    if self.restart {
                        s.restart_at = Some(now + RESTART_BASE);
                    }
                }
            }
            if s.proc.is_none() && !s.external && s.restart_at.is_some_and(|t| now >= t) {
                s.restart_at = None;
                match NodeProcess::spawn(&self.exe, &s.node.name, &s.node.home) {
                    Ok(p) => {
                        let pid = p.pid().unwrap_or(0);
                        s.proc = Some(p);
                        s.started = now;
                        s.restarts = s.restarts.saturating_add(1);
                        changed = true;
                        events.push(Event::Restarted {
                            name: s.node.name.clone(),
                            pid,
                        });
                    }
                    Err(e) => {
                        s.restart_at = Some(now + RESTART_MAX);
                        events.push(Event::RestartFailed {
                            name: s.node.name.clone(),
                            error: format!("{e:#}"),
                        });
                    }
                }
            }
        }
        if changed && let Err(e) = self.write_file(true) {
            eprintln!("warning: {e:#}");
        }
        events
    }

    /// Stops every child: SIGTERM to all, then waits for each (SIGKILL after a grace
    /// period), and marks `devnet.json` as not running.
    pub fn stop(&mut self) {
        for s in &mut self.nodes {
            if let Some(p) = s.proc.as_mut() {
                p.terminate();
            }
        }
        for s in &mut self.nodes {
            if let Some(mut p) = s.proc.take() {
                p.stop();
            }
        }
        if let Err(e) = self.write_file(false) {
            eprintln!("warning: {e:#}");
        }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        if self.nodes.iter().any(|s| s.proc.is_some()) {
            self.stop();
        }
    }
}

/// The consensus p2p address (`host:port`) of the validator in `home`, if it runs consensus
/// (its `[consensus]` table names peers and a `/ip4/<host>/tcp/<port>` listen address).
fn p2p_address(home: &Path) -> anyhow::Result<Option<String>> {
    let config = NodeConfig::load(home)?;
    if config.role != NodeRole::Validator || config.consensus.persistent_peers.is_empty() {
        return Ok(None);
    }
    let parts: Vec<&str> = config.consensus.p2p_listen.split('/').collect();
    Ok(match parts.as_slice() {
        ["", "ip4", host, "tcp", port, ..] => Some(format!("{host}:{port}")),
        _ => None,
    })
}

/// Whether something accepts connections on the address of `url` (`http://host:port`).
/// Connecting, unlike binding, never takes the port from a node that is starting.
fn port_answers(url: &str) -> bool {
    use std::net::ToSocketAddrs;
    let Ok(mut addrs) = url.trim_start_matches("http://").to_socket_addrs() else {
        return false;
    };
    addrs
        .next()
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, PROBE_TIMEOUT).is_ok())
}

/// The last `n` lines of a node's log.
pub fn log_tail(home: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(home.join("node.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The network in `args.home`, created with `init` if it has no genesis yet.
fn prepare(args: &DevnetArgs) -> anyhow::Result<Network> {
    if args.home.join("genesis.json").exists() {
        let net = Network::load(&args.home)?;
        let count = |r: NodeRole| net.nodes.iter().filter(|n| n.role == r).count();
        let existing = (
            count(NodeRole::Validator),
            count(NodeRole::Edge),
            count(NodeRole::Cloud),
        );
        eprintln!(
            "using the network in {} ({} validators, {} edges, {} clouds)",
            args.home.display(),
            existing.0,
            existing.1,
            existing.2
        );
        if existing != (args.validators, args.edges, args.clouds) {
            eprintln!(
                "note: --validators/--edges/--clouds apply only to a new network; the existing \
                 one is used as it is"
            );
        }
        return Ok(net);
    }
    init::run(&InitArgs {
        validators: args.validators,
        edges: args.edges,
        clouds: args.clouds,
        home: args.home.clone(),
        chain_id: args.chain_id.clone(),
        base_port: args.base_port,
        health_authorities: None,
        light_edges: args.light_edges,
        tracing_edges: false,
        aerosol_edges: false,
    })
}

/// `trustedge devnet`.
pub async fn run(args: DevnetArgs) -> anyhow::Result<()> {
    let net = prepare(&args)?;
    let exe = std::env::current_exe().context("cannot find the trustedge executable")?;
    let home = std::path::absolute(&args.home)
        .with_context(|| format!("cannot resolve {}", args.home.display()))?;
    let mut devnet = Devnet::start(&home, net, &exe, args.restart)?;
    print_nodes(&devnet);
    let started = Instant::now();
    let deadline = args.seconds.map(|s| started + Duration::from_secs(s));
    let mut shutdown = Box::pin(crate::shutdown_signal());
    let result = tokio::select! {
        () = &mut shutdown => Err(None),
        r = devnet.wait_ready(STARTUP_TIMEOUT) => r.map_err(Some),
    };
    match result {
        Ok(()) => eprintln!(
            "all {} nodes answer; Ctrl-C stops them",
            devnet.net.nodes.len()
        ),
        Err(None) => {
            devnet.stop();
            return Ok(());
        }
        // Not fatal: a network that cannot start fully (several validators before
        // consensus, a port taken) is still supervised and reported on.
        Err(Some(e)) => eprintln!("warning: {e:#}"),
    }
    let clients: Vec<(String, Client)> = devnet
        .net
        .nodes
        .iter()
        .map(|n| {
            (
                n.name.clone(),
                Client::with_timeout(n.url.clone(), Duration::from_secs(2)),
            )
        })
        .collect();
    let mut last_heights = Instant::now();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(SUPERVISE_TICK) => {}
        }
        let t = started.elapsed().as_secs_f64();
        for e in devnet.poll() {
            eprintln!("[{t:>8.1} s] {e}");
            if let Event::Exited { name, .. } = &e
                && let Some(n) = devnet.net.nodes.iter().find(|n| &n.name == name)
            {
                eprintln!("{}", indent(&log_tail(&n.home, 5)));
            }
        }
        if last_heights.elapsed() >= HEIGHTS_EVERY {
            last_heights = Instant::now();
            eprintln!("[{t:>8.1} s] heights: {}", heights(&clients).await);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    eprintln!("stopping {} nodes …", devnet.net.nodes.len());
    devnet.stop();
    eprintln!("stopped; {} says running: false", devnet.file().display());
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn heights(clients: &[(String, Client)]) -> String {
    let mut parts = Vec::with_capacity(clients.len());
    for (name, c) in clients {
        match c.status().await {
            Ok(s) => parts.push(format!("{name} {}", s.height)),
            Err(_) => parts.push(format!("{name} -")),
        }
    }
    parts.join(", ")
}

fn print_nodes(devnet: &Devnet) {
    let d = devnet.describe(true);
    println!(
        "devnet {:?} in {} ({} nodes)",
        d.chain_id,
        d.home.display(),
        d.nodes.len()
    );
    for n in &d.nodes {
        println!(
            "  {:<12} {:<9} {:<24} pid {:<8} log {}",
            n.name,
            n.role,
            n.api_url,
            n.pid.map_or("-".to_string(), |p| p.to_string()),
            n.log.display()
        );
    }
    println!("  node list: {}", devnet.file().display());
}
