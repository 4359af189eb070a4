//! The runtime (registered modules plus identity) and the block executor.

use std::collections::BTreeMap;
use std::sync::Arc;

use trustedge_types::{Event, Hash, Height, PublicKey, SignedTx, TxOutcome, TxResult, TypesError};

use crate::identity::{IdentityResolver, Inactive, Principal};
use crate::module::{BlockContext, DynModule, Module, TxContext, TxError, module_key, read_value};
use crate::state::{StateError, StateRead, StateWrites, WriteOverlay};

/// Reserved namespace of the executor itself (nonces). No module may use this name.
pub const SYS_NAMESPACE: &str = "sys";

/// The block a transaction executes in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockEnv {
    /// Height of the block.
    pub height: Height,
    /// Block time, Unix milliseconds.
    pub time_ms: u64,
}

/// Why a transaction cannot be included in a block. The API answers these with a 4xx.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AdmissionError {
    /// Malformed or oversized.
    #[error(transparent)]
    Malformed(#[from] TypesError),
    /// Signed for another chain.
    #[error("wrong chain id: transaction is for {got:?}, this chain is {expected:?}")]
    WrongChain {
        /// This chain.
        expected: String,
        /// The transaction's.
        got: String,
    },
    /// Past its expiry height.
    #[error("expired: expiry height {expiry} is below the next block height {height}")]
    Expired {
        /// The transaction's expiry height.
        expiry: Height,
        /// The height it would be included at.
        height: Height,
    },
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// Nonce not above the signer's last committed nonce: a replay or a stale transaction.
    #[error("nonce {got} was already used: the signer's last nonce is {last}")]
    StaleNonce {
        /// The signer's last used nonce.
        last: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// The signer is not known to the ledger.
    #[error("unknown signer: key {0} is not a registered member or device")]
    UnknownSigner(PublicKey),
    /// The signer's key was revoked.
    #[error("signer revoked: key {0} has been revoked")]
    RevokedSigner(PublicKey),
    /// The signer (or its organisation or device) is suspended.
    #[error("signer suspended: key {0} is suspended")]
    SuspendedSigner(PublicKey),
    /// No module of that name.
    #[error("unknown module {0:?}")]
    UnknownModule(String),
    /// The call does not decode as the module's call type.
    #[error("malformed call for module {module:?}: {reason}")]
    MalformedCall {
        /// Module.
        module: String,
        /// Decoder message.
        reason: String,
    },
}

impl AdmissionError {
    /// Stable error code for APIs.
    pub fn code(&self) -> &'static str {
        match self {
            AdmissionError::Malformed(TypesError::TooLarge { .. }) => "too_large",
            AdmissionError::Malformed(_) => "malformed",
            AdmissionError::WrongChain { .. } => "wrong_chain_id",
            AdmissionError::Expired { .. } => "expired",
            AdmissionError::BadSignature => "bad_signature",
            AdmissionError::StaleNonce { .. } => "replayed_nonce",
            AdmissionError::UnknownSigner(_) => "unknown_signer",
            AdmissionError::RevokedSigner(_) => "revoked_signer",
            AdmissionError::SuspendedSigner(_) => "suspended_signer",
            AdmissionError::UnknownModule(_) => "unknown_module",
            AdmissionError::MalformedCall { .. } => "malformed_call",
        }
    }
}

/// Why a block could not be executed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ExecError {
    /// Transaction `index` is not admissible; the block is invalid.
    #[error("transaction {index} ({hash}) is not admissible: {error}")]
    Inadmissible {
        /// Position in the block.
        index: usize,
        /// Its hash.
        hash: Hash,
        /// Why.
        error: AdmissionError,
    },
    /// The state backend failed.
    #[error(transparent)]
    Storage(#[from] StateError),
}

/// The registered modules and the identity resolver: everything execution needs besides
/// state.
pub struct Runtime {
    chain_id: String,
    modules: BTreeMap<&'static str, Box<dyn DynModule>>,
    identity: Arc<dyn IdentityResolver>,
}

impl Runtime {
    /// A runtime with no modules.
    pub fn new(chain_id: impl Into<String>, identity: Arc<dyn IdentityResolver>) -> Runtime {
        Runtime {
            chain_id: chain_id.into(),
            modules: BTreeMap::new(),
            identity,
        }
    }

    /// Registers a module. Names are unique and `sys` is reserved.
    pub fn register<M: Module>(&mut self, module: M) -> Result<(), String> {
        if M::NAME == SYS_NAMESPACE || self.modules.contains_key(M::NAME) {
            return Err(format!("module name {:?} is reserved or taken", M::NAME));
        }
        self.modules.insert(M::NAME, Box::new(module));
        Ok(())
    }

    /// The chain id.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// A module by name.
    pub fn module(&self, name: &str) -> Option<&dyn DynModule> {
        self.modules.get(name).map(|m| m.as_ref())
    }

    /// All modules, by name.
    pub fn modules(&self) -> impl Iterator<Item = &dyn DynModule> {
        self.modules.values().map(|m| m.as_ref())
    }

    /// The identity resolver.
    pub fn identity(&self) -> &dyn IdentityResolver {
        self.identity.as_ref()
    }

    /// The last nonce `key` used (0 if none).
    pub fn last_nonce(state: &dyn StateRead, key: &PublicKey) -> Result<u64, StateError> {
        Ok(read_value::<u64>(state, &nonce_key(key))?.unwrap_or(0))
    }

    /// Checks everything that makes a transaction includable at `height` on `state`.
    /// `signature_ok` comes from the caller's (cached, batched) signature verification.
    pub fn admit(
        &self,
        state: &dyn StateRead,
        tx: &SignedTx,
        height: Height,
        signature_ok: bool,
    ) -> Result<Result<Principal, AdmissionError>, StateError> {
        let b = &tx.body;
        if let Err(e) = tx.check_static() {
            return Ok(Err(e.into()));
        }
        if b.chain_id != self.chain_id {
            return Ok(Err(AdmissionError::WrongChain {
                expected: self.chain_id.clone(),
                got: b.chain_id.clone(),
            }));
        }
        if b.expiry_height < height {
            return Ok(Err(AdmissionError::Expired {
                expiry: b.expiry_height,
                height,
            }));
        }
        let Some(module) = self.modules.get(b.payload.module.as_str()) else {
            return Ok(Err(AdmissionError::UnknownModule(b.payload.module.clone())));
        };
        if let Err(reason) = module.check_call(&b.payload.call) {
            return Ok(Err(AdmissionError::MalformedCall {
                module: b.payload.module.clone(),
                reason,
            }));
        }
        if !signature_ok {
            return Ok(Err(AdmissionError::BadSignature));
        }
        let principal = match self.identity.resolve(state, &b.signer)? {
            Ok(p) => p,
            Err(Inactive::Unknown) => return Ok(Err(AdmissionError::UnknownSigner(b.signer))),
            Err(Inactive::Revoked) => return Ok(Err(AdmissionError::RevokedSigner(b.signer))),
            Err(Inactive::Suspended) => {
                return Ok(Err(AdmissionError::SuspendedSigner(b.signer)));
            }
        };
        let last = Self::last_nonce(state, &b.signer)?;
        if b.nonce <= last {
            return Ok(Err(AdmissionError::StaleNonce { last, got: b.nonce }));
        }
        Ok(Ok(principal))
    }

    /// Starts executing a block on top of `base` (the state after the parent block).
    pub fn begin_block<'r, 'b>(
        &'r self,
        base: &'b dyn StateRead,
        env: BlockEnv,
    ) -> BlockBuilder<'r, 'b> {
        BlockBuilder {
            runtime: self,
            env,
            overlay: WriteOverlay::new(base),
            results: Vec::new(),
        }
    }
}

fn nonce_key(key: &PublicKey) -> Vec<u8> {
    let mut k = b"nonce/".to_vec();
    k.extend_from_slice(&key.0);
    module_key(SYS_NAMESPACE, &k)
}

/// Kind of the event the executor records when a module's end-of-block hook fails.
pub const END_BLOCK_FAILED: &str = "end_block_failed";

/// What executing a block produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockExecution {
    /// One result per transaction, in order.
    pub results: Vec<TxResult>,
    /// Events of the modules' end-of-block hooks, in module-name order. They are not
    /// covered by the header's `results_root` (which stays over the transactions' results);
    /// what they report is covered by `state_root`, since a hook only emits events about
    /// state it writes. The store indexes them at transaction index `u32::MAX`.
    pub block_events: Vec<Event>,
    /// All state writes of the block, end-of-block writes included.
    pub writes: StateWrites,
}

/// Executes a block's transactions one by one. A proposer calls [`BlockBuilder::apply`] for
/// each mempool transaction and leaves out those that are not admissible; a validator of a
/// received block treats any such error as an invalid block.
pub struct BlockBuilder<'r, 'b> {
    runtime: &'r Runtime,
    env: BlockEnv,
    overlay: WriteOverlay<'b>,
    results: Vec<TxResult>,
}

impl BlockBuilder<'_, '_> {
    /// Number of transactions applied so far.
    pub fn len(&self) -> usize {
        self.results.len()
    }

    /// Whether no transaction has been applied.
    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }

    /// The state as it stands after the transactions applied so far.
    pub fn state(&self) -> &dyn StateRead {
        &self.overlay
    }

    /// Admits and executes one transaction. `Ok` means it is part of the block (its result
    /// may still be a recorded failure); `Err(Inadmissible)` means it must not be.
    pub fn apply(
        &mut self,
        tx: &SignedTx,
        tx_hash: Hash,
        signature_ok: bool,
    ) -> Result<&TxResult, ExecError> {
        let index = self.results.len();
        let principal = self
            .runtime
            .admit(&self.overlay, tx, self.env.height, signature_ok)?
            .map_err(|error| ExecError::Inadmissible {
                index,
                hash: tx_hash,
                error,
            })?;
        let b = &tx.body;
        let Some(module) = self.runtime.modules.get(b.payload.module.as_str()) else {
            // admit() has checked the module exists
            return Err(ExecError::Inadmissible {
                index,
                hash: tx_hash,
                error: AdmissionError::UnknownModule(b.payload.module.clone()),
            });
        };
        let mut tx_overlay = WriteOverlay::new(&self.overlay);
        let mut ctx = TxContext::new(
            &self.runtime.chain_id,
            self.env.height,
            self.env.time_ms,
            tx_hash,
            &principal,
            module.name(),
            &mut tx_overlay,
        );
        let outcome = module.execute_encoded(&mut ctx, &b.payload.call);
        let events = ctx.into_events();
        let result = match outcome {
            Ok(()) => {
                let writes = tx_overlay.into_writes();
                self.overlay.absorb(writes);
                TxResult {
                    outcome: TxOutcome::Success,
                    events,
                }
            }
            Err(TxError::Storage(e)) => return Err(ExecError::Storage(e)),
            Err(e) => TxResult {
                outcome: TxOutcome::Failed(e.to_failure()),
                events: Vec::new(),
            },
        };
        // The nonce advances whatever the outcome: that is the replay protection.
        self.overlay
            .put(nonce_key(&b.signer), trustedge_types::encode(&b.nonce));
        self.results.push(result);
        Ok(&self.results[index])
    }

    /// Ends the block: runs every module's end-of-block hook ([`Module::end_block`]) in
    /// module-name order on the state after the transactions, then returns everything the
    /// block wrote. Deterministic: the order is fixed and hooks see only state and the
    /// block's height and time. Fails only if the state backend fails.
    pub fn finish(mut self) -> Result<BlockExecution, ExecError> {
        let mut block_events = Vec::new();
        for module in self.runtime.modules.values() {
            let mut hook_overlay = WriteOverlay::new(&self.overlay);
            let mut ctx = BlockContext::new(
                &self.runtime.chain_id,
                self.env.height,
                self.env.time_ms,
                module.name(),
                &mut hook_overlay,
            );
            let outcome = module.end_block(&mut ctx);
            let events = ctx.into_events();
            match outcome {
                Ok(()) => {
                    let writes = hook_overlay.into_writes();
                    self.overlay.absorb(writes);
                    block_events.extend(events);
                }
                Err(TxError::Storage(e)) => return Err(ExecError::Storage(e)),
                // Dropping the hook's overlay discards its writes and events.
                Err(e) => block_events.push(
                    Event::new(SYS_NAMESPACE, END_BLOCK_FAILED)
                        .with("module", module.name())
                        .with("code", e.code())
                        .with("message", e),
                ),
            }
        }
        Ok(BlockExecution {
            results: self.results,
            block_events,
            writes: self.overlay.into_writes(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use borsh::{BorshDeserialize, BorshSerialize};
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::identity::Access;
    use crate::{MemState, QueryError};

    struct Nobody;
    impl IdentityResolver for Nobody {
        fn resolve(
            &self,
            _: &dyn StateRead,
            _: &PublicKey,
        ) -> Result<Result<Principal, Inactive>, StateError> {
            Ok(Err(Inactive::Unknown))
        }
    }

    #[derive(Clone, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
    enum NoCall {
        Nothing,
    }

    /// Counts blocks in its state; fails its hook at heights divisible by `fail_every`.
    struct Counter {
        fail_every: u64,
    }
    const COUNTER: &str = "counter";

    impl Module for Counter {
        type Call = NoCall;
        const NAME: &'static str = COUNTER;
        fn access(&self, _: &NoCall) -> Access {
            Access::Devices { classes: &[] }
        }
        fn execute(&self, _: &mut TxContext<'_, '_>, _: NoCall) -> Result<(), TxError> {
            Ok(())
        }
        fn query(
            &self,
            _: &dyn StateRead,
            _: &str,
            _: &BTreeMap<String, String>,
        ) -> Result<serde_json::Value, QueryError> {
            Ok(serde_json::Value::Null)
        }
        fn call_kinds(&self) -> &'static [&'static str] {
            &[]
        }
        fn end_block(&self, ctx: &mut BlockContext<'_, '_>) -> Result<(), TxError> {
            let n: u64 = ctx.get(b"n")?.unwrap_or(0);
            ctx.put(b"n", &(n + 1))?;
            ctx.emit("counted", &[("n", (n + 1).to_string())])?;
            if ctx.height.is_multiple_of(self.fail_every) {
                return Err(TxError::Conflict("refusing this height".into()));
            }
            Ok(())
        }
    }

    fn run(rt: &Runtime, state: &mut MemState, height: Height) -> BlockExecution {
        let b = rt.begin_block(
            &*state,
            BlockEnv {
                height,
                time_ms: height,
            },
        );
        let out = b.finish().unwrap();
        state.apply(&out.writes);
        out
    }

    #[test]
    fn end_block_hooks_write_their_namespace_and_failures_are_recorded() {
        let mut rt = Runtime::new("c", Arc::new(Nobody));
        rt.register(Counter { fail_every: 3 }).unwrap();
        let mut state = MemState::default();
        let key = module_key(COUNTER, b"n");
        let one = run(&rt, &mut state, 1);
        assert_eq!(one.block_events.len(), 1);
        assert_eq!(one.block_events[0].attr("n"), Some("1"));
        assert!(one.results.is_empty());
        assert_eq!(one.writes.len(), 1);
        assert!(one.writes.contains_key(&key));
        run(&rt, &mut state, 2);
        // height 3: the hook fails, so its write and event are dropped and the failure is
        // recorded instead
        let three = run(&rt, &mut state, 3);
        assert!(three.writes.is_empty());
        assert_eq!(three.block_events.len(), 1);
        let e = &three.block_events[0];
        assert_eq!(
            (e.module.as_str(), e.kind.as_str()),
            ("sys", END_BLOCK_FAILED)
        );
        assert_eq!(e.attr("module"), Some(COUNTER));
        assert_eq!(e.attr("code"), Some("conflict"));
        assert_eq!(read_value::<u64>(&state, &key).unwrap(), Some(2));
        // the same inputs give the same outputs
        let mut again = MemState::default();
        for h in 1..=3 {
            run(&rt, &mut again, h);
        }
        assert_eq!(again, state);
    }
}
