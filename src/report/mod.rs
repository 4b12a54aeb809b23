//! Reports built from results: validation metrics (`metrics`), the acceptance-test
//! report with its plots (`validation`), model-vs-clinician agreement (`agreement`)
//! and the heatmap overlay (`heatmap`). Pure computation over results: no store, no edge.

pub mod agreement;
pub mod heatmap;
pub mod metrics;
pub mod plots;
pub mod validation;
