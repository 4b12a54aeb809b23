//! The HTTP edge (axum). Handlers translate HTTP into `service` calls and results back
//! into the protocol; they hold no clinical logic and never call the DICOM edge.
//! `serve` binds only after the engine is warm and shuts down gracefully: stop accepting,
//! finish what was admitted, close the store.
//!
//! - `v1`: grade one image, submit and read exams, originals and heatmaps.
//! - `reviews`: the review, audit and agreement JSON API; `pages`: the review pages.
//! - `kserve`: KServe v2 / Open Inference Protocol under `/v2`.
//! - `dicomweb`: STOW-RS, DICOM grading over `/v1/grade`, an exam's SR; `fhir`: its FHIR report;
//!   `report`: its PDF report.
//! - `auth` (keys and roles), `error` (the JSON error shape, rejections mapped once),
//!   `metrics` (`/metrics`), `openapi` (`/openapi.json`, `/docs`).

pub mod auth;
pub mod body_rate;
pub mod deliveries;
pub mod dicomweb;
pub mod error;
pub mod fhir;
pub mod kserve;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod report;
pub mod reviews;
pub mod server;
pub mod v1;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::service::ScreeningService;
use auth::Caller;
use metrics::HttpMetrics;
pub use server::HttpLimits;

/// Shared handler state.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<ScreeningService>,
    pub metrics: Arc<HttpMetrics>,
    pub max_body_bytes: usize,
    pub review: crate::review::ReviewConfig,
}

impl AppState {
    /// Runs a blocking store call on tokio's blocking pool (SQLite and file I/O must not
    /// stall the async workers) and maps both failure layers to API errors.
    pub async fn store_call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&crate::store::Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, error::ApiError> {
        let store = self.service.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| error::ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
            .map_err(error::ApiError::from)
    }
}

/// The full router.
pub fn router(state: AppState) -> axum::Router {
    let body_limit = state.max_body_bytes.saturating_mul(4).saturating_add(64 * 1024);
    axum::Router::new()
        .route("/healthz", get(|| async { Json(serde_json::json!({"status": "live"})) }))
        .route("/readyz", get(readyz))
        .route("/info", get(info))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi::spec))
        .route("/docs", get(openapi::docs))
        .route("/v1/grade", post(v1::grade))
        .route("/v1/exams", post(v1::create_exam).get(v1::list_exams))
        .route("/v1/exams/{id}", get(v1::get_exam))
        .route("/v1/images/{id}", get(v1::get_image))
        .route("/v1/images/{id}/heatmap.png", get(v1::heatmap))
        .route("/v1/exams/{id}/reviews", post(reviews::create).get(reviews::list))
        .route("/v1/audit", get(reviews::audit))
        .route("/v1/agreement", get(reviews::agreement_json))
        .route("/v1/exams/{id}/sr.dcm", get(dicomweb::exam_sr))
        .route("/v1/exams/{id}/fhir", get(fhir::exam_fhir))
        .route("/v1/deliveries", get(deliveries::list))
        .route("/v1/deliveries/{id}/retry", post(deliveries::retry))
        .route("/v1/exams/{id}/report.pdf", get(report::exam_report_pdf))
        .route("/dicomweb/studies", post(dicomweb::stow))
        .merge(kserve::routes())
        // The review pages run with the page context (model notice, quality limits).
        .merge(pages::routes().layer(axum::middleware::from_fn_with_state(state.clone(), pages::context::scope)))
        .fallback(|| async { error::ApiError::not_found("route") })
        // After every route is registered: it applies to the method routers added so far.
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method")
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(body_limit, refuse_declared_oversize))
        // Browsers must take every response for the type it declares (no MIME sniffing).
        .layer(axum::middleware::map_response(|mut response: Response| async move {
            response.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            response
        }))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .with_state(state)
}

/// A `Content-Length` over the body limit is answered 413 at once: the client is told
/// before it sends (or pretends to send) gigabytes.
async fn refuse_declared_oversize(State(limit): State<usize>, request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return error::ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request declares more than the {limit} bytes a request may hold"),
        )
        .into_response();
    }
    next.run(request).await
}

/// Ready when the engine is warm and both the database and the image store answer now
/// (each check bounded by its own timeout), so a balancer stops sending work to a
/// replica that cannot store it.
async fn readyz(State(state): State<AppState>) -> Response {
    let not_ready = |code: &str, error: String| {
        (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"status": "not_ready", "code": code, "error": error}))).into_response()
    };
    if !state.service.screener.engine.is_ready() {
        return not_ready("not_ready", "the inference engine is not ready".into());
    }
    let store = state.service.store.clone();
    match tokio::task::spawn_blocking(move || store.health()).await {
        Ok(Ok(())) => Json(serde_json::json!({"status": "ready"})).into_response(),
        Ok(Err(e @ crate::store::StoreError::Blob(_))) => {
            not_ready("object_store_unavailable", format!("the image store does not answer: {e}"))
        }
        Ok(Err(crate::store::StoreError::Unavailable(e))) if e.starts_with("object store") => {
            not_ready("object_store_unavailable", format!("the image store does not answer: {e}"))
        }
        Ok(Err(e)) => not_ready("database_unavailable", format!("the database does not answer: {e}")),
        Err(e) => not_ready("not_ready", format!("readiness check failed: {e}")),
    }
}

async fn info(State(state): State<AppState>, _caller: Caller) -> Response {
    let engine = &state.service.screener.engine;
    let m = engine.model();
    Json(serde_json::json!({
        "service": "drscreen",
        "version": env!("CARGO_PKG_VERSION"),
        "model": m.identity,
        "clinical_use": m.manifest.clinical_use,
        "recipe": m.manifest.input.recipe,
        "thresholds": m.thresholds,
        "execution_provider": m.provider.ort_name(),
        "onnxruntime": crate::model::runtime::pinned_version(),
        "batching": engine.config(),
        "warm_up_ms": m.warm_up.as_secs_f64() * 1e3,
    }))
    .into_response()
}

async fn metrics_text(State(state): State<AppState>, _caller: Caller) -> Response {
    let mut text = state.metrics.render(&state.service);
    // The outbox gauges are read from the store, so they count every replica's rows.
    match state.store_call(|store| store.delivery_counts()).await {
        Ok(counts) => metrics::render_outbox(&mut text, &counts),
        Err(e) => tracing::warn!(error = %e.message, "outbox gauges left out of /metrics: the store did not answer"),
    }
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Serves until a shutdown signal, then drains: the listener closes, admitted work
/// finishes (bounded by `drain`), and the store is dropped (SQLite checkpoints on close).
pub async fn serve(listener: tokio::net::TcpListener, state: AppState, limits: HttpLimits, drain: Duration) -> std::io::Result<()> {
    let engine = state.service.screener.engine.clone();
    let min_rate =
        body_rate::MinRate { min_bytes_per_sec: limits.min_body_bytes_per_sec, grace: Duration::from_secs(limits.body_idle_secs) };
    // Outermost first: the idle timeout ends a body that stops, the rate one that trickles.
    let app = router(state)
        .layer(axum::middleware::map_request(move |request: axum::extract::Request| async move { min_rate.wrap(request) }))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(Duration::from_secs(limits.body_idle_secs.max(1))));
    let signal_engine = engine.clone();
    server::run(listener, app, limits, async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested: no new requests; finishing admitted work");
        signal_engine.stop_accepting();
    })
    .await?;
    let deadline = tokio::time::Instant::now() + drain;
    while engine.in_flight() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
