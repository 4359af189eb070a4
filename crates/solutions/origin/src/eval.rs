//! Measuring origin inference against the "earliest symptom onset" baseline over many
//! seeded outbreaks.
//!
//! For each outbreak, the cases evaluated are the largest connected component of the
//! evidence (outbreaks whose largest component has fewer than `min_cluster_cases` cases are
//! redrawn from the next seed, and counted in `redrawn`). Their true origin is the one
//! infected first. The ranking read is that of the reported cluster holding most of them
//! (the component itself under [`crate::ClusterRule::Components`]; one of its pieces when
//! the ranking splits it). A method is right at top-k if the true origin is among its first
//! k candidates.

use serde::{Deserialize, Serialize};
use trustedge_contacts::{CaseId, ContactGraph, EncounterFilter};

use crate::OriginError;
use crate::outbreak::{OutbreakSpec, generate_outbreak};
use crate::rank::{RankParams, rank_origins};

/// What an evaluation runs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalSpec {
    /// The outbreaks.
    pub outbreak: OutbreakSpec,
    /// The inference.
    pub rank: RankParams,
    /// Least cases in an evaluated cluster.
    pub min_cluster_cases: usize,
    /// Most outbreaks drawn per evaluated outbreak before giving up.
    pub max_draws_per_outbreak: u32,
}

impl Default for EvalSpec {
    fn default() -> Self {
        EvalSpec {
            outbreak: OutbreakSpec::default(),
            rank: RankParams {
                explain_top: 0,
                samples: 1000,
                ..RankParams::default()
            },
            min_cluster_cases: 5,
            max_draws_per_outbreak: 50,
        }
    }
}

/// The figures.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Outbreaks evaluated.
    pub outbreaks: u32,
    /// Outbreaks drawn but not evaluated (largest cluster too small).
    pub redrawn: u32,
    /// Inference: true origin ranked first.
    pub top1: f64,
    /// Inference: true origin among the first three.
    pub top3: f64,
    /// Baseline: true origin has the earliest onset.
    pub baseline_top1: f64,
    /// Baseline: true origin among the three earliest onsets.
    pub baseline_top3: f64,
    /// Mean confirmed cases per evaluated outbreak.
    pub mean_cases: f64,
    /// Mean cases in the evaluated cluster.
    pub mean_cluster_cases: f64,
    /// Mean infections (confirmed or not) per evaluated outbreak.
    pub mean_infections: f64,
}

/// Runs `outbreaks` evaluated outbreaks from `seed` (deterministic).
pub fn evaluate(spec: &EvalSpec, seed: u64, outbreaks: u32) -> Result<EvalReport, OriginError> {
    let mut r = EvalReport {
        outbreaks: 0,
        redrawn: 0,
        top1: 0.0,
        top3: 0.0,
        baseline_top1: 0.0,
        baseline_top3: 0.0,
        mean_cases: 0.0,
        mean_cluster_cases: 0.0,
        mean_infections: 0.0,
    };
    let max_draws = u64::from(outbreaks) * u64::from(spec.max_draws_per_outbreak.max(1));
    let mut draw = 0u64;
    while r.outbreaks < outbreaks && draw < max_draws {
        let o_seed = seed.wrapping_mul(0x0001_0000_0001).wrapping_add(draw);
        draw += 1;
        let o = generate_outbreak(&spec.outbreak, o_seed);
        let graph = ContactGraph::build(&o.encounters, EncounterFilter::default())?;
        let report = rank_origins(&o.cases, &graph, &o.rooms, &spec.rank, o_seed)?;
        // The evaluated cases: the largest component of the evidence (component 0),
        // whatever the ranking's cluster rule; the ranking read is that of the reported
        // cluster holding most of them (ties: the larger, then the one with the smaller
        // first case).
        let mut evaluated: Vec<CaseId> = report
            .clusters
            .iter()
            .filter(|c| c.component == 0)
            .flat_map(|c| c.cases.iter().copied())
            .collect();
        evaluated.sort_unstable();
        if evaluated.is_empty() || evaluated.len() < spec.min_cluster_cases {
            r.redrawn += 1;
            continue;
        }
        let Some(truth) = o.true_origin(&evaluated) else {
            r.redrawn += 1;
            continue;
        };
        let overlap = |c: &crate::ClusterRanking| {
            c.cases
                .iter()
                .filter(|x| evaluated.binary_search(x).is_ok())
                .count()
        };
        let Some(cluster) = report.clusters.iter().max_by(|x, y| {
            overlap(x)
                .cmp(&overlap(y))
                .then(x.cases.len().cmp(&y.cases.len()))
                .then(y.cases.first().cmp(&x.cases.first()))
        }) else {
            r.redrawn += 1;
            continue;
        };
        let hit = |ranked: &mut dyn Iterator<Item = trustedge_contacts::CaseId>, k: usize| {
            ranked.take(k).any(|c| c == truth)
        };
        let inferred = || cluster.candidates.iter().map(|c| c.case);
        r.top1 += f64::from(u8::from(hit(&mut inferred(), 1)));
        r.top3 += f64::from(u8::from(hit(&mut inferred(), 3)));
        r.baseline_top1 += f64::from(u8::from(hit(&mut cluster.baseline.iter().copied(), 1)));
        r.baseline_top3 += f64::from(u8::from(hit(&mut cluster.baseline.iter().copied(), 3)));
        r.mean_cases += o.cases.len() as f64;
        r.mean_cluster_cases += evaluated.len() as f64;
        r.mean_infections += o.infections.len() as f64;
        r.outbreaks += 1;
    }
    if r.outbreaks > 0 {
        let n = f64::from(r.outbreaks);
        for x in [
            &mut r.top1,
            &mut r.top3,
            &mut r.baseline_top1,
            &mut r.baseline_top3,
            &mut r.mean_cases,
            &mut r.mean_cluster_cases,
            &mut r.mean_infections,
        ] {
            *x /= n;
        }
    }
    Ok(r)
}
