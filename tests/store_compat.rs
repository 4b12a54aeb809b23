//! A database written by the previous release (`tests/data/store-0.1.0.sqlite3`, made by
//! `tests/data/make-store-fixture.sh` with that release's binary) opens and reads back
//! typed: exams, images, reviews, agreement pairs and DICOM sources, and every exam's
//! result serialises to exactly the JSON stored in its row (the wire format is unchanged).

use drscreen::grading::{ExamOutcome, Laterality};
use drscreen::review::ReviewState;
use drscreen::store::{ExamFilter, Store};

fn open_copy() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/store-0.1.0.sqlite3");
    std::fs::copy(fixture, dir.path().join("drscreen.sqlite3")).unwrap();
    let store = Store::open(dir.path()).expect("the previous release's database opens");
    (dir, store)
}

#[test]
fn a_database_from_the_previous_release_reads_back_typed_and_unchanged() {
    let (dir, store) = open_copy();
    let exams = store.list_exams(&ExamFilter::default()).unwrap();
    assert_eq!(exams.len(), 3, "{exams:#?}");

    // The stored JSON is what the typed result serialises to, field for field.
    let raw = rusqlite::Connection::open(dir.path().join("drscreen.sqlite3")).unwrap();
    for exam in &exams {
        let stored: String = raw.query_row("SELECT result_json FROM exams WHERE id = ?1", [&exam.id], |r| r.get(0)).unwrap();
        // Byte for byte: the typed result written back is the row the old release wrote,
        // and the API shows the exam as it did.
        assert_eq!(serde_json::to_value(&exam.result).unwrap().to_string(), stored, "exam {}", exam.id);
        let api = serde_json::to_value(exam).unwrap();
        assert_eq!(api["result"].to_string(), stored);
        assert_eq!(exam.outcome, exam.result.outcome);
        let images = store.exam_images(&exam.id).unwrap();
        assert_eq!(images.len(), exam.result.images.len());
        for (image, finding) in images.iter().zip(&exam.result.images) {
            assert_eq!(&image.finding, finding);
            assert_eq!(image.laterality, finding.laterality);
        }
    }

    let http = exams.iter().find(|e| e.external_exam_ref.as_deref() == Some("ACC-COMPAT-1")).expect("the HTTP exam");
    assert!(http.reviewed);
    assert_eq!(http.result.eyes.iter().map(|e| e.laterality).collect::<Vec<_>>(), [Laterality::Right, Laterality::Left]);
    let reviews = store.reviews(&http.id).unwrap();
    assert_eq!(reviews.len(), 1);
    assert_eq!((reviews[0].state, reviews[0].outcome), (ReviewState::Signed, Some(ExamOutcome::UrgentReferral)));
    assert_eq!(reviews[0].outcome_by_rule, ExamOutcome::UrgentReferral);
    assert_eq!(reviews[0].outcome_reason, None, "a review from before the outcome_reason column reads it as absent");
    let (n, pairs) = store.agreement_pairs(10).unwrap();
    assert_eq!((n, pairs.len()), (1, 2));

    let ungradable = exams.iter().find(|e| e.outcome == ExamOutcome::Ungradable).expect("the ungradable exam");
    assert!(ungradable.flagged && !ungradable.result.images[0].quality.gradable);

    let dicom = exams.iter().find(|e| e.patient_ref.as_deref() == Some("P-COMPAT-2")).expect("the DICOM exam");
    let sources = store.exam_sources(&dicom.id).unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0].study_uid, "1.2.826.0.1.3680043.10.1024.1");
    assert_eq!(dicom.result.eyes[0].laterality, Laterality::Left);
}
