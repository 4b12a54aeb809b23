//! The in-process pipeline: decode + preprocess (rayon, all cores) + dynamic batching +
//! inference, measured as images per second over a stream of 2 MP fundus JPEGs.
//! Reported per image (criterion's throughput), so images/s = 1 / time.

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
