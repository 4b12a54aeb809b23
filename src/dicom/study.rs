//! The study grader loop: every poll, the service grades the studies that have been quiet
//! for `study_stable_secs` (see `service::dicom` for grouping, regrading and failures).

use std::sync::Arc;
use std::time::Duration;

use super::{DicomConfig, poll_forever};
use crate::service::ScreeningService;

/// Grades quiet studies until the process ends.
pub async fn run_grader(service: Arc<ScreeningService>, config: DicomConfig) {
    let poll = Duration::from_secs_f64((config.study_stable_secs / 4.0).clamp(0.1, 2.0));
    let destination = config.sr_destination.as_ref().map(|d| format!("{}@{}", d.ae_title, d.address()));
    poll_forever("study grader", poll, || {
        let service = service.clone();
        let destination = destination.clone();
        async move { service.grade_due_studies(config.study_stable_secs, destination.as_deref()).await.map(|_| ()) }
    })
    .await
}
