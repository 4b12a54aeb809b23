//! The exam's PDF report: `GET /v1/exams/{id}/report.pdf` from a real `drscreen serve`,
//! read back with poppler's `pdftotext`, `pdffonts` and `pdfinfo` (the AI result, the
//! disclaimer, embedded fonts, Norwegian letters, then the signed clinician review that
//! supersedes it; roles and unknown ids as for the exam itself); the report drawn directly
//! (one page however many images, the same bytes for the same input); and the report as a
//! DICOM Encapsulated PDF instance for a study that came in by DICOM, checked by
//! dicom3tools' `dciodvfy`. Missing tools fail the test with how to install them.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Exam, Server, fixture, http, upload_exam};
use drscreen::grading::Laterality;
use drscreen::interop::pdf::{self, DISCLAIMER, ReportInput, dme_words, grade_words, outcome_words};
use drscreen::store::StoredExam;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed ({e}); install poppler-utils and dicom3tools (tests/run.sh does)"))
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Writes `pdf` under `dir` and returns its path.
fn save(dir: &Path, name: &str, pdf: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pdf).unwrap();
    // DRSCREEN_TEST_KEEP_PDF=DIR keeps a copy to look at.
    if let Some(keep) = std::env::var_os("DRSCREEN_TEST_KEEP_PDF") {
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&path, Path::new(&keep).join(name)).unwrap();
    }
    path
}

/// The PDF's text as pdftotext reads it, with every run of white space made one space
/// (lines wrapped on the page join up again).
fn pdf_text(path: &Path) -> String {
    let o = run("pdftotext", &[path.to_str().unwrap(), "-"]);
    assert!(o.status.success(), "pdftotext: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).split_whitespace().collect::<Vec<_>>().join(" ")
}

fn page_count(path: &Path) -> usize {
    let o = run("pdfinfo", &[path.to_str().unwrap()]);
    assert!(o.status.success(), "pdfinfo: {}", text(&o));
    let info = String::from_utf8_lossy(&o.stdout).to_string();
    info.lines().find_map(|l| l.strip_prefix("Pages:")).and_then(|n| n.trim().parse().ok()).unwrap_or_else(|| panic!("{info}"))
}

/// Every font pdffonts lists is embedded; returns the font names.
fn embedded_fonts(path: &Path) -> Vec<String> {
    let o = run("pdffonts", &[path.to_str().unwrap()]);
    assert!(o.status.success(), "pdffonts: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    // name, type (one or two words), encoding, emb, sub, uni, object number, generation.
    let rows: Vec<Vec<&str>> = out.lines().skip(2).map(|l| l.split_whitespace().collect()).filter(|r: &Vec<&str>| r.len() >= 7).collect();
    assert!(!rows.is_empty(), "no fonts:\n{out}");
    for row in &rows {
        assert_eq!(row[row.len() - 5], "yes", "a font is not embedded:\n{out}");
    }
    rows.iter().map(|r| r[0].to_string()).collect()
}

fn get_pdf(server: &Server, key: &str, exam: &str) -> reqwest::blocking::Response {
    http().get(format!("{}/v1/exams/{exam}/report.pdf", server.url)).bearer_auth(key).send().unwrap()
}

/// Checks a report's bytes (magic, size) and returns them.
fn pdf_bytes(r: reqwest::blocking::Response) -> Vec<u8> {
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[reqwest::header::CONTENT_TYPE], "application/pdf");
    let bytes = r.bytes().unwrap().to_vec();
    assert!(bytes.starts_with(b"%PDF-"), "not a PDF");
    eprintln!("report.pdf: {} bytes", bytes.len());
    assert!(bytes.len() < 500 * 1024, "{} bytes", bytes.len());
    bytes
}

/// The eye of `result` with laterality `side`.
fn eye<'a>(result: &'a Value, side: &str) -> &'a Value {
    result["eyes"].as_array().unwrap().iter().find(|e| e["laterality"] == side).unwrap()
}

#[test]
fn report_pdf_shows_the_ai_result_and_then_the_signed_review() {
    let server = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (device, other_device) = (server.key("device"), server.key("device"));
    let out = server.cli().args(["keys", "create", "--role", "clinician", "--name", "Dr Kari Nordmann-Ærø"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let clinician = String::from_utf8_lossy(&out.stdout).lines().last().unwrap().trim().to_string();

    let exam = Exam::new()
        .metadata(r#"{"external_exam_ref":"ACC-PDF-æøå","patient_ref":"Pasient Ødegård-Åsen"}"#)
        .image("right", "grade0_R.jpg")
        .image("left", "grade4_L.jpg");
    let r = upload_exam(&server, &device, &exam);
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let exam = r.json();
    let id = exam["id"].as_str().unwrap().to_string();
    let result = &exam["result"];

    // The AI result, as the submitting device reads it.
    let path = save(dir.path(), "ai.pdf", &pdf_bytes(get_pdf(&server, &device, &id)));
    assert_eq!(page_count(&path), 1);
    let fonts = embedded_fonts(&path);
    assert!(fonts.iter().all(|f| f.contains("DejaVuSans")), "{fonts:?}");
    let t = pdf_text(&path);
    for wanted in [
        DISCLAIMER,
        "Pasient Ødegård-Åsen",
        "ACC-PDF-æøå",
        id.as_str(),
        outcome_words(drscreen::grading::ExamOutcome::parse(result["outcome"].as_str().unwrap()).unwrap()),
        result["model"]["sha256"].as_str().unwrap(),
        result["model"]["name"].as_str().unwrap(),
        "Right eye (OD)",
        "Left eye (OS)",
        "Clinician review: none signed",
    ] {
        assert!(t.contains(wanted), "{wanted:?} missing from:\n{t}");
    }
    for side in ["right", "left"] {
        let e = eye(result, side);
        let grade = e["grade"].as_u64().map(|g| g as u8);
        assert!(t.contains(&format!("DR grade: {}", grade_words(grade))), "{side} grade missing from:\n{t}");
        assert!(t.contains(&format!("Macular oedema: {}", dme_words(e["dme"].as_bool()))), "{side} DME missing from:\n{t}");
    }
    match result["recall_months"].as_u64() {
        Some(m) => assert!(t.contains(&format!("Recall interval: {m} months")), "{t}"),
        None => assert!(t.contains("Recall interval: none"), "{t}"),
    }
    assert!(!t.contains("Clinician review (signed)"), "{t}");

    // The same report is the FHIR DiagnosticReport's presentedForm.
    let fhir: Value = http().get(format!("{}/v1/exams/{id}/fhir", server.url)).bearer_auth(&device).send().unwrap().json().unwrap();
    let form = &fhir["presentedForm"][0];
    assert_eq!(form["contentType"], "application/pdf", "{fhir}");
    let data = form["data"].as_str().unwrap();
    assert!(data.starts_with("JVBERi0"), "base64 of %PDF-: {}", &data[..20.min(data.len())]);

    // Who may read it: as for the exam itself.
    assert!(pdf_bytes(get_pdf(&server, &clinician, &id)).len() > 1000);
    for (key, path) in [(&other_device, id.as_str()), (&device, "nope"), (&clinician, "nope")] {
        let r = get_pdf(&server, key, path);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.json::<Value>().unwrap()["code"], "not_found");
    }
    let r = http().get(format!("{}/v1/exams/{id}/report.pdf", server.url)).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A clinician signs a review: the report shows it, and that it supersedes the AI result.
    let review = json!({
        "eyes": {"right": {"grade": 3, "dme": true}, "left": {"grade": 1, "dme": false}},
        "outcome": "urgent_referral",
        "note": "Blødninger i alle fire kvadranter.",
        "sign": true,
    });
    let r = http().post(format!("{}/v1/exams/{id}/reviews", server.url)).bearer_auth(&clinician).json(&review).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let signed: Value = r.json().unwrap();
    let path = save(dir.path(), "signed.pdf", &pdf_bytes(get_pdf(&server, &device, &id)));
    assert_eq!(page_count(&path), 1);
    embedded_fonts(&path);
    let t = pdf_text(&path);
    for wanted in [
        "Clinician review (signed) - supersedes the AI result",
        "the signed review supersedes the AI result",
        "Dr Kari Nordmann-Ærø",
        signed["reviewer"].as_str().unwrap(),
        &pdf::display_time(signed["signed_at"].as_str().unwrap()),
        &format!("Right eye (OD): DR grade {}; macular oedema present", grade_words(Some(3))),
        &format!("Left eye (OS): DR grade {}; macular oedema absent", grade_words(Some(1))),
        "Outcome: Urgent referral",
        "Blødninger i alle fire kvadranter.",
        "AI result (superseded by the signed review above)",
        DISCLAIMER,
        result["model"]["sha256"].as_str().unwrap(),
    ] {
        assert!(t.contains(wanted), "{wanted:?} missing from:\n{t}");
    }
}

/// A graded exam built in-process from fixture images (laterality, fixture).
fn graded_exam(images: &[(Laterality, &str)]) -> StoredExam {
    let screener = common::screener();
    let findings =
        images.iter().map(|(l, name)| screener.grade_blocking(std::fs::read(fixture(name)).unwrap(), *l, None).unwrap()).collect();
    let result = screener.exam(findings);
    StoredExam {
        id: "pdf-direct".into(),
        created_at: "2026-11-30T14:05:00.000Z".into(),
        submitted_by: "test".into(),
        external_exam_ref: Some("ACC-1".into()),
        patient_ref: Some("P-æøå-ÆØÅ".into()),
        outcome: result.outcome,
        flagged: result.flagged,
        reviewed: false,
        image_ids: (0..images.len()).map(|i| format!("img-{i}")).collect(),
        result,
    }
}

/// Many images stay on one page (thumbnails capped per eye, the rest counted), an image
/// without a thumbnail is marked, and the same input gives the same bytes.
#[test]
fn report_stays_on_one_page_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let exam = graded_exam(&[
        (Laterality::Right, "grade0_R.jpg"),
        (Laterality::Right, "grade1_R.jpg"),
        (Laterality::Right, "grade3_R.jpg"),
        (Laterality::Right, "ungradable_dark_R.jpg"),
        (Laterality::Left, "grade0_L.jpg"),
        (Laterality::Unspecified, "grade1_L.jpg"),
    ]);
    assert_eq!(pdf::thumbnail_images(&exam), vec![0, 1, 4, 5]);
    let thumbnails = BTreeMap::new();
    let input = ReportInput { exam: &exam, review: None, thumbnails: &thumbnails, generated_at: "2026-11-30T15:00:00Z" };
    let a = pdf::exam_report(&input).unwrap();
    assert_eq!(a, pdf::exam_report(&input).unwrap(), "the same input must give the same bytes");
    let path = save(dir.path(), "many.pdf", &a);
    assert_eq!(page_count(&path), 1);
    embedded_fonts(&path);
    let t = pdf_text(&path);
    for wanted in ["+ 2 more image(s) of this eye not shown", "not available", "P-æøå-ÆØÅ", "Eye not given", "2026-11-30 15:00 UTC"] {
        assert!(t.contains(wanted), "{wanted:?} missing from:\n{t}");
    }
    assert!(!t.contains("did not fit"), "{t}");
}

/// An Ophthalmic Photography file made by dcmtk's img2dcm from a fixture JPEG.
fn op_file(dir: &Path, fixture_name: &str, laterality: &str, study: &str) -> Vec<u8> {
    let out = dir.join(format!("{fixture_name}.op.dcm"));
    let keys = [
        format!("ImageLaterality={laterality}"),
        format!("StudyInstanceUID={study}"),
        "PatientID=TEST-PID-PDF".into(),
        "PatientName=Ødegård^Åse".into(),
        "SpecificCharacterSet=ISO_IR 192".into(),
        "PatientBirthDate=19600101".into(),
        "StudyDate=20260101".into(),
        "StudyTime=101010".into(),
        "StudyID=S1".into(),
        "AccessionNumber=ACC-PDF".into(),
        "AcquisitionDeviceTypeCodeSequence[0].CodeValue=409898007".into(),
        "AcquisitionDeviceTypeCodeSequence[0].CodingSchemeDesignator=SCT".into(),
        "AcquisitionDeviceTypeCodeSequence[0].CodeMeaning=Fundus camera".into(),
        "AnatomicRegionSequence[0].CodeValue=81745001".into(),
        "AnatomicRegionSequence[0].CodingSchemeDesignator=SCT".into(),
        "AnatomicRegionSequence[0].CodeMeaning=Eye".into(),
    ];
    let mut args: Vec<String> = vec!["-oph".into()];
    for k in keys {
        args.push("-k".into());
        args.push(k);
    }
    args.push(fixture(fixture_name).display().to_string());
    args.push(out.display().to_string());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run("img2dcm", &a);
    assert!(o.status.success(), "img2dcm: {}", text(&o));
    std::fs::read(out).unwrap()
}

/// A study received over DICOM: its report as an Encapsulated PDF instance is valid under
/// dciodvfy, sits in the source study with the patient copied, carries the PDF, and is the
/// same instance (same bytes) when built again.
#[test]
fn encapsulated_pdf_for_a_dicom_study_is_valid() {
    use dicom_dictionary_std::tags;
    use drscreen::interop::{encapsulated_pdf, sr};

    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let store = common::backend::StoreTarget::fresh().open(data.path());
    let service = drscreen::service::ScreeningService::new(common::screener().clone(), store, drscreen::config::Config::default().exams);
    let study = "1.2.826.0.1.3680043.8.498.424242";
    for (name, lat) in [("grade0_R.jpg", "R"), ("grade4_L.jpg", "L")] {
        let ingested = service.ingest_part10("test-source", "stow-rs", &op_file(dir.path(), name, lat, study)).unwrap();
        assert!(ingested.new);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    assert_eq!(runtime.block_on(service.grade_due_studies(0.0, None)).unwrap(), 1);
    let exams = service.store.list_exams(&Default::default()).unwrap();
    let exam = exams.first().unwrap();

    let file = service.exam_pdf_dicom(exam).unwrap();
    let bytes = sr::to_bytes(&file).unwrap();
    assert_eq!(bytes, sr::to_bytes(&service.exam_pdf_dicom(exam).unwrap()).unwrap(), "a resend must be the same instance");
    let text_of = |tag| file.element(tag).unwrap().to_str().unwrap().trim_end_matches(['\0', ' ']).to_string();
    assert_eq!(text_of(tags::SOP_CLASS_UID), encapsulated_pdf::ENCAPSULATED_PDF);
    assert_eq!(text_of(tags::SOP_INSTANCE_UID), encapsulated_pdf::sop_instance_uid(&exam.id, 0));
    assert_eq!(text_of(tags::STUDY_INSTANCE_UID), study);
    assert_eq!(text_of(tags::PATIENT_ID), "TEST-PID-PDF");
    assert_eq!(text_of(tags::PATIENT_NAME), "Ødegård^Åse");
    assert_eq!(text_of(tags::ACCESSION_NUMBER), "ACC-PDF");
    assert_eq!(text_of(tags::MIME_TYPE_OF_ENCAPSULATED_DOCUMENT), "application/pdf");
    assert_eq!(text_of(tags::BURNED_IN_ANNOTATION), "YES");
    let path = save(dir.path(), "report.dcm", &bytes);
    let o = run("dciodvfy", &[path.to_str().unwrap()]);
    let report = text(&o);
    assert!(report.contains("EncapsulatedPDF"), "{report}");
    assert!(!report.lines().any(|l| l.starts_with("Error")), "dciodvfy errors:\n{report}");

    // The document is the report.
    let document = file.element(tags::ENCAPSULATED_DOCUMENT).unwrap().to_bytes().unwrap().to_vec();
    let pdf_path = save(dir.path(), "from-dicom.pdf", &document);
    let t = pdf_text(&pdf_path);
    assert!(t.contains(DISCLAIMER) && t.contains("TEST-PID-PDF") && t.contains(study), "{t}");
}
