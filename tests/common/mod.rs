//! Shared test helpers: the committed model and fixtures, and one engine per test binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use drscreen::config::Config;
use drscreen::engine::Engine;
use drscreen::grading::GradingPolicy;
use drscreen::model::ModelPackage;
use drscreen::pipeline::Screener;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("fixtures").join(name)
}

pub fn model_dir() -> PathBuf {
    root().join("models/dr-synth")
}

pub fn package() -> &'static ModelPackage {
    static P: OnceLock<ModelPackage> = OnceLock::new();
    P.get_or_init(|| ModelPackage::load(&model_dir()).expect("committed model package loads"))
}

/// One engine for the whole test binary (ONNX Runtime allows one environment per process).
pub fn screener() -> &'static Screener {
    static S: OnceLock<Screener> = OnceLock::new();
    S.get_or_init(|| {
        let mut config = Config::default();
        // The CPU default runs one image at a time; the tests exercise dynamic batching.
        config.engine.max_batch = 8;
        let engine = Engine::start(package(), &config.runtime, config.limits, config.engine).expect("engine starts");
        let policy = GradingPolicy { thresholds: package().manifest.thresholds, quality: config.quality, recall_months: 12 };
        Screener::new(engine, policy)
    })
}

/// One row of fixtures/labels.csv.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Label {
    pub path: String,
    pub grade: u8,
    pub dme: u8,
    pub gradable: u8,
    pub laterality: String,
    pub exam_id: String,
}

pub fn labels() -> Vec<Label> {
    let mut r = csv::Reader::from_path(fixture("labels.csv")).expect("labels.csv");
    r.deserialize().map(|x| x.expect("label row")).collect()
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_drscreen"))
}

/// A real `drscreen serve` process on an ephemeral port with its own data directory.
pub struct Server {
    pub url: String,
    /// The DICOM listener's port (None when started with `--dicom-enabled false`).
    pub dicom_port: Option<u16>,
    pub data_dir: PathBuf,
    child: std::process::Child,
    _temp: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts a server on a fresh temporary data directory.
    pub fn start(extra_args: &[&str]) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        let mut s = Self::start_in(&dir, extra_args);
        s._temp = Some(temp);
        s
    }

    /// Starts a server on `data_dir` (kept after the server stops).
    pub fn start_in(data_dir: &Path, extra_args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(bin())
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--dicom-port", "0"])
            .args(extra_args)
            .arg("serve")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("server starts");
        let stdout = child.stdout.take().unwrap();
        let mut reader = std::io::BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("drscreen listening on ").unwrap_or_else(|| panic!("unexpected first line: {line}")).to_string();
        // Second line: "drscreen dicom listening on 127.0.0.1:PORT AE TITLE" or "drscreen dicom disabled".
        let mut second = String::new();
        reader.read_line(&mut second).unwrap();
        let dicom_port = second
            .trim()
            .strip_prefix("drscreen dicom listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.rsplit(':').next())
            .and_then(|p| p.parse().ok());
        Self { url, dicom_port, data_dir: data_dir.to_path_buf(), child, _temp: None }
    }

    /// Creates an API key with `role` in this server's data directory.
    pub fn key(&self, role: &str) -> String {
        let out = std::process::Command::new(bin())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["keys", "create", "--role", role])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().last().unwrap().trim().to_string()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking HTTP client for tests.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(120)).build().unwrap()
}
