//! A real S3 server for the blob store tests: `s3s-fs` (installed, pinned, by
//! tests/run.sh), on an ephemeral port with a temporary root directory and one bucket.
//! s3s-fs keeps bucket `B`'s object `K` as the file `ROOT/B/K` (its own metadata lives
//! beside the buckets, in `ROOT/.bucket-*` files), so the bucket is a directory made
//! before the server starts and [`S3Server::object_file`] names where an object lies.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The version tests/run.sh installs.
pub const S3S_FS_VERSION: &str = "0.14.1";

/// How long the server may take to start and answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `s3s-fs`; killed on drop.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    root: tempfile::TempDir,
    child: Child,
    /// Kills the server and removes its root if the test process dies without dropping
    /// it (a server shared by a whole test binary lives in a static, never dropped).
    _watchdog: super::pg::Watchdog,
}

/// The `s3s-fs` binary: `$S3S_FS_BIN`, else `s3s-fs` on PATH, else in cargo's bin directory.
pub fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("S3S_FS_BIN") {
        return PathBuf::from(bin);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("s3s-fs"))
        .find(|bin| bin.is_file());
    let cargo_home =
        std::env::var_os("CARGO_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    let in_cargo_home = cargo_home.map(|dir| dir.join("bin/s3s-fs")).filter(|bin| bin.is_file());
    on_path.or(in_cargo_home).unwrap_or_else(|| {
        panic!(
            "s3s-fs not found (set S3S_FS_BIN, or run tests/run.sh, which installs it: \
             cargo install --locked s3s-fs --version {S3S_FS_VERSION} --features binary)"
        )
    })
}

impl S3Server {
    /// Starts a server with bucket `drscreen-test` and waits until it answers HTTP.
    pub fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        let bucket = "drscreen-test".to_string();
        std::fs::create_dir(root.path().join(&bucket)).unwrap();
        let (access_key, secret_key) = ("drscreen-test-key".to_string(), "drscreen-test-secret".to_string());
        let bin = binary();
        let mut child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", "0", "--access-key", &access_key, "--secret-key", &secret_key])
            .arg(root.path())
            // It logs "server is running at http://ADDR" (at info) once it listens.
            .env("RUST_LOG", "s3s_fs=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", bin.display()));
        // One thread reads its log to the end (a full pipe would stall the server):
        // it sends the address, then drains.
        let stdout = child.stdout.take().unwrap();
        let (found, address) = mpsc::channel();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut found = Some(found);
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(tx) = &found {
                    if let Some((_, addr)) = line.split_once("server is running at ") {
                        let _ = tx.send(Ok(addr.trim().to_string()));
                        found = None;
                    } else {
                        seen.push(line);
                    }
                }
            }
            if let Some(tx) = found {
                let _ = tx.send(Err(seen.join("\n")));
            }
        });
        let endpoint = match address.recv_timeout(START_TIMEOUT) {
            Ok(Ok(endpoint)) => endpoint,
            Ok(Err(log)) => {
                let status = child.wait().unwrap();
                panic!("s3s-fs exited ({status}) before it listened; its log:\n{log}");
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("s3s-fs did not report its address within {START_TIMEOUT:?}");
            }
        };
        let cleanup = format!("kill -9 {}; rm -rf {}", child.id(), super::pg::quote(&root.path().display().to_string()));
        let _watchdog = super::pg::Watchdog::spawn(&cleanup);
        let server = Self { endpoint, bucket, region: "us-east-1".into(), access_key, secret_key, root, child, _watchdog };
        server.wait_until_answering();
        server
    }

    /// Any HTTP answer (an anonymous request is refused) means it is serving.
    fn wait_until_answering(&self) {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match client.get(&self.endpoint).send() {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => panic!("s3s-fs at {} does not answer: {e}", self.endpoint),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The `AWS_*` variables a client needs (for `BlobStore::open_with_env`).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", &self.endpoint),
            ("AWS_REGION", &self.region),
            ("AWS_ACCESS_KEY_ID", &self.access_key),
            ("AWS_SECRET_ACCESS_KEY", &self.secret_key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
    }

    /// `s3://BUCKET/PREFIX` (`s3://BUCKET` for an empty prefix).
    pub fn url(&self, prefix: &str) -> String {
        if prefix.is_empty() { format!("s3://{}", self.bucket) } else { format!("s3://{}/{prefix}", self.bucket) }
    }

    /// The server's data directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The file that holds object `key` of the bucket.
    pub fn object_file(&self, key: &str) -> PathBuf {
        self.root.path().join(&self.bucket).join(key)
    }

    /// The process id (to signal it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server (SIGKILL) and reaps it; later requests find nothing listening.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}
