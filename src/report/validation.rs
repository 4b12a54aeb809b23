//! A site's acceptance test: model findings against a reference-labelled set. DR metrics
//! are computed on images the reference calls gradable and the service graded (the rest
//! are counted, not hidden); gradability is scored on every readable image.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::metrics::{self, Proportion};
use super::plots;
use crate::grading::{ImageDecision, ImageFinding};
use crate::model::ModelIdentity;

/// One row of a labels CSV: `path,grade,dme,gradable[,laterality,exam_id]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabelRow {
    pub path: String,
    pub grade: u8,
    pub dme: u8,
    pub gradable: u8,
    #[serde(default)]
    pub laterality: Option<String>,
    #[serde(default)]
    pub exam_id: Option<String>,
}

impl LabelRow {
    pub fn referable(&self) -> bool {
        self.grade >= 2 || self.dme == 1
    }
}

/// The report, as written to `report.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValidationReport {
    pub model: ModelIdentity,
    pub images: usize,
    pub unreadable: usize,
    pub reference_gradable: usize,
    /// Reference-gradable images the service called ungradable (excluded from DR metrics).
    pub gradable_but_rejected: usize,
    pub dr_evaluated: usize,
    pub quadratic_weighted_kappa: f64,
    pub confusion_matrix: Vec<Vec<u64>>,
    pub referable_auc: f64,
    pub referable_sensitivity: Proportion,
    pub referable_specificity: Proportion,
    pub dme_auc: f64,
    pub gradability_auc: f64,
    /// Sensitivity for catching reference-ungradable images.
    pub ungradable_detection: Proportion,
    #[serde(skip)]
    pub roc: Vec<(f64, f64)>,
}

/// Computes the report from (label, finding) pairs; unreadable images have `None`.
pub fn evaluate(model: &ModelIdentity, rows: &[(LabelRow, Option<ImageFinding>)]) -> ValidationReport {
    let readable: Vec<(&LabelRow, &ImageFinding)> = rows.iter().filter_map(|(l, f)| f.as_ref().map(|f| (l, f))).collect();
    let gradability_scores: Vec<f32> = readable.iter().map(|(_, f)| f.quality.score).collect();
    let gradability_truth: Vec<bool> = readable.iter().map(|(l, _)| l.gradable == 1).collect();
    let reference_ungradable: Vec<&(&LabelRow, &ImageFinding)> = readable.iter().filter(|(l, _)| l.gradable == 0).collect();
    let caught = reference_ungradable.iter().filter(|(_, f)| !f.quality.gradable).count() as u64;
    let graded: Vec<(&LabelRow, &ImageFinding)> = readable.iter().filter(|(l, f)| l.gradable == 1 && f.quality.gradable).copied().collect();
    let truth_grades: Vec<u8> = graded.iter().map(|(l, _)| l.grade).collect();
    let predicted_grades: Vec<u8> = graded.iter().map(|(_, f)| f.dr.as_ref().map_or(0, |d| d.grade)).collect();
    let truth_referable: Vec<bool> = graded.iter().map(|(l, _)| l.referable()).collect();
    let referable_scores: Vec<f32> = graded.iter().map(|(_, f)| f.dr.as_ref().map_or(0.0, |d| d.referable_probability)).collect();
    let referable_decisions: Vec<bool> = graded.iter().map(|(_, f)| f.decision == ImageDecision::Referable).collect();
    let dme_scores: Vec<f32> = graded.iter().map(|(_, f)| f.dme.as_ref().map_or(0.0, |d| d.probability)).collect();
    let dme_truth: Vec<bool> = graded.iter().map(|(l, _)| l.dme == 1).collect();
    let (sensitivity, specificity) = metrics::sensitivity_specificity(&referable_decisions, &truth_referable);
    let reference_gradable = readable.iter().filter(|(l, _)| l.gradable == 1).count();
    ValidationReport {
        model: model.clone(),
        images: rows.len(),
        unreadable: rows.len() - readable.len(),
        reference_gradable,
        gradable_but_rejected: reference_gradable - graded.len(),
        dr_evaluated: graded.len(),
        quadratic_weighted_kappa: metrics::quadratic_weighted_kappa(&truth_grades, &predicted_grades, 5),
        confusion_matrix: metrics::confusion(&truth_grades, &predicted_grades, 5),
        referable_auc: metrics::roc_auc(&referable_scores, &truth_referable),
        referable_sensitivity: sensitivity,
        referable_specificity: specificity,
        dme_auc: metrics::roc_auc(&dme_scores, &dme_truth),
        gradability_auc: metrics::roc_auc(&gradability_scores, &gradability_truth),
        ungradable_detection: metrics::wilson(caught, reference_ungradable.len() as u64),
        roc: metrics::roc_curve(&referable_scores, &truth_referable),
    }
}

fn pct(p: &Proportion) -> String {
    format!("{:.1}% ({}/{}; 95% CI {:.1}-{:.1}%)", p.value * 100.0, p.successes, p.n, p.ci95[0] * 100.0, p.ci95[1] * 100.0)
}

impl ValidationReport {
    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str("# drscreen validation report\n\n");
        s.push_str(&format!("Model: {} {} (sha256 {})\n\n", self.model.name, self.model.version, self.model.sha256));
        s.push_str(&format!(
            "Images: {} ({} unreadable); reference-gradable: {}; graded for DR: {}; reference-gradable but called ungradable: {}\n\n",
            self.images, self.unreadable, self.reference_gradable, self.dr_evaluated, self.gradable_but_rejected
        ));
        s.push_str("| metric | value |\n|---|---|\n");
        s.push_str(&format!("| quadratic weighted kappa (ICDR 0-4) | {:.3} |\n", self.quadratic_weighted_kappa));
        s.push_str(&format!("| referable DR AUC | {:.3} |\n", self.referable_auc));
        s.push_str(&format!("| referable sensitivity | {} |\n", pct(&self.referable_sensitivity)));
        s.push_str(&format!("| referable specificity | {} |\n", pct(&self.referable_specificity)));
        s.push_str(&format!("| DME AUC | {:.3} |\n", self.dme_auc));
        s.push_str(&format!("| gradability AUC | {:.3} |\n", self.gradability_auc));
        s.push_str(&format!("| ungradable images caught | {} |\n\n", pct(&self.ungradable_detection)));
        s.push_str(
            "Confusion matrix (rows: reference grade, columns: model grade)\n\n|   | 0 | 1 | 2 | 3 | 4 |\n|---|---|---|---|---|---|\n",
        );
        for (i, row) in self.confusion_matrix.iter().enumerate() {
            let cells: Vec<String> = row.iter().map(u64::to_string).collect();
            s.push_str(&format!("| {i} | {} |\n", cells.join(" | ")));
        }
        s.push_str("\nPlots: roc.png, confusion.png\n");
        s
    }

    /// Writes report.md, report.json, roc.png and confusion.png into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        std::fs::write(dir.join("report.md"), self.markdown()).map_err(|e| e.to_string())?;
        let json = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("report.json"), json).map_err(|e| e.to_string())?;
        let op = (1.0 - self.referable_specificity.value, self.referable_sensitivity.value);
        let op = (op.0.is_finite() && op.1.is_finite()).then_some(op);
        plots::roc_png(&dir.join("roc.png"), &self.roc, self.referable_auc, op)?;
        plots::confusion_png(&dir.join("confusion.png"), &self.confusion_matrix, "ICDR grade: reference vs model")?;
        Ok(())
    }
}
