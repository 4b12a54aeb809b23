//! The stand-in DIPS RetinaIntegration server (`tests/peers/dips_server.py`, Python 3 with
//! fhir.resources) as a test peer: started on an ephemeral port (it prints
//! `LISTENING <port>` first), killed on drop, and by a watchdog if the test process dies.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running stand-in DIPS server.
pub struct DipsServer {
    /// `http://127.0.0.1:PORT`: the FHIR base.
    pub base_url: String,
    child: Child,
    _dir: tempfile::TempDir,
    _watchdog: super::pg::Watchdog,
}

impl DipsServer {
    /// Starts the server over `examinations` (a JSON list: report_id, examination_id,
    /// sectra_study_id, date, optional reject422 / fail_first), requiring `token` as a
    /// bearer token when given.
    pub fn start(examinations: serde_json::Value, token: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("examinations.json");
        std::fs::write(&file, serde_json::to_vec(&examinations).unwrap()).unwrap();
        let script = super::root().join("tests/peers/dips_server.py");
        let mut command = Command::new("python3");
        command.arg(&script).args(["--port", "0", "--examinations"]).arg(&file);
        if let Some(token) = token {
            command.args(["--token", token]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 {} does not start (install python3 and fhir.resources): {e}", script.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            let _ = tx.send(first);
            for _ in lines {}
        });
        let port = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => match line.strip_prefix("LISTENING ").and_then(|p| p.trim().parse::<u16>().ok()) {
                Some(port) => port,
                None => {
                    let _ = child.kill();
                    let status = child.wait().unwrap();
                    panic!("the stand-in DIPS server exited ({status}) or printed {line:?} instead of LISTENING <port>");
                }
            },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the stand-in DIPS server did not listen within {START_TIMEOUT:?}");
            }
        };
        let _watchdog = super::pg::Watchdog::spawn(&format!("kill -9 {}", child.id()));
        Self { base_url: format!("http://127.0.0.1:{port}"), child, _dir: dir, _watchdog }
    }

    /// The append URL for a DiagnosticReport id.
    pub fn append_url(&self, report_id: &str) -> String {
        format!("{}/DiagnosticReport/{report_id}/$append-retina-ai-result", self.base_url)
    }

    /// How many `$retina-by-date` searches the server has answered.
    pub fn searches(&self) -> u64 {
        let r = super::http().get(format!("{}/_test/searches", self.base_url)).send().unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = serde_json::from_slice(&r.bytes().unwrap()).unwrap();
        v["searches"].as_u64().unwrap()
    }

    /// Every append the server received: `{report_id, status, body}`, in order.
    pub fn appends(&self) -> Vec<serde_json::Value> {
        let r = super::http().get(format!("{}/_test/appends", self.base_url)).send().unwrap();
        assert_eq!(r.status(), 200);
        serde_json::from_slice(&r.bytes().unwrap()).unwrap()
    }
}

impl Drop for DipsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
