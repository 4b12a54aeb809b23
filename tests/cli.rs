//! The command line as a clinic would use it: grading a folder with broken files in it,
//! CSV output, and the validation report.

mod common;

use std::process::Command;

#[test]
fn grade_folder_reports_broken_files_and_grades_the_rest() {
    let out = Command::new(common::bin())
        .args(["grade", "--exams"])
        .arg(common::fixture("labels.csv"))
        .arg(common::fixture("grade1_R.jpg"))
        .arg(common::fixture("grade1_L.jpg"))
        .arg(common::fixture("broken"))
        .arg(common::fixture("broken/not_an_image.jpg"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for code in ["empty_input", "corrupt_image", "image_too_large", "unsupported_format"] {
        assert!(stderr.contains(code), "missing {code}: {stderr}");
    }
    let exams: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let exam02 = exams.iter().find(|e| e["exam_id"] == "exam02").expect("exam02 graded");
    assert_eq!(exam02["outcome"], "rescreen", "{exam02}");
    assert_eq!(exam02["recall_months"], 12);
    assert_eq!(exam02["images"].as_array().unwrap().len(), 2);
    assert_eq!(exam02["model"]["name"], "dr-synth");
    let broken: usize = exams.iter().map(|e| e["unreadable"].as_array().unwrap().len()).sum();
    assert_eq!(broken, 4);
}

#[test]
fn grade_csv_has_a_row_per_image() {
    let out = Command::new(common::bin())
        .args(["grade", "--format", "csv"])
        .arg(common::fixture("grade2_L.png"))
        .arg(common::fixture("ungradable_dark_R.jpg"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    let dark = rows.iter().find(|r| r[1].contains("ungradable_dark")).unwrap();
    assert_eq!(&dark[3], "false");
    assert!(!dark[4].is_empty(), "no reasons for the dark image");
}

#[test]
fn validate_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::bin()).arg("validate").arg(common::fixture("labels.csv")).arg("--out").arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["images"].as_u64(), Some(common::labels().len() as u64));
    assert!(json["quadratic_weighted_kappa"].as_f64().unwrap() > 0.5, "{json}");
    for f in ["report.md", "roc.png", "confusion.png"] {
        let bytes = std::fs::read(dir.path().join(f)).unwrap();
        assert!(bytes.len() > 100, "{f} is empty");
    }
    assert!(image::open(dir.path().join("roc.png")).is_ok());
}
