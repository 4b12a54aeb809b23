//! The image (blob) store: originals, content-addressed by the sha256 of their bytes, in
//! one of two backends chosen by an [`ObjectStoreUrl`]:
//!
//! * `file://DIR`: files `DIR/ab/<sha256>`, each written to a temporary file, fsynced,
//!   renamed into place and its directory fsynced before [`BlobStore::put`] returns, so
//!   the database row that references a blob is only ever committed after the blob is
//!   durable.
//! * `s3://BUCKET/PREFIX`: objects `PREFIX/ab/<sha256>` in S3 or an S3-compatible server,
//!   through the `object_store` crate; a PUT is durable once S3 answers it (and its
//!   payload is signed, so the server checks the body's sha256 before it stores it).
//!
//! The API is blocking: the store is called from `spawn_blocking` threads and plain
//! threads, never on an async worker. The S3 backend drives `object_store`'s futures on
//! a small runtime of its own.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use sha2::Digest;

const USAGE: &str = "use file://DIR or s3://BUCKET/PREFIX (the prefix is optional)";

/// Where originals live: `file://DIR` or `s3://BUCKET/PREFIX` (prefix optional). A
/// string in a config file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ObjectStoreUrl {
    /// A directory (absolute as `file:///var/lib/drscreen/images`, or relative to the
    /// working directory as `file://data/images`).
    File(PathBuf),
    /// A bucket and a key prefix without leading or trailing `/` (empty: the bucket's root).
    S3 { bucket: String, prefix: String },
}

impl FromStr for ObjectStoreUrl {
    type Err = BlobError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |why: String| BlobError::Invalid(format!("object store URL `{s}`: {why}"));
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(invalid(format!("not a URL; {USAGE}")));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                if rest.is_empty() {
                    return Err(invalid("no directory after file://, e.g. file:///var/lib/drscreen/images".into()));
                }
                if rest.contains(['?', '#']) {
                    return Err(invalid("a file:// URL takes a directory only, no `?` or `#`".into()));
                }
                Ok(Self::File(PathBuf::from(rest)))
            }
            "s3" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(invalid("no bucket after s3://, e.g. s3://drscreen-images/originals".into()));
                }
                if bucket.contains('@') {
                    return Err(invalid("credentials do not belong in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into()));
                }
                check_bucket(bucket).map_err(|why| invalid(format!("bucket `{bucket}` {why}")))?;
                let prefix = prefix.trim_end_matches('/');
                check_prefix(prefix).map_err(|why| invalid(format!("prefix `{prefix}` {why}")))?;
                Ok(Self::S3 { bucket: bucket.to_string(), prefix: prefix.to_string() })
            }
            _ => Err(invalid(format!("unsupported scheme `{scheme}://`; {USAGE}"))),
        }
    }
}

impl TryFrom<String> for ObjectStoreUrl {
    type Error = BlobError;
    fn try_from(s: String) -> Result<Self, BlobError> {
        s.parse()
    }
}

impl From<ObjectStoreUrl> for String {
    fn from(u: ObjectStoreUrl) -> String {
        u.to_string()
    }
}

impl fmt::Display for ObjectStoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(dir) => write!(f, "file://{}", dir.display()),
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// S3's bucket naming rules (general purpose buckets), which S3-compatible servers share.
fn check_bucket(bucket: &str) -> Result<(), &'static str> {
    if !(3..=63).contains(&bucket.len()) {
        return Err("must be 3 to 63 characters long");
    }
    if !bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-') {
        return Err("may hold only lowercase letters, digits, `.` and `-`");
    }
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if !alnum(bucket.bytes().next()) || !alnum(bucket.bytes().last()) {
        return Err("must begin and end with a letter or digit");
    }
    if bucket.contains("..") {
        return Err("must not hold two adjacent dots");
    }
    Ok(())
}

/// A key prefix: `/`-separated segments of safe characters, none empty, `.` or `..`.
fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.is_empty() {
        return Ok(());
    }
    for segment in prefix.split('/') {
        if segment.is_empty() {
            return Err("must not hold an empty segment (a leading `/` or `//`)");
        }
        if segment == "." || segment == ".." {
            return Err("must not hold a `.` or `..` segment");
        }
        if !segment.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.=+".contains(&b)) {
            return Err("may hold only letters, digits, `-`, `_`, `.`, `=`, `+` and `/`");
        }
    }
    Ok(())
}

/// Blob store failures.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No blob with this sha256 is stored.
    #[error("no stored blob with sha256 {0}")]
    NotFound(String),
    /// The storage did not answer in time, could not be reached, or answered with a
    /// server error (5xx, throttling): worth retrying later.
    #[error("blob storage unavailable: {0}")]
    Unavailable(String),
    /// Any other storage failure (a local I/O error, or a request the server refused).
    #[error("blob storage error on {location}: {source}")]
    Io { location: String, source: std::io::Error },
    /// A bad argument: a malformed sha256, URL or configuration.
    #[error("{0}")]
    Invalid(String),
}

impl BlobError {
    /// Whether the same call may succeed later ([`BlobError::Unavailable`]).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// One stored blob, as [`BlobStore::list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub sha256: String,
    pub size: u64,
    pub last_modified: SystemTime,
}

/// The image store. Cheap to clone (clones share one backend).
#[derive(Clone)]
pub struct BlobStore {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    File(Arc<PathBuf>),
    S3(Arc<S3Backend>),
}

impl fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BlobStore").field(&self.describe()).finish()
    }
}

/// A sha256 as 64 lowercase hex digits.
fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn validate_sha(sha256: &str) -> Result<(), BlobError> {
    if is_sha256_hex(sha256) {
        Ok(())
    } else {
        Err(BlobError::Invalid("bad content address: a blob is named by 64 lowercase hex digits (its sha256)".into()))
    }
}

impl BlobStore {
    /// Connect timeout of one S3 request.
    pub const S3_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Timeout of one S3 request, body included.
    pub const S3_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// Retries of one S3 operation after a connection error, a timeout or a 5xx.
    pub const S3_MAX_RETRIES: usize = 3;
    /// No retry is started after this long since an operation's first attempt.
    pub const S3_RETRY_TIMEOUT: Duration = Duration::from_secs(10);
    /// Bound on [`BlobStore::check`] as a whole (it backs `/readyz`).
    pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

    /// Whether `s` is a well-formed blob name: a sha256 as 64 lowercase hex digits.
    pub fn is_sha256_hex(s: &str) -> bool {
        is_sha256_hex(s)
    }

    /// Opens the store `url` names; for S3 with the `AWS_*` variables of this process's
    /// environment (see [`BlobStore::open_with_env`]).
    pub fn open(url: &ObjectStoreUrl) -> Result<Self, BlobError> {
        let env = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        Self::open_with_env(url, env)
    }

    /// Opens the store `url` names. A file store's directory is created when missing.
    /// An S3 store is configured from `env` as `AmazonS3Builder::from_env` would read the
    /// process environment: every `AWS_*` pair `object_store` knows (others are ignored),
    /// e.g. `AWS_ENDPOINT_URL` (an S3-compatible server; absent: AWS itself),
    /// `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
    /// or no keys at all for instance, container or web-identity credentials. On top:
    /// plain HTTP is allowed when the endpoint is `http://`; requests are path-style with
    /// an endpoint (what generic S3 servers expect) and virtual-hosted-style on AWS
    /// (`AWS_VIRTUAL_HOSTED_STYLE_REQUEST` overrides either); timeouts and retries are
    /// bounded ([`BlobStore::S3_CONNECT_TIMEOUT`], [`BlobStore::S3_REQUEST_TIMEOUT`], [`BlobStore::S3_MAX_RETRIES`],
    /// [`BlobStore::S3_RETRY_TIMEOUT`]; `AWS_TIMEOUT`/`AWS_CONNECT_TIMEOUT` override the first two).
    /// Opening contacts nothing: [`BlobStore::check`] does.
    pub fn open_with_env<I, K, V>(url: &ObjectStoreUrl, env: I) -> Result<Self, BlobError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        match url {
            ObjectStoreUrl::File(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| BlobError::Io { location: dir.display().to_string(), source })?;
                Ok(Self { backend: Backend::File(Arc::new(dir.clone())) })
            }
            ObjectStoreUrl::S3 { bucket, prefix } => {
                let backend = S3Backend::open(bucket, prefix, env)?;
                Ok(Self { backend: Backend::S3(Arc::new(backend)) })
            }
        }
    }

    /// Stores `bytes` content-addressed and durably (when this returns `Ok`, the blob
    /// survives a crash or power loss); returns their sha256. Storing the same bytes
    /// again is harmless and returns the same sha256.
    pub fn put(&self, bytes: &[u8]) -> Result<String, BlobError> {
        let sha = hex::encode(sha2::Sha256::digest(bytes));
        match &self.backend {
            Backend::File(dir) => file_put(dir, &sha, bytes)?,
            Backend::S3(s3) => s3.put(&sha, bytes)?,
        }
        Ok(sha)
    }

    /// Reads a stored blob. A malformed `sha256` is [`BlobError::Invalid`] without any
    /// storage access; a well-formed one not stored is [`BlobError::NotFound`].
    pub fn get(&self, sha256: &str) -> Result<Vec<u8>, BlobError> {
        validate_sha(sha256)?;
        match &self.backend {
            Backend::File(dir) => {
                let path = file_path(dir, sha256);
                std::fs::read(&path).map_err(|source| match source.kind() {
                    std::io::ErrorKind::NotFound => BlobError::NotFound(sha256.to_string()),
                    _ => BlobError::Io { location: path.display().to_string(), source },
                })
            }
            Backend::S3(s3) => s3.get(sha256),
        }
    }

    /// Deletes a stored blob; deleting one that is not stored is not an error (S3 cannot
    /// tell the two apart without another request).
    pub fn delete(&self, sha256: &str) -> Result<(), BlobError> {
        validate_sha(sha256)?;
        match &self.backend {
            Backend::File(dir) => {
                let path = file_path(dir, sha256);
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(source) => Err(BlobError::Io { location: path.display().to_string(), source }),
                }
            }
            Backend::S3(s3) => s3.delete(sha256),
        }
    }

    /// Every stored blob, sorted by sha256 (for `drscreen gc`). Anything else under the
    /// store (keys that are not `<2 hex>/<64 hex>` with matching first two digits,
    /// temporary files) is left out.
    pub fn list(&self) -> Result<Vec<BlobInfo>, BlobError> {
        let mut blobs = match &self.backend {
            Backend::File(dir) => file_list(dir)?,
            Backend::S3(s3) => s3.list()?,
        };
        blobs.sort_by(|a, b| a.sha256.cmp(&b.sha256));
        Ok(blobs)
    }

    /// A cheap reachability probe (for `/readyz`): the directory exists and takes a new
    /// file; the bucket answers a one-key list with these credentials. Bounded by
    /// [`BlobStore::CHECK_TIMEOUT`].
    pub fn check(&self) -> Result<(), BlobError> {
        match &self.backend {
            Backend::File(dir) => file_check(dir),
            Backend::S3(s3) => s3.check(),
        }
    }

    /// The store for logs, without credentials: `file:///x/images` or `s3://bucket/prefix`.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::File(dir) => ObjectStoreUrl::File(dir.to_path_buf()).to_string(),
            Backend::S3(s3) => ObjectStoreUrl::S3 { bucket: s3.bucket.clone(), prefix: s3.prefix.clone() }.to_string(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The file backend.

fn file_path(dir: &Path, sha256: &str) -> PathBuf {
    dir.join(&sha256[..2]).join(sha256)
}

fn random_suffix() -> Result<String, BlobError> {
    let mut buf = [0u8; 4];
    getrandom::fill(&mut buf).map_err(|e| BlobError::Invalid(format!("no randomness: {e}")))?;
    Ok(hex::encode(buf))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}

fn file_put(dir: &Path, sha: &str, bytes: &[u8]) -> Result<(), BlobError> {
    let path = file_path(dir, sha);
    if path.is_file() {
        // Already stored: refresh its time so `drscreen gc`, which spares recent objects,
        // cannot remove it between this put and the commit that references it again.
        let now = std::time::SystemTime::now();
        return std::fs::File::options()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_modified(now))
            .map_err(|source| BlobError::Io { location: path.display().to_string(), source });
    }
    let shard = path.parent().unwrap_or(dir).to_path_buf();
    let io = |source| BlobError::Io { location: path.display().to_string(), source };
    if !shard.is_dir() {
        std::fs::create_dir_all(&shard).map_err(io)?;
        // The new shard directory's own entry must be durable too.
        sync_dir(dir).map_err(io)?;
    }
    let tmp = shard.join(format!("{sha}.tmp-{}", random_suffix()?));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    sync_dir(&shard).map_err(io)
}

fn file_list(dir: &Path) -> Result<Vec<BlobInfo>, BlobError> {
    let io = |path: &Path| {
        let location = path.display().to_string();
        move |source| BlobError::Io { location, source }
    };
    let mut blobs = Vec::new();
    for shard in std::fs::read_dir(dir).map_err(io(dir))? {
        let shard = shard.map_err(io(dir))?;
        let name = shard.file_name();
        let Some(prefix) = name.to_str().filter(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit())) else {
            continue;
        };
        if !shard.file_type().map_err(io(&shard.path()))?.is_dir() {
            continue;
        }
        let shard_path = shard.path();
        for entry in std::fs::read_dir(&shard_path).map_err(io(&shard_path))? {
            let entry = entry.map_err(io(&shard_path))?;
            let name = entry.file_name();
            let Some(sha) = name.to_str().filter(|n| is_sha256_hex(n) && n.starts_with(prefix)) else {
                continue;
            };
            let meta = entry.metadata().map_err(io(&entry.path()))?;
            if !meta.is_file() {
                continue;
            }
            let last_modified = meta.modified().map_err(io(&entry.path()))?;
            blobs.push(BlobInfo { sha256: sha.to_string(), size: meta.len(), last_modified });
        }
    }
    Ok(blobs)
}

fn file_check(dir: &Path) -> Result<(), BlobError> {
    let io = |source| BlobError::Io { location: dir.display().to_string(), source };
    if !dir.is_dir() {
        return Err(io(std::io::Error::new(std::io::ErrorKind::NotFound, "the image directory is missing")));
    }
    let probe = dir.join(format!(".probe-{}", random_suffix()?));
    std::fs::OpenOptions::new().write(true).create_new(true).open(&probe).map_err(io)?;
    std::fs::remove_file(&probe).map_err(io)
}

// ---------------------------------------------------------------------------------------
// The S3 backend.

struct S3Backend {
    store: AmazonS3,
    bucket: String,
    prefix: String,
    /// `Some` until drop, where it is shut down in the background: dropping a runtime
    /// in an async context would panic.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for S3Backend {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl S3Backend {
    fn open<I, K, V>(bucket: &str, prefix: &str, env: I) -> Result<Self, BlobError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let options = ClientOptions::new().with_connect_timeout(BlobStore::S3_CONNECT_TIMEOUT).with_timeout(BlobStore::S3_REQUEST_TIMEOUT);
        let retry = RetryConfig {
            backoff: BackoffConfig { init_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(2), base: 2.0 },
            max_retries: BlobStore::S3_MAX_RETRIES,
            retry_timeout: BlobStore::S3_RETRY_TIMEOUT,
        };
        let mut builder = AmazonS3Builder::new().with_client_options(options).with_retry(retry);
        let (mut allow_http_set, mut virtual_hosted_set) = (false, false);
        // What `AmazonS3Builder::from_env` does, over `env` instead of the process's.
        for (key, value) in env {
            let key = key.as_ref();
            if !key.starts_with("AWS_") {
                continue;
            }
            let Ok(config_key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() else {
                continue;
            };
            allow_http_set |= key == "AWS_ALLOW_HTTP";
            virtual_hosted_set |= matches!(config_key, AmazonS3ConfigKey::VirtualHostedStyleRequest);
            builder = builder.with_config(config_key, value);
        }
        builder = builder.with_bucket_name(bucket);
        let endpoint =
            builder.get_config_value(&AmazonS3ConfigKey::S3Endpoint).or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint));
        if !allow_http_set && endpoint.as_deref().is_some_and(|e| e.to_ascii_lowercase().starts_with("http://")) {
            builder = builder.with_allow_http(true);
        }
        if !virtual_hosted_set {
            // Path-style for a generic endpoint; virtual-hosted on AWS, except for
            // dotted bucket names (which break the TLS wildcard certificate).
            builder = builder.with_virtual_hosted_style_request(endpoint.is_none() && !bucket.contains('.'));
        }
        let store = builder.build().map_err(|e| BlobError::Invalid(format!("S3 store s3://{bucket}: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("blobs-s3")
            .enable_all()
            .build()
            .map_err(|source| BlobError::Io { location: "the S3 client's runtime".into(), source })?;
        Ok(Self { store, bucket: bucket.to_string(), prefix: prefix.to_string(), runtime: Some(runtime) })
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.as_ref().expect("the runtime lives until drop").block_on(future)
    }

    fn key(&self, sha256: &str) -> ObjectPath {
        let shard = &sha256[..2];
        if self.prefix.is_empty() {
            ObjectPath::from(format!("{shard}/{sha256}"))
        } else {
            ObjectPath::from(format!("{}/{shard}/{sha256}", self.prefix))
        }
    }

    fn location(&self, key: &ObjectPath) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    fn put(&self, sha256: &str, bytes: &[u8]) -> Result<(), BlobError> {
        let key = self.key(sha256);
        let payload = PutPayload::from(bytes::Bytes::copy_from_slice(bytes));
        // A 404 here is a missing bucket, not a missing blob.
        self.block_on(self.store.put(&key, payload)).map_err(|e| self.error("put", &key, None, e))?;
        Ok(())
    }

    fn get(&self, sha256: &str) -> Result<Vec<u8>, BlobError> {
        let key = self.key(sha256);
        let bytes =
            self.block_on(async { self.store.get(&key).await?.bytes().await }).map_err(|e| self.error("get", &key, Some(sha256), e))?;
        Ok(bytes.to_vec())
    }

    fn delete(&self, sha256: &str) -> Result<(), BlobError> {
        let key = self.key(sha256);
        // S3 answers 204 for a missing key; a 404 is a missing bucket.
        self.block_on(self.store.delete(&key)).map_err(|e| self.error("delete", &key, None, e))
    }

    fn list(&self) -> Result<Vec<BlobInfo>, BlobError> {
        use futures_util::TryStreamExt;
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        let key = prefix.clone().unwrap_or_default();
        let objects =
            self.block_on(self.store.list(prefix.as_ref()).try_collect::<Vec<_>>()).map_err(|e| self.error("list", &key, None, e))?;
        let mut blobs = Vec::new();
        for meta in objects {
            let parts: Vec<_> = match &prefix {
                Some(prefix) => match meta.location.prefix_match(prefix) {
                    Some(parts) => parts.collect(),
                    None => continue,
                },
                None => meta.location.parts().collect(),
            };
            let [shard, name] = parts.as_slice() else { continue };
            let (shard, name) = (shard.as_ref(), name.as_ref());
            if shard.len() == 2 && is_sha256_hex(name) && name.starts_with(shard) {
                blobs.push(BlobInfo { sha256: name.to_string(), size: meta.size, last_modified: meta.last_modified.into() });
            }
        }
        Ok(blobs)
    }

    fn check(&self) -> Result<(), BlobError> {
        let prefix = (!self.prefix.is_empty()).then(|| format!("{}/", self.prefix));
        let options = PaginatedListOptions { max_keys: Some(1), ..Default::default() };
        // The timer is made inside the runtime (it needs its time driver).
        let probe = async { tokio::time::timeout(BlobStore::CHECK_TIMEOUT, self.store.list_paginated(prefix.as_deref(), options)).await };
        let key = ObjectPath::from(self.prefix.as_str());
        match self.block_on(probe) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.error("check", &key, None, e)),
            Err(_) => {
                Err(BlobError::Unavailable(format!("check {}: no answer within {:?}", self.location(&key), BlobStore::CHECK_TIMEOUT)))
            }
        }
    }

    /// Maps an `object_store` error: the blob `missing` not found (when a 404 means
    /// that: a missing bucket is also a 404), retryable (connection errors, timeouts,
    /// 5xx, 429, 408) or any other failure.
    fn error(&self, op: &str, key: &ObjectPath, missing: Option<&str>, e: object_store::Error) -> BlobError {
        let location = self.location(key);
        if let (object_store::Error::NotFound { .. }, Some(sha256)) = (&e, missing)
            && !e.to_string().contains("NoSuchBucket")
        {
            BlobError::NotFound(sha256.to_string())
        } else if is_retryable(&e) {
            BlobError::Unavailable(format!("{op} {location}: {e}"))
        } else {
            BlobError::Io { location, source: std::io::Error::other(format!("{op}: {e}")) }
        }
    }
}

/// Whether an `object_store` error is worth retrying: a transport failure (connect,
/// request, timeout, interrupted) anywhere in its source chain, or an HTTP status of 5xx,
/// 429 or 408. `object_store` does not export its retry error's status, so the status
/// is read from the message it formats ("Server returned non-2xx status code: 503 ...").
fn is_retryable(e: &object_store::Error) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    if !matches!(e, object_store::Error::Generic { .. }) {
        return false;
    }
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = current {
        if let Some(http) = error.downcast_ref::<HttpError>() {
            return !matches!(http.kind(), HttpErrorKind::Decode);
        }
        current = error.source();
    }
    let message = e.to_string();
    if message.contains("Server returned error response") {
        // S3's InternalError or SlowDown in the body of a 200.
        return true;
    }
    let status = message.split_once("status code: ").and_then(|(_, rest)| rest.get(..3)).and_then(|code| code.parse::<u16>().ok());
    matches!(status, Some(500..=599 | 429 | 408))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ObjectStoreUrl, String> {
        s.parse::<ObjectStoreUrl>().map_err(|e| e.to_string())
    }

    fn s3(bucket: &str, prefix: &str) -> ObjectStoreUrl {
        ObjectStoreUrl::S3 { bucket: bucket.into(), prefix: prefix.into() }
    }

    #[test]
    fn parses_file_urls() {
        assert_eq!(parse("file:///var/lib/drscreen/images"), Ok(ObjectStoreUrl::File("/var/lib/drscreen/images".into())));
        assert_eq!(parse("file://data/images"), Ok(ObjectStoreUrl::File("data/images".into())));
        assert_eq!(parse("FILE:///x"), Ok(ObjectStoreUrl::File("/x".into())));
    }

    #[test]
    fn parses_s3_urls() {
        assert_eq!(parse("s3://bucket"), Ok(s3("bucket", "")));
        assert_eq!(parse("s3://bucket/"), Ok(s3("bucket", "")));
        assert_eq!(parse("s3://my.bucket-1/originals"), Ok(s3("my.bucket-1", "originals")));
        assert_eq!(parse("s3://bucket/a/b_c/d=1/"), Ok(s3("bucket", "a/b_c/d=1")));
    }

    #[test]
    fn rejects_bad_urls_with_reasons() {
        let cases = [
            ("/var/lib/images", "not a URL"),
            ("", "not a URL"),
            ("http://host/bucket", "unsupported scheme `http://`"),
            ("gs://bucket", "unsupported scheme `gs://`"),
            ("file://", "no directory after file://"),
            ("file:///x?y", "no `?` or `#`"),
            ("s3://", "no bucket after s3://"),
            ("s3:///prefix", "no bucket after s3://"),
            ("s3://ab", "3 to 63 characters"),
            (&format!("s3://{}", "a".repeat(64)), "3 to 63 characters"),
            ("s3://My_Bucket", "only lowercase letters"),
            ("s3://-bucket", "begin and end with a letter or digit"),
            ("s3://bucket.", "begin and end with a letter or digit"),
            ("s3://a..b", "two adjacent dots"),
            ("s3://key:secret@bucket/p", "credentials do not belong in the URL"),
            ("s3://bucket//p", "empty segment"),
            ("s3://bucket/a//b", "empty segment"),
            ("s3://bucket/a/../b", "`.` or `..` segment"),
            ("s3://bucket/a b", "may hold only letters"),
            ("s3://bucket/p?x=1", "may hold only letters"),
        ];
        for (url, why) in cases {
            let error = parse(url).expect_err(url);
            assert!(error.contains(why), "{url}: {error}");
            assert!(error.contains(&format!("`{url}`")), "{url}: the message names the URL: {error}");
        }
    }

    #[test]
    fn display_round_trips() {
        for url in ["file:///var/lib/drscreen/images", "file://data/images", "s3://bucket", "s3://bucket/a/b"] {
            let parsed: ObjectStoreUrl = url.parse().unwrap();
            assert_eq!(parsed.to_string(), url);
            assert_eq!(parsed.to_string().parse::<ObjectStoreUrl>().unwrap(), parsed);
        }
        for url in [ObjectStoreUrl::File("/x/images".into()), s3("bucket", ""), s3("bucket", "p/q")] {
            assert_eq!(url.to_string().parse::<ObjectStoreUrl>().unwrap(), url);
        }
        // A trailing slash is dropped, and the result still parses to the same value.
        let parsed: ObjectStoreUrl = "s3://bucket/p/".parse().unwrap();
        assert_eq!(parsed.to_string(), "s3://bucket/p");
    }

    #[test]
    fn sha256_format() {
        assert!(is_sha256_hex(&"ab".repeat(32)));
        assert!(!is_sha256_hex(&"AB".repeat(32)));
        assert!(!is_sha256_hex(&"ab".repeat(31)));
        assert!(!is_sha256_hex(&format!("{}g", "a".repeat(63))));
        assert!(!is_sha256_hex("../../etc/passwd"));
    }

    #[test]
    fn s3_store_opens_offline_and_describes_itself_without_credentials() {
        let url = s3("bucket", "originals");
        let env = [
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
            ("AWS_ACCESS_KEY_ID", "AKIDSECRETLOOKING"),
            ("AWS_SECRET_ACCESS_KEY", "very-secret"),
            ("AWS_REGION", "eu-north-1"),
            ("NOT_AWS", "ignored"),
        ];
        let store = BlobStore::open_with_env(&url, env).unwrap();
        assert_eq!(store.describe(), "s3://bucket/originals");
        let debug = format!("{store:?}");
        assert!(!debug.contains("secret") && !debug.contains("AKID"), "{debug}");
        assert!(matches!(store.get("nothex"), Err(BlobError::Invalid(_))));
        // Dropping it inside an async context must not panic.
        tokio::runtime::Runtime::new().unwrap().block_on(async move { drop(store) });
    }

    #[test]
    fn s3_incomplete_credentials_are_invalid() {
        let env = [("AWS_ACCESS_KEY_ID", "a")];
        let error = BlobStore::open_with_env(&s3("bucket", ""), env).unwrap_err();
        assert!(matches!(error, BlobError::Invalid(_)), "{error}");
        assert!(error.to_string().contains("s3://bucket"), "{error}");
    }

    #[test]
    fn file_store_round_trip_and_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&ObjectStoreUrl::File(dir.path().join("images"))).unwrap();
        let sha = store.put(b"fundus").unwrap();
        assert_eq!(sha, hex::encode(sha2::Sha256::digest(b"fundus")));
        assert!(dir.path().join("images").join(&sha[..2]).join(&sha).is_file());
        assert_eq!(store.get(&sha).unwrap(), b"fundus");
        store.check().unwrap();
        assert_eq!(store.list().unwrap().len(), 1, "the check's probe file is gone");
    }
}
