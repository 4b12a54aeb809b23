//! One ONNX Runtime session over the verified model bytes, checked against the manifest
//! (input name/shape, every declared output present) and warmed up. `run` takes an
//! NCHW f32 batch slice and returns owned outputs, so the caller can reuse its buffer.

use std::time::Instant;

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

use super::ModelError;
use super::manifest::ModelPackage;
use super::runtime::{self, ExecutionProvider, RuntimeOptions};

/// A live session plus what the engine needs to know about it.
pub struct ModelSession {
    session: Session,
    input_name: String,
    output_names: [String; 4],
    /// Channels * height * width of one input image.
    pub image_len: usize,
    pub height: usize,
    pub width: usize,
    /// Spatial size of the activation map (h, w), learnt at warm-up.
    pub cam_shape: (usize, usize),
    pub provider: ExecutionProvider,
}

/// Model outputs for one batch, copied out of ORT.
#[derive(Debug, Clone, PartialEq)]
pub struct RawOutputs {
    pub batch: usize,
    /// [batch * 5]
    pub dr_logits: Vec<f32>,
    /// [batch]
    pub dme_logit: Vec<f32>,
    /// [batch]
    pub gradable_logit: Vec<f32>,
    /// [batch * cam_h * cam_w]
    pub cam: Vec<f32>,
    pub cam_shape: (usize, usize),
}

fn ort_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Runtime(e.to_string())
}

impl ModelSession {
    /// Builds the session and checks it against the manifest.
    pub fn new(package: &ModelPackage, options: &RuntimeOptions) -> Result<Self, ModelError> {
        let env = runtime::environment(options)?;
        let providers = runtime::execution_providers(options.provider)?;
        let mut builder = Session::builder(env)
            .map_err(ort_err)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(ort_err)?
            .with_execution_providers(providers)
            .map_err(ort_err)?;
        if options.intra_threads > 0 {
            builder = builder.with_intra_threads(options.intra_threads).map_err(ort_err)?;
        }
        let session = builder.commit_from_memory(&package.onnx).map_err(ort_err)?;
        let m = &package.manifest;
        let input = session
            .inputs()
            .iter()
            .find(|o| o.name() == m.input.name)
            .ok_or_else(|| ModelError::Mismatch(format!("the ONNX graph has no input named '{}'", m.input.name)))?;
        if let Some(shape) = input.dtype().tensor_shape() {
            let dims: Vec<i64> = shape.iter().copied().collect();
            let want = [3, m.input.height as i64, m.input.width as i64];
            if dims.len() != 4 || dims[1..] != want {
                return Err(ModelError::Mismatch(format!(
                    "input '{}' has shape {dims:?}, manifest declares [N, 3, {}, {}]",
                    m.input.name, m.input.height, m.input.width
                )));
            }
        }
        let mut output_names: [String; 4] = Default::default();
        for (slot, role) in output_names.iter_mut().zip(super::manifest::OUTPUT_ROLES) {
            let spec = m.output(role).ok_or_else(|| ModelError::Mismatch(format!("manifest has no output with role {role}")))?;
            if !session.outputs().iter().any(|o| o.name() == spec.name) {
                return Err(ModelError::Mismatch(format!("the ONNX graph has no output named '{}' (role {role})", spec.name)));
            }
            *slot = spec.name.clone();
        }
        let (h, w) = (m.input.height as usize, m.input.width as usize);
        let mut this = Self {
            session,
            input_name: m.input.name.clone(),
            output_names,
            image_len: 3 * h * w,
            height: h,
            width: w,
            cam_shape: (0, 0),
            provider: options.provider,
        };
        let probe = this.run(&vec![0.0; this.image_len], 1)?;
        this.cam_shape = probe.cam_shape;
        Ok(this)
    }

    /// Runs every batch size in `sizes` once so the first real request pays no
    /// allocation or kernel-selection cost. Returns the time taken.
    pub fn warm_up(&mut self, sizes: &[usize]) -> Result<std::time::Duration, ModelError> {
        let start = Instant::now();
        let largest = sizes.iter().copied().max().unwrap_or(1);
        let buffer = vec![0.0f32; largest * self.image_len];
        for &n in sizes {
            self.run(&buffer[..n * self.image_len], n)?;
        }
        Ok(start.elapsed())
    }

    /// Runs one batch of `batch` images laid out NCHW in `input`.
    pub fn run(&mut self, input: &[f32], batch: usize) -> Result<RawOutputs, ModelError> {
        if batch == 0 || input.len() != batch * self.image_len {
            return Err(ModelError::Inference(format!("input holds {} floats, expected {batch} x {}", input.len(), self.image_len)));
        }
        let shape = [batch, 3, self.height, self.width];
        let tensor = TensorRef::from_array_view((shape, input)).map_err(|e| ModelError::Inference(e.to_string()))?;
        let outputs =
            self.session.run(ort::inputs![self.input_name.as_str() => tensor]).map_err(|e| ModelError::Inference(e.to_string()))?;
        let extract = |name: &str, per_item: Option<usize>| -> Result<(Vec<i64>, Vec<f32>), ModelError> {
            let value = outputs.get(name).ok_or_else(|| ModelError::Inference(format!("output {name} missing")))?;
            let (shape, data) = value.try_extract_tensor::<f32>().map_err(|e| ModelError::Inference(format!("output {name}: {e}")))?;
            let dims: Vec<i64> = shape.iter().copied().collect();
            if dims.first().copied() != Some(batch as i64) || per_item.is_some_and(|k| data.len() != batch * k) {
                return Err(ModelError::Mismatch(format!("output {name} has shape {dims:?}")));
            }
            Ok((dims, data.to_vec()))
        };
        let (_, dr_logits) = extract(&self.output_names[0], Some(5))?;
        let (_, dme_logit) = extract(&self.output_names[1], Some(1))?;
        let (_, gradable_logit) = extract(&self.output_names[2], Some(1))?;
        let (cam_dims, cam) = extract(&self.output_names[3], None)?;
        if cam_dims.len() != 4 || cam_dims[1] != 1 {
            return Err(ModelError::Mismatch(format!("activation map has shape {cam_dims:?}, expected [N,1,h,w]")));
        }
        Ok(RawOutputs { batch, dr_logits, dme_logit, gradable_logit, cam, cam_shape: (cam_dims[2] as usize, cam_dims[3] as usize) })
    }
}
