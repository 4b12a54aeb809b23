//! The DICOM network edge: a C-ECHO/C-STORE service class provider (`scp`), the loop
//! that has the service grade quiet studies (`study`), and the C-STORE push of each
//! exam's SR from the durable outbox (`sender`). What a DICOM object means (objects to
//! images, the SR) lives in `interop`; ingest and grading are service calls shared with
//! STOW-RS. Association handling runs on plain threads or tokio's blocking pool, never on
//! the async workers. Patient identifiers are stored, never logged.

pub mod scp;
pub mod sender;
pub mod study;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::service::{ScreeningService, ServiceError};

/// Where finished SR documents are pushed by C-STORE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SrDestination {
    pub host: String,
    pub port: u16,
    pub ae_title: String,
}

impl SrDestination {
    /// Parses `AE@host:port`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (ae, addr) = text.split_once('@').ok_or_else(|| format!("'{text}': expected AE@host:port"))?;
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| format!("'{text}': expected AE@host:port"))?;
        let port = port.parse().map_err(|_| format!("'{text}': bad port"))?;
        if ae.is_empty() || ae.len() > 16 || host.is_empty() {
            return Err(format!("'{text}': the AE title must be 1-16 characters and the host non-empty"));
        }
        Ok(Self { host: host.into(), port, ae_title: ae.into() })
    }

    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The `[dicom]` configuration section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DicomConfig {
    /// Start the DICOM listener with `serve`.
    pub enabled: bool,
    /// This node's AE title; associations calling another title are rejected.
    pub ae_title: String,
    /// Address the listener binds to.
    pub bind: String,
    /// TCP port (0 = ephemeral, reported on stdout).
    pub port: u16,
    /// Calling AE titles allowed to associate (empty = any).
    pub allowed_calling_aes: Vec<String>,
    /// Seconds a study must be quiet (no new instance) before it is graded.
    pub study_stable_secs: f64,
    /// Largest PDU this node receives, bytes.
    pub max_pdu: u32,
    /// Associations served at once; beyond it new connections are closed.
    pub max_associations: usize,
    /// Connections from one host at once (of `max_associations`), so one peer cannot
    /// take every slot.
    pub max_connections_per_host: usize,
    /// Associations per calling AE title at once; more are rejected (A-ASSOCIATE-RJ).
    pub max_associations_per_ae: usize,
    /// Seconds a new connection may take to send its A-ASSOCIATE-RQ (the ARTIM timer).
    pub artim_timeout_secs: u64,
    /// Seconds an association may stay silent before it is dropped.
    pub idle_timeout_secs: u64,
    /// PACS that receives each exam's SR by C-STORE (none = SRs are only served over HTTP).
    pub sr_destination: Option<SrDestination>,
    /// First retry delay after a failed SR push, seconds (doubles each failure).
    pub sr_retry_initial_secs: f64,
    /// Longest retry delay, seconds. Pushes are retried forever and never dropped.
    pub sr_retry_max_secs: f64,
}

impl Default for DicomConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ae_title: "DRSCREEN".into(),
            bind: "127.0.0.1".into(),
            port: 11112,
            allowed_calling_aes: Vec::new(),
            study_stable_secs: 30.0,
            max_pdu: 65536,
            max_associations: 16,
            max_connections_per_host: 8,
            max_associations_per_ae: 8,
            artim_timeout_secs: 10,
            idle_timeout_secs: 60,
            sr_destination: None,
            sr_retry_initial_secs: 30.0,
            sr_retry_max_secs: 3600.0,
        }
    }
}

/// Binds the listener and starts the association thread, the study grader and the SR
/// sender (the last two on `runtime`). Returns the bound address (port 0 = ephemeral).
pub fn start(config: &DicomConfig, service: Arc<ScreeningService>, runtime: &tokio::runtime::Handle) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind((config.bind.as_str(), config.port))?;
    let addr = listener.local_addr()?;
    scp::spawn(listener, scp::Scp::new(config.clone(), service.clone()))?;
    runtime.spawn(study::run_grader(service.clone(), config.clone()));
    runtime.spawn(sender::run_sender(service, config.clone()));
    Ok(addr)
}

/// Runs `pass` every `period` until the process ends. A failed pass is logged (its error
/// carries no patient data) and the next one runs as usual: background work is retried,
/// never abandoned.
pub(crate) async fn poll_forever<F, Fut>(what: &'static str, period: Duration, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), ServiceError>>,
{
    loop {
        tokio::time::sleep(period).await;
        if let Err(e) = pass().await {
            tracing::error!(task = what, error = %e, "background pass failed; retrying on the next poll");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_parses() {
        let d = SrDestination::parse("PACS@127.0.0.1:4242").unwrap();
        assert_eq!((d.ae_title.as_str(), d.host.as_str(), d.port), ("PACS", "127.0.0.1", 4242));
        assert!(SrDestination::parse("nohost").is_err());
    }
}
