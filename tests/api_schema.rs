//! The OpenAPI document against the real server, checked by schemathesis (the
//! property-based API tester, PyPI `schemathesis`, pinned in tests/run.sh): a real
//! `drscreen serve` process with seeded data (a graded exam with images and a signed
//! review, so every `{id}` path reaches a real record), then one schemathesis run per
//! role's key against `/openapi.json`. Every response must be no 5xx, a documented
//! status, of a documented content type and match the documented schema.
//!
//! schemathesis must be installed: a missing tool fails this test rather than skipping
//! it (tests/run.sh installs it).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Exam, Server, upload_exam};
use serde_json::{Value, json};

/// The pinned version tests/run.sh installs.
const SCHEMATHESIS: &str = "4.32.5";
/// Test cases per operation in the fuzzing phase (the coverage phase adds its own).
const MAX_EXAMPLES: &str = "20";
/// One role's run is bounded by its examples; this only stops a hung run.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// The checks: no 5xx, and every response conforms to the document (status, content
/// type, body schema).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

/// `python3 -m schemathesis`-equivalent: the CLI of the schemathesis that `python3` (the
/// interpreter tests/run.sh installs into) imports. Fails, never skips, when it is missing.
fn schemathesis() -> Command {
    let probe = Command::new("python3").args(["-c", "import schemathesis; print(schemathesis.__version__)"]).output();
    let version = match probe {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Ok(out) => panic!(
            "schemathesis is not installed for python3 (tests/run.sh installs it: python3 -m pip install \"schemathesis=={SCHEMATHESIS}\"): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("python3 is needed to run schemathesis ({e}); tests/run.sh installs schemathesis=={SCHEMATHESIS}"),
    };
    if version != SCHEMATHESIS {
        eprintln!("note: schemathesis {version} is installed; tests/run.sh pins {SCHEMATHESIS}");
    }
    let mut command = Command::new("python3");
    command.args(["-c", "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis(prog_name='st'))"]);
    command
}

/// Seeds the data every `{id}` operation needs: an exam of two graded images submitted by
/// `device`, and a signed review of it by `clinician`. Returns (exam id, image id).
fn seed(server: &Server, device: &str, clinician: &str) -> (String, String) {
    let r = upload_exam(server, device, &Exam::eyes("grade2_L.png", "grade2_R.jpg").metadata(r#"{"external_exam_ref": "schema-1"}"#));
    assert_eq!(r.status, 201, "{}", r.text());
    let exam = r.json();
    let id = exam["id"].as_str().expect("exam id").to_string();
    let image = exam["image_ids"][0].as_str().expect("image id").to_string();
    let review =
        json!({"eyes": {"left": {"grade": 2, "dme": false}, "right": {"grade": 2, "dme": false}}, "outcome": "referral", "sign": true});
    let r = common::http().post(format!("{}/v1/exams/{id}/reviews", server.url)).bearer_auth(clinician).json(&review).send().unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());
    (id, image)
}

/// schemathesis.toml: the STOW-RS hooks (tests/peers/schemathesis_hooks.py) and the
/// explicit path parameter values (the seeded exam and image, the served model), so
/// `{id}` operations reach a real record instead of 404 every time.
fn config(exam: &str, image: &str, model: &str, version: &str) -> String {
    let hooks = common::root().join("tests/peers/schemathesis_hooks.py");
    let operations = |paths: &[&str], parameters: &[(&str, &str)]| {
        let list = paths.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", ");
        let values = parameters.iter().map(|(k, v)| format!("\"path.{k}\" = {v:?}")).collect::<Vec<_>>().join(", ");
        format!("[[operations]]\ninclude-path = [{list}]\nparameters = {{ {values} }}\n\n")
    };
    let exam_paths =
        ["/v1/exams/{id}", "/v1/exams/{id}/reviews", "/v1/exams/{id}/sr.dcm", "/v1/exams/{id}/fhir", "/v1/exams/{id}/report.pdf"];
    let image_paths = ["/v1/images/{id}", "/v1/images/{id}/heatmap.png"];
    let model_paths = ["/v2/models/{name}", "/v2/models/{name}/ready", "/v2/models/{name}/infer"];
    let version_paths = [
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/versions/{version}/ready",
        "/v2/models/{name}/versions/{version}/infer",
    ];
    format!(
        "hooks = {:?}\n\n{}{}{}{}",
        hooks.display().to_string(),
        operations(&exam_paths, &[("id", exam)]),
        operations(&image_paths, &[("id", image)]),
        operations(&model_paths, &[("name", model)]),
        operations(&version_paths, &[("name", model), ("version", version)]),
    )
}

/// One bounded, deterministic schemathesis run with `key`; returns (success, output).
fn run(dir: &Path, location: &str, extra: &[&str], key: &str, role: &str) -> (bool, String) {
    let log = dir.join(format!("{role}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let args = [
        "--config-file",
        "schemathesis.toml",
        "--no-color",
        "run",
        location,
        "--header",
        &format!("Authorization: Bearer {key}"),
        "--checks",
        CHECKS,
        "--max-examples",
        MAX_EXAMPLES,
        "--seed",
        "18",
        "--generation-database",
        "none",
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--max-failures",
        "20",
        "--suppress-health-check",
        "too_slow,filter_too_much",
        "--output-sanitize",
        "true",
    ];
    let mut child = schemathesis()
        .args(args)
        .args(extra)
        .current_dir(dir)
        // schemathesis' own state (.hypothesis, .schemathesis, reports) stays in `dir`.
        .env("HOME", dir)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("schemathesis starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let summary = format!("--- schemathesis as {role} ({:.0} s) ---\n{output}", started.elapsed().as_secs_f64());
    match status {
        Some(s) => (s.success(), summary),
        None => (false, format!("{summary}\n(killed after {RUN_LIMIT:?})")),
    }
}

/// `drscreen_http_requests_total` by (route, status) from `/metrics`.
fn responses_by_route(server: &Server, key: &str) -> std::collections::BTreeMap<(String, u16), u64> {
    let text = common::get(server, "/metrics", Some(key)).text();
    text.lines()
        .filter_map(|l| l.strip_prefix("drscreen_http_requests_total{route=\""))
        .filter_map(|l| {
            let (route, rest) = l.split_once("\",status=\"")?;
            let (status, count) = rest.split_once("\"} ")?;
            Some(((route.to_string(), status.parse().ok()?), count.trim().parse().ok()?))
        })
        .collect()
}

#[test]
fn openapi_document_holds_for_every_role() {
    let started = Instant::now();
    // Fails at once, before a server starts, when schemathesis is not installed.
    let _ = schemathesis();
    let server = Server::start(&["--dicom-enabled", "false"]);
    let (device, clinician, admin) = (server.key("device"), server.key("clinician"), server.key("admin"));
    let (exam, image) = seed(&server, &device, &clinician);
    let info = common::get(&server, "/info", Some(&admin)).json();
    let (model, version) = (info["model"]["name"].as_str().expect("model name"), info["model"]["version"].as_str().expect("model version"));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schemathesis.toml"), config(&exam, &image, model, version)).unwrap();

    // The harness catches a broken document: the served one with a status it really
    // answers (401 on /info without a key) left out must fail.
    let mut broken: Value = common::get(&server, "/openapi.json", None).json();
    broken["paths"]["/info"]["get"]["responses"].as_object_mut().expect("/info responses").remove("401");
    std::fs::write(dir.path().join("broken.json"), serde_json::to_vec(&broken).unwrap()).unwrap();
    let (ok, output) = run(dir.path(), "broken.json", &["--url", &server.url, "--include-path", "/info"], &admin, "control");
    assert!(!ok && output.contains("Undocumented status code"), "schemathesis did not catch an undocumented 401:\n{output}");

    let mut failures = Vec::new();
    for (role, key) in [("device", &device), ("clinician", &clinician), ("admin", &admin)] {
        let (ok, output) = run(dir.path(), &format!("{}/openapi.json", server.url), &[], key, role);
        println!("{output}");
        if !ok {
            failures.push(output);
        }
    }
    assert!(failures.is_empty(), "schemathesis found responses that break the OpenAPI document:\n{}", failures.join("\n"));

    // The runs reached the seeded records and the model, not only refusals: every `{id}`
    // operation answered 200 at least once, and STOW-RS bodies (the hooks' multipart)
    // reached the DICOM ingest, which refused them (409), not the media-type check.
    let seen = responses_by_route(&server, &admin);
    let count = |route: &str, status: u16| seen.get(&(route.to_string(), status)).copied().unwrap_or(0);
    for route in [
        "/v1/exams/{id}",
        "/v1/exams/{id}/reviews",
        "/v1/exams/{id}/sr.dcm",
        "/v1/exams/{id}/fhir",
        "/v1/exams/{id}/report.pdf",
        "/v1/images/{id}",
        "/v1/images/{id}/heatmap.png",
        "/v2/models/{name}",
        "/v2/models/{name}/versions/{version}",
        "/v1/grade",
    ] {
        assert!(count(route, 200) > 0, "no 200 from {route}: {seen:?}");
    }
    assert!(count("/v1/exams/{id}/reviews", 201) > 0, "no review was written: {seen:?}");
    assert!(count("/dicomweb/studies", 409) > 0, "no STOW-RS body reached the ingest: {seen:?}");
    assert_eq!(seen.keys().filter(|(_, status)| *status >= 500).count(), 0, "{seen:?}");
    println!("schemathesis: 3 roles in {:.0} s", started.elapsed().as_secs_f64());
}
