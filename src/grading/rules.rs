//! The clinical rules, in one place, as tables.
//!
//! Sources:
//! - ICDR scale: Wilkinson CP, Ferris FL 3rd, Klein RE, et al. "Proposed international
//!   clinical diabetic retinopathy and diabetic macular edema disease severity scales."
//!   Ophthalmology 2003;110(9):1677-82.
//! - Referable DR = moderate NPDR or worse, or macular oedema: the definition used in
//!   the pivotal autonomous-AI trial (Abramoff MD et al., npj Digit Med 2018;1:39) and by
//!   screening programmes; severe NPDR / PDR need urgent referral (e.g. NHS Diabetic Eye
//!   Screening Programme referral pathways; Norwegian guidance likewise).
//! - The per-image grade rule `threshold-then-argmax-v1` is the model package's own
//!   (models/README.md): the referable-DR threshold decides grade >= 2, argmax picks
//!   the grade on that side of it, so grade and referral never disagree.

use serde::{Deserialize, Serialize};

use super::{DmeFinding, DrFinding, ExamResult, EyeResult, ImageDecision, ImageFinding, Laterality, Quality};
use crate::engine::Scored;
use crate::model::{ModelIdentity, Thresholds};
use crate::preprocess::QualityLimits;
use crate::preprocess::quality::{REASON_MODEL, REASON_NO_FIELD};

/// ICDR severity labels, indexed by grade (Wilkinson et al. 2003, table 1).
pub const ICDR_LABELS: [&str; 5] = [
    "No apparent retinopathy",
    "Mild non-proliferative DR",
    "Moderate non-proliferative DR",
    "Severe non-proliferative DR",
    "Proliferative DR",
];

/// The exam outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExamOutcome {
    UrgentReferral,
    Referral,
    Rescreen,
    Ungradable,
}

impl ExamOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UrgentReferral => "urgent_referral",
            Self::Referral => "referral",
            Self::Rescreen => "rescreen",
            Self::Ungradable => "ungradable",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::UrgentReferral, Self::Referral, Self::Rescreen, Self::Ungradable].into_iter().find(|o| o.as_str() == text)
    }

    /// Urgency rank, 0 = most urgent: the outcome's row in [`OUTCOME_TABLE`] (urgent
    /// referral, referral, ungradable, rescreen), the order the worklist uses. Not the
    /// derived `Ord`, which follows the declaration order (rescreen before ungradable).
    pub fn urgency_rank(self) -> usize {
        OUTCOME_TABLE.iter().position(|(_, o, _)| *o == self).unwrap_or(OUTCOME_TABLE.len())
    }

    /// Whether `self` asks less of the patient's care than `other` (e.g. rescreen
    /// against referral, or rescreen against ungradable).
    pub fn less_urgent_than(self, other: Self) -> bool {
        self.urgency_rank() > other.urgency_rank()
    }
}

/// Site policy around the model's thresholds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct GradingPolicy {
    pub thresholds: Thresholds,
    pub quality: QualityLimits,
    /// Recall interval for a `rescreen` outcome.
    pub recall_months: u32,
}

/// The exam outcome table: the first row whose condition holds decides.
/// (condition, outcome, explanation)
pub const OUTCOME_TABLE: [(&str, ExamOutcome, &str); 4] = [
    (
        "any gradable eye has ICDR grade 3 or 4",
        ExamOutcome::UrgentReferral,
        "severe non-proliferative or proliferative retinopathy in at least one eye: urgent referral to an ophthalmologist",
    ),
    (
        "any gradable eye has ICDR grade 2 or macular oedema",
        ExamOutcome::Referral,
        "moderate retinopathy or macular oedema in at least one eye: referral to an ophthalmologist",
    ),
    (
        "an eye has no gradable image (and nothing referable elsewhere)",
        ExamOutcome::Ungradable,
        "at least one eye could not be graded and nothing referable was seen: re-photograph or examine",
    ),
    (
        "every eye gradable, grades 0-1, no macular oedema",
        ExamOutcome::Rescreen,
        "no referable retinopathy in any eye: routine rescreening",
    ),
];

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Softmax, numerically stable.
pub fn softmax(logits: &[f32; 5]) -> [f32; 5] {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut out = logits.map(|l| (l - max).exp());
    let sum: f32 = out.iter().sum();
    out.iter_mut().for_each(|p| *p /= sum);
    out
}

/// Grade rule `threshold-then-argmax-v1`.
pub fn icdr_grade(probabilities: &[f32; 5], referable_dr_threshold: f32) -> u8 {
    let argmax = |range: std::ops::Range<usize>| {
        range.clone().max_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b]).then(b.cmp(&a))).unwrap_or(range.start) as u8
    };
    let p_referable: f32 = probabilities[2..].iter().sum();
    if p_referable >= referable_dr_threshold { argmax(2..5) } else { argmax(0..2) }
}

/// Grades one scored image.
pub fn grade_image(
    scored: &Scored,
    policy: &GradingPolicy,
    model: &ModelIdentity,
    recipe: &str,
    laterality: Laterality,
    source: Option<String>,
) -> ImageFinding {
    let out = &scored.outputs;
    let measures = scored.prepared.quality;
    let gradable_probability = sigmoid(out.gradable_logit);
    let mut reasons: Vec<String> = measures.failures(&policy.quality).into_iter().map(String::from).collect();
    if !scored.prepared.fov.found {
        reasons.push(REASON_NO_FIELD.into());
    }
    if gradable_probability < policy.thresholds.gradable {
        for warning in measures.warnings(&policy.quality) {
            if !reasons.iter().any(|r| r == warning) {
                reasons.push(warning.into());
            }
        }
        reasons.push(REASON_MODEL.into());
    }
    let gradable = reasons.is_empty();
    let (dr, dme, decision) = if gradable {
        let probabilities = softmax(&out.dr_logits);
        let p_dme = sigmoid(out.dme_logit);
        let grade = icdr_grade(&probabilities, policy.thresholds.referable_dr);
        let dme_present = p_dme >= policy.thresholds.dme;
        let p_ref_dr: f32 = probabilities[2..].iter().sum();
        let referable = grade >= 2 || dme_present;
        (
            Some(DrFinding { grade, label: ICDR_LABELS[grade as usize].into(), probabilities, referable_probability: p_ref_dr.max(p_dme) }),
            Some(DmeFinding { present: dme_present, probability: p_dme }),
            if referable { ImageDecision::Referable } else { ImageDecision::NotReferable },
        )
    } else {
        (None, None, ImageDecision::Ungradable)
    };
    ImageFinding {
        source,
        laterality,
        quality: Quality { gradable, score: gradable_probability, reasons, measures },
        dr,
        dme,
        decision,
        model: model.clone(),
        timings_ms: scored.timings,
        image: scored.prepared.source,
        recipe: recipe.into(),
        laterality_check: Some(super::laterality::check(laterality, scored.prepared.disc.as_ref(), gradable)),
    }
}

/// Per eye: the worst gradable image decides the grade; DME if any gradable image shows it.
pub fn grade_eye(laterality: Laterality, images: &[(usize, &ImageFinding)]) -> EyeResult {
    let gradable: Vec<&ImageFinding> = images.iter().map(|(_, f)| *f).filter(|f| f.quality.gradable).collect();
    EyeResult {
        laterality,
        gradable: !gradable.is_empty(),
        grade: gradable.iter().filter_map(|f| f.dr.as_ref().map(|d| d.grade)).max(),
        dme: (!gradable.is_empty()).then(|| gradable.iter().any(|f| f.dme.as_ref().is_some_and(|d| d.present))),
        images: images.iter().map(|(i, _)| *i).collect(),
    }
}

/// Applies `OUTCOME_TABLE` to the eyes.
pub fn exam_outcome(eyes: &[EyeResult]) -> (ExamOutcome, &'static str) {
    let urgent = eyes.iter().any(|e| e.grade.is_some_and(|g| g >= 3));
    let referral = eyes.iter().any(|e| e.grade == Some(2) || e.dme == Some(true));
    let ungradable = eyes.is_empty() || eyes.iter().any(|e| !e.gradable);
    let row = if urgent {
        0
    } else if referral {
        1
    } else if ungradable {
        2
    } else {
        3
    };
    (OUTCOME_TABLE[row].1, OUTCOME_TABLE[row].2)
}

/// Aggregates image findings into an exam result.
pub fn grade_exam(images: Vec<ImageFinding>, policy: &GradingPolicy, model: &ModelIdentity) -> ExamResult {
    let mut lateralities: Vec<Laterality> = images.iter().map(|f| f.laterality).collect();
    lateralities.sort();
    lateralities.dedup();
    let eyes: Vec<EyeResult> = lateralities
        .into_iter()
        .map(|lat| {
            let of_eye: Vec<(usize, &ImageFinding)> = images.iter().enumerate().filter(|(_, f)| f.laterality == lat).collect();
            grade_eye(lat, &of_eye)
        })
        .collect();
    let (outcome, explanation) = exam_outcome(&eyes);
    let laterality_warnings =
        images.iter().filter(|f| f.laterality_check.is_some_and(|c| c.verdict == super::LateralityVerdict::Contradicts)).count();
    ExamResult {
        outcome,
        recall_months: (outcome == ExamOutcome::Rescreen).then_some(policy.recall_months),
        // A photograph whose disc contradicts its stated eye needs a human even when the
        // grades say rescreen: the eyes may be swapped, and the per-eye result with them.
        flagged: outcome != ExamOutcome::Rescreen || laterality_warnings > 0,
        explanation: explanation.into(),
        eyes,
        images,
        model: model.clone(),
        laterality_warnings: Some(laterality_warnings),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eye(gradable: bool, grade: Option<u8>, dme: Option<bool>) -> EyeResult {
        EyeResult { laterality: Laterality::Right, gradable, grade, dme, images: vec![] }
    }

    #[test]
    fn outcome_table_row_by_row() {
        // Row 0: grade 3 or 4 anywhere -> urgent, even if the other eye is ungradable.
        for g in [3, 4] {
            assert_eq!(exam_outcome(&[eye(true, Some(g), Some(false)), eye(false, None, None)]).0, ExamOutcome::UrgentReferral);
        }
        // Row 1: grade 2, or DME with a low grade.
        assert_eq!(exam_outcome(&[eye(true, Some(2), Some(false)), eye(true, Some(0), Some(false))]).0, ExamOutcome::Referral);
        assert_eq!(exam_outcome(&[eye(true, Some(1), Some(true)), eye(true, Some(0), Some(false))]).0, ExamOutcome::Referral);
        assert_eq!(exam_outcome(&[eye(true, Some(0), Some(true)), eye(false, None, None)]).0, ExamOutcome::Referral);
        // Row 2: an ungradable eye and nothing referable elsewhere.
        assert_eq!(exam_outcome(&[eye(true, Some(1), Some(false)), eye(false, None, None)]).0, ExamOutcome::Ungradable);
        assert_eq!(exam_outcome(&[]).0, ExamOutcome::Ungradable);
        // Row 3: all gradable, 0-1, no DME.
        assert_eq!(exam_outcome(&[eye(true, Some(1), Some(false)), eye(true, Some(0), Some(false))]).0, ExamOutcome::Rescreen);
    }

    #[test]
    fn urgency_follows_the_outcome_table() {
        use ExamOutcome::*;
        let order: Vec<usize> = [UrgentReferral, Referral, Ungradable, Rescreen].iter().map(|o| o.urgency_rank()).collect();
        assert_eq!(order, [0, 1, 2, 3]);
        assert!(Rescreen.less_urgent_than(Referral) && Rescreen.less_urgent_than(Ungradable));
        assert!(Referral.less_urgent_than(UrgentReferral) && Ungradable.less_urgent_than(Referral));
        assert!(!UrgentReferral.less_urgent_than(Referral) && !Referral.less_urgent_than(Referral));
        assert!(!Ungradable.less_urgent_than(Rescreen));
    }

    #[test]
    fn grade_rule_threshold_then_argmax() {
        // P(>=2) = 0.35 over a 0.3 threshold: referable side, argmax among 2..4 is 2.
        assert_eq!(icdr_grade(&[0.5, 0.15, 0.2, 0.1, 0.05], 0.3), 2);
        // Same probabilities, stricter threshold: argmax of 0..1 is 0.
        assert_eq!(icdr_grade(&[0.5, 0.15, 0.2, 0.1, 0.05], 0.4), 0);
        assert_eq!(icdr_grade(&[0.1, 0.6, 0.1, 0.1, 0.1], 0.5), 1);
        assert_eq!(icdr_grade(&[0.0, 0.0, 0.1, 0.2, 0.7], 0.5), 4);
        assert_eq!(icdr_grade(&[0.0, 0.1, 0.1, 0.7, 0.1], 0.5), 3);
    }

    #[test]
    fn eye_takes_worst_gradable_image() {
        let mk = |gradable: bool, grade: u8, dme: bool| ImageFinding {
            source: None,
            laterality: Laterality::Left,
            quality: Quality {
                gradable,
                score: 0.9,
                reasons: vec![],
                measures: crate::preprocess::QualityMeasures {
                    fov_coverage: 1.0,
                    brightness: 100.0,
                    clipped_fraction: 0.0,
                    contrast: 20.0,
                    focus: 1.0,
                },
            },
            dr: gradable.then(|| DrFinding {
                grade,
                label: ICDR_LABELS[grade as usize].into(),
                probabilities: [0.2; 5],
                referable_probability: 0.1,
            }),
            dme: gradable.then_some(DmeFinding { present: dme, probability: 0.1 }),
            decision: ImageDecision::NotReferable,
            model: ModelIdentity { name: "m".into(), version: "1".into(), sha256: "0".into() },
            timings_ms: Default::default(),
            image: crate::preprocess::SourceInfo { format: crate::preprocess::Format::Jpeg, width: 1, height: 1, scale_denominator: 1 },
            recipe: String::new(),
            laterality_check: None,
        };
        let a = mk(true, 1, false);
        let b = mk(true, 3, false);
        let c = mk(false, 4, true);
        let e = grade_eye(Laterality::Left, &[(0, &a), (1, &b), (2, &c)]);
        assert!(e.gradable);
        assert_eq!(e.grade, Some(3));
        assert_eq!(e.dme, Some(false));
        let only_bad = grade_eye(Laterality::Left, &[(2, &c)]);
        assert!(!only_bad.gradable && only_bad.grade.is_none() && only_bad.dme.is_none());
    }

    #[test]
    fn laterality_spellings() {
        assert_eq!(Laterality::parse("OD"), Some(Laterality::Right));
        assert_eq!(Laterality::parse("l"), Some(Laterality::Left));
        assert_eq!(Laterality::parse("sideways"), None);
    }
}

#[cfg(test)]
mod stored_before_the_laterality_check {
    use super::*;

    /// Exams stored before the laterality check have neither `laterality_check` on their
    /// images nor `laterality_warnings`: they still read, as "not checked".
    #[test]
    fn old_results_still_deserialize() {
        let old = serde_json::json!({
            "outcome": "rescreen", "recall_months": 12, "flagged": false, "explanation": "x", "eyes": [],
            "model": {"name": "m", "version": "1", "sha256": "0"},
            "images": [{
                "laterality": "left",
                "quality": {"gradable": true, "score": 0.9, "reasons": [],
                    "measures": {"fov_coverage": 1.0, "brightness": 100.0, "clipped_fraction": 0.0, "contrast": 20.0, "focus": 1.0}},
                "dr": null, "dme": null, "decision": "not_referable",
                "model": {"name": "m", "version": "1", "sha256": "0"},
                "timings_ms": {"queue": 0.0, "preprocess": 1.0, "inference": 2.0, "total": 3.0, "batch_size": 1},
                "image": {"format": "jpeg", "width": 1, "height": 1, "scale_denominator": 1}, "recipe": "r"
            }]
        });
        let result: ExamResult = serde_json::from_value(old).unwrap();
        assert_eq!(result.laterality_warnings, None);
        assert_eq!(result.images[0].laterality_check, None);
        // Written back, neither key appears: the stored row reads back byte for byte.
        let again = serde_json::to_value(&result).unwrap();
        assert!(again["images"][0].get("laterality_check").is_none() && again.get("laterality_warnings").is_none(), "{again}");
    }
}
