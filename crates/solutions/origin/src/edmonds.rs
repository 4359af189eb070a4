//! Maximum-weight spanning arborescence (Chu–Liu / Edmonds), iterative.
//!
//! Chu & Liu (1965), Edmonds (1967): every node but the root takes its heaviest in-arc; if
//! those arcs form no cycle they are the answer; otherwise each cycle is contracted into one
//! node, an arc entering the cycle at `v` is re-weighted `w − w(best in-arc of v)` (the gain
//! of breaking the cycle there), the smaller problem is solved, and each cycle is expanded by
//! keeping all its arcs but the one into the node where the chosen entering arc lands.
//! O(V·E) time. Ties go to the arc listed first, so the answer is deterministic.

/// A weighted arc `from → to`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Arc {
    /// Tail (the parent in the arborescence).
    pub from: usize,
    /// Head (the child).
    pub to: usize,
    /// Weight (finite; larger is better).
    pub weight: f64,
}

const NONE: usize = usize::MAX;

/// One level of contraction: its arcs (`orig` indexes the level above) and what expansion
/// needs.
struct Level {
    n: usize,
    arcs: Vec<(usize, usize, f64, usize)>,
    best: Vec<usize>,
    in_cycle: Vec<bool>,
}

/// The maximum-weight arborescence of nodes `0..n` rooted at `root`: for each node, the index
/// in `arcs` of its chosen in-arc (`None` for the root). `None` if some node cannot be
/// reached from the root, if `root >= n`, or if an arc names a node `>= n` or has a
/// non-finite weight.
pub fn max_arborescence(n: usize, root: usize, arcs: &[Arc]) -> Option<Vec<Option<usize>>> {
    if root >= n
        || arcs
            .iter()
            .any(|a| a.from >= n || a.to >= n || !a.weight.is_finite())
    {
        return None;
    }
    let mut stack: Vec<Level> = Vec::new();
    let mut n_cur = n;
    let mut root_cur = root;
    let mut cur: Vec<(usize, usize, f64, usize)> = arcs
        .iter()
        .enumerate()
        .map(|(i, a)| (a.from, a.to, a.weight, i))
        .collect();
    // Descend: contract cycles until the best in-arcs form a tree.
    let mut chosen: Vec<usize> = loop {
        let mut best = vec![NONE; n_cur];
        for (i, &(u, v, w, _)) in cur.iter().enumerate() {
            if u != v && v != root_cur && (best[v] == NONE || w > cur[best[v]].2) {
                best[v] = i;
            }
        }
        if (0..n_cur).any(|v| v != root_cur && best[v] == NONE) {
            return None;
        }
        // Cycles of the best-arc graph: walk parents from each node, marking by start.
        let mut mark = vec![NONE; n_cur];
        let mut cycle_id = vec![NONE; n_cur];
        let mut cycles = 0usize;
        for s in 0..n_cur {
            let mut v = s;
            while v != root_cur && mark[v] == NONE {
                mark[v] = s;
                v = cur[best[v]].0;
            }
            if v != root_cur && mark[v] == s && cycle_id[v] == NONE {
                let mut x = v;
                loop {
                    cycle_id[x] = cycles;
                    x = cur[best[x]].0;
                    if x == v {
                        break;
                    }
                }
                cycles += 1;
            }
        }
        if cycles == 0 {
            break best;
        }
        // Contract: cycle k becomes node k; other nodes follow.
        let mut map = vec![NONE; n_cur];
        let mut next_id = cycles;
        for v in 0..n_cur {
            map[v] = if cycle_id[v] != NONE {
                cycle_id[v]
            } else {
                next_id += 1;
                next_id - 1
            };
        }
        let mut next: Vec<(usize, usize, f64, usize)> = Vec::with_capacity(cur.len());
        for (i, &(u, v, w, _)) in cur.iter().enumerate() {
            let (nu, nv) = (map[u], map[v]);
            if nu == nv {
                continue;
            }
            let w2 = if cycle_id[v] != NONE {
                w - cur[best[v]].2
            } else {
                w
            };
            next.push((nu, nv, w2, i));
        }
        let in_cycle = cycle_id.iter().map(|&c| c != NONE).collect();
        let level = Level {
            n: n_cur,
            arcs: std::mem::replace(&mut cur, next),
            best,
            in_cycle,
        };
        stack.push(level);
        n_cur = next_id;
        root_cur = map[root_cur];
    };
    // Expand: each level's choice maps back to arcs of the level above.
    while let Some(level) = stack.pop() {
        let mut up = vec![NONE; level.n];
        for &j in chosen.iter().filter(|&&j| j != NONE) {
            let i = cur[j].3;
            up[level.arcs[i].1] = i;
        }
        for (v, slot) in up.iter_mut().enumerate() {
            if level.in_cycle[v] && *slot == NONE {
                *slot = level.best[v];
            }
        }
        chosen = up;
        cur = level.arcs;
    }
    Some(
        chosen
            .into_iter()
            .map(|j| (j != NONE).then(|| cur[j].3))
            .collect(),
    )
}
