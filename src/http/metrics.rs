//! `/metrics`: the service's metrics (recorded in `service::metrics`, whatever edge the
//! work came through) followed by this edge's own counter of HTTP responses by route and
//! status, in the Prometheus text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use crate::store::{DeliveryKind, DeliveryState};

/// HTTP responses by matched route and status.
#[derive(Default)]
pub struct HttpMetrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
}

impl HttpMetrics {
    fn observe_request(&self, route: String, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route, status)).or_default() += 1;
        }
    }

    /// The request counters, then the service's metrics.
    pub fn render(&self, service: &crate::service::ScreeningService) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP drscreen_http_requests_total HTTP requests by route and status.\n# TYPE drscreen_http_requests_total counter\n",
        );
        if let Ok(m) = self.requests.lock() {
            for ((route, status), n) in m.iter() {
                let _ = writeln!(out, "drscreen_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
            }
        }
        out.push_str(&service.metrics.render(&service.screener.engine));
        out
    }
}

/// The outbox gauges: deliveries by destination kind and state.
pub fn render_outbox(out: &mut String, counts: &[(DeliveryKind, DeliveryState, i64)]) {
    out.push_str(
        "# HELP drscreen_outbox_deliveries Outbox deliveries by destination kind and state (pending, delivered, failed).\n# TYPE drscreen_outbox_deliveries gauge\n",
    );
    for (kind, state, n) in counts {
        let _ = writeln!(out, "drscreen_outbox_deliveries{{kind=\"{}\",state=\"{}\"}} {n}", kind.as_str(), state.as_str());
    }
}

/// Middleware counting every response by matched route and status.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    state.metrics.observe_request(route, response.status().as_u16());
    response
}
