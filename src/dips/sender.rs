//! Delivers queued DIPS results: builds the `$append-retina-ai-result` Parameters at
//! send time (so a clinician's review signed before delivery is what DIPS gets), posts
//! it once, and records the answer. The guide's statuses decide what happens next:
//! 204/200 delivered (200's OperationOutcome kept); 409 "already graded" means DIPS has a
//! result, so it counts as delivered (audited as such) and is never posted again (the
//! append is not idempotent); 408, 429, 5xx and no answer are retried with capped
//! back-off; any other 4xx (400 invalid, 401/403 credential, 404 unknown examination,
//! 422 business rule) is `failed`, shown to an admin with DIPS's reason.

use std::sync::Arc;
use std::time::Duration;

use super::DipsConfig;
use super::client::{DipsClient, DipsError, outcome_summary};
use crate::service::{ScreeningService, ServiceError};
use crate::store::{Delivery, DeliveryKind};

/// What to do with an answer from DIPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered { action: &'static str, result: String },
    Retry(String),
    Failed(String),
}

/// The guide's meaning of an append's HTTP status.
pub fn verdict(status: u16, body: &str) -> Verdict {
    match status {
        204 => Verdict::Delivered { action: "dips.result.delivered", result: "204 No Content".into() },
        200 => Verdict::Delivered { action: "dips.result.delivered", result: format!("200: {}", outcome_summary(body)) },
        409 => Verdict::Delivered { action: "dips.result.already-present", result: format!("409: {}", outcome_summary(body)) },
        408 | 429 | 500..=599 => Verdict::Retry(format!("DIPS answered {status}: {}", outcome_summary(body))),
        _ => Verdict::Failed(format!("DIPS refused the result ({status}): {}", outcome_summary(body))),
    }
}

/// Sends due deliveries until the process ends.
pub async fn run_sender(service: Arc<ScreeningService>, client: Arc<DipsClient>, config: DipsConfig) {
    let period = Duration::from_secs_f64(config.retry_initial_secs.clamp(0.2, 2.0));
    loop {
        tokio::time::sleep(period).await;
        let store = service.store.clone();
        let due = match tokio::task::spawn_blocking(move || store.claim_deliveries(DeliveryKind::Dips)).await {
            Ok(Ok(due)) => due,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot claim DIPS deliveries; trying again");
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "DIPS claim task failed");
                continue;
            }
        };
        for item in due {
            if let Err(e) = deliver(&service, &client, &config, &item).await {
                // Recording failed (the store is down): the lease runs out and the row is
                // claimed again, by this or another replica.
                tracing::warn!(exam = %item.exam_id, error = %e, "cannot record a DIPS delivery's outcome");
            }
        }
    }
}

/// Builds, posts and records one delivery.
pub async fn deliver(
    service: &Arc<ScreeningService>,
    client: &DipsClient,
    config: &DipsConfig,
    item: &Delivery,
) -> Result<(), ServiceError> {
    let verdict = match service.dips_parameters(&item.exam_id, config.validation, &config.conclusion).await {
        Ok(None) => Verdict::Failed("the exam no longer exists".into()),
        Err(e) => Verdict::Retry(format!("cannot build the result: {e}")),
        Ok(Some(parameters)) => match client.append(&item.destination, &parameters).await {
            Ok(answer) => verdict(answer.status, &answer.body),
            Err(e @ DipsError::BadId(_)) => Verdict::Failed(e.to_string()),
            Err(e) => Verdict::Retry(e.to_string()),
        },
    };
    let store = service.store.clone();
    let item = item.clone();
    let delay = config.backoff(item.attempts);
    tokio::task::spawn_blocking(move || match verdict {
        Verdict::Delivered { action, result } => {
            tracing::info!(exam = %item.exam_id, report = %item.destination, action, "DIPS result delivered");
            let detail = format!("result for DIPS report {}: {result}", item.destination);
            store.delivery_delivered(&item, action, &detail, Some(&result))
        }
        Verdict::Retry(why) => {
            tracing::warn!(exam = %item.exam_id, attempt = item.attempts + 1, retry_in_s = delay, error = %why, "DIPS delivery failed; queued for retry");
            store.delivery_retry(&item, "dips.result.retry", delay, &why)
        }
        Verdict::Failed(why) => {
            tracing::error!(exam = %item.exam_id, error = %why, "DIPS refused a result; an admin must look at it");
            store.delivery_failed(&item, "dips.result.failed", &why)
        }
    })
    .await??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_mean_what_the_guide_says() {
        assert!(matches!(verdict(204, ""), Verdict::Delivered { action: "dips.result.delivered", .. }));
        assert!(matches!(verdict(200, "{}"), Verdict::Delivered { action: "dips.result.delivered", .. }));
        assert!(matches!(verdict(409, ""), Verdict::Delivered { action: "dips.result.already-present", .. }));
        for s in [408, 429, 500, 502, 503] {
            assert!(matches!(verdict(s, ""), Verdict::Retry(_)), "{s}");
        }
        for s in [400, 401, 403, 404, 422] {
            assert!(matches!(verdict(s, ""), Verdict::Failed(_)), "{s}");
        }
    }
}
