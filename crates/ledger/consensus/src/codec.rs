//! The wire and write-ahead-log encoding of every consensus message: Borsh, through plain
//! wire structs, with a size limit per message kind.
//!
//! Decoding is total: any bytes give a message or a [`ConsensusError::Decode`], never a
//! panic. The input is refused before parsing if it is over the kind's limit
//! ([`trustedge_types::decode`]), trailing bytes are refused, and collections are bounded
//! after parsing (signatures by [`MAX_VALIDATORS`], sync responses by
//! [`MAX_SYNC_VALUES`]). Rounds that must be defined (votes, proposals, certificates) are
//! `u32` on the wire, so a nil round cannot be smuggled in; optional rounds are
//! `Option<u32>`. Vote extensions are not carried: TrustEdge runs with extensions disabled.

use arc_malachitebft_app_channel::app::consensus::LivenessMsg;
use arc_malachitebft_app_channel::app::streaming::{StreamContent, StreamId, StreamMessage};
use arc_malachitebft_app_channel::app::types::codec::{Codec, HasEncodedLen};
use arc_malachitebft_app_channel::app::types::core::{
    ExtendedCommitCertificate, ExtendedCommitSignature, NilOrVal, PolkaCertificate, PolkaSignature,
    Round, RoundCertificate, RoundCertificateType, RoundSignature, SignedMessage, ValidatorProof,
    Validity, VoteType,
};
use arc_malachitebft_app_channel::app::types::sync::{RawDecidedValue, Request, Response, Status};
use arc_malachitebft_app_channel::app::types::{PeerId, ProposedValue, SignedConsensusMsg};
use borsh::{BorshDeserialize, BorshSerialize};
use bytes::Bytes;
use trustedge_types::block::{MAX_BLOCK_BYTES, MAX_VALIDATORS};
use trustedge_types::{Address, Hash, Signature, decode, encode};

use crate::context::{BlockHash, Height, LedgerContext, Proposal, ValidatorAddress, Vote};
use crate::error::ConsensusError;
use crate::parts::{PART_DATA_BYTES, ProposalPart};
use crate::signing::ConsensusSignature;

/// Largest vote or proposal message.
pub const MAX_CONSENSUS_MSG_BYTES: usize = 4 * 1024;
/// Largest liveness message (a vote or a certificate of up to [`MAX_VALIDATORS`] signatures).
pub const MAX_LIVENESS_MSG_BYTES: usize = 64 * 1024;
/// Largest proposal part (a chunk and its framing).
pub const MAX_PART_MSG_BYTES: usize = PART_DATA_BYTES + 1024;
/// Largest stream id.
pub const MAX_STREAM_ID_BYTES: usize = 64;
/// Largest validator proof and sync status.
pub const MAX_SMALL_MSG_BYTES: usize = 1024;
/// Most decided values in one sync response.
pub const MAX_SYNC_VALUES: usize = 64;
/// Largest sync response: one maximal block, its certificate and framing. Responses are cut
/// to this size by the engine (through [`HasEncodedLen`]), so a response with several blocks
/// holds small ones.
pub const MAX_SYNC_RESPONSE_BYTES: usize = MAX_BLOCK_BYTES + 1024 * 1024;

/// The codec of every consensus, sync and WAL message.
#[derive(Clone, Copy, Debug, Default)]
pub struct LedgerCodec;

fn dec<T: BorshDeserialize>(
    what: &'static str,
    bytes: &[u8],
    limit: usize,
) -> Result<T, ConsensusError> {
    decode(bytes, limit).map_err(|e| ConsensusError::Decode {
        what,
        reason: e.to_string(),
    })
}

fn bad(what: &'static str, reason: impl Into<String>) -> ConsensusError {
    ConsensusError::Decode {
        what,
        reason: reason.into(),
    }
}

fn unencodable(what: &'static str, reason: impl Into<String>) -> ConsensusError {
    ConsensusError::Encode {
        what,
        reason: reason.into(),
    }
}

fn defined(what: &'static str, r: Round) -> Result<u32, ConsensusError> {
    r.as_u32()
        .ok_or_else(|| unencodable(what, "round is nil where it must be defined"))
}

fn opt_round(r: Round) -> Option<u32> {
    r.as_u32()
}

fn round_of(r: Option<u32>) -> Round {
    r.map_or(Round::Nil, Round::new)
}

fn vote_type_byte(t: VoteType) -> u8 {
    match t {
        VoteType::Prevote => 0,
        VoteType::Precommit => 1,
    }
}

fn vote_type_of(what: &'static str, b: u8) -> Result<VoteType, ConsensusError> {
    match b {
        0 => Ok(VoteType::Prevote),
        1 => Ok(VoteType::Precommit),
        other => Err(bad(what, format!("unknown vote type {other}"))),
    }
}

fn nil_or(v: &NilOrVal<BlockHash>) -> Option<Hash> {
    match v {
        NilOrVal::Nil => None,
        NilOrVal::Val(h) => Some(h.0),
    }
}

fn nil_or_val(v: Option<Hash>) -> NilOrVal<BlockHash> {
    v.map_or(NilOrVal::Nil, |h| NilOrVal::Val(BlockHash(h)))
}

fn check_signers(what: &'static str, n: usize) -> Result<(), ConsensusError> {
    if n > MAX_VALIDATORS {
        return Err(bad(what, format!("{n} signatures, over {MAX_VALIDATORS}")));
    }
    Ok(())
}

// ------------------------------------------------------------------ wire structs

#[derive(BorshSerialize, BorshDeserialize)]
struct WireVote {
    vote_type: u8,
    height: u64,
    round: u32,
    value: Option<Hash>,
    validator: Address,
    signature: Signature,
}

impl WireVote {
    fn of(v: &SignedMessage<LedgerContext, Vote>) -> Result<WireVote, ConsensusError> {
        Ok(WireVote {
            vote_type: vote_type_byte(v.message.vote_type),
            height: v.message.height.0,
            round: defined("vote", v.message.round)?,
            value: nil_or(&v.message.value),
            validator: v.message.validator.0,
            signature: v.signature.0,
        })
    }

    fn into_vote(self) -> Result<SignedMessage<LedgerContext, Vote>, ConsensusError> {
        Ok(SignedMessage::new(
            Vote {
                vote_type: vote_type_of("vote", self.vote_type)?,
                height: Height(self.height),
                round: Round::new(self.round),
                value: nil_or_val(self.value),
                validator: ValidatorAddress(self.validator),
                extension: None,
            },
            ConsensusSignature(self.signature),
        ))
    }
}

#[derive(BorshSerialize, BorshDeserialize)]
struct WireProposal {
    height: u64,
    round: u32,
    value: Hash,
    pol_round: Option<u32>,
    proposer: Address,
    signature: Signature,
}

#[derive(BorshSerialize, BorshDeserialize)]
enum WireConsensusMsg {
    Vote(WireVote),
    Proposal(WireProposal),
}

#[derive(BorshSerialize, BorshDeserialize)]
struct WireCert {
    height: u64,
    round: u32,
    value: Hash,
    signatures: Vec<(Address, Signature)>,
}

#[derive(BorshSerialize, BorshDeserialize)]
struct WireRoundSig {
    vote_type: u8,
    value: Option<Hash>,
    validator: Address,
    signature: Signature,
}

#[derive(BorshSerialize, BorshDeserialize)]
struct WireRoundCert {
    height: u64,
    round: u32,
    /// 0: skip (f+1 votes of the round), 1: precommit (2f+1 precommits of the previous round).
    cert_type: u8,
    signatures: Vec<WireRoundSig>,
}

#[derive(BorshSerialize, BorshDeserialize)]
enum WireLiveness {
    Vote(WireVote),
    Polka(WireCert),
    Skip(WireRoundCert),
}

#[derive(BorshSerialize, BorshDeserialize)]
struct WireStreamMessage {
    stream_id: Vec<u8>,
    sequence: u64,
    /// `None` marks the end of the stream.
    part: Option<ProposalPart>,
}

#[derive(BorshSerialize, BorshDeserialize)]
struct WireProof {
    public_key: Vec<u8>,
    peer_id: Vec<u8>,
    signature: Signature,
}

#[derive(BorshSerialize, BorshDeserialize)]
struct WireStatus {
    peer_id: Vec<u8>,
    tip_height: u64,
    history_min_height: u64,
}

#[derive(BorshSerialize, BorshDeserialize)]
struct WireRequest {
    from: u64,
    to: u64,
}

#[derive(BorshSerialize, BorshDeserialize)]
struct WireDecided {
    value_bytes: Vec<u8>,
    certificate: WireCert,
}

#[derive(BorshSerialize, BorshDeserialize)]
struct WireResponse {
    start_height: u64,
    values: Vec<WireDecided>,
}

#[derive(BorshSerialize, BorshDeserialize)]
struct WireProposedValue {
    height: u64,
    round: Option<u32>,
    valid_round: Option<u32>,
    proposer: Address,
    value: Hash,
    valid: bool,
}

// ------------------------------------------------------------------ conversions

fn proposal_to_wire(
    p: &SignedMessage<LedgerContext, Proposal>,
) -> Result<WireProposal, ConsensusError> {
    Ok(WireProposal {
        height: p.message.height.0,
        round: defined("proposal", p.message.round)?,
        value: p.message.value.0,
        pol_round: opt_round(p.message.pol_round),
        proposer: p.message.proposer.0,
        signature: p.signature.0,
    })
}

fn proposal_of_wire(w: WireProposal) -> SignedMessage<LedgerContext, Proposal> {
    SignedMessage::new(
        Proposal {
            height: Height(w.height),
            round: Round::new(w.round),
            value: BlockHash(w.value),
            pol_round: round_of(w.pol_round),
            proposer: ValidatorAddress(w.proposer),
        },
        ConsensusSignature(w.signature),
    )
}

fn polka_to_wire(c: &PolkaCertificate<LedgerContext>) -> Result<WireCert, ConsensusError> {
    Ok(WireCert {
        height: c.height.0,
        round: defined("polka certificate", c.round)?,
        value: c.value_id.0,
        signatures: c
            .polka_signatures
            .iter()
            .map(|s| (s.address.0, s.signature.0))
            .collect(),
    })
}

fn polka_of_wire(w: WireCert) -> Result<PolkaCertificate<LedgerContext>, ConsensusError> {
    check_signers("polka certificate", w.signatures.len())?;
    Ok(PolkaCertificate {
        height: Height(w.height),
        round: Round::new(w.round),
        value_id: BlockHash(w.value),
        polka_signatures: w
            .signatures
            .into_iter()
            .map(|(a, s)| PolkaSignature::new(ValidatorAddress(a), ConsensusSignature(s)))
            .collect(),
    })
}

fn round_cert_to_wire(
    c: &RoundCertificate<LedgerContext>,
) -> Result<WireRoundCert, ConsensusError> {
    Ok(WireRoundCert {
        height: c.height.0,
        round: defined("round certificate", c.round)?,
        cert_type: match c.cert_type {
            RoundCertificateType::Skip => 0,
            RoundCertificateType::Precommit => 1,
        },
        signatures: c
            .round_signatures
            .iter()
            .map(|s| WireRoundSig {
                vote_type: vote_type_byte(s.vote_type),
                value: nil_or(&s.value_id),
                validator: s.address.0,
                signature: s.signature.0,
            })
            .collect(),
    })
}

fn round_cert_of_wire(w: WireRoundCert) -> Result<RoundCertificate<LedgerContext>, ConsensusError> {
    const WHAT: &str = "round certificate";
    check_signers(WHAT, w.signatures.len())?;
    let cert_type = match w.cert_type {
        0 => RoundCertificateType::Skip,
        1 => RoundCertificateType::Precommit,
        other => return Err(bad(WHAT, format!("unknown certificate type {other}"))),
    };
    let mut sigs = Vec::with_capacity(w.signatures.len());
    for s in w.signatures {
        sigs.push(RoundSignature::new(
            vote_type_of(WHAT, s.vote_type)?,
            nil_or_val(s.value),
            ValidatorAddress(s.validator),
            ConsensusSignature(s.signature),
        ));
    }
    Ok(RoundCertificate {
        height: Height(w.height),
        round: Round::new(w.round),
        cert_type,
        round_signatures: sigs,
    })
}

fn commit_cert_to_wire(
    c: &ExtendedCommitCertificate<LedgerContext>,
) -> Result<WireCert, ConsensusError> {
    const WHAT: &str = "commit certificate";
    let mut signatures = Vec::with_capacity(c.commit_signatures.len());
    for s in &c.commit_signatures {
        if s.extension.is_some() {
            return Err(unencodable(WHAT, "vote extensions are disabled"));
        }
        signatures.push((s.address.0, s.signature.0));
    }
    Ok(WireCert {
        height: c.height.0,
        round: defined(WHAT, c.round)?,
        value: c.value_id.0,
        signatures,
    })
}

fn commit_cert_of_wire(
    w: WireCert,
) -> Result<ExtendedCommitCertificate<LedgerContext>, ConsensusError> {
    check_signers("commit certificate", w.signatures.len())?;
    Ok(ExtendedCommitCertificate {
        height: Height(w.height),
        round: Round::new(w.round),
        value_id: BlockHash(w.value),
        commit_signatures: w
            .signatures
            .into_iter()
            .map(|(a, s)| {
                ExtendedCommitSignature::new(ValidatorAddress(a), ConsensusSignature(s), None)
            })
            .collect(),
    })
}

// ------------------------------------------------------------------ Codec impls

macro_rules! codec_impl {
    ($t:ty, |$bytes:ident| $dec:block, |$msg:ident| $enc:block) => {
        impl Codec<$t> for LedgerCodec {
            type Error = ConsensusError;

            fn decode(&self, $bytes: Bytes) -> Result<$t, ConsensusError> {
                $dec
            }

            fn encode(&self, $msg: &$t) -> Result<Bytes, ConsensusError> {
                $enc
            }
        }
    };
}

codec_impl!(
    ProposalPart,
    |bytes| { dec("proposal part", &bytes, MAX_PART_MSG_BYTES) },
    |msg| { Ok(Bytes::from(encode(msg))) }
);

codec_impl!(
    SignedConsensusMsg<LedgerContext>,
    |bytes| {
        const WHAT: &str = "consensus message";
        Ok(
            match dec::<WireConsensusMsg>(WHAT, &bytes, MAX_CONSENSUS_MSG_BYTES)? {
                WireConsensusMsg::Vote(v) => SignedConsensusMsg::Vote(v.into_vote()?),
                WireConsensusMsg::Proposal(p) => SignedConsensusMsg::Proposal(proposal_of_wire(p)),
            },
        )
    },
    |msg| {
        let w = match msg {
            SignedConsensusMsg::Vote(v) => WireConsensusMsg::Vote(WireVote::of(v)?),
            SignedConsensusMsg::Proposal(p) => WireConsensusMsg::Proposal(proposal_to_wire(p)?),
        };
        Ok(Bytes::from(encode(&w)))
    }
);

codec_impl!(
    LivenessMsg<LedgerContext>,
    |bytes| {
        Ok(
            match dec::<WireLiveness>("liveness message", &bytes, MAX_LIVENESS_MSG_BYTES)? {
                WireLiveness::Vote(v) => LivenessMsg::Vote(v.into_vote()?),
                WireLiveness::Polka(c) => LivenessMsg::PolkaCertificate(polka_of_wire(c)?),
                WireLiveness::Skip(c) => LivenessMsg::SkipRoundCertificate(round_cert_of_wire(c)?),
            },
        )
    },
    |msg| {
        let w = match msg {
            LivenessMsg::Vote(v) => WireLiveness::Vote(WireVote::of(v)?),
            LivenessMsg::PolkaCertificate(c) => WireLiveness::Polka(polka_to_wire(c)?),
            LivenessMsg::SkipRoundCertificate(c) => WireLiveness::Skip(round_cert_to_wire(c)?),
        };
        Ok(Bytes::from(encode(&w)))
    }
);

codec_impl!(
    StreamMessage<ProposalPart>,
    |bytes| {
        const WHAT: &str = "proposal stream message";
        let w: WireStreamMessage = dec(WHAT, &bytes, MAX_PART_MSG_BYTES + MAX_STREAM_ID_BYTES)?;
        if w.stream_id.len() > MAX_STREAM_ID_BYTES {
            return Err(bad(WHAT, "stream id too long"));
        }
        let content = match w.part {
            Some(p) => StreamContent::Data(p),
            None => StreamContent::Fin,
        };
        Ok(StreamMessage::new(
            StreamId::new(Bytes::from(w.stream_id)),
            w.sequence,
            content,
        ))
    },
    |msg| {
        let w = WireStreamMessage {
            stream_id: msg.stream_id.to_bytes().to_vec(),
            sequence: msg.sequence,
            part: match &msg.content {
                StreamContent::Data(p) => Some(p.clone()),
                StreamContent::Fin => None,
            },
        };
        Ok(Bytes::from(encode(&w)))
    }
);

codec_impl!(
    ValidatorProof<LedgerContext>,
    |bytes| {
        const WHAT: &str = "validator proof";
        let w: WireProof = dec(WHAT, &bytes, MAX_SMALL_MSG_BYTES)?;
        Ok(ValidatorProof::new(
            w.public_key,
            w.peer_id,
            ConsensusSignature(w.signature),
        ))
    },
    |msg| {
        Ok(Bytes::from(encode(&WireProof {
            public_key: msg.public_key.clone(),
            peer_id: msg.peer_id.clone(),
            signature: msg.signature.0,
        })))
    }
);

codec_impl!(
    Status<LedgerContext>,
    |bytes| {
        const WHAT: &str = "sync status";
        let w: WireStatus = dec(WHAT, &bytes, MAX_SMALL_MSG_BYTES)?;
        let peer_id = PeerId::from_bytes(&w.peer_id).map_err(|e| bad(WHAT, e.to_string()))?;
        Ok(Status {
            peer_id,
            tip_height: Height(w.tip_height),
            history_min_height: Height(w.history_min_height),
        })
    },
    |msg| {
        Ok(Bytes::from(encode(&WireStatus {
            peer_id: msg.peer_id.to_bytes(),
            tip_height: msg.tip_height.0,
            history_min_height: msg.history_min_height.0,
        })))
    }
);

codec_impl!(
    Request<LedgerContext>,
    |bytes| {
        let w: WireRequest = dec("sync request", &bytes, MAX_SMALL_MSG_BYTES)?;
        // An inverted range is an empty request; the application answers it with nothing.
        Ok(Request::ValueRequest(
            arc_malachitebft_sync::ValueRequest::new(Height(w.from)..=Height(w.to)),
        ))
    },
    |msg| {
        let Request::ValueRequest(r) = msg;
        Ok(Bytes::from(encode(&WireRequest {
            from: r.range.start().0,
            to: r.range.end().0,
        })))
    }
);

fn response_to_wire(msg: &Response<LedgerContext>) -> Result<WireResponse, ConsensusError> {
    let Response::ValueResponse(r) = msg;
    let mut values = Vec::with_capacity(r.values.len());
    for v in &r.values {
        values.push(WireDecided {
            value_bytes: v.value_bytes.to_vec(),
            certificate: commit_cert_to_wire(&v.certificate)?,
        });
    }
    Ok(WireResponse {
        start_height: r.start_height.0,
        values,
    })
}

codec_impl!(
    Response<LedgerContext>,
    |bytes| {
        const WHAT: &str = "sync response";
        let w: WireResponse = dec(WHAT, &bytes, MAX_SYNC_RESPONSE_BYTES)?;
        if w.values.len() > MAX_SYNC_VALUES {
            return Err(bad(
                WHAT,
                format!("{} values, over {MAX_SYNC_VALUES}", w.values.len()),
            ));
        }
        let mut values = Vec::with_capacity(w.values.len());
        for v in w.values {
            if v.value_bytes.len() > MAX_BLOCK_BYTES {
                return Err(bad(WHAT, "a block over the size limit"));
            }
            values.push(RawDecidedValue::new(
                Bytes::from(v.value_bytes),
                commit_cert_of_wire(v.certificate)?,
            ));
        }
        Ok(Response::ValueResponse(
            arc_malachitebft_sync::ValueResponse::new(Height(w.start_height), values),
        ))
    },
    |msg| { Ok(Bytes::from(encode(&response_to_wire(msg)?))) }
);

impl HasEncodedLen<Response<LedgerContext>> for LedgerCodec {
    fn encoded_len(&self, msg: &Response<LedgerContext>) -> Result<usize, ConsensusError> {
        // Exact, by encoding; responses are built rarely and sized once.
        Ok(encode(&response_to_wire(msg)?).len())
    }
}

codec_impl!(
    ProposedValue<LedgerContext>,
    |bytes| {
        let w: WireProposedValue = dec("proposed value", &bytes, MAX_SMALL_MSG_BYTES)?;
        Ok(ProposedValue {
            height: Height(w.height),
            round: round_of(w.round),
            valid_round: round_of(w.valid_round),
            proposer: ValidatorAddress(w.proposer),
            value: BlockHash(w.value),
            validity: Validity::from_bool(w.valid),
        })
    },
    |msg| {
        Ok(Bytes::from(encode(&WireProposedValue {
            height: msg.height.0,
            round: opt_round(msg.round),
            valid_round: opt_round(msg.valid_round),
            proposer: msg.proposer.0,
            value: msg.value.0,
            valid: msg.validity.is_valid(),
        })))
    }
);

codec_impl!(
    PolkaCertificate<LedgerContext>,
    |bytes| { polka_of_wire(dec("polka certificate", &bytes, MAX_LIVENESS_MSG_BYTES)?) },
    |msg| { Ok(Bytes::from(encode(&polka_to_wire(msg)?))) }
);

#[cfg(test)]
mod tests {
    use super::*;
    use arc_malachitebft_app_channel::app::types::core::Context as _;

    fn vote() -> SignedMessage<LedgerContext, Vote> {
        let ctx = LedgerContext::new("c");
        SignedMessage::new(
            ctx.new_precommit(
                Height(3),
                Round::new(1),
                NilOrVal::Val(BlockHash(Hash([7; 32]))),
                ValidatorAddress(Address([1; 20])),
            ),
            ConsensusSignature(Signature([9; 64])),
        )
    }

    #[test]
    fn messages_round_trip() {
        let c = LedgerCodec;
        let m = SignedConsensusMsg::Vote(vote());
        let b = Codec::<SignedConsensusMsg<LedgerContext>>::encode(&c, &m).unwrap();
        let back: SignedConsensusMsg<LedgerContext> = c.decode(b).unwrap();
        assert_eq!(back, m);

        let cert = ExtendedCommitCertificate::<LedgerContext> {
            height: Height(3),
            round: Round::new(1),
            value_id: BlockHash(Hash([7; 32])),
            commit_signatures: vec![ExtendedCommitSignature::new(
                ValidatorAddress(Address([1; 20])),
                ConsensusSignature(Signature([9; 64])),
                None,
            )],
        };
        let r = Response::ValueResponse(arc_malachitebft_sync::ValueResponse::new(
            Height(3),
            vec![RawDecidedValue::new(Bytes::from_static(b"block"), cert)],
        ));
        let b = Codec::<Response<LedgerContext>>::encode(&c, &r).unwrap();
        assert_eq!(c.encoded_len(&r).unwrap(), b.len());
        let back: Response<LedgerContext> = c.decode(b).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn nil_rounds_do_not_encode_where_they_must_be_defined() {
        let mut v = vote();
        v.message.round = Round::Nil;
        let m = SignedConsensusMsg::Vote(v);
        assert!(Codec::<SignedConsensusMsg<LedgerContext>>::encode(&LedgerCodec, &m).is_err());
    }

    #[test]
    fn oversized_and_garbage_inputs_are_errors() {
        let c = LedgerCodec;
        let big = Bytes::from(vec![0u8; MAX_CONSENSUS_MSG_BYTES + 1]);
        assert!(Codec::<SignedConsensusMsg<LedgerContext>>::decode(&c, big).is_err());
        // Every prefix of a valid message and a few bit flips decode to an error or a
        // message, never a panic.
        let m = SignedConsensusMsg::Vote(vote());
        let b = Codec::<SignedConsensusMsg<LedgerContext>>::encode(&c, &m).unwrap();
        for n in 0..b.len() {
            assert!(Codec::<SignedConsensusMsg<LedgerContext>>::decode(&c, b.slice(..n)).is_err());
        }
        let mut flipped = b.to_vec();
        flipped[1] = 9; // vote type
        assert!(
            Codec::<SignedConsensusMsg<LedgerContext>>::decode(&c, Bytes::from(flipped)).is_err()
        );
        let mut long = b.to_vec();
        long.push(0);
        assert!(Codec::<SignedConsensusMsg<LedgerContext>>::decode(&c, Bytes::from(long)).is_err());
    }

    /// A little deterministic fuzzing: random bytes and bit flips of valid encodings decode
    /// to a message or an error for every message kind, never a panic.
    #[test]
    fn decoders_are_total() {
        fn all(c: &LedgerCodec, b: &Bytes) {
            let _ = Codec::<ProposalPart>::decode(c, b.clone());
            let _ = Codec::<SignedConsensusMsg<LedgerContext>>::decode(c, b.clone());
            let _ = Codec::<LivenessMsg<LedgerContext>>::decode(c, b.clone());
            let _ = Codec::<StreamMessage<ProposalPart>>::decode(c, b.clone());
            let _ = Codec::<ValidatorProof<LedgerContext>>::decode(c, b.clone());
            let _ = Codec::<Status<LedgerContext>>::decode(c, b.clone());
            let _ = Codec::<Request<LedgerContext>>::decode(c, b.clone());
            let _ = Codec::<Response<LedgerContext>>::decode(c, b.clone());
            let _ = Codec::<ProposedValue<LedgerContext>>::decode(c, b.clone());
            let _ = Codec::<PolkaCertificate<LedgerContext>>::decode(c, b.clone());
        }
        let c = LedgerCodec;
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let len = (next() % 300) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            all(&c, &Bytes::from(bytes));
        }
        let valid = Codec::<SignedConsensusMsg<LedgerContext>>::encode(
            &c,
            &SignedConsensusMsg::Vote(vote()),
        )
        .unwrap();
        for _ in 0..2000 {
            let mut b = valid.to_vec();
            let i = (next() as usize) % b.len();
            b[i] ^= 1 << (next() % 8);
            all(&c, &Bytes::from(b));
        }
        // A huge length prefix does not allocate its claim.
        let mut huge = vec![0u8; 16];
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        all(&c, &Bytes::from(huge));
    }
}
