//! The review flow end to end in a real headless browser: Debian's Chromium driven by
//! playwright-core (tests/browser/review_e2e.mjs) against a real `drscreen serve`.
//! Screenshots are kept under target/test-artifacts/review-browser/.

mod common;

use common::{Exam, Server, http, root, upload_exam};

#[test]
fn clinician_signs_off_a_flagged_exam_in_a_real_browser() {
    let driver = root().join("tests/browser/node_modules/playwright-core");
    assert!(driver.is_dir(), "playwright-core is not installed: run `npm ci --prefix tests/browser` (tests/run.sh does)");
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists() || std::env::var_os("CHROMIUM").is_some(),
        "Chromium is missing: apt-get install chromium (.ci/run does)"
    );

    let server = Server::start(&[]);
    let (device, clinician, admin) = (server.key("device"), server.key("clinician"), server.key("admin"));
    let form = Exam::new().metadata(r#"{"external_exam_ref":"ACC-E2E"}"#).image("right", "grade3_R.jpg").image("left", "grade3_L.jpg");
    let exam = upload_exam(&server, &device, &form).json();
    assert_eq!(exam["flagged"], true, "{exam}");
    let exam_id = exam["id"].as_str().unwrap();

    let shots = root().join("target/test-artifacts/review-browser");
    let _ = std::fs::remove_dir_all(&shots);
    let out = std::process::Command::new("node")
        .arg(root().join("tests/browser/review_e2e.mjs"))
        .env("DRS_URL", &server.url)
        .env("DRS_CLINICIAN_KEY", &clinician)
        .env("DRS_ADMIN_KEY", &admin)
        .env("DRS_EXAM_ID", exam_id)
        .env("DRS_SHOTS", &shots)
        .output()
        .expect("node runs (Node.js is needed for the browser test)");
    assert!(
        out.status.success(),
        "browser flow failed (screenshots in {}):\n{}\n{}",
        shots.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["01-sign-in", "02-worklist", "03-case-heatmap", "04-signed", "05-audit", "06-agreement"] {
        let png = std::fs::read(shots.join(format!("{name}.png"))).unwrap_or_else(|e| panic!("{name}.png: {e}"));
        assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000, "{name}.png is a real screenshot");
    }

    // The browser's sign-off is the stored record.
    let reviews: serde_json::Value =
        http().get(format!("{}/v1/exams/{exam_id}/reviews", server.url)).bearer_auth(&admin).send().unwrap().json().unwrap();
    let signed = &reviews["reviews"][0];
    assert_eq!((signed["state"].as_str(), signed["eyes"]["right"]["grade"].as_u64()), (Some("signed"), Some(3)), "{reviews}");
}

/// Patient context and "who and what" (issue 16) in the browser: tests/browser/context_e2e.mjs.
#[test]
fn clinician_sees_names_signed_results_prior_exams_and_a_comparison_in_a_real_browser() {
    let driver = root().join("tests/browser/node_modules/playwright-core");
    assert!(driver.is_dir(), "playwright-core is not installed: run `npm ci --prefix tests/browser` (tests/run.sh does)");

    let server = Server::start(&[]);
    let device = server.key("device");
    let name = "Dr Kari Nordmann";
    let out = std::process::Command::new(common::bin())
        .arg("--data-dir")
        .arg(&server.data_dir)
        .args(["keys", "create", "--role", "clinician", "--name", name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let clinician = String::from_utf8_lossy(&out.stdout).lines().last().unwrap().trim().to_string();
    let upload = |ext: &str, patient: &str| {
        let form = Exam::new()
            .metadata(&format!(r#"{{"external_exam_ref":"{ext}","patient_ref":"{patient}"}}"#))
            .image("right", "grade3_R.jpg")
            .image("left", "grade3_L.jpg");
        let exam = upload_exam(&server, &device, &form).json();
        assert_eq!(exam["flagged"], true, "{exam}");
        exam["id"].as_str().unwrap().to_string()
    };
    let older = upload("ACC-CTX-OLD", "PID-CTX-E2E");
    let newer = upload("ACC-CTX-NEW", "PID-CTX-E2E");
    let other = upload("ACC-CTX-OTHER", "PID-CTX-SOMEONE-ELSE");
    // The older exam is signed (moderate DR both eyes: referral) by the named clinician.
    let body = serde_json::json!({"eyes": {"right": {"grade": 2, "dme": false}, "left": {"grade": 2, "dme": false}},
        "outcome": "referral", "sign": true});
    let r = http().post(format!("{}/v1/exams/{older}/reviews", server.url)).bearer_auth(&clinician).json(&body).send().unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);

    let shots = root().join("target/test-artifacts/context-browser");
    let _ = std::fs::remove_dir_all(&shots);
    let out = std::process::Command::new("node")
        .arg(root().join("tests/browser/context_e2e.mjs"))
        .env("DRS_URL", &server.url)
        .env("DRS_CLINICIAN_KEY", &clinician)
        .env("DRS_CLINICIAN_NAME", name)
        .env("DRS_EXAM_OLDER", &older)
        .env("DRS_EXAM_NEWER", &newer)
        .env("DRS_EXAM_OTHER", &other)
        .env("DRS_PATIENT", "PID-CTX-E2E")
        .env("DRS_SHOTS", &shots)
        .output()
        .expect("node runs (Node.js is needed for the browser test)");
    assert!(
        out.status.success(),
        "browser flow failed (screenshots in {}):\n{}\n{}",
        shots.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["context-01-worklist", "context-02-prior-exams", "context-03-compare"] {
        let png = std::fs::read(shots.join(format!("{name}.png"))).unwrap_or_else(|e| panic!("{name}.png: {e}"));
        assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000, "{name}.png is a real screenshot");
    }
}
