//! The outbox: one durable queue of deliveries to the clinic's other systems, whatever
//! the destination (`kind`): the PACS by DICOM C-STORE, the EHR (DIPS) by FHIR. A row is
//! queued in the transaction that makes it due (the exam's, or the poll that matched a
//! DIPS examination), so a crash never loses one; it is claimed with a lease so exactly
//! one replica works on it at a time; and it ends `delivered` (with what the destination
//! answered) or `failed` (a refusal retrying cannot mend, shown to an admin, who may
//! queue it again). It is never deleted. Every transition is audited.

use super::sql::{Dialect, Row, Tx, args};
use super::{Store, StoreError, now_rfc3339};

/// How long a claimed delivery is reserved for the replica sending it.
pub const OUTBOX_LEASE_SECS: f64 = 60.0;
/// How many rows one claim takes.
const CLAIM_BATCH: i64 = 4;
/// Most rows one admin listing returns.
pub const MAX_LISTED: i64 = 500;

/// Where a delivery goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeliveryKind {
    /// The exam's SR (and its PDF report) by C-STORE to a PACS; `destination` is `AE@host:port`.
    Dicom,
    /// The EHR's `$append-retina-ai-result`; `destination` is the DIPS DiagnosticReport id.
    Dips,
}

impl DeliveryKind {
    pub const ALL: [DeliveryKind; 2] = [DeliveryKind::Dicom, DeliveryKind::Dips];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dicom => "dicom",
            Self::Dips => "dips",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeliveryState {
    /// Not delivered yet: due now or at `next_attempt_unix`.
    Pending,
    /// The destination has it.
    Delivered,
    /// The destination refused it for a reason retrying cannot mend; an admin decides.
    Failed,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 3] = [DeliveryState::Pending, DeliveryState::Delivered, DeliveryState::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A claimed delivery, due now and leased to this replica.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub kind: DeliveryKind,
    pub exam_id: String,
    pub destination: String,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// One outbox row as an admin sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeliveryRecord {
    pub id: i64,
    pub kind: String,
    pub exam_id: String,
    pub destination: String,
    pub state: String,
    pub attempts: i64,
    pub created_at: String,
    pub updated_at: Option<String>,
    /// Unix seconds of the next attempt (pending rows).
    pub next_attempt_unix: f64,
    pub last_error: Option<String>,
    /// What the destination answered on delivery (SOP Instance UIDs, an OperationOutcome).
    pub result: Option<String>,
}

pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// PostgreSQL's row locks for a claim: rows another replica is claiming right now are
/// skipped, not waited for. SQLite has one writer at a time, so nothing to add.
pub(crate) fn skip_locked(tx: &dyn Tx) -> &'static str {
    match tx.dialect() {
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        Dialect::Sqlite => "",
    }
}

/// Queues a delivery inside the caller's transaction; false when the destination
/// allows one delivery ever (DIPS) and it is already queued.
pub fn enqueue(tx: &mut dyn Tx, kind: DeliveryKind, exam_id: &str, destination: &str) -> Result<bool, StoreError> {
    let inserted = tx.execute(
        "INSERT INTO outbox (kind, exam_id, destination, created_at, next_attempt_unix, state) VALUES (?1, ?2, ?3, ?4, ?5, 'pending')
         ON CONFLICT DO NOTHING",
        args![kind.as_str(), exam_id, destination, now_rfc3339(), unix_now()],
    )?;
    Ok(inserted == 1)
}

fn audit(tx: &mut dyn Tx, actor: &str, action: &str, object: &str, detail: &str) -> Result<(), StoreError> {
    super::append_audit(tx, &now_rfc3339(), actor, action, Some(object), Some(detail))
}

fn record_from_row(r: &Row) -> Result<DeliveryRecord, StoreError> {
    Ok(DeliveryRecord {
        id: r.get(0)?,
        kind: r.get(1)?,
        exam_id: r.get(2)?,
        destination: r.get(3)?,
        state: r.get(4)?,
        attempts: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
        next_attempt_unix: r.get(8)?,
        last_error: r.get(9)?,
        result: r.get(10)?,
    })
}

const RECORD_COLUMNS: &str =
    "id, kind, exam_id, destination, state, attempts, created_at, updated_at, next_attempt_unix, last_error, result";

impl Store {
    /// Queues a delivery of `exam_id` (audited as `actor`); false when it was already
    /// queued (a DIPS examination gets one delivery ever).
    pub fn enqueue_delivery(&self, actor: &str, kind: DeliveryKind, exam_id: &str, destination: &str) -> Result<bool, StoreError> {
        self.db.write(|tx| {
            let queued = enqueue(tx, kind, exam_id, destination)?;
            if queued {
                audit(tx, actor, &format!("{}.queued", kind.as_str()), exam_id, &format!("delivery to {destination} queued"))?;
            }
            Ok(queued)
        })
    }

    /// Claims (for [`OUTBOX_LEASE_SECS`]) pending deliveries of `kind` whose next attempt
    /// is due and that no other replica holds, oldest first.
    pub fn claim_deliveries(&self, kind: DeliveryKind) -> Result<Vec<Delivery>, StoreError> {
        let now = unix_now();
        self.db.write(|tx| {
            let sql = format!(
                "UPDATE outbox SET lease_owner = ?1, lease_until = ?2
                 WHERE id IN (SELECT id FROM outbox
                     WHERE kind = ?5 AND state = 'pending' AND next_attempt_unix <= ?3 AND (lease_until IS NULL OR lease_until < ?3)
                     ORDER BY id LIMIT ?4{})
                 RETURNING id, exam_id, destination, attempts",
                skip_locked(tx)
            );
            let rows = tx.query(&sql, args![&*self.replica, now + OUTBOX_LEASE_SECS, now, CLAIM_BATCH, kind.as_str()])?;
            let mut due: Vec<Delivery> = rows
                .iter()
                .map(|r| Ok(Delivery { id: r.get(0)?, kind, exam_id: r.get(1)?, destination: r.get(2)?, attempts: r.get(3)? }))
                .collect::<Result<_, StoreError>>()?;
            due.sort_by_key(|d| d.id);
            Ok(due)
        })
    }

    /// Records a delivered item with what the destination answered (`result`), audited as
    /// `action` with `detail`, and ends its lease.
    pub fn delivery_delivered(&self, item: &Delivery, action: &str, detail: &str, result: Option<&str>) -> Result<(), StoreError> {
        self.db.write(|tx| {
            let now = now_rfc3339();
            tx.execute(
                "UPDATE outbox SET state = 'delivered', sent_at = ?2, updated_at = ?2, attempts = attempts + 1, last_error = NULL,
                   result = ?3, lease_owner = NULL, lease_until = NULL WHERE id = ?1",
                args![item.id, &now, result],
            )?;
            audit(tx, item.kind.as_str(), action, &item.exam_id, detail)
        })
    }

    /// Records a failed attempt that will be retried in `retry_in_secs` (audited; the
    /// row stays pending).
    pub fn delivery_retry(&self, item: &Delivery, action: &str, retry_in_secs: f64, error: &str) -> Result<(), StoreError> {
        self.db.write(|tx| {
            tx.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_unix = ?3, updated_at = ?4,
                   lease_owner = NULL, lease_until = NULL WHERE id = ?1",
                args![item.id, error, unix_now() + retry_in_secs, now_rfc3339()],
            )?;
            audit(
                tx,
                item.kind.as_str(),
                action,
                &item.exam_id,
                &format!("attempt {} to {}: {error}; retry in {retry_in_secs:.0}s", item.attempts + 1, item.destination),
            )
        })
    }

    /// Records a refusal retrying cannot mend: the row is `failed`, kept, and shown to an
    /// admin (audited as `action`).
    pub fn delivery_failed(&self, item: &Delivery, action: &str, error: &str) -> Result<(), StoreError> {
        self.db.write(|tx| {
            tx.execute(
                "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ?2, updated_at = ?3,
                   lease_owner = NULL, lease_until = NULL WHERE id = ?1",
                args![item.id, error, now_rfc3339()],
            )?;
            audit(tx, item.kind.as_str(), action, &item.exam_id, &format!("attempt {} to {}: {error}", item.attempts + 1, item.destination))
        })
    }

    /// Puts a failed delivery back in the queue (an admin's decision, audited); false
    /// when no failed row has that id.
    pub fn requeue_delivery(&self, actor: &str, id: i64) -> Result<bool, StoreError> {
        self.db.write(|tx| {
            let row = tx.query_opt("SELECT kind, exam_id, destination FROM outbox WHERE id = ?1 AND state = 'failed'", args![id])?;
            let Some(row) = row else { return Ok(false) };
            let (kind, exam_id, destination): (String, String, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
            tx.execute(
                "UPDATE outbox SET state = 'pending', next_attempt_unix = ?2, updated_at = ?3 WHERE id = ?1",
                args![id, unix_now(), now_rfc3339()],
            )?;
            audit(tx, actor, &format!("{kind}.requeued"), &exam_id, &format!("delivery {id} to {destination} queued again"))?;
            Ok(true)
        })
    }

    /// Rows per (kind, state), every combination present (zeros included).
    pub fn delivery_counts(&self) -> Result<Vec<(DeliveryKind, DeliveryState, i64)>, StoreError> {
        let rows = self.db.read(|tx| tx.query("SELECT kind, state, COUNT(*) FROM outbox GROUP BY kind, state", args![]))?;
        let mut counts = Vec::new();
        for kind in DeliveryKind::ALL {
            for state in DeliveryState::ALL {
                let mut n = 0;
                for r in &rows {
                    let (k, s, c): (String, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
                    if k == kind.as_str() && s == state.as_str() {
                        n = c;
                    }
                }
                counts.push((kind, state, n));
            }
        }
        Ok(counts)
    }

    /// The newest deliveries (at most `limit`, capped at [`MAX_LISTED`]), optionally of
    /// one state, newest first.
    pub fn deliveries(&self, state: Option<DeliveryState>, limit: i64) -> Result<Vec<DeliveryRecord>, StoreError> {
        let limit = limit.clamp(1, MAX_LISTED);
        let rows = self.db.read(|tx| match state {
            Some(s) => tx.query(
                &format!("SELECT {RECORD_COLUMNS} FROM outbox WHERE state = ?1 ORDER BY id DESC LIMIT ?2"),
                args![s.as_str(), limit],
            ),
            None => tx.query(&format!("SELECT {RECORD_COLUMNS} FROM outbox ORDER BY id DESC LIMIT ?1"), args![limit]),
        })?;
        rows.iter().map(record_from_row).collect()
    }

    /// The deliveries of one exam, oldest first.
    pub fn exam_deliveries(&self, exam_id: &str) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = self.db.read(|tx| {
            tx.query(&format!("SELECT {RECORD_COLUMNS} FROM outbox WHERE exam_id = ?1 ORDER BY id LIMIT ?2"), args![exam_id, MAX_LISTED])
        })?;
        rows.iter().map(record_from_row).collect()
    }

    /// The newest exam whose Sectra study id is `sectra_study_id` (how a DIPS examination
    /// finds its exam), with its patient reference.
    pub fn exam_by_sectra_study(&self, sectra_study_id: &str) -> Result<Option<String>, StoreError> {
        let row = self.db.read(|tx| {
            tx.query_opt(
                "SELECT id FROM exams WHERE sectra_study_id = ?1 ORDER BY created_at DESC, id DESC LIMIT 1",
                args![sectra_study_id],
            )
        })?;
        row.map(|r| r.get(0)).transpose()
    }

    /// The Sectra study id an exam was stored with (see `NewExam::sectra_study_id`).
    pub fn exam_sectra_study_id(&self, exam_id: &str) -> Result<Option<String>, StoreError> {
        let row = self.db.read(|tx| tx.query_opt("SELECT sectra_study_id FROM exams WHERE id = ?1", args![exam_id]))?;
        Ok(row.map(|r| r.get::<Option<String>>(0)).transpose()?.flatten())
    }
}
