//! The worklist: exams that need a human, most urgent first (urgent referral, referral,
//! ungradable), plus the configured quality-assurance share of `rescreen` exams; filters
//! by outcome, date, review state and patient; counts at the top; j/k and Enter to move
//! and open. Once an exam is signed its row shows the clinician's signed outcome and
//! grades beside the model's, under headings that say which is which. A filter value
//! the page does not know is answered 400 in words, never silently widened to "all".

use std::fmt::Write;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::html::{esc, outcome_badge, outcome_label, page, urlenc, when};
use super::patient::{clinician_eye_text, exam_label, model_eye_text};
use super::{PageQuery, ReviewSession, error_page};
use crate::grading::{ExamOutcome, Laterality};
use crate::http::AppState;
use crate::review::in_qa_sample;
use crate::store::{StoredExam, WorklistFilter};

const OUTCOMES: [ExamOutcome; 4] = [ExamOutcome::UrgentReferral, ExamOutcome::Referral, ExamOutcome::Ungradable, ExamOutcome::Rescreen];

#[derive(Deserialize, Default)]
pub struct WorklistQuery {
    outcome: Option<String>,
    /// "no" (default), "yes" or "all".
    reviewed: Option<String>,
    /// YYYY-MM-DD, inclusive.
    from: Option<String>,
    /// YYYY-MM-DD, inclusive.
    to: Option<String>,
    /// Only this patient's exams (exact `patient_ref`).
    patient: Option<String>,
    /// The exam whose row gets the keyboard focus (static/form.js), e.g. the one just signed.
    #[allow(dead_code)]
    focus: Option<String>,
    /// Set by "Sign off and open next case" when no unsigned case is left.
    done: Option<bool>,
}

fn valid_date(text: &str) -> bool {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, &fmt).is_ok()
}

fn selected(a: &str, b: &str) -> &'static str {
    if a == b { " selected" } else { "" }
}

async fn render(state: &AppState, user: &ReviewSession, q: WorklistQuery) -> Response {
    let outcome = match q.outcome.as_deref().filter(|o| !o.is_empty()) {
        None => None,
        Some(o) => match ExamOutcome::parse(o) {
            Some(outcome) => Some(outcome),
            None => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    Some(&user.session),
                    "Bad filter",
                    &format!("Unknown value '{o}' for \"outcome\": use urgent_referral, referral, ungradable or rescreen."),
                );
            }
        },
    };
    let from = q.from.filter(|d| !d.is_empty());
    let to = q.to.filter(|d| !d.is_empty());
    for (name, d) in [("from", &from), ("to", &to)] {
        if let Some(d) = d.as_deref().filter(|d| !valid_date(d)) {
            return error_page(
                StatusCode::BAD_REQUEST,
                Some(&user.session),
                "Bad filter",
                &format!("'{d}' for \"{name}\" is not a date: use YYYY-MM-DD."),
            );
        }
    }
    let reviewed_text = q.reviewed.filter(|r| !r.is_empty()).unwrap_or_else(|| "no".into());
    let reviewed = match reviewed_text.as_str() {
        "no" => Some(false),
        "yes" => Some(true),
        "all" => None,
        other => {
            return error_page(
                StatusCode::BAD_REQUEST,
                Some(&user.session),
                "Bad filter",
                &format!("Unknown value '{other}' for \"reviewed\": use no (not yet signed), yes (signed) or all."),
            );
        }
    };
    let patient = q.patient.map(|p| p.trim().to_string()).filter(|p| !p.is_empty());
    let filter = WorklistFilter {
        outcome: None,
        reviewed,
        from: from.clone(),
        // Inclusive end date: every timestamp of that day sorts below "YYYY-MM-DD~".
        until: to.as_ref().map(|d| format!("{d}~")),
        patient_ref: patient.clone(),
        limit: Some(2000),
    };
    let share = state.review.qa_rescreen_share;
    // The signed reviews of the listed exams come in one more query, not one per row.
    let loaded = state
        .store_call(move |store| {
            let exams = store.worklist_candidates(&filter)?;
            let signed_ids: Vec<&str> = exams.iter().filter(|e| e.reviewed).map(|e| e.id.as_str()).collect();
            let signed = store.latest_signed_reviews(&signed_ids)?;
            Ok((exams, signed))
        })
        .await;
    let (exams, signed) = match loaded {
        Ok(e) => e,
        Err(e) => return e.into_response(),
    };
    let keep_patient = patient.as_deref().map(|p| format!("&amp;patient={}", urlenc(p))).unwrap_or_default();
    // Flagged exams always (a rescreen is flagged when a photograph's laterality is in
    // doubt); unflagged rescreens only as the QA sample, except in a patient's view, which
    // lists every exam of the patient.
    let exams: Vec<_> = exams.into_iter().filter(|e| patient.is_some() || on_default_worklist(e, share)).collect();
    let count = |o: ExamOutcome| exams.iter().filter(|e| e.outcome == o).count();
    let mut body = String::from("<h1>Worklist</h1>");
    if q.done == Some(true) {
        body.push_str(r#"<p class="banner ok" id="banner">Signed off. No unsigned case is left on the worklist.</p>"#);
    }
    body.push_str("<ul class=\"counts\">");
    for o in OUTCOMES {
        let label = if o == ExamOutcome::Rescreen { "Rescreen (QA sample)" } else { outcome_label(o) };
        let _ = write!(
            body,
            r#"<li class="{name}"><a href="/review?outcome={name}&amp;reviewed={r}{keep_patient}">{label}: <b>{n}</b></a></li>"#,
            name = o.as_str(),
            n = count(o),
            r = esc(&reviewed_text)
        );
    }
    let _ = write!(body, "<li>Total: <b>{}</b></li></ul>", exams.len());
    let _ = write!(
        body,
        r#"<form method="get" action="/review" class="filters">
<label>Outcome <select name="outcome"><option value="">any</option>{opts}</select></label>
<label>From <input type="date" name="from" value="{from}"></label>
<label>To <input type="date" name="to" value="{to}"></label>
<label>Patient <input type="text" name="patient" id="patient-filter" value="{patient}" placeholder="exact reference"></label>
<label>Reviewed <select name="reviewed"><option value="no"{s_no}>not yet</option><option value="yes"{s_yes}>signed</option><option value="all"{s_all}>all</option></select></label>
<button type="submit">Filter</button></form>"#,
        opts = OUTCOMES
            .iter()
            .map(|o| {
                let selected = if outcome == Some(*o) { " selected" } else { "" };
                format!(r#"<option value="{}"{selected}>{}</option>"#, o.as_str(), outcome_label(*o))
            })
            .collect::<String>(),
        from = esc(from.as_deref().unwrap_or("")),
        to = esc(to.as_deref().unwrap_or("")),
        patient = esc(patient.as_deref().unwrap_or("")),
        s_no = selected(&reviewed_text, "no"),
        s_yes = selected(&reviewed_text, "yes"),
        s_all = selected(&reviewed_text, "all"),
    );
    let shown: Vec<_> = exams.iter().filter(|e| outcome.is_none_or(|o| e.outcome == o)).collect();
    if shown.is_empty() {
        body.push_str(r#"<p class="empty">Nothing to review with these filters.</p>"#);
    } else {
        // The clinician's columns appear once a listed exam is signed; each heading says
        // whose reading it is.
        let with_clinician = shown.iter().any(|e| signed.contains_key(&e.id));
        body.push_str(r#"<p class="hint">Keys: <kbd>j</kbd>/<kbd>k</kbd> move, <kbd>Enter</kbd> opens.</p>"#);
        if with_clinician {
            body.push_str(
                r#"<table class="worklist with-clinician" id="worklist"><thead><tr><th colspan="2" scope="colgroup">Outcome</th><th rowspan="2">Received</th><th rowspan="2">Exam</th><th rowspan="2">Patient</th><th colspan="2" scope="colgroup">Right eye</th><th colspan="2" scope="colgroup">Left eye</th><th rowspan="2">Review</th></tr>
<tr><th class="by-clinician">Clinician (signed)</th><th class="by-model">Model</th><th class="by-clinician">Clinician (signed)</th><th class="by-model">Model</th><th class="by-clinician">Clinician (signed)</th><th class="by-model">Model</th></tr></thead><tbody>"#,
            );
        } else {
            body.push_str(
                r#"<table class="worklist" id="worklist"><thead><tr><th>Outcome <span class="by-model">(model)</span></th><th>Received</th><th>Exam</th><th>Patient</th><th>Right eye <span class="by-model">(model)</span></th><th>Left eye <span class="by-model">(model)</span></th><th>Review</th></tr></thead><tbody>"#,
            );
        }
        for e in shown {
            let review = signed.get(&e.id);
            let qa = if e.outcome == ExamOutcome::Rescreen && !e.flagged { r#" <span class="qa">QA</span>"# } else { "" };
            let model_badge = format!("{}{qa}", outcome_badge(e.outcome));
            let eye = |lat: Laterality| {
                let model = format!("<td>{}</td>", esc(&model_eye_text(&e.result, lat)));
                if !with_clinician {
                    return model;
                }
                // Clinician first, as in the outcome columns: the signed reading is the record.
                match review.and_then(|r| clinician_eye_text(r, lat)) {
                    Some(c) => format!(r#"<td class="by-clinician">{}</td>{model}"#, esc(&c)),
                    None => format!(r#"<td class="by-clinician none">–</td>{model}"#),
                }
            };
            let outcome_cells = match (with_clinician, review) {
                (false, _) => format!("<td>{model_badge}</td>"),
                (true, Some(r)) => format!(r#"<td class="by-clinician">{}</td><td>{model_badge}</td>"#, outcome_badge(r.outcome)),
                (true, None) => format!(r#"<td class="by-clinician none">–</td><td>{model_badge}</td>"#),
            };
            let patient_cell = match e.patient_ref.as_deref() {
                Some(p) => {
                    format!(r#"<a href="/review?patient={}&amp;reviewed=all" title="All exams of this patient">{}</a>"#, urlenc(p), esc(p))
                }
                None => "–".into(),
            };
            let _ = write!(
                body,
                r#"<tr data-href="/review/exams/{id}" tabindex="0">{outcome_cells}<td>{at}</td><td><a href="/review/exams/{id}">{ext}</a></td><td>{patient_cell}</td>{r}{l}<td>{state}</td></tr>"#,
                id = esc(&e.id),
                at = when(&e.created_at),
                ext = esc(exam_label(e)),
                r = eye(Laterality::Right),
                l = eye(Laterality::Left),
                state = if e.reviewed { "signed" } else { "open" },
            );
        }
        body.push_str("</tbody></table>");
    }
    Html(page("Worklist", Some(&user.session), &body)).into_response()
}

/// Whether an exam is on the default worklist: every flagged exam (a rescreen is flagged
/// when a photograph's laterality is in doubt), and unflagged rescreens only as the QA
/// sample. "Sign off and open next case" walks the same list.
pub(super) fn on_default_worklist(exam: &StoredExam, qa_share: f64) -> bool {
    exam.flagged || in_qa_sample(&exam.id, qa_share)
}

/// `GET /review`.
pub async fn show(State(state): State<AppState>, user: ReviewSession, PageQuery(q): PageQuery<WorklistQuery>) -> Response {
    render(&state, &user, q).await
}
