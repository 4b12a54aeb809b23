//! The model package manifest (`models/<name>/manifest.toml`): what the locked model is,
//! how its input must be prepared, what its outputs mean and at which operating points
//! it is used. The schema is documented in `models/README.md`; loading refuses any
//! package whose ONNX file does not match the sha256 recorded here.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::ModelError;

/// Manifest schema versions this build understands.
pub const SUPPORTED_SCHEMA: u32 = 1;

/// The parsed `manifest.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub intended_use: String,
    pub clinical_use: bool,
    #[serde(default)]
    pub created: String,
    #[serde(default)]
    pub license: String,
    pub file: FileSpec,
    pub input: InputSpec,
    #[serde(rename = "output")]
    pub outputs: Vec<OutputSpec>,
    pub thresholds: Thresholds,
    pub grading: GradingSpec,
    #[serde(default)]
    pub metrics: toml::Table,
    #[serde(default)]
    pub training: toml::Table,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileSpec {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputSpec {
    pub name: String,
    pub dtype: String,
    pub layout: String,
    pub color_order: String,
    pub height: u32,
    pub width: u32,
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub recipe: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputSpec {
    pub role: String,
    pub name: String,
    pub shape: Vec<toml::Value>,
    #[serde(default)]
    pub meaning: String,
}

/// Operating thresholds chosen on the validation split (see the model card).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Thresholds {
    /// On P(grade >= 2).
    pub referable_dr: f32,
    /// On P(DME).
    pub dme: f32,
    /// On P(gradable); below it the image is ungradable.
    pub gradable: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GradingSpec {
    pub grade_rule: String,
}

/// Output roles the service needs, in the order the session returns them to the engine.
pub const OUTPUT_ROLES: [&str; 4] = ["dr_logits", "dme_logit", "gradable_logit", "referable_cam"];

/// Preprocessing recipes this build implements (see `preprocess`).
pub const SUPPORTED_RECIPES: [&str; 1] = ["fov-crop-bilinear-v1"];

/// Grade rules this build implements (see `grading::image`).
pub const SUPPORTED_GRADE_RULES: [&str; 1] = ["threshold-then-argmax-v1"];

/// A manifest together with the directory it came from and the verified model bytes.
#[derive(Debug, Clone)]
pub struct ModelPackage {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub onnx: std::sync::Arc<Vec<u8>>,
}

/// The identity every result carries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ModelIdentity {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

impl ModelPackage {
    /// Reads the manifest and the ONNX file, verifying size and sha256.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let manifest_path = dir.join("manifest.toml");
        let text = std::fs::read_to_string(&manifest_path).map_err(|source| ModelError::Io { path: manifest_path.clone(), source })?;
        let manifest: Manifest =
            toml::from_str(&text).map_err(|e| ModelError::Manifest { path: manifest_path.clone(), reason: e.to_string() })?;
        manifest.check(&manifest_path)?;
        let onnx_path = dir.join(&manifest.file.path);
        let onnx = std::fs::read(&onnx_path).map_err(|source| ModelError::Io { path: onnx_path.clone(), source })?;
        let actual = hex::encode(sha2::Sha256::digest(&onnx));
        if !actual.eq_ignore_ascii_case(&manifest.file.sha256) || onnx.len() as u64 != manifest.file.bytes {
            return Err(ModelError::Integrity { path: onnx_path, expected: manifest.file.sha256.clone(), actual });
        }
        Ok(Self { dir: dir.to_path_buf(), manifest, onnx: std::sync::Arc::new(onnx) })
    }

    pub fn identity(&self) -> ModelIdentity {
        ModelIdentity {
            name: self.manifest.name.clone(),
            version: self.manifest.version.clone(),
            sha256: self.manifest.file.sha256.to_ascii_lowercase(),
        }
    }
}

impl Manifest {
    /// Checks everything that can be checked without the ONNX session.
    fn check(&self, path: &Path) -> Result<(), ModelError> {
        let bad = |reason: String| ModelError::Manifest { path: path.to_path_buf(), reason };
        if self.schema_version != SUPPORTED_SCHEMA {
            return Err(bad(format!("schema_version {} is not supported (this build reads {SUPPORTED_SCHEMA})", self.schema_version)));
        }
        if !SUPPORTED_RECIPES.contains(&self.input.recipe.as_str()) {
            return Err(bad(format!(
                "preprocessing recipe '{}' is not implemented by this build (known: {})",
                self.input.recipe,
                SUPPORTED_RECIPES.join(", ")
            )));
        }
        if !SUPPORTED_GRADE_RULES.contains(&self.grading.grade_rule.as_str()) {
            return Err(bad(format!("grade_rule '{}' is not implemented", self.grading.grade_rule)));
        }
        let i = &self.input;
        if i.dtype != "float32" || i.layout != "NCHW" || i.color_order != "RGB" {
            return Err(bad("input must be float32 NCHW RGB".into()));
        }
        if i.height == 0 || i.width == 0 || i.height > 4096 || i.width > 4096 {
            return Err(bad(format!("input size {}x{} is out of range", i.width, i.height)));
        }
        if i.std.iter().any(|s| *s <= 0.0) || i.scale <= 0.0 {
            return Err(bad("input std and scale must be positive".into()));
        }
        for role in OUTPUT_ROLES {
            if self.output(role).is_none() {
                return Err(bad(format!("no [[output]] with role '{role}'")));
            }
        }
        let t = &self.thresholds;
        for (n, v) in [("referable_dr", t.referable_dr), ("dme", t.dme), ("gradable", t.gradable)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(bad(format!("threshold {n} = {v} is not a probability")));
            }
        }
        if !(self.file.sha256.len() == 64 && self.file.sha256.chars().all(|c| c.is_ascii_hexdigit())) {
            return Err(bad("file.sha256 must be 64 hex digits".into()));
        }
        Ok(())
    }

    /// The output declared for `role`.
    pub fn output(&self, role: &str) -> Option<&OutputSpec> {
        self.outputs.iter().find(|o| o.role == role)
    }
}
