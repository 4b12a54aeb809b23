//! The HTTP listener: the accept loop `axum::serve` would run, with the limits a
//! service on a hospital network needs against slow or hostile clients. At most
//! `max_connections` connections are open at once (beyond it a new connection is closed
//! at once, and the refusals are logged once a second, not once each); a client has
//! `header_read_secs` to send a request's headers (a half-sent request, or an idle
//! keep-alive connection, is closed after it); a body that stalls for `body_idle_secs`
//! ends the request (408, see `error`); a `Content-Length` over the body limit is
//! answered 413 before any of the body is read. Shutdown stops accepting and lets every
//! open request finish.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// `[http]`: connection limits and timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpLimits {
    /// Open connections at once; beyond it new connections are closed.
    pub max_connections: usize,
    /// Seconds a client may take to send a request's headers (also the keep-alive idle time).
    pub header_read_secs: u64,
    /// Seconds a request body may stall between two chunks before the request ends (408).
    pub body_idle_secs: u64,
    /// Slowest average upload accepted, in bytes per second, counted after the first
    /// `body_idle_secs` (408 `body_too_slow`); 0 turns it off.
    pub min_body_bytes_per_sec: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self { max_connections: 512, header_read_secs: 10, body_idle_secs: 30, min_body_bytes_per_sec: 1024 }
    }
}

/// Logs "connection refused" at most once a second, with how many were refused since.
struct RefusalLog {
    last_second: AtomicU64,
    refused: AtomicU64,
}

impl RefusalLog {
    fn refused(&self, max: usize) {
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if self.last_second.swap(now, Ordering::Relaxed) != now {
            self.refused.store(0, Ordering::Relaxed);
            tracing::warn!(max_connections = max, refused = n, "HTTP connection limit reached; new connections closed");
        }
    }
}

/// Accepts connections on `listener` and serves `app` on each until `shutdown`
/// resolves, then waits for open connections to finish their requests.
pub async fn run(listener: TcpListener, app: axum::Router, limits: HttpLimits, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let log = Arc::new(RefusalLog { last_second: AtomicU64::new(0), refused: AtomicU64::new(0) });
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(limits.header_read_secs.max(1)));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            log.refused(limits.max_connections);
            drop(stream);
            continue;
        };
        let service = hyper::service::service_fn({
            let app = app.clone();
            move |request: hyper::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.oneshot(request.map(axum::body::Body::new)).await.unwrap_or_else(|e| match e {})) }
            }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
