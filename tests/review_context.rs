//! Patient context and "who and what" on the review pages and the JSON API (issue 16),
//! against a real `drscreen serve`: key display names in the header, the review history,
//! the audit log and `reviewer_name`; superseded review versions; the model's reading
//! beside the clinician's signed one; a patient's other exams; the comparison of one eye
//! across two exams (refused for two patients); the patient filter; and filter values
//! the pages do not know answered 400 in words.

mod common;

use common::pages::Pages;
use common::{Exam, Server, http, upload_exam};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Creates a key with a display name through the CLI, as a clinic admin would.
fn named_key(server: &Server, role: &str, name: &str) -> String {
    let out = server.cli().args(["keys", "create", "--role", role, "--name", name]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap().trim().to_string()
}

fn key_id(key: &str) -> &str {
    key.split('_').nth(1).unwrap()
}

fn exam_of(server: &Server, device: &str, ext: &str, patient: &str) -> Value {
    let form = Exam::new()
        .metadata(&format!(r#"{{"external_exam_ref":"{ext}","patient_ref":"{patient}"}}"#))
        .image("right", "grade3_R.jpg")
        .image("left", "grade3_L.jpg");
    let r = upload_exam(server, device, &form);
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()
}

fn post_review(server: &Server, key: &str, exam: &str, body: Value) -> Value {
    let r = http().post(format!("{}/v1/exams/{exam}/reviews", server.url)).bearer_auth(key).json(&body).send().unwrap();
    let status = r.status();
    let body: Value = r.json().unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

fn both_eyes(right: u8, left: u8) -> Value {
    json!({"right": {"grade": right, "dme": false}, "left": {"grade": left, "dme": false}})
}

/// The `<tr>` of the history table for one version.
fn history_row(html: &str, version: u32) -> &str {
    let start = html.find(&format!(r#"id="review-v{version}""#)).unwrap_or_else(|| panic!("no history row v{version}:\n{html}"));
    let rest = &html[start..];
    &rest[..rest.find("</tr>").unwrap()]
}

fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html.find(&format!(r#"id="{id}""#)).unwrap_or_else(|| panic!("no #{id}:\n{html}"));
    let rest = &html[start..];
    &rest[..rest.find("</section>").or_else(|| rest.find("</table>")).unwrap()]
}

#[test]
fn who_and_what_patient_context_and_worded_filter_errors() {
    let server = Server::start(&[]);
    let device = server.key("device");
    let kari = named_key(&server, "clinician", "Dr Kari Nordmann");
    let plain = server.key("clinician");
    let admin = server.key("admin");
    let older = exam_of(&server, &device, "ACC-OLD", "PID-CTX-1");
    let newer = exam_of(&server, &device, "ACC-NEW", "PID-CTX-1");
    let other = exam_of(&server, &device, "ACC-OTHER", "PID-CTX-2");
    let id = |e: &Value| e["id"].as_str().unwrap().to_string();
    let (older_id, newer_id, other_id) = (id(&older), id(&newer), id(&other));

    // reviewer_name in the JSON: the key's display name, null for a key without one.
    let v1 = post_review(&server, &kari, &older_id, json!({"eyes": both_eyes(3, 2), "outcome": "urgent_referral", "sign": true}));
    assert_eq!((v1["reviewer"].as_str(), v1["reviewer_name"].as_str()), (Some(key_id(&kari)), Some("Dr Kari Nordmann")), "{v1}");
    let v2 = post_review(
        &server,
        &plain,
        &older_id,
        json!({"eyes": both_eyes(3, 1), "outcome": "urgent_referral", "sign": true, "amendment_reason": "left eye regraded"}),
    );
    assert_eq!((v2["version"].as_u64(), v2["reviewer_name"].clone()), (Some(2), Value::Null), "{v2}");
    let list: Value = http().get(format!("{}/v1/exams/{older_id}/reviews", server.url)).bearer_auth(&admin).send().unwrap().json().unwrap();
    assert_eq!(list["reviews"][0]["reviewer_name"], "Dr Kari Nordmann", "{list}");
    assert_eq!(list["reviews"][1]["reviewer_name"], Value::Null, "{list}");
    // A draft amendment of the newer exam's signed review: the signed version is the
    // record until the amendment is signed.
    post_review(&server, &kari, &newer_id, json!({"eyes": both_eyes(2, 2), "outcome": "referral", "sign": true}));
    post_review(&server, &kari, &newer_id, json!({"eyes": both_eyes(3, 2), "outcome": "urgent_referral", "amendment_reason": "IRMA"}));

    let pages = Pages::sign_in(&server.url, &kari);
    // The header names the person.
    let (s, worklist) = pages.get("/review?reviewed=all");
    assert_eq!(s, StatusCode::OK);
    assert!(worklist.contains("Dr Kari Nordmann</span> · clinician"), "{worklist}");
    // Signed rows: the clinician's columns beside the model's, labelled.
    assert!(worklist.contains("Clinician (signed)</th>") && worklist.contains(r#"<th class="by-model">Model</th>"#), "{worklist}");
    let row_start = worklist.find(&format!(r#"<tr data-href="/review/exams/{older_id}""#)).unwrap();
    let row = &worklist[row_start..row_start + worklist[row_start..].find("</tr>").unwrap()];
    assert!(row.contains("1 · Mild non-proliferative DR"), "the signed v2 left grade is shown: {row}");
    assert!(row.contains(r#"<td class="by-clinician"><span class="badge urgent_referral">"#), "{row}");

    // The history: v1 superseded by v2, names shown with the key id beside them.
    let (_, case) = pages.get(&format!("/review/exams/{older_id}"));
    let (h1, h2) = (history_row(&case, 1), history_row(&case, 2));
    assert!(h1.contains("superseded by v2") && h1.contains("Dr Kari Nordmann") && h1.contains(key_id(&kari)), "{h1}");
    assert!(!h2.contains("superseded"), "{h2}");
    assert!(h2.contains(key_id(&plain)), "a key without a name shows its id: {h2}");
    // The case header: model beside clinician (signed), with the version.
    let versus = section(&case, "model-vs-clinician");
    assert!(versus.contains("Clinician (signed, version 2)") && versus.contains(">Model<"), "{versus}");
    assert!(versus.contains("1 · Mild non-proliferative DR"), "{versus}");
    let (_, newer_case) = pages.get(&format!("/review/exams/{newer_id}"));
    let h1 = history_row(&newer_case, 1);
    assert!(h1.contains("being amended (draft v2)") && !h1.contains("superseded"), "{h1}");

    // Earlier exams: the same patient's other exam, never another patient's.
    let prior = section(&newer_case, "prior-exams");
    assert!(prior.contains("Earlier exams of this patient"), "{prior}");
    assert!(prior.contains(&older_id) && !prior.contains(&other_id), "{prior}");
    assert!(prior.contains(&format!("/review/compare?a={older_id}&amp;b={newer_id}&amp;eye=right")), "{prior}");
    let (_, other_case) = pages.get(&format!("/review/exams/{other_id}"));
    assert!(section(&other_case, "prior-exams").contains("No other exams of this patient"));

    // The patient filter: exact match.
    let (s, filtered) = pages.get("/review?patient=PID-CTX-1&reviewed=all");
    assert_eq!(s, StatusCode::OK);
    assert!(filtered.contains(&older_id) && filtered.contains(&newer_id) && !filtered.contains(&other_id), "{filtered}");
    assert!(filtered.contains(r#"name="patient" id="patient-filter" value="PID-CTX-1""#), "{filtered}");
    let (_, partial) = pages.get("/review?patient=PID-CTX&reviewed=all");
    assert!(!partial.contains(&older_id), "a prefix is not the patient");

    // Comparison: the same eye of two exams of one patient, audited as views of both.
    let (s, compare) = pages.get(&format!("/review/compare?a={newer_id}&b={older_id}&eye=right"));
    assert_eq!(s, StatusCode::OK, "{compare}");
    let right = |e: &Value| e["image_ids"][0].as_str().unwrap().to_string();
    let left = |e: &Value| e["image_ids"][1].as_str().unwrap().to_string();
    assert!(compare.contains(&right(&older)) && compare.contains(&right(&newer)), "{compare}");
    assert!(!compare.contains(&left(&older)) && !compare.contains(&left(&newer)), "only the right eye: {compare}");
    assert!(compare.find(&older_id).unwrap() < compare.find(&newer_id).unwrap(), "earlier exam on the left");
    // Two patients side by side: refused, nothing of either shown.
    let (s, refused) = pages.get(&format!("/review/compare?a={older_id}&b={other_id}&eye=right"));
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(refused.contains("not belong to the same patient") && refused.contains("review.css"), "{refused}");
    assert!(!refused.contains(&right(&other)) && !refused.contains(&right(&older)), "{refused}");
    for (path, words) in [
        (format!("/review/compare?a={older_id}&b={newer_id}&eye=up"), "Unknown value 'up' for \"eye\": use right, left or unspecified"),
        (format!("/review/compare?a={older_id}&eye=right"), "needs two exams"),
        ("/review?reviewed=maybe".to_string(), "Unknown value 'maybe' for \"reviewed\": use no (not yet signed), yes (signed) or all"),
        ("/review?outcome=soon".to_string(), "Unknown value 'soon' for \"outcome\""),
        ("/review?from=2026-13-01".to_string(), "'2026-13-01' for \"from\" is not a date"),
        ("/review/agreement?last=-5".to_string(), "the value '-5' for \"last\" must be a whole number, 0 or more"),
    ] {
        let (s, html) = pages.get(&path);
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {html}");
        let escaped = words.replace('"', "&quot;").replace('\'', "&#39;");
        assert!(html.contains(&escaped), "{path}: wanted {escaped} in {html}");
        assert!(html.contains("/review/static/review.css") && html.contains("Sign out"), "styled, signed in: {html}");
    }
    let (s, _) = pages.get(&format!("/review/compare?a={older_id}&b=nope&eye=right"));
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The audit log page: the person's name with the key id, and the comparison views.
    let admin_pages = Pages::sign_in(&server.url, &admin);
    let (s, audit) = admin_pages.get(&format!("/review/audit?actor={}", key_id(&kari)));
    assert_eq!(s, StatusCode::OK);
    let table = section(&audit, "audit");
    assert!(table.contains(&format!(r#"<span class="person" title="key {}">Dr Kari Nordmann</span>"#, key_id(&kari))), "{table}");
    assert!(table.contains(&format!("comparison with exam {older_id}, right eye")), "{table}");
    assert!(table.contains(&format!("comparison with exam {newer_id}, right eye")), "{table}");
}
