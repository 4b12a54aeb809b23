//! The locked-model promises: the sha256 check refuses a tampered copy, the manifest is
//! validated, and a missing or wrong ONNX Runtime library is one clear error line.

mod common;

use std::process::Command;

use drscreen::model::{ModelError, ModelPackage};

fn copy_package(to: &std::path::Path) {
    for entry in std::fs::read_dir(common::model_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn committed_package_verifies() {
    let p = common::package();
    assert_eq!(p.manifest.name, "dr-synth");
    assert!(!p.manifest.clinical_use, "a synthetic-data model must not claim clinical use");
    assert_eq!(p.identity().sha256.len(), 64);
}

#[test]
fn tampered_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    copy_package(dir.path());
    let onnx = dir.path().join("model.onnx");
    let mut bytes = std::fs::read(&onnx).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&onnx, bytes).unwrap();
    match ModelPackage::load(dir.path()) {
        Err(ModelError::Integrity { expected, actual, .. }) => assert_ne!(expected, actual),
        other => panic!("tampered model accepted: {other:?}"),
    }
}

#[test]
fn manifest_with_unknown_recipe_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    copy_package(dir.path());
    let path = dir.path().join("manifest.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace("fov-crop-bilinear-v1", "something-else-v9");
    std::fs::write(&path, text).unwrap();
    let err = ModelPackage::load(dir.path()).unwrap_err();
    assert!(err.to_string().contains("something-else-v9"), "{err}");
}

#[test]
fn cli_reports_tampering_and_bad_runtime_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    copy_package(dir.path());
    std::fs::write(dir.path().join("model.onnx"), b"not a model").unwrap();
    let out = Command::new(common::bin()).args(["model", "inspect"]).arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && stdout.contains("integrity: FAILED"), "{stdout}");

    for bad in ["/nonexistent/libonnxruntime.so", common::fixture("labels.csv").to_str().unwrap()] {
        let out =
            Command::new(common::bin()).env("ORT_DYLIB_PATH", bad).args(["model", "inspect"]).arg(common::model_dir()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "not one line: {stderr}");
        assert!(stderr.contains("ORT_DYLIB_PATH"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn inspect_shows_identity_and_provider() {
    let out = Command::new(common::bin()).args(["model", "inspect"]).arg(common::model_dir()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("integrity OK") && stdout.contains("CPUExecutionProvider"), "{stdout}");
    assert!(stdout.contains(&common::package().manifest.file.sha256));
}
