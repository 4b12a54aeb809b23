//! Finds DIPS examinations waiting for an AI result and queues one delivery for each
//! whose images drscreen has graded. Every replica may poll: the outbox holds one DIPS
//! delivery per examination ever (a unique index), so a second replica's match, or the
//! same examination seen again on the next poll while its delivery is still pending,
//! queues nothing.

use std::sync::Arc;
use std::time::Duration;

use super::DipsConfig;
use super::client::{DipsClient, DipsError, is_fhir_id};
use crate::interop::dips::pending_examinations;
use crate::service::ScreeningService;
use crate::store::DeliveryKind;

/// What one poll did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PollSummary {
    /// Examinations DIPS listed as pending.
    pub pending: usize,
    /// Of those, deliveries queued now.
    pub queued: usize,
    /// Of those, examinations no graded exam matches (yet).
    pub unmatched: usize,
}

/// The search window: `window_days` back from today to tomorrow, as FHIR dates (UTC).
pub fn window(now: time::OffsetDateTime, window_days: u32) -> (String, String) {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let start = (now - time::Duration::days(window_days.into())).date();
    let end = (now + time::Duration::days(1)).date();
    (start.format(fmt).unwrap_or_default(), end.format(fmt).unwrap_or_default())
}

/// Polls until the process ends.
pub async fn run_poller(service: Arc<ScreeningService>, client: Arc<DipsClient>, config: DipsConfig) {
    let period = Duration::from_secs_f64(config.poll_secs);
    loop {
        match poll_once(&service, &client, &config).await {
            Ok(s) if s.pending > 0 => {
                tracing::info!(pending = s.pending, queued = s.queued, unmatched = s.unmatched, "DIPS poll")
            }
            Ok(_) => tracing::debug!("DIPS poll: nothing pending"),
            Err(e) => tracing::warn!(error = %e, "DIPS poll failed; trying again on the next poll"),
        }
        tokio::time::sleep(period).await;
    }
}

/// Why a poll did nothing.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Dips(#[from] DipsError),
    #[error("the pending examinations cannot be read: {0}")]
    Bundle(String),
    #[error("store: {0}")]
    Store(String),
}

/// One poll: ask DIPS, match, queue.
pub async fn poll_once(service: &Arc<ScreeningService>, client: &DipsClient, config: &DipsConfig) -> Result<PollSummary, PollError> {
    let (start, end) = window(time::OffsetDateTime::now_utc(), config.window_days);
    let bundle = client.pending(&start, &end).await?;
    let pending = pending_examinations(&bundle).map_err(|e| PollError::Bundle(e.to_string()))?;
    let store = service.store.clone();
    tokio::task::spawn_blocking(move || {
        let mut summary = PollSummary { pending: pending.len(), ..Default::default() };
        for exam in pending {
            if !is_fhir_id(&exam.report_id) {
                tracing::warn!("DIPS listed an examination whose report id is not a FHIR id; skipped");
                continue;
            }
            let mut matched = None;
            for sectra in &exam.sectra_study_ids {
                if let Some(found) = store.exam_by_sectra_study(sectra).map_err(|e| PollError::Store(e.to_string()))? {
                    matched = Some(found);
                    break;
                }
            }
            match matched {
                Some(exam_id) => {
                    let queued = store
                        .enqueue_delivery("dips", DeliveryKind::Dips, &exam_id, &exam.report_id)
                        .map_err(|e| PollError::Store(e.to_string()))?;
                    if queued {
                        summary.queued += 1;
                        tracing::info!(exam = %exam_id, report = %exam.report_id, "DIPS examination matched; result queued");
                    }
                }
                None => summary.unmatched += 1,
            }
        }
        Ok(summary)
    })
    .await
    .map_err(|e| PollError::Store(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_runs_from_days_back_to_tomorrow() {
        let now = time::macros::datetime!(2026-11-30 23:30 UTC);
        assert_eq!(window(now, 7), ("2026-11-23".to_string(), "2026-12-01".to_string()));
    }
}
