//! Clinician review of a screened exam: what a review says (each eye's ICDR grade and
//! macular oedema as the clinician sees them, the final outcome and a note) and the rules
//! that govern its life: a draft may be edited, sign-off locks it, and a later change is
//! an amendment that becomes a new version while the signed one is kept unchanged. Pure
//! logic, no I/O: the store applies a [`Plan`] inside one transaction, and every edge
//! (JSON API, review pages) goes through the same rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::grading::rules::{ExamOutcome, OUTCOME_TABLE, exam_outcome};
use crate::grading::{EyeResult, Laterality};

/// `[review]`: the clinician review pages and the agreement monitor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReviewConfig {
    /// Share (0 to 1) of `rescreen` exams put on the worklist for quality assurance.
    pub qa_rescreen_share: f64,
    /// A review session ends after this many seconds without a request.
    pub session_idle_secs: u64,
    /// Mark the session cookie `Secure` (set when drscreen is served over HTTPS,
    /// e.g. behind the clinic's TLS proxy).
    pub secure_cookies: bool,
    /// The agreement monitor compares the model with the last N signed reviews.
    pub agreement_window: u32,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        Self { qa_rescreen_share: 0.1, session_idle_secs: 15 * 60, secure_cookies: false, agreement_window: 200 }
    }
}

/// Longest note, amendment reason or outcome reason accepted, in characters.
pub const MAX_NOTE_CHARS: usize = 4000;

/// The clinician's reading of one eye. `grade: None` means the clinician could not grade
/// the eye (then `dme` must be `None` too). In a draft, `dme: None` beside a grade means
/// the verdict is not given yet; signing needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EyeReview {
    pub grade: Option<u8>,
    pub dme: Option<bool>,
}

/// What a clinician submits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewInput {
    /// Keyed by laterality: "right", "left" (or "unspecified" for images sent without one).
    pub eyes: BTreeMap<String, EyeReview>,
    /// Final outcome: urgent_referral | referral | rescreen | ungradable; empty or absent
    /// in a draft that has none yet (signing needs one).
    #[serde(default)]
    pub outcome: String,
    #[serde(default)]
    pub note: String,
    /// Sign off now (locks this version).
    #[serde(default)]
    pub sign: bool,
    /// Required when the latest version is signed: why it is being amended.
    #[serde(default)]
    pub amendment_reason: Option<String>,
    /// Required to sign an outcome less urgent than the one the clinician's own grades
    /// imply ([`outcome_by_rule`]): why the less urgent outcome is right.
    #[serde(default)]
    pub outcome_reason: Option<String>,
    /// The latest version the clinician saw (0 = none); a mismatch means someone else
    /// changed the review meanwhile and the submission is refused rather than lost.
    #[serde(default)]
    pub base_version: Option<u32>,
}

/// Draft or signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    Draft,
    Signed,
}

/// One stored version of an exam's review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Review {
    pub exam_id: String,
    pub version: u32,
    pub state: ReviewState,
    /// API key id of the clinician who last wrote this version.
    pub reviewer: String,
    /// That key's display name, when it has one (read from the key, not stored here).
    #[serde(default)]
    pub reviewer_name: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub signed_at: Option<String>,
    /// The signed version this one amends.
    pub amends: Option<u32>,
    pub amendment_reason: Option<String>,
    pub eyes: BTreeMap<String, EyeReview>,
    /// The final outcome; `None` only in a draft saved before one was chosen.
    pub outcome: Option<ExamOutcome>,
    /// What the outcome table gives for the clinician's own grades (for comparison).
    pub outcome_by_rule: ExamOutcome,
    pub note: String,
    /// Why the outcome is less urgent than `outcome_by_rule` (absent when not given).
    pub outcome_reason: Option<String>,
}

/// One refused field of a submission: which field (the review form's field name:
/// `right_grade`, `left_dme`, `outcome`, `note`, `outcome_reason`, `amendment_reason`),
/// a stable machine code, and a sentence in words for the clinician.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

/// Why a review submission was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// Every field that is wrong, all at once; `code` and `message` are the first one's,
    /// so a client that reads only `{error, code}` still gets a meaningful answer.
    #[error("{message}")]
    Invalid { code: &'static str, message: String, fields: Vec<FieldError> },
    #[error("version {latest} is signed and locked; an amendment needs amendment_reason")]
    AmendmentReasonRequired { latest: u32 },
    #[error("the review changed meanwhile: you saw version {seen}, the latest is {latest}; reload and try again")]
    Conflict { seen: u32, latest: u32 },
}

impl ReviewError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { code, .. } => code,
            Self::AmendmentReasonRequired { .. } => "amendment_reason_required",
            Self::Conflict { .. } => "review_conflict",
        }
    }

    /// The refused fields (empty for refusals that are not about one field).
    pub fn fields(&self) -> &[FieldError] {
        match self {
            Self::Invalid { fields, .. } => fields,
            Self::AmendmentReasonRequired { .. } | Self::Conflict { .. } => &[],
        }
    }
}

/// What the store must do with a valid submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Write version `version` as a new row (first review, or an amendment of `amends`).
    Insert { version: u32, amends: Option<u32> },
    /// Overwrite the unsigned draft `version` (it keeps what it amends, if anything).
    UpdateDraft { version: u32 },
}

impl Plan {
    pub fn version(self) -> u32 {
        match self {
            Self::Insert { version, .. } | Self::UpdateDraft { version } => version,
        }
    }
}

/// Checks a submission against the exam's eyes; returns its final outcome (`None`: a
/// draft without one yet). Every wrong field is reported, not only the first.
///
/// A draft may be partial (issue 16: work is saved as it is typed): eyes not yet read,
/// a grade without its macular-oedema verdict and no outcome are all allowed. Signing
/// needs every eye graded (or marked ungradable) with its verdict, and an outcome.
pub fn validate(input: &ReviewInput, exam_eyes: &[Laterality]) -> Result<Option<ExamOutcome>, ReviewError> {
    let mut errors: Vec<FieldError> = Vec::new();
    let mut refuse = |field: String, code: &'static str, message: String| errors.push(FieldError { field, code, message });
    for (eye, reading) in &input.eyes {
        let Some(lat) = Laterality::parse(eye).filter(|l| l.as_str() == eye) else {
            refuse(eye.clone(), "invalid_laterality", format!("Unknown eye '{eye}' (use right, left or unspecified)."));
            continue;
        };
        let field = |what: &str| format!("{eye}_{what}");
        if !exam_eyes.contains(&lat) {
            refuse(field("grade"), "invalid_laterality", format!("This exam has no {eye} eye images."));
            continue;
        }
        if reading.grade.is_some_and(|g| g > 4) {
            refuse(field("grade"), "invalid_grade", format!("The {eye} eye's ICDR grade must be 0 to 4."));
        }
        if reading.grade.is_none() && reading.dme.is_some() {
            refuse(
                field("dme"),
                "invalid_grade",
                format!("The {eye} eye is marked ungradable, so it cannot have a macular oedema verdict."),
            );
        }
        if input.sign && reading.grade.is_some() && reading.dme.is_none() {
            refuse(field("dme"), "dme_required", format!("Say whether the {eye} eye has macular oedema before signing off."));
        }
    }
    if input.sign {
        for missing in exam_eyes.iter().filter(|lat| !input.eyes.contains_key(lat.as_str())) {
            let eye = missing.as_str();
            refuse(format!("{eye}_grade"), "incomplete_review", format!("Grade the {eye} eye (or mark it ungradable) before signing off."));
        }
    }
    // The outcome arrives as text so that an unknown value gets this module's error code,
    // not a deserialiser message; empty means "not chosen yet" (drafts only).
    let outcome = if input.outcome.is_empty() {
        if input.sign {
            refuse("outcome".into(), "outcome_required", "Choose the final outcome before signing off.".into());
        }
        None
    } else {
        let parsed = ExamOutcome::parse(&input.outcome);
        if parsed.is_none() {
            refuse(
                "outcome".into(),
                "invalid_outcome",
                format!("Unknown outcome '{}' (use urgent_referral, referral, rescreen or ungradable).", input.outcome),
            );
        }
        parsed
    };
    let texts = [
        ("note", "The note", Some(&input.note)),
        ("amendment_reason", "The reason for the amendment", input.amendment_reason.as_ref()),
        ("outcome_reason", "The reason for a less urgent outcome", input.outcome_reason.as_ref()),
    ];
    for (field, what, text) in texts {
        let chars = text.map_or(0, |t| t.chars().count());
        if chars > MAX_NOTE_CHARS {
            refuse(
                field.into(),
                "note_too_long",
                format!(
                    "{what} is {chars} characters; the limit is {MAX_NOTE_CHARS}. Shorten it by {over} character{s}.",
                    over = chars - MAX_NOTE_CHARS,
                    s = if chars - MAX_NOTE_CHARS == 1 { "" } else { "s" }
                ),
            );
        }
    }
    if input.sign
        && let Some(outcome) = outcome
    {
        let implied = outcome_by_rule(&input.eyes);
        if outcome.less_urgent_than(implied) && outcome_reason(input).is_none() {
            let (condition, _) = outcome_rule_in_words(implied).unwrap_or(("", ""));
            refuse(
                "outcome_reason".into(),
                "outcome_reason_required",
                format!(
                    "Your grades imply {implied} ({condition}); signing the less urgent outcome {chosen} needs a stated reason (outcome_reason).",
                    implied = implied.as_str().replace('_', " "),
                    chosen = outcome.as_str().replace('_', " "),
                ),
            );
        }
    }
    match errors.first() {
        None => Ok(outcome),
        Some(first) => Err(ReviewError::Invalid { code: first.code, message: first.message.clone(), fields: errors }),
    }
}

/// The submission's outcome reason, if it says anything (blank counts as none).
pub fn outcome_reason(input: &ReviewInput) -> Option<&str> {
    input.outcome_reason.as_deref().filter(|r| !r.trim().is_empty())
}

/// Decides how a valid submission changes the review given its latest version.
pub fn plan(latest: Option<&Review>, input: &ReviewInput) -> Result<Plan, ReviewError> {
    let latest_version = latest.map_or(0, |r| r.version);
    if let Some(seen) = input.base_version
        && seen != latest_version
    {
        return Err(ReviewError::Conflict { seen, latest: latest_version });
    }
    match latest {
        None => Ok(Plan::Insert { version: 1, amends: None }),
        Some(r) if r.state == ReviewState::Draft => Ok(Plan::UpdateDraft { version: r.version }),
        Some(r) => {
            if input.amendment_reason.as_deref().map(str::trim).unwrap_or_default().is_empty() {
                Err(ReviewError::AmendmentReasonRequired { latest: r.version })
            } else {
                Ok(Plan::Insert { version: r.version + 1, amends: Some(r.version) })
            }
        }
    }
}

/// The outcome the exam outcome table gives for the clinician's readings.
pub fn outcome_by_rule(eyes: &BTreeMap<String, EyeReview>) -> ExamOutcome {
    let results: Vec<EyeResult> = eyes
        .iter()
        .map(|(eye, r)| EyeResult {
            laterality: Laterality::parse(eye).unwrap_or(Laterality::Unspecified),
            gradable: r.grade.is_some(),
            grade: r.grade,
            dme: r.dme,
            images: vec![],
        })
        .collect();
    exam_outcome(&results).0
}

/// The condition and explanation of the outcome table row for `outcome`, in words.
pub fn outcome_rule_in_words(outcome: ExamOutcome) -> Option<(&'static str, &'static str)> {
    OUTCOME_TABLE.iter().find(|(_, o, _)| *o == outcome).map(|(cond, _, why)| (*cond, *why))
}

/// Whether a `rescreen` exam falls in the quality-assurance sample. The choice is a
/// deterministic function of the exam id (first 32 bits of its SHA-256 against `share`),
/// so the worklist is stable between page loads and auditable afterwards.
pub fn in_qa_sample(exam_id: &str, share: f64) -> bool {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(exam_id.as_bytes());
    let draw = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    f64::from(draw) / 4_294_967_296.0 < share
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(sign: bool) -> ReviewInput {
        let mut eyes = BTreeMap::new();
        eyes.insert("right".into(), EyeReview { grade: Some(2), dme: Some(false) });
        eyes.insert("left".into(), EyeReview { grade: Some(0), dme: Some(false) });
        ReviewInput {
            eyes,
            outcome: "referral".into(),
            note: String::new(),
            sign,
            amendment_reason: None,
            outcome_reason: None,
            base_version: None,
        }
    }

    fn review(version: u32, state: ReviewState) -> Review {
        Review {
            exam_id: "e".into(),
            version,
            state,
            reviewer: "k".into(),
            reviewer_name: None,
            created_at: String::new(),
            updated_at: String::new(),
            signed_at: None,
            amends: None,
            amendment_reason: None,
            eyes: BTreeMap::new(),
            outcome: Some(ExamOutcome::Referral),
            outcome_by_rule: ExamOutcome::Referral,
            note: String::new(),
            outcome_reason: None,
        }
    }

    const BOTH: [Laterality; 2] = [Laterality::Left, Laterality::Right];

    #[test]
    fn first_submission_is_version_one_then_drafts_update_in_place() {
        assert_eq!(plan(None, &input(false)), Ok(Plan::Insert { version: 1, amends: None }));
        assert_eq!(plan(Some(&review(1, ReviewState::Draft)), &input(true)), Ok(Plan::UpdateDraft { version: 1 }));
    }

    #[test]
    fn signed_review_is_locked_and_amendment_needs_a_reason() {
        let signed = review(1, ReviewState::Signed);
        assert_eq!(plan(Some(&signed), &input(true)), Err(ReviewError::AmendmentReasonRequired { latest: 1 }));
        let mut amend = input(true);
        amend.amendment_reason = Some("  ".into());
        assert!(plan(Some(&signed), &amend).is_err(), "a blank reason is no reason");
        amend.amendment_reason = Some("second look: new haemorrhage".into());
        assert_eq!(plan(Some(&signed), &amend), Ok(Plan::Insert { version: 2, amends: Some(1) }));
    }

    #[test]
    fn stale_base_version_is_a_conflict() {
        let mut i = input(false);
        i.base_version = Some(0);
        assert_eq!(plan(Some(&review(2, ReviewState::Draft)), &i), Err(ReviewError::Conflict { seen: 0, latest: 2 }));
        i.base_version = Some(2);
        assert!(plan(Some(&review(2, ReviewState::Draft)), &i).is_ok());
    }

    #[test]
    fn validation_rules() {
        assert!(validate(&input(true), &BOTH).is_ok());
        let mut i = input(true);
        i.eyes.remove("left");
        assert_eq!(validate(&i, &BOTH).map_err(|e| e.code()), Err("incomplete_review"));
        i.sign = false;
        assert!(validate(&i, &BOTH).is_ok(), "a draft may be partial");
        let mut i = input(false);
        i.eyes.insert("right".into(), EyeReview { grade: Some(5), dme: Some(false) });
        assert_eq!(validate(&i, &BOTH).map_err(|e| e.code()), Err("invalid_grade"));
        i.eyes.insert("right".into(), EyeReview { grade: None, dme: Some(true) });
        assert_eq!(validate(&i, &BOTH).map_err(|e| e.code()), Err("invalid_grade"));
        let mut i = input(false);
        i.outcome = "maybe".into();
        assert_eq!(validate(&i, &BOTH).map_err(|e| e.code()), Err("invalid_outcome"));
        assert_eq!(validate(&input(false), &[Laterality::Right]).map_err(|e| e.code()), Err("invalid_laterality"));
        let mut i = input(false);
        i.note = "x".repeat(MAX_NOTE_CHARS + 1);
        assert_eq!(validate(&i, &BOTH).map_err(|e| e.code()), Err("note_too_long"));
    }

    #[test]
    fn a_draft_may_be_partial_but_signing_needs_everything_and_reports_every_field() {
        let empty = ReviewInput {
            eyes: BTreeMap::new(),
            outcome: String::new(),
            note: String::new(),
            sign: false,
            amendment_reason: None,
            outcome_reason: None,
            base_version: None,
        };
        assert_eq!(validate(&empty, &BOTH), Ok(None), "an empty draft is a draft");
        let mut partial = empty.clone();
        partial.eyes.insert("right".into(), EyeReview { grade: Some(3), dme: None });
        assert_eq!(validate(&partial, &BOTH), Ok(None), "a grade without its oedema verdict yet");
        // Signing the same: every missing piece at once, each with its field and in words.
        partial.sign = true;
        partial.note = "x".repeat(MAX_NOTE_CHARS + 1);
        let refused = validate(&partial, &BOTH).unwrap_err();
        let fields: Vec<(&str, &str)> = refused.fields().iter().map(|f| (f.field.as_str(), f.code)).collect();
        assert_eq!(
            fields,
            [
                ("right_dme", "dme_required"),
                ("left_grade", "incomplete_review"),
                ("outcome", "outcome_required"),
                ("note", "note_too_long")
            ]
        );
        assert_eq!(refused.code(), "dme_required", "the first field's code is the answer's code");
        assert!(refused.fields().iter().all(|f| f.message.ends_with('.') && !f.message.contains('_')), "{refused:?}");
        assert!(refused.fields()[3].message.contains("4001 characters; the limit is 4000"), "{refused:?}");
    }

    #[test]
    fn outcome_by_rule_uses_the_outcome_table() {
        assert_eq!(outcome_by_rule(&input(false).eyes), ExamOutcome::Referral);
        let mut eyes = BTreeMap::new();
        eyes.insert("right".to_string(), EyeReview { grade: Some(4), dme: Some(false) });
        eyes.insert("left".to_string(), EyeReview { grade: None, dme: None });
        assert_eq!(outcome_by_rule(&eyes), ExamOutcome::UrgentReferral);
        eyes.insert("right".to_string(), EyeReview { grade: Some(1), dme: Some(false) });
        assert_eq!(outcome_by_rule(&eyes), ExamOutcome::Ungradable);
    }

    #[test]
    fn signing_a_less_urgent_outcome_than_the_grades_imply_needs_a_reason() {
        // Right eye grade 4 with macular oedema signed as rescreen: the ophthalmologist's case.
        let mut i = input(true);
        i.eyes.insert("right".into(), EyeReview { grade: Some(4), dme: Some(true) });
        i.outcome = "rescreen".into();
        let refused = validate(&i, &BOTH).unwrap_err();
        assert_eq!(refused.code(), "outcome_reason_required");
        assert!(refused.to_string().contains("Your grades imply urgent referral (any gradable eye has ICDR grade 3 or 4)"), "{refused}");
        for blank in ["", "  \n\t"] {
            i.outcome_reason = Some(blank.into());
            assert_eq!(validate(&i, &BOTH).map_err(|e| e.code()), Err("outcome_reason_required"), "a blank reason is no reason");
        }
        i.outcome_reason = Some("grade 4 is old laser scarring, treated; stable".into());
        assert_eq!(validate(&i, &BOTH), Ok(Some(ExamOutcome::Rescreen)));
        i.outcome_reason = Some("x".repeat(MAX_NOTE_CHARS + 1));
        assert_eq!(validate(&i, &BOTH).map_err(|e| e.code()), Err("note_too_long"));
        // Referral is still less urgent than urgent referral.
        i.outcome = "referral".into();
        i.outcome_reason = None;
        assert_eq!(validate(&i, &BOTH).map_err(|e| e.code()), Err("outcome_reason_required"));
        // A draft may be saved without it.
        i.sign = false;
        assert_eq!(validate(&i, &BOTH), Ok(Some(ExamOutcome::Referral)));
        // The same or a more urgent outcome needs none.
        let mut i = input(true);
        assert_eq!(validate(&i, &BOTH), Ok(Some(ExamOutcome::Referral)), "grade 2 signed as referral");
        i.outcome = "urgent_referral".into();
        assert_eq!(validate(&i, &BOTH), Ok(Some(ExamOutcome::UrgentReferral)));
        // Ungradable ranks above rescreen: an ungradable eye signed as rescreen needs a reason...
        let mut i = input(true);
        i.eyes.insert("right".into(), EyeReview { grade: None, dme: None });
        i.outcome = "rescreen".into();
        assert_eq!(validate(&i, &BOTH).map_err(|e| e.code()), Err("outcome_reason_required"));
        // ...and two clear eyes signed as ungradable need none.
        let mut i = input(true);
        i.eyes.insert("right".into(), EyeReview { grade: Some(0), dme: Some(false) });
        i.outcome = "ungradable".into();
        assert_eq!(validate(&i, &BOTH), Ok(Some(ExamOutcome::Ungradable)));
    }

    #[test]
    fn qa_sample_is_deterministic_and_close_to_the_share() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("exam{i}")).collect();
        let picked = ids.iter().filter(|id| in_qa_sample(id, 0.1)).count();
        assert!((800..1200).contains(&picked), "{picked} of 10000 picked at share 0.1");
        assert!(ids.iter().all(|id| in_qa_sample(id, 0.1) == in_qa_sample(id, 0.1)));
        assert!(!ids.iter().any(|id| in_qa_sample(id, 0.0)));
        assert!(ids.iter().all(|id| in_qa_sample(id, 1.0)));
    }
}
