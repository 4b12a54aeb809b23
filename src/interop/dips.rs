//! PLACEHOLDER until branch wt-dips lands (replaced wholesale by its version).
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::review::Review;
use crate::store::StoredExam;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConclusionMapping {}

impl ConclusionMapping {
    pub fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DipsError(String);

#[derive(Debug, Clone)]
pub struct PendingExamination {
    pub report_id: String,
    pub examination_id: Option<String>,
    pub sectra_study_ids: Vec<String>,
}

pub fn pending_examinations(bundle: &Value) -> Result<Vec<PendingExamination>, DipsError> {
    let _ = bundle;
    Err(DipsError("placeholder".into()))
}

pub struct AppendInput<'a> {
    pub exam: &'a StoredExam,
    pub review: Option<&'a Review>,
    pub sectra_study_id: Option<&'a str>,
    pub pdf: &'a [u8],
    pub validation: bool,
    pub mapping: &'a ConclusionMapping,
}

pub fn append_parameters(input: &AppendInput) -> Value {
    let _ = input;
    Value::Null
}
