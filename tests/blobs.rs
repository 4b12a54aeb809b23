//! The image store's two backends run one test body: a directory (`file://`) and a real
//! S3 server (`s3://`, s3s-fs from tests/common/s3.rs). Then what the S3 backend does
//! when the server is gone, hangs, or refuses the credentials: a typed error within its
//! timeouts, never a panic or a hang.

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::s3::S3Server;
use drscreen::store::{BlobError, BlobStore, ObjectStoreUrl};
use sha2::Digest;

fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn s3_store(server: &S3Server, prefix: &str) -> BlobStore {
    let url: ObjectStoreUrl = server.url(prefix).parse().unwrap();
    BlobStore::open_with_env(&url, server.env()).unwrap()
}

/// The behaviour both backends share. `raw` is the directory where the store's keys
/// lie as files (`<raw>/ab/<sha256>`), to check the layout and to plant foreign keys.
fn exercise(store: &BlobStore, raw: &Path) {
    let started = SystemTime::now() - Duration::from_secs(5);
    store.check().expect("the store is reachable");

    // Round trip: the name is the sha256, the layout `ab/<sha256>`.
    let photo = std::fs::read(common::fixture("grade0_R.jpg")).unwrap();
    let sha = store.put(&photo).unwrap();
    assert_eq!(sha, sha256(&photo));
    assert_eq!(std::fs::read(raw.join(&sha[..2]).join(&sha)).unwrap(), photo, "stored as <prefix>/ab/<sha256>");
    assert_eq!(store.get(&sha).unwrap(), photo);

    // Idempotent, also when several writers race on the same content.
    assert_eq!(store.put(&photo).unwrap(), sha);
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..4).map(|_| s.spawn(|| store.put(&photo).unwrap())).collect();
        for writer in writers {
            assert_eq!(writer.join().unwrap(), sha);
        }
    });
    assert_eq!(store.get(&sha).unwrap(), photo);
    let small = b"a second, small blob".to_vec();
    let small_sha = store.put(&small).unwrap();
    let empty_sha = store.put(b"").unwrap();
    assert_eq!(store.get(&empty_sha).unwrap(), b"");

    // A well-formed name not stored is NotFound; a malformed one is refused first.
    let missing = sha256(b"never stored");
    match store.get(&missing) {
        Err(BlobError::NotFound(name)) => assert_eq!(name, missing),
        other => panic!("get of a missing blob: {other:?}"),
    }
    for bad in ["", "abc", &sha.to_uppercase(), &format!("{}g", &sha[..63]), &format!("../{}", &sha[3..]), &format!("{sha}0")] {
        assert!(matches!(store.get(bad), Err(BlobError::Invalid(_))), "get {bad:?}");
        assert!(matches!(store.delete(bad), Err(BlobError::Invalid(_))), "delete {bad:?}");
    }

    // Foreign keys beside the blobs are not blobs.
    let foreign = [
        "README".to_string(),
        format!("{}/notes.txt", &sha[..2]),
        format!("{}/{}", &sha[..2], sha.to_uppercase()),
        format!("{}/{sha}.tmp-0a1b2c3d", &sha[..2]),
        format!("zz/{}", sha256(b"zz")),
        // A sha under the wrong shard.
        format!("{}/{}", if &missing[..2] == "00" { "01" } else { "00" }, missing),
        format!("{}/{}/{}", &sha[..2], &sha[..2], sha),
    ];
    for key in &foreign {
        let path = raw.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"not a blob").unwrap();
    }
    let listed = store.list().unwrap();
    let mut expected = vec![(sha.clone(), photo.len() as u64), (small_sha.clone(), small.len() as u64), (empty_sha.clone(), 0)];
    expected.sort();
    assert_eq!(listed.iter().map(|b| (b.sha256.clone(), b.size)).collect::<Vec<_>>(), expected, "{listed:#?}");
    let now = SystemTime::now() + Duration::from_secs(5);
    assert!(listed.iter().all(|b| (started..now).contains(&b.last_modified)), "{listed:#?}");

    // Delete: gone, listed no more, and deleting again is not an error.
    store.delete(&sha).unwrap();
    assert!(matches!(store.get(&sha), Err(BlobError::NotFound(_))));
    assert!(!store.list().unwrap().iter().any(|b| b.sha256 == sha));
    store.delete(&sha).unwrap();
    assert_eq!(store.get(&small_sha).unwrap(), small);
    // Stored again after a delete.
    assert_eq!(store.put(&photo).unwrap(), sha);
    assert_eq!(store.get(&sha).unwrap(), photo);
    store.check().unwrap();
}

#[test]
fn file_backend() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let url: ObjectStoreUrl = format!("file://{}", images.display()).parse().unwrap();
    let store = BlobStore::open(&url).unwrap();
    assert!(images.is_dir(), "open creates the directory");
    assert_eq!(store.describe(), format!("file://{}", images.display()));
    exercise(&store, &images);
    // No temporary files are left behind.
    for shard in std::fs::read_dir(&images).unwrap() {
        let shard = shard.unwrap().path();
        if shard.is_dir() {
            for entry in std::fs::read_dir(&shard).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                assert!(!name.contains(".tmp-") || name.ends_with(".tmp-0a1b2c3d"), "{name}");
            }
        }
    }
    // check() fails when the directory is gone.
    std::fs::remove_dir_all(&images).unwrap();
    assert!(matches!(store.check(), Err(BlobError::Io { .. })));
}

#[test]
fn s3_backend_with_a_prefix() {
    let server = S3Server::start();
    let store = s3_store(&server, "drscreen/originals");
    assert_eq!(store.describe(), format!("s3://{}/drscreen/originals", server.bucket));
    // A key that shares the prefix's characters but not its path is outside the store.
    let outside = server.object_file("drscreen/originals-old/ab/x");
    std::fs::create_dir_all(outside.parent().unwrap()).unwrap();
    std::fs::write(&outside, b"x").unwrap();
    exercise(&store, &server.object_file("drscreen/originals"));
}

#[test]
fn s3_backend_at_the_bucket_root() {
    let server = S3Server::start();
    let store = s3_store(&server, "");
    assert_eq!(store.describe(), format!("s3://{}", server.bucket));
    exercise(&store, &server.object_file(""));
}

#[test]
fn s3_backend_from_spawn_blocking_and_dropped_in_async_context() {
    let server = S3Server::start();
    let store = s3_store(&server, "p");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let sha = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.put(b"from a blocking thread")).await.unwrap().unwrap()
        };
        let read = {
            let store = store.clone();
            let sha = sha.clone();
            tokio::task::spawn_blocking(move || store.get(&sha)).await.unwrap().unwrap()
        };
        assert_eq!(read, b"from a blocking thread");
        // The last handle goes on an async worker: its runtime must not panic on drop.
        drop(store);
    });
}

#[test]
fn s3_errors_are_typed_and_bounded_when_the_server_is_gone() {
    let mut server = S3Server::start();
    let store = s3_store(&server, "p");
    let sha = store.put(b"stored before the outage").unwrap();
    server.kill();
    // Connection refused: a few quick retries, then Unavailable.
    let bound = BlobStore::S3_RETRY_TIMEOUT + BlobStore::S3_CONNECT_TIMEOUT;
    let started = Instant::now();
    let check = store.check();
    assert!(matches!(check, Err(BlobError::Unavailable(_))), "{check:?}");
    let put = store.put(b"written during the outage");
    assert!(matches!(put, Err(BlobError::Unavailable(_))), "{put:?}");
    let get = store.get(&sha);
    assert!(matches!(get, Err(BlobError::Unavailable(_))), "an unreachable store is not a missing blob: {get:?}");
    assert!(matches!(store.list(), Err(BlobError::Unavailable(_))));
    assert!(started.elapsed() < bound * 4, "took {:?}", started.elapsed());
    assert!(put.unwrap_err().is_retryable());
    let message = check.unwrap_err().to_string();
    assert!(!message.contains(&server.secret_key), "{message}");
}

#[test]
fn s3_check_is_bounded_when_the_server_hangs() {
    let server = S3Server::start();
    let store = s3_store(&server, "p");
    store.check().unwrap();
    // Stopped: the kernel still accepts connections, nothing answers.
    let stop = |signal: &str| {
        let status = std::process::Command::new("kill").args([signal, &server.pid().to_string()]).status().unwrap();
        assert!(status.success());
    };
    stop("-STOP");
    let started = Instant::now();
    let check = store.check();
    let elapsed = started.elapsed();
    stop("-CONT");
    assert!(matches!(check, Err(BlobError::Unavailable(_))), "{check:?}");
    assert!(elapsed < BlobStore::CHECK_TIMEOUT + Duration::from_secs(2), "took {elapsed:?}");
    store.check().expect("reachable again once the server resumes");
}

#[test]
fn s3_refused_credentials_and_a_missing_bucket_are_not_retryable() {
    let server = S3Server::start();
    let url: ObjectStoreUrl = server.url("p").parse().unwrap();
    let mut env = server.env();
    env.retain(|(k, _)| k != "AWS_SECRET_ACCESS_KEY");
    env.push(("AWS_SECRET_ACCESS_KEY".into(), "wrong-secret".into()));
    let store = BlobStore::open_with_env(&url, env).unwrap();
    let put = store.put(b"x");
    assert!(matches!(put, Err(BlobError::Io { .. })), "{put:?}");
    assert!(store.check().is_err());
    let message = format!("{:?}", put.unwrap_err());
    assert!(!message.contains("wrong-secret"), "{message}");

    let url: ObjectStoreUrl = "s3://no-such-bucket/p".parse().unwrap();
    let store = BlobStore::open_with_env(&url, server.env()).unwrap();
    let check = store.check();
    assert!(matches!(check, Err(BlobError::Io { .. })), "{check:?}");
    assert!(check.unwrap_err().to_string().contains("NoSuchBucket"));
    // S3 refuses objects in a missing bucket with NoSuchBucket (a 404, which put and get
    // do not take for a missing blob); s3s-fs does not check the bucket on PUT or GET (it
    // creates the directory, or answers NoSuchKey), so only the list is tested here.
}
