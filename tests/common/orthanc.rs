//! A real Orthanc (Debian's `orthanc` package, installed by tests/run.sh and .ci/run) as
//! the PACS in a test: `Orthanc <config.json>` in a temporary directory, on free HTTP
//! and DICOM ports on 127.0.0.1, with its storage and index in that directory, no
//! plugins, no Lua, no remote access and no HTTP authentication. The package's own
//! service (systemd/init, /etc/orthanc, port 8042/4242) is never used or touched.
//!
//! Every wait has a deadline (only so a broken peer cannot hang the suite; nothing is
//! timed), and every failure panics with what was seen and the tail of Orthanc's log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long Orthanc may take to start answering REST (two shared cores).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one REST call may take (a synchronous C-STORE job included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long [`Orthanc::wait_for_series`] waits: a quiet window, grading on two shared
/// cores and an SR push, with room to spare.
pub const SERIES_TIMEOUT: Duration = Duration::from_secs(180);

/// A DICOM node Orthanc knows (`DicomModalities`).
#[derive(Debug, Clone)]
pub struct Modality {
    /// The id in Orthanc's REST API (`/modalities/{name}`).
    pub name: String,
    pub aet: String,
    pub host: String,
    pub port: u16,
}

impl Modality {
    pub fn new(name: &str, aet: &str, host: &str, port: u16) -> Self {
        Self { name: name.into(), aet: aet.into(), host: host.into(), port }
    }
}

/// What an Orthanc is started with. [`OrthancConfig::new`] picks free ports, so a
/// peer can be told where Orthanc will listen before it starts.
#[derive(Debug, Clone)]
pub struct OrthancConfig {
    pub aet: String,
    pub http_port: u16,
    pub dicom_port: u16,
    pub modalities: Vec<Modality>,
}

impl Default for OrthancConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl OrthancConfig {
    /// AE title `ORTHANC`, free HTTP and DICOM ports, no modalities.
    pub fn new() -> Self {
        Self { aet: "ORTHANC".into(), http_port: super::pg::free_port(), dicom_port: super::pg::free_port(), modalities: Vec::new() }
    }

    /// Adds a node to `DicomModalities`.
    pub fn modality(mut self, modality: Modality) -> Self {
        self.modalities.push(modality);
        self
    }

    /// `AE@127.0.0.1:PORT`: Orthanc's DICOM listener as drscreen's `--sr-destination`.
    pub fn dicom_destination(&self) -> String {
        format!("{}@127.0.0.1:{}", self.aet, self.dicom_port)
    }

    /// The configuration file's JSON.
    fn json(&self, dir: &Path) -> Value {
        let storage = dir.join("db").display().to_string();
        let modalities: serde_json::Map<String, Value> =
            self.modalities.iter().map(|m| (m.name.clone(), json!([m.aet, m.host, m.port]))).collect();
        json!({
            "Name": "drscreen-test",
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "StorageCompression": false,
            "Plugins": [],
            "LuaScripts": [],
            "HttpServerEnabled": true,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "SslEnabled": false,
            "OrthancExplorerEnabled": false,
            "WebDavEnabled": false,
            "HttpDescribeErrors": true,
            "DicomServerEnabled": true,
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": true,
            // Stores from nodes not in DicomModalities are accepted too (Orthanc's default,
            // stated so the test does not depend on it).
            "DicomAlwaysAllowStore": true,
            "DicomModalities": modalities,
            "DicomScuTimeout": 30,
            "ConcurrentJobs": 2,
            "SaveJobs": false,
            "JobsHistorySize": 10,
        })
    }
}

/// One series as Orthanc's REST API describes it.
#[derive(Debug, Clone)]
pub struct Series {
    /// Orthanc's id of the series.
    pub id: String,
    pub modality: String,
    pub series_uid: String,
    /// Orthanc's ids of its instances.
    pub instances: Vec<String>,
    /// The whole JSON object.
    pub json: Value,
}

impl Series {
    fn from_json(json: &Value) -> Self {
        let tag = |name: &str| json["MainDicomTags"][name].as_str().unwrap_or_default().trim().to_string();
        Self {
            id: json["ID"].as_str().unwrap_or_default().to_string(),
            modality: tag("Modality"),
            series_uid: tag("SeriesInstanceUID"),
            instances: json["Instances"].as_array().into_iter().flatten().filter_map(|i| i.as_str().map(String::from)).collect(),
            json: json.clone(),
        }
    }
}

/// A running Orthanc; killed (and its directory removed) on drop, or by its watchdog if
/// the test process dies first.
pub struct Orthanc {
    pub config: OrthancConfig,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    dir: tempfile::TempDir,
    child: Child,
    client: reqwest::blocking::Client,
    _watchdog: super::pg::Watchdog,
}

/// The `Orthanc` binary: `$ORTHANC_BIN`, else `Orthanc` on PATH, else Debian's /usr/sbin/Orthanc.
pub fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("ORTHANC_BIN") {
        return PathBuf::from(bin);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("Orthanc"))
        .find(|bin| bin.is_file())
        .unwrap_or_else(|| panic!("Orthanc not found (set ORTHANC_BIN, or run tests/run.sh, which installs Debian's orthanc package)"))
}

impl Orthanc {
    /// Writes the configuration, starts Orthanc and waits until its REST API answers.
    pub fn start(config: OrthancConfig) -> Self {
        let dir = tempfile::Builder::new().prefix("drscreen-orthanc-").tempdir().expect("temporary directory");
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config.json(dir.path())).unwrap()).unwrap();
        let log = std::fs::File::create(dir.path().join("orthanc.log")).unwrap();
        let bin = binary();
        let child = Command::new(&bin)
            .arg(&config_path)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", bin.display()));
        let cleanup = format!("kill -9 {}; rm -rf {}", child.id(), super::pg::quote(&dir.path().display().to_string()));
        let _watchdog = super::pg::Watchdog::spawn(&cleanup);
        let client = reqwest::blocking::Client::builder().timeout(REQUEST_TIMEOUT).build().unwrap();
        let url = format!("http://127.0.0.1:{}", config.http_port);
        let mut orthanc = Self { config, url, dir, child, client, _watchdog };
        orthanc.wait_until_answering();
        orthanc
    }

    fn wait_until_answering(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("Orthanc exited ({status}) before it answered; its log:\n{}", self.log());
            }
            match self.client.get(format!("{}/system", self.url)).timeout(Duration::from_secs(2)).send() {
                Ok(r) if r.status().is_success() => return,
                Ok(r) if Instant::now() > deadline => panic!("Orthanc answers {} on /system; its log:\n{}", r.status(), self.log()),
                Err(e) if Instant::now() > deadline => panic!("Orthanc at {} does not answer: {e}; its log:\n{}", self.url, self.log()),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Orthanc's log so far (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("orthanc.log")).unwrap_or_default()
    }

    /// The last `lines` lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `GET path`, whose answer must be 2xx JSON.
    pub fn get_json(&self, path: &str) -> Value {
        let r = self.client.get(format!("{}{path}", self.url)).send().unwrap_or_else(|e| panic!("GET {path}: {e}"));
        self.json_of("GET", path, r)
    }

    /// `POST path` with a JSON body, whose answer must be 2xx JSON.
    pub fn post_json(&self, path: &str, body: &Value) -> Value {
        let r = self.client.post(format!("{}{path}", self.url)).json(body).send().unwrap_or_else(|e| panic!("POST {path}: {e}"));
        self.json_of("POST", path, r)
    }

    fn json_of(&self, method: &str, path: &str, r: reqwest::blocking::Response) -> Value {
        let status = r.status();
        let body = r.text().unwrap_or_default();
        assert!(status.is_success(), "{method} {path}: {status} {body}\nOrthanc log:\n{}", self.log_tail(40));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body}"))
    }

    /// Orthanc's id of the study with this StudyInstanceUID, if it holds it.
    pub fn find_study(&self, study_uid: &str) -> Option<String> {
        let r = self.client.post(format!("{}/tools/lookup", self.url)).body(study_uid.to_string()).send().ok()?;
        let found: Value = r.json().ok()?;
        found.as_array()?.iter().find(|f| f["Type"] == "Study").and_then(|f| f["ID"].as_str()).map(String::from)
    }

    /// Orthanc's id of the study with this StudyInstanceUID; panics when it has none.
    pub fn study(&self, study_uid: &str) -> String {
        self.find_study(study_uid).unwrap_or_else(|| panic!("Orthanc holds no study {study_uid}; log:\n{}", self.log_tail(40)))
    }

    /// The series of a study (Orthanc's study id).
    pub fn series(&self, study: &str) -> Vec<Series> {
        self.get_json(&format!("/studies/{study}/series")).as_array().into_iter().flatten().map(Series::from_json).collect()
    }

    /// Sends a resource (patient, study, series or instance id) to a modality by C-STORE
    /// (`POST /modalities/{name}/store`, synchronous); returns Orthanc's job summary after
    /// asserting no instance failed.
    pub fn store_to(&self, modality: &str, resource: &str) -> Value {
        let path = format!("/modalities/{modality}/store");
        let summary = self.post_json(&path, &json!({"Resources": [resource], "Synchronous": true}));
        assert_eq!(summary["FailedInstancesCount"], 0, "{path}: {summary}\nOrthanc log:\n{}", self.log_tail(40));
        summary
    }

    /// An instance's DICOM file (`GET /instances/{id}/file`).
    pub fn instance_file(&self, instance: &str) -> Vec<u8> {
        let path = format!("/instances/{instance}/file");
        let r = self.client.get(format!("{}{path}", self.url)).send().unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.bytes().unwrap().to_vec()
    }

    /// Writes an instance's file into `dir` as `NAME.dcm`; returns its path.
    pub fn save_instance(&self, instance: &str, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.dcm"));
        std::fs::write(&path, self.instance_file(instance)).unwrap();
        path
    }

    /// Waits until the study (Orthanc's id) holds a series of `modality` ("SR", "DOC")
    /// with at least one instance, and returns it. The deadline ([`SERIES_TIMEOUT`]) only
    /// keeps a broken chain from hanging the suite; the failure says which series were seen.
    pub fn wait_for_series(&self, study: &str, modality: &str) -> Series {
        let (start, deadline) = (Instant::now(), SERIES_TIMEOUT);
        loop {
            let series = self.series(study);
            if let Some(s) = series.iter().find(|s| s.modality == modality && !s.instances.is_empty()) {
                return s.clone();
            }
            if start.elapsed() > deadline {
                let seen: Vec<String> =
                    series.iter().map(|s| format!("{} {} ({} instance(s))", s.modality, s.series_uid, s.instances.len())).collect();
                panic!(
                    "no {modality} series arrived in study {study} within {deadline:?}; series seen: {seen:?}\nOrthanc log:\n{}",
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
