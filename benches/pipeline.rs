//! The in-process pipeline: decode + preprocess (rayon, all cores) + dynamic batching +
//! inference, measured as images per second over a stream of 2 MP fundus JPEGs.
//! Reported per image (criterion's throughput), so images/s = 1 / time.
//! `PIPELINE_PREPROCESS_THREADS`, `PIPELINE_INTRA_THREADS` and `PIPELINE_MAX_BATCH` override
//! the service defaults to compare thread layouts.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use drscreen::config::Config;
use drscreen::engine::Engine;
use drscreen::model::ModelPackage;

fn bench(c: &mut Criterion) {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut config = Config::default();
    // Admit a whole round at once: the stream, not admission control, is measured here.
    config.engine.queue_capacity = 256;
    // Thread layouts to compare (unset: the service defaults).
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = env("PIPELINE_PREPROCESS_THREADS") {
        config.engine.preprocess_threads = n;
    }
    if let Some(n) = env("PIPELINE_INTRA_THREADS") {
        config.runtime.intra_threads = n;
    }
    if let Some(n) = env("PIPELINE_MAX_BATCH") {
        config.engine.max_batch = n;
    }
    let package = ModelPackage::load(&root.join("models/dr-synth")).expect("model package");
    let engine = Engine::start(&package, &config.runtime, config.limits, config.engine).expect("engine");
    let images: Vec<std::sync::Arc<Vec<u8>>> = ["grade0_R.jpg", "grade0_L.jpg", "grade1_R.jpg", "grade4_L.jpg", "dme_R.jpg"]
        .iter()
        .map(|f| std::sync::Arc::new(std::fs::read(root.join("fixtures").join(f)).expect("fixture")))
        .collect();
    let per_round = 128usize;
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(per_round as u64));
    group.bench_function("2mp_jpeg_stream", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let tickets: Vec<_> = (0..per_round)
                    .map(|i| {
                        let bytes = images[i % images.len()].clone();
                        engine.submit(ArcBytes(bytes)).expect("admitted")
                    })
                    .collect();
                for t in tickets {
                    t.blocking_recv().expect("reply").expect("scored");
                }
                elapsed += start.elapsed();
            }
            elapsed
        })
    });
    // The machine's own parallel ceiling for the preprocessing half: the same stream
    // prepared (decode, field of view, resize; no inference) on every core at once. Its
    // ratio to 2 x the single-thread rate shows how much two cores lose to each other
    // (shared cache and memory bandwidth) before any batching is involved.
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(cores).build().expect("pool");
    let pre = engine.preprocessor().clone();
    group.bench_function("2mp_preprocess_only_all_cores", |b| {
        b.iter(|| {
            pool.install(|| {
                use rayon::prelude::*;
                (0..per_round).into_par_iter().for_each(|i| {
                    pre.prepare(&images[i % images.len()]).expect("prepared");
                })
            })
        })
    });
    group.bench_function("2mp_preprocess_only_one_thread", |b| {
        b.iter(|| {
            for i in 0..per_round {
                pre.prepare(&images[i % images.len()]).expect("prepared");
            }
        })
    });
    group.finish();
}

struct ArcBytes(std::sync::Arc<Vec<u8>>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots().sample_size(10).measurement_time(Duration::from_secs(25));
    targets = bench
}
criterion_main!(benches);
