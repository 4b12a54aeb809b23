//! What every review page may show about the running service, without threading it
//! through each page's signature: the model manifest's clinical-use notice and the
//! grading policy's quality limits and gradability threshold. A middleware on the review
//! routes ([`scope`]) captures them per request in a tokio task-local, which
//! `html::page` and the image captions read; outside a request (unit tests) there is no
//! notice and the default limits apply.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::http::AppState;
use crate::preprocess::QualityLimits;

/// The per-request page context.
#[derive(Debug, Clone)]
pub struct PageContext {
    /// The banner text when the model is not for clinical use (`clinical_use = false`).
    pub model_notice: Option<String>,
    /// The limits the quality measures are judged by.
    pub quality_limits: QualityLimits,
    /// The P(gradable) threshold below which the model's call makes an image ungradable.
    pub gradable_threshold: Option<f32>,
}

tokio::task_local! {
    static PAGE_CONTEXT: PageContext;
}

impl PageContext {
    /// The context of the running service.
    pub fn of(state: &AppState) -> Self {
        let screener = &state.service.screener;
        let model = screener.engine.model();
        let manifest = &model.manifest;
        Self {
            model_notice: (!manifest.clinical_use).then(|| notice(&manifest.name, &manifest.version)),
            quality_limits: screener.policy.quality,
            gradable_threshold: Some(screener.policy.thresholds.gradable),
        }
    }

    /// The current request's context (the defaults outside one).
    pub fn current() -> Self {
        PAGE_CONTEXT.try_with(Clone::clone).unwrap_or_else(|_| Self {
            model_notice: None,
            quality_limits: QualityLimits::default(),
            gradable_threshold: None,
        })
    }
}

/// The banner for a model whose manifest says `clinical_use = false`. The manifest
/// schema (models/README.md) defines that as "trained on synthetic images only".
pub fn notice(name: &str, version: &str) -> String {
    format!("This model ({name} {version}) was trained on synthetic images only and must not be used for patients.")
}

/// Middleware: runs the rest of the request with the service's page context.
pub async fn scope(State(state): State<AppState>, request: Request, next: Next) -> Response {
    PAGE_CONTEXT.scope(PageContext::of(&state), next.run(request)).await
}

/// Runs `f` with `context` as the current page context (tests of the page builders).
#[cfg(test)]
pub fn with<T>(context: PageContext, f: impl FnOnce() -> T) -> T {
    PAGE_CONTEXT.sync_scope(context, f)
}
