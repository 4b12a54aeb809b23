//! The harness for running drscreen as redundant replicas (issue 14), proven against the
//! real components before any drscreen process is involved: a throwaway PostgreSQL
//! cluster (password auth over TCP, data kept across a fast and an immediate stop) and
//! haproxy in front of two stand-in HTTP replicas (requests reach both; after one is
//! killed with SIGKILL every request still succeeds, through the other).
//!
//! Needs `postgresql` and `haproxy` from Debian (tests/run.sh installs them). No timed
//! assertions: every wait is a poll with a generous timeout.

mod common;

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::balancer::Haproxy;
use common::pg::{MAIN_DB, PgCluster, USER};

#[test]
fn postgres_cluster_authenticates_isolates_and_keeps_data_across_restarts() {
    let pg = PgCluster::start();
    let url = pg.url();
    assert_eq!(url, format!("postgres://{USER}:{}@127.0.0.1:{}/{MAIN_DB}", pg.password(), pg.port()));
    // The settings the replica scenarios rely on.
    assert_eq!(pg.psql(MAIN_DB, "SHOW max_connections"), "200");
    assert_eq!(pg.psql(MAIN_DB, "SHOW fsync"), "on");
    assert_eq!(pg.psql(MAIN_DB, "SHOW listen_addresses"), "127.0.0.1");

    let db = "harness";
    let db_url = pg.create_database(db);
    assert_eq!(db_url, pg.db_url(db));
    pg.psql(db, "CREATE TABLE exams (id int PRIMARY KEY, note text NOT NULL)");
    pg.psql(db, "INSERT INTO exams VALUES (1, 'left'), (2, 'right')");
    assert_eq!(pg.psql(db, "SELECT id, note FROM exams ORDER BY id"), "1|left\n2|right");
    // Each database is its own namespace.
    assert_eq!(pg.psql(MAIN_DB, "SELECT count(*) FROM pg_tables WHERE tablename = 'exams'"), "0");

    // The URL alone (password included, nothing in the environment) is enough, as it is
    // for drscreen; the wrong password is refused: authentication is really on.
    let out = psql_url(&pg, &db_url).arg("-c").arg("SELECT current_user, current_database()").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("{USER}|{db}"));
    let wrong = db_url.replace(pg.password(), "not-the-password");
    let out = psql_url(&pg, &wrong).arg("-c").arg("SELECT 1").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password authentication failed"), "{}", String::from_utf8_lossy(&out.stderr));

    // Fast shutdown: nothing answers; back on the same port with the same rows.
    pg.stop();
    assert!(!psql_url(&pg, &db_url).arg("-c").arg("SELECT 1").output().unwrap().status.success());
    pg.start_again();
    assert_eq!(pg.url(), url);
    assert_eq!(pg.psql(db, "SELECT count(*) FROM exams"), "2");

    // Immediate shutdown (a crash): committed rows survive crash recovery.
    pg.psql(db, "INSERT INTO exams VALUES (3, 'committed before the crash')");
    pg.stop_immediate();
    pg.start_again();
    assert_eq!(pg.psql(db, "SELECT note FROM exams WHERE id = 3"), "committed before the crash");
    assert!(pg.log().contains("database system was not properly shut down"), "{}", pg.log());
}

/// psql on a connection URL with nothing else from the environment.
fn psql_url(pg: &PgCluster, url: &str) -> Command {
    let mut command = Command::new(pg.bindir().join("psql"));
    command.env_clear().env("PGCONNECT_TIMEOUT", "10").args(["-X", "-A", "-t", "-w", "-d", url]).stdin(Stdio::null());
    command
}

#[test]
fn haproxy_spreads_requests_over_replicas_and_fails_over_when_one_is_killed() {
    let mut a = Replica::start("replica-a");
    let b = Replica::start("replica-b");
    let proxy = Haproxy::start(&[a.addr, b.addr]);
    proxy.wait_all_up();
    assert_eq!(proxy.up(), [a.addr.to_string(), b.addr.to_string()]);

    let client = client();
    let get = |path: &str| {
        let response = client.get(format!("{}{path}", proxy.url())).send().unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", proxy.log()));
        (response.status().as_u16(), response.text().unwrap())
    };
    let names: BTreeSet<String> = (0..10).map(|_| get("/name")).inspect(|(s, _)| assert_eq!(*s, 200)).map(|(_, n)| n).collect();
    assert_eq!(names, BTreeSet::from(["replica-a".into(), "replica-b".into()]));

    // SIGKILL one replica: before haproxy notices, a request sent to it fails to connect
    // and is retried on the other; after, it is not chosen at all.
    a.kill();
    for i in 0..10 {
        assert_eq!(get("/name"), (200, "replica-b".into()), "request {i} after the kill");
    }
    let servers = proxy.wait_down(a.addr);
    assert!(servers.iter().any(|s| s.backend == b.addr.to_string() && s.is_up()), "{servers:#?}");
    for i in 0..10 {
        assert_eq!(get("/name"), (200, "replica-b".into()), "request {i} after haproxy marked it down");
    }
    assert_eq!(proxy.up(), [b.addr.to_string()]);
}

#[test]
fn haproxy_tcp_mode_spreads_connections_and_fails_over() {
    let mut a = Replica::start("replica-a");
    let b = Replica::start("replica-b");
    // Connect checks, and checks against each replica's HTTP /readyz (here the same
    // listener serves both).
    let connect_checked = Haproxy::start_tcp(&[a.addr, b.addr]);
    let http_checked = Haproxy::start_tcp_checked(&[(a.addr, a.addr), (b.addr, b.addr)]);
    for proxy in [&connect_checked, &http_checked] {
        proxy.wait_all_up();
        // leastconn with idle servers alternates too: sequential connections reach both.
        let names: BTreeSet<String> = (0..10).map(|_| raw_get(proxy.addr(), "/name")).collect();
        assert_eq!(names, BTreeSet::from(["replica-a".into(), "replica-b".into()]), "{}", proxy.log());
    }
    a.kill();
    for proxy in [&connect_checked, &http_checked] {
        for i in 0..10 {
            assert_eq!(raw_get(proxy.addr(), "/name"), "replica-b", "connection {i} after the kill");
        }
        proxy.wait_down(a.addr);
        assert_eq!(proxy.up(), [b.addr.to_string()]);
    }
}

/// A stand-in replica: Python's http.server on a free port serving `/readyz` (200) and
/// `/name` (its name), killed with SIGKILL on [`Replica::kill`] or drop.
struct Replica {
    addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Replica {
    fn start(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("readyz"), "ready").unwrap();
        std::fs::write(dir.path().join("name"), name).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new("python3")
            .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
            assert!(child.try_wait().unwrap().is_none(), "{name}: python3 -m http.server {port} exited");
            assert!(Instant::now() < deadline, "{name} does not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { addr, child, _dir: dir }
    }

    /// SIGKILL, as a crashed replica.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

/// One HTTP/1.0 GET over a fresh TCP connection (through a TCP-mode balancer); the body.
fn raw_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP response through {addr}: {response:?}"));
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    body.to_string()
}
