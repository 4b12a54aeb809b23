//! No training/serving skew: the Rust recipe `fov-crop-bilinear-v1` reproduces the
//! training pipeline's output (`models/train/preprocess.py`, saved as
//! `fixtures/reference/<stem>.png`, with its field-of-view boxes in
//! `fixtures/reference/fov_boxes.csv`) on every image fixture, with every JPEG backend
//! in the build (libjpeg-turbo by default, and the pure-Rust `jpeg-decoder`).
//!
//! Stated tolerance, for every fixture:
//! - the field-of-view box matches Python's within 2 decoded pixels on every side (a rim
//!   column or row whose in-field count sits on the recipe's threshold can tip over on
//!   decoder rounding; 2 decoded pixels are under 2 model pixels);
//! - mean absolute difference <= 1.0 grey level and 99% of values within +-8. With
//!   jpeg-decoder the residue comes from its reduced-size (DCT-scaled) IDCT and chroma
//!   upsampling rounding differently from libjpeg-turbo's (Pillow's) (worst on the
//!   1/2-scale fixtures, mean ~0.7); with libjpeg-turbo (MozJPEG's copy, a different
//!   release from Pillow's) the decoders nearly agree; either way the two bilinear
//!   resizers' fixed-point rounding adds ~0.15 (the PNG shows it alone).

mod common;

use std::collections::HashMap;

use drscreen::preprocess::JpegBackend;

#[test]
fn rust_preprocessing_matches_training_references() {
    for &backend in JpegBackend::AVAILABLE {
        let mut pre = common::screener().engine.preprocessor().clone();
        pre.jpeg_backend = backend;
        check_backend(&pre, backend.name());
    }
}

fn check_backend(pre: &drscreen::preprocess::Preprocessor, backend: &str) {
    let mut boxes: HashMap<String, [i64; 4]> = HashMap::new();
    let mut reader = csv::Reader::from_path(common::fixture("reference/fov_boxes.csv")).unwrap();
    for record in reader.records() {
        let r = record.unwrap();
        let v: Vec<i64> = (1..5).map(|i| r[i].parse().unwrap()).collect();
        boxes.insert(r[0].to_string(), [v[0], v[1], v[2], v[3]]);
    }
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (name, python_box) in &boxes {
        let stem = std::path::Path::new(name).file_stem().unwrap().to_str().unwrap().to_string();
        let reference = image::open(common::fixture(&format!("reference/{stem}.png"))).unwrap().into_rgb8();
        assert_eq!(reference.dimensions(), (pre.input_size, pre.input_size));
        let prepared = pre.prepare(&std::fs::read(common::fixture(name)).unwrap()).unwrap();
        let f = prepared.fov;
        let rust_box = [i64::from(f.left), i64::from(f.top), i64::from(f.right), i64::from(f.bottom)];
        let box_offset = rust_box.iter().zip(python_box).map(|(a, b)| (a - b).abs()).max().unwrap();
        let diffs: Vec<u8> = prepared.rgb.iter().zip(reference.as_raw()).map(|(a, b)| a.abs_diff(*b)).collect();
        let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
        let within = diffs.iter().filter(|&&d| d <= 8).count() as f64 / diffs.len() as f64;
        report.push(format!("{backend} {name}: box offset {box_offset}, mean {mean:.3}, within8 {within:.5}"));
        let ok = box_offset <= 2 && mean <= 1.0 && within >= 0.99;
        if !ok {
            failures.push(report.last().unwrap().clone());
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(boxes.len() >= 10, "too few references");
    assert!(failures.is_empty(), "{failures:#?}");
}
