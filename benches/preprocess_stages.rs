//! Where the time of one 12 MP JPEG goes, stage by stage, run back to back as the
//! service runs them (so each stage sees the caches its predecessor left, unlike
//! criterion's isolated loops): decode, field-of-view location, resize, quality
//! measures, normalisation. Prints mean milliseconds per stage over `STAGES_N` images
//! (default 300) on one thread, with the default JPEG backend (libjpeg-turbo);
//! `STAGES_BACKEND=rust` measures the pure-Rust `jpeg-decoder` instead.

use std::time::Instant;

use drscreen::model::ModelPackage;
use drscreen::preprocess::{DecodeLimits, JpegBackend, Preprocessor, QualityMeasures, decode, fov, tensor};

fn main() -> anyhow::Result<()> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let package = ModelPackage::load(&root.join("models/dr-synth"))?;
    let prep = Preprocessor::from_manifest(&package.manifest, DecodeLimits::default());
    let bytes = std::fs::read(root.join("fixtures/grade4_R_12mp.jpg"))?;
    let size = prep.input_size;
    let mut slot = vec![0f32; 3 * (size * size) as usize];
    let n: usize = std::env::var("STAGES_N").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let backend = match std::env::var("STAGES_BACKEND") {
        Ok(name) => *JpegBackend::AVAILABLE
            .iter()
            .find(|b| b.name() == name)
            .ok_or_else(|| anyhow::anyhow!("STAGES_BACKEND={name}: this build has {:?}", JpegBackend::AVAILABLE))?,
        Err(_) => JpegBackend::default(),
    };
    const NAMES: [&str; 5] = ["decode", "fov", "resize", "quality", "normalise"];
    let mut ms = [0f64; 5];
    for i in 0..n + 20 {
        let mut marks = [Instant::now(); 6];
        let decoded = decode::decode_with(&bytes, &prep.limits, true, backend)?;
        marks[1] = Instant::now();
        let field = fov::locate(decoded.width, decoded.height, &decoded.rgb);
        marks[2] = Instant::now();
        anyhow::ensure!(field.inside(decoded.width, decoded.height), "the 12 MP fixture's field should need no padding");
        let rgb = tensor::resize_square(decoded.width, decoded.height, &decoded.rgb, (field.x0 as u32, field.y0 as u32, field.side), size)?;
        marks[3] = Instant::now();
        std::hint::black_box(QualityMeasures::measure(size as usize, &rgb));
        marks[4] = Instant::now();
        prep.normaliser.fill_chw(&rgb, &mut slot);
        marks[5] = Instant::now();
        decode::recycle(decoded.rgb);
        if i >= 20 {
            for (stage, pair) in ms.iter_mut().zip(marks.windows(2)) {
                *stage += (pair[1] - pair[0]).as_secs_f64() * 1e3 / n as f64;
            }
        }
    }
    let parts: Vec<String> = NAMES.iter().zip(ms).map(|(name, t)| format!("{name} {t:.3}")).collect();
    println!("12 MP JPEG ({}), ms per image over {n}: {} | total {:.3}", backend.name(), parts.join(", "), ms.iter().sum::<f64>());
    Ok(())
}
