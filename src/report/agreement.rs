//! The agreement monitor: the model against the clinicians who signed reviews, per eye,
//! over the last N signed reviews. Quadratic weighted kappa and the confusion matrix on
//! the ICDR grade, referable-DR sensitivity and specificity with the clinicians as the
//! reference, and the same per ISO week so a clinic can see drift. Pure functions; the
//! store supplies the pairs.

use std::collections::BTreeMap;

use serde::Serialize;

use super::metrics::{Proportion, confusion, quadratic_weighted_kappa, sensitivity_specificity, wilson};

/// One eye read by both the model and a clinician.
#[derive(Debug, Clone, PartialEq)]
pub struct EyePair {
    /// ISO week of the sign-off, e.g. "2026-W48".
    pub week: String,
    pub model_grade: Option<u8>,
    pub model_dme: Option<bool>,
    pub clinician_grade: Option<u8>,
    pub clinician_dme: Option<bool>,
}

fn referable(grade: Option<u8>, dme: Option<bool>) -> Option<bool> {
    grade.map(|g| g >= 2 || dme == Some(true))
}

/// Agreement over a set of eyes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AgreementStats {
    /// Eyes read by both.
    pub eyes: usize,
    /// Eyes both found gradable (the grade statistics use these).
    pub graded_by_both: usize,
    /// Eyes where exactly one of the two found the eye gradable.
    pub gradability_disagreements: usize,
    pub quadratic_weighted_kappa: Option<f64>,
    pub exact_grade_agreement: Option<Proportion>,
    /// Rows: clinician grade 0-4; columns: model grade 0-4.
    pub confusion: Vec<Vec<u64>>,
    /// The model's referable call against the clinician's (grade >= 2 or DME).
    pub referable_sensitivity: Option<Proportion>,
    pub referable_specificity: Option<Proportion>,
}

/// One week's row of the trend.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WeekRow {
    pub week: String,
    #[serde(flatten)]
    pub stats: AgreementStats,
}

/// The monitor's report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AgreementReport {
    pub reviews: usize,
    pub overall: AgreementStats,
    /// Oldest week first.
    pub weeks: Vec<WeekRow>,
}

fn non_empty(p: Proportion) -> Option<Proportion> {
    (p.n > 0).then_some(p)
}

/// Statistics over `pairs`.
pub fn stats(pairs: &[&EyePair]) -> AgreementStats {
    let graded: Vec<&&EyePair> = pairs.iter().filter(|p| p.model_grade.is_some() && p.clinician_grade.is_some()).collect();
    let truth: Vec<u8> = graded.iter().filter_map(|p| p.clinician_grade).collect();
    let model: Vec<u8> = graded.iter().filter_map(|p| p.model_grade).collect();
    let exact = truth.iter().zip(&model).filter(|(t, m)| t == m).count() as u64;
    let mut ref_truth = Vec::new();
    let mut ref_model = Vec::new();
    for p in &graded {
        if let (Some(t), Some(m)) = (referable(p.clinician_grade, p.clinician_dme), referable(p.model_grade, p.model_dme)) {
            ref_truth.push(t);
            ref_model.push(m);
        }
    }
    let (sens, spec) = sensitivity_specificity(&ref_model, &ref_truth);
    AgreementStats {
        eyes: pairs.len(),
        graded_by_both: graded.len(),
        gradability_disagreements: pairs.iter().filter(|p| p.model_grade.is_some() != p.clinician_grade.is_some()).count(),
        quadratic_weighted_kappa: (!truth.is_empty()).then(|| quadratic_weighted_kappa(&truth, &model, 5)).filter(|k| k.is_finite()),
        exact_grade_agreement: non_empty(wilson(exact, truth.len() as u64)),
        confusion: confusion(&truth, &model, 5),
        referable_sensitivity: non_empty(sens),
        referable_specificity: non_empty(spec),
    }
}

/// The whole report: overall and per week.
pub fn report(reviews: usize, pairs: &[EyePair]) -> AgreementReport {
    let all: Vec<&EyePair> = pairs.iter().collect();
    let mut by_week: BTreeMap<&str, Vec<&EyePair>> = BTreeMap::new();
    for p in pairs {
        by_week.entry(p.week.as_str()).or_default().push(p);
    }
    AgreementReport {
        reviews,
        overall: stats(&all),
        weeks: by_week.into_iter().map(|(week, ps)| WeekRow { week: week.to_string(), stats: stats(&ps) }).collect(),
    }
}

/// ISO week ("2026-W48") of an RFC 3339 timestamp.
pub fn iso_week(rfc3339: &str) -> Option<String> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).ok()?;
    let (year, week, _) = t.to_iso_week_date();
    Some(format!("{year}-W{week:02}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(week: &str, model: Option<u8>, clinician: Option<u8>) -> EyePair {
        EyePair {
            week: week.into(),
            model_grade: model,
            model_dme: model.map(|_| false),
            clinician_grade: clinician,
            clinician_dme: clinician.map(|_| false),
        }
    }

    #[test]
    fn perfect_agreement_has_kappa_one() {
        let pairs: Vec<EyePair> = (0..5u8).map(|g| pair("2026-W48", Some(g), Some(g))).collect();
        let r = report(3, &pairs);
        assert_eq!(r.overall.quadratic_weighted_kappa, Some(1.0));
        assert_eq!(r.overall.exact_grade_agreement.map(|p| p.successes), Some(5));
        assert_eq!(r.overall.referable_sensitivity.map(|p| (p.successes, p.n)), Some((3, 3)));
        assert_eq!(r.overall.referable_specificity.map(|p| (p.successes, p.n)), Some((2, 2)));
        assert_eq!(r.overall.confusion[4][4], 1);
    }

    #[test]
    fn disagreement_counts_and_weeks() {
        let pairs = vec![
            pair("2026-W47", Some(2), Some(0)), // model over-calls: a referable false positive
            pair("2026-W47", Some(0), Some(3)), // model misses referable disease
            pair("2026-W48", None, Some(1)),    // model found it ungradable
            pair("2026-W48", Some(1), Some(1)),
        ];
        let r = report(2, &pairs);
        assert_eq!(r.overall.eyes, 4);
        assert_eq!(r.overall.graded_by_both, 3);
        assert_eq!(r.overall.gradability_disagreements, 1);
        assert_eq!(r.overall.confusion[0][2], 1);
        assert_eq!(r.overall.confusion[3][0], 1);
        assert_eq!(r.overall.referable_sensitivity.map(|p| (p.successes, p.n)), Some((0, 1)));
        assert_eq!(r.overall.referable_specificity.map(|p| (p.successes, p.n)), Some((1, 2)));
        assert!(r.overall.quadratic_weighted_kappa.is_some_and(|k| k < 0.0), "{:?}", r.overall.quadratic_weighted_kappa);
        assert_eq!(r.weeks.iter().map(|w| w.week.as_str()).collect::<Vec<_>>(), ["2026-W47", "2026-W48"]);
        assert_eq!(r.weeks[1].stats.graded_by_both, 1);
    }

    #[test]
    fn nothing_reviewed_gives_empty_statistics_not_nan() {
        let r = report(0, &[]);
        assert_eq!(r.overall.quadratic_weighted_kappa, None);
        assert_eq!(r.overall.referable_sensitivity, None);
        assert!(r.weeks.is_empty());
        assert!(serde_json::to_string(&r).is_ok());
    }

    #[test]
    fn iso_weeks() {
        assert_eq!(iso_week("2026-11-26T19:00:00Z").as_deref(), Some("2026-W48"));
        assert_eq!(iso_week("2027-01-01T00:00:00Z").as_deref(), Some("2026-W53"));
        assert_eq!(iso_week("yesterday"), None);
    }
}
