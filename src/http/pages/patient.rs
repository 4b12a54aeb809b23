//! Patient context on the review pages (issue 16): the model's reading beside the
//! clinician's signed one (labelled, so nobody takes one for the other), the patient's
//! other exams on the case page, and the side-by-side comparison of one eye across two
//! exams of the same patient (`GET /review/compare?a=&b=&eye=`). Patients are matched by
//! the exact `patient_ref`; a comparison of two different patients (or of an exam without
//! a patient reference) is refused, never shown. Opening a comparison is audited as an
//! `exam.view` of both exams.

use std::fmt::Write;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::html::{esc, grade_text, outcome_badge, page, person, urlenc, when};
use super::{PageQuery, ReviewSession, error_page};
use crate::grading::{ExamResult, Laterality};
use crate::http::AppState;
use crate::review::Review;
use crate::store::{ExamImage, PatientExam, StoredExam};

/// How many of the patient's other exams the case page lists.
pub const PRIOR_EXAMS_SHOWN: u32 = 20;

const EYES: [(Laterality, &str); 3] =
    [(Laterality::Right, "Right eye"), (Laterality::Left, "Left eye"), (Laterality::Unspecified, "Eye not stated")];

fn eye_title(lat: Laterality) -> &'static str {
    EYES.iter().find(|(l, _)| *l == lat).map_or("Eye", |(_, t)| t)
}

/// The model's reading of one eye ("3 · Severe non-proliferative DR + DME"), or an en dash.
pub fn model_eye_text(result: &ExamResult, lat: Laterality) -> String {
    result
        .eyes
        .iter()
        .find(|x| x.laterality == lat)
        .map(|x| format!("{}{}", grade_text(x.grade), if x.dme == Some(true) { " + DME" } else { "" }))
        .unwrap_or_else(|| "–".into())
}

/// The clinician's signed reading of one eye, when the review has one.
pub fn clinician_eye_text(review: &Review, lat: Laterality) -> Option<String> {
    review.eyes.get(lat.as_str()).map(|e| format!("{}{}", grade_text(e.grade), if e.dme == Some(true) { " + DME" } else { "" }))
}

/// The case header's table: outcome and each eye, model beside clinician (signed).
pub fn model_vs_clinician(exam: &StoredExam, signed: &Review) -> String {
    let mut t = format!(
        r#"<table class="versus" id="model-vs-clinician"><thead><tr><th></th><th class="by-model" scope="col">Model</th><th class="by-clinician" scope="col">Clinician (signed, version {v})</th></tr></thead><tbody>
<tr><th scope="row">Outcome</th><td>{model}</td><td>{clinician}</td></tr>"#,
        v = signed.version,
        model = outcome_badge(exam.outcome),
        clinician = outcome_badge(signed.outcome),
    );
    for eye in &exam.result.eyes {
        let model = model_eye_text(&exam.result, eye.laterality);
        let clinician = clinician_eye_text(signed, eye.laterality).unwrap_or_else(|| "–".into());
        let _ = write!(
            t,
            r#"<tr{cls}><th scope="row">{title}</th><td>{m}</td><td>{c}</td></tr>"#,
            cls = if model == clinician { "" } else { r#" class="differs""# },
            title = eye_title(eye.laterality),
            m = esc(&model),
            c = esc(&clinician),
        );
    }
    t.push_str("</tbody></table>");
    t
}

/// How pages name an exam: its external reference, else the start of its id.
pub(super) fn exam_label(exam: &StoredExam) -> &str {
    exam.external_exam_ref.as_deref().unwrap_or(&exam.id[..exam.id.len().min(8)])
}

/// "Earlier exams of this patient": the patient's other exams, newest first, with the
/// model's and the signed outcome and grades, links to each and to a comparison of each
/// eye both exams have. Empty when the exam has no patient reference.
pub fn prior_exams_section(exam: &StoredExam, prior: &[PatientExam]) -> String {
    let Some(patient) = exam.patient_ref.as_deref() else {
        return String::new();
    };
    let all_earlier = prior.iter().all(|p| p.exam.created_at <= exam.created_at);
    let mut b = format!(
        r#"<section class="prior-exams" id="prior-exams"><h2>{title}</h2><p><a href="/review?patient={p}&amp;reviewed=all" id="patient-worklist">All exams of patient {pe} on the worklist</a></p>"#,
        title = if all_earlier { "Earlier exams of this patient" } else { "Other exams of this patient" },
        p = urlenc(patient),
        pe = esc(patient),
    );
    if prior.is_empty() {
        b.push_str(r#"<p class="empty">No other exams of this patient.</p></section>"#);
        return b;
    }
    b.push_str(
        r#"<table id="prior-exams-table"><thead><tr><th>Received</th><th>Exam</th><th class="by-model">Model outcome</th><th class="by-model">Model grades</th><th class="by-clinician">Clinician (signed) outcome</th><th class="by-clinician">Clinician (signed) grades</th><th>Compare with this exam</th></tr></thead><tbody>"#,
    );
    for p in prior {
        let other = &p.exam;
        let grades = |text: &dyn Fn(Laterality) -> Option<String>| {
            other
                .result
                .eyes
                .iter()
                .filter_map(|e| text(e.laterality).map(|t| format!("{}: {}", eye_title(e.laterality), t)))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let model_grades = grades(&|lat| Some(model_eye_text(&other.result, lat)));
        let (signed_outcome, signed_grades) = match &p.signed {
            Some(r) => (
                format!("{} <span class=\"hint\">by {}</span>", outcome_badge(r.outcome), person(&r.reviewer, r.reviewer_name.as_deref())),
                esc(&grades(&|lat| clinician_eye_text(r, lat))),
            ),
            None => ("not signed".to_string(), "–".to_string()),
        };
        // Compare the eyes both exams have (the same eye, never right against left).
        let compare: Vec<String> = EYES
            .iter()
            .filter(|(lat, _)| {
                other.result.eyes.iter().any(|e| e.laterality == *lat) && exam.result.eyes.iter().any(|e| e.laterality == *lat)
            })
            .map(|(lat, title)| {
                format!(
                    r#"<a class="compare-link" href="/review/compare?a={a}&amp;b={b}&amp;eye={eye}">compare {t}</a>"#,
                    a = urlenc(&other.id),
                    b = urlenc(&exam.id),
                    eye = lat.as_str(),
                    t = title.to_lowercase(),
                )
            })
            .collect();
        let _ = write!(
            b,
            r#"<tr class="prior-exam" data-exam="{id}"><td>{at}</td><td><a href="/review/exams/{id}">{label}</a></td><td>{model}</td><td>{mg}</td><td>{so}</td><td>{sg}</td><td>{compare}</td></tr>"#,
            id = esc(&other.id),
            at = when(&other.created_at),
            label = esc(exam_label(other)),
            model = outcome_badge(other.outcome),
            mg = esc(&model_grades),
            so = signed_outcome,
            sg = signed_grades,
            compare = if compare.is_empty() { "–".into() } else { compare.join(" · ") },
        );
    }
    b.push_str("</tbody></table></section>");
    b
}

#[derive(Deserialize, Default)]
pub struct CompareQuery {
    a: Option<String>,
    b: Option<String>,
    eye: Option<String>,
}

struct Side {
    exam: StoredExam,
    images: Vec<ExamImage>,
    signed: Option<Review>,
}

fn bad(user: &ReviewSession, message: &str) -> Response {
    error_page(StatusCode::BAD_REQUEST, Some(&user.session), "Cannot compare", message)
}

/// `GET /review/compare?a=<exam>&b=<exam>&eye=right|left|unspecified`.
pub async fn compare(State(state): State<AppState>, user: ReviewSession, PageQuery(q): PageQuery<CompareQuery>) -> Response {
    let (Some(a), Some(b)) = (q.a.filter(|x| !x.is_empty()), q.b.filter(|x| !x.is_empty())) else {
        return bad(&user, "A comparison needs two exams: a=<exam id> and b=<exam id>.");
    };
    let eye_text = q.eye.unwrap_or_default();
    let Some(eye) = Laterality::parse(&eye_text).filter(|l| l.as_str() == eye_text) else {
        return bad(&user, &format!("Unknown value '{eye_text}' for \"eye\": use right, left or unspecified."));
    };
    if a == b {
        return bad(&user, "Both sides name the same exam; choose two different exams of the patient.");
    }
    let actor = user.session.key.id.clone();
    let loaded = state
        .store_call(move |store| {
            let mut sides = Vec::with_capacity(2);
            for id in [&a, &b] {
                let Some(exam) = store.get_exam(id)? else { return Ok(Err(StatusCode::NOT_FOUND)) };
                sides.push(exam);
            }
            // Never two patients side by side: both exams must carry the same reference.
            let same_patient = sides[0].patient_ref.is_some() && sides[0].patient_ref == sides[1].patient_ref;
            if !same_patient {
                return Ok(Err(StatusCode::BAD_REQUEST));
            }
            let ids: Vec<&str> = sides.iter().map(|e| e.id.as_str()).collect();
            let mut signed = store.latest_signed_reviews(&ids)?;
            let mut out = Vec::with_capacity(2);
            for exam in sides {
                let images = store.exam_images(&exam.id)?;
                out.push(Side { signed: signed.remove(&exam.id), images, exam });
            }
            for (this, other) in [(&a, &b), (&b, &a)] {
                let detail = format!("comparison with exam {other}, {} eye", eye.as_str());
                store.audit(&actor, "exam.view", Some(this), Some(&detail))?;
            }
            Ok(Ok(out))
        })
        .await;
    let mut sides = match loaded {
        Ok(Ok(sides)) => sides,
        Ok(Err(StatusCode::NOT_FOUND)) => {
            return error_page(StatusCode::NOT_FOUND, Some(&user.session), "Exam not found", "One of the two exams does not exist.");
        }
        Ok(Err(_)) => {
            return bad(
                &user,
                "These two exams do not belong to the same patient (or one has no patient reference): drscreen never shows two patients side by side.",
            );
        }
        Err(e) => return e.into_response(),
    };
    // Earlier exam on the left, as a clinician reads a progression.
    sides.sort_by(|x, y| x.exam.created_at.cmp(&y.exam.created_at));
    let title = eye_title(eye);
    let mut body = format!(
        r#"<h1>{title}: two exams of patient {patient}</h1><p class="hint">Earlier exam on the left. <a href="/review?patient={pu}&amp;reviewed=all">All exams of this patient</a></p>
<input type="checkbox" id="heatmap-toggle" class="toggle"><label for="heatmap-toggle" class="toggle-label">Show model heatmap (<kbd>h</kbd>)</label><div class="compare-grid" id="compare">"#,
        patient = esc(sides[0].exam.patient_ref.as_deref().unwrap_or("")),
        pu = urlenc(sides[0].exam.patient_ref.as_deref().unwrap_or("")),
    );
    for side in &sides {
        let e = &side.exam;
        let clinician = side
            .signed
            .as_ref()
            .map(|r| {
                format!(
                    "{} ({}), signed by {}",
                    esc(&clinician_eye_text(r, eye).unwrap_or_else(|| "–".into())),
                    outcome_badge(r.outcome),
                    person(&r.reviewer, r.reviewer_name.as_deref())
                )
            })
            .unwrap_or_else(|| "not signed".into());
        let _ = write!(
            body,
            r#"<section class="compare-side" data-exam="{id}"><h2><a href="/review/exams/{id}">Exam {label}</a> · {at}</h2>
<dl class="meta"><dt class="by-model">Model</dt><dd>{model} ({mo})</dd><dt class="by-clinician">Clinician (signed)</dt><dd>{clinician}</dd></dl>"#,
            id = esc(&e.id),
            label = esc(exam_label(e)),
            at = when(&e.created_at),
            model = esc(&model_eye_text(&e.result, eye)),
            mo = outcome_badge(e.outcome),
        );
        let images: Vec<_> = side.images.iter().filter(|i| i.laterality == eye).collect();
        if images.is_empty() {
            let _ = write!(body, r#"<p class="empty">This exam has no {} image.</p>"#, title.to_lowercase());
        }
        for image in images {
            let _ = write!(
                body,
                r#"<figure class="compare-image"><div class="frame"><img class="field" src="/review/images/{id}/field.png" alt="{title}, exam {label}" width="512" height="512">
<img class="heat" src="/review/images/{id}/heatmap.png" alt="model heatmap" width="512" height="512"></div><figcaption>{view}<a href="/review/images/{id}/original" target="_blank" rel="noopener">original</a></figcaption></figure>"#,
                id = esc(&image.id),
                label = esc(exam_label(e)),
                view = image.view.as_deref().map(|v| format!("{}-centred · ", esc(v))).unwrap_or_default(),
            );
        }
        body.push_str("</section>");
    }
    body.push_str("</div>");
    Html(page("Compare", Some(&user.session), &body)).into_response()
}
