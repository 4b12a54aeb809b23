//! The whole chain with a real PACS: dcmtk's storescu sends a two-eye ophthalmic
//! photography study to Orthanc; Orthanc forwards it to drscreen by C-STORE (REST
//! `POST /modalities/drscreen/store`); drscreen grades the study once quiet and pushes
//! its SR back to Orthanc from the outbox; the SR lands as a new series of the same study
//! in Orthanc, and what it says (dsrdump) matches drscreen's own `GET /v1/exams/{id}`.
//! Orthanc is Debian's `orthanc` package (tests/run.sh and .ci/run install it), started
//! by the test itself (tests/common/orthanc.rs); missing peers fail this test.

mod common;

use std::time::Instant;

use common::dcmtk::{MACULA_CENTERED, dciodvfy_clean, dsrdump, op_file, op_file_with, run, text};
use common::orthanc::{Modality, Orthanc, OrthancConfig};
use common::{Server, http};

const STUDY: &str = "1.2.826.0.1.3680043.8.498.7373";

/// LOINC answer list LL2117-1, by ICDR grade (as src/interop/sr.rs writes them).
const ICDR_MEANINGS: [&str; 5] = [
    "No apparent retinopathy",
    "Mild non-proliferative retinopathy",
    "Moderate non-proliferative retinopathy",
    "Severe non-proliferative retinopathy",
    "Proliferative retinopathy",
];

/// The SR's outcome code meanings, by drscreen's outcome name.
fn outcome_meaning(outcome: &str) -> &'static str {
    match outcome {
        "urgent_referral" => "Urgent referral",
        "referral" => "Referral",
        "rescreen" => "Rescreen",
        "ungradable" => "Ungradable",
        other => panic!("unknown outcome {other}"),
    }
}

/// The part of a dsrdump tree that is one eye's measurement group (tracking id "right
/// eye" / "left eye").
fn eye_group<'a>(dump: &'a str, eye: &str) -> &'a str {
    let needle = format!("\"Tracking Identifier\")=\"{eye} eye\"");
    dump.split("\"Measurement Group\")")
        .find(|group| group.contains(&needle))
        .unwrap_or_else(|| panic!("no measurement group for the {eye} eye in:\n{dump}"))
}

fn yes_no(value: bool) -> &'static str {
    if value { "(373066001,SCT,\"Yes\")" } else { "(373067005,SCT,\"No\")" }
}

#[test]
fn orthanc_forwards_a_study_and_receives_the_graded_sr_and_pdf_report() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    // Orthanc's ports are chosen first, so drscreen can be told where to push its SR;
    // drscreen's DICOM port then goes into Orthanc's DicomModalities.
    let config = OrthancConfig::new();
    let server = Server::start(&[
        "--dicom-study-stable-secs",
        "2",
        "--sr-destination",
        &config.dicom_destination(),
        "--sr-retry-initial-secs",
        "0.5",
        "--sr-retry-max-secs",
        "2",
    ]);
    let drscreen_port = server.dicom_port.expect("drscreen's DICOM listener is enabled");
    let orthanc = Orthanc::start(config.modality(Modality::new("drscreen", "DRSCREEN", "127.0.0.1", drscreen_port)));
    let orthanc_port = orthanc.config.dicom_port.to_string();

    // A two-eye study into Orthanc: the right eye uncompressed and macula centred, the
    // left eye as JPEG baseline, so Orthanc forwards both transfer syntaxes drscreen takes.
    let right = op_file_with(dir.path(), "grade3_R.jpg", "R", STUDY, true, "TEST-PID-1", &MACULA_CENTERED);
    let left = op_file(dir.path(), "grade0_L.jpg", "L", STUDY, false);
    let o = run("storescu", &["-aec", "ORTHANC", "127.0.0.1", &orthanc_port, right.to_str().unwrap()]);
    assert!(o.status.success(), "storescu to Orthanc: {}\nOrthanc log:\n{}", text(&o), orthanc.log_tail(40));
    let o = run("storescu", &["-xy", "-aec", "ORTHANC", "127.0.0.1", &orthanc_port, left.to_str().unwrap()]);
    assert!(o.status.success(), "storescu -xy to Orthanc: {}\nOrthanc log:\n{}", text(&o), orthanc.log_tail(40));
    let study = orthanc.study(STUDY);
    let before: Vec<String> = orthanc.series(&study).iter().map(|s| s.modality.clone()).collect();
    assert_eq!(before, ["OP", "OP"], "the study as sent");

    // Orthanc forwards the study to drscreen (one association, both instances).
    let forwarded = Instant::now();
    let summary = orthanc.store_to("drscreen", &study);
    assert_eq!(summary["InstancesCount"], 2, "{summary}");

    // drscreen grades it and pushes the SR back: a new SR series in the same study.
    let sr = orthanc.wait_for_series(&study, "SR");
    // and the PDF report with it, as an Encapsulated PDF instance in its own series.
    let pdf = orthanc.wait_for_series(&study, "DOC");
    eprintln!(
        "SR back in Orthanc {} ms after the forward; test so far {} ms",
        forwarded.elapsed().as_millis(),
        started.elapsed().as_millis()
    );
    assert_eq!(sr.instances.len(), 1, "{:#}", sr.json);
    assert_eq!(sr.json["MainDicomTags"]["SeriesDescription"], "AI RESULT - NOT FOR DIAGNOSTIC USE", "{:#}", sr.json);
    let sr_path = orthanc.save_instance(&sr.instances[0], dir.path(), "sr-from-orthanc");
    let report = dciodvfy_clean(&sr_path);
    assert!(report.contains("Comprehensive3DSR"), "{report}");
    let dump = dsrdump(&sr_path);
    assert_eq!(pdf.instances.len(), 1, "{:#}", pdf.json);
    let pdf_path = orthanc.save_instance(&pdf.instances[0], dir.path(), "pdf-from-orthanc");
    let pdf_report = dciodvfy_clean(&pdf_path);
    assert!(pdf_report.contains("EncapsulatedPDF"), "{pdf_report}");
    let pdf_bytes = std::fs::read(&pdf_path).unwrap();
    assert!(pdf_bytes.windows(5).any(|w| w == b"%PDF-"), "the instance holds a PDF");

    // What drscreen says about the exam over REST.
    let c = http();
    let key = server.key("clinician");
    let list: serde_json::Value = c.get(format!("{}/v1/exams", server.url)).bearer_auth(&key).send().unwrap().json().unwrap();
    let exam_id = list["exams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["external_exam_ref"] == STUDY)
        .and_then(|e| e["id"].as_str())
        .unwrap_or_else(|| panic!("no exam for the study in {list:#}"))
        .to_string();
    let exam: serde_json::Value = c.get(format!("{}/v1/exams/{exam_id}", server.url)).bearer_auth(&key).send().unwrap().json().unwrap();
    let result = &exam["result"];

    // The SR that came through Orthanc says what the exam says: outcome, per-eye grade,
    // DME and gradability, and the algorithm (TID 4019) that produced them.
    let outcome = result["outcome"].as_str().unwrap();
    assert!(
        dump.contains(&format!("(,,\"Screening outcome\")=({outcome},99DRSCREEN,\"{}\")", outcome_meaning(outcome))),
        "{outcome}:\n{dump}"
    );
    let model = &result["model"];
    let eyes = result["eyes"].as_array().unwrap();
    let lateralities: Vec<&str> = eyes.iter().map(|e| e["laterality"].as_str().unwrap()).collect();
    assert!(lateralities.contains(&"right") && lateralities.contains(&"left"), "{lateralities:?}");
    for eye in eyes {
        let laterality = eye["laterality"].as_str().unwrap();
        let group = eye_group(&dump, laterality);
        let title = if laterality == "right" { "Right" } else { "Left" };
        assert!(group.contains(&format!("\"Algorithm Name\")=\"{}\"", model["name"].as_str().unwrap())), "{group}");
        assert!(group.contains(&format!("\"Algorithm Version\")=\"{}\"", model["version"].as_str().unwrap())), "{group}");
        assert!(group.contains(&format!("\"Algorithm Parameters\")=\"model_sha256={}\"", model["sha256"].as_str().unwrap())), "{group}");
        let gradable = eye["gradable"].as_bool().unwrap();
        assert!(group.contains(&format!("\"Gradable for diabetic retinopathy screening (AI)\")={}", yes_no(gradable))), "{group}");
        if let Some(grade) = eye["grade"].as_u64() {
            let meaning = ICDR_MEANINGS[grade as usize];
            assert!(group.contains(&format!("\"{title} eye Diabetic retinopathy severity level\")=(")), "{group}");
            assert!(group.contains(&format!(",LN,\"{meaning}\")")), "grade {grade} ({meaning}) in:\n{group}");
        }
        if let Some(dme) = eye["dme"].as_bool() {
            assert!(group.contains(&format!("\"Diabetic macular edema present (AI)\")={}", yes_no(dme))), "{group}");
        }
    }
    // The right eye's view, from the ViewCodeSequence Orthanc passed on.
    assert!(dump.contains("\"Image View\")=(111900,DCM,\"Macula centered\")"), "{dump}");
    // The SR went out once, and the outbox knows it.
    let sent: i64 = server.query("SELECT COUNT(*) FROM audit WHERE action = 'dicom.sr.sent'")[0][0].parse().unwrap();
    assert_eq!(sent, 1);
    eprintln!("Orthanc chain test took {} ms", started.elapsed().as_millis());
}
