//! Property tests against a brute-force reference: every simple chain of up to k hops is
//! enumerated from the raw encounter list, and the index's answer is checked against it.

use std::collections::BTreeMap;

use proptest::prelude::*;
use trustedge_contacts::{
    CaseId, Chain, ChainQuery, ContactError, ContactGraph, Direction, Encounter, EncounterFilter,
    Hop, LiveContactGraph, TimeWindow,
};

const CASES: u32 = 7;

/// Every chain the semantics allow, tagged with its direction, by brute force.
fn all_chains(es: &[Encounter], source: CaseId, q: &ChainQuery) -> Vec<(Direction, Vec<Hop>)> {
    let dirs: &[Direction] = match (q.time_respecting, q.direction) {
        (false, _) => &[Direction::Any],
        (true, Direction::Any) => &[Direction::Forward, Direction::Backward],
        (true, d) => {
            if d == Direction::Forward {
                &[Direction::Forward]
            } else {
                &[Direction::Backward]
            }
        }
    };
    let mut out = Vec::new();
    for &d in dirs {
        let mut hops = Vec::new();
        let mut path = vec![source];
        dfs(es, q, d, &mut path, &mut hops, &mut out);
    }
    out
}

fn dfs(
    es: &[Encounter],
    q: &ChainQuery,
    d: Direction,
    path: &mut Vec<CaseId>,
    hops: &mut Vec<Hop>,
    out: &mut Vec<(Direction, Vec<Hop>)>,
) {
    let u = *path.last().unwrap();
    let gap = q.max_gap_s.unwrap_or(u64::MAX);
    for e in es {
        for (from, to) in [(e.a, e.b), (e.b, e.a)] {
            if from != u || path.contains(&to) {
                continue;
            }
            if e.score < q.min_score
                || e.duration_s < q.min_duration_s
                || q.window.is_some_and(|w| !w.contains(e.start_s))
            {
                continue;
            }
            if let Some(prev) = hops.last() {
                let ok = match d {
                    Direction::Any => true,
                    Direction::Forward => {
                        e.start_s >= prev.start_s && e.start_s - prev.start_s <= gap
                    }
                    Direction::Backward => {
                        e.start_s <= prev.start_s && prev.start_s - e.start_s <= gap
                    }
                };
                if !ok {
                    continue;
                }
            }
            hops.push(Hop {
                from,
                to,
                start_s: e.start_s,
                duration_s: e.duration_s,
                score: e.score,
            });
            path.push(to);
            out.push((d, hops.clone()));
            if hops.len() < usize::from(q.max_hops) {
                dfs(es, q, d, path, hops, out);
            }
            path.pop();
            hops.pop();
        }
    }
}

/// What a best chain optimises, smaller is better: fewest hops (untimed), earliest arrival
/// then fewest hops (forward), latest departure then fewest hops (backward).
fn metric(d: Direction, hops: &[Hop]) -> (i128, usize) {
    let t = i128::from(hops.last().unwrap().start_s);
    match d {
        Direction::Any => (0, hops.len()),
        Direction::Forward => (t, hops.len()),
        Direction::Backward => (-t, hops.len()),
    }
}

fn check_against_reference(
    es: &[Encounter],
    graph_answer: Result<trustedge_contacts::ContactChains, ContactError>,
    source: CaseId,
    q: &ChainQuery,
) {
    let known = es.iter().any(|e| e.a == source || e.b == source);
    let answer = match graph_answer {
        Err(ContactError::UnknownCase(id)) => {
            assert!(!known, "case {id} has encounters");
            return;
        }
        other => other.unwrap(),
    };
    assert!(known);
    assert!(!answer.truncated);
    let reference = all_chains(es, source, q);
    let mut best: BTreeMap<(Direction, CaseId), (i128, usize)> = BTreeMap::new();
    for (d, hops) in &reference {
        let m = metric(*d, hops);
        let slot = best.entry((*d, hops.last().unwrap().to)).or_insert(m);
        *slot = (*slot).min(m);
    }
    let mut got = BTreeMap::new();
    for c in &answer.chains {
        // Each answered chain is a real chain of the semantics...
        assert!(
            reference
                .iter()
                .any(|(d, h)| *d == c.direction && *h == c.hops),
            "not a valid chain: {c:?}"
        );
        assert_eq!(c.hops[0].from, source);
        assert_eq!(
            c.score,
            c.hops.iter().map(|h| h.score).fold(f32::INFINITY, f32::min)
        );
        assert!(
            got.insert((c.direction, c.target()), metric(c.direction, &c.hops))
                .is_none(),
            "two chains to one case"
        );
    }
    if q.max_gap_s.is_none() || !q.time_respecting {
        // ... and without a gap the answer is exact: every reachable case, at its optimum.
        assert_eq!(got, best);
    } else {
        assert!(got.keys().all(|k| best.contains_key(k)));
    }
    // Result order: hops, last start, target, direction.
    let keys: Vec<_> = answer
        .chains
        .iter()
        .map(|c: &Chain| (c.hops.len(), c.last_start_s(), c.target(), c.direction))
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
}

fn arb_encounters() -> impl Strategy<Value = Vec<Encounter>> {
    (
        prop::collection::vec((0..CASES, 0..CASES, 0u64..60, 0u32..5, 0u8..5), 0..24),
        prop::bool::ANY,
    )
        .prop_map(|(raw, sparse)| {
            // Sparse ids exercise the binary-search row lookup, dense ones the direct index.
            let id = |x: u32| CaseId(if sparse { x * 1_000_003 + 11 } else { x });
            raw.into_iter()
                .map(|(a, b, t, d, s)| {
                    let b = if a == b { (a + 1) % CASES } else { b };
                    Encounter {
                        a: id(a),
                        b: id(b),
                        start_s: 1000 + t,
                        duration_s: d,
                        score: f32::from(s),
                    }
                })
                .collect()
        })
}

fn arb_query() -> impl Strategy<Value = ChainQuery> {
    (
        1u8..=4,
        prop_oneof![
            Just(Direction::Forward),
            Just(Direction::Backward),
            Just(Direction::Any)
        ],
        prop::bool::ANY,
        prop::option::of(0u64..30),
        prop::option::of((0u64..60, 0u64..60)),
        0u8..3,
        0u32..3,
    )
        .prop_map(
            |(max_hops, direction, time_respecting, max_gap_s, window, s, d)| ChainQuery {
                max_hops,
                direction,
                time_respecting,
                max_gap_s,
                window: window.map(|(x, y)| TimeWindow {
                    from_s: 1000 + x.min(y),
                    to_s: 1000 + x.max(y),
                }),
                min_score: f32::from(s),
                min_duration_s: d,
                ..ChainQuery::default()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn chains_match_brute_force(es in arb_encounters(), q in arb_query(), src in 0..CASES) {
        let g = ContactGraph::build(&es, EncounterFilter::default()).unwrap();
        // A case with encounters (when there are any), and an id that may have none.
        let known: Vec<CaseId> = es.iter().flat_map(|e| [e.a, e.b]).collect();
        let source = known.get(src as usize % known.len().max(1)).copied().unwrap_or(CaseId(src));
        check_against_reference(&es, g.chains(source, &q), source, &q);
        check_against_reference(&es, g.chains(CaseId(src), &q), CaseId(src), &q);
    }

    #[test]
    fn live_delta_equals_fresh_build(
        es in arb_encounters(),
        split in 0usize..24,
        q in arb_query(),
        min_score in 0u8..2,
    ) {
        let filter = EncounterFilter { min_score: f32::from(min_score), ..EncounterFilter::default() };
        let split = split.min(es.len());
        let fresh = ContactGraph::build(&es, filter).unwrap();
        let mut live = LiveContactGraph::from_graph(ContactGraph::build(&es[..split], filter).unwrap());
        for e in &es[split..] {
            live.insert(*e).unwrap();
        }
        prop_assert_eq!(live.encounter_count(), fresh.encounter_count());
        for c in es.iter().flat_map(|e| [e.a, e.b]) {
            prop_assert_eq!(live.chains(c, &q), fresh.chains(c, &q));
        }
        live.compact().unwrap();
        prop_assert_eq!(live.delta_len(), 0);
        prop_assert_eq!(live.base(), &fresh);
    }

    #[test]
    fn build_filter_equals_prefiltering(es in arb_encounters(), s in 0u8..4, d in 0u32..4, w in 0u64..60) {
        let filter = EncounterFilter {
            min_score: f32::from(s),
            min_duration_s: d,
            window: Some(TimeWindow { from_s: 1000 + w, to_s: 1100 }),
        };
        let kept: Vec<Encounter> = es.iter().copied().filter(|e| filter.keeps(e)).collect();
        let g = ContactGraph::build(&es, filter).unwrap();
        prop_assert_eq!(&g, &ContactGraph::build(&kept, filter).unwrap());
        prop_assert_eq!(g.encounter_count(), kept.len());
        let mut out: Vec<(u32, u32, u64, u32)> = g.encounters().map(|e| (e.a.0, e.b.0, e.start_s, e.duration_s)).collect();
        let mut want: Vec<(u32, u32, u64, u32)> = kept.iter().map(|e| (e.a.0.min(e.b.0), e.a.0.max(e.b.0), e.start_s, e.duration_s)).collect();
        out.sort_unstable();
        want.sort_unstable();
        prop_assert_eq!(out, want);
    }
}
