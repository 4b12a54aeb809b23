//! Command implementations for the binary.

pub mod grade;
pub mod inspect;
pub mod keys;
pub mod loadtest;
pub mod serve;
pub mod settings;
pub mod store;
pub mod validate;

pub use settings::GlobalArgs;

use drscreen::config::Config;
use drscreen::engine::Engine;
use drscreen::grading::GradingPolicy;
use drscreen::model::ModelPackage;
use drscreen::pipeline::Screener;

/// Loads and verifies the configured model, starts the engine, and builds the policy.
pub fn start_screener(config: &Config) -> anyhow::Result<Screener> {
    let package = ModelPackage::load(&config.model)?;
    let engine = Engine::start(&package, &config.runtime, config.limits, config.engine)?;
    let policy = GradingPolicy { thresholds: package.manifest.thresholds, quality: config.quality, recall_months: config.recall_months };
    Ok(Screener::new(engine, policy))
}
