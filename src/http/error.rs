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
            ServiceError::Dicom(_) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_dicom", e.to_string()),
            ServiceError::Sr(_) | ServiceError::Render(_) => {
                tracing::error!(error = %e, "cannot render a stored result");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
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
    } else {
        ApiError::new(status, "bad_body", text)
    }
}
