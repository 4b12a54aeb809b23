//! Sign-in and sign-out. The sign-in form is protected by a double-submit token (a
//! SameSite=Strict cookie that must match a hidden field), the key is checked like an
//! API key, and success sets the session cookie. Failures are audited by key id only.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::html::{esc, page};
use super::{LOGIN_CSRF_COOKIE, PageForm, ReviewSession, SESSION_COOKIE, cookie, set_cookie};
use crate::http::AppState;
use crate::store::{Role, random_hex};

fn login_page(state: &AppState, status: StatusCode, message: Option<&str>) -> Response {
    login_page_carrying(state, status, message, "")
}

/// The sign-in page with `carried` (hidden inputs, already escaped) inside its form: a
/// review submitted after the session expired rides along to the next sign-in.
pub(super) fn login_page_carrying(state: &AppState, status: StatusCode, message: Option<&str>, carried: &str) -> Response {
    let token = match random_hex(16) {
        Ok(t) => t,
        Err(e) => return crate::http::error::ApiError::from(e).into_response(),
    };
    let body = format!(
        r#"<section class="login"><h1>Sign in</h1>{msg}
<form method="post" action="/review/login">
<input type="hidden" name="csrf" value="{token}">{carried}
<label for="key">Clinician key</label>
<input type="password" id="key" name="key" autocomplete="off" required autofocus>
<button type="submit" id="sign-in">Sign in</button>
</form><p class="hint">Ask your administrator for a clinician key (<code>drscreen keys create --role clinician</code>).</p></section>"#,
        msg = message.map(|m| format!(r#"<p class="error">{}</p>"#, esc(m))).unwrap_or_default(),
    );
    let mut response = (status, Html(page("Sign in", None, &body))).into_response();
    if let Ok(v) = set_cookie(LOGIN_CSRF_COOKIE, &token, "/review/login", state.review.secure_cookies, None).parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// `GET /review/login`.
pub async fn form(State(state): State<AppState>) -> Response {
    login_page(&state, StatusCode::OK, None)
}

/// `POST /review/login`: key -> session cookie.
pub async fn submit(State(state): State<AppState>, headers: HeaderMap, PageForm(form): PageForm<HashMap<String, String>>) -> Response {
    use subtle::ConstantTimeEq;
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    let presented = form.get("csrf").cloned().unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(presented.as_bytes())) {
        return login_page_carrying(
            &state,
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired (csrf_rejected). Please try again."),
            &super::form::carried_again(&form),
        );
    }
    let key = form.get("key").map(|k| k.trim().to_string()).unwrap_or_default();
    let key_id = key.strip_prefix("drs_").and_then(|rest| rest.split('_').next()).unwrap_or("unknown").to_string();
    let verified = state.store_call(move |store| store.verify_key(&key)).await;
    let identity = match verified {
        Ok(Some(id)) if matches!(id.role, Role::Clinician | Role::Admin) => id,
        Ok(found) => {
            let why = if found.is_some() { "role may not review" } else { "unknown or revoked key" };
            let actor = key_id.chars().filter(char::is_ascii_hexdigit).take(32).collect::<String>();
            // A sign-in attempt that cannot be audited is not answered as if it had been.
            if let Err(e) = state.store_call(move |store| store.audit(&actor, "session.login_failed", None, Some(why))).await {
                return e.into_response();
            }
            return login_page_carrying(
                &state,
                StatusCode::UNAUTHORIZED,
                Some("That key is not a valid clinician or admin key."),
                &super::form::carried_again(&form),
            );
        }
        Err(e) => return e.into_response(),
    };
    let created = {
        let identity = identity.clone();
        state.store_call(move |store| store.create_session(&identity)).await
    };
    match created {
        Ok((token, csrf)) => {
            // A review carried over an expired session goes back to its case's form.
            let mut response = match super::form::carried_from_login(&form) {
                Some((exam_id, fields)) => {
                    super::form::restored_case(&state, crate::store::Session { key: identity, csrf }, exam_id, &fields).await
                }
                None => Redirect::to("/review").into_response(),
            };
            if let Ok(v) = set_cookie(SESSION_COOKIE, &token, "/review", state.review.secure_cookies, None).parse() {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
            if let Ok(v) = set_cookie(LOGIN_CSRF_COOKIE, "", "/review/login", state.review.secure_cookies, Some(0)).parse() {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /review/logout`.
pub async fn logout(
    State(state): State<AppState>,
    user: ReviewSession,
    headers: HeaderMap,
    PageForm(form): PageForm<HashMap<String, String>>,
) -> Response {
    if let Err(refused) = user.check_csrf(form.get("csrf").map(String::as_str)) {
        return *refused;
    }
    if let Some(token) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = state.store_call(move |store| store.end_session(&token)).await
    {
        return e.into_response();
    }
    let mut response = Redirect::to("/review/login").into_response();
    if let Ok(v) = set_cookie(SESSION_COOKIE, "", "/review", state.review.secure_cookies, Some(0)).parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}
