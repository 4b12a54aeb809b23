//! The OpenAPI 3.1 description of the API and a plain HTML page rendered from it
//! (served locally: no CDN, works offline).

use axum::Json;
use axum::extract::State;
use axum::response::Html;
use serde_json::{Map, Value, json};

use super::AppState;

/// The limits the server enforces, stated in the document as schema constraints
/// (`maxItems`, `maxLength`, ...) so a client learns them before it is refused.
#[derive(Debug, Clone)]
pub struct DocLimits {
    /// Bytes in one image (the body of `/v1/grade`, one exam part, one `image_bytes` element).
    pub max_image_bytes: usize,
    pub max_images_per_exam: usize,
    pub max_reference_chars: usize,
    pub max_instances_per_request: usize,
    /// The model's input side (`image` tensors are [N,3,side,side]).
    pub input_size: u32,
    /// Images one request may hold (the engine's queue capacity).
    pub max_batch: usize,
    pub model_name: String,
}

impl DocLimits {
    pub fn of(state: &AppState) -> Self {
        let engine = &state.service.screener.engine;
        Self {
            max_image_bytes: state.max_body_bytes,
            max_images_per_exam: state.service.limits.max_images_per_exam,
            max_reference_chars: state.service.limits.max_reference_chars,
            max_instances_per_request: state.service.limits.max_instances_per_request,
            input_size: engine.preprocessor().input_size,
            max_batch: engine.config().queue_capacity,
            model_name: engine.model().identity.name.clone(),
        }
    }
}

/// A documented error response: the JSON error shape of `error.rs`.
fn err(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// A documented success response of `media_type` with `schema`.
fn ok(description: &str, media_type: &str, schema: Value) -> Value {
    json!({"description": description, "content": {media_type: {"schema": schema}}})
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn binary() -> Value {
    json!({"type": "string", "format": "binary"})
}

/// A path parameter named `name`.
fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}})
}

/// Responses every authenticated operation may give, plus `extra`.
fn responses(extra: Value) -> Value {
    let mut all = json!({"401": err("no API key, or an unknown or revoked one (unauthenticated)")});
    if let (Some(map), Value::Object(extra)) = (all.as_object_mut(), extra) {
        map.extend(extra);
    }
    all
}

/// A text pattern refusing what `service::check_reference` refuses: C0/C1 control
/// characters and the bidirectional overrides.
const REFERENCE_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F\\u202A-\\u202E\\u2066-\\u2069]*$";

fn components(limits: &DocLimits) -> Value {
    let reference = json!({"type": ["string", "null"], "maxLength": limits.max_reference_chars, "pattern": REFERENCE_PATTERN});
    let outcome = json!({"type": "string", "enum": ["urgent_referral", "referral", "rescreen", "ungradable"]});
    let model = json!({"type": "object", "required": ["name", "version", "sha256"],
        "properties": {"name": {"type": "string"}, "version": {"type": "string"}, "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}});
    let finding = json!({"type": "object", "required": ["laterality", "quality", "dr", "dme", "decision", "model", "timings_ms", "image", "recipe"],
        "properties": {
            "source": {"type": "string"},
            "laterality": {"type": "string", "enum": ["left", "right", "unspecified"]},
            "quality": {"type": "object", "required": ["gradable", "score", "reasons"],
                "properties": {"gradable": {"type": "boolean"}, "score": {"type": "number"}, "reasons": {"type": "array", "items": {"type": "string"}}}},
            "dr": {"description": "null when the image is ungradable", "oneOf": [{"type": "null"}, {"type": "object",
                "required": ["grade", "label", "probabilities", "referable_probability"],
                "properties": {"grade": {"type": "integer", "minimum": 0, "maximum": 4}, "label": {"type": "string"},
                    "probabilities": {"type": "array", "items": {"type": "number"}, "minItems": 5, "maxItems": 5},
                    "referable_probability": {"type": "number"}}}]},
            "dme": {"oneOf": [{"type": "null"}, {"type": "object", "required": ["present", "probability"],
                "properties": {"present": {"type": "boolean"}, "probability": {"type": "number"}}}]},
            "decision": {"type": "string", "enum": ["referable", "not_referable", "ungradable"]},
            "model": model,
            "timings_ms": {"type": "object"},
            "image": {"type": "object"},
            "recipe": {"type": "string"},
            "laterality_check": {"type": "object", "required": ["stated", "disc_side", "suggested", "verdict", "offset", "contrast"],
                "description": "whether the optic disc sits where the stated eye puts it (nasal: right of centre as displayed in a right eye); the stated eye is never changed. Absent in results stored before the check existed",
                "properties": {"stated": {"type": "string", "enum": ["left", "right", "unspecified"]},
                    "disc_side": {"type": ["string", "null"], "enum": ["left", "right", null], "description": "side of the displayed image the disc is on; null unless found clearly"},
                    "suggested": {"type": ["string", "null"], "enum": ["left", "right", null], "description": "the eye the disc position suggests; null unless found clearly"},
                    "verdict": {"type": "string", "enum": ["consistent", "contradicts", "undetermined"]},
                    "offset": {"type": ["number", "null"], "description": "the brightest disc-sized spot's horizontal offset from the field centre, in field radii, positive to the right"},
                    "contrast": {"type": ["number", "null"], "description": "how clearly that spot stands out from the retina around it"}}}}});
    let exam = json!({"type": "object",
        "required": ["id", "created_at", "submitted_by", "external_exam_ref", "patient_ref", "outcome", "flagged", "reviewed", "image_ids", "result"],
        "properties": {
            "id": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"}, "submitted_by": {"type": "string"},
            "external_exam_ref": {"type": ["string", "null"]}, "patient_ref": {"type": ["string", "null"]},
            "outcome": outcome, "flagged": {"type": "boolean"}, "reviewed": {"type": "boolean"},
            "image_ids": {"type": "array", "items": {"type": "string"}},
            "result": {"type": "object", "required": ["outcome", "recall_months", "flagged", "explanation", "eyes", "images", "model"],
                "properties": {"outcome": outcome, "recall_months": {"type": ["integer", "null"]}, "flagged": {"type": "boolean"},
                    "explanation": {"type": "string"},
                    "eyes": {"type": "array", "items": {"type": "object", "required": ["laterality", "gradable", "grade", "dme", "images"],
                        "properties": {"laterality": {"type": "string"}, "gradable": {"type": "boolean"},
                            "grade": {"type": ["integer", "null"], "minimum": 0, "maximum": 4}, "dme": {"type": ["boolean", "null"]},
                            "images": {"type": "array", "items": {"type": "integer", "minimum": 0}}}}},
                    "images": {"type": "array", "items": schema("Finding")},
                    "model": model,
                    "laterality_warnings": {"type": "integer", "minimum": 0, "description": "how many images' laterality_check contradicts their stated eye; absent in results stored before the check existed"}}}}});
    // A graded eye says whether macular oedema is present (a draft may leave it null until
    // signing); an ungradable one says neither.
    let eye_review = json!({"oneOf": [
        {"type": "object", "required": ["grade"], "additionalProperties": false,
            "properties": {"grade": {"type": "integer", "minimum": 0, "maximum": 4},
                "dme": {"type": ["boolean", "null"], "description": "null only in a draft; signing needs it"}}},
        {"type": "object", "additionalProperties": false, "description": "ungradable",
            "properties": {"grade": {"type": "null"}, "dme": {"type": "null"}}}]});
    let eyes = json!({"type": "object", "description": "keyed by the exam's eyes (right, left or unspecified); signing needs every eye of the exam",
        "propertyNames": {"enum": ["right", "left", "unspecified"]}, "additionalProperties": eye_review});
    let note_chars = crate::review::MAX_NOTE_CHARS;
    // A draft may be partial (no outcome yet: "" or absent); signing needs one.
    let input_outcome = json!({"type": "string", "enum": ["urgent_referral", "referral", "rescreen", "ungradable", ""],
        "description": "empty or absent only in a draft; signing needs an outcome (422 outcome_required)"});
    let review_input = json!({"type": "object", "required": ["eyes"], "additionalProperties": false,
        "properties": {"eyes": eyes, "outcome": input_outcome, "note": {"type": "string", "maxLength": note_chars},
            "sign": {"type": "boolean"}, "amendment_reason": {"type": ["string", "null"], "maxLength": note_chars},
            "outcome_reason": {"type": ["string", "null"], "maxLength": note_chars,
                "description": "why the outcome is less urgent than the one the eyes' grades imply (outcome_by_rule); required to sign such an outcome (422 outcome_reason_required without it); blank counts as missing"},
            "base_version": {"type": ["integer", "null"], "minimum": 0, "maximum": u32::MAX}}});
    let review = json!({"type": "object",
        "required": ["exam_id", "version", "state", "reviewer", "created_at", "updated_at", "signed_at", "amends", "amendment_reason", "eyes", "outcome", "outcome_by_rule", "note", "outcome_reason"],
        "properties": {"exam_id": {"type": "string"}, "version": {"type": "integer", "minimum": 1},
            "state": {"type": "string", "enum": ["draft", "signed"]}, "reviewer": {"type": "string", "description": "API key id of the clinician"},
            "reviewer_name": {"type": ["string", "null"], "description": "the reviewer key's display name (keys create --name); null when the key has none"},
            "created_at": {"type": "string"}, "updated_at": {"type": "string"}, "signed_at": {"type": ["string", "null"]},
            "amends": {"type": ["integer", "null"]}, "amendment_reason": {"type": ["string", "null"]},
            "eyes": {"type": "object"},
            "outcome": {"type": ["string", "null"], "enum": ["urgent_referral", "referral", "rescreen", "ungradable", null],
                "description": "null only in a draft saved before an outcome was chosen"},
            "outcome_by_rule": outcome, "note": {"type": "string"},
            "outcome_reason": {"type": ["string", "null"], "description": "why the outcome is less urgent than outcome_by_rule"}}});
    let exam_metadata = json!({"type": "object", "additionalProperties": false, "properties": {
        "external_exam_ref": reference, "patient_ref": reference,
        "views": {"type": "array", "maxItems": limits.max_images_per_exam, "description": "per image, in upload order: macula or disc",
            "items": reference}}});
    let infer = infer_schemas(limits);
    json!({
        "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "drscreen API key (drscreen keys create); X-API-Key works too"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error", "code"],
                "properties": {"error": {"type": "string", "description": "what went wrong, in words"},
                               "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "description": "a stable machine-readable code"},
                               "fields": {"type": "array", "description": "review submissions: every refused field at once (the first one's code and words are error and code)",
                                   "items": {"type": "object", "required": ["field", "code", "message"],
                                       "properties": {"field": {"type": "string", "description": "the review form's field name: right_grade, left_dme, outcome, note, ..."},
                                           "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"}, "message": {"type": "string"}}}}}},
            "Finding": finding, "Exam": exam, "ExamMetadata": exam_metadata, "ReviewInput": review_input, "Review": review,
            "InferRequest": infer["request"], "InferResponse": infer["response"],
        }
    })
}

/// The KServe v2 inference request and response, with the shapes this model takes.
fn infer_schemas(limits: &DocLimits) -> Value {
    let batch = json!({"type": "integer", "minimum": 1, "maximum": limits.max_batch});
    let side = limits.input_size;
    let outputs = ["dr_logits", "dme_logit", "gradable_logit", "referable_cam", "finding"];
    let size = json!({"type": "integer", "minimum": 0});
    let tensor = json!({"type": "object", "required": ["name", "shape", "datatype"],
        "description": "normalised FP32 NCHW images; values in data (flat or nested, finite) or in the binary tail (parameters.binary_data_size)",
        "properties": {"name": {"const": "image"}, "datatype": {"const": "FP32"},
            "shape": {"type": "array", "minItems": 4, "maxItems": 4, "prefixItems": [batch, {"const": 3}, {"const": side}, {"const": side}]},
            "data": {"type": "array"},
            "parameters": {"type": "object", "properties": {"binary_data_size": size}}}});
    let encoded = json!({"type": "object", "required": ["name", "shape", "datatype", "parameters"],
        "description": "encoded JPEG/PNG/TIFF images, each a 4-byte little-endian length then the bytes, in the binary tail only",
        "properties": {"name": {"const": "image_bytes"}, "datatype": {"const": "BYTES"},
            "shape": {"type": "array", "minItems": 1, "maxItems": 2, "prefixItems": [batch, {"const": 1}]},
            "parameters": {"type": "object", "required": ["binary_data_size"], "properties": {"binary_data_size": size}}}});
    let request = json!({"type": "object", "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": {"oneOf": [tensor, encoded]}},
            "outputs": {"type": "array", "maxItems": outputs.len(), "items": {"type": "object", "required": ["name"],
                "properties": {"name": {"enum": outputs}, "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}}}}},
            "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}}}});
    let response = json!({"type": "object", "required": ["model_name", "model_version", "outputs"],
        "properties": {"id": {"type": "string"}, "model_name": {"type": "string"}, "model_version": {"type": "string"},
            "outputs": {"type": "array", "items": {"type": "object", "required": ["name", "datatype", "shape"],
                "properties": {"name": {"enum": outputs}, "datatype": {"enum": ["FP32", "BYTES"]},
                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    "data": {"type": "array"}, "parameters": {"type": "object"}}}}}});
    json!({"request": request, "response": response})
}

/// The OpenAPI document, stating `limits`.
pub fn document(limits: &DocLimits) -> Value {
    let json_object = json!({"type": "object"});
    let mut paths = Map::new();
    let mut add = |path: &str, ops: Value| {
        paths.insert(path.to_string(), ops);
    };
    add(
        "/healthz",
        json!({"get": {"summary": "Liveness", "security": [],
        "responses": {"200": ok("process is alive", "application/json",
            json!({"type": "object", "required": ["status"], "properties": {"status": {"const": "live"}}}))}}}),
    );
    add(
        "/readyz",
        json!({"get": {"summary": "Readiness: model loaded, warm, inference thread healthy", "security": [],
        "responses": {"200": ok("ready", "application/json", json!({"type": "object", "required": ["status"], "properties": {"status": {"const": "ready"}}})),
                      "503": err("not ready")}}}),
    );
    add(
        "/openapi.json",
        json!({"get": {"summary": "This document", "security": [],
        "responses": {"200": ok("OpenAPI 3.1", "application/json", json_object.clone())}}}),
    );
    add(
        "/docs",
        json!({"get": {"summary": "This document as an HTML page", "security": [],
        "responses": {"200": ok("HTML", "text/html", json!({"type": "string"}))}}}),
    );
    add(
        "/info",
        json!({"get": {"summary": "Model identity, execution provider, batching limits, build version",
        "responses": responses(json!({"200": ok("info", "application/json",
            json!({"type": "object", "required": ["service", "version", "model"], "properties": {"model": {"type": "object"}}}))}))}}),
    );
    add(
        "/metrics",
        json!({"get": {"summary": "Prometheus metrics",
        "responses": responses(json!({"200": ok("text exposition format", "text/plain", json!({"type": "string"}))}))}}),
    );
    let image_types = ["image/jpeg", "image/png", "image/tiff", "application/dicom"];
    let image_body = Value::Object(image_types.iter().map(|t| (t.to_string(), json!({"schema": binary()}))).collect());
    add(
        "/v1/grade",
        json!({"post": {"summary": "Grade one image (not stored); X-Drscreen-*-Ms headers carry timings",
        "parameters": [{"name": "laterality", "in": "query", "schema": {"type": "string", "enum": ["left", "right"]}}],
        "requestBody": {"required": true, "description": format!("the image, at most {} bytes", limits.max_image_bytes), "content": image_body},
        "responses": responses(json!({"200": ok("image finding", "application/json", schema("Finding")),
            "400": err("bad query string (invalid_query, invalid_laterality)"), "403": err("role may not submit (device, admin only)"),
            "408": err("the body stalled (body_timeout)"), "413": err("too large (payload_too_large)"),
            "415": err("not an accepted image type"), "422": err("corrupt or empty image, or unreadable DICOM"),
            "503": err("queue full; see Retry-After")}))}}),
    );
    let part = json!({"type": "array", "maxItems": limits.max_images_per_exam, "items": binary()});
    let exam_form = json!({"type": "object", "additionalProperties": false,
        "properties": {"left": part, "right": part, "metadata": schema("ExamMetadata")},
        "anyOf": [{"required": ["left"]}, {"required": ["right"]}]});
    let image_part = json!({"contentType": "image/jpeg, image/png, image/tiff"});
    add(
        "/v1/exams",
        json!({
        "post": {"summary": format!("Submit an exam: image parts named left/right (repeatable; at most {} images of {} bytes each) and an optional metadata JSON part", limits.max_images_per_exam, limits.max_image_bytes),
            "requestBody": {"required": true, "content": {"multipart/form-data": {"schema": exam_form,
                "encoding": {"left": image_part, "right": image_part, "metadata": {"contentType": "application/json"}}}}},
            "responses": responses(json!({"201": ok("stored exam with per-image, per-eye and exam results; Location names it", "application/json", schema("Exam")),
                "400": err("bad multipart, metadata, part name, no or too many images (bad_body, invalid_metadata, unknown_part, no_images, too_many_images)"),
                "403": err("role may not submit (device, admin only)"), "408": err("the body stalled (body_timeout)"),
                "413": err("an image part or the request is too large"), "415": err("an image is not an accepted type; nothing stored"),
                "422": err("an image is unreadable; nothing stored"), "503": err("queue full; see Retry-After")}))},
        "get": {"summary": "List exams, newest first (a device sees its own)",
            "parameters": [{"name": "outcome", "in": "query", "schema": {"type": "string", "enum": ["urgent_referral", "referral", "rescreen", "ungradable"]}},
                           {"name": "reviewed", "in": "query", "schema": {"type": "boolean"}},
                           {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                           {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 500}, "description": "default 50; more than 500 is read as 500"},
                           {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": u32::MAX}}],
            "responses": responses(json!({"200": ok("exams", "application/json", json!({"type": "object", "required": ["exams", "count", "offset"],
                    "properties": {"exams": {"type": "array", "items": schema("Exam")}, "count": {"type": "integer", "minimum": 0}, "offset": {"type": "integer", "minimum": 0}}})),
                "400": err("bad query string (invalid_query, invalid_outcome)")}))}}),
    );
    let by_id = |summary: &str, what: Value| {
        json!({"get": {"summary": summary, "parameters": [path_param("id")],
            "responses": responses(json!({"200": what, "400": err("the id does not decode (invalid_path)"), "404": err("no such record, or not the caller's (not_found)")}))}})
    };
    add("/v1/exams/{id}", by_id("One exam", ok("exam", "application/json", schema("Exam"))));
    add(
        "/v1/images/{id}",
        by_id(
            "Original image bytes, typed by what they are",
            json!({"description": "the image", "content": {
        "image/jpeg": {"schema": binary()}, "image/png": {"schema": binary()}, "image/tiff": {"schema": binary()}, "application/octet-stream": {"schema": binary()}}}),
        ),
    );
    add("/v1/images/{id}/heatmap.png", by_id("Model heatmap over the cropped field of view", ok("PNG", "image/png", binary())));
    add(
        "/v1/exams/{id}/sr.dcm",
        by_id("The exam as a DICOM SR (TID 1500 in a Comprehensive 3D SR)", ok("Part 10 file", "application/dicom", binary())),
    );
    add(
        "/v1/exams/{id}/fhir",
        by_id(
            "The exam as a FHIR R4 DiagnosticReport with contained Observations",
            ok(
                "DiagnosticReport",
                "application/fhir+json",
                json!({"type": "object", "required": ["resourceType"], "properties": {"resourceType": {"const": "DiagnosticReport"}}}),
            ),
        ),
    );
    add(
        "/v1/exams/{id}/report.pdf",
        by_id(
            "The exam as a one-page PDF report (AI result, and the signed clinician review when there is one)",
            ok("PDF", "application/pdf", binary()),
        ),
    );
    add("/dicomweb/studies", stow(limits));
    for (path, ops) in kserve_paths(limits) {
        add(&path, ops);
    }
    for (path, ops) in review_paths() {
        add(&path, ops);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "drscreen", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Diabetic-retinopathy screening of fundus photographs. Every result names the model (name, version, sha256). Every error is JSON {\"error\": message, \"code\": code}."},
        "components": components(limits),
        "security": [{"apiKey": []}],
        "paths": paths,
    })
}

/// STOW-RS: the body is multipart/related with one DICOM Part 10 object per part.
fn stow(limits: &DocLimits) -> Value {
    let sop = json!({"type": "object", "properties": {"00081150": {"type": "object"}, "00081155": {"type": "object"}, "00081197": {"type": "object"}}});
    let sequence = json!({"type": "object", "required": ["vr", "Value"], "properties": {"vr": {"const": "SQ"}, "Value": {"type": "array", "items": sop}}});
    let result = json!({"type": "object", "properties": {"00081198": sequence, "00081199": sequence}});
    json!({"post": {"summary": format!("STOW-RS: store DICOM instances (multipart/related; type=\"application/dicom\"; boundary=..., at most {} parts); studies are graded once quiet", limits.max_instances_per_request),
        "requestBody": {"required": true, "content": {"multipart/related": {"schema": binary()}}},
        "responses": responses(json!({
            "200": ok("all stored: ReferencedSOPSequence (00081199)", "application/dicom+json", result.clone()),
            "202": ok("some stored; FailedSOPSequence (00081198) lists the others with FailureReason", "application/dicom+json", result.clone()),
            "409": ok("none stored; FailedSOPSequence lists why", "application/dicom+json", result),
            "400": err("the multipart body does not split, has no parts or too many (invalid_multipart, no_parts)"),
            "403": err("role may not store (device, admin only)"), "408": err("the body stalled (body_timeout)"),
            "413": err("the request is too large"), "415": err("not multipart/related; type=\"application/dicom\" with a boundary")}))}})
}

/// The KServe v2 / Open Inference Protocol routes.
fn kserve_paths(limits: &DocLimits) -> Vec<(String, Value)> {
    let probe = |summary: &str, body: Value, with_name: bool| {
        let mut responses = json!({"200": ok("ready", "application/json", body), "503": err("not ready")});
        let mut op = json!({"summary": summary, "security": []});
        if with_name {
            responses["404"] = err("unknown model or version (model_not_found, model_version_not_found)");
            responses["400"] = err("the path does not decode (invalid_path)");
        }
        op["responses"] = responses;
        json!({"get": op})
    };
    let ready = json!({"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}});
    let model_metadata = json!({"get": {"summary": "Model metadata: inputs image (FP32 [-1,3,side,side]) and image_bytes (BYTES [-1]); outputs",
        "responses": responses(json!({"200": ok("metadata", "application/json", json!({"type": "object", "required": ["name", "versions", "platform", "inputs", "outputs"]})),
            "400": err("the path does not decode (invalid_path)"), "403": err("role may not infer (device, admin only)"),
            "404": err("unknown model or version (model_not_found, model_version_not_found)")}))}});
    let infer = json!({"post": {
        "summary": format!("KServe v2 inference: one input, 'image' FP32 [N,3,{s},{s}] (normalised per the manifest) or 'image_bytes' BYTES [N] (encoded images of at most {b} bytes each, full pipeline, adds output 'finding'), N at most {n}; JSON, or the binary tensor extension (Inference-Header-Content-Length = the JSON header's length, then the tensor bytes)",
            s = limits.input_size, b = limits.max_image_bytes, n = limits.max_batch),
        "parameters": [{"name": "Inference-Header-Content-Length", "in": "header", "schema": {"type": "integer", "minimum": 0},
            "description": "binary tensor extension: the length of the JSON header that starts the body"}],
        "requestBody": {"required": true, "content": {
            "application/json": {"schema": schema("InferRequest")},
            "application/octet-stream": {"schema": binary(), "description": "the InferRequest JSON, then the binary tensor data"}}},
        "responses": responses(json!({
            "200": {"description": "outputs dr_logits, dme_logit, gradable_logit, referable_cam (and finding)", "content": {
                "application/json": {"schema": schema("InferResponse")},
                "application/octet-stream": {"schema": binary(), "description": "InferResponse JSON (Inference-Header-Content-Length bytes), then binary outputs"}}},
            "400": err("bad request JSON, tensor or header (invalid_request, invalid_tensor, invalid_header, invalid_path)"),
            "403": err("role may not infer (device, admin only)"), "404": err("unknown model or version (model_not_found, model_version_not_found)"),
            "408": err("the body stalled (body_timeout)"), "413": err("too large: body, batch or image element (payload_too_large, batch_too_large, use_binary_extension)"),
            "415": err("an image_bytes element is not an accepted image type"), "422": err("an image_bytes element is corrupt"),
            "503": err("queue full; see Retry-After")}))}});
    let mut versioned_infer = infer.clone();
    let mut versioned_metadata = model_metadata.clone();
    for op in [&mut versioned_infer["post"], &mut versioned_metadata["get"]] {
        op["parameters"] = Value::Array(op["parameters"].as_array().cloned().unwrap_or_default());
        if let Some(params) = op["parameters"].as_array_mut() {
            params.insert(0, path_param("version"));
            params.insert(0, path_param("name"));
        }
    }
    let named = |mut ops: Value| {
        for op in ops.as_object_mut().into_iter().flat_map(|m| m.values_mut()) {
            let mut params = op["parameters"].as_array().cloned().unwrap_or_default();
            params.insert(0, path_param("name"));
            op["parameters"] = Value::Array(params);
        }
        ops
    };
    let (infer, model_metadata, model_ready) = (named(infer), named(model_metadata), named(probe("Model readiness", ready.clone(), true)));
    let mut versioned_ready = probe("Model version readiness", ready.clone(), true);
    versioned_ready["get"]["parameters"] = json!([path_param("name"), path_param("version")]);
    vec![
        (
            "/v2".into(),
            json!({"get": {"summary": "Server metadata",
            "responses": responses(json!({"200": ok("metadata", "application/json", json!({"type": "object", "required": ["name", "version", "extensions"]}))}))}}),
        ),
        (
            "/v2/health/live".into(),
            probe("Liveness", json!({"type": "object", "required": ["live"], "properties": {"live": {"const": true}}}), false),
        ),
        ("/v2/health/ready".into(), probe("Readiness", ready, false)),
        ("/v2/models/{name}".into(), model_metadata),
        ("/v2/models/{name}/ready".into(), model_ready),
        ("/v2/models/{name}/infer".into(), infer),
        ("/v2/models/{name}/versions/{version}".into(), versioned_metadata),
        ("/v2/models/{name}/versions/{version}/ready".into(), versioned_ready),
        ("/v2/models/{name}/versions/{version}/infer".into(), versioned_infer),
    ]
}

/// The review endpoints.
fn review_paths() -> Vec<(String, Value)> {
    let id = path_param("id");
    vec![
        (
            "/v1/exams/{id}/reviews".into(),
            json!({
            "post": {"summary": "Save a review draft, sign off (sign: true) or amend a signed review (amendment_reason) (clinician)",
                "parameters": [id],
                "requestBody": {"required": true, "content": {"application/json": {"schema": schema("ReviewInput")}}},
                "responses": responses(json!({"201": ok("the version written", "application/json", schema("Review")),
                    "400": err("malformed JSON or path (bad_body, invalid_path)"), "403": err("not a clinician"), "404": err("no such exam"),
                    "408": err("the body stalled (body_timeout)"), "409": err("amendment_reason_required or review_conflict"),
                    "413": err("too large"), "415": err("not application/json (bad_body)"),
                    "422": err("invalid review (bad_body for JSON of the wrong shape, or a rule's code: invalid_outcome, invalid_laterality, invalid_grade, incomplete_review, note_too_long, or outcome_reason_required when signing an outcome less urgent than the grades imply without outcome_reason)")}))},
            "get": {"summary": "Every version of the exam's review, oldest first (clinician, admin)",
                "parameters": [id],
                "responses": responses(json!({"200": ok("versions, oldest first", "application/json", json!({"type": "object", "required": ["exam_id", "reviews"],
                        "properties": {"exam_id": {"type": "string"}, "reviews": {"type": "array", "items": schema("Review")}}})),
                    "400": err("the id does not decode (invalid_path)"), "403": err("not a clinician or admin"), "404": err("no such exam")}))}}),
        ),
        (
            "/v1/audit".into(),
            json!({"get": {"summary": "Audit log, newest first (admin)",
            "parameters": [
                {"name": "actor", "in": "query", "schema": {"type": "string"}},
                {"name": "action", "in": "query", "schema": {"type": "string"}, "description": "an action or a family, e.g. review"},
                {"name": "object", "in": "query", "schema": {"type": "string"}},
                {"name": "before", "in": "query", "schema": {"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}, "description": "events with a smaller seq"},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 1000}, "description": "default 100; read as 1 to 1000"}],
            "responses": responses(json!({"200": ok("events", "application/json", json!({"type": "object", "required": ["events"],
                    "properties": {"events": {"type": "array", "items": {"type": "object", "required": ["seq", "at", "actor", "action", "object", "detail"],
                        "properties": {"seq": {"type": "integer"}, "at": {"type": "string"}, "actor": {"type": "string"}, "action": {"type": "string"},
                            "object": {"type": ["string", "null"]}, "detail": {"type": ["string", "null"]}}}}}})),
                "400": err("bad query string (invalid_query)"), "403": err("not an admin")}))}}),
        ),
        (
            "/v1/deliveries".into(),
            json!({"get": {"summary": "The outbox: deliveries to the PACS (dicom) and the EHR (dips), newest first, with counts by kind and state (admin)",
            "parameters": [
                {"name": "state", "in": "query", "schema": {"type": "string", "enum": ["pending", "delivered", "failed"]}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}, "description": "default 100"}],
            "responses": responses(json!({"200": ok("counts and rows", "application/json", json!({"type": "object", "required": ["counts", "deliveries"],
                    "properties": {"counts": {"type": "array", "items": {"type": "object", "required": ["kind", "state", "count"]}},
                        "deliveries": {"type": "array", "items": {"type": "object", "required": ["id", "kind", "exam_id", "destination", "state", "attempts"],
                        "properties": {"id": {"type": "integer"}, "kind": {"type": "string"}, "exam_id": {"type": "string"}, "destination": {"type": "string"},
                            "state": {"type": "string"}, "attempts": {"type": "integer"}, "created_at": {"type": "string"},
                            "updated_at": {"type": ["string", "null"]}, "next_attempt_unix": {"type": "number"},
                            "last_error": {"type": ["string", "null"]}, "result": {"type": ["string", "null"]}}}}}})),
                "400": err("bad query string (invalid_query)"), "403": err("not an admin")}))}}),
        ),
        (
            "/v1/deliveries/{id}/retry".into(),
            json!({"post": {"summary": "Queue a failed delivery again (admin; audited)",
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}}],
            "responses": responses(json!({"204": {"description": "queued again"}, "400": err("bad id"), "403": err("not an admin"),
                "404": err("no failed delivery with that id (not_found)")}))}}),
        ),
        (
            "/v1/agreement".into(),
            json!({"get": {"summary": "Model vs clinician agreement over the last N signed reviews (clinician, admin)",
            "parameters": [{"name": "last", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": u32::MAX}, "description": "read as 1 to 10000"}],
            "responses": responses(json!({"200": ok("kappa, confusion matrix, referable sensitivity/specificity, weekly trend", "application/json",
                    json!({"type": "object", "required": ["reviews", "overall", "weeks"], "properties": {"reviews": {"type": "integer", "minimum": 0},
                        "overall": {"type": "object"}, "weeks": {"type": "array"}}})),
                "400": err("bad query string (invalid_query)"), "403": err("not a clinician or admin")}))}}),
        ),
    ]
}

pub async fn spec(State(state): State<AppState>) -> Json<Value> {
    Json(document(&DocLimits::of(&state)))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

pub async fn docs(State(state): State<AppState>) -> Html<String> {
    let doc = document(&DocLimits::of(&state));
    let mut rows = String::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, ops) in paths {
            for (method, op) in ops.as_object().into_iter().flatten() {
                let codes: Vec<String> = op["responses"].as_object().map(|r| r.keys().cloned().collect()).unwrap_or_default();
                rows.push_str(&format!(
                    "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>\n",
                    method.to_uppercase(),
                    escape(path),
                    escape(op["summary"].as_str().unwrap_or_default()),
                    codes.join(", ")
                ));
            }
        }
    }
    Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><title>drscreen API</title>\
         <style>body{{font-family:sans-serif;margin:2em}}td{{padding:4px 10px;border-bottom:1px solid #ddd}}</style></head>\
         <body><h1>drscreen API</h1><p>Authenticate with <code>Authorization: Bearer &lt;key&gt;</code>. \
         Errors are JSON <code>{{\"error\",\"code\"}}</code>. Machine-readable: <a href=\"/openapi.json\">/openapi.json</a>.</p>\
         <table><tr><th>method</th><th>path</th><th>what</th><th>statuses</th></tr>{rows}</table></body></html>"
    ))
}
