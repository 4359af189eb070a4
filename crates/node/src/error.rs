//! The one error enum of this crate.

use std::path::PathBuf;

use trustedge_chain::{BlockError, LedgerError};

/// Why the node could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration file is missing, unreadable or invalid.
    #[error("config {path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A key file is missing, unreadable or invalid.
    #[error("key file {path}: {message}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The genesis file is missing, unreadable or invalid.
    #[error("genesis file {path}: {message}")]
    Genesis {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The consensus engine could not start or stop.
    #[error("consensus: {0}")]
    Consensus(#[from] trustedge_consensus::ConsensusError),
    /// The ledger could not be opened or read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A block could not be proposed or committed.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// This node cannot take the role its configuration gives it.
    #[error("{0}")]
    Role(String),
    /// The API address could not be bound.
    #[error("cannot listen on {addr}: {message}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        message: String,
    },
    /// The HTTP server failed.
    #[error("API server: {0}")]
    Serve(String),
    /// A background task ended abnormally.
    #[error("task {task} failed: {message}")]
    Task {
        /// Which task.
        task: &'static str,
        /// How.
        message: String,
    },
    /// Talking to an upstream node failed.
    #[error(transparent)]
    Upstream(#[from] crate::client::ClientError),
    /// Upstream sent data this node refuses (wrong chain, bad block, bad certificate).
    #[error("upstream {url}: {message}")]
    BadUpstream {
        /// Which upstream.
        url: String,
        /// What is wrong.
        message: String,
    },
}
