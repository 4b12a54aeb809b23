//! The review actions as JSON, so an EHR can integrate them: submit, sign and amend a
//! review, list an exam's review versions, read the audit log, and the agreement
//! monitor. The review pages call the same functions ([`save_review`], [`agreement`]).

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, Path, Query, from_rejection};
use crate::report::agreement::{self, AgreementReport};
use crate::review::{FieldError, Review, ReviewError, ReviewInput};
use crate::store::{AuditQuery, ReviewSaveError, Role, SaveKind};

/// A refused save: the JSON error, plus every refused field when the input was invalid
/// (answered as `{error, code, fields: [{field, code, message}]}`).
#[derive(Debug)]
pub struct SaveRefused {
    pub error: ApiError,
    pub fields: Vec<FieldError>,
}

impl IntoResponse for SaveRefused {
    fn into_response(self) -> Response {
        if self.fields.is_empty() {
            return self.error.into_response();
        }
        let body = serde_json::json!({ "error": self.error.message, "code": self.error.code, "fields": self.fields });
        (self.error.status, Json(body)).into_response()
    }
}

/// Saves a review under the review rules; maps refusals to their status codes.
pub async fn save_review(state: &AppState, exam_id: String, reviewer: String, input: ReviewInput) -> Result<Review, ApiError> {
    save_review_as(state, exam_id, reviewer, input, SaveKind::Manual).await.map_err(|r| r.error)
}

/// [`save_review`] keeping every refused field, for a manual save or an autosave.
pub async fn save_review_as(
    state: &AppState,
    exam_id: String,
    reviewer: String,
    input: ReviewInput,
    kind: SaveKind,
) -> Result<Review, SaveRefused> {
    let store = state.service.store.clone();
    let saved = tokio::task::spawn_blocking(move || store.submit_review_as(&exam_id, &reviewer, &input, kind)).await.map_err(|e| {
        SaveRefused { error: ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()), fields: Vec::new() }
    })?;
    saved.map_err(|e| match e {
        ReviewSaveError::ExamNotFound => SaveRefused { error: ApiError::not_found("exam"), fields: Vec::new() },
        ReviewSaveError::Rule(rule) => {
            let status = match rule {
                ReviewError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                ReviewError::AmendmentReasonRequired { .. } | ReviewError::Conflict { .. } => StatusCode::CONFLICT,
            };
            SaveRefused { error: ApiError::new(status, rule.code(), rule.to_string()), fields: rule.fields().to_vec() }
        }
        ReviewSaveError::Store(s) => SaveRefused { error: ApiError::from(s), fields: Vec::new() },
    })
}

/// The agreement report over the configured window (or `last`).
pub async fn agreement(state: &AppState, last: Option<u32>) -> Result<AgreementReport, ApiError> {
    let last = last.unwrap_or(state.review.agreement_window).clamp(1, 10_000);
    let (reviews, pairs) = state.store_call(move |store| store.agreement_pairs(last)).await?;
    Ok(agreement::report(reviews, &pairs))
}

/// `POST /v1/exams/{id}/reviews` (clinician): save a draft, sign off, or amend.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(exam_id): Path<String>,
    body: Result<Json<ReviewInput>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Clinician])?;
    let Json(input) = body.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    let review = match save_review_as(&state, exam_id, caller.0.id.clone(), input, SaveKind::Manual).await {
        Ok(review) => review,
        Err(refused) => return Ok(refused.into_response()),
    };
    let mut response = (StatusCode::CREATED, Json(&review)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/exams/{}/reviews", review.exam_id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// `GET /v1/exams/{id}/reviews` (clinician, admin): every version, oldest first.
pub async fn list(State(state): State<AppState>, caller: Caller, Path(exam_id): Path<String>) -> Result<Response, ApiError> {
    caller.require(&[Role::Clinician, Role::Admin])?;
    let id = exam_id.clone();
    let found = state
        .store_call(move |store| match store.get_exam(&id)? {
            Some(_) => Ok(Some(store.reviews(&id)?)),
            None => Ok(None),
        })
        .await?;
    let Some(reviews) = found else {
        return Err(ApiError::not_found("exam"));
    };
    Ok(Json(serde_json::json!({ "exam_id": exam_id, "reviews": reviews })).into_response())
}

/// `GET /v1/audit?actor=&action=&object=&before=&limit=` (admin), newest first.
pub async fn audit(State(state): State<AppState>, caller: Caller, Query(q): Query<AuditQuery>) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let events = state.store_call(move |store| store.audit_query(&q)).await?;
    Ok(Json(serde_json::json!({ "events": events })).into_response())
}

#[derive(Deserialize)]
pub struct AgreementQuery {
    last: Option<u32>,
}

/// `GET /v1/agreement?last=N` (clinician, admin).
pub async fn agreement_json(State(state): State<AppState>, caller: Caller, Query(q): Query<AgreementQuery>) -> Result<Response, ApiError> {
    caller.require(&[Role::Clinician, Role::Admin])?;
    Ok(Json(agreement(&state, q.last).await?).into_response())
}
