//! Preprocessing cost, single thread: a 2 MP and a 12 MP fundus JPEG to the model's
//! input image, with the recipe's DCT-scaled decode and with a full decode, plus the
//! floor: merely decoding the JPEG at the recipe's scale. Each with every JPEG backend
//! the build has (libjpeg-turbo by default, and the pure-Rust `jpeg-decoder`).

use criterion::{Criterion, criterion_group, criterion_main};
use drscreen::model::ModelPackage;
use drscreen::preprocess::{DecodeLimits, JpegBackend, Preprocessor, decode};

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bench(c: &mut Criterion) {
    let package = ModelPackage::load(&root().join("models/dr-synth")).expect("model package");
    let scaled = Preprocessor::from_manifest(&package.manifest, DecodeLimits::default());
    let mut full = scaled.clone();
    full.dct_scaling = false;
    let mut slot = vec![0.0f32; 3 * 512 * 512];
    for (label, file) in [("2mp", "fixtures/grade0_R.jpg"), ("12mp", "fixtures/grade4_R_12mp.jpg")] {
        let bytes = std::fs::read(root().join(file)).expect("fixture");
        let mut group = c.benchmark_group(format!("preprocess_{label}"));
        for &backend in JpegBackend::AVAILABLE {
            let name = backend.name();
            let mut scaled = scaled.clone();
            scaled.jpeg_backend = backend;
            let mut full = full.clone();
            full.jpeg_backend = backend;
            group.bench_function(format!("dct_scaled_to_tensor_{name}"), |b| {
                b.iter(|| {
                    let p = scaled.prepare(&bytes).expect("prepare");
                    scaled.normaliser.fill_chw(&p.rgb, &mut slot);
                })
            });
            group.bench_function(format!("full_decode_to_tensor_{name}"), |b| {
                b.iter(|| {
                    let p = full.prepare(&bytes).expect("prepare");
                    full.normaliser.fill_chw(&p.rgb, &mut slot);
                })
            });
            group.bench_function(format!("decode_only_{name}"), |b| {
                b.iter(|| {
                    let d = decode::decode_with(&bytes, &scaled.limits, true, backend).expect("decode");
                    decode::recycle(d.rgb);
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots().sample_size(30);
    targets = bench
}
criterion_main!(benches);
