//! DICOM over HTTP: STOW-RS (`POST /dicomweb/studies`, PS3.18 10.5), grading one DICOM
//! object (`POST /v1/grade` with `Content-Type: application/dicom`) and an exam's SR
//! (`GET /v1/exams/{id}/sr.dcm`). STOW-RS parts go through the same ingest as C-STORE,
//! so they are grouped into studies and graded the same way. Parsing and decoding run
//! on the blocking pool.

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, Path, body_error};
use crate::grading::Laterality;
use crate::interop::object::{read_part10, text};
use crate::service::{IngestError, Ingested, ScreeningService};
use crate::store::Role;

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

/// The value of a `;`-separated parameter of a media type (quotes removed).
fn param(content_type: &str, name: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The first `needle` at or after `from`, in time linear in the haystack (two-way search;
/// a naive scan is quadratic in the boundary length on hostile bodies).
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    memchr::memmem::find(haystack.get(from..)?, needle).map(|at| at + from)
}

/// RFC 2046 5.1.1: a boundary is 1 to 70 characters.
pub const MAX_BOUNDARY: usize = 70;

/// Splits a multipart body into (part content type, part bytes). CPU-bound on large
/// bodies: call it on the blocking pool.
pub fn split_multipart(body: &[u8], boundary: &str, max_parts: usize) -> Result<Vec<(String, Bytes)>, String> {
    if boundary.is_empty() || boundary.len() > MAX_BOUNDARY {
        return Err(format!("the boundary must be 1 to {MAX_BOUNDARY} characters (RFC 2046)"));
    }
    let delim = format!("--{boundary}");
    let mut pos = find(body, delim.as_bytes(), 0).ok_or("no opening boundary")?;
    let mut parts = Vec::new();
    loop {
        let after = pos + delim.len();
        if body.get(after..after + 2) == Some(b"--") {
            return Ok(parts);
        }
        let header_start = find(body, b"\r\n", after).ok_or("unterminated boundary line")? + 2;
        let header_end = find(body, b"\r\n\r\n", header_start.saturating_sub(2)).ok_or("part without a blank line after its headers")?;
        let headers = String::from_utf8_lossy(&body[header_start.min(header_end)..header_end]).to_string();
        let content_start = header_end + 4;
        let mut closing = Vec::with_capacity(delim.len() + 2);
        closing.extend_from_slice(b"\r\n");
        closing.extend_from_slice(delim.as_bytes());
        let next = find(body, &closing, content_start).ok_or("part without a closing boundary")?;
        let content_type = headers
            .lines()
            .find_map(|l| {
                l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-type")).map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_default();
        if parts.len() == max_parts {
            return Err(format!("more than {max_parts} parts in one request"));
        }
        parts.push((content_type, Bytes::copy_from_slice(&body[content_start..next])));
        pos = next + 2;
    }
}

fn ui(v: &str) -> Value {
    if v.is_empty() { json!({"vr": "UI"}) } else { json!({"vr": "UI", "Value": [v]}) }
}

/// The multipart boundary of a STOW-RS request, or 415.
fn stow_boundary(content_type: &str) -> Result<String, ApiError> {
    let media = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let part_type = param(content_type, "type").map(|t| t.to_ascii_lowercase());
    let unsupported = || {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send multipart/related; type=\"application/dicom\" with a boundary (PS3.18 STOW-RS)",
        )
    };
    if media != "multipart/related" || part_type.as_deref().is_some_and(|t| t != "application/dicom") {
        return Err(unsupported());
    }
    param(content_type, "boundary").ok_or_else(unsupported)
}

/// A refused STOW-RS part: (SOP class, SOP instance, FailureReason, message).
type RefusedPart = (String, String, u16, String);

/// Stores one STOW-RS part through the service's DICOM ingest (blocking).
fn ingest_part(service: &ScreeningService, actor: &str, content_type: &str, bytes: &[u8]) -> Result<Ingested, RefusedPart> {
    let media = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if media != "application/dicom" {
        return Err((String::new(), String::new(), 0xC000_u16, format!("part of type '{content_type}' is not application/dicom")));
    }
    service.ingest_part10(actor, "stow-rs", bytes).map_err(|e: IngestError| {
        // Name the refused instance when its header can be read at all.
        let (class, uid) = read_part10(bytes)
            .ok()
            .map(|(o, _)| {
                let t = |tag| text(&o, tag).unwrap_or_default();
                (t(dicom_dictionary_std::tags::SOP_CLASS_UID), t(dicom_dictionary_std::tags::SOP_INSTANCE_UID))
            })
            .unwrap_or_default();
        (class, uid, e.failure_reason(), e.to_string())
    })
}

/// The PS3.18 response: 200 all stored, 202 some refused, 409 none stored.
fn stow_response(outcomes: Vec<Result<Ingested, RefusedPart>>) -> Result<Response, ApiError> {
    let mut referenced = Vec::new();
    let mut failed = Vec::new();
    // One warning per request, not per part: a request of junk parts must not flood the log.
    let mut first_refusal = None;
    for outcome in outcomes {
        match outcome {
            Ok(done) => referenced.push(json!({
                "00081150": ui(&done.sop_class_uid),
                "00081155": ui(&done.sop_instance_uid),
            })),
            Err((class, uid, reason, message)) => {
                tracing::debug!(reason = format!("0x{reason:04X}"), error = %message, "STOW-RS part refused");
                first_refusal.get_or_insert((reason, message));
                failed.push(json!({
                    "00081150": ui(&class),
                    "00081155": ui(&uid),
                    "00081197": {"vr": "US", "Value": [reason]},
                }));
            }
        }
    }
    if let Some((reason, message)) = first_refusal {
        tracing::warn!(refused = failed.len(), stored = referenced.len(), first_reason = format!("0x{reason:04X}"), first_error = %message, "STOW-RS parts refused");
    }
    let status = match (referenced.is_empty(), failed.is_empty()) {
        (false, true) => StatusCode::OK,
        (false, false) => StatusCode::ACCEPTED,
        (true, _) => StatusCode::CONFLICT,
    };
    let mut doc = serde_json::Map::new();
    if !failed.is_empty() {
        doc.insert("00081198".into(), json!({"vr": "SQ", "Value": failed}));
    }
    if !referenced.is_empty() {
        doc.insert("00081199".into(), json!({"vr": "SQ", "Value": referenced}));
    }
    let body = serde_json::to_vec(&Value::Object(doc)).map_err(internal)?;
    Ok((status, [(header::CONTENT_TYPE, "application/dicom+json")], body).into_response())
}

/// `POST /dicomweb/studies`: STOW-RS with `multipart/related; type="application/dicom"`.
pub async fn stow(State(state): State<AppState>, caller: Caller, request: Request) -> Result<Response, ApiError> {
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let boundary = stow_boundary(&content_type)?;
    let limit = state.max_body_bytes.saturating_mul(4);
    let body = axum::body::to_bytes(request.into_body(), limit).await.map_err(|e| body_error(e, limit))?;
    caller.require(&[Role::Device, Role::Admin])?;
    let service = state.service.clone();
    let actor = caller.0.id.clone();
    // Splitting and ingest are CPU and disk work: the blocking pool, never the async workers.
    let max_parts = state.service.limits.max_instances_per_request;
    let outcomes = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let parts = split_multipart(&body, &boundary, max_parts).map_err(|e| ApiError::bad_request("invalid_multipart", e))?;
        if parts.is_empty() {
            return Err(ApiError::bad_request("no_parts", "the request has no parts"));
        }
        Ok(parts.into_iter().map(|(ct, bytes)| ingest_part(&service, &actor, &ct, &bytes)).collect::<Vec<_>>())
    })
    .await
    .map_err(internal)??;
    stow_response(outcomes)
}

/// `POST /v1/grade` with an `application/dicom` body: the first frame's finding (laterality
/// from the query, else from the object). Not stored.
pub async fn grade_dicom(state: &AppState, body: Bytes, laterality: Option<Laterality>) -> Result<Response, ApiError> {
    let (finding, _) = state.service.grade_dicom(body, laterality).await?;
    Ok(axum::Json(&finding).into_response())
}

/// `GET /v1/exams/{id}/sr.dcm`: the exam's DICOM SR (Comprehensive 3D SR, TID 1500).
pub async fn exam_sr(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let exam = state.store_call(move |store| store.get_exam(&id)).await?;
    let exam = exam.filter(|e| caller.may_read(&e.submitted_by)).ok_or_else(|| ApiError::not_found("exam"))?;
    let exam_id = exam.id.clone();
    let bytes = state.service.exam_sr_bytes(exam).await?;
    let mut response = ([(header::CONTENT_TYPE, "application/dicom")], bytes).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{exam_id}-sr.dcm\"")) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_related_splits_parts() {
        let body = b"--b1\r\nContent-Type: application/dicom\r\n\r\nAAA\r\n--b1\r\nContent-Type: text/plain\r\n\r\nB\r\nB\r\n--b1--\r\n";
        let parts = split_multipart(body, "b1", 8).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].0.as_str(), &parts[0].1[..]), ("application/dicom", &b"AAA"[..]));
        assert_eq!(&parts[1].1[..], b"B\r\nB");
        assert!(split_multipart(b"nothing", "b1", 8).is_err());
        assert!(split_multipart(body, "b1", 1).unwrap_err().contains("more than 1 parts"));
        // A boundary longer than RFC 2046 allows is refused before any search.
        let long = "-".repeat(MAX_BOUNDARY + 1);
        let body = format!("--{long}\r\n\r\nA\r\n--{long}--");
        assert!(split_multipart(body.as_bytes(), &long, 8).unwrap_err().contains("boundary"));
        assert_eq!(split_multipart(body.replace(&long, &long[1..]).as_bytes(), &long[1..], 8).unwrap().len(), 1);
        assert_eq!(param("multipart/related; type=\"application/dicom\"; boundary=xyz", "boundary").as_deref(), Some("xyz"));
    }
}
