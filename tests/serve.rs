//! `drscreen serve` as a clinic's systems see it: a real server process on an ephemeral
//! port with a temporary data directory, the committed model and real SQLite: what needs
//! the process (every route over a real socket, restart, SIGTERM, bursts). Routing, auth,
//! validation and error mapping are tested in-process in api.rs.

mod common;

use common::{Exam, Image, Server, fixture, grade, http, upload_exam};

fn jpeg(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
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
    let r = grade(&server, &key, &Image::fixture("grade0_R.jpg").laterality("right"));
    assert_eq!(r.status, 200);
    assert!(r.headers.contains_key("x-drscreen-inference-ms"));
    let finding = r.json();
    assert_eq!(finding["laterality"], "right");
    assert_eq!(finding["model"]["name"], "dr-synth");

    // An exam: stored, then readable.
    let r = upload_exam(
        &server,
        &key,
        &Exam::eyes("grade4_L.jpg", "grade0_R.jpg").metadata(r#"{"external_exam_ref":"ACC-1","patient_ref":"PID-1"}"#),
    );
    assert_eq!(r.status, 201);
    let exam = r.json();
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
fn acknowledged_exams_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let key = server.key("device");
    let c = http();
    let r = upload_exam(&server, &key, &Exam::eyes("grade1_L.jpg", "grade1_R.jpg").metadata(r#"{"external_exam_ref":"ACC-9"}"#));
    assert_eq!(r.status, 201);
    let exam = r.json();
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
    let image = Image::fixture("grade4_R_12mp.jpg");
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..24)
            .map(|_| {
                scope.spawn(|| {
                    let r = grade(&server, &key, &image);
                    (r.status.as_u16(), r.headers.get("retry-after").is_some(), r.json())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
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
