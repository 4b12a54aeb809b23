//! Numbered schema migrations. Each runs once, in order, inside a transaction that also
//! bumps `PRAGMA user_version`; never edit a released migration, append a new one.

use rusqlite::Connection;

const MIGRATIONS: [&str; 5] = [
    // 1: exams, images, API keys, append-only audit log.
    "CREATE TABLE exams (
        id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        submitted_by TEXT NOT NULL,
        external_exam_ref TEXT,
        patient_ref TEXT,
        outcome TEXT NOT NULL,
        flagged INTEGER NOT NULL,
        reviewed INTEGER NOT NULL DEFAULT 0,
        model_sha256 TEXT NOT NULL,
        result_json TEXT NOT NULL
    );
    CREATE INDEX exams_by_time ON exams(created_at);
    CREATE INDEX exams_by_outcome ON exams(outcome, created_at);
    CREATE TABLE images (
        id TEXT PRIMARY KEY,
        exam_id TEXT NOT NULL REFERENCES exams(id),
        idx INTEGER NOT NULL,
        laterality TEXT NOT NULL,
        view TEXT,
        sha256 TEXT NOT NULL,
        media_type TEXT NOT NULL,
        finding_json TEXT NOT NULL,
        cam BLOB NOT NULL,
        cam_h INTEGER NOT NULL,
        cam_w INTEGER NOT NULL
    );
    CREATE INDEX images_by_exam ON images(exam_id, idx);
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        object TEXT,
        detail TEXT
    );
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
    // 2: the DICOM node: studies (patient identifiers stored, never logged), received
    // instances (unique SOP Instance UID: receiving twice is idempotent) and their frames,
    // the instances each exam graded, and the durable outbox of SR pushes.
    "CREATE TABLE dicom_studies (
        study_uid TEXT PRIMARY KEY,
        submitted_by TEXT NOT NULL,
        patient_id TEXT,
        patient_name TEXT,
        first_received_at TEXT NOT NULL,
        last_received_at TEXT NOT NULL,
        last_received_unix REAL NOT NULL,
        last_seq INTEGER NOT NULL,
        graded_seq INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        exam_id TEXT REFERENCES exams(id)
    );
    CREATE INDEX dicom_studies_pending ON dicom_studies(graded_seq, last_seq);
    CREATE TABLE dicom_instances (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        sop_instance_uid TEXT NOT NULL UNIQUE,
        sop_class_uid TEXT NOT NULL,
        study_uid TEXT NOT NULL REFERENCES dicom_studies(study_uid),
        series_uid TEXT NOT NULL,
        laterality TEXT NOT NULL,
        transfer_syntax TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        received_at TEXT NOT NULL,
        received_via TEXT NOT NULL
    );
    CREATE INDEX dicom_instances_by_study ON dicom_instances(study_uid, seq);
    CREATE TABLE dicom_frames (
        sop_instance_uid TEXT NOT NULL REFERENCES dicom_instances(sop_instance_uid),
        frame INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        media_type TEXT NOT NULL,
        PRIMARY KEY (sop_instance_uid, frame)
    );
    CREATE TABLE dicom_exam_sources (
        exam_id TEXT NOT NULL REFERENCES exams(id),
        idx INTEGER NOT NULL,
        sop_instance_uid TEXT NOT NULL REFERENCES dicom_instances(sop_instance_uid),
        frame INTEGER NOT NULL,
        PRIMARY KEY (exam_id, idx)
    );
    CREATE TABLE sr_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        exam_id TEXT NOT NULL REFERENCES exams(id),
        destination TEXT NOT NULL,
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_unix REAL NOT NULL,
        last_error TEXT,
        sent_at TEXT
    );
    CREATE INDEX sr_outbox_due ON sr_outbox(sent_at, next_attempt_unix);",
    // 3: clinician reviews (versioned; a signed version is locked) and review-page sessions.
    "CREATE TABLE reviews (
        exam_id TEXT NOT NULL REFERENCES exams(id),
        version INTEGER NOT NULL,
        reviewer TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        signed_at TEXT,
        amends INTEGER,
        amendment_reason TEXT,
        body_json TEXT NOT NULL,
        PRIMARY KEY (exam_id, version)
    );
    CREATE INDEX reviews_by_sign_time ON reviews(signed_at);
    CREATE TRIGGER reviews_signed_are_locked BEFORE UPDATE ON reviews WHEN OLD.signed_at IS NOT NULL
        BEGIN SELECT RAISE(ABORT, 'a signed review is locked; amend it instead'); END;
    CREATE TRIGGER reviews_no_delete BEFORE DELETE ON reviews BEGIN SELECT RAISE(ABORT, 'reviews are never deleted'); END;
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        key_id TEXT NOT NULL REFERENCES api_keys(id),
        csrf TEXT NOT NULL,
        created_at TEXT NOT NULL,
        last_seen_unix INTEGER NOT NULL
    );",
    // 4: the reason for signing an outcome less urgent than the clinician's own grades
    // imply. A new nullable column: rows written before it read as NULL and are not
    // rewritten (adding a column fires no UPDATE, so the signed-row lock is untouched).
    "ALTER TABLE reviews ADD COLUMN outcome_reason TEXT;",
    // ---- branch `context` (issue 16, who and what): its own entry; renumber on merge if
    // another branch also added migration 5. ----
    // 5: a display name for an API key ("Dr Kari Nordmann"), shown on the review pages
    // instead of the bare key id. Nullable: keys created before it show their id as before.
    // The index serves the worklist's patient filter and the case page's earlier exams.
    "ALTER TABLE api_keys ADD COLUMN name TEXT;
    CREATE INDEX exams_by_patient ON exams(patient_ref, created_at);",
];

/// Brings the schema up to date.
pub fn apply(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
