//! drscreen: diabetic-retinopathy screening of fundus photographs.
//!
//! Data flows one way. Edges (the CLI in `main.rs`, later HTTP and DICOM) hand encoded
//! images to the core; the core never touches the network or a database:
//!
//! ```text
//! bytes --preprocess--> 512x512 field of view --engine (batched ORT)--> model outputs
//!       --grading--> image finding --> eye --> exam outcome --> report
//! ```
//!
//! - [`model`]: the locked model package (manifest, sha256, ONNX Runtime session).
//! - [`preprocess`]: decoding with limits, field-of-view crop, resize, quality measures.
//! - [`engine`]: admission control, parallel preprocessing, dynamic batching.
//! - [`grading`]: ICDR grade, DME, gradability, per-eye and per-exam outcome rules.
//! - [`report`]: validation metrics and plots.
//! - [`pipeline`]: the glue the edges call: grade images and exams end to end.
//! - [`dicom`]: the DICOM edge (C-STORE SCP, study grader, SR writer and sender).

pub mod config;
pub mod dicom;
pub mod engine;
pub mod grading;
pub mod http;
pub mod model;
pub mod pipeline;
pub mod preprocess;
pub mod report;
pub mod review;
pub mod service;
pub mod store;
