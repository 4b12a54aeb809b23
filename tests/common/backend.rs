//! Which store the suites run against, chosen once per run by `DRSCREEN_TEST_BACKEND`:
//! - unset or `embedded`: SQLite + image files in each test's data directory (the default
//!   a single machine uses);
//! - `cluster`: PostgreSQL (one throwaway cluster per test binary, a fresh database per
//!   server or store) + S3-compatible object storage (a real server per test binary, a
//!   fresh prefix per server or store), as replicas use.
//!
//! `tests/run.sh` runs the store, serve, review and DICOM suites once per backend: the same
//! tests, not copies. [`StoreTarget`] is what one server or in-process app is given.

use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::pg::PgCluster;

/// The store backends a suite can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Cluster,
}

/// The backend this run uses.
pub fn selected() -> Backend {
    match std::env::var("DRSCREEN_TEST_BACKEND").as_deref() {
        Ok("cluster") => Backend::Cluster,
        Ok("") | Ok("embedded") | Err(_) => Backend::Embedded,
        Ok(other) => panic!("DRSCREEN_TEST_BACKEND={other}: expected embedded or cluster"),
    }
}

/// The PostgreSQL cluster shared by this test binary (started on first use; its watchdog
/// stops it when the test process ends).
pub fn postgres() -> &'static PgCluster {
    static PG: OnceLock<PgCluster> = OnceLock::new();
    PG.get_or_init(PgCluster::start)
}

/// A fresh, empty database in the shared cluster; returns its URL.
pub fn fresh_database() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    postgres().create_database(&format!("t{}_{n}", std::process::id()))
}

/// Where one server or app keeps its data: the flags and environment to start
/// `drscreen` with, beyond `--data-dir`.
#[derive(Debug, Clone, Default)]
pub struct StoreTarget {
    pub database_url: Option<String>,
    pub object_store_url: Option<String>,
    pub env: Vec<(String, String)>,
}

impl StoreTarget {
    /// A fresh store on the selected backend.
    pub fn fresh() -> Self {
        match selected() {
            Backend::Embedded => Self::default(),
            Backend::Cluster => Self::cluster(),
        }
    }

    /// A fresh PostgreSQL database (and S3 prefix, where available), whatever the
    /// selected backend: for the replica scenarios.
    pub fn cluster() -> Self {
        let mut target = Self { database_url: Some(fresh_database()), ..Self::default() };
        target.add_object_store();
        target
    }

    /// Flags for `drscreen` (placed before the subcommand).
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(url) = &self.database_url {
            args.extend(["--database-url".to_string(), url.clone()]);
        }
        if let Some(url) = &self.object_store_url {
            args.extend(["--object-store-url".to_string(), url.clone()]);
        }
        args
    }

    /// Applies flags and environment to a `drscreen` command.
    pub fn apply(&self, cmd: &mut std::process::Command) {
        cmd.args(self.args());
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }

    /// Opens this target in-process (migrations applied).
    pub fn open(&self, data_dir: &Path) -> drscreen::store::Store {
        let mut config = drscreen::config::Config { data_dir: data_dir.to_path_buf(), ..Default::default() };
        config.database_url = self.database_url.as_ref().map(|u| u.parse().expect("test database URL parses"));
        self.open_config(&config)
    }
}

impl StoreTarget {
    /// The target for a data directory: the same directory always gets the same store,
    /// so a test that restarts a server on its directory finds its data again.
    pub fn for_data_dir(data_dir: &Path) -> Self {
        use std::collections::HashMap;
        use std::sync::Mutex;
        static TARGETS: OnceLock<Mutex<HashMap<std::path::PathBuf, StoreTarget>>> = OnceLock::new();
        let mut targets = TARGETS.get_or_init(Default::default).lock().unwrap();
        targets.entry(data_dir.to_path_buf()).or_insert_with(Self::fresh).clone()
    }

    /// Rows of a query against this target's database (or `data_dir`'s SQLite file), each
    /// column as text (NULL as ""): for tests that check what was stored.
    pub fn query(&self, data_dir: &Path, sql: &str) -> Vec<Vec<String>> {
        self.try_sql(data_dir, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs a statement; the database's error text when it refuses.
    pub fn try_sql(&self, data_dir: &Path, sql: &str) -> Result<Vec<Vec<String>>, String> {
        match &self.database_url {
            None => {
                let db = rusqlite::Connection::open(data_dir.join("drscreen.sqlite3")).map_err(|e| e.to_string())?;
                let mut stmt = db.prepare(sql).map_err(|e| e.to_string())?;
                let n = stmt.column_count();
                let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
                let mut out = Vec::new();
                while let Some(row) = rows.next().map_err(|e| e.to_string())? {
                    out.push(
                        (0..n)
                            .map(|i| match row.get_ref(i).unwrap() {
                                rusqlite::types::ValueRef::Null => String::new(),
                                rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                                rusqlite::types::ValueRef::Real(v) => v.to_string(),
                                rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                                rusqlite::types::ValueRef::Blob(b) => hex::encode(b),
                            })
                            .collect(),
                    );
                }
                Ok(out)
            }
            Some(url) => {
                // psql takes the URL as its database: the target's own cluster, whichever.
                let psql = super::pg::bindir().join("psql");
                let out = std::process::Command::new(psql)
                    .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-F", "\t", "-d", url, "-c", sql])
                    .env("PGCONNECT_TIMEOUT", "10")
                    .output()
                    .map_err(|e| e.to_string())?;
                if !out.status.success() {
                    return Err(String::from_utf8_lossy(&out.stderr).into_owned());
                }
                Ok(String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split('\t').map(str::to_string).collect()).collect())
            }
        }
    }
}

impl StoreTarget {
    /// Adds the cluster backend's object store: a fresh prefix in the bucket of the S3
    /// server this test binary shares.
    fn add_object_store(&mut self) {
        static S3: OnceLock<super::s3::S3Server> = OnceLock::new();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let s3 = S3.get_or_init(super::s3::S3Server::start);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        self.object_store_url = Some(s3.url(&format!("t{}-{n}", std::process::id())));
        self.env = s3.env().into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    }

    /// In-process stores use the database of the target and local image files: the S3
    /// settings travel as environment, which a multi-threaded test cannot set safely; the
    /// server processes exercise S3.
    fn open_config(&self, config: &drscreen::config::Config) -> drscreen::store::Store {
        drscreen::store::Store::connect(&config.database(), &config.objects(), true).expect("store opens")
    }
}
