//! One configuration: built-in defaults, overridden by a TOML file (`--config`), then by
//! `DRSCREEN_*` environment variables and command-line flags (clap reads both, flags
//! winning). Every knob here is documented in `drscreen --help` and in README.md.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dicom::DicomConfig;
use crate::engine::EngineConfig;
use crate::model::{ExecutionProvider, RuntimeOptions};
use crate::preprocess::{DecodeLimits, QualityLimits};
use crate::http::HttpLimits;
use crate::service::ExamLimits;

/// Everything the core needs to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Model package directory (holds manifest.toml).
    pub model: PathBuf,
    pub runtime: RuntimeOptions,
    pub engine: EngineConfig,
    pub limits: DecodeLimits,
    pub quality: QualityLimits,
    /// Recall interval for a `rescreen` outcome, in months.
    pub recall_months: u32,
    /// HTTP listen address for `serve`.
    pub listen: String,
    /// Where the SQLite database and the image store live.
    pub data_dir: PathBuf,
    /// Seconds `serve` waits for admitted work to finish on shutdown.
    pub shutdown_drain_secs: u64,
    /// The clinician review pages and agreement monitor.
    pub review: ReviewConfig,
    /// The DICOM node (C-ECHO/C-STORE listener, study grading, SR push).
    pub dicom: DicomConfig,
    /// What one exam may hold.
    pub exams: ExamLimits,
    /// HTTP connection limits and timeouts.
    pub http: HttpLimits,
}

/// `[review]`: the clinician review pages.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReviewConfig {
    /// Share (0 to 1) of `rescreen` exams put on the worklist for quality assurance.
    pub qa_rescreen_share: f64,
    /// A review session ends after this many seconds without a request.
    pub session_idle_secs: u64,
    /// Mark the session cookie `Secure` (set when drscreen is served over HTTPS,
    /// e.g. behind the clinic's TLS proxy).
    pub secure_cookies: bool,
    /// The agreement monitor compares the model with the last N signed reviews.
    pub agreement_window: u32,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        Self { qa_rescreen_share: 0.1, session_idle_secs: 15 * 60, secure_cookies: false, agreement_window: 200 }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            model: default_model_dir(),
            runtime: RuntimeOptions::default(),
            engine: EngineConfig::default(),
            limits: DecodeLimits::default(),
            quality: QualityLimits::default(),
            recall_months: 12,
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("data"),
            shutdown_drain_secs: 30,
            review: ReviewConfig::default(),
            dicom: DicomConfig::default(),
            exams: ExamLimits::default(),
            http: HttpLimits::default(),
        }
    }
}

/// The bundled model: `models/dr-synth` under the working directory when present,
/// otherwise the copy in the source tree this binary was built from.
pub fn default_model_dir() -> PathBuf {
    let local = PathBuf::from("models/dr-synth");
    if local.join("manifest.toml").is_file() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/dr-synth")
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
}

impl Config {
    /// Defaults, overridden by the TOML file if given.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = file else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_path_buf(), reason: e.to_string() })
    }

    /// Applies provider overrides in one place so callers cannot forget one.
    pub fn with_provider(mut self, provider: Option<ExecutionProvider>) -> Self {
        if let Some(p) = provider {
            self.runtime.provider = p;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drscreen.toml");
        std::fs::write(&path, "listen = \"0.0.0.0:9000\"\n[engine]\nmax_batch = 4\n[quality]\nmin_focus = 0.1\n").unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000");
        assert_eq!(c.engine.max_batch, 4);
        assert_eq!(c.engine.queue_capacity, EngineConfig::default().queue_capacity);
        assert_eq!(c.quality.min_focus, 0.1);
        std::fs::write(&path, "[dicom]\nport = 0\nallowed_calling_aes = [\"CAM1\"]\n[dicom.sr_destination]\nhost = \"pacs\"\nport = 104\nae_title = \"PACS\"\n").unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!((c.dicom.port, c.dicom.ae_title.as_str()), (0, "DRSCREEN"));
        assert_eq!(c.dicom.sr_destination.unwrap().ae_title, "PACS");
        std::fs::write(&path, "[engine]\nmax_batc = 4\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("max_batc"), "{err}");
    }
}
