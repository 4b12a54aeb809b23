//! Shared test helpers: the committed model and fixtures, one engine per test binary,
//! the two ways to reach the HTTP API (an in-process [`App`] driven through the axum
//! `Router` with `oneshot`, and a real [`Server`] process), and the one way every test
//! uploads an exam ([`upload_exam`]) or grades an image ([`grade`]) over either.

#![allow(dead_code)]

pub mod backend;
pub mod balancer;
pub mod browser;
pub mod dcmtk;
pub mod dips;
pub mod mutate;
pub mod orthanc;
pub mod pages;
pub mod pg;
pub mod s3;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use drscreen::http::AppState;
use drscreen::service::ScreeningService;
use drscreen::store::Role;

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
    /// The database and object store behind it (SQLite + files unless the suite runs on
    /// the cluster backend).
    pub target: backend::StoreTarget,
    child: std::process::Child,
    client: OnceLock<reqwest::blocking::Client>,
    _temp: Option<tempfile::TempDir>,
}

impl Server {
    /// The shared client (created on first use).
    fn client(&self) -> &reqwest::blocking::Client {
        self.client.get_or_init(http)
    }

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
        Self::start_on(data_dir, backend::StoreTarget::for_data_dir(data_dir), extra_args)
    }

    /// Starts a server on `data_dir` with its data in `target` (replicas share one).
    pub fn start_on(data_dir: &Path, target: backend::StoreTarget, extra_args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut command = std::process::Command::new(bin());
        target.apply(&mut command);
        let mut child = command
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
        Self { url, dicom_port, data_dir: data_dir.to_path_buf(), target, child, client: OnceLock::new(), _temp: None }
    }

    /// Creates an API key with `role` in this server's data directory.
    pub fn key(&self, role: &str) -> String {
        let mut command = std::process::Command::new(bin());
        self.target.apply(&mut command);
        let out = command.arg("--data-dir").arg(&self.data_dir).args(["keys", "create", "--role", role]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().last().unwrap().trim().to_string()
    }

    /// A `drscreen` command on this server's store (its data directory, database and
    /// object store); add the subcommand.
    pub fn cli(&self) -> std::process::Command {
        let mut command = std::process::Command::new(bin());
        self.target.apply(&mut command);
        command.arg("--data-dir").arg(&self.data_dir);
        command
    }

    /// Rows of a query against this server's database, each column as text.
    pub fn query(&self, sql: &str) -> Vec<Vec<String>> {
        self.target.query(&self.data_dir, sql)
    }

    /// Runs a statement against this server's database; its error text when refused.
    pub fn try_sql(&self, sql: &str) -> Result<Vec<Vec<String>>, String> {
        self.target.try_sql(&self.data_dir, sql)
    }

    /// The process id (for kill -9 scenarios).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process at once (SIGKILL) and reaps it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// A response from either transport: status, headers and the whole body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (panics with the status and body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} body is not JSON ({e}): {}", self.status, String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Something that answers HTTP requests: the in-process [`App`] or a real [`Server`].
pub trait Api {
    /// Sends `request` (its URI is a path and query) and reads the whole response.
    fn send(&self, request: Request<Vec<u8>>) -> Reply;
    /// Creates an API key with `role` ("device", "clinician", "admin").
    fn key(&self, role: &str) -> String;
}

impl Api for Server {
    fn send(&self, request: Request<Vec<u8>>) -> Reply {
        let (parts, body) = request.into_parts();
        let response = self
            .client()
            .request(parts.method, format!("{}{}", self.url, parts.uri))
            .headers(parts.headers)
            .body(body)
            .send()
            .unwrap_or_else(|e| panic!("{}: {e}", parts.uri));
        let (status, headers) = (response.status(), response.headers().clone());
        Reply { status, headers, body: response.bytes().unwrap().to_vec() }
    }

    fn key(&self, role: &str) -> String {
        Server::key(self, role)
    }
}

/// A request to `path`, with `Authorization: Bearer <key>` when a key is given.
pub fn request(method: Method, path: &str, key: Option<&str>) -> axum::http::request::Builder {
    let builder = Request::builder().method(method).uri(path);
    match key {
        Some(k) => builder.header(header::AUTHORIZATION, format!("Bearer {k}")),
        None => builder,
    }
}

/// `GET path`, with a key when given.
pub fn get(api: &impl Api, path: &str, key: Option<&str>) -> Reply {
    api.send(request(Method::GET, path, key).body(Vec::new()).unwrap())
}

fn media_type_of(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("png") => "image/png",
        Some("tif" | "tiff") => "image/tiff",
        Some("dcm") => "application/dicom",
        _ => "image/jpeg",
    }
}

/// One `POST /v1/grade` body: the image bytes, their Content-Type and an optional
/// `?laterality=`.
#[derive(Debug, Clone)]
pub struct Image {
    pub bytes: Vec<u8>,
    pub content_type: String,
    pub laterality: Option<String>,
}

impl Image {
    /// A committed fixture, typed by its extension.
    pub fn fixture(name: &str) -> Self {
        Self::bytes(std::fs::read(fixture(name)).unwrap(), media_type_of(name))
    }

    pub fn bytes(bytes: impl Into<Vec<u8>>, content_type: &str) -> Self {
        Self { bytes: bytes.into(), content_type: content_type.into(), laterality: None }
    }

    pub fn laterality(mut self, laterality: &str) -> Self {
        self.laterality = Some(laterality.into());
        self
    }

    pub fn content_type(mut self, content_type: &str) -> Self {
        self.content_type = content_type.into();
        self
    }
}

/// Grades one image: `POST /v1/grade` (the one helper every test uses).
pub fn grade(api: &impl Api, key: &str, image: &Image) -> Reply {
    let path = match &image.laterality {
        Some(l) => format!("/v1/grade?laterality={l}"),
        None => "/v1/grade".into(),
    };
    let request =
        request(Method::POST, &path, Some(key)).header(header::CONTENT_TYPE, &image.content_type).body(image.bytes.clone()).unwrap();
    api.send(request)
}

/// One multipart `POST /v1/exams` body: image parts `left`/`right`, a `metadata` JSON
/// part, or any other part a test needs.
#[derive(Debug, Clone, Default)]
pub struct Exam {
    parts: Vec<FormPart>,
}

#[derive(Debug, Clone)]
struct FormPart {
    name: String,
    file_name: Option<String>,
    content_type: Option<String>,
    bytes: Vec<u8>,
}

const BOUNDARY: &str = "drscreen-test-boundary-5c0f9e2a71d84b36";

impl Exam {
    pub fn new() -> Self {
        Self::default()
    }

    /// The usual exam: the `left` and `right` fixtures.
    pub fn eyes(left: &str, right: &str) -> Self {
        Self::new().image("left", left).image("right", right)
    }

    /// An image part named `part` ("left", "right") holding a committed fixture.
    pub fn image(self, part: &str, fixture_name: &str) -> Self {
        let bytes = std::fs::read(fixture(fixture_name)).unwrap();
        self.part(part, Some(fixture_name), Some(media_type_of(fixture_name)), bytes)
    }

    /// The `metadata` part (JSON text).
    pub fn metadata(self, json: &str) -> Self {
        self.part("metadata", None, Some("application/json"), json.as_bytes().to_vec())
    }

    /// Any part; no Content-Type header when `content_type` is None.
    pub fn part(mut self, name: &str, file_name: Option<&str>, content_type: Option<&str>, bytes: Vec<u8>) -> Self {
        self.parts.push(FormPart {
            name: name.into(),
            file_name: file_name.map(Into::into),
            content_type: content_type.map(Into::into),
            bytes,
        });
        self
    }

    /// The multipart/form-data Content-Type and body.
    pub fn encode(&self) -> (String, Vec<u8>) {
        let mut body = Vec::new();
        for FormPart { name, file_name, content_type, bytes } in &self.parts {
            body.extend_from_slice(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes());
            if let Some(f) = file_name {
                body.extend_from_slice(format!("; filename=\"{f}\"").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            if let Some(ct) = content_type {
                body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        (format!("multipart/form-data; boundary={BOUNDARY}"), body)
    }
}

/// Uploads an exam: multipart `POST /v1/exams` (the one helper every test uses).
pub fn upload_exam(api: &impl Api, key: &str, exam: &Exam) -> Reply {
    let (content_type, body) = exam.encode();
    api.send(request(Method::POST, "/v1/exams", Some(key)).header(header::CONTENT_TYPE, content_type).body(body).unwrap())
}

/// The whole HTTP API in-process: `drscreen::http::router` over a temporary store and the
/// shared engine, driven with `tower::ServiceExt::oneshot` (no port, no process).
pub struct App {
    pub router: axum::Router,
    pub service: Arc<ScreeningService>,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl App {
    pub fn new() -> Self {
        Self::with_max_body_bytes(Config::default().limits.max_bytes)
    }

    /// An app whose request bodies are limited as `--max-image-bytes` limits them.
    pub fn with_max_body_bytes(max_body_bytes: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = backend::StoreTarget::fresh().open(dir.path());
        let service = ScreeningService::new(screener().clone(), store, Config::default().exams);
        let state =
            AppState { service: service.clone(), metrics: Arc::new(Default::default()), max_body_bytes, review: Config::default().review };
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        Self { router: drscreen::http::router(state), service, runtime, _dir: dir }
    }
}

impl Api for App {
    fn send(&self, request: Request<Vec<u8>>) -> Reply {
        use tower::ServiceExt;
        let router = self.router.clone();
        self.runtime.block_on(async move {
            let response = router.oneshot(request.map(axum::body::Body::from)).await.unwrap();
            let (parts, body) = response.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap().to_vec();
            Reply { status: parts.status, headers: parts.headers, body }
        })
    }

    fn key(&self, role: &str) -> String {
        let role = Role::parse(role).unwrap_or_else(|| panic!("unknown role {role}"));
        self.service.store.create_key(role, "test").unwrap().1
    }
}
