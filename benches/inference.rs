//! ONNX Runtime inference alone, at batch 1, 4, 8 and 16, on the bundled model.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use drscreen::model::{ModelPackage, ModelSession, RuntimeOptions};

fn bench(c: &mut Criterion) {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let package = ModelPackage::load(&root.join("models/dr-synth")).expect("model package");
    let threads: usize = std::env::var("DRSCREEN_INTRA_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let options = RuntimeOptions { intra_threads: threads, ..Default::default() };
    let mut session = ModelSession::new(&package, &options).expect("session");
    let mut group = c.benchmark_group(format!("inference_intra{threads}"));
    for batch in [1usize, 4, 8, 16] {
        let input = vec![0.1f32; batch * session.image_len];
        session.warm_up(&[batch]).expect("warm-up");
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("batch_{batch}"), |b| b.iter(|| session.run(&input, batch).expect("run")));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots().sample_size(20);
    targets = bench
}
criterion_main!(benches);
