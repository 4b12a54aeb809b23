//! The case view: both eyes side by side (right eye on the viewer's left, as in clinic),
//! every image with the model's heatmap overlay (toggle with the checkbox or `h`), the
//! quality measures and reasons, the model's grades and probabilities, the exam outcome
//! with its rule in words, the review history and the review form (save a draft, sign
//! off, or amend a signed review). Opening a case is audited as `exam.view`. Once signed,
//! the header shows the clinician's signed result beside the model's; the history names
//! the reviewer and marks superseded versions; the patient's earlier exams follow
//! (`super::patient`).

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::context::PageContext;
use super::html::{csrf_field, esc, grade_text, num3, outcome_badge, outcome_label, page, pct, person, when};
use super::patient::{model_vs_clinician, prior_exams_section};
use super::{PageForm, PagePath, PageQuery, ReviewSession, error_page, image_words};
use crate::grading::{ExamOutcome, EyeResult, ImageFinding, Laterality};
use crate::http::AppState;
use crate::http::reviews::save_review_as;
use crate::review::{EyeReview, FieldError, MAX_NOTE_CHARS, Review, ReviewInput, ReviewState, outcome_by_rule, outcome_rule_in_words};
use crate::store::{ExamImage, Role, SaveKind, StoredExam};

const EYE_ORDER: [(Laterality, &str); 3] =
    [(Laterality::Right, "Right eye (OD)"), (Laterality::Left, "Left eye (OS)"), (Laterality::Unspecified, "Eye not stated")];
/// How wide one eye's viewer is on the case page, for the browser's choice of rendition.
const VIEWER_SIZES: &str = "(min-width: 1100px) calc((100vw - 30rem) / 2), 100vw";
const OUTCOMES: [ExamOutcome; 4] = [ExamOutcome::UrgentReferral, ExamOutcome::Referral, ExamOutcome::Rescreen, ExamOutcome::Ungradable];

#[derive(Deserialize, Default)]
pub struct Flash {
    saved: Option<u32>,
    signed: Option<bool>,
    /// "Sign off and open next case": the version just signed on the previous case.
    previous: Option<u32>,
}

/// `GET /review/exams/{id}`.
pub async fn show(
    State(state): State<AppState>,
    user: ReviewSession,
    PagePath(id): PagePath<String>,
    PageQuery(flash): PageQuery<Flash>,
) -> Response {
    let banner = flash.saved.map(|v| {
        let what = if flash.signed == Some(true) { "signed off" } else { "saved as a draft" };
        ("ok", format!("Review version {v} {what}."))
    });
    let banner = banner.or_else(|| {
        flash
            .previous
            .map(|v| ("ok", format!("The previous case was signed off (review version {v}). This is the next case on the worklist.")))
    });
    render(&state, &user, id, banner, StatusCode::OK, None, Vec::new(), true).await
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn render(
    state: &AppState,
    user: &ReviewSession,
    exam_id: String,
    banner: Option<(&str, String)>,
    status: StatusCode,
    form_values: Option<ReviewInput>,
    errors: Vec<FieldError>,
    audit_view: bool,
) -> Response {
    let actor = user.session.key.id.clone();
    let loaded = state
        .store_call(move |store| {
            let Some(exam) = store.get_exam(&exam_id)? else {
                return Ok(None);
            };
            let images = store.exam_images(&exam_id)?;
            let reviews = store.reviews(&exam_id)?;
            let prior = match exam.patient_ref.as_deref() {
                Some(p) => store.patient_exams(p, &exam_id, super::patient::PRIOR_EXAMS_SHOWN)?,
                None => Vec::new(),
            };
            if audit_view {
                store.audit(&actor, "exam.view", Some(&exam_id), Some("review page"))?;
            }
            Ok(Some((exam, images, reviews, prior)))
        })
        .await;
    let (exam, images, reviews, prior) = match loaded {
        Ok(Some(found)) => found,
        Ok(None) => return error_page(StatusCode::NOT_FOUND, Some(&user.session), "Exam not found", "No exam has that id."),
        Err(e) => return e.into_response(),
    };
    let mut body = case_body(user, &exam, &images, &reviews, banner, form_values.as_ref(), &errors);
    body.push_str(&prior_exams_section(&exam, &prior));
    (status, Html(page("Case", Some(&user.session), &body))).into_response()
}

fn case_body(
    user: &ReviewSession,
    exam: &StoredExam,
    images: &[ExamImage],
    reviews: &[Review],
    banner: Option<(&str, String)>,
    form_values: Option<&ReviewInput>,
    errors: &[FieldError],
) -> String {
    let r = &exam.result;
    // The grading layout: images on the left filling the window, history and form in a
    // sticky side panel on the right (see viewer.rs and the layout block in review.css).
    let mut b = String::from(r#"<div class="workstation"><div class="viewer-pane">"#);
    if let Some((cls, msg)) = banner {
        let _ = write!(b, r#"<p class="banner {cls}" id="banner">{}</p>"#, esc(&msg));
    }
    let model = &r.model;
    let signed = reviews.iter().rev().find(|r| r.state == ReviewState::Signed);
    let _ = write!(
        b,
        r#"<h1>Exam {ext} {badge}</h1>
<dl class="meta"><dt>Received</dt><dd>{at}</dd><dt>Patient</dt><dd>{patient}</dd><dt>Exam id</dt><dd><code>{id}</code></dd>
<dt>Model</dt><dd>{mname} {mver} <code title="sha256">{msha}</code></dd><dt>Review</dt><dd>{state}</dd></dl>{versus}"#,
        ext = esc(exam.external_exam_ref.as_deref().unwrap_or("")),
        // Once signed, the clinician's outcome is the headline; the model's stays beside it.
        badge = match signed {
            Some(s) => format!(
                r#"<span class="by-clinician">Clinician (signed)</span> {} <span class="by-model">Model</span> {}"#,
                outcome_badge(s.outcome),
                outcome_badge(exam.outcome)
            ),
            None => format!(r#"<span class="by-model">Model</span> {}"#, outcome_badge(exam.outcome)),
        },
        versus = signed.map(|s| model_vs_clinician(exam, s)).unwrap_or_default(),
        at = when(&exam.created_at),
        patient = esc(exam.patient_ref.as_deref().unwrap_or("–")),
        id = esc(&exam.id),
        mname = esc(&model.name),
        mver = esc(&model.version),
        msha = esc(model.sha256.get(..16).unwrap_or(&model.sha256)),
        state = match signed {
            Some(s) => format!(
                "signed (version {}) by {} at {}",
                s.version,
                person(&s.reviewer, s.reviewer_name.as_deref()),
                s.signed_at.as_deref().map_or_else(|| "–".into(), when)
            ),
            None if exam.reviewed => "signed".into(),
            None => "not signed".into(),
        },
    );
    let (condition, why) = outcome_rule_in_words(exam.outcome).unwrap_or(("", ""));
    let _ = write!(
        b,
        r#"<section class="rule"><h2>Model outcome: {label}</h2><p>Rule applied: <b>{cond}</b> → {label}: {why}.</p>{recall}</section>"#,
        label = outcome_label(exam.outcome),
        cond = esc(condition),
        why = esc(why),
        recall = r.recall_months.map(|m| format!("<p>Recall in {m} months.</p>")).unwrap_or_default(),
    );
    b.push_str(r#"<input type="checkbox" id="heatmap-toggle" class="toggle"><label for="heatmap-toggle" class="toggle-label">Show model heatmap (<kbd>h</kbd>)</label>"#);
    super::viewer::tools(&mut b);
    b.push_str(r#"<div class="eyes">"#);
    let eyes = &r.eyes;
    for (laterality, title) in EYE_ORDER {
        let Some(eye) = eyes.iter().find(|e| e.laterality == laterality) else { continue };
        let lat = laterality.as_str();
        let dme = match eye.dme {
            Some(true) => "macular oedema",
            Some(false) => "no macular oedema",
            None => "macular oedema not assessed",
        };
        let _ = write!(
            b,
            r#"<section class="eye {lat}"><h2>{title}</h2><p class="eye-summary">Model: <b>{grade}</b>, {dme}{ungradable}</p>"#,
            grade = esc(&grade_text(eye.grade)),
            ungradable = if eye.gradable { "" } else { " (no gradable image)" },
        );
        for image in images.iter().filter(|i| i.laterality == laterality) {
            image_card(&mut b, &image.id, image.view.as_deref(), &image.finding);
        }
        b.push_str("</section>");
    }
    b.push_str(r#"</div></div><aside class="side-panel" aria-label="Review">"#);
    if user.session.key.role == Role::Clinician {
        review_form(&mut b, user, exam, eyes, reviews.last(), form_values, errors);
    } else {
        b.push_str(r#"<p class="hint">Only clinician keys can review and sign.</p>"#);
    }
    history(&mut b, reviews);
    b.push_str("</aside></div>");
    b.push_str(super::viewer::SCRIPT);
    b
}

fn image_card(b: &mut String, id: &str, view: Option<&str>, f: &ImageFinding) {
    let q = &f.quality;
    let _ = write!(
        b,
        r#"<figure class="fundus">{viewer}<figcaption><p>{view}{decision} · <a href="/review/images/{id}/view" target="_blank" rel="noopener">Open in a viewer window</a></p>"#,
        viewer = {
            let mut v = String::new();
            super::viewer::viewer(&mut v, id, super::viewer::eye_title(f.laterality), f, VIEWER_SIZES);
            v
        },
        id = esc(id),
        view = view.map(|v| format!("{}-centred · ", esc(v))).unwrap_or_default(),
        decision = esc(&decision_text(f)),
    );
    b.push_str(&image_words::laterality_warning(f));
    let context = PageContext::current();
    let gradable = q.gradable;
    let _ = write!(
        b,
        r#"<p>Quality: <b>{verdict}</b> (P(gradable) {score})</p>{reasons}"#,
        verdict = if gradable { "gradable" } else { "ungradable" },
        score = num3(Some(f64::from(q.score))),
        reasons = image_words::reasons(q, &context),
    );
    if let Some(dr) = &f.dr {
        let probs = dr.probabilities;
        let _ = write!(
            b,
            r#"<table class="probs"><tr><th>ICDR grade</th>{}</tr><tr><th>P</th>{}</tr></table>"#,
            (0..probs.len()).map(|g| format!("<td>{g}</td>")).collect::<String>(),
            probs.iter().map(|p| format!("<td>{}</td>", pct(Some(f64::from(*p))))).collect::<String>()
        );
        let _ = write!(
            b,
            "<p>Model grade <b>{}</b>; P(referable) {}; P(DME) {}</p>",
            esc(&grade_text(Some(dr.grade))),
            pct(Some(f64::from(dr.referable_probability))),
            pct(f.dme.as_ref().map(|d| f64::from(d.probability))),
        );
    }
    b.push_str(&image_words::measures(&q.measures, &context.quality_limits));
    b.push_str("</figcaption></figure>");
}

/// The image's decision in words ("not referable").
fn decision_text(f: &ImageFinding) -> String {
    serde_json::to_value(f.decision).ok().and_then(|v| v.as_str().map(|s| s.replace('_', " "))).unwrap_or_default()
}

fn eyes_text(eyes: &BTreeMap<String, EyeReview>) -> String {
    eyes.iter()
        .map(|(lat, e)| {
            let dme = match e.dme {
                Some(true) => ", DME",
                _ => "",
            };
            format!("{lat}: {}{dme}", e.grade.map_or("ungradable".into(), |g| g.to_string()))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What became of each version (same order as `reviews`, oldest first): a version is
/// superseded by the first later version that was signed (a signed version by its signed
/// amendment, a draft by a later sign-off); the latest signed version with an unsigned
/// amendment after it is still the record, "being amended".
pub(super) fn version_fates(reviews: &[Review]) -> Vec<Option<String>> {
    reviews
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let later = &reviews[i + 1..];
            if let Some(s) = later.iter().find(|l| l.state == ReviewState::Signed) {
                Some(format!("superseded by v{}", s.version))
            } else if r.state == ReviewState::Signed {
                later.iter().find(|l| l.state == ReviewState::Draft).map(|d| format!("being amended (draft v{})", d.version))
            } else {
                None
            }
        })
        .collect()
}

fn history(b: &mut String, reviews: &[Review]) {
    if reviews.is_empty() {
        return;
    }
    b.push_str(r#"<section class="history"><h2>Review history</h2><table id="review-history"><thead><tr><th>Version</th><th>State</th><th>Reviewer</th><th>Eyes</th><th>Outcome</th><th>Note</th><th>Signed</th></tr></thead><tbody>"#);
    for (r, fate) in reviews.iter().zip(version_fates(reviews)) {
        let superseded = fate.as_deref().is_some_and(|f| f.starts_with("superseded"));
        let _ = write!(
            b,
            r#"<tr class="{state}{sup}" id="review-v{v}"><td>{v}{amends}</td><td>{state}{fate}</td><td>{who}</td><td>{eyes}</td><td>{outcome}</td><td>{note}{reason}</td><td>{signed}</td></tr>"#,
            v = r.version,
            amends = r.amends.map(|a| format!(" (amends {a})")).unwrap_or_default(),
            state = if r.state == ReviewState::Signed { "signed" } else { "draft" },
            sup = if superseded { " superseded" } else { "" },
            fate = fate.map(|f| format!(r#"<br><span class="fate">{}</span>"#, esc(&f))).unwrap_or_default(),
            who = person(&r.reviewer, r.reviewer_name.as_deref()),
            eyes = esc(&eyes_text(&r.eyes)),
            outcome = outcome_label(r.outcome),
            note = esc(&r.note),
            reason = r.amendment_reason.as_ref().map(|x| format!("<br><i>Amendment: {}</i>", esc(x))).unwrap_or_default()
                + &r.outcome_reason
                    .as_ref()
                    .map(|x| {
                        format!(
                            r#"<br><i class="outcome-reason">Reason for an outcome less urgent than the grades imply ({}): {}</i>"#,
                            outcome_label(r.outcome_by_rule),
                            esc(x)
                        )
                    })
                    .unwrap_or_default(),
            signed = r.signed_at.as_deref().map_or_else(|| "–".into(), when),
        );
    }
    b.push_str("</tbody></table></section>");
}

/// A refused field's error, rendered next to the field, and the attributes that tie
/// the field to it for assistive technology.
fn field_error(errors: &[FieldError], field: &str) -> (String, String) {
    let messages: Vec<&str> = errors.iter().filter(|e| e.field == field).map(|e| e.message.as_str()).collect();
    if messages.is_empty() {
        return (String::new(), String::new());
    }
    let id = format!("err-{}", esc(field));
    (
        format!(r#" aria-invalid="true" aria-describedby="{id}""#),
        format!(r#"<span class="field-error" id="{id}">{}</span>"#, esc(&messages.join(" "))),
    )
}

/// A note-like textarea: no `maxlength` (a browser cuts pasted text at it silently),
/// instead a live "n / 4000 characters" counter and the server's field error.
fn text_field(b: &mut String, errors: &[FieldError], name: &str, label: &str, hint: &str, rows: u8, value: &str) {
    let (aria, error) = field_error(errors, name);
    let count = value.chars().count();
    let _ = write!(
        b,
        r#"<label for="{name}">{label}{hint}</label>{error}<textarea name="{name}" id="{name}" rows="{rows}" data-limit="{max}"{aria}>{value}</textarea>
<span class="counter{over}" id="{name}-counter" data-counter-for="{name}" aria-live="polite">{count} / {max} characters</span>"#,
        max = MAX_NOTE_CHARS,
        over = if count > MAX_NOTE_CHARS { " over" } else { "" },
        value = esc(value),
    );
}

fn review_form(
    b: &mut String,
    user: &ReviewSession,
    exam: &StoredExam,
    eyes: &[EyeResult],
    latest: Option<&Review>,
    values: Option<&ReviewInput>,
    errors: &[FieldError],
) {
    let amending = latest.is_some_and(|r| r.state == ReviewState::Signed);
    // Prefill: what was just submitted (after a refusal, or carried over an expired
    // session), else the latest version: the open (possibly autosaved, partial) draft, or
    // for an amendment the signed reading, so only what changes is edited.
    let prefill_eyes = values.map(|v| v.eyes.clone()).or_else(|| latest.map(|r| r.eyes.clone())).unwrap_or_default();
    let prefill_outcome =
        values.map(|v| v.outcome.clone()).or_else(|| latest.and_then(|r| r.outcome).map(|o| o.as_str().to_string())).unwrap_or_default();
    let prefill_note = values
        .map(|v| v.note.clone())
        .or_else(|| latest.filter(|r| r.state == ReviewState::Draft).map(|r| r.note.clone()))
        .unwrap_or_default();
    let prefill_outcome_reason = values
        .map(|v| v.outcome_reason.clone())
        .or_else(|| latest.filter(|r| r.state == ReviewState::Draft).map(|r| r.outcome_reason.clone()))
        .flatten()
        .unwrap_or_default();
    let prefill_amendment_reason = values.and_then(|v| v.amendment_reason.clone()).unwrap_or_default();
    // After sign-off the amendment form stays folded until asked for (a <details>, so it
    // opens without JS too), unless it comes back with the clinician's own entries.
    if amending {
        let _ = write!(
            b,
            r#"<details class="amend" id="amend"{open}><summary class="button" id="amend-open">Amend this review</summary>"#,
            open = if values.is_some() || !errors.is_empty() { " open" } else { "" },
        );
    }
    let _ = write!(
        b,
        r#"<section class="review-form"><h2>{title}</h2><form method="post" action="/review/exams/{id}/review" id="review-form" data-case-url="/review/exams/{id}" data-session-idle="{idle}"{autosave}>{csrf}
<input type="hidden" name="base_version" value="{base}">"#,
        title = if amending { "Amend the signed review" } else { "Your review" },
        id = esc(&exam.id),
        idle = user.idle_secs,
        // Amendments are not autosaved: an amendment draft needs its reason first, and the
        // signed version stays the record until the amendment is signed.
        autosave = if amending { String::new() } else { format!(r#" data-autosave="/review/exams/{}/draft""#, esc(&exam.id)) },
        csrf = csrf_field(&user.session),
        base = latest.map_or(0, |r| r.version),
    );
    if !errors.is_empty() {
        let _ = write!(
            b,
            r#"<div class="error-summary" id="error-summary" role="alert" tabindex="-1"><p>{n} not saved: please correct {what}.</p><ul>"#,
            n = if values.is_some_and(|v| v.sign) { "Not signed off," } else { "Not saved," },
            what = if errors.len() == 1 { "this field".to_string() } else { format!("these {} fields", errors.len()) },
        );
        for e in errors {
            let _ = write!(b, r##"<li><a href="#{field}">{msg}</a></li>"##, field = esc(&e.field), msg = esc(&e.message));
        }
        b.push_str("</ul></div>");
    }
    b.push_str(r#"<div class="form-eyes">"#);
    for (laterality, title) in EYE_ORDER {
        if !eyes.iter().any(|e| e.laterality == laterality) {
            continue;
        }
        let lat = laterality.as_str();
        let current = prefill_eyes.get(lat);
        let grade_value = match current {
            Some(EyeReview { grade: Some(g), .. }) => g.to_string(),
            Some(EyeReview { grade: None, .. }) => "ungradable".into(),
            None => String::new(),
        };
        let dme_value = match current.and_then(|e| e.dme) {
            Some(true) => "yes",
            Some(false) => "no",
            None => "",
        };
        let grade_opts: String = [("", "— choose —")]
            .into_iter()
            .map(|(v, l)| (v.to_string(), l.to_string()))
            .chain((0..5u8).map(|g| (g.to_string(), grade_text(Some(g)))))
            .chain([("ungradable".to_string(), "Ungradable".to_string())])
            .map(|(v, l)| {
                format!(r#"<option value="{v}"{sel}>{l}</option>"#, sel = if v == grade_value { " selected" } else { "" }, l = esc(&l))
            })
            .collect();
        let dme_opts: String = [("", "— choose —"), ("no", "No macular oedema"), ("yes", "Macular oedema")]
            .iter()
            .map(|(v, l)| format!(r#"<option value="{v}"{sel}>{l}</option>"#, sel = if *v == dme_value { " selected" } else { "" }))
            .collect();
        let (grade_aria, grade_err) = field_error(errors, &format!("{lat}_grade"));
        let (dme_aria, dme_err) = field_error(errors, &format!("{lat}_dme"));
        let _ = write!(
            b,
            r#"<fieldset><legend>{title}</legend><label>ICDR grade <select name="{lat}_grade" id="{lat}_grade"{grade_aria}>{grade_opts}</select></label>{grade_err}
<label>Macular oedema <select name="{lat}_dme" id="{lat}_dme"{dme_aria}>{dme_opts}</select></label>{dme_err}</fieldset>"#
        );
    }
    let outcome_opts: String = OUTCOMES
        .iter()
        .map(|o| {
            format!(
                r#"<option value="{o}"{sel}>{l}</option>"#,
                o = o.as_str(),
                sel = if o.as_str() == prefill_outcome { " selected" } else { "" },
                l = outcome_label(*o)
            )
        })
        .collect();
    // The outcome the clinician's own readings give under the same table as the model's
    // (review.js updates it as the selects change); shown once every eye is read.
    let complete = eyes.iter().all(|e| prefill_eyes.get(e.laterality.as_str()).is_some_and(|r| r.grade.is_none() || r.dme.is_some()));
    let implied = if complete { outcome_label(outcome_by_rule(&prefill_eyes)) } else { "— grade every eye —" };
    let (outcome_aria, outcome_err) = field_error(errors, "outcome");
    let _ = write!(
        b,
        r#"</div><p class="implied">Outcome implied by your grades: <b id="implied-outcome">{implied}</b></p>
<label>Final outcome <select name="outcome" id="outcome"{outcome_aria}><option value="">— choose —</option>{outcome_opts}</select></label>{outcome_err}"#
    );
    text_field(b, errors, "note", "Note", "", 3, &prefill_note);
    text_field(
        b,
        errors,
        "outcome_reason",
        "Reason for a less urgent outcome ",
        r#"<span class="hint">(needed to sign an outcome less urgent than the one your grades imply)</span>"#,
        2,
        &prefill_outcome_reason,
    );
    if amending {
        text_field(b, errors, "amendment_reason", "Reason for the amendment", "", 2, &prefill_amendment_reason);
    }
    let _ = write!(
        b,
        r#"<div class="actions">{save}<button type="submit" name="action" value="sign" id="sign-off">{sign}</button>{next}</div>
<p class="hint" id="autosave-status" role="status" aria-live="polite"></p>{keys}</form></section>{close}"#,
        save = if amending { "" } else { r#"<button type="submit" name="action" value="save" id="save-draft">Save draft</button>"# },
        sign = if amending { "Sign amendment" } else { "Sign off" },
        next = if amending {
            ""
        } else {
            r#"<button type="submit" name="action" value="sign_next" id="sign-next">Sign off and open next case</button>"#
        },
        keys = if amending { "" } else { super::form::KEYS_HINT },
        close = if amending { "</details>" } else { "" },
    );
}

/// The review form's fields (as `application/x-www-form-urlencoded` pairs) as a review
/// input; the review rules check it afterwards. Also the review-form fuzz target's entry.
pub fn form_to_input(form: &[(String, String)]) -> Result<ReviewInput, String> {
    // Browsers send a textarea's line breaks as CRLF; counted as two characters each they
    // would push a note the counter showed as within the limit over it.
    let get = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().replace("\r\n", "\n"));
    let mut eyes = BTreeMap::new();
    for (laterality, _) in EYE_ORDER {
        let lat = laterality.as_str();
        let Some(grade) = get(&format!("{lat}_grade")).filter(|g| !g.is_empty()) else { continue };
        let dme = match get(&format!("{lat}_dme")).as_deref() {
            Some("yes") => Some(true),
            Some("no") => Some(false),
            _ => None,
        };
        let reading = if grade == "ungradable" {
            EyeReview { grade: None, dme: None }
        } else {
            let g: u8 = grade.parse().map_err(|_| format!("{lat} eye: '{grade}' is not an ICDR grade"))?;
            EyeReview { grade: Some(g), dme }
        };
        eyes.insert(lat.to_string(), reading);
    }
    Ok(ReviewInput {
        eyes,
        outcome: get("outcome").unwrap_or_default(),
        note: get("note").unwrap_or_default(),
        sign: matches!(get("action").as_deref(), Some("sign" | "sign_next")),
        amendment_reason: get("amendment_reason").filter(|r| !r.is_empty()),
        outcome_reason: get("outcome_reason").filter(|r| !r.is_empty()),
        base_version: get("base_version").and_then(|v| v.parse().ok()),
    })
}

/// `POST /review/exams/{id}/review`. A submission whose session has expired is not
/// dropped: the sign-in page carries the clinician's entries and returns them to the form.
pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    PagePath(id): PagePath<String>,
    PageForm(form): PageForm<Vec<(String, String)>>,
) -> Response {
    let user = match super::review_session(&headers, &state).await {
        Ok(Some(user)) => user,
        Ok(None) => return super::form::expired_submit(&state, &id, &form),
        Err(response) => return response,
    };
    if let Err(refused) = user.check_csrf(form.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str())) {
        return *refused;
    }
    if let Err(refused) = user.require(&[Role::Clinician]) {
        return *refused;
    }
    let input = match form_to_input(&form) {
        Ok(i) => i,
        Err(msg) => {
            return render(&state, &user, id, Some(("error", msg)), StatusCode::UNPROCESSABLE_ENTITY, None, Vec::new(), false).await;
        }
    };
    let next = form.iter().any(|(k, v)| k == "action" && v == "sign_next");
    match save_review_as(&state, id.clone(), user.session.key.id.clone(), input.clone(), SaveKind::Manual).await {
        Ok(review) if next && review.state == ReviewState::Signed => super::form::open_next(&state, &review).await,
        Ok(review) => {
            let signed = review.state == ReviewState::Signed;
            Redirect::to(&format!("/review/exams/{}?saved={}&signed={signed}", review.exam_id, review.version)).into_response()
        }
        Err(r) if r.error.status == StatusCode::NOT_FOUND => {
            error_page(StatusCode::NOT_FOUND, Some(&user.session), "Exam not found", "No exam has that id.")
        }
        Err(r) => {
            // Field errors are shown by their fields and summed up at the top of the form;
            // the banner only points there. Other refusals (a conflict) say it in words.
            let banner = if r.fields.is_empty() {
                r.error.message.clone()
            } else {
                let n = r.fields.len();
                format!(
                    "{} the review form below has {n} problem{s} to correct.",
                    if input.sign { "Not signed off:" } else { "Not saved:" },
                    s = if n == 1 { "" } else { "s" }
                )
            };
            render(&state, &user, id, Some(("error", banner)), r.error.status, Some(input), r.fields, false).await
        }
    }
}

pub(super) async fn stored_image(state: &AppState, id: String) -> Result<crate::store::StoredImage, Response> {
    match state.store_call(move |store| store.get_image(&id)).await {
        Ok(Some(image)) => Ok(image),
        Ok(None) => Err((StatusCode::NOT_FOUND, "image not found").into_response()),
        Err(e) => Err(e.into_response()),
    }
}

fn png(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "private, max-age=600")], bytes).into_response()
}

/// `GET /review/images/{id}/field.png`: the field of view the model saw.
pub async fn field_png(State(state): State<AppState>, _user: ReviewSession, PagePath(id): PagePath<String>) -> Response {
    let image = match stored_image(&state, id).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    match state.service.field_png(image.sha256, None).await {
        Ok(bytes) => png(bytes),
        Err(e) => crate::http::error::ApiError::from(e).into_response(),
    }
}

/// `GET /review/images/{id}/heatmap.png`: the same field with the model's heatmap.
pub async fn heatmap_png(State(state): State<AppState>, _user: ReviewSession, PagePath(id): PagePath<String>) -> Response {
    let image = match stored_image(&state, id).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    match state.service.heatmap_png(image.sha256, image.cam, image.cam_shape).await {
        Ok(bytes) => png(bytes),
        Err(e) => crate::http::error::ApiError::from(e).into_response(),
    }
}

/// `GET /review/images/{id}/original`: the original photograph at full size.
pub async fn original(State(state): State<AppState>, _user: ReviewSession, PagePath(id): PagePath<String>) -> Response {
    let image = match stored_image(&state, id).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    match state.service.viewable_original(image.sha256, image.media_type).await {
        Ok((media_type, bytes)) => {
            ([(header::CONTENT_TYPE, media_type), (header::CACHE_CONTROL, "private, max-age=600".into())], bytes).into_response()
        }
        Err(e) => crate::http::error::ApiError::from(e).into_response(),
    }
}
