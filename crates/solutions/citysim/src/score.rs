//! Scoring helpers of the headless run's metrics.

use std::collections::BTreeSet;

use serde::Serialize;

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

/// Fraction of clusters whose ranking has a true origin among its first `k` entries
/// (`(ranking, true origins)` per cluster; clusters without a true origin are skipped; 0
/// when none is left).
pub fn top_k_accuracy<T: PartialEq>(clusters: &[(Vec<T>, Vec<T>)], k: usize) -> f64 {
    let scored: Vec<_> = clusters
        .iter()
        .filter(|(_, truth)| !truth.is_empty())
        .collect();
    if scored.is_empty() {
        return 0.0;
    }
    let hits = scored
        .iter()
        .filter(|(rank, truth)| rank.iter().take(k).any(|r| truth.contains(r)))
        .count();
    hits as f64 / scored.len() as f64
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
