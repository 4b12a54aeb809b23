//! Patient context for the review pages (issue 16): the latest signed review of many
//! exams in one query (the worklist shows the clinician's result beside the model's for
//! up to 2000 rows, so no query per row), and a patient's other exams with their signed
//! reviews for the case page's "earlier exams" list. Patients are matched by the exact
//! `patient_ref` the clinic sent; nothing here guesses that two references are one person.

use std::collections::HashMap;

use super::keys::fill_reviewer_names;
use super::reviews::{REVIEW_COLUMNS, review_from_row};
use super::sql::{Dialect, Tx, args};
use super::{Store, StoreError, StoredExam};
use crate::review::Review;

/// One exam of a patient with its latest signed review, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientExam {
    pub exam: StoredExam,
    pub signed: Option<Review>,
}

fn latest_signed(tx: &mut dyn Tx, exam_ids: &[&str]) -> Result<HashMap<String, Review>, StoreError> {
    if exam_ids.is_empty() {
        return Ok(HashMap::new());
    }
    // The ids travel as one JSON array parameter (no statement per exam, no limit on the
    // number of bound parameters); the window keeps each exam's highest signed version.
    let ids = serde_json::to_string(exam_ids).map_err(|e| StoreError::Corrupt(format!("cannot serialise exam ids: {e}")))?;
    let id_list = match tx.dialect() {
        Dialect::Sqlite => "SELECT value FROM json_each(?1)",
        Dialect::Postgres => "SELECT json_array_elements_text(CAST(?1 AS TEXT)::json)",
    };
    let rows = tx.query(
        &format!(
            "SELECT {REVIEW_COLUMNS} FROM (
                 SELECT r.*, ROW_NUMBER() OVER (PARTITION BY r.exam_id ORDER BY r.version DESC) AS latest
                 FROM reviews r
                 WHERE r.signed_at IS NOT NULL AND r.exam_id IN ({id_list})
             ) AS ranked WHERE latest = 1"
        ),
        args![ids],
    )?;
    let mut reviews = rows.iter().map(review_from_row).collect::<Result<Vec<_>, _>>()?;
    fill_reviewer_names(tx, &mut reviews)?;
    Ok(reviews.into_iter().map(|r| (r.exam_id.clone(), r)).collect())
}

impl Store {
    /// The latest signed review of each of `exam_ids` that has one, by exam id.
    pub fn latest_signed_reviews(&self, exam_ids: &[&str]) -> Result<HashMap<String, Review>, StoreError> {
        self.db.read(|tx| latest_signed(tx, exam_ids))
    }

    /// The patient's exams other than `except`, newest first, at most `limit`, each with
    /// its latest signed review.
    pub fn patient_exams(&self, patient_ref: &str, except: &str, limit: u32) -> Result<Vec<PatientExam>, StoreError> {
        let sql =
            format!("SELECT {} FROM exams WHERE patient_ref = ? AND id <> ? ORDER BY created_at DESC, id DESC LIMIT ?", Self::EXAM_COLUMNS);
        self.db.read(|tx| {
            let exams = Self::query_exams(tx, &sql, args![patient_ref, except, i64::from(limit)])?;
            let ids: Vec<&str> = exams.iter().map(|e| e.id.as_str()).collect();
            let mut signed = latest_signed(tx, &ids)?;
            Ok(exams.into_iter().map(|exam| PatientExam { signed: signed.remove(&exam.id), exam }).collect())
        })
    }
}
