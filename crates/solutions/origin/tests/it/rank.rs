use trustedge_contacts::{CaseId, ContactGraph, Encounter, EncounterFilter};
use trustedge_origin::model::DAY_S;
use trustedge_origin::{
    CandidateGraph, Case, EpiModel, EvidenceRef, OriginError, OriginReport, OutbreakSpec,
    RankParams, RoomWindow, VenueId, generate_outbreak, rank_origins,
};

fn at(day: f64) -> u64 {
    (day * DAY_S) as u64
}

fn case(id: u32, onset_day: Option<f64>, confirm_day: f64) -> Case {
    Case {
        id: CaseId(id),
        symptom_onset_s: onset_day.map(at),
        confirmation_s: at(confirm_day),
    }
}

fn meet(a: u32, b: u32, day: f64, score: f32) -> Encounter {
    Encounter {
        a: CaseId(a),
        b: CaseId(b),
        start_s: at(day),
        duration_s: 1800,
        score,
    }
}

fn graph(e: &[Encounter]) -> ContactGraph {
    ContactGraph::build(e, EncounterFilter::default()).unwrap()
}

fn assert_sane(r: &OriginReport) {
    for c in &r.clusters {
        let sum: f64 = c.candidates.iter().map(|x| x.probability).sum();
        assert!(
            (sum - 1.0).abs() < 1e-9,
            "cluster {:?} sums to {sum}",
            c.cases
        );
        assert!(
            c.candidates
                .windows(2)
                .all(|w| w[0].probability >= w[1].probability)
        );
        for x in &c.candidates {
            assert!(x.probability.is_finite() && x.probability >= 0.0);
        }
        // every case is a candidate, once
        let mut cands: Vec<_> = c.candidates.iter().map(|x| x.case).collect();
        cands.sort();
        assert_eq!(cands, c.cases);
        assert_eq!(c.tree.len(), c.cases.len(), "one tree edge per case");
        for e in &c.tree {
            assert!(e.weight.is_finite() && e.weight > 0.0);
            assert!((0.0..=1.0).contains(&e.posterior));
        }
        let mut b = c.baseline.clone();
        b.sort();
        assert_eq!(b, c.cases);
    }
}

#[test]
fn a_chain_is_traced_back_to_its_first_case() {
    let cases = [
        case(1, Some(5.0), 7.0),
        case(2, Some(10.0), 12.0),
        case(3, Some(15.0), 17.0),
    ];
    let g = graph(&[meet(1, 2, 5.0, 60.0), meet(2, 3, 10.0, 60.0)]);
    let r = rank_origins(&cases, &g, &[], &RankParams::default(), 1).unwrap();
    assert_sane(&r);
    assert_eq!(r.clusters.len(), 1);
    let c = &r.clusters[0];
    assert_eq!(c.candidates[0].case, CaseId(1));
    assert!(
        c.candidates[0].probability > 0.9,
        "{}",
        c.candidates[0].probability
    );
    let parent = |v: u32| {
        c.tree
            .iter()
            .find(|e| e.infectee == CaseId(v))
            .unwrap()
            .infector
    };
    assert_eq!(parent(1), None);
    assert_eq!(parent(2), Some(CaseId(1)));
    assert_eq!(parent(3), Some(CaseId(2)));
    // The explanation: the whole chain below case 1, and its contact chains.
    let x = c.candidates[0].explanation.as_ref().unwrap();
    assert_eq!(x.subtree.len(), 2);
    assert!(x.unexplained.is_empty());
    assert_eq!(x.contacts, 2);
    assert_eq!(x.rooms, 0);
    let targets: Vec<CaseId> = x.chains.iter().map(|ch| ch.target()).collect();
    assert!(
        targets.contains(&CaseId(2)) && targets.contains(&CaseId(3)),
        "{targets:?}"
    );
    assert_eq!(c.baseline, vec![CaseId(1), CaseId(2), CaseId(3)]);
}

#[test]
fn a_room_window_links_cases_without_contacts() {
    let cases = [
        case(1, Some(5.0), 7.0),
        case(2, Some(10.0), 12.0),
        case(3, None, 30.0),
    ];
    let room = RoomWindow {
        venue: VenueId([7; 16]),
        start_s: at(5.0),
        end_s: at(5.0) + 7200,
        probability: 0.05,
        cases: vec![CaseId(1), CaseId(2), CaseId(2), CaseId(99)],
    };
    let r = rank_origins(
        &cases,
        &ContactGraph::default(),
        std::slice::from_ref(&room),
        &RankParams::default(),
        3,
    )
    .unwrap();
    assert_sane(&r);
    assert_eq!(r.ignored_evidence, 1, "case 99 is not a confirmed case");
    assert_eq!(r.clusters.len(), 2, "case 3 has no evidence");
    let c = &r.clusters[0];
    assert_eq!(c.cases, vec![CaseId(1), CaseId(2)]);
    assert_eq!(c.candidates[0].case, CaseId(1));
    let x = c.candidates[0].explanation.as_ref().unwrap();
    assert_eq!((x.contacts, x.rooms), (0, 1));
    assert_eq!(
        x.subtree[0].evidence,
        Some(EvidenceRef::Room {
            venue: room.venue,
            start_s: room.start_s,
            end_s: room.end_s,
            probability: room.probability
        })
    );
    assert!(x.chains.is_empty(), "no close contact");
    assert_eq!(r.clusters[1].cases, vec![CaseId(3)]);
    assert_eq!(r.clusters[1].candidates[0].probability, 1.0);
}

/// Exact posterior of the origin by enumerating every parent assignment (import included)
/// of a small cluster, weighted by the product of its arc weights, the origin being the
/// import with the earliest onset estimate.
fn exact_origin(g: &CandidateGraph, m: &EpiModel) -> Vec<(CaseId, f64)> {
    let n = g.cases.len();
    let opts: Vec<Vec<(Option<usize>, f64)>> = (0..n)
        .map(|v| {
            let mut o: Vec<(Option<usize>, f64)> = g
                .in_arcs(v)
                .iter()
                .map(|a| (Some(a.from), a.weight))
                .collect();
            o.push((None, m.import_weight_per_day));
            o
        })
        .collect();
    let mut mass = vec![0.0; n];
    let mut pick = vec![0usize; n];
    'outer: loop {
        let parent: Vec<Option<usize>> = (0..n).map(|v| opts[v][pick[v]].0).collect();
        let acyclic = (0..n).all(|v| {
            let mut u = Some(v);
            for _ in 0..=n {
                match u {
                    None => return true,
                    Some(x) => u = parent[x],
                }
            }
            false
        });
        if acyclic {
            let w: f64 = (0..n).map(|v| opts[v][pick[v]].1).product();
            let origin = (0..n)
                .filter(|&v| parent[v].is_none())
                .min_by(|&x, &y| {
                    m.onset_estimate_s(&g.cases[x])
                        .total_cmp(&m.onset_estimate_s(&g.cases[y]))
                        .then(x.cmp(&y))
                })
                .unwrap();
            mass[origin] += w;
        }
        let mut k = 0;
        loop {
            if k == n {
                break 'outer;
            }
            pick[k] += 1;
            if pick[k] < opts[k].len() {
                break;
            }
            pick[k] = 0;
            k += 1;
        }
    }
    let total: f64 = mass.iter().sum();
    (0..n).map(|v| (g.cases[v].id, mass[v] / total)).collect()
}

#[test]
fn sampled_origin_probabilities_match_exact_enumeration() {
    // Overlapping presymptomatic contacts: several trees carry weight.
    let cases = [
        case(1, Some(6.0), 9.0),
        case(2, Some(6.5), 9.0),
        case(3, None, 12.0),
        case(4, Some(9.0), 11.0),
    ];
    let enc = [
        meet(1, 2, 3.0, 50.0),
        meet(2, 3, 5.0, 40.0),
        meet(1, 3, 5.5, 30.0),
        meet(3, 4, 6.0, 30.0),
        meet(2, 4, 5.0, 20.0),
    ];
    let g = graph(&enc);
    // The sampler's posterior over the whole component (its most likely tree imports a
    // second case here, which `TreeImports` would split off).
    let params = RankParams {
        samples: 60_000,
        model: EpiModel {
            import_weight_per_day: 0.02,
            ..EpiModel::default()
        },
        clusters: trustedge_origin::ClusterRule::Components,
        ..RankParams::default()
    };
    let cg = CandidateGraph::build(&cases, &g, &[], &params.model).unwrap();
    let exact = exact_origin(&cg, &params.model);
    let spread = exact.iter().filter(|(_, p)| *p > 0.05).count();
    assert!(spread >= 2, "the test needs an ambiguous origin: {exact:?}");
    let r = rank_origins(&cases, &g, &[], &params, 11).unwrap();
    assert_sane(&r);
    assert_eq!(r.clusters.len(), 1);
    for (id, p) in exact {
        let got = r.clusters[0]
            .candidates
            .iter()
            .find(|c| c.case == id)
            .map_or(0.0, |c| c.probability);
        assert!(
            (got - p).abs() < 0.015,
            "case {id}: sampled {got}, exact {p}"
        );
    }
}

#[test]
fn same_seed_same_report() {
    let o = generate_outbreak(&OutbreakSpec::default(), 5);
    let g = graph(&o.encounters);
    let p = RankParams::default();
    let a = rank_origins(&o.cases, &g, &o.rooms, &p, 42).unwrap();
    let b = rank_origins(&o.cases, &g, &o.rooms, &p, 42).unwrap();
    assert_eq!(a, b);
    // Input order does not matter either.
    let mut rev = o.cases.clone();
    rev.reverse();
    let mut rooms = o.rooms.clone();
    rooms.reverse();
    let c = rank_origins(&rev, &g, &rooms, &p, 42).unwrap();
    assert_eq!(a.clusters.len(), c.clusters.len());
    for (x, y) in a.clusters.iter().zip(&c.clusters) {
        assert_eq!(x.cases, y.cases);
        assert_eq!(x.tree.len(), y.tree.len());
        for (ex, ey) in x.tree.iter().zip(&y.tree) {
            assert_eq!((ex.infector, ex.infectee), (ey.infector, ey.infectee));
            assert!((ex.weight - ey.weight).abs() <= 1e-12 * ex.weight.abs().max(1.0));
        }
    }
}

#[test]
fn trees_and_explanations_use_real_evidence_in_time_order() {
    let spec = OutbreakSpec {
        onset_report_sd_days: 0.0,
        ..OutbreakSpec::default()
    };
    let params = RankParams {
        model: EpiModel {
            onset_sd_days: 0.0,
            ..EpiModel::default()
        },
        samples: 300,
        ..RankParams::default()
    };
    let mut checked_edges = 0;
    for seed in 0..25u64 {
        let o = generate_outbreak(&spec, seed);
        let g = graph(&o.encounters);
        let r = rank_origins(&o.cases, &g, &o.rooms, &params, seed).unwrap();
        assert_sane(&r);
        let find = |id: CaseId| o.cases.iter().find(|c| c.id == id).unwrap();
        let real = |u: CaseId, v: CaseId, e: &EvidenceRef| match *e {
            EvidenceRef::Contact {
                start_s,
                duration_s,
                score,
            } => o.encounters.iter().any(|x| {
                ((x.a, x.b) == (u, v) || (x.a, x.b) == (v, u))
                    && x.start_s == start_s
                    && x.duration_s == duration_s
                    && x.score == score
            }),
            EvidenceRef::Room {
                venue,
                start_s,
                end_s,
                ..
            } => o.rooms.iter().any(|w| {
                w.venue == venue
                    && w.start_s == start_s
                    && w.end_s == end_s
                    && w.cases.contains(&u)
                    && w.cases.contains(&v)
            }),
        };
        let time = |e: &EvidenceRef| match *e {
            EvidenceRef::Contact {
                start_s,
                duration_s,
                ..
            } => start_s + u64::from(duration_s / 2),
            EvidenceRef::Room { start_s, end_s, .. } => start_s + (end_s - start_s) / 2,
        };
        for c in &r.clusters {
            let mut edges: Vec<_> = c.tree.iter().collect();
            for cand in &c.candidates {
                if let Some(x) = &cand.explanation {
                    edges.extend(x.subtree.iter());
                    for ch in &x.chains {
                        assert_eq!(ch.hops[0].from, cand.case);
                        for h in &ch.hops {
                            assert!(real(
                                h.from,
                                h.to,
                                &EvidenceRef::Contact {
                                    start_s: h.start_s,
                                    duration_s: h.duration_s,
                                    score: h.score
                                }
                            ));
                        }
                    }
                }
            }
            for e in edges {
                let Some(u) = e.infector else {
                    assert!(e.evidence.is_none());
                    continue;
                };
                let ev = e.evidence.as_ref().unwrap();
                assert!(real(u, e.infectee, ev), "{e:?} is not in the input");
                let t = time(ev);
                let (cu, cv) = (find(u), find(e.infectee));
                assert!(
                    t < cu.confirmation_s && t < cv.confirmation_s,
                    "after isolation"
                );
                if let Some(onset) = cv.symptom_onset_s {
                    assert!(t < onset, "infected after showing symptoms: {e:?}");
                }
                if let Some(onset) = cu.symptom_onset_s {
                    let earliest = onset as f64 - params.model.max_incubation_days * DAY_S;
                    assert!(t as f64 >= earliest, "infector not yet infected: {e:?}");
                }
                checked_edges += 1;
            }
        }
    }
    assert!(checked_edges > 100, "only {checked_edges} edges checked");
}

#[test]
fn degenerate_inputs_do_not_panic() {
    let p = RankParams::default();
    let empty = rank_origins(&[], &ContactGraph::default(), &[], &p, 0).unwrap();
    assert!(empty.clusters.is_empty());

    let one = rank_origins(&[case(4, None, 3.0)], &ContactGraph::default(), &[], &p, 0).unwrap();
    assert_eq!(one.clusters.len(), 1);
    assert_eq!(one.clusters[0].candidates[0].case, CaseId(4));
    assert_eq!(one.clusters[0].candidates[0].probability, 1.0);
    assert_eq!(one.clusters[0].tree[0].infector, None);

    // Two separate chains, all onsets missing, plus contacts with unknown cases.
    let cases = [
        case(1, None, 8.0),
        case(2, None, 13.0),
        case(10, None, 8.0),
        case(11, None, 13.0),
    ];
    let g = graph(&[
        meet(1, 2, 5.0, 60.0),
        meet(10, 11, 5.0, 60.0),
        meet(2, 77, 6.0, 60.0),
    ]);
    let r = rank_origins(&cases, &g, &[], &p, 9).unwrap();
    assert_sane(&r);
    assert_eq!(r.clusters.len(), 2);
    assert_eq!(r.ignored_evidence, 1);
    assert_eq!(r.clusters[0].candidates[0].case, CaseId(1));
    assert_eq!(r.clusters[1].candidates[0].case, CaseId(10));

    // Evidence that cannot be a transmission (after both confirmations) links nobody.
    let late = graph(&[meet(1, 2, 20.0, 60.0)]);
    let r = rank_origins(&cases[..2], &late, &[], &p, 9).unwrap();
    assert_eq!(r.clusters.len(), 2);
}

#[test]
fn malformed_input_is_a_typed_error() {
    let p = RankParams::default();
    let g = ContactGraph::default();
    let dup = [case(1, None, 3.0), case(1, None, 4.0)];
    assert_eq!(
        rank_origins(&dup, &g, &[], &p, 0),
        Err(OriginError::DuplicateCase(1))
    );
    let bad_room = RoomWindow {
        venue: VenueId([0; 16]),
        start_s: 10,
        end_s: 5,
        probability: 0.1,
        cases: vec![],
    };
    assert!(matches!(
        rank_origins(&[], &g, std::slice::from_ref(&bad_room), &p, 0),
        Err(OriginError::InvalidRoomWindow(_))
    ));
    let nan_room = RoomWindow {
        end_s: 20,
        probability: f64::NAN,
        ..bad_room
    };
    assert!(matches!(
        rank_origins(&[], &g, &[nan_room], &p, 0),
        Err(OriginError::InvalidRoomWindow(_))
    ));
    let zero = RankParams { samples: 0, ..p };
    assert!(matches!(
        rank_origins(&[], &g, &[], &zero, 0),
        Err(OriginError::InvalidParams(_))
    ));
    let bad_model = RankParams {
        model: EpiModel {
            incubation_sigma: f64::NAN,
            ..EpiModel::default()
        },
        ..p
    };
    assert_eq!(
        rank_origins(&[], &g, &[], &bad_model, 0),
        Err(OriginError::InvalidModel)
    );
}

/// Two chains (1 → 2 → 3 and 11 → 12 → 13) joined by one contact whose timing fits no
/// transmission (12 met 3 on the day 3 fell ill and 12 was already ill: a false close
/// contact, as BLE makes them). Components merge the two outbreaks and rank one origin for
/// both; the most likely tree imports 11, so `TreeImports` gives each chain its cluster,
/// its first case first.
#[test]
fn a_weak_link_does_not_merge_two_outbreaks() {
    use trustedge_origin::ClusterRule;
    let cases = [
        case(1, Some(5.0), 7.0),
        case(2, Some(10.0), 12.0),
        case(3, Some(15.0), 17.0),
        case(11, Some(8.0), 10.0),
        case(12, Some(13.0), 16.0),
        case(13, Some(18.0), 20.0),
    ];
    let g = graph(&[
        meet(1, 2, 5.0, 60.0),
        meet(2, 3, 10.0, 60.0),
        meet(11, 12, 8.0, 60.0),
        meet(12, 13, 13.0, 60.0),
        meet(3, 12, 15.0, 20.0),
    ]);
    let merged = rank_origins(
        &cases,
        &g,
        &[],
        &RankParams {
            clusters: ClusterRule::Components,
            ..RankParams::default()
        },
        1,
    )
    .unwrap();
    assert_sane(&merged);
    assert_eq!(merged.clusters.len(), 1);
    assert_eq!(merged.clusters[0].component, 0);
    let split = rank_origins(&cases, &g, &[], &RankParams::default(), 1).unwrap();
    // Both pieces name the component they were split from.
    assert!(split.clusters.iter().all(|c| c.component == 0));
    assert_sane(&split);
    let got: Vec<(Vec<CaseId>, CaseId)> = split
        .clusters
        .iter()
        .map(|c| (c.cases.clone(), c.candidates[0].case))
        .collect();
    let ids = |v: &[u32]| v.iter().map(|&i| CaseId(i)).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            (ids(&[1, 2, 3]), CaseId(1)),
            (ids(&[11, 12, 13]), CaseId(11)),
        ]
    );
}
