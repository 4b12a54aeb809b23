//! The clinician review pages under `/review`: sign-in with a clinician key exchanged for
//! a session cookie (HttpOnly, SameSite=Strict, idle timeout, CSRF token on every
//! form), the worklist, the case view with heatmaps and the review form, the audit log
//! and the outbox of deliveries (admin), and the agreement monitor. Server-rendered HTML; the rules live in
//! `crate::review` and the store, shared with the JSON API.

mod agreement;
mod audit;
mod case;
pub mod context;
mod deliveries;
mod form;
pub mod html;
mod image_words;
mod login;
mod patient;
mod viewer;
mod worklist;

use axum::Form;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub use case::form_to_input;

use super::AppState;
use crate::store::{Role, Session};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "drs_session";
/// The sign-in form's double-submit CSRF cookie.
pub const LOGIN_CSRF_COOKIE: &str = "drs_login_csrf";

/// The review routes.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/review", get(worklist::show))
        .route("/review/login", get(login::form).post(login::submit))
        .route("/review/logout", post(login::logout))
        .route("/review/exams/{id}", get(case::show))
        .route("/review/exams/{id}/review", post(case::submit))
        .route("/review/compare", get(patient::compare))
        .route("/review/exams/{id}/draft", post(form::autosave))
        .route("/review/session/extend", post(form::extend_session))
        .route("/review/static/form.js", get(|| async { static_file("text/javascript; charset=utf-8", include_str!("static/form.js")) }))
        .route("/review/images/{id}/field.png", get(case::field_png))
        .route("/review/images/{id}/heatmap.png", get(case::heatmap_png))
        .route("/review/images/{id}/original", get(case::original))
        .route("/review/images/{id}/view", get(viewer::view_page))
        .route("/review/images/{id}/view.jpg", get(viewer::view_jpg))
        .route("/review/images/{id}/heatmap-layer.png", get(viewer::heatmap_layer_png))
        .route(
            "/review/static/viewer.js",
            get(|| async { static_file("text/javascript; charset=utf-8", include_str!("static/viewer.js")) }),
        )
        .route("/review/audit", get(audit::show))
        .route("/review/deliveries", get(deliveries::show))
        .route("/review/deliveries/{id}/retry", post(deliveries::retry))
        .route("/review/agreement", get(agreement::show))
        .route("/review/static/review.css", get(|| async { static_file("text/css; charset=utf-8", include_str!("static/review.css")) }))
        .route(
            "/review/static/review.js",
            get(|| async { static_file("text/javascript; charset=utf-8", include_str!("static/review.js")) }),
        )
        .layer(axum::middleware::from_fn(same_origin_posts))
        .layer(axum::middleware::map_response(security_headers))
}

/// The authority (`host[:port]`) of an `Origin` or `Referer` value.
fn authority(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    Some(rest.split(['/', '?', '#']).next().unwrap_or(rest))
}

/// Whether a form POST comes from our own pages: its `Origin` (else its `Referer`) must
/// name this host. A browser always sends `Origin` on a POST (our pages' referrer policy,
/// `same-origin`, keeps it real rather than `null`), so a cross-site form is refused here
/// before its CSRF token is even looked at. Clients that send neither (scripts) still
/// need the CSRF token.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let claimed = headers.get(header::ORIGIN).or_else(|| headers.get(header::REFERER)).map(|v| v.to_str().ok().and_then(authority));
    match claimed {
        None => true,
        Some(authority) => authority.is_some_and(|a| a.eq_ignore_ascii_case(host)),
    }
}

async fn same_origin_posts(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if request.method() == axum::http::Method::POST && !same_origin(request.headers()) {
        return error_page(
            StatusCode::FORBIDDEN,
            None,
            "Refused",
            "This form was sent from another site (cross_origin_rejected). Open drscreen's own page and try again.",
        );
    }
    next.run(request).await
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=300")], body).into_response()
}

/// Pages hold patient data: no caching, no framing, no referrer, scripts only from us.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        // `connect-src 'self'`: the review form's autosave and "Stay signed in" (static/form.js).
        HeaderValue::from_static(
            "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // `same-origin`: no referrer leaves drscreen, and our own form POSTs carry a real Origin.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// A cookie's value from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A `Set-Cookie` value with the attributes every drscreen cookie carries.
pub fn set_cookie(name: &str, value: &str, path: &str, secure: bool, max_age: Option<u64>) -> String {
    let mut c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

/// An HTML error page with a status.
pub fn error_page(status: StatusCode, session: Option<&Session>, title: &str, message: &str) -> Response {
    let body = format!(
        r#"<h1>{}</h1><p class="error">{}</p><p><a href="/review">Back to the worklist</a></p>"#,
        html::esc(title),
        html::esc(message)
    );
    (status, Html(html::page(title, session, &body))).into_response()
}

/// The signed-in clinician's or admin's session named by the request's cookie, if any.
async fn session_of(headers: &HeaderMap, state: &AppState) -> Result<Option<Session>, Response> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let idle = state.review.session_idle_secs;
    let found = state.store_call(move |store| store.session(&token, idle)).await.map_err(IntoResponse::into_response)?;
    Ok(found.filter(|s| matches!(s.key.role, Role::Clinician | Role::Admin)))
}

/// A malformed query string, form body or path segment, answered with the styled error
/// page (with the user's navigation when signed in), never axum's plain-text rejection.
async fn bad_request_page(headers: &HeaderMap, state: &AppState, status: StatusCode, detail: &str) -> Response {
    let session = session_of(headers, state).await.ok().flatten();
    let status = if status.is_client_error() { status } else { StatusCode::BAD_REQUEST };
    error_page(status, session.as_ref(), "Bad request", &format!("This page could not read the request: {detail}"))
}

/// `axum::extract::Query` for the pages: a query string that does not parse (`?last=-5`)
/// is answered 400 with the styled error page.
pub struct PageQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> FromRequestParts<AppState> for PageQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match Query::<T>::try_from_uri(&parts.uri) {
            Ok(Query(q)) => Ok(Self(q)),
            Err(e) => {
                let detail = query_error_in_words(&parts.uri, &e.body_text());
                Err(bad_request_page(&parts.headers, state, e.status(), &detail).await)
            }
        }
    }
}

/// A query-string deserialiser message ("Failed to deserialize query string: last:
/// invalid digit found in string") in words for the page: which parameter, the value
/// given and what it must be.
fn query_error_in_words(uri: &axum::http::Uri, message: &str) -> String {
    let detail = message.split_once("query string: ").map_or(message, |(_, d)| d);
    // serde names a repeated parameter without a path: "duplicate field `outcome`".
    if let Some(name) = detail.strip_prefix("duplicate field `").and_then(|r| r.split('`').next()) {
        return format!("the parameter \"{name}\" is given more than once; give it once.");
    }
    let Some((field, why)) = detail.split_once(": ") else {
        return "the address's query string is not valid.".into();
    };
    let field: String = field.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    if field.is_empty() {
        return "the address's query string is not valid.".into();
    }
    let value = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .ok()
        .and_then(|Query(pairs)| pairs.into_iter().find(|(k, _)| *k == field).map(|(_, v)| v));
    let rule = if why.contains("invalid digit") || why.contains("empty string") {
        // A minus sign is an invalid digit only for a count (`last`, `limit`).
        if value.as_deref().is_some_and(|v| v.starts_with('-')) { "must be a whole number, 0 or more" } else { "must be a whole number" }
    } else if why.contains("too large") || why.contains("too small") {
        "is out of range"
    } else if why.contains("float") {
        "must be a number"
    } else if why.contains("`true` or `false`") {
        "must be true or false"
    } else {
        "is not accepted"
    };
    match value {
        Some(v) => format!("the value '{v}' for \"{field}\" {rule}."),
        None => format!("the parameter \"{field}\" {rule}."),
    }
}

/// `axum::extract::Path` for the pages: a segment that does not decode (`%FF`) is
/// answered with the styled error page.
pub struct PagePath<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> FromRequestParts<AppState> for PagePath<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(p)) => Ok(Self(p)),
            Err(e) => Err(bad_request_page(&parts.headers, state, e.status(), &e.body_text()).await),
        }
    }
}

/// `axum::Form` for the pages: a body that is not a URL-encoded form is answered with
/// the styled error page (415 or 400).
pub struct PageForm<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> FromRequest<AppState> for PageForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let headers = request.headers().clone();
        match Form::<T>::from_request(request, state).await {
            Ok(Form(f)) => Ok(Self(f)),
            Err(e) => Err(bad_request_page(&headers, state, e.status(), &e.body_text()).await),
        }
    }
}

/// A signed-in clinician or admin. Pages that need one redirect to sign-in otherwise.
pub struct ReviewSession {
    pub session: Session,
    /// The configured idle timeout, which the pages tell the browser so that it can warn
    /// before the session ends.
    pub idle_secs: u64,
}

/// The request's review session, or `None` (for handlers that answer a missing session
/// otherwise than by a redirect to sign-in).
async fn review_session(headers: &HeaderMap, state: &AppState) -> Result<Option<ReviewSession>, Response> {
    Ok(session_of(headers, state).await?.map(|session| ReviewSession { session, idle_secs: state.review.session_idle_secs }))
}

impl ReviewSession {
    /// Refuses (403 page) users whose role is not in `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), Box<Response>> {
        if roles.contains(&self.session.key.role) {
            Ok(())
        } else {
            Err(Box::new(error_page(
                StatusCode::FORBIDDEN,
                Some(&self.session),
                "Not allowed",
                &format!("The {} role may not do this.", self.session.key.role.as_str()),
            )))
        }
    }

    /// Checks a form's CSRF token against the session's, in constant time.
    pub fn check_csrf(&self, presented: Option<&str>) -> Result<(), Box<Response>> {
        use subtle::ConstantTimeEq;
        let ok = presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(self.session.csrf.as_bytes())));
        if ok {
            Ok(())
        } else {
            Err(Box::new(error_page(
                StatusCode::FORBIDDEN,
                Some(&self.session),
                "Form expired",
                "The form's security token did not match this session (csrf_rejected). Reload the page and try again.",
            )))
        }
    }
}

impl FromRequestParts<AppState> for ReviewSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match review_session(&parts.headers, state).await? {
            Some(user) => Ok(user),
            None => Err(Redirect::to("/review/login").into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_posts_must_come_from_this_host() {
        let headers = |pairs: &[(header::HeaderName, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
            }
            h
        };
        let host = (header::HOST, "127.0.0.1:8080");
        assert!(same_origin(&headers(&[host.clone(), (header::ORIGIN, "http://127.0.0.1:8080")])));
        assert!(same_origin(&headers(&[host.clone(), (header::REFERER, "https://127.0.0.1:8080/review/login?x=1")])));
        assert!(same_origin(&headers(std::slice::from_ref(&host))), "no Origin, no Referer: the CSRF token decides");
        assert!(!same_origin(&headers(&[host.clone(), (header::ORIGIN, "https://evil.example")])));
        assert!(!same_origin(&headers(&[host.clone(), (header::ORIGIN, "null")])));
        assert!(!same_origin(&headers(&[host.clone(), (header::REFERER, "http://127.0.0.1:8080.evil.example/")])));
        assert!(!same_origin(&headers(&[(header::ORIGIN, "http://127.0.0.1:8080")])), "no Host header");
    }

    #[test]
    fn query_errors_are_in_words() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Q {
            last: Option<u32>,
            outcome: Option<String>,
        }
        let words = |q: &str| {
            let uri: axum::http::Uri = format!("/review/x?{q}").parse().unwrap();
            let Err(e) = Query::<Q>::try_from_uri(&uri) else { panic!("{q} parsed") };
            query_error_in_words(&uri, &e.body_text())
        };
        assert_eq!(words("last=-5"), r#"the value '-5' for "last" must be a whole number, 0 or more."#);
        assert_eq!(words("last=abc"), r#"the value 'abc' for "last" must be a whole number."#);
        assert_eq!(words("last=99999999999"), r#"the value '99999999999' for "last" is out of range."#);
        assert_eq!(words("outcome=a&outcome=b"), r#"the parameter "outcome" is given more than once; give it once."#);
    }
}
