//! The HTTP API in-process: routing, authentication and roles, input validation and the
//! mapping of errors to `{"error", "code"}` responses, through `drscreen::http::router`
//! with `tower::ServiceExt::oneshot` over a temporary store and the committed model. No
//! port and no process: what needs one (restart, SIGTERM, bursts, DICOM, the browser) is
//! in serve.rs, dicom.rs, review.rs and review_browser.rs.

mod common;

use axum::http::{Method, StatusCode, header};
use common::{Api, App, Exam, Image, Reply, fixture, get, grade, request, upload_exam};
use serde_json::Value;

/// Asserts the JSON error shape: the status, a non-empty message and `code`.
fn assert_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let body = r.json();
    assert_eq!(body["code"], code, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
}

fn post(app: &App, path: &str, key: Option<&str>, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
    app.send(request(Method::POST, path, key).header(header::CONTENT_TYPE, content_type).body(body.into()).unwrap())
}

#[test]
fn health_readiness_and_unknown_routes() {
    let app = App::new();
    let r = get(&app, "/healthz", None);
    assert_eq!((r.status, r.json()), (StatusCode::OK, serde_json::json!({"status": "live"})));
    let r = get(&app, "/readyz", None);
    assert_eq!((r.status, r.json()), (StatusCode::OK, serde_json::json!({"status": "ready"})));
    for path in ["/nope", "/v1", "/v1/exams/x/y/z", "/v3/models"] {
        assert_error(&get(&app, path, None), 404, "not_found");
    }
    // Known ids are looked up only for an authenticated caller; unknown ids are JSON 404s.
    let key = app.key("device");
    for path in [
        "/v1/exams/nope",
        "/v1/images/nope",
        "/v1/images/nope/heatmap.png",
        "/v1/exams/nope/sr.dcm",
        "/v1/exams/nope/fhir",
        "/v1/exams/nope/report.pdf",
    ] {
        assert_error(&get(&app, path, Some(&key)), 404, "not_found");
    }
    // A known route with the wrong method is not a 404, and is a JSON error like the rest
    // (axum's default was an empty body), on the API, KServe and the review pages alike.
    for (method, path) in [(Method::DELETE, "/v1/exams"), (Method::PUT, "/v2/models/dr-synth/infer"), (Method::DELETE, "/review/login")] {
        assert_error(&app.send(request(method, path, Some(&key)).body(Vec::new()).unwrap()), 405, "method_not_allowed");
    }
}

// Moved from serve.rs (was a real process).
#[test]
fn roles_are_enforced() {
    let app = App::new();
    let device = app.key("device");
    let other_device = app.key("device");
    let clinician = app.key("clinician");
    assert_eq!(get(&app, "/v1/exams", None).status, 401);
    assert_eq!(get(&app, "/v1/exams", Some("drs_000000000000_deadbeef")).status, 401);
    assert_eq!(get(&app, "/info", None).status, 401);
    // A clinician reads and reviews but does not submit images.
    let r = grade(&app, &clinician, &Image::fixture("grade0_R.jpg"));
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["code"], "forbidden");
    let exam = upload_exam(&app, &device, &Exam::eyes("grade0_L.jpg", "grade0_R.jpg").metadata("{}")).json();
    let id = exam["id"].as_str().unwrap();
    // A device reads only its own results; a clinician reads all.
    assert_eq!(get(&app, &format!("/v1/exams/{id}"), Some(&device)).status, 200);
    assert_eq!(get(&app, &format!("/v1/exams/{id}"), Some(&other_device)).status, 404);
    assert_eq!(get(&app, &format!("/v1/exams/{id}"), Some(&clinician)).status, 200);
    let mine = get(&app, "/v1/exams", Some(&other_device)).json();
    assert_eq!(mine["count"], 0);
    let image = exam["image_ids"][0].as_str().unwrap();
    assert_eq!(get(&app, &format!("/v1/images/{image}"), Some(&other_device)).status, 404);
}

#[test]
fn authentication_errors_and_roles_in_detail() {
    let app = App::new();
    let (device, other_device, clinician, admin) = (app.key("device"), app.key("device"), app.key("clinician"), app.key("admin"));
    assert_error(&get(&app, "/v1/exams", None), 401, "unauthenticated");
    assert_error(&get(&app, "/metrics", Some("not-a-key")), 401, "unauthenticated");
    // X-API-Key works as well as Authorization: Bearer.
    let r = app.send(request(Method::GET, "/info", None).header("x-api-key", &device).body(Vec::new()).unwrap());
    assert_eq!(r.status, 200);
    // Exam upload is for devices and admins only; the clinician's refusal stores nothing.
    assert_error(&upload_exam(&app, &clinician, &Exam::eyes("grade0_L.jpg", "grade0_R.jpg")), 403, "forbidden");
    assert_eq!(get(&app, "/v1/exams", Some(&admin)).json()["count"], 0);
    let r = upload_exam(&app, &admin, &Exam::new().image("right", "grade1_R.jpg"));
    assert_eq!(r.status, 201, "{}", r.text());
    let by_admin = r.json()["id"].as_str().unwrap().to_string();
    let exam = upload_exam(&app, &device, &Exam::eyes("grade0_L.jpg", "grade0_R.jpg")).json();
    let id = exam["id"].as_str().unwrap();
    // A device lists only its own exams and cannot read another's heatmap; others list all.
    let mine = get(&app, "/v1/exams", Some(&device)).json();
    let ids: Vec<&str> = mine["exams"].as_array().unwrap().iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids, [id]);
    assert_eq!(get(&app, "/v1/exams", Some(&clinician)).json()["count"], 2);
    assert_error(&get(&app, &format!("/v1/exams/{by_admin}"), Some(&device)), 404, "not_found");
    let image = exam["image_ids"][0].as_str().unwrap();
    assert_error(&get(&app, &format!("/v1/images/{image}/heatmap.png"), Some(&other_device)), 404, "not_found");
    assert_eq!(get(&app, &format!("/v1/images/{image}"), Some(&admin)).status, 200);
    // Reviews, audit and agreement: devices may not.
    assert_error(&get(&app, "/v1/audit", Some(&device)), 403, "forbidden");
    assert_error(&get(&app, &format!("/v1/exams/{id}/reviews"), Some(&device)), 403, "forbidden");
}

// Moved from serve.rs (was a real process).
#[test]
fn broken_inputs_get_4xx_with_reasons_and_the_server_stays_healthy() {
    let app = App::new();
    let key = app.key("device");
    for (name, status, code) in [
        ("broken/empty.jpg", 422, "empty_input"),
        ("broken/truncated.jpg", 422, "corrupt_image"),
        ("broken/bomb.png", 413, "image_too_large"),
        ("broken/not_an_image.jpg", 415, "unsupported_format"),
    ] {
        let r = grade(&app, &key, &Image::bytes(std::fs::read(fixture(name)).unwrap(), "image/jpeg"));
        assert_eq!(r.status.as_u16(), status, "{name}");
        let body = r.json();
        assert_eq!(body["code"], code, "{name}: {body}");
        assert!(!body["error"].as_str().unwrap().is_empty());
    }
    // A broken image inside an exam rejects the exam and stores nothing.
    let exam = Exam::new().image("left", "grade0_L.jpg").image("right", "broken/truncated.jpg");
    assert_eq!(upload_exam(&app, &key, &exam).status, 422);
    let list = get(&app, "/v1/exams", Some(&key)).json();
    assert_eq!(list["count"], 0);
    let r = grade(&app, &key, &Image::bytes("hi", "text/plain"));
    assert_eq!(r.status, 415);
    let r = upload_exam(&app, &key, &Exam::new().part("bogus", None, None, b"x".to_vec()));
    assert_eq!(r.status, 400);
    assert_eq!(get(&app, "/nope", None).status, 404);
    assert_eq!(get(&app, "/readyz", None).status, 200);
    let r = grade(&app, &key, &Image::fixture("grade1_R.jpg"));
    assert_eq!(r.status, 200);
}

#[test]
fn request_validation_names_the_problem() {
    let app = App::new();
    let key = app.key("device");
    let image = Image::fixture("grade0_R.jpg");
    assert_error(&grade(&app, &key, &image.clone().laterality("up")), 400, "invalid_laterality");
    assert_error(&grade(&app, &key, &image.clone().content_type("text/plain")), 415, "unsupported_media_type");
    assert_error(&grade(&app, &key, &image.clone().content_type("")), 415, "unsupported_media_type");
    // Content-Type parameters and case are ignored; `laterality` is echoed.
    let r = grade(&app, &key, &image.clone().content_type("Image/JPEG; q=1").laterality("left"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["laterality"], "left");
    for header in ["x-drscreen-queue-ms", "x-drscreen-preprocess-ms", "x-drscreen-inference-ms", "x-drscreen-total-ms"] {
        assert!(r.headers.contains_key(header), "{header}");
    }

    assert_error(&get(&app, "/v1/exams?outcome=fine", Some(&key)), 400, "invalid_outcome");
    assert_eq!(get(&app, "/v1/exams?limit=many", Some(&key)).status, 400);

    let eyes = || Exam::eyes("grade0_L.jpg", "grade0_R.jpg");
    assert_error(&upload_exam(&app, &key, &eyes().part("extra", None, None, b"x".to_vec())), 400, "unknown_part");
    assert_error(&upload_exam(&app, &key, &Exam::new().metadata(r#"{"external_exam_ref":"ACC-0"}"#)), 400, "no_images");
    assert_error(&upload_exam(&app, &key, &Exam::new()), 400, "no_images");
    assert_error(&upload_exam(&app, &key, &eyes().metadata("{not json")), 400, "invalid_metadata");
    assert_error(&upload_exam(&app, &key, &eyes().metadata(r#"{"external_exam_ref": 7}"#)), 400, "invalid_metadata");
    // Not multipart at all: the rejection is a JSON error too.
    let r = post(&app, "/v1/exams", Some(&key), "application/json", "{}");
    assert!(r.status.is_client_error(), "{}", r.status);
    assert!(r.json()["code"].is_string());
    // None of that stored anything.
    assert_eq!(get(&app, "/v1/exams", Some(&key)).json()["count"], 0);
}

// Moved from serve.rs (was a real process started with `--max-image-bytes 20000`).
#[test]
fn oversized_bodies_get_413() {
    let app = App::with_max_body_bytes(20_000);
    let key = app.key("device");
    let r = grade(&app, &key, &Image::fixture("grade4_R_12mp.jpg"));
    assert_eq!(r.status, 413);
    let body = r.json();
    assert_eq!(body["code"], "payload_too_large");
    // An exam whose body passes the route's limit (4 × the image limit) is refused too.
    let big = Exam::new().image("left", "grade4_R_12mp.jpg").image("right", "grade4_R_12mp.jpg");
    let r = upload_exam(&app, &key, &big);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.json()["code"].is_string());
}

#[test]
fn an_upload_is_counted_and_readable() {
    let app = App::new();
    let key = app.key("device");
    let r = upload_exam(&app, &key, &Exam::eyes("grade2_L.png", "grade0_R.jpg").metadata(r#"{"patient_ref":"PID-A"}"#));
    assert_eq!(r.status, 201, "{}", r.text());
    let exam = r.json();
    let id = exam["id"].as_str().unwrap();
    assert_eq!(r.headers[header::LOCATION], format!("/v1/exams/{id}").as_str());
    assert_eq!(exam["patient_ref"], "PID-A");
    assert_eq!(get(&app, &format!("/v1/exams/{id}"), Some(&key)).json(), exam);
    let image = exam["image_ids"][0].as_str().unwrap();
    let r = get(&app, &format!("/v1/images/{image}"), Some(&key));
    assert_eq!((r.headers[header::CONTENT_TYPE].to_str().unwrap(), r.body), ("image/png", std::fs::read(fixture("grade2_L.png")).unwrap()));

    let metrics = get(&app, "/metrics", Some(&key)).text();
    assert!(metrics.contains("drscreen_exams_total{channel=\"http\"} 1"), "{metrics}");
    assert!(metrics.contains("drscreen_http_requests_total{route=\"/v1/exams\",status=\"201\"} 1"), "{metrics}");
    assert!(metrics.contains("drscreen_http_requests_total{route=\"/v1/exams/{id}\",status=\"200\"} 1"), "{metrics}");
    let outcome = exam["result"]["outcome"].as_str().unwrap();
    assert!(metrics.contains(&format!("drscreen_exam_outcomes_total{{outcome=\"{outcome}\"}} 1")), "{metrics}");
    let spec: Value = get(&app, "/openapi.json", None).json();
    assert!(spec["paths"]["/v1/grade"]["post"].is_object());
}

/// A review page's query string, path segment or form body that does not parse is
/// answered with the styled HTML error page (400, or 415 for a body that is not a form),
/// with the signed-in user's navigation, never axum's plain-text rejection.
#[test]
fn review_pages_refuse_malformed_requests_with_the_styled_error_page() {
    let app = App::new();
    let key = app.key("admin");
    let identity = app.service.store.verify_key(&key).unwrap().expect("admin key");
    let (token, _csrf) = app.service.store.create_session(&identity).unwrap();
    let cookie = format!("drs_session={token}");
    let page = |method: Method, path: &str, content_type: Option<&str>, body: &str| {
        // A Host header: form POSTs without one are refused as cross-origin first.
        let mut builder = request(method, path, None).header(header::COOKIE, &cookie).header(header::HOST, "drscreen.test");
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        app.send(builder.body(body.as_bytes().to_vec()).unwrap())
    };
    let styled = |r: &Reply, status: u16, signed_in: bool| {
        let html = r.text();
        assert_eq!(r.status, status, "{html}");
        assert!(r.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"), "{:?}", r.headers);
        assert!(html.contains("<h1>Bad request</h1>") && html.contains("/review/static/review.css"), "{html}");
        assert_eq!(html.contains("Sign out"), signed_in, "{html}");
    };
    for path in [
        "/review/agreement?last=-5",
        "/review/agreement?last=abc",
        "/review/audit?before=yesterday",
        "/review/audit?limit=-1",
        "/review?outcome=referral&outcome=rescreen",
        "/review/exams/abc?saved=-1",
        "/review/exams/%FF",
    ] {
        styled(&page(Method::GET, path, None, ""), 400, true);
    }
    // The forms: a body that is not application/x-www-form-urlencoded.
    styled(&page(Method::POST, "/review/exams/abc/review", Some("application/json"), "{}"), 415, true);
    let login =
        request(Method::POST, "/review/login", None).header(header::HOST, "drscreen.test").header(header::CONTENT_TYPE, "application/json");
    styled(&app.send(login.body(b"{}".to_vec()).unwrap()), 415, false);
    // Signed out, a page still sends the user to sign in first.
    let r = app.send(request(Method::GET, "/review/agreement?last=-5", None).body(Vec::new()).unwrap());
    assert_eq!((r.status.as_u16(), r.headers.get(header::LOCATION).map(|v| v.to_str().unwrap())), (303, Some("/review/login")));
}

/// The JSON API answers a path segment that does not decode with the JSON error shape.
#[test]
fn undecodable_path_segments_are_json_errors() {
    let app = App::new();
    let key = app.key("admin");
    for path in [
        "/v1/exams/%FF",
        "/v1/images/%FF",
        "/v1/images/%FF/heatmap.png",
        "/v1/exams/%FF/sr.dcm",
        "/v1/exams/%FF/fhir",
        "/v1/exams/%FF/report.pdf",
        "/v1/exams/%FF/reviews",
    ] {
        assert_error(&get(&app, path, Some(&key)), 400, "invalid_path");
    }
}

/// A mirrored left-eye photograph (its disc now on the right, as in a right eye) sent as
/// the left eye: the finding says the disc position contradicts the stated eye, and the
/// stated eye stays. Sent as the right eye it is consistent.
#[test]
fn a_mirrored_image_sent_as_the_wrong_eye_is_flagged_in_the_json() {
    let app = App::new();
    let key = app.key("device");
    let flipped = image::open(fixture("grade0_L.jpg")).unwrap().fliph().to_rgb8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 92).encode_image(&flipped).unwrap();
    let r = grade(&app, &key, &Image::bytes(jpeg.clone(), "image/jpeg").laterality("left"));
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let body = r.json();
    assert_eq!(body["laterality"], "left", "{body}");
    let check = &body["laterality_check"];
    assert_eq!((check["stated"].as_str(), check["verdict"].as_str()), (Some("left"), Some("contradicts")), "{body}");
    assert_eq!((check["disc_side"].as_str(), check["suggested"].as_str()), (Some("right"), Some("right")), "{body}");
    assert!(check["offset"].as_f64().is_some_and(|o| o > 0.3), "{check}");
    let r = grade(&app, &key, &Image::bytes(jpeg, "image/jpeg").laterality("right"));
    assert_eq!(r.json()["laterality_check"]["verdict"], "consistent");
}
