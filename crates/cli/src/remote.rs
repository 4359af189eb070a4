//! Talking to a node: the typed client, server refusals as [`ApiFailure`], and building,
//! signing, submitting and awaiting transactions.

use std::fmt;
use std::time::{Duration, Instant};

use trustedge_chain::{TxInclusionProof, TxStatus};
use trustedge_node::client::{Client, ClientError};
use trustedge_types::{Hash, Keypair, Payload, SignedTx, TxBody, TxOutcome};

/// How many blocks a transaction stays valid for after the height it was built at.
pub const EXPIRY_BLOCKS: u64 = 100;
/// How long `--wait` waits for a transaction to be committed.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often `--wait` asks.
const WAIT_POLL: Duration = Duration::from_millis(100);

/// A refusal with a stable code: the node's (`replayed_nonce`, `access_denied`, …) or, for
/// a node that cannot be reached, `unreachable`. Printed as `error [code]: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    /// Stable, machine-readable code.
    pub code: String,
    /// Explanation.
    pub message: String,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.code, self.message)
    }
}

impl std::error::Error for ApiFailure {}

impl From<ClientError> for ApiFailure {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Api { code, message, .. } => ApiFailure { code, message },
            ClientError::Transport { url, message } => ApiFailure {
                code: "unreachable".into(),
                message: format!("cannot reach {url}: {message}"),
            },
            ClientError::Decode { url, message } => ApiFailure {
                code: "bad_response".into(),
                message: format!("bad response from {url}: {message}"),
            },
        }
    }
}

/// A client for `url`, after a sanity check of the URL.
pub fn client(url: &str) -> anyhow::Result<Client> {
    let u = url.trim();
    if !u.starts_with("http://") || u.len() <= "http://".len() {
        anyhow::bail!("node URL {url:?} must look like http://127.0.0.1:26650");
    }
    Ok(Client::new(u))
}

/// Awaits a client call, turning its error into an [`ApiFailure`].
pub async fn call<T>(
    fut: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ApiFailure> {
    fut.await.map_err(ApiFailure::from)
}

/// Chain id and height of a node, for building transactions.
#[derive(Clone, Debug)]
pub struct ChainHead {
    /// Chain id.
    pub chain_id: String,
    /// Latest committed height.
    pub height: u64,
}

/// Reads the chain head.
pub async fn head(client: &Client) -> Result<ChainHead, ApiFailure> {
    let s = call(client.status()).await?;
    Ok(ChainHead {
        chain_id: s.chain_id,
        height: s.height,
    })
}

/// Signs `payload` as `key` with the given nonce, expiring [`EXPIRY_BLOCKS`] after `head`.
pub fn sign(key: &Keypair, head: &ChainHead, nonce: u64, payload: Payload) -> SignedTx {
    TxBody {
        chain_id: head.chain_id.clone(),
        signer: key.public(),
        nonce,
        expiry_height: head.height.saturating_add(EXPIRY_BLOCKS),
        payload,
    }
    .sign(key)
}

/// Builds (nonce = the signer's last committed nonce + 1), signs and submits one
/// transaction. Returns the transaction and its id.
pub async fn submit(
    client: &Client,
    key: &Keypair,
    payload: Payload,
) -> Result<(SignedTx, Hash), ApiFailure> {
    let head = head(client).await?;
    let last = call(client.last_nonce(&key.public())).await?;
    let tx = sign(key, &head, last.saturating_add(1), payload);
    let id = call(client.submit_tx(&tx)).await?;
    Ok((tx, id))
}

/// Waits until `id` is committed and returns its inclusion proof.
pub async fn wait_committed(
    client: &Client,
    id: &Hash,
    timeout: Duration,
) -> Result<TxInclusionProof, ApiFailure> {
    let deadline = Instant::now() + timeout;
    loop {
        match call(client.tx_status(id)).await? {
            TxStatus::Committed(p) => return Ok(*p),
            TxStatus::Pending | TxStatus::Unknown => {}
        }
        if Instant::now() >= deadline {
            return Err(ApiFailure {
                code: "timeout".into(),
                message: format!(
                    "transaction {id} was not committed within {} s",
                    timeout.as_secs()
                ),
            });
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

/// The failure recorded for a committed transaction, if it failed.
pub fn outcome_failure(p: &TxInclusionProof) -> Option<ApiFailure> {
    match &p.result.outcome {
        TxOutcome::Success => None,
        TxOutcome::Failed(f) => Some(ApiFailure {
            code: f.code.clone(),
            message: f.message.clone(),
        }),
    }
}
