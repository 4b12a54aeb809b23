//! The worklist: exams that need a human, most urgent first (urgent referral, referral,
//! ungradable), plus the configured quality-assurance share of `rescreen` exams; filters
//! by outcome, date and review state; counts at the top; j/k and Enter to move and open.

use std::fmt::Write;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::html::{esc, grade_text, outcome_badge, outcome_label, page};
use super::{PageQuery, ReviewSession, error_page};
use crate::grading::{ExamOutcome, Laterality};
use crate::http::AppState;
use crate::review::in_qa_sample;
use crate::store::WorklistFilter;

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
            None => return error_page(StatusCode::BAD_REQUEST, Some(&user.session), "Bad filter", &format!("Unknown outcome '{o}'.")),
        },
    };
    let from = q.from.filter(|d| !d.is_empty());
    let to = q.to.filter(|d| !d.is_empty());
    for d in [&from, &to].into_iter().flatten() {
        if !valid_date(d) {
            return error_page(StatusCode::BAD_REQUEST, Some(&user.session), "Bad filter", "Dates must be YYYY-MM-DD.");
        }
    }
    let reviewed_text = q.reviewed.unwrap_or_else(|| "no".into());
    let reviewed = match reviewed_text.as_str() {
        "no" => Some(false),
        "yes" => Some(true),
        _ => None,
    };
    let filter = WorklistFilter {
        outcome: None,
        reviewed,
        from: from.clone(),
        // Inclusive end date: every timestamp of that day sorts below "YYYY-MM-DD~".
        until: to.as_ref().map(|d| format!("{d}~")),
        limit: Some(2000),
    };
    let share = state.review.qa_rescreen_share;
    let exams = match state.store_call(move |store| store.worklist_candidates(&filter)).await {
        Ok(e) => e,
        Err(e) => return e.into_response(),
    };
    let exams: Vec<_> = exams.into_iter().filter(|e| e.outcome != ExamOutcome::Rescreen || in_qa_sample(&e.id, share)).collect();
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
            r#"<li class="{name}"><a href="/review?outcome={name}&amp;reviewed={r}">{label}: <b>{n}</b></a></li>"#,
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
        s_no = selected(&reviewed_text, "no"),
        s_yes = selected(&reviewed_text, "yes"),
        s_all = selected(&reviewed_text, "all"),
    );
    let shown: Vec<_> = exams.iter().filter(|e| outcome.is_none_or(|o| e.outcome == o)).collect();
    if shown.is_empty() {
        body.push_str(r#"<p class="empty">Nothing to review with these filters.</p>"#);
    } else {
        body.push_str(
            r#"<p class="hint">Keys: <kbd>j</kbd>/<kbd>k</kbd> move, <kbd>Enter</kbd> opens.</p>
<table class="worklist" id="worklist"><thead><tr><th>Outcome</th><th>Received</th><th>Exam</th><th>Patient</th><th>Right eye</th><th>Left eye</th><th>Review</th></tr></thead><tbody>"#,
        );
        for e in shown {
            let eye = |lat: Laterality| {
                e.result
                    .eyes
                    .iter()
                    .find(|x| x.laterality == lat)
                    .map(|x| {
                        let dme = if x.dme == Some(true) { " + DME" } else { "" };
                        format!("{}{dme}", grade_text(x.grade))
                    })
                    .unwrap_or_else(|| "–".into())
            };
            let _ = write!(
                body,
                r#"<tr data-href="/review/exams/{id}" tabindex="0"><td>{badge}{qa}</td><td>{at}</td><td><a href="/review/exams/{id}">{ext}</a></td><td>{patient}</td><td>{r}</td><td>{l}</td><td>{state}</td></tr>"#,
                id = esc(&e.id),
                badge = outcome_badge(e.outcome),
                qa = if e.outcome == ExamOutcome::Rescreen { r#" <span class="qa">QA</span>"# } else { "" },
                at = esc(e.created_at.get(..16).unwrap_or(&e.created_at)).replace('T', " "),
                ext = esc(e.external_exam_ref.as_deref().unwrap_or(&e.id[..e.id.len().min(8)])),
                patient = esc(e.patient_ref.as_deref().unwrap_or("–")),
                r = esc(&eye(Laterality::Right)),
                l = esc(&eye(Laterality::Left)),
                state = if e.reviewed { "signed" } else { "open" },
            );
        }
        body.push_str("</tbody></table>");
    }
    Html(page("Worklist", Some(&user.session), &body)).into_response()
}

/// `GET /review`.
pub async fn show(State(state): State<AppState>, user: ReviewSession, PageQuery(q): PageQuery<WorklistQuery>) -> Response {
    render(&state, &user, q).await
}
