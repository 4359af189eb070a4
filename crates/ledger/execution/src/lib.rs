//! Deterministic execution for the TrustEdge ledger: the smart-contract module framework and
//! the block executor.
//!
//! This crate is pure. It reads state through the [`StateRead`] trait and returns the writes a
//! block makes; it never touches a disk, a socket, a clock or a random source. The time and
//! height a block executes at come in through [`BlockEnv`]. Two nodes that execute the same
//! transactions on the same state therefore produce the same writes, results and events.
//!
//! # Contracts as modules
//! A contract is a [`Module`]: it declares its call type (its transaction kinds), the access
//! rule of each call, how a call changes state (under the module's own key prefix), which
//! events it emits and what it answers to queries. Modules are registered in a [`Runtime`],
//! which also holds the [`IdentityResolver`] that turns a signer's key into a [`Principal`]
//! (a member of an organisation with a role, or a registered device).
//!
//! # Transaction lifecycle
//! 1. *Admission* ([`Runtime::admit`]): chain id, expiry, signature, nonce, known and active
//!    signer, known module, decodable call. A transaction that fails admission is never
//!    included in a block; a block that contains one is invalid.
//! 2. *Execution*: the access rule is checked against the principal, then the module runs on
//!    a transaction-scoped overlay. Success applies its writes and events; a typed failure
//!    ([`TxError`]) is recorded with its reason and applies nothing but the nonce, so that
//!    the same signed transaction can never run twice.
//! 3. *End of block* ([`BlockBuilder::finish`]): after the last transaction, every module's
//!    [`Module::end_block`] hook runs in name order, so that changes scheduled for a height
//!    (a validator-set change) take effect at exactly that height on every node.

pub mod executor;
pub mod identity;
pub mod module;
pub mod state;

pub use executor::{
    AdmissionError, BlockBuilder, BlockEnv, BlockExecution, END_BLOCK_FAILED, ExecError, Runtime,
};
pub use identity::{Access, DeviceClass, IdentityResolver, OrgKind, Principal, Role};
pub use module::{BlockContext, DynModule, Module, QueryError, TxContext, TxError};
pub use state::{Entries, MemState, StateError, StateRead, StateWrites, WriteOverlay};
