//! Sampling transmission trees of one cluster: Wilson's algorithm (cycle-popping loop-erased
//! random walks, Wilson 1996, "Generating random spanning trees more quickly than the cover
//! time", STOC) on the directed graph where every case points to its infector and a virtual
//! root stands for "infected outside the observed cases".
//!
//! Each case `v` steps to a candidate infector `u` with probability proportional to the arc
//! weight `w(u → v)`, or to the virtual root with probability proportional to the import
//! weight. Wilson's algorithm then draws an arborescence (every case with one infector, no
//! cycle) with probability exactly proportional to the product of its arc weights: the
//! posterior over transmission trees of the factorised model. The walk ends with
//! probability 1 because every case has a positive import weight.

use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;

/// The cluster seen by the sampler: local nodes `0..m`, the virtual root is `m`.
pub(crate) struct Sampler {
    m: usize,
    /// For each node: candidate infectors (local), the root last.
    parents: Vec<Vec<usize>>,
    /// Inclusive prefix sums of the weights, aligned with `parents`.
    cum: Vec<Vec<f64>>,
}

/// One drawn tree.
pub(crate) struct Draw {
    /// For each node, the position of its infector in its `parents` list.
    pub(crate) choice: Vec<usize>,
    /// For each node, its infector (local; `m` = imported).
    pub(crate) parent: Vec<usize>,
    /// Nodes in insertion order: every node after its infector.
    pub(crate) order: Vec<usize>,
    in_tree: Vec<bool>,
    path: Vec<usize>,
}

fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

impl Sampler {
    /// `arcs[v]`: `(infector, weight)` for node `v` (weights > 0); `import`: the virtual
    /// root's weight (> 0).
    pub(crate) fn new(arcs: Vec<Vec<(usize, f64)>>, import: f64) -> Sampler {
        let m = arcs.len();
        let mut parents = Vec::with_capacity(m);
        let mut cum = Vec::with_capacity(m);
        for list in arcs {
            let mut p = Vec::with_capacity(list.len() + 1);
            let mut c = Vec::with_capacity(list.len() + 1);
            let mut s = 0.0;
            for (u, w) in list {
                s += w;
                p.push(u);
                c.push(s);
            }
            p.push(m);
            c.push(s + import);
            parents.push(p);
            cum.push(c);
        }
        Sampler { m, parents, cum }
    }

    pub(crate) fn parents(&self, v: usize) -> &[usize] {
        &self.parents[v]
    }

    pub(crate) fn new_draw(&self) -> Draw {
        Draw {
            choice: vec![0; self.m],
            parent: vec![self.m; self.m],
            order: Vec::with_capacity(self.m),
            in_tree: vec![false; self.m + 1],
            path: Vec::new(),
        }
    }

    fn step(&self, v: usize, rng: &mut ChaCha8Rng) -> usize {
        let c = &self.cum[v];
        let total = c.last().copied().unwrap_or(0.0);
        let x = unit(rng) * total;
        c.partition_point(|&s| s <= x).min(c.len() - 1)
    }

    /// Draws one tree into `d`; returns the number of walk steps taken, or `None` if more
    /// than `max_steps` were needed (the draw is then unusable).
    pub(crate) fn draw(&self, rng: &mut ChaCha8Rng, d: &mut Draw, max_steps: u64) -> Option<u64> {
        let m = self.m;
        d.in_tree.fill(false);
        d.in_tree[m] = true;
        d.order.clear();
        let mut steps = 0u64;
        for i in 0..m {
            let mut u = i;
            while !d.in_tree[u] {
                let j = self.step(u, rng);
                d.choice[u] = j;
                d.parent[u] = self.parents[u][j];
                u = d.parent[u];
                steps += 1;
                if steps > max_steps {
                    return None;
                }
            }
            // Retrace the loop-erased path, then list it root-side first.
            d.path.clear();
            let mut u = i;
            while !d.in_tree[u] {
                d.in_tree[u] = true;
                d.path.push(u);
                u = d.parent[u];
            }
            d.order.extend(d.path.iter().rev());
        }
        Some(steps)
    }
}
