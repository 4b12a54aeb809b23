//! drscreen: diabetic-retinopathy screening of fundus photographs.
//!
//! Data flows one way, and modules import only the layers below them (checked by
//! `tests/layering.rs`):
//!
//! ```text
//! edges        http (v1, KServe v2, STOW-RS, review pages)   dicom (C-STORE SCP, study loop, SR push)
//!                 \        dips (EHR: poll pending examinations, deliver results)        /
//!                  \                          |                                        /   each calls the service, never each other
//! service      service: grade, store exams, ingest DICOM, grade studies, SR/FHIR, metrics, spans
//!                 |                       \
//! interop         |                        interop: DICOM objects <-> images, SR writer, FHIR report
//!                 |                       /
//! store        store: SQLite/PostgreSQL + images, reviews, sessions, audit, outbox of deliveries
//!                 |
//! core         pipeline -> engine (admission, batching, ORT) -> preprocess, model
//!              grading (clinical rules), review (review rules), report (validation, agreement, heatmap)
//! ```
//!
//! - Core ([`model`], [`preprocess`], [`engine`], [`grading`], [`review`], [`report`],
//!   [`pipeline`]): no network, no database; imports only other core modules.
//! - [`store`]: durable state; imports only the core.
//! - [`interop`]: what the edges produce or parse (DICOM objects, SR, FHIR); imports the
//!   core and the store's record types, never the service or an edge.
//! - [`service`]: the operations every edge calls, and the metrics and tracing spans of
//!   that work; imports core, store and interop.
//! - Edges ([`http`], [`dicom`], [`dips`]): translate a protocol into service calls; never import
//!   each other.
//! - [`config`] gathers each module's settings section (`[engine]`, `[dicom]`, `[http]`,
//!   ...) into one validated `Config`; only the binary reads it, so no module depends
//!   on settings it does not own.
//! - The binary (`main.rs`, `cli/`) is the composition root: it reads the config and
//!   starts the edges; `grade` and `validate` call the core in-process.

pub mod config;
pub mod dicom;
pub mod dips;
pub mod engine;
pub mod grading;
pub mod http;
pub mod interop;
pub mod model;
pub mod pipeline;
pub mod preprocess;
pub mod report;
pub mod review;
pub mod service;
pub mod store;
