//! `drscreen serve` as a clinic's systems see it: a real server process on an ephemeral
//! port with a temporary data directory, the committed model and real SQLite.

mod common;

use common::{Server, fixture, http};
use reqwest::blocking::multipart::{Form, Part};

fn jpeg(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

fn exam_form(left: &str, right: &str, metadata: &str) -> Form {
    Form::new()
        .part("left", Part::bytes(jpeg(left)).file_name(left.to_string()).mime_str("image/jpeg").unwrap())
        .part("right", Part::bytes(jpeg(right)).file_name(right.to_string()).mime_str("image/jpeg").unwrap())
        .part("metadata", Part::text(metadata.to_string()).mime_str("application/json").unwrap())
}

#[test]
fn every_route_happy_path() {
    let server = Server::start(&[]);
    let key = server.key("device");
    let c = http();
    assert_eq!(c.get(format!("{}/healthz", server.url)).send().unwrap().status(), 200);
    assert_eq!(c.get(format!("{}/readyz", server.url)).send().unwrap().status(), 200);
    let info: serde_json::Value = c.get(format!("{}/info", server.url)).bearer_auth(&key).send().unwrap().json().unwrap();
    assert_eq!(info["model"]["sha256"], common::package().manifest.file.sha256.as_str());
    assert_eq!(info["execution_provider"], "CPUExecutionProvider");
    let spec: serde_json::Value = c.get(format!("{}/openapi.json", server.url)).send().unwrap().json().unwrap();
    assert!(spec["paths"]["/v1/exams"]["post"].is_object());
    assert!(c.get(format!("{}/docs", server.url)).send().unwrap().text().unwrap().contains("/v1/grade"));

    // One image, synchronous, not stored.
    let r = c
        .post(format!("{}/v1/grade?laterality=right", server.url))
        .bearer_auth(&key)
        .header("content-type", "image/jpeg")
        .body(jpeg("grade0_R.jpg"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-drscreen-inference-ms"));
    let finding: serde_json::Value = r.json().unwrap();
    assert_eq!(finding["laterality"], "right");
    assert_eq!(finding["model"]["name"], "dr-synth");

    // An exam: stored, then readable.
    let r = c
        .post(format!("{}/v1/exams", server.url))
        .bearer_auth(&key)
        .multipart(exam_form("grade4_L.jpg", "grade0_R.jpg", r#"{"external_exam_ref":"ACC-1","patient_ref":"PID-1"}"#))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let exam: serde_json::Value = r.json().unwrap();
    let id = exam["id"].as_str().unwrap().to_string();
    assert_eq!(exam["patient_ref"], "PID-1");
    assert_eq!(exam["result"]["images"].as_array().unwrap().len(), 2);
    let outcome = exam["result"]["outcome"].as_str().unwrap().to_string();
    let fetched: serde_json::Value = c.get(format!("{}/v1/exams/{id}", server.url)).bearer_auth(&key).send().unwrap().json().unwrap();
    assert_eq!(fetched, exam);
    let list: serde_json::Value =
        c.get(format!("{}/v1/exams?outcome={outcome}&limit=10", server.url)).bearer_auth(&key).send().unwrap().json().unwrap();
    assert!(list["exams"].as_array().unwrap().iter().any(|e| e["id"] == id.as_str()));
    let other = if outcome == "rescreen" { "referral" } else { "rescreen" };
    let list: serde_json::Value =
        c.get(format!("{}/v1/exams?outcome={other}", server.url)).bearer_auth(&key).send().unwrap().json().unwrap();
    assert!(list["exams"].as_array().unwrap().iter().all(|e| e["id"] != id.as_str()));

    // Original bytes and the heatmap.
    let image_id = exam["image_ids"][0].as_str().unwrap();
    let original = c.get(format!("{}/v1/images/{image_id}", server.url)).bearer_auth(&key).send().unwrap().bytes().unwrap();
    assert_eq!(original.as_ref(), jpeg("grade4_L.jpg").as_slice());
    let r = c.get(format!("{}/v1/images/{image_id}/heatmap.png", server.url)).bearer_auth(&key).send().unwrap();
    assert_eq!(r.headers()["content-type"], "image/png");
    let png = image::load_from_memory(&r.bytes().unwrap()).unwrap();
    assert_eq!((png.width(), png.height()), (512, 512));

    let metrics = c.get(format!("{}/metrics", server.url)).bearer_auth(&key).send().unwrap().text().unwrap();
    assert!(metrics.contains("drscreen_http_requests_total{route=\"/v1/exams\",status=\"201\"} 1"), "{metrics}");
    assert!(metrics.contains(&format!("drscreen_exam_outcomes_total{{outcome=\"{outcome}\"}} 1")));
    assert!(metrics.contains("drscreen_inference_seconds_count"));
}

#[test]
fn broken_inputs_get_4xx_with_reasons_and_the_server_stays_healthy() {
    let server = Server::start(&[]);
    let key = server.key("device");
    let c = http();
    for (name, status, code) in [
        ("broken/empty.jpg", 422, "empty_input"),
        ("broken/truncated.jpg", 422, "corrupt_image"),
        ("broken/bomb.png", 413, "image_too_large"),
        ("broken/not_an_image.jpg", 415, "unsupported_format"),
    ] {
        let r = c
            .post(format!("{}/v1/grade", server.url))
            .bearer_auth(&key)
            .header("content-type", "image/jpeg")
            .body(std::fs::read(fixture(name)).unwrap())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{name}");
        let body: serde_json::Value = r.json().unwrap();
        assert_eq!(body["code"], code, "{name}: {body}");
        assert!(!body["error"].as_str().unwrap().is_empty());
    }
    // A broken image inside an exam rejects the exam and stores nothing.
    let form = Form::new()
        .part("left", Part::bytes(jpeg("grade0_L.jpg")).mime_str("image/jpeg").unwrap())
        .part("right", Part::bytes(std::fs::read(fixture("broken/truncated.jpg")).unwrap()).mime_str("image/jpeg").unwrap());
    let r = c.post(format!("{}/v1/exams", server.url)).bearer_auth(&key).multipart(form).send().unwrap();
    assert_eq!(r.status(), 422);
    let list: serde_json::Value = c.get(format!("{}/v1/exams", server.url)).bearer_auth(&key).send().unwrap().json().unwrap();
    assert_eq!(list["count"], 0);
    let r = c.post(format!("{}/v1/grade", server.url)).bearer_auth(&key).header("content-type", "text/plain").body("hi").send().unwrap();
    assert_eq!(r.status(), 415);
    let r = c.post(format!("{}/v1/exams", server.url)).bearer_auth(&key).multipart(Form::new().text("bogus", "x")).send().unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(c.get(format!("{}/nope", server.url)).send().unwrap().status(), 404);
    assert_eq!(c.get(format!("{}/readyz", server.url)).send().unwrap().status(), 200);
    let r = c
        .post(format!("{}/v1/grade", server.url))
        .bearer_auth(&key)
        .header("content-type", "image/jpeg")
        .body(jpeg("grade1_R.jpg"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn oversized_bodies_get_413() {
    let server = Server::start(&["--max-image-bytes", "20000"]);
    let key = server.key("device");
    let r = http()
        .post(format!("{}/v1/grade", server.url))
        .bearer_auth(&key)
        .header("content-type", "image/jpeg")
        .body(jpeg("grade4_R_12mp.jpg"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["code"], "payload_too_large");
}

#[test]
fn roles_are_enforced() {
    let server = Server::start(&[]);
    let device = server.key("device");
    let other_device = server.key("device");
    let clinician = server.key("clinician");
    let c = http();
    let url = |p: &str| format!("{}{p}", server.url);
    assert_eq!(c.get(url("/v1/exams")).send().unwrap().status(), 401);
    assert_eq!(c.get(url("/v1/exams")).bearer_auth("drs_000000000000_deadbeef").send().unwrap().status(), 401);
    assert_eq!(c.get(url("/info")).send().unwrap().status(), 401);
    // A clinician reads and reviews but does not submit images.
    let r =
        c.post(url("/v1/grade")).bearer_auth(&clinician).header("content-type", "image/jpeg").body(jpeg("grade0_R.jpg")).send().unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<serde_json::Value>().unwrap()["code"], "forbidden");
    let exam: serde_json::Value = c
        .post(url("/v1/exams"))
        .bearer_auth(&device)
        .multipart(exam_form("grade0_L.jpg", "grade0_R.jpg", "{}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = exam["id"].as_str().unwrap();
    // A device reads only its own results; a clinician reads all.
    assert_eq!(c.get(url(&format!("/v1/exams/{id}"))).bearer_auth(&device).send().unwrap().status(), 200);
    assert_eq!(c.get(url(&format!("/v1/exams/{id}"))).bearer_auth(&other_device).send().unwrap().status(), 404);
    assert_eq!(c.get(url(&format!("/v1/exams/{id}"))).bearer_auth(&clinician).send().unwrap().status(), 200);
    let mine: serde_json::Value = c.get(url("/v1/exams")).bearer_auth(&other_device).send().unwrap().json().unwrap();
    assert_eq!(mine["count"], 0);
    let image = exam["image_ids"][0].as_str().unwrap();
    assert_eq!(c.get(url(&format!("/v1/images/{image}"))).bearer_auth(&other_device).send().unwrap().status(), 404);
}

#[test]
fn acknowledged_exams_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let key = server.key("device");
    let c = http();
    let r = c
        .post(format!("{}/v1/exams", server.url))
        .bearer_auth(&key)
        .multipart(exam_form("grade1_L.jpg", "grade1_R.jpg", r#"{"external_exam_ref":"ACC-9"}"#))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let exam: serde_json::Value = r.json().unwrap();
    assert!(server.stop().success(), "server did not shut down cleanly");
    let server = Server::start_in(dir.path(), &[]);
    let again: serde_json::Value =
        c.get(format!("{}/v1/exams/{}", server.url, exam["id"].as_str().unwrap())).bearer_auth(&key).send().unwrap().json().unwrap();
    assert_eq!(again, exam);
    let image = exam["image_ids"][1].as_str().unwrap();
    let bytes = c.get(format!("{}/v1/images/{image}", server.url)).bearer_auth(&key).send().unwrap().bytes().unwrap();
    assert_eq!(bytes.as_ref(), jpeg("grade1_R.jpg").as_slice());
}

#[test]
fn a_burst_beyond_the_queue_gets_503_while_admitted_requests_succeed() {
    let server = Server::start(&["--queue-capacity", "2", "--max-batch", "1", "--preprocess-threads", "1"]);
    let key = server.key("device");
    let body = jpeg("grade4_R_12mp.jpg");
    let handles: Vec<_> = (0..24)
        .map(|_| {
            let (url, key, body) = (format!("{}/v1/grade", server.url), key.clone(), body.clone());
            std::thread::spawn(move || {
                let r = http().post(url).bearer_auth(key).header("content-type", "image/jpeg").body(body).send().unwrap();
                let status = r.status().as_u16();
                let retry = r.headers().get("retry-after").is_some();
                let json: serde_json::Value = r.json().unwrap();
                (status, retry, json)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let busy: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
    assert!(ok >= 1, "{results:?}");
    assert!(!busy.is_empty(), "no request was refused: {results:?}");
    assert_eq!(ok + busy.len(), results.len(), "{results:?}");
    for (_, retry, json) in busy {
        assert!(*retry);
        assert_eq!(json["code"], "queue_full");
    }
    for (status, _, json) in &results {
        if *status == 200 {
            assert_eq!(json["model"]["name"], "dr-synth");
        }
    }
}
