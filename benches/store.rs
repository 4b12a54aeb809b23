//! Exams committed per second by the store alone: each exam's two 2 MP originals stored
//! content-addressed (fresh bytes each time, so nothing is deduplicated), then its rows and
//! audit event committed in one transaction, as `POST /v1/exams` does after grading (the
//! images are already graded here: inference is not measured). Reported per exam.
//!
//! SQLite + files in a temporary directory by default. Set `STORE_BENCH_DATABASE_URL`
//! (`postgres://...`) and `STORE_BENCH_OBJECT_STORE_URL` (`s3://bucket/prefix`, with the
//! `AWS_*` variables) to measure the replicas' backend; `STORE_BENCH_CLIENTS` (default 8)
//! commits from that many threads at once, as concurrent uploads do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use drscreen::config::Config;
use drscreen::engine::Engine;
use drscreen::grading::{GradingPolicy, Laterality};
use drscreen::model::ModelPackage;
use drscreen::pipeline::Screener;
use drscreen::store::{NewExam, NewImage, Store, random_hex};

fn bench(c: &mut Criterion) {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = Config::default();
    let package = ModelPackage::load(&root.join("models/dr-synth")).expect("model package");
    let engine = Engine::start(&package, &config.runtime, config.limits, config.engine).expect("engine");
    let policy = GradingPolicy { thresholds: package.manifest.thresholds, quality: config.quality, recall_months: 12 };
    let screener = Screener::new(engine, policy);
    // One graded exam whose result every committed exam carries.
    let originals: Vec<Vec<u8>> =
        ["grade0_L.jpg", "grade3_R.jpg"].iter().map(|f| std::fs::read(root.join("fixtures").join(f)).expect("fixture")).collect();
    let findings: Vec<_> = originals
        .iter()
        .zip([Laterality::Left, Laterality::Right])
        .map(|(bytes, side)| screener.grade_blocking(bytes.clone(), side, None).expect("graded"))
        .collect();
    let result = screener.exam(findings.clone());

    let dir = tempfile::tempdir().expect("temporary directory");
    let mut settings = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    settings.database_url = env("STORE_BENCH_DATABASE_URL").map(|u| u.parse().expect("STORE_BENCH_DATABASE_URL"));
    settings.object_store_url = env("STORE_BENCH_OBJECT_STORE_URL").map(|u| u.parse().expect("STORE_BENCH_OBJECT_STORE_URL"));
    let store = Store::connect(&settings.database(), &settings.objects(), true).expect("store opens");
    let clients: usize = env("STORE_BENCH_CLIENTS").and_then(|v| v.parse().ok()).unwrap_or(8);
    let label = format!(
        "{}+{}",
        settings.database().to_string().split(':').next().unwrap_or("?"),
        settings.objects().to_string().split(':').next().unwrap_or("?")
    );
    println!("store: {} / {}, {clients} clients", settings.database(), settings.objects());

    let commit_one = {
        let (store, result, findings, originals) = (store.clone(), result.clone(), findings.clone(), Arc::new(originals));
        move || {
            let mut images = Vec::with_capacity(2);
            for (bytes, finding) in originals.iter().zip(&findings) {
                // A few fresh bytes after the JPEG's end: a new object per image, as real
                // photographs are, at the fixture's size.
                let mut unique = bytes.clone();
                unique.extend_from_slice(random_hex(8).expect("random").as_bytes());
                let sha = store.put_blob(&unique).expect("image stored");
                images.push(NewImage {
                    bytes_sha256: sha,
                    media_type: "image/jpeg".into(),
                    laterality: finding.laterality,
                    view: None,
                    finding: finding.clone(),
                    cam: vec![0.5; 16 * 16],
                    cam_shape: (16, 16),
                });
            }
            let exam = NewExam {
                id: random_hex(16).expect("random"),
                submitted_by: "bench".into(),
                external_exam_ref: None,
                patient_ref: Some("BENCH-1".into()),
                sectra_study_id: None,
                result: result.clone(),
                images,
            };
            store.insert_exam(&exam).expect("committed");
        }
    };
    let per_round = 64usize;
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(per_round as u64));
    group.sample_size(10);
    group.bench_function(format!("commit_exam_2x2mp/{label}/{clients}_clients"), |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for client in 0..clients {
                        let commit = commit_one.clone();
                        s.spawn(move || {
                            for _ in (client..per_round).step_by(clients) {
                                commit();
                            }
                        });
                    }
                });
                elapsed += start.elapsed();
            }
            elapsed
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
