//! The locked model: its package (manifest + integrity check), the ONNX Runtime
//! library and execution providers, and the session that runs batches. Nothing here
//! knows about HTTP, DICOM or the database.

pub mod manifest;
pub mod runtime;
pub mod session;

use std::path::PathBuf;

pub use manifest::{Manifest, ModelIdentity, ModelPackage, Thresholds};
pub use runtime::{ExecutionProvider, RuntimeOptions};
pub use session::{ModelSession, RawOutputs};

/// Errors from loading or running the model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("invalid model manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error(
        "model integrity check failed for {path}: manifest says sha256 {expected}, file has {actual}; \
         the package was modified or corrupted: restore it from the release"
    )]
    Integrity { path: PathBuf, expected: String, actual: String },
    #[error("{0}")]
    Runtime(String),
    #[error("model does not match its manifest: {0}")]
    Mismatch(String),
    #[error("inference failed: {0}")]
    Inference(String),
}
