//! The audit log page (admin): who did what and when (views, reviews, sign-offs,
//! amendments, sign-ins, key changes, exams received), newest first, filterable by actor,
//! action family and object, paged backwards by sequence number. Read-only: the store's
//! triggers make the log append-only.

use std::fmt::Write;

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};

use super::html::{esc, page, person, urlenc, when};
use super::{PageQuery, ReviewSession};
use crate::http::AppState;
use crate::store::{AuditQuery, Role};

const PAGE: u32 = 100;

/// `GET /review/audit?actor=&action=&object=&before=`.
pub async fn show(State(state): State<AppState>, user: ReviewSession, PageQuery(mut q): PageQuery<AuditQuery>) -> Response {
    if let Err(refused) = user.require(&[Role::Admin]) {
        return *refused;
    }
    for field in [&mut q.actor, &mut q.action, &mut q.object] {
        if field.as_deref().is_some_and(str::is_empty) {
            *field = None;
        }
    }
    q.limit = Some(PAGE);
    let query = q.clone();
    // The actors' display names, so the log says who (the key id stays beside it).
    let loaded = state
        .store_call(move |store| {
            let events = store.audit_query(&query)?;
            let names = store.key_names(events.iter().filter_map(|e| e["actor"].as_str()))?;
            Ok((events, names))
        })
        .await;
    let (events, names) = match loaded {
        Ok(e) => e,
        Err(e) => return e.into_response(),
    };
    let mut b = String::from("<h1>Audit log</h1>");
    let _ = write!(
        b,
        r#"<form method="get" action="/review/audit" class="filters"><label>Actor <input name="actor" value="{a}"></label>
<label>Action <input name="action" value="{ac}" placeholder="review, exam.view, key…"></label><label>Object <input name="object" value="{o}"></label>
<button type="submit">Filter</button></form>"#,
        a = esc(q.actor.as_deref().unwrap_or("")),
        ac = esc(q.action.as_deref().unwrap_or("")),
        o = esc(q.object.as_deref().unwrap_or("")),
    );
    b.push_str(r#"<table id="audit"><thead><tr><th>#</th><th>When (UTC)</th><th>Who</th><th>Action</th><th>Object</th><th>Detail</th></tr></thead><tbody>"#);
    for e in &events {
        let object = e["object"].as_str().unwrap_or("");
        let object_html = if e["action"].as_str().is_some_and(|a| a.starts_with("exam.") || a.starts_with("review.")) && !object.is_empty()
        {
            format!(r#"<a href="/review/exams/{0}">{0}</a>"#, esc(object))
        } else {
            esc(object)
        };
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e["seq"],
            when(e["at"].as_str().unwrap_or("")),
            e["actor"].as_str().map(|a| person(a, names.get(a).map(String::as_str))).unwrap_or_default(),
            esc(e["action"].as_str().unwrap_or("")),
            object_html,
            esc(e["detail"].as_str().unwrap_or("")),
        );
    }
    b.push_str("</tbody></table>");
    if events.len() as u32 == PAGE
        && let Some(last) = events.last().and_then(|e| e["seq"].as_i64())
    {
        let keep = |name: &str, v: &Option<String>| v.as_ref().map(|x| format!("&amp;{name}={}", urlenc(x))).unwrap_or_default();
        let _ = write!(
            b,
            r#"<p><a href="/review/audit?before={last}{}{}{}">Older events</a></p>"#,
            keep("actor", &q.actor),
            keep("action", &q.action),
            keep("object", &q.object)
        );
    }
    Html(page("Audit log", Some(&user.session), &b)).into_response()
}
