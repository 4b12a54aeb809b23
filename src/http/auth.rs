//! API-key authentication: `Authorization: Bearer <key>` (or `X-API-Key`). The key is
//! checked against the store (hash compared in constant time) and the caller's role is
//! checked by each handler with [`Caller::require`].

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::store::{KeyIdentity, Role};

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller(pub KeyIdentity);

impl Caller {
    /// Refuses (403) callers whose role is not in `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.0.role) {
            Ok(())
        } else {
            Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("the {} role may not do this", self.0.role.as_str())))
        }
    }

    /// Whether the caller may read results submitted by `submitted_by`.
    pub fn may_read(&self, submitted_by: &str) -> bool {
        self.0.role != Role::Device || self.0.id == submitted_by
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let presented = header("authorization")
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .or_else(|| header("x-api-key"))
            .map(str::to_string);
        let Some(key) = presented else {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "an API key is required (Authorization: Bearer <key>)"));
        };
        let found = state.store_call(move |store| store.verify_key(&key)).await?;
        found.map(Caller).ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "the API key is unknown or revoked"))
    }
}
