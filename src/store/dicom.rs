//! The DICOM node's tables: studies waiting to be graded, received instances (one row per
//! SOP Instance UID, so a repeated store is a no-op), their frames, the instances behind
//! each exam (its SR push is queued in the outbox, `outbox.rs`). Every write that is a clinical action appends its audit
//! event in the same transaction.
//!
//! Background work runs once across replicas: the grader and the SR sender *claim* due
//! rows with a lease (`lease_owner`, `lease_until`; `FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, the single writer lock on SQLite), and the grading commit is fenced on
//! still holding the lease, so a replica that stalled past its lease cannot commit a
//! second exam for a study another replica has taken over. A replica that dies leaves
//! its claims to the others once the lease expires.

use super::outbox::{DeliveryKind, enqueue, skip_locked, unix_now};
use super::sql::{Dialect, Row, Tx, args};
use super::{Store, StoreError, now_rfc3339};

/// How long a claimed study is reserved for the replica grading it.
pub const STUDY_LEASE_SECS: f64 = 60.0;
/// How many rows one claim takes.
const CLAIM_BATCH: i64 = 4;

/// A received instance to record (its blobs are already stored).
#[derive(Debug, Clone)]
pub struct NewInstance {
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub study_uid: String,
    pub series_uid: String,
    pub laterality: String,
    pub transfer_syntax: String,
    pub sha256: String,
    pub patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub accession_number: Option<String>,
    /// (sha256, media type) per frame.
    pub frames: Vec<(String, String)>,
}

/// What recording a received instance did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Stored; its study is (re)opened for grading.
    New,
    /// The SOP Instance UID was already stored: nothing changed.
    Duplicate,
    /// Refused: the study it names belongs to another source or patient (the reason).
    Conflict(&'static str),
}

/// A study that has been quiet long enough and has ungraded instances.
#[derive(Debug, Clone)]
pub struct DueStudy {
    pub study_uid: String,
    pub submitted_by: String,
    pub patient_id: Option<String>,
    pub last_seq: i64,
    pub previous_exam: Option<String>,
    /// The replica holding the study's lease (this one, when claimed here).
    pub lease_owner: String,
    /// The study's AccessionNumber (first non-empty one received).
    pub accession_number: Option<String>,
}

/// One frame of a study, in receive order.
#[derive(Debug, Clone)]
pub struct StudyFrame {
    pub sop_instance_uid: String,
    pub frame: i64,
    pub sha256: String,
    pub media_type: String,
    pub laterality: String,
    pub instance_sha256: String,
    /// How its instance arrived: "c-store" or "stow-rs".
    pub received_via: String,
}

/// The source instance behind one image of an exam.
#[derive(Debug, Clone)]
pub struct ExamSource {
    pub idx: i64,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub series_uid: String,
    pub study_uid: String,
    pub frame: i64,
    pub instance_sha256: String,
}

fn audit(tx: &mut dyn Tx, actor: &str, action: &str, object: &str, detail: &str) -> Result<(), StoreError> {
    super::append_audit(tx, &now_rfc3339(), actor, action, Some(object), Some(detail))
}

fn due_study_from_row(r: &Row) -> Result<DueStudy, StoreError> {
    Ok(DueStudy {
        study_uid: r.get(0)?,
        submitted_by: r.get(1)?,
        patient_id: r.get(2)?,
        last_seq: r.get(3)?,
        previous_exam: r.get(4)?,
        lease_owner: r.get(5)?,
        accession_number: r.get(6)?,
    })
}

/// Links a new exam to its study and source frames, queues its SR push, and audits the
/// grading; runs inside the exam's transaction.
pub fn link_exam(
    tx: &mut dyn Tx,
    exam_id: &str,
    study: &DueStudy,
    sources: &[(String, i64)],
    sr_destination: Option<&str>,
) -> Result<(), StoreError> {
    // The fence: only the lease holder may record the grading. Zero rows means another
    // replica took the study over; this whole transaction (the exam too) rolls back.
    let fenced = tx.execute(
        "UPDATE dicom_studies SET graded_seq = ?2, state = 'graded', exam_id = ?3, lease_owner = NULL, lease_until = NULL
         WHERE study_uid = ?1 AND lease_owner = ?4",
        args![&study.study_uid, study.last_seq, exam_id, &study.lease_owner],
    )?;
    if fenced == 0 {
        return Err(StoreError::LeaseLost(format!("study {} is being graded by another replica", study.study_uid)));
    }
    for (idx, (sop, frame)) in sources.iter().enumerate() {
        tx.execute(
            "INSERT INTO dicom_exam_sources (exam_id, idx, sop_instance_uid, frame) VALUES (?1, ?2, ?3, ?4)",
            args![exam_id, idx as i64, sop, *frame],
        )?;
    }
    let (action, detail) = match &study.previous_exam {
        Some(prev) => ("dicom.study.regraded", format!("exam {exam_id} supersedes {prev}; {} images", sources.len())),
        None => ("dicom.study.graded", format!("exam {exam_id}; {} images", sources.len())),
    };
    audit(tx, "dicom", action, &study.study_uid, &detail)?;
    if let Some(dest) = sr_destination {
        enqueue(tx, DeliveryKind::Dicom, exam_id, dest)?;
    }
    Ok(())
}

impl Store {
    /// Whether an instance with this SOP Instance UID was already received.
    pub fn dicom_instance_exists(&self, sop_instance_uid: &str) -> Result<bool, StoreError> {
        let found =
            self.db.read(|tx| tx.query_opt("SELECT seq FROM dicom_instances WHERE sop_instance_uid = ?1", args![sop_instance_uid]))?;
        Ok(found.is_some())
    }

    /// Records a received instance and (re)opens its study for grading. A study belongs to
    /// the source that opened it (`actor`: the calling AE or the API key) and to one
    /// PatientID: an instance naming the study from another source or for another patient
    /// is refused and audited, never merged, so an exam never mixes two patients.
    pub fn record_dicom_instance(&self, actor: &str, via: &str, inst: &NewInstance) -> Result<Recorded, StoreError> {
        self.db.write(|tx| {
            if tx.dialect() == Dialect::Postgres {
                // Instances of one study may arrive at several replicas at once: one at a
                // time per study, so the ownership checks below and the study's sequence
                // numbers (committed in the order they were taken) cannot interleave.
                tx.execute("SELECT pg_advisory_xact_lock(hashtext(?1))", args![&inst.study_uid])?;
            }
            let exists = tx.query_opt("SELECT seq FROM dicom_instances WHERE sop_instance_uid = ?1", args![&inst.sop_instance_uid])?;
            if exists.is_some() {
                return Ok(Recorded::Duplicate);
            }
            let owner = tx.query_opt("SELECT submitted_by, patient_id FROM dicom_studies WHERE study_uid = ?1", args![&inst.study_uid])?;
            if let Some(row) = owner {
                let (source, patient): (String, Option<String>) = (row.get(0)?, row.get(1)?);
                let reason = if source != actor {
                    Some("the study was opened by another source (calling AE title or API key)")
                } else if patient.as_deref() != inst.patient_id.as_deref() {
                    Some("the instance's PatientID differs from the study's")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    // The refusal is audited (who tried, which instance) without patient data.
                    let detail = format!("{} via {via} refused: {reason}", inst.sop_instance_uid);
                    super::append_audit(tx, &now_rfc3339(), actor, "dicom.instance.refused", Some(&inst.study_uid), Some(&detail))?;
                    return Ok(Recorded::Conflict(reason));
                }
            }
            let now = now_rfc3339();
            tx.execute(
                "INSERT INTO dicom_studies (study_uid, submitted_by, patient_id, patient_name, first_received_at, last_received_at, last_received_unix, last_seq, state, accession_number)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, 0, 'receiving', ?7)
                 ON CONFLICT(study_uid) DO UPDATE SET last_received_at = ?5, last_received_unix = ?6, state = 'receiving',
                   patient_id = COALESCE(dicom_studies.patient_id, ?3), patient_name = COALESCE(dicom_studies.patient_name, ?4),
                   accession_number = COALESCE(dicom_studies.accession_number, ?7)",
                args![&inst.study_uid, actor, &inst.patient_id, &inst.patient_name, &now, unix_now(), &inst.accession_number],
            )?;
            let seq: i64 = tx
                .query_opt(
                    "INSERT INTO dicom_instances (sop_instance_uid, sop_class_uid, study_uid, series_uid, laterality, transfer_syntax, sha256, received_at, received_via)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING seq",
                    args![
                        &inst.sop_instance_uid,
                        &inst.sop_class_uid,
                        &inst.study_uid,
                        &inst.series_uid,
                        &inst.laterality,
                        &inst.transfer_syntax,
                        &inst.sha256,
                        &now,
                        via
                    ],
                )?
                .ok_or_else(|| StoreError::Corrupt("an insert returned no sequence number".into()))?
                .get(0)?;
            tx.execute("UPDATE dicom_studies SET last_seq = ?2 WHERE study_uid = ?1", args![&inst.study_uid, seq])?;
            for (i, (sha, media)) in inst.frames.iter().enumerate() {
                tx.execute(
                    "INSERT INTO dicom_frames (sop_instance_uid, frame, sha256, media_type) VALUES (?1, ?2, ?3, ?4)",
                    args![&inst.sop_instance_uid, i as i64 + 1, sha, media],
                )?;
            }
            audit(
                tx,
                actor,
                "dicom.instance.received",
                &inst.study_uid,
                &format!("{} via {via}; {} frame(s), {}", inst.sop_instance_uid, inst.frames.len(), inst.laterality),
            )?;
            Ok(Recorded::New)
        })
    }

    /// Claims (for [`STUDY_LEASE_SECS`]) studies with ungraded instances, quiet for at
    /// least `stable_secs`, that no other replica holds.
    pub fn due_studies(&self, stable_secs: f64) -> Result<Vec<DueStudy>, StoreError> {
        let now = unix_now();
        self.db.write(|tx| {
            let sql = format!(
                "UPDATE dicom_studies SET lease_owner = ?1, lease_until = ?2
                 WHERE study_uid IN (SELECT study_uid FROM dicom_studies
                     WHERE last_seq > graded_seq AND last_received_unix <= ?3 AND (lease_until IS NULL OR lease_until < ?4)
                     ORDER BY last_received_unix LIMIT ?5{})
                 RETURNING study_uid, submitted_by, patient_id, last_seq, exam_id, lease_owner, accession_number",
                skip_locked(tx)
            );
            let rows = tx.query(&sql, args![&*self.replica, now + STUDY_LEASE_SECS, now - stable_secs, now, CLAIM_BATCH])?;
            rows.iter().map(due_study_from_row).collect()
        })
    }

    /// Gives a claimed study back at once (grading was deferred, not failed), so the next
    /// pass of any replica can take it.
    pub fn release_study(&self, study: &DueStudy) -> Result<(), StoreError> {
        self.db.write(|tx| {
            tx.execute(
                "UPDATE dicom_studies SET lease_owner = NULL, lease_until = NULL WHERE study_uid = ?1 AND lease_owner = ?2",
                args![&study.study_uid, &study.lease_owner],
            )
        })?;
        Ok(())
    }

    /// Every frame of a study received up to `upto_seq`, in receive order.
    pub fn study_frames(&self, study_uid: &str, upto_seq: i64) -> Result<Vec<StudyFrame>, StoreError> {
        let rows = self.db.read(|tx| {
            tx.query(
                "SELECT i.sop_instance_uid, f.frame, f.sha256, f.media_type, i.laterality, i.sha256, i.received_via
                 FROM dicom_instances i JOIN dicom_frames f ON f.sop_instance_uid = i.sop_instance_uid
                 WHERE i.study_uid = ?1 AND i.seq <= ?2 ORDER BY i.seq, f.frame",
                args![study_uid, upto_seq],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(StudyFrame {
                    sop_instance_uid: r.get(0)?,
                    frame: r.get(1)?,
                    sha256: r.get(2)?,
                    media_type: r.get(3)?,
                    laterality: r.get(4)?,
                    instance_sha256: r.get(5)?,
                    received_via: r.get(6)?,
                })
            })
            .collect()
    }

    /// Marks a claimed study's instances up to its `last_seq` as ungradable (audited), so
    /// the grader does not retry them until new instances arrive. Fenced on the lease like
    /// a grading.
    pub fn fail_study(&self, study: &DueStudy, reason: &str) -> Result<(), StoreError> {
        self.db.write(|tx| {
            let changed = tx.execute(
                "UPDATE dicom_studies SET graded_seq = ?2, state = 'failed', lease_owner = NULL, lease_until = NULL
                 WHERE study_uid = ?1 AND lease_owner = ?3",
                args![&study.study_uid, study.last_seq, &study.lease_owner],
            )?;
            if changed == 0 {
                return Err(StoreError::LeaseLost(format!("study {} is being graded by another replica", study.study_uid)));
            }
            audit(tx, "dicom", "dicom.study.failed", &study.study_uid, reason)
        })
    }

    /// The DICOM study state of a StudyInstanceUID: (state, exam id).
    pub fn dicom_study_state(&self, study_uid: &str) -> Result<Option<(String, Option<String>)>, StoreError> {
        let row = self.db.read(|tx| tx.query_opt("SELECT state, exam_id FROM dicom_studies WHERE study_uid = ?1", args![study_uid]))?;
        row.map(|r| Ok((r.get(0)?, r.get(1)?))).transpose()
    }

    /// The source instances of an exam graded from DICOM (empty for other exams).
    pub fn exam_sources(&self, exam_id: &str) -> Result<Vec<ExamSource>, StoreError> {
        let rows = self.db.read(|tx| {
            tx.query(
                "SELECT s.idx, i.sop_class_uid, i.sop_instance_uid, i.series_uid, i.study_uid, s.frame, i.sha256
                 FROM dicom_exam_sources s JOIN dicom_instances i ON i.sop_instance_uid = s.sop_instance_uid
                 WHERE s.exam_id = ?1 ORDER BY s.idx",
                args![exam_id],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(ExamSource {
                    idx: r.get(0)?,
                    sop_class_uid: r.get(1)?,
                    sop_instance_uid: r.get(2)?,
                    series_uid: r.get(3)?,
                    study_uid: r.get(4)?,
                    frame: r.get(5)?,
                    instance_sha256: r.get(6)?,
                })
            })
            .collect()
    }
}
