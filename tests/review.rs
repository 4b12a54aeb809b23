//! Clinician review against a real `drscreen serve`: the review rules over the JSON API
//! (roles, drafts, sign-off locking, amendments as new versions, conflicts), the audit
//! log and agreement monitor, and the review pages' sessions and CSRF protection.

mod common;

use common::{Exam, Server, http, upload_exam};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Submits an exam as a device; returns it.
fn submit_exam(server: &Server, device_key: &str, parts: &[(&str, &str)]) -> Value {
    let exam = parts
        .iter()
        .fold(Exam::new().metadata(r#"{"external_exam_ref":"ACC-R1","patient_ref":"PID-R1"}"#), |e, (lat, name)| e.image(lat, name));
    let r = upload_exam(server, device_key, &exam);
    assert_eq!(r.status, StatusCode::CREATED);
    r.json()
}

fn post_review(server: &Server, key: &str, exam: &str, body: Value) -> (StatusCode, Value) {
    let r = http().post(format!("{}/v1/exams/{exam}/reviews", server.url)).bearer_auth(key).json(&body).send().unwrap();
    let status = r.status();
    (status, r.json().unwrap_or(Value::Null))
}

fn both_eyes(right: u8, left: u8) -> Value {
    json!({"right": {"grade": right, "dme": false}, "left": {"grade": left, "dme": false}})
}

#[test]
fn review_rules_over_the_json_api() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let (device, clinician, other_clinician, admin) =
        (server.key("device"), server.key("clinician"), server.key("clinician"), server.key("admin"));
    let exam = submit_exam(&server, &device, &[("right", "grade3_R.jpg"), ("left", "grade2_L.png")]);
    let id = exam["id"].as_str().unwrap().to_string();
    assert_eq!(exam["flagged"], true, "{exam}");

    // Roles: devices and admins cannot review.
    for key in [&device, &admin] {
        let (s, body) = post_review(&server, key, &id, json!({"eyes": both_eyes(2, 2), "outcome": "referral"}));
        assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    }
    // Unknown exam.
    let (s, _) = post_review(&server, &clinician, "nope", json!({"eyes": both_eyes(2, 2), "outcome": "referral"}));
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Invalid input: 422 with a machine-readable code, nothing written.
    let (s, body) = post_review(&server, &clinician, &id, json!({"eyes": both_eyes(7, 2), "outcome": "referral"}));
    assert_eq!((s, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_grade")));
    let (s, body) =
        post_review(&server, &clinician, &id, json!({"eyes": {"right": {"grade": 2, "dme": false}}, "outcome": "referral", "sign": true}));
    assert_eq!((s, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("incomplete_review")));
    let (s, _) = post_review(&server, &clinician, &id, json!({"eyes": both_eyes(2, 2), "outcome": "referral", "colour": "blue"}));
    assert!(s.is_client_error(), "unknown fields are refused, got {s}");

    // A draft, then the same version signed.
    let (s, draft) = post_review(
        &server,
        &other_clinician,
        &id,
        json!({"eyes": {"right": {"grade": 3, "dme": false}}, "outcome": "urgent_referral", "note": "first look"}),
    );
    assert_eq!(s, StatusCode::CREATED, "{draft}");
    assert_eq!((draft["version"].as_u64(), draft["state"].as_str()), (Some(1), Some("draft")));
    let (s, signed) = post_review(
        &server,
        &clinician,
        &id,
        json!({"eyes": both_eyes(3, 2), "outcome": "urgent_referral", "note": "IRMA superotemporal", "sign": true, "base_version": 1}),
    );
    assert_eq!(s, StatusCode::CREATED, "{signed}");
    assert_eq!((signed["version"].as_u64(), signed["state"].as_str()), (Some(1), Some("signed")));
    assert_eq!(signed["outcome_by_rule"], "urgent_referral");
    let reviewed: Value = http().get(format!("{}/v1/exams/{id}", server.url)).bearer_auth(&clinician).send().unwrap().json().unwrap();
    assert_eq!(reviewed["reviewed"], true);

    // Locked: a change needs an amendment reason, and a stale base version is a conflict.
    let (s, body) = post_review(&server, &clinician, &id, json!({"eyes": both_eyes(4, 2), "outcome": "urgent_referral", "sign": true}));
    assert_eq!((s, body["code"].as_str()), (StatusCode::CONFLICT, Some("amendment_reason_required")));
    let (s, body) = post_review(
        &server,
        &clinician,
        &id,
        json!({"eyes": both_eyes(4, 2), "outcome": "urgent_referral", "sign": true, "amendment_reason": "NVE seen on review", "base_version": 0}),
    );
    assert_eq!((s, body["code"].as_str()), (StatusCode::CONFLICT, Some("review_conflict")));
    let (s, amended) = post_review(
        &server,
        &clinician,
        &id,
        json!({"eyes": both_eyes(4, 2), "outcome": "urgent_referral", "sign": true, "amendment_reason": "NVE seen on review", "base_version": 1}),
    );
    assert_eq!(s, StatusCode::CREATED, "{amended}");
    assert_eq!((amended["version"].as_u64(), amended["amends"].as_u64()), (Some(2), Some(1)));

    // Both versions kept; the signed one unchanged.
    let history: Value = http().get(format!("{}/v1/exams/{id}/reviews", server.url)).bearer_auth(&admin).send().unwrap().json().unwrap();
    let versions = history["reviews"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0], signed, "the signed version must not change");
    assert_eq!(versions[1]["eyes"]["right"]["grade"], 4);
    assert_eq!(
        http().get(format!("{}/v1/exams/{id}/reviews", server.url)).bearer_auth(&device).send().unwrap().status(),
        StatusCode::FORBIDDEN
    );

    // Audit: admin only; every clinical action is there.
    assert_eq!(http().get(format!("{}/v1/audit", server.url)).bearer_auth(&clinician).send().unwrap().status(), StatusCode::FORBIDDEN);
    let audit: Value = http().get(format!("{}/v1/audit?object={id}", server.url)).bearer_auth(&admin).send().unwrap().json().unwrap();
    let actions: Vec<&str> = audit["events"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for wanted in ["exam.create", "exam.view", "review.save", "review.sign", "review.amend"] {
        assert!(actions.contains(&wanted), "{wanted} missing from {actions:?}");
    }
    let family: Value = http().get(format!("{}/v1/audit?action=review", server.url)).bearer_auth(&admin).send().unwrap().json().unwrap();
    assert!(family["events"].as_array().unwrap().iter().all(|e| e["action"].as_str().unwrap().starts_with("review.")));

    // Agreement: one signed review (its latest version), two eyes.
    let agreement: Value = http().get(format!("{}/v1/agreement", server.url)).bearer_auth(&clinician).send().unwrap().json().unwrap();
    assert_eq!(agreement["reviews"], 1, "{agreement}");
    assert_eq!(agreement["overall"]["eyes"], 2, "{agreement}");
    let total: u64 =
        agreement["overall"]["confusion"].as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap()).filter_map(Value::as_u64).sum();
    assert_eq!(total, agreement["overall"]["graded_by_both"].as_u64().unwrap());
    let clinician_row_4: u64 = agreement["overall"]["confusion"][4].as_array().unwrap().iter().filter_map(Value::as_u64).sum();
    assert_eq!(clinician_row_4, 1, "the amended right eye (grade 4) is the reference: {agreement}");

    // Signed rows are locked in the database itself, not only by the API.
    let (data_dir, target) = (server.data_dir.clone(), server.target.clone());
    assert!(server.stop().success());
    let err = target.try_sql(&data_dir, "UPDATE reviews SET body_json = '{}' WHERE version = 1").unwrap_err();
    assert!(err.contains("locked"), "{err}");
    assert!(target.try_sql(&data_dir, "DELETE FROM reviews").unwrap_err().contains("never deleted"));
}

/// A browser-like client without a cookie jar: cookies are carried by hand so the test
/// sees exactly what the server sets.
struct Browser {
    base: String,
    client: reqwest::blocking::Client,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn new(base: &str) -> Self {
        let client = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { base: base.into(), client, cookies: vec![] }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn absorb(&mut self, r: &reqwest::blocking::Response) {
        for v in r.headers().get_all("set-cookie") {
            let text = v.to_str().unwrap();
            let (pair, _) = text.split_once(';').unwrap_or((text, ""));
            let (k, val) = pair.split_once('=').unwrap();
            self.cookies.retain(|(name, _)| name != k);
            if !val.is_empty() {
                self.cookies.push((k.into(), val.into()));
            }
        }
    }

    fn get(&mut self, path: &str) -> (StatusCode, String, reqwest::header::HeaderMap) {
        let r = self.client.get(format!("{}{path}", self.base)).header("cookie", self.cookie_header()).send().unwrap();
        self.absorb(&r);
        let (s, h) = (r.status(), r.headers().clone());
        (s, r.text().unwrap(), h)
    }

    fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (StatusCode, String, reqwest::header::HeaderMap) {
        let r = self.client.post(format!("{}{path}", self.base)).header("cookie", self.cookie_header()).form(form).send().unwrap();
        self.absorb(&r);
        let (s, h) = (r.status(), r.headers().clone());
        (s, r.text().unwrap(), h)
    }
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html.find(&marker).unwrap_or_else(|| panic!("no hidden {name} in page")) + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

fn location(h: &reqwest::header::HeaderMap) -> String {
    h.get("location").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

fn sign_in(b: &mut Browser, key: &str) -> (StatusCode, reqwest::header::HeaderMap) {
    let (s, page, _) = b.get("/review/login");
    assert_eq!(s, StatusCode::OK);
    let token = hidden(&page, "csrf");
    let (s, _, h) = b.post("/review/login", &[("csrf", &token), ("key", key)]);
    (s, h)
}

#[test]
fn review_pages_sessions_csrf_worklist_and_timeouts() {
    let server = Server::start(&["--qa-rescreen-share", "1", "--session-idle-secs", "3"]);
    let (device, clinician, admin) = (server.key("device"), server.key("clinician"), server.key("admin"));
    let flagged = submit_exam(&server, &device, &[("right", "grade3_R.jpg"), ("left", "grade3_L.jpg")]);
    let flagged_id = flagged["id"].as_str().unwrap().to_string();
    // retina_skimage.jpg is a left eye (disc left of centre); sent as the right eye its
    // laterality check would flag it for review rather than leave it to the QA sample.
    let rescreen = submit_exam(&server, &device, &[("left", "retina_skimage.jpg")]);
    assert_eq!(rescreen["outcome"], "rescreen", "{rescreen}");
    let rescreen_id = rescreen["id"].as_str().unwrap().to_string();

    let mut b = Browser::new(&server.url);
    // No session: every page sends the user to sign in.
    let (s, _, h) = b.get("/review");
    assert_eq!((s, location(&h).as_str()), (StatusCode::SEE_OTHER, "/review/login"));
    let (s, _, h) = b.get(&format!("/review/exams/{flagged_id}"));
    assert_eq!((s, location(&h).as_str()), (StatusCode::SEE_OTHER, "/review/login"));

    // Sign-in: forged token refused; device key refused; clinician accepted.
    let (s, _, _) = b.post("/review/login", &[("csrf", "forged"), ("key", &clinician)]);
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = sign_in(&mut b, &device);
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, h) = sign_in(&mut b, &clinician);
    assert_eq!((s, location(&h).as_str()), (StatusCode::SEE_OTHER, "/review"));
    let set_cookie: Vec<&str> = h.get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    let session_cookie = set_cookie.iter().find(|c| c.starts_with("drs_session=")).expect("session cookie set");
    assert!(session_cookie.contains("HttpOnly") && session_cookie.contains("SameSite=Strict"), "{session_cookie}");

    // Worklist: the flagged exam first, the rescreen exam as a QA sample (share 1).
    let (s, page, h) = b.get("/review");
    assert_eq!(s, StatusCode::OK);
    assert!(h.get("content-security-policy").is_some() && h.get("cache-control").unwrap() == "no-store");
    let (at_flagged, at_rescreen) =
        (page.find(&flagged_id).expect("flagged exam listed"), page.find(&rescreen_id).expect("QA sample listed"));
    assert!(at_flagged < at_rescreen, "most urgent first");
    assert!(page.contains(r#"<span class="qa">QA</span>"#));
    let (_, filtered, _) = b.get("/review?outcome=rescreen");
    assert!(filtered.contains(&rescreen_id) && !filtered.contains(&flagged_id));
    let (s, _, _) = b.get("/review?from=yesterday");
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Case view: images and heatmaps load under the session; the form carries the token.
    let (s, case, _) = b.get(&format!("/review/exams/{flagged_id}"));
    assert_eq!(s, StatusCode::OK);
    assert!(case.contains("Right eye (OD)") && case.contains("Left eye (OS)") && case.contains("Rule applied"));
    let heat = case.split("/review/images/").nth(1).unwrap().split('/').next().unwrap().to_string();
    let r = b.client.get(format!("{}/review/images/{heat}/heatmap.png", server.url)).header("cookie", b.cookie_header()).send().unwrap();
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(image::load_from_memory(&r.bytes().unwrap()).is_ok());
    let anonymous = b.client.get(format!("{}/review/images/{heat}/heatmap.png", server.url)).send().unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER, "images need a session");
    let csrf = hidden(&case, "csrf");

    // A form without the right token changes nothing.
    let form = [
        ("right_grade", "3"),
        ("right_dme", "no"),
        ("left_grade", "2"),
        ("left_dme", "no"),
        ("outcome", "urgent_referral"),
        ("action", "sign"),
    ];
    let (s, body, _) = b.post(&format!("/review/exams/{flagged_id}/review"), &[&form[..], &[("csrf", "wrong")]].concat());
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(body.contains("csrf_rejected"));
    let none: Value =
        http().get(format!("{}/v1/exams/{flagged_id}/reviews", server.url)).bearer_auth(&admin).send().unwrap().json().unwrap();
    assert_eq!(none["reviews"].as_array().unwrap().len(), 0);

    // With it: signed, and the page says so.
    let (s, _, h) =
        b.post(&format!("/review/exams/{flagged_id}/review"), &[&form[..], &[("csrf", csrf.as_str()), ("base_version", "0")]].concat());
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (_, after, _) = b.get(&location(&h));
    assert!(after.contains("Review version 1 signed off"), "{after}");
    assert!(after.contains("Amend the signed review"));
    // A clinician may not open the audit log page.
    let (s, _, _) = b.get("/review/audit");
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Idle timeout: the session ends after 3 s without a request.
    std::thread::sleep(std::time::Duration::from_secs(5));
    let (s, _, h) = b.get("/review");
    assert_eq!((s, location(&h).as_str()), (StatusCode::SEE_OTHER, "/review/login"));

    // Admin: audit page shows the clinical actions; revoking the key ends the session.
    let mut a = Browser::new(&server.url);
    assert_eq!(sign_in(&mut a, &admin).0, StatusCode::SEE_OTHER);
    let (s, audit, _) = a.get("/review/audit");
    assert_eq!(s, StatusCode::OK);
    for wanted in ["session.login", "session.login_failed", "exam.view", "review.sign", "session.expired"] {
        assert!(audit.contains(wanted), "{wanted} missing from the audit page");
    }
    let admin_id = admin.split('_').nth(1).unwrap();
    let out = server.cli().args(["keys", "revoke", admin_id]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (s, _, _) = a.get("/review/audit");
    assert_eq!(s, StatusCode::SEE_OTHER, "a revoked key's session ends");
}

/// Issue 16: a sign-off whose outcome is less urgent than the clinician's own grades
/// imply (the model's outcome table applied to them) needs a stated reason, which is
/// stored with the version, returned, and audited with the sign-off.
#[test]
fn signing_a_less_urgent_outcome_than_the_grades_imply_needs_a_reason_over_the_json_api() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let (device, clinician, admin) = (server.key("device"), server.key("clinician"), server.key("admin"));
    let exam = submit_exam(&server, &device, &[("right", "grade3_R.jpg"), ("left", "grade2_L.png")]);
    let id = exam["id"].as_str().unwrap().to_string();
    let grade4_dme = json!({"right": {"grade": 4, "dme": true}, "left": {"grade": 2, "dme": false}});

    // The ophthalmologist's case: right eye grade 4 with macular oedema, signed as rescreen.
    let (s, body) = post_review(&server, &clinician, &id, json!({"eyes": grade4_dme, "outcome": "rescreen", "sign": true}));
    assert_eq!((s, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("outcome_reason_required")), "{body}");
    assert!(body["error"].as_str().unwrap().contains("imply urgent referral"), "{body}");
    let (s, body) =
        post_review(&server, &clinician, &id, json!({"eyes": grade4_dme, "outcome": "rescreen", "sign": true, "outcome_reason": " \n "}));
    assert_eq!((s, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("outcome_reason_required")), "a blank reason: {body}");
    let (s, body) = post_review(
        &server,
        &clinician,
        &id,
        json!({"eyes": grade4_dme, "outcome": "rescreen", "sign": true, "outcome_reason": "x".repeat(4001)}),
    );
    assert_eq!((s, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("note_too_long")), "{body}");
    let none: Value = http().get(format!("{}/v1/exams/{id}/reviews", server.url)).bearer_auth(&admin).send().unwrap().json().unwrap();
    assert_eq!(none["reviews"].as_array().unwrap().len(), 0, "nothing written: {none}");

    // A draft may be saved without it.
    let (s, draft) = post_review(&server, &clinician, &id, json!({"eyes": grade4_dme, "outcome": "rescreen"}));
    assert_eq!((s, draft["state"].as_str()), (StatusCode::CREATED, Some("draft")), "{draft}");
    assert_eq!(draft["outcome_reason"], Value::Null);

    // With the reason: signed, stored, returned and audited.
    let reason = "Grade 4 is regressed, laser-treated PDR under the hospital eye service; DME chronic and stable.";
    let (s, signed) = post_review(
        &server,
        &clinician,
        &id,
        json!({"eyes": grade4_dme, "outcome": "rescreen", "sign": true, "outcome_reason": reason, "base_version": 1}),
    );
    assert_eq!(s, StatusCode::CREATED, "{signed}");
    assert_eq!((signed["state"].as_str(), signed["outcome"].as_str()), (Some("signed"), Some("rescreen")));
    assert_eq!((signed["outcome_by_rule"].as_str(), signed["outcome_reason"].as_str()), (Some("urgent_referral"), Some(reason)));
    let history: Value = http().get(format!("{}/v1/exams/{id}/reviews", server.url)).bearer_auth(&admin).send().unwrap().json().unwrap();
    assert_eq!(history["reviews"][0], signed);
    let audit: Value =
        http().get(format!("{}/v1/audit?object={id}&action=review.sign", server.url)).bearer_auth(&admin).send().unwrap().json().unwrap();
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{audit}");
    let detail = events[0]["detail"].as_str().unwrap();
    assert!(detail.contains("outcome rescreen where the grades imply urgent_referral") && detail.contains(reason), "{detail}");

    // An amendment that signs is held to the same rule; an equal or more urgent outcome needs none.
    let (s, body) = post_review(
        &server,
        &clinician,
        &id,
        json!({"eyes": grade4_dme, "outcome": "referral", "sign": true, "amendment_reason": "second opinion", "base_version": 1}),
    );
    assert_eq!((s, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("outcome_reason_required")), "{body}");
    let (s, amended) = post_review(
        &server,
        &clinician,
        &id,
        json!({"eyes": grade4_dme, "outcome": "urgent_referral", "sign": true, "amendment_reason": "second opinion", "base_version": 1}),
    );
    assert_eq!(s, StatusCode::CREATED, "{amended}");
    assert_eq!((amended["version"].as_u64(), amended["outcome_reason"].clone()), (Some(2), Value::Null));
    let other = submit_exam(&server, &device, &[("right", "grade3_R.jpg"), ("left", "grade2_L.png")]);
    let (s, more_urgent) = post_review(
        &server,
        &clinician,
        other["id"].as_str().unwrap(),
        json!({"eyes": both_eyes(0, 0), "outcome": "referral", "sign": true}),
    );
    assert_eq!((s, more_urgent["state"].as_str()), (StatusCode::CREATED, Some("signed")), "a more urgent outcome needs no reason");

    // The reason is in its own column, added by a migration; the signed row is locked.
    let (data_dir, target) = (server.data_dir.clone(), server.target.clone());
    assert!(server.stop().success());
    let stored = target.query(&data_dir, &format!("SELECT outcome_reason FROM reviews WHERE exam_id = '{id}' AND version = 1"));
    assert_eq!(stored, [[reason.to_string()]]);
    let err =
        target.try_sql(&data_dir, &format!("UPDATE reviews SET outcome_reason = NULL WHERE exam_id = '{id}' AND version = 1")).unwrap_err();
    assert!(err.contains("locked"), "{err}");
}

/// The review form shows the outcome the clinician's grades imply, refuses a less urgent
/// sign-off without a reason in words (keeping what was typed), and signs it with one.
#[test]
fn review_form_shows_the_implied_outcome_and_asks_for_a_reason() {
    let server = Server::start(&[]);
    let (device, clinician) = (server.key("device"), server.key("clinician"));
    let exam = submit_exam(&server, &device, &[("right", "grade3_R.jpg"), ("left", "grade2_L.png")]);
    let id = exam["id"].as_str().unwrap().to_string();
    let mut b = Browser::new(&server.url);
    assert_eq!(sign_in(&mut b, &clinician).0, StatusCode::SEE_OTHER);
    let (s, case, _) = b.get(&format!("/review/exams/{id}"));
    assert_eq!(s, StatusCode::OK);
    assert!(case.contains("Outcome implied by your grades: <b id=\"implied-outcome\">— grade every eye —</b>"), "{case}");
    assert!(case.contains(r#"<textarea name="outcome_reason" id="outcome_reason""#), "{case}");
    let csrf = hidden(&case, "csrf");
    let form = [
        ("csrf", csrf.as_str()),
        ("base_version", "0"),
        ("right_grade", "4"),
        ("right_dme", "yes"),
        ("left_grade", "2"),
        ("left_dme", "no"),
        ("outcome", "rescreen"),
        ("note", "typed note"),
        ("action", "sign"),
    ];
    let path = format!("/review/exams/{id}/review");

    // Refused, in words; the form keeps what was typed and shows the implied outcome.
    let (s, page, _) = b.post(&path, &form);
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(page.contains("Your grades imply urgent referral") && page.contains("needs a stated reason"), "{page}");
    assert!(page.contains(r#"<b id="implied-outcome">Urgent referral</b>"#), "{page}");
    assert!(page.contains(r#"<option value="rescreen" selected>"#) && page.contains(">typed note</textarea>"), "{page}");
    // A reason typed into a form refused for another reason is kept too.
    let incomplete: Vec<(&str, &str)> =
        form.iter().copied().filter(|(k, _)| !k.starts_with("left_")).chain([("outcome_reason", "laser scars")]).collect();
    let (s, page, _) = b.post(&path, &incomplete);
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(page.contains(">laser scars</textarea>"), "{page}");
    let none: Value = http().get(format!("{}/v1/exams/{id}/reviews", server.url)).bearer_auth(&clinician).send().unwrap().json().unwrap();
    assert_eq!(none["reviews"].as_array().unwrap().len(), 0);

    // With the reason: signed, and the history shows it.
    let with_reason: Vec<(&str, &str)> = form.iter().copied().chain([("outcome_reason", "old treated PDR, stable")]).collect();
    let (s, _, h) = b.post(&path, &with_reason);
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (_, after, _) = b.get(&location(&h));
    assert!(after.contains("Review version 1 signed off"), "{after}");
    assert!(
        after.contains("Reason for an outcome less urgent than the grades imply (Urgent referral): old treated PDR, stable"),
        "{after}"
    );
    assert!(after.contains(r#"<b id="implied-outcome">Urgent referral</b>"#), "the amendment form starts from the signed reading");
}

/// Issue 16: a draft may be partial (over the JSON API and the form's autosave), signing
/// needs everything, and a refusal lists every wrong field at once, in words.
#[test]
fn partial_drafts_autosave_and_every_field_error_at_once() {
    let server = Server::start(&[]);
    let (device, clinician, admin) = (server.key("device"), server.key("clinician"), server.key("admin"));
    let exam = submit_exam(&server, &device, &[("right", "grade3_R.jpg"), ("left", "grade2_L.png")]);
    let id = exam["id"].as_str().unwrap().to_string();

    // JSON API: one grade without its oedema verdict and no outcome is a valid draft.
    let (s, draft) = post_review(&server, &clinician, &id, json!({"eyes": {"right": {"grade": 3}}, "note": "started"}));
    assert_eq!((s, draft["state"].as_str(), draft["version"].as_u64()), (StatusCode::CREATED, Some("draft"), Some(1)), "{draft}");
    assert_eq!((draft["outcome"].clone(), draft["eyes"]["right"]["dme"].clone()), (Value::Null, Value::Null), "{draft}");
    // Signing it: every missing piece at once, each with its field, code and words.
    let (s, body) = post_review(&server, &clinician, &id, json!({"eyes": {"right": {"grade": 3}}, "sign": true, "base_version": 1}));
    assert_eq!((s, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("dme_required")), "{body}");
    let fields: Vec<(&str, &str)> =
        body["fields"].as_array().unwrap().iter().map(|f| (f["field"].as_str().unwrap(), f["code"].as_str().unwrap())).collect();
    assert_eq!(fields, [("right_dme", "dme_required"), ("left_grade", "incomplete_review"), ("outcome", "outcome_required")], "{body}");
    assert!(body["fields"].as_array().unwrap().iter().all(|f| !f["message"].as_str().unwrap().contains('_')), "in words: {body}");
    let (s, signed) = post_review(
        &server,
        &clinician,
        &id,
        json!({"eyes": both_eyes(3, 2), "outcome": "urgent_referral", "sign": true, "base_version": 1}),
    );
    assert_eq!((s, signed["state"].as_str(), signed["version"].as_u64()), (StatusCode::CREATED, Some("signed"), Some(1)), "{signed}");

    // The form's autosave: partial fields, JSON answer, the draft updated in place, and
    // audited once however often it saves within a minute.
    let other = submit_exam(&server, &device, &[("right", "grade3_R.jpg"), ("left", "grade2_L.png")]);
    let other_id = other["id"].as_str().unwrap().to_string();
    let mut b = Browser::new(&server.url);
    assert_eq!(sign_in(&mut b, &clinician).0, StatusCode::SEE_OTHER);
    let (_, case, _) = b.get(&format!("/review/exams/{other_id}"));
    assert!(case.contains(&format!(r#"data-autosave="/review/exams/{other_id}/draft""#)), "{case}");
    assert!(!case.contains("maxlength"), "no silent cut of pasted text");
    assert!(case.contains(r#"0 / 4000 characters"#), "the limit shows before it bites");
    let csrf = hidden(&case, "csrf");
    let autosave = |b: &Browser, token: &str, form: &[(&str, &str)]| {
        let r = b
            .client
            .post(format!("{}/review/exams/{other_id}/draft", server.url))
            .header("cookie", b.cookie_header())
            .header("x-csrf-token", token)
            .form(form)
            .send()
            .unwrap();
        (r.status(), r.json::<Value>().unwrap_or(Value::Null))
    };
    let (s, body) = autosave(&b, "forged", &[("right_grade", "2")]);
    assert_eq!((s, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("csrf_rejected")));
    let (s, saved) = autosave(&b, &csrf, &[("base_version", "0"), ("right_grade", "2"), ("action", "sign")]);
    assert_eq!((s, saved["version"].as_u64()), (StatusCode::OK, Some(1)), "{saved}");
    assert!(saved["saved_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{saved}");
    let (s, saved) = autosave(&b, &csrf, &[("base_version", "1"), ("right_grade", "2"), ("right_dme", "no"), ("note", "half way")]);
    assert_eq!((s, saved["version"].as_u64()), (StatusCode::OK, Some(1)), "updated in place: {saved}");
    let long = "x".repeat(4001);
    let (s, body) = autosave(&b, &csrf, &[("base_version", "1"), ("note", &long)]);
    assert_eq!((s, body["fields"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("note")), "{body}");
    let versions: Value =
        http().get(format!("{}/v1/exams/{other_id}/reviews", server.url)).bearer_auth(&admin).send().unwrap().json().unwrap();
    let versions = versions["reviews"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert_eq!((versions[0]["state"].as_str(), versions[0]["note"].as_str()), (Some("draft"), Some("half way")), "an autosave never signs");
    let audit: Value =
        http().get(format!("{}/v1/audit?object={other_id}&action=review", server.url)).bearer_auth(&admin).send().unwrap().json().unwrap();
    let actions: Vec<&str> = audit["events"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["review.draft.autosave"], "one autosave event a minute: {audit}");
    // The reopened case shows the autosaved draft.
    let (_, case, _) = b.get(&format!("/review/exams/{other_id}"));
    assert!(case.contains(">half way</textarea>") && case.contains(r#"<option value="2" selected>"#), "{case}");

    // The page form: signing with nothing filled lists every field next to itself.
    let (s, page, _) = b.post(&format!("/review/exams/{other_id}/review"), &[("csrf", &csrf), ("base_version", "1"), ("action", "sign")]);
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    for field in ["right_grade", "left_grade", "outcome"] {
        assert!(page.contains(&format!(r#"id="{field}" aria-invalid="true" aria-describedby="err-{field}""#)), "{field}: {page}");
        assert!(page.contains(&format!(r#"<span class="field-error" id="err-{field}">"#)), "{field}");
    }
    assert!(page.contains(r#"id="error-summary""#) && page.contains("these 3 fields"), "{page}");
    assert!(!page.contains("(incomplete_review)") && !page.contains("(outcome_required)"), "no internal codes on the page");
}

/// Issue 16: sessions live in the database, so a restart keeps clinicians signed in; an
/// expired session's submission keeps the entries through sign-in and back to the form.
#[test]
fn sessions_survive_a_restart_and_an_expired_submission_keeps_the_entries() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let (device, clinician) = (server.key("device"), server.key("clinician"));
    let exam = submit_exam(&server, &device, &[("right", "grade3_R.jpg"), ("left", "grade2_L.png")]);
    let id = exam["id"].as_str().unwrap().to_string();
    let mut b = Browser::new(&server.url);
    assert_eq!(sign_in(&mut b, &clinician).0, StatusCode::SEE_OTHER);
    let (_, case, _) = b.get(&format!("/review/exams/{id}"));
    let old_csrf = hidden(&case, "csrf");
    assert!(case.contains(r#"data-session-idle="900""#), "the page knows the idle timeout");

    // Restart on the same data directory: the cookie still opens the worklist.
    assert!(server.stop().success());
    let server = Server::start_in(dir.path(), &[]);
    b.base = server.url.clone();
    let (s, _, _) = b.get("/review");
    assert_eq!(s, StatusCode::OK, "the session survived the restart");
    // "Stay signed in": CSRF-checked, then it touches the session.
    let extend = |b: &Browser, token: &str| {
        b.client
            .post(format!("{}/review/session/extend", b.base))
            .header("cookie", b.cookie_header())
            .header("x-csrf-token", token)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(extend(&b, "forged"), StatusCode::FORBIDDEN);
    assert_eq!(extend(&b, &old_csrf), StatusCode::OK);

    // Idle past the timeout (a restart with a 3 s one), then submit: the sign-in page
    // carries the entries, escaped, never the old CSRF token.
    assert!(server.stop().success());
    let server = Server::start_in(dir.path(), &["--session-idle-secs", "3"]);
    b.base = server.url.clone();
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert_eq!(extend(&b, &old_csrf), StatusCode::UNAUTHORIZED);
    let note = r#"IRMA <b>"superotemporal"</b> & more"#;
    let form = [
        ("csrf", old_csrf.as_str()),
        ("base_version", "0"),
        ("right_grade", "3"),
        ("right_dme", "no"),
        ("left_grade", "2"),
        ("left_dme", "no"),
        ("outcome", "urgent_referral"),
        ("note", note),
        ("action", "sign"),
    ];
    let (s, page, _) = b.post(&format!("/review/exams/{id}/review"), &form);
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{page}");
    assert!(page.contains("Your session has expired") && page.contains(r#"action="/review/login""#), "{page}");
    assert!(page.contains(r#"name="carry.note" value="IRMA &lt;b&gt;&quot;superotemporal&quot;&lt;/b&gt; &amp; more""#), "{page}");
    assert!(!page.contains(&old_csrf) && !page.contains("carry.action"), "{page}");
    assert!(!page.contains("ACC-R1") && !page.contains("PID-R1"), "nothing about the exam beyond the entries");
    let (s, none, _) = b.get(&format!("/review/exams/{id}"));
    assert_eq!(s, StatusCode::SEE_OTHER, "{none}");

    // Sign in from that page: the case comes back with the form filled, not submitted.
    let token = hidden(&page, "csrf");
    let mut carried: Vec<(String, String)> = vec![("csrf".into(), token), ("key".into(), clinician.clone())];
    for name in ["carry_exam", "carry.right_grade", "carry.right_dme", "carry.left_grade", "carry.left_dme", "carry.outcome", "carry.note"]
    {
        let value = hidden(&page, name).replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&");
        carried.push((name.into(), value));
    }
    let carried_refs: Vec<(&str, &str)> = carried.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (s, restored, _) = b.post("/review/login", &carried_refs);
    assert_eq!(s, StatusCode::OK, "{restored}");
    assert!(restored.contains("Your session had expired; your entries were kept. Check them and submit again."), "{restored}");
    assert!(restored.contains(r#"<option value="urgent_referral" selected>"#), "{restored}");
    assert!(restored.contains(">IRMA &lt;b&gt;&quot;superotemporal&quot;&lt;/b&gt; &amp; more</textarea>"), "{restored}");
    let none: Value = http().get(format!("{}/v1/exams/{id}/reviews", server.url)).bearer_auth(&clinician).send().unwrap().json().unwrap();
    assert_eq!(none["reviews"].as_array().unwrap().len(), 0, "not submitted on the clinician's behalf");
    let new_csrf = hidden(&restored, "csrf");
    assert_ne!(new_csrf, old_csrf);
    let resubmit: Vec<(&str, &str)> = form.iter().map(|&(k, v)| if k == "csrf" { (k, new_csrf.as_str()) } else { (k, v) }).collect();
    let (s, _, h) = b.post(&format!("/review/exams/{id}/review"), &resubmit);
    assert_eq!((s, location(&h).contains("signed=true")), (StatusCode::SEE_OTHER, true));
    let signed: Value = http().get(format!("{}/v1/exams/{id}/reviews", server.url)).bearer_auth(&clinician).send().unwrap().json().unwrap();
    assert_eq!(signed["reviews"][0]["note"].as_str(), Some(note), "{signed}");
}
