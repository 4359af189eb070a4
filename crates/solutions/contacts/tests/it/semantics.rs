//! Hand-built graphs: direction, time order, gaps, filters, bounds, errors, memory.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use trustedge_contacts::synth::{SyntheticSpec, synthetic_encounters};
use trustedge_contacts::{
    CaseId, ChainQuery, ContactError, ContactGraph, Direction, Encounter, EncounterFilter,
    LiveContactGraph, TimeWindow,
};

use crate::enc;

/// A(1)–B(2) at 10, B–C(3) at 20, B–D(4) at 5, C–E(5) at 30.
fn small() -> ContactGraph {
    ContactGraph::build(
        &[enc(1, 2, 10), enc(2, 3, 20), enc(2, 4, 5), enc(3, 5, 30)],
        EncounterFilter::default(),
    )
    .unwrap()
}

/// (target, hop count, last start) of each chain, in result order.
fn summary(g: &ContactGraph, source: u32, q: &ChainQuery) -> Vec<(u32, usize, u64)> {
    g.chains(CaseId(source), q)
        .unwrap()
        .chains
        .iter()
        .map(|c| (c.target().0, c.hops.len(), c.last_start_s()))
        .collect()
}

fn q(max_hops: u8, direction: Direction, time_respecting: bool) -> ChainQuery {
    ChainQuery {
        max_hops,
        direction,
        time_respecting,
        ..ChainQuery::default()
    }
}

#[test]
fn forward_chains_follow_time() {
    let g = small();
    // D is met by B at 5, before B met A at 10: not onward from A.
    assert_eq!(
        summary(&g, 1, &q(2, Direction::Forward, true)),
        vec![(2, 1, 10), (3, 2, 20)]
    );
    assert_eq!(
        summary(&g, 1, &q(3, Direction::Forward, true)),
        vec![(2, 1, 10), (3, 2, 20), (5, 3, 30)]
    );
    let chains = g
        .chains(CaseId(1), &q(3, Direction::Forward, true))
        .unwrap();
    let to_e = &chains.chains[2];
    let path: Vec<(u32, u32, u64)> = to_e
        .hops
        .iter()
        .map(|h| (h.from.0, h.to.0, h.start_s))
        .collect();
    assert_eq!(path, vec![(1, 2, 10), (2, 3, 20), (3, 5, 30)]);
    assert_eq!(to_e.direction, Direction::Forward);
    assert!(!chains.truncated);
}

#[test]
fn backward_chains_run_back_in_time() {
    let g = small();
    // Who could have infected C (3): its own contacts B (at 20) and E (at 30; the first hop
    // has no time bound), then A (at 10) and D (at 5) through B, nobody through E.
    assert_eq!(
        summary(&g, 3, &q(2, Direction::Backward, true)),
        vec![(2, 1, 20), (5, 1, 30), (4, 2, 5), (1, 2, 10)]
    );
    // A's only contact B (at 10), and D, who met B at 5, before.
    assert_eq!(
        summary(&g, 1, &q(2, Direction::Backward, true)),
        vec![(2, 1, 10), (4, 2, 5)]
    );
}

#[test]
fn any_direction_gives_both_and_untimed_ignores_time() {
    let g = small();
    let both = g.chains(CaseId(1), &q(2, Direction::Any, true)).unwrap();
    let tagged: Vec<(u32, Direction)> = both
        .chains
        .iter()
        .map(|c| (c.target().0, c.direction))
        .collect();
    assert_eq!(
        tagged,
        vec![
            (2, Direction::Forward),
            (2, Direction::Backward),
            (4, Direction::Backward),
            (3, Direction::Forward)
        ]
    );
    for direction in [Direction::Forward, Direction::Backward, Direction::Any] {
        let untimed = g.chains(CaseId(1), &q(2, direction, false)).unwrap();
        let got: Vec<(u32, usize)> = untimed
            .chains
            .iter()
            .map(|c| (c.target().0, c.hops.len()))
            .collect();
        assert_eq!(got, vec![(2, 1), (4, 2), (3, 2)]);
        assert!(untimed.chains.iter().all(|c| c.direction == Direction::Any));
    }
}

#[test]
fn earliest_arrival_prefers_the_earlier_longer_chain() {
    // A–C directly at 50, or A–B at 10 then B–C at 20: C is reached at 20 in 2 hops.
    let g = ContactGraph::build(
        &[enc(1, 3, 50), enc(1, 2, 10), enc(2, 3, 20), enc(3, 4, 25)],
        EncounterFilter::default(),
    )
    .unwrap();
    // With 2 hops D (4) is not reached: after the direct A–C at 50, C–D at 25 is too early;
    // after A–B–C at 20 it would be a third hop.
    assert_eq!(
        summary(&g, 1, &q(2, Direction::Forward, true)),
        vec![(2, 1, 10), (3, 2, 20)]
    );
    assert_eq!(
        summary(&g, 1, &q(3, Direction::Forward, true)),
        vec![(2, 1, 10), (3, 2, 20), (4, 3, 25)]
    );
    // Only one hop allowed: C at 50.
    assert_eq!(
        summary(&g, 1, &q(1, Direction::Forward, true)),
        vec![(2, 1, 10), (3, 1, 50)]
    );
}

#[test]
fn gap_limits_the_next_hop() {
    let g = small();
    let mut query = q(3, Direction::Forward, true);
    query.max_gap_s = Some(10);
    // B at 10 → C at 20 (gap 10) → E at 30 (gap 10).
    assert_eq!(
        summary(&g, 1, &query),
        vec![(2, 1, 10), (3, 2, 20), (5, 3, 30)]
    );
    query.max_gap_s = Some(9);
    assert_eq!(summary(&g, 1, &query), vec![(2, 1, 10)]);
    let mut back = q(2, Direction::Backward, true);
    back.max_gap_s = Some(12);
    // From C: B at 20 and E at 30, then A at 10 through B (gap 10) but not D at 5 (gap 15).
    assert_eq!(
        summary(&g, 3, &back),
        vec![(2, 1, 20), (5, 1, 30), (1, 2, 10)]
    );
}

#[test]
fn query_filters_apply_to_every_hop() {
    let mut es = vec![enc(1, 2, 10), enc(2, 3, 20), enc(2, 4, 30)];
    es[1].score = 0.5;
    es[2].duration_s = 60;
    let g = ContactGraph::build(&es, EncounterFilter::default()).unwrap();
    let base = q(2, Direction::Forward, true);
    assert_eq!(summary(&g, 1, &base).len(), 3);
    let scored = ChainQuery {
        min_score: 0.6,
        ..base
    };
    assert_eq!(summary(&g, 1, &scored), vec![(2, 1, 10), (4, 2, 30)]);
    let long = ChainQuery {
        min_duration_s: 300,
        ..base
    };
    assert_eq!(summary(&g, 1, &long), vec![(2, 1, 10), (3, 2, 20)]);
    let windowed = ChainQuery {
        window: Some(TimeWindow {
            from_s: 10,
            to_s: 25,
        }),
        ..base
    };
    assert_eq!(summary(&g, 1, &windowed), vec![(2, 1, 10), (3, 2, 20)]);
    // The same filters at build time drop the encounters from the index.
    let filtered = ContactGraph::build(
        &es,
        EncounterFilter {
            min_score: 0.6,
            min_duration_s: 300,
            window: None,
        },
    )
    .unwrap();
    assert_eq!(filtered.encounter_count(), 1);
    assert_eq!(summary(&filtered, 1, &base), vec![(2, 1, 10)]);
    assert!(!filtered.contains(CaseId(3)));
}

#[test]
fn chain_score_is_the_weakest_hop() {
    let mut es = vec![enc(1, 2, 10), enc(2, 3, 20)];
    es[0].score = 7.5;
    es[1].score = 2.25;
    let g = ContactGraph::build(&es, EncounterFilter::default()).unwrap();
    let r = g
        .chains(CaseId(1), &q(2, Direction::Forward, true))
        .unwrap();
    assert_eq!(r.chains[0].score, 7.5);
    assert_eq!(r.chains[1].score, 2.25);
    assert_eq!(r.chains[1].hops[1].duration_s, 600);
}

#[test]
fn bounds_truncate() {
    // A star: case 0 met 1..=50, each of them met 100 + i later.
    let mut es = Vec::new();
    for i in 1..=50u32 {
        es.push(enc(0, i, u64::from(i)));
        es.push(enc(i, 100 + i, 1000 + u64::from(i)));
    }
    let g = ContactGraph::build(&es, EncounterFilter::default()).unwrap();
    let full = g
        .chains(CaseId(0), &q(2, Direction::Forward, true))
        .unwrap();
    assert_eq!(full.chains.len(), 100);
    assert!(!full.truncated);

    let few = g
        .chains(
            CaseId(0),
            &ChainQuery {
                max_results: 7,
                ..q(2, Direction::Forward, true)
            },
        )
        .unwrap();
    assert!(few.truncated);
    assert_eq!(few.chains[..], full.chains[..7]);

    let cheap = g
        .chains(
            CaseId(0),
            &ChainQuery {
                max_edges_scanned: 60,
                ..q(2, Direction::Forward, true)
            },
        )
        .unwrap();
    assert!(cheap.truncated);
    assert_eq!(cheap.edges_scanned, 60);
    // The 50 first-hop contacts were found; second hops only partly.
    assert!(
        cheap.chains.len() >= 50 && cheap.chains.len() < 100,
        "{}",
        cheap.chains.len()
    );
    assert!(cheap.chains.iter().all(|c| full.chains.contains(c)));
}

#[test]
fn errors_are_typed() {
    let empty = ContactGraph::build(&[], EncounterFilter::default()).unwrap();
    assert_eq!(empty.encounter_count(), 0);
    assert_eq!(
        empty.chains(CaseId(0), &ChainQuery::default()),
        Err(ContactError::UnknownCase(0))
    );
    let g = small();
    assert_eq!(
        g.chains(CaseId(99), &ChainQuery::default()),
        Err(ContactError::UnknownCase(99))
    );
    assert!(matches!(
        g.chains(CaseId(1), &q(0, Direction::Forward, true)),
        Err(ContactError::InvalidQuery(_))
    ));
    assert!(matches!(
        g.chains(CaseId(1), &q(17, Direction::Forward, true)),
        Err(ContactError::InvalidQuery(_))
    ));
    let bad_window = ChainQuery {
        window: Some(TimeWindow { from_s: 5, to_s: 4 }),
        ..ChainQuery::default()
    };
    assert!(matches!(
        g.chains(CaseId(1), &bad_window),
        Err(ContactError::InvalidQuery(_))
    ));
    let nan = ChainQuery {
        min_score: f32::NAN,
        ..ChainQuery::default()
    };
    assert!(matches!(
        g.chains(CaseId(1), &nan),
        Err(ContactError::InvalidQuery(_))
    ));

    assert_eq!(
        ContactGraph::build(&[enc(3, 3, 1)], EncounterFilter::default()),
        Err(ContactError::SelfContact(3))
    );
    let mut bad = enc(1, 2, 1);
    bad.score = f32::NAN;
    assert!(matches!(
        ContactGraph::build(&[bad], EncounterFilter::default()),
        Err(ContactError::InvalidScore { a: 1, b: 2, .. })
    ));
    bad.score = -1.0;
    let mut live = LiveContactGraph::default();
    assert!(matches!(
        live.insert(bad),
        Err(ContactError::InvalidScore { .. })
    ));
    assert_eq!(live.delta_len(), 0);
    assert_eq!(
        ContactGraph::build(
            &[enc(1, 2, 0), enc(1, 2, 1 << 33)],
            EncounterFilter::default()
        ),
        Err(ContactError::TimeSpanTooLarge {
            span_s: 1 << 33,
            max_s: u64::from(u32::MAX)
        })
    );
}

#[test]
fn live_graph_answers_before_and_after_compaction() {
    let mut live = LiveContactGraph::new(EncounterFilter {
        min_score: 0.5,
        ..EncounterFilter::default()
    });
    assert_eq!(
        live.chains(CaseId(1), &ChainQuery::default()),
        Err(ContactError::UnknownCase(1))
    );
    assert!(live.insert(enc(1, 2, 10)).unwrap());
    let mut weak = enc(2, 3, 20);
    weak.score = 0.1;
    assert!(!live.insert(weak).unwrap());
    assert!(live.insert(enc(2, 4, 30)).unwrap());
    let before = live.chains(CaseId(1), &ChainQuery::default()).unwrap();
    assert_eq!(before.chains.len(), 2);
    assert_eq!(live.delta_len(), 2);
    live.compact().unwrap();
    assert_eq!(live.delta_len(), 0);
    assert_eq!(live.base().encounter_count(), 2);
    assert_eq!(
        live.chains(CaseId(1), &ChainQuery::default()).unwrap(),
        before
    );
}

#[test]
fn synthetic_index_stays_compact() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let spec = SyntheticSpec {
        cases: 10_000,
        ..SyntheticSpec::default()
    };
    let es: Vec<Encounter> = synthetic_encounters(&mut rng, &spec, 100_000);
    let g = ContactGraph::build(&es, EncounterFilter::default()).unwrap();
    assert_eq!(g.encounter_count(), 100_000);
    // 16 bytes per direction, plus 12 per case (10 encounters per case here).
    let per_encounter = g.memory_bytes() as f64 / 100_000.0;
    assert!(per_encounter <= 34.0, "{per_encounter} bytes per encounter");
    // Skewed: the busiest case has far more than the mean of 20 encounters.
    let max_degree = g.cases().map(|c| g.degree(c)).max().unwrap();
    assert!(max_degree > 200, "max degree {max_degree}");
    // Every encounter comes back out once.
    assert_eq!(g.encounters().count(), 100_000);
}
