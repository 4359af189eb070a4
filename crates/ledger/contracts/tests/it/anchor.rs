//! Anchoring: duplicates, overlaps, adjacency, proofs, and the range index against a model.

use proptest::prelude::*;
use trustedge_contracts::anchor::{MAX_FUTURE_SKEW_MS, batch, batch_by_root};
use trustedge_contracts::{
    AnchorCall, AnchorError, AnchorRecord, record_leaf, verify_record_anchored,
};
use trustedge_execution::Role;
use trustedge_types::{Address, Hash, Keypair, MerkleTree, Payload};

use crate::harness::*;

const T0: u64 = GENESIS_TIME_MS;

fn edge() -> Keypair {
    member("edge-operator", Role::Operator)
}

fn call(record_type: &str, root: Hash, count: u64, from: u64, to: u64) -> Payload {
    anchor(AnchorCall::AnchorBatch {
        record_type: record_type.into(),
        merkle_root: root,
        count,
        from_ms: from,
        to_ms: to,
    })
}

fn root(label: &str) -> Hash {
    Hash::sha256(label.as_bytes())
}

fn records(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{{\"seq\":{i},\"rssi\":-6{}}}", i % 10).into_bytes())
        .collect()
}

fn tree_of(records: &[Vec<u8>]) -> MerkleTree {
    MerkleTree::from_leaves(records.iter().map(|r| record_leaf(r).0))
}

#[test]
fn duplicates_and_overlaps_are_refused_adjacent_ranges_accepted() {
    let mut net = Net::new(&matrix_genesis());
    let e = edge();
    let r = net.ok(
        &e,
        call("contact_event", root("a"), 10, T0 + 1000, T0 + 1999),
    );
    let ev = &r.events[0];
    assert_eq!(
        (ev.module.as_str(), ev.kind.as_str()),
        ("anchor", "batch_anchored")
    );
    assert_eq!(
        ev.attr("edge"),
        Some(Address::of_member(&e.public()).to_string().as_str())
    );
    assert_eq!(ev.attr("count"), Some("10"));

    // the same root again: by the same edge, another range, another edge or type
    for (signer, ty, from, to) in [
        (e.clone(), "contact_event", T0 + 5000, T0 + 6000),
        (
            member("edge-operator", Role::Admin),
            "contact_event",
            T0 + 1000,
            T0 + 1999,
        ),
        (e.clone(), "air_quality", T0, T0 + 10),
    ] {
        let r = net.fails(&signer, call(ty, root("a"), 10, from, to), "already_exists");
        assert!(message(&r).contains("already anchored"), "{}", message(&r));
    }
    // overlapping ranges of the same edge and type, each with a fresh root
    for (i, (from, to)) in [
        (1500, 2500), // overlaps the end
        (0, 1000),    // touches the first millisecond
        (1999, 1999), // the last millisecond
        (1200, 1300), // inside
        (0, 9000),    // contains it
    ]
    .into_iter()
    .enumerate()
    {
        let r = net.fails(
            &e,
            call(
                "contact_event",
                root(&format!("o{i}")),
                1,
                T0 + from,
                T0 + to,
            ),
            "conflict",
        );
        assert!(message(&r).contains("overlaps"), "{}", message(&r));
    }
    // adjacent ranges, before and after
    net.ok(
        &e,
        call("contact_event", root("b"), 1, T0 + 2000, T0 + 2999),
    );
    net.ok(&e, call("contact_event", root("c"), 1, T0, T0 + 999));
    // after the two adjacent ones, something spanning all is still refused
    net.fails(
        &e,
        call("contact_event", root("d"), 1, T0 + 500, T0 + 2500),
        "conflict",
    );
    // the same range is free for another record type and for another edge
    net.ok(&e, call("air_quality", root("e"), 1, T0 + 1000, T0 + 1999));
    net.ok(
        &member("edge-operator", Role::Admin),
        call("contact_event", root("f"), 1, T0 + 1000, T0 + 1999),
    );
}

#[test]
fn arguments_are_validated() {
    let mut net = Net::new(&matrix_genesis());
    let e = edge();
    for (ty, count, from, to) in [
        ("", 1, T0, T0),
        ("Contact", 1, T0, T0),
        ("contact-event", 1, T0, T0),
        (&"x".repeat(33) as &str, 1, T0, T0),
        ("contact_event", 0, T0, T0),
        ("contact_event", 10_000_001, T0, T0),
        ("contact_event", 1, T0 + 1, T0),
        // ends further in the future than any block time of this test plus the allowed skew
        (
            "contact_event",
            1,
            T0,
            T0 + MAX_FUTURE_SKEW_MS + 100 * BLOCK_MS,
        ),
    ] {
        net.fails(
            &e,
            call(ty, root(&format!("{ty}{count}{from}{to}")), count, from, to),
            "invalid_argument",
        );
    }
    net.ok(
        &e,
        call(
            &"x".repeat(32),
            root("max"),
            10_000_000,
            0,
            u64::from(u32::MAX),
        ),
    );
}

#[test]
fn anchored_records_verify_and_tampering_is_caught() {
    let mut net = Net::new(&matrix_genesis());
    let recs = records(13);
    let tree = tree_of(&recs);
    let r = net.ok(
        &edge(),
        call("contact_event", tree.root(), 13, T0, T0 + 60_000),
    );
    let id = Hash::from_hex(r.events[0].attr("id").unwrap()).unwrap();
    let a: AnchorRecord = batch(&net.state, &id).unwrap().unwrap();
    assert_eq!(
        batch_by_root(&net.state, &tree.root()).unwrap().as_ref(),
        Some(&a)
    );
    assert_eq!(
        (a.count, a.org.as_str(), a.height),
        (13, "edge-operator", net.height)
    );
    assert_eq!(a.edge, Address::of_member(&edge().public()));

    for (i, rec) in recs.iter().enumerate() {
        let proof = tree.proof(i as u64).unwrap();
        verify_record_anchored(rec, &proof, &a).unwrap();
    }
    let proof = tree.proof(4).unwrap();
    // tampered record
    let mut bad = recs[4].clone();
    bad[0] ^= 1;
    assert!(matches!(
        verify_record_anchored(&bad, &proof, &a),
        Err(AnchorError::BadProof(_))
    ));
    // another record with this record's proof
    assert!(matches!(
        verify_record_anchored(&recs[5], &proof, &a),
        Err(AnchorError::BadProof(_))
    ));
    // the raw record (not its leaf) is not what was anchored
    let raw_tree = MerkleTree::from_leaves(&recs);
    assert!(verify_record_anchored(&recs[4], &raw_tree.proof(4).unwrap(), &a).is_err());
    // tampered proof path
    let mut p = proof.clone();
    p.path[1].0[7] ^= 0x10;
    assert!(matches!(
        verify_record_anchored(&recs[4], &p, &a),
        Err(AnchorError::BadProof(_))
    ));
    // wrong tree size in the proof, or a proof of a bigger tree
    let mut p = proof.clone();
    p.tree_size = 12;
    assert_eq!(
        verify_record_anchored(&recs[4], &p, &a),
        Err(AnchorError::CountMismatch {
            proof_tree_size: 12,
            anchor_count: 13
        })
    );
    let bigger = tree_of(&records(14));
    assert!(matches!(
        verify_record_anchored(&recs[4], &bigger.proof(4).unwrap(), &a),
        Err(AnchorError::CountMismatch { .. })
    ));
    // an anchor record altered after reading, in a field its id covers
    let mut forged = a.clone();
    forged.to_ms += 1;
    assert_eq!(
        verify_record_anchored(&recs[4], &proof, &forged),
        Err(AnchorError::IdMismatch)
    );
    // a count altered after reading, with the proof's tree size altered to match: some such
    // proofs still verify against the root (the path does not pin the size), so the id must
    // cover the count
    let tree = tree_of(&recs);
    let mut still_verifying = 0;
    for i in 0..13u64 {
        for size in 1..=20u64 {
            if size == 13 {
                continue;
            }
            let mut p = tree.proof(i).unwrap();
            p.tree_size = size;
            let leaf = trustedge_contracts::record_leaf(&recs[i as usize]);
            if p.verify(&leaf.0, &a.merkle_root).is_ok() {
                still_verifying += 1;
                let mut forged = a.clone();
                forged.count = size;
                assert_eq!(
                    verify_record_anchored(&recs[i as usize], &p, &forged),
                    Err(AnchorError::IdMismatch),
                    "leaf {i} with count {size}"
                );
            }
        }
    }
    assert!(
        still_verifying > 0,
        "no size-ambiguous proof found: the case this guards is untested"
    );
}

#[test]
fn anchor_queries() {
    let mut net = Net::new(&matrix_genesis());
    let e = edge();
    let mut ids = Vec::new();
    for i in 0..5u64 {
        let r = net.ok(
            &e,
            call(
                "contact_event",
                root(&format!("q{i}")),
                1,
                T0 + 10 * i,
                T0 + 10 * i + 9,
            ),
        );
        ids.push(r.events[0].attr("id").unwrap().to_string());
    }
    net.ok(&e, call("air_quality", root("aq"), 1, T0, T0));
    let edge_addr = Address::of_member(&e.public()).to_string();

    let b = net.query("anchor", &format!("batch/{}", ids[2]), &[]);
    assert_eq!(b["from_ms"], T0 + 20);
    assert_eq!(b["merkle_root"], root("q2").to_hex());
    let by_root = net.query("anchor", &format!("root/{}", root("q2").to_hex()), &[]);
    assert_eq!(by_root, b);

    // one edge and type, in time order, paged
    let p1 = net.query(
        "anchor",
        "list",
        &[
            ("edge", &edge_addr),
            ("record_type", "contact_event"),
            ("limit", "3"),
        ],
    );
    let got: Vec<&str> = p1["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids[..3].iter().map(String::as_str).collect::<Vec<_>>());
    let next = p1["next"].as_str().unwrap();
    let p2 = net.query(
        "anchor",
        "list",
        &[
            ("edge", &edge_addr),
            ("record_type", "contact_event"),
            ("after", next),
        ],
    );
    let got: Vec<&str> = p2["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids[3..].iter().map(String::as_str).collect::<Vec<_>>());
    assert!(p2["next"].is_null());

    // one edge, all types; everything
    assert_eq!(
        net.query("anchor", "list", &[("edge", &edge_addr)])["batches"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(
        net.query("anchor", "list", &[])["batches"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    // record_type without edge, a cursor from another listing, bad input
    assert!(
        net.try_query("anchor", "list", &[("record_type", "contact_event")])
            .is_err()
    );
    let aq_id = net.query(
        "anchor",
        "list",
        &[("edge", &edge_addr), ("record_type", "air_quality")],
    )["batches"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        net.try_query(
            "anchor",
            "list",
            &[
                ("edge", &edge_addr),
                ("record_type", "contact_event"),
                ("after", &aq_id)
            ]
        )
        .is_err()
    );
    assert!(net.try_query("anchor", "batch/zz", &[]).is_err());
    assert!(
        net.try_query("anchor", &format!("batch/{}", Hash::ZERO), &[])
            .is_err()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The reverse-lookup overlap check must agree with a brute-force comparison against
    /// every accepted range.
    #[test]
    fn overlap_index_agrees_with_brute_force(
        ranges in proptest::collection::vec((0u64..200, 0u64..30, 0u8..2), 1..25)
    ) {
        let mut net = Net::new(&matrix_genesis());
        let e = edge();
        let mut accepted: Vec<(u8, u64, u64)> = Vec::new();
        let mut txs = Vec::new();
        let mut expected = Vec::new();
        for (i, (from, len, ty)) in ranges.into_iter().enumerate() {
            let to = from + len;
            let overlaps = accepted.iter().any(|&(t, f, l)| t == ty && f <= to && from <= l);
            if !overlaps {
                accepted.push((ty, from, to));
            }
            expected.push(if overlaps { "conflict" } else { "ok" });
            let ty_name = if ty == 0 { "contact_event" } else { "air_quality" };
            txs.push(net.tx(&e, call(ty_name, root(&format!("p{i}")), 1, T0 + from, T0 + to)));
        }
        // all in one block: later transactions see earlier ones through the block overlay
        let out = net.block(&txs).unwrap();
        let got: Vec<&str> = out.results.iter().map(code).collect();
        prop_assert_eq!(got, expected);
    }
}
