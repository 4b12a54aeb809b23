//! Durable storage: one SQLite database (WAL, `synchronous=FULL`, so a committed exam
//! survives power loss) and a content-addressed image directory (`images/ab/<sha256>`,
//! written and fsynced before the row that references it is committed). Schema changes
//! are numbered migrations applied at open and tracked in `PRAGMA user_version`.
//! The audit table is append-only, enforced by triggers. Patient references are stored
//! here and nowhere else: never logged.

mod blobs;
mod context;
mod dicom;
mod keys;
mod migrations;
mod outbox;
mod reviews;
mod sessions;
pub mod sql;
mod url;

pub use blobs::{BlobError, BlobInfo, BlobStore, ObjectStoreUrl};
pub use context::PatientExam;
pub use keys::{KeyName, KeyRecord, MAX_KEY_NAME_CHARS};
pub use reviews::{ReviewSaveError, SaveKind};
pub use sessions::Session;
pub use url::DatabaseUrl;

pub use dicom::{DueStudy, ExamSource, NewInstance, Recorded, STUDY_LEASE_SECS, StudyFrame, link_exam};
pub use migrations::LATEST as SCHEMA_VERSION;
pub use outbox::{Delivery, DeliveryKind, DeliveryRecord, DeliveryState, MAX_LISTED as MAX_LISTED_DELIVERIES, OUTBOX_LEASE_SECS};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::grading::{ExamOutcome, ExamResult, ImageFinding, Laterality};
use sql::{Db, Dialect, Row, Tx, Value, args};

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database error: {0}")]
    Postgres(String),
    /// The database (or object store) cannot be reached now; the caller answers 503 with
    /// Retry-After and nothing was acknowledged.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage configuration: {0}")]
    Config(String),
    #[error("image store: {0}")]
    Blob(BlobError),
    /// Background work whose lease another replica now holds: this replica's attempt is
    /// rolled back and dropped (the holder does the work).
    #[error("lease lost: {0}")]
    LeaseLost(String),
    #[error("storage I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("the database lock was poisoned by a crashed thread")]
    Poisoned,
}

impl From<BlobError> for StoreError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::Unavailable(why) => Self::Unavailable(format!("object store: {why}")),
            other => Self::Blob(other),
        }
    }
}

/// Extra writes an edge commits in the same transaction as the exam (the DICOM study
/// grader links the exam to its study and source instances); gets the new exam id.
pub type CommitHook = Box<dyn FnOnce(&mut dyn Tx, &str) -> Result<(), StoreError> + Send>;

/// API key roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Submits images and reads its own results (a camera, a clinic system).
    Device,
    /// Reads every result and reviews.
    Clinician,
    /// Manages keys and configuration.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Device => "device",
            Self::Clinician => "clinician",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Device, Self::Clinician, Self::Admin].into_iter().find(|r| r.as_str() == s)
    }
}

/// An authenticated API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIdentity {
    pub id: String,
    pub role: Role,
    /// The key's display name ("Dr Kari Nordmann"), when it was created with one.
    pub name: Option<String>,
}

/// One image of an exam to be stored.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub bytes_sha256: String,
    pub media_type: String,
    pub laterality: Laterality,
    pub view: Option<String>,
    pub finding: ImageFinding,
    pub cam: Vec<f32>,
    pub cam_shape: (usize, usize),
}

/// An exam to be stored.
#[derive(Debug, Clone)]
pub struct NewExam {
    /// Chosen by the caller ([`random_hex`]`(16)`) so that logs can name the exam while
    /// it is being graded.
    pub id: String,
    pub submitted_by: String,
    pub external_exam_ref: Option<String>,
    pub patient_ref: Option<String>,
    /// How the EHR (DIPS, via the Sectra PACS) names the imaging study: the DICOM
    /// source's AccessionNumber, or an HTTP exam's `external_exam_ref`.
    pub sectra_study_id: Option<String>,
    /// The graded result; its outcome, flag and model are also stored as columns so
    /// the worklist and filters can use them without reading the JSON.
    pub result: ExamResult,
    pub images: Vec<NewImage>,
}

/// A stored exam as returned to clients.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredExam {
    pub id: String,
    pub created_at: String,
    pub submitted_by: String,
    pub external_exam_ref: Option<String>,
    pub patient_ref: Option<String>,
    pub outcome: ExamOutcome,
    pub flagged: bool,
    pub reviewed: bool,
    pub image_ids: Vec<String>,
    #[serde(serialize_with = "result_as_stored")]
    pub result: ExamResult,
}

/// Appends one event to the append-only audit log, inside the caller's transaction
/// when given one, so an action and its audit event commit together. `at` is passed in
/// so an event can carry the same timestamp as the row it records.
pub(crate) fn append_audit(
    tx: &mut dyn Tx,
    at: &str,
    actor: &str,
    action: &str,
    object: Option<&str>,
    detail: Option<&str>,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO audit (at, actor, action, object, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        args![at, actor, action, object, detail],
    )?;
    Ok(())
}

/// One stored image of an exam, as the review pages show it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExamImage {
    pub id: String,
    pub laterality: Laterality,
    pub view: Option<String>,
    pub finding: ImageFinding,
}

/// Reads a JSON column into its type; a row that does not parse is corrupt data.
fn parse_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Writes a value into a JSON column. It goes through `serde_json::Value` as release
/// 0.1.0 did (keys sorted, `f32`s widened to `f64` digits), so rows written now are
/// byte-for-byte what that release wrote for the same result.
fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_value(value).map(|v| v.to_string()).map_err(|e| StoreError::Corrupt(format!("cannot serialise: {e}")))
}

/// Serialises an exam result as release 0.1.0's API did (through `serde_json::Value`:
/// sorted keys, widened digits), so clients see the same JSON as before.
fn result_as_stored<S: serde::Serializer>(result: &ExamResult, serializer: S) -> Result<S::Ok, S::Error> {
    serde_json::to_value(result).map_err(serde::ser::Error::custom)?.serialize(serializer)
}

/// Reads the `outcome` column.
fn parse_outcome(text: &str) -> Result<ExamOutcome, StoreError> {
    ExamOutcome::parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown outcome '{text}'")))
}

/// A stored image.
#[derive(Debug, Clone)]
pub struct StoredImage {
    pub id: String,
    pub exam_id: String,
    pub submitted_by: String,
    pub sha256: String,
    pub media_type: String,
    pub cam: Vec<f32>,
    pub cam_shape: (usize, usize),
}

/// Filters for listing exams.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExamFilter {
    pub outcome: Option<ExamOutcome>,
    pub reviewed: Option<bool>,
    /// RFC 3339 timestamp; exams created at or after it.
    pub since: Option<String>,
    /// Only exams submitted by this key (device role).
    #[serde(skip)]
    pub submitted_by: Option<String>,
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

/// Filters for the audit log.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditQuery {
    pub actor: Option<String>,
    /// An action ("review.sign") or a family ("review").
    pub action: Option<String>,
    pub object: Option<String>,
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

/// Filters for the review worklist.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WorklistFilter {
    pub outcome: Option<ExamOutcome>,
    pub reviewed: Option<bool>,
    /// RFC 3339 or a date; exams created at or after it.
    pub from: Option<String>,
    /// Exams created before it.
    pub until: Option<String>,
    /// Only this patient's exams (exact `patient_ref` match).
    #[serde(default)]
    pub patient_ref: Option<String>,
    pub limit: Option<u32>,
}

/// Handle to the store; clone freely.
#[derive(Clone)]
pub struct Store {
    db: Db,
    blobs: BlobStore,
    /// This process's name in leases (`host-pid-random`), so a replica can tell its own
    /// claims from another's.
    replica: Arc<str>,
    /// When the database and the image store last both answered (see [`Store::health`]).
    healthy_at: Arc<Mutex<Option<std::time::Instant>>>,
}

/// How long a passed store health check stands: readiness probes (every 0.5-10 s from each
/// balancer and kubelet) then cost at most one database ping and one object-store list per
/// replica per interval, and answer at once under load instead of queueing behind it.
const HEALTH_FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(2);

/// Current UTC time as RFC 3339 with milliseconds (sorts lexically).
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    now.format(&format).unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// Random lowercase hex of `bytes` bytes.
pub fn random_hex(bytes: usize) -> Result<String, StoreError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| StoreError::Corrupt(format!("no randomness: {e}")))?;
    Ok(hex::encode(buf))
}

impl Store {
    /// Opens (creating if needed) the single-machine store in `data_dir`: SQLite in
    /// `drscreen.sqlite3` and originals under `images/`; applies migrations.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let blobs = BlobStore::open(&ObjectStoreUrl::File(data_dir.join("images")))?;
        let db = Self::open_sqlite(&data_dir.join("drscreen.sqlite3"))?;
        Self::with_db(db, blobs)
    }

    /// Opens the SQLite database at `path` with the durability settings every backend
    /// promises (WAL, `synchronous=FULL`, foreign keys) and applies migrations.
    fn open_sqlite(path: &Path) -> Result<Db, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io { path: dir.to_path_buf(), source })?;
        }
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        migrations::apply(&mut conn)?;
        Ok(Db::Sqlite(Arc::new(Mutex::new(conn))))
    }

    /// Opens the store a deployment names: `database` (SQLite or PostgreSQL) and the
    /// originals in `objects` (a directory or an S3 bucket, AWS settings from the
    /// environment). PostgreSQL migrations are applied under the migration lock unless
    /// `migrate` is false (then the schema must already be current).
    pub fn connect(database: &DatabaseUrl, objects: &ObjectStoreUrl, migrate: bool) -> Result<Self, StoreError> {
        let blobs = BlobStore::open(objects)?;
        let db = match database {
            DatabaseUrl::Sqlite(path) => Self::open_sqlite(path)?,
            DatabaseUrl::Postgres(url) => {
                let db = Db::postgres(url)?;
                let version = if migrate {
                    db.with_postgres_client(|c| migrations::apply_postgres(c).map(|_| migrations::LATEST))?
                } else {
                    db.with_postgres_client(migrations::postgres_version)?
                };
                if version != migrations::LATEST {
                    return Err(StoreError::Config(format!(
                        "the database has schema version {version}, this build needs {}: run `drscreen migrate`",
                        migrations::LATEST
                    )));
                }
                db
            }
        };
        Self::with_db(db, blobs)
    }

    /// Applies pending migrations to `database`; returns the versions applied now.
    pub fn migrate(database: &DatabaseUrl) -> Result<Vec<i64>, StoreError> {
        match database {
            DatabaseUrl::Sqlite(path) => {
                let before = Self::open_sqlite_version(path)?;
                Self::open_sqlite(path)?;
                Ok(((before + 1)..=migrations::LATEST).collect())
            }
            DatabaseUrl::Postgres(url) => Db::postgres(url)?.with_postgres_client(migrations::apply_postgres),
        }
    }

    fn open_sqlite_version(path: &Path) -> Result<i64, StoreError> {
        if !path.exists() {
            return Ok(0);
        }
        Ok(Connection::open(path)?.query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    fn with_db(db: Db, blobs: BlobStore) -> Result<Self, StoreError> {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "drscreen".into());
        let replica = format!("{host}-{}-{}", std::process::id(), random_hex(3)?);
        Ok(Self { db, blobs, replica: replica.into(), healthy_at: Arc::default() })
    }

    /// Which SQL engine this store runs on.
    pub fn dialect(&self) -> Dialect {
        self.db.dialect()
    }

    /// This process's lease owner name.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Whether the database and the image store answer: the last passed check when it is
    /// younger than [`HEALTH_FRESH_FOR`], else both checked now (each bounded by its own
    /// timeout). A failure is never cached, so an outage shows at the next probe.
    pub fn health(&self) -> Result<(), StoreError> {
        let fresh = |at: &Option<std::time::Instant>| at.is_some_and(|t| t.elapsed() < HEALTH_FRESH_FOR);
        if fresh(&*self.healthy_at.lock().map_err(|_| StoreError::Poisoned)?) {
            return Ok(());
        }
        self.ping()?;
        self.blobs.check()?;
        *self.healthy_at.lock().map_err(|_| StoreError::Poisoned)? = Some(std::time::Instant::now());
        Ok(())
    }

    /// Whether the database answers now.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.db.ping()
    }

    /// The schema version in use.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        match &self.db {
            Db::Sqlite(_) => self.db.read(|tx| tx.query_opt("PRAGMA user_version", &[])?.map_or(Ok(0), |r| r.get(0))),
            Db::Postgres(_) => self.db.with_postgres_client(migrations::postgres_version),
        }
    }

    /// Stores bytes content-addressed and durably (fsynced file, or an acknowledged S3
    /// PUT); returns their sha256. Called before the rows that reference them commit, so
    /// a failed commit leaves at most an orphan for `drscreen gc`, never a dangling row.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<String, StoreError> {
        Ok(self.blobs.put(bytes)?)
    }

    /// Reads a stored image by its sha256.
    pub fn read_blob(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        Ok(self.blobs.get(sha256)?)
    }

    /// Every sha256 a row refers to (exam images, DICOM instances and their frames).
    pub fn referenced_blobs(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        let rows = self.db.read(|tx| {
            tx.query("SELECT sha256 FROM images UNION SELECT sha256 FROM dicom_instances UNION SELECT sha256 FROM dicom_frames", &[])
        })?;
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// Removes (unless `dry_run`) stored originals no row refers to and that are older
    /// than `grace`: objects whose exam's commit failed. Objects younger than `grace` are
    /// spared, since an upload writes its images before its rows commit (and a repeated
    /// image refreshes its object's time). Returns the orphans found.
    pub fn collect_garbage(&self, grace: std::time::Duration, dry_run: bool) -> Result<Vec<BlobInfo>, StoreError> {
        let listed = self.blobs.list()?;
        // References are read after listing: an object listed and committed meanwhile is
        // then seen as referenced.
        let referenced = self.referenced_blobs()?;
        let cutoff = std::time::SystemTime::now().checked_sub(grace).unwrap_or(std::time::UNIX_EPOCH);
        let orphans: Vec<BlobInfo> = listed.into_iter().filter(|b| !referenced.contains(&b.sha256) && b.last_modified < cutoff).collect();
        if !dry_run {
            for orphan in &orphans {
                self.blobs.delete(&orphan.sha256)?;
            }
            let detail = format!("{} orphaned image object(s) removed", orphans.len());
            self.audit("cli", "store.gc", None, Some(&detail))?;
        }
        Ok(orphans)
    }

    /// The image store (for `drscreen gc` and readiness).
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Commits an exam, its images and an audit event in one transaction.
    pub fn insert_exam(&self, exam: &NewExam) -> Result<StoredExam, StoreError> {
        self.insert_exam_with(exam, None)
    }

    /// [`Store::insert_exam`], running `hook` (given the new exam id) inside the same
    /// transaction so an edge's links commit with the exam or not at all.
    pub fn insert_exam_with(&self, exam: &NewExam, hook: Option<CommitHook>) -> Result<StoredExam, StoreError> {
        let id = exam.id.clone();
        let created_at = now_rfc3339();
        let result = &exam.result;
        let result_json = to_json(result)?;
        let mut rows = Vec::with_capacity(exam.images.len());
        for image in &exam.images {
            let cam: Vec<u8> = image.cam.iter().flat_map(|v| v.to_le_bytes()).collect();
            rows.push((random_hex(16)?, cam, to_json(&image.finding)?));
        }
        self.db.write(|tx| {
            tx.execute(
                "INSERT INTO exams (id, created_at, submitted_by, external_exam_ref, patient_ref, outcome, flagged, reviewed, model_sha256, result_json, sectra_study_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?9, ?10)",
                args![
                    &id,
                    &created_at,
                    &exam.submitted_by,
                    &exam.external_exam_ref,
                    &exam.patient_ref,
                    result.outcome.as_str(),
                    result.flagged,
                    &result.model.sha256,
                    result_json.as_str(),
                    &exam.sectra_study_id
                ],
            )?;
            for (idx, (image, (image_id, cam, finding))) in exam.images.iter().zip(&rows).enumerate() {
                tx.execute(
                    "INSERT INTO images (id, exam_id, idx, laterality, view, sha256, media_type, finding_json, cam, cam_h, cam_w)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    args![
                        image_id,
                        &id,
                        idx as i64,
                        image.laterality.as_str(),
                        &image.view,
                        &image.bytes_sha256,
                        &image.media_type,
                        finding,
                        cam.clone(),
                        image.cam_shape.0 as i64,
                        image.cam_shape.1 as i64
                    ],
                )?;
            }
            let detail = format!("{} images, outcome {}", exam.images.len(), result.outcome.as_str());
            append_audit(tx, &created_at, &exam.submitted_by, "exam.create", Some(&id), Some(&detail))?;
            if let Some(hook) = hook {
                hook(tx, &id)?;
            }
            Ok::<_, StoreError>(())
        })?;
        Ok(StoredExam {
            id,
            created_at,
            submitted_by: exam.submitted_by.clone(),
            external_exam_ref: exam.external_exam_ref.clone(),
            patient_ref: exam.patient_ref.clone(),
            outcome: result.outcome,
            flagged: result.flagged,
            reviewed: false,
            image_ids: rows.into_iter().map(|(image_id, _, _)| image_id).collect(),
            result: result.clone(),
        })
    }

    fn exam_from_row(tx: &mut dyn Tx, row: &Row) -> Result<StoredExam, StoreError> {
        let id: String = row.get(0)?;
        let result_json: String = row.get(9)?;
        let image_ids = tx
            .query("SELECT id FROM images WHERE exam_id = ?1 ORDER BY idx", args![&id])?
            .iter()
            .map(|r| r.get(0))
            .collect::<Result<_, _>>()?;
        Ok(StoredExam {
            id,
            created_at: row.get(1)?,
            submitted_by: row.get(2)?,
            external_exam_ref: row.get(3)?,
            patient_ref: row.get(4)?,
            outcome: parse_outcome(&row.get::<String>(5)?)?,
            flagged: row.get(6)?,
            reviewed: row.get(7)?,
            image_ids,
            result: parse_json("exam result", &result_json)?,
        })
    }

    const EXAM_COLUMNS: &'static str =
        "id, created_at, submitted_by, external_exam_ref, patient_ref, outcome, flagged, reviewed, model_sha256, result_json";

    pub fn get_exam(&self, id: &str) -> Result<Option<StoredExam>, StoreError> {
        self.db.read(|tx| {
            let sql = format!("SELECT {} FROM exams WHERE id = ?1", Self::EXAM_COLUMNS);
            match tx.query_opt(&sql, args![id])? {
                Some(row) => Ok(Some(Self::exam_from_row(tx, &row)?)),
                None => Ok(None),
            }
        })
    }

    /// Lists exams, newest first, with paging (limit capped at 500).
    pub fn list_exams(&self, filter: &ExamFilter) -> Result<Vec<StoredExam>, StoreError> {
        let mut sql = format!("SELECT {} FROM exams WHERE 1=1", Self::EXAM_COLUMNS);
        let mut args: Vec<Value> = Vec::new();
        if let Some(o) = filter.outcome {
            sql.push_str(" AND outcome = ?");
            args.push(o.as_str().into());
        }
        if let Some(r) = filter.reviewed {
            sql.push_str(" AND reviewed = ?");
            args.push(r.into());
        }
        if let Some(s) = &filter.since {
            sql.push_str(" AND created_at >= ?");
            args.push(s.into());
        }
        if let Some(k) = &filter.submitted_by {
            sql.push_str(" AND submitted_by = ?");
            args.push(k.into());
        }
        sql.push_str(" ORDER BY created_at DESC, id LIMIT ? OFFSET ?");
        args.push(i64::from(filter.limit.unwrap_or(50).min(500)).into());
        args.push(i64::from(filter.offset.unwrap_or(0)).into());
        self.db.read(|tx| Self::query_exams(tx, &sql, &args))
    }

    /// Runs a `SELECT {EXAM_COLUMNS} ...` query and reads its exams.
    fn query_exams(tx: &mut dyn Tx, sql: &str, args: &[Value]) -> Result<Vec<StoredExam>, StoreError> {
        let rows = tx.query(sql, args)?;
        rows.iter().map(|row| Self::exam_from_row(tx, row)).collect()
    }

    pub fn get_image(&self, id: &str) -> Result<Option<StoredImage>, StoreError> {
        let row = self.db.read(|tx| {
            tx.query_opt(
                "SELECT i.id, i.exam_id, e.submitted_by, i.sha256, i.media_type, i.cam, i.cam_h, i.cam_w
                 FROM images i JOIN exams e ON e.id = i.exam_id WHERE i.id = ?1",
                args![id],
            )
        })?;
        let Some(r) = row else { return Ok(None) };
        let cam: Vec<u8> = r.get(5)?;
        let (h, w): (i64, i64) = (r.get(6)?, r.get(7)?);
        Ok(Some(StoredImage {
            id: r.get(0)?,
            exam_id: r.get(1)?,
            submitted_by: r.get(2)?,
            sha256: r.get(3)?,
            media_type: r.get(4)?,
            cam: cam.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            cam_shape: (h.max(0) as usize, w.max(0) as usize),
        }))
    }

    /// Appends an audit event.
    pub fn audit(&self, actor: &str, action: &str, object: Option<&str>, detail: Option<&str>) -> Result<(), StoreError> {
        self.db.write(|tx| append_audit(tx, &now_rfc3339(), actor, action, object, detail))
    }

    /// Audit events, newest first, filtered; `before` pages backwards by sequence number.
    pub fn audit_query(&self, q: &AuditQuery) -> Result<Vec<serde_json::Value>, StoreError> {
        let mut sql = String::from("SELECT seq, at, actor, action, object, detail FROM audit WHERE 1=1");
        let mut args: Vec<Value> = Vec::new();
        if let Some(b) = q.before {
            sql.push_str(" AND seq < ?");
            args.push(b.into());
        }
        for (column, value) in [("actor", &q.actor), ("object", &q.object)] {
            if let Some(v) = value {
                sql.push_str(&format!(" AND {column} = ?"));
                args.push(v.into());
            }
        }
        if let Some(a) = &q.action {
            // "review" matches review.save, review.sign, ...
            sql.push_str(" AND (action = ? OR action LIKE ? ESCAPE '\\')");
            args.push(a.into());
            args.push(format!("{}.%", a.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")).into());
        }
        sql.push_str(" ORDER BY seq DESC LIMIT ?");
        args.push(i64::from(q.limit.unwrap_or(100).clamp(1, 1000)).into());
        let rows = self.db.read(|tx| tx.query(&sql, &args))?;
        rows.iter()
            .map(|r| {
                Ok(serde_json::json!({
                    "seq": r.get::<i64>(0)?, "at": r.get::<String>(1)?, "actor": r.get::<String>(2)?,
                    "action": r.get::<String>(3)?, "object": r.get::<Option<String>>(4)?, "detail": r.get::<Option<String>>(5)?,
                }))
            })
            .collect()
    }

    /// Exams that may need a human, most urgent first, oldest first within an outcome:
    /// every flagged exam plus `rescreen` exams (the caller samples those for QA).
    pub fn worklist_candidates(&self, f: &WorklistFilter) -> Result<Vec<StoredExam>, StoreError> {
        let mut sql = format!("SELECT {} FROM exams WHERE (flagged = 1 OR outcome = 'rescreen')", Self::EXAM_COLUMNS);
        let mut args: Vec<Value> = Vec::new();
        if let Some(o) = f.outcome {
            sql.push_str(" AND outcome = ?");
            args.push(o.as_str().into());
        }
        if let Some(r) = f.reviewed {
            sql.push_str(" AND reviewed = ?");
            args.push(r.into());
        }
        if let Some(d) = &f.from {
            sql.push_str(" AND created_at >= ?");
            args.push(d.into());
        }
        if let Some(d) = &f.until {
            sql.push_str(" AND created_at < ?");
            args.push(d.into());
        }
        if let Some(p) = &f.patient_ref {
            sql.push_str(" AND patient_ref = ?");
            args.push(p.into());
        }
        sql.push_str(
            " ORDER BY CASE outcome WHEN 'urgent_referral' THEN 0 WHEN 'referral' THEN 1 WHEN 'ungradable' THEN 2 ELSE 3 END, created_at, id LIMIT ?",
        );
        args.push(i64::from(f.limit.unwrap_or(500).min(2000)).into());
        self.db.read(|tx| Self::query_exams(tx, &sql, &args))
    }

    /// An exam's images in upload order.
    pub fn exam_images(&self, exam_id: &str) -> Result<Vec<ExamImage>, StoreError> {
        let rows = self
            .db
            .read(|tx| tx.query("SELECT id, laterality, view, finding_json FROM images WHERE exam_id = ?1 ORDER BY idx", args![exam_id]))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let laterality: String = row.get(1)?;
            let laterality =
                Laterality::parse(&laterality).ok_or_else(|| StoreError::Corrupt(format!("unknown laterality '{laterality}'")))?;
            let finding: String = row.get(3)?;
            out.push(ExamImage { id: row.get(0)?, laterality, view: row.get(2)?, finding: parse_json("image finding", &finding)? });
        }
        Ok(out)
    }

    /// Creates an API key; returns (key id, the full secret key, shown once).
    pub fn create_key(&self, role: Role, actor: &str) -> Result<(String, String), StoreError> {
        self.create_named_key(role, None, actor)
    }

    /// Checks a presented key: looks the row up by its public id, then compares hashes
    /// in constant time.
    pub fn verify_key(&self, presented: &str) -> Result<Option<KeyIdentity>, StoreError> {
        use subtle::ConstantTimeEq;
        let Some(id) = presented.strip_prefix("drs_").and_then(|rest| rest.split('_').next()) else {
            return Ok(None);
        };
        let row = self.db.read(|tx| tx.query_opt("SELECT role, hash, name FROM api_keys WHERE id = ?1 AND revoked = 0", args![id]))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (role, stored, name): (String, String, Option<String>) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let presented_hash = hex::encode(sha2::Sha256::digest(presented.as_bytes()));
        if bool::from(presented_hash.as_bytes().ct_eq(stored.as_bytes())) {
            let role = Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("unknown role {role}")))?;
            Ok(Some(KeyIdentity { id: id.to_string(), role, name }))
        } else {
            Ok(None)
        }
    }
}
