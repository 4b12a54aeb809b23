//! The outbox as an admin sees it over the API: `GET /v1/deliveries` (what is pending,
//! delivered or failed, with each destination's answer or error) and
//! `POST /v1/deliveries/{id}/retry` (queue a failed delivery again, audited). The review
//! pages show the same rows (`pages::deliveries`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, Path, Query};
use crate::store::{DeliveryState, MAX_LISTED_DELIVERIES, Role};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// pending | delivered | failed (absent: all).
    pub state: Option<String>,
    /// Newest N rows (1-500, default 100).
    pub limit: Option<i64>,
}

/// Parses the `state` filter; an unknown one is a 400 naming the allowed values.
pub fn parse_state(state: Option<&str>) -> Result<Option<DeliveryState>, ApiError> {
    match state {
        None | Some("") => Ok(None),
        Some(s) => DeliveryState::parse(s).map(Some).ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", format!("state must be pending, delivered or failed, not '{s}'"))
        }),
    }
}

/// `GET /v1/deliveries?state=&limit=` (admin).
pub async fn list(State(state): State<AppState>, caller: Caller, Query(q): Query<DeliveriesQuery>) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let filter = parse_state(q.state.as_deref())?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LISTED_DELIVERIES).contains(&limit) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", format!("limit must be 1-{MAX_LISTED_DELIVERIES}")));
    }
    let (rows, counts) = state.store_call(move |store| Ok((store.deliveries(filter, limit)?, store.delivery_counts()?))).await?;
    let counts: Vec<_> = counts.iter().map(|(k, s, n)| serde_json::json!({"kind": k.as_str(), "state": s.as_str(), "count": n})).collect();
    Ok(Json(serde_json::json!({ "counts": counts, "deliveries": rows })).into_response())
}

/// `POST /v1/deliveries/{id}/retry` (admin): a failed delivery goes back in the queue.
pub async fn retry(State(state): State<AppState>, caller: Caller, Path(id): Path<i64>) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let actor = caller.0.id.clone();
    let requeued = state.store_call(move |store| store.requeue_delivery(&actor, id)).await?;
    if !requeued {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no failed delivery {id}")));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
