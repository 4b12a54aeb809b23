//! Grading: pure functions from model outputs and thresholds to clinical results.
//! `rules` holds every clinical table (ICDR labels, the per-image grade rule, the exam
//! outcome table) with its source; this module holds the result types whose field
//! names clients depend on (see ARCHITECTURE.md, "Names in results").

pub mod laterality;
pub mod rules;

use serde::{Deserialize, Serialize};

use crate::engine::Timings;
use crate::model::ModelIdentity;
use crate::preprocess::{QualityMeasures, SourceInfo};

pub use laterality::{LateralityCheck, LateralityVerdict};
pub use rules::{ExamOutcome, GradingPolicy, grade_exam, grade_image};

/// Which eye an image shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Laterality {
    Right,
    Left,
    /// Not supplied: treated as an eye of its own so it is never silently merged.
    Unspecified,
}

impl Laterality {
    /// Parses the common spellings: L/R, left/right, OS/OD (DICOM and clinic exports).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "l" | "left" | "os" => Some(Self::Left),
            "r" | "right" | "od" => Some(Self::Right),
            "" | "u" | "unknown" | "unspecified" => Some(Self::Unspecified),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Right => "right",
            Self::Left => "left",
            Self::Unspecified => "unspecified",
        }
    }
}

/// Image quality verdict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Quality {
    pub gradable: bool,
    /// The model's P(gradable).
    pub score: f32,
    /// Stable reason codes when ungradable (empty when gradable).
    pub reasons: Vec<String>,
    pub measures: QualityMeasures,
}

/// Diabetic retinopathy on the International Clinical DR scale.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DrFinding {
    pub grade: u8,
    pub label: String,
    pub probabilities: [f32; 5],
    /// max(P(grade >= 2), P(DME)).
    pub referable_probability: f32,
}

/// Diabetic macular oedema.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DmeFinding {
    pub present: bool,
    pub probability: f32,
}

/// What the image means for the patient on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageDecision {
    Referable,
    NotReferable,
    Ungradable,
}

/// One graded image. `dr` and `dme` are absent for ungradable images: they are
/// reported as ungradable, never guessed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageFinding {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub laterality: Laterality,
    pub quality: Quality,
    pub dr: Option<DrFinding>,
    pub dme: Option<DmeFinding>,
    pub decision: ImageDecision,
    pub model: ModelIdentity,
    pub timings_ms: Timings,
    pub image: SourceInfo,
    pub recipe: String,
    /// Whether the optic disc sits where the stated eye puts it (`grading::laterality`).
    /// Absent in results stored before the check existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub laterality_check: Option<LateralityCheck>,
}

/// The per-eye summary: the worst gradable image decides.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EyeResult {
    pub laterality: Laterality,
    pub gradable: bool,
    pub grade: Option<u8>,
    pub dme: Option<bool>,
    /// Indices into the exam's `images`.
    pub images: Vec<usize>,
}

/// The exam result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExamResult {
    pub outcome: ExamOutcome,
    pub recall_months: Option<u32>,
    /// Whether a clinician should look at it (everything except rescreen).
    pub flagged: bool,
    /// The rule that fired, in words.
    pub explanation: String,
    pub eyes: Vec<EyeResult>,
    pub images: Vec<ImageFinding>,
    pub model: ModelIdentity,
    /// How many images' disc position contradicts their stated eye. Absent in results
    /// stored before the laterality check existed (they read back byte for byte).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub laterality_warnings: Option<usize>,
}
