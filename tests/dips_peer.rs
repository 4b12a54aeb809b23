//! The stand-in DIPS RetinaIntegration server (`tests/peers/dips_server.py`) proves itself
//! against the guide's rules, and drscreen's `$append-retina-ai-result` Parameters
//! (`drscreen::interop::dips::append_parameters`) and `GET /v1/exams/{id}/fhir` for a
//! really graded exam pass it / fhir.resources. Needs python3 with fhir.resources.

mod common;

use common::dips::DipsServer;
use common::{Exam, Server, http, upload_exam};
use drscreen::interop::dips::{self, AppendInput, ConclusionMapping};
use drscreen::store::StoredExam;
use serde_json::{Value, json};

const TOKEN: &str = "dips-test-token";
const EXAM_A: &str = "6d2f4dbc-5f03-46e0-a302-606ae889df45";
const EXAM_B: &str = "550e8400-e29b-41d4-a716-446655440000";
const EXAM_C: &str = "0b9c4f52-8a57-4b1e-9a43-0f3d2b6c9e11";

fn examinations() -> Value {
    json!([
        {"report_id": EXAM_A, "examination_id": EXAM_A, "sectra_study_id": "MMA94126079", "date": "2026-06-10"},
        {"report_id": EXAM_B, "examination_id": EXAM_B, "sectra_study_id": "MMA94126111", "date": "2026-06-11", "reject422": true},
        {"report_id": EXAM_C, "examination_id": EXAM_C, "sectra_study_id": "MMA94126222", "date": "2026-06-12", "fail_first": [500, 503]},
    ])
}

/// A minimal valid append (as the guide's Parameters example, in 0.9.0's names).
fn minimal(sectra: &str) -> Value {
    json!({"resourceType": "Parameters", "parameter": [
        {"name": "sectraStudyId", "valueString": sectra},
        {"name": "conclusion", "valueCodeableConcept": {"coding": [{"system": dips::CONCLUSION_CS, "code": "1002"}]}},
        {"name": "fullReport", "valueAttachment": {"contentType": "application/pdf", "data": "JVBERi0xLjQ=", "title": "Full report"}},
        {"name": "validation", "valueBoolean": false},
    ]})
}

fn without(mut p: Value, name: &str) -> Value {
    p["parameter"].as_array_mut().unwrap().retain(|x| x["name"] != name);
    p
}

fn post(dips: &DipsServer, report_id: &str, body: &Value, token: Option<&str>) -> (u16, String) {
    let mut r = http().post(dips.append_url(report_id)).header("Content-Type", "application/fhir+json").body(body.to_string());
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

#[test]
fn stand_in_follows_the_operation_definitions() {
    let dips = DipsServer::start(examinations(), Some(TOKEN));
    let c = http();
    // $retina-by-date: the pending reports of the window, with the ImagingStudy that
    // carries the Sectra study id; drscreen reads it.
    let url = format!(
        "{}/DiagnosticReport/$retina-by-date?start=2026-06-10&end=2026-06-11&pendingAI=true&_include=DiagnosticReport:result",
        dips.base_url
    );
    let r = c.get(&url).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(r.status(), 200);
    let bundle: Value = r.json().unwrap();
    let pending = dips::pending_examinations(&bundle).unwrap();
    assert_eq!(pending.len(), 2, "{bundle}");
    assert_eq!(pending[0].report_id, EXAM_A);
    assert_eq!(pending[0].examination_id.as_deref(), Some(EXAM_A));
    assert_eq!(pending[0].sectra_study_ids, ["MMA94126079"]);
    assert_eq!(c.get(&url).send().unwrap().status(), 401);
    let bad = format!("{}/DiagnosticReport/$retina-by-date?start=yesterday", dips.base_url);
    assert_eq!(c.get(&bad).bearer_auth(TOKEN).send().unwrap().status(), 400);
    let bad = format!("{}/DiagnosticReport/$retina-by-date?pendingAI=maybe", dips.base_url);
    assert_eq!(c.get(&bad).bearer_auth(TOKEN).send().unwrap().status(), 400);

    // $append-retina-ai-result.
    assert_eq!(post(&dips, EXAM_A, &minimal("MMA94126079"), None).0, 401);
    assert_eq!(post(&dips, EXAM_A, &minimal("MMA94126079"), Some("wrong")).0, 401);
    let (status, text) = post(&dips, EXAM_A, &without(minimal("MMA94126079"), "fullReport"), Some(TOKEN));
    assert_eq!(status, 400);
    assert!(text.contains("OperationOutcome") && text.contains("fullReport"), "{text}");
    let (status, text) = post(&dips, EXAM_A, &without(minimal("MMA94126079"), "validation"), Some(TOKEN));
    assert_eq!((status, text.contains("validation")), (400, true), "{text}");
    let mut p = minimal("MMA94126079");
    p["parameter"][1]["valueCodeableConcept"]["coding"][0]["code"] = json!("1001");
    assert_eq!(post(&dips, EXAM_A, &p, Some(TOKEN)).0, 400, "1001 is not in the append value set");
    p["parameter"][1]["valueCodeableConcept"]["coding"][0]["code"] = json!("1004");
    let (status, text) = post(&dips, EXAM_A, &p, Some(TOKEN));
    assert_eq!(status, 400, "1004 without monthsUntilNextExamination: {text}");
    p["parameter"].as_array_mut().unwrap().insert(2, json!({"name": "monthsUntilNextExamination", "valueInteger": 1}));
    assert_eq!(post(&dips, EXAM_A, &p, Some(TOKEN)).0, 400, "months must be > 1");
    let mut p = minimal("MMA94126079");
    p["parameter"].as_array_mut().unwrap().push(json!({"name": "rightDiabeticRetinopathy", "valueDecimal": 5.5}));
    assert_eq!(post(&dips, EXAM_A, &p, Some(TOKEN)).0, 400, "DR above 5.0");
    assert_eq!(post(&dips, "no-such-report", &minimal("X"), Some(TOKEN)).0, 404);
    // The Sectra study of another examination: 409.
    assert_eq!(post(&dips, EXAM_A, &minimal("MMA94126111"), Some(TOKEN)).0, 409);
    // Valid: 204, then 409 (already graded), and no longer pending.
    let (status, text) = post(&dips, EXAM_A, &minimal("MMA94126079"), Some(TOKEN));
    assert_eq!(status, 204, "{text}");
    assert_eq!(post(&dips, EXAM_A, &minimal("MMA94126079"), Some(TOKEN)).0, 409);
    let bundle: Value = c.get(&url).bearer_auth(TOKEN).send().unwrap().json().unwrap();
    assert_eq!(dips::pending_examinations(&bundle).unwrap().iter().map(|p| p.report_id.as_str()).collect::<Vec<_>>(), [EXAM_B]);
    // Configured business-rule failure: 422.
    assert_eq!(post(&dips, EXAM_B, &minimal("MMA94126111"), Some(TOKEN)).0, 422);
    // Injected failures come first, before validation.
    assert_eq!(post(&dips, EXAM_C, &json!({}), Some(TOKEN)).0, 500);
    assert_eq!(post(&dips, EXAM_C, &minimal("MMA94126222"), Some(TOKEN)).0, 503);
    assert_eq!(post(&dips, EXAM_C, &minimal("MMA94126222"), Some(TOKEN)).0, 204);
    // Every append is recorded (401s are refused before they count).
    let appends = dips.appends();
    let ok: Vec<&Value> = appends.iter().filter(|a| a["status"] == 204).collect();
    assert_eq!(ok.len(), 2);
    assert_eq!(ok[0]["report_id"], EXAM_A);
    assert_eq!(ok[0]["body"], minimal("MMA94126079"));
}

fn python(script: &str, arg: &str) -> std::process::Output {
    std::process::Command::new("python3").args(["-c", script, arg]).output().expect("python3 runs")
}

#[test]
fn a_graded_exam_is_accepted() {
    let server = Server::start(&[]);
    let key = server.key("clinician");
    let device = server.key("device");
    let c = http();
    let dips = DipsServer::start(examinations(), Some(TOKEN));
    for (exam, left, right, report_id, sectra) in [
        ("rescreen-or-referral", "grade0_L.jpg", "grade0_R.jpg", EXAM_A, "MMA94126079"),
        ("referral", "grade4_L.jpg", "grade2_R.jpg", EXAM_C, "MMA94126222"),
    ] {
        let r = upload_exam(&server, &device, &Exam::eyes(left, right));
        assert_eq!(r.status, 201, "{exam}: {}", r.text());
        let id = r.json()["id"].as_str().unwrap().to_string();
        let fetched: Value = c.get(format!("{}/v1/exams/{id}", server.url)).bearer_auth(&key).send().unwrap().json().unwrap();
        let stored: StoredExam = serde_json::from_value(fetched).expect("the API's exam JSON reads as a StoredExam");
        let mapping = ConclusionMapping::default();
        mapping.validate().unwrap();
        let views = vec![Some("macula".to_string()), None];
        let params = dips::append_parameters(&AppendInput {
            exam: &stored,
            review: None,
            sectra_study_id: Some(sectra),
            image_views: &views,
            pdf: b"%PDF-1.4\n%drscreen test\n",
            validation: false,
            mapping: &mapping,
            rescreen_recall_months: 12,
        });
        let code =
            params["parameter"].as_array().unwrap().iter().find(|p| p["name"] == "conclusion").unwrap()["valueCodeableConcept"]["coding"]
                [0]["code"]
                .clone();
        let expected = match stored.result.outcome.as_str() {
            "rescreen" => "1004",
            "referral" | "urgent_referral" => "1003",
            _ => "1002",
        };
        assert_eq!(code, expected, "{exam}: outcome {}", stored.result.outcome.as_str());
        // C fails twice first (injected); the third try is the one that counts.
        let mut status = 0;
        for _ in 0..3 {
            let (s, text) = post(&dips, report_id, &params, Some(TOKEN));
            status = s;
            if s == 204 {
                break;
            }
            assert!(s >= 500, "{exam}: {s} {text}");
        }
        assert_eq!(status, 204, "{exam}: {params}");

        // GET /v1/exams/{id}/fhir parses with fhir.resources and carries the guide's codes.
        let fhir = c.get(format!("{}/v1/exams/{id}/fhir", server.url)).bearer_auth(&key).send().unwrap();
        assert_eq!(fhir.status(), 200);
        let report: Value = fhir.json().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        std::fs::write(&path, report.to_string()).unwrap();
        let o = python(
            "import json,sys\nfrom fhir.resources.R4B.diagnosticreport import DiagnosticReport\nr=DiagnosticReport.model_validate(json.load(open(sys.argv[1])))\nassert r.status=='final'\nprint(sorted(c.id for c in r.contained))",
            path.to_str().unwrap(),
        );
        assert!(o.status.success(), "fhir.resources: {}", String::from_utf8_lossy(&o.stderr));
        for key in ["performer", "resultsInterpreter", "conclusion"] {
            assert!(report.get(key).is_none(), "{key} is not allowed");
        }
        assert_eq!(report["conclusionCode"][0]["coding"][0]["system"], dips::CONCLUSION_CS);
        assert_eq!(report["conclusionCode"][0]["coding"][0]["code"], expected);
        let contained = report["contained"].as_array().unwrap();
        let dr: Vec<&Value> = contained.iter().filter(|r| r["code"]["coding"][0]["code"] == "4855003").collect();
        assert_eq!(dr.len(), 2);
        for o in &dr {
            assert!(o["valueQuantity"]["value"].is_f64());
            assert_eq!(o["meta"]["profile"][0], dips::PROFILE_DR_FINDING);
            assert!(["5597008", "58443009"].contains(&o["bodySite"]["coding"][0]["code"].as_str().unwrap()));
        }
        let device = contained.iter().find(|r| r["resourceType"] == "Device").unwrap();
        assert_eq!(device["meta"]["profile"][0], dips::PROFILE_AI_DEVICE);
        if expected == "1004" {
            assert_eq!(report["extension"][0]["url"], dips::EXT_DAYS_UNTIL_NEXT_EXAMINATION);
            assert_eq!(report["extension"][0]["valueInteger"], 365);
        }
    }
    assert_eq!(dips.appends().iter().filter(|a| a["status"] == 204).count(), 2);
}
