//! `trustedge`: the command-line entry point of TrustEdge.
//!
//! One binary for every role: generating keys and a network layout (`keygen`, `init`), running
//! a node (`node`), talking to a node's HTTP API (`tx`, `query`, `status`, `block`), checking
//! proofs offline (`verify-proof`), the end-to-end demonstration (`demo`) and the ledger
//! benchmark (`bench`). Everything networked goes through `trustedge_node::client::Client`;
//! this crate holds no protocol logic of its own, only wiring and presentation.

mod aerosol_cmd;
mod bench;
mod bench_contacts;
mod bench_ledger;
mod bench_matching;
mod chains_cmd;
mod children;
mod city;
mod contact_eval;
mod dashboard;
mod demo;
mod devnet;
mod distance_cmd;
mod init;
mod inspect;
mod keys;
mod load;
mod loadgen;
mod origin_cmd;
mod remote;
mod tracing_cmd;
mod tracing_sim;
mod tx;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The command line.
#[derive(Parser, Debug)]
#[command(
    name = "trustedge",
    version,
    about = "TrustEdge: a permissioned ledger for the Internet of Medical Things",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate an ed25519 key and write it as a key file (JSON: public_key, address,
    /// secret_key).
    Keygen {
        /// Where to write the key file; prints the key file to stdout if omitted.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Create a local network: a genesis, organisation admin keys and one home per node.
    Init(init::InitArgs),
    /// Run a node from its home directory until Ctrl-C.
    Node {
        /// The node's home (holding config.toml, key.json and genesis.json).
        #[arg(long)]
        home: PathBuf,
    },
    /// Build, sign and submit transactions.
    Tx(tx::TxArgs),
    /// Run a module query on a node and print the JSON answer.
    Query {
        /// Node API URL, e.g. http://127.0.0.1:26650.
        #[arg(long)]
        node: String,
        /// Module name (orgs, devices, anchor, genesis).
        module: String,
        /// Query path within the module, e.g. `org/hospital-1`.
        path: String,
        /// Query parameter, `key=value`; repeatable.
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
    },
    /// Show a node's chain status.
    Status {
        /// Node API URL.
        #[arg(long)]
        node: String,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a block.
    Block {
        /// Node API URL.
        #[arg(long)]
        node: String,
        /// Block height (1 is the first block).
        #[arg(long)]
        height: u64,
        /// Print the block as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify a proof file offline (a transaction-inclusion or state proof as the API serves
    /// it). Prints {"valid", "kind", "reason"}; exits 0 only if the proof is valid.
    VerifyProof {
        /// The proof JSON file.
        file: PathBuf,
        /// A genesis file: also check the block's commit certificate against its validators.
        #[arg(long)]
        genesis: Option<PathBuf>,
    },
    /// Run the demonstration: the simulated city through 4 validators, 2 edges and a cloud
    /// node, with a live web dashboard and a report at the end.
    Demo(demo::DemoArgs),
    /// Submit valid signed transactions at a steady rate to running nodes and report what
    /// was accepted, refused and committed.
    Load(load::LoadArgs),
    /// Run a local network: every node of a home (created with `init` if needed) as a
    /// supervised child process, listed in DIR/devnet.json, until Ctrl-C.
    Devnet(devnet::DevnetArgs),
    /// Contact tracing: the Exposure Notification (GAEN v1.2) key schedule.
    Tracing(tracing_cmd::TracingArgs),
    /// Outbreak-origin inference: `--node URL` prints a cloud node's ranked candidates;
    /// `eval` measures the inference on seeded synthetic outbreaks.
    Origin(origin_cmd::OriginArgs),
    /// Aerosol surveillance: airborne-infection risk (box model) and the evaluation of the
    /// ventilation-failure / particle-spike detectors on simulated rooms.
    Aerosol(aerosol_cmd::AerosolArgs),
    /// The city simulation through the real stack (4 validators, 2 edges with MQTT, 1 cloud,
    /// in this process): writes its metrics (close contacts, notifications, aerosol alerts,
    /// origin, ledger) as JSON.
    Simulate(city::cmd::SimulateArgs),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Signature verification, transaction throughput and block commits of the ledger alone,
    /// in-process on a temporary directory.
    Execution(bench::BenchArgs),
    /// A network of validator processes (a devnet in a temporary directory) under the
    /// highest sustainable load through the HTTP API: committed tx/s, submit-to-finality
    /// latency, blocks/s, against the signature-verification ceiling of the same run.
    Ledger(bench_ledger::LedgerArgs),
    /// Contact chains at the cloud level: k-hop chain queries over a synthetic contact graph
    /// of confirmed cases (10M encounters by default), p50/p99/max latency against the
    /// 10 ms p99 target.
    Contacts(bench_contacts::ContactsArgs),
    /// Contact tracing: diagnosis keys expanded (HKDF + 144 AES blocks) and matched
    /// against 100k observed RPIs, per second on one core, against the crypto ceiling of
    /// the same run.
    Matching(bench_matching::MatchingArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    };
    // Stop every task (nodes of an interrupted run still write into their homes) before
    // removing what was left to remove at exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(15));
    remove_registered_dirs();
    code
}

/// Directories to remove once the runtime has stopped (see [`remove_at_exit`]).
static REMOVE_AT_EXIT: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Removes `dir` when the process exits normally, after every task has stopped: a run that
/// was interrupted leaves its nodes' tasks writing into their homes (creating files while
/// a removal walks the tree), which only stop with the runtime.
pub(crate) fn remove_at_exit(dir: PathBuf) {
    match REMOVE_AT_EXIT.lock() {
        Ok(mut dirs) => dirs.push(dir),
        Err(poisoned) => poisoned.into_inner().push(dir),
    }
}

fn remove_registered_dirs() {
    let dirs = match REMOVE_AT_EXIT.lock() {
        Ok(mut dirs) => std::mem::take(&mut *dirs),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    };
    for dir in dirs {
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("warning: cannot remove {}: {e}", dir.display());
        }
    }
}

/// Prints an error: a node's refusal as `error [code]: message`, anything else with its
/// chain of causes.
fn report(e: &anyhow::Error) {
    if let Some(api) = e.downcast_ref::<remote::ApiFailure>() {
        eprintln!("error [{}]: {}", api.code, api.message);
    } else {
        eprintln!("error: {e:#}");
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Keygen { out } => keys::keygen(out.as_deref()).map(|()| ExitCode::SUCCESS),
        Command::Init(args) => init::run(&args).map(|_| ExitCode::SUCCESS),
        Command::Node { home } => run_node(home).await.map(|()| ExitCode::SUCCESS),
        Command::Tx(args) => tx::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Query {
            node,
            module,
            path,
            params,
        } => inspect::query(&node, &module, &path, &params)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Status { node, json } => inspect::status(&node, json)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Block { node, height, json } => inspect::block(&node, height, json)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::VerifyProof { file, genesis } => {
            Ok(inspect::verify_proof(&file, genesis.as_deref()))
        }
        Command::Demo(args) => demo::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Devnet(args) => devnet::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Load(args) => load::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Tracing(args) => tracing_cmd::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Origin(args) => origin_cmd::run(&args).await.map(|()| ExitCode::SUCCESS),
        Command::Aerosol(args) => aerosol_cmd::run(&args),
        Command::Simulate(args) => city::cmd::run(&args).await.map(|()| ExitCode::SUCCESS),
        Command::Bench {
            which: BenchCommand::Execution(args),
        } => {
            // The benchmark does blocking disk and CPU work; keep it off the async workers.
            tokio::task::spawn_blocking(move || bench::run(&args))
                .await
                .map_err(|e| anyhow::anyhow!("benchmark thread failed: {e}"))??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            which: BenchCommand::Ledger(args),
        } => bench_ledger::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Bench {
            which: BenchCommand::Contacts(args),
        } => {
            // CPU- and memory-bound: off the async workers.
            tokio::task::spawn_blocking(move || bench_contacts::run(&args))
                .await
                .map_err(|e| anyhow::anyhow!("benchmark thread failed: {e}"))??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            which: BenchCommand::Matching(args),
        } => {
            // CPU-bound and single-threaded by design (a per-core rate): off the async workers.
            tokio::task::spawn_blocking(move || bench_matching::run(&args))
                .await
                .map_err(|e| anyhow::anyhow!("benchmark thread failed: {e}"))??;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn run_node(home: PathBuf) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A second initialisation only fails if a subscriber is already set; keep that one.
    // Colours only on a terminal: devnet and demo send node output to log files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
    trustedge_node::run_node(&home, shutdown_signal())
        .await
        .map_err(|e| anyhow::anyhow!("node {}: {e}", home.display()))
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM, which is how `demo` stops its nodes. The
/// handlers are installed when this is called, not when the future is first polled: a
/// signal that arrives in between (while a network starts, say) is kept, and the future
/// resolves at once when polled. A handler that cannot be installed never fires; the
/// process can still be killed.
#[cfg(unix)]
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    async fn received(signal: Option<tokio::signal::unix::Signal>) {
        match signal {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    let int = received(signal(SignalKind::interrupt()).ok());
    let term = received(signal(SignalKind::terminate()).ok());
    async move {
        tokio::select! {
            () = int => {}
            () = term => {}
        }
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
