//! Proposal parts: how a proposed block travels, and how it is put back together.
//!
//! The proposer streams its block as `Init`, then the block's canonical bytes in chunks of at
//! most [`PART_DATA_BYTES`] (`Data`), then `Fin`, whose signature covers everything:
//! [`domain::PROPOSAL_PARTS`] ‖ `(chain_id, init, sha256(block bytes))`. A receiver accepts a
//! block only if the parts are complete and consistent (every chunk, in order, of the
//! announced size), the signature verifies against the proposer's key in the validator set
//! of that height, and the bytes decode into a block whose hash, height and proposer are the
//! ones announced. A forged or reordered chunk, or a stream spliced from two proposals, fails
//! the signature. Whether the block is *valid* is then the ledger's question
//! ([`trustedge_chain::Ledger::validate_block`]).
//!
//! [`PartStreams`] reassembles streams that arrive out of order, through several peers, and
//! interleaved; it bounds what it buffers (streams, parts per stream, bytes) and drops the
//! oldest stream first.

use std::collections::{BTreeMap, HashMap, VecDeque};

use arc_malachitebft_app_channel::app::streaming::{StreamContent, StreamId, StreamMessage};
use arc_malachitebft_app_channel::app::types::PeerId;
use arc_malachitebft_app_channel::app::types::core as mc;
use borsh::{BorshDeserialize, BorshSerialize};
use trustedge_types::block::MAX_BLOCK_BYTES;
use trustedge_types::{Address, Block, Hash, Keypair, Signature, ValidatorSet, encode};

use crate::context::{Height, LedgerContext, ValidatorAddress};
use crate::error::ConsensusError;
use crate::signing::domain;

/// Largest chunk of block bytes in one part. Small enough for any gossip message limit,
/// large enough that a maximal block is a few hundred parts.
pub const PART_DATA_BYTES: usize = 64 * 1024;
/// Most data parts of one proposal (a maximal block).
pub const MAX_DATA_PARTS: usize = MAX_BLOCK_BYTES.div_ceil(PART_DATA_BYTES);
/// Most stream messages of one proposal: init, data, fin, end of stream.
pub const MAX_STREAM_MESSAGES: u64 = MAX_DATA_PARTS as u64 + 3;
/// Most proposal streams being reassembled at once (a few rounds from every validator).
pub const MAX_OPEN_STREAMS: usize = 64;
/// Most bytes held by streams being reassembled.
pub const MAX_BUFFERED_BYTES: usize = 4 * MAX_BLOCK_BYTES;

/// The first part: what is proposed, by whom, and how big it is.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ProposalInit {
    /// Height.
    pub height: u64,
    /// Round in which the proposer streamed these parts.
    pub round: u32,
    /// The proposer's POL round (`None` for a fresh value).
    pub pol_round: Option<u32>,
    /// The proposer's address.
    pub proposer: Address,
    /// Hash of the block.
    pub block_hash: Hash,
    /// Length of the block's canonical encoding.
    pub size_bytes: u32,
    /// Number of data parts.
    pub chunks: u32,
}

/// A chunk of the block's canonical bytes.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ProposalData {
    /// Index of the chunk (0-based).
    pub index: u32,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// The last part: the proposer's signature over the init and all the bytes.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ProposalFin {
    /// The signature (see the module documentation).
    pub signature: Signature,
}

/// One part of a proposal, as streamed on the network.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ProposalPart {
    /// The first part.
    Init(ProposalInit),
    /// A chunk of the block.
    Data(ProposalData),
    /// The last part.
    Fin(ProposalFin),
}

impl mc::ProposalPart<LedgerContext> for ProposalPart {
    fn is_first(&self) -> bool {
        matches!(self, ProposalPart::Init(_))
    }

    fn is_last(&self) -> bool {
        matches!(self, ProposalPart::Fin(_))
    }
}

/// What the proposer signs to close a stream.
pub fn parts_sign_bytes(chain_id: &str, init: &ProposalInit, bytes_digest: &Hash) -> Vec<u8> {
    let mut out = domain::PROPOSAL_PARTS.to_vec();
    out.extend_from_slice(&encode(&(chain_id, init, bytes_digest)));
    out
}

/// A complete, signed proposal: its init, the block's bytes and the closing signature.
/// This is what the proposer publishes and what a restream replays verbatim.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignedProposal {
    /// The init part.
    pub init: ProposalInit,
    /// The block's canonical bytes.
    pub block_bytes: Vec<u8>,
    /// The fin part.
    pub fin: ProposalFin,
}

impl SignedProposal {
    /// Signs `block` as `key`'s proposal at `(height, round)`.
    pub fn sign(
        chain_id: &str,
        key: &Keypair,
        round: u32,
        pol_round: Option<u32>,
        block: &Block,
    ) -> Result<SignedProposal, ConsensusError> {
        let block_bytes = block.to_bytes();
        let size_bytes = u32::try_from(block_bytes.len())
            .ok()
            .filter(|n| (*n as usize) <= MAX_BLOCK_BYTES)
            .ok_or_else(|| {
                ConsensusError::BadParts(format!(
                    "block of {} bytes is over {MAX_BLOCK_BYTES}",
                    block_bytes.len()
                ))
            })?;
        let chunks = block_bytes.len().div_ceil(PART_DATA_BYTES) as u32;
        let init = ProposalInit {
            height: block.header.height,
            round,
            pol_round,
            proposer: Address::of_member(&key.public()),
            block_hash: block.hash(),
            size_bytes,
            chunks,
        };
        let digest = Hash::sha256(&block_bytes);
        let fin = ProposalFin {
            signature: key.sign(&parts_sign_bytes(chain_id, &init, &digest)),
        };
        Ok(SignedProposal {
            init,
            block_bytes,
            fin,
        })
    }

    /// The parts, in stream order.
    pub fn parts(&self) -> Vec<ProposalPart> {
        let mut out = Vec::with_capacity(self.init.chunks as usize + 2);
        out.push(ProposalPart::Init(self.init.clone()));
        for (i, chunk) in self.block_bytes.chunks(PART_DATA_BYTES).enumerate() {
            out.push(ProposalPart::Data(ProposalData {
                index: i as u32,
                bytes: chunk.to_vec(),
            }));
        }
        out.push(ProposalPart::Fin(self.fin.clone()));
        out
    }

    /// The stream messages publishing these parts under `stream_id`: every part, then the
    /// end of the stream.
    pub fn stream(&self, stream_id: &StreamId) -> Vec<StreamMessage<ProposalPart>> {
        let parts = self.parts();
        let mut out = Vec::with_capacity(parts.len() + 1);
        let mut seq = 0u64;
        for p in parts {
            out.push(StreamMessage::new(
                stream_id.clone(),
                seq,
                StreamContent::Data(p),
            ));
            seq += 1;
        }
        out.push(StreamMessage::new(
            stream_id.clone(),
            seq,
            StreamContent::Fin,
        ));
        out
    }

    /// Puts parts (in stream order) back together, checking their shape but not the
    /// signature (see [`SignedProposal::verify`]).
    pub fn assemble(parts: Vec<ProposalPart>) -> Result<SignedProposal, ConsensusError> {
        let bad = |m: String| Err(ConsensusError::BadParts(m));
        let mut it = parts.into_iter();
        let Some(ProposalPart::Init(init)) = it.next() else {
            return bad("the first part is not an init".into());
        };
        if init.size_bytes as usize > MAX_BLOCK_BYTES {
            return bad(format!("announced size {} is too large", init.size_bytes));
        }
        if init.chunks as usize != (init.size_bytes as usize).div_ceil(PART_DATA_BYTES) {
            return bad(format!(
                "{} chunks cannot hold {} bytes",
                init.chunks, init.size_bytes
            ));
        }
        let mut block_bytes = Vec::with_capacity(init.size_bytes as usize);
        let mut next_index = 0u32;
        let mut fin = None;
        for part in it {
            match part {
                ProposalPart::Init(_) => return bad("a second init part".into()),
                ProposalPart::Data(d) => {
                    if fin.is_some() {
                        return bad("a data part after the fin".into());
                    }
                    if d.index != next_index {
                        return bad(format!("data part {} where {next_index} was due", d.index));
                    }
                    let last = next_index + 1 == init.chunks;
                    let full = d.bytes.len() == PART_DATA_BYTES;
                    if d.bytes.is_empty() || d.bytes.len() > PART_DATA_BYTES || (!last && !full) {
                        return bad(format!("data part {} has {} bytes", d.index, d.bytes.len()));
                    }
                    if block_bytes.len() + d.bytes.len() > init.size_bytes as usize {
                        return bad("more bytes than announced".into());
                    }
                    block_bytes.extend_from_slice(&d.bytes);
                    next_index += 1;
                }
                ProposalPart::Fin(f) => {
                    if fin.is_some() {
                        return bad("a second fin part".into());
                    }
                    fin = Some(f);
                }
            }
        }
        let Some(fin) = fin else {
            return bad("no fin part".into());
        };
        if next_index != init.chunks || block_bytes.len() != init.size_bytes as usize {
            return bad(format!(
                "{next_index} of {} chunks, {} of {} bytes",
                init.chunks,
                block_bytes.len(),
                init.size_bytes
            ));
        }
        Ok(SignedProposal {
            init,
            block_bytes,
            fin,
        })
    }

    /// Checks the proposer's signature against `validators` (the set of the proposal's
    /// height) and decodes the block, checking that it is the one announced.
    pub fn verify(
        &self,
        chain_id: &str,
        validators: &ValidatorSet,
    ) -> Result<Block, ConsensusError> {
        let bad = |m: String| Err(ConsensusError::BadParts(m));
        let Some(proposer) = validators.get(&self.init.proposer) else {
            return bad(format!("{} is not a validator", self.init.proposer));
        };
        let digest = Hash::sha256(&self.block_bytes);
        proposer
            .public_key
            .verify(
                &parts_sign_bytes(chain_id, &self.init, &digest),
                &self.fin.signature,
            )
            .map_err(|_| {
                ConsensusError::BadParts(format!("the signature is not {}'s", self.init.proposer))
            })?;
        let block = Block::from_bytes(&self.block_bytes)?;
        if block.hash() != self.init.block_hash {
            return bad("the block hash is not the announced one".into());
        }
        if block.header.height != self.init.height {
            return bad(format!(
                "block height {} is not the announced {}",
                block.header.height, self.init.height
            ));
        }
        if block.header.proposer != self.init.proposer {
            return bad(format!(
                "the block names {} as proposer, the parts {}",
                block.header.proposer, self.init.proposer
            ));
        }
        Ok(block)
    }

    /// The proposal's height.
    pub fn height(&self) -> Height {
        Height(self.init.height)
    }

    /// The proposer.
    pub fn proposer(&self) -> ValidatorAddress {
        ValidatorAddress(self.init.proposer)
    }
}

/// One stream being reassembled.
#[derive(Default)]
struct OpenStream {
    /// Parts by sequence number.
    parts: BTreeMap<u64, ProposalPart>,
    /// Sequence number of the end of the stream, once seen.
    end: Option<u64>,
    /// Bytes held.
    bytes: usize,
}

/// Reassembles proposal streams (see the module documentation).
#[derive(Default)]
pub struct PartStreams {
    streams: HashMap<(PeerId, StreamId), OpenStream>,
    /// Streams in the order they were opened (oldest first), for eviction.
    order: VecDeque<(PeerId, StreamId)>,
    bytes: usize,
}

fn part_size(p: &ProposalPart) -> usize {
    match p {
        ProposalPart::Data(d) => d.bytes.len() + 8,
        _ => 128,
    }
}

impl PartStreams {
    /// An empty reassembler.
    pub fn new() -> PartStreams {
        PartStreams::default()
    }

    /// Number of streams being reassembled.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether no stream is being reassembled.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Adds a message of the stream `stream_id` published by `publisher`. Returns the
    /// stream's parts in order once every message up to the end of the stream is there.
    /// Messages beyond the bounds are dropped (with the stream they belong to).
    pub fn insert(
        &mut self,
        publisher: PeerId,
        msg: StreamMessage<ProposalPart>,
    ) -> Option<Vec<ProposalPart>> {
        if msg.sequence >= MAX_STREAM_MESSAGES {
            tracing::debug!(%publisher, seq = msg.sequence, "proposal part beyond the limit");
            self.remove(&(publisher, msg.stream_id));
            return None;
        }
        let key = (publisher, msg.stream_id);
        if !self.streams.contains_key(&key) {
            while self.streams.len() >= MAX_OPEN_STREAMS {
                let Some(oldest) = self.order.pop_front() else {
                    break;
                };
                self.remove(&oldest);
            }
            self.streams.insert(key.clone(), OpenStream::default());
            self.order.push_back(key.clone());
        }
        let added = {
            let stream = self.streams.get_mut(&key)?;
            match msg.content {
                StreamContent::Fin => {
                    stream.end = Some(msg.sequence);
                    0
                }
                StreamContent::Data(part) => {
                    let size = part_size(&part);
                    if stream.parts.insert(msg.sequence, part).is_some() {
                        // A duplicate replaces the earlier copy; count it once.
                        0
                    } else {
                        stream.bytes += size;
                        size
                    }
                }
            }
        };
        self.bytes += added;
        if self.streams.get(&key).is_some_and(|s| {
            s.bytes > MAX_BLOCK_BYTES + (MAX_STREAM_MESSAGES as usize) * 128
                || s.end.is_some_and(|e| s.parts.keys().any(|k| *k >= e))
        }) {
            tracing::debug!(publisher = %key.0, "dropping an oversized or inconsistent stream");
            self.remove(&key);
            return None;
        }
        while self.bytes > MAX_BUFFERED_BYTES {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.remove(&oldest);
        }
        let complete = self
            .streams
            .get(&key)
            .is_some_and(|s| s.end.is_some_and(|e| s.parts.len() as u64 == e));
        if !complete {
            return None;
        }
        let stream = self.remove(&key)?;
        Some(stream.parts.into_values().collect())
    }

    fn remove(&mut self, key: &(PeerId, StreamId)) -> Option<OpenStream> {
        let s = self.streams.remove(key)?;
        self.bytes = self.bytes.saturating_sub(s.bytes);
        self.order.retain(|k| k != key);
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustedge_types::{BlockHeader, Validator};

    fn setup(txs_bytes: usize) -> (Keypair, ValidatorSet, Block) {
        let k = Keypair::from_seed([5; 32]);
        let vs = ValidatorSet::new(vec![Validator {
            name: "v".into(),
            address: Address::of_member(&k.public()),
            public_key: k.public(),
            power: 1,
        }])
        .unwrap();
        let header = BlockHeader {
            chain_id: "c".into(),
            height: 7,
            time_ms: 1,
            prev_hash: Hash::ZERO,
            tx_root: Hash::ZERO,
            state_root: Hash::ZERO,
            results_root: Hash::ZERO,
            validator_set_hash: vs.hash(),
            proposer: Address::of_member(&k.public()),
        };
        let mut block = Block {
            header,
            txs: vec![],
        };
        // Pad the header's chain id to get a block of roughly the wanted size.
        block.header.chain_id = "c".repeat(txs_bytes.max(1));
        (k, vs, block)
    }

    fn peer() -> PeerId {
        let k =
            arc_malachitebft_app_channel::app::types::Keypair::ed25519_from_bytes([7; 32]).unwrap();
        PeerId::from_bytes(&k.public().to_peer_id().to_bytes()).unwrap()
    }

    #[test]
    fn round_trip_through_shuffled_streams() {
        let (k, vs, block) = setup(3 * PART_DATA_BYTES + 17);
        let sp = SignedProposal::sign(&block.header.chain_id, &k, 2, None, &block).unwrap();
        assert_eq!(sp.init.chunks, 4);
        let id = StreamId::new(vec![1, 2, 3].into());
        let mut msgs = sp.stream(&id);
        msgs.reverse();
        let mut streams = PartStreams::new();
        let p = peer();
        let n = msgs.len();
        let mut out = None;
        for (i, m) in msgs.into_iter().enumerate() {
            let r = streams.insert(p, m);
            if i + 1 < n {
                assert!(r.is_none());
            } else {
                out = r;
            }
        }
        let parts = out.unwrap();
        let back = SignedProposal::assemble(parts).unwrap();
        assert_eq!(back, sp);
        assert_eq!(back.verify(&block.header.chain_id, &vs).unwrap(), block);
        assert!(streams.is_empty());
    }

    #[test]
    fn tampered_parts_are_refused() {
        let (k, vs, block) = setup(PART_DATA_BYTES + 1);
        let chain = block.header.chain_id.clone();
        let sp = SignedProposal::sign(&chain, &k, 0, None, &block).unwrap();
        // A changed byte breaks the signature.
        let mut parts = sp.parts();
        if let ProposalPart::Data(d) = &mut parts[1] {
            d.bytes[0] ^= 1;
        }
        let bad = SignedProposal::assemble(parts).unwrap();
        assert!(bad.verify(&chain, &vs).is_err());
        // A changed round breaks it too.
        let mut moved = sp.clone();
        moved.init.round = 1;
        assert!(moved.verify(&chain, &vs).is_err());
        // Another chain's signature does not verify here.
        assert!(sp.verify("other", &vs).is_err());
        // A missing chunk, reordered chunks or a missing fin do not assemble.
        let mut parts = sp.parts();
        parts.remove(1);
        assert!(SignedProposal::assemble(parts).is_err());
        let mut parts = sp.parts();
        parts.swap(1, 2);
        assert!(SignedProposal::assemble(parts).is_err());
        let mut parts = sp.parts();
        parts.pop();
        assert!(SignedProposal::assemble(parts).is_err());
        // A signer outside the set is refused.
        let other = Keypair::from_seed([6; 32]);
        let forged = SignedProposal::sign(&chain, &other, 0, None, &block).unwrap();
        assert!(forged.verify(&chain, &vs).is_err());
    }

    #[test]
    fn streams_are_bounded() {
        let mut streams = PartStreams::new();
        let p = peer();
        for i in 0..(MAX_OPEN_STREAMS as u64 + 10) {
            let id = StreamId::new(i.to_be_bytes().to_vec().into());
            let m = StreamMessage::new(
                id,
                1,
                StreamContent::Data(ProposalPart::Fin(ProposalFin {
                    signature: Signature([0; 64]),
                })),
            );
            assert!(streams.insert(p, m).is_none());
        }
        assert_eq!(streams.len(), MAX_OPEN_STREAMS);
        let far = StreamMessage::new(
            StreamId::new(vec![9].into()),
            MAX_STREAM_MESSAGES,
            StreamContent::Fin,
        );
        assert!(streams.insert(p, far).is_none());
    }
}
