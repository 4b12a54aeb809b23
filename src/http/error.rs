//! JSON errors for every route: `{"error": "...", "code": "..."}` with the right status,
//! plus `Retry-After` on 503 so clients back off instead of hammering a full queue.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::engine::EngineError;
use crate::preprocess::PreprocessError;
use crate::service::ServiceError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    pub fn busy() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "queue_full", "the inference queue is full; retry shortly")
    }
}

fn engine_status(e: &EngineError) -> StatusCode {
    match e {
        EngineError::QueueFull(_) | EngineError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        EngineError::Preprocess(p) => match p {
            PreprocessError::TooManyBytes { .. } | PreprocessError::TooManyPixels { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            PreprocessError::UnsupportedFormat => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PreprocessError::Empty | PreprocessError::Corrupt(_) => StatusCode::UNPROCESSABLE_ENTITY,
        },
        EngineError::Inference(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match &e {
            ServiceError::Engine(inner) | ServiceError::Image { source: inner, .. } => {
                Self::new(engine_status(inner), inner.code(), e.to_string())
            }
            ServiceError::Invalid(_) => Self::bad_request("invalid_request", e.to_string()),
            ServiceError::TooManyImages { .. } => Self::bad_request("too_many_images", e.to_string()),
            ServiceError::Metadata(_) => Self::bad_request("invalid_metadata", e.to_string()),
            ServiceError::Dicom(_) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_dicom", e.to_string()),
            ServiceError::Sr(_) | ServiceError::Pdf(_) | ServiceError::Render(_) => {
                tracing::error!(error = %e, "cannot render a stored result");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
            ServiceError::Store(crate::store::StoreError::Unavailable(why)) => {
                // The database or object store is unreachable: nothing was acknowledged,
                // the client retries (Retry-After), and this replica recovers by itself.
                tracing::warn!(%why, "storage unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "storage is unavailable; nothing was stored; retry shortly",
                )
            }
            ServiceError::Store(_) | ServiceError::Join(_) => {
                tracing::error!(error = %e, "storage failure");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "storage_error", "the result could not be stored; it was not acknowledged")
            }
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ServiceError::Store(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "code": self.code });
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Maps axum body-extraction rejections (size limit, bad multipart) to JSON errors.
pub fn from_rejection(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(status, "payload_too_large", "the request body is larger than the configured limit")
    } else if status.is_server_error() {
        // axum reports a body stream that failed mid-read as a server error; it is the
        // client's body that stalled or broke off (tower-http's timeout says "timeout").
        if text.contains("timeout") {
            ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", "the request body stalled; send it again")
        } else if text.contains("too slowly") {
            body_too_slow()
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_body", text)
        }
    } else {
        ApiError::new(status, "bad_body", text)
    }
}

/// `axum::extract::Query` whose rejection is the JSON error shape (400 `invalid_query`),
/// so `?limit=-1` is answered like every other bad request.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", rejection.body_text())
    }
}

/// `axum::extract::Path` whose rejection is the JSON error shape (400 `invalid_path`), so
/// a segment that does not decode (`/v1/exams/%FF`) is answered like every other bad
/// request.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::PathRejection) -> Self {
        ApiError::bad_request("invalid_path", rejection.body_text())
    }
}

/// Whether `error`, or any error in its source chain, is an `E`.
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source()).any(|e| e.is::<E>())
}

/// Whether a body read failed because the client stalled (the body idle timeout of
/// `server`), looking through the error's sources.
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    caused_by::<tower_http::timeout::TimeoutError>(error)
}

fn body_too_slow() -> ApiError {
    ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_too_slow", "the request body arrived too slowly (see http.min_body_bytes_per_sec)")
}

/// Whether a body read was ended by the minimum upload rate, looking through sources.
pub fn is_body_too_slow(error: &(dyn std::error::Error + 'static)) -> bool {
    caused_by::<super::body_rate::BodyTooSlow>(error)
}

/// A failed body read: 408 when the client stalled, else 413 (the only other way
/// `axum::body::to_bytes` with a limit fails on a healthy connection).
pub fn body_error(error: axum::Error, limit: usize) -> ApiError {
    if is_body_too_slow(&error) {
        body_too_slow()
    } else if is_body_timeout(&error) {
        ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", "the request body stalled; send it again")
    } else {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("the request is larger than {limit} bytes"))
    }
}
