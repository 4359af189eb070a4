//! Ranking origin candidates: per cluster of linked confirmed cases, the posterior
//! probability that each case is its origin (from sampled transmission trees), the single
//! most likely tree (Edmonds), an explanation of each leading candidate, and the "earliest
//! symptom onset" baseline.
//!
//! A cluster is, by default ([`ClusterRule::TreeImports`]), a connected component of the
//! evidence split at the imports of its most likely tree: the cases below one import. Any
//! link joins a component, and close contacts decided from BLE include false ones (co-present
//! people who were not within 2 m for 15 minutes); a false contact between two outbreaks
//! rarely fits the incubation and infectiousness timing, so the most likely tree imports
//! the second outbreak's first case rather than pass through it. On ten-thousand-person
//! cities with the edge's close-contact decisions, splitting raised top-3 from 0.47 to 0.76
//! (`trustedge origin eval --city --contacts edge`, seeds 1–5). On the synthetic outbreaks
//! ([`crate::eval`]), where every component is one outbreak by construction, splitting can
//! only lose and does (top-3 0.985 → 0.85); [`ClusterRule::Components`] keeps the old rule.
//!
//! The origin of a cluster in one sampled tree is one of its imported cases (infector: the
//! virtual root) — usually the only one, since the import weight is small; with several,
//! [`OriginRule`] picks (by default the earliest onset estimate; ties by id). Its probability is the
//! fraction of samples in which it is the origin, so a cluster's probabilities sum to 1.

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng as _;
use serde::{Deserialize, Serialize};
use trustedge_contacts::{CaseId, Chain, ChainQuery, ContactGraph, Direction};

use crate::OriginError;
use crate::edmonds::{Arc, max_arborescence};
use crate::graph::{CandidateGraph, EvidenceRef};
use crate::model::{Case, EpiModel, RoomWindow};
use crate::sample::Sampler;

/// Most trees sampled per cluster.
pub const MAX_SAMPLES: u32 = 1_000_000;

/// How the ranking runs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankParams {
    /// The epidemiological model weighting the arcs.
    pub model: EpiModel,
    /// Trees sampled per cluster (1 ..= [`MAX_SAMPLES`]).
    pub samples: u32,
    /// Candidates explained per cluster (the most probable first).
    pub explain_top: usize,
    /// Hops of the forward close-contact chains listed in an explanation (1 ..= 16).
    pub chain_hops: u8,
    /// Most contact chains listed per explained candidate.
    pub max_chains: usize,
    /// Which import of a sampled tree is the cluster's origin.
    pub origin_rule: OriginRule,
    /// Most random-walk steps per sampled tree (a bound on work; a cluster whose walks run
    /// longer reports fewer samples).
    pub max_walk_steps: u64,
    /// What a cluster of linked cases is.
    #[serde(default)]
    pub clusters: ClusterRule,
}

/// How the confirmed cases are grouped into the clusters whose origins are ranked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterRule {
    /// Connected components of the evidence: any usable link joins two cases.
    Components,
    /// Each component split at the imports of its most likely tree: a case whose best
    /// explanation is "infected outside the observed cases" starts a cluster of its own, so
    /// weak links (a contact whose timing does not fit the incubation) do not merge
    /// outbreaks.
    #[default]
    TreeImports,
}

impl Default for RankParams {
    fn default() -> Self {
        RankParams {
            model: EpiModel::default(),
            samples: 2000,
            explain_top: 3,
            chain_hops: 3,
            max_chains: 20,
            max_walk_steps: 10_000_000,
            origin_rule: OriginRule::EarliestImport,
            clusters: ClusterRule::TreeImports,
        }
    }
}

/// Which imported case of a sampled tree counts as the cluster's origin when the tree has
/// several (a cluster is connected by evidence, so several imports usually stand for
/// links through unconfirmed cases).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OriginRule {
    /// The import with the earliest onset estimate (its chain started first).
    EarliestImport,
    /// The import with the largest subtree (it explains the most cases).
    LargestSubtree,
}

/// The answer for all confirmed cases.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OriginReport {
    /// Clusters of linked cases, largest first (singletons included).
    pub clusters: Vec<ClusterRanking>,
    /// Evidence naming a case that was not in the case list (skipped).
    pub ignored_evidence: usize,
}

/// The ranking within one cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterRanking {
    /// The cluster's cases, ascending.
    pub cases: Vec<CaseId>,
    /// Index of the connected component of the evidence the cluster belongs to (components
    /// numbered largest first, ties by smallest case id). Under [`ClusterRule::TreeImports`]
    /// clusters sharing it were split apart: some evidence, too weak to be the likely
    /// route, links them.
    #[serde(default)]
    pub component: u32,
    /// Trees actually sampled.
    pub samples: u32,
    /// Every case of the cluster as an origin candidate, most probable first; equal
    /// probabilities (notably 0: never the origin of a sampled tree) are ordered by how many
    /// sampled trees import the case at all, then by the earliest-onset baseline.
    pub candidates: Vec<OriginCandidate>,
    /// The most likely transmission tree (maximum product of arc weights, imports
    /// included): one edge per case.
    pub tree: Vec<TreeEdge>,
    /// The "earliest symptom onset" baseline: the cases by onset (reported, or confirmation
    /// minus the median delay), earliest first.
    pub baseline: Vec<CaseId>,
}

/// One origin candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OriginCandidate {
    /// The case.
    pub case: CaseId,
    /// Posterior probability that it is the cluster's origin.
    pub probability: f64,
    /// Why (for the first [`RankParams::explain_top`] candidates).
    pub explanation: Option<Explanation>,
}

/// What supports a candidate as origin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// The edges of its subtree in the most likely tree with it as the only import.
    pub subtree: Vec<TreeEdge>,
    /// Cluster cases that tree could not attach below it (no usable evidence path).
    pub unexplained: Vec<CaseId>,
    /// Close-contact encounters behind the subtree's edges.
    pub contacts: u32,
    /// Room windows behind the subtree's edges.
    pub rooms: u32,
    /// Forward, time-respecting close-contact chains from the candidate (the contact
    /// graph's k-hop query), at most [`RankParams::max_chains`].
    pub chains: Vec<Chain>,
}

/// A transmission edge of a tree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TreeEdge {
    /// The infector; `None`: imported (infected outside the observed cases).
    pub infector: Option<CaseId>,
    /// The infectee.
    pub infectee: CaseId,
    /// The arc's weight (sum over its evidence; the import weight for an import).
    pub weight: f64,
    /// Fraction of sampled trees in which `infectee` has this infector.
    pub posterior: f64,
    /// The heaviest piece of evidence behind the arc (`None` for an import).
    pub evidence: Option<EvidenceRef>,
    /// Close-contact encounters behind the arc.
    pub contacts: u32,
    /// Room windows behind the arc.
    pub rooms: u32,
}

/// The "earliest symptom onset" baseline for a set of cases: ids by onset estimate
/// (reported onset, or confirmation minus the median delay), earliest first, ties by id.
pub fn earliest_onset_ranking(cases: &[Case], model: &EpiModel) -> Vec<CaseId> {
    let mut v: Vec<(f64, CaseId)> = cases
        .iter()
        .map(|c| (model.onset_estimate_s(c), c.id))
        .collect();
    v.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    v.into_iter().map(|(_, id)| id).collect()
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Ranks the origin candidates of every cluster of linked confirmed cases.
///
/// `contacts` holds the close-contact encounters between confirmed cases, `rooms` the
/// elevated-risk room windows they shared; `seed` makes the tree sampling reproducible (the
/// same inputs and seed give the same report). Evidence naming a case missing from `cases`
/// is skipped and counted in [`OriginReport::ignored_evidence`].
///
/// Errors: duplicate case ids, an invalid model, room window or parameter.
pub fn rank_origins(
    cases: &[Case],
    contacts: &ContactGraph,
    rooms: &[RoomWindow],
    params: &RankParams,
    seed: u64,
) -> Result<OriginReport, OriginError> {
    if params.samples == 0 || params.samples > MAX_SAMPLES {
        return Err(OriginError::InvalidParams(
            "samples must be 1 ..= 1,000,000",
        ));
    }
    if params.chain_hops == 0 || params.chain_hops > trustedge_contacts::MAX_HOPS {
        return Err(OriginError::InvalidParams("chain_hops must be 1 ..= 16"));
    }
    let graph = CandidateGraph::build(cases, contacts, rooms, &params.model)?;
    let components = graph.clusters();
    let mut groups: Vec<(u32, Vec<usize>)> = Vec::with_capacity(components.len());
    for (k, members) in components.into_iter().enumerate() {
        let k = u32::try_from(k).unwrap_or(u32::MAX);
        match params.clusters {
            ClusterRule::Components => groups.push((k, members)),
            ClusterRule::TreeImports => groups.extend(
                split_at_imports(&graph, &members, &params.model)
                    .into_iter()
                    .map(|g| (k, g)),
            ),
        }
    }
    groups.sort_by(|x, y| y.1.len().cmp(&x.1.len()).then(x.1[0].cmp(&y.1[0])));
    let clusters = groups
        .iter()
        .map(|(k, members)| {
            let mut c = rank_cluster(&graph, members, contacts, params, seed);
            c.component = *k;
            c
        })
        .collect();
    Ok(OriginReport {
        clusters,
        ignored_evidence: graph.ignored_evidence,
    })
}

/// The arcs of `g` between `members`, in local indices: for each member, its in-arcs from
/// other members as (infector, weight, index of the arc in `g.arcs`).
fn local_arcs(g: &CandidateGraph, members: &[usize]) -> Vec<Vec<(usize, f64, usize)>> {
    let local: std::collections::HashMap<usize, usize> =
        members.iter().enumerate().map(|(i, &v)| (v, i)).collect();
    members
        .iter()
        .map(|&v| {
            g.in_arcs(v)
                .iter()
                .enumerate()
                .filter_map(|(k, a)| {
                    local
                        .get(&a.from)
                        .map(|&u| (u, a.weight, g.in_range[v].start + k))
                })
                .collect()
        })
        .collect()
}

/// The most likely tree over local `arcs` (Chu–Liu/Edmonds on log weights; node
/// `arcs.len()` is the virtual root, reached by `import`): each case's infector, `None` when
/// imported. `forced`: only that case may be imported without [`FORCED_PENALTY`].
fn most_likely_tree(
    arcs: &[Vec<(usize, f64, usize)>],
    import: f64,
    forced: Option<usize>,
) -> Option<Vec<Option<usize>>> {
    let m = arcs.len();
    let mut all = Vec::new();
    for (v, list) in arcs.iter().enumerate() {
        for &(u, w, _) in list {
            all.push(Arc {
                from: u,
                to: v,
                weight: w.ln(),
            });
        }
        let penalty = match forced {
            Some(c) if c != v => FORCED_PENALTY,
            _ => 0.0,
        };
        all.push(Arc {
            from: m,
            to: v,
            weight: import.ln() - penalty,
        });
    }
    let chosen = max_arborescence(m + 1, m, &all)?;
    Some(
        (0..m)
            .map(|v| chosen[v].map(|i| all[i].from).filter(|&u| u < m))
            .collect(),
    )
}

/// The cases of `members` (a component, sorted) grouped by the import at the root of their
/// subtree in the component's most likely tree; each group sorted. The whole component
/// when that tree cannot be built.
fn split_at_imports(g: &CandidateGraph, members: &[usize], model: &EpiModel) -> Vec<Vec<usize>> {
    if members.len() < 2 {
        return vec![members.to_vec()];
    }
    let Some(parent) = most_likely_tree(&local_arcs(g, members), model.import_weight_per_day, None)
    else {
        return vec![members.to_vec()];
    };
    // The import above each case: follow infectors up (a tree, so at most m steps).
    let import_of = |mut v: usize| {
        for _ in 0..members.len() {
            match parent[v] {
                Some(u) => v = u,
                None => break,
            }
        }
        v
    };
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, &v) in members.iter().enumerate() {
        groups.entry(import_of(i)).or_default().push(v);
    }
    groups.into_values().collect()
}

/// Penalty (in log-weight) for attaching a case to the virtual root in an explanation tree,
/// where only the candidate is meant to be imported.
const FORCED_PENALTY: f64 = 1e4;

fn rank_cluster(
    g: &CandidateGraph,
    members: &[usize],
    contacts: &ContactGraph,
    params: &RankParams,
    seed: u64,
) -> ClusterRanking {
    let model = &params.model;
    let m = members.len();
    let member_cases: Vec<Case> = members.iter().map(|&v| g.cases[v]).collect();
    // The baseline order (earliest onset estimate first, ties by id); its positions break
    // ties between origins of equal subtree size.
    let mut by_onset: Vec<usize> = (0..m).collect();
    by_onset.sort_by(|&x, &y| {
        model
            .onset_estimate_s(&member_cases[x])
            .total_cmp(&model.onset_estimate_s(&member_cases[y]))
            .then(member_cases[x].id.cmp(&member_cases[y].id))
    });
    let baseline: Vec<CaseId> = by_onset.iter().map(|&v| member_cases[v].id).collect();
    let mut rank_of = vec![0usize; m];
    for (pos, &v) in by_onset.iter().enumerate() {
        rank_of[v] = pos;
    }
    let arcs_local = local_arcs(g, members);
    let import = model.import_weight_per_day;
    let sampler = Sampler::new(
        arcs_local
            .iter()
            .map(|l| l.iter().map(|&(u, w, _)| (u, w)).collect())
            .collect(),
        import,
    );
    // Seeded per cluster by its smallest case id, so clusters do not share a stream.
    let cluster_seed = splitmix(seed ^ splitmix(u64::from(member_cases[0].id.0)));
    let mut rng = ChaCha8Rng::seed_from_u64(cluster_seed);
    let mut origin_count = vec![0u64; m];
    let mut choice_count: Vec<Vec<u64>> = (0..m)
        .map(|v| vec![0u64; sampler.parents(v).len()])
        .collect();
    let mut draw = sampler.new_draw();
    let mut size = vec![0usize; m];
    let mut drawn = 0u32;
    for _ in 0..params.samples {
        if sampler
            .draw(&mut rng, &mut draw, params.max_walk_steps)
            .is_none()
        {
            break;
        }
        drawn += 1;
        size.fill(1);
        for &v in draw.order.iter().rev() {
            let p = draw.parent[v];
            if p < m {
                size[p] += size[v];
            }
        }
        let key = |v: usize| match params.origin_rule {
            OriginRule::EarliestImport => (0, std::cmp::Reverse(rank_of[v])),
            OriginRule::LargestSubtree => (size[v], std::cmp::Reverse(rank_of[v])),
        };
        let mut best: Option<usize> = None;
        for v in 0..m {
            choice_count[v][draw.choice[v]] += 1;
            if draw.parent[v] == m && best.is_none_or(|b| key(v) > key(b)) {
                best = Some(v);
            }
        }
        if let Some(b) = best {
            origin_count[b] += 1;
        }
    }
    let denom = f64::from(drawn.max(1));
    let posterior = |v: usize, pos: usize| choice_count[v][pos] as f64 / denom;

    // Edge builder for trees: the arc behind `parent → v` (local), with its posterior.
    let edge = |v: usize, parent: Option<usize>| -> TreeEdge {
        let infectee = member_cases[v].id;
        match parent {
            None => TreeEdge {
                infector: None,
                infectee,
                weight: import,
                posterior: posterior(v, arcs_local[v].len()),
                evidence: None,
                contacts: 0,
                rooms: 0,
            },
            Some(u) => {
                let pos = arcs_local[v].iter().position(|a| a.0 == u).unwrap_or(0);
                let a = &g.arcs[arcs_local[v][pos].2];
                TreeEdge {
                    infector: Some(member_cases[u].id),
                    infectee,
                    weight: a.weight,
                    posterior: posterior(v, pos),
                    evidence: Some(a.best),
                    contacts: a.contacts,
                    rooms: a.rooms,
                }
            }
        }
    };

    // Edmonds on log weights; node m is the virtual root. `forced`: only that case may be
    // imported without penalty.
    let best_tree = |forced: Option<usize>| most_likely_tree(&arcs_local, import, forced);
    let tree: Vec<TreeEdge> = best_tree(None)
        .map(|parents| (0..m).map(|v| edge(v, parents[v])).collect())
        .unwrap_or_default();

    // Every case is a candidate: by origin posterior, then (for equal counts, notably the
    // cases never sampled as origin) by how often it was imported at all, then by onset.
    let imported = |v: usize| choice_count[v].last().copied().unwrap_or(0);
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&x, &y| {
        origin_count[y]
            .cmp(&origin_count[x])
            .then(imported(y).cmp(&imported(x)))
            .then(rank_of[x].cmp(&rank_of[y]))
    });
    let candidates = order
        .iter()
        .enumerate()
        .map(|(k, &c)| OriginCandidate {
            case: member_cases[c].id,
            probability: origin_count[c] as f64 / denom,
            explanation: (k < params.explain_top)
                .then(|| explain(c, &best_tree, &edge, &member_cases, contacts, params))
                .flatten(),
        })
        .collect();
    ClusterRanking {
        cases: member_cases.iter().map(|c| c.id).collect(),
        component: 0,
        samples: drawn,
        candidates,
        tree,
        baseline,
    }
}

fn explain(
    c: usize,
    best_tree: &dyn Fn(Option<usize>) -> Option<Vec<Option<usize>>>,
    edge: &dyn Fn(usize, Option<usize>) -> TreeEdge,
    member_cases: &[Case],
    contacts: &ContactGraph,
    params: &RankParams,
) -> Option<Explanation> {
    let parents = best_tree(Some(c))?;
    let m = parents.len();
    // Cases below `c`: follow each case's infectors up to `c` (bounded by m steps).
    let mut below = vec![false; m];
    for (v, is_below) in below.iter_mut().enumerate() {
        let mut u = v;
        for _ in 0..=m {
            if u == c {
                *is_below = true;
                break;
            }
            match parents[u] {
                Some(p) => u = p,
                None => break,
            }
        }
    }
    let mut subtree = Vec::new();
    let mut unexplained = Vec::new();
    let (mut n_contacts, mut n_rooms) = (0u32, 0u32);
    for v in 0..m {
        if v == c {
            continue;
        }
        if below[v] {
            let e = edge(v, parents[v]);
            n_contacts += e.contacts;
            n_rooms += e.rooms;
            subtree.push(e);
        } else {
            unexplained.push(member_cases[v].id);
        }
    }
    let id = member_cases[c].id;
    let chains = if contacts.contains(id) {
        let q = ChainQuery {
            max_hops: params.chain_hops,
            direction: Direction::Forward,
            time_respecting: true,
            max_results: params.max_chains,
            max_edges_scanned: 1_000_000,
            ..ChainQuery::default()
        };
        contacts
            .chains(id, &q)
            .map(|r| r.chains)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Some(Explanation {
        subtree,
        unexplained,
        contacts: n_contacts,
        rooms: n_rooms,
        chains,
    })
}
