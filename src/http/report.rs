//! `GET /v1/exams/{id}/report.pdf`: the exam's one-page PDF report (see `interop::pdf`),
//! readable by whoever may read the exam.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, Path};

pub async fn exam_report_pdf(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let exam = state.store_call(move |store| store.get_exam(&id)).await?;
    let exam = exam.filter(|e| caller.may_read(&e.submitted_by)).ok_or_else(|| ApiError::not_found("exam"))?;
    let disposition = format!("inline; filename=\"drscreen-exam-{}.pdf\"", exam.id);
    let pdf = state.service.exam_report_pdf(exam).await?;
    Ok(([(header::CONTENT_TYPE, "application/pdf".to_string()), (header::CONTENT_DISPOSITION, disposition)], pdf).into_response())
}
