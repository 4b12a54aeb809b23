//! Shared test helpers: the committed model and fixtures, and one engine per test binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use drscreen::config::Config;
use drscreen::engine::Engine;
use drscreen::grading::GradingPolicy;
use drscreen::model::ModelPackage;
use drscreen::pipeline::Screener;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("fixtures").join(name)
}

pub fn model_dir() -> PathBuf {
    root().join("models/dr-synth")
}

pub fn package() -> &'static ModelPackage {
    static P: OnceLock<ModelPackage> = OnceLock::new();
    P.get_or_init(|| ModelPackage::load(&model_dir()).expect("committed model package loads"))
}

/// One engine for the whole test binary (ONNX Runtime allows one environment per process).
pub fn screener() -> &'static Screener {
    static S: OnceLock<Screener> = OnceLock::new();
    S.get_or_init(|| {
        let config = Config::default();
        let engine = Engine::start(package(), &config.runtime, config.limits, config.engine).expect("engine starts");
        let policy = GradingPolicy { thresholds: package().manifest.thresholds, quality: config.quality, recall_months: 12 };
        Screener::new(engine, policy)
    })
}

/// One row of fixtures/labels.csv.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Label {
    pub path: String,
    pub grade: u8,
    pub dme: u8,
    pub gradable: u8,
    pub laterality: String,
    pub exam_id: String,
}

pub fn labels() -> Vec<Label> {
    let mut r = csv::Reader::from_path(fixture("labels.csv")).expect("labels.csv");
    r.deserialize().map(|x| x.expect("label row")).collect()
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_drscreen"))
}
