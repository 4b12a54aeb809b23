//! The DIPS Arena edge (the EHR of Norway's health regions), as its RetinaIntegration
//! guide has it: the AI side is the client. `poller` asks DIPS for examinations waiting
//! for an AI result (`$retina-by-date?pendingAI=true`) and queues one outbox delivery per
//! examination whose images drscreen has graded; `sender` posts each as a FHIR
//! `Parameters` to `$append-retina-ai-result` and records what DIPS answered. What the
//! resources mean (codes, the Parameters, the pending-examination Bundle) lives in
//! `interop::dips`; this module is transport, timing and bookkeeping. Patient data is
//! never logged: only exam ids, DIPS report ids and HTTP statuses.
//!
//! Matching rule (one, documented in the README): a DIPS examination's Sectra study id
//! is looked up as an exam's `sectra_study_id`, which is the source study's
//! AccessionNumber for a DICOM exam and `external_exam_ref` for an HTTP exam; the newest
//! such exam is delivered.

pub mod client;
pub mod poller;
pub mod sender;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::interop::dips::ConclusionMapping;
use crate::service::ScreeningService;

/// `[dips]`: the connection to DIPS.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DipsConfig {
    /// The FHIR base URL of DIPS's RetinaIntegration API (none = the integration is off).
    pub base_url: Option<String>,
    /// The header that carries the credential.
    pub auth_header: String,
    /// The header's value, e.g. `Bearer <token>` (none = no credential sent).
    pub auth_value: Option<String>,
    /// Seconds between polls for pending examinations.
    pub poll_secs: f64,
    /// Days back from now the pending-examination search covers (it ends tomorrow).
    pub window_days: u32,
    /// Results are for validation only (DIPS sends every examination to manual grading).
    /// On until the model is cleared for clinical use.
    pub validation: bool,
    /// Seconds one request to DIPS may take (connect included).
    pub timeout_secs: f64,
    /// First retry delay after a failed delivery, seconds (doubles each failure).
    pub retry_initial_secs: f64,
    /// Longest retry delay, seconds. Deliveries are retried forever and never dropped.
    pub retry_max_secs: f64,
    /// Screening outcome -> the guide's conclusion code.
    pub conclusion: ConclusionMapping,
}

impl Default for DipsConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            auth_header: "Authorization".into(),
            auth_value: None,
            poll_secs: 60.0,
            window_days: 7,
            validation: true,
            timeout_secs: 30.0,
            retry_initial_secs: 30.0,
            retry_max_secs: 3600.0,
            conclusion: ConclusionMapping::default(),
        }
    }
}

impl DipsConfig {
    /// Checks the settings the edge cannot run with; `Err((toml key, reason))`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(url) = &self.base_url {
            let ok = (url.starts_with("http://") || url.starts_with("https://")) && !url.contains(['?', '#', ' ']);
            if !ok || reqwest::Url::parse(url).is_err() {
                return Err(("dips.base_url", format!("must be an http(s) URL without query or fragment, got '{url}'")));
            }
        }
        if reqwest::header::HeaderName::from_bytes(self.auth_header.as_bytes()).is_err() {
            return Err(("dips.auth_header", format!("'{}' is not an HTTP header name", self.auth_header)));
        }
        if let Some(v) = &self.auth_value
            && reqwest::header::HeaderValue::from_str(v).is_err()
        {
            return Err(("dips.auth_value", "is not a valid HTTP header value".into()));
        }
        for (key, secs) in [
            ("dips.poll_secs", self.poll_secs),
            ("dips.timeout_secs", self.timeout_secs),
            ("dips.retry_initial_secs", self.retry_initial_secs),
        ] {
            if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
                return Err((key, format!("must be a number of seconds above 0 and at most 86400, got {secs}")));
            }
        }
        if !(self.retry_max_secs.is_finite() && self.retry_max_secs >= self.retry_initial_secs) {
            return Err((
                "dips.retry_max_secs",
                format!("must be no less than dips.retry_initial_secs ({}), got {}", self.retry_initial_secs, self.retry_max_secs),
            ));
        }
        if !(1..=366).contains(&self.window_days) {
            return Err(("dips.window_days", format!("must be 1-366, got {}", self.window_days)));
        }
        self.conclusion.validate().map_err(|reason| ("dips.conclusion", reason))
    }

    /// The retry delay after `attempts` failures.
    pub fn backoff(&self, attempts: i64) -> f64 {
        let factor = 2f64.powi(attempts.clamp(0, 30) as i32);
        (self.retry_initial_secs * factor).min(self.retry_max_secs).max(0.0)
    }
}

/// Starts the poller and the sender on `runtime` when a base URL is configured.
pub fn start(config: &DipsConfig, service: Arc<ScreeningService>, runtime: &tokio::runtime::Handle) -> Result<bool, client::DipsError> {
    if config.base_url.is_none() {
        return Ok(false);
    }
    let client = Arc::new(client::DipsClient::new(config)?);
    runtime.spawn(poller::run_poller(service.clone(), client.clone(), config.clone()));
    runtime.spawn(sender::run_sender(service, client, config.clone()));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_bad_values_are_named() {
        DipsConfig::default().check().unwrap();
        let with = |f: &dyn Fn(&mut DipsConfig)| {
            let mut c = DipsConfig::default();
            f(&mut c);
            c.check().unwrap_err().0
        };
        assert_eq!(with(&|c| c.base_url = Some("ftp://dips".into())), "dips.base_url");
        assert_eq!(with(&|c| c.base_url = Some("https://dips/fhir?x=1".into())), "dips.base_url");
        assert_eq!(with(&|c| c.auth_header = "bad header".into()), "dips.auth_header");
        assert_eq!(with(&|c| c.auth_value = Some("line\nbreak".into())), "dips.auth_value");
        assert_eq!(with(&|c| c.poll_secs = 0.0), "dips.poll_secs");
        assert_eq!(with(&|c| c.retry_max_secs = 1.0), "dips.retry_max_secs");
        assert_eq!(with(&|c| c.window_days = 0), "dips.window_days");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let c = DipsConfig { retry_initial_secs: 2.0, retry_max_secs: 10.0, ..Default::default() };
        assert_eq!((c.backoff(0), c.backoff(2), c.backoff(9)), (2.0, 8.0, 10.0));
    }
}
