//! A throwaway PostgreSQL cluster started by a test: `initdb` into a temporary
//! directory, a free port on 127.0.0.1, the unix socket in that directory, password
//! (SCRAM) authentication on every connection, so the URL a test hands to drscreen is
//! `postgres://drscreen:PASSWORD@127.0.0.1:PORT/DB`, the shape production uses.
//!
//! PostgreSQL refuses to run as root: when the test runs as root the server commands
//! (`initdb`, `pg_ctl`) run through `runuser -u postgres --` and the directory is handed
//! to `postgres`; otherwise they run as the test's own user. The clients (`psql`) run as
//! the test user either way: they only need the password.
//!
//! Every wait has a timeout, and every failure panics with the server log.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The application role; it owns every database [`PgCluster::create_database`] makes.
pub const USER: &str = "drscreen";
/// The database [`PgCluster::url`] names.
pub const MAIN_DB: &str = "drscreen";
/// The bootstrap superuser (same password as [`USER`]).
pub const SUPERUSER: &str = "postgres";

/// How long `initdb`, a start or a stop may take (two shared cores, a busy CI machine).
const SLOW: Duration = Duration::from_secs(120);
/// `pg_ctl -t`: how long pg_ctl itself waits for the server to come up or go down.
const PG_CTL_WAIT_S: &str = "60";

/// A running (or deliberately stopped) PostgreSQL cluster, removed when dropped.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    port: u16,
    password: String,
    /// Server commands go through `runuser -u postgres --` (the test runs as root).
    as_postgres: bool,
    _watchdog: Watchdog,
}

impl PgCluster {
    /// initdb, start on a free port, create the role [`USER`] with a random password and
    /// its database [`MAIN_DB`]. Panics (with the server log) when any step fails.
    pub fn start() -> Self {
        let bindir = bindir();
        let as_postgres = euid() == 0;
        let dir = tempfile::Builder::new().prefix("drscreen-pg-").tempdir().expect("temporary directory");
        let password = random_hex(16);
        std::fs::write(dir.path().join("pwfile"), format!("{password}\n")).unwrap();
        std::fs::write(dir.path().join("server.log"), "").unwrap();
        if as_postgres {
            let status = Command::new("id").args(["-u", SUPERUSER]).stdout(Stdio::null()).status();
            assert!(
                matches!(status, Ok(s) if s.success()),
                "the test runs as root and PostgreSQL refuses to: it needs the `postgres` user (apt-get install postgresql creates it)"
            );
            let out = Command::new("chown").args(["-R", "postgres:"]).arg(dir.path()).output().expect("chown runs");
            assert!(out.status.success(), "chown -R postgres: {}: {}", dir.path().display(), String::from_utf8_lossy(&out.stderr));
        }
        let watchdog = {
            let stop = shell_words(&server_argv(as_postgres, &bindir.join("pg_ctl"), &pg_ctl_stop_args(dir.path(), "immediate")));
            Watchdog::spawn(&format!("{stop} >/dev/null 2>&1; rm -rf {}", quote(&dir.path().to_string_lossy())))
        };
        let mut cluster = Self { dir, bindir, port: 0, password, as_postgres, _watchdog: watchdog };
        if as_postgres {
            // The temporary directory's parents must let `postgres` through (TMPDIR under
            // /root would not).
            let probe = cluster.server_command(Path::new("test")).arg("-w").arg(cluster.dir.path()).output().expect("runuser runs");
            assert!(
                probe.status.success(),
                "user postgres cannot write {} (is TMPDIR={} reachable by postgres?): {}",
                cluster.dir.path().display(),
                std::env::temp_dir().display(),
                String::from_utf8_lossy(&probe.stderr)
            );
        }
        cluster.initdb();
        // The port is free when chosen but another process may take it before the server
        // binds: choose again then.
        for attempt in 1.. {
            cluster.port = free_port();
            let before = cluster.log().len();
            let out = cluster.pg_ctl_start();
            if out.status.success() {
                break;
            }
            let new_log = cluster.log().get(before..).unwrap_or_default().to_string();
            if attempt < 5 && (new_log.contains("could not bind") || new_log.contains("already in use")) {
                continue;
            }
            cluster.fail("pg_ctl start", &out);
        }
        cluster.admin_psql("postgres", &format!("CREATE ROLE {USER} LOGIN PASSWORD '{}'", cluster.password));
        cluster.admin_psql("postgres", &format!("CREATE DATABASE {MAIN_DB} OWNER {USER}"));
        cluster
    }

    /// The main database's URL: `postgres://drscreen:PASSWORD@127.0.0.1:PORT/drscreen`.
    pub fn url(&self) -> String {
        self.db_url(MAIN_DB)
    }

    /// The URL of database `db` in this cluster (whether or not it exists).
    pub fn db_url(&self, db: &str) -> String {
        format!("postgres://{USER}:{}@127.0.0.1:{}/{db}", self.password, self.port)
    }

    /// Creates database `name` (letters, digits, `_`) owned by [`USER`] and returns its URL:
    /// one cluster, one database per test that wants isolation.
    pub fn create_database(&self, name: &str) -> String {
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "database name {name:?}: use letters, digits and _"
        );
        self.admin_psql("postgres", &format!("CREATE DATABASE \"{name}\" OWNER {USER}"));
        self.db_url(name)
    }

    /// Fast shutdown (`pg_ctl stop -m fast`): clients are disconnected, the server
    /// checkpoints and exits. The data stays; [`start_again`](Self::start_again) brings it back.
    pub fn stop(&self) {
        self.pg_ctl_stop("fast");
    }

    /// Immediate shutdown (`pg_ctl stop -m immediate`): the server exits without a
    /// checkpoint, as if it crashed; the next start runs crash recovery from the WAL.
    pub fn stop_immediate(&self) {
        self.pg_ctl_stop("immediate");
    }

    /// Starts the stopped server again on the same port and data directory.
    pub fn start_again(&self) {
        let out = self.pg_ctl_start();
        if !out.status.success() {
            self.fail("pg_ctl start (again)", &out);
        }
    }

    /// Runs `sql` as [`USER`] on database `db` over TCP with the password (as drscreen
    /// connects) and returns psql's unaligned, tuples-only output (`a|b` rows, one per
    /// line) without the final newline. Panics (with the server log) when psql fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = run(self.psql_command(db).arg("-c").arg(sql), SLOW);
        self.output_or_fail(&format!("psql -d {db} -c {sql:?}"), out)
    }

    /// Runs `sql` as the superuser over the unix socket (for what the application role
    /// may not do: `pg_terminate_backend`, `ALTER SYSTEM`, ...).
    pub fn admin_psql(&self, db: &str, sql: &str) -> String {
        let out = run(self.psql_as(self.socket_dir().as_os_str(), SUPERUSER, db).arg("-c").arg(sql), SLOW);
        self.output_or_fail(&format!("psql (superuser) -d {db} -c {sql:?}"), out)
    }

    /// A `psql` command for database `db` as [`USER`] over TCP: the password in
    /// `PGPASSWORD`, other `PG*` variables removed, no psqlrc, stop on the first error,
    /// unaligned tuples-only output. Add `-c SQL` (or override anything) and run it.
    pub fn psql_command(&self, db: &str) -> Command {
        self.psql_as("127.0.0.1".as_ref(), USER, db)
    }

    /// `psql` as `user` on `host` (an address, or a socket directory).
    fn psql_as(&self, host: &std::ffi::OsStr, user: &str, db: &str) -> Command {
        let mut command = Command::new(self.bindir.join("psql"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PG") {
                command.env_remove(key);
            }
        }
        command
            .env("PGPASSWORD", &self.password)
            .env("PGCONNECT_TIMEOUT", "10")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(host)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", user, "-d", db])
            .stdin(Stdio::null());
        command
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// The directory holding the PostgreSQL binaries (`psql`, `pg_dump`, ...).
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The directory of the unix socket (`.s.PGSQL.PORT`): the temporary directory.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server log so far (everything the server wrote since initdb).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn initdb(&self) {
        let out = run(
            self.server_command(&self.bindir.join("initdb"))
                .arg("-D")
                .arg(self.data_dir())
                .args(["-U", SUPERUSER, "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C"])
                .arg(format!("--pwfile={}", self.dir.path().join("pwfile").display()))
                // Skips only initdb's own final fsync of the fresh files; the server runs
                // with fsync on (below), which is what the durability tests rely on.
                .arg("--no-sync"),
            SLOW,
        );
        if !out.status.success() {
            self.fail("initdb", &out);
        }
        let socket_dir = self.socket_dir().to_string_lossy().replace('\'', "''");
        let settings = format!(
            "\n# drscreen test cluster (tests/common/pg.rs)\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{socket_dir}'\n\
             max_connections = 200\n\
             shared_buffers = 32MB\n\
             fsync = on\n\
             synchronous_commit = on\n\
             full_page_writes = on\n\
             logging_collector = off\n\
             log_line_prefix = '%m [%p] %q%u@%d '\n\
             lc_messages = 'C'\n"
        );
        let conf = self.data_dir().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap_or_else(|e| panic!("{}: {e}", conf.display()));
        text.push_str(&settings);
        std::fs::write(&conf, text).unwrap();
    }

    fn pg_ctl_start(&self) -> Output {
        run(
            self.server_command(&self.bindir.join("pg_ctl"))
                .arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log_path())
                .args(["-w", "-t", PG_CTL_WAIT_S, "-o"])
                .arg(format!("-p {}", self.port))
                .arg("start"),
            SLOW,
        )
    }

    fn pg_ctl_stop(&self, mode: &str) {
        let argv = server_argv(self.as_postgres, &self.bindir.join("pg_ctl"), &pg_ctl_stop_args(self.dir.path(), mode));
        let out = run(&mut self.command_from(&argv), SLOW);
        if !out.status.success() {
            self.fail(&format!("pg_ctl stop -m {mode}"), &out);
        }
    }

    /// `program` as the server's user: through runuser when the test is root.
    fn server_command(&self, program: &Path) -> Command {
        self.command_from(&server_argv(self.as_postgres, program, &[]))
    }

    fn command_from(&self, argv: &[String]) -> Command {
        let mut command = Command::new(&argv[0]);
        command.args(&argv[1..]).current_dir(self.dir.path()).env("LC_ALL", "C").env_remove("PGDATA").stdin(Stdio::null());
        command
    }

    fn output_or_fail(&self, what: &str, out: Output) -> String {
        if !out.status.success() {
            self.fail(what, &out);
        }
        String::from_utf8_lossy(&out.stdout).trim_end_matches('\n').to_string()
    }

    fn fail(&self, what: &str, out: &Output) -> ! {
        let log = self.log();
        let tail = log.get(log.len().saturating_sub(20_000)..).unwrap_or(&log);
        panic!(
            "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}\n--- server log ({})\n{tail}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_path().display()
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Immediate: nothing to keep. Errors are ignored (the server may be stopped already).
        let argv = server_argv(self.as_postgres, &self.bindir.join("pg_ctl"), &pg_ctl_stop_args(self.dir.path(), "immediate"));
        let mut command = self.command_from(&argv);
        if let Ok(mut child) = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn() {
            wait_or_kill(&mut child, SLOW);
        }
    }
}

fn pg_ctl_stop_args(dir: &Path, mode: &str) -> Vec<String> {
    ["-D", &dir.join("data").to_string_lossy(), "-m", mode, "-w", "-t", PG_CTL_WAIT_S, "stop"].map(String::from).to_vec()
}

/// `program args...`, prefixed with `runuser -u postgres --` when `as_postgres`.
fn server_argv(as_postgres: bool, program: &Path, args: &[String]) -> Vec<String> {
    let mut argv = Vec::new();
    if as_postgres {
        argv.extend([tool("runuser").to_string_lossy().into_owned(), "-u".into(), SUPERUSER.into(), "--".into()]);
    }
    argv.push(program.to_string_lossy().into_owned());
    argv.extend(args.iter().cloned());
    argv
}

/// The PostgreSQL server binaries: `pg_config --bindir` when it has `initdb` and
/// `pg_ctl`, else the newest /usr/lib/postgresql/N/bin (Debian's layout, not on PATH),
/// else wherever `initdb` is on PATH.
pub fn bindir() -> PathBuf {
    let complete = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() && dir.join("psql").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if complete(&dir) {
            return dir;
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
        .filter(|(_, dir)| complete(dir))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return dir;
    }
    let on_path = which("initdb").and_then(|p| p.parent().map(Path::to_path_buf)).filter(|d| complete(d));
    on_path.unwrap_or_else(|| {
        panic!("PostgreSQL server binaries (initdb, pg_ctl, psql) not found: apt-get install postgresql (tests/run.sh does)")
    })
}

/// `name` on PATH, else in /usr/sbin or /sbin (root tools, off a normal user's PATH).
pub(crate) fn tool(name: &str) -> PathBuf {
    which(name)
        .or_else(|| ["/usr/sbin", "/sbin", "/usr/local/sbin"].iter().map(|d| Path::new(d).join(name)).find(|p| p.is_file()))
        .unwrap_or_else(|| PathBuf::from(name))
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

/// The effective user id (the second field of `Uid:` in /proc/self/status).
fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
        .expect("effective uid in /proc/self/status")
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("random bytes");
    hex::encode(buf)
}

/// Runs `command` to completion (stdout and stderr captured), killing it after `timeout`.
pub(crate) fn run(command: &mut Command, timeout: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{:?} does not start: {e}", command.get_program()));
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
    let status = wait_or_kill(&mut child, timeout).unwrap_or_else(|| panic!("{command:?} did not finish within {timeout:?} (killed)"));
    Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

/// Waits for `child` up to `timeout`; kills it (and returns None) after that.
pub(crate) fn wait_or_kill(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A shell that outlives nothing: it polls the test process once a second and runs
/// `cleanup` once it is gone, so a test killed mid-run (SIGKILL, Ctrl-C) does not leave a
/// PostgreSQL server or haproxy behind (pg_ctl puts the server in its own session, so it
/// would not die with the test). Dropping the watchdog (the normal end) kills the shell.
pub(crate) struct Watchdog(Child);

impl Watchdog {
    pub(crate) fn spawn(cleanup: &str) -> Self {
        use std::os::unix::process::CommandExt;
        let script = format!("while kill -0 {} 2>/dev/null; do sleep 1; done; {cleanup}", std::process::id());
        let child = Command::new("sh")
            .args(["-c", &script])
            // Its own process group: Ctrl-C on the test's terminal must not kill it too.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh starts");
        Self(child)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `argv` as one shell command line.
pub(crate) fn shell_words(argv: &[String]) -> String {
    argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

pub(crate) fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}
