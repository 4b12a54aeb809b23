//! Numbered schema migrations, one list per engine with the same numbers, so a version
//! means the same schema on both. Each runs once, in order, inside a transaction that also
//! records it (`PRAGMA user_version` on SQLite, `schema_migrations` on PostgreSQL); never
//! edit a released migration, append a new one to both lists.
//!
//! PostgreSQL: replicas starting together take a session advisory lock first, so exactly
//! one applies the migrations and the others find them done. Integers are BIGINT (the
//! store binds i64), text that is compared or ordered is `COLLATE "C"` so byte order, as
//! in SQLite, decides (timestamps, ids), and the append-only and signed-review rules are
//! triggers as on SQLite.

use rusqlite::Connection;

use super::StoreError;

const MIGRATIONS: [&str; 7] = [
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
    // 6: leases for background work that must run once across replicas: the replica
    // grading a study or sending an SR, and until when (unix seconds) it holds it.
    "ALTER TABLE dicom_studies ADD COLUMN lease_owner TEXT;
    ALTER TABLE dicom_studies ADD COLUMN lease_until REAL;
    ALTER TABLE sr_outbox ADD COLUMN lease_owner TEXT;
    ALTER TABLE sr_outbox ADD COLUMN lease_until REAL;",
    // 7: one outbox of deliveries for every destination (issue 15): the SR outbox gains a
    // destination `kind` ('dicom' = SR (+ PDF) by C-STORE, 'dips' = the EHR's
    // $append-retina-ai-result), a `state` (pending -> delivered | failed; a failed row is
    // kept for an admin, never dropped) and what the destination answered (`result`).
    // A DIPS examination gets one delivery row ever (the append is not idempotent), hence
    // the partial unique index. `exams.sectra_study_id` is how a DIPS examination finds
    // its exam: the source study's AccessionNumber, or an HTTP exam's external_exam_ref.
    "ALTER TABLE sr_outbox RENAME TO outbox;
    ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'dicom';
    ALTER TABLE outbox ADD COLUMN state TEXT NOT NULL DEFAULT 'pending';
    ALTER TABLE outbox ADD COLUMN result TEXT;
    ALTER TABLE outbox ADD COLUMN updated_at TEXT;
    UPDATE outbox SET state = 'delivered', updated_at = sent_at WHERE sent_at IS NOT NULL;
    DROP INDEX sr_outbox_due;
    CREATE INDEX outbox_due ON outbox(kind, state, next_attempt_unix);
    CREATE UNIQUE INDEX outbox_dips_once ON outbox(destination) WHERE kind = 'dips';
    ALTER TABLE exams ADD COLUMN sectra_study_id TEXT;
    CREATE INDEX exams_by_sectra_study ON exams(sectra_study_id, created_at);
    ALTER TABLE dicom_studies ADD COLUMN accession_number TEXT;",
];

/// The same schema on PostgreSQL, migration for migration.
const POSTGRES_MIGRATIONS: [&str; 7] = [
    r#"CREATE FUNCTION drscreen_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'integrity_constraint_violation'; END $$;
    CREATE TABLE exams (
        id TEXT COLLATE "C" PRIMARY KEY,
        created_at TEXT COLLATE "C" NOT NULL,
        submitted_by TEXT COLLATE "C" NOT NULL,
        external_exam_ref TEXT COLLATE "C",
        patient_ref TEXT COLLATE "C",
        outcome TEXT COLLATE "C" NOT NULL,
        flagged BIGINT NOT NULL,
        reviewed BIGINT NOT NULL DEFAULT 0,
        model_sha256 TEXT NOT NULL,
        result_json TEXT NOT NULL
    );
    CREATE INDEX exams_by_time ON exams(created_at);
    CREATE INDEX exams_by_outcome ON exams(outcome, created_at);
    CREATE TABLE images (
        id TEXT COLLATE "C" PRIMARY KEY,
        exam_id TEXT COLLATE "C" NOT NULL REFERENCES exams(id),
        idx BIGINT NOT NULL,
        laterality TEXT NOT NULL,
        view TEXT,
        sha256 TEXT COLLATE "C" NOT NULL,
        media_type TEXT NOT NULL,
        finding_json TEXT NOT NULL,
        cam BYTEA NOT NULL,
        cam_h BIGINT NOT NULL,
        cam_w BIGINT NOT NULL
    );
    CREATE INDEX images_by_exam ON images(exam_id, idx);
    CREATE TABLE api_keys (
        id TEXT COLLATE "C" PRIMARY KEY,
        role TEXT NOT NULL,
        hash TEXT NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        revoked BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE audit (
        seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at TEXT COLLATE "C" NOT NULL,
        actor TEXT COLLATE "C" NOT NULL,
        action TEXT COLLATE "C" NOT NULL,
        object TEXT COLLATE "C",
        detail TEXT
    );
    CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit
        FOR EACH ROW EXECUTE FUNCTION drscreen_refuse('the audit log is append-only');
    CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
        FOR EACH STATEMENT EXECUTE FUNCTION drscreen_refuse('the audit log is append-only');"#,
    r#"CREATE TABLE dicom_studies (
        study_uid TEXT COLLATE "C" PRIMARY KEY,
        submitted_by TEXT COLLATE "C" NOT NULL,
        patient_id TEXT,
        patient_name TEXT,
        first_received_at TEXT COLLATE "C" NOT NULL,
        last_received_at TEXT COLLATE "C" NOT NULL,
        last_received_unix DOUBLE PRECISION NOT NULL,
        last_seq BIGINT NOT NULL,
        graded_seq BIGINT NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        exam_id TEXT COLLATE "C" REFERENCES exams(id)
    );
    CREATE INDEX dicom_studies_pending ON dicom_studies(graded_seq, last_seq);
    CREATE TABLE dicom_instances (
        seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        sop_instance_uid TEXT COLLATE "C" NOT NULL UNIQUE,
        sop_class_uid TEXT NOT NULL,
        study_uid TEXT COLLATE "C" NOT NULL REFERENCES dicom_studies(study_uid),
        series_uid TEXT NOT NULL,
        laterality TEXT NOT NULL,
        transfer_syntax TEXT NOT NULL,
        sha256 TEXT COLLATE "C" NOT NULL,
        received_at TEXT COLLATE "C" NOT NULL,
        received_via TEXT NOT NULL
    );
    CREATE INDEX dicom_instances_by_study ON dicom_instances(study_uid, seq);
    CREATE TABLE dicom_frames (
        sop_instance_uid TEXT COLLATE "C" NOT NULL REFERENCES dicom_instances(sop_instance_uid),
        frame BIGINT NOT NULL,
        sha256 TEXT COLLATE "C" NOT NULL,
        media_type TEXT NOT NULL,
        PRIMARY KEY (sop_instance_uid, frame)
    );
    CREATE TABLE dicom_exam_sources (
        exam_id TEXT COLLATE "C" NOT NULL REFERENCES exams(id),
        idx BIGINT NOT NULL,
        sop_instance_uid TEXT COLLATE "C" NOT NULL REFERENCES dicom_instances(sop_instance_uid),
        frame BIGINT NOT NULL,
        PRIMARY KEY (exam_id, idx)
    );
    CREATE TABLE sr_outbox (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        exam_id TEXT COLLATE "C" NOT NULL REFERENCES exams(id),
        destination TEXT NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        next_attempt_unix DOUBLE PRECISION NOT NULL,
        last_error TEXT,
        sent_at TEXT COLLATE "C"
    );
    CREATE INDEX sr_outbox_due ON sr_outbox(sent_at, next_attempt_unix);"#,
    r#"CREATE TABLE reviews (
        exam_id TEXT COLLATE "C" NOT NULL REFERENCES exams(id),
        version BIGINT NOT NULL,
        reviewer TEXT COLLATE "C" NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        updated_at TEXT COLLATE "C" NOT NULL,
        signed_at TEXT COLLATE "C",
        amends BIGINT,
        amendment_reason TEXT,
        body_json TEXT NOT NULL,
        PRIMARY KEY (exam_id, version)
    );
    CREATE INDEX reviews_by_sign_time ON reviews(signed_at);
    CREATE TRIGGER reviews_signed_are_locked BEFORE UPDATE ON reviews FOR EACH ROW WHEN (OLD.signed_at IS NOT NULL)
        EXECUTE FUNCTION drscreen_refuse('a signed review is locked; amend it instead');
    CREATE TRIGGER reviews_no_delete BEFORE DELETE ON reviews
        FOR EACH ROW EXECUTE FUNCTION drscreen_refuse('reviews are never deleted');
    CREATE TRIGGER reviews_no_truncate BEFORE TRUNCATE ON reviews
        FOR EACH STATEMENT EXECUTE FUNCTION drscreen_refuse('reviews are never deleted');
    CREATE TABLE sessions (
        token_hash TEXT COLLATE "C" PRIMARY KEY,
        key_id TEXT COLLATE "C" NOT NULL REFERENCES api_keys(id),
        csrf TEXT NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        last_seen_unix BIGINT NOT NULL
    );"#,
    "ALTER TABLE reviews ADD COLUMN outcome_reason TEXT;",
    r#"ALTER TABLE api_keys ADD COLUMN name TEXT;
    CREATE INDEX exams_by_patient ON exams(patient_ref, created_at);"#,
    r#"ALTER TABLE dicom_studies ADD COLUMN lease_owner TEXT COLLATE "C";
    ALTER TABLE dicom_studies ADD COLUMN lease_until DOUBLE PRECISION;
    ALTER TABLE sr_outbox ADD COLUMN lease_owner TEXT COLLATE "C";
    ALTER TABLE sr_outbox ADD COLUMN lease_until DOUBLE PRECISION;"#,
    r#"ALTER TABLE sr_outbox RENAME TO outbox;
    ALTER TABLE outbox ADD COLUMN kind TEXT COLLATE "C" NOT NULL DEFAULT 'dicom';
    ALTER TABLE outbox ADD COLUMN state TEXT COLLATE "C" NOT NULL DEFAULT 'pending';
    ALTER TABLE outbox ADD COLUMN result TEXT;
    ALTER TABLE outbox ADD COLUMN updated_at TEXT COLLATE "C";
    UPDATE outbox SET state = 'delivered', updated_at = sent_at WHERE sent_at IS NOT NULL;
    DROP INDEX sr_outbox_due;
    CREATE INDEX outbox_due ON outbox(kind, state, next_attempt_unix);
    CREATE UNIQUE INDEX outbox_dips_once ON outbox(destination) WHERE kind = 'dips';
    ALTER TABLE exams ADD COLUMN sectra_study_id TEXT COLLATE "C";
    CREATE INDEX exams_by_sectra_study ON exams(sectra_study_id, created_at);
    ALTER TABLE dicom_studies ADD COLUMN accession_number TEXT COLLATE "C";"#,
];

/// The advisory lock key migrations run under ("drscreen" in ASCII, as a number).
const MIGRATION_LOCK: i64 = 0x6472_7363_7265_656e;

/// The newest migration this build knows.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

/// Brings the schema up to date.
pub fn apply(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > LATEST {
        return Err(newer_schema(current));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

fn newer_schema(found: i64) -> StoreError {
    StoreError::Config(format!(
        "the database has schema version {found}, newer than this build's {LATEST}: run the newer drscreen (or its `migrate`) against it"
    ))
}

/// The schema version recorded in PostgreSQL (0 before the first migration).
pub fn postgres_version(client: &mut postgres::Client) -> Result<i64, StoreError> {
    let exists: bool = client.query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])?.get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])?.get(0))
}

/// Brings a PostgreSQL schema up to date under the migration lock; returns the numbers
/// this call applied (empty when another replica had already done it).
pub fn apply_postgres(client: &mut postgres::Client) -> Result<Vec<i64>, StoreError> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let applied = apply_postgres_locked(client);
    // Always unlock: the connection goes back to the pool and would keep a session lock.
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    let applied = applied?;
    unlocked?;
    Ok(applied)
}

fn apply_postgres_locked(client: &mut postgres::Client) -> Result<Vec<i64>, StoreError> {
    let exists: bool = client.query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])?.get(0);
    if !exists {
        client.batch_execute("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)")?;
    }
    let current = postgres_version(client)?;
    if current > LATEST {
        return Err(newer_schema(current));
    }
    let mut applied = Vec::new();
    for (i, sql) in POSTGRES_MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let version = (i + 1) as i64;
        let mut tx = client.transaction()?;
        tx.batch_execute(sql)?;
        tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", &[&version, &super::now_rfc3339()])?;
        tx.commit()?;
        applied.push(version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_engines_have_the_same_migrations() {
        assert_eq!(MIGRATIONS.len(), POSTGRES_MIGRATIONS.len());
    }
}
