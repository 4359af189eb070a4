//! Scoring helpers of the headless run's metrics.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::PersonId;
use crate::truth::{Cluster, MIN_SCORED_CONFIRMED};

/// Precision and recall of a predicted set against the truth.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PrecisionRecall {
    /// Predicted and true.
    pub true_positives: u64,
    /// Predicted, not true.
    pub false_positives: u64,
    /// True, not predicted.
    pub false_negatives: u64,
    /// TP / (TP + FP); 1 when nothing was predicted.
    pub precision: f64,
    /// TP / (TP + FN); 1 when there was nothing to find.
    pub recall: f64,
}

impl PrecisionRecall {
    /// Compares `predicted` with `truth`.
    pub fn of<T: Ord>(predicted: &BTreeSet<T>, truth: &BTreeSet<T>) -> Self {
        let tp = predicted.intersection(truth).count() as u64;
        let fp = predicted.len() as u64 - tp;
        let fn_ = truth.len() as u64 - tp;
        let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
        PrecisionRecall {
            true_positives: tp,
            false_positives: fp,
            false_negatives: fn_,
            precision: ratio(tp, tp + fp),
            recall: ratio(tp, tp + fn_),
        }
    }

    /// Precision, `None` when nothing was predicted (undefined, not perfect).
    pub fn precision_defined(&self) -> Option<f64> {
        (self.true_positives + self.false_positives > 0).then_some(self.precision)
    }

    /// Recall, `None` when there was nothing to find (undefined, not perfect).
    pub fn recall_defined(&self) -> Option<f64> {
        (self.true_positives + self.false_negatives > 0).then_some(self.recall)
    }

    /// nDCF (NIST TC4TL, unit costs): `P_miss + P_false_alarm`, with `negatives` the
    /// number of true negatives + false positives (co-present pairs that are not close).
    pub fn ndcf(&self, negatives: u64) -> f64 {
        let p_miss = 1.0 - self.recall;
        let p_fa = if negatives == 0 {
            0.0
        } else {
            self.false_positives as f64 / negatives as f64
        };
        p_miss + p_fa.min(1.0)
    }
}

/// The p-quantile (0 ≤ p ≤ 1, nearest rank) of `values` (`None` when empty).
pub fn quantile(values: &[f64], p: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v.get(rank - 1).copied()
}

/// An inferred cluster of confirmed cases as an origin-inference method reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InferredCluster {
    /// Its cases.
    pub cases: Vec<PersonId>,
    /// Origin candidates, most likely first.
    pub ranking: Vec<PersonId>,
    /// The "earliest symptom onset" baseline's order of the same cases.
    pub baseline: Vec<PersonId>,
}

/// Origin accuracy against the true clusters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct OriginScore {
    /// True clusters scored (at least [`MIN_SCORED_CONFIRMED`] confirmed cases).
    pub clusters: u64,
    /// Of those, clusters whose confirmed cases all fall in the inferred cluster matched to
    /// them (the evidence links the whole cluster).
    pub linked: u64,
    /// Of those, clusters whose origin lies in the inferred cluster matched to them: no
    /// ranking of the inferred clusters can score more than `reachable / clusters` at any k.
    pub reachable: u64,
    /// Inference: true origin ranked first.
    pub top1: f64,
    /// Inference: true origin among the first three.
    pub top3: f64,
    /// Baseline: true origin has the earliest onset.
    pub baseline_top1: f64,
    /// Baseline: true origin among the three earliest onsets.
    pub baseline_top3: f64,
    /// Inference top-1 over the linked clusters only.
    pub linked_top1: f64,
    /// Inference top-3 over the linked clusters only.
    pub linked_top3: f64,
    /// Baseline top-1 over the linked clusters only.
    pub linked_baseline_top1: f64,
    /// Baseline top-3 over the linked clusters only.
    pub linked_baseline_top3: f64,
}

/// Matches true clusters to inferred ones: each true cluster goes to the inferred cluster
/// holding most of its confirmed cases (ties: the larger inferred cluster, then the one with
/// the smaller first case) — the match [`score_origins`] scores.
pub struct ClusterMatcher<'a> {
    inferred: &'a [InferredCluster],
    where_: BTreeMap<PersonId, usize>,
}

impl<'a> ClusterMatcher<'a> {
    /// Indexes `inferred` by case.
    pub fn new(inferred: &'a [InferredCluster]) -> Self {
        let mut where_: BTreeMap<PersonId, usize> = BTreeMap::new();
        for (k, c) in inferred.iter().enumerate() {
            for p in &c.cases {
                where_.insert(*p, k);
            }
        }
        ClusterMatcher { inferred, where_ }
    }

    /// The index of the inferred cluster matched to `c` and how many of `c`'s confirmed
    /// cases it holds; `None` when no inferred cluster holds any.
    pub fn matched(&self, c: &Cluster) -> Option<(usize, usize)> {
        let mut overlap: BTreeMap<usize, usize> = BTreeMap::new();
        for p in &c.confirmed {
            if let Some(&k) = self.where_.get(p) {
                *overlap.entry(k).or_default() += 1;
            }
        }
        let inferred = self.inferred;
        let first = |k: usize| inferred[k].cases.iter().min().copied();
        overlap.into_iter().max_by(|(ka, na), (kb, nb)| {
            na.cmp(nb)
                .then(inferred[*ka].cases.len().cmp(&inferred[*kb].cases.len()))
                .then(first(*kb).cmp(&first(*ka)))
        })
    }
}

/// Scores origin rankings against the true clusters — the one scoring rule of the
/// simulation driver and of `trustedge origin eval --city`.
///
/// Each true cluster with at least [`MIN_SCORED_CONFIRMED`] confirmed cases (see
/// [`Cluster`] for the definition and its origin) is matched to the inferred cluster
/// holding most of its confirmed cases (ties: the larger inferred cluster, then the one
/// with the smaller first case; no inferred cluster holds any: a miss). It counts as a
/// top-k hit of a method when its origin is among the first k of that inferred cluster's
/// ranking (inference) or baseline order. The match never looks at the origin, and an
/// inferred cluster merging two true clusters is scored as it ranks (a ranking that puts
/// the other cluster's origin first misses). Accuracies are 0 when nothing is scored.
pub fn score_origins(truth: &[Cluster], inferred: &[InferredCluster]) -> OriginScore {
    let matcher = ClusterMatcher::new(inferred);
    let mut s = OriginScore {
        clusters: 0,
        linked: 0,
        reachable: 0,
        top1: 0.0,
        top3: 0.0,
        baseline_top1: 0.0,
        baseline_top3: 0.0,
        linked_top1: 0.0,
        linked_top3: 0.0,
        linked_baseline_top1: 0.0,
        linked_baseline_top3: 0.0,
    };
    for c in truth {
        let Some(origin) = c.origin else { continue };
        if c.confirmed.len() < MIN_SCORED_CONFIRMED {
            continue;
        }
        s.clusters += 1;
        let Some((k, n)) = matcher.matched(c) else {
            continue;
        };
        let linked = n == c.confirmed.len();
        let hit =
            |v: &[PersonId], k: usize| f64::from(u8::from(v.iter().take(k).any(|p| *p == origin)));
        let m = &inferred[k];
        s.reachable += u64::from(m.cases.contains(&origin));
        let hits = [
            hit(&m.ranking, 1),
            hit(&m.ranking, 3),
            hit(&m.baseline, 1),
            hit(&m.baseline, 3),
        ];
        for (x, h) in [
            &mut s.top1,
            &mut s.top3,
            &mut s.baseline_top1,
            &mut s.baseline_top3,
        ]
        .into_iter()
        .zip(hits)
        {
            *x += h;
        }
        if linked {
            s.linked += 1;
            for (x, h) in [
                &mut s.linked_top1,
                &mut s.linked_top3,
                &mut s.linked_baseline_top1,
                &mut s.linked_baseline_top3,
            ]
            .into_iter()
            .zip(hits)
            {
                *x += h;
            }
        }
    }
    let div = |x: &mut f64, n: u64| {
        if n > 0 {
            *x /= n as f64;
        }
    };
    for x in [
        &mut s.top1,
        &mut s.top3,
        &mut s.baseline_top1,
        &mut s.baseline_top3,
    ] {
        div(x, s.clusters);
    }
    for x in [
        &mut s.linked_top1,
        &mut s.linked_top3,
        &mut s.linked_baseline_top1,
        &mut s.linked_baseline_top3,
    ] {
        div(x, s.linked);
    }
    s
}
