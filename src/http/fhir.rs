//! `GET /v1/exams/{id}/fhir`: the exam as a FHIR R4 DiagnosticReport (see `interop::fhir`).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, Path};

pub async fn exam_fhir(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let exam = state.store_call(move |store| store.get_exam(&id)).await?;
    let exam = exam.filter(|e| caller.may_read(&e.submitted_by)).ok_or_else(|| ApiError::not_found("exam"))?;
    let report = state.service.exam_fhir(exam).await?;
    let body =
        serde_json::to_vec_pretty(&report).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/fhir+json")], body).into_response())
}
