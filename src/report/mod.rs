//! Reports built from results: validation metrics (`metrics`), the acceptance-test
//! report with its plots (`validation`).

pub mod agreement;
pub mod heatmap;
pub mod metrics;
pub mod plots;
pub mod validation;
