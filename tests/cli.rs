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

/// `--help` shows each knob's default as `Config::default()` holds it: one source.
#[test]
fn help_shows_the_config_defaults() {
    let out = Command::new(common::bin()).arg("--help").env_clear().output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let help = String::from_utf8_lossy(&out.stdout);
    let defaults = drscreen::config::Config::default();
    // The 28 settings of release 0.1.0, the 10 limits and timeouts of issue 18, the
    // database and object store of issue 14, and the 9 DIPS settings of issue 15.
    assert_eq!(drscreen::config::knobs().len(), 49);
    for knob in drscreen::config::knobs() {
        // An entry runs from its flag's line to the next line that starts another option.
        let lines: Vec<&str> = help.lines().collect();
        let first = lines.iter().position(|l| l.contains(&format!("--{} <", knob.flag)));
        let first = first.unwrap_or_else(|| panic!("--{} not in help:\n{help}", knob.flag));
        let len = lines[first + 1..].iter().position(|l| l.trim_start().starts_with('-')).unwrap_or(lines.len() - first - 1);
        let entry = lines[first..=first + len].join("\n");
        let shown = format!("[default: {}]", knob.show(&defaults));
        assert!(entry.contains(&shown), "--{} shows no {shown}: {entry}", knob.flag);
        assert!(entry.contains(&format!("[env: {}", knob.env())), "{entry}");
    }
    assert!(help.contains("[default: 1] [env: DRSCREEN_MAX_BATCH"), "{help}");
    assert!(help.contains("[default: 0.1] [env: DRSCREEN_QA_RESCREEN_SHARE"), "{help}");
}

/// The range check on qa_rescreen_share holds whichever layer sets it, and the error
/// names where the bad value came from.
#[test]
fn out_of_range_settings_are_refused_from_file_env_and_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("drscreen.toml");
    std::fs::write(&file, "[review]\nqa_rescreen_share = 1.5\n").unwrap();
    let run = |args: &[&str], env: Option<(&str, &str)>| {
        let mut cmd = Command::new(common::bin());
        cmd.args(args).args(["keys", "revoke", "nope", "--data-dir"]).arg(dir.path().join("data"));
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let file_arg = file.to_str().unwrap();
    let err = run(&["--config", file_arg], None);
    assert!(err.contains("review.qa_rescreen_share must be between 0 and 1, got 1.5"), "{err}");
    assert!(err.contains("drscreen.toml"), "{err}");
    let err = run(&[], Some(("DRSCREEN_QA_RESCREEN_SHARE", "-0.2")));
    assert!(err.contains("from DRSCREEN_QA_RESCREEN_SHARE: review.qa_rescreen_share must be between 0 and 1, got -0.2"), "{err}");
    let err = run(&["--qa-rescreen-share", "NaN"], None);
    assert!(err.contains("from --qa-rescreen-share: review.qa_rescreen_share must be between 0 and 1"), "{err}");
    // A valid flag overrides the file's bad value: only the merged result is checked.
    let err = run(&["--config", file_arg, "--qa-rescreen-share", "0.5"], None);
    assert!(err.contains("no active key with id nope"), "{err}");
    std::fs::write(&file, "[dicom]\nsr_retry_initial_secs = 60.0\nsr_retry_max_secs = 30.0\n").unwrap();
    let err = run(&["--config", file_arg], None);
    assert!(err.contains("dicom.sr_retry_max_secs must be"), "{err}");
}

/// `keys create --name` stores a checked display name, `keys list` shows it (never a
/// secret), and a name with a control character or over the limit is refused before
/// anything is written.
#[test]
fn keys_carry_a_checked_display_name() {
    let dir = tempfile::tempdir().unwrap();
    let keys = |args: &[&str]| {
        let out = Command::new(common::bin()).arg("--data-dir").arg(dir.path()).arg("keys").args(args).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, out, err) = keys(&["create", "--role", "clinician", "--name", "  Dr Kari Nordmann "]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("created clinician key") && out.contains("for Dr Kari Nordmann"), "{out}");
    let secret = out.lines().last().unwrap().trim().to_string();
    assert!(secret.starts_with("drs_"), "{out}");
    let (code, _, err) = keys(&["create", "--role", "device"]);
    assert_eq!(code, Some(0), "{err}");

    for (bad, why) in [("Dr \u{1b}[31mEvil", "U+001B"), ("Dr \u{202e}Evil", "U+202E"), ("   ", "empty")] {
        let (code, _, err) = keys(&["create", "--role", "clinician", "--name", bad]);
        assert_eq!(code, Some(2), "{bad:?} accepted: {err}");
        assert!(err.contains(why), "{bad:?}: {err}");
    }
    let long = "x".repeat(drscreen::store::MAX_KEY_NAME_CHARS + 1);
    let (code, _, err) = keys(&["create", "--role", "clinician", "--name", &long]);
    assert_eq!(code, Some(2));
    assert!(err.contains("the limit is 100"), "{err}");

    let (code, list, err) = keys(&["list"]);
    assert_eq!(code, Some(0), "{err}");
    let rows: Vec<&str> = list.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "only the two valid keys were created:\n{list}");
    let named = rows.iter().find(|r| r.contains("clinician")).unwrap();
    assert!(named.trim_end().ends_with("Dr Kari Nordmann") && named.contains("active"), "{list}");
    let key_id = secret.split('_').nth(1).unwrap();
    assert!(named.starts_with(key_id), "{list}");
    assert!(rows.iter().any(|r| r.contains("device") && r.trim_end().ends_with('-')), "{list}");
    assert!(!list.contains(&secret) && !list.contains("drs_"), "keys list never shows a secret:\n{list}");
}

/// `drscreen migrate` reports the schema, and `drscreen gc` removes an image object no row
/// refers to once it is older than the grace period, keeps the exam's own images, and
/// lists without removing under `--dry-run`.
#[test]
fn migrate_and_gc_keep_referenced_images_and_remove_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| {
        let out = Command::new(common::bin()).arg("--data-dir").arg(dir.path()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let migrated = cli(&["migrate"]);
    assert!(migrated.contains(&format!("schema version {}", drscreen::store::SCHEMA_VERSION)), "{migrated}");
    assert!(cli(&["migrate"]).contains("schema is current"));

    let server = common::Server::start_in(dir.path(), &["--dicom-enabled", "false"]);
    let key = server.key("admin");
    let exam = common::upload_exam(&server, &key, &common::Exam::eyes("grade0_L.jpg", "grade3_R.jpg")).json();
    assert!(server.stop().success());
    // An object whose commit never happened: stored, then the process died.
    let orphan = drscreen::store::BlobStore::open(&drscreen::store::ObjectStoreUrl::File(dir.path().join("images")))
        .unwrap()
        .put(b"an upload whose rows never committed")
        .unwrap();

    let young = cli(&["gc"]);
    assert!(young.contains("removed 0 orphaned object(s)"), "a fresh object is spared: {young}");
    let listed = cli(&["gc", "--older-than-secs", "0", "--dry-run"]);
    assert!(listed.contains(&orphan) && listed.contains("would remove 1 orphaned object(s)"), "{listed}");
    let removed = cli(&["gc", "--older-than-secs", "0"]);
    assert!(removed.contains("removed 1 orphaned object(s)"), "{removed}");
    assert!(cli(&["gc", "--older-than-secs", "0", "--dry-run"]).contains("would remove 0"));

    let server = common::Server::start_in(dir.path(), &["--dicom-enabled", "false"]);
    for image in exam["image_ids"].as_array().unwrap() {
        let r = common::get(&server, &format!("/v1/images/{}", image.as_str().unwrap()), Some(&key));
        assert_eq!(r.status, 200, "the exam's own images are kept");
    }
}
