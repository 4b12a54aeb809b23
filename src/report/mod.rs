//! Reports built from results: validation metrics (`metrics`), the acceptance-test
//! report with its plots (`validation`), the FHIR R4 exam report (`fhir`).

pub mod agreement;
pub mod fhir;
pub mod heatmap;
pub mod metrics;
pub mod plots;
pub mod validation;
