//! The DICOM node's tables: studies waiting to be graded, received instances (one row per
//! SOP Instance UID, so a repeated store is a no-op), their frames, the instances behind
//! each exam, and the SR outbox. Every write that is a clinical action appends its audit
//! event in the same transaction.

use rusqlite::{OptionalExtension, Transaction, params};

use super::{Store, StoreError, now_rfc3339};

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

/// An SR push that is due.
#[derive(Debug, Clone)]
pub struct DueOutbox {
    pub id: i64,
    pub exam_id: String,
    pub destination: String,
    pub attempts: i64,
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn audit(tx: &Transaction<'_>, actor: &str, action: &str, object: &str, detail: &str) -> Result<(), StoreError> {
    super::append_audit(tx, &now_rfc3339(), actor, action, Some(object), Some(detail))
}

/// Links a new exam to its study and source frames, queues its SR push, and audits the
/// grading; runs inside the exam's transaction.
pub fn link_exam(
    tx: &Transaction<'_>,
    exam_id: &str,
    study: &DueStudy,
    sources: &[(String, i64)],
    sr_destination: Option<&str>,
) -> Result<(), StoreError> {
    for (idx, (sop, frame)) in sources.iter().enumerate() {
        tx.execute(
            "INSERT INTO dicom_exam_sources (exam_id, idx, sop_instance_uid, frame) VALUES (?1, ?2, ?3, ?4)",
            params![exam_id, idx as i64, sop, frame],
        )?;
    }
    tx.execute(
        "UPDATE dicom_studies SET graded_seq = ?2, state = 'graded', exam_id = ?3 WHERE study_uid = ?1",
        params![study.study_uid, study.last_seq, exam_id],
    )?;
    let (action, detail) = match &study.previous_exam {
        Some(prev) => ("dicom.study.regraded", format!("exam {exam_id} supersedes {prev}; {} images", sources.len())),
        None => ("dicom.study.graded", format!("exam {exam_id}; {} images", sources.len())),
    };
    audit(tx, "dicom", action, &study.study_uid, &detail)?;
    if let Some(dest) = sr_destination {
        tx.execute(
            "INSERT INTO sr_outbox (exam_id, destination, created_at, next_attempt_unix) VALUES (?1, ?2, ?3, ?4)",
            params![exam_id, dest, now_rfc3339(), unix_now()],
        )?;
    }
    Ok(())
}

impl Store {
    /// Whether an instance with this SOP Instance UID was already received.
    pub fn dicom_instance_exists(&self, sop_instance_uid: &str) -> Result<bool, StoreError> {
        let found: Option<i64> = self
            .conn()?
            .query_row("SELECT seq FROM dicom_instances WHERE sop_instance_uid = ?1", [sop_instance_uid], |r| r.get(0))
            .optional()?;
        Ok(found.is_some())
    }

    /// Records a received instance and (re)opens its study for grading. A study belongs to
    /// the source that opened it (`actor`: the calling AE or the API key) and to one
    /// PatientID: an instance naming the study from another source or for another patient
    /// is refused and audited, never merged, so an exam never mixes two patients.
    pub fn record_dicom_instance(&self, actor: &str, via: &str, inst: &NewInstance) -> Result<Recorded, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let exists: Option<i64> = tx
            .query_row("SELECT seq FROM dicom_instances WHERE sop_instance_uid = ?1", [&inst.sop_instance_uid], |r| r.get(0))
            .optional()?;
        if exists.is_some() {
            return Ok(Recorded::Duplicate);
        }
        let owner: Option<(String, Option<String>)> = tx
            .query_row("SELECT submitted_by, patient_id FROM dicom_studies WHERE study_uid = ?1", [&inst.study_uid], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        if let Some((source, patient)) = owner {
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
                super::append_audit(&tx, &now_rfc3339(), actor, "dicom.instance.refused", Some(&inst.study_uid), Some(&detail))?;
                tx.commit()?;
                return Ok(Recorded::Conflict(reason));
            }
        }
        let now = now_rfc3339();
        tx.execute(
            "INSERT INTO dicom_studies (study_uid, submitted_by, patient_id, patient_name, first_received_at, last_received_at, last_received_unix, last_seq, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, 0, 'receiving')
             ON CONFLICT(study_uid) DO UPDATE SET last_received_at = ?5, last_received_unix = ?6, state = 'receiving',
               patient_id = COALESCE(dicom_studies.patient_id, ?3), patient_name = COALESCE(dicom_studies.patient_name, ?4)",
            params![inst.study_uid, actor, inst.patient_id, inst.patient_name, now, unix_now()],
        )?;
        tx.execute(
            "INSERT INTO dicom_instances (sop_instance_uid, sop_class_uid, study_uid, series_uid, laterality, transfer_syntax, sha256, received_at, received_via)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                inst.sop_instance_uid,
                inst.sop_class_uid,
                inst.study_uid,
                inst.series_uid,
                inst.laterality,
                inst.transfer_syntax,
                inst.sha256,
                now,
                via
            ],
        )?;
        let seq = tx.last_insert_rowid();
        tx.execute("UPDATE dicom_studies SET last_seq = ?2 WHERE study_uid = ?1", params![inst.study_uid, seq])?;
        for (i, (sha, media)) in inst.frames.iter().enumerate() {
            tx.execute(
                "INSERT INTO dicom_frames (sop_instance_uid, frame, sha256, media_type) VALUES (?1, ?2, ?3, ?4)",
                params![inst.sop_instance_uid, i as i64 + 1, sha, media],
            )?;
        }
        audit(
            &tx,
            actor,
            "dicom.instance.received",
            &inst.study_uid,
            &format!("{} via {via}; {} frame(s), {}", inst.sop_instance_uid, inst.frames.len(), inst.laterality),
        )?;
        tx.commit()?;
        Ok(Recorded::New)
    }

    /// Studies with ungraded instances, quiet for at least `stable_secs`.
    pub fn due_studies(&self, stable_secs: f64) -> Result<Vec<DueStudy>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT study_uid, submitted_by, patient_id, last_seq, exam_id FROM dicom_studies
             WHERE last_seq > graded_seq AND last_received_unix <= ?1 ORDER BY last_received_unix LIMIT 16",
        )?;
        let rows = stmt.query_map([unix_now() - stable_secs], |r| {
            Ok(DueStudy {
                study_uid: r.get(0)?,
                submitted_by: r.get(1)?,
                patient_id: r.get(2)?,
                last_seq: r.get(3)?,
                previous_exam: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Every frame of a study received up to `upto_seq`, in receive order.
    pub fn study_frames(&self, study_uid: &str, upto_seq: i64) -> Result<Vec<StudyFrame>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT i.sop_instance_uid, f.frame, f.sha256, f.media_type, i.laterality, i.sha256, i.received_via
             FROM dicom_instances i JOIN dicom_frames f ON f.sop_instance_uid = i.sop_instance_uid
             WHERE i.study_uid = ?1 AND i.seq <= ?2 ORDER BY i.seq, f.frame",
        )?;
        let rows = stmt.query_map(params![study_uid, upto_seq], |r| {
            Ok(StudyFrame {
                sop_instance_uid: r.get(0)?,
                frame: r.get(1)?,
                sha256: r.get(2)?,
                media_type: r.get(3)?,
                laterality: r.get(4)?,
                instance_sha256: r.get(5)?,
                received_via: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Marks a study's instances up to `last_seq` as ungradable (audited), so the grader
    /// does not retry them until new instances arrive.
    pub fn fail_study(&self, study_uid: &str, last_seq: i64, reason: &str) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        tx.execute("UPDATE dicom_studies SET graded_seq = ?2, state = 'failed' WHERE study_uid = ?1", params![study_uid, last_seq])?;
        audit(&tx, "dicom", "dicom.study.failed", study_uid, reason)?;
        tx.commit()?;
        Ok(())
    }

    /// The DICOM study state of a StudyInstanceUID: (state, exam id).
    pub fn dicom_study_state(&self, study_uid: &str) -> Result<Option<(String, Option<String>)>, StoreError> {
        Ok(self
            .conn()?
            .query_row("SELECT state, exam_id FROM dicom_studies WHERE study_uid = ?1", [study_uid], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// The source instances of an exam graded from DICOM (empty for other exams).
    pub fn exam_sources(&self, exam_id: &str) -> Result<Vec<ExamSource>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT s.idx, i.sop_class_uid, i.sop_instance_uid, i.series_uid, i.study_uid, s.frame, i.sha256
             FROM dicom_exam_sources s JOIN dicom_instances i ON i.sop_instance_uid = s.sop_instance_uid
             WHERE s.exam_id = ?1 ORDER BY s.idx",
        )?;
        let rows = stmt.query_map([exam_id], |r| {
            Ok(ExamSource {
                idx: r.get(0)?,
                sop_class_uid: r.get(1)?,
                sop_instance_uid: r.get(2)?,
                series_uid: r.get(3)?,
                study_uid: r.get(4)?,
                frame: r.get(5)?,
                instance_sha256: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// SR pushes whose next attempt is due.
    pub fn due_outbox(&self) -> Result<Vec<DueOutbox>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, exam_id, destination, attempts FROM sr_outbox WHERE sent_at IS NULL AND next_attempt_unix <= ?1 ORDER BY id LIMIT 16",
        )?;
        let rows = stmt.query_map([unix_now()], |r| {
            Ok(DueOutbox { id: r.get(0)?, exam_id: r.get(1)?, destination: r.get(2)?, attempts: r.get(3)? })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Records a delivered SR push (audited).
    pub fn outbox_sent(&self, item: &DueOutbox, sop_instance_uid: &str) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE sr_outbox SET sent_at = ?2, attempts = attempts + 1, last_error = NULL WHERE id = ?1",
            params![item.id, now_rfc3339()],
        )?;
        audit(&tx, "dicom", "dicom.sr.sent", &item.exam_id, &format!("SR {sop_instance_uid} to {}", item.destination))?;
        tx.commit()?;
        Ok(())
    }

    /// Records a failed SR push and when to retry it (audited; the row stays queued).
    pub fn outbox_failed(&self, item: &DueOutbox, retry_in_secs: f64, error: &str) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE sr_outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_unix = ?3 WHERE id = ?1",
            params![item.id, error, unix_now() + retry_in_secs],
        )?;
        audit(
            &tx,
            "dicom",
            "dicom.sr.failed",
            &item.exam_id,
            &format!("attempt {} to {}: {error}; retry in {retry_in_secs:.0}s", item.attempts + 1, item.destination),
        )?;
        tx.commit()?;
        Ok(())
    }
}
