//! REST v1: grade one image, submit and read exams, fetch originals and heatmaps.
//! Every image response carries `X-Drscreen-{Queue,Preprocess,Inference}-Ms` so load
//! generators can split server time without scraping metrics.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, Path, Query, body_error, from_rejection};
use crate::engine::Timings;
use crate::grading::Laterality;
use crate::service::{ExamMetadata, IncomingImage};
use crate::store::{ExamFilter, Role};

const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/tiff", "image/jpg"];

/// The `metadata` part holds a few references; anything larger is not metadata.
const MAX_METADATA_BYTES: usize = 64 * 1024;

fn timing_headers(headers: &mut HeaderMap, t: &Timings) {
    for (name, v) in [
        ("x-drscreen-queue-ms", t.queue),
        ("x-drscreen-preprocess-ms", t.preprocess),
        ("x-drscreen-inference-ms", t.inference),
        ("x-drscreen-total-ms", t.total),
    ] {
        if let Ok(value) = HeaderValue::from_str(&format!("{v:.3}")) {
            headers.insert(name, value);
        }
    }
}

fn parse_laterality(text: Option<&str>) -> Result<Laterality, ApiError> {
    match text {
        None => Ok(Laterality::Unspecified),
        Some(t) => Laterality::parse(t)
            .ok_or_else(|| ApiError::bad_request("invalid_laterality", format!("unknown laterality '{t}' (use left or right)"))),
    }
}

#[derive(Deserialize)]
pub struct GradeQuery {
    laterality: Option<String>,
}

fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// `POST /v1/grade`: one image as the raw body; the finding, not stored.
pub async fn grade(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<GradeQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let laterality = parse_laterality(q.laterality.as_deref())?;
    let media = media_type(request.headers());
    let dicom = media == "application/dicom";
    if !IMAGE_TYPES.contains(&media.as_str()) && !dicom {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type '{media}' is not accepted; send image/jpeg, image/png, image/tiff or application/dicom"),
        ));
    }
    let body = axum::body::to_bytes(request.into_body(), state.max_body_bytes).await.map_err(|e| body_error(e, state.max_body_bytes))?;
    // The body is read before refusing (wrong role, full queue): answering while the
    // client is still sending makes the server close the connection, and the client sees
    // a reset instead of the status. Reading a few megabytes costs milliseconds; decoding
    // them is what is refused.
    caller.require(&[Role::Device, Role::Admin])?;
    if state.service.saturated() {
        return Err(ApiError::busy());
    }
    if dicom {
        return super::dicomweb::grade_dicom(&state, body, q.laterality.is_some().then_some(laterality)).await;
    }
    let (finding, scored) = state.service.grade(body, laterality).await?;
    let mut response = Json(&finding).into_response();
    timing_headers(response.headers_mut(), &scored.timings);
    Ok(response)
}

/// `POST /v1/exams`: multipart with parts `left`/`right` (images) and `metadata` (JSON).
pub async fn create_exam(
    State(state): State<AppState>,
    caller: Caller,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    // No early refusal here (see `grade`): the role is checked once the parts are read,
    // admission happens when the images are submitted, and a full queue answers 503.
    let mut multipart = multipart.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    let mut images = Vec::new();
    let mut metadata = ExamMetadata::default();
    while let Some(mut field) = multipart.next_field().await.map_err(|e| from_rejection(e.status(), e.body_text()))? {
        let name = field.name().unwrap_or_default().to_string();
        let content_type = field.content_type().unwrap_or_default().to_ascii_lowercase();
        // Each part is read up to its own limit and refused as soon as it passes it.
        let cap = if name == "metadata" { MAX_METADATA_BYTES } else { state.max_body_bytes };
        let mut data = bytes::BytesMut::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| from_rejection(e.status(), e.body_text()))? {
            if data.len() + chunk.len() > cap {
                return Err(match name.as_str() {
                    "metadata" => ApiError::bad_request("invalid_metadata", format!("the metadata part is limited to {cap} bytes")),
                    _ => ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        format!("an image part is limited to {cap} bytes"),
                    ),
                });
            }
            data.extend_from_slice(&chunk);
        }
        let data = data.freeze();
        match name.as_str() {
            "metadata" => {
                metadata =
                    serde_json::from_slice(&data).map_err(|e| ApiError::bad_request("invalid_metadata", format!("metadata part: {e}")))?;
            }
            "left" | "right" if images.len() >= state.service.limits.max_images_per_exam => {
                // Refused before more parts are read: one request must not fill the queue.
                let max = state.service.limits.max_images_per_exam;
                return Err(ApiError::bad_request("too_many_images", format!("an exam holds at most {max} images")));
            }
            "left" | "right" => images.push(IncomingImage {
                bytes: data,
                media_type: if content_type.is_empty() { "application/octet-stream".into() } else { content_type },
                laterality: parse_laterality(Some(&name))?,
                view: None,
                pixels: None,
            }),
            other => {
                return Err(ApiError::bad_request("unknown_part", format!("unknown part '{other}': use left, right or metadata")));
            }
        }
    }
    caller.require(&[Role::Device, Role::Admin])?;
    if images.is_empty() {
        return Err(ApiError::bad_request("no_images", "send at least one image part named left or right"));
    }
    let (stored, result) = state.service.submit_exam(&caller.0.id, images, metadata).await?;
    let mut response = (StatusCode::CREATED, Json(&stored)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/exams/{}", stored.id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(first) = result.images.first() {
        timing_headers(response.headers_mut(), &first.timings_ms);
    }
    Ok(response)
}

/// `GET /v1/exams/{id}`.
pub async fn get_exam(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let exam = state.store_call(move |store| store.get_exam(&id)).await?;
    match exam {
        Some(e) if caller.may_read(&e.submitted_by) => {
            // A clinician or admin opening a patient's result is a clinical access: audited.
            if caller.0.role != Role::Device {
                let (actor, object) = (caller.0.id.clone(), e.id.clone());
                state.store_call(move |store| store.audit(&actor, "exam.view", Some(&object), Some("api"))).await?;
            }
            Ok(Json(e).into_response())
        }
        _ => Err(ApiError::not_found("exam")),
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    outcome: Option<String>,
    reviewed: Option<bool>,
    since: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

/// `GET /v1/exams?outcome=&reviewed=&since=&limit=&offset=`.
pub async fn list_exams(State(state): State<AppState>, caller: Caller, Query(q): Query<ListQuery>) -> Result<Response, ApiError> {
    let outcome = match q.outcome.as_deref() {
        None => None,
        Some(o) => Some(
            crate::grading::ExamOutcome::parse(o)
                .ok_or_else(|| ApiError::bad_request("invalid_outcome", format!("unknown outcome '{o}'")))?,
        ),
    };
    let filter = ExamFilter {
        outcome,
        reviewed: q.reviewed,
        since: q.since,
        submitted_by: (caller.0.role == Role::Device).then(|| caller.0.id.clone()),
        limit: q.limit,
        offset: q.offset,
    };
    let exams = state.store_call(move |store| store.list_exams(&filter)).await?;
    Ok(Json(serde_json::json!({ "exams": exams, "count": exams.len(), "offset": q.offset.unwrap_or(0) })).into_response())
}

async fn readable_image(state: &AppState, caller: &Caller, id: String) -> Result<crate::store::StoredImage, ApiError> {
    let image = state.store_call(move |store| store.get_image(&id)).await?;
    image.filter(|i| caller.may_read(&i.submitted_by)).ok_or_else(|| ApiError::not_found("image"))
}

/// `GET /v1/images/{id}`: the original bytes, typed by what they are (sniffed from their
/// magic bytes), never by the Content-Type the uploader claimed: a client could label an
/// image `text/html` and have a browser run it.
pub async fn get_image(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let image = readable_image(&state, &caller, id).await?;
    let sha = image.sha256.clone();
    let bytes = state.store_call(move |store| store.read_blob(&sha)).await?;
    let media_type = match crate::preprocess::Format::sniff(&bytes) {
        Some(crate::preprocess::Format::Jpeg) => "image/jpeg",
        Some(crate::preprocess::Format::Png) => "image/png",
        Some(crate::preprocess::Format::Tiff) => "image/tiff",
        _ => "application/octet-stream",
    };
    Ok(([(header::CONTENT_TYPE, media_type)], Bytes::from(bytes)).into_response())
}

/// `GET /v1/images/{id}/heatmap.png`.
pub async fn heatmap(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let image = readable_image(&state, &caller, id).await?;
    let png = state.service.heatmap_png(image.sha256, image.cam, image.cam_shape).await?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}
