//! The application side of Malachite: one loop answering every [`AppMsg`] with the ledger.
//!
//! Malachite stalls if a message goes unanswered, so every handler sends its reply on every
//! path, with a safe answer when something fails (no value, an empty list, `Restart`).
//! Failures of the inputs (bad parts, undecodable synced blocks, invalid blocks) are typed
//! errors that end in a log line and that safe answer; only a ledger that cannot tell the
//! validator set of the next height stops the loop, since consensus cannot go on without it.
//!
//! | message | answer |
//! |---------|--------|
//! | `ConsensusReady` | start at the ledger's height + 1, validator set from the ledger |
//! | `StartedRound` | the undecided proposals of that height and round, from disk |
//! | `GetValue` | the block built earlier for that round, else a new one ([`Ledger::propose_block`]) within the timeout; parts are streamed |
//! | `ReceivedProposalPart` | the value once its parts are complete: valid iff signed by the round's proposer and [`Ledger::validate_block`] accepts it |
//! | `Decided` | commit block + certificate ([`Ledger::commit_block`], one store transaction), then ack |
//! | `Finalized` | `Start(next height)` with the ledger's validator set for it, or `Restart` if the block could not be committed |
//! | `GetHistoryMinHeight` / `GetDecidedValues` | blocks and certificates from the ledger's store |
//! | `ProcessSyncedValue` | decode, validate, keep the block, verdict |
//! | `RestreamProposal` | the original signed parts, replayed |
//! | `ExtendVote` / `VerifyVoteExtensions` | none / reject every extension |
//!
//! Ledger and store calls block on disk; they run on blocking threads, one at a time, in
//! message order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_malachitebft_app_channel::app::consensus::VoteExtensionError;
use arc_malachitebft_app_channel::app::engine::host::{HeightParams, Next, SyncedValueOutcome};
use arc_malachitebft_app_channel::app::streaming::StreamId;
use arc_malachitebft_app_channel::app::types::core::{
    CommitCertificate as MalachiteCertificate, ExtendedCommitCertificate, ExtendedCommitSignature,
    LinearTimeouts, Round, Validity,
};
use arc_malachitebft_app_channel::app::types::sync::RawDecidedValue;
use arc_malachitebft_app_channel::app::types::{LocallyProposedValue, PeerId, ProposedValue};
use arc_malachitebft_app_channel::{AppMsg, Channels, NetworkMsg};
use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use trustedge_chain::{BlockError, CommitInfo, Ledger};
use trustedge_types::{Block, CommitCertificate, CommitSig, Hash, Keypair};

use crate::codec::{MAX_SYNC_RESPONSE_BYTES, MAX_SYNC_VALUES};
use crate::context::{BlockHash, ConsensusValidatorSet, Height, LedgerContext, ValidatorAddress};
use crate::error::ConsensusError;
use crate::parts::{PartStreams, ProposalPart, SignedProposal};
use crate::signing::ConsensusSignature;
use crate::store::{ProposalStore, StoredBlock, StoredProposal};

/// Most distinct proposals kept per height and round (an honest proposer makes one; a second
/// one is evidence of equivocation, more are only load).
pub const MAX_PROPOSALS_PER_ROUND: usize = 2;
/// How many rounds ahead of the current one a proposal is still accepted.
pub const MAX_FUTURE_ROUNDS: u32 = 8;
/// How many heights ahead a complete proposal is held until its height starts.
pub const MAX_FUTURE_HEIGHTS: u64 = 2;
/// Most complete proposals held for future heights.
pub const MAX_PENDING_PROPOSALS: usize = 16;
/// Most block bytes held for future heights (a few maximal blocks).
pub const MAX_PENDING_BYTES: usize = 4 * trustedge_types::block::MAX_BLOCK_BYTES;

/// A source of Unix time in milliseconds (injected, so tests drive block times).
pub type NowMs = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Called after every block this node commits, with what the commit did and how long the
/// ledger took (the node feeds its metrics from it). Runs on a blocking thread.
pub type CommitHook = Arc<dyn Fn(&CommitInfo, Duration) + Send + Sync>;

/// The system clock as a [`NowMs`].
pub fn system_now() -> NowMs {
    Arc::new(|| {
        // A clock before 1970 reads as 0; the ledger raises block times above the parent's.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    })
}

/// What the application saw, counted (for metrics, logs and tests).
#[derive(Debug, Default)]
pub struct ConsensusStats {
    /// Heights decided and committed to the ledger here.
    pub committed: AtomicU64,
    /// Decided blocks that could not be committed (the height was restarted).
    pub commit_failures: AtomicU64,
    /// Complete, properly signed proposals whose block the ledger refused.
    pub invalid_proposals: AtomicU64,
    /// Proposal streams refused before validation (malformed, wrong signer, bad signature,
    /// too far ahead, over the per-round bound).
    pub refused_proposals: AtomicU64,
    /// Heights finalized with evidence of equivocation.
    pub misbehaviour_reports: AtomicU64,
    /// Blocks received through value sync.
    pub synced_blocks: AtomicU64,
}

/// A copy of [`ConsensusStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`ConsensusStats::committed`].
    pub committed: u64,
    /// See [`ConsensusStats::commit_failures`].
    pub commit_failures: u64,
    /// See [`ConsensusStats::invalid_proposals`].
    pub invalid_proposals: u64,
    /// See [`ConsensusStats::refused_proposals`].
    pub refused_proposals: u64,
    /// See [`ConsensusStats::misbehaviour_reports`].
    pub misbehaviour_reports: u64,
    /// See [`ConsensusStats::synced_blocks`].
    pub synced_blocks: u64,
}

impl ConsensusStats {
    /// The current counts.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            committed: get(&self.committed),
            commit_failures: get(&self.commit_failures),
            invalid_proposals: get(&self.invalid_proposals),
            refused_proposals: get(&self.refused_proposals),
            misbehaviour_reports: get(&self.misbehaviour_reports),
            synced_blocks: get(&self.synced_blocks),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Misbehaviour to inject, for tests of Byzantine fault tolerance. All off by default.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Propose blocks the ledger refuses (a wrong state root), signed as a proper proposal.
    pub invalid_proposals: bool,
}

/// What the application loop needs.
pub struct AppParts {
    /// The ledger consensus drives.
    pub ledger: Arc<Ledger>,
    /// This validator's key.
    pub key: Keypair,
    /// Undecided proposals on disk.
    pub store: Arc<ProposalStore>,
    /// Consensus timeouts for every height.
    pub timeouts: LinearTimeouts,
    /// Shortest duration of a height (Malachite's target time), if any.
    pub target_block_time: Option<Duration>,
    /// The clock proposals take their time from.
    pub now_ms: NowMs,
    /// How far ahead of this node's clock a proposed block's time may be.
    pub max_block_time_ahead_ms: u64,
    /// Injected misbehaviour.
    pub faults: Faults,
    /// Where to count what happens.
    pub stats: Arc<ConsensusStats>,
    /// Called after every commit.
    pub on_commit: Option<CommitHook>,
}

/// The application loop's state.
pub struct ConsensusApp {
    ledger: Arc<Ledger>,
    ctx: LedgerContext,
    key: Keypair,
    address: ValidatorAddress,
    store: Arc<ProposalStore>,
    timeouts: LinearTimeouts,
    target_block_time: Option<Duration>,
    now_ms: NowMs,
    max_ahead_ms: u64,
    faults: Faults,
    stats: Arc<ConsensusStats>,
    on_commit: Option<CommitHook>,
    streams: PartStreams,
    /// Complete, not yet verified proposals of future heights.
    pending: Vec<SignedProposal>,
    height: Height,
    round: Round,
    /// Makes each stream id this node publishes distinct (see [`ConsensusApp::publish`]).
    stream_nonce: u64,
}

async fn blocking<T, F>(task: &'static str, f: F) -> Result<T, ConsensusError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ConsensusError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ConsensusError::Task {
            task,
            message: e.to_string(),
        })?
}

/// The ledger's form of a Malachite commit certificate: the same precommit signatures, which
/// sign exactly [`CommitCertificate::sign_bytes`] (see [`crate::signing`]).
pub fn to_ledger_certificate(
    cert: &MalachiteCertificate<LedgerContext>,
) -> Result<CommitCertificate, ConsensusError> {
    let round = cert
        .round
        .as_u32()
        .ok_or_else(|| ConsensusError::BadParts("a commit certificate without a round".into()))?;
    let mut signatures: Vec<CommitSig> = cert
        .commit_signatures
        .iter()
        .map(|s| CommitSig {
            validator: s.address.0,
            signature: s.signature.0,
        })
        .collect();
    // Address order, so that the stored certificate does not depend on arrival order.
    signatures.sort_by_key(|s| s.validator);
    Ok(CommitCertificate {
        height: cert.height.0,
        round,
        block_hash: cert.value_id.0,
        signatures,
    })
}

/// Malachite's form of a stored certificate (no vote extensions).
pub fn to_malachite_certificate(
    cert: &CommitCertificate,
) -> ExtendedCommitCertificate<LedgerContext> {
    ExtendedCommitCertificate {
        height: Height(cert.height),
        round: Round::new(cert.round),
        value_id: BlockHash(cert.block_hash),
        commit_signatures: cert
            .signatures
            .iter()
            .map(|s| {
                ExtendedCommitSignature::new(
                    ValidatorAddress(s.validator),
                    ConsensusSignature(s.signature),
                    None,
                )
            })
            .collect(),
    }
}

fn proposed_value(p: &StoredProposal) -> ProposedValue<LedgerContext> {
    ProposedValue {
        height: Height(p.height),
        round: Round::new(p.round),
        valid_round: p.valid_round.map_or(Round::Nil, Round::new),
        proposer: ValidatorAddress(p.proposer),
        value: BlockHash(p.block_hash),
        validity: Validity::from_bool(p.valid),
    }
}

fn send<T>(what: &'static str, reply: tokio::sync::oneshot::Sender<T>, value: T) {
    if reply.send(value).is_err() {
        // Consensus dropped the request (it moved on or is stopping); nothing to do.
        tracing::debug!(what, "consensus no longer waits for this reply");
    }
}

impl ConsensusApp {
    /// The application of `parts.key` on `parts.ledger`.
    pub fn new(parts: AppParts) -> ConsensusApp {
        let ctx = LedgerContext::new(parts.ledger.chain_id());
        let address = ValidatorAddress(trustedge_types::Address::of_member(&parts.key.public()));
        let stream_nonce = (parts.now_ms)();
        ConsensusApp {
            ctx,
            address,
            key: parts.key,
            store: parts.store,
            timeouts: parts.timeouts,
            target_block_time: parts.target_block_time,
            now_ms: parts.now_ms,
            max_ahead_ms: parts.max_block_time_ahead_ms,
            faults: parts.faults,
            stats: parts.stats,
            on_commit: parts.on_commit,
            streams: PartStreams::new(),
            pending: Vec::new(),
            height: Height(0),
            round: Round::Nil,
            stream_nonce,
            ledger: parts.ledger,
        }
    }

    /// Answers consensus until `stop` turns true (then `Ok`) or the engine closes the
    /// channel (`Err(ChannelClosed)`; expected after the engine was stopped).
    pub async fn run(
        mut self,
        mut channels: Channels<LedgerContext>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), ConsensusError> {
        loop {
            let msg = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return Ok(()),
                m = channels.consensus.recv() => m,
            };
            let Some(msg) = msg else {
                return Err(ConsensusError::ChannelClosed);
            };
            self.handle(msg, &channels.network).await?;
        }
    }

    async fn ledger_height(&self) -> Result<u64, ConsensusError> {
        let ledger = self.ledger.clone();
        blocking("ledger height", move || Ok(ledger.height()?)).await
    }

    /// The validator set of `height` (the ledger knows it up to the next height).
    async fn validator_set(&self, height: Height) -> Result<ConsensusValidatorSet, ConsensusError> {
        let ledger = self.ledger.clone();
        let set = blocking("validator set", move || {
            Ok(ledger.validator_set_at(height.0)?)
        })
        .await?;
        ConsensusValidatorSet::new(set)
    }

    /// Parameters of `height` (the next one): its validator set comes from the ledger's
    /// state after the block before it, so a set changed at a height boundary takes effect
    /// exactly there.
    async fn height_params(
        &self,
        height: Height,
    ) -> Result<HeightParams<LedgerContext>, ConsensusError> {
        Ok(HeightParams::new(
            self.validator_set(height).await?,
            self.timeouts,
            self.target_block_time,
        ))
    }

    async fn handle(
        &mut self,
        msg: AppMsg<LedgerContext>,
        network: &mpsc::Sender<NetworkMsg<LedgerContext>>,
    ) -> Result<(), ConsensusError> {
        match msg {
            AppMsg::ConsensusReady { reply } => {
                let next = Height(self.ledger_height().await? + 1);
                let params = self.height_params(next).await?;
                self.height = next;
                tracing::info!(height = %next, "consensus ready");
                send("ConsensusReady", reply, (next, params));
            }

            AppMsg::StartedRound {
                height,
                round,
                proposer,
                role,
                reply_value,
            } => {
                tracing::debug!(%height, %round, %proposer, ?role, "started round");
                self.height = height;
                self.round = round;
                self.promote_pending(height).await;
                let values = match self.undecided(height, round).await {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::error!(error = %e, %height, %round, "cannot read undecided proposals");
                        Vec::new()
                    }
                };
                send("StartedRound", reply_value, values);
            }

            AppMsg::GetValue {
                height,
                round,
                timeout,
                reply,
            } => {
                match self.get_value(height, round, timeout).await {
                    Ok(Some(sp)) => {
                        let value =
                            LocallyProposedValue::new(height, round, BlockHash(sp.init.block_hash));
                        send("GetValue", reply, value);
                        self.publish(&sp, network).await;
                    }
                    Ok(None) => {
                        // No value in time: dropping the reply lets the round run into its
                        // propose timeout, and the validators prevote nil.
                        tracing::warn!(%height, %round, "no value to propose in time");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, %height, %round, "cannot build a proposal");
                    }
                }
            }

            AppMsg::ReceivedProposalPart {
                from,
                published_by,
                part,
                reply,
            } => {
                let publisher = published_by.unwrap_or(from);
                let value = match self.streams.insert(publisher, part) {
                    Some(parts) => self.on_parts(publisher, parts).await,
                    None => None,
                };
                send("ReceivedProposalPart", reply, value);
            }

            AppMsg::Decided {
                certificate,
                extensions: _,
                reply,
            } => {
                if let Err(e) = self.commit(&certificate).await {
                    bump(&self.stats.commit_failures);
                    tracing::error!(
                        error = %e,
                        height = %certificate.height,
                        block = %certificate.value_id,
                        "cannot commit the decided block"
                    );
                }
                send("Decided", reply, ());
            }

            AppMsg::Finalized {
                certificate,
                extensions: _,
                evidence,
                reply,
            } => {
                if !evidence.is_empty() {
                    bump(&self.stats.misbehaviour_reports);
                    tracing::warn!(height = %certificate.height, ?evidence, "misbehaviour observed");
                }
                match self.finalize(&certificate).await {
                    Ok(next) => {
                        let params = self.height_params(next).await?;
                        self.height = next;
                        self.round = Round::Nil;
                        send("Finalized", reply, Next::Start(next, params));
                    }
                    Err(e) => {
                        let params = self.height_params(certificate.height).await?;
                        bump(&self.stats.commit_failures);
                        tracing::error!(
                            error = %e,
                            height = %certificate.height,
                            "the decided block is not committed; restarting the height"
                        );
                        send(
                            "Finalized",
                            reply,
                            Next::Restart(certificate.height, params),
                        );
                    }
                }
            }

            AppMsg::GetHistoryMinHeight { reply } => {
                // The store keeps every block since the first.
                send("GetHistoryMinHeight", reply, Height(1));
            }

            AppMsg::GetDecidedValues { range, reply } => {
                let values = match self.decided_values(range.start().0, range.end().0).await {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read decided values");
                        Vec::new()
                    }
                };
                send("GetDecidedValues", reply, values);
            }

            AppMsg::ProcessSyncedValue {
                height,
                round,
                proposer,
                value_bytes,
                reply,
            } => {
                let outcome = self
                    .synced_value(height, round, proposer, value_bytes)
                    .await;
                send("ProcessSyncedValue", reply, outcome);
            }

            AppMsg::RestreamProposal {
                height,
                round,
                value_id,
                ..
            } => {
                let store = self.store.clone();
                let found = blocking("restream", move || store.block(height.0, &value_id.0)).await;
                match found {
                    Ok(Some(StoredBlock::Proposed(sp))) => self.publish(&sp, network).await,
                    Ok(_) => {
                        tracing::debug!(%height, %round, block = %value_id, "nothing to restream")
                    }
                    Err(e) => tracing::error!(error = %e, "cannot read a proposal to restream"),
                }
            }

            AppMsg::ExtendVote { reply, .. } => send("ExtendVote", reply, None),

            AppMsg::VerifyVoteExtensions {
                extensions, reply, ..
            } => {
                // TrustEdge never extends votes, so an extension is not something an honest
                // validator sends: refuse every one.
                let verdicts = extensions
                    .into_iter()
                    .map(|(a, _)| (a, Err(VoteExtensionError::InvalidVoteExtension)))
                    .collect();
                send("VerifyVoteExtensions", reply, verdicts);
            }
        }
        Ok(())
    }

    async fn undecided(
        &self,
        height: Height,
        round: Round,
    ) -> Result<Vec<ProposedValue<LedgerContext>>, ConsensusError> {
        let Some(r) = round.as_u32() else {
            return Ok(Vec::new());
        };
        let store = self.store.clone();
        let stored = blocking("undecided", move || store.proposals(height.0, r)).await?;
        Ok(stored.iter().map(proposed_value).collect())
    }

    /// The signed proposal to offer at `(height, round)`: the one built here before (a
    /// restarted node must propose the same value again, or its WAL replay diverges), else
    /// a new block from the mempool. `None` if the ledger took longer than `timeout`.
    async fn get_value(
        &mut self,
        height: Height,
        round: Round,
        timeout: Duration,
    ) -> Result<Option<SignedProposal>, ConsensusError> {
        let r = round
            .as_u32()
            .ok_or_else(|| ConsensusError::BadParts("asked to propose in round nil".into()))?;
        let store = self.store.clone();
        let me = self.address.0;
        let earlier = blocking("own proposal", move || {
            for p in store.proposals(height.0, r)? {
                if p.proposer == me
                    && let Some(StoredBlock::Proposed(sp)) = store.block(height.0, &p.block_hash)?
                {
                    return Ok(Some(sp));
                }
            }
            Ok(None)
        })
        .await?;
        if let Some(sp) = earlier {
            tracing::info!(%height, %round, block = %sp.init.block_hash, "proposing the value built earlier");
            return Ok(Some(sp));
        }

        let ledger = self.ledger.clone();
        let now = (self.now_ms)();
        // Executing transactions gets a third of the round's timeout; computing the state
        // root and streaming the parts need the rest. A mempool of costly transactions
        // (notice batches of 64 writes each) once took longer than whole rounds and stalled
        // the chain for over a minute.
        let budget = timeout / 3;
        let build = blocking("propose", move || {
            let started = std::time::Instant::now();
            Ok(ledger.propose_block_within(now, me, &mut || started.elapsed() < budget)?)
        });
        let mut block = match tokio::time::timeout(timeout, build).await {
            Ok(b) => b?,
            Err(_) => return Ok(None),
        };
        if block.header.height != height.0 {
            return Err(ConsensusError::BadParts(format!(
                "the ledger built height {} while consensus is at {height}",
                block.header.height
            )));
        }
        if self.faults.invalid_proposals {
            // Fault injection: a state root nobody can reproduce.
            block.header.state_root = Hash([0xBA; 32]);
            tracing::warn!(%height, %round, "FAULT: proposing an invalid block");
        }
        let sp = SignedProposal::sign(self.ctx.chain_id(), &self.key, r, None, &block)?;
        let record = StoredProposal {
            height: height.0,
            round: r,
            block_hash: sp.init.block_hash,
            proposer: me,
            valid_round: None,
            valid: true,
        };
        let store = self.store.clone();
        let stored = StoredBlock::Proposed(sp.clone());
        blocking("store proposal", move || store.put(&record, Some(&stored))).await?;
        tracing::debug!(%height, %round, block = %sp.init.block_hash, txs = block.txs.len(), "proposing");
        Ok(Some(sp))
    }

    /// Publishes a signed proposal's parts under a fresh stream id: height, round and a
    /// per-node counter (seeded from the clock, so a restarted node does not reuse ids).
    async fn publish(
        &mut self,
        sp: &SignedProposal,
        network: &mpsc::Sender<NetworkMsg<LedgerContext>>,
    ) {
        self.stream_nonce = self.stream_nonce.wrapping_add(1);
        let mut id = Vec::with_capacity(20);
        id.extend_from_slice(&sp.init.height.to_be_bytes());
        id.extend_from_slice(&sp.init.round.to_be_bytes());
        id.extend_from_slice(&self.stream_nonce.to_be_bytes());
        let stream_id = StreamId::new(Bytes::from(id));
        for msg in sp.stream(&stream_id) {
            if network
                .send(NetworkMsg::PublishProposalPart(msg))
                .await
                .is_err()
            {
                tracing::warn!("the network is gone; proposal parts not published");
                return;
            }
        }
    }

    /// A stream completed: the value it carries, if it is for the current height and signed
    /// by that round's proposer.
    async fn on_parts(
        &mut self,
        publisher: PeerId,
        parts: Vec<ProposalPart>,
    ) -> Option<ProposedValue<LedgerContext>> {
        let sp = match SignedProposal::assemble(parts) {
            Ok(sp) => sp,
            Err(e) => {
                bump(&self.stats.refused_proposals);
                tracing::warn!(%publisher, error = %e, "malformed proposal stream");
                return None;
            }
        };
        let height = sp.height();
        if height < self.height {
            return None;
        }
        if height > self.height {
            self.hold_pending(sp);
            return None;
        }
        match self.accept(sp).await {
            Ok(v) => v,
            Err(e) => {
                bump(&self.stats.refused_proposals);
                tracing::warn!(%publisher, %height, error = %e, "proposal refused");
                None
            }
        }
    }

    fn hold_pending(&mut self, sp: SignedProposal) {
        if sp.height().0 > self.height.0.saturating_add(MAX_FUTURE_HEIGHTS) {
            return;
        }
        if self.pending.iter().any(|p| p.init == sp.init) {
            return;
        }
        self.pending.push(sp);
        // Oldest first out: the newest proposals are the likeliest to be needed.
        while self.pending.len() > MAX_PENDING_PROPOSALS
            || self
                .pending
                .iter()
                .map(|p| p.block_bytes.len())
                .sum::<usize>()
                > MAX_PENDING_BYTES
        {
            self.pending.remove(0);
        }
    }

    /// Verifies and stores the held proposals of `height` now that it started; they are then
    /// among the undecided values of their rounds.
    async fn promote_pending(&mut self, height: Height) {
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.height() == height);
        self.pending = later.into_iter().filter(|p| p.height() > height).collect();
        for sp in now {
            if let Err(e) = self.accept(sp).await {
                bump(&self.stats.refused_proposals);
                tracing::warn!(%height, error = %e, "held proposal refused");
            }
        }
    }

    /// Checks a complete proposal of the current height and records it: `None` if it is not
    /// a proposal at all (wrong signer, bad signature, too far ahead, over the per-round
    /// bound), else the value with the ledger's verdict.
    async fn accept(
        &mut self,
        sp: SignedProposal,
    ) -> Result<Option<ProposedValue<LedgerContext>>, ConsensusError> {
        let height = sp.height();
        let round = sp.init.round;
        if let Some(current) = self.round.as_u32()
            && round > current.saturating_add(MAX_FUTURE_ROUNDS)
        {
            return Err(ConsensusError::BadParts(format!(
                "round {round} is too far ahead of {current}"
            )));
        }
        let set = self.validator_set(height).await?;
        let expected = set.proposer(height, Round::new(round)).address;
        if expected != sp.proposer() {
            return Err(ConsensusError::BadParts(format!(
                "{} is not the proposer of round {round} ({expected} is)",
                sp.proposer()
            )));
        }
        let store = self.store.clone();
        let hash = sp.init.block_hash;
        let (existing, count) = blocking("proposals", move || {
            let all = store.proposals(height.0, round)?;
            let found = all.iter().find(|p| p.block_hash == hash).cloned();
            Ok((found, all.len()))
        })
        .await?;
        if let Some(p) = existing {
            return Ok(Some(proposed_value(&p)));
        }
        if count >= MAX_PROPOSALS_PER_ROUND {
            return Err(ConsensusError::BadParts(format!(
                "already {count} proposals at height {height} round {round}"
            )));
        }
        let block = sp.verify(self.ctx.chain_id(), set.ledger_set())?;

        let valid = if block.header.time_ms > (self.now_ms)().saturating_add(self.max_ahead_ms) {
            tracing::warn!(%height, round, time_ms = block.header.time_ms, "block time too far ahead");
            bump(&self.stats.invalid_proposals);
            false
        } else {
            let ledger = self.ledger.clone();
            let b = block.clone();
            match blocking("validate", move || Ok(ledger.validate_block(&b))).await? {
                Ok(()) => true,
                Err(BlockError::Invalid(reason)) | Err(BlockError::BadCertificate(reason)) => {
                    tracing::warn!(%height, round, proposer = %sp.proposer(), %reason, "invalid block proposed");
                    bump(&self.stats.invalid_proposals);
                    false
                }
                Err(e) => return Err(e.into()),
            }
        };
        let record = StoredProposal {
            height: height.0,
            round,
            block_hash: hash,
            proposer: sp.init.proposer,
            valid_round: sp.init.pol_round,
            valid,
        };
        let value = proposed_value(&record);
        let store = self.store.clone();
        // An invalid block is never decided; only its verdict is kept.
        let stored = valid.then_some(StoredBlock::Proposed(sp));
        blocking("store proposal", move || {
            store.put(&record, stored.as_ref())
        })
        .await?;
        Ok(Some(value))
    }

    /// Commits the decided block with its certificate, unless it is committed already.
    async fn commit(
        &self,
        cert: &MalachiteCertificate<LedgerContext>,
    ) -> Result<(), ConsensusError> {
        let height = cert.height.0;
        let hash = cert.value_id.0;
        let ledger = self.ledger.clone();
        let store = self.store.clone();
        let ledger_cert = to_ledger_certificate(cert)?;
        let stats = self.stats.clone();
        let on_commit = self.on_commit.clone();
        blocking("commit", move || {
            let latest = ledger.height()?;
            if latest >= height {
                let committed = ledger
                    .store()
                    .header(height)
                    .map_err(trustedge_chain::LedgerError::from)?
                    .map(|h| h.hash());
                return if committed == Some(hash) {
                    Ok(())
                } else {
                    Err(ConsensusError::BadParts(format!(
                        "height {height} is committed with another block than the decided {hash}"
                    )))
                };
            }
            let stored = store.block(height, &hash)?.ok_or_else(|| {
                ConsensusError::BadParts(format!("the decided block {hash} is not held here"))
            })?;
            let block = Block::from_bytes(stored.block_bytes())?;
            if block.hash() != hash {
                return Err(ConsensusError::Store(format!(
                    "the block held for {hash} hashes to {}",
                    block.hash()
                )));
            }
            let started = std::time::Instant::now();
            let info = ledger.commit_block(&block, &ledger_cert)?;
            bump(&stats.committed);
            if let Some(hook) = &on_commit {
                hook(&info, started.elapsed());
            }
            tracing::info!(
                height,
                block = %hash,
                round = ledger_cert.round,
                signatures = ledger_cert.signatures.len(),
                txs = info.txs,
                "committed"
            );
            Ok(())
        })
        .await
    }

    /// Makes sure the finalized block is committed (with the finalized certificate, which may
    /// hold more signatures, if `Decided` could not commit), prunes the undecided proposals
    /// of the height, and returns the next height.
    async fn finalize(
        &mut self,
        cert: &MalachiteCertificate<LedgerContext>,
    ) -> Result<Height, ConsensusError> {
        let height = cert.height;
        if self.ledger_height().await? < height.0 {
            self.commit(cert).await?;
        }
        let store = self.store.clone();
        if let Err(e) = blocking("prune", move || store.prune_through(height.0)).await {
            // Stale entries only take space; they are pruned with the next height.
            tracing::warn!(error = %e, "cannot prune decided proposals");
        }
        Ok(Height(height.0 + 1))
    }

    async fn decided_values(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<RawDecidedValue<LedgerContext>>, ConsensusError> {
        // The range comes from a peer: clamp it to what one response may hold.
        let from = from.max(1);
        let to = to.min(from.saturating_add(MAX_SYNC_VALUES as u64 - 1));
        let ledger = self.ledger.clone();
        blocking("decided values", move || {
            let store = ledger.store();
            let mut out = Vec::new();
            let mut total = 0usize;
            for h in from..=to {
                let (Some(block), Some(cert)) = (
                    store.block(h).map_err(trustedge_chain::LedgerError::from)?,
                    store
                        .certificate(h)
                        .map_err(trustedge_chain::LedgerError::from)?,
                ) else {
                    break;
                };
                let bytes = block.to_bytes();
                total = total.saturating_add(bytes.len());
                if total > MAX_SYNC_RESPONSE_BYTES && !out.is_empty() {
                    break;
                }
                out.push(RawDecidedValue::new(
                    Bytes::from(bytes),
                    to_malachite_certificate(&cert),
                ));
            }
            Ok(out)
        })
        .await
    }

    /// A decided block from value sync (its certificate was verified by consensus).
    async fn synced_value(
        &self,
        height: Height,
        round: Round,
        proposer: ValidatorAddress,
        value_bytes: Bytes,
    ) -> SyncedValueOutcome<LedgerContext> {
        let Some(r) = round.as_u32() else {
            return SyncedValueOutcome::PeerFault;
        };
        let block = match Block::from_bytes(&value_bytes) {
            Ok(b) if b.header.height == height.0 => b,
            Ok(b) => {
                tracing::warn!(%height, got = b.header.height, "synced block of another height");
                return SyncedValueOutcome::PeerFault;
            }
            Err(e) => {
                tracing::warn!(%height, error = %e, "undecodable synced block");
                return SyncedValueOutcome::PeerFault;
            }
        };
        let hash = block.hash();
        let ledger = self.ledger.clone();
        let store = self.store.clone();
        let checked = blocking("synced value", move || {
            let latest = ledger.height()?;
            let valid = if latest >= height.0 {
                let committed = ledger
                    .store()
                    .header(height.0)
                    .map_err(trustedge_chain::LedgerError::from)?
                    .map(|h| h.hash());
                committed == Some(hash)
            } else if latest + 1 == height.0 {
                match ledger.validate_block(&block) {
                    Ok(()) => true,
                    Err(BlockError::Invalid(reason)) | Err(BlockError::BadCertificate(reason)) => {
                        tracing::error!(%height, %reason, "a certified block is invalid here");
                        false
                    }
                    Err(e) => return Err(e.into()),
                }
            } else {
                return Err(ConsensusError::BadParts(format!(
                    "synced height {height} is not next after {latest}"
                )));
            };
            let record = StoredProposal {
                height: height.0,
                round: r,
                block_hash: hash,
                proposer: proposer.0,
                valid_round: None,
                valid,
            };
            store.put(&record, Some(&StoredBlock::Synced(value_bytes.to_vec())))?;
            Ok(proposed_value(&record))
        })
        .await;
        match checked {
            Ok(v) => {
                bump(&self.stats.synced_blocks);
                SyncedValueOutcome::Verdict(v)
            }
            Err(e) => {
                tracing::warn!(%height, error = %e, "cannot process a synced block now");
                SyncedValueOutcome::LocalTransientError
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arc_malachitebft_app_channel::Signer;
    use arc_malachitebft_app_channel::app::types::core::{Context as _, NilOrVal};
    use trustedge_types::{Address, BlockHeader, Validator, ValidatorSet};

    use crate::signing::LedgerSigner;

    /// A Malachite commit certificate made of real precommit signatures converts into the
    /// ledger's certificate, which verifies with `CommitCertificate::verify`; and back.
    #[test]
    fn precommit_signatures_are_ledger_certificates() {
        let keys: Vec<Keypair> = (1..=4u8).map(|i| Keypair::from_seed([i; 32])).collect();
        let set = ValidatorSet::new(
            keys.iter()
                .map(|k| Validator {
                    name: "v".into(),
                    address: Address::of_member(&k.public()),
                    public_key: k.public(),
                    power: 1,
                })
                .collect(),
        )
        .unwrap();
        let header = BlockHeader {
            chain_id: "chain-a".into(),
            height: 9,
            time_ms: 5,
            prev_hash: Hash([1; 32]),
            tx_root: Hash::ZERO,
            state_root: Hash([2; 32]),
            results_root: Hash::ZERO,
            validator_set_hash: set.hash(),
            proposer: set.validators[0].address,
        };
        let ctx = LedgerContext::new("chain-a");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let votes: Vec<_> = keys[..3]
            .iter()
            .map(|k| {
                let vote = ctx.new_precommit(
                    Height(9),
                    Round::new(2),
                    NilOrVal::Val(BlockHash(header.hash())),
                    ValidatorAddress(Address::of_member(&k.public())),
                );
                rt.block_on(LedgerSigner::new(k.clone(), "chain-a").sign_vote(vote))
                    .unwrap()
            })
            .collect();
        let cert =
            MalachiteCertificate::new(Height(9), Round::new(2), BlockHash(header.hash()), votes);
        assert_eq!(cert.commit_signatures.len(), 3);
        let ledger_cert = to_ledger_certificate(&cert).unwrap();
        assert_eq!(ledger_cert.round, 2);
        ledger_cert.verify(&header, &set).unwrap();
        let back = to_malachite_certificate(&ledger_cert);
        assert_eq!(back.trim_vote_extensions().commit_signatures.len(), 3);

        // Signatures of another chain, round or block do not make a certificate here.
        let other_chain = {
            let vote = ctx.new_precommit(
                Height(9),
                Round::new(2),
                NilOrVal::Val(BlockHash(header.hash())),
                ValidatorAddress(Address::of_member(&keys[0].public())),
            );
            rt.block_on(LedgerSigner::new(keys[0].clone(), "chain-b").sign_vote(vote))
                .unwrap()
        };
        let mut forged = ledger_cert.clone();
        forged.signatures[0].signature = other_chain.signature.0;
        forged.signatures.sort_by_key(|s| s.validator);
        assert!(forged.verify(&header, &set).is_err());
        let mut moved = ledger_cert;
        moved.round = 3;
        assert!(moved.verify(&header, &set).is_err());
    }
}
