//! Persistent storage of a TrustEdge node, on [redb](https://docs.rs/redb) (an embedded,
//! copy-on-write B-tree store with ACID transactions).
//!
//! One [`Store`] holds the blocks, their commit certificates, the transaction index and
//! results, the events with their indexes, and the state: the latest state as a plain table
//! for reads and ordered scans ([`Snapshot`], which implements
//! [`trustedge_execution::StateRead`]), and every version of the state as a Jellyfish Merkle
//! tree (`jmt` 0.12, SHA-256) for the authenticated state root and for proofs
//! ([`StateProof`]). The tree version is the block height; genesis state is version 0.
//!
//! This crate does I/O and knows nothing of consensus, contracts or the network. It checks
//! that what it is asked to commit is internally consistent (heights, hashes, roots), and
//! leaves everything that needs the validator set or the executor to the caller.
//!
//! # Table layout
//!
//! All multi-part keys are fixed-width big-endian, so byte order is numeric order.
//!
//! | table          | key                                   | value                           |
//! |----------------|---------------------------------------|---------------------------------|
//! | `meta`         | `schema_version`, `chain_id`, `genesis_doc`, `latest_height` | `u32` BE, UTF-8, bytes, `u64` BE |
//! | `headers`      | height `u64`                          | Borsh `BlockHeader`             |
//! | `blocks`       | height `u64`                          | Borsh `Block`                   |
//! | `block_hashes` | block hash (32)                       | height `u64`                    |
//! | `certificates` | height `u64`                          | Borsh `CommitCertificate`       |
//! | `tx_index`     | tx hash (32)                          | height (8) ‖ index (4)          |
//! | `tx_results`   | height (8) ‖ index (4)                | Borsh `TxResult`                |
//! | `state`        | raw state key                         | value (latest height only)      |
//! | `jmt_nodes`    | version (8) ‖ Borsh nibble path       | Borsh `jmt` `Node`              |
//! | `jmt_values`   | `SHA-256(key)` (32) ‖ version (8)     | `0x01 ‖ value`, or `0x00` = deleted |
//! | `jmt_stale`    | stale-since version (8) ‖ node key    | `()` (for future pruning)       |
//! | `events`       | height (8) ‖ tx index (4) ‖ event index (4) | Borsh `(tx hash, Event)`  |
//!
//! (A block's end-of-block events are stored at tx index `u32::MAX` with a zero tx hash:
//! [`BLOCK_EVENTS_TX_INDEX`].)
//! | `event_index`  | selector (32) ‖ event position (16)   | `()`                            |
//!
//! `latest_height` is present exactly when genesis has been written. An event selector is a
//! tagged SHA-256 of the module, the kind, the (module, kind) pair, or an attribute
//! `key = value`; each event gets one entry per selector (see [`events`]).
//!
//! The `state` table and the tree's values hold the same latest state: the first is what
//! execution reads and scans (ordered by raw key, which the tree cannot do: it orders by key
//! hash), the second is what is proven. Both are written from the same write set in the same
//! transaction; [`Store::commit_block`] refuses a write set other than the one the
//! [`PreparedState`] was computed from, so they cannot diverge.
//!
//! # Atomicity and crashes
//!
//! - [`Store::prepare_state`] only reads (the tree's new nodes stay in the returned
//!   [`PreparedState`]).
//! - [`Store::init_genesis`] and [`Store::commit_block`] each write everything in **one**
//!   redb write transaction with [`redb::Durability::Immediate`] and quick repair (which
//!   implies two-phase commit): the new pages are written and `fsync`ed, then the commit slot
//!   is switched and `fsync`ed again. redb never overwrites pages the last commit can see.
//! - [`Store::commit_block_deferred`] writes the same single transaction with
//!   [`redb::Durability::None`]: visible to every read when it returns, written to the file
//!   only by the next durable commit ([`Store::checkpoint`]). A crash loses the deferred
//!   commits since the last durable one, whole (the store reopens at that one), so a caller
//!   that defers must keep those blocks durable itself: the ledger appends each to a
//!   [`BlockLog`] first and replays the log when it opens the store (see `trustedge-chain`).
//!   Pages that several deferred commits dirty are written once, at the checkpoint.
//! - Therefore after a crash at any instant, reopening finds the state of the last durable
//!   transaction whose commit returned (or, if the crash hit the commit itself, possibly that
//!   one), never a part of one: the block, its certificate, results, events, latest state,
//!   tree nodes and `latest_height` all belong to the same height `L`, and the tree's root at
//!   `L` is the `state_root` of block `L`. [`Store::open`] checks that last equality before
//!   returning, and the integration test `crash` kills a committing child process with
//!   `SIGKILL` at random moments and checks all of it after each reopen.
//! - Only one process can open the file for writing (redb's file lock); concurrent commits in
//!   one process are serialised by redb's single writer and re-check the latest height
//!   inside the transaction.
//!
//! A crash of the whole machine is covered as far as `fsync` is honest; that is not tested
//! here. A file damaged outside redb (bad disk, truncation, stray writes) makes
//! [`Store::open`] fail with an error rather than panic: redb may panic on such a file, so the
//! open is guarded and retried once with redb's full integrity check
//! ([`Store::open_checked`] runs that check up front). A plain open does not read every
//! page: damage in a page it did not read shows only when that page is read, and redb does
//! not verify checksums on ordinary reads, so after a disk incident use `open_checked`.
//!
//! # What is not here
//!
//! Pruning of old tree versions (the `jmt_stale` table records what could be pruned), and
//! restoring the tree from a state snapshot (`TreeReader::get_rightmost_leaf` returns
//! [`StoreError::Unsupported`]).

pub mod block_log;
pub mod error;
pub mod events;
pub mod proof;
mod snapshot;
mod store;
mod tables;
mod tree;

pub use block_log::{BlockLog, LoggedBlock};
pub use error::{ProofError, StoreError};
pub use events::{
    BLOCK_EVENTS_TX_INDEX, EventCursor, EventFilter, EventPage, IndexedEvent, MAX_EVENT_PAGE,
    MAX_EVENT_SCAN,
};
pub use proof::{MAX_PROOF_BYTES, MAX_PROOF_SIBLINGS, ProofLeaf, ProofNode, StateProof};
pub use snapshot::Snapshot;
pub use store::{CACHE_SIZE_BYTES, MAX_BLOCK_EVENTS, MAX_HEADERS_PER_CALL, PreparedState, Store};
pub use tables::SCHEMA_VERSION;
pub use tree::state_root_of;
