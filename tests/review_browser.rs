//! The review flow end to end in a real headless browser: Debian's Chromium driven by
//! playwright-core (tests/browser/review_e2e.mjs) against a real `drscreen serve`.
//! Screenshots are kept under target/test-artifacts/review-browser/.

mod common;

use common::{Exam, Server, http, root, upload_exam};

#[test]
fn clinician_signs_off_a_flagged_exam_in_a_real_browser() {
    let server = Server::start(&[]);
    let (device, clinician, admin) = (server.key("device"), server.key("clinician"), server.key("admin"));
    let form = Exam::new().metadata(r#"{"external_exam_ref":"ACC-E2E"}"#).image("right", "grade3_R.jpg").image("left", "grade3_L.jpg");
    let exam = upload_exam(&server, &device, &form).json();
    assert_eq!(exam["flagged"], true, "{exam}");
    let exam_id = exam["id"].as_str().unwrap();

    common::browser::run_script(
        "review_e2e.mjs",
        "review-browser",
        &[
            ("DRS_URL", server.url.as_str()),
            ("DRS_CLINICIAN_KEY", clinician.as_str()),
            ("DRS_ADMIN_KEY", admin.as_str()),
            ("DRS_EXAM_ID", exam_id),
        ],
        &["01-sign-in", "02-worklist", "03-case-heatmap", "04a-reason-required", "04-signed", "05-audit", "06-agreement"],
    );

    // The browser's sign-off is the stored record.
    let reviews: serde_json::Value =
        http().get(format!("{}/v1/exams/{exam_id}/reviews", server.url)).bearer_auth(&admin).send().unwrap().json().unwrap();
    let signed = &reviews["reviews"][0];
    assert_eq!((signed["state"].as_str(), signed["eyes"]["right"]["grade"].as_u64()), (Some("signed"), Some(3)), "{reviews}");
    // Signed less urgent than the grades imply, so with the clinician's stated reason.
    assert_eq!((signed["outcome"].as_str(), signed["outcome_by_rule"].as_str()), (Some("rescreen"), Some("urgent_referral")), "{reviews}");
    assert!(signed["outcome_reason"].as_str().is_some_and(|r| r.contains("declines referral")), "{reviews}");
}

/// Signs in through the login form with a client that does not follow redirects and
/// returns the `Cookie` header value of the session.
fn session_cookie(server: &Server, key: &str) -> String {
    let client = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let cookies = |r: &reqwest::blocking::Response| -> Vec<String> {
        r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string)).collect()
    };
    let form = client.get(format!("{}/review/login", server.url)).send().unwrap();
    let jar = cookies(&form).join("; ");
    let html = form.text().unwrap();
    let marker = r#"name="csrf" value=""#;
    let csrf = html[html.find(marker).expect("csrf field") + marker.len()..].split('"').next().unwrap().to_string();
    let signed = client
        .post(format!("{}/review/login", server.url))
        .header("cookie", jar)
        .form(&[("csrf", csrf.as_str()), ("key", key)])
        .send()
        .unwrap();
    assert_eq!(signed.status(), reqwest::StatusCode::SEE_OTHER);
    cookies(&signed).into_iter().find(|c| c.starts_with("drs_session=")).expect("session cookie")
}

#[test]
fn viewer_renditions_are_sized_cached_and_checked() {
    let server = Server::start(&[]);
    let (device, clinician) = (server.key("device"), server.key("clinician"));
    let form = Exam::new().metadata(r#"{"external_exam_ref":"ACC-SIZES"}"#).image("right", "grade3_R.jpg").image("left", "grade2_L.png");
    let exam = upload_exam(&server, &device, &form).json();
    let images: Vec<String> = exam["image_ids"].as_array().expect("image ids").iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let (right, left) = (&images[0], &images[1]);
    let cookie = session_cookie(&server, &clinician);
    let client = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let get = |path: &str| client.get(format!("{}{path}", server.url)).header("cookie", &cookie).send().unwrap();

    // Allowed widths, never above the original's (grade3_R.jpg is 1400 x 1400).
    for (w, want) in [(512, 512), (1024, 1024), (2048, 1400), (1400, 1400)] {
        let r = get(&format!("/review/images/{right}/view.jpg?w={w}"));
        assert_eq!(r.status(), reqwest::StatusCode::OK, "w={w}");
        assert_eq!(r.headers()["content-type"], "image/jpeg");
        assert_eq!(r.headers()["cache-control"], "private, max-age=600");
        let img = image::load_from_memory_with_format(&r.bytes().unwrap(), image::ImageFormat::Jpeg).expect("a JPEG");
        assert_eq!((img.width(), img.height()), (want, want), "w={w}");
    }
    // A PNG original is served as a JPEG rendition too, at its aspect ratio.
    let r = get(&format!("/review/images/{left}/view.jpg?w=512"));
    assert_eq!((r.status(), r.headers()["content-type"].to_str().unwrap()), (reqwest::StatusCode::OK, "image/jpeg"));
    let img = image::load_from_memory(&r.bytes().unwrap()).unwrap();
    assert_eq!(img.width(), 512);

    // A width outside the set: 400 with a JSON error; not a number: the styled page.
    for w in ["700", "0", "99999"] {
        let r = get(&format!("/review/images/{right}/view.jpg?w={w}"));
        assert_eq!(r.status(), reqwest::StatusCode::BAD_REQUEST, "w={w}");
        let body: serde_json::Value = r.json().unwrap();
        assert_eq!(body["code"], "invalid_width", "{body}");
    }
    let r = get(&format!("/review/images/{right}/view.jpg?w=big"));
    assert_eq!(r.status(), reqwest::StatusCode::BAD_REQUEST);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(r.text().unwrap().contains("Bad request"));
    // Unknown image, and no session.
    assert_eq!(get("/review/images/no-such-image/view.jpg?w=512").status(), reqwest::StatusCode::NOT_FOUND);
    assert_eq!(get("/review/images/no-such-image/heatmap-layer.png").status(), reqwest::StatusCode::NOT_FOUND);
    assert_eq!(get("/review/images/no-such-image/view").status(), reqwest::StatusCode::NOT_FOUND);
    let anonymous = client.get(format!("{}/review/images/{right}/view.jpg?w=512", server.url)).send().unwrap();
    assert_eq!(anonymous.status(), reqwest::StatusCode::SEE_OTHER, "renditions need a session");

    // The heatmap layer: transparent PNG in the original's geometry.
    let r = get(&format!("/review/images/{right}/heatmap-layer.png"));
    assert_eq!((r.status(), r.headers()["content-type"].to_str().unwrap()), (reqwest::StatusCode::OK, "image/png"));
    let layer = image::load_from_memory(&r.bytes().unwrap()).unwrap();
    assert_eq!((layer.width(), layer.height(), layer.color()), (512, 512, image::ColorType::Rgba8));
    let alpha: Vec<u8> = layer.to_rgba8().pixels().map(|p| p.0[3]).collect();
    assert!(alpha.iter().any(|a| *a > 40) && alpha.iter().any(|a| *a < 40), "alpha follows the activation");

    // The case page: heatmap layers without src until shown; the viewer window titled.
    let case = get(&format!("/review/exams/{}", exam["id"].as_str().unwrap())).text().unwrap();
    assert!(case.contains(&format!(r#"data-heat="/review/images/{right}/heatmap-layer.png""#)));
    assert!(!case.contains(&format!(r#"src="/review/images/{right}/heatmap"#)), "no heatmap src until shown");
    assert!(case.contains(&format!(r#"src="/review/images/{right}/view.jpg?w=1024""#)), "a display-sized rendition first");
    assert!(!case.contains(&format!(r#"src="/review/images/{right}/original""#)), "never the original up front");
    let viewer = get(&format!("/review/images/{right}/view")).text().unwrap();
    assert!(viewer.contains("<title>Right eye (OD) · exam ACC-SIZES · drscreen review</title>"), "{viewer}");
}

#[test]
fn image_viewer_zooms_filters_and_loads_heatmaps_on_demand_in_a_real_browser() {
    let server = Server::start(&[]);
    let (device, clinician, admin) = (server.key("device"), server.key("clinician"), server.key("admin"));
    let form = Exam::new().metadata(r#"{"external_exam_ref":"ACC-VIEW"}"#).image("right", "grade3_R.jpg").image("left", "grade3_L.jpg");
    let exam = upload_exam(&server, &device, &form).json();
    let exam_id = exam["id"].as_str().expect("exam id");

    let run = common::browser::run_script(
        "viewer_e2e.mjs",
        "review-viewer",
        &[
            ("DRS_URL", server.url.as_str()),
            ("DRS_CLINICIAN_KEY", clinician.as_str()),
            ("DRS_ADMIN_KEY", admin.as_str()),
            ("DRS_EXAM_ID", exam_id),
            ("DRS_EXAM_REF", "ACC-VIEW"),
        ],
        &["viewer-01-layout", "viewer-02-zoomed", "viewer-03-green", "viewer-04-heatmap"],
    );
    for name in ["viewer-01-layout", "viewer-02-zoomed", "viewer-03-green", "viewer-04-heatmap"] {
        let png = std::fs::read(run.shots.join(format!("{name}.png"))).unwrap_or_else(|e| panic!("{name}.png: {e}"));
        let img = image::load_from_memory(&png).unwrap_or_else(|e| panic!("{name}.png decodes: {e}"));
        assert_eq!((img.width(), img.height()), (1440, 900), "{name}.png is the 1440x900 viewport");
    }
}

/// Issue 16, laterality and small things: a right-eye image whose optic disc is on the
/// left (a mirrored right-eye photograph, re-encoded as JPEG) is flagged on that image
/// only, every page carries the synthetic-model banner, an ungradable image's quality
/// reasons and measures are in words with their limits, and times share one format.
#[test]
fn laterality_warning_quality_words_model_banner_and_times_in_a_real_browser() {
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
    // Two grade-0 eyes would be a rescreen; the contradiction puts the exam on the worklist.
    assert_eq!((exam["outcome"].as_str(), exam["flagged"].as_bool()), (Some("rescreen"), Some(true)), "{exam}");
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

    common::browser::run_script(
        "laterality_e2e.mjs",
        "review-browser-laterality",
        &[
            ("DRS_URL", server.url.as_str()),
            ("DRS_CLINICIAN_KEY", clinician.as_str()),
            ("DRS_ADMIN_KEY", admin.as_str()),
            ("DRS_MIRRORED_EXAM_ID", mirrored_id.as_str()),
            ("DRS_UNGRADABLE_EXAM_ID", ungradable_id.as_str()),
        ],
        &["laterality-01-warning", "laterality-02-quality-words"],
    );
}

/// Patient context and "who and what" (issue 16) in the browser: tests/browser/context_e2e.mjs.
#[test]
fn clinician_sees_names_signed_results_prior_exams_and_a_comparison_in_a_real_browser() {
    let server = Server::start(&[]);
    let device = server.key("device");
    let name = "Dr Kari Nordmann";
    let out = server.cli().args(["keys", "create", "--role", "clinician", "--name", name]).output().unwrap();
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

    common::browser::run_script(
        "context_e2e.mjs",
        "context-browser",
        &[
            ("DRS_URL", server.url.as_str()),
            ("DRS_CLINICIAN_KEY", clinician.as_str()),
            ("DRS_CLINICIAN_NAME", name),
            ("DRS_EXAM_OLDER", older.as_str()),
            ("DRS_EXAM_NEWER", newer.as_str()),
            ("DRS_EXAM_OTHER", other.as_str()),
            ("DRS_PATIENT", "PID-CTX-E2E"),
        ],
        &["context-01-worklist", "context-02-prior-exams", "context-03-compare"],
    );
}

/// Issue 16, the review form: errors by field, autosaved partial drafts, keyboard-only
/// grading with "sign and next", and an expired session's submit that keeps the entries
/// (a second server with a 10 s idle timeout), in a real browser
/// (tests/browser/form_e2e.mjs). Screenshots under target/test-artifacts/review-form/.
#[test]
fn review_form_keeps_typed_work_grades_by_keyboard_and_shows_errors_by_field() {
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

    common::browser::run_script(
        "form_e2e.mjs",
        "review-form",
        &[
            ("DRS_URL", server.url.as_str()),
            ("DRS_CLINICIAN_KEY", clinician.as_str()),
            ("DRS_EXAMS", format!("{first},{second}").as_str()),
            ("DRS_EXPIRY_URL", expiring.url.as_str()),
            ("DRS_EXPIRY_CLINICIAN_KEY", expiring_clinician.as_str()),
            ("DRS_EXPIRY_EXAM", expiring_exam.as_str()),
        ],
        &["form-01-autosaved", "form-02-expired-restored", "form-03-keyboard", "form-04-field-errors", "form-05-amend"],
    );

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
