//! The dcmtk / dicom3tools command-line peers as test helpers: run a tool, read its
//! output, and build Ophthalmic Photography files from the fixture JPEGs with `img2dcm`
//! (shared by the DICOM node tests and the Orthanc chain test).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::fixture;

/// Runs `program` to completion; panics when it cannot start (the peer is not installed).
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is required (install dcmtk / dicom3tools / python3; tests/run.sh does): {e}"))
}

/// A tool's stdout and stderr together.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `-k` keys for img2dcm that give an image the view DCM 111900 "Macula centered"
/// (ViewCodeSequence; PS3.16 CID 4207).
pub const MACULA_CENTERED: [&str; 3] = [
    "ViewCodeSequence[0].CodeValue=111900",
    "ViewCodeSequence[0].CodingSchemeDesignator=DCM",
    "ViewCodeSequence[0].CodeMeaning=Macula centered",
];

/// An Ophthalmic Photography 8-bit file made by dcmtk's img2dcm from a fixture JPEG
/// (encapsulated JPEG baseline); `uncompressed` decompresses it with dcmdjpeg.
pub fn op_file(dir: &Path, fixture_name: &str, laterality: &str, study: &str, uncompressed: bool) -> PathBuf {
    op_file_with(dir, fixture_name, laterality, study, uncompressed, "TEST-PID-1", &[])
}

/// [`op_file`] for a given PatientID.
pub fn op_file_of(dir: &Path, fixture_name: &str, laterality: &str, study: &str, uncompressed: bool, patient_id: &str) -> PathBuf {
    op_file_with(dir, fixture_name, laterality, study, uncompressed, patient_id, &[])
}

/// [`op_file_of`] with more img2dcm `-k` keys (`Attribute=value`, e.g. [`MACULA_CENTERED`]).
pub fn op_file_with(
    dir: &Path,
    fixture_name: &str,
    laterality: &str,
    study: &str,
    uncompressed: bool,
    patient_id: &str,
    extra_keys: &[&str],
) -> PathBuf {
    let jpeg = dir.join(format!("{fixture_name}.op.dcm"));
    let mut keys = vec![
        format!("ImageLaterality={laterality}"),
        format!("StudyInstanceUID={study}"),
        format!("PatientID={patient_id}"),
        "PatientName=Test^Patient".into(),
        "StudyDate=20260101".into(),
        "StudyTime=101010".into(),
        "StudyID=S1".into(),
        "AcquisitionDeviceTypeCodeSequence[0].CodeValue=409898007".into(),
        "AcquisitionDeviceTypeCodeSequence[0].CodingSchemeDesignator=SCT".into(),
        "AcquisitionDeviceTypeCodeSequence[0].CodeMeaning=Fundus camera".into(),
        "AnatomicRegionSequence[0].CodeValue=81745001".into(),
        "AnatomicRegionSequence[0].CodingSchemeDesignator=SCT".into(),
        "AnatomicRegionSequence[0].CodeMeaning=Eye".into(),
    ];
    keys.extend(extra_keys.iter().map(|k| k.to_string()));
    let mut args: Vec<String> = vec!["-oph".into()];
    for k in keys {
        args.push("-k".into());
        args.push(k);
    }
    args.push(fixture(fixture_name).display().to_string());
    args.push(jpeg.display().to_string());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run("img2dcm", &a);
    assert!(o.status.success(), "img2dcm: {}", text(&o));
    if !uncompressed {
        return jpeg;
    }
    let raw = dir.join(format!("{fixture_name}.raw.dcm"));
    let o = run("dcmdjpeg", &[jpeg.to_str().unwrap(), raw.to_str().unwrap()]);
    assert!(o.status.success(), "dcmdjpeg: {}", text(&o));
    raw
}

/// `dsrdump +Pl` (long values in full) of an SR file; panics with the output when it fails.
pub fn dsrdump(path: &Path) -> String {
    let o = run("dsrdump", &["+Pl", path.to_str().unwrap()]);
    let dump = text(&o);
    assert!(o.status.success(), "dsrdump {}: {dump}", path.display());
    dump
}

/// `dciodvfy` of a file: its report, after asserting it found no error.
pub fn dciodvfy_clean(path: &Path) -> String {
    let report = text(&run("dciodvfy", &[path.to_str().unwrap()]));
    assert!(!report.lines().any(|l| l.starts_with("Error")), "dciodvfy errors in {}:\n{report}", path.display());
    report
}
