//! drscreen as the DIPS client, end to end: a real `drscreen serve` polls the stand-in
//! DIPS server (`tests/peers/dips_server.py`, which validates every body with
//! fhir.resources and answers as the guide's OperationDefinitions say) and delivers each
//! matched examination's result from the durable outbox. Pending examinations get
//! exactly one accepted append each; a 500 is retried; a 409 is "already there" and never
//! retried; a 422 is `failed`, shown to an admin, and can be queued again; validation
//! mode is honoured; a clinician's signed review is what gets delivered.
//! Needs python3 with fhir.resources.

mod common;

use std::time::{Duration, Instant};

use common::dips::DipsServer;
use common::pages::Pages;
use common::{Exam, Server, http, upload_exam};
use drscreen::interop::dips::CONCLUSION_CS;
use reqwest::StatusCode;
use serde_json::{Value, json};

const TOKEN: &str = "dips-e2e-token";
/// Long enough for the slowest CI machine; a failure says what was seen.
const DEADLINE: Duration = Duration::from_secs(120);

fn today() -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::OffsetDateTime::now_utc().date().format(fmt).unwrap()
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>, seen: impl Fn() -> String) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}; saw {}", seen());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn dips_args(dips: &DipsServer) -> Vec<String> {
    [
        "--dips-base-url",
        &dips.base_url,
        "--dips-auth-value",
        &format!("Bearer {TOKEN}"),
        "--dips-poll-secs",
        "0.3",
        "--dips-retry-initial-secs",
        "0.3",
        "--dips-retry-max-secs",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn upload(server: &Server, device: &str, sectra: &str, images: &[(&str, &str)]) -> Value {
    let exam = images
        .iter()
        .fold(Exam::new().metadata(&format!(r#"{{"external_exam_ref":"{sectra}","patient_ref":"PID-{sectra}"}}"#)), |e, (lat, name)| {
            e.image(lat, name)
        });
    let r = upload_exam(server, device, &exam);
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()
}

fn deliveries(server: &Server, admin: &str) -> Vec<Value> {
    let r = http().get(format!("{}/v1/deliveries?limit=500", server.url)).bearer_auth(admin).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().unwrap();
    body["deliveries"].as_array().unwrap().iter().filter(|d| d["kind"] == "dips").cloned().collect()
}

fn delivery_for<'a>(rows: &'a [Value], report: &str) -> Option<&'a Value> {
    rows.iter().find(|d| d["destination"] == report)
}

fn parameter<'a>(body: &'a Value, name: &str) -> Option<&'a Value> {
    body["parameter"].as_array().unwrap().iter().find(|p| p["name"] == name)
}

fn appends_for(dips: &DipsServer, report: &str) -> Vec<Value> {
    dips.appends().into_iter().filter(|a| a["report_id"] == report).collect()
}

fn conclusion(body: &Value) -> String {
    let p = parameter(body, "conclusion").expect("a conclusion");
    let coding = &p["valueCodeableConcept"]["coding"][0];
    assert_eq!(coding["system"], CONCLUSION_CS);
    coding["code"].as_str().unwrap().to_string()
}

#[test]
fn pending_examinations_get_one_accepted_append_each_with_retries_conflicts_and_refusals() {
    let day = today();
    let exam = |report: &str, sectra: &str, extra: Value| {
        let mut e = json!({"report_id": report, "examination_id": report, "sectra_study_id": sectra, "date": day});
        e.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        e
    };
    let (a, b, c, d, e) = (
        "6d2f4dbc-5f03-46e0-a302-606ae889df45",
        "550e8400-e29b-41d4-a716-446655440000",
        "0b9c4f52-8a57-4b1e-9a43-0f3d2b6c9e11",
        "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "f47ac10b-58cc-4372-a567-0e02b2c3d479",
    );
    let dips = DipsServer::start(
        json!([
            exam(a, "SEC-A", json!({})),
            exam(b, "SEC-B", json!({"fail_first": [500]})),
            exam(c, "SEC-C", json!({"fail_first": [409]})),
            exam(d, "SEC-D", json!({"reject422": true})),
            exam(e, "SEC-E", json!({})),
        ]),
        Some(TOKEN),
    );
    let args = dips_args(&dips);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&args);
    let (device, admin, clinician) = (server.key("device"), server.key("admin"), server.key("clinician"));
    // SEC-E has no exam here: DIPS keeps it pending and drscreen never posts to it.
    for sectra in ["SEC-A", "SEC-B", "SEC-C", "SEC-D"] {
        upload(&server, &device, sectra, &[("right", "grade3_R.jpg"), ("left", "grade2_L.png")]);
    }

    let settled = |rows: &[Value]| {
        let state = |r: &str| delivery_for(rows, r).map(|x| x["state"].as_str().unwrap().to_string());
        [a, b, c].iter().all(|r| state(r).as_deref() == Some("delivered")) && state(d).as_deref() == Some("failed")
    };
    let rows = wait_for(
        "A, B, C delivered and D failed",
        || {
            let rows = deliveries(&server, &admin);
            settled(&rows).then_some(rows)
        },
        || format!("{:#?}\nappends {:#?}", deliveries(&server, &admin), dips.appends()),
    );
    // Let the poller and the sender run many more rounds: nothing more may be posted.
    let searches = dips.searches();
    wait_for("five more polls", || (dips.searches() >= searches + 5).then_some(()), || format!("{} searches", dips.searches()));

    let statuses = |report: &str| appends_for(&dips, report).iter().map(|x| x["status"].as_u64().unwrap()).collect::<Vec<_>>();
    assert_eq!(statuses(a), [204], "A: one accepted append");
    assert_eq!(statuses(b), [500, 204], "B: retried after the 500, accepted once");
    assert_eq!(statuses(c), [409], "C: 409 means already there; never posted again");
    assert_eq!(statuses(d), [422], "D: a business-rule refusal is not retried by itself");
    assert!(statuses(e).is_empty(), "E has no graded exam");
    let row = |r: &str| delivery_for(&rows, r).unwrap().clone();
    assert_eq!(row(b)["attempts"], 2);
    assert!(row(c)["result"].as_str().unwrap().starts_with("409"), "{}", row(c));
    let failure = row(d)["last_error"].as_str().unwrap().to_string();
    assert!(failure.contains("422") && failure.contains("business rule"), "{failure}");

    // What was accepted: validation mode (the default) and the PDF report.
    for report in [a, b] {
        let accepted = appends_for(&dips, report).into_iter().find(|x| x["status"] == 204).unwrap();
        let body = &accepted["body"];
        assert_eq!(parameter(body, "validation").unwrap()["valueBoolean"], true);
        assert_eq!(conclusion(body), "1002", "validation results always go to manual grading");
        let report_pdf = &parameter(body, "fullReport").unwrap()["valueAttachment"];
        assert_eq!(report_pdf["contentType"], "application/pdf");
        let pdf = base64_decode(report_pdf["data"].as_str().unwrap());
        assert!(pdf.starts_with(b"%PDF-"), "fullReport is a PDF");
        let sectra = parameter(body, "sectraStudyId").unwrap()["valueString"].as_str().unwrap().to_string();
        assert_eq!(sectra, if report == a { "SEC-A" } else { "SEC-B" });
    }

    // The outbox in /metrics and the audit log.
    let metrics = http().get(format!("{}/metrics", server.url)).bearer_auth(&admin).send().unwrap().text().unwrap();
    assert!(metrics.contains(r#"drscreen_outbox_deliveries{kind="dips",state="delivered"} 3"#), "{metrics}");
    assert!(metrics.contains(r#"drscreen_outbox_deliveries{kind="dips",state="failed"} 1"#), "{metrics}");
    let audit: Value = http().get(format!("{}/v1/audit?limit=1000", server.url)).bearer_auth(&admin).send().unwrap().json().unwrap();
    let actions: Vec<&str> = audit["events"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for action in ["dips.queued", "dips.result.retry", "dips.result.delivered", "dips.result.already-present", "dips.result.failed"] {
        assert!(actions.contains(&action), "no {action} in {actions:?}");
    }

    // The admin page shows the refusal in words; a clinician may not see it.
    let pages = Pages::sign_in(&server.url, &admin);
    let (status, html) = pages.get("/review/deliveries?state=failed");
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"data-kind="dips" data-state="failed""#) && html.contains("business rule"), "{html}");
    assert!(!html.contains(a), "the filter shows failed rows only");
    let (status, _) = Pages::sign_in(&server.url, &clinician).get("/review/deliveries");
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        http().get(format!("{}/v1/deliveries?state=nonsense", server.url)).bearer_auth(&admin).send().unwrap().status(),
        StatusCode::BAD_REQUEST
    );

    // An admin sends D again from the page (CSRF-checked): DIPS refuses again, so it is
    // failed again after a second attempt, and nothing else was posted.
    let id = row(d)["id"].as_i64().unwrap();
    let (status, _) = pages.post_form(&format!("/review/deliveries/{id}/retry"), &[("csrf", "forged")]);
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = pages.post_form(&format!("/review/deliveries/{id}/retry"), &[("csrf", &Pages::csrf(&html))]);
    assert_eq!(status, StatusCode::SEE_OTHER);
    wait_for(
        "D's second refusal",
        || (delivery_for(&deliveries(&server, &admin), d)?["attempts"] == 2).then_some(()),
        || format!("{:#?}", deliveries(&server, &admin)),
    );
    assert_eq!(delivery_for(&deliveries(&server, &admin), d).unwrap()["state"], "failed");
    assert_eq!(statuses(d), [422, 422]);
    assert_eq!(statuses(a), [204]);
}

#[test]
fn a_signed_review_is_what_gets_delivered_and_clinical_mode_sends_the_outcome() {
    let data = tempfile::tempdir().unwrap();
    // Before DIPS is connected: two graded exams, one of them overridden by a clinician.
    let (overridden, ai_only) = {
        let server = Server::start_in(data.path(), &[]);
        let (device, clinician) = (server.key("device"), server.key("clinician"));
        let overridden = upload(&server, &device, "SEC-S", &[("right", "grade3_R.jpg"), ("left", "grade2_L.png")]);
        let ai_only = upload(&server, &device, "SEC-V", &[("right", "grade3_R.jpg"), ("left", "grade2_L.png")]);
        assert_eq!(overridden["flagged"], true, "{overridden}");
        let id = overridden["id"].as_str().unwrap();
        let review = json!({
            "eyes": {"right": {"grade": 0, "dme": false}, "left": {"grade": 0, "dme": false}},
            "outcome": "rescreen",
            "sign": true,
        });
        let r = http().post(format!("{}/v1/exams/{id}/reviews", server.url)).bearer_auth(&clinician).json(&review).send().unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
        let _ = server.stop();
        (overridden, ai_only)
    };
    let day = today();
    let (s_report, v_report) = ("0f8fad5b-d9cb-469f-a165-70867728950e", "3f333df6-90a4-4fda-8dd3-9485d27cee36");
    let dips = DipsServer::start(
        json!([
            {"report_id": s_report, "examination_id": s_report, "sectra_study_id": "SEC-S", "date": day},
            {"report_id": v_report, "examination_id": v_report, "sectra_study_id": "SEC-V", "date": day},
        ]),
        Some(TOKEN),
    );
    let mut args = dips_args(&dips);
    args.extend(["--dips-validation".to_string(), "false".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_in(data.path(), &args);
    let accepted = |report: &str| appends_for(&dips, report).into_iter().find(|x| x["status"] == 204).map(|x| x["body"].clone());
    let s_body = wait_for("SEC-S accepted", || accepted(s_report), || format!("{:#?}", dips.appends()));
    let v_body = wait_for("SEC-V accepted", || accepted(v_report), || format!("{:#?}", dips.appends()));
    drop(server);

    // The clinician's signed reading, not the model's: no DR, rescreen in 12 months.
    assert_eq!(parameter(&s_body, "validation").unwrap()["valueBoolean"], false);
    assert_eq!(conclusion(&s_body), "1004", "{s_body}");
    assert_eq!(parameter(&s_body, "monthsUntilNextExamination").unwrap()["valueInteger"], 12);
    for eye in ["rightDiabeticRetinopathy", "leftDiabeticRetinopathy"] {
        assert_eq!(parameter(&s_body, eye).unwrap()["valueDecimal"].as_f64(), Some(0.0), "{eye}: {s_body}");
    }
    let model_grade = |exam: &Value, side: &str| {
        exam["result"]["eyes"].as_array().unwrap().iter().find(|e| e["laterality"] == side).unwrap()["grade"].as_u64().unwrap()
    };
    assert_ne!(model_grade(&overridden, "right"), 0, "the override changed something");

    // The model's result where nobody signed: its grades, and a referral goes to
    // secondary grading as the guide's event catalogue says.
    assert_eq!(conclusion(&v_body), "1003", "{v_body}");
    assert!(parameter(&v_body, "monthsUntilNextExamination").is_none());
    for (eye, side) in [("rightDiabeticRetinopathy", "right"), ("leftDiabeticRetinopathy", "left")] {
        let sent = parameter(&v_body, eye).unwrap()["valueDecimal"].as_f64().unwrap();
        assert_eq!(sent, model_grade(&ai_only, side) as f64, "{eye}");
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
