//! The minimum upload rate. The body idle timeout ends a body that stops; this ends one
//! that trickles: once `grace` has passed, a request body must have averaged at least
//! `min_bytes_per_sec` since then, or the read fails and the request is answered 408
//! `body_too_slow`. Without it a client sending a few bytes before each idle timeout
//! holds a connection, and whatever the handler admitted, for hours.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use futures_util::StreamExt;

/// Why a body read was ended early.
#[derive(Debug, thiserror::Error)]
#[error("the request body is arriving too slowly: {received} bytes in {elapsed_secs} s, under the minimum of {min_bytes_per_sec} bytes/s")]
pub struct BodyTooSlow {
    pub received: u64,
    pub elapsed_secs: u64,
    pub min_bytes_per_sec: u64,
}

/// The rule: after `grace`, `received` must be at least `min_bytes_per_sec` per second
/// of the time since the grace ended.
#[derive(Debug, Clone, Copy)]
pub struct MinRate {
    pub min_bytes_per_sec: u64,
    pub grace: Duration,
}

impl MinRate {
    fn check(&self, received: u64, elapsed: Duration) -> Result<(), BodyTooSlow> {
        let owed = elapsed.saturating_sub(self.grace).as_secs().saturating_mul(self.min_bytes_per_sec);
        if self.min_bytes_per_sec > 0 && received < owed {
            return Err(BodyTooSlow { received, elapsed_secs: elapsed.as_secs(), min_bytes_per_sec: self.min_bytes_per_sec });
        }
        Ok(())
    }

    /// Wraps `request`'s body so that every chunk checks the rate. A stalled body is the
    /// idle timeout's to end; this one sees only bodies that keep sending.
    pub fn wrap(self, request: Request) -> Request {
        if self.min_bytes_per_sec == 0 {
            return request;
        }
        let start = Instant::now();
        let mut received = 0u64;
        request.map(|body| {
            Body::from_stream(body.into_data_stream().map(move |chunk| {
                let chunk = chunk.map_err(axum::BoxError::from)?;
                received = received.saturating_add(chunk.len() as u64);
                self.check(received, start.elapsed()).map_err(axum::BoxError::from)?;
                Ok::<_, axum::BoxError>(chunk)
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_owed_only_after_the_grace() {
        let rule = MinRate { min_bytes_per_sec: 1000, grace: Duration::from_secs(30) };
        assert!(rule.check(0, Duration::from_secs(30)).is_ok());
        assert!(rule.check(10_000, Duration::from_secs(40)).is_ok());
        let slow = rule.check(9_999, Duration::from_secs(40)).unwrap_err();
        assert_eq!((slow.received, slow.elapsed_secs), (9_999, 40));
        // 0 turns the rule off.
        assert!(MinRate { min_bytes_per_sec: 0, ..rule }.check(0, Duration::from_secs(3600)).is_ok());
    }
}
