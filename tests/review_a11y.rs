//! Accessibility of the review pages: axe-core's WCAG 2.1 A/AA rules in a real headless
//! Chromium (tests/browser/a11y_e2e.mjs) against a real `drscreen serve`, on every page
//! and state a clinician or admin sees. Screenshots under target/test-artifacts/review-a11y/.

mod common;

use common::{Exam, Server, root, upload_exam};

#[test]
fn review_pages_have_no_serious_accessibility_violations() {
    let axe = root().join("tests/browser/node_modules/axe-core/axe.min.js");
    assert!(axe.is_file(), "axe-core is not installed: run `npm ci --prefix tests/browser` (tests/run.sh does)");

    let server = Server::start(&[]);
    let (device, clinician, admin) = (server.key("device"), server.key("clinician"), server.key("admin"));
    let older = Exam::new()
        .metadata(r#"{"external_exam_ref":"ACC-A11Y-0","patient_ref":"P-A11Y"}"#)
        .image("right", "grade1_R.jpg")
        .image("left", "grade0_L.jpg");
    let older = upload_exam(&server, &device, &older).json();
    let form = Exam::new()
        .metadata(r#"{"external_exam_ref":"ACC-A11Y","patient_ref":"P-A11Y"}"#)
        .image("right", "grade3_R.jpg")
        .image("left", "ungradable_blur_L.jpg");
    let exam = upload_exam(&server, &device, &form).json();
    let exam_id = exam["id"].as_str().unwrap();
    // Pages reached from the case: the comparison with the patient's earlier exam and the
    // single-image viewer window.
    let extra_paths = format!(
        "/review/compare?a={}&b={exam_id}&eye=right /review/images/{}/view",
        older["id"].as_str().unwrap(),
        exam["image_ids"][0].as_str().unwrap()
    );

    let shots = root().join("target/test-artifacts/review-a11y");
    let _ = std::fs::remove_dir_all(&shots);
    let out = std::process::Command::new("node")
        .arg(root().join("tests/browser/a11y_e2e.mjs"))
        .env("DRS_URL", &server.url)
        .env("DRS_CLINICIAN_KEY", &clinician)
        .env("DRS_ADMIN_KEY", &admin)
        .env("DRS_EXAM_ID", exam_id)
        .env("DRS_SHOTS", &shots)
        .env("DRS_EXTRA_PATHS", &extra_paths)
        .output()
        .expect("node runs (Node.js is needed for the browser test)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "axe-core found problems (screenshots in {}):\n{stdout}\n{}",
        shots.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("a11y e2e: ok"), "{stdout}");
    for name in ["sign-in", "worklist", "case", "agreement", "audit", "extra-0", "extra-1"] {
        let png = std::fs::read(shots.join(format!("a11y-{name}.png"))).unwrap_or_else(|e| panic!("a11y-{name}.png: {e}"));
        assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000, "a11y-{name}.png is a real screenshot");
    }
}
