//! A real load balancer in front of replicas: Debian's haproxy, run in the foreground
//! (`haproxy -f CFG -db`) as a child of the test on a free port, with active health
//! checks (`GET /readyz` must answer 200), quick failure detection, retries and
//! redispatch, and its admin socket open so a test can see which replicas haproxy
//! considers up (and wait for that) before it puts load on them.

use std::fmt::Display;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::pg::{Watchdog, free_port, tool};

/// How long the `wait_*` helpers poll before they fail.
pub const WAIT: Duration = Duration::from_secs(60);
/// The backend's name in the config (and in `show stat`).
const BACKEND: &str = "replicas";

/// What haproxy balances: HTTP requests (health-checked on `/readyz`) or raw TCP
/// connections (DICOM associations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Http,
    Tcp,
}

/// One backend server as haproxy's `show stat` reports it.
#[derive(Debug, Clone)]
pub struct ServerState {
    /// The name in the config: `r0`, `r1`, ... in the order the backends were given.
    pub name: String,
    /// The backend as given to `start` (`127.0.0.1:PORT`).
    pub backend: String,
    /// haproxy's status: `UP`, `DOWN`, `UP 1/2` (going down), `DOWN 1/1` (going up), `MAINT`, ...
    pub status: String,
    /// The last health check's result: `L7OK`, `L4OK`, `L4CON` (refused), `L7STS` (bad status), `INI` ...
    pub check_status: String,
    /// How many times the balancer chose this server (`lbtot`).
    pub selected: u64,
    /// Retries (`wretr`) and redispatches (`wredis`) away from this server.
    pub retries: u64,
    pub redispatches: u64,
}

impl ServerState {
    /// Up and its last health check passed (a server counts as up before its first
    /// check, so `status` alone is not enough right after start).
    pub fn is_up(&self) -> bool {
        self.status == "UP" && matches!(self.check_status.as_str(), "L7OK" | "L6OK" | "L4OK")
    }

    pub fn is_down(&self) -> bool {
        self.status.starts_with("DOWN")
    }
}

/// A running haproxy, killed when dropped.
pub struct Haproxy {
    port: u16,
    mode: Mode,
    backends: Vec<String>,
    dir: tempfile::TempDir,
    child: Child,
    _watchdog: Watchdog,
}

impl Haproxy {
    /// HTTP mode in front of `backends` (`SocketAddr`s or `"host:port"`s): round robin,
    /// `GET /readyz` health checks every 500 ms (down after 2 failures, up after 1
    /// success), 3 retries with redispatch to another server, and L7 retries on
    /// connection failures, empty responses and response timeouts.
    pub fn start<A: Display>(backends: &[A]) -> Self {
        Self::launch(Mode::Http, &backends.iter().map(|b| (b.to_string(), None)).collect::<Vec<_>>())
    }

    /// TCP mode (a PACS spreading DICOM associations over replicas): least connections,
    /// health checks are plain TCP connects to each backend.
    pub fn start_tcp<A: Display>(backends: &[A]) -> Self {
        Self::launch(Mode::Tcp, &backends.iter().map(|b| (b.to_string(), None)).collect::<Vec<_>>())
    }

    /// TCP mode whose health checks ask each replica's HTTP listener instead: pairs of
    /// (DICOM address, HTTP address); a replica is up when `GET /readyz` on its HTTP
    /// address answers 200.
    pub fn start_tcp_checked<A: Display, H: Display>(backends: &[(A, H)]) -> Self {
        Self::launch(Mode::Tcp, &backends.iter().map(|(b, h)| (b.to_string(), Some(h.to_string()))).collect::<Vec<_>>())
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The frontend's address (for TCP clients).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The configuration haproxy runs with.
    pub fn config(&self) -> String {
        read(&self.dir.path().join("haproxy.cfg"))
    }

    /// haproxy's output so far: warnings, state changes and one log line per request.
    pub fn log(&self) -> String {
        read(&self.log_path())
    }

    /// One command on the admin socket (`show stat`, `disable server replicas/r0`, ...);
    /// returns haproxy's answer.
    pub fn admin(&self, command: &str) -> String {
        let socket = self.dir.path().join("admin.sock");
        let mut stream = UnixStream::connect(&socket).unwrap_or_else(|e| self.fail(&format!("admin socket {}: {e}", socket.display())));
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(format!("{command}\n").as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap_or_else(|e| self.fail(&format!("admin socket {command:?}: {e}")));
        answer
    }

    /// Every backend server with its state, in the order given to `start`.
    pub fn servers(&self) -> Vec<ServerState> {
        let csv = self.admin("show stat");
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().and_then(|h| h.strip_prefix("# ")).unwrap_or_default().split(',').collect();
        let column =
            |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| self.fail(&format!("no {name} in show stat: {csv}")));
        let (px, sv, status, check) = (column("pxname"), column("svname"), column("status"), column("check_status"));
        let (lbtot, wretr, wredis) = (column("lbtot"), column("wretr"), column("wredis"));
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > px && f[px] == BACKEND && f[sv] != "BACKEND" && f[sv] != "FRONTEND")
            .map(|f| {
                let number = |i: usize| f.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
                let index: usize = f[sv].strip_prefix('r').and_then(|i| i.parse().ok()).unwrap_or(usize::MAX);
                ServerState {
                    name: f[sv].to_string(),
                    backend: self.backends.get(index).cloned().unwrap_or_default(),
                    status: f[status].to_string(),
                    check_status: f.get(check).unwrap_or(&"").to_string(),
                    selected: number(lbtot),
                    retries: number(wretr),
                    redispatches: number(wredis),
                }
            })
            .collect()
    }

    /// The backends (as given) that are up with a passing health check.
    pub fn up(&self) -> Vec<String> {
        self.servers().into_iter().filter(ServerState::is_up).map(|s| s.backend).collect()
    }

    /// Polls `show stat` until `done(servers)` holds; panics after `timeout` with the
    /// last states and haproxy's log.
    pub fn wait_for(&self, what: &str, timeout: Duration, done: impl Fn(&[ServerState]) -> bool) -> Vec<ServerState> {
        let deadline = Instant::now() + timeout;
        loop {
            let servers = self.servers();
            if done(&servers) {
                return servers;
            }
            if Instant::now() > deadline {
                self.fail(&format!("waited {timeout:?} for {what}; servers now: {servers:#?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (up to [`WAIT`]) until every backend is up with a passing health check.
    pub fn wait_all_up(&self) -> Vec<ServerState> {
        self.wait_for("every backend up", WAIT, |s| s.len() == self.backends.len() && s.iter().all(ServerState::is_up))
    }

    /// Waits (up to [`WAIT`]) until haproxy has marked `backend` down.
    pub fn wait_down(&self, backend: impl Display) -> Vec<ServerState> {
        let backend = backend.to_string();
        self.wait_for(&format!("{backend} down"), WAIT, |s| s.iter().any(|s| s.backend == backend && s.is_down()))
    }

    /// Waits (up to [`WAIT`]) until `backend` is up with a passing health check.
    pub fn wait_up(&self, backend: impl Display) -> Vec<ServerState> {
        let backend = backend.to_string();
        self.wait_for(&format!("{backend} up"), WAIT, |s| s.iter().any(|s| s.backend == backend && s.is_up()))
    }

    fn launch(mode: Mode, backends: &[(String, Option<String>)]) -> Self {
        assert!(!backends.is_empty(), "haproxy needs at least one backend");
        let haproxy = tool("haproxy");
        let version = haproxy_version(&haproxy);
        let dir = tempfile::Builder::new().prefix("drscreen-haproxy-").tempdir().expect("temporary directory");
        let (cfg_path, log_path) = (dir.path().join("haproxy.cfg"), dir.path().join("haproxy.log"));
        // The port is free when chosen but another process may take it before haproxy
        // binds: choose again then.
        for attempt in 1.. {
            let port = free_port();
            let config = config(mode, port, dir.path(), backends, version);
            std::fs::write(&cfg_path, &config).unwrap();
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = Command::new(&haproxy)
                .arg("-f")
                .arg(&cfg_path)
                .arg("-db")
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("{} does not start: {e} (apt-get install haproxy; tests/run.sh does)", haproxy.display()));
            let watchdog = Watchdog::spawn(&format!("kill -9 {} 2>/dev/null", child.id()));
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + WAIT;
            let exited = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break Some(status);
                }
                if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                    break None;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    failure(&format!("haproxy does not accept connections on {addr} within {WAIT:?}"), &cfg_path, &log_path);
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            match exited {
                None => {
                    let backends = backends.iter().map(|(b, _)| b.clone()).collect();
                    return Self { port, mode, backends, dir, child, _watchdog: watchdog };
                }
                Some(_) if attempt < 5 && read(&log_path).contains("cannot bind") => continue,
                Some(status) => failure(&format!("haproxy exited during startup ({status})"), &cfg_path, &log_path),
            }
        }
        unreachable!("the loop returns or panics")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("haproxy.log")
    }

    fn fail(&self, what: &str) -> ! {
        failure(what, &self.dir.path().join("haproxy.cfg"), &self.log_path())
    }
}

/// Panics with `what`, the config and the end of haproxy's log.
fn failure(what: &str, cfg: &Path, log_path: &Path) -> ! {
    let log = read(log_path);
    let tail = log.get(log.len().saturating_sub(20_000)..).unwrap_or(&log);
    panic!("{what}\n--- {}\n{}\n--- haproxy log ({})\n{tail}", cfg.display(), read(cfg), log_path.display());
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `haproxy -v`'s (major, minor).
fn haproxy_version(haproxy: &Path) -> (u32, u32) {
    let out = Command::new(haproxy)
        .arg("-v")
        .output()
        .unwrap_or_else(|e| panic!("{} -v: {e} (apt-get install haproxy; tests/run.sh does)", haproxy.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    // "HAProxy version 2.6.12-1+deb12u1 2023/..." (older: "HA-Proxy version 1.8.19 ...")
    let version = text.split_whitespace().skip_while(|w| *w != "version").nth(1).unwrap_or_default();
    let mut parts = version.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn config(mode: Mode, port: u16, dir: &Path, backends: &[(String, Option<String>)], version: (u32, u32)) -> String {
    let socket = quote_cfg(&dir.join("admin.sock").to_string_lossy());
    let mut cfg = format!(
        "# drscreen test balancer (tests/common/balancer.rs), haproxy {}.{}\n\
         global\n\
         \x20   maxconn 1000\n\
         \x20   nbthread 1\n\
         \x20   stats socket {socket} mode 600 level admin\n\
         \x20   log stdout format raw local0 info\n\
         \n\
         defaults\n\
         \x20   log global\n\
         \x20   timeout connect 2s\n\
         \x20   timeout client 120s\n\
         \x20   timeout server 120s\n\
         \x20   timeout queue 30s\n\
         \x20   timeout check 2s\n\
         \x20   retries 3\n\
         \x20   option redispatch\n\
         \x20   option dontlognull\n",
        version.0, version.1
    );
    match mode {
        Mode::Http => {
            cfg.push_str("    mode http\n    option httplog\n    timeout http-request 30s\n");
            // L7 retries arrived in haproxy 2.0. They replay a request only when its whole
            // body is still in the buffer (tune.bufsize, 16 KiB): large uploads get the
            // connection-failure retries only.
            if version >= (2, 0) {
                cfg.push_str("    retry-on conn-failure empty-response response-timeout\n");
            }
        }
        Mode::Tcp => cfg.push_str("    mode tcp\n    option tcplog\n"),
    }
    cfg.push_str(&format!("\nfrontend front\n    bind 127.0.0.1:{port}\n    default_backend {BACKEND}\n\nbackend {BACKEND}\n"));
    let http_checked = mode == Mode::Http || backends.iter().any(|(_, h)| h.is_some());
    cfg.push_str(match mode {
        Mode::Http => "    balance roundrobin\n",
        Mode::Tcp => "    balance leastconn\n",
    });
    if http_checked {
        cfg.push_str("    option httpchk GET /readyz\n    http-check expect status 200\n");
    }
    cfg.push_str("    default-server inter 500ms fall 2 rise 1\n");
    for (i, (backend, check)) in backends.iter().enumerate() {
        cfg.push_str(&format!("    server r{i} {backend} check"));
        if let Some(check) = check {
            let (host, port) = check.rsplit_once(':').unwrap_or_else(|| panic!("health check address {check:?}: host:port"));
            cfg.push_str(&format!(" addr {host} port {port}"));
        }
        cfg.push('\n');
    }
    cfg
}

/// A path as a haproxy config word (double quotes; the temp dir has no odd characters).
fn quote_cfg(word: &str) -> String {
    format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\""))
}
