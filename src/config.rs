//! One configuration, built in one place. Layers, lowest first: `Config::default()` (every
//! default is written there and nowhere else), a TOML file (`--config`), then overrides
//! given as `DRSCREEN_*` environment variables or command-line flags. [`knobs`] declares
//! each overridable setting once: its TOML key, its flag (the variable is derived from
//! it), its help line, and how a text value is parsed onto a `Config`; the CLI builds its
//! flags and `--help` (defaults included) from that table. [`Config::validate`] runs on
//! the merged result, so a value is checked whatever layer it came from.
//! This module knows nothing of clap: library types stay free of CLI concerns.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::dicom::{DicomConfig, SrDestination};
use crate::dips::DipsConfig;
use crate::engine::EngineConfig;
use crate::http::HttpLimits;
use crate::model::{ExecutionProvider, RuntimeOptions};
use crate::preprocess::{DecodeLimits, QualityLimits};
use crate::service::ExamLimits;
use crate::store::{DatabaseUrl, ObjectStoreUrl};
// `[review]` belongs to the review rules; re-exported so the table reads in one place.
pub use crate::review::ReviewConfig;

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
    /// The database: `None` is SQLite in `data_dir` (one machine); PostgreSQL for replicas.
    pub database_url: Option<DatabaseUrl>,
    /// The image store: `None` is `data_dir/images`; S3 for replicas.
    pub object_store_url: Option<ObjectStoreUrl>,
    /// Seconds `serve` waits for admitted work to finish on shutdown.
    pub shutdown_drain_secs: u64,
    /// The clinician review pages and agreement monitor.
    pub review: ReviewConfig,
    /// The DICOM node (C-ECHO/C-STORE listener, study grading, SR push).
    pub dicom: DicomConfig,
    /// The EHR integration (DIPS `$append-retina-ai-result`).
    pub dips: DipsConfig,
    /// What one exam may hold.
    pub exams: ExamLimits,
    /// HTTP connection limits and timeouts.
    pub http: HttpLimits,
}

impl Config {
    /// The database this configuration names (SQLite in the data directory by default).
    pub fn database(&self) -> DatabaseUrl {
        self.database_url.clone().unwrap_or_else(|| DatabaseUrl::Sqlite(self.data_dir.join("drscreen.sqlite3")))
    }

    /// The image store this configuration names (`data_dir/images` by default).
    pub fn objects(&self) -> ObjectStoreUrl {
        self.object_store_url.clone().unwrap_or_else(|| ObjectStoreUrl::File(self.data_dir.join("images")))
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
            database_url: None,
            object_store_url: None,
            shutdown_drain_secs: 30,
            review: ReviewConfig::default(),
            dicom: DicomConfig::default(),
            dips: DipsConfig::default(),
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
    /// A flag or environment value that does not parse as its knob's type.
    #[error("invalid value '{value}' for {key}: {reason}")]
    Value { key: &'static str, value: String, reason: String },
    /// A merged value out of its range; `key` is the TOML key, whatever layer set it.
    #[error("{key} {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl Config {
    /// Defaults, overridden by the TOML file if given. Not validated: flags and the
    /// environment may still override a value, so [`Config::validate`] runs on the result.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = file else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_path_buf(), reason: e.to_string() })
    }

    /// Refuses values the service cannot run with, naming the first one by its TOML key.
    /// Runs on the merged configuration, so the file, the environment and flags are held
    /// to the same rules (a negative or NaN number of seconds would panic in `Duration`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (e, l, q, r, d) = (&self.engine, &self.limits, &self.quality, &self.review, &self.dicom);
        positive("engine.max_batch", e.max_batch as u64)?;
        positive("engine.queue_capacity", e.queue_capacity as u64)?;
        positive("limits.max_bytes", l.max_bytes as u64)?;
        positive("limits.max_pixels", l.max_pixels)?;
        positive("recall_months", self.recall_months.into())?;
        for (key, v) in [
            ("quality.min_fov_coverage", q.min_fov_coverage),
            ("quality.warn_fov_coverage", q.warn_fov_coverage),
            ("quality.max_clipped_fraction", q.max_clipped_fraction),
        ] {
            within(key, v.into(), 0.0, 1.0)?;
        }
        for (key, v) in [
            ("quality.min_brightness", q.min_brightness),
            ("quality.max_brightness", q.max_brightness),
            ("quality.warn_min_brightness", q.warn_min_brightness),
            ("quality.warn_max_brightness", q.warn_max_brightness),
        ] {
            within(key, v.into(), 0.0, 255.0)?;
        }
        for (key, v) in [
            ("quality.min_contrast", q.min_contrast),
            ("quality.min_focus", q.min_focus),
            ("quality.warn_contrast", q.warn_contrast),
            ("quality.warn_focus", q.warn_focus),
        ] {
            within(key, v.into(), 0.0, f64::MAX)?;
        }
        ensure(q.min_brightness <= q.max_brightness, "quality.max_brightness", || {
            format!("must not be below quality.min_brightness ({}), got {}", q.min_brightness, q.max_brightness)
        })?;
        within("review.qa_rescreen_share", r.qa_rescreen_share, 0.0, 1.0)?;
        positive("review.session_idle_secs", r.session_idle_secs)?;
        positive("review.agreement_window", r.agreement_window.into())?;
        ae_title("dicom.ae_title", &d.ae_title)?;
        for ae in &d.allowed_calling_aes {
            ae_title("dicom.allowed_calling_aes", ae)?;
        }
        within("dicom.study_stable_secs", d.study_stable_secs, 0.0, f64::MAX)?;
        // dicom-ul cannot negotiate a PDU below the standard's minimum.
        within("dicom.max_pdu", d.max_pdu.into(), dicom_ul::pdu::MINIMUM_PDU_SIZE.into(), dicom_ul::pdu::MAXIMUM_PDU_SIZE.into())?;
        positive("dicom.max_associations", d.max_associations as u64)?;
        positive("dicom.max_connections_per_host", d.max_connections_per_host as u64)?;
        positive("dicom.max_associations_per_ae", d.max_associations_per_ae as u64)?;
        positive("dicom.artim_timeout_secs", d.artim_timeout_secs)?;
        positive("exams.max_images_per_exam", self.exams.max_images_per_exam as u64)?;
        positive("exams.max_reference_chars", self.exams.max_reference_chars as u64)?;
        positive("exams.max_instances_per_request", self.exams.max_instances_per_request as u64)?;
        positive("http.max_connections", self.http.max_connections as u64)?;
        positive("http.header_read_secs", self.http.header_read_secs)?;
        positive("http.body_idle_secs", self.http.body_idle_secs)?;
        if let Some(dest) = &d.sr_destination {
            ae_title("dicom.sr_destination.ae_title", &dest.ae_title)?;
            ensure(!dest.host.trim().is_empty(), "dicom.sr_destination.host", || "must not be empty".into())?;
            positive("dicom.sr_destination.port", dest.port.into())?;
        }
        // Zero would retry a failing PACS in a busy loop.
        ensure(d.sr_retry_initial_secs.is_finite() && d.sr_retry_initial_secs > 0.0, "dicom.sr_retry_initial_secs", || {
            format!("must be a number of seconds above 0, got {}", d.sr_retry_initial_secs)
        })?;
        ensure(d.sr_retry_max_secs.is_finite() && d.sr_retry_max_secs >= d.sr_retry_initial_secs, "dicom.sr_retry_max_secs", || {
            format!(
                "must be a number of seconds no less than dicom.sr_retry_initial_secs ({}), got {}",
                d.sr_retry_initial_secs, d.sr_retry_max_secs
            )
        })?;
        self.dips.check().map_err(|(key, reason)| ConfigError::Invalid { key, reason })
    }
}

fn ensure(ok: bool, key: &'static str, reason: impl FnOnce() -> String) -> Result<(), ConfigError> {
    if ok { Ok(()) } else { Err(ConfigError::Invalid { key, reason: reason() }) }
}

fn positive(key: &'static str, value: u64) -> Result<(), ConfigError> {
    ensure(value >= 1, key, || "must be at least 1, got 0".into())
}

/// `lo..=hi`, which also refuses NaN.
fn within(key: &'static str, value: f64, lo: f64, hi: f64) -> Result<(), ConfigError> {
    ensure((lo..=hi).contains(&value), key, || {
        if hi == f64::MAX {
            format!("must be a number no less than {lo}, got {value}")
        } else {
            format!("must be between {lo} and {hi}, got {value}")
        }
    })
}

/// DICOM AE titles (PS3.5 AE value representation): 1-16 characters, not all spaces,
/// no backslash or control characters.
fn ae_title(key: &'static str, value: &str) -> Result<(), ConfigError> {
    let ok = !value.trim().is_empty() && value.len() <= 16 && !value.chars().any(|c| c == '\\' || c.is_control());
    ensure(ok, key, || format!("must be a DICOM AE title (1-16 characters, no backslash), got '{value}'"))
}

/// One setting that can also be given as a flag and a `DRSCREEN_*` environment variable.
pub struct Knob {
    /// The dotted TOML key, which is also the field path in [`Config`].
    pub key: &'static str,
    /// The long flag without its dashes; the variable is derived from it ([`Knob::env`]).
    pub flag: &'static str,
    /// One line for `--help`; the default is appended from `Config::default()`.
    pub help: &'static str,
    /// What an empty default means (an unset path, an empty list), for `--help`.
    pub unset: &'static str,
    /// The accepted values when the type is an enumeration (empty: any text that parses).
    pub choices: &'static [&'static str],
    /// A comma-separated list; the flag may be repeated.
    pub list: bool,
    set: KnobSetter,
    get: KnobGetter,
}

/// Parses flag text into the knob's field.
type KnobSetter = Box<dyn Fn(&mut Config, &str) -> Result<(), String> + Send + Sync>;
/// The knob's field as flag text, `None` when empty or absent.
type KnobGetter = Box<dyn Fn(&Config) -> Option<String> + Send + Sync>;

impl Knob {
    /// `DRSCREEN_` and the flag in upper snake case: `--max-batch` is `DRSCREEN_MAX_BATCH`.
    pub fn env(&self) -> String {
        format!("DRSCREEN_{}", self.flag.to_uppercase().replace('-', "_"))
    }

    /// Parses `value` as this knob's type and stores it in `config` (no range checks:
    /// those are [`Config::validate`]'s, after every layer is applied).
    pub fn apply(&self, config: &mut Config, value: &str) -> Result<(), ConfigError> {
        (self.set)(config, value).map_err(|reason| ConfigError::Value { key: self.key, value: value.into(), reason })
    }

    /// Whether `text` parses as this knob's type, with the parser's reason if not.
    pub fn check(&self, text: &str) -> Result<(), String> {
        (self.set)(&mut Config::default(), text)
    }

    /// This knob's value in `config` as a flag would spell it, or [`Knob::unset`].
    pub fn show(&self, config: &Config) -> String {
        (self.get)(config).unwrap_or_else(|| self.unset.to_string())
    }
}

/// How a knob's type reads from and writes to flag text.
trait KnobValue: Sized {
    const CHOICES: &'static [&'static str] = &[];
    const LIST: bool = false;
    fn parse_knob(text: &str) -> Result<Self, String>;
    /// `None` when the value is empty or absent.
    fn show_knob(&self) -> Option<String>;
}

macro_rules! knob_value_from_str {
    ($($t:ty),*) => {$(
        impl KnobValue for $t {
            fn parse_knob(text: &str) -> Result<Self, String> {
                text.parse().map_err(|e: <$t as std::str::FromStr>::Err| e.to_string())
            }
            fn show_knob(&self) -> Option<String> {
                Some(self.to_string())
            }
        }
    )*};
}
knob_value_from_str!(u16, u32, u64, usize, f64, String);

impl KnobValue for bool {
    const CHOICES: &'static [&'static str] = &["true", "false"];
    fn parse_knob(text: &str) -> Result<Self, String> {
        text.parse().map_err(|_| format!("expected true or false, got '{text}'"))
    }
    fn show_knob(&self) -> Option<String> {
        Some(self.to_string())
    }
}

impl KnobValue for PathBuf {
    fn parse_knob(text: &str) -> Result<Self, String> {
        Ok(text.into())
    }
    fn show_knob(&self) -> Option<String> {
        Some(self.display().to_string())
    }
}

impl KnobValue for Option<PathBuf> {
    fn parse_knob(text: &str) -> Result<Self, String> {
        Ok(Some(text.into()))
    }
    fn show_knob(&self) -> Option<String> {
        self.as_ref().map(|p| p.display().to_string())
    }
}

impl KnobValue for ExecutionProvider {
    const CHOICES: &'static [&'static str] = &[Self::Cpu.as_str(), Self::Cuda.as_str(), Self::Tensorrt.as_str()];
    fn parse_knob(text: &str) -> Result<Self, String> {
        text.parse()
    }
    fn show_knob(&self) -> Option<String> {
        Some(self.as_str().into())
    }
}

/// Comma-separated; blanks around and between items are dropped.
impl KnobValue for Vec<String> {
    const LIST: bool = true;
    fn parse_knob(text: &str) -> Result<Self, String> {
        Ok(text.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
    }
    fn show_knob(&self) -> Option<String> {
        (!self.is_empty()).then(|| self.join(","))
    }
}

impl KnobValue for Option<String> {
    fn parse_knob(text: &str) -> Result<Self, String> {
        Ok((!text.is_empty()).then(|| text.to_string()))
    }
    fn show_knob(&self) -> Option<String> {
        self.clone()
    }
}

impl KnobValue for Option<ObjectStoreUrl> {
    fn parse_knob(text: &str) -> Result<Self, String> {
        text.parse().map(Some).map_err(|e: crate::store::BlobError| e.to_string())
    }
    fn show_knob(&self) -> Option<String> {
        self.as_ref().map(ToString::to_string)
    }
}

impl KnobValue for Option<DatabaseUrl> {
    fn parse_knob(text: &str) -> Result<Self, String> {
        text.parse().map(Some)
    }
    fn show_knob(&self) -> Option<String> {
        self.as_ref().map(ToString::to_string)
    }
}

/// `AE@host:port`, as `--sr-destination` takes it.
impl KnobValue for Option<SrDestination> {
    fn parse_knob(text: &str) -> Result<Self, String> {
        SrDestination::parse(text).map(Some)
    }
    fn show_knob(&self) -> Option<String> {
        self.as_ref().map(|d| format!("{}@{}", d.ae_title, d.address()))
    }
}

fn knob<T: KnobValue + 'static>(
    key: &'static str,
    flag: &'static str,
    help: &'static str,
    unset: &'static str,
    get: fn(&Config) -> &T,
    set: fn(&mut Config) -> &mut T,
) -> Knob {
    Knob {
        key,
        flag,
        help,
        unset,
        choices: T::CHOICES,
        list: T::LIST,
        set: Box::new(move |c, text| {
            *set(c) = T::parse_knob(text)?;
            Ok(())
        }),
        get: Box::new(move |c| get(c).show_knob()),
    }
}

/// Declares each knob once: `"flag" => field.path [, unset "meaning"]: "help";`. The
/// field path is the TOML key, so the two cannot drift apart.
macro_rules! knobs {
    ($($flag:literal => $first:ident $(. $rest:ident)* $(, unset $unset:literal)? : $help:literal;)*) => {
        vec![$(knob(
            concat!(stringify!($first) $(, ".", stringify!($rest))*),
            $flag,
            $help,
            knobs!(@unset $($unset)?),
            |c| &c.$first $(.$rest)*,
            |c| &mut c.$first $(.$rest)*,
        )),*]
    };
    (@unset) => { "none" };
    (@unset $unset:literal) => { $unset };
}

static KNOBS: LazyLock<Vec<Knob>> = LazyLock::new(|| {
    knobs! {
        "model" => model: "Model package directory containing manifest.toml";
        "provider" => runtime.provider: "Execution provider: cpu, or cuda/tensorrt in a `--features cuda` build";
        "ort-dylib" => runtime.dylib, unset "the bundled copy": "Path to libonnxruntime.so (ORT_DYLIB_PATH also works)";
        "intra-threads" => runtime.intra_threads: "ONNX Runtime intra-op threads (0 = ORT's default)";
        "max-batch" => engine.max_batch: "Largest inference batch; 1 is fastest on CPU, raise to 8-32 on a GPU";
        "max-queue-delay-ms" => engine.max_queue_delay_ms: "Longest wait, in ms, for a batch to fill after its first image";
        "queue-capacity" => engine.queue_capacity: "Images admitted at once; beyond it requests are refused (503)";
        "preprocess-threads" => engine.preprocess_threads: "Preprocessing threads (0 = one per core)";
        "max-image-bytes" => limits.max_bytes: "Largest accepted encoded image, bytes";
        "max-image-pixels" => limits.max_pixels: "Largest accepted image, width*height from the header";
        "recall-months" => recall_months: "Recall interval for a rescreen outcome, months";
        "listen" => listen: "HTTP listen address for serve";
        "data-dir" => data_dir: "Data directory: SQLite database and image store";
        "database-url" => database_url, unset "sqlite://DATA_DIR/drscreen.sqlite3": "Database: sqlite://PATH (one machine) or postgres://user:password@host:port/db (replicas; pool of 16, 5 s connect and checkout timeouts, 30 s statement timeout)";
        "object-store-url" => object_store_url, unset "file://DATA_DIR/images": "Image store: file://DIR or s3://BUCKET/PREFIX (endpoint, region, keys from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; http allowed for an http endpoint)";
        "qa-rescreen-share" => review.qa_rescreen_share: "Share (0-1) of rescreen exams sampled onto the review worklist for QA";
        "session-idle-secs" => review.session_idle_secs: "Review sessions end after this many idle seconds";
        "secure-cookies" => review.secure_cookies: "Mark the review session cookie Secure (when served over HTTPS)";
        "agreement-window" => review.agreement_window: "Signed reviews the agreement monitor looks back over";
        "dicom-enabled" => dicom.enabled: "Start the DICOM listener with serve";
        "dicom-ae-title" => dicom.ae_title: "DICOM AE title of this node; other called titles are rejected";
        "dicom-bind" => dicom.bind: "Address the DICOM listener binds to";
        "dicom-port" => dicom.port: "DICOM port; 0 picks a free one, printed on stdout";
        "dicom-allowed-calling-aes" => dicom.allowed_calling_aes, unset "any": "Calling AE titles allowed to associate, comma-separated";
        "dicom-study-stable-secs" => dicom.study_stable_secs: "Seconds a study must be quiet before it is graded";
        "dicom-max-pdu" => dicom.max_pdu: "Largest DICOM PDU received, bytes";
        "dicom-max-associations" => dicom.max_associations: "DICOM associations served at once";
        "sr-destination" => dicom.sr_destination: "PACS receiving each exam's SR by C-STORE, as AE@host:port";
        "sr-retry-initial-secs" => dicom.sr_retry_initial_secs: "First SR push retry delay, seconds; doubles per failure";
        "sr-retry-max-secs" => dicom.sr_retry_max_secs: "Longest SR push retry delay, seconds; pushes are never dropped";
        "dicom-max-connections-per-host" => dicom.max_connections_per_host: "DICOM connections from one host at once";
        "dicom-max-associations-per-ae" => dicom.max_associations_per_ae: "DICOM associations per calling AE title at once";
        "dicom-artim-timeout-secs" => dicom.artim_timeout_secs: "Seconds a new DICOM connection may take to send its A-ASSOCIATE-RQ";
        "dips-base-url" => dips.base_url, unset "off": "DIPS RetinaIntegration FHIR base URL; set to poll $retina-by-date and deliver $append-retina-ai-result";
        "dips-auth-header" => dips.auth_header: "Header carrying the DIPS credential";
        "dips-auth-value" => dips.auth_value, unset "none": "Value of the DIPS credential header, e.g. 'Bearer <token>' (prefer the DRSCREEN_DIPS_AUTH_VALUE variable)";
        "dips-poll-secs" => dips.poll_secs: "Seconds between polls of DIPS for examinations waiting for an AI result";
        "dips-window-days" => dips.window_days: "Days back from today the pending-examination search covers (it ends tomorrow)";
        "dips-validation" => dips.validation: "Send results with validation=true (DIPS grades every examination manually); keep until the model is cleared";
        "dips-timeout-secs" => dips.timeout_secs: "Seconds one request to DIPS may take";
        "dips-retry-initial-secs" => dips.retry_initial_secs: "First DIPS delivery retry delay, seconds; doubles per failure";
        "dips-retry-max-secs" => dips.retry_max_secs: "Longest DIPS delivery retry delay, seconds; deliveries are never dropped";
        "max-images-per-exam" => exams.max_images_per_exam: "Images in one exam (HTTP upload or DICOM study)";
        "max-reference-chars" => exams.max_reference_chars: "Characters in external_exam_ref, patient_ref and view names";
        "max-instances-per-request" => exams.max_instances_per_request: "DICOM instances in one STOW-RS request";
        "http-max-connections" => http.max_connections: "Open HTTP connections at once; beyond it new connections are closed";
        "http-header-read-secs" => http.header_read_secs: "Seconds a client may take to send request headers (also the keep-alive idle time)";
        "http-body-idle-secs" => http.body_idle_secs: "Seconds a request body may stall before the request ends (408)";
        "http-min-body-bytes-per-sec" => http.min_body_bytes_per_sec: "Slowest average upload, bytes/s, after the first body_idle_secs (408 body_too_slow); 0 = off";
    }
});

/// Every setting that has a flag and an environment variable, in `--help` order. The
/// rest (`quality.*`, `shutdown_drain_secs`, `dicom.idle_timeout_secs`) are file-only.
pub fn knobs() -> &'static [Knob] {
    &KNOBS
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

    #[test]
    fn every_knob_key_is_a_toml_key_and_its_default_round_trips() {
        let defaults = Config::default();
        let mut with_options = Config::default();
        with_options.runtime.dylib = Some("lib.so".into());
        with_options.dicom.sr_destination = SrDestination::parse("PACS@pacs:104").ok();
        with_options.database_url = "postgres://drs@db:5432/drscreen".parse().ok();
        with_options.object_store_url = "s3://bucket/prefix".parse().ok();
        with_options.dips.base_url = Some("https://dips.example/fhir".into());
        with_options.dips.auth_value = Some("Bearer secret".into());
        let table = toml::Value::try_from(&with_options).unwrap();
        let mut flags = std::collections::HashSet::new();
        for knob in knobs() {
            assert!(flags.insert(knob.flag), "--{} declared twice", knob.flag);
            let found = knob.key.split('.').try_fold(&table, |v, part| v.get(part));
            assert!(found.is_some(), "{} is not a config file key", knob.key);
            let mut c = Config::default();
            if let Some(text) = (knob.get)(&defaults) {
                knob.apply(&mut c, &text).unwrap();
                assert_eq!(knob.show(&c), text, "{}", knob.key);
            }
            knob.apply(&mut c, &knob.show(&with_options)).unwrap();
            assert_eq!(knob.show(&c), knob.show(&with_options), "{}", knob.key);
        }
        let max_batch = knobs().iter().find(|k| k.key == "engine.max_batch").unwrap();
        assert_eq!((max_batch.flag, max_batch.env().as_str()), ("max-batch", "DRSCREEN_MAX_BATCH"));
    }

    #[test]
    fn validate_applies_to_every_layer() {
        Config::default().validate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drscreen.toml");
        std::fs::write(&path, "[review]\nqa_rescreen_share = 1.01\n").unwrap();
        let err = Config::load(Some(&path)).unwrap().validate().unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { key: "review.qa_rescreen_share", .. }), "{err}");
        let knob = |flag: &str| knobs().iter().find(|k| k.flag == flag).unwrap();
        let refused = |flag: &str, value: &str| {
            let mut c = Config::default();
            knob(flag).apply(&mut c, value).unwrap();
            c.validate().unwrap_err().to_string()
        };
        assert!(refused("qa-rescreen-share", "NaN").contains("between 0 and 1"));
        assert!(refused("queue-capacity", "0").contains("engine.queue_capacity must be at least 1"));
        assert!(refused("max-batch", "0").contains("engine.max_batch"));
        assert!(refused("dicom-study-stable-secs", "-1").contains("dicom.study_stable_secs"));
        assert!(refused("sr-retry-initial-secs", "0").contains("dicom.sr_retry_initial_secs"));
        assert!(refused("sr-retry-max-secs", "1").contains("no less than dicom.sr_retry_initial_secs (30)"));
        assert!(refused("dicom-ae-title", "WAY_TOO_LONG_AE_TITLE").contains("dicom.ae_title"));
        assert!(refused("dicom-max-pdu", "100").contains("dicom.max_pdu"));
        // Type errors are the knob's, before any range check.
        let err = knob("max-batch").apply(&mut Config::default(), "many").unwrap_err().to_string();
        assert_eq!(err, "invalid value 'many' for engine.max_batch: invalid digit found in string");
        assert!(knob("provider").apply(&mut Config::default(), "gpu").is_err());
    }
}
