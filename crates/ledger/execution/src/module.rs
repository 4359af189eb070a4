//! The contract module framework.

use std::fmt::Debug;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::Serialize;
use serde::de::DeserializeOwned;
use trustedge_types::{Event, Hash, Height, TxFailure, codec};

use crate::identity::{Access, Principal};
use crate::state::{Entries, StateError, StateRead, WriteOverlay, prefix_end};

/// Largest value a module may store under one key.
pub const MAX_VALUE_BYTES: usize = 256 * 1024;
/// Most events one transaction may emit.
pub const MAX_EVENTS_PER_TX: usize = 64;

/// A typed transaction failure. Everything but [`TxError::Storage`] is recorded in the block
/// as the transaction's result; `Storage` stops execution of the whole block.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TxError {
    /// The signer may not do this.
    #[error("access denied: {0}")]
    Denied(String),
    /// Something the call refers to does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The call would create something that exists already.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The call conflicts with existing state (overlap, wrong status, stale version).
    #[error("conflict: {0}")]
    Conflict(String),
    /// An argument is invalid.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The state backend failed; not the transaction's fault.
    #[error(transparent)]
    Storage(#[from] StateError),
}

impl TxError {
    /// The stable code recorded in results and returned by the API.
    pub fn code(&self) -> &'static str {
        match self {
            TxError::Denied(_) => "access_denied",
            TxError::NotFound(_) => "not_found",
            TxError::AlreadyExists(_) => "already_exists",
            TxError::Conflict(_) => "conflict",
            TxError::Invalid(_) => "invalid_argument",
            TxError::Storage(_) => "storage",
        }
    }

    /// The failure to record.
    pub fn to_failure(&self) -> TxFailure {
        TxFailure {
            code: self.code().to_string(),
            message: self.to_string(),
        }
    }
}

/// A failed query.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    /// No such query path or entity.
    #[error("not found: {0}")]
    NotFound(String),
    /// Bad query parameters.
    #[error("bad query: {0}")]
    Invalid(String),
    /// The state backend failed.
    #[error(transparent)]
    Storage(#[from] StateError),
}

/// Everything a module sees while executing one call.
pub struct TxContext<'a, 'b> {
    /// Chain id.
    pub chain_id: &'a str,
    /// Height of the block being executed.
    pub height: Height,
    /// Block time, Unix milliseconds (the proposer's, agreed by consensus).
    pub time_ms: u64,
    /// Hash of the transaction.
    pub tx_hash: Hash,
    /// The authenticated signer.
    pub signer: &'a Principal,
    module: &'static str,
    state: &'a mut WriteOverlay<'b>,
    events: Vec<Event>,
}

impl<'a, 'b> TxContext<'a, 'b> {
    /// A context for `module`, writing into `state` (a transaction-scoped overlay).
    pub(crate) fn new(
        chain_id: &'a str,
        height: Height,
        time_ms: u64,
        tx_hash: Hash,
        signer: &'a Principal,
        module: &'static str,
        state: &'a mut WriteOverlay<'b>,
    ) -> Self {
        TxContext {
            chain_id,
            height,
            time_ms,
            tx_hash,
            signer,
            module,
            state,
            events: Vec::new(),
        }
    }

    pub(crate) fn into_events(self) -> Vec<Event> {
        self.events
    }

    /// The full state key of `key` in this module's namespace.
    pub fn key(&self, key: &[u8]) -> Vec<u8> {
        module_key(self.module, key)
    }

    /// Reads and decodes a value of this module.
    pub fn get<T: BorshDeserialize>(&self, key: &[u8]) -> Result<Option<T>, TxError> {
        read_value(&*self.state, &self.key(key)).map_err(TxError::Storage)
    }

    /// Whether this module has a value at `key`.
    pub fn contains(&self, key: &[u8]) -> Result<bool, TxError> {
        Ok(self.state.get(&self.key(key))?.is_some())
    }

    /// Encodes and stores a value of this module.
    pub fn put<T: BorshSerialize>(&mut self, key: &[u8], value: &T) -> Result<(), TxError> {
        let bytes = codec::encode(value);
        if bytes.len() > MAX_VALUE_BYTES {
            return Err(TxError::Invalid(format!(
                "value of {} bytes exceeds the limit of {MAX_VALUE_BYTES}",
                bytes.len()
            )));
        }
        let k = self.key(key);
        self.state.put(k, bytes);
        Ok(())
    }

    /// Deletes a value of this module.
    pub fn delete(&mut self, key: &[u8]) {
        let k = self.key(key);
        self.state.delete(k);
    }

    /// This module's entries whose key starts with `prefix`, from `start` (inclusive, a key
    /// relative to the module) on, in order, at most `limit`. Returned keys are relative.
    pub fn scan_prefix(
        &self,
        prefix: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Entries, TxError> {
        let lower = self.key(prefix);
        let upper = prefix_end(&lower);
        let strip = self.module.len() + 1;
        Ok(self
            .state
            .scan(&lower, &upper, reverse, limit)?
            .into_iter()
            .map(|(k, v)| (k[strip..].to_vec(), v))
            .collect())
    }

    /// Like [`TxContext::scan_prefix`] over an explicit relative key range.
    pub fn scan_range(
        &self,
        lower: &[u8],
        upper: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Entries, TxError> {
        let strip = self.module.len() + 1;
        Ok(self
            .state
            .scan(&self.key(lower), &self.key(upper), reverse, limit)?
            .into_iter()
            .map(|(k, v)| (k[strip..].to_vec(), v))
            .collect())
    }

    /// Read-only view of the whole state, for asking other modules (through their public
    /// read functions) — for example whether a device is authorised.
    pub fn world(&self) -> &dyn StateRead {
        &*self.state
    }

    /// Emits an event from this module.
    pub fn emit(&mut self, kind: &str, attributes: &[(&str, String)]) -> Result<(), TxError> {
        if self.events.len() >= MAX_EVENTS_PER_TX {
            return Err(TxError::Invalid(format!(
                "a transaction may emit at most {MAX_EVENTS_PER_TX} events"
            )));
        }
        let mut e = Event::new(self.module, kind);
        for (k, v) in attributes {
            e = e.with(k, v);
        }
        self.events.push(e);
        Ok(())
    }
}

/// Most events one module's end-of-block hook may emit.
pub const MAX_EVENTS_PER_END_BLOCK: usize = 64;

/// Everything a module sees in its end-of-block hook ([`Module::end_block`]): the block's
/// height and time and the state after all of the block's transactions. Writes go to the
/// module's own namespace only, as a transaction's do.
pub struct BlockContext<'a, 'b> {
    /// Chain id.
    pub chain_id: &'a str,
    /// Height of the block that is ending.
    pub height: Height,
    /// Block time, Unix milliseconds.
    pub time_ms: u64,
    module: &'static str,
    state: &'a mut WriteOverlay<'b>,
    events: Vec<Event>,
}

impl<'a, 'b> BlockContext<'a, 'b> {
    pub(crate) fn new(
        chain_id: &'a str,
        height: Height,
        time_ms: u64,
        module: &'static str,
        state: &'a mut WriteOverlay<'b>,
    ) -> Self {
        BlockContext {
            chain_id,
            height,
            time_ms,
            module,
            state,
            events: Vec::new(),
        }
    }

    pub(crate) fn into_events(self) -> Vec<Event> {
        self.events
    }

    /// The full state key of `key` in this module's namespace.
    pub fn key(&self, key: &[u8]) -> Vec<u8> {
        module_key(self.module, key)
    }

    /// Reads and decodes a value of this module.
    pub fn get<T: BorshDeserialize>(&self, key: &[u8]) -> Result<Option<T>, TxError> {
        read_value(&*self.state, &self.key(key)).map_err(TxError::Storage)
    }

    /// Encodes and stores a value of this module.
    pub fn put<T: BorshSerialize>(&mut self, key: &[u8], value: &T) -> Result<(), TxError> {
        let bytes = codec::encode(value);
        if bytes.len() > MAX_VALUE_BYTES {
            return Err(TxError::Invalid(format!(
                "value of {} bytes exceeds the limit of {MAX_VALUE_BYTES}",
                bytes.len()
            )));
        }
        let k = self.key(key);
        self.state.put(k, bytes);
        Ok(())
    }

    /// Deletes a value of this module.
    pub fn delete(&mut self, key: &[u8]) {
        let k = self.key(key);
        self.state.delete(k);
    }

    /// This module's entries whose key starts with `prefix`, in key order, at most `limit`.
    /// Returned keys are relative to the module.
    pub fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Entries, TxError> {
        let lower = self.key(prefix);
        let upper = prefix_end(&lower);
        let strip = self.module.len() + 1;
        Ok(self
            .state
            .scan(&lower, &upper, false, limit)?
            .into_iter()
            .map(|(k, v)| (k[strip..].to_vec(), v))
            .collect())
    }

    /// Read-only view of the whole state, for asking other modules.
    pub fn world(&self) -> &dyn StateRead {
        &*self.state
    }

    /// Emits an event from this module; it is recorded in the block's `block_events`.
    pub fn emit(&mut self, kind: &str, attributes: &[(&str, String)]) -> Result<(), TxError> {
        if self.events.len() >= MAX_EVENTS_PER_END_BLOCK {
            return Err(TxError::Invalid(format!(
                "an end-of-block hook may emit at most {MAX_EVENTS_PER_END_BLOCK} events"
            )));
        }
        let mut e = Event::new(self.module, kind);
        for (k, v) in attributes {
            e = e.with(k, v);
        }
        self.events.push(e);
        Ok(())
    }
}

/// The full state key of a module's key: `module ‖ '/' ‖ key`.
pub fn module_key(module: &str, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(module.len() + 1 + key.len());
    k.extend_from_slice(module.as_bytes());
    k.push(b'/');
    k.extend_from_slice(key);
    k
}

/// Reads and decodes a value. A value that does not decode is a storage fault: only
/// modules write state, always with the canonical encoding.
pub fn read_value<T: BorshDeserialize>(
    state: &dyn StateRead,
    key: &[u8],
) -> Result<Option<T>, StateError> {
    match state.get(key)? {
        None => Ok(None),
        Some(bytes) => codec::decode(&bytes, usize::MAX).map(Some).map_err(|e| {
            StateError(format!(
                "undecodable value at {}: {e}",
                String::from_utf8_lossy(key)
            ))
        }),
    }
}

/// A contract. See the crate documentation.
pub trait Module: Send + Sync + 'static {
    /// The module's transaction kinds, as one enum. Its canonical encoding is the payload's
    /// `call`; its serde form (externally tagged) is the JSON form.
    type Call: BorshSerialize + BorshDeserialize + Serialize + DeserializeOwned + Debug + Clone;

    /// Unique name; also the prefix of the module's state keys and the payload's `module`.
    const NAME: &'static str;

    /// Who may submit `call`.
    fn access(&self, call: &Self::Call) -> Access;

    /// Applies `call`. On `Err`, nothing it wrote is kept.
    fn execute(&self, ctx: &mut TxContext<'_, '_>, call: Self::Call) -> Result<(), TxError>;

    /// Answers a read-only query at `path` (e.g. `device/<address>`), as JSON.
    fn query(
        &self,
        state: &dyn StateRead,
        path: &str,
        params: &std::collections::BTreeMap<String, String>,
    ) -> Result<serde_json::Value, QueryError>;

    /// Names of the call kinds, for documentation and the API.
    fn call_kinds(&self) -> &'static [&'static str];

    /// Decodes a stored value of this module into JSON, for the state API; `key` is relative
    /// to the module. `None` if the key is not one the module documents.
    fn describe_value(&self, key: &[u8], value: &[u8]) -> Option<serde_json::Value> {
        let _ = (key, value);
        None
    }

    /// Runs once at the end of every block, after its transactions, for every module in
    /// name order (see [`crate::BlockBuilder::finish`]). For changes that must take effect
    /// at a height fixed in advance rather than whenever a transaction happens to run, such
    /// as a scheduled validator-set change. Writes only under the module's own prefix; its
    /// events go to the block's `block_events`. On `Err` other than [`TxError::Storage`]
    /// nothing the hook wrote is kept and the executor records an `end_block_failed` event
    /// instead, so that a faulty hook cannot halt the chain. The default does nothing.
    fn end_block(&self, ctx: &mut BlockContext<'_, '_>) -> Result<(), TxError> {
        let _ = ctx;
        Ok(())
    }
}

/// A module with its call type erased, as the runtime holds it.
pub trait DynModule: Send + Sync {
    /// The module name.
    fn name(&self) -> &'static str;
    /// Checks that `call` decodes.
    fn check_call(&self, call: &[u8]) -> Result<(), String>;
    /// Decodes, checks access, executes.
    fn execute_encoded(&self, ctx: &mut TxContext<'_, '_>, call: &[u8]) -> Result<(), TxError>;
    /// JSON form of an encoded call.
    fn call_to_json(&self, call: &[u8]) -> Result<serde_json::Value, String>;
    /// Encoded call from its JSON form.
    fn call_from_json(&self, json: serde_json::Value) -> Result<Vec<u8>, String>;
    /// See [`Module::query`].
    fn query(
        &self,
        state: &dyn StateRead,
        path: &str,
        params: &std::collections::BTreeMap<String, String>,
    ) -> Result<serde_json::Value, QueryError>;
    /// See [`Module::call_kinds`].
    fn call_kinds(&self) -> &'static [&'static str];
    /// See [`Module::describe_value`].
    fn describe_value(&self, key: &[u8], value: &[u8]) -> Option<serde_json::Value>;
    /// See [`Module::end_block`].
    fn end_block(&self, ctx: &mut BlockContext<'_, '_>) -> Result<(), TxError>;
}

fn decode_call<C: BorshDeserialize>(call: &[u8]) -> Result<C, String> {
    codec::decode(call, trustedge_types::tx::MAX_TX_BYTES).map_err(|e| e.to_string())
}

impl<M: Module> DynModule for M {
    fn name(&self) -> &'static str {
        M::NAME
    }

    fn check_call(&self, call: &[u8]) -> Result<(), String> {
        decode_call::<M::Call>(call).map(|_| ())
    }

    fn execute_encoded(&self, ctx: &mut TxContext<'_, '_>, call: &[u8]) -> Result<(), TxError> {
        let call: M::Call = decode_call(call).map_err(TxError::Invalid)?;
        self.access(&call)
            .check(ctx.signer)
            .map_err(TxError::Denied)?;
        self.execute(ctx, call)
    }

    fn call_to_json(&self, call: &[u8]) -> Result<serde_json::Value, String> {
        let c: M::Call = decode_call(call)?;
        serde_json::to_value(&c).map_err(|e| e.to_string())
    }

    fn call_from_json(&self, json: serde_json::Value) -> Result<Vec<u8>, String> {
        let c: M::Call = serde_json::from_value(json).map_err(|e| e.to_string())?;
        Ok(codec::encode(&c))
    }

    fn query(
        &self,
        state: &dyn StateRead,
        path: &str,
        params: &std::collections::BTreeMap<String, String>,
    ) -> Result<serde_json::Value, QueryError> {
        Module::query(self, state, path, params)
    }

    fn call_kinds(&self) -> &'static [&'static str] {
        Module::call_kinds(self)
    }

    fn describe_value(&self, key: &[u8], value: &[u8]) -> Option<serde_json::Value> {
        Module::describe_value(self, key, value)
    }

    fn end_block(&self, ctx: &mut BlockContext<'_, '_>) -> Result<(), TxError> {
        Module::end_block(self, ctx)
    }
}
