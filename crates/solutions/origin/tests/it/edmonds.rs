use trustedge_origin::edmonds::{Arc, max_arborescence};

use crate::Mix;

/// Best total weight over all parent assignments that form an arborescence (brute force).
fn brute(n: usize, root: usize, arcs: &[Arc]) -> Option<f64> {
    let ins: Vec<Vec<usize>> = (0..n)
        .map(|v| {
            (0..arcs.len())
                .filter(|&i| arcs[i].to == v && arcs[i].from != v)
                .collect()
        })
        .collect();
    let others: Vec<usize> = (0..n).filter(|&v| v != root).collect();
    let mut best: Option<f64> = None;
    let mut pick = vec![0usize; others.len()];
    if others.iter().any(|&v| ins[v].is_empty()) {
        return None;
    }
    loop {
        let mut parent = vec![usize::MAX; n];
        let mut w = 0.0;
        for (k, &v) in others.iter().enumerate() {
            let a = arcs[ins[v][pick[k]]];
            parent[v] = a.from;
            w += a.weight;
        }
        let acyclic = others.iter().all(|&v| {
            let mut u = v;
            for _ in 0..=n {
                if u == root {
                    return true;
                }
                u = parent[u];
            }
            false
        });
        if acyclic && best.is_none_or(|b| w > b) {
            best = Some(w);
        }
        // Next assignment (odometer).
        let mut k = 0;
        loop {
            if k == others.len() {
                return best;
            }
            pick[k] += 1;
            if pick[k] < ins[others[k]].len() {
                break;
            }
            pick[k] = 0;
            k += 1;
        }
    }
}

fn total(arcs: &[Arc], chosen: &[Option<usize>]) -> f64 {
    chosen.iter().flatten().map(|&i| arcs[i].weight).sum()
}

fn check_is_arborescence(n: usize, root: usize, arcs: &[Arc], chosen: &[Option<usize>]) {
    assert!(chosen[root].is_none());
    for v in 0..n {
        if v == root {
            continue;
        }
        let i = chosen[v].unwrap();
        assert_eq!(arcs[i].to, v);
        let mut u = v;
        let mut steps = 0;
        while u != root {
            u = arcs[chosen[u].unwrap()].from;
            steps += 1;
            assert!(steps <= n, "cycle through {v}");
        }
    }
}

#[test]
fn contracts_a_cycle_and_breaks_it_where_entering_costs_least() {
    // root 0; 1 <-> 2 is the heaviest pair (a cycle of best in-arcs), 3 hangs off 2.
    let arcs = [
        Arc {
            from: 0,
            to: 1,
            weight: 1.0,
        },
        Arc {
            from: 0,
            to: 2,
            weight: 4.0,
        },
        Arc {
            from: 1,
            to: 2,
            weight: 10.0,
        },
        Arc {
            from: 2,
            to: 1,
            weight: 9.0,
        },
        Arc {
            from: 2,
            to: 3,
            weight: 5.0,
        },
        Arc {
            from: 3,
            to: 1,
            weight: 2.0,
        },
    ];
    let chosen = max_arborescence(4, 0, &arcs).unwrap();
    check_is_arborescence(4, 0, &arcs, &chosen);
    // Entering at 2 from the root loses 10 - 4 = 6; entering at 1 loses 9 - 1 = 8.
    assert_eq!(chosen, vec![None, Some(3), Some(1), Some(4)]);
    assert_eq!(total(&arcs, &chosen), 4.0 + 9.0 + 5.0);
    assert_eq!(brute(4, 0, &arcs), Some(18.0));
}

#[test]
fn nested_cycles_match_brute_force() {
    // Two 2-cycles that together form a larger cycle after the first contraction.
    let arcs = [
        Arc {
            from: 0,
            to: 1,
            weight: 0.5,
        },
        Arc {
            from: 1,
            to: 2,
            weight: 6.0,
        },
        Arc {
            from: 2,
            to: 1,
            weight: 6.0,
        },
        Arc {
            from: 3,
            to: 4,
            weight: 6.0,
        },
        Arc {
            from: 4,
            to: 3,
            weight: 6.0,
        },
        Arc {
            from: 2,
            to: 3,
            weight: 3.0,
        },
        Arc {
            from: 4,
            to: 1,
            weight: 3.0,
        },
        Arc {
            from: 0,
            to: 4,
            weight: 0.1,
        },
    ];
    let chosen = max_arborescence(5, 0, &arcs).unwrap();
    check_is_arborescence(5, 0, &arcs, &chosen);
    let b = brute(5, 0, &arcs).unwrap();
    assert!(
        (total(&arcs, &chosen) - b).abs() < 1e-9,
        "{} vs {b}",
        total(&arcs, &chosen)
    );
}

#[test]
fn random_graphs_match_brute_force() {
    let mut mix = Mix(7);
    for case in 0..300 {
        let n = 2 + (mix.next_u64() % 5) as usize;
        let mut arcs = Vec::new();
        for u in 0..n {
            for v in 1..n {
                if u != v && mix.unit() < 0.6 {
                    // Negative weights too (the inference passes log-weights).
                    arcs.push(Arc {
                        from: u,
                        to: v,
                        weight: mix.unit() * 10.0 - 5.0,
                    });
                }
            }
        }
        let got = max_arborescence(n, 0, &arcs);
        match brute(n, 0, &arcs) {
            None => assert!(
                got.is_none(),
                "case {case}: found a tree brute force did not"
            ),
            Some(b) => {
                let chosen = got.unwrap_or_else(|| panic!("case {case}: missed a tree"));
                check_is_arborescence(n, 0, &arcs, &chosen);
                assert!((total(&arcs, &chosen) - b).abs() < 1e-9, "case {case}");
            }
        }
    }
}

#[test]
fn refuses_unreachable_nodes_and_bad_input() {
    let arcs = [Arc {
        from: 0,
        to: 1,
        weight: 1.0,
    }];
    assert!(
        max_arborescence(3, 0, &arcs).is_none(),
        "node 2 has no in-arc"
    );
    assert!(max_arborescence(2, 5, &arcs).is_none(), "root out of range");
    let bad = [Arc {
        from: 0,
        to: 1,
        weight: f64::NAN,
    }];
    assert!(max_arborescence(2, 0, &bad).is_none());
    let far = [Arc {
        from: 0,
        to: 9,
        weight: 1.0,
    }];
    assert!(max_arborescence(2, 0, &far).is_none());
    assert_eq!(max_arborescence(1, 0, &[]), Some(vec![None]));
}
