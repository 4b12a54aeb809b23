//! drscreen as redundant replicas on one PostgreSQL database and one S3 bucket (issue 14),
//! with the real components: `drscreen serve` processes, PostgreSQL, s3s-fs, haproxy in
//! front, dcmtk's storescu/storescp as the PACS. The scenarios a region's IT asks about:
//! - two replicas starting together on an empty database both come up, on one schema;
//! - one replica killed with SIGKILL under load behind the balancer: every exam that was
//!   acknowledged (201) is readable through the survivor; no answer is a 500;
//! - the instances of one DICOM study sent to two replicas: graded once, one exam, one SR
//!   at the PACS;
//! - PostgreSQL restarted under load: only 201 or 503 (Retry-After) answers, and the
//!   replica recovers without a restart.
//!
//! No timed assertions: every wait is a poll with a generous timeout.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::backend::StoreTarget;
use common::balancer::Haproxy;
use common::pg::PgCluster;
use common::{Exam, Server, fixture};

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).pool_max_idle_per_host(0).build().unwrap()
}

/// `host:port` of a server's HTTP URL.
fn addr(server: &Server) -> String {
    server.url.trim_start_matches("http://").to_string()
}

/// One exam upload: (status, exam id when acknowledged).
fn upload(c: &reqwest::blocking::Client, url: &str, key: &str, exam: &Exam) -> Outcome {
    let (content_type, body) = exam.encode();
    match c.post(format!("{url}/v1/exams")).bearer_auth(key).header("content-type", content_type).body(body).send() {
        Ok(r) => {
            let status = r.status().as_u16();
            if status == 503 {
                assert!(r.headers().contains_key("retry-after"), "a 503 says when to retry");
            }
            let body: serde_json::Value = r.json().unwrap_or_default();
            (status, body["id"].as_str().map(str::to_string))
        }
        // The connection itself failed (the replica died mid-request): not acknowledged.
        Err(_) => (0, None),
    }
}

/// Uploads from `threads` clients until `stop`; returns every (status, id).
/// What one upload got: its status (0: the connection failed) and the exam id of a 201.
type Outcome = (u16, Option<String>);

fn load(url: String, key: String, threads: usize, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<Vec<Outcome>>> {
    (0..threads)
        .map(|t| {
            let (url, key, stop) = (url.clone(), key.clone(), stop.clone());
            std::thread::spawn(move || {
                let c = client();
                let exam = if t % 2 == 0 { Exam::eyes("grade0_L.jpg", "grade3_R.jpg") } else { Exam::eyes("grade4_L.jpg", "grade0_R.jpg") };
                let mut out = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    out.push(upload(&c, &url, &key, &exam));
                }
                out
            })
        })
        .collect()
}

fn acknowledged(results: &[Outcome]) -> Vec<String> {
    results.iter().filter(|(s, _)| *s == 201).map(|(_, id)| id.clone().expect("a 201 names its exam")).collect()
}

#[test]
fn two_replicas_starting_together_on_an_empty_database_share_one_schema() {
    let target = StoreTarget::cluster();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let servers: Vec<Server> = std::thread::scope(|s| {
        let started: Vec<_> = dirs
            .iter()
            .map(|d| {
                let target = target.clone();
                s.spawn(move || Server::start_on(d.path(), target, &["--dicom-enabled", "false"]))
            })
            .collect();
        started.into_iter().map(|h| h.join().expect("both replicas start")).collect()
    });
    let versions = servers[0].query("SELECT version FROM schema_migrations ORDER BY version");
    let expected: Vec<Vec<String>> = (1..=drscreen::store::SCHEMA_VERSION).map(|v| vec![v.to_string()]).collect();
    assert_eq!(versions, expected, "each migration applied exactly once");
    let c = client();
    for s in &servers {
        assert_eq!(c.get(format!("{}/readyz", s.url)).send().unwrap().status(), 200);
    }
    // A key made through one replica works on the other.
    let key = servers[0].key("device");
    let (status, id) = upload(&c, &servers[1].url, &key, &Exam::eyes("grade0_L.jpg", "grade0_R.jpg"));
    assert_eq!(status, 201);
    let r = c.get(format!("{}/v1/exams/{}", servers[0].url, id.unwrap())).bearer_auth(&key).send().unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn a_replica_killed_under_load_loses_no_acknowledged_exam() {
    let target = StoreTarget::cluster();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let doomed = Server::start_on(dirs[0].path(), target.clone(), &["--dicom-enabled", "false"]);
    let survivor = Server::start_on(dirs[1].path(), target.clone(), &["--dicom-enabled", "false"]);
    let lb = Haproxy::start(&[addr(&doomed), addr(&survivor)]);
    lb.wait_all_up();
    let key = survivor.key("admin");

    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(lb.url(), key.clone(), 4, stop.clone());
    // Load reaches both replicas before one dies.
    wait_for("exams through both replicas", Duration::from_secs(120), || {
        let n: i64 = survivor.query("SELECT COUNT(*) FROM exams")[0][0].parse().unwrap();
        (n >= 12).then_some(())
    });
    doomed.kill();
    let at_kill: i64 = survivor.query("SELECT COUNT(*) FROM exams")[0][0].parse().unwrap();
    wait_for("exams after the kill", Duration::from_secs(120), || {
        let n: i64 = survivor.query("SELECT COUNT(*) FROM exams")[0][0].parse().unwrap();
        (n >= at_kill + 12).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let results: Vec<Outcome> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    let statuses: BTreeSet<u16> = results.iter().map(|(s, _)| *s).collect();
    eprintln!("statuses seen: {statuses:?} over {} requests", results.len());
    // 201, or a refusal the client knows to retry (the balancer's 502/503 for the request
    // cut off by the kill, a connection error); never a 500 or another 4xx.
    assert!(statuses.iter().all(|s| [0, 201, 502, 503].contains(s)), "{statuses:?}");

    let ids = acknowledged(&results);
    assert!(ids.len() >= 20, "{} acknowledged", ids.len());
    let c = client();
    for id in &ids {
        let r = c.get(format!("{}/v1/exams/{id}", survivor.url)).bearer_auth(&key).send().unwrap();
        assert_eq!(r.status(), 200, "acknowledged exam {id} is readable through the survivor");
        let exam: serde_json::Value = r.json().unwrap();
        for image in exam["image_ids"].as_array().unwrap() {
            let r = c.get(format!("{}/v1/images/{}", survivor.url, image.as_str().unwrap())).bearer_auth(&key).send().unwrap();
            assert_eq!(r.status(), 200, "its images are in the object store");
        }
    }
    let stats = lb.servers();
    eprintln!("haproxy after the kill: {stats:?}");
}

/// A peer process killed when the test ends, passed or not (a leftover would keep the
/// test's output pipe open).
struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An Ophthalmic Photography file for one eye of `study` (dcmtk's img2dcm).
fn op_file(dir: &Path, fixture_name: &str, laterality: &str, study: &str) -> std::path::PathBuf {
    let out = dir.join(format!("{fixture_name}.dcm"));
    let keys = [
        format!("ImageLaterality={laterality}"),
        format!("StudyInstanceUID={study}"),
        "PatientID=REPLICA-PID-1".into(),
        "PatientName=Test^Replica".into(),
        "StudyDate=20260101".into(),
        "StudyTime=101010".into(),
        "StudyID=S1".into(),
        "AcquisitionDeviceTypeCodeSequence[0].CodeValue=409898007".into(),
        "AcquisitionDeviceTypeCodeSequence[0].CodingSchemeDesignator=SCT".into(),
        "AcquisitionDeviceTypeCodeSequence[0].CodeMeaning=Fundus camera".into(),
        "AnatomicRegionSequence[0].CodeValue=81745001".into(),
        "AnatomicRegionSequence[0].CodingSchemeDesignator=SCT".into(),
        "AnatomicRegionSequence[0].CodeMeaning=Eye".into(),
    ];
    let mut cmd = Command::new("img2dcm");
    cmd.arg("-oph");
    for k in keys {
        cmd.args(["-k", &k]);
    }
    let o = cmd.arg(fixture(fixture_name)).arg(&out).output().expect("img2dcm (dcmtk)");
    assert!(o.status.success(), "img2dcm: {}", String::from_utf8_lossy(&o.stderr));
    out
}

#[test]
fn a_study_sent_to_two_replicas_is_graded_once_and_its_sr_sent_once() {
    const STUDY: &str = "1.2.826.0.1.3680043.8.498.7714";
    let dir = tempfile::tempdir().unwrap();
    let pacs_dir = dir.path().join("pacs");
    std::fs::create_dir_all(&pacs_dir).unwrap();
    let pacs_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let pacs = Command::new("storescp")
        .args(["-aet", "PACS", "-od", pacs_dir.to_str().unwrap(), &pacs_port.to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut pacs = KillOnDrop(pacs);
    let destination = format!("PACS@127.0.0.1:{pacs_port}");
    let args = ["--dicom-study-stable-secs", "3", "--sr-destination", &destination, "--sr-retry-initial-secs", "0.5"];
    let target = StoreTarget::cluster();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = Server::start_on(dirs[0].path(), target.clone(), &args);
    let b = Server::start_on(dirs[1].path(), target.clone(), &args);

    // One eye through each replica, as a PACS spreading associations would.
    for (server, fixture_name, laterality) in [(&a, "grade3_R.jpg", "R"), (&b, "grade0_L.jpg", "L")] {
        let file = op_file(dir.path(), fixture_name, laterality, STUDY);
        let port = server.dicom_port.unwrap().to_string();
        let o = Command::new("storescu").args(["-xy", "-aec", "DRSCREEN", "127.0.0.1", &port]).arg(&file).output().unwrap();
        assert!(o.status.success(), "storescu: {}", String::from_utf8_lossy(&o.stderr));
    }
    let sr_files = || {
        std::fs::read_dir(&pacs_dir).unwrap().filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with("SR")).count()
    };
    let count = |sql: &str| -> i64 { a.query(sql)[0][0].parse().unwrap() };
    // Recorded once the PACS holds both the SR and the PDF report (one association).
    wait_for("the delivery to the PACS", Duration::from_secs(90), || {
        (count("SELECT COUNT(*) FROM audit WHERE action = 'dicom.sr.sent'") >= 1).then_some(())
    });
    // Both graders keep polling; give them several more passes to do anything twice.
    std::thread::sleep(Duration::from_secs(6));
    pacs.stop();
    assert_eq!(sr_files(), 1, "one SR reached the PACS");
    assert_eq!(count(&format!("SELECT COUNT(*) FROM exams WHERE external_exam_ref = '{STUDY}'")), 1, "graded once");
    assert_eq!(count("SELECT COUNT(*) FROM audit WHERE action = 'dicom.study.graded'"), 1);
    assert_eq!(count("SELECT COUNT(*) FROM audit WHERE action = 'dicom.sr.sent'"), 1);
    assert_eq!(count("SELECT COUNT(*) FROM audit WHERE action = 'dicom.instance.received'"), 2);
    let lateralities = a.query(&format!(
        "SELECT i.laterality FROM images i JOIN exams e ON e.id = i.exam_id WHERE e.external_exam_ref = '{STUDY}' ORDER BY i.idx"
    ));
    assert_eq!(lateralities, [["right".to_string()], ["left".to_string()]], "both eyes in the one exam");
}

#[test]
fn postgres_restarted_under_load_gives_only_201_or_503_and_the_replica_recovers() {
    // Its own cluster: restarting the binary's shared one would disturb the other tests.
    let pg = PgCluster::start();
    let target = StoreTarget { database_url: Some(pg.url()), ..StoreTarget::default() };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_on(dir.path(), target, &["--dicom-enabled", "false"]);
    let key = server.key("admin");
    let c = client();

    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(server.url.clone(), key.clone(), 3, stop.clone());
    let count = || -> usize { server.query("SELECT COUNT(*) FROM exams")[0][0].parse().unwrap() };
    wait_for("exams before the restart", Duration::from_secs(60), || (count() >= 6).then_some(()));
    pg.stop();
    let down_ready = c.get(format!("{}/readyz", server.url)).send().unwrap();
    assert_eq!(down_ready.status(), 503, "not ready while the database is down");
    let body: serde_json::Value = down_ready.json().unwrap();
    assert_eq!(body["code"], "database_unavailable");
    std::thread::sleep(Duration::from_secs(3));
    pg.start_again();
    let before = count();
    wait_for("uploads after the restart", Duration::from_secs(120), || (count() >= before + 6).then_some(()));
    stop.store(true, Ordering::Relaxed);
    let results: Vec<Outcome> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    let statuses: BTreeSet<u16> = results.iter().map(|(s, _)| *s).collect();
    eprintln!("statuses seen: {statuses:?} over {} requests", results.len());
    assert!(statuses.iter().all(|s| [201, 503].contains(s)), "only 201 or 503: {statuses:?}");
    assert!(statuses.contains(&503), "the outage was seen");
    wait_for("ready again", Duration::from_secs(30), || {
        (c.get(format!("{}/readyz", server.url)).send().ok()?.status() == 200).then_some(())
    });
    for id in acknowledged(&results) {
        let r = c.get(format!("{}/v1/exams/{id}", server.url)).bearer_auth(&key).send().unwrap();
        assert_eq!(r.status(), 200, "acknowledged exam {id} is stored");
    }
    // Closing the pool as serve ends must not touch the async runtime (the blocking
    // client closes its connections with a runtime of its own).
    assert!(server.stop().success(), "the replica shuts down cleanly after the outage");
}
