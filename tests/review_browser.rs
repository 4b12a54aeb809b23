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

/// Issue 16, laterality and small things: a right-eye image whose optic disc is on the
/// left (a mirrored right-eye photograph, re-encoded as JPEG) is flagged on that image
/// only, every page carries the synthetic-model banner, an ungradable image's quality
/// reasons and measures are in words with their limits, and times share one format.
#[test]
fn laterality_warning_quality_words_model_banner_and_times_in_a_real_browser() {
    let driver = root().join("tests/browser/node_modules/playwright-core");
    assert!(driver.is_dir(), "playwright-core is not installed: run `npm ci --prefix tests/browser` (tests/run.sh does)");

    let server = Server::start(&[]);
    let (device, clinician, admin) = (server.key("device"), server.key("clinician"), server.key("admin"));
    let right = image::open(root().join("fixtures/grade0_R.jpg")).unwrap().fliph().to_rgb8();
    let mut mirrored = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut mirrored, 92).encode_image(&right).unwrap();
    let form = Exam::new()
        .metadata(r#"{"external_exam_ref":"ACC-LAT","patient_ref":"P-LAT"}"#)
        .part("right", Some("mirrored_grade0_R.jpg"), Some("image/jpeg"), mirrored)
        .image("left", "grade0_L.jpg");
    let exam = upload_exam(&server, &device, &form).json();
    let mirrored_id = exam["id"].as_str().unwrap().to_string();
    assert_eq!(exam["result"]["laterality_warnings"], 1, "{exam}");
    let checks: Vec<_> =
        exam["result"]["images"].as_array().unwrap().iter().map(|i| (i["laterality"].clone(), i["laterality_check"].clone())).collect();
    for (laterality, check) in &checks {
        let expected = if laterality == "right" { "contradicts" } else { "consistent" };
        assert_eq!(check["verdict"], expected, "{laterality}: {check}");
        assert_eq!(check["stated"], *laterality, "the stated eye is kept: {check}");
    }

    let form =
        Exam::new().metadata(r#"{"external_exam_ref":"ACC-QW"}"#).image("right", "grade0_R.jpg").image("left", "ungradable_blur_L.jpg");
    let exam = upload_exam(&server, &device, &form).json();
    let ungradable_id = exam["id"].as_str().unwrap().to_string();
    // A signed review, so the case page's history has a time to show.
    let signed = http()
        .post(format!("{}/v1/exams/{ungradable_id}/reviews", server.url))
        .bearer_auth(&clinician)
        .json(&serde_json::json!({"eyes": {"right": {"grade": 0, "dme": false}, "left": {"grade": null, "dme": null}}, "outcome": "ungradable", "sign": true, "base_version": 0}))
        .send()
        .unwrap();
    assert!(signed.status().is_success(), "{}", signed.text().unwrap_or_default());

    let shots = root().join("target/test-artifacts/review-browser-laterality");
    let _ = std::fs::remove_dir_all(&shots);
    let out = std::process::Command::new("node")
        .arg(root().join("tests/browser/laterality_e2e.mjs"))
        .env("DRS_URL", &server.url)
        .env("DRS_CLINICIAN_KEY", &clinician)
        .env("DRS_ADMIN_KEY", &admin)
        .env("DRS_MIRRORED_EXAM_ID", &mirrored_id)
        .env("DRS_UNGRADABLE_EXAM_ID", &ungradable_id)
        .env("DRS_SHOTS", &shots)
        .output()
        .expect("node runs (Node.js is needed for the browser test)");
    assert!(
        out.status.success(),
        "laterality browser flow failed (screenshots in {}):\n{}\n{}",
        shots.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["laterality-01-warning", "laterality-02-quality-words"] {
        let png = std::fs::read(shots.join(format!("{name}.png"))).unwrap_or_else(|e| panic!("{name}.png: {e}"));
        assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000, "{name}.png is a real screenshot");
    }
}
