//! Never losing a clinician's typed work, and grading from the keyboard (issue 16): the
//! review form's autosave endpoint (`POST /review/exams/{id}/draft`, JSON), the
//! "Stay signed in" endpoint (`POST /review/session/extend`), the sign-in page that
//! carries a review submitted after the session expired and hands it back to the form,
//! "Sign off and open next case", and the keyboard hint. The browser side lives in
//! `static/form.js`; everything here also works without it (plain form posts).

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::html::{esc, urlenc};
use super::{PageForm, PagePath, ReviewSession, review_session};
use crate::http::AppState;
use crate::http::reviews::save_review_as;
use crate::review::Review;
use crate::store::{Role, SaveKind, Session, WorklistFilter};

/// The header the page's scripts send the session's CSRF token in (their bodies are the
/// form's own fields, so the token could travel there too; a header keeps the JSON
/// endpoints' check independent of the body).
const CSRF_HEADER: &str = "x-csrf-token";

/// The review form's fields a sign-in carries over an expired session: only what the
/// clinician typed or chose. Never the old CSRF token, never anything about the exam.
const CARRIED_FIELDS: [&str; 10] = [
    "right_grade",
    "right_dme",
    "left_grade",
    "left_dme",
    "unspecified_grade",
    "unspecified_dme",
    "outcome",
    "note",
    "outcome_reason",
    "amendment_reason",
];

/// The prefix of a carried field's name on the sign-in form.
const CARRY_PREFIX: &str = "carry.";
/// The sign-in form's field naming the exam whose review is carried.
const CARRY_EXAM: &str = "carry_exam";

/// The keyboard hint under the review form (keys handled by `static/form.js`). Keys other
/// pages' scripts use (`h`, `j`, `k`, `g`, brackets, `+`, `-`, a bare `0`) are avoided.
pub const KEYS_HINT: &str = r#"<p class="hint keys" id="form-keys"><b>Keys</b>:
<kbd>r</kbd> then <kbd>0</kbd>–<kbd>4</kbd> or <kbd>u</kbd> (ungradable): right eye grade;
<kbd>l</kbd> then the same: left eye grade;
<kbd>r</kbd>/<kbd>l</kbd> then <kbd>y</kbd>/<kbd>n</kbd>: that eye's macular oedema yes/no (right after a grade, <kbd>y</kbd>/<kbd>n</kbd> alone);
<kbd>o</kbd>: outcome (first the one your grades imply, again for the next);
<kbd>s</kbd>: save the draft now;
<kbd>Ctrl</kbd>+<kbd>Enter</kbd> or <kbd>S</kbd>: sign off and open the next case;
<kbd>Esc</kbd>: leave a text field. Keys do nothing while you type in a field.</p>"#;

fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message, "code": code }))).into_response()
}

/// The session behind a script's request, its CSRF header checked; a JSON error when
/// either is missing (a script cannot follow a redirect to the sign-in page usefully).
async fn script_session(headers: &HeaderMap, state: &AppState) -> Result<ReviewSession, Response> {
    let Some(user) = review_session(headers, state).await? else {
        return Err(json_error(StatusCode::UNAUTHORIZED, "session_expired", "Your session has expired; sign in again."));
    };
    use subtle::ConstantTimeEq;
    let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !bool::from(presented.as_bytes().ct_eq(user.session.csrf.as_bytes())) {
        return Err(json_error(
            StatusCode::FORBIDDEN,
            "csrf_rejected",
            "The page's security token did not match this session; reload the page.",
        ));
    }
    Ok(user)
}

/// The wall-clock time of an RFC 3339 timestamp ("2026-01-02T10:42:07.123Z" -> "10:42").
fn hh_mm(at: &str) -> String {
    at.split('T').nth(1).and_then(|t| t.get(..5)).unwrap_or(at).to_string()
}

/// `POST /review/exams/{id}/draft`: the form's fields (URL-encoded, as the form would
/// post them) saved as the open draft, partial or not, in place; answers
/// `{version, saved_at, saved_at_hhmm}` or the review API's error with its `fields`.
pub async fn autosave(
    State(state): State<AppState>,
    headers: HeaderMap,
    PagePath(id): PagePath<String>,
    PageForm(form): PageForm<Vec<(String, String)>>,
) -> Response {
    let user = match script_session(&headers, &state).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    if user.session.key.role != Role::Clinician {
        return json_error(StatusCode::FORBIDDEN, "forbidden", "Only clinician keys can review.");
    }
    let input = match super::case::form_to_input(&form) {
        Ok(input) => input,
        Err(message) => return json_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_form", &message),
    };
    match save_review_as(&state, id, user.session.key.id.clone(), input, SaveKind::Autosave).await {
        Ok(review) => Json(serde_json::json!({
            "version": review.version,
            "saved_at": review.updated_at,
            "saved_at_hhmm": hh_mm(&review.updated_at),
        }))
        .into_response(),
        Err(refused) => refused.into_response(),
    }
}

/// `POST /review/session/extend` ("Stay signed in"): looking the session up touches it,
/// which is all extending needs. Answers `{idle_secs}`.
pub async fn extend_session(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match script_session(&headers, &state).await {
        Ok(user) => Json(serde_json::json!({ "idle_secs": user.idle_secs })).into_response(),
        Err(response) => response,
    }
}

/// The first exam on the worklist (its default view: unsigned exams, most urgent first,
/// rescreen exams only in the QA sample) that is not signed yet.
async fn next_open_case(state: &AppState) -> Result<Option<String>, Response> {
    let filter = WorklistFilter { outcome: None, reviewed: Some(false), from: None, until: None, patient_ref: None, limit: Some(2000) };
    let share = state.review.qa_rescreen_share;
    let exams = state.store_call(move |store| store.worklist_candidates(&filter)).await.map_err(IntoResponse::into_response)?;
    Ok(exams.into_iter().find(|e| super::worklist::on_default_worklist(e, share)).map(|e| e.id))
}

/// After "Sign off and open next case": the next unsigned case, or the worklist (every
/// exam, so the one just signed is listed) with that exam's row focused and a banner.
pub async fn open_next(state: &AppState, signed: &Review) -> Response {
    match next_open_case(state).await {
        Ok(Some(next)) => Redirect::to(&format!("/review/exams/{}?previous={}", urlenc(&next), signed.version)).into_response(),
        Ok(None) => Redirect::to(&format!("/review?reviewed=all&done=true&focus={}", urlenc(&signed.exam_id))).into_response(),
        Err(response) => response,
    }
}

/// The clinician's own entries from a review form, as the sign-in form's hidden fields.
fn carried_inputs(exam_id: &str, fields: &[(String, String)]) -> String {
    let mut out = format!(r#"<input type="hidden" name="{CARRY_EXAM}" value="{}">"#, esc(exam_id));
    for (name, value) in fields.iter().filter(|(k, _)| CARRIED_FIELDS.contains(&k.as_str())) {
        out.push_str(&format!(r#"<input type="hidden" name="{CARRY_PREFIX}{name}" value="{}">"#, esc(value)));
    }
    out
}

/// A review form posted without a live session: the sign-in page, carrying the entries.
pub fn expired_submit(state: &AppState, exam_id: &str, form: &[(String, String)]) -> Response {
    super::login::login_page_carrying(
        state,
        StatusCode::UNAUTHORIZED,
        Some(
            "Your session has expired, so the review was not submitted. Sign in again: your entries for this case are kept and shown again in the form.",
        ),
        &carried_inputs(exam_id, form),
    )
}

/// The carried exam and entries of a sign-in form, if it carries any.
pub fn carried_from_login(form: &HashMap<String, String>) -> Option<(String, Vec<(String, String)>)> {
    let exam_id = form.get(CARRY_EXAM).filter(|id| !id.is_empty())?.clone();
    let fields = CARRIED_FIELDS
        .iter()
        .filter_map(|name| form.get(&format!("{CARRY_PREFIX}{name}")).map(|v| ((*name).to_string(), v.clone())))
        .collect();
    Some((exam_id, fields))
}

/// The carried sign-in's inputs again (a failed sign-in keeps them for the next try).
pub fn carried_again(form: &HashMap<String, String>) -> String {
    carried_from_login(form).map(|(exam, fields)| carried_inputs(&exam, &fields)).unwrap_or_default()
}

/// After a sign-in that carried a review: the case with the form filled from the entries
/// (not submitted: the clinician checks them and presses sign off again). The session
/// cookie is set by the caller.
pub async fn restored_case(state: &AppState, session: Session, exam_id: String, fields: &[(String, String)]) -> Response {
    let user = ReviewSession { session, idle_secs: state.review.session_idle_secs };
    let (values, banner) = match super::case::form_to_input(fields) {
        Ok(values) => (Some(values), ("ok", "Your session had expired; your entries were kept. Check them and submit again.".to_string())),
        Err(message) => (None, ("error", format!("Your session had expired; your entries could not be read back ({message})."))),
    };
    super::case::render(state, &user, exam_id, Some(banner), StatusCode::OK, values, Vec::new(), true).await
}
