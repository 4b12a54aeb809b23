//! The `drscreen` command line: the edge that turns files into core calls.
//! `grade` and `validate` run the full pipeline in-process; `model inspect` shows the
//! locked model. anyhow lives here only; the library returns typed errors.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use drscreen::config::Config;
use drscreen::model::ExecutionProvider;

/// Diabetic-retinopathy screening of fundus photographs with a locked ONNX model.
#[derive(Parser)]
#[command(name = "drscreen", version, about, long_about = None, args_override_self = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Settings shared by every command (defaults < --config file < DRSCREEN_* env < flags).
#[derive(Args, Clone)]
pub struct GlobalArgs {
    /// TOML configuration file (see README.md for every key).
    #[arg(long, global = true, env = "DRSCREEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Model package directory containing manifest.toml [default: models/dr-synth].
    #[arg(long, global = true, env = "DRSCREEN_MODEL")]
    pub model: Option<PathBuf>,
    /// Execution provider: cpu, or cuda/tensorrt in a `--features cuda` build.
    #[arg(long, global = true, env = "DRSCREEN_PROVIDER", value_enum)]
    pub provider: Option<ExecutionProvider>,
    /// Path to libonnxruntime.so (ORT_DYLIB_PATH also works) [default: the bundled copy].
    #[arg(long, global = true, env = "DRSCREEN_ORT_DYLIB")]
    pub ort_dylib: Option<PathBuf>,
    /// ONNX Runtime intra-op threads (0 = ORT's default) [default: 1].
    #[arg(long, global = true, env = "DRSCREEN_INTRA_THREADS")]
    pub intra_threads: Option<usize>,
    /// Largest inference batch; 1 is fastest on CPU, raise to 8-32 on a GPU [default: 1].
    #[arg(long, global = true, env = "DRSCREEN_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// Longest wait, in ms, for a batch to fill after its first image [default: 5].
    #[arg(long, global = true, env = "DRSCREEN_MAX_QUEUE_DELAY_MS")]
    pub max_queue_delay_ms: Option<u64>,
    /// Images admitted at once; beyond it requests are refused (503) [default: 64].
    #[arg(long, global = true, env = "DRSCREEN_QUEUE_CAPACITY")]
    pub queue_capacity: Option<usize>,
    /// Preprocessing threads (0 = one per core) [default: 0].
    #[arg(long, global = true, env = "DRSCREEN_PREPROCESS_THREADS")]
    pub preprocess_threads: Option<usize>,
    /// Largest accepted encoded image, bytes [default: 67108864].
    #[arg(long, global = true, env = "DRSCREEN_MAX_IMAGE_BYTES")]
    pub max_image_bytes: Option<usize>,
    /// Largest accepted image, width*height from the header [default: 50000000].
    #[arg(long, global = true, env = "DRSCREEN_MAX_IMAGE_PIXELS")]
    pub max_image_pixels: Option<u64>,
    /// Recall interval for a rescreen outcome, months [default: 12].
    #[arg(long, global = true, env = "DRSCREEN_RECALL_MONTHS")]
    pub recall_months: Option<u32>,
    /// HTTP listen address for serve [default: 127.0.0.1:8080].
    #[arg(long, global = true, env = "DRSCREEN_LISTEN")]
    pub listen: Option<String>,
    /// Data directory: SQLite database and image store [default: data].
    #[arg(long, global = true, env = "DRSCREEN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Share (0-1) of rescreen exams sampled onto the review worklist for QA [default: 0.1].
    #[arg(long, global = true, env = "DRSCREEN_QA_RESCREEN_SHARE")]
    pub qa_rescreen_share: Option<f64>,
    /// Review sessions end after this many idle seconds [default: 900].
    #[arg(long, global = true, env = "DRSCREEN_SESSION_IDLE_SECS")]
    pub session_idle_secs: Option<u64>,
    /// Mark the review session cookie Secure (when served over HTTPS) [default: false].
    #[arg(long, global = true, env = "DRSCREEN_SECURE_COOKIES")]
    pub secure_cookies: Option<bool>,
    /// Signed reviews the agreement monitor looks back over [default: 200].
    #[arg(long, global = true, env = "DRSCREEN_AGREEMENT_WINDOW")]
    pub agreement_window: Option<u32>,
    /// Start the DICOM listener with serve [default: true].
    #[arg(long, global = true, env = "DRSCREEN_DICOM_ENABLED")]
    pub dicom_enabled: Option<bool>,
    /// DICOM AE title of this node; other called titles are rejected [default: DRSCREEN].
    #[arg(long, global = true, env = "DRSCREEN_DICOM_AE_TITLE")]
    pub dicom_ae_title: Option<String>,
    /// Address the DICOM listener binds to [default: 127.0.0.1].
    #[arg(long, global = true, env = "DRSCREEN_DICOM_BIND")]
    pub dicom_bind: Option<String>,
    /// DICOM port; 0 picks a free one, printed on stdout [default: 11112].
    #[arg(long, global = true, env = "DRSCREEN_DICOM_PORT")]
    pub dicom_port: Option<u16>,
    /// Calling AE titles allowed to associate, comma-separated [default: any].
    #[arg(long, global = true, env = "DRSCREEN_DICOM_ALLOWED_CALLING_AES", value_delimiter = ',')]
    pub dicom_allowed_calling_aes: Option<Vec<String>>,
    /// Seconds a study must be quiet before it is graded [default: 30].
    #[arg(long, global = true, env = "DRSCREEN_DICOM_STUDY_STABLE_SECS")]
    pub dicom_study_stable_secs: Option<f64>,
    /// Largest DICOM PDU received, bytes [default: 65536].
    #[arg(long, global = true, env = "DRSCREEN_DICOM_MAX_PDU")]
    pub dicom_max_pdu: Option<u32>,
    /// DICOM associations served at once [default: 16].
    #[arg(long, global = true, env = "DRSCREEN_DICOM_MAX_ASSOCIATIONS")]
    pub dicom_max_associations: Option<usize>,
    /// PACS receiving each exam's SR by C-STORE, as AE@host:port [default: none].
    #[arg(long, global = true, env = "DRSCREEN_SR_DESTINATION")]
    pub sr_destination: Option<String>,
    /// First SR push retry delay, seconds; doubles per failure [default: 30].
    #[arg(long, global = true, env = "DRSCREEN_SR_RETRY_INITIAL_SECS")]
    pub sr_retry_initial_secs: Option<f64>,
    /// Longest SR push retry delay, seconds; pushes are never dropped [default: 3600].
    #[arg(long, global = true, env = "DRSCREEN_SR_RETRY_MAX_SECS")]
    pub sr_retry_max_secs: Option<f64>,
}

impl GlobalArgs {
    /// The effective configuration.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut c = Config::load(self.config.as_deref())?.with_provider(self.provider);
        if let Some(v) = &self.model {
            c.model = v.clone();
        }
        if let Some(v) = &self.ort_dylib {
            c.runtime.dylib = Some(v.clone());
        }
        if let Some(v) = self.intra_threads {
            c.runtime.intra_threads = v;
        }
        if let Some(v) = self.max_batch {
            c.engine.max_batch = v;
        }
        if let Some(v) = self.max_queue_delay_ms {
            c.engine.max_queue_delay_ms = v;
        }
        if let Some(v) = self.queue_capacity {
            c.engine.queue_capacity = v;
        }
        if let Some(v) = self.preprocess_threads {
            c.engine.preprocess_threads = v;
        }
        if let Some(v) = self.max_image_bytes {
            c.limits.max_bytes = v;
        }
        if let Some(v) = self.max_image_pixels {
            c.limits.max_pixels = v;
        }
        if let Some(v) = self.recall_months {
            c.recall_months = v;
        }
        if let Some(v) = &self.listen {
            c.listen = v.clone();
        }
        if let Some(v) = &self.data_dir {
            c.data_dir = v.clone();
        }
        if let Some(v) = self.qa_rescreen_share {
            anyhow::ensure!((0.0..=1.0).contains(&v), "--qa-rescreen-share must be between 0 and 1, got {v}");
            c.review.qa_rescreen_share = v;
        }
        if let Some(v) = self.session_idle_secs {
            c.review.session_idle_secs = v;
        }
        if let Some(v) = self.secure_cookies {
            c.review.secure_cookies = v;
        }
        if let Some(v) = self.agreement_window {
            c.review.agreement_window = v;
        }
        let d = &mut c.dicom;
        if let Some(v) = self.dicom_enabled {
            d.enabled = v;
        }
        if let Some(v) = &self.dicom_ae_title {
            d.ae_title = v.clone();
        }
        if let Some(v) = &self.dicom_bind {
            d.bind = v.clone();
        }
        if let Some(v) = self.dicom_port {
            d.port = v;
        }
        if let Some(v) = &self.dicom_allowed_calling_aes {
            d.allowed_calling_aes = v.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        }
        if let Some(v) = self.dicom_study_stable_secs {
            d.study_stable_secs = v;
        }
        if let Some(v) = self.dicom_max_pdu {
            d.max_pdu = v;
        }
        if let Some(v) = self.dicom_max_associations {
            d.max_associations = v;
        }
        if let Some(v) = &self.sr_destination {
            d.sr_destination = Some(drscreen::dicom::SrDestination::parse(v).map_err(anyhow::Error::msg)?);
        }
        if let Some(v) = self.sr_retry_initial_secs {
            d.sr_retry_initial_secs = v;
        }
        if let Some(v) = self.sr_retry_max_secs {
            d.sr_retry_max_secs = v;
        }
        Ok(c)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Grade fundus images (files or folders) and print one result per exam.
    Grade(cli::grade::GradeArgs),
    /// Acceptance test against a labels CSV: kappa, AUC, sensitivity/specificity, plots.
    Validate(cli::validate::ValidateArgs),
    /// Inspect model packages.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Run the HTTP service (binds after the model is verified and warm).
    Serve,
    /// Manage API keys.
    #[command(subcommand)]
    Keys(cli::keys::KeysCommand),
    /// Load-generate against a running drscreen and report throughput and latency.
    Loadtest(cli::loadtest::LoadtestArgs),
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Show a package's manifest, inputs/outputs, provider and integrity.
    Inspect {
        /// Package directory [default: the configured model].
        package: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| "info".into()),
        ))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Grade(args) => cli::grade::run(&cli.global, args),
        Command::Validate(args) => cli::validate::run(&cli.global, args),
        Command::Model(ModelCommand::Inspect { package }) => cli::inspect::run(&cli.global, package),
        Command::Serve => cli::serve::run(&cli.global),
        Command::Keys(cmd) => cli::keys::run(&cli.global, cmd),
        Command::Loadtest(args) => cli::loadtest::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("drscreen: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
