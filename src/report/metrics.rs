//! Screening statistics: quadratic weighted kappa, ROC curve and AUC (Mann-Whitney with
//! ties), sensitivity/specificity with Wilson 95% intervals, confusion matrices. Pure
//! functions over label/prediction vectors.

use serde::{Deserialize, Serialize};

/// A proportion with its Wilson score 95% confidence interval.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Proportion {
    pub value: f64,
    pub successes: u64,
    pub n: u64,
    pub ci95: [f64; 2],
}

/// Wilson score interval (Wilson 1927), z = 1.96.
pub fn wilson(successes: u64, n: u64) -> Proportion {
    if n == 0 {
        return Proportion { value: f64::NAN, successes, n, ci95: [f64::NAN, f64::NAN] };
    }
    let z = 1.959_963_984_540_054_f64;
    let nf = n as f64;
    let p = successes as f64 / nf;
    let denom = 1.0 + z * z / nf;
    let centre = (p + z * z / (2.0 * nf)) / denom;
    let half = z * ((p * (1.0 - p) / nf) + z * z / (4.0 * nf * nf)).sqrt() / denom;
    Proportion { value: p, successes, n, ci95: [(centre - half).max(0.0), (centre + half).min(1.0)] }
}

/// k x k confusion matrix, rows = truth, columns = prediction.
pub fn confusion(truth: &[u8], predicted: &[u8], k: usize) -> Vec<Vec<u64>> {
    let mut m = vec![vec![0u64; k]; k];
    for (&t, &p) in truth.iter().zip(predicted) {
        if (t as usize) < k && (p as usize) < k {
            m[t as usize][p as usize] += 1;
        }
    }
    m
}

/// Cohen's kappa with quadratic weights (Cohen 1968) for `k` ordered classes.
pub fn quadratic_weighted_kappa(truth: &[u8], predicted: &[u8], k: usize) -> f64 {
    let m = confusion(truth, predicted, k);
    let n: u64 = m.iter().flatten().sum();
    if n == 0 || k < 2 {
        return f64::NAN;
    }
    let nf = n as f64;
    let rows: Vec<f64> = m.iter().map(|r| r.iter().sum::<u64>() as f64).collect();
    let cols: Vec<f64> = (0..k).map(|j| m.iter().map(|r| r[j]).sum::<u64>() as f64).collect();
    let (mut observed, mut expected) = (0.0, 0.0);
    for i in 0..k {
        for j in 0..k {
            let w = ((i as f64 - j as f64) / (k as f64 - 1.0)).powi(2);
            observed += w * m[i][j] as f64 / nf;
            expected += w * rows[i] * cols[j] / (nf * nf);
        }
    }
    if expected == 0.0 { 1.0 } else { 1.0 - observed / expected }
}

/// ROC AUC as the Mann-Whitney U statistic (ties count one half).
pub fn roc_auc(scores: &[f32], positive: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut i) = (0.0f64, 0usize);
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        for &idx in &order[i..=j] {
            if positive[idx] {
                rank_sum += average_rank;
            }
        }
        i = j + 1;
    }
    let p = positive.iter().filter(|&&x| x).count() as f64;
    let n = positive.len() as f64 - p;
    if p == 0.0 || n == 0.0 {
        return f64::NAN;
    }
    (rank_sum - p * (p + 1.0) / 2.0) / (p * n)
}

/// ROC curve points (false-positive rate, true-positive rate), from (0,0) to (1,1).
pub fn roc_curve(scores: &[f32], positive: &[bool]) -> Vec<(f64, f64)> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let p = positive.iter().filter(|&&x| x).count().max(1) as f64;
    let n = (positive.len() - positive.iter().filter(|&&x| x).count()).max(1) as f64;
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut points = vec![(0.0, 0.0)];
    for (k, &idx) in order.iter().enumerate() {
        if positive[idx] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last_of_tie = order.get(k + 1).is_none_or(|&next| scores[next] != scores[idx]);
        if last_of_tie {
            points.push((fp / n, tp / p));
        }
    }
    points
}

/// Sensitivity and specificity of binary decisions.
pub fn sensitivity_specificity(predicted: &[bool], positive: &[bool]) -> (Proportion, Proportion) {
    let tp = predicted.iter().zip(positive).filter(|(p, t)| **p && **t).count() as u64;
    let pos = positive.iter().filter(|&&t| t).count() as u64;
    let tn = predicted.iter().zip(positive).filter(|(p, t)| !**p && !**t).count() as u64;
    let neg = positive.len() as u64 - pos;
    (wilson(tp, pos), wilson(tn, neg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kappa_perfect_and_chance() {
        let t = [0, 1, 2, 3, 4, 0, 1, 2];
        assert!((quadratic_weighted_kappa(&t, &t, 5) - 1.0).abs() < 1e-12);
        // Everything predicted as one class: no agreement beyond chance.
        assert!(quadratic_weighted_kappa(&t, &[2; 8], 5).abs() < 1e-12);
        // By hand: observed weighted disagreement 0.125, expected 0.34375.
        let k = quadratic_weighted_kappa(&[0, 1, 2, 2], &[0, 2, 2, 1], 3);
        assert!((k - (1.0 - 0.125 / 0.34375)).abs() < 1e-9, "{k}");
    }

    #[test]
    fn auc_with_ties_and_extremes() {
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]), 1.0);
        assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), 0.5);
        assert_eq!(roc_auc(&[0.9, 0.1], &[false, true]), 0.0);
        let curve = roc_curve(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]);
        assert_eq!(curve.first(), Some(&(0.0, 0.0)));
        assert_eq!(curve.last(), Some(&(1.0, 1.0)));
    }

    #[test]
    fn wilson_interval_known_value() {
        // 95 of 100: Wilson interval (0.8882, 0.9785).
        let p = wilson(95, 100);
        assert!((p.ci95[0] - 0.8882).abs() < 1e-3 && (p.ci95[1] - 0.9785).abs() < 1e-3, "{p:?}");
    }
}
