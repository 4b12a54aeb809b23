//! The OpenAPI 3.1 description of the API and a plain HTML page rendered from it
//! (served locally: no CDN, works offline).

use axum::Json;
use axum::response::Html;

/// The OpenAPI document.
pub fn document() -> serde_json::Value {
    let error = serde_json::json!({"$ref": "#/components/schemas/Error"});
    let err = |d: &str| serde_json::json!({"description": d, "content": {"application/json": {"schema": error}}});
    let image_body = serde_json::json!({"required": true, "content": {
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/tiff": {"schema": {"type": "string", "format": "binary"}},
        "application/dicom": {"schema": {"type": "string", "format": "binary"}}}});
    let mut doc = serde_json::json!({
        "openapi": "3.1.0",
        "info": {"title": "drscreen", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Diabetic-retinopathy screening of fundus photographs. Every result names the model (name, version, sha256)."},
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "drscreen API key (drscreen keys create)"}},
            "schemas": {"Error": {"type": "object", "required": ["error", "code"],
                                   "properties": {"error": {"type": "string"}, "code": {"type": "string"}}}}
        },
        "security": [{"apiKey": []}],
        "paths": {
            "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {"200": {"description": "process is alive"}}}},
            "/readyz": {"get": {"summary": "Readiness: model loaded, warm, inference thread healthy", "security": [],
                                 "responses": {"200": {"description": "ready"}, "503": err("not ready")}}},
            "/info": {"get": {"summary": "Model identity, execution provider, batching limits, build version", "responses": {"200": {"description": "info"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text exposition format"}}}},
            "/v1/grade": {"post": {"summary": "Grade one image (not stored)",
                "parameters": [{"name": "laterality", "in": "query", "schema": {"enum": ["left", "right"]}}],
                "requestBody": image_body,
                "responses": {"200": {"description": "image finding; X-Drscreen-*-Ms headers carry timings"},
                              "401": err("no or unknown key"), "403": err("role may not submit"), "413": err("too large"),
                              "415": err("not an accepted image type"), "422": err("corrupt image"), "503": err("queue full; see Retry-After")}}},
            "/v1/exams": {
                "post": {"summary": "Submit an exam: multipart parts named left/right (repeatable) and optional metadata JSON {external_exam_ref, patient_ref, views}",
                    "requestBody": {"required": true, "content": {"multipart/form-data": {"schema": {"type": "object"}}}},
                    "responses": {"201": {"description": "stored exam with per-image, per-eye and exam results"},
                                  "400": err("bad request"), "413": err("too large"), "422": err("an image is unreadable; nothing stored"), "503": err("queue full")}},
                "get": {"summary": "List exams, newest first",
                    "parameters": [{"name": "outcome", "in": "query", "schema": {"enum": ["urgent_referral", "referral", "rescreen", "ungradable"]}},
                                   {"name": "reviewed", "in": "query", "schema": {"type": "boolean"}},
                                   {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                                   {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 500}},
                                   {"name": "offset", "in": "query", "schema": {"type": "integer"}}],
                    "responses": {"200": {"description": "exams"}}}},
            "/v1/exams/{id}": {"get": {"summary": "One exam", "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                                        "responses": {"200": {"description": "exam"}, "404": err("not found")}}},
            "/v1/images/{id}": {"get": {"summary": "Original image bytes", "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                                         "responses": {"200": {"description": "the image"}, "404": err("not found")}}},
            "/v2/models/{name}/infer": {"post": {"summary": "KServe v2 / Open Inference Protocol inference: input 'image' FP32 [N,3,512,512] (normalised per the manifest) or 'image_bytes' BYTES [N] (encoded images, full pipeline, adds output 'finding'); JSON or the binary tensor extension (Inference-Header-Content-Length). Also /v2, /v2/health/live|ready, /v2/models/{name}[/ready], and /versions/{version} variants.",
                "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "outputs dr_logits, dme_logit, gradable_logit, referable_cam (and finding)"},
                              "400": err("bad tensor"), "404": err("unknown model"), "413": err("too large"), "503": err("queue full")}}},
            "/v1/images/{id}/heatmap.png": {"get": {"summary": "Model heatmap over the cropped field of view",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "PNG"}, "404": err("not found")}}}
        }
    });
    let id = serde_json::json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    let dicom_paths = [
        (
            "/v1/exams/{id}/sr.dcm",
            serde_json::json!({"get": {"summary": "The exam as a DICOM SR (TID 1500 in a Comprehensive 3D SR; application/dicom)",
            "parameters": id, "responses": {"200": {"description": "Part 10 file"}, "404": err("not found")}}}),
        ),
        (
            "/v1/exams/{id}/fhir",
            serde_json::json!({"get": {"summary": "The exam as a FHIR R4 DiagnosticReport with contained Observations (application/fhir+json)",
            "parameters": id, "responses": {"200": {"description": "DiagnosticReport"}, "404": err("not found")}}}),
        ),
        (
            "/dicomweb/studies",
            serde_json::json!({"post": {"summary": "STOW-RS: store DICOM instances (multipart/related; type=\"application/dicom\"); studies are graded once quiet",
            "requestBody": {"required": true, "content": {"multipart/related": {"schema": {"type": "string", "format": "binary"}}}},
            "responses": {"200": {"description": "all stored (application/dicom+json ReferencedSOPSequence)"},
                          "202": {"description": "some stored; FailedSOPSequence lists the others with FailureReason"},
                          "409": {"description": "none stored"}, "415": err("not multipart/related application/dicom")}}}),
        ),
    ];
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, ops) in dicom_paths {
            paths.insert(path.to_string(), ops);
        }
    }
    if let (Some(paths), serde_json::Value::Object(more)) = (doc["paths"].as_object_mut(), review_paths()) {
        paths.extend(more);
    }
    doc
}

/// The review endpoints (a separate literal: one `json!` this size exceeds the macro
/// recursion limit).
fn review_paths() -> serde_json::Value {
    let err = |d: &str| serde_json::json!({"description": d, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    serde_json::json!({
            "/v1/exams/{id}/reviews": {
                "post": {"summary": "Save a review draft, sign off (sign: true) or amend a signed review (amendment_reason) (clinician)",
                    "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["eyes", "outcome"],
                        "properties": {
                            "eyes": {"type": "object", "description": "keyed by right/left/unspecified",
                                "additionalProperties": {"type": "object", "properties": {
                                    "grade": {"type": ["integer", "null"], "minimum": 0, "maximum": 4, "description": "null = ungradable"},
                                    "dme": {"type": ["boolean", "null"]}}}},
                            "outcome": {"type": "string", "enum": ["urgent_referral", "referral", "rescreen", "ungradable"]},
                            "note": {"type": "string"}, "sign": {"type": "boolean"},
                            "amendment_reason": {"type": "string"}, "base_version": {"type": "integer"}}}}}},
                    "responses": {"201": {"description": "the version written"}, "403": err("not a clinician"), "404": err("no such exam"),
                        "409": err("amendment_reason_required or review_conflict"), "422": err("invalid review")}},
                "get": {"summary": "Every version of the exam's review (clinician, admin)",
                    "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "versions, oldest first"}, "404": err("no such exam")}}},
            "/v1/audit": {"get": {"summary": "Audit log, newest first (admin)",
                "parameters": [
                    {"name": "actor", "in": "query", "schema": {"type": "string"}},
                    {"name": "action", "in": "query", "schema": {"type": "string"}, "description": "an action or a family, e.g. review"},
                    {"name": "object", "in": "query", "schema": {"type": "string"}},
                    {"name": "before", "in": "query", "schema": {"type": "integer"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 1000}}],
                "responses": {"200": {"description": "events"}, "403": err("not an admin")}}},
            "/v1/agreement": {"get": {"summary": "Model vs clinician agreement over the last N signed reviews (clinician, admin)",
                "parameters": [{"name": "last", "in": "query", "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "kappa, confusion matrix, referable sensitivity/specificity, weekly trend"}}}}
    })
}

pub async fn spec() -> Json<serde_json::Value> {
    Json(document())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

pub async fn docs() -> Html<String> {
    let doc = document();
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
