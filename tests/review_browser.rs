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

/// Issue 16, the review form: errors by field, autosaved partial drafts, keyboard-only
/// grading with "sign and next", and an expired session's submit that keeps the entries
/// (a second server with a 10 s idle timeout), in a real browser
/// (tests/browser/form_e2e.mjs). Screenshots under target/test-artifacts/review-form/.
#[test]
fn review_form_keeps_typed_work_grades_by_keyboard_and_shows_errors_by_field() {
    let driver = root().join("tests/browser/node_modules/playwright-core");
    assert!(driver.is_dir(), "playwright-core is not installed: run `npm ci --prefix tests/browser` (tests/run.sh does)");
    let server = Server::start(&[]);
    let expiring = Server::start(&["--session-idle-secs", "10"]);
    let (device, clinician) = (server.key("device"), server.key("clinician"));
    let (expiring_device, expiring_clinician) = (expiring.key("device"), expiring.key("clinician"));
    let exam = |s: &Server, key: &str, reference: &str| {
        let form = Exam::new()
            .metadata(&format!(r#"{{"external_exam_ref":"{reference}"}}"#))
            .image("right", "grade3_R.jpg")
            .image("left", "grade3_L.jpg");
        let exam = upload_exam(s, key, &form).json();
        assert_eq!(exam["flagged"], true, "{exam}");
        exam["id"].as_str().unwrap().to_string()
    };
    // Created in this order, both urgent: the worklist lists the first first.
    let (first, second) = (exam(&server, &device, "ACC-F1"), exam(&server, &device, "ACC-F2"));
    let expiring_exam = exam(&expiring, &expiring_device, "ACC-F3");

    let shots = root().join("target/test-artifacts/review-form");
    let _ = std::fs::remove_dir_all(&shots);
    let out = std::process::Command::new("node")
        .arg(root().join("tests/browser/form_e2e.mjs"))
        .env("DRS_URL", &server.url)
        .env("DRS_CLINICIAN_KEY", &clinician)
        .env("DRS_EXAMS", format!("{first},{second}"))
        .env("DRS_EXPIRY_URL", &expiring.url)
        .env("DRS_EXPIRY_CLINICIAN_KEY", &expiring_clinician)
        .env("DRS_EXPIRY_EXAM", &expiring_exam)
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
    for name in ["form-01-autosaved", "form-02-expired-restored", "form-03-keyboard", "form-04-field-errors", "form-05-amend"] {
        let png = std::fs::read(shots.join(format!("{name}.png"))).unwrap_or_else(|e| panic!("{name}.png: {e}"));
        assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000, "{name}.png is a real screenshot");
    }

    // What the keys and the restored form signed is the stored record.
    let reviews = |s: &Server, key: &str, id: &str| -> serde_json::Value {
        http().get(format!("{}/v1/exams/{id}/reviews", s.url)).bearer_auth(key).send().unwrap().json().unwrap()
    };
    let one = reviews(&server, &clinician, &first);
    let signed = &one["reviews"][0];
    assert_eq!(
        (signed["state"].as_str(), signed["version"].as_u64()),
        (Some("signed"), Some(1)),
        "the autosaved draft was signed in place: {one}"
    );
    assert_eq!((signed["eyes"]["right"]["grade"].as_u64(), signed["eyes"]["left"]["grade"].as_u64()), (Some(3), Some(2)), "{one}");
    assert!(signed["note"].as_str().unwrap().starts_with("partial note") && signed["outcome"] == "urgent_referral", "{one}");
    let two = reviews(&server, &clinician, &second);
    assert_eq!(
        (two["reviews"][0]["state"].as_str(), two["reviews"][0]["eyes"]["left"]["grade"].clone()),
        (Some("signed"), serde_json::Value::Null),
        "{two}"
    );
    let three = reviews(&expiring, &expiring_clinician, &expiring_exam);
    assert_eq!(three["reviews"][0]["note"].as_str(), Some("Typed before the session expired <b>kept</b>"), "{three}");
}
