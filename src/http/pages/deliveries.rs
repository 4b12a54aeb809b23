//! The outbox page (admin): how many deliveries to the PACS and the EHR are pending,
//! delivered or failed, and the newest rows with the destination's answer or the last
//! error in words, so an admin sees at a glance why a result did not arrive. A failed
//! delivery can be queued again (a form with the session's CSRF token; audited).

use std::collections::HashMap;
use std::fmt::Write;

use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::html::{csrf_field, esc, page, when};
use super::{PageForm, PageQuery, ReviewSession, error_page};
use crate::http::AppState;
use crate::store::{DeliveryState, Role};

const ROWS: i64 = 200;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    state: Option<String>,
}

/// `GET /review/deliveries?state=`.
pub async fn show(State(state): State<AppState>, user: ReviewSession, PageQuery(q): PageQuery<Filter>) -> Response {
    if let Err(refused) = user.require(&[Role::Admin]) {
        return *refused;
    }
    let filter = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => match DeliveryState::parse(s) {
            Some(s) => Some(s),
            None => {
                return error_page(
                    axum::http::StatusCode::BAD_REQUEST,
                    Some(&user.session),
                    "Unknown filter",
                    "The state filter is pending, delivered or failed.",
                );
            }
        },
    };
    let loaded = state.store_call(move |store| Ok((store.delivery_counts()?, store.deliveries(filter, ROWS)?))).await;
    let (counts, rows) = match loaded {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let mut b = String::from(
        "<h1>Deliveries</h1><p>Results sent to the PACS (DICOM SR and PDF) and to the EHR (DIPS). Failed deliveries are never dropped: fix the cause, then send again.</p>",
    );
    b.push_str(r#"<table id="delivery-counts"><thead><tr><th>Destination</th><th>Pending</th><th>Delivered</th><th>Failed</th></tr></thead><tbody>"#);
    for kind in crate::store::DeliveryKind::ALL {
        let n = |s: DeliveryState| counts.iter().find(|(k, st, _)| *k == kind && *st == s).map(|c| c.2).unwrap_or(0);
        let _ = write!(
            b,
            r#"<tr><th scope="row">{}</th><td>{}</td><td>{}</td><td data-state="failed">{}</td></tr>"#,
            kind_label(kind.as_str()),
            n(DeliveryState::Pending),
            n(DeliveryState::Delivered),
            n(DeliveryState::Failed)
        );
    }
    b.push_str("</tbody></table>");
    b.push_str(r#"<form method="get" action="/review/deliveries" class="filters"><label>State <select name="state">"#);
    for (value, label) in [("", "All"), ("pending", "Pending"), ("failed", "Failed"), ("delivered", "Delivered")] {
        let selected = if q.state.as_deref().unwrap_or("") == value { " selected" } else { "" };
        let _ = write!(b, r#"<option value="{value}"{selected}>{label}</option>"#);
    }
    b.push_str(r#"</select></label><button type="submit">Show</button></form>"#);
    b.push_str(r#"<table id="deliveries"><thead><tr><th>#</th><th>Exam</th><th>Destination</th><th>State</th><th>Attempts</th><th>Updated (UTC)</th><th>Answer or last error</th><th></th></tr></thead><tbody>"#);
    for r in &rows {
        let action = if r.state == "failed" {
            format!(
                r#"<form method="post" action="/review/deliveries/{}/retry" class="inline">{}<button type="submit">Send again</button></form>"#,
                r.id,
                csrf_field(&user.session)
            )
        } else {
            String::new()
        };
        let said = r.last_error.as_deref().or(r.result.as_deref()).unwrap_or("");
        let _ = write!(
            b,
            r#"<tr data-kind="{kind}" data-state="{state}"><td>{id}</td><td><a href="/review/exams/{exam}">{exam}</a></td><td>{label} {dest}</td><td>{state}</td><td>{attempts}</td><td>{updated}</td><td class="detail">{said}</td><td>{action}</td></tr>"#,
            kind = esc(&r.kind),
            state = esc(&r.state),
            id = r.id,
            exam = esc(&r.exam_id),
            label = kind_label(&r.kind),
            dest = esc(&r.destination),
            attempts = r.attempts,
            updated = when(r.updated_at.as_deref().unwrap_or(&r.created_at)),
            said = esc(&truncate(said, 600)),
        );
    }
    b.push_str("</tbody></table>");
    Html(page("Deliveries", Some(&user.session), &b)).into_response()
}

/// `POST /review/deliveries/{id}/retry`.
pub async fn retry(
    State(state): State<AppState>,
    user: ReviewSession,
    Path(id): Path<i64>,
    PageForm(form): PageForm<HashMap<String, String>>,
) -> Response {
    if let Err(refused) = user.require(&[Role::Admin]) {
        return *refused;
    }
    if let Err(refused) = user.check_csrf(form.get("csrf").map(String::as_str)) {
        return *refused;
    }
    let actor = user.session.key.id.clone();
    match state.store_call(move |store| store.requeue_delivery(&actor, id)).await {
        Ok(true) => Redirect::to("/review/deliveries?state=pending").into_response(),
        Ok(false) => error_page(
            axum::http::StatusCode::NOT_FOUND,
            Some(&user.session),
            "No such failed delivery",
            "It may have been sent again already.",
        ),
        Err(e) => e.into_response(),
    }
}

fn kind_label(kind: &str) -> &'static str {
    match kind {
        "dicom" => "PACS (DICOM)",
        "dips" => "EHR (DIPS)",
        _ => "Other",
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars { text.to_string() } else { format!("{}…", text.chars().take(max_chars).collect::<String>()) }
}
