//! Accessibility of the review pages: axe-core's WCAG 2.1 A/AA rules in a real headless
//! Chromium (tests/browser/a11y_e2e.mjs) against a real `drscreen serve`, on every page
//! and state a clinician or admin sees. Screenshots under target/test-artifacts/review-a11y/.

mod common;

use common::{Exam, Server, upload_exam};

#[test]
fn review_pages_have_no_serious_accessibility_violations() {
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

    let run = common::browser::run_script(
        "a11y_e2e.mjs",
        "review-a11y",
        &[
            ("DRS_URL", server.url.as_str()),
            ("DRS_CLINICIAN_KEY", clinician.as_str()),
            ("DRS_ADMIN_KEY", admin.as_str()),
            ("DRS_EXAM_ID", exam_id),
            ("DRS_EXTRA_PATHS", extra_paths.as_str()),
        ],
        &["a11y-sign-in", "a11y-worklist", "a11y-case", "a11y-agreement", "a11y-audit", "a11y-extra-0", "a11y-extra-1"],
    );
    eprintln!("{}", run.stdout);
    assert!(run.stdout.contains("a11y e2e: ok"), "{}", run.stdout);
}
