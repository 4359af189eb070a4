//! Load generation shared by `trustedge load` and `trustedge bench ledger`.
//!
//! - [`Signers`]: signing keys with locally tracked nonces; each transaction is a valid
//!   `devices.register` of a fresh device key (derived from a per-run salt, so runs never
//!   collide).
//! - [`Submitter`]: one task per node, sending `POST /v1/txs/batch` one request at a time,
//!   coalescing what waits into one batch. Every signer is bound to one node and its
//!   transactions are handed over in nonce order, so they arrive in order (a later nonce
//!   committed first would make the earlier ones stale).
//! - [`watch_blocks`]: follows one node's blocks as they are committed and records, for every
//!   transaction this run submitted, the time from its submission to the moment its block
//!   was seen.
//! - [`dispatch`]: feeds the submitter at a steady rate (token bucket) or keeping a bounded
//!   number of transactions outstanding (the benchmark's closed loop).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use trustedge_contracts::DevicesCall;
use trustedge_execution::DeviceClass;
use trustedge_node::client::{Client, ClientError, batch_body};
use trustedge_types::{Hash, Keypair, Payload, SignedTx, TxBody};

use crate::remote;

/// Most transactions in one request (the API takes 10,000).
pub const MAX_REQUEST_TXS: usize = 5_000;
/// Most hex bytes in one request (the node's default body limit is 2 MiB).
pub const MAX_REQUEST_HEX_BYTES: usize = 1024 * 1024;
/// Batches waiting for one node's sender.
const NODE_QUEUE_BATCHES: usize = 256;
/// Blocks a transaction built by the load stays valid for.
const EXPIRY_BLOCKS: u64 = 1_000_000;
/// Timeout of one submission request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One pre-signed transaction, ready to send.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// Index of its signer.
    pub signer: usize,
    /// Transaction id.
    pub id: Hash,
    /// Hex of its canonical bytes.
    pub hex: String,
}

/// Signing keys with their next nonces, on one chain.
#[derive(Clone)]
pub struct Signers {
    keys: Vec<Keypair>,
    next_nonce: Vec<u64>,
    chain_id: String,
    expiry_height: u64,
    salt: [u8; 16],
}

impl Signers {
    /// The keys, with nonces and chain read from `client`.
    pub async fn new(keys: Vec<Keypair>, client: &Client) -> anyhow::Result<Signers> {
        if keys.is_empty() {
            anyhow::bail!("no signing keys");
        }
        let head = remote::head(client)
            .await
            .with_context(|| format!("cannot read the status of {}", client.url()))?;
        let mut next_nonce = Vec::with_capacity(keys.len());
        for k in &keys {
            let last = remote::call(client.last_nonce(&k.public()))
                .await
                .with_context(|| format!("cannot read the nonce of {}", k.public()))?;
            next_nonce.push(last.saturating_add(1));
        }
        let mut salt = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut salt);
        Ok(Signers {
            keys,
            next_nonce,
            chain_id: head.chain_id,
            expiry_height: head.height.saturating_add(EXPIRY_BLOCKS),
            salt,
        })
    }

    /// The keys on a chain with no transactions yet (every nonce starts at 1).
    pub fn fresh(keys: Vec<Keypair>, chain_id: &str) -> Signers {
        let mut salt = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut salt);
        Signers {
            next_nonce: vec![1; keys.len()],
            keys,
            chain_id: chain_id.to_string(),
            expiry_height: EXPIRY_BLOCKS,
            salt,
        }
    }

    /// Number of signers.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The next transaction of signer `s`: a `devices.register` of a fresh device.
    pub fn sign(&mut self, s: usize) -> SignedTx {
        let nonce = self.next_nonce[s];
        self.next_nonce[s] = nonce.saturating_add(1);
        let seed = Hash::tagged(
            b"trustedge/load/device",
            &[&self.salt, &(s as u64).to_le_bytes(), &nonce.to_le_bytes()],
        );
        let device = Keypair::from_seed(seed.0);
        let call = DevicesCall::Register {
            key: device.public(),
            class: DeviceClass::Wearable,
            model: "load-band".into(),
            attributes: Vec::new(),
        };
        TxBody {
            chain_id: self.chain_id.clone(),
            signer: self.keys[s].public(),
            nonce,
            expiry_height: self.expiry_height,
            payload: Payload::new(trustedge_contracts::devices::NAME, &call),
        }
        .sign(&self.keys[s])
    }

    /// The next transaction of signer `s`, ready to send.
    pub fn prepare(&mut self, s: usize) -> Prepared {
        prepared(s, &self.sign(s))
    }

    /// `per_signer` transactions of every signer, signed on `threads` threads; the result
    /// interleaves the signers (each signer's transactions in nonce order).
    pub fn presign(&mut self, per_signer: usize, threads: usize) -> Vec<Prepared> {
        let n = self.len();
        let threads = threads.clamp(1, n);
        let mut per: Vec<Vec<Prepared>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let mut mine = self.clone();
                    scope.spawn(move || {
                        (0..n)
                            .filter(|s| s % threads == t)
                            .map(|s| (0..per_signer).map(|_| mine.prepare(s)).collect())
                            .collect::<Vec<Vec<Prepared>>>()
                    })
                })
                .collect();
            let mut by_thread: Vec<VecDeque<Vec<Prepared>>> = handles
                .into_iter()
                .map(|h| h.join().map(VecDeque::from).unwrap_or_default())
                .collect();
            (0..n)
                .map(|s| {
                    by_thread
                        .get_mut(s % threads)
                        .and_then(VecDeque::pop_front)
                        .unwrap_or_default()
                })
                .collect()
        });
        for (s, v) in per.iter().enumerate() {
            self.next_nonce[s] = self.next_nonce[s].saturating_add(v.len() as u64);
        }
        let mut out = Vec::with_capacity(per.iter().map(Vec::len).sum());
        let mut iters: Vec<_> = per
            .iter_mut()
            .map(|v| std::mem::take(v).into_iter())
            .collect();
        loop {
            let before = out.len();
            for it in &mut iters {
                if let Some(p) = it.next() {
                    out.push(p);
                }
            }
            if out.len() == before {
                break;
            }
        }
        out
    }
}

/// A transaction ready to send.
pub fn prepared(signer: usize, tx: &SignedTx) -> Prepared {
    Prepared {
        signer,
        id: tx.hash(),
        hex: hex::encode(tx.to_bytes()),
    }
}

/// What the nodes answered.
#[derive(Default, Debug, Clone)]
pub struct Counts {
    /// Transactions sent.
    pub submitted: u64,
    /// Admitted by a node.
    pub accepted: u64,
    /// Refused, by code (`unreachable` when the node could not be reached).
    pub refused: BTreeMap<String, u64>,
    /// Of the accepted ones, seen in a committed block.
    pub committed: u64,
}

impl Counts {
    /// Refused in total.
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }
}

#[derive(Default)]
struct TallyInner {
    counts: Counts,
    /// Submission time of every accepted transaction not yet seen committed.
    pending: HashMap<Hash, Instant>,
    /// Submission-to-commit latencies, ms.
    latencies_ms: Vec<f64>,
}

/// Shared between the senders and the block watcher.
#[derive(Default)]
pub struct Tally {
    inner: Mutex<TallyInner>,
}

impl Tally {
    fn lock(&self) -> MutexGuard<'_, TallyInner> {
        // Counters stay consistent between statements; a panicked task does not spoil them.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        self.lock().counts.clone()
    }

    /// The latencies recorded so far (ms, in commit order).
    pub fn latencies_ms(&self) -> Vec<f64> {
        self.lock().latencies_ms.clone()
    }

    fn record(
        &self,
        batch: &[Prepared],
        sent: Instant,
        answer: Result<Vec<Option<String>>, String>,
    ) {
        let mut g = self.lock();
        g.counts.submitted += batch.len() as u64;
        match answer {
            Ok(items) => {
                for (p, refusal) in batch.iter().zip(items) {
                    match refusal {
                        None => {
                            g.counts.accepted += 1;
                            g.pending.insert(p.id, sent);
                        }
                        Some(code) => *g.counts.refused.entry(code).or_default() += 1,
                    }
                }
            }
            Err(code) => *g.counts.refused.entry(code).or_default() += batch.len() as u64,
        }
    }

    /// Records the transactions of a block seen committed at `seen`.
    fn committed(&self, ids: &[Hash], seen: Instant) {
        let mut g = self.lock();
        let mut ours = 0;
        for id in ids {
            if let Some(t) = g.pending.remove(id) {
                ours += 1;
                g.latencies_ms
                    .push(seen.saturating_duration_since(t).as_secs_f64() * 1000.0);
            }
        }
        g.counts.committed += ours;
    }
}

/// One sender task per node.
pub struct Submitter {
    queues: Vec<mpsc::Sender<Vec<Prepared>>>,
    tasks: Vec<JoinHandle<()>>,
    tally: Arc<Tally>,
    /// Transactions handed to the senders.
    handed: u64,
}

impl Submitter {
    /// Senders to `urls`.
    pub fn new(urls: &[String], tally: Arc<Tally>) -> Submitter {
        let mut queues = Vec::with_capacity(urls.len());
        let mut tasks = Vec::with_capacity(urls.len());
        for u in urls {
            let (tx, rx) = mpsc::channel(NODE_QUEUE_BATCHES);
            queues.push(tx);
            let client = Client::with_timeout(u.clone(), REQUEST_TIMEOUT);
            tasks.push(tokio::spawn(send_loop(client, rx, tally.clone())));
        }
        Submitter {
            queues,
            tasks,
            tally,
            handed: 0,
        }
    }

    /// Handed over and not yet answered, or accepted and not yet seen committed.
    pub fn outstanding(&self) -> u64 {
        let g = self.tally.lock();
        self.handed.saturating_sub(g.counts.submitted) + g.pending.len() as u64
    }

    /// The node signer `s` submits to.
    pub fn node_of(&self, signer: usize) -> usize {
        signer % self.queues.len().max(1)
    }

    /// Hands transactions to their signers' nodes (in order per signer). Waits while a
    /// node's queue is full.
    pub async fn submit(&mut self, txs: Vec<Prepared>) {
        self.handed += txs.len() as u64;
        let mut by_node: Vec<Vec<Prepared>> = vec![Vec::new(); self.queues.len()];
        for p in txs {
            let n = self.node_of(p.signer);
            by_node[n].push(p);
        }
        for (n, batch) in by_node.into_iter().enumerate() {
            if !batch.is_empty() {
                // A closed queue means its sender ended; nothing can be sent there.
                let _ = self.queues[n].send(batch).await;
            }
        }
    }

    /// Waits until everything handed over was sent and answered.
    pub async fn finish(self) -> Arc<Tally> {
        drop(self.queues);
        for t in self.tasks {
            let _ = t.await;
        }
        self.tally
    }
}

async fn send_loop(client: Client, mut rx: mpsc::Receiver<Vec<Prepared>>, tally: Arc<Tally>) {
    let mut carry: VecDeque<Prepared> = VecDeque::new();
    loop {
        if carry.is_empty() {
            match rx.recv().await {
                Some(b) => carry.extend(b),
                None => return,
            }
        }
        // Coalesce what else is waiting, within one request's bounds.
        while carry.len() < MAX_REQUEST_TXS {
            match rx.try_recv() {
                Ok(b) => carry.extend(b),
                Err(_) => break,
            }
        }
        let mut batch = Vec::new();
        let mut hex_bytes = 0usize;
        while let Some(p) = carry.front() {
            if batch.len() >= MAX_REQUEST_TXS
                || (!batch.is_empty() && hex_bytes + p.hex.len() > MAX_REQUEST_HEX_BYTES)
            {
                break;
            }
            hex_bytes += p.hex.len();
            if let Some(p) = carry.pop_front() {
                batch.push(p);
            }
        }
        let body = batch_body(batch.iter().map(|p| p.hex.as_str()));
        let sent = Instant::now();
        let answer = match client.submit_batch_body(body).await {
            Ok(r) if r.results.len() == batch.len() => Ok(r
                .results
                .into_iter()
                .map(|item| match (item.hash, item.error) {
                    (Some(_), _) => None,
                    (None, Some(e)) => Some(e.code),
                    (None, None) => Some("empty_item".to_string()),
                })
                .collect()),
            Ok(_) => Err("bad_response".to_string()),
            Err(ClientError::Api { code, .. }) => Err(code),
            Err(ClientError::Transport { .. }) => Err("unreachable".to_string()),
            Err(ClientError::Decode { .. }) => Err("bad_response".to_string()),
        };
        tally.record(&batch, sent, answer);
    }
}

/// A block seen committed.
#[derive(Clone, Copy, Debug)]
pub struct BlockSeen {
    /// Transactions in it (anyone's).
    pub txs: u64,
    /// When the watcher saw it.
    pub seen: Instant,
}

/// Follows `client`'s blocks above `from_height` until `stop` turns true, recording commits
/// in `tally`; returns the blocks seen. Polls every `poll`.
pub async fn watch_blocks(
    client: Client,
    from_height: u64,
    tally: Arc<Tally>,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
    seen_height: watch::Sender<u64>,
) -> Vec<BlockSeen> {
    let mut blocks = Vec::new();
    let mut height = from_height;
    loop {
        if *stop.borrow() {
            return blocks;
        }
        if let Ok(s) = client.status().await {
            while height < s.height {
                let next = height + 1;
                let Ok((block, _)) = client.block_raw(next).await else {
                    break;
                };
                let seen = Instant::now();
                let ids: Vec<Hash> = block.txs.iter().map(SignedTx::hash).collect();
                tally.committed(&ids, seen);
                blocks.push(BlockSeen {
                    txs: ids.len() as u64,
                    seen,
                });
                height = next;
                seen_height.send_replace(height);
            }
        }
        tokio::select! {
            _ = stop.changed() => {}
            () = tokio::time::sleep(poll) => {}
        }
    }
}

/// How [`dispatch`] paces submissions.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// A steady rate, tx/s (token bucket with a burst of a tenth of a second).
    Rate(f64),
    /// As fast as the chain commits: keeps about `backlog` of the recent commit rate
    /// outstanding (handed over and not yet committed), at least `min`, at most `max`.
    /// Enough to fill every block, not so much that latency measures a queue.
    Backlog {
        /// Outstanding work, in time at the recent commit rate.
        backlog: Duration,
        /// Least outstanding transactions (the start, before any commit is seen).
        min: u64,
        /// Most outstanding transactions.
        max: u64,
    },
}

/// Over how long the recent commit rate is measured.
const RATE_SPAN: Duration = Duration::from_secs(2);

/// Dispatch tick.
const TICK: Duration = Duration::from_millis(5);

/// Takes transactions from `source` and hands them to `submitter` at `pace` until `until`
/// or `stop`. Returns whether the source ran dry before the end (the signer could not keep
/// up, or the pre-signed load was used up).
pub async fn dispatch(
    submitter: &mut Submitter,
    source: &mut mpsc::Receiver<Prepared>,
    pace: Pace,
    until: Instant,
    stop: &mut watch::Receiver<bool>,
    on_tick: &mut (dyn FnMut() + Send),
) -> bool {
    let started = Instant::now();
    let mut issued: f64 = 0.0;
    let mut ran_dry = false;
    // (time, transactions committed) samples over the last RATE_SPAN.
    let mut samples: VecDeque<(Instant, u64)> = VecDeque::new();
    while Instant::now() < until && !*stop.borrow() {
        let want = match pace {
            Pace::Rate(r) => {
                let due = started.elapsed().as_secs_f64() * r;
                // At most a tenth of a second's burst after a stall.
                issued = issued.max(due - r / 10.0);
                (due - issued).floor().max(0.0) as usize
            }
            Pace::Backlog { backlog, min, max } => {
                let now = Instant::now();
                samples.push_back((now, submitter.tally.counts().committed));
                while samples
                    .front()
                    .is_some_and(|(t, _)| now.duration_since(*t) > RATE_SPAN)
                {
                    samples.pop_front();
                }
                let rate = match (samples.front(), samples.back()) {
                    (Some((t0, c0)), Some((t1, c1))) if t1 > t0 => {
                        c1.saturating_sub(*c0) as f64 / t1.duration_since(*t0).as_secs_f64()
                    }
                    _ => 0.0,
                };
                let window = ((rate * backlog.as_secs_f64()) as u64).clamp(min, max.max(min));
                window
                    .saturating_sub(submitter.outstanding())
                    .min(MAX_REQUEST_TXS as u64) as usize
            }
        };
        let mut txs = Vec::with_capacity(want);
        while txs.len() < want {
            match source.try_recv() {
                Ok(p) => txs.push(p),
                // Used up, or the signer is behind: the window still runs to its end, so
                // that what was submitted is measured over the whole of it.
                Err(mpsc::error::TryRecvError::Empty | mpsc::error::TryRecvError::Disconnected) => {
                    ran_dry = true;
                    break;
                }
            }
        }
        issued += txs.len() as f64;
        if !txs.is_empty() {
            submitter.submit(txs).await;
        }
        on_tick();
        tokio::select! {
            _ = stop.changed() => {}
            () = tokio::time::sleep(TICK) => {}
        }
    }
    ran_dry
}

/// The `p`-th percentile (0..=100) of `sorted` values, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
