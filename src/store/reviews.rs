//! Review persistence: each submission is applied under the rules of `crate::review` in
//! one immediate transaction (read the latest version, plan, write, mark the exam
//! reviewed on sign-off, append the audit event), so two clinicians saving at once can
//! neither lose each other's work nor slip past the lock. Signed rows are also locked
//! by a trigger, so no code path can rewrite them.

use super::sql::{Dialect, Row, Tx, args};
use super::{Store, StoreError, append_audit, now_rfc3339};
use crate::grading::{ExamOutcome, ExamResult};
use crate::report::agreement::{EyePair, iso_week};
use crate::review::{self, Plan, Review, ReviewError, ReviewInput, ReviewState};

/// How a submission was made: the clinician pressed a button, or the review form saved
/// typed work on its own ([`SaveKind::Autosave`]; drafts only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveKind {
    Manual,
    Autosave,
}

/// An autosave is audited (`review.draft.autosave`) at most once a minute per exam and
/// clinician: the form saves a few seconds after every pause in typing, and an event for
/// each would drown the audit log. The draft itself is always written (in place).
const AUTOSAVE_AUDIT_EVERY_SECS: i64 = 60;

/// Why a review could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum ReviewSaveError {
    #[error("exam not found")]
    ExamNotFound,
    #[error(transparent)]
    Rule(#[from] ReviewError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Body {
    eyes: std::collections::BTreeMap<String, review::EyeReview>,
    /// Absent (null) in a partial draft saved before an outcome was chosen.
    #[serde(default)]
    outcome: Option<ExamOutcome>,
    outcome_by_rule: ExamOutcome,
    note: String,
}

pub(super) const REVIEW_COLUMNS: &str =
    "exam_id, version, reviewer, created_at, updated_at, signed_at, amends, amendment_reason, body_json, outcome_reason";

pub(super) fn review_from_row(row: &Row) -> Result<Review, StoreError> {
    let body_json: String = row.get(8)?;
    let signed_at: Option<String> = row.get(5)?;
    let body: Body = serde_json::from_str(&body_json).map_err(|e| StoreError::Corrupt(format!("review body: {e}")))?;
    Ok(Review {
        exam_id: row.get(0)?,
        version: row.get(1)?,
        state: if signed_at.is_some() { ReviewState::Signed } else { ReviewState::Draft },
        reviewer: row.get(2)?,
        // Filled from the key by the callers that show it ([`super::keys::fill_reviewer_names`]).
        reviewer_name: None,
        created_at: row.get(3)?,
        updated_at: row.get(4)?,
        signed_at,
        amends: row.get(6)?,
        amendment_reason: row.get(7)?,
        eyes: body.eyes,
        outcome: body.outcome,
        outcome_by_rule: body.outcome_by_rule,
        note: body.note,
        outcome_reason: row.get(9)?,
    })
}

/// Whether `reviewer` has an autosave of `exam_id` audited within the last
/// [`AUTOSAVE_AUDIT_EVERY_SECS`]. Reads the audit log backwards from its newest event and
/// stops at the first older than that window, so the cost is bounded by one minute of
/// events, not by the log's size.
fn autosave_audited_recently(tx: &mut dyn Tx, reviewer: &str, exam_id: &str) -> Result<bool, StoreError> {
    const PAGE: i64 = 256;
    let cutoff = time::OffsetDateTime::now_utc() - time::Duration::seconds(AUTOSAVE_AUDIT_EVERY_SECS);
    let mut before = i64::MAX;
    loop {
        let rows =
            tx.query("SELECT seq, at, actor, action, object FROM audit WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2", args![before, PAGE])?;
        for row in &rows {
            let at: String = row.get(1)?;
            let recent = time::OffsetDateTime::parse(&at, &time::format_description::well_known::Rfc3339).is_ok_and(|t| t >= cutoff);
            if !recent {
                return Ok(false);
            }
            let (actor, action, object): (String, String, Option<String>) = (row.get(2)?, row.get(3)?, row.get(4)?);
            if actor == reviewer && action == "review.draft.autosave" && object.as_deref() == Some(exam_id) {
                return Ok(true);
            }
            before = row.get(0)?;
        }
        if (rows.len() as i64) < PAGE {
            return Ok(false);
        }
    }
}

impl Store {
    /// Every version of an exam's review, oldest first.
    pub fn reviews(&self, exam_id: &str) -> Result<Vec<Review>, StoreError> {
        self.db.read(|tx| {
            let rows = tx.query(&format!("SELECT {REVIEW_COLUMNS} FROM reviews WHERE exam_id = ?1 ORDER BY version"), args![exam_id])?;
            let mut out = rows.iter().map(review_from_row).collect::<Result<Vec<_>, _>>()?;
            super::keys::fill_reviewer_names(tx, &mut out)?;
            Ok(out)
        })
    }

    /// Applies a clinician's submission; returns the version written.
    pub fn submit_review(&self, exam_id: &str, reviewer: &str, input: &ReviewInput) -> Result<Review, ReviewSaveError> {
        self.submit_review_as(exam_id, reviewer, input, SaveKind::Manual)
    }

    /// [`Store::submit_review`] for a manual save or an autosave. An autosave never signs
    /// (its `sign` is ignored) and, like every draft save, updates the open draft in place
    /// rather than appending a version; only its audit event differs.
    pub fn submit_review_as(&self, exam_id: &str, reviewer: &str, input: &ReviewInput, kind: SaveKind) -> Result<Review, ReviewSaveError> {
        let autosaved;
        let input = if kind == SaveKind::Autosave && input.sign {
            autosaved = ReviewInput { sign: false, ..input.clone() };
            &autosaved
        } else {
            input
        };
        self.db.write(|tx| {
            // SQLite's write lock is already held (BEGIN IMMEDIATE); on PostgreSQL the exam
            // row's lock makes two clinicians' saves of one exam take turns.
            let lock = match tx.dialect() {
                Dialect::Postgres => " FOR UPDATE",
                Dialect::Sqlite => "",
            };
            let row = tx.query_opt(&format!("SELECT result_json FROM exams WHERE id = ?1{lock}"), args![exam_id])?;
            let Some(row) = row else {
                return Err(ReviewSaveError::ExamNotFound);
            };
            let result: ExamResult = super::parse_json("exam result", &row.get::<String>(0)?)?;
            let eyes: Vec<_> = result.eyes.iter().map(|e| e.laterality).collect();
            let outcome = review::validate(input, &eyes)?;
            let latest = tx
                .query_opt(&format!("SELECT {REVIEW_COLUMNS} FROM reviews WHERE exam_id = ?1 ORDER BY version DESC LIMIT 1"), args![exam_id])?
                .map(|r| review_from_row(&r))
                .transpose()?;
            let plan = review::plan(latest.as_ref(), input)?;
            let now = now_rfc3339();
            let by_rule = review::outcome_by_rule(&input.eyes);
            let body = Body { eyes: input.eyes.clone(), outcome, outcome_by_rule: by_rule, note: input.note.clone() };
            let outcome_reason = review::outcome_reason(input);
            let body_json = super::to_json(&body)?;
            let signed_at = input.sign.then(|| now.clone());
            let (action, amends) = match plan {
                Plan::Insert { version, amends } => {
                    tx.execute(
                        "INSERT INTO reviews (exam_id, version, reviewer, created_at, updated_at, signed_at, amends, amendment_reason, body_json, outcome_reason)
                         VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7, ?8, ?9)",
                        args![exam_id, version, reviewer, &now, signed_at.clone(), amends, &input.amendment_reason, body_json.as_str(), outcome_reason],
                    )?;
                    (if amends.is_some() { "review.amend" } else { "review.save" }, amends)
                }
                Plan::UpdateDraft { version } => {
                    let amends = latest.as_ref().and_then(|r| r.amends);
                    tx.execute(
                        "UPDATE reviews SET reviewer = ?3, updated_at = ?4, signed_at = ?5,
                            amendment_reason = COALESCE(?6, amendment_reason), body_json = ?7, outcome_reason = ?8
                         WHERE exam_id = ?1 AND version = ?2",
                        args![exam_id, version, reviewer, &now, signed_at.clone(), &input.amendment_reason, body_json.as_str(), outcome_reason],
                    )?;
                    (if amends.is_some() { "review.amend" } else { "review.save" }, amends)
                }
            };
            let version = plan.version();
            let detail = format!("version {version}, outcome {}", outcome.map_or("not chosen yet", ExamOutcome::as_str));
            if kind == SaveKind::Manual {
                append_audit(tx, &now, reviewer, action, Some(exam_id), Some(&detail))?;
            } else if !autosave_audited_recently(tx, reviewer, exam_id)? {
                append_audit(tx, &now, reviewer, "review.draft.autosave", Some(exam_id), Some(&detail))?;
            }
            if input.sign {
                tx.execute("UPDATE exams SET reviewed = 1 WHERE id = ?1", args![exam_id])?;
                let mut signed = format!("version {version}{}", amends.map(|a| format!(", amends {a}")).unwrap_or_default());
                if let Some(outcome) = outcome.filter(|o| *o != by_rule) {
                    signed.push_str(&format!(", outcome {} where the grades imply {}", outcome.as_str(), by_rule.as_str()));
                }
                if let Some(reason) = outcome_reason {
                    signed.push_str(&format!(", outcome reason: {reason}"));
                }
                append_audit(tx, &now, reviewer, "review.sign", Some(exam_id), Some(&signed))?;
            }
            let written = tx
                .query_opt(&format!("SELECT {REVIEW_COLUMNS} FROM reviews WHERE exam_id = ?1 AND version = ?2"), args![exam_id, version])?
                .ok_or_else(|| StoreError::Corrupt(format!("review version {version} was not written")))?;
            let mut written = [review_from_row(&written)?];
            super::keys::fill_reviewer_names(tx, &mut written)?;
            let [written] = written;
            Ok(written)
        })
    }

    /// The latest signed version of the `last` most recently signed exams, paired eye by
    /// eye with the model's reading; returns (number of reviews, pairs).
    pub fn agreement_pairs(&self, last: u32) -> Result<(usize, Vec<EyePair>), StoreError> {
        let sql = format!(
            "SELECT {cols}, e.result_json FROM reviews r JOIN exams e ON e.id = r.exam_id
             WHERE r.signed_at IS NOT NULL
               AND r.version = (SELECT MAX(version) FROM reviews WHERE exam_id = r.exam_id AND signed_at IS NOT NULL)
             ORDER BY r.signed_at DESC LIMIT ?1",
            cols = REVIEW_COLUMNS.split(", ").map(|c| format!("r.{c}")).collect::<Vec<_>>().join(", ")
        );
        let rows = self.db.read(|tx| tx.query(&sql, args![i64::from(last)]))?;
        let mut reviews = 0;
        let mut pairs = Vec::new();
        for row in &rows {
            let review = review_from_row(row)?;
            let result_json: String = row.get(10)?;
            reviews += 1;
            let result: ExamResult = super::parse_json("exam result", &result_json)?;
            let week = review.signed_at.as_deref().and_then(iso_week).unwrap_or_default();
            for eye in &result.eyes {
                let Some(reading) = review.eyes.get(eye.laterality.as_str()) else { continue };
                pairs.push(EyePair {
                    week: week.clone(),
                    model_grade: eye.grade,
                    model_dme: eye.dme,
                    clinician_grade: reading.grade,
                    clinician_dme: reading.dme,
                });
            }
        }
        Ok((reviews, pairs))
    }
}
