//! What the DIPS edge asks of the service: the `$append-retina-ai-result` Parameters of
//! an exam as it stands now (the newest signed clinician review wins over the model),
//! with the PDF report as `fullReport`.

use serde_json::Value;

use super::{ScreeningService, ServiceError, blocking};
use crate::interop::dips::{AppendInput, ConclusionMapping, append_parameters};

impl ScreeningService {
    /// The Parameters for exam `exam_id`, or `None` when there is no such exam.
    pub async fn dips_parameters(
        &self,
        exam_id: &str,
        validation: bool,
        mapping: &ConclusionMapping,
    ) -> Result<Option<Value>, ServiceError> {
        let store = self.store.clone();
        let id = exam_id.to_string();
        let loaded = blocking(move || -> Result<_, ServiceError> {
            let Some(exam) = store.get_exam(&id)? else { return Ok(None) };
            let signed = store.reviews(&id)?.into_iter().rev().find(|r| r.signed_at.is_some());
            let sectra = store.exam_sectra_study_id(&id)?;
            let views: Vec<Option<String>> = store.exam_images(&id)?.into_iter().map(|i| i.view).collect();
            Ok(Some((exam, signed, sectra, views)))
        })
        .await??;
        let Some((exam, signed, sectra, views)) = loaded else { return Ok(None) };
        let pdf = self.exam_report_pdf(exam.clone()).await?;
        Ok(Some(append_parameters(&AppendInput {
            exam: &exam,
            review: signed.as_ref(),
            sectra_study_id: sectra.as_deref(),
            image_views: &views,
            pdf: &pdf,
            validation,
            mapping,
            rescreen_recall_months: self.screener.policy.recall_months,
        })))
    }
}
