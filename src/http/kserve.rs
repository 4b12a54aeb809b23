//! KServe v2 / Open Inference Protocol (OIP) REST edge, with Triton's
//! `binary_tensor_data` extension, so that standard inference clients (Triton's
//! `tritonclient.http`, KServe SDKs) can call drscreen without a custom client. It
//! serves server and model metadata, liveness/readiness, and `infer` for one model
//! (the loaded package). Two inputs are offered: `image`, an already-normalised FP32
//! NCHW batch that goes straight to the engine's dynamic batcher, and `image_bytes`,
//! encoded JPEG/PNG/TIFF images that run through the full drscreen pipeline and also
//! yield the clinical `finding`. Like the v1 handlers, this module holds no clinical
//! logic: it translates the protocol into engine/service calls and back.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::future::try_join_all;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, from_rejection};
use crate::engine::{EngineError, ImageOutputs};
use crate::grading::Laterality;
use crate::service::ServiceError;
use crate::store::Role;

/// The Triton binary extension header: length of the JSON part of a binary body.
const HEADER_LENGTH: &str = "inference-header-content-length";
/// KServe names this platform for ONNX models; clients use it only for display.
const PLATFORM: &str = "onnxruntime_onnx";
const INPUT_TENSOR: &str = "image";
const INPUT_BYTES: &str = "image_bytes";
const OUT_DR: &str = "dr_logits";
const OUT_DME: &str = "dme_logit";
const OUT_GRADABLE: &str = "gradable_logit";
const OUT_CAM: &str = "referable_cam";
const OUT_FINDING: &str = "finding";
/// Outputs in the order they are returned when the request names none.
const TENSOR_OUTPUTS: [&str; 4] = [OUT_DR, OUT_DME, OUT_GRADABLE, OUT_CAM];

/// The `/v2` routes; merged into the main router so they share its state, body limit
/// and metrics middleware.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/versions/{version}", get(model_metadata_version))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/versions/{version}/ready", get(model_ready_version))
        .route("/v2/models/{name}/infer", post(infer))
        .route("/v2/models/{name}/versions/{version}/infer", post(infer_version))
}

fn path_error(e: PathRejection) -> ApiError {
    ApiError::bad_request("invalid_path", e.body_text())
}

/// Resolves the addressed model; anything but the loaded package (and its version) is 404
/// so clients can tell "wrong model" from "bad request".
fn check_model(state: &AppState, name: &str, version: Option<&str>) -> Result<(), ApiError> {
    let identity = &state.service.screener.engine.model().identity;
    if name != identity.name {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "model_not_found", format!("model '{name}' is not served here")));
    }
    if let Some(v) = version
        && v != identity.version
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "model_version_not_found",
            format!("model '{name}' has no version '{v}' (served: {})", identity.version),
        ));
    }
    Ok(())
}

/// `GET /v2`: server metadata. Any valid key, like `/info`.
async fn server_metadata(_caller: Caller) -> Response {
    Json(json!({
        "name": "drscreen",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
    .into_response()
}

/// `GET /v2/health/live`: the process answers. No key: orchestrator probes carry none.
async fn live() -> Response {
    Json(json!({"live": true})).into_response()
}

fn readiness(state: &AppState) -> Response {
    if state.service.screener.engine.is_ready() {
        Json(json!({"ready": true})).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"ready": false, "code": "not_ready", "error": "the inference engine is not ready"})))
            .into_response()
    }
}

/// `GET /v2/health/ready`: 200 once the engine is warm and accepting, 503 otherwise.
async fn ready(State(state): State<AppState>) -> Response {
    readiness(&state)
}

/// `GET /v2/models/{name}/ready`: a readiness probe too, so no key.
async fn model_ready(State(state): State<AppState>, path: Result<Path<String>, PathRejection>) -> Result<Response, ApiError> {
    let Path(name) = path.map_err(path_error)?;
    check_model(&state, &name, None)?;
    Ok(readiness(&state))
}

async fn model_ready_version(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((name, version)) = path.map_err(path_error)?;
    check_model(&state, &name, Some(&version))?;
    Ok(readiness(&state))
}

#[derive(Serialize)]
struct TensorMetadata {
    name: &'static str,
    datatype: &'static str,
    shape: Vec<i64>,
}

fn metadata(state: &AppState) -> Value {
    let model = state.service.screener.engine.model();
    let side = i64::from(state.service.screener.engine.preprocessor().input_size);
    let (h, w) = model.cam_shape;
    let inputs = [
        TensorMetadata { name: INPUT_TENSOR, datatype: "FP32", shape: vec![-1, 3, side, side] },
        TensorMetadata { name: INPUT_BYTES, datatype: "BYTES", shape: vec![-1] },
    ];
    let outputs = [
        TensorMetadata { name: OUT_DR, datatype: "FP32", shape: vec![-1, 5] },
        TensorMetadata { name: OUT_DME, datatype: "FP32", shape: vec![-1, 1] },
        TensorMetadata { name: OUT_GRADABLE, datatype: "FP32", shape: vec![-1, 1] },
        TensorMetadata { name: OUT_CAM, datatype: "FP32", shape: vec![-1, 1, h as i64, w as i64] },
        TensorMetadata { name: OUT_FINDING, datatype: "BYTES", shape: vec![-1] },
    ];
    json!({
        "name": model.identity.name,
        "versions": [model.identity.version],
        "platform": PLATFORM,
        "inputs": inputs,
        "outputs": outputs,
    })
}

/// `GET /v2/models/{name}`.
async fn model_metadata(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Device, Role::Admin])?;
    let Path(name) = path.map_err(path_error)?;
    check_model(&state, &name, None)?;
    Ok(Json(metadata(&state)).into_response())
}

/// `GET /v2/models/{name}/versions/{version}`.
async fn model_metadata_version(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Device, Role::Admin])?;
    let Path((name, version)) = path.map_err(path_error)?;
    check_model(&state, &name, Some(&version))?;
    Ok(Json(metadata(&state)).into_response())
}

/// The JSON part of an inference request. Unknown fields are ignored, as the spec asks
/// servers to tolerate extension fields.
#[derive(Deserialize)]
struct InferRequest {
    id: Option<String>,
    inputs: Vec<RequestInput>,
    outputs: Option<Vec<RequestOutput>>,
    #[serde(default)]
    parameters: Map<String, Value>,
}

#[derive(Deserialize)]
struct RequestInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    data: Option<Value>,
    #[serde(default)]
    parameters: Map<String, Value>,
}

#[derive(Deserialize)]
struct RequestOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// Largest JSON (non-binary) inference body accepted.
const MAX_JSON_BODY: usize = 32 * 1024 * 1024;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_tensor", message)
}

/// Splits a request body into its JSON header and binary tail (Triton binary extension).
fn split_body<'a>(headers: &HeaderMap, body: &'a [u8]) -> Result<(&'a [u8], &'a [u8]), ApiError> {
    let Some(value) = headers.get(HEADER_LENGTH) else {
        return Ok((body, &[]));
    };
    let length: usize = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| ApiError::bad_request("invalid_header", "Inference-Header-Content-Length must be a non-negative integer"))?;
    if length > body.len() {
        return Err(ApiError::bad_request(
            "invalid_header",
            format!("Inference-Header-Content-Length {length} exceeds the body length {}", body.len()),
        ));
    }
    Ok(body.split_at(length))
}

/// The raw binary data of the single input, checked against the binary tail: the spec
/// requires the tail to hold exactly the declared inputs, in order.
fn binary_part<'a>(input: &RequestInput, tail: &'a [u8]) -> Result<Option<&'a [u8]>, ApiError> {
    let Some(size) = input.parameters.get("binary_data_size") else {
        if !tail.is_empty() {
            return Err(bad(format!("{} bytes of binary data follow the header but no input declares binary_data_size", tail.len())));
        }
        return Ok(None);
    };
    let size = size
        .as_u64()
        .and_then(|s| usize::try_from(s).ok())
        .ok_or_else(|| bad(format!("input '{}': binary_data_size must be a non-negative integer", input.name)))?;
    if input.data.is_some() {
        return Err(bad(format!("input '{}' has both data and binary_data_size", input.name)));
    }
    if size != tail.len() {
        return Err(bad(format!(
            "input '{}' declares binary_data_size {size} but {} bytes of binary data follow the header",
            input.name,
            tail.len()
        )));
    }
    Ok(Some(tail))
}

/// Flattens JSON `data` (flat or nested row-major arrays) into f32 values.
fn flatten_numbers(value: &Value, out: &mut Vec<f32>) -> Result<(), ApiError> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| flatten_numbers(v, out)),
        Value::Number(n) => {
            let v = n.as_f64().ok_or_else(|| bad("data holds a number that is not representable"))?;
            out.push(v as f32);
            Ok(())
        }
        _ => Err(bad("FP32 data must be numbers (flat or nested arrays)")),
    }
}

/// Checks `image`'s shape ([N,3,side,side], N>=1) and decodes its values.
fn tensor_input(input: &RequestInput, binary: Option<&[u8]>, side: usize) -> Result<(usize, Vec<f32>), ApiError> {
    if input.datatype != "FP32" {
        return Err(bad(format!("input '{INPUT_TENSOR}' must be FP32, not {}", input.datatype)));
    }
    let shape_ok = input.shape.len() == 4
        && input.shape[0] >= 1
        && input.shape[1] == 3
        && usize::try_from(input.shape[2]).ok() == Some(side)
        && usize::try_from(input.shape[3]).ok() == Some(side);
    if !shape_ok {
        return Err(bad(format!("input '{INPUT_TENSOR}' must have shape [N,3,{side},{side}] with N >= 1, not {:?}", input.shape)));
    }
    let n = usize::try_from(input.shape[0]).map_err(|_| bad("batch size out of range"))?;
    let per_image = 3 * side * side;
    let expected = n.checked_mul(per_image).ok_or_else(|| bad("batch size out of range"))?;
    let values = match (binary, &input.data) {
        (Some(raw), _) => {
            if raw.len() != expected.saturating_mul(4) {
                return Err(bad(format!(
                    "input '{INPUT_TENSOR}' of shape {:?} needs {} bytes of FP32 data, got {}",
                    input.shape,
                    expected.saturating_mul(4),
                    raw.len()
                )));
            }
            raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<f32>>()
        }
        (None, Some(data)) => {
            let mut values = Vec::with_capacity(expected);
            flatten_numbers(data, &mut values)?;
            values
        }
        (None, None) => return Err(bad(format!("input '{INPUT_TENSOR}' has neither data nor binary_data_size"))),
    };
    if values.len() != expected {
        return Err(bad(format!("input '{INPUT_TENSOR}' of shape {:?} needs {expected} values, got {}", input.shape, values.len())));
    }
    // NaN/inf would silently poison every output; refuse them as a bad tensor.
    if values.iter().any(|v| !v.is_finite()) {
        return Err(bad(format!("input '{INPUT_TENSOR}' contains NaN or infinite values")));
    }
    Ok((n, values))
}

/// Checks `image_bytes` ([N] or [N,1]) and splits its length-prefixed elements. The
/// declared count and `max_element` (the image byte limit) hold before anything is
/// allocated: a body of empty elements cannot grow a list past N, nor a prefix claim
/// more than one image may hold.
fn bytes_input(input: &RequestInput, binary: Option<&[u8]>, max_element: usize) -> Result<Vec<Bytes>, ApiError> {
    if input.datatype != "BYTES" {
        return Err(bad(format!("input '{INPUT_BYTES}' must be BYTES, not {}", input.datatype)));
    }
    let n = match input.shape.as_slice() {
        [n] | [n, 1] if *n >= 1 => usize::try_from(*n).map_err(|_| bad("batch size out of range"))?,
        _ => return Err(bad(format!("input '{INPUT_BYTES}' must have shape [N] or [N,1] with N >= 1, not {:?}", input.shape))),
    };
    let Some(mut raw) = binary else {
        // JSON strings cannot carry arbitrary image bytes faithfully; the binary extension can.
        return Err(bad(format!(
            "input '{INPUT_BYTES}' must be sent with the binary tensor extension (parameters.binary_data_size and the Inference-Header-Content-Length header); JSON data is not accepted for images"
        )));
    };
    let mut images = Vec::with_capacity(n.min(1024));
    while !raw.is_empty() {
        let Some((prefix, rest)) = raw.split_first_chunk::<4>() else {
            return Err(bad(format!("input '{INPUT_BYTES}': truncated element length prefix")));
        };
        let len = u32::from_le_bytes(*prefix) as usize;
        if images.len() == n {
            return Err(bad(format!("input '{INPUT_BYTES}' of shape {:?} has more than {n} elements", input.shape)));
        }
        if len > max_element {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("input '{INPUT_BYTES}': element {} declares {len} bytes; an image is limited to {max_element}", images.len()),
            ));
        }
        if len > rest.len() {
            return Err(bad(format!(
                "input '{INPUT_BYTES}': element {} declares {len} bytes but only {} remain",
                images.len(),
                rest.len()
            )));
        }
        let (element, remaining) = rest.split_at(len);
        images.push(Bytes::copy_from_slice(element));
        raw = remaining;
    }
    if images.len() != n {
        return Err(bad(format!("input '{INPUT_BYTES}' of shape {:?} needs {n} elements, got {}", input.shape, images.len())));
    }
    Ok(images)
}

/// One response tensor before encoding.
enum Values {
    Fp32(Vec<f32>),
    Bytes(Vec<Vec<u8>>),
}

struct OutputTensor {
    name: &'static str,
    shape: Vec<usize>,
    values: Values,
}

fn tensor_outputs(outputs: &[ImageOutputs], name: &'static str) -> OutputTensor {
    let n = outputs.len();
    let (shape, values): (Vec<usize>, Vec<f32>) = match name {
        OUT_DR => (vec![n, 5], outputs.iter().flat_map(|o| o.dr_logits).collect()),
        OUT_DME => (vec![n, 1], outputs.iter().map(|o| o.dme_logit).collect()),
        OUT_GRADABLE => (vec![n, 1], outputs.iter().map(|o| o.gradable_logit).collect()),
        _ => {
            let (h, w) = outputs.first().map(|o| o.cam_shape).unwrap_or_default();
            (vec![n, 1, h, w], outputs.iter().flat_map(|o| o.cam.iter().copied()).collect())
        }
    };
    OutputTensor { name, shape, values: Values::Fp32(values) }
}

fn as_bool(v: Option<&Value>) -> Option<bool> {
    v.and_then(Value::as_bool)
}

/// Which outputs to return, each with whether it goes in binary form.
fn select_outputs(request: &InferRequest, with_finding: bool) -> Result<Vec<(&'static str, bool)>, ApiError> {
    let default_binary = as_bool(request.parameters.get("binary_data_output")).unwrap_or(false);
    let all: Vec<&'static str> = TENSOR_OUTPUTS.iter().copied().chain(with_finding.then_some(OUT_FINDING)).collect();
    let Some(requested) = &request.outputs else {
        return Ok(all.into_iter().map(|n| (n, default_binary)).collect());
    };
    let mut selected = Vec::with_capacity(requested.len());
    for out in requested {
        let Some(name) = all.iter().copied().find(|n| *n == out.name) else {
            let hint = if out.name == OUT_FINDING { " (finding is produced only for image_bytes inputs)" } else { "" };
            return Err(bad(format!("unknown output '{}'{hint}", out.name)));
        };
        if selected.iter().any(|(n, _)| *n == name) {
            return Err(bad(format!("output '{name}' is requested twice")));
        }
        selected.push((name, as_bool(out.parameters.get("binary_data")).unwrap_or(default_binary)));
    }
    Ok(selected)
}

/// Encodes the response: plain JSON, or the JSON header followed by binary outputs.
fn encode_response(state: &AppState, id: Option<String>, tensors: Vec<(OutputTensor, bool)>) -> Result<Response, ApiError> {
    let identity = &state.service.screener.engine.model().identity;
    let mut tail: Vec<u8> = Vec::new();
    let mut outputs = Vec::with_capacity(tensors.len());
    for (tensor, binary) in tensors {
        let datatype = match tensor.values {
            Values::Fp32(_) => "FP32",
            Values::Bytes(_) => "BYTES",
        };
        let mut entry = json!({ "name": tensor.name, "datatype": datatype, "shape": tensor.shape });
        if binary {
            let start = tail.len();
            match &tensor.values {
                Values::Fp32(v) => v.iter().for_each(|x| tail.extend_from_slice(&x.to_le_bytes())),
                Values::Bytes(v) => {
                    for element in v {
                        let len = u32::try_from(element.len()).map_err(|_| bad("output element too large"))?;
                        tail.extend_from_slice(&len.to_le_bytes());
                        tail.extend_from_slice(element);
                    }
                }
            }
            entry["parameters"] = json!({ "binary_data_size": tail.len() - start });
        } else {
            entry["data"] = match tensor.values {
                Values::Fp32(v) => json!(v),
                Values::Bytes(v) => Value::Array(v.into_iter().map(|e| Value::String(String::from_utf8_lossy(&e).into_owned())).collect()),
            };
        }
        outputs.push(entry);
    }
    let mut body = json!({ "model_name": identity.name, "model_version": identity.version, "outputs": outputs });
    if let Some(id) = id {
        body["id"] = Value::String(id);
    }
    if tail.is_empty() {
        return Ok(Json(body).into_response());
    }
    let mut bytes = serde_json::to_vec(&body).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let header_length = bytes.len();
    bytes.extend_from_slice(&tail);
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(HEADER_LENGTH, HeaderValue::from(header_length));
    Ok(response)
}

/// Maps a per-image failure: overload stays a 503 for the whole request; anything else is
/// reported against the image's position so the client knows which one was bad.
fn image_error(index: usize, e: EngineError) -> ApiError {
    match e {
        e @ (EngineError::QueueFull(_) | EngineError::ShuttingDown) => ServiceError::Engine(e).into(),
        source => ServiceError::Image { index, source }.into(),
    }
}

/// `POST /v2/models/{name}/infer`.
async fn infer(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Device, Role::Admin])?;
    let Path(name) = path.map_err(path_error)?;
    check_model(&state, &name, None)?;
    run_infer(state, headers, body).await
}

/// `POST /v2/models/{name}/versions/{version}/infer`.
async fn infer_version(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Device, Role::Admin])?;
    let Path((name, version)) = path.map_err(path_error)?;
    check_model(&state, &name, Some(&version))?;
    run_infer(state, headers, body).await
}

/// What the parser needs to know about the server: the model's input side, the image
/// byte limit, and the engine's admission capacity (the largest batch it could admit).
#[derive(Debug, Clone, Copy)]
pub struct InferLimits {
    pub side: usize,
    pub max_image_bytes: usize,
    pub capacity: usize,
}

/// The decoded input of an inference request.
enum ParsedInput {
    /// `image`: N prepared CHW tensors, flattened.
    Tensors { n: usize, values: Vec<f32> },
    /// `image_bytes`: N encoded images.
    Images(Vec<Bytes>),
}

/// An inference request decoded and checked against every limit, before any engine
/// work: the wire format (JSON header, binary tail), the one input, its shape and
/// element limits, and the requested outputs.
pub struct ParsedInfer {
    id: Option<String>,
    input: ParsedInput,
    selected: Vec<(&'static str, bool)>,
}

impl ParsedInfer {
    /// How many images the request carries (for tests and the fuzz target's checks).
    pub fn images(&self) -> usize {
        match &self.input {
            ParsedInput::Tensors { n, .. } => *n,
            ParsedInput::Images(images) => images.len(),
        }
    }
}

/// Parses an inference request body (JSON, or JSON plus Triton's binary tail when
/// `Inference-Header-Content-Length` is present). Pure and bounded: every length is
/// checked before it is allocated. Also the KServe fuzz target's entry point.
pub fn parse_infer(headers: &HeaderMap, body: &[u8], limits: InferLimits) -> Result<ParsedInfer, ApiError> {
    // A JSON tensor expands many-fold when parsed; large tensors must use the binary
    // extension so a request cannot turn into gigabytes of parse tree.
    if !headers.contains_key(HEADER_LENGTH) && body.len() > MAX_JSON_BODY {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "use_binary_extension",
            format!("JSON inference bodies are limited to {MAX_JSON_BODY} bytes; send tensors with the binary tensor extension"),
        ));
    }
    let (json_part, tail) = split_body(headers, body)?;
    let request: InferRequest =
        serde_json::from_slice(json_part).map_err(|e| ApiError::bad_request("invalid_request", format!("inference request JSON: {e}")))?;
    let [input] = request.inputs.as_slice() else {
        return Err(bad(format!("send exactly one input ('{INPUT_TENSOR}' or '{INPUT_BYTES}'), not {}", request.inputs.len())));
    };
    let binary = binary_part(input, tail)?;
    // A batch larger than the admission limit could never be admitted whole: say so
    // (413) instead of a 503 that no retry would cure.
    if input.shape.first().is_some_and(|&n| n > limits.capacity as i64) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!("at most {} images per request (the server's queue capacity); split the batch", limits.capacity),
        ));
    }
    let (parsed, with_finding) = match input.name.as_str() {
        INPUT_TENSOR => {
            let (n, values) = tensor_input(input, binary, limits.side)?;
            (ParsedInput::Tensors { n, values }, false)
        }
        INPUT_BYTES => (ParsedInput::Images(bytes_input(input, binary, limits.max_image_bytes)?), true),
        other => {
            return Err(bad(format!("unknown input '{other}': this model takes '{INPUT_TENSOR}' (FP32) or '{INPUT_BYTES}' (BYTES)")));
        }
    };
    let selected = select_outputs(&request, with_finding)?;
    Ok(ParsedInfer { id: request.id, input: parsed, selected })
}

async fn run_infer(state: AppState, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    // Content-Type is deliberately not checked: Triton's client sends none.
    let body = body.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    // Refuse at once when full, before parsing megabytes of tensor data, rather than
    // admitting part of a batch and failing the rest.
    if state.service.saturated() {
        return Err(ApiError::busy());
    }
    let engine = &state.service.screener.engine;
    let limits = InferLimits {
        side: engine.preprocessor().input_size as usize,
        max_image_bytes: state.max_body_bytes,
        capacity: engine.config().queue_capacity,
    };
    let parsed = parse_infer(&headers, &body, limits)?;
    let tensors = match parsed.input {
        ParsedInput::Tensors { n, values } => infer_tensors(&state, parsed.selected, n, values).await?,
        ParsedInput::Images(images) => infer_image_bytes(&state, parsed.selected, images).await?,
    };
    encode_response(&state, parsed.id, tensors)
}

/// Requested outputs, each with whether it goes in the binary tail.
type SelectedTensors = Vec<(OutputTensor, bool)>;

/// FP32 `image` tensors: admitted to the engine as prepared input (no preprocessing).
async fn infer_tensors(
    state: &AppState,
    selected: Vec<(&'static str, bool)>,
    n: usize,
    values: Vec<f32>,
) -> Result<SelectedTensors, ApiError> {
    let engine = &state.service.screener.engine;
    let per_image = values.len() / n;
    let mut tickets = Vec::with_capacity(n);
    for (index, chw) in values.chunks_exact(per_image).enumerate() {
        let ticket = engine.submit_tensor(chw.to_vec()).map_err(|e| image_error(index, e))?;
        tickets.push(
            async move { ticket.await.map_err(|_| image_error(index, EngineError::ShuttingDown))?.map_err(|e| image_error(index, e)) },
        );
    }
    // Every image was admitted before awaiting, so they share dynamic batches.
    let results = try_join_all(tickets).await?;
    let outputs: Vec<ImageOutputs> = results.into_iter().map(|(o, _)| o).collect();
    Ok(selected.into_iter().map(|(name, binary)| (tensor_outputs(&outputs, name), binary)).collect())
}

/// BYTES `image_bytes`: encoded images through the full pipeline; the `finding` output
/// carries each image's finding as JSON.
async fn infer_image_bytes(state: &AppState, selected: Vec<(&'static str, bool)>, images: Vec<Bytes>) -> Result<SelectedTensors, ApiError> {
    let service = &state.service;
    let graded = try_join_all(images.into_iter().enumerate().map(|(index, bytes)| async move {
        service.grade(bytes, Laterality::Unspecified).await.map_err(|e| match e {
            ServiceError::Engine(inner) => image_error(index, inner),
            other => other.into(),
        })
    }))
    .await?;
    let mut findings = Vec::with_capacity(graded.len());
    let mut outputs = Vec::with_capacity(graded.len());
    for (finding, scored) in graded {
        findings
            .push(serde_json::to_vec(&finding).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?);
        outputs.push(scored.outputs);
    }
    let mut findings = Some(findings);
    let mut tensors = Vec::with_capacity(selected.len());
    for (name, binary) in selected {
        let tensor = if name == OUT_FINDING {
            let values = findings.take().unwrap_or_default();
            OutputTensor { name, shape: vec![values.len()], values: Values::Bytes(values) }
        } else {
            tensor_outputs(&outputs, name)
        };
        tensors.push((tensor, binary));
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, datatype: &str, shape: Vec<i64>) -> RequestInput {
        RequestInput { name: name.into(), shape, datatype: datatype.into(), data: None, parameters: Map::new() }
    }

    #[test]
    fn bytes_elements_are_length_prefixed() {
        let mut raw = Vec::new();
        for e in [&b"abc"[..], &b""[..], &b"xy"[..]] {
            raw.extend_from_slice(&(e.len() as u32).to_le_bytes());
            raw.extend_from_slice(e);
        }
        let images = bytes_input(&input(INPUT_BYTES, "BYTES", vec![3]), Some(&raw), 1024).map_err(|e| e.message).unwrap();
        assert_eq!(images, vec![Bytes::from_static(b"abc"), Bytes::new(), Bytes::from_static(b"xy")]);
        assert!(bytes_input(&input(INPUT_BYTES, "BYTES", vec![2]), Some(&raw), 1024).is_err());
        assert!(bytes_input(&input(INPUT_BYTES, "BYTES", vec![3]), Some(&raw[..raw.len() - 1]), 1024).is_err());
        // An element over the image limit is refused from its prefix alone.
        assert_eq!(bytes_input(&input(INPUT_BYTES, "BYTES", vec![3]), Some(&raw), 2).unwrap_err().code, "payload_too_large");
    }

    #[test]
    fn empty_elements_beyond_the_declared_count_are_refused_at_once() {
        // 10 M zero-length elements (40 MB) for a batch of 2: refused after the third
        // prefix, never collected (the list is what blew memory up).
        let raw = vec![0u8; 40_000_000];
        let err = bytes_input(&input(INPUT_BYTES, "BYTES", vec![2]), Some(&raw), 1024).unwrap_err();
        assert!(err.message.contains("more than 2 elements"), "{}", err.message);
    }

    #[test]
    fn tensor_shape_and_nested_data_are_checked() {
        let mut i = input(INPUT_TENSOR, "FP32", vec![1, 3, 2, 2]);
        i.data = Some(json!([[[[1, 2], [3, 4]], [[5, 6], [7, 8]], [[9, 10], [11, 12.5]]]]));
        let (n, v) = tensor_input(&i, None, 2).map_err(|e| e.message).unwrap();
        assert_eq!((n, v.len(), v[11]), (1, 12, 12.5));
        i.shape = vec![1, 3, 2, 3];
        assert!(tensor_input(&i, None, 2).is_err());
        i.shape = vec![2, 3, 2, 2];
        assert!(tensor_input(&i, None, 2).is_err(), "element count must match the shape");
    }

    #[test]
    fn split_body_honours_the_header_length() {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_LENGTH, HeaderValue::from_static("2"));
        assert_eq!(split_body(&headers, b"{}abc").map_err(|e| e.message).unwrap(), (&b"{}"[..], &b"abc"[..]));
        headers.insert(HEADER_LENGTH, HeaderValue::from_static("9"));
        assert!(split_body(&headers, b"{}abc").is_err());
    }
}
