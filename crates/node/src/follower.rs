//! Following an upstream node, and forwarding transactions to it.
//!
//! A follower asks its upstream for `/v1/status`, fetches each missing block with its
//! certificate from `/v1/blocks/{h}/raw` and commits it through
//! [`Ledger::commit_block`], which checks the certificate against the validator set and
//! re-executes the block, refusing it unless the state root matches. An upstream can
//! therefore delay a follower but never make it accept a block the validators did not
//! finalise.
//!
//! Every request is retried a bounded number of times with exponential backoff; a round that
//! still fails is reported (log, metrics, `/v1/status`) and tried again after a capped
//! backoff, switching to the next upstream if there are several.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use tokio::sync::watch;
use trustedge_chain::{BlockError, Ledger, Status};
use trustedge_types::{Hash, Height, SignedTx};

use crate::NodeError;
use crate::api::error::ApiError;
use crate::api::types::SyncStatus;
use crate::client::{Client, ClientError};
use crate::metrics::Metrics;

/// Most blocks one sync round fetches before reporting progress and looking again.
pub const MAX_BLOCKS_PER_ROUND: u64 = 256;
/// Longest wait between failed rounds.
pub const MAX_ROUND_BACKOFF: Duration = Duration::from_secs(5);

/// A follower's view of its upstream, shared with the API's `/v1/status`.
pub type SyncHandle = Arc<Mutex<SyncStatus>>;

/// A bounded retry policy with exponential backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Tries in total (at least 1).
    pub attempts: u32,
    /// Wait after the first failure; doubled after each further one.
    pub base: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Backoff {
    /// The policy of sync requests: 4 tries, 100 ms doubling up to 2 s.
    pub const SYNC: Backoff = Backoff {
        attempts: 4,
        base: Duration::from_millis(100),
        max: Duration::from_secs(2),
    };
    /// The policy of forwarded transactions (a client is waiting): 2 tries per upstream.
    pub const FORWARD: Backoff = Backoff {
        attempts: 2,
        base: Duration::from_millis(50),
        max: Duration::from_millis(50),
    };

    /// The wait after failure number `failure` (0-based).
    pub fn delay(&self, failure: u32) -> Duration {
        let factor = 1u32.checked_shl(failure.min(16)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// Runs `f` until it succeeds, fails for good, or has been tried `policy.attempts` times.
pub async fn retry<T, F, Fut>(policy: Backoff, mut f: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut failures = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && failures + 1 < policy.attempts.max(1) => {
                tokio::time::sleep(policy.delay(failures)).await;
                failures += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

fn clients(urls: &[String], timeout: Duration) -> Vec<Client> {
    urls.iter()
        .map(|u| Client::with_timeout(u.clone(), timeout))
        .collect()
}

/// Forwards transactions a follower admitted to its upstream nodes, in order: an upstream
/// that cannot be reached is skipped; an upstream's refusal is the answer.
#[derive(Clone, Debug)]
pub struct Forwarder {
    upstreams: Vec<Client>,
}

impl Forwarder {
    /// A forwarder to `urls`.
    pub fn new(urls: &[String], timeout: Duration) -> Forwarder {
        Forwarder {
            upstreams: clients(urls, timeout),
        }
    }

    /// Forwards one transaction.
    pub async fn submit(&self, tx: &SignedTx) -> Result<Hash, ApiError> {
        let mut failures = Vec::new();
        for c in &self.upstreams {
            match retry(Backoff::FORWARD, || c.submit_tx(tx)).await {
                Ok(h) => return Ok(h),
                Err(e) if e.is_retryable() => failures.push(e.to_string()),
                Err(e) => return Err(upstream_refusal(e)),
            }
        }
        Err(forward_failed(&failures))
    }

    /// Forwards a batch; one result per transaction, in order.
    pub async fn submit_batch(&self, txs: &[SignedTx]) -> Vec<Result<Hash, ApiError>> {
        let mut failures = Vec::new();
        for c in &self.upstreams {
            match retry(Backoff::FORWARD, || c.submit_batch(txs)).await {
                Ok(resp) if resp.results.len() == txs.len() => {
                    return resp
                        .results
                        .into_iter()
                        .map(|item| match (item.hash, item.error) {
                            (Some(h), _) => Ok(h),
                            (None, Some(e)) => Err(ApiError::new(
                                crate::api::error::status_of_code(&e.code),
                                &e.code,
                                format!("upstream {}: {}", c.url(), e.message),
                            )),
                            (None, None) => Err(ApiError::new(
                                StatusCode::BAD_GATEWAY,
                                "forward_failed",
                                format!("upstream {} answered an empty item", c.url()),
                            )),
                        })
                        .collect();
                }
                Ok(resp) => failures.push(format!(
                    "{} answered {} results for {} transactions",
                    c.url(),
                    resp.results.len(),
                    txs.len()
                )),
                Err(e) if e.is_retryable() => failures.push(e.to_string()),
                Err(e) => {
                    let e = upstream_refusal(e);
                    return txs.iter().map(|_| Err(e.clone())).collect();
                }
            }
        }
        let e = forward_failed(&failures);
        txs.iter().map(|_| Err(e.clone())).collect()
    }
}

fn upstream_refusal(e: ClientError) -> ApiError {
    match e {
        ClientError::Api {
            url,
            status,
            code,
            message,
        } => ApiError::new(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            &code,
            format!("upstream {url}: {message}"),
        ),
        other => ApiError::new(StatusCode::BAD_GATEWAY, "forward_failed", other.to_string()),
    }
}

fn forward_failed(failures: &[String]) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "forward_failed",
        format!(
            "the transaction passed this node's checks but no upstream took it ({}); it stays \
             pending here and is not on its way to a validator: submit it again later",
            if failures.is_empty() {
                "no upstream is configured".to_string()
            } else {
                failures.join("; ")
            }
        ),
    )
}

/// Follows upstream nodes, committing their blocks.
pub struct Follower {
    ledger: Arc<Ledger>,
    upstreams: Vec<Client>,
    current: usize,
    metrics: Arc<Metrics>,
    sync: SyncHandle,
    interval: Duration,
}

impl Follower {
    /// A follower of `urls` (tried in order); `interval` is the pause between rounds.
    pub fn new(
        ledger: Arc<Ledger>,
        urls: &[String],
        timeout: Duration,
        interval: Duration,
        metrics: Arc<Metrics>,
    ) -> Follower {
        let sync = Arc::new(Mutex::new(SyncStatus {
            upstream: urls.first().cloned(),
            ..SyncStatus::default()
        }));
        Follower {
            ledger,
            upstreams: clients(urls, timeout),
            current: 0,
            metrics,
            sync,
            interval,
        }
    }

    /// The shared sync status.
    pub fn sync_handle(&self) -> SyncHandle {
        self.sync.clone()
    }

    fn update(&self, f: impl FnOnce(&mut SyncStatus)) {
        f(&mut self.sync.lock().unwrap_or_else(|p| p.into_inner()));
    }

    async fn local_status(&self) -> Result<Status, NodeError> {
        let ledger = self.ledger.clone();
        tokio::task::spawn_blocking(move || ledger.status())
            .await
            .map_err(|e| NodeError::Task {
                task: "follower",
                message: e.to_string(),
            })?
            .map_err(NodeError::from)
    }

    /// One round: compares heights with the current upstream and commits up to
    /// [`MAX_BLOCKS_PER_ROUND`] missing blocks. Returns how many were committed.
    pub async fn sync_once(&mut self) -> Result<u64, NodeError> {
        let Some(client) = self.upstreams.get(self.current).cloned() else {
            return Err(NodeError::Role("a follower needs an upstream".into()));
        };
        let url = client.url().to_string();
        let bad = |message: String| NodeError::BadUpstream {
            url: url.clone(),
            message,
        };
        let remote = retry(Backoff::SYNC, || client.status()).await?;
        let local = self.local_status().await?;
        if remote.chain_id != local.chain_id || remote.genesis_hash != local.genesis_hash {
            return Err(bad(format!(
                "it is on chain {:?} (genesis {}), this node on {:?} (genesis {})",
                remote.chain_id, remote.genesis_hash, local.chain_id, local.genesis_hash
            )));
        }
        self.update(|s| {
            s.upstream = Some(url.clone());
            s.upstream_height = Some(remote.height);
        });
        let target = remote
            .height
            .min(local.height.saturating_add(MAX_BLOCKS_PER_ROUND));
        let mut committed = 0;
        let mut height: Height = local.height;
        while height < target {
            let next = height + 1;
            let (block, cert) = retry(Backoff::SYNC, || client.block_raw(next)).await?;
            if block.header.height != next {
                return Err(bad(format!(
                    "asked for block {next}, got block {}",
                    block.header.height
                )));
            }
            let started = Instant::now();
            let ledger = self.ledger.clone();
            let result = tokio::task::spawn_blocking(move || ledger.commit_block(&block, &cert))
                .await
                .map_err(|e| NodeError::Task {
                    task: "follower",
                    message: e.to_string(),
                })?;
            let info = match result {
                Ok(info) => info,
                Err(e @ (BlockError::Invalid(_) | BlockError::BadCertificate(_))) => {
                    return Err(bad(format!("block {next} refused: {e}")));
                }
                Err(e) => return Err(e.into()),
            };
            self.metrics.committed(&info, started.elapsed());
            tracing::debug!(height = info.height, txs = info.txs, upstream = %url, "followed");
            committed += 1;
            height = next;
        }
        Ok(committed)
    }

    /// Follows until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        let mut delay = Duration::ZERO;
        loop {
            tokio::select! {
                _ = shutdown.changed() => {}
                () = tokio::time::sleep(delay) => {}
            }
            if *shutdown.borrow() {
                return;
            }
            // A round may wait on a slow upstream for long; shutdown does not wait for it. A
            // commit already on a blocking thread still completes (atomically) on its own.
            let round = tokio::select! {
                _ = shutdown.changed() => return,
                r = self.sync_once() => r,
            };
            match round {
                Ok(n) => {
                    failures = 0;
                    self.update(|s| s.last_error = None);
                    // A full round means more blocks are probably waiting.
                    delay = if n >= MAX_BLOCKS_PER_ROUND {
                        Duration::ZERO
                    } else {
                        self.interval
                    };
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    self.metrics.chain_errors.inc();
                    tracing::warn!(error = %e, failures, "following upstream failed");
                    let message = e.to_string();
                    self.update(|s| s.last_error = Some(message));
                    if self.upstreams.len() > 1 {
                        self.current = (self.current + 1) % self.upstreams.len();
                    }
                    delay = Backoff {
                        attempts: 1,
                        base: self.interval,
                        max: MAX_ROUND_BACKOFF,
                    }
                    .delay(failures.saturating_sub(1));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Backoff {
            attempts: 5,
            base: Duration::from_millis(100),
            max: Duration::from_millis(350),
        };
        let d: Vec<u128> = (0..5).map(|i| b.delay(i).as_millis()).collect();
        assert_eq!(d, vec![100, 200, 350, 350, 350]);
        assert_eq!(b.delay(u32::MAX), Duration::from_millis(350));
    }

    #[tokio::test]
    async fn retry_is_bounded_and_stops_on_final_errors() {
        let fast = Backoff {
            attempts: 4,
            base: Duration::from_millis(1),
            max: Duration::from_millis(2),
        };
        let calls = AtomicU32::new(0);
        let transport = || ClientError::Transport {
            url: "u".into(),
            message: "refused".into(),
        };
        let r: Result<(), _> = retry(fast, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(transport()) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), fast.attempts);

        calls.store(0, Ordering::SeqCst);
        let r: Result<(), _> = retry(fast, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                Err(ClientError::Api {
                    url: "u".into(),
                    status: 404,
                    code: "not_found".into(),
                    message: "no".into(),
                })
            }
        })
        .await;
        assert_eq!(r.unwrap_err().code(), Some("not_found"));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a 404 is not retried");

        calls.store(0, Ordering::SeqCst);
        let r = retry(fast, || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { if n < 2 { Err(transport()) } else { Ok(n) } }
        })
        .await;
        assert_eq!(r.unwrap(), 2);
    }

    #[tokio::test]
    async fn forwarding_to_nobody_reachable_says_so() {
        // Port 9 on loopback: nothing listens (connection refused, no traffic leaves).
        let f = Forwarder::new(&["http://127.0.0.1:9".into()], Duration::from_secs(2));
        let kp = trustedge_types::Keypair::from_seed([1; 32]);
        let tx = trustedge_types::TxBody {
            chain_id: "c".into(),
            signer: kp.public(),
            nonce: 1,
            expiry_height: 9,
            payload: trustedge_types::Payload {
                module: "orgs".into(),
                call: vec![],
            },
        }
        .sign(&kp);
        let e = f.submit(&tx).await.unwrap_err();
        assert_eq!((e.status.as_u16(), e.code()), (502, "forward_failed"));
        assert!(e.body.message.contains("127.0.0.1:9"), "{}", e.body.message);
        let all = f.submit_batch(&[tx.clone(), tx]).await;
        assert!(
            all.iter()
                .all(|r| r.as_ref().unwrap_err().code() == "forward_failed")
        );
    }
}
