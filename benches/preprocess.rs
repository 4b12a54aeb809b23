//! Preprocessing cost, single thread: a 2 MP and a 12 MP fundus JPEG to the model's
//! input image, with the recipe's DCT-scaled decode and with a full decode, plus the
//! floor: merely decoding the JPEG at 1/8 scale (with each decoder the build has).
//! `cargo bench --bench preprocess --features turbojpeg` measures the libjpeg-turbo path.

use criterion::{Criterion, criterion_group, criterion_main};
use drscreen::model::ModelPackage;
use drscreen::preprocess::{DecodeLimits, Preprocessor};

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
        group.bench_function("dct_scaled_to_tensor", |b| {
            b.iter(|| {
                let p = scaled.prepare(&bytes).expect("prepare");
                scaled.normaliser.fill_chw(&p.rgb, &mut slot);
            })
        });
        group.bench_function("full_decode_to_tensor", |b| {
            b.iter(|| {
                let p = full.prepare(&bytes).expect("prepare");
                full.normaliser.fill_chw(&p.rgb, &mut slot);
            })
        });
        group.bench_function("decode_only_1_8", |b| {
            b.iter(|| {
                let mut d = jpeg_decoder::Decoder::new(bytes.as_slice());
                d.read_info().expect("info");
                let info = d.info().expect("info");
                d.scale(info.width.div_ceil(8), info.height.div_ceil(8)).expect("scale");
                d.decode().expect("decode")
            })
        });
        // The same floor for libjpeg-turbo, the decoder `--features turbojpeg` uses.
        #[cfg(feature = "turbojpeg")]
        group.bench_function("decode_only_1_8_turbojpeg", |b| {
            b.iter(|| {
                let mut d = turbojpeg::Decompressor::new().expect("turbojpeg");
                let header = d.read_header(&bytes).expect("header");
                let factor = turbojpeg::ScalingFactor::new(1, 8);
                d.set_scaling_factor(factor).expect("scale");
                let scaled = header.scaled(factor);
                let mut rgb = vec![0u8; scaled.width * scaled.height * 3];
                let image = turbojpeg::Image {
                    pixels: rgb.as_mut_slice(),
                    width: scaled.width,
                    pitch: scaled.width * 3,
                    height: scaled.height,
                    format: turbojpeg::PixelFormat::RGB,
                };
                d.decompress(&bytes, image).expect("decode");
                rgb
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots().sample_size(30);
    targets = bench
}
criterion_main!(benches);
