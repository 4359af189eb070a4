//! Signing and submitting a worker's own transactions, and waiting for them: shared by the
//! edge's tracing and aerosol workers, which both publish with a member key through the
//! node's own API and then watch this node's replica for the outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use trustedge_chain::{Ledger, TxStatus};
use trustedge_types::{Hash, Keypair, Payload, SignedTx, TxBody};

use crate::client::Client;

/// Blocks a worker's transaction stays valid for.
pub const EXPIRY_BLOCKS: u64 = 100;
/// How long a worker waits for one of its transactions to commit.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

async fn on_ledger<T: Send + 'static>(
    ledger: &Arc<Ledger>,
    f: impl FnOnce(&Ledger) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let ledger = ledger.clone();
    tokio::task::spawn_blocking(move || f(&ledger))
        .await
        .map_err(|e| e.to_string())?
}

/// Transactions per submission request: a worker's transactions are at most a few KiB
/// each, so 256 stay well under the API's request limit.
const TXS_PER_REQUEST: usize = 256;

/// What [`submit_from`] did.
pub(crate) struct Submitted {
    /// The transactions' expiry height (the last height they can commit at).
    pub expiry_height: u64,
    /// The nonce after the last one signed.
    pub next_nonce: u64,
    /// Each transaction's hash, or why it was refused.
    pub results: Vec<Result<Hash, String>>,
}

/// Signs `payloads` as `key` with consecutive nonces from the replica's last one + 1, or
/// from `min_nonce` when that is higher, and submits them through `api`, in batches of at
/// most `TXS_PER_REQUEST`, one after the other. A worker passes the nonce after its last
/// signed one: a transaction it stopped waiting for may still be in a mempool, ahead of
/// the replica, and nonces need only increase (a gap is allowed), so none is signed twice.
pub(crate) async fn submit_from(
    ledger: &Arc<Ledger>,
    api: &Client,
    key: &Keypair,
    payloads: Vec<Payload>,
    min_nonce: u64,
) -> Result<Submitted, String> {
    let public = key.public();
    let (last, height, chain) = on_ledger(ledger, move |l| {
        Ok((
            l.last_nonce(&public).map_err(|e| e.to_string())?,
            l.height().map_err(|e| e.to_string())?,
            l.chain_id().to_string(),
        ))
    })
    .await?;
    let expiry_height = height.saturating_add(EXPIRY_BLOCKS);
    let first = last.saturating_add(1).max(min_nonce);
    let next_nonce = first.saturating_add(payloads.len() as u64);
    let txs: Vec<SignedTx> = payloads
        .into_iter()
        .enumerate()
        .map(|(i, payload)| {
            TxBody {
                chain_id: chain.clone(),
                signer: public,
                nonce: first.saturating_add(i as u64),
                expiry_height,
                payload,
            }
            .sign(key)
        })
        .collect();
    let mut out = Vec::with_capacity(txs.len());
    for chunk in txs.chunks(TXS_PER_REQUEST) {
        let r = match api.submit_batch(chunk).await {
            Ok(r) => r,
            Err(e) => {
                // This request and the ones after it: refused (their nonces stay used).
                let e = format!("submission refused: {e}");
                out.resize(txs.len(), Err(e));
                break;
            }
        };
        out.extend(
            r.results
                .into_iter()
                .map(|item| match (item.hash, item.error) {
                    (Some(h), _) => Ok(h),
                    (None, Some(e)) => Err(format!("{}: {}", e.code, e.message)),
                    (None, None) => Err("refused".into()),
                }),
        );
    }
    Ok(Submitted {
        expiry_height,
        next_nonce,
        results: out,
    })
}

/// Waits for `hash` on the replica: `Ok(height)` when it committed and succeeded.
pub(crate) async fn await_commit(ledger: &Arc<Ledger>, hash: Hash) -> Result<u64, String> {
    await_commit_until(ledger, hash, Instant::now() + COMMIT_TIMEOUT)
        .await?
        .ok_or_else(|| format!("transaction {hash} not committed in time"))
}

/// Waits until `deadline` for `hash` on the replica (looks at least once):
/// `Ok(Some(height))` when it committed and succeeded, `Ok(None)` when the wait ran out (it
/// may still commit), `Err` when it committed and failed or the replica could not be read.
pub(crate) async fn await_commit_until(
    ledger: &Arc<Ledger>,
    hash: Hash,
    deadline: Instant,
) -> Result<Option<u64>, String> {
    loop {
        let status = on_ledger(ledger, move |l| {
            l.tx_status(&hash).map_err(|e| e.to_string())
        })
        .await?;
        if let TxStatus::Committed(p) = status {
            return if p.result.is_success() {
                Ok(Some(p.header.height))
            } else {
                Err(format!("transaction failed: {:?}", p.result.outcome))
            };
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
