//! The DICOM node with real peers: dcmtk (img2dcm -oph, echoscu, storescu, storescp as
//! a stand-in PACS, dsrdump), dicom3tools (dciodvfy) and Python fhir.resources. Missing
//! peers fail these tests: CI installs them (tests/run.sh, .ci/run).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::dcmtk::{MACULA_CENTERED, dsrdump, op_file, op_file_of, op_file_with, run, text};
use common::{Image, Server, grade, http};

const STUDY: &str = "1.2.826.0.1.3680043.8.498.4242";

fn port_of(server: &Server) -> String {
    server.dicom_port.expect("the DICOM listener is enabled").to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Quotes a test-controlled value as an SQL string literal.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn study_exam(server: &Server, study: &str) -> Option<String> {
    let rows = server.query(&format!("SELECT exam_id FROM dicom_studies WHERE study_uid = {}", literal(study)));
    rows.into_iter().next().and_then(|r| r.into_iter().next()).filter(|id| !id.is_empty())
}

fn audit_count(server: &Server, action: &str) -> i64 {
    server.query(&format!("SELECT COUNT(*) FROM audit WHERE action = {}", literal(action)))[0][0].parse().unwrap()
}

#[test]
fn c_store_study_is_graded_reported_and_pushed_to_the_pacs() {
    let dir = tempfile::tempdir().unwrap();
    let pacs_port = free_port();
    let pacs_dir = dir.path().join("pacs");
    std::fs::create_dir_all(&pacs_dir).unwrap();
    let destination = format!("PACS@127.0.0.1:{pacs_port}");
    // The quiet window must outlast the gap between two storescu processes on a loaded CI
    // machine (2.5 s seen on 2 cores); otherwise the study is graded with one eye and the
    // second becomes a regrade, which the end of this test exercises on purpose.
    let server = Server::start(&[
        "--dicom-study-stable-secs",
        "6",
        "--sr-destination",
        &destination,
        "--sr-retry-initial-secs",
        "0.5",
        "--sr-retry-max-secs",
        "1",
    ]);
    let port = port_of(&server);
    let c = http();
    let key = server.key("clinician");

    // C-ECHO, and a wrong called AE title is rejected at association.
    let o = run("echoscu", &["-aec", "DRSCREEN", "127.0.0.1", &port]);
    assert!(o.status.success(), "echoscu: {}", text(&o));
    let o = run("echoscu", &["-aec", "NOTDRSCREEN", "127.0.0.1", &port]);
    assert!(!o.status.success());
    assert!(text(&o).contains("Called AE Title Not Recognized"), "{}", text(&o));

    // Right eye uncompressed (explicit little endian), left eye as JPEG baseline (-xy).
    // The right eye says it is macula centred (ViewCodeSequence): the SR carries the view.
    let right = op_file_with(dir.path(), "grade3_R.jpg", "R", STUDY, true, "TEST-PID-1", &MACULA_CENTERED);
    let left = op_file(dir.path(), "grade0_L.jpg", "L", STUDY, false);
    let started = Instant::now();
    let o = run("storescu", &["-aec", "DRSCREEN", "127.0.0.1", &port, right.to_str().unwrap()]);
    assert!(o.status.success(), "storescu: {}", text(&o));
    let o = run("storescu", &["-xy", "-aec", "DRSCREEN", "127.0.0.1", &port, left.to_str().unwrap()]);
    assert!(o.status.success(), "storescu -xy: {}", text(&o));
    let store_ms = started.elapsed().as_millis();
    // The same SOP Instance again: success, nothing new.
    let o = run("storescu", &["-aec", "DRSCREEN", "127.0.0.1", &port, right.to_str().unwrap()]);
    assert!(o.status.success(), "repeated storescu: {}", text(&o));
    assert_eq!(audit_count(&server, "dicom.instance.received"), 2);

    // A non-image SOP class is refused with 0x0122 (SOP class not supported).
    let dump = dir.path().join("pdf.dump");
    std::fs::write(
        &dump,
        "(0008,0016) UI =EncapsulatedPDFStorage\n(0008,0018) UI [1.2.826.0.1.3680043.8.498.99]\n(0020,000d) UI [1.2.826.0.1.3680043.8.498.98]\n(0020,000e) UI [1.2.826.0.1.3680043.8.498.97]\n(0008,0060) CS [DOC]\n",
    )
    .unwrap();
    let pdf = dir.path().join("pdf.dcm");
    assert!(run("dump2dcm", &["-g", dump.to_str().unwrap(), pdf.to_str().unwrap()]).status.success());
    let o = run("storescu", &["-v", "-aec", "DRSCREEN", "127.0.0.1", &port, pdf.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("SOPClassNotSupported"), "{}", text(&o));

    // The study is graded once quiet; the exam appears over REST with the right eyes.
    let exam_id = wait_for("the study's exam", Duration::from_secs(60), || study_exam(&server, STUDY));
    eprintln!("two C-STOREs took {store_ms} ms; exam {exam_id} after {} ms", started.elapsed().as_millis());
    let exam: serde_json::Value = c.get(format!("{}/v1/exams/{exam_id}", server.url)).bearer_auth(&key).send().unwrap().json().unwrap();
    assert_eq!(exam["external_exam_ref"], STUDY);
    assert_eq!(exam["patient_ref"], "TEST-PID-1");
    let lateralities: Vec<&str> = exam["result"]["images"].as_array().unwrap().iter().map(|i| i["laterality"].as_str().unwrap()).collect();
    assert_eq!(lateralities, ["right", "left"]);
    let eyes: Vec<&str> = exam["result"]["eyes"].as_array().unwrap().iter().map(|e| e["laterality"].as_str().unwrap()).collect();
    assert!(eyes.contains(&"right") && eyes.contains(&"left"), "{eyes:?}");
    assert_eq!(exam["result"]["images"][0]["image"]["format"], "dicom", "native pixels go to the engine decoded");
    assert_eq!(exam["result"]["images"][1]["image"]["format"], "jpeg");
    // The image and its heatmap are served from the stored frame.
    let image_id = exam["image_ids"][0].as_str().unwrap();
    let r = c.get(format!("{}/v1/images/{image_id}/heatmap.png", server.url)).bearer_auth(&key).send().unwrap();
    assert_eq!(r.status(), 200);

    // The SR: valid under dciodvfy, per-eye findings in dsrdump.
    let sr = c.get(format!("{}/v1/exams/{exam_id}/sr.dcm", server.url)).bearer_auth(&key).send().unwrap();
    assert_eq!(sr.status(), 200);
    let sr = sr.bytes().unwrap();
    eprintln!("SR size: {} bytes", sr.len());
    let sr_path = dir.path().join("sr.dcm");
    std::fs::write(&sr_path, &sr).unwrap();
    let o = run("dciodvfy", &[sr_path.to_str().unwrap()]);
    let report = text(&o);
    assert!(report.contains("Comprehensive3DSR"), "{report}");
    assert!(!report.lines().any(|l| l.starts_with("Error")), "dciodvfy errors:\n{report}");
    let dump = dsrdump(&sr_path);
    for needle in [
        "Imaging Measurement Report",
        "right eye",
        "left eye",
        "Right eye Diabetic retinopathy severity level",
        "Left eye Diabetic retinopathy severity level",
        "Diabetic macular edema",
        "AI RESULT - NOT FOR DIAGNOSTIC USE",
        // TID 4019 Algorithm Identification in each eye's measurement group.
        "<has concept mod TEXT:(,,\"Algorithm Name\")=\"dr-synth\">",
        "<has concept mod TEXT:(,,\"Algorithm Version\")=\"1.4.0\">",
        "<has concept mod TEXT:(,,\"Algorithm Parameters\")=\"model_sha256=",
        "<has concept mod TEXT:(,,\"Algorithm Parameters\")=\"preprocessing_recipe=fov-crop-bilinear-v1\">",
        "<has concept mod TEXT:(,,\"Algorithm Parameters\")=\"grade_rule=threshold-then-argmax-v1\">",
        // The operating thresholds of models/dr-synth/manifest.toml and the default quality cut-offs.
        "<has concept mod TEXT:(,,\"Algorithm Parameters\")=\"threshold_referable_dr=0.75\">",
        "<has concept mod TEXT:(,,\"Algorithm Parameters\")=\"threshold_dme=0.95\">",
        "<has concept mod TEXT:(,,\"Algorithm Parameters\")=\"threshold_gradable=0.6483\">",
        "<has concept mod TEXT:(,,\"Algorithm Parameters\")=\"quality_min_fov_coverage=0.75\">",
        // The right eye's image in the image library: its view (TID 1602, CID 4207).
        "<has acq context CODE:(,,\"Image View\")=(111900,DCM,\"Macula centered\")>",
    ] {
        assert!(dump.contains(needle), "dsrdump lacks {needle}:\n{dump}");
    }
    // dsrdump shows concept names only; the codes of TID 4019 (DCM 111001/111003/111002).
    let raw = text(&run("dcmdump", &["+P", "0008,0100", sr_path.to_str().unwrap()]));
    // Per eye: model sha256, recipe, grade rule, 3 thresholds, 6 quality cut-offs.
    for code in ["[111001]", "[111003]", "[111002]"] {
        assert_eq!(raw.matches(code).count(), if code == "[111002]" { 24 } else { 2 }, "{code} once per eye (parameters 12 times):\n{raw}");
    }
    // One Image View (DCM 111031): only the right eye's image says its view.
    assert_eq!(raw.matches("[111031]").count(), 1, "{raw}");
    assert_eq!(raw.matches("[111900]").count(), 1, "{raw}");

    // FHIR R4 (R4B models: same DiagnosticReport/Observation structure) parses.
    let fhir = c.get(format!("{}/v1/exams/{exam_id}/fhir", server.url)).bearer_auth(&key).send().unwrap();
    assert_eq!(fhir.status(), 200);
    let fhir_path = dir.path().join("report.json");
    std::fs::write(&fhir_path, fhir.bytes().unwrap()).unwrap();
    let o = run(
        "python3",
        &[
            "-c",
            "import json,sys\nfrom fhir.resources.R4B.diagnosticreport import DiagnosticReport\nr=DiagnosticReport.model_validate(json.load(open(sys.argv[1])))\nassert r.status=='final'\nprint(sorted(c.id for c in r.contained))",
            fhir_path.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "fhir.resources: {}", text(&o));
    let ids = String::from_utf8_lossy(&o.stdout).to_string();
    for id in ["dr-right", "dr-left", "quality-right", "quality-left", "ai-device"] {
        assert!(ids.contains(id), "{ids}");
    }

    // The SR push failed while the PACS was down (queued, audited), then gets through.
    wait_for("a failed SR push", Duration::from_secs(30), || (audit_count(&server, "dicom.sr.failed") > 0).then_some(()));
    let mut pacs = Command::new("storescp")
        .args(["-aet", "PACS", "-od", pacs_dir.to_str().unwrap(), &pacs_port.to_string()])
        .spawn()
        .expect("storescp");
    // The delivery is recorded once the PACS has both instances (SR, then the PDF report on
    // the same association); only then may the PACS go away.
    wait_for("the push to be recorded", Duration::from_secs(60), || (audit_count(&server, "dicom.sr.sent") == 1).then_some(()));
    let _ = pacs.kill();
    let _ = pacs.wait();
    let delivered = std::fs::read_dir(&pacs_dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("SR")))
        .expect("the SR at the PACS");
    let o = run("dsrdump", &[delivered.to_str().unwrap()]);
    assert!(text(&o).contains("left eye"), "{}", text(&o));
    // The PDF report went with the SR, as an Encapsulated PDF instance.
    let received: Vec<String> = std::fs::read_dir(&pacs_dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| text(&run("dcmdump", &["+P", "0008,0016", e.path().to_str().unwrap()])))
        .collect();
    assert_eq!(received.len(), 2, "{received:?}");
    assert!(received.iter().any(|d| d.contains("EncapsulatedPDFStorage")), "{received:?}");

    // A new image reopens the study: regraded into a new exam that supersedes the first.
    let more = op_file(dir.path(), "grade1_R.jpg", "R", STUDY, false);
    let o = run("storescu", &["-xy", "-aec", "DRSCREEN", "127.0.0.1", &port, more.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let regraded = wait_for("the regrade", Duration::from_secs(60), || study_exam(&server, STUDY).filter(|e| *e != exam_id));
    let exam: serde_json::Value = c.get(format!("{}/v1/exams/{regraded}", server.url)).bearer_auth(&key).send().unwrap().json().unwrap();
    assert_eq!(exam["result"]["images"].as_array().unwrap().len(), 3);
    assert_eq!(audit_count(&server, "dicom.study.regraded"), 1);
}

#[test]
fn calling_ae_allow_list_is_enforced() {
    let server = Server::start(&["--dicom-allowed-calling-aes", "CAMERA1,CAMERA2", "--dicom-ae-title", "SCREEN"]);
    let port = port_of(&server);
    let o = run("echoscu", &["-aet", "CAMERA2", "-aec", "SCREEN", "127.0.0.1", &port]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run("echoscu", &["-aet", "INTRUDER", "-aec", "SCREEN", "127.0.0.1", &port]);
    assert!(!o.status.success());
    assert!(text(&o).contains("Calling AE Title Not Recognized"), "{}", text(&o));
}

fn multipart(boundary: &str, parts: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (ct, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Type: {ct}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

#[test]
fn stow_rs_and_dicom_grading() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["--dicom-study-stable-secs", "1"]);
    let c = http();
    let key = server.key("device");
    let study = "1.2.826.0.1.3680043.8.498.5151";
    let right = std::fs::read(op_file(dir.path(), "grade2_R.jpg", "R", study, false)).unwrap();
    let left = std::fs::read(op_file(dir.path(), "grade1_L.jpg", "L", study, true)).unwrap();
    let ct = "multipart/related; type=\"application/dicom\"; boundary=drscreen-b";
    let stow = |body: Vec<u8>, content_type: &str| {
        c.post(format!("{}/dicomweb/studies", server.url)).bearer_auth(&key).header("content-type", content_type).body(body).send().unwrap()
    };

    // Two parts: both stored.
    let r = stow(multipart("drscreen-b", &[("application/dicom", right.clone()), ("application/dicom", left.clone())]), ct);
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/dicom+json");
    let doc: serde_json::Value = r.json().unwrap();
    assert_eq!(doc["00081199"]["Value"].as_array().unwrap().len(), 2, "{doc}");
    assert!(doc.get("00081198").is_none());

    // One good part (already stored: idempotent) and one bad part: 202 with a FailedSOPSequence entry.
    let r = stow(multipart("drscreen-b", &[("application/dicom", right.clone()), ("application/dicom", b"not dicom at all".to_vec())]), ct);
    assert_eq!(r.status(), 202);
    let doc: serde_json::Value = r.json().unwrap();
    assert_eq!(doc["00081199"]["Value"].as_array().unwrap().len(), 1);
    let failed = doc["00081198"]["Value"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["00081197"]["Value"][0], 0xC000);

    // Nothing storable: 409. Wrong media type: 415.
    let r = stow(multipart("drscreen-b", &[("application/dicom", b"junk".to_vec())]), ct);
    assert_eq!(r.status(), 409);
    let r = stow(b"{}".to_vec(), "application/json");
    assert_eq!(r.status(), 415);
    let r = stow(
        multipart("drscreen-b", &[("application/dicom", right.clone())]),
        "multipart/related; type=\"application/dicom+xml\"; boundary=drscreen-b",
    );
    assert_eq!(r.status(), 415);

    // The study becomes an exam owned by the uploading key.
    let exam_id = wait_for("the STOW study's exam", Duration::from_secs(60), || study_exam(&server, study));
    let exam: serde_json::Value = c.get(format!("{}/v1/exams/{exam_id}", server.url)).bearer_auth(&key).send().unwrap().json().unwrap();
    assert_eq!(exam["result"]["images"].as_array().unwrap().len(), 2);

    // POST /v1/grade with application/dicom: laterality from the object.
    let r = grade(&server, &key, &Image::bytes(left, "application/dicom"));
    assert_eq!(r.status, 200);
    let finding = r.json();
    assert_eq!(finding["laterality"], "left");
    assert_eq!(finding["image"]["format"], "dicom");
    let r = grade(&server, &key, &Image::bytes(b"junk".to_vec(), "application/dicom"));
    assert_eq!(r.status, 422);
    let _ = server.stop();
}

#[test]
fn a_study_never_mixes_two_patients_or_two_sources() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["--dicom-study-stable-secs", "1"]);
    let c = http();
    let key = server.key("device");
    let study = "1.2.826.0.1.3680043.8.498.6262";
    let ct = "multipart/related; type=\"application/dicom\"; boundary=drscreen-b";
    let stow = |file: &Path| {
        let body = multipart("drscreen-b", &[("application/dicom", std::fs::read(file).unwrap())]);
        c.post(format!("{}/dicomweb/studies", server.url)).bearer_auth(&key).header("content-type", ct).body(body).send().unwrap()
    };
    // The key opens the study for patient TEST-PID-1.
    let r = stow(&op_file(dir.path(), "grade2_R.jpg", "R", study, false));
    assert_eq!(r.status(), 200);
    // Another patient in the same study, from the same key: 409, FailureReason 0xA900.
    let r = stow(&op_file_of(dir.path(), "grade1_L.jpg", "L", study, false, "OTHER-PATIENT"));
    assert_eq!(r.status(), 409);
    let doc: serde_json::Value = r.json().unwrap();
    assert_eq!(doc["00081198"]["Value"][0]["00081197"]["Value"][0], 0xA900, "{doc}");
    // The same patient from another source (a C-STORE calling AE): refused with 0xA900.
    let left = op_file(dir.path(), "grade0_L.jpg", "L", study, false);
    let o = run("storescu", &["-v", "-xy", "-aec", "DRSCREEN", "127.0.0.1", &port_of(&server), left.to_str().unwrap()]);
    assert!(text(&o).contains("DataSetDoesNotMatchSOPClass") || text(&o).to_ascii_lowercase().contains("0xa900"), "{}", text(&o));
    assert_eq!(audit_count(&server, "dicom.instance.refused"), 2);
    // The exam holds the one instance that belongs to the study.
    let exam_id = wait_for("the study's exam", Duration::from_secs(60), || study_exam(&server, study));
    let exam: serde_json::Value = c.get(format!("{}/v1/exams/{exam_id}", server.url)).bearer_auth(&key).send().unwrap().json().unwrap();
    assert_eq!(exam["patient_ref"], "TEST-PID-1");
    assert_eq!(exam["result"]["images"].as_array().unwrap().len(), 1, "{exam}");
    let _ = server.stop();
}
